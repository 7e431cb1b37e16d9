#!/usr/bin/env python3
"""Reference outputs for SmolLM2-135M-Instruct (GGUF) from implementations independent of ours.

Writes tests/fixtures/smollm2/{tokenizer_cases.jsonl,logits.json}:
- tokenizer_cases.jsonl: {"text", "ids"} encoded by the tokenizer transformers builds from the
  GGUF's metadata (transformers.integrations.gguf.convert_gguf_tokenizer, run by the `tokenizers`
  library), with the special tokens added by its post-processor.
- logits.json: for a few prompts, per position logsumexp and argmax, and the last row's 64 largest logits of a float64
  numpy forward pass of the Llama architecture (as transformers' LlamaForCausalLM defines it) over
  weights dequantized by gguf-py (llama.cpp's own Python package), rounded to fp16 as our loader
  rounds them, with q/k rows un-permuted by transformers' own rule.

Runs on the CPU without torch (transformers' GGUF reader imports torch, so the metadata is read
with gguf-py and handed to transformers' builder). Needs a virtual environment outside the
project:  python3 -m venv V && V/bin/pip install transformers tokenizers gguf numpy
then:     V/bin/python scripts/make_smollm2_reference.py .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import sys
from pathlib import Path

import gguf
import numpy as np
from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "smollm2"

CASES = [
    "", " ", "  ", "   leading", "trailing   ", "\t\ttabs\tand\nnewlines\n\n\n", "\r\n windows \r\n",
    "Hello world", "Hello, world!", "hello\u00a0non-breaking", "12345", "3.14159 and 2,718", "1 2 3 4 5",
    "x1y22z333", "In 1815, Emma was 21.", "phone: +44 (0)20 7946-0958", "0x1F 0b1010 1e-5",
    "don't won't I'm you're they've she'll he'd", "DON'T WON'T", "a--b...c!!!d???", "email@example.com",
    "https://example.org/path?q=1&r=2#frag", "C:\\Users\\file.txt", "def f(x):\n    return x ** 2\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }", "<html><body>Hi</body></html>",
    "emoji 😀🎉👍🏽 and 🇫🇷", "CJK 中文字符 日本語のテキスト 한국어", "combining e\u0301 a\u0300 n\u0303",
    "Ångström café naïve façade", "Ελληνικά Русский עברית العربية", "mathematics ∑ ∫ √ ∞ ≠ ≤",
    "<|im_start|>user\nHi<|im_end|>\n", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>", "text<|endoftext|>more", "<|im_end|><|im_start|>", "<repo_name>gptq<file_sep>main.cpp",
    "< |im_start| >", "<|im_start", "\u0000control\u0001chars\u007f", "    indented code", "a" * 300,
    "The quick brown fox jumps over the lazy dog.", "It is a truth universally acknowledged, that a single "
    "man in possession of a good fortune, must be in want of a wife.",
    "In the beginning God created the heavens and the earth.", "Mr. and Mrs. Dashwood", "—em dash— and –en dash–",
    "“curly quotes” and ‘single’", "tab\there", "$100.00 €50 £20 ¥1000", "#hashtag @mention", "snake_case camelCase",
]


def tokenizer_cases(reader, meta):
    td = {name: meta[f"tokenizer.{key}"] for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
          if f"tokenizer.{key}" in meta}
    tok, _ = convert_gguf_tokenizer(meta["general.architecture"], td)
    texts = list(CASES)
    for path in ("data/emma.txt", "data/web-bible.txt"):
        lines = [l for l in (Path(__file__).resolve().parent.parent / path).read_text().splitlines() if l.strip()]
        texts += lines[100:100 + 80:1]
    with open(OUT / "tokenizer_cases.jsonl", "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t, "ids": tok.encode(t).ids}, ensure_ascii=False) + "\n")
    return tok, len(texts)


def weights(reader, meta):
    heads = int(meta["llama.attention.head_count"])
    kv_heads = int(meta["llama.attention.head_count_kv"])
    w = {}
    for t in reader.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        x = x.reshape([int(d) for d in reversed(t.shape)]) if x.ndim != len(t.shape) else x
        x = x.astype(np.float16).astype(np.float64)
        if ".attn_q." in t.name or ".attn_k." in t.name:
            n = heads if ".attn_q." in t.name else kv_heads
            # transformers' LlamaTensorProcessor._reverse_permute_weights
            x = x.reshape(n, x.shape[0] // n // 2, 2, *x.shape[1:]).swapaxes(2, 1).reshape(x.shape)
        w[t.name] = x
    return w


def forward(w, meta, ids):
    hidden = int(meta["llama.embedding_length"])
    heads = int(meta["llama.attention.head_count"])
    kv = int(meta["llama.attention.head_count_kv"])
    layers = int(meta["llama.block_count"])
    eps = float(meta["llama.attention.layer_norm_rms_epsilon"])
    theta = float(meta["llama.rope.freq_base"])
    hd = hidden // heads
    T = len(ids)
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.outer(np.arange(T), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x):  # [n, T, hd], rotate-half
        r = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos + r * sin

    h = w["token_embd.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(layers):
        p = f"blk.{i}."
        x = norm(h, w[p + "attn_norm.weight"])
        q = (x @ w[p + "attn_q.weight"].T).reshape(T, heads, hd).transpose(1, 0, 2)
        k = (x @ w[p + "attn_k.weight"].T).reshape(T, kv, hd).transpose(1, 0, 2)
        v = (x @ w[p + "attn_v.weight"].T).reshape(T, kv, hd).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, heads // kv, 0), np.repeat(v, heads // kv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        h = h + a.transpose(1, 0, 2).reshape(T, hidden) @ w[p + "attn_output.weight"].T
        x = norm(h, w[p + "ffn_norm.weight"])
        g = x @ w[p + "ffn_gate.weight"].T
        h = h + ((g / (1 + np.exp(-g))) * (x @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    head = w.get("output.weight", w["token_embd.weight"])
    return norm(h, w["output_norm.weight"]) @ head.T


def main():
    reader = gguf.GGUFReader(sys.argv[1])
    meta = {k: f.contents() for k, f in reader.fields.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    tok, n = tokenizer_cases(reader, meta)
    print(f"{n} tokenizer cases")
    w = weights(reader, meta)
    prompts = ["The capital of France is", "It is a truth universally acknowledged, that a single man in possession",
               "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
               "In the beginning God created the heaven and the earth. And the earth was without form"]
    out = []
    for p in prompts:
        ids = tok.encode(p).ids
        logits = forward(w, meta, ids)
        m = logits.max(-1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1))).tolist()
        top = np.argsort(-logits[-1])[:64]
        out.append({"prompt": p, "ids": ids, "logsumexp": lse, "argmax": logits.argmax(-1).tolist(),
                    "top64_ids": top.tolist(), "top64_logits": logits[-1][top].tolist()})
        print(p[:40], "->", out[-1]["top64_ids"][:3])
    (OUT / "logits.json").write_text(json.dumps({"source": "numpy float64 forward, gguf-py dequantization, fp16-rounded weights",
                                                 "cases": out}))


if __name__ == "__main__":
    main()
