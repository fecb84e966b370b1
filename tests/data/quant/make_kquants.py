#!/usr/bin/env python3
"""K-quant fixtures: a random-weight LLaMA of 256-wide rows, quantized by llama.cpp's
llama-quantize into the K-quant presets (development-time tools; only the outputs are kept).

  python3 ../shared/tools/make_random_llama.py --preset llama2-7b --layers 2 --hidden 256 \\
      --heads 2 --kv-heads 1 --ffn 512 --vocab 512 --dtype float32 --out /tmp/k256 \\
      --tokenizer ../shared/models/stories260K/tok512.model
  python3 tests/data/quant/make_kquants.py /tmp/k256 /path/to/llama-quantize

writes tests/data/quant/k256-<preset>.gguf for Q2_K, Q3_K_M, Q4_K_M, Q5_K_M and Q6_K (the
presets mix Q2_K ... Q6_K, Q4_0/Q5_0/Q8_0 per tensor as llama.cpp chooses). The F32 GGUF they
are made from is written to a temporary file first: the HF safetensors tensors under GGUF
names (q/k rows kept in HF order: the weights are random, so the RoPE pairing only makes it a
different random model), with stories260K's metadata and tok512 vocabulary and this model's
dimensions. Needs gguf-py (`pip install gguf`, from PyPI) and numpy.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFWriter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_quantized import copy_metadata  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "stories260K", "stories260K-f32.gguf")
PRESETS = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"]
NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", t
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=np.float32).reshape(t["shape"])
    return out


def gguf_name(hf):
    if hf in NAMES:
        return NAMES[hf]
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    return f"blk.{parts[2]}.{LAYER['.'.join(parts[3:-1])]}.weight"


def main():
    hf_dir, quantize = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    shards = [f for f in os.listdir(hf_dir) if f.endswith(".safetensors")]
    tensors = {}
    for s in shards:
        tensors.update(read_safetensors(os.path.join(hf_dir, s)))
    dims = {
        "llama.context_length": 512,
        "llama.embedding_length": cfg["hidden_size"],
        "llama.block_count": cfg["num_hidden_layers"],
        "llama.feed_forward_length": cfg["intermediate_size"],
        "llama.attention.head_count": cfg["num_attention_heads"],
        "llama.attention.head_count_kv": cfg["num_key_value_heads"],
        "llama.rope.dimension_count": cfg["hidden_size"] // cfg["num_attention_heads"],
    }
    reader = GGUFReader(TEMPLATE)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k256-f32.gguf")
        w = GGUFWriter(src, arch="llama")
        copy_metadata(reader, w, dims)
        for name in sorted(tensors, key=gguf_name):
            w.add_tensor(gguf_name(name), np.ascontiguousarray(tensors[name]))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        for preset in PRESETS:
            out = os.path.join(HERE, f"k256-{preset.lower()}.gguf")
            subprocess.run([quantize, src, out, preset], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
