#!/usr/bin/env python3
"""Checkpoints serialized by bitsandbytes itself, for tests/test_bnb_checkpoint.cpp.

Loads two of the tiny random-weight models of tests/fixtures/arch with transformers'
BitsAndBytesConfig on the CPU (bitsandbytes >= 0.46 quantizes there), saves each with
save_pretrained -- the layout a `load_in_4bit` / `load_in_8bit` model is published in --
and records the logits the quantized model computes for the arch fixture's own id
sequences:

  tests/fixtures/bnb/<model>-<variant>/{config.json, model.safetensors, reference.json}
  reference.json: {"source", "variant", "bitsandbytes_version", "transformers_version",
                   "torch_version", "sequences": [{"ids", "logits" [pos][vocab]}]}
  (generation_config.json, which only repeats the source's, is left out.)

Models are loaded in fp32 (the arch fixtures' fp16 weights upcast exactly), so the
quantized weights are those of the stored values and the reference runs in fp32.

    python3 -m venv v && v/bin/pip install torch transformers accelerate bitsandbytes
    v/bin/python scripts/make_bnb_fixtures.py
"""
import argparse
import json
import pathlib
import shutil

import bitsandbytes
import torch
import transformers
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARCH = ROOT / "tests" / "fixtures" / "arch"

VARIANTS = {
    "nf4": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
    "nf4-dq": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True),
    "fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4"),
    "int8": dict(load_in_8bit=True),
}
# llama-bias-untied: biases on q/k/v/o, an untied head that stays dense, fp32 source;
# qwen2-bias: fp16 source, grouped KV heads, tied embeddings.
CASES = [("llama-bias-untied", v) for v in VARIANTS] + [("qwen2-bias", "nf4-dq")]


def dequantized_forward(module):
    """x @ W^T + b with W dequantized by bitsandbytes' generic (flattened-block) code.

    bitsandbytes 0.50's CPU kernels are not usable on these shapes: its compiled
    dequantize_4bit cuts blocks per row (wrong when in_features is not a multiple of the
    block size: 48 here, against the flattened blocks quantize_4bit and the CUDA kernels
    use) and its AVX512-BF16 path needs out_features divisible by 32.
    """
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code

    qs = module.weight.quant_state
    absmax = qs.absmax
    if qs.nested:
        absmax = bitsandbytes.functional.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
    w = _dequantize_4bit_compute(module.weight.data.view(torch.uint8).reshape(-1), absmax.float(),
                                 _get_4bit_code(qs.quant_type, torch.device("cpu")), qs.blocksize, qs.shape,
                                 torch.float32)
    return lambda x: torch.nn.functional.linear(x, w.to(x.dtype), module.bias)


def make(model, variant, out_root):
    src = ARCH / model
    config = BitsAndBytesConfig(**VARIANTS[variant], bnb_4bit_compute_dtype=torch.float32)
    m = AutoModelForCausalLM.from_pretrained(src, quantization_config=config, device_map="cpu",
                                             dtype=torch.float32, attn_implementation="eager")
    out = out_root / f"{model}-{variant}"
    if out.exists():
        shutil.rmtree(out)
    m.save_pretrained(out)
    (out / "generation_config.json").unlink(missing_ok=True)
    # The reference is the checkpoint as transformers loads it back (the pre-quantized path).
    m = AutoModelForCausalLM.from_pretrained(out, device_map="cpu", dtype=torch.float32, attn_implementation="eager")
    for module in m.modules():
        if isinstance(module, bitsandbytes.nn.Linear4bit):
            module.forward = dequantized_forward(module)
    sequences = []
    with torch.no_grad():
        # The arch fixture's sequences of up to 7 tokens (the quantized linears are what is
        # under test; longer attention spans add nothing); 7 significant digits, as fp32.
        for s in json.loads((src / "reference.json").read_text())["sequences"]:
            if len(s["ids"]) > 7:
                continue
            logits = m(torch.tensor([s["ids"]])).logits[0].float()
            sequences.append({"ids": s["ids"], "logits": [[float(f"{x:.7g}") for x in row] for row in logits]})
    ref = {"source": f"tests/fixtures/arch/{model}", "variant": variant,
           "bitsandbytes_version": bitsandbytes.__version__, "transformers_version": transformers.__version__,
           "torch_version": torch.__version__, "sequences": sequences}
    (out / "reference.json").write_text(json.dumps(ref) + "\n")
    print(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "fixtures" / "bnb")
    args = ap.parse_args()
    torch.manual_seed(0)
    for model, variant in CASES:
        make(model, variant, args.out)


if __name__ == "__main__":
    main()
