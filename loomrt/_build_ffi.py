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

# The library's C sources: every .c file of the layer folders, lowest layer first (see
# csrc/README.md). csrc/Makefile globs the same folders; tests/test_layout.py checks that the
# two lists agree and that no file includes a layer above its own.
LAYERS = ["base", "formats", "text", "kernels", "model", "train", "weave", "api"]


def library_sources(csrc: str = CSRC) -> list[str]:
    """The library's .c files relative to ``csrc`` (kernel files of other ISAs compile to
    nothing where the ISA cannot exist)."""
    out = []
    for layer in LAYERS:
        folder = os.path.join(csrc, layer)
        out += [f"{layer}/{n}" for n in sorted(os.listdir(folder)) if n.endswith(".c")]
    return out


SOURCES = library_sources()


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
