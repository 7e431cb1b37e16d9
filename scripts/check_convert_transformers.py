#!/usr/bin/env python3
"""`gptq convert` output, loaded by Hugging Face transformers, is the model gptq.cpp runs.

For each of --dtype f32 and f16, converts the SmolLM2 GGUF to a Hugging Face directory with
`gptq convert`, loads that directory with AutoModelForCausalLM (fp32 compute) and AutoTokenizer,
and checks:
- logits: gptq.cpp's next-token distributions on the same directory, written by
  `gptq kld DIR --save-base-logits F` (the target's exact fp32 log-probability per row, and the
  whole row at 16 bits: error <= scale/2), against transformers' log_softmax over a text that
  starts with a conversation rendered by the directory's chat template (apply_chat_template);
  the perplexity of both over that text.
- f16 only: transformers' logits against tests/fixtures/smollm2/logits.json, the float64 numpy
  forward over the same fp16-rounded weights (the f32 directory holds the unrounded dequantized
  weights, which that reference does not describe).
- SentencePiece: the converted tests/fixtures/sentencepiece GGUF (a Llama-2 vocabulary, no
  tensors; scripts/make_sentencepiece_gguf.py): AutoTokenizer(DIR)'s ids and decodings for its
  cases, and its tokenizer.json as the `tokenizers` library rewrites it, against
  AutoTokenizer.from_pretrained(gguf_file=)'s.
- tokenizer: AutoTokenizer(DIR)'s ids for the 213 cases of tests/fixtures/smollm2/tokenizer_cases.jsonl
  (made by the tokenizer transformers builds from the GGUF) and for the text above (against the
  ids gptq.cpp stored with its log-probabilities); the chat template string against the GGUF's
  tokenizer.chat_template, and the rendered conversation's ids against AutoTokenizer(gguf_file=).

Logit bound: both sides compute in fp32 from the same weights, summing in different orders;
tests/reference_tolerance.h derives |dlogit| <= 3 (8L + 1) u sqrt(K) max|logit row| (u = 2^-24,
L layers, K the widest reduction). A log-probability is a logit minus the row's logsumexp, each
within that bound, so log-probabilities are compared within twice it.

Prints one table; exits 1 on any mismatch. Needs a virtual environment with torch, transformers,
tokenizers and gguf (CPU torch is enough: a 135M model in fp32):
    V/bin/python scripts/check_convert_transformers.py --gptq build/gptq \
        --gguf .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "smollm2"
CONVERSATION = [{"role": "user", "content": "What is the capital of France, and what river runs through it?"},
                {"role": "assistant", "content": "The capital of France is Paris; the Seine runs through it."},
                {"role": "user", "content": "Write one sentence about Emma Woodhouse."}]
CTX, WINDOWS = 128, 3  # 381 scored rows: the conversation, then Emma


def logit_tolerance(layers, widest_k, row_max_abs):
    """tests/reference_tolerance.h's bound for one row whose largest |logit| is row_max_abs."""
    return 3.0 * (8 * layers + 1) * 2.0 ** -24 * math.sqrt(widest_k) * row_max_abs


class Table:
    def __init__(self):
        self.rows, self.failed = [], False

    def add(self, check, measured, bound, ok=None):
        """ok=None: a figure shown for information, checked by another row."""
        self.rows.append((check, measured, bound, "" if ok is None else "ok" if ok else "FAIL"))
        self.failed |= ok is False

    def print(self):
        widths = [max(len(r[i]) for r in self.rows + [("check", "measured", "bound", "")]) for i in range(4)]
        for r in [("check", "measured", "bound", "")] + self.rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def read_gptq_logprobs(path):
    """`gptq kld --save-base-logits` (src/eval/base_logprobs.h): tokens, per row scale, lo, target, codes."""
    raw = path.read_bytes()
    if raw[:8] != b"GPTQKLD1":
        raise SystemExit(f"{path}: not a gptq base log-probs file")
    n = int.from_bytes(raw[8:16], "little")
    header = json.loads(raw[16:16 + n])
    vocab, ctx, windows = header["vocab"], header["ctx"], header["windows"]
    at = 16 + n
    tokens = np.frombuffer(raw, "<i4", windows * ctx, at).reshape(windows, ctx)
    at += tokens.nbytes
    row = np.dtype([("scale", "<f4"), ("lo", "<f4"), ("target", "<f4"), ("codes", "<u2", (vocab,))])
    rows = np.frombuffer(raw, row, windows * (ctx - 1), at).reshape(windows, ctx - 1)
    return tokens, rows


def compare_logprobs(gptq, model_dir, text, model, config, table, label):
    """gptq.cpp's distributions on model_dir against transformers' on the same directory."""
    with tempfile.TemporaryDirectory() as tmp:
        text_file, lp_file = Path(tmp) / "text.txt", Path(tmp) / "lp.bin"
        text_file.write_text(text)
        subprocess.run([gptq, "kld", str(model_dir), "--text", str(text_file), "--ctx", str(CTX),
                        "--max-windows", str(WINDOWS), "--save-base-logits", str(lp_file)],
                       check=True, stderr=subprocess.DEVNULL)
        tokens, rows = read_gptq_logprobs(lp_file)
    layers, widest = config.num_hidden_layers, max(config.hidden_size, config.intermediate_size)
    worst_ratio, worst_target, nll_ours, nll_hf = 0.0, 0.0, [], []
    for w in range(tokens.shape[0]):
        with torch.no_grad():
            logits = model(torch.tensor(tokens[w:w + 1], dtype=torch.long)).logits[0, :-1].double().numpy()
        lp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        bound = 2 * np.array([logit_tolerance(layers, widest, m) for m in np.abs(logits).max(-1)])
        r = rows[w]
        targets = tokens[w, 1:]
        d_target = np.abs(r["target"].astype(np.float64) - lp[np.arange(len(targets)), targets])
        worst_ratio = max(worst_ratio, float((d_target / bound).max()))
        worst_target = max(worst_target, float(d_target.max()))
        # The 16-bit rows: within scale/2 (plus the decode's fp32 rounding) above the bound; code 0
        # means "at or below lo".
        scale, lo = r["scale"].astype(np.float64)[:, None], r["lo"].astype(np.float64)[:, None]
        codes = r["codes"].astype(np.float64)
        slack = bound[:, None] + scale / 2 + 4 * 2.0 ** -24 * np.abs(lo)
        decoded = lo + scale * codes
        over = np.where(codes > 0, np.abs(decoded - lp), np.maximum(lp - lo, 0.0)) / slack
        worst_ratio = max(worst_ratio, float(over.max()))
        nll_ours += (-r["target"].astype(np.float64)).tolist()
        nll_hf += (-lp[np.arange(len(targets)), targets]).tolist()
    n = len(nll_ours)
    table.add(f"{label}: log-probs, {n} rows x {config.vocab_size} (worst |d|/bound)", f"{worst_ratio:.3f}", "1",
              worst_ratio <= 1.0)
    table.add(f"{label}: max |d log p(target)|", f"{worst_target:.2e}", "(in the row above)")
    ppl_ours, ppl_hf = math.exp(sum(nll_ours) / n), math.exp(sum(nll_hf) / n)
    rel = abs(ppl_ours / ppl_hf - 1)
    table.add(f"{label}: ppl ours {ppl_ours:.4f} vs transformers {ppl_hf:.4f}", f"{rel:.2e}", "1e-3", rel <= 1e-3)
    return tokens.reshape(-1).tolist()


def compare_fixture_logits(model, config, table):
    """transformers on the f16 directory against the float64 reference over the same weights."""
    ref = json.loads((FIXTURES / "logits.json").read_text())
    layers, widest = config.num_hidden_layers, max(config.hidden_size, config.intermediate_size)
    worst, worst_abs, argmax_ok = 0.0, 0.0, True
    for case in ref["cases"]:
        with torch.no_grad():
            logits = model(torch.tensor([case["ids"]], dtype=torch.long)).logits[0].double().numpy()
        tol = np.array([logit_tolerance(layers, widest, m) for m in np.abs(logits).max(-1)])
        lse = np.logaddexp.reduce(logits, axis=-1)
        d = np.abs(lse - np.array(case["logsumexp"]))
        worst, worst_abs = max(worst, float((d / tol).max())), max(worst_abs, float(d.max()))
        d = np.abs(logits[-1, case["top64_ids"]] - np.array(case["top64_logits"]))
        worst, worst_abs = max(worst, float((d / tol[-1]).max())), max(worst_abs, float(d.max()))
        for t, want in enumerate(case["argmax"]):  # a different argmax only at a near-tie
            got = int(logits[t].argmax())
            argmax_ok &= got == want or abs(logits[t, got] - logits[t, want]) <= 2 * tol[t]
    table.add("f16: transformers vs float64 reference (logits.json), worst |d|/bound", f"{worst:.3f}", "1",
              worst <= 1.0)
    table.add("f16: max |d logit| / |d logsumexp| vs reference", f"{worst_abs:.2e}", "(in the row above)")
    table.add("f16: argmax per position (or a near-tie)", "same" if argmax_ok else "differs", "same", argmax_ok)


def compare_tokenizer(tk, gguf_tk, meta_template, model_dir, table, label):
    cases = [json.loads(line) for line in (FIXTURES / "tokenizer_cases.jsonl").read_text().splitlines()]
    bad = [c["text"] for c in cases if tk.encode(c["text"]) != c["ids"]]
    table.add(f"{label}: AutoTokenizer(DIR) ids = GGUF tokenizer's, {len(cases)} cases",
              f"{len(cases) - len(bad)}/{len(cases)}", f"{len(cases)}/{len(cases)}", not bad)
    for text in bad[:5]:
        print(f"  differs: {text!r}")
    template = json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]
    table.add(f"{label}: chat_template = GGUF tokenizer.chat_template", "same" if template == meta_template else "differs",
              "same", template == meta_template)
    ours = tk.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    theirs = gguf_tk.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    ours, theirs = [list(x["input_ids"] if hasattr(x, "keys") else x) for x in (ours, theirs)]
    table.add(f"{label}: rendered conversation ids = AutoTokenizer(gguf_file=)'s",
              f"{len(ours)} ids, {'same' if ours == theirs else 'differs'}", "same", ours == theirs)
    specials = all(getattr(tk, n) == getattr(gguf_tk, n) for n in ("bos_token", "eos_token", "pad_token"))
    table.add(f"{label}: bos/eos/pad tokens = AutoTokenizer(gguf_file=)'s", f"{tk.bos_token}/{tk.eos_token}/{tk.pad_token}",
              "same", specials)


def compare_sentencepiece(gptq, table):
    """Our tokenizer files for a SentencePiece GGUF, loaded by transformers, against its own."""
    fixture = ROOT / "tests" / "fixtures" / "sentencepiece"
    cases = [json.loads(line) for line in (fixture / "tokenizer_cases.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sp"
        subprocess.run([gptq, "convert", str(fixture / "stories15M-tokenizer.gguf"), "--out", str(out)],
                       check=True, stderr=subprocess.DEVNULL)
        tk = AutoTokenizer.from_pretrained(out)
        theirs = AutoTokenizer.from_pretrained(fixture, gguf_file="stories15M-tokenizer.gguf", cache_dir=tmp)
    bad = [c["text"] for c in cases
           if tk.encode(c["text"]) != c["ids"] or tk.decode(c["ids"], skip_special_tokens=True) != c["decoded"]]
    table.add(f"sentencepiece: AutoTokenizer(DIR) ids and decoding, {len(cases)} cases",
              f"{len(cases) - len(bad)}/{len(cases)}", f"{len(cases)}/{len(cases)}", not bad)
    for text in bad[:5]:
        print(f"  differs: {text!r}")
    same = json.loads(tk.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    table.add("sentencepiece: tokenizer.json = transformers' own from the GGUF", "same" if same else "differs", "same",
              same)
    names = ("bos_token", "eos_token", "unk_token", "pad_token")
    specials = all(getattr(tk, n) == getattr(theirs, n) for n in names)
    table.add("sentencepiece: bos/eos/unk/pad tokens = AutoTokenizer(gguf_file=)'s",
              "/".join(str(getattr(tk, n)) for n in names), "same", specials)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gptq", required=True, help="the gptq CLI binary")
    ap.add_argument("--gguf", required=True, type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # "sequence longer than model_max_length": encode only
    reader = gguf.GGUFReader(args.gguf)
    meta_template = reader.fields["tokenizer.chat_template"].contents()
    gguf_tk = AutoTokenizer.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name)
    emma = (ROOT / "data" / "emma.txt").read_text()
    table = Table()
    compare_sentencepiece(args.gptq, table)
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("f32", "f16"):
            out = Path(tmp) / dtype
            subprocess.run([args.gptq, "convert", str(args.gguf), "--out", str(out), "--dtype", dtype],
                           check=True, stderr=subprocess.DEVNULL)
            tk = AutoTokenizer.from_pretrained(out)
            model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
            compare_tokenizer(tk, gguf_tk, meta_template, out, table, dtype)
            text = tk.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True) + emma[:4000]
            ours = compare_logprobs(args.gptq, out, text, model, model.config, table, dtype)
            theirs = tk.encode(text)[:len(ours)]
            table.add(f"{dtype}: ids of that text, ours = AutoTokenizer(DIR)'s", "same" if ours == theirs else "differs",
                      "same", ours == theirs)
            if dtype == "f16":
                compare_fixture_logits(model, model.config, table)
            del model
    table.print()
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
