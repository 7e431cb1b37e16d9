import os
import signal
import tempfile
import threading
from pathlib import Path

import pytest

import gptqcpp
from gptqcpp import GPTQModel, QuantizeConfig
from conftest import DATA, MODEL, cli_json, run_cli

# Small enough for a loaded 2-core machine, large enough for every module's Hessian to be
# full rank: 16 windows of 128 tokens of the Bible (the README's calibration text).
CALIB = ["--calib", str(DATA / "web-bible.txt"), "--n-samples", "16", "--seq-len", "128"]
# Files whose bytes carry timings (the model card and the per-module log): compared apart.
TIMED = {"README.md", "quant_log.json"}


def windows():
    return gptqcpp.load_calibration(str(MODEL), [str(DATA / "web-bible.txt")], n_samples=16, seq_len=128)


def files(d: Path):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name not in TIMED}


def test_checkpoint_bytes_equal_the_clis(tmp_path):
    run_cli("quantize", str(MODEL), "--out", str(tmp_path / "cli"), "--group-size", "32", *CALIB)
    m = GPTQModel.load(MODEL, QuantizeConfig(bits=4, group_size=32))
    # batch_size 32 x 128 tokens = the CLI's 4096-token calibration chunks
    log = m.quantize(windows(), batch_size=32)
    assert len(log) == 6 * 7 and all(e["quantized"] and e["bits"] == 4 and e["group_size"] == 32 for e in log)
    m.save(tmp_path / "py")
    cli, py = files(tmp_path / "cli"), files(tmp_path / "py")
    assert sorted(cli) == sorted(py) and "model.safetensors" in py
    assert [n for n in cli if cli[n] != py[n]] == []
    # The saved checkpoint runs, and the model object now runs it too.
    saved = GPTQModel.load(tmp_path / "py", device="cpu")
    assert saved.quantized
    text = (DATA / "stories15M-samples.txt").read_text()
    ppl = cli_json("ppl", str(tmp_path / "cli"), "--text", str(DATA / "stories15M-samples.txt"), "--ctx", "256",
                   "--max-windows", "4", "--json", "--device", "cpu")["ppl"]
    assert saved.perplexity(text, ctx=256, max_windows=4) == ppl
    assert m.perplexity(text, ctx=256, max_windows=4) == ppl


def test_calibration_as_texts_dicts_and_asymmetric_rtn(tmp_path):
    stories = [s for s in (DATA / "stories15M-samples.txt").read_text().split("\n\n") if len(s) > 200][:8]
    m = GPTQModel.load(MODEL, QuantizeConfig(bits=4, group_size=128, true_sequential=False))
    log = m.quantize(stories, batch_size=4)
    assert len(log) == 42
    m2 = GPTQModel.load(MODEL, QuantizeConfig(bits=4, group_size=128, true_sequential=False))
    tk = m2.tokenizer
    log2 = m2.quantize([{"input_ids": tk.encode(s), "attention_mask": [1] * len(tk.encode(s))} for s in stories],
                       batch_size=4)
    # The same samples, the same maths. The reported loss may differ in its last bit between
    # runs (seen once: a reduction's order); the weights are compared bit for bit above.
    assert [e["loss"] for e in log2] == pytest.approx([e["loss"] for e in log], rel=1e-12)
    rtn = GPTQModel.load(MODEL, QuantizeConfig(bits=8, sym=False, method="rtn"))
    rtn.quantize([])
    rtn.save(tmp_path / "rtn")
    cfg = (tmp_path / "rtn" / "config.json").read_text()
    assert '"gptq_v2"' in cfg  # asymmetric: v2, as `gptq quantize --format auto`


def test_keyboard_interrupt_stops_quantize_and_leaves_no_output(tmp_path, monkeypatch):
    before = set(Path(tempfile.gettempdir()).glob("gptqcpp-quantize-*"))
    m = GPTQModel.load(MODEL, QuantizeConfig(bits=4, group_size=32))
    # SIGINT from another thread while the library works between two progress callbacks:
    # Python's handler only sets a flag; the next callback's PyErr_CheckSignals raises.
    real_update = gptqcpp._progress.Progress.update

    def update(self, done, extra=""):
        real_update(self, done, extra)
        if self.label == "layers" and done == 1:
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT)).start()

    monkeypatch.setattr(gptqcpp._progress.Progress, "update", update)
    with pytest.raises(KeyboardInterrupt):
        m.quantize(windows(), batch_size=32)
    assert set(Path(tempfile.gettempdir()).glob("gptqcpp-quantize-*")) == before
    with pytest.raises(ValueError, match="quantize"):
        m.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_exception_in_a_callback_propagates(monkeypatch):
    m = GPTQModel.load(MODEL, QuantizeConfig(bits=4, group_size=32))

    def boom(self, done, extra=""):
        raise ZeroDivisionError("from the progress callback")

    monkeypatch.setattr(gptqcpp._progress.Progress, "update", boom)
    with pytest.raises(ZeroDivisionError, match="progress callback"):
        m.quantize(windows(), batch_size=32)


def one_line(e: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(e.value) and str(e.value) != ""


def test_bad_arguments_raise_documented_types_with_one_line_messages(tmp_path):
    with pytest.raises(TypeError, match="no_such_field") as e:
        QuantizeConfig(no_such_field=1)
    assert one_line(e)
    with pytest.raises(NotImplementedError, match="bits=5") as e:
        QuantizeConfig(bits=5)
    assert one_line(e)
    with pytest.raises(ValueError, match="bits") as e:  # the library's own check
        QuantizeConfig(bits=9)
    assert one_line(e)
    with pytest.raises(ValueError, match="damp") as e:
        QuantizeConfig(damp_percent=1.5)
    assert one_line(e)
    for field, value in [("rotation", "hadamard"), ("v2", True), ("adapter", {"rank": 8}), ("mse", 2.0)]:
        with pytest.raises(NotImplementedError, match=field) as e:
            QuantizeConfig(**{field: value})
        assert one_line(e)
    QuantizeConfig(rotation=None, v2=False, mse=2.4)  # GPTQModel's "off" values are accepted
    with pytest.raises(FileNotFoundError, match="/nope") as e:
        GPTQModel.load("/nope/model")
    assert one_line(e)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="empty") as e:  # the library's kIo, naming the file
        GPTQModel.load(empty).generate("x")
    assert one_line(e)
    with pytest.raises(ValueError, match="QuantizeConfig"):
        GPTQModel.load(MODEL).quantize(["text"])
    with pytest.raises(ValueError, match="calibration_data_min_length"):
        GPTQModel.load(MODEL, QuantizeConfig()).quantize(["a b"])


def test_defaults_are_gptqmodels():
    c = QuantizeConfig()
    assert (c.bits, c.group_size, c.desc_act, c.sym, c.damp_percent, c.damp_auto_increment, c.static_groups,
            c.true_sequential, c.lm_head, c.mse, c.act_group_aware, c.dynamic) == \
        (4, 128, False, True, 0.05, 0.01, False, True, False, 0.0, True, None)
    assert QuantizeConfig(desc_act=True).act_group_aware is False  # GPTQModel turns GAR off under desc_act
    with pytest.raises(ValueError, match="act_group_aware"):
        QuantizeConfig(desc_act=True, act_group_aware=True)
