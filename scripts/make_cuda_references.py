#!/usr/bin/env python3
"""Reference logits for tests/test_cuda_models.cpp: transformers on the GPU in fp16 and
bf16, for stories15M and every tiny architecture fixture (dense models; GPTQ fixtures
are compared with the CPU backend instead).

Run on the GPU machine (PyTorch + transformers, no network):
  python3 scripts/make_cuda_references.py --out tests/fixtures/cuda_reference
Writes one <name>.json per model: {"ids": [...16 ids...], "f16": {"rows": [per
position {"ids", "logits" (the 256 largest), "max_abs"}]}, "bf16": {...}}, with the positions computed as
test_cuda_models.cpp runs them (12-token prefill, then 4 single-token steps with the
KV cache), eager attention, weights converted to the dtype by transformers.
"""
import argparse
import json
import os

import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"stories15M": os.path.join(ROOT, "models", "stories15M")}
for a in ["llama-bias-untied", "llama3-gqa", "mistral", "qwen2-bias", "qwen3"]:
    MODELS["arch_" + a.replace("-", "_")] = os.path.join(ROOT, "tests", "fixtures", "arch", a)


def prompt(vocab):
    return [(1 + 37 * i * i + 11 * i) % vocab for i in range(16)]


def run(path, dtype):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager").cuda().eval()
    ids = prompt(m.config.vocab_size)
    rows = []
    with torch.no_grad():
        x = torch.tensor([ids[:12]], device="cuda")
        out = m(x, use_cache=True)
        rows += out.logits[0].float().cpu().tolist()
        past = out.past_key_values
        for t in range(12, 16):
            out = m(torch.tensor([[ids[t]]], device="cuda"), past_key_values=past, use_cache=True)
            past = out.past_key_values
            rows.append(out.logits[0, -1].float().cpu().tolist())
    return ids, rows


def top(row, k=256):
    """The row's k largest logits (what decides sampling) and its largest magnitude."""
    t = torch.tensor(row)
    v, i = torch.topk(t, min(k, t.numel()))
    return {"ids": i.tolist(), "logits": [round(x, 5) for x in v.tolist()], "max_abs": float(t.abs().max())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, path in MODELS.items():
        res = {}
        for key, dt in [("f16", torch.float16), ("bf16", torch.bfloat16)]:
            ids, rows = run(path, dt)
            res["ids"] = ids
            res[key] = {"rows": [top(r) for r in rows]}
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(res, f)
        print(name, "ok")


if __name__ == "__main__":
    main()
