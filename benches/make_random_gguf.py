#!/usr/bin/env python3
"""Write a GGUF file of LLaMA2-7B or LLaMA3-8B shape with random weights (F16, BF16, or the
quantized Q4_0, Q8_0 and Q4_K_M), for speed runs where no real checkpoint can be had (the GPU
machine has no network): both runllama's `e2e` bench and llama.cpp's `llama-bench` load it.

  python3 benches/make_random_gguf.py --preset llama2-7b --dtype f16  --out /tmp/l2-7b-f16.gguf
  python3 benches/make_random_gguf.py --preset llama3-8b --dtype bf16 --out /tmp/l3-8b-bf16.gguf
  python3 benches/make_random_gguf.py --preset llama2-7b --dtype q4_k_m --out /tmp/l2-7b-q4_k_m.gguf
  python3 benches/make_random_gguf.py --preset llama2-7b --layers 2 --out /tmp/l2-2l.gguf

Weights: N(0, 0.02) values, drawn once into a pool of 2^24 and written from rotating offsets
(speed does not depend on the values, and drawing 8e9 normals would take minutes); norm
weights 1. Quantized types are random blocks (random quants and sub-block scales, block
scales fixed so that values are of the same size); Q4_K_M gives each tensor the type
llama.cpp's `llama-quantize` gives it for LLaMA (Q6_K output and, in the layers it favours,
attn_v and ffn_down; Q4_K elsewhere; rows not made of 256-value blocks fall back to Q5_0 and
Q8_0 as it does). The vocabulary is synthetic but well-formed (SentencePiece-style: <unk>, <s>,
</s>, the 256 byte tokens, then distinct word pieces), sized like the preset's. Needs numpy
only.
"""
import argparse
import struct

import numpy as np

PRESETS = {
    "llama2-7b": dict(vocab=32000, d=4096, layers=32, heads=32, kv_heads=32, ff=11008, theta=10000.0, ctx=4096),
    "llama3-8b": dict(vocab=128256, d=4096, layers=32, heads=32, kv_heads=8, ff=14336, theta=500000.0, ctx=8192),
}
GGUF_F32, GGUF_F16, GGUF_BF16 = 0, 1, 30
Q4_0, Q5_0, Q8_0, Q4_K, Q6_K = 2, 6, 8, 12, 14
# Quantized types: (elements per block, bytes per block, {offset of an f16 scale: its value}).
BLOCKS = {
    Q4_0: (32, 18, {0: 0.005}),
    Q5_0: (32, 22, {0: 0.002}),
    Q8_0: (32, 34, {0: 0.0003}),
    Q4_K: (256, 144, {0: 0.0002, 2: 0.0002}),
    Q6_K: (256, 210, {208: 0.00002}),
}
# --dtype: (file_type, type of most matrices)
DTYPES = {"f16": (1, GGUF_F16), "bf16": (32, GGUF_BF16), "q4_0": (2, Q4_0), "q8_0": (7, Q8_0), "q4_k_m": (15, Q4_K)}
ALIGN = 32


def more_bits(i, n):
    """The layers whose attn_v and ffn_down llama-quantize's Q4_K_M keeps in Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def fallback(t, cols):
    """llama-quantize's type for rows that are not whole 256-value blocks."""
    if cols % 256 == 0:
        return t
    return {Q4_K: Q5_0, Q6_K: Q8_0}.get(t, t)


def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, value):
    """A metadata pair: typ 4 u32, 6 f32, 8 string, 9 array (value = (elem type, items))."""
    out = s(key) + struct.pack("<I", typ)
    if typ == 4:
        return out + struct.pack("<I", value)
    if typ == 6:
        return out + struct.pack("<f", value)
    if typ == 8:
        return out + s(value)
    et, items = value
    out += struct.pack("<IQ", et, len(items))
    if et == 8:
        return out + b"".join(s(i) for i in items)
    fmt = {5: "<i", 6: "<f"}[et]
    return out + b"".join(struct.pack(fmt, i) for i in items)


def vocab(n):
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    i = 0
    while len(toks) < n:
        toks.append(f"\u2581w{i}")
        types.append(1)
        i += 1
    return toks, [-float(j) for j in range(n)], types


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=PRESETS, required=True)
    ap.add_argument("--dtype", choices=DTYPES, default="f16")
    ap.add_argument("--layers", type=int, help="fewer layers than the preset")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    p = dict(PRESETS[a.preset])
    if a.layers:
        p["layers"] = a.layers
    d, hd = p["d"], p["d"] // p["heads"]
    kvd = p["kv_heads"] * hd
    file_type, wtype = DTYPES[a.dtype]
    mixed = a.dtype == "q4_k_m"
    n = p["layers"]

    tensors = [("token_embd.weight", (p["vocab"], d), wtype)]
    for l in range(n):
        b = f"blk.{l}."
        tensors += [
            (b + "attn_norm.weight", (d,), GGUF_F32),
            (b + "attn_q.weight", (d, d), wtype),
            (b + "attn_k.weight", (kvd, d), wtype),
            (b + "attn_v.weight", (kvd, d), Q6_K if mixed and more_bits(l, n) else wtype),
            (b + "attn_output.weight", (d, d), wtype),
            (b + "ffn_norm.weight", (d,), GGUF_F32),
            (b + "ffn_gate.weight", (p["ff"], d), wtype),
            (b + "ffn_up.weight", (p["ff"], d), wtype),
            (b + "ffn_down.weight", (d, p["ff"]), fallback(Q6_K if mixed and more_bits(l, n) else wtype, p["ff"])),
        ]
    tensors += [("output_norm.weight", (d,), GGUF_F32), ("output.weight", (p["vocab"], d), Q6_K if mixed else wtype)]

    toks, scores, types = vocab(p["vocab"])
    meta = [
        kv("general.architecture", 8, "llama"),
        kv("general.name", 8, f"random {a.preset} {a.dtype}"),
        kv("general.file_type", 4, file_type),
        kv("llama.context_length", 4, p["ctx"]),
        kv("llama.embedding_length", 4, d),
        kv("llama.block_count", 4, p["layers"]),
        kv("llama.feed_forward_length", 4, p["ff"]),
        kv("llama.rope.dimension_count", 4, hd),
        kv("llama.attention.head_count", 4, p["heads"]),
        kv("llama.attention.head_count_kv", 4, p["kv_heads"]),
        kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        kv("llama.rope.freq_base", 6, p["theta"]),
        kv("tokenizer.ggml.model", 8, "llama"),
        kv("tokenizer.ggml.tokens", 9, (8, toks)),
        kv("tokenizer.ggml.scores", 9, (6, scores)),
        kv("tokenizer.ggml.token_type", 9, (5, types)),
        kv("tokenizer.ggml.bos_token_id", 4, 1),
        kv("tokenizer.ggml.eos_token_id", 4, 2),
        kv("tokenizer.ggml.unknown_token_id", 4, 0),
    ]

    def nbytes(shape, t):
        n = int(np.prod(shape))
        if t in BLOCKS:
            return n // BLOCKS[t][0] * BLOCKS[t][1]
        return n * (4 if t == GGUF_F32 else 2)

    infos, off = [], 0
    for name, shape, t in tensors:
        infos.append(s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", x) for x in reversed(shape))
                     + struct.pack("<IQ", t, off))
        off += (nbytes(shape, t) + ALIGN - 1) // ALIGN * ALIGN

    rng = np.random.default_rng(0)
    pool32 = (rng.standard_normal(1 << 24, dtype=np.float32) * 0.02).astype(np.float32)
    pool = pool32.astype(np.float16).view(np.uint16) if wtype == GGUF_F16 else (pool32.view(np.uint32) >> 16).astype(np.uint16)
    pool = np.concatenate([pool, pool])  # any window of up to 2^24 values is one slice
    # Per quantized type, 2^16 random blocks (twice over, as the pool) with their scales set.
    block_pools = {}
    for t, (_, size, scales) in BLOCKS.items():
        blocks = rng.integers(0, 256, size=(1 << 16, size), dtype=np.uint8)
        for at, v in scales.items():
            blocks[:, at:at + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)
        block_pools[t] = np.concatenate([blocks, blocks]).tobytes()
    with open(a.out, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
        for m in meta:
            f.write(m)
        for i in infos:
            f.write(i)
        f.write(b"\0" * (-f.tell() % ALIGN))
        start = f.tell()
        rot = 0
        for name, shape, t in tensors:
            f.write(b"\0" * (-(f.tell() - start) % ALIGN))
            if t == GGUF_F32:
                f.write(np.ones(shape, dtype=np.float32).tobytes())
                continue
            if t in BLOCKS:
                size = BLOCKS[t][1]
                left = nbytes(shape, t) // size
                while left:
                    k = min(left, 1 << 16)
                    r = rot % (1 << 16)
                    f.write(block_pools[t][r * size:(r + k) * size])
                    rot = (rot + 7919) % (1 << 24)
                    left -= k
                continue
            left = int(np.prod(shape))
            while left:
                n = min(left, 1 << 24)
                f.write(pool[rot:rot + n].tobytes())
                rot = (rot + 7919) % (1 << 24)
                left -= n
        f.write(b"\0" * (-(f.tell() - start) % ALIGN))
    print(f"wrote {a.out}: {a.preset} {a.dtype}, {p['layers']} layers, {off / 1e9:.2f} GB of tensors")


if __name__ == "__main__":
    main()
