#!/usr/bin/env python3
"""Per-window perplexity reference for stories15M, from Hugging Face transformers.

The protocol of ../shared/models/stories15M/reference/ppl.json (tokenizer.json encoding of
the whole file, one BOS at the start; non-overlapping 256-token windows from the start, the
remainder dropped; each window scores its tokens 1..255 from the prefix inside it), over
LlamaForCausalLM with the checkpoint's weights upcast to fp32, TF32 off. Per window it keeps
the NLL sum, so a test can check any prefix of the windows instead of the whole file (the
whole of data/stories15M-samples.txt takes minutes on a 2-core CPU).

Run from the repository root where torch and transformers are installed (the GPU machine):

    python3 scripts/make_ppl_reference.py     # writes tests/fixtures/eval/ppl_windows_stories15M.json
"""
import json
import os

import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "stories15M")
FILES = ["data/stories15M-samples.txt", "data/emma.txt"]
CTX = 256


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32).to(device).eval()
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    bos = model.config.bos_token_id
    out = {"protocol": "ppl.json's: one BOS, 256-token non-overlapping windows, tokens 1..255 of each scored; "
                       "fp32 weights, TF32 off; nll_sums[w] = sum of window w's 255 NLLs",
           "ctx": CTX, "files": {}}
    for rel in FILES:
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            text = f.read()
        ids = [bos] + tok.encode(text, add_special_tokens=False).ids
        windows = len(ids) // CTX
        sums = []
        with torch.no_grad():
            for w in range(windows):
                x = torch.tensor([ids[w * CTX:(w + 1) * CTX]], device=device)
                logp = torch.log_softmax(model(x).logits[0].double(), dim=-1)
                nll = -logp[torch.arange(CTX - 1), x[0, 1:]].sum().item()
                sums.append(nll)
        total = sum(sums) / (windows * (CTX - 1))
        out["files"][rel] = {"tokens": len(ids), "windows": windows, "mean_nll": total, "nll_sums": sums}
        print(rel, len(ids), "tokens", windows, "windows, ppl", float(torch.tensor(total).exp()))
    path = os.path.join(ROOT, "tests", "fixtures", "eval", "ppl_windows_stories15M.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
