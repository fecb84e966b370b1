"""Checks a big .ckpt written by our CkptWriter against MindSpore 2.10.0 (CPU wheel from PyPI).

  RUNLLAMA_CKPT_BIG=/tmp/big-ours.ckpt cargo test --test ckpt -- --ignored big_file
  python check_big.py /tmp/big-ours.ckpt /tmp/big-ms.ckpt [ROWS]

(ROWS as RUNLLAMA_CKPT_BIG_ROWS, default 131072; 128256 is llama3-8B's embedding.)

1. mindspore.load_checkpoint(ours, crc_check=True) must read lm_head.weight (bf16 [ROWS, 4096]:
   1 GiB in two 512 MiB pieces for 131072 rows) and model.norm_out.weight bit-exact;
2. mindspore.save_checkpoint(crc_check=True) of the same tensors must give a byte-identical file.
"""
import filecmp
import sys

import mindspore as ms
import numpy as np

ours, theirs = sys.argv[1], sys.argv[2]
ROWS, COLS = (int(sys.argv[3]) if len(sys.argv) > 3 else 131072), 4096


def pattern():
    """bf16 bits of element i, as big_pattern() in tests/ckpt.rs (finite, normal values)."""
    i = np.arange(ROWS * COLS, dtype=np.uint32)
    x = i * np.uint32(2654435761)
    del i
    e = np.uint32(1) + ((x >> np.uint32(8)) % np.uint32(126))
    return (((x >> np.uint32(16)) & np.uint32(0x807F)) | (e << np.uint32(7))).astype(np.uint16).reshape(ROWS, COLS)


want = pattern()
norm = np.arange(COLS, dtype=np.float32) * np.float32(0.25)

params = ms.load_checkpoint(ours, crc_check=True)
assert sorted(params) == ["lm_head.weight", "model.norm_out.weight"], sorted(params)
lm = params["lm_head.weight"]
assert lm.dtype == ms.bfloat16 and tuple(lm.shape) == (ROWS, COLS), (lm.dtype, lm.shape)
got = (lm.astype(ms.float32).asnumpy().view(np.uint32) >> 16).astype(np.uint16)
assert np.array_equal(got, want), "lm_head.weight differs"
del got, lm, params
n = ms.load_checkpoint(ours, crc_check=True)["model.norm_out.weight"].asnumpy()
assert n.dtype == np.float32 and np.array_equal(n.view(np.uint32), norm.view(np.uint32))
print("load_checkpoint(crc_check=True) of our file: bit-exact")

lm_t = ms.Tensor((want.astype(np.uint32) << 16).view(np.float32)).astype(ms.bfloat16)
del want
ms.save_checkpoint([{"name": "model.norm_out.weight", "data": ms.Tensor(norm)},
                    {"name": "lm_head.weight", "data": lm_t}], theirs, crc_check=True)
same = filecmp.cmp(ours, theirs, shallow=False)
print("MindSpore's save_checkpoint of the same tensors is byte-identical:", same)
assert same
