"""The SIMD kernel paths this machine cannot run natively, executed for real.

csrc/tests/test_kernels.c (every runnable kernel path against the scalar reference, bit for
bit, plus a deliberately perturbed lane order that must be caught) is cross-compiled with
zig cc and run:

* aarch64 (NEON) under qemu-aarch64 (user-mode emulation: the real instruction semantics,
  FPCR defaults of Linux),
* wasm32-wasi with SIMD128 under wasmtime (the PyPI package's engine),
* the AVX-512 path's lane logic in its portable emulation (avx512.c, LRT_AVX512_EMULATE),
  natively: no emulator here executes AVX-512 (QEMU's x86 user mode stops at AVX2), so
  that build checks the pairing of two dot products per ZMM register, the block shuffles and
  the combination trees, not the intrinsics themselves. The intrinsic build is compiled by
  csrc/Makefile and selected only on request (LOOMRT_KERNELS=avx512) on a CPU that has it.

Each run must show that the path was selected (the "kernel path in use" line names it), that
it equals the reference on all cases (dot products, dequantization, fused block decode, and
the elementwise exp / SiLU against the scalar own math), and that the perturbed lane order
and a reassociated exp were detected there too.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from typing import List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-ffp-contract=off", "-fno-fast-math", "-I", CSRC]
SOURCES = ["tests/test_kernels.c", "kernels/ref.c", "kernels/avx2.c", "kernels/avx512.c", "kernels/neon.c",
           "kernels/wasm_simd.c", "kernels/avx2_math.c", "kernels/dispatch.c", "base/convert.c", "base/math.c", "base/error.c"]


def _cmd(cc: List[str], out: str, extra: List[str], libs: List[str]) -> List[str]:
    return cc + FLAGS + extra + ["-o", out] + [os.path.join(CSRC, s) for s in SOURCES] + libs


def _zig() -> List[str]:
    try:
        import ziglang  # noqa: F401  (PyPI ziglang, installed by tests/install-deps.sh)
    except ImportError:
        pytest.fail("the ziglang package is missing: run tests/install-deps.sh")
    return [sys.executable, "-m", "ziglang", "cc"]


@pytest.fixture(scope="module")
def foreign_builds(tmp_path_factory):
    """Both cross builds at once (zig builds each target's libc on first use: the slow part)."""
    d = str(tmp_path_factory.mktemp("foreign-kernels"))
    builds = {
        "neon": (os.path.join(d, "test_kernels_aarch64"), ["-target", "aarch64-linux-musl"], ["-lm"]),
        "wasm_simd128": (os.path.join(d, "test_kernels.wasm"), ["-target", "wasm32-wasi", "-msimd128"], ["-lm"]),
    }
    procs = {k: subprocess.Popen(_cmd(_zig(), out, extra, libs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, (out, extra, libs) in builds.items()}
    for k, p in procs.items():
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, f"{k} build failed:\n{err[-4000:]}"
        assert "warning" not in err.lower(), err
    return {k: v[0] for k, v in builds.items()}


def _check(out: str, path: str) -> None:
    lines = out.splitlines()
    assert lines and lines[0] == f"kernel path in use: {path}", out[-3000:]
    assert f"{path} == reference on all cases" in lines, out[-3000:]
    assert "a perturbed lane order is detected, as it must be" in lines, out[-3000:]
    assert "a perturbed exp is detected, as it must be" in lines, out[-3000:]
    assert lines[-1] == "all kernel checks passed", out[-3000:]


@pytest.mark.slow
def test_neon_path_under_qemu_aarch64(foreign_builds):
    exe = foreign_builds["neon"]
    with open(exe, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and struct.unpack("<H", head[18:20])[0] == 183  # EM_AARCH64
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    assert qemu, "qemu-aarch64 is missing (tests/install-deps.sh installs qemu-user)"
    r = subprocess.run([qemu, exe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check(r.stdout, "neon")


@pytest.mark.slow
def test_wasm_simd128_path_under_wasmtime(foreign_builds, tmp_path):
    import wasmtime  # PyPI wasmtime, installed by tests/install-deps.sh

    wasm = foreign_builds["wasm_simd128"]
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, wasm)
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    cfg = wasmtime.WasiConfig()
    out, err = str(tmp_path / "stdout.txt"), str(tmp_path / "stderr.txt")
    cfg.stdout_file, cfg.stderr_file = out, err
    store.set_wasi(cfg)
    inst = linker.instantiate(store, module)
    code = 0
    try:
        inst.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        code = e.code
    text = open(out, encoding="utf-8").read()
    assert code == 0, text[-3000:] + open(err, encoding="utf-8").read()[-3000:]
    _check(text, "wasm_simd128")


def test_avx512_lane_logic_emulated(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "a C compiler is required"
    exe = str(tmp_path / "test_kernels_avx512emu")
    cmd = _cmd([cc], exe, ["-DLRT_AVX512_EMULATE"], ["-lm", "-lpthread"])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "warning" not in r.stderr.lower(), r.stderr[-4000:]
    r = subprocess.run([exe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    lines = r.stdout.splitlines()
    assert "avx512 == reference on all cases" in lines, r.stdout[-3000:]
    assert "a perturbed lane order is detected, as it must be" in lines
    assert lines[-1] == "all kernel checks passed"


def test_avx512_is_compiled_in_and_opt_in_only(seeded_folder):
    """avx512 is in every x86-64 build but never the automatic choice (not verified on
    AVX-512 hardware): it runs only when asked for by name, where the CPU/OS has it."""
    import loomrt

    paths = loomrt.kernel_paths()
    assert paths[0] != "avx512" and paths[-1] == "reference"
    if "avx512" not in paths:
        if loomrt.kernel_path() == "avx2":  # an x86-64 build on a CPU without AVX-512
            with pytest.raises(loomrt.UnsupportedError, match="compiled in but this CPU/OS cannot run it"):
                loomrt.set_kernel_path("avx512")
        return
    m = loomrt.load(seeded_folder, threads=2)
    before = loomrt.kernel_path()
    try:
        loomrt.set_kernel_path("reference")
        ref = m.logits([1, 5, 9, 200, 17, 3])
        loomrt.set_kernel_path("avx512")
        assert (m.logits([1, 5, 9, 200, 17, 3]).view("u4") == ref.view("u4")).all()
    finally:
        loomrt.set_kernel_path(before)
