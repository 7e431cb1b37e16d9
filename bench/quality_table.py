#!/usr/bin/env python3
"""The quality table: fp16, RTN and GPTQ at 8/4/3/2 bits on the bundled stories15M.

Calibration: 128 x 256-token windows of the World English Bible (seed 0). Evaluation:
perplexity on data/stories15M-samples.txt (in-domain) and data/emma.txt (Austen, which the
model never saw), the first WINDOWS windows of 256 tokens of each. Prints a Markdown table
with quantization wall time and peak RSS (as `gptq quantize --json` measures them),
checkpoint size and bits per weight.

    python3 bench/quality_table.py [--windows 200] [--gptq build/gptq] [--out out/quality]

Standard library only; drives the `gptq` command line.
"""
import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_json(cmd):
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return json.loads(res.stdout)


def ppl(gptq, model, text, windows):
    return run_json([gptq, "ppl", str(model), "--text", str(text), "--max-windows", str(windows), "--json"])["ppl"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=200, help="256-token windows scored per text")
    ap.add_argument("--gptq", default=str(ROOT / "build" / "gptq"))
    ap.add_argument("--out", default=str(ROOT / "out" / "quality"))
    ap.add_argument("--bits", default="8,4,3,2")
    args = ap.parse_args()

    model = ROOT / "models" / "stories15M"
    texts = {"stories": ROOT / "data" / "stories15M-samples.txt", "emma": ROOT / "data" / "emma.txt"}
    calib = ROOT / "data" / "web-bible.txt"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # (label, method, group, order flags)
    variants = [
        ("RTN", "rtn", 32, []),
        ("RTN", "rtn", -1, []),
        ("GPTQ", "gptq", 32, ["--no-act-group-aware"]),
        ("GPTQ GAR", "gptq", 32, ["--act-group-aware"]),
        ("GPTQ act-order", "gptq", 32, ["--desc-act"]),
        ("GPTQ", "gptq", -1, []),
        ("GPTQ act-order", "gptq", -1, ["--desc-act"]),
    ]
    rows = []
    fp_size = sum(p.stat().st_size for p in model.glob("*.safetensors"))
    rows.append(["fp16", "16", "-", ppl(args.gptq, model, texts["stories"], args.windows),
                 ppl(args.gptq, model, texts["emma"], args.windows), "-", "-", fp_size / 1e6, "16.00", "16.00"])
    print_table(rows, args.windows)
    for bits in [int(b) for b in args.bits.split(",")]:
        for label, method, group, flags in variants:
            dest = out / f"{method}-{bits}b-g{group}-{label.replace(' ', '_')}"
            cmd = [args.gptq, "quantize", str(model), "--out", str(dest), "--method", method, "--bits", str(bits),
                   "--group-size", str(group), "--overwrite", "--json"] + flags
            if method == "gptq":
                cmd += ["--calib", str(calib), "--n-samples", "128", "--seq-len", "256", "--seed", "0"]
            q = run_json(cmd)
            rows.append([label, str(bits), str(group), ppl(args.gptq, dest, texts["stories"], args.windows),
                         ppl(args.gptq, dest, texts["emma"], args.windows), f"{q['seconds']:.1f}",
                         f"{q['peak_rss_bytes'] / 1e6:.0f}", q["tensor_bytes"] / 1e6, f"{q['bpw_quantized']:.2f}",
                         f"{q['bpw_total']:.2f}"])
            print_table(rows[-1:], args.windows, header=False)
    (out / "table.json").write_text(json.dumps(rows, indent=1))


def print_table(rows, windows, header=True):
    if header:
        print(f"| method | bits | group | ppl stories ({windows} win) | ppl emma ({windows} win) | quantize s "
              "| peak RSS MB | size MB | bits/quantized weight | bits/param overall |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.1f} | {r[5]} | {r[6]} | {r[7]:.1f} | {r[8]} | {r[9]} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
