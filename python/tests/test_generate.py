import json

import pytest

import gptqcpp
from gptqcpp import GPTQModel
from conftest import MODEL, reference, run_cli


@pytest.fixture(scope="module")
def model():
    return GPTQModel.load(MODEL, device="cpu")


def test_greedy_ids_match_hugging_face_reference(model):
    # greedy.json: transformers' greedy continuations, 120 new tokens, EOS (2) stops.
    cases = json.loads(reference("greedy.json").read_text())
    for case in cases:
        out = model.generate(case["prompt_ids"], max_new_tokens=len(case["output_ids"]))[0]
        assert out[:len(case["prompt_ids"])] == case["prompt_ids"]
        assert out[len(case["prompt_ids"]):] == [i for i in case["output_ids"] if i != 2], case["prompt"]


def test_greedy_text_matches_the_cli(model):
    prompt = "Tom had a red ball."
    cli = run_cli("generate", str(MODEL), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "60",
                  "--device", "cpu").stdout
    ids = model.generate(prompt, max_new_tokens=60)[0]
    assert model.tokenizer.decode(ids, skip_special_tokens=True) + "\n" == cli
    # a list of prompts gives a list per prompt; the seed notebook indexes [0]
    both = model.generate([prompt, "Once upon a time"], max_new_tokens=5)
    assert len(both) == 2 and both[0] == ids[:len(model.tokenizer.encode(prompt)) + 5]


def test_sampling_is_seeded_like_the_cli(model):
    prompt = "Once upon a time"
    cli = run_cli("generate", str(MODEL), "--prompt", prompt, "--temperature", "0.8", "--top-k", "40",
                  "--top-p", "0.95", "--seed", "7", "--max-new-tokens", "40", "--device", "cpu").stdout
    ids = model.generate(prompt, do_sample=True, temperature=0.8, top_k=40, top_p=0.95, seed=7, max_new_tokens=40)[0]
    assert model.tokenizer.decode(ids, skip_special_tokens=True) + "\n" == cli
    other = model.generate(prompt, do_sample=True, temperature=0.8, top_k=40, top_p=0.95, seed=8, max_new_tokens=40)
    assert other[0] != ids


def test_cuda_goes_through_the_backend_registry():
    m = GPTQModel.load(MODEL, device="cuda", dtype="float32")
    if gptqcpp.cuda_device_count() == 0:
        # The registry refuses it, naming CUDA (not compiled in, or no device).
        with pytest.raises((RuntimeError, ValueError), match="(?i)cuda"):
            m.generate("Once upon a time", max_new_tokens=4)
        return
    assert m.device.startswith("cuda:0")
    cpu = GPTQModel.load(MODEL, device="cpu").generate("Once upon a time", max_new_tokens=20)[0]
    assert m.generate("Once upon a time", max_new_tokens=20)[0] == cpu


def test_bad_generate_arguments_raise_value_error(model):
    with pytest.raises(ValueError, match="temperature"):
        model.generate("Once", do_sample=True, temperature=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate("Once", max_new_tokens=-1)
    with pytest.raises(TypeError, match="num_beams"):
        model.generate("Once", num_beams=4)
    with pytest.raises(ValueError, match="device"):
        GPTQModel.load(MODEL, device="tpu")
