"""Own math (csrc/base/math.c) checked over the float inputs by csrc/tests/test_math_exhaustive.c:
vector exp/silu/log kernels bit-identical to the scalar functions on every kernel path, and the
accuracy of lrt_expf / lrt_tanhf / lrt_siluf / lrt_gelu_tanhf against a double reference.

The full run (every one of the 2^32 inputs, `test_math_exhaustive 2 1`) costs about five
minutes of CPU on this machine, mostly in subnormal arithmetic, so CI checks every 31st input
(138 million, every exponent and sign, spread over the mantissas); the full run's results are
in docs/numerics.md. LOOMRT_MATH_STRIDE=1 runs the full set here.
"""
from __future__ import annotations

import os
import re
import subprocess


import loomrt

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")
STRIDE = int(os.environ.get("LOOMRT_MATH_STRIDE", "31"))
FUNCTIONS = ["lrt_expf", "lrt_tanhf", "lrt_siluf", "lrt_gelu_tanhf"]


def kernel_sources():
    from models import library_sources

    return [s for s in library_sources(CSRC) if s.startswith("kernels/")] + ["base/math.c", "base/convert.c", "base/error.c"]


def vector_math_in_table() -> bool:
    return "exp_f32" in open(os.path.join(CSRC, "kernels", "kernels.h"), encoding="utf-8").read()


def build(out, cc, extra=()):
    defs = (["-DLRT_TEST_VECTOR_MATH"] if vector_math_in_table() else []) + list(extra)
    cmd = list(cc) + ["-std=c11", "-O2", "-ffp-contract=off", "-fno-fast-math", *defs, "-o", out,
                      os.path.join(CSRC, "tests", "test_math_exhaustive.c")] + \
        [os.path.join(CSRC, s) for s in kernel_sources()] + ["-lpthread", "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    return out


def check(text: str, paths):
    assert text.strip().endswith("all ok"), text
    for f in FUNCTIONS:
        m = re.search(rf"^accuracy {f} inputs=(\d+) .* special_errors=0 ok$", text, re.M)
        assert m and int(m.group(1)) == (1 << 32) // STRIDE, (f, text)
    if vector_math_in_table():
        for p in paths:
            if f"vector {p}: no vector" in text:
                continue
            for k in ("exp_f32", "silu_mul_f32", "log_f32"):
                assert re.search(rf"^vector {p} {k} inputs=\d+ mismatches=0 ok$", text, re.M), (p, k, text)


def test_own_math_native(tmp_path):
    exe = build(str(tmp_path / "tme"), ["gcc"])
    p = subprocess.run([exe, "2", str(STRIDE)], capture_output=True, text=True, timeout=1800)
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    check(p.stdout, loomrt.kernel_paths())


def test_own_math_catches_a_wrong_vector_exp(tmp_path):
    """The identity check is able to fail: built with -DLRT_TEST_PERTURB, the test program
    changes one vector exp result (input +0.0) before comparing, and must report it."""
    exe = build(str(tmp_path / "tme_bad"), ["gcc"], ["-DLRT_TEST_PERTURB"])
    p = subprocess.run([exe, "2", "4093"], capture_output=True, text=True, timeout=600)
    if not vector_math_in_table():  # nothing vectorized to perturb in this build
        assert p.returncode == 0 and "no elementwise math entries" in p.stdout, p.stdout
        return
    simd = [k for k in loomrt.kernel_paths() if f"vector {k}: no vector" not in p.stdout and k != "reference"]
    assert simd, p.stdout
    assert p.returncode == 1 and "FAILED" in p.stdout, p.stdout
    for k in simd:
        assert re.search(rf"^vector {k} exp_f32 inputs=\d+ mismatches=1$", p.stdout, re.M), p.stdout
