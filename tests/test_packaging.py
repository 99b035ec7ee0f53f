"""Packaging: the cibuildwheel configuration (checked offline), the sdist, and a wheel built from
that sdist with the local compiler (tags, contents, the plain C library, auditwheel)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _identifiers(platform: str, archs: str) -> list[str]:
    exe = shutil.which("cibuildwheel")
    assert exe, "cibuildwheel is installed by tests/install-deps.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    r = subprocess.run([exe, "--print-build-identifiers", "--platform", platform, "--archs", archs, "."],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split()


@pytest.mark.parametrize("platform,archs,expected", [
    ("linux", "x86_64", ["cp39-manylinux_x86_64", "cp313-manylinux_x86_64"]),
    ("linux", "aarch64", ["cp39-manylinux_aarch64", "cp313-manylinux_aarch64"]),
    ("macos", "x86_64", ["cp39-macosx_x86_64", "cp313-macosx_x86_64"]),
    ("macos", "arm64", ["cp39-macosx_arm64", "cp313-macosx_arm64"]),
    ("windows", "AMD64", ["cp39-win_amd64", "cp313-win_amd64"]),
    ("windows", "ARM64", ["cp313-win_arm64"]),
])
def test_cibuildwheel_build_identifiers(platform: str, archs: str, expected: list[str]) -> None:
    assert _identifiers(platform, archs) == expected


def test_workflow_builds_every_platform_with_the_pyproject_config() -> None:
    import yaml

    wf = yaml.safe_load(open(os.path.join(ROOT, ".github", "workflows", "wheels.yml"), encoding="utf-8"))
    jobs = wf["jobs"]
    assert {"wheels", "sdist"} <= set(jobs)
    matrix = {(m["platform"], m["archs"]) for m in jobs["wheels"]["strategy"]["matrix"]["include"]}
    assert matrix == {("linux", "x86_64"), ("linux", "aarch64"), ("macos", "x86_64"), ("macos", "arm64"),
                      ("windows", "AMD64"), ("windows", "ARM64")}
    steps = " ".join(str(s.get("run", "")) + str(s.get("uses", "")) for s in jobs["wheels"]["steps"])
    assert "cibuildwheel" in steps and "setup-qemu-action" in steps
    cfg = _pyproject()["tool"]["cibuildwheel"]
    # the wheels are tested, golden hashes included, with test files that exist
    commands = [cfg["test-command"]] + [o["test-command"] for o in cfg["overrides"] if "test-command" in o]
    for command in commands:
        assert "tests/test_determinism.py" in command and "tests/test_library_path.py" in command
        for name in re.findall(r"tests/(\w+\.py)", command):
            assert os.path.isfile(os.path.join(ROOT, "tests", name)), name
    assert cfg["test-environment"]["LOOMRT_WHEEL_TEST"] == "1"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("sdist")
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (name,) = os.listdir(out)
    return str(out / name)


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory) -> str:
    """A wheel built from the sdist (so the sdist is proven to build), with the local compiler."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), sdist], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (name,) = os.listdir(out)
    return str(out / name)


def test_sdist_contents(sdist) -> None:
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files", "csrc", "tests"], cwd=ROOT, capture_output=True, text=True).stdout
    for path in tracked.split():  # every committed C source/header and test module
        if path.endswith((".c", ".h", ".py")) or os.path.basename(path) == "Makefile":
            assert path in names, path
    for path in ["setup.py", "pyproject.toml", "loomrt/_build_ffi.py", "loomrt/py.typed", "csrc/include/loomrt.h",
                 "tests/install-deps.sh"]:
        assert path in names, path
    assert not [n for n in names if n.endswith((".o", ".so", ".a", ".dll", ".dylib"))]
    # the web build's sources: a wheel built from the sdist can make loomrt/web/ (setup.py)
    for path in ["tools/build_wasm.py", "bindings/js/loomrt.mjs", "bindings/js/loomrt-thread.mjs",
                 "bindings/js/worker.mjs", "bindings/js/demo/index.html"]:
        assert path in names, path
    for w in ("loomrt.wasm", "loomrt-threads.wasm"):  # prebuilt by tools/build_wasm.py: shipped as made
        assert (f"bindings/js/{w}" in names) == os.path.isfile(os.path.join(ROOT, "bindings", "js", w)), w


@pytest.mark.slow
def test_wheel_tags_and_contents(wheel) -> None:
    name = os.path.basename(wheel)
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    if sys.implementation.name == "cpython" and not sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert name == f"loomrt-0.1.0-cp39-abi3-{plat}.whl"
    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
    libname = {"win32": "loomrt.dll", "darwin": "libloomrt.dylib"}.get(sys.platform, "libloomrt.so")
    assert f"loomrt/{libname}" in files
    assert "loomrt/py.typed" in files and "loomrt/_library.py" in files
    assert [f for f in files if re.fullmatch(r"loomrt/_loomrt_cffi\..*(so|pyd)", f)]
    assert not [f for f in files if f.startswith(("csrc/", "tests/"))]
    # the web assets (ziglang is installed by tests/install-deps.sh, so setup.py builds the wasm)
    for f in ("loomrt.wasm", "loomrt-threads.wasm", "loomrt.mjs", "loomrt-thread.mjs", "loomrt-worker.mjs",
              "worker.mjs", "loomrt.d.ts", "demo/index.html"):
        assert f"loomrt/web/{f}" in files, f
    with zipfile.ZipFile(wheel) as zf:
        wasm = zf.read("loomrt/web/loomrt.wasm")
    assert wasm[:4] == b"\0asm" and len(wasm) > 100_000


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF checks (nm, auditwheel) are Linux-only")
def test_wheel_library_is_plain_and_auditwheel_accepts_it(wheel, tmp_path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path)
    lib = str(tmp_path / "loomrt" / "libloomrt.so")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True).stdout
    assert "Py" not in undefined  # no Python C API: loadable by mono, C programs, game engines
    defined = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in defined.splitlines() if " T " in line}
    header = open(os.path.join(ROOT, "csrc", "include", "loomrt.h"), encoding="utf-8").read()
    assert exported == set(re.findall(r"LRT_API\s+[^;(]*?\b(lrt_\w+)\s*\(", header))
    exe = shutil.which("auditwheel")
    assert exe, "auditwheel is installed by tests/install-deps.sh"
    r = subprocess.run([exe, "show", wheel], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    text = " ".join(r.stdout.split())
    assert re.search(r'consistent with the following platform tag: "manylinux_2_\d+_x86_64"', text) or \
        not sys.platform.startswith("linux") or os.uname().machine != "x86_64", text


@pytest.mark.slow
def test_installed_wheel_library_path_and_ctypes(wheel, tmp_path) -> None:
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    code = ("import ctypes, loomrt, os; p = loomrt.library_path(); l = ctypes.CDLL(p); "
            "l.lrt_version_string.restype = ctypes.c_char_p; "
            "print(os.path.dirname(loomrt.__file__)); print(p); print(l.lrt_version_string().decode())")
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    pkg, path, version = r.stdout.split("\n")[:3]
    assert pkg == str(target / "loomrt")  # the installed wheel, not the source tree
    assert os.path.dirname(path) == pkg and version == "0.1.0"
    # pip install is enough to serve the demo: web_assets() is the installed loomrt/web/
    code = "import loomrt; print(loomrt.web_assets())"
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == str(target / "loomrt" / "web")
    assert (target / "loomrt" / "web" / "loomrt-threads.wasm").read_bytes()[:4] == b"\0asm"


@pytest.mark.parametrize("platform,identifier,torch,full_tests", [
    ("linux", "cp313-manylinux_x86_64", True, True),
    ("linux", "cp39-manylinux_x86_64", False, True),      # no torch 2.13 for Python 3.9
    ("linux", "cp313-manylinux_aarch64", False, False),   # QEMU: determinism + C library only
    ("macos", "cp313-macosx_arm64", True, True),
    ("macos", "cp313-macosx_x86_64", False, True),        # torch has no macOS x86_64 wheels
    ("windows", "cp313-win_amd64", True, True),
    ("windows", "cp313-win_arm64", False, True),
])
def test_cibuildwheel_resolved_test_options(platform: str, identifier: str, torch: bool, full_tests: bool,
                                            monkeypatch) -> None:
    """What each wheel is tested with, as cibuildwheel resolves pyproject.toml (overrides included)."""
    from cibuildwheel.options import CommandLineArguments, compute_options

    monkeypatch.chdir(ROOT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    options = compute_options(platform, CommandLineArguments.defaults(), env).build_options(identifier)
    assert ("torch==2.13.0" in options.test_requires) == torch
    assert {"pytest>=7", "gguf>=0.10", "safetensors>=0.4"} <= set(options.test_requires)
    assert "tests/test_determinism.py" in options.test_command
    assert ("tests/test_parity_hf.py" in options.test_command) == full_tests
    assert 'LOOMRT_WHEEL_TEST="1"' in str(options.test_environment)
    if platform == "linux":  # torch's CPU wheels, not the CUDA ones
        assert "download.pytorch.org/whl/cpu" in str(options.environment)
