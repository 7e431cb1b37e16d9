#!/usr/bin/env python3
"""The peer side of bench_inference: transformers' greedy decode on the same model,
prompt length and number of new tokens, timed the way users run it (model.generate).
  python3 bench/bench_transformers_decode.py MODEL_DIR [--dtype f16] [--new 128] [--prompt 16] [--reps 3]
Prints one JSON line: decode tokens/s (median over reps, prefill excluded by timing a
1-token generate of the same prompt and subtracting it)."""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16"])
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    dt = torch.float16 if a.dtype == "f16" else torch.bfloat16
    m = AutoModelForCausalLM.from_pretrained(a.model, dtype=dt).cuda().eval()
    vocab = m.config.vocab_size
    ids = torch.tensor([[1 + (i * 7919) % (vocab - 1) for i in range(a.prompt)]], device="cuda")

    def gen(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            m.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    gen(a.new)  # warm-up
    rates = []
    for _ in range(a.reps):
        total, first = gen(a.new), gen(1)
        rates.append((a.new - 1) / (total - first))
    print(json.dumps({"peer": "transformers", "model": a.model, "dtype": a.dtype, "new_tokens": a.new,
                      "decode_tok_s": statistics.median(rates), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
