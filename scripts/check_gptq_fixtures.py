#!/usr/bin/env python3
"""Decode our GPTQ fixtures by the published format, independently of our C++, and write
the Hugging Face transformers logits of the decoded weights as reference.json.

For each checkpoint under --fixtures (made by scripts/make_gptq_fixtures.cpp):
  1. read quantization_config from config.json and, for every module with a qweight,
     unpack qweight / qzeros / scales / g_idx by the AutoGPTQ / GPTQModel rules:
       qweight int32 [K*bits/32, N]: each column n is the codes q[0..K) of that column,
         for 2/4/8 bits code k in word k // (32/bits) at bit (k % (32/bits)) * bits,
         for 3 bits 32 codes in 3 words split 10|1|10|1|10 (AutoGPTQ's pack);
       qzeros int32 [G, N*bits/32]: each row the zero codes of that group, packed alike;
         checkpoint_format "gptq" (v1) stores zero - 1, so zero = (stored + 1) mod 2^bits,
         "gptq_v2" stores the zero;
       scales fp16 [G, N]; g_idx int32 [K];
       W[n, k] = scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n])
     twice, by two unrelated methods (word shifts as above, and a bit-by-bit LSB-first
     stream from np.unpackbits) that must agree exactly;
  2. build the transformers model from config.json without quantization_config (fp32,
     eager attention), load the dense tensors plus the dequantized weights (strict), and
     run the token sequences of ours.json (our runtime's logits, written by the
     generator);
  3. write reference.json (the logits) and print max |ours - reference| per sequence
     against the tolerance of tests/reference_tolerance.h, plus controls: the same with
     the v1/v2 zero convention swapped (must fail), and the quantized model against the
     unquantized source checkpoint (quantization error, must be moderate).

  python3 scripts/check_gptq_fixtures.py --fixtures tests/fixtures/gptq \
      --arch tests/fixtures/arch --out /tmp/ref
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.torch import load_file as load_torch
from transformers import AutoConfig, AutoModelForCausalLM

QUANT_SUFFIXES = (".qweight", ".qzeros", ".scales", ".g_idx")


# ---- unpacking, method A: word and shift, as the published packers lay codes out ----

def unpack_words(words, count, bits):
    """words: uint32 [W, S], S independent streams down axis 0. Returns int64 [count, S]."""
    w = words.astype(np.int64)
    mask = (1 << bits) - 1
    if bits in (2, 4, 8):
        per = 32 // bits
        k = np.arange(count)
        return (w[k // per] >> ((k % per) * bits)[:, None]) & mask
    assert bits == 3
    # Whole blocks of 3 words; a final partial block (a qzeros row of N % 32 != 0) is
    # completed with zero words, the padding a writer leaves there.
    pad = (-w.shape[0]) % 3
    w = np.concatenate([w, np.zeros((pad, w.shape[1]), np.int64)])
    out = []
    for b in range(w.shape[0] // 3):
        w0, w1, w2 = w[3 * b], w[3 * b + 1], w[3 * b + 2]
        out += [(w0 >> (3 * i)) & 7 for i in range(10)]
        out.append(((w0 >> 30) & 3) | ((w1 & 1) << 2))
        out += [(w1 >> (3 * i + 1)) & 7 for i in range(10)]
        out.append(((w1 >> 31) & 1) | ((w2 & 3) << 1))
        out += [(w2 >> (3 * i + 2)) & 7 for i in range(10)]
    return np.stack(out[:count])


# ---- unpacking, method B: explode every word into bits, read codes off the stream ----

def unpack_bits(words, count, bits):
    """Same contract as unpack_words; also returns the stream bits past the last code."""
    W, S = words.shape
    u = np.ascontiguousarray(words.astype("<u4"))
    b = np.unpackbits(u.view(np.uint8).reshape(W, S, 4), axis=2, bitorder="little")  # [W, S, 32]
    stream = b.transpose(1, 0, 2).reshape(S, W * 32)
    used = stream[:, : count * bits].reshape(S, count, bits).astype(np.int64)
    codes = (used << np.arange(bits)).sum(axis=2)
    return codes.T, stream[:, count * bits:]


def zeros_from_stored(stored, bits, fmt):
    if fmt == "gptq":
        return (stored + 1) % (1 << bits)
    assert fmt == "gptq_v2", fmt
    return stored


def dequantize(q, zeros, scales, g_idx):
    """q [K, N], zeros [G, N] int64; scales [G, N] fp16; g_idx [K]. Returns torch [N, K] fp32."""
    s = torch.from_numpy(scales.astype(np.float32))[torch.from_numpy(g_idx.astype(np.int64))]
    d = torch.from_numpy((q - zeros[g_idx]).astype(np.float32))
    return (s * d).t().contiguous()


def decode_module(t, prefix, qc, notes):
    """The dense weight [N, K] of one quantized module, a summary of it, and its codes,
    stored zeros, scales and g_idx (for the swapped-convention control)."""
    bits, gs, fmt = qc["bits"], qc["group_size"], qc["checkpoint_format"]
    qweight, qzeros = t[prefix + ".qweight"], t[prefix + ".qzeros"]
    scales, g_idx = t[prefix + ".scales"], t[prefix + ".g_idx"]
    assert qweight.dtype == np.int32 and qzeros.dtype == np.int32, prefix
    assert scales.dtype == np.float16 and g_idx.dtype == np.int32, prefix
    K, (G, N) = g_idx.shape[0], scales.shape
    assert K * bits % 32 == 0 and qweight.shape == (K * bits // 32, N), (prefix, qweight.shape)
    assert G == (1 if gs == -1 else math.ceil(K / gs)), (prefix, G)
    assert g_idx.min() >= 0 and g_idx.max() < G, prefix
    zcols = math.ceil(N * bits / 32)
    assert qzeros.shape == (G, zcols), (prefix, qzeros.shape)
    if zcols != N // 32 * bits:
        # AutoGPTQ allocates N // 32 * bits zero words: fewer than the zeros need here.
        notes.append(f"{prefix}: N={N} at {bits} bits: qzeros [{G}, {zcols}], AutoGPTQ's "
                     f"N//32*bits would give [{G}, {N // 32 * bits}]")

    q_a = unpack_words(qweight.view(np.uint32), K, bits)
    q_b, q_tail = unpack_bits(qweight.view(np.uint32), K, bits)
    z_a = unpack_words(qzeros.view(np.uint32).T, N, bits).T
    z_b, z_tail = unpack_bits(qzeros.view(np.uint32).T, N, bits)
    assert np.array_equal(q_a, q_b), f"{prefix}: qweight methods disagree"
    assert np.array_equal(z_a, z_b.T), f"{prefix}: qzeros methods disagree"
    assert q_tail.size == 0 and not z_tail.any(), f"{prefix}: padding bits are not zero"

    zeros = zeros_from_stored(z_a, bits, fmt)
    # Properties the settings imply; reported rather than fatal, so one run shows them all.
    if qc["sym"] and not (zeros == 1 << (bits - 1)).all():
        notes.append(f"{prefix}: sym, but zeros {np.unique(zeros).tolist()} (expected {1 << (bits - 1)})")
    groups = np.bincount(g_idx, minlength=G)
    sequential = gs == -1 or np.array_equal(g_idx, np.arange(K) // gs)
    if (not qc["desc_act"] or qc.get("static_groups", False)) and not sequential:
        notes.append(f"{prefix}: g_idx is not k // group_size although groups should be static")
    info = {"K": K, "N": N, "G": G, "g_idx_sequential": bool(sequential),
            "group_sizes": sorted(set(groups.tolist())), "zeros": sorted(set(zeros.reshape(-1).tolist()))}
    return dequantize(q_a, zeros, scales, g_idx), info, (q_a, z_a, scales, g_idx)


def build_model(fixture_dir, state, tmp):
    """transformers' model for the fixture's config minus quantization_config, fp32 eager."""
    with open(os.path.join(fixture_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.pop("quantization_config")
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f)
    config = AutoConfig.from_pretrained(tmp)
    assert getattr(config, "quantization_config", None) is None
    # fp32 before loading: load_state_dict copies into the parameters' dtype, and the
    # config's dtype (bf16 for some sources) would round the dequantized weights.
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").to(torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A tied head has no tensor of its own; anything else missing is a loading error.
    allowed = {"lm_head.weight"} if config.tie_word_embeddings else set()
    assert set(missing) <= allowed and not unexpected, (missing, unexpected)
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    params = model.state_dict()
    assert all(torch.equal(params[k], v) for k, v in state.items()), "weights changed on loading"
    return model.eval(), config


def logits_of(model, ids):
    x = torch.tensor([ids])
    with torch.no_grad():
        return model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float()


def tolerance(layers, widest_k, row):
    """tests/reference_tolerance.h: 3 (8L + 1) u sqrt(K) max|row|."""
    return 3.0 * (8 * layers + 1) * 2.0 ** -24 * math.sqrt(widest_k) * float(row.abs().max())


def f32_list(t):
    """Shortest decimals that round-trip float32, as Python floats."""
    arr = t.detach().to(torch.float32).numpy().reshape(-1)
    vals = [float(str(x)) for x in arr]
    assert np.array_equal(np.array(vals, dtype=np.float32), arr), "float32 round-trip failed"
    return vals


def check_one(name, fixture_dir, arch_dir, out_dir, tmp):
    with open(os.path.join(fixture_dir, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    assert qc["quant_method"] == "gptq" and not qc.get("dynamic"), qc
    dense = load_torch(os.path.join(fixture_dir, "model.safetensors"))
    # numpy has no bfloat16: only the packed tensors (int32, fp16) go through numpy.
    t = {k: v.numpy() for k, v in dense.items() if k.endswith(QUANT_SUFFIXES)}
    prefixes = sorted(k[: -len(".qweight")] for k in t if k.endswith(".qweight"))
    notes, modules, state, flipped = [], {}, {}, {}
    flip = {"gptq": "gptq_v2", "gptq_v2": "gptq"}[qc["checkpoint_format"]]
    for p in prefixes:
        w, info, (q, z_stored, scales, g_idx) = decode_module(t, p, qc, notes)
        state[p + ".weight"] = w
        flipped[p + ".weight"] = dequantize(q, zeros_from_stored(z_stored, qc["bits"], flip), scales, g_idx)
        modules[p] = info
    for k, v in dense.items():
        if not k.endswith(QUANT_SUFFIXES):
            state[k] = v.float()
    print(f"[{name}] bits={qc['bits']} group={qc['group_size']} sym={qc['sym']} desc_act={qc['desc_act']} "
          f"static_groups={qc.get('static_groups')} format={qc['checkpoint_format']} lm_head={qc['lm_head']}: "
          f"{len(prefixes)} quantized modules decoded, methods A and B agree", flush=True)
    for n in notes:
        print(f"  note: {n}")

    model, config = build_model(fixture_dir, state, os.path.join(tmp, name))
    widest = max(config.hidden_size, config.intermediate_size, config.num_attention_heads * config.head_dim)
    control, _ = build_model(fixture_dir, {**state, **flipped}, os.path.join(tmp, name + "-flip"))
    source_name = source_of(fixture_dir)
    source = AutoModelForCausalLM.from_pretrained(os.path.join(arch_dir, source_name), dtype=torch.float32,
                                                  attn_implementation="eager").eval()
    with open(os.path.join(fixture_dir, "ours.json")) as f:
        ours = json.load(f)
    sequences, summary = [], []
    for seq in ours["sequences"]:
        ids = seq["ids"]
        ref, ctl, src = logits_of(model, ids), logits_of(control, ids), logits_of(source, ids)
        our = torch.tensor(seq["logits"], dtype=torch.float32)
        d = (our - ref).abs().max(dim=1).values
        tol = torch.tensor([tolerance(config.num_hidden_layers, widest, r) for r in ref])
        worst = int((d / tol).argmax())
        d_flip = float((our - ctl).abs().max())
        d_src = float((ref - src).abs().max())
        top1 = float((ref.argmax(1) == src.argmax(1)).float().mean())
        print(f"  len {len(ids):2d}: max|ours-ref| {float(d.max()):.3e} (worst row {worst}: {float(d[worst]):.3e} "
              f"vs tolerance {float(tol[worst]):.3e}, ratio {float(d[worst] / tol[worst]):.3f}); "
              f"zero convention flipped: {d_flip:.3e}; vs unquantized source: {d_src:.3e}, top-1 agree {top1:.2f}",
              flush=True)
        summary.append({"length": len(ids), "max_abs_diff_ours": float(d.max()),
                        "max_ratio_to_tolerance": float((d / tol).max()), "max_abs_diff_flipped_format": d_flip,
                        "max_abs_diff_unquantized_source": d_src, "top1_agreement_unquantized": top1})
        sequences.append({"ids": ids, "logits": [f32_list(r) for r in ref]})

    ref_json = {
        "model": name, "source": source_name, "architecture": config.architectures[0],
        "quantization_config": {k: qc[k] for k in ("bits", "group_size", "sym", "desc_act", "static_groups",
                                                   "lm_head", "checkpoint_format")},
        "reference_compute": "checkpoint decoded by scripts/check_gptq_fixtures.py (numpy/torch, published GPTQ "
                             "rules), dense fp32 weights W = scales * (q - zero) into transformers, fp32 CPU, "
                             "eager attention",
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "modules": modules, "notes": notes, "sequences": sequences}
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    with open(os.path.join(out_dir, name, "reference.json"), "w") as f:
        json.dump(ref_json, f, separators=(",", ":"))
    return summary


def source_of(fixture_dir):
    """The arch fixture a GPTQ fixture was made from: its folder name up to a '-<bits>bit' suffix."""
    name = os.path.basename(os.path.normpath(fixture_dir))
    return name[: -len("-2bit")] if name.endswith("-2bit") else name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}", flush=True)
    tmp = tempfile.mkdtemp()
    failures = 0
    results = {}
    try:
        for name in sorted(os.listdir(a.fixtures)):
            d = os.path.join(a.fixtures, name)
            if not os.path.isfile(os.path.join(d, "ours.json")):
                continue
            results[name] = check_one(name, d, a.arch, a.out, tmp)
            failures += sum(s["max_ratio_to_tolerance"] > 1.0 for s in results[name])
    finally:
        shutil.rmtree(tmp)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"{len(results)} fixtures, {failures} sequence(s) over tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
