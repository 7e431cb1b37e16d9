import json
import os
import runpy

from conftest import ROOT


def test_seed_notebook_runs_unchanged(tmp_path, monkeypatch, capsys):
    out = tmp_path / "q"
    monkeypatch.setenv("GPTQCPP_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("GPTQCPP_NOTEBOOK_EVAL_LIMIT", "50")
    ns = runpy.run_path(str(ROOT / "examples" / "notebook.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.startswith("<s> Once upon a time")
    assert "<s> Uncovering deep insights begins with" in printed
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (cfg["bits"], cfg["group_size"]) == (4, 32)
    # 4 bits cost perplexity, but not much on in-domain text (README: 3.92 -> 4.35 at g32)
    assert ns["ppl_base"] < ns["ppl_quant"] < 1.3 * ns["ppl_base"]
    assert ns["model"].memory()["weight_bytes"] < ns["base"].memory()["weight_bytes"]
    assert ns["results"]["results"]["bsdgames-quiz"]["acc,none"] >= 0.0
    assert os.path.isdir(out) and "bsdgames-quiz: acc" in printed
