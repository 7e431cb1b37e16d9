#!/usr/bin/env python3
"""The quality tables: fp16, RTN and GPTQ at several bit widths and group sizes.

--model stories15M (the bundled model): calibration 128 x 256-token windows of the World
English Bible (seed 0); perplexity on data/stories15M-samples.txt (in-domain) and
data/emma.txt (Austen, which the model never saw), the first WINDOWS windows of 256 tokens
of each; 8/4/3/2 bits, groups 32 and -1, RTN / GPTQ / GAR / act-order.

--model smollm2 (SmolLM2-135M-Instruct, read from its GGUF as fetched by
scripts/fetch_smollm2; "fp16" is that Q4_1 file dequantized): calibration 32 x 512-token
windows of the Bible (seed 0); perplexity on Emma (data/emma.txt) and Pride and Prejudice
(../shared/data/austen/pride-and-prejudice.txt), the first WINDOWS windows of 512 tokens of
each; a reduced grid (CPU time is scarce): 4-bit g128 and g32 for every method, 4-bit g-1,
3-bit g128, 8-bit g128, 2-bit g64, and RTN asym g32 (nearly the file's own Q4_1 grid).

Both presets end with bitsandbytes' load-time quantization of the same base model (no
checkpoint: `gptq ppl --load-in-4bit=nf4|fp4 [--double-quant]` or `--load-in-8bit`, block
64): NF4, NF4 + double quant, FP4, LLM.int8. Their "quantize s" is "-" (it happens at load)
and their size is the base model's with the linears at their resident quantized size.

Prints a Markdown table with quantization wall time and peak RSS (as `gptq quantize --json`
measures them), checkpoint size and bits per weight.

    python3 bench/quality_table.py [--model stories15M|smollm2] [--windows N] [--gptq build/gptq] [--out DIR]
                                   [--only REGEX] [--no-fp16]

--only keeps the rows whose "LABEL BITS gGROUP" (e.g. "GPTQ act-order 4 g32") matches REGEX.

Standard library only; drives the `gptq` command line.
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

# (label, method, bits, group, extra flags). GPTQ rows name their column order explicitly,
# since the CLI's default is GAR.
PLAIN, GAR, ACT = ["--no-act-group-aware"], ["--act-group-aware"], ["--desc-act"]


# Load-time rows: (label, "bnb", bits, block, ppl flags); LLM.int8 is per row ("row").
BNB = [("bnb NF4", "bnb", 4, 64, ["--load-in-4bit=nf4"]),
       ("bnb NF4 + DQ", "bnb", 4, 64, ["--load-in-4bit=nf4", "--double-quant"]),
       ("bnb FP4", "bnb", 4, 64, ["--load-in-4bit=fp4"]),
       ("bnb LLM.int8", "bnb", 8, "row", ["--load-in-8bit"])]


def stories_variants(bits_list):
    rows = []
    for bits in bits_list:
        rows += [("RTN", "rtn", bits, 32, []), ("RTN", "rtn", bits, -1, []),
                 ("GPTQ", "gptq", bits, 32, PLAIN), ("GPTQ GAR", "gptq", bits, 32, GAR),
                 ("GPTQ act-order", "gptq", bits, 32, ACT), ("GPTQ", "gptq", bits, -1, []),
                 ("GPTQ act-order", "gptq", bits, -1, ACT)]
    return rows + [v for v in BNB if v[2] in bits_list]


def smollm2_variants(bits_list):
    grid = {
        8: [("RTN", "rtn", 8, 128, []), ("GPTQ GAR", "gptq", 8, 128, GAR)],
        4: [("RTN", "rtn", 4, 128, []), ("GPTQ", "gptq", 4, 128, PLAIN), ("GPTQ GAR", "gptq", 4, 128, GAR),
            ("GPTQ act-order", "gptq", 4, 128, ACT), ("GPTQ MSE", "gptq", 4, 128, PLAIN + ["--mse"]),
            ("RTN", "rtn", 4, 32, []), ("RTN asym", "rtn", 4, 32, ["--asym"]), ("GPTQ", "gptq", 4, 32, PLAIN),
            ("GPTQ GAR", "gptq", 4, 32, GAR), ("GPTQ act-order", "gptq", 4, 32, ACT),
            ("RTN", "rtn", 4, -1, []), ("GPTQ act-order", "gptq", 4, -1, ACT)],
        3: [("RTN", "rtn", 3, 128, []), ("GPTQ GAR", "gptq", 3, 128, GAR), ("GPTQ act-order", "gptq", 3, 128, ACT)],
        2: [("RTN", "rtn", 2, 64, []), ("GPTQ GAR", "gptq", 2, 64, GAR), ("GPTQ act-order", "gptq", 2, 64, ACT)],
    }
    return [v for bits in bits_list for v in grid.get(bits, [])] + [v for v in BNB if v[2] in bits_list]


PRESETS = {
    "stories15M": {
        "model": ROOT / "models" / "stories15M",
        "texts": {"stories": ROOT / "data" / "stories15M-samples.txt", "emma": ROOT / "data" / "emma.txt"},
        "ctx": 256, "windows": 200, "n_samples": 128, "seq_len": 256, "variants": stories_variants,
    },
    "smollm2": {
        "model": ROOT / ".cache" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf",
        "texts": {"emma": ROOT / "data" / "emma.txt",
                  "pride": SHARED / "data" / "austen" / "pride-and-prejudice.txt"},
        "ctx": 512, "windows": 16, "n_samples": 32, "seq_len": 512, "variants": smollm2_variants,
    },
}


def run_json(cmd):
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return json.loads(res.stdout)


def ppl_json(gptq, model, text, ctx, windows, flags=()):
    return run_json([gptq, "ppl", str(model), "--text", str(text), "--ctx", str(ctx), "--max-windows", str(windows),
                     "--json", *flags])


def ppl(gptq, model, text, ctx, windows):
    return ppl_json(gptq, model, text, ctx, windows)["ppl"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(PRESETS), default="stories15M")
    ap.add_argument("--windows", type=int, help="windows scored per text (default: 200 stories15M, 16 smollm2)")
    ap.add_argument("--gptq", default=str(ROOT / "build" / "gptq"))
    ap.add_argument("--out", help="where the checkpoints go (default: out/quality-MODEL)")
    ap.add_argument("--bits", default="8,4,3,2")
    ap.add_argument("--only", help="regex: run only the rows whose \"LABEL BITS gGROUP\" matches")
    ap.add_argument("--no-fp16", action="store_true", help="skip the unquantized row")
    args = ap.parse_args()

    p = PRESETS[args.model]
    windows = args.windows or p["windows"]
    model, texts = p["model"], p["texts"]
    for path in [model, *texts.values()]:
        if not path.exists():
            sys.exit(f"quality_table: {path} is missing" +
                     (" (run scripts/fetch_smollm2)" if path == model and args.model == "smollm2" else ""))
    calib = ROOT / "data" / "web-bible.txt"
    out = pathlib.Path(args.out or ROOT / "out" / f"quality-{args.model}")
    out.mkdir(parents=True, exist_ok=True)
    names = list(texts)

    def evaluate(m):
        return [ppl(args.gptq, m, texts[n], p["ctx"], windows) for n in names]

    # fp16 size: every parameter in 2 bytes (the GGUF itself is smaller: it is Q4_1).
    params = run_json([args.gptq, "info", str(model), "--json"])["parameters"]
    fp_size = params * 2
    rows = [] if args.no_fp16 else [["fp16", "16", "-", *evaluate(model), "-", "-", fp_size / 1e6, "16.00", "16.00"]]
    print_table(rows, names, p["ctx"], windows)
    for label, method, bits, group, flags in p["variants"]([int(b) for b in args.bits.split(",")]):
        if args.only and not re.search(args.only, f"{label} {bits} g{group}"):
            continue
        if method == "bnb":
            runs = [ppl_json(args.gptq, model, texts[n], p["ctx"], windows, flags) for n in names]
            lq = runs[0]["load_quantization"]
            size = fp_size - 2 * lq["weights"] + lq["quantized_bytes"]
            rows.append([label, str(bits), str(group), *[r["ppl"] for r in runs], "-",
                         f"{max(r['memory']['peak_host_bytes'] for r in runs) / 1e6:.0f}", size / 1e6,
                         f"{lq['quantized_bytes'] * 8 / lq['weights']:.2f}", f"{size * 8 / params:.2f}"])
            print_table(rows[-1:], names, p["ctx"], windows, header=False)
            continue
        dest = out / f"{method}-{bits}b-g{group}-{label.replace(' ', '_')}"
        cmd = [args.gptq, "quantize", str(model), "--out", str(dest), "--method", method, "--bits", str(bits),
               "--group-size", str(group), "--overwrite", "--json"] + flags
        if method == "gptq":
            cmd += ["--calib", str(calib), "--n-samples", str(p["n_samples"]), "--seq-len", str(p["seq_len"]),
                    "--seed", "0"]
        q = run_json(cmd)
        rows.append([label, str(bits), str(group), *evaluate(dest), f"{q['seconds']:.1f}",
                     f"{q['peak_rss_bytes'] / 1e6:.0f}", q["tensor_bytes"] / 1e6, f"{q['bpw_quantized']:.2f}",
                     f"{q['bpw_total']:.2f}"])
        print_table(rows[-1:], names, p["ctx"], windows, header=False)
    (out / "table.json").write_text(json.dumps(rows, indent=1))


def print_table(rows, names, ctx, windows, header=True):
    if header:
        cols = " | ".join(f"ppl {n} ({windows}×{ctx})" for n in names)
        print(f"| method | bits | group | {cols} | quantize s | peak RSS MB | size MB | bits/quantized weight "
              "| bits/param overall |")
        print("|---" * (8 + len(names)) + "|")
    for r in rows:
        k = len(names)
        ppls = " | ".join(f"{v:.3f}" if v < 100 else f"{v:.1f}" for v in r[3:3 + k])
        rest = r[3 + k:]
        print(f"| {r[0]} | {r[1]} | {r[2]} | {ppls} | {rest[0]} | {rest[1]} | {rest[2]:.1f} | {rest[3]} | {rest[4]} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
