"""Writes the small MindSpore-made .ckpt files of tests/data/mindformers/mindspore-extras/.

Run with MindSpore 2.10.0 (CPU wheel from PyPI): python make_extras.py OUTDIR
"""
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
tensors = [
    {"name": "a.f16", "data": Tensor(np.arange(6, dtype=np.float16).reshape(2, 3))},
    {"name": "b.bf16", "data": Tensor(np.array([[1.5, -2.25, 3.0], [0.5, 7.0, -1.0]], np.float32)).astype(ms.bfloat16)},
    {"name": "c.f32", "data": Tensor(np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2))},
    {"name": "global_step", "data": Tensor(np.array(7, dtype=np.int32))},
    {"name": "e.i64", "data": Tensor(np.arange(4, dtype=np.int64) - 2)},
]
# crc_check=True: the 17-byte crc_num trailer; append_dict adds int/float scalars and a str entry.
ms.save_checkpoint(tensors, os.path.join(out, "extras-crc.ckpt"), crc_check=True,
                   append_dict={"epoch_num": 3, "loss_scale": 1024.0, "note": "h\u00e9llo"})
key = b"0123456789abcdef"
for mode, name in [("AES-GCM", "gcm"), ("AES-CBC", "aes-cbc"), ("SM4-CBC", "sm4-cbc")]:
    ms.save_checkpoint(tensors, os.path.join(out, f"extras-enc-{name}.ckpt"), enc_key=key, enc_mode=mode)
for f in sorted(os.listdir(out)):
    os.chmod(os.path.join(out, f), 0o644)
