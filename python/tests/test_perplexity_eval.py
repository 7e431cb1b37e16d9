import json

import pytest

from gptqcpp import GPTQModel
from conftest import DATA, MODEL, cli_json


@pytest.fixture(scope="module")
def model():
    return GPTQModel.load(MODEL, device="cpu")


def test_window_perplexity_is_the_clis_number(model):
    text = DATA / "stories15M-samples.txt"
    cli = cli_json("ppl", str(MODEL), "--text", str(text), "--ctx", "256", "--max-windows", "8", "--json",
                   "--device", "cpu")
    r = model.perplexity(text.read_text(), ctx=256, max_windows=8, details=True)
    # The same library function on the same tokens: equal to the last bit (JSON keeps 17 digits).
    assert r["ppl"] == cli["ppl"] and r["scored_tokens"] == cli["scored_tokens"] == 8 * 255
    assert model.perplexity(text.read_text(), ctx=256, max_windows=8) == cli["ppl"]


def test_per_text_perplexity_is_the_clis_number(model, tmp_path):
    stories = [s for s in (DATA / "stories15M-samples.txt").read_text().split("\n\n") if s.strip()][:12]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": s}) + "\n" for s in stories))
    cli = cli_json("ppl", str(MODEL), "--texts", str(docs), "--max-length", "128", "--json", "--device", "cpu")
    r = model.perplexity(stories, max_length=128, batch_size=8, details=True)
    assert r["mean_ppl"] == cli["mean_ppl"] and r["per_text_ppl"] == cli["per_text_ppl"]
    assert model.perplexity(stories, max_length=128) == cli["mean_ppl"]


def test_eval_is_the_clis_score():
    task = DATA / "mc" / "bsdgames-quiz.jsonl"
    cli = cli_json("eval", str(MODEL), "--tasks", str(task), "--limit", "40", "--json", "--device", "cpu")["tasks"][0]
    r = GPTQModel.eval(str(MODEL), tasks=[task], limit=40, device="cpu")
    res = r["results"]["bsdgames-quiz"]
    assert res["acc,none"] == cli["acc"]["value"] and res["acc_norm,none"] == cli["acc_norm"]["value"]
    assert res["acc_stderr,none"] == cli["acc"]["stderr"]
    assert r["gptqcpp"][0]["items"] == 40 and r["gptqcpp"][0]["requests"] == cli["requests"]
    # A model object works too, as GPTQModel.eval takes one.
    m = GPTQModel.load(MODEL, device="cpu")
    assert GPTQModel.eval(m, tasks=[task], limit=40)["results"] == r["results"]


def test_eval_and_ppl_errors_are_typed(model, tmp_path):
    with pytest.raises(OSError, match="nope.jsonl"):
        GPTQModel.eval(model, tasks=[tmp_path / "nope.jsonl"])
    with pytest.raises(ValueError, match="max length"):
        model.perplexity(["Once upon a time"], max_length=1)
    with pytest.raises(NotImplementedError, match="framework"):
        GPTQModel.eval(model, tasks=["x"], framework="lm_eval")
