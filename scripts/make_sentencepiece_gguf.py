#!/usr/bin/env python3
"""A SentencePiece (`tokenizer.ggml.model = llama`) GGUF and the ids transformers gives with it.

Writes tests/fixtures/sentencepiece/:
- stories15M-tokenizer.gguf: stories15M's Llama-2 vocabulary (models/stories15M/tokenizer.json)
  written with gguf-py's GGUFWriter the way llama.cpp's converter writes a SentencePiece
  vocabulary (its SentencePiece branch copies each piece, its score and its type from
  tokenizer.model, and writes no merges), with the model's hyperparameters and no tensors.
  The file has no tokenizer.model to copy scores from, so they are rebuilt from what a
  SentencePiece BPE model holds: learned piece i scores -i (so ids 259, 260, ... score 0, -1,
  ...), except the whitespace-run pieces ("▁▁", "▁▁▁▁", ...), which Llama's model inserted with
  one very low score (-1e9: in tokenizer.json their merges come last); <unk>, <s>, </s> and the
  byte pieces <0x00>..<0xFF> score 0. Types: <unk> UNKNOWN, <s> and </s> CONTROL, <0xNN> BYTE,
  the rest NORMAL.
- tokenizer_cases.jsonl: {"text", "ids", "decoded", "tokenizer_json_ids"}: `ids` from the
  tokenizer transformers builds from that GGUF (AutoTokenizer.from_pretrained(gguf_file=), run by
  the `tokenizers` library), `decoded` its decoding of them without special tokens,
  `tokenizer_json_ids` from stories15M's own tokenizer.json, over the
  SmolLM2 case texts (tests/fixtures/smollm2) and stories15M's reference cases (../shared).
Prints where the two disagree.

Needs a virtual environment with transformers, tokenizers, gguf and torch (transformers'
GGUF loader imports it):  V/bin/python scripts/make_sentencepiece_gguf.py
"""
import json
import re
import sys
import tempfile
from pathlib import Path

import gguf
from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "sentencepiece"
MODEL = ROOT / "models" / "stories15M"
GGUF_NAME = "stories15M-tokenizer.gguf"


def pieces():
    """(piece, score, type) in id order, rebuilt as the module docstring says."""
    vocab = json.loads((MODEL / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    first_learned = 259
    out = []
    for i, t in enumerate(tokens):
        if t == "<unk>":
            out.append((t, 0.0, gguf.TokenType.UNKNOWN))
        elif t in ("<s>", "</s>"):
            out.append((t, 0.0, gguf.TokenType.CONTROL))
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", t):
            out.append((t, 0.0, gguf.TokenType.BYTE))
        elif len(t) > 1 and set(t) == {"\u2581"}:
            out.append((t, -1e9, gguf.TokenType.NORMAL))
        else:
            assert i >= first_learned, t
            out.append((t, -float(i - first_learned), gguf.TokenType.NORMAL))
    return out


def write_gguf(path):
    config = json.loads((MODEL / "config.json").read_text())
    tokens = pieces()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("stories15M tokenizer (no tensors)")
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config["num_key_value_heads"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_freq_base(config["rope_theta"])
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _, _ in tokens])
    w.add_token_scores([s for _, s, _ in tokens])
    w.add_token_types([int(k) for _, _, k in tokens])
    w.add_bos_token_id(config["bos_token_id"])
    w.add_eos_token_id(config["eos_token_id"])
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# Special tokens with text right after them: the prefix "▁" goes only before the text's first
# part (transformers' Metaspace prepend_scheme "first").
SPECIAL_CASES = ["<s>Hello", "Hi</s>there", "</s><s>x", "a<unk>b", "<s> spaced", "once<s>upon a time"]


def case_texts():
    texts = list(SPECIAL_CASES)
    for path in (ROOT / "tests" / "fixtures" / "smollm2" / "tokenizer_cases.jsonl",
                 ROOT.parent / "shared" / "models" / "stories15M" / "reference" / "tokenizer_cases.jsonl"):
        texts += [json.loads(line)["text"] for line in path.read_text().splitlines()]
    return list(dict.fromkeys(texts))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_gguf(OUT / GGUF_NAME)
    with tempfile.TemporaryDirectory() as tmp:
        tk = AutoTokenizer.from_pretrained(OUT, gguf_file=GGUF_NAME, cache_dir=tmp)
    reference = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    differ = 0
    texts = case_texts()
    with open(OUT / "tokenizer_cases.jsonl", "w") as f:
        for t in texts:
            ids, ref = tk.encode(t), reference.encode(t).ids
            decoded = tk.decode(ids, skip_special_tokens=True)
            f.write(json.dumps({"text": t, "ids": ids, "decoded": decoded, "tokenizer_json_ids": ref},
                               ensure_ascii=False) + "\n")
            if ids != ref:
                differ += 1
                print(f"differs from tokenizer.json: {t[:60]!r}\n  gguf {ids[:24]}\n  json {ref[:24]}")
    print(f"{len(texts)} cases, {differ} differ from stories15M's tokenizer.json; "
          f"{(OUT / GGUF_NAME).stat().st_size} bytes of GGUF")
    return 0


if __name__ == "__main__":
    sys.exit(main())
