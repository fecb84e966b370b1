#!/usr/bin/env python3
"""Reference dequantizations of random blocks of every GGUF block type we read (development-time
oracle: gguf-py, from PyPI, `pip install gguf`). Writes tests/data/quant/blocks.bin:

  per type: u32 ggml type id, u32 block count, the blocks' bytes, then gguf-py's dequantized
  values (f32, little-endian), in the order of tests/model_quant.rs's BLOCK_TYPES.

The bytes are random, except the f16 scale fields, which are random finite values of a few
magnitudes (a NaN or infinite scale would make the comparison meaningless).
Run from the repository root: python3 tests/data/quant/make_blocks.py
"""
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
# (type, block bytes, byte offsets of its f16 fields)
TYPES = [
    (T.Q4_0, 18, [0]),
    (T.Q4_1, 20, [0, 2]),
    (T.Q5_0, 22, [0]),
    (T.Q5_1, 24, [0, 2]),
    (T.Q8_0, 34, [0]),
    (T.Q2_K, 84, [80, 82]),
    (T.Q3_K, 110, [108]),
    (T.Q4_K, 144, [0, 2]),
    (T.Q5_K, 176, [0, 2]),
    (T.Q6_K, 210, [208]),
]
N_BLOCKS = 24


def main():
    rng = np.random.default_rng(20261204)
    out = bytearray()
    for qtype, size, f16_at in TYPES:
        blocks = rng.integers(0, 256, size=(N_BLOCKS, size), dtype=np.uint8)
        for at in f16_at:
            vals = (rng.standard_normal(N_BLOCKS) * 10.0 ** rng.integers(-4, 1, N_BLOCKS)).astype(np.float16)
            blocks[:, at:at + 2] = vals.view(np.uint8).reshape(N_BLOCKS, 2)
        values = quants.dequantize(blocks, qtype).astype(np.float32)
        out += struct.pack("<II", int(qtype), N_BLOCKS) + blocks.tobytes() + values.tobytes()
    with open(os.path.join(HERE, "blocks.bin"), "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
