"""Copies of a GGUF model in other weight formats (F32, F16, BF16, Q8_0, Q4_0, Q4_1), so loomrt
and its peers can be compared on each format with the same bytes (needs the ``gguf`` package,
which loomrt itself does not depend on).

Every 2-D weight is dequantized to float32 by the ``gguf`` package and stored again in the
target format (1-D tensors, the norms, stay F32); metadata is copied unchanged except
``general.file_type``. Files are cached (default ``~/.cache/loomrt/bench``) and reused when
newer than the source.

A copy in a quantized format is a *re-quantization* of the source's dequantized values; the
exact float reference of a quantized file is :func:`dequantized_f32` of that file.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np

FORMATS = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m"]
# q4_k_m: llama.cpp's own Q4_K_M preset (Q4_K / Q6_K, and Q5_0 / Q8_0 where a row is not a
# multiple of 256 long), written by llama-cpp-python's quantizer from the F32 copy: the mix
# people download most; gguf-py cannot write K-quants
# llama.cpp's llama_ftype values for general.file_type
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "bf16": 32}
# storage bytes per weight of each format (block formats: block bytes / 32 weights)
BYTES_PER_WEIGHT = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32}


def default_out_dir() -> str:
    """Folder of the converted copies: ``~/.cache/loomrt/bench``."""
    return os.path.join(os.path.expanduser("~"), ".cache", "loomrt", "bench")


def make_format(src: str, fmt: str, out_dir: Optional[str] = None,
                log: Optional[Callable[[str], None]] = None) -> str:
    """Path of a copy of ``src`` with its 2-D weights in ``fmt``, written if missing or stale.
    ``log`` (if given) is called with a line before a file is written."""
    import gguf
    from gguf import GGMLQuantizationType as Q, GGUFReader, GGUFValueType as V, GGUFWriter

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    out_dir = out_dir or default_out_dir()
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.splitext(os.path.basename(src))[0]
    dst = os.path.join(out_dir, f"{base}.{fmt}.gguf")
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return dst
    if fmt == "q4_k_m":
        return _llama_cpp_quantize(make_format(src, "f32", out_dir, log), dst, log)
    if log is not None:
        log(f"writing {dst} ...")
    qtype = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1}[fmt]
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    tmp = dst + ".part"
    w = GGUFWriter(tmp, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type":
            w.add_key_value(name, FILE_TYPE[fmt], V.UINT32)
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == V.ARRAY and len(field.types) > 1 else None
        w.add_key_value(name, field.contents(), vtype, sub)
    for t in r.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if data.ndim < 2 or qtype == Q.F32:
            w.add_tensor(t.name, np.ascontiguousarray(data))
        elif qtype == Q.F16:
            w.add_tensor(t.name, data.astype(np.float16))
        else:
            raw = gguf.quants.quantize(data, qtype)
            w.add_tensor(t.name, raw, raw_shape=raw.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, dst)
    return dst


def _llama_cpp_quantize(f32_path: str, dst: str, log: Optional[Callable[[str], None]]) -> str:
    """llama.cpp's Q4_K_M preset of an F32 GGUF (needs llama-cpp-python)."""
    import ctypes

    try:
        import llama_cpp
    except ImportError as e:
        raise RuntimeError("the q4_k_m copy is made by llama.cpp's quantizer: pip install llama-cpp-python") from e
    if log is not None:
        log(f"writing {dst} (llama.cpp quantizer) ...")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    p.nthread = max(1, os.cpu_count() or 1)
    tmp = dst + ".part"
    if llama_cpp.llama_model_quantize(f32_path.encode(), tmp.encode(), ctypes.byref(p)) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {f32_path}")
    os.replace(tmp, dst)
    return dst


def file_format(path: str) -> str:
    """The weight format of a GGUF file as loomrt reports it ("q4_1", "f32", ...)."""
    from .model import load

    return str(load(path, threads=1).info["dtype"]).lower()


def format_file(src: str, fmt: str, out_dir: Optional[str] = None,
                log: Optional[Callable[[str], None]] = None) -> str:
    """``src`` itself when it already is in ``fmt``, else :func:`make_format`'s copy."""
    if file_format(src) == fmt.lower():
        return src
    return make_format(src, fmt, out_dir, log)


def dequantized_f32(path: str, out_dir: Optional[str] = None,
                    log: Optional[Callable[[str], None]] = None) -> str:
    """An F32 GGUF holding exactly the dequantized weights of ``path`` (the float reference
    of a quantized file): ``path`` itself when it is F32 already."""
    return format_file(path, "f32", out_dir, log)
