#!/usr/bin/env python3
"""Make tiny random-weight Hugging Face checkpoints plus reference logits.

For each architecture in CASES this builds a model with random weights (fixed seed),
saves it with save_pretrained (safetensors, in the dtype named by the case), loads the
SAVED checkpoint back in fp32 with eager attention (so the reference uses exactly the
rounded weights on disk, upcast to fp32), and writes reference.json next to it:

  {"model", "architecture", "saved_dtype", "transformers_version", "torch_version",
   "init", "rope_inv_freq", "rope_attention_scaling",
   "sequences": [{"ids", "logits" [pos][vocab], "logsumexp" [pos], "top5_ids" [pos][5]}],
   "greedy": {"prompt_ids", "output_ids" (20 new tokens), "min_top2_margin"}}

Run on a machine with torch + transformers (CPU is enough):
  python3 scripts/make_arch_fixtures.py --out /tmp/fx
The weights are random: no third-party content.
"""

import argparse
import inspect
import json
import math
import os
import sys
import traceback

import numpy as np
import torch
import transformers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

TV_MAJOR = int(transformers.__version__.split(".")[0])

SEQ_LENS = (1, 7, 40)
PROMPT_LEN = 5
NEW_TOKENS = 20

# Weight init (deliberately larger than initializer_range=0.02 so that attention is
# sharp and RoPE / bias / norm mistakes move the logits visibly):
#   linear weights  ~ N(0, 1/in_features)
#   embeddings      ~ N(0, 0.5^2)
#   norm weights    ~ 1 + 0.1 * N(0, 1)
#   biases          ~ N(0, 0.2^2)
INIT = {
    "linear_weight_std": "1/sqrt(in_features)",
    "embedding_std": 0.5,
    "norm_weight": "1 + 0.1*randn",
    "bias_std": 0.2,
}


def rope_kwargs(config_cls, theta, scaling=None):
    """Config kwargs for RoPE in whichever form this transformers version takes."""
    params = inspect.signature(config_cls.__init__).parameters
    if "rope_parameters" in params:
        rp = {"rope_type": "default"} if scaling is None else dict(scaling)
        rp["rope_theta"] = float(theta)
        return {"rope_parameters": rp}
    kw = {"rope_theta": float(theta)}
    if scaling is not None:
        kw["rope_scaling"] = dict(scaling)
    return kw


LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}

CASES = [
    dict(
        name="llama3-gqa",
        model_cls=LlamaForCausalLM,
        config_cls=LlamaConfig,
        dtype=torch.bfloat16,
        seed=1001,
        theta=500000.0,
        scaling=LLAMA3_SCALING,
        head_dim=16,
        cfg=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=160,
            vocab_size=320,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            rms_norm_eps=1e-5,
            attention_bias=False,
            mlp_bias=False,
        ),
    ),
    dict(
        name="qwen2-bias",
        model_cls=Qwen2ForCausalLM,
        config_cls=Qwen2Config,
        dtype=torch.float16,
        seed=1002,
        theta=1000000.0,
        scaling=None,
        head_dim=16,
        cfg=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            vocab_size=300,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            rms_norm_eps=1e-6,
            use_sliding_window=False,
        ),
    ),
    dict(
        name="mistral",
        model_cls=MistralForCausalLM,
        config_cls=MistralConfig,
        dtype=torch.float32,
        seed=1003,
        theta=10000.0,
        scaling=None,
        head_dim=16,
        cfg=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=16,
            intermediate_size=96,
            vocab_size=256,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            rms_norm_eps=1e-5,
            sliding_window=None,
        ),
    ),
    dict(
        name="qwen3",
        model_cls=Qwen3ForCausalLM,
        config_cls=Qwen3Config,
        dtype=torch.bfloat16,
        seed=1004,
        theta=1000000.0,
        scaling=None,
        head_dim=32,
        cfg=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            intermediate_size=128,
            vocab_size=300,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            rms_norm_eps=1e-6,
            attention_bias=False,
            use_sliding_window=False,
        ),
    ),
    dict(
        name="llama-bias-untied",
        model_cls=LlamaForCausalLM,
        config_cls=LlamaConfig,
        dtype=torch.float32,
        seed=1005,
        theta=10000.0,
        scaling=None,
        head_dim=8,
        cfg=dict(
            hidden_size=48,
            num_hidden_layers=3,
            num_attention_heads=6,
            num_key_value_heads=6,
            head_dim=8,
            intermediate_size=128,
            vocab_size=200,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            rms_norm_eps=1e-5,
            attention_bias=True,
            mlp_bias=False,
        ),
    ),
]


def expected_inv_freq(theta, head_dim, scaling):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).double() / head_dim))
    if scaling is None:
        return inv
    assert scaling["rope_type"] == "llama3"
    factor = scaling["factor"]
    lo, hi = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    low_wl, high_wl = old / lo, old / hi
    wl = 2 * math.pi / inv
    out = torch.where(wl > low_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wl < high_wl) & ~(wl > low_wl)
    return torch.where(medium, smoothed, out)


@torch.no_grad()
def randomize(model, seed):
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if "norm" in name and name.endswith(".weight"):
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        elif name.endswith(".bias"):
            p.copy_(0.2 * torch.randn_like(p))
        elif "embed_tokens" in name:
            p.copy_(0.5 * torch.randn_like(p))
        elif name.endswith(".weight") and p.dim() == 2:
            p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]))
        else:
            raise RuntimeError(f"unexpected parameter {name} {tuple(p.shape)}")


def f32_list(t):
    """Shortest decimal strings that round-trip float32, as Python floats."""
    arr = t.detach().to(torch.float32).cpu().numpy().reshape(-1)
    vals = [float(str(x)) for x in arr]
    back = np.array(vals, dtype=np.float32)
    assert np.array_equal(back, arr), "float32 round-trip failed"
    return vals


def f32_rows(t):
    return [f32_list(row) for row in t]


def load_saved(case, path):
    kw = {"attn_implementation": "eager"}
    kw["dtype" if TV_MAJOR >= 5 else "torch_dtype"] = torch.float32
    m = case["model_cls"].from_pretrained(path, **kw)
    m.eval()
    return m


def make_one(case, out_root):
    name = case["name"]
    path = os.path.join(out_root, name)
    os.makedirs(path, exist_ok=True)
    cfg_kw = dict(case["cfg"])
    cfg_kw.update(rope_kwargs(case["config_cls"], case["theta"], case["scaling"]))
    config = case["config_cls"](**cfg_kw)
    torch.manual_seed(case["seed"])
    model = case["model_cls"](config)
    randomize(model, case["seed"])
    model = model.to(case["dtype"])
    model.save_pretrained(path, safe_serialization=True)
    saved_sd = {k: v.clone() for k, v in model.state_dict().items()}
    del model

    m = load_saved(case, path)
    # The loaded fp32 weights must be exactly the saved (rounded) ones.
    for k, v in m.state_dict().items():
        if k in saved_sd:
            assert torch.equal(v, saved_sd[k].float()), f"{name}: {k} differs after reload"
    n_params = sum(p.numel() for p in m.parameters())
    print(f"[{name}] params={n_params} attn={m.config._attn_implementation}", flush=True)

    # RoPE sanity: the model's inverse frequencies must be what we meant.
    rot = m.model.rotary_emb
    inv = rot.inv_freq.double()
    want = expected_inv_freq(case["theta"], case["head_dim"], case["scaling"])
    assert inv.shape == want.shape, (inv.shape, want.shape)
    assert torch.allclose(inv, want, rtol=1e-5, atol=0), f"{name}: inv_freq mismatch\n{inv}\n{want}"
    att_scale = float(getattr(rot, "attention_scaling", 1.0))
    assert abs(att_scale - 1.0) < 1e-12, att_scale

    vocab = m.config.vocab_size
    g = torch.Generator().manual_seed(case["seed"] + 7)
    sequences = []
    for L in SEQ_LENS:
        ids = torch.randint(0, vocab, (1, L), generator=g)
        with torch.no_grad():
            logits = m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float()
        lse = torch.logsumexp(logits.double(), dim=-1)
        top5 = torch.topk(logits, 5, dim=-1).indices
        sequences.append(
            {
                "ids": ids[0].tolist(),
                "logits": f32_rows(logits),
                "logsumexp": [float(f"{x:.10g}") for x in lse.tolist()],
                "top5_ids": top5.tolist(),
            }
        )

    prompt = torch.randint(0, vocab, (1, PROMPT_LEN), generator=g)
    m.generation_config.eos_token_id = None
    m.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = m.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            eos_token_id=None,
            pad_token_id=0,
        )
    new = out[0, PROMPT_LEN:]
    assert new.numel() == NEW_TOKENS, new.numel()
    # Cross-check with a full (no cache) forward pass and measure how robust greedy is.
    with torch.no_grad():
        full = m(input_ids=out, attention_mask=torch.ones_like(out)).logits[0].float()
    steps = full[PROMPT_LEN - 1 : PROMPT_LEN - 1 + NEW_TOKENS]
    assert torch.equal(steps.argmax(-1), new), f"{name}: generate != full-forward argmax"
    top2 = torch.topk(steps, 2, dim=-1).values
    min_margin = float((top2[:, 0] - top2[:, 1]).min())
    print(f"[{name}] greedy={new.tolist()} min_top2_margin={min_margin:.4g}", flush=True)

    ref = {
        "model": name,
        "architecture": type(m).__name__,
        "saved_dtype": str(case["dtype"]).replace("torch.", ""),
        "reference_compute": "fp32 CPU, eager attention, weights loaded back from model.safetensors",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": case["seed"],
        "init": INIT,
        "rope_inv_freq": f32_list(rot.inv_freq.float()),
        "rope_attention_scaling": att_scale,
        "sequences": sequences,
        "greedy": {
            "prompt_ids": prompt[0].tolist(),
            "output_ids": new.tolist(),
            "max_new_tokens": NEW_TOKENS,
            "min_top2_margin": float(f"{min_margin:.6g}"),
        },
    }
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    for fn in sorted(os.listdir(path)):
        print(f"[{name}]   {fn} {os.path.getsize(os.path.join(path, fn))} bytes", flush=True)
    with open(os.path.join(path, "config.json")) as f:
        print(f"[{name}] config.json:\n{f.read()}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__} transformers {transformers.__version__} numpy {np.__version__}")
    os.makedirs(args.out, exist_ok=True)
    failed = []
    for case in CASES:
        if args.only and case["name"] not in args.only:
            continue
        try:
            make_one(case, args.out)
        except Exception:
            traceback.print_exc()
            failed.append(case["name"])
    if failed:
        print("FAILED:", failed)
        sys.exit(1)
    print("all fixtures written")


if __name__ == "__main__":
    main()
