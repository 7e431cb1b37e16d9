#!/usr/bin/env python3
"""Reference numbers for gptq.cpp's evaluation commands, from Hugging Face transformers.

An independent implementation of lm-eval's multiple-choice definitions (lm_eval/api/model.py
loglikelihood + _encode_pair, models/huggingface.py _loglikelihood_tokens, api/task.py
process_results, api/metrics.py mean_stderr) and of per-text perplexity (Hugging Face
`evaluate`'s perplexity metric), written from those definitions, over LlamaForCausalLM in
fp32 (TF32 off). lm-eval itself is not needed.

Run from the repository root, on the GPU machine (torch 2.11 + transformers 5.17) or any CPU
with those installed:

    python3 scripts/make_eval_reference.py            # writes tests/fixtures/eval/*.json

Writes:
    tests/fixtures/eval/mc_bsdgames_stories15M.json   data/mc/bsdgames-quiz.jsonl
    tests/fixtures/eval/mc_arc_stories15M.json        tests/fixtures/eval/arc-handmade.jsonl
    tests/fixtures/eval/mc_edge_stories15M.json       tests/fixtures/eval/generic-edge.jsonl
    tests/fixtures/eval/text_ppl_stories15M.json      tests/fixtures/eval/stories-docs.jsonl.gz
"""
import argparse
import gzip
import json
import math
import os
import sys

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "eval")


def read_jsonl(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def to_request(doc):
    """(context, choices, gold) as lm-eval's multiple_choice tasks build them."""
    if "query" in doc:
        return doc["query"], doc["choices"], doc["gold"], doc.get("category", "")
    # lm-eval's arc_easy.yaml / arc_challenge.yaml
    labels = doc["choices"]["label"]
    return "Question: " + doc["question"] + "\nAnswer:", doc["choices"]["text"], labels.index(doc["answerKey"]), ""


def encode_pair(tok, context, continuation):
    """lm-eval's _encode_pair for a causal model (tokenizer defaults: BOS added)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation)
    ctx = tok.encode(context)
    return ctx, whole[len(ctx):]


class Forward:
    """ids -> logits [T, vocab], fp64 on the CPU."""

    def __init__(self, model, device):
        self.model, self.device = model, device

    @torch.no_grad()
    def __call__(self, ids):
        return self.model(torch.tensor([ids], device=self.device)).logits[0].double().cpu()


def loglikelihood(forward, ctx, cont, max_length):
    seq = (ctx + cont)[-(max_length + 1):]  # lm-eval: the last max_length + 1 tokens, the final one a target only
    logits = forward(seq[:-1])
    rows = logits[-len(cont):]
    logp = torch.log_softmax(rows, dim=-1)
    target = torch.tensor(cont)
    ll = logp[torch.arange(len(cont)), target].sum().item()
    greedy = bool((rows.argmax(dim=-1) == target).all())
    return ll, greedy, float(rows.abs().max())


def mean_stderr(xs):
    n = len(xs)
    mu = sum(xs) / n
    sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return {"value": mu, "stderr": sd / math.sqrt(n)}


def multiple_choice(forward, tok, path, max_length):
    items, acc, acc_norm, acc_bytes = [], [], [], []
    for doc in read_jsonl(path):
        context, choices, gold, category = to_request(doc)
        lls, greedy, max_abs, ntok = [], [], [], []
        for choice in choices:
            ctx, cont = encode_pair(tok, context, " " + choice)
            ll, g, m = loglikelihood(forward, ctx, cont, max_length)
            lls.append(ll)
            greedy.append(g)
            max_abs.append(m)
            ntok.append(len(cont))
        # np.argmax semantics: the first maximum
        argmax = lambda v: max(range(len(v)), key=lambda i: (v[i], -i))
        pred = argmax(lls)
        pred_norm = argmax([ll / len(c) for ll, c in zip(lls, choices)])
        pred_bytes = argmax([ll / len(c.encode("utf-8")) for ll, c in zip(lls, choices)])
        acc.append(float(pred == gold))
        acc_norm.append(float(pred_norm == gold))
        acc_bytes.append(float(pred_bytes == gold))
        items.append({"loglik": lls, "greedy": greedy, "tokens": ntok, "max_abs_logit": max_abs, "pred": pred,
                      "pred_norm": pred_norm, "pred_bytes": pred_bytes, "gold": gold, "category": category})
    return {"file": os.path.relpath(path, ROOT), "items": items, "acc": mean_stderr(acc),
            "acc_norm": mean_stderr(acc_norm), "acc_bytes": mean_stderr(acc_bytes)}


def text_ppl(forward, tok, path, max_length):
    ppls, scored, max_abs, nll_total = [], [], [], 0.0
    for doc in read_jsonl(path):
        ids = tok.encode(doc["text"])[:max_length]  # BOS + text, truncated (evaluate's max_length)
        if len(ids) < 2:
            continue
        logits = forward(ids[:-1])
        logp = torch.log_softmax(logits, dim=-1)
        nll = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        ppls.append(math.exp(nll.mean().item()))
        scored.append(len(ids) - 1)
        max_abs.append(float(logits.abs().max()))
        nll_total += nll.sum().item()
    return {"file": os.path.relpath(path, ROOT), "max_length": max_length, "per_text_ppl": ppls, "scored": scored,
            "max_abs_logit": max_abs,
            "mean_ppl": sum(ppls) / len(ppls), "token_weighted_ppl": math.exp(nll_total / sum(scored))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "stories15M"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tok = AutoTokenizer.from_pretrained(args.model)
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(args.device).eval()
    forward = Forward(model, args.device)
    max_length = model.config.max_position_embeddings
    protocol = ("lm-eval multiple_choice definitions re-implemented over transformers " +
                "(LlamaForCausalLM fp32, TF32 off, log_softmax in fp64); torch " + torch.__version__)
    os.makedirs(FIX, exist_ok=True)
    jobs = [("mc_bsdgames_stories15M.json", os.path.join(ROOT, "data", "mc", "bsdgames-quiz.jsonl")),
            ("mc_arc_stories15M.json", os.path.join(FIX, "arc-handmade.jsonl")),
            ("mc_edge_stories15M.json", os.path.join(FIX, "generic-edge.jsonl"))]
    for name, path in jobs:
        out = multiple_choice(forward, tok, path, max_length)
        out["protocol"] = protocol
        with open(os.path.join(FIX, name), "w") as f:
            json.dump(out, f, indent=1)
        print(name, out["acc"], out["acc_norm"], file=sys.stderr)
    out = text_ppl(forward, tok, os.path.join(FIX, "stories-docs.jsonl.gz"), 128)
    out["protocol"] = "per-text perplexity (Hugging Face evaluate's definition); " + protocol
    with open(os.path.join(FIX, "text_ppl_stories15M.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("text_ppl", out["mean_ppl"], out["token_weighted_ppl"], file=sys.stderr)


if __name__ == "__main__":
    main()
