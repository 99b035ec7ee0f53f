"""cffi build script: compiles the C core into the private extension ``loomrt._loomrt_cffi``.

The cdef is derived from ``csrc/include/loomrt.h`` itself (the header is the spec), so the
Python binding can never drift from the C API. Used by setup.py (``cffi_modules``).
"""
from __future__ import annotations

import os
import re
import sys

from cffi import FFI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
HEADER = os.path.join(CSRC, "include", "loomrt.h")

SOURCES = [
    "api.c", "config.c", "convert.c", "error.c", "forward.c", "gguf.c", "json.c", "math.c",
    "model.c", "platform.c", "safetensors.c", "sampler.c", "state.c", "text.c", "threadpool.c",
    "tokenizer.c", "unicode_tables.c", "utf8.c",
    "kernels/ref.c", "kernels/avx2.c", "kernels/dispatch.c",
    "kernels/avx512.c", "kernels/neon.c", "kernels/wasm_simd.c", "kernels/avx2_math.c",  # empty where the ISA cannot exist
]


def cdef_from_header(text: str) -> str:
    """Turn loomrt.h into a cffi cdef: drop the preprocessor and C++ guards, keep integer
    #defines of the LRT_ namespace, and strip the LRT_API export macro."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            m = re.match(r"#define\s+(LRT_[A-Z0-9_]+)\s+\(?\s*(-?\d+)\s*\)?\s*$", s)
            if m:
                out.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        out.append(line.replace("LRT_API ", ""))
    return "\n".join(out)


def compile_args() -> list[str]:
    if sys.platform == "win32":
        # MSVC: C11 mode (_Alignof, max_align_t; VS 2019 16.8+), IEEE-preserving floating point
        # (/fp:precise contracts nothing into FMA since VS 2022; x64 builds emit no FMA without
        # /arch:AVX2 anyway), never /fp:fast. clang-cl accepts the same flags.
        return ["/std:c11", "/fp:precise", "/O2"]
    return ["-std=c11", "-O2", "-ffp-contract=off", "-fno-fast-math"]


ffibuilder = FFI()
with open(HEADER, encoding="utf-8") as f:
    ffibuilder.cdef(cdef_from_header(f.read()))
ffibuilder.set_source(
    "loomrt._loomrt_cffi",
    '#include "loomrt.h"',
    sources=[os.path.relpath(os.path.join(CSRC, s), ROOT) for s in SOURCES],
    include_dirs=[os.path.relpath(os.path.join(CSRC, "include"), ROOT)],
    extra_compile_args=compile_args(),
    libraries=[] if sys.platform == "win32" else ["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
