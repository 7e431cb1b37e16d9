#!/usr/bin/env python3
"""Builds the tokenizer fixtures under tests/fixtures/tokenizers/.

Trains small byte-level (and one Metaspace) BPE tokenizers with the Hugging Face
`tokenizers` library on public-domain text from ../shared/data, then records
what that library produces for a set of probe texts, so the C++ tokenizer can
be checked against it without any real model's tokenizer file.

    pip install 'tokenizers==0.23.*'
    python3 scripts/make_tokenizer_fixtures.py

Output per family: <name>/tokenizer.json and <name>/cases.jsonl, one
{"text", "ids", "ids_plain", "decoded", "decoded_keep"} per line (ids with and
without the post-processor's special tokens; decode with
skip_special_tokens=True and False). Also stories15M/decoded.jsonl: the
library's decode of the stories15M reference cases, line for line.
"""
import json
import pathlib

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OUT = ROOT / "tests" / "fixtures" / "tokenizers"

# Pre-tokenization regexes as published in the models' tokenizer.json files.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_lines():
    bible = (SHARED / "data/web-bible/web-bible.txt").read_text(encoding="utf-8").splitlines()
    austen = (SHARED / "data/austen/pride-and-prejudice.txt").read_text(encoding="utf-8").splitlines()
    return bible[:12000] + austen[:8000]


def probe_texts():
    bible = (SHARED / "data/web-bible/web-bible.txt").read_text(encoding="utf-8").splitlines()
    emma = (SHARED / "data/austen/emma.txt").read_text(encoding="utf-8").splitlines()
    texts = [line for line in bible[20000:20060] if line] + [line for line in emma[400:460] if line]
    texts += [
        "", " ", "  ", "\t", "\n", "\n\n", " \n ", "a\r\nb", "\t\tindented\ttabs\t",
        "Hello world", " Hello world", "Hello  world   spaced    out     ", "trailing space ",
        "1234567", "3.14159 and 1,000,000 and 007", "Year 2024: 12 apples, 345 pears, 6789 plums.",
        "I'll, you'LL, he'S, we're, they've, I'm, she'd, can't, DON'T", "'s 's 'S 'll",
        "Émilie's café — naïve façade, résumé", "e\u0301 vs \u00e9, A\u030a vs \u00c5, \u1e9b\u0323",
        "\u0041\u0327\u0301 combining order \u0071\u0307\u0323", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
        "日本語のテキストです。", "中文测试，你好世界！", "한국어 텍스트 각", "Ελληνικά και Русский текст",
        "emoji 😀🎉👍🏽 family 👨‍👩‍👧", "math ∑∫√∞ ≠ ≤", "tab\tand\u00a0nbsp\u2003em\u3000ideo",
        "\x00\x01\x07 control \x1b[0m", "line1\nline2\n\n\nline5", "   leading", "end.\n",
        "!!!???...", "a-b_c/d\\e|f", "http://example.com/path?q=1&r=2#frag", "x" * 50,
        "The LORD said, “Let there be light.”",
    ]
    return texts


def special_probes(tokens):
    a, b = tokens[0], tokens[-1]
    return [a, f"{a}Hello{b}", f"text {a} more {b} end", f"{a}{a}{b}", f"<|{a}", f"{a[:-1]} x",
            f"{a}\n{b}\n", f" {a} "]


def write_fixture(name, tok, texts, post_process=True):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    reloaded = Tokenizer.from_file(str(d / "tokenizer.json"))
    with open(d / "cases.jsonl", "w", encoding="utf-8") as f:
        for text in texts:
            ids = reloaded.encode(text).ids
            row = {
                "text": text,
                "ids": ids,
                "ids_plain": reloaded.encode(text, add_special_tokens=False).ids,
                "decoded": reloaded.decode(ids, skip_special_tokens=True),
                "decoded_keep": reloaded.decode(ids, skip_special_tokens=False),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(name, len(texts), "cases", (d / "tokenizer.json").stat().st_size, "bytes")


def train(tok, vocab_size, specials, byte_level=True):
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [])
    tok.train_from_iterator(training_lines(), trainer=trainer)


def edit_model(tok, edit):
    """Round-trips through JSON to set fields the Python API does not expose."""
    spec = json.loads(tok.to_str())
    edit(spec)
    return Tokenizer.from_str(json.dumps(spec))


def gpt2():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    train(tok, 1200, ["<|endoftext|>"])
    # Added tokens exercising each flag: normalized non-special, lstrip, rstrip,
    # single_word, and a raw-text non-special one.
    tok.add_tokens([AddedToken("<custom>"), AddedToken("xyzzy", single_word=True),
                    AddedToken("∑sum", normalized=False)])
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True), AddedToken("<pad>", rstrip=True)])
    texts = probe_texts() + special_probes(["<|endoftext|>", "[MASK]"]) + [
        "fill [MASK] here", "fill   [MASK]", "<pad>   after", "a<custom>b <custom> c", "xyzzy works",
        "notxyzzy here", "xyzzyish", "(xyzzy)", "∑sum of ∑summary", "<|endoftext|><pad> <custom>[MASK]"]
    write_fixture("gpt2", tok, texts)


def llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>", "<|reserved_special_token_0|>"]
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    train(tok, 1500, specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])

    # Whole words present in the vocab but unreachable through merges: only
    # ignore_merges makes them single tokens.
    def add_words(spec):
        vocab = spec["model"]["vocab"]
        next_id = max(max(vocab.values()), max(t["id"] for t in spec["added_tokens"])) + 1
        for word in ["ĠJerusalem", "ĠElizabeth", "Ġzyxwv"]:
            if word not in vocab:
                vocab[word] = next_id
                next_id += 1
        spec["model"]["ignore_merges"] = True
    tok = edit_model(tok, add_words)
    texts = probe_texts() + special_probes(specials) + [
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>", " Jerusalem and Elizabeth zyxwv",
        "Jerusalem, Elizabeth", "1234567890123"]
    write_fixture("llama3", tok, texts)


def qwen2():
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    train(tok, 1500, specials)
    texts = probe_texts() + special_probes(specials) + [
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\ncafe\u0301<|im_end|>",
        "\u1100\u1161\u11a8 jamo", "\u212b angstrom \u2126 ohm", "\u0958 excluded", "\u0f73 tibetan"]
    write_fixture("qwen2", tok, texts)


def metaspace():
    """Llama-2 / Mistral style: Metaspace pre-tokenizer with byte_fallback."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(" {3,}"), "  "), normalizers.NFC()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("[.!?]+"), behavior="merged_with_previous"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
        pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(prepend_scheme="first")])
    train(tok, 900, ["<unk>", "<s>", "</s>"], byte_level=False)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])

    def add_bytes(spec):
        vocab = spec["model"]["vocab"]
        next_id = max(vocab.values()) + 1
        for b in range(256):
            vocab[f"<0x{b:02X}>"] = next_id + b
    tok = edit_model(tok, add_bytes)
    texts = probe_texts() + special_probes(["<s>", "</s>"]) + ["Wait... what?! Yes. No", "a    b     c"]
    write_fixture("metaspace", tok, texts)


def stories15m_decodes():
    tok = Tokenizer.from_file(str(ROOT / "models/stories15M/tokenizer.json"))
    src = SHARED / "models/stories15M/reference/tokenizer_cases.jsonl"
    d = OUT / "stories15M"
    d.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as f, open(d / "decoded.jsonl", "w", encoding="utf-8") as out:
        for line in f:
            ids = json.loads(line)["ids"]
            row = {"decoded": tok.decode(ids, skip_special_tokens=True),
                   "decoded_keep": tok.decode(ids, skip_special_tokens=False)}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    print("tokenizers", tokenizers.__version__)
    gpt2()
    llama3()
    qwen2()
    metaspace()
    stories15m_decodes()


if __name__ == "__main__":
    main()
