#!/usr/bin/env python3
"""An independent numpy reference for gptq.cpp's bitsandbytes load-time quantization.

Quantizes stories15M's decoder-layer linears as bitsandbytes defines it -- NF4 / FP4
blockwise absmax (code books built here from their definitions: NF4 from the normal
quantiles, FP4 from its sign/exponent/mantissa bits; nearest code by argmin), double
quantization of the absmax values (mean offset, groups of 256, the signed dynamic map), and
LLM.int8 (row-wise int8 weights; per call, outlier columns |x| >= 6 kept in floating point,
row-wise int8 activations, integer products) -- runs the Llama forward pass in numpy fp32
and prints the perplexity of the first WINDOWS 256-token windows of the text under the
protocol of `gptq ppl` (one BOS, non-overlapping windows, tokens 1..255 of each scored).

Token ids come from `gptq tokenize` (the tokenizer is checked against Hugging Face's by
tests/test_tokenizer.cpp). Writes tests/fixtures/bnb/stories15M_ppl.json, which
tests/test_bnb_e2e.cpp compares with `gptq ppl --load-in-4bit` etc.

    pip install numpy
    python3 scripts/bnb_reference.py [--gptq build/gptq] [--windows 8]
"""
import argparse
import json
import math
import pathlib
import struct
import subprocess
from statistics import NormalDist

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "stories15M"
TEXT = ROOT / "data" / "stories15M-samples.txt"
CTX = 256


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F16": np.float16, "F32": np.float32, "BF16": None}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(info["shape"]).astype(np.float32)
    return out


def nf4_book():
    # QLoRA: quantiles of N(0,1) at linspace(offset, 0.5, 9)[:-1] and, negated,
    # linspace(offset, 0.5, 8)[:-1], plus 0, normalised by the largest.
    nd, off = NormalDist(), 0.9677083
    pos = [nd.inv_cdf(off + (0.5 - off) * i / 8) for i in range(8)]
    neg = [-nd.inv_cdf(off + (0.5 - off) * i / 7) for i in range(7)]
    v = sorted(pos + neg + [0.0])
    defined = np.array([x / v[-1] for x in v])
    # bitsandbytes' published floats (csrc/kernels.cu dDequantizeNF4): within 2e-7 of the
    # definition (its linspace ran in fp32), and used as they are, since a weight exactly
    # on a midpoint of these floats goes to the side bitsandbytes' tree sends it.
    published = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                          -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                          0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                          0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
    assert np.abs(published - defined).max() < 2e-7
    return published


def fp4_book():
    # Bit 3 sign, bits 2-1 exponent e, bit 0 mantissa m; e = 0 subnormal m/16, else
    # 2^(4-e) (1 + m/2); divided by 12.
    vals = []
    for q in range(16):
        e, m = (q >> 1) & 3, q & 1
        mag = m * 0.0625 if e == 0 else 2.0 ** (4 - e) * (1 + m / 2)
        vals.append((-1 if q & 8 else 1) * mag / 12)
    return np.array(vals, dtype=np.float32)


def dynamic_map():
    v = [0.0, 1.0]
    for e in range(7):
        for j in range(2 ** e):
            x = 10.0 ** (e - 6) * (0.1 + 0.9 * (j + 0.5) / 2 ** e)
            v += [x, -x]
    return np.array(sorted(v), dtype=np.float32)


def nearest(values, book):
    # The nearest entry of an ascending book, a value exactly on a midpoint going to the
    # lower entry: bitsandbytes' decision trees test `x > midpoint` (midpoints in double,
    # written as float literals). An argmin of |x - entry| in float32 can resolve such a
    # tie either way; stories15M has one weight exactly on an NF4 midpoint.
    mids = ((book[:-1].astype(np.float64) + book[1:].astype(np.float64)) / 2).astype(np.float32)
    return (values[:, None] > mids[None, :]).sum(axis=1)


def nearest_fp4(values, book):
    # FP4: the sign from x < 0, then the nearest magnitude (ties to the smaller).
    order = np.argsort(book[:8], kind="stable")  # codes 0-7 by magnitude
    mags = book[:8][order]
    q = order[nearest(np.abs(values), mags)]
    return np.where(values < 0, q | 8, q)


def quant_4bit(w, book, double_quant, blocksize=64, fp4=False):
    flat = w.reshape(-1)
    n = flat.size
    blocks = -(-n // blocksize)
    padded = np.zeros(blocks * blocksize, dtype=np.float32)
    padded[:n] = flat
    padded = padded.reshape(blocks, blocksize)
    absmax = np.abs(padded).max(axis=1).astype(np.float32)
    inv = np.where(absmax > 0, np.float32(1) / np.where(absmax > 0, absmax, 1), 0).astype(np.float32)
    normed = (padded * inv[:, None]).reshape(-1)
    q = (nearest_fp4(normed, book) if fp4 else nearest(normed, book)).reshape(blocks, blocksize)
    if double_quant:
        dmap = dynamic_map()
        offset = np.float32(absmax.astype(np.float64).mean())
        centred = (absmax - offset).astype(np.float32)
        decoded = np.empty_like(absmax)
        for g in range(0, blocks, 256):
            part = centred[g:g + 256]
            s = np.float32(np.abs(part).max())
            inv_s = np.float32(1) / s if s > 0 else np.float32(0)
            decoded[g:g + 256] = dmap[nearest((part * inv_s).astype(np.float32), dmap)] * s + offset
        absmax = decoded.astype(np.float32)
    deq = (book[q] * absmax[:, None]).reshape(-1)[:n]
    return deq.reshape(w.shape).astype(np.float32)


class Int8Linear:
    """LLM.int8 at inference (bitsandbytes MatMul8bitLt, threshold 6)."""

    def __init__(self, w, threshold=6.0):
        self.scb = np.abs(w).max(axis=1).astype(np.float32)
        scale = np.where(self.scb > 0, np.float32(127) / np.where(self.scb > 0, self.scb, 1), 0).astype(np.float32)
        self.cb = np.rint(w * scale[:, None]).astype(np.int64)  # rint: half to even
        self.t = threshold

    def __call__(self, x):
        outl = (np.abs(x) >= self.t).any(axis=0)
        masked = np.where(np.abs(x) >= self.t, 0, np.abs(x))
        r = masked.max(axis=1).astype(np.float32)
        s = np.where(r > 0, np.float32(127) / np.where(r > 0, r, 1), 0).astype(np.float32)
        ca = np.rint(x * s[:, None]).astype(np.int64)
        ca[:, outl] = 0
        acc = ca @ self.cb.T  # exact
        # The scaling in fp32, as bitsandbytes' dequant kernel (and gptq.cpp) does it: int8
        # rounding downstream makes the result sensitive to the last bit of each output.
        y = acc.astype(np.float32) * (r[:, None] * self.scb[None, :] * np.float32(1 / 16129))
        if outl.any():
            wdeq = self.cb[:, outl].astype(np.float32) * (self.scb[:, None] * np.float32(1 / 127))
            y = y + x[:, outl] @ wdeq.T
        return y.astype(np.float32)


def forward_nll(weights, linears, cfg, ids):
    d, heads, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    T = len(ids)
    inv_freq = (1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd)).astype(np.float32)
    ang = np.arange(T, dtype=np.float32)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def norm(x, w):
        return (x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * w).astype(np.float32)

    def rope(x):  # x [T, heads, hd], rotate-half
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    h = weights["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        L = lambda name, x: linears[p + name](x)
        x = norm(h, weights[p + "input_layernorm.weight"])
        q = rope(L("self_attn.q_proj", x).reshape(T, heads, hd))
        k = rope(L("self_attn.k_proj", x).reshape(T, heads, hd))
        v = L("self_attn.v_proj", x).reshape(T, heads, hd)
        att = np.einsum("thd,shd->hts", q, k) / np.float32(math.sqrt(hd)) + mask
        att = np.exp(att - att.max(axis=-1, keepdims=True))
        att /= att.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, heads * hd)
        h = h + L("self_attn.o_proj", o)
        x = norm(h, weights[p + "post_attention_layernorm.weight"])
        g, u = L("mlp.gate_proj", x), L("mlp.up_proj", x)
        h = h + L("mlp.down_proj", (g / (1 + np.exp(-g))) * u)
    logits = norm(h, weights["model.norm.weight"]).astype(np.float64) @ weights["model.embed_tokens.weight"].T.astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
    return float((lse[:-1] - logits[np.arange(T - 1), ids[1:]]).sum()), T - 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptq", default=str(ROOT / "build" / "gptq"))
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "bnb" / "stories15M_ppl.json"))
    a = ap.parse_args()
    cfg = json.loads((MODEL / "config.json").read_text())
    weights = read_safetensors(MODEL / "model.safetensors")
    # A prefix long enough for the windows; BPE merges near its cut do not reach back
    # thousands of tokens.
    text = TEXT.read_text(encoding="utf-8")[: a.windows * CTX * 8]
    ids = json.loads(subprocess.check_output([a.gptq, "tokenize", str(MODEL), "--text", text, "--json"]))["ids"]
    assert len(ids) >= a.windows * CTX, "text prefix too short"
    ids = np.array(ids[: a.windows * CTX])
    names = [n[: -len(".weight")] for n in weights if n.startswith("model.layers.") and n.endswith("_proj.weight")]

    def dense(w):
        return lambda x: (x @ w.T).astype(np.float32)

    variants = {
        "base": {n: dense(weights[n + ".weight"]) for n in names},
        "nf4": {n: dense(quant_4bit(weights[n + ".weight"], nf4_book(), False)) for n in names},
        "nf4_dq": {n: dense(quant_4bit(weights[n + ".weight"], nf4_book(), True)) for n in names},
        "fp4": {n: dense(quant_4bit(weights[n + ".weight"], fp4_book(), False, fp4=True)) for n in names},
        "int8": {n: Int8Linear(weights[n + ".weight"]) for n in names},
    }
    result = {"model": "models/stories15M", "text": "data/stories15M-samples.txt", "ctx": CTX, "windows": a.windows,
              "made_by": "scripts/bnb_reference.py (numpy " + np.__version__ + ")", "ppl": {}}
    for key, lin in variants.items():
        nll, count = 0.0, 0
        for w in range(a.windows):
            s, c = forward_nll(weights, lin, cfg, ids[w * CTX:(w + 1) * CTX])
            nll, count = nll + s, count + c
        result["ppl"][key] = math.exp(nll / count)
        print(f"{key:7s} ppl {result['ppl'][key]:.6f}", flush=True)
    pathlib.Path(a.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
