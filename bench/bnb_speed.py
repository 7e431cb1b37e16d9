#!/usr/bin/env python3
"""Decode speed and memory of load-time (bitsandbytes) quantization beside the base model.

For each model: the base, NF4, NF4 + double quant, FP4 and LLM.int8 (`gptq generate
--load-in-4bit=... | --load-in-8bit`), greedy decoding of TOKENS tokens from a fixed prompt,
REPS runs each; prints a Markdown table of the median decode tokens/s, the resident weight
bytes and the peak memory (host RSS on the CPU; bytes gptq.cpp allocated on a GPU).

    python3 bench/bnb_speed.py [--device cpu|cuda] [--models stories15M,smollm2] [--tokens 128] [--reps 3]

Standard library only; drives the `gptq` command line. SmolLM2 needs scripts/fetch_smollm2.
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = {"stories15M": ROOT / "models" / "stories15M",
          "smollm2": ROOT / ".cache" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"}
VARIANTS = [("base", []), ("bnb NF4", ["--load-in-4bit=nf4"]),
            ("bnb NF4 + DQ", ["--load-in-4bit=nf4", "--double-quant"]), ("bnb FP4", ["--load-in-4bit=fp4"]),
            ("bnb LLM.int8", ["--load-in-8bit"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gptq", default=str(ROOT / "build" / "gptq"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="stories15M,smollm2")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    print(f"| model | method | decode tok/s ({a.device}, median of {a.reps}) | linears MiB | peak MiB |")
    print("|---|---|---|---|---|")
    for name in a.models.split(","):
        model = MODELS[name]
        if not model.exists():
            sys.exit(f"bnb_speed: {model} is missing" + (" (run scripts/fetch_smollm2)" if name == "smollm2" else ""))
        for label, flags in VARIANTS:
            speeds, peak, linears = [], 0, None
            for _ in range(a.reps):
                out = subprocess.run([a.gptq, "generate", str(model), "--prompt", "Once upon a time",
                                      "--max-new-tokens", str(a.tokens), "--temperature", "0", "--device", a.device,
                                      "--json", *flags], check=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                j = json.loads(out.stdout[out.stdout.index("\n{") + 1:])
                speeds.append(j["decode_tokens_per_second"])
                mem = j["memory"]
                peak = max(peak, mem["peak_host_bytes"] if a.device == "cpu" else mem["peak_device_bytes"])
                for line in out.stderr.splitlines():
                    if line.startswith("load-time quantization:"):
                        linears = line.split("->")[1].split("MiB")[0].strip()
            print(f"| {name} | {label} | {statistics.median(speeds):.1f} | {linears or 'dense'} | {peak / 2**20:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
