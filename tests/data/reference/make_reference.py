#!/usr/bin/env python3
"""Independent reference logits for the stories260K test model (HF transformers, CPU, float32).

How to run (from the repository root):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch transformers safetensors sentencepiece numpy
    /tmp/refvenv/bin/python tests/data/reference/make_reference.py \
        [--model-dir /work/shared/models/stories260K] [--out tests/data/reference]

Versions used to produce the committed files: Python 3.11.7, torch 2.15.0+cu132 (the
PyPI default wheel, run on CPU; no GPU involved),
transformers 5.24.0, safetensors 0.8.0, sentencepiece 0.2.3, numpy 2.4.6.
The run is deterministic (eager attention, CPU, one thread); it takes a few seconds.

What it writes (into --out):
  logits_f32.bin   hf/model.safetensors (F32)
  logits_f16.bin   hf/fp16/model.safetensors, weights upcast to float32, f32 compute
  logits_bf16.bin  hf/bf16/model.safetensors, weights upcast to float32, f32 compute
  logits_f16mixed.bin  the mix that stories260K-f16.gguf stores (GGUF file_type 1, "mostly F16"):
                   2-D matrices from hf/fp16, 1-D RMSNorm weights kept F32 from hf/
  logits_q8kv.bin  the numpy float64 forward below over hf/model.safetensors with every K and V
                   row rounded as an 8-bit (q8_0) KV cache stores it (`q8_0_round`)
  logits_q8k_q4v.bin  the same with K rows rounded as q8_0 and V rows as a 4-bit (q4_0) cache
                   stores them (`q4_0_round`)
  reference.json   tokens, layout, generator versions, greedy ids

Each .bin is 32 x 512 float32, little-endian, row-major, position-major: the float at byte
offset 4 * (p * 512 + v) is the logit of vocab id v at position p, for one forward pass
(no KV cache, causal mask) over tokens = [1] + EXPECTED.md ids[:31] (32 tokens). Row p is
the next-token distribution after seeing tokens[0..=p]; for F32 its argmax is EXPECTED ids[p].
Note [1, 403, 407, 261] is a prefix of tokens, so rows 0..3 also serve as the reference for
that 4-token prefill (causal attention makes a prefix's logits independent of what follows;
a separate 4-token forward matched rows 0..3 to 8.6e-6, equal up to float32 rounding, not bitwise).

As an independent cross-check the script also runs a plain float64 NumPy forward pass
(RMSNorm, HF rotate_half RoPE, GQA 8/4, SwiGLU, tied head) written from the architecture
description, not from transformers, and reports its max |diff| against the torch logits.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

EXPECTED_IDS = [int(x) for x in """
403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337
410 408 419 292 411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352
266 268 388 426 338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415
426 13 438 310 439 419 357 336 432 313 438 310 432 278 316 439 419 298 414 267
265 282 295 433 426 436 317 286 296 418 269 279 292 416 439 413 409 416 327 263
415 294 267 400 426 338 336 432 313 442 391 267 337 335 364 420 268 388 432 398
359 280 303 439 413 272 417 264 312 426 436 13 438 310 286 296 418 269 279 292
416 439 413 409 416 327 263 415 294 267 400 426 338 336 432 313 442 439 423 262
304 420 422 432 317 426 359 279 292 416 439 413 409 416 327 263 415 294 267 400
426 436 13 438 310 279 292 416 439 413 391 267 281 421 427 311 357 432 384 358
""".split()]
assert len(EXPECTED_IDS) == 200

BOS = 1
N_VOCAB = 512
TOKENS = [BOS] + EXPECTED_IDS[:31]
VARIANTS = [("f32", "hf"), ("f16", "hf/fp16"), ("bf16", "hf/bf16")]


def load(model_dir):
    # dtype=float32 upcasts F16/BF16 safetensors to float32 at load time (compute in f32).
    m = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                         attn_implementation="eager").eval()
    assert all(p.dtype == torch.float32 for p in m.parameters())
    return m


@torch.no_grad()
def logits_for(model, tokens):
    return model(torch.tensor([tokens])).logits[0].to(torch.float32).numpy()


@torch.no_grad()
def greedy(model, n=200):
    # Greedy = argmax (torch.argmax returns the lowest id on ties), full recompute each step.
    seq = [BOS]
    for _ in range(n):
        seq.append(int(torch.argmax(model(torch.tensor([seq])).logits[0, -1])))
    return seq[1:]


def q8_0_round(x, block):
    """x [T, n] with each row quantized as an 8-bit KV cache stores it and read back: per block
    of `block` values the scale d = max|x| / 127 rounded to float16, q = round-half-away(x / d)
    clamped to [-127, 127] (llama.cpp's q8_0 rounding), value = d * q."""
    T = x.shape[0]
    xb = x.reshape(T, -1, block)
    d = (np.abs(xb).max(-1, keepdims=True) / 127.0).astype(np.float16).astype(np.float64)
    v = xb / np.where(d > 0, d, 1.0)
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -127, 127)
    return (q * d).reshape(x.shape)


def q4_0_round(x, block):
    """x [T, n] with each row quantized as a 4-bit KV cache stores it and read back (llama.cpp's
    q4_0 rounding): per block of `block` values m = the value of largest magnitude (the first
    one on ties), d = m / -8, q = min(15, floor(x / d + 8.5)) (0 <= x / d + 8.5 here, so floor
    is C's truncation), value = float16(d) * (q - 8)."""
    T = x.shape[0]
    xb = x.reshape(T, -1, block)
    m = np.take_along_axis(xb, np.abs(xb).argmax(-1)[..., None], -1)
    d = m / -8.0
    q = np.where(d != 0, np.minimum(15, np.floor(xb / np.where(d != 0, d, 1.0) + 8.5)), 8)
    return ((q - 8) * d.astype(np.float16).astype(np.float64)).reshape(x.shape)


def numpy_f64_forward(st_path, cfg, tokens, kv_round=None, v_round=None):
    """Independent float64 LLaMA forward over HF-layout safetensors weights; `kv_round`, when
    given, is applied to each position's K (after RoPE) and V row, as a quantized cache would
    (`v_round`, when given, to the V rows instead)."""
    # safetensors.torch only to read the file (numpy has no bfloat16); exact upcast to f64.
    w = {k: v.to(torch.float64).numpy() for k, v in load_file(st_path).items()}
    d, nh, nkv, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    T = len(tokens)

    def rms(x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g

    inv = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)          # [hd/2]
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]          # [T, hd/2]
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :]          # [T, 1, hd]
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :]

    def rope(x):  # x [T, H, hd], HF rotate_half layout: pairs (i, i + hd/2)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + np.concatenate([-x2, x1], axis=-1) * sin

    x = w["model.embed_tokens.weight"][tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd))
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd))
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
        if kv_round is not None:
            k = kv_round(k.reshape(T, nkv * hd)).reshape(T, nkv, hd)
            v = (v_round or kv_round)(v.reshape(T, nkv * hd)).reshape(T, nkv, hd)
        rep = nh // nkv
        k = np.repeat(k, rep, axis=1)  # q head j uses kv head j // rep
        v = np.repeat(v, rep, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(T, nh * hd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    return x @ w["model.embed_tokens.weight"].T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default="/work/shared/models/stories260K")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    os.makedirs(a.out, exist_ok=True)

    ref = {
        "tokens": TOKENS,
        "n_positions": len(TOKENS),
        "n_vocab": N_VOCAB,
        "files": {},
        "dtype": "float32 little-endian, [position][vocab]",
        "generator": f"transformers {transformers.__version__} / torch {torch.__version__} "
                     f"(LlamaForCausalLM, CPU, eager attention, weights loaded as float32)",
    }
    logits = {}
    for tag, sub in VARIANTS + [("f16mixed", "hf/fp16")]:
        mdir = os.path.join(a.model_dir, sub)
        model = load(mdir)
        if tag == "f16mixed":
            f32 = load(os.path.join(a.model_dir, "hf")).state_dict()
            with torch.no_grad():
                for name, prm in model.named_parameters():
                    if prm.dim() == 1:
                        prm.copy_(f32[name])
        lg = logits_for(model, TOKENS)
        assert lg.shape == (len(TOKENS), N_VOCAB) and lg.dtype == np.float32
        fname = f"logits_{tag}.bin"
        lg.astype("<f4").tofile(os.path.join(a.out, fname))
        ref["files"][tag] = {"file": fname, "weights": f"{sub}/model.safetensors",
                             "shape": [len(TOKENS), N_VOCAB],
                             "max_abs_logit": float(np.abs(lg).max()),
                             "argmax": [int(i) for i in lg.argmax(-1)]}
        logits[tag] = lg

        if tag == "f16mixed":
            continue  # the numpy cross-check reads one file; f16mixed is a mix of two
        # independent float64 numpy forward on the same weights
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        np64 = numpy_f64_forward(os.path.join(mdir, "model.safetensors"), cfg, TOKENS)
        diff = float(np.abs(np64 - lg).max())
        ref["files"][tag]["max_abs_diff_vs_numpy_f64"] = diff
        print(f"{tag}: max|logit|={np.abs(lg).max():.4f}  max|torch f32 - numpy f64|={diff:.3e}")

        if tag == "f32":
            # An 8-bit KV cache (runllama's LLAMA_KV_Q8_0: blocks of gcd(32, head_dim) = 8).
            block = math.gcd(32, cfg["head_dim"])
            def rounded(tag, generator, **rounding):
                lr = numpy_f64_forward(os.path.join(mdir, "model.safetensors"), cfg, TOKENS,
                                       **rounding).astype(np.float32)
                lr.astype("<f4").tofile(os.path.join(a.out, f"logits_{tag}.bin"))
                ref["files"][tag] = {"file": f"logits_{tag}.bin", "weights": f"{sub}/model.safetensors",
                                     "shape": [len(TOKENS), N_VOCAB], "kv_block": block,
                                     "generator": generator,
                                     "max_abs_diff_vs_f32": float(np.abs(lr - lg).max())}
                print(f"{tag} (numpy f64, blocks of {block}): max|{tag} - f32| = {np.abs(lr - lg).max():.4f}")

            rounded("q8kv", "the numpy float64 forward, K/V rows q8_0-rounded",
                    kv_round=lambda r: q8_0_round(r, block))
            # K in 8 bits, V in 4 (runllama's LLAMA_KV_Q8_0_Q4_0, llama.cpp's -ctk q8_0 -ctv q4_0).
            rounded("q8k_q4v", "the numpy float64 forward, K rows q8_0-rounded, V rows q4_0-rounded",
                    kv_round=lambda r: q8_0_round(r, block), v_round=lambda r: q4_0_round(r, block))
            g = greedy(model)
            ref["greedy_ids_f32"] = g
            ok = g == EXPECTED_IDS
            print(f"greedy f32 == EXPECTED.md (200 ids): {ok}")
            assert ok
        if tag == "bf16":
            g = greedy(model)
            ref["greedy_ids_bf16_upcast"] = g
            agree = next((i for i, (x, y) in enumerate(zip(g, EXPECTED_IDS)) if x != y), 200)
            ref["greedy_bf16_upcast_agree_prefix"] = agree
            print(f"greedy bf16-upcast agrees with EXPECTED.md for the first {agree} ids")

    am = logits["f32"].argmax(-1)
    ok = all(int(am[p]) == EXPECTED_IDS[p] for p in range(len(TOKENS)))
    print(f"f32 argmax[p] == EXPECTED ids[p] for p < {len(TOKENS)}: {ok}")
    assert ok
    for tag in ("f16", "bf16"):
        d = float(np.abs(logits[tag] - logits["f32"]).max())
        ref[f"max_abs_diff_f32_vs_{tag}_upcast"] = d
        print(f"max|f32 - {tag} upcast| = {d:.4e}")
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
