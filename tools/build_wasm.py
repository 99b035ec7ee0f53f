#!/usr/bin/env python3
"""Build loomrt.wasm: the C core for wasm32 with SIMD128 kernels, for the JavaScript module in
bindings/js/ (browser and Node).

    python tools/build_wasm.py [--out-dir bindings/js] [--opt -O3]

writes two modules: loomrt.wasm (one thread; runs anywhere) and loomrt-threads.wasm (threads on
Web Workers over a shared memory: wasm atomics and bulk memory, for cross-origin isolated pages
and Node; docs/web.md "Threads").

The compiler is zig's clang from PyPI (``pip install ziglang``), the one the determinism matrix
(tests/test_matrix.py) already uses for its wasm32-wasi driver. The module is a WASI *reactor*
(no main; `_initialize` runs the C constructors) exporting every function of
csrc/include/loomrt.h plus malloc / free and its memory. It imports a handful of
wasi_snapshot_preview1 functions (clock, environment, fd_write for libc's stdio that the library
never uses for output): bindings/js/loomrt.mjs provides them itself, so no WASI runtime is needed.

Same numerics flags as every other build (no FMA contraction, no fast math): the module gives
the same logits bits as the native library (docs/web.md). -O3 (clang's most optimising level
without fast math, as zig's ReleaseFast) with SIMD128; the kernels in
csrc/kernels/wasm_simd.c are written with SIMD128 intrinsics, so no loop depends on the
auto-vectoriser."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
DEFAULT_DIR = os.path.join(ROOT, "bindings", "js")
DEFAULT_OUT = os.path.join(DEFAULT_DIR, "loomrt.wasm")
THREADS_NAME = "loomrt-threads.wasm"
# the threaded module imports its memory (shared between the workers' instances): its initial
# size is fixed here and in bindings/js/loomrt.mjs (THREADS_INITIAL_PAGES), 64 KiB pages
THREADS_INITIAL_PAGES = 512
MAX_PAGES = 65535  # just under the 4 GiB wasm32 limit
NUMERICS_FLAGS = ["-std=c11", "-ffp-contract=off", "-fno-fast-math"]
# libc functions the JavaScript side calls (buffers it passes to the API)
EXTRA_EXPORTS = ["malloc", "free"]


def library_sources() -> List[str]:
    """Every .c file of the folders on csrc/Makefile's LAYERS line (as the Makefile does)."""
    with open(os.path.join(CSRC, "Makefile"), encoding="utf-8") as f:
        m = re.search(r"^LAYERS\s*=(.*)$", f.read(), re.M)
    if not m:
        raise SystemExit("csrc/Makefile has no LAYERS line")
    return sorted(os.path.join(CSRC, d, n) for d in m.group(1).split()
                  for n in os.listdir(os.path.join(CSRC, d)) if n.endswith(".c"))


def api_functions() -> List[str]:
    """Names of the functions declared LRT_API in loomrt.h."""
    with open(os.path.join(CSRC, "include", "loomrt.h"), encoding="utf-8") as f:
        text = f.read()
    names = re.findall(r"LRT_API\b[^;(]*?\b(lrt_[a-z0-9_]+)\s*\(", text)
    if not names:
        raise SystemExit("no LRT_API functions found in loomrt.h")
    return sorted(set(names))


def build_command(out: str, opt: str = "-O3", threads: bool = False) -> List[str]:
    exports = [f"-Wl,--export={n}" for n in api_functions() + EXTRA_EXPORTS]
    if threads:
        # atomics + a shared, imported memory: each Web Worker instantiates the module over the
        # same memory, sets its own stack pointer and thread-local block (exported for that) and
        # runs lrt_wasm_thread_main (csrc/base/platform.c)
        target = ["-mcpu=generic+simd128+atomics+bulk_memory"]
        memory = ["-Wl,--import-memory", "-Wl,--shared-memory",
                  f"-Wl,--initial-memory={THREADS_INITIAL_PAGES * 65536}",
                  "-Wl,--export=__stack_pointer", "-Wl,--export=__wasm_init_tls"]
    else:
        target = ["-msimd128"]
        memory = []
    return ([sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi"] + target +
            ["-mexec-model=reactor", "-DLOOMRT_BUILD_SHARED", "-I", os.path.join(CSRC, "include"), "-I", CSRC]
            + NUMERICS_FLAGS + [opt, "-s"] + exports + memory
            # the model's weights live in the module's memory: let it grow to (almost) the 4 GiB wasm32 limit
            + [f"-Wl,--max-memory={MAX_PAGES * 65536}", "-o", out]
            + library_sources() + ["-lm"])


def build(out: str = DEFAULT_OUT, opt: str = "-O3", timeout: int = 900, threads: bool = False) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    cmd = build_command(out, opt, threads)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"wasm build failed ({' '.join(cmd[:8])} ...):\n{p.stderr[-4000:]}")
    return out


def build_all(out_dir: str = DEFAULT_DIR, opt: str = "-O3", timeout: int = 900) -> List[str]:
    """loomrt.wasm and loomrt-threads.wasm in out_dir."""
    return [build(os.path.join(out_dir, "loomrt.wasm"), opt, timeout),
            build(os.path.join(out_dir, THREADS_NAME), opt, timeout, threads=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_DIR, help="output folder (default bindings/js)")
    ap.add_argument("--opt", default="-O3", help="optimisation flag (default -O3; write --opt=-O2)")
    a = ap.parse_args()
    for out in build_all(a.out_dir, a.opt):
        print(f"{out}: {os.path.getsize(out)} bytes, {len(api_functions())} API functions exported")


if __name__ == "__main__":
    main()
