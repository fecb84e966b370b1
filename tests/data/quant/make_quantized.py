#!/usr/bin/env python3
"""Quantized stories260K GGUFs and their reference dequantizations (development-time oracle).

Reads tests/data/stories260K/stories260K-f32.gguf and writes, for each of Q8_0, Q4_0, Q4_1,
Q5_0 and Q5_1 (the types gguf-py quantizes; the K-quants need llama.cpp's llama-quantize):
  stories260K-<type>.gguf          every 2-D weight whose rows are whole 32-element blocks in
                                   <type> (quantized by gguf-py, the reference implementation of
                                   ggml's quantize_row_*_ref), the rest (norms, ffn_down with its
                                   172-value rows) kept in F32;
  stories260K-<type>-dequant.gguf  the same model with every quantized tensor replaced by
                                   gguf-py's dequantization of it, in F32: what the quantized
                                   file means, value for value.
Metadata is copied unchanged (general.file_type set to the type). Requires `pip install gguf`
(gguf-py, from PyPI). Run from the repository root:
  python3 tests/data/quant/make_quantized.py
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFValueType, GGUFWriter, quants

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "stories260K", "stories260K-f32.gguf")
FILE_TYPE = {T.Q8_0: 7, T.Q4_0: 2, T.Q4_1: 3, T.Q5_0: 8, T.Q5_1: 9}  # llama.cpp's LLAMA_FTYPE_MOSTLY_*


def field_value(f):
    """A reader field's value in the form GGUFWriter.add_key_value takes."""
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def copy_metadata(reader, w, uint32_overrides):
    """Every key of `reader` into writer `w`, but those in `uint32_overrides` (given values)."""
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key in uint32_overrides:
            w.add_uint32(key, uint32_overrides[key])
            continue
        sub = f.types[1] if f.types[0] == GGUFValueType.ARRAY else None
        w.add_key_value(key, field_value(f), f.types[0], sub_type=sub)


def write(path, reader, qtype, dequant):
    w = GGUFWriter(path, arch="llama")
    copy_metadata(reader, w, {"general.file_type": 0 if dequant else FILE_TYPE[qtype]})
    for t in reader.tensors:
        data = np.array(t.data, dtype=np.float32)
        if data.ndim == 2 and data.shape[1] % 32 == 0:
            q = quants.quantize(data, qtype)
            if dequant:
                w.add_tensor(t.name, quants.dequantize(q, qtype).astype(np.float32))
            else:
                w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    reader = GGUFReader(SRC)
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        name = qtype.name.lower()
        write(os.path.join(HERE, f"stories260K-{name}.gguf"), reader, qtype, dequant=False)
        write(os.path.join(HERE, f"stories260K-{name}-dequant.gguf"), reader, qtype, dequant=True)


if __name__ == "__main__":
    main()
