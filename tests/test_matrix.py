"""The cross-platform determinism matrix (issue 3).

Kernel-path switch (environment variable and API) tests come first; the matrix itself (a
standalone C driver built with several compilers and targets) follows.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest

import loomrt
import models

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---- kernel path switch ------------------------------------------------------------------------


def test_kernel_paths_listed_and_switchable(tmp_path):
    paths = loomrt.kernel_paths()
    assert paths[-1] == "reference" and len(set(paths)) == len(paths)
    assert loomrt.kernel_path() in paths
    m = loomrt.load(models.write_seeded_folder(str(tmp_path / "m")), threads=2)
    seen = {}
    before = loomrt.kernel_path()
    try:
        for p in paths:
            loomrt.set_kernel_path(p)
            assert loomrt.kernel_path() == p
            seen[p] = models.logits_sha256(m.logits(models.SEQ40))
        loomrt.set_kernel_path("auto")
        assert loomrt.kernel_path() == paths[0]
    finally:
        loomrt.set_kernel_path(before)
    assert len(set(seen.values())) == 1, seen


def test_kernel_path_errors():
    with pytest.raises(loomrt.NotFoundError, match="does not exist"):
        loomrt.set_kernel_path("no-such-path")
    with pytest.raises(loomrt.NotFoundError):
        loomrt.set_kernel_path("reference\0")
    # a path that this build knows of but this CPU cannot run is UnsupportedError: only
    # checkable where such a path is compiled in (e.g. avx512 on a CPU without it)
    assert loomrt.kernel_path() in loomrt.kernel_paths()


@pytest.mark.parametrize("value", ["reference", "auto", "bogus"])
def test_kernel_env_var(value):
    env = dict(os.environ, LOOMRT_KERNELS=value)
    out = subprocess.run([sys.executable, "-c", "import loomrt; print(loomrt.kernel_path())"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out == ("reference" if value == "reference" else loomrt.kernel_paths()[0])


# ---- the matrix ----------------------------------------------------------------------------------
#
# csrc/tools/matrix_driver.c (public C API only) is compiled together with the library sources
# (the layer folders of csrc/Makefile, so new files are picked up) by each compiler / target below and run
# on the seeded models (models.SEEDED_CONFIG: PCG64 weights, little-endian float32 files, the same
# bytes on every platform). Each output line of the driver is one cell: (build, kernel path, thread
# count, prompt chunking or generation kind, FP environment), and must print the golden hash.

# Golden values, pinned. "logits" and "sampled ids" are the same numbers as
# test_determinism.GOLDEN_LOGITS_SHA256 / GOLDEN_TOKENS_SHA256 (computed there through Python):
# the C driver, the Python binding and every platform agree. They change only with
# LRT_NUMERICS_VERSION.
GOLDEN = {
    "logits": "bb212c3e0268be9f400867dce46cabc1ee1c79c376810b301f44b373554687a0",
    "greedy ids": "c22135e9678c84c66a1458ade0870db0c31708b9223deedeb0c97313fb763fdc",
    "greedy logits": "8270a7b432d399648c5e95b154569e7e83e6af475b13cf1b1b51b03fe14072e4",
    "sampled ids": "1ecc95a754f6b4acbaca1a2acd769d9b3db0b98af959367104d321f2376e3482",
    "sampled logits": "9cd30dab66d82de9a7162f9f3147ac116bce01bf6c6b276c9b35f78db1cb493c",
}
# a run saved after 8 sampled tokens and resumed in a fresh session gives the same 24 tokens
GOLDEN["resume ids"] = GOLDEN["sampled ids"]
GOLDEN["resume logits"] = GOLDEN["sampled logits"]
# training (the driver's --train cells, docs/training.md "Numerics"): three AdamW steps from the
# seeded model's weights; test_train_golden_equals_python computes the same through loomrt.Trainer.
# A change to the training numerics (csrc/train/) that alters these bits must say so in
# docs/numerics.md and docs/training.md and update them in the same commit.
GOLDEN["train weights"] = "810e54fe14a3e2c23b61cb010c03cdd6662655a7004b854fd73da3d452a8d87d"
GOLDEN["train losses"] = "ae6515efb0d2c3a64d80e021dad5f35739d64a3fa69e019056cd00c2efabeadc"
NUMERICS_VERSION = 1

# LOOMRT_MATRIX_CSRC builds the matrix from another copy of csrc/ (e.g. a release tree)
CSRC = os.environ.get("LOOMRT_MATRIX_CSRC") or os.path.join(ROOT, "csrc")
DRIVER_SRCS = ["tools/matrix_driver.c", "tools/sha256.c"]
NUMERICS_FLAGS = ["-std=c11", "-ffp-contract=off", "-fno-fast-math"]
ALL_THREADS = "1,2,3,4,5,6,7,8"
ALL_CHUNKS = "1,3,16,0"
CELLS: Dict[str, int] = {}  # test id -> cells checked (printed with -s)


def library_sources(csrc: str = CSRC) -> List[str]:
    """The library's C files as csrc/Makefile finds them (tests/models.py)."""
    return models.library_sources(csrc)


def driver_defines() -> List[str]:
    header = open(os.path.join(CSRC, "include", "loomrt.h"), encoding="utf-8").read()
    return ["-DLRT_HAVE_SESSION_STATE"] if "lrt_session_state_save" in header else []


def zig_cc() -> List[str]:
    return [sys.executable, "-m", "ziglang", "cc"]


def build_driver(out: str, cc: List[str], opt: str, extra: Sequence[str] = (), csrc: str = CSRC,
                 libs: Sequence[str] = ("-lpthread", "-lm"), timeout: int = 600) -> str:
    srcs = [os.path.join(csrc, s) for s in library_sources(csrc) + DRIVER_SRCS]
    cmd = list(cc) + NUMERICS_FLAGS + [opt] + driver_defines() + list(extra) + ["-o", out] + srcs + list(libs)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"build failed: {' '.join(cmd)}\n{p.stderr[-4000:]}"
    return out


def check_output(text: str, expect_paths: Optional[Sequence[str]] = None,
                 golden: Optional[Dict[str, str]] = None) -> int:
    """Compare every result line of the driver with GOLDEN (or `golden`); return the number of cells."""
    golden = GOLDEN if golden is None else golden
    lines = text.strip().splitlines()
    assert lines and lines[0] == f"loomrt {loomrt.__version__} numerics {NUMERICS_VERSION}", lines[:1]
    assert lines[-1] == "done", "driver did not finish:\n" + text[-2000:]
    bad, cells, paths = [], 0, set()
    for line in lines[1:-1]:
        parts = line.split()
        kernel, what, digest = parts[0], " ".join(parts[2:-1]), parts[-1]
        paths.add(kernel)
        key = "logits" if what.startswith("logits chunk=") else what
        assert key in golden, line
        cells += 1
        if digest != golden[key]:
            bad.append(line)
    assert not bad, f"{len(bad)} of {cells} cells differ from the golden hashes:\n" + "\n".join(bad[:20])
    if expect_paths is not None:
        assert sorted(paths) == sorted(expect_paths), (paths, expect_paths)
    return cells


def run_driver(cmd: List[str], model: str, args: Sequence[str], timeout: int = 300, cwd: Optional[str] = None,
               env: Optional[Dict[str, str]] = None) -> str:
    p = subprocess.run(cmd + [model] + list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                       env=env)
    assert p.returncode == 0, f"driver failed (rc {p.returncode}): {cmd}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def matrix_models(tmp_path_factory) -> Dict[str, str]:
    """The seeded model as a safetensors folder and as a GGUF file (F32, llama.cpp's Q/K row
    order, which loomrt maps back: same logits bits)."""
    root = tmp_path_factory.mktemp("matrix-models")
    st = models.write_seeded_folder(str(root / "st"))
    gg = models.write_seeded_gguf(str(root / "model.gguf"), cfg=models.SEEDED_CONFIG, with_tokenizer=False)
    return {"st": st, "gguf": gg}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("matrix-builds"))


NATIVE = [("gcc", "-O0"), ("gcc", "-O2"), ("gcc", "-O3"), ("clang", "-O0"), ("clang", "-O2"), ("clang", "-O3"),
          # avx512.c compiled as portable C (its lane logic runs on any CPU): this machine has
          # no AVX-512 and qemu's TCG does not emulate it
          ("gcc", "-O2 -DLRT_AVX512_EMULATE")]


# Every x86-64 kernel path of this build, best first: a CPU with AVX-512 (and VL) runs them all.
# test_x86_paths_are_listed keeps the list honest; docs/determinism.md counts cells with it.
X86_PATHS = ["avx2-avx512vnni", "avx2-avx512vl", "avx2-vnni", "avx2", "avx512", "reference"]


def native_paths(opt: str) -> List[str]:
    """The x86 paths a native build with these flags has on a CPU with AVX-512VL and VNNI: an
    LRT_AVX512_EMULATE build (avx512.c as portable C) compiles no VNNI paths (dispatch.c)."""
    return [p for p in X86_PATHS if not ("-DLRT_AVX512_EMULATE" in opt and "vnni" in p)]


def has_source(name: str) -> bool:
    return name in library_sources()


# ---- the plan: which driver runs each matrix test makes (docs/determinism.md is made from it) ----


def native_runs(opt: str) -> List[tuple]:
    """(model, driver args) of one native build: every thread count 1..8 on the -O2 builds,
    1, 2, 5, 8 on the others (CI time); the GGUF copy; the hostile FP environment."""
    threads = ALL_THREADS if opt.split()[0] == "-O2" else "1,2,5,8"
    return [("st", ["--threads", threads, "--chunks", ALL_CHUNKS, "--train"]),
            ("gguf", ["--threads", "1,4", "--chunks", "3,0", "--train"]),
            ("st", ["--threads", "1,3,8", "--chunks", "1,16", "--hostile", "--train"])]


def foreign_runs(args: Sequence[str]) -> List[tuple]:
    """(model, driver args) of one foreign target: the safetensors folder with the target's
    args, the GGUF file, and the hostile FP environment."""
    threads = args[list(args).index("--threads") + 1]
    return [("st", list(args) + ["--train"]), ("gguf", ["--threads", threads.split(",")[-1], "--chunks", "3"]),
            ("st", ["--threads", threads, "--chunks", "16", "--hostile", "--train"])]


def driver_cells(args: Sequence[str]) -> int:
    """Result lines matrix_driver prints per kernel path for these args: per thread count, one
    logits hash per chunking, the training weights and losses (2, with --train), then greedy,
    sampled and resumed ids + logits (6)."""
    a = list(args)
    n_threads = len(a[a.index("--threads") + 1].split(",")) if "--threads" in a else 1
    n_chunks = len(a[a.index("--chunks") + 1].split(",")) if "--chunks" in a else 4
    gen = 0 if "--no-gen" in a else 6 if driver_defines() else 4
    train = 2 if "--train" in a else 0
    return n_threads * (n_chunks + train + gen)


@pytest.mark.parametrize("compiler,opt", NATIVE, ids=[f"{c}{o.replace(' ', '')}" for c, o in NATIVE])
def test_native_matrix(compiler, opt, matrix_models, build_dir, foreign_builds, request):
    """gcc/clang at -O0/-O2/-O3 x every kernel path this CPU runs x threads 1..8 x chunks
    {1,3,16,all} + greedy/sampled/resumed generation; the GGUF copy; a hostile FP env."""
    flags = opt.split()
    exe = build_driver(os.path.join(build_dir, f"drv-{compiler}{''.join(flags)}"), [compiler], flags[0], flags[1:])
    paths = loomrt.kernel_paths()
    if "-DLRT_AVX512_EMULATE" in flags:
        assert has_source("kernels/avx512.c")
        paths = sorted((set(paths) & set(native_paths(opt))) | {"avx512"})
    n = 0
    for model, args in native_runs(opt):
        cells = check_output(run_driver([exe], matrix_models[model], args), paths)
        assert cells == len(paths) * driver_cells(args), (cells, args)  # the plan the doc counts
        n += cells
    CELLS[request.node.name] = n
    print(f"\n{request.node.name}: {n} cells")


def test_train_golden_equals_python(tmp_path):
    """The driver's training schedule through the Python binding (loomrt.Trainer) gives the
    pinned "train weights" / "train losses" hashes: C driver, binding and every matrix cell
    agree. The same three steps without the two-micro-batch split of step 2 give the same
    bits; a different learning rate gives different ones (the cells can fail)."""
    from loomrt.trainer import Trainer

    folder = models.write_seeded_folder(str(tmp_path / "m"))

    def batch(step, vocab):  # matrix_driver.c train_batch
        rows = []
        for b in range(4):
            x, row = (37 * step + 11 * b + 5) % 13, []
            for _ in range(25):
                row.append((x + 3) % vocab)
                x = (3 * x + 1) % 13
            rows.append(row)
        return np.array(rows, dtype=np.int32)

    def run(threads, split, lr=1e-2):
        tr = Trainer.from_pretrained(folder, threads=threads)
        tr.set(lr=lr, warmup=1, total_steps=3, schedule="cosine", weight_decay=0.1, clip=1.0)
        vocab = tr.shape("tok_embd")[0]
        losses = [tr.train_step(batch(s, vocab), accum=2 if (split and s == 1) else 1) for s in range(3)]
        return (hashlib.sha256(tr.weights_bytes()).hexdigest(),
                hashlib.sha256(np.array(losses, dtype="<f8").tobytes()).hexdigest())

    assert run(2, True) == (GOLDEN["train weights"], GOLDEN["train losses"])
    assert run(3, False) == (GOLDEN["train weights"], GOLDEN["train losses"])
    assert run(1, True, lr=2e-2)[0] != GOLDEN["train weights"]


# ---- the newer families -------------------------------------------------------------------------


def family_golden(family: str) -> Dict[str, str]:
    g = dict(models.FAMILY_GOLDEN[family])
    g["resume ids"], g["resume logits"] = g["sampled ids"], g["sampled logits"]
    return g


@pytest.fixture(scope="module")
def family_models(tmp_path_factory) -> Dict[str, Dict[str, str]]:
    """Each family's seeded model (hand-written older-style config.json, PCG64 weights) as a
    safetensors folder and as a GGUF with llama.cpp's names (torch is not involved)."""
    root = tmp_path_factory.mktemp("family-models")
    out = {}
    for fam in models.FAMILIES:
        st = models.write_seeded_family_folder(str(root / fam), fam)
        out[fam] = {"st": st, "gguf": models.write_family_gguf(st, str(root / (fam + ".gguf")))}
    return out


@pytest.mark.parametrize("family", models.FAMILIES)
def test_family_matrix(family, family_models, build_dir):
    """gcc -O2: every kernel path x threads 1..3 x chunks {1,3,all} + generation and resume, the
    GGUF copy, a hostile FP environment: all equal to the family's golden hashes."""
    exe = os.path.join(build_dir, "drv-gcc-O2-families")
    if not os.path.exists(exe):
        build_driver(exe, ["gcc"], "-O2")
    g, fm = family_golden(family), family_models[family]
    paths = loomrt.kernel_paths()
    n = check_output(run_driver([exe], fm["st"], ["--threads", "1,2,3", "--chunks", "1,3,0"]), paths, g)
    n += check_output(run_driver([exe], fm["gguf"], ["--threads", "1,3", "--chunks", "3,0"]), paths, g)
    n += check_output(run_driver([exe], fm["st"], ["--threads", "2", "--chunks", "1,0", "--hostile"]), paths, g)
    assert n >= 60


@pytest.mark.slow
@pytest.mark.parametrize("target,runner", [("aarch64-linux-musl", "qemu-aarch64"), ("s390x-linux-musl", "qemu-s390x")])
def test_family_foreign_matrix(target, runner, family_models, foreign_builds):
    """The families on NEON (aarch64) and on a big-endian host (s390x, byte-swapping loaders)."""
    exe = foreign_builds[target].result(timeout=900)
    assert shutil.which(runner), f"{runner} is not installed (tests/install-deps.sh installs qemu-user)"
    for fam in models.FAMILIES:
        g, fm = family_golden(fam), family_models[fam]
        check_output(run_driver([runner, exe], fm["st"], ["--threads", "1,2", "--chunks", "3,0"]), expected_paths(target), g)
        check_output(run_driver([runner, exe], fm["gguf"], ["--threads", "2", "--chunks", "0"]), expected_paths(target), g)


# ---- foreign targets: zig cc -target ..., run under emulators ----------------------------------

WINE = shutil.which("wine64") or shutil.which("wine") or ("/usr/lib/wine/wine64" if os.path.exists("/usr/lib/wine/wine64") else None)


def run_wasi(wasm: str, args: Sequence[str], preopen: str, out_dir: str) -> str:
    """Run a wasm32-wasi program with the wasmtime Python package (SIMD128 is on by default);
    `preopen` is mapped to the same path inside the sandbox."""
    import wasmtime

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    cfg = wasmtime.WasiConfig()
    cfg.argv = ["matrix_driver"] + list(args)
    cfg.preopen_dir(preopen, preopen)
    out, err = os.path.join(out_dir, "stdout.txt"), os.path.join(out_dir, "stderr.txt")
    cfg.stdout_file, cfg.stderr_file = out, err
    store.set_wasi(cfg)
    module = wasmtime.Module.from_file(engine, wasm)
    inst = linker.instantiate(store, module)
    code = 0
    try:
        inst.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        code = e.code
    text = open(out, encoding="utf-8").read()
    assert code == 0, f"wasm driver exited {code}:\n{text[-2000:]}\n{open(err, encoding='utf-8').read()[-2000:]}"
    return text


FOREIGN = [
    # (target, extra cc flags, runner, driver args). zig's own x86_64 build links glibc
    # dynamically (its musl libc would cost a minute of CI time to build cold).
    ("x86_64-linux-gnu.2.17", [], "native", ["--threads", "1,2,8", "--chunks", ALL_CHUNKS]),
    ("aarch64-linux-musl", [], "qemu-aarch64", ["--threads", "1,2,5,8", "--chunks", ALL_CHUNKS]),
    ("s390x-linux-musl", [], "qemu-s390x", ["--threads", "1,3", "--chunks", ALL_CHUNKS]),
    ("x86_64-windows-gnu", [], "wine", ["--threads", "1,4", "--chunks", ALL_CHUNKS]),
    ("wasm32-wasi", ["-msimd128"], "wasmtime", ["--threads", "1", "--chunks", ALL_CHUNKS]),
]


def expected_paths(target: str) -> List[str]:
    """Kernel paths a foreign build must run: its ISA's SIMD path when the source exists."""
    if target.startswith("x86_64"):
        return loomrt.kernel_paths()  # same CPU (wine and glibc binaries run natively)
    simd = {"aarch64": ("kernels/neon.c", "neon"), "wasm32": ("kernels/wasm_simd.c", "wasm_simd128")}
    arch = target.split("-")[0]
    if arch in simd and has_source(simd[arch][0]):
        return [simd[arch][1], "reference"]
    return ["reference"]


def foreign_exe(build_dir: str, target: str) -> str:
    return os.path.join(build_dir, f"drv-{target}" + (".exe" if "windows" in target else ".wasm" if "wasm" in target else ""))


def build_foreign(build_dir: str, target: str, extra: Sequence[str]) -> str:
    libs = ["-lm"] if target.startswith("wasm") or "windows" in target else ["-lpthread", "-lm"]
    return build_driver(foreign_exe(build_dir, target), zig_cc() + ["-target", target], "-O2", extra, libs=libs)


@pytest.fixture(scope="module")
def foreign_builds(build_dir):
    """The zig cross builds start in a background thread as soon as the first matrix test runs,
    so that zig building each target's libc (cold: up to a few minutes of CPU for mingw) overlaps
    with the native cells. Maps target -> Future of the executable's path."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    futures = {t: pool.submit(build_foreign, build_dir, t, extra) for t, extra, _, _ in FOREIGN}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("target,extra,runner,args", FOREIGN, ids=[f[0] for f in FOREIGN])
def test_foreign_matrix(target, extra, runner, args, matrix_models, foreign_builds, tmp_path, request):
    """zig cc cross builds, executed: NEON/FPCR on aarch64, byte-swapping loaders on big-endian
    s390x, Windows (wine: its own CRT, the Win32 thread and file layer), WASI + SIMD128 (no
    threads, no mmap). The safetensors folder and the GGUF file, normal and hostile FP env."""
    exe = foreign_builds[target].result(timeout=900)
    build_dir = os.path.dirname(exe)
    n = 0
    for key, a in foreign_runs(args):
        model = matrix_models[key]
        if runner == "wasmtime":
            text = run_wasi(exe, [model] + a, os.path.dirname(model), str(tmp_path))  # the models' folder
        elif runner == "wine":
            assert WINE, "wine is not installed (tests/install-deps.sh installs wine64)"
            env = dict(os.environ, WINEDEBUG="-all", WINEPREFIX=os.path.join(build_dir, "wineprefix"))
            text = run_driver([WINE, exe], "Z:" + model.replace("/", "\\"), a, env=env)
        elif runner == "native":
            text = run_driver([exe], model, a)
        else:
            assert shutil.which(runner), f"{runner} is not installed (tests/install-deps.sh installs qemu-user)"
            text = run_driver([runner, exe], model, a)
        cells = check_output(text, expected_paths(target))
        assert cells == len(expected_paths(target)) * driver_cells(a), (cells, a)  # the plan the doc counts
        n += cells
    CELLS[request.node.name] = n
    print(f"\n{request.node.name}: {n} cells")


# ---- the matrix can fail ------------------------------------------------------------------------


def perturbed_csrc(tmp_path, rel: str, old: str, new: str) -> str:
    """A copy of csrc/ with one exact piece of one file replaced (asserted to be there)."""
    dst = str(tmp_path / "csrc")
    shutil.copytree(CSRC, dst, ignore=shutil.ignore_patterns("build", "*.o", "*.so", "*.a"))
    path = os.path.join(dst, rel)
    text = open(path, encoding="utf-8").read()
    assert text.count(old) >= 1, f"{rel} no longer contains {old!r}: update the perturbation"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))
    return dst


def test_perturbed_lane_order_fails_the_matrix(tmp_path, matrix_models):
    """Swap the combination order of the dot8 lanes in the reference kernel (t0+t2)+(t1+t3) ->
    (t0+t1)+(t2+t3): a mathematically equal, bitwise different order. The reference cells must
    then fail against the golden hashes, while SIMD paths (unchanged) still pass: the matrix
    detects a kernel that leaves the canonical order."""
    src = perturbed_csrc(tmp_path, "kernels/ref.c", "float s = (t0 + t2) + (t1 + t3);", "float s = (t0 + t1) + (t2 + t3);")
    exe = build_driver(str(tmp_path / "drv-perturbed"), ["gcc"], "-O2", csrc=src)
    out = run_driver([exe], matrix_models["st"], ["--kernels", "reference", "--threads", "1,2", "--chunks", "1,0"])
    with pytest.raises(AssertionError, match="cells differ from the golden hashes"):
        check_output(out)
    for p in loomrt.kernel_paths()[:-1]:  # every SIMD path keeps the canonical order
        check_output(run_driver([exe], matrix_models["st"], ["--kernels", p, "--threads", "1", "--chunks", "0"]))


@pytest.mark.skipif(not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"), reason="MXCSR guard")
def test_disabled_fp_guard_fails_the_hostile_cells(tmp_path, matrix_models):
    """With the library's MXCSR guard switched off, the driver's hostile environment
    (flush-to-zero, denormals-are-zero, round toward zero) changes the logits: the hostile
    cells are able to fail. The same build passes in the default environment."""
    src = perturbed_csrc(tmp_path, "base/platform.c", "_mm_setcsr(0x1f80u);", "(void)0;")
    exe = build_driver(str(tmp_path / "drv-noguard"), ["gcc"], "-O2", csrc=src)
    check_output(run_driver([exe], matrix_models["st"], ["--threads", "1,2", "--chunks", "3"]))
    with pytest.raises(AssertionError, match="cells differ from the golden hashes"):
        check_output(run_driver([exe], matrix_models["st"], ["--threads", "1,2", "--chunks", "3", "--hostile"]))


# ---- the doc: docs/determinism.md's Matrix section is made from the data above ------------------


def _matrix_doc():
    import importlib.util

    spec = importlib.util.spec_from_file_location("matrix_doc", os.path.join(ROOT, "tools", "matrix_doc.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_matrix_doc_is_current():
    """The Matrix section of docs/determinism.md is what tools/matrix_doc.py writes from this
    module's configurations, cell counts and golden hashes (rerun it after changing them)."""
    doc = _matrix_doc()
    text = open(doc.DOC, encoding="utf-8").read()
    assert "To be filled" not in text
    section = doc.current_section(text)
    assert section, "docs/determinism.md has no generated Matrix section: run python tools/matrix_doc.py"
    assert section == doc.render(), "docs/determinism.md's Matrix section is out of date: run python tools/matrix_doc.py"
    for digest in set(GOLDEN.values()):
        assert digest in section
    total = sum(driver_cells(a) * len(native_paths(o)) for _, o in NATIVE for _, a in native_runs(o))
    total += sum(driver_cells(a) * len(X86_PATHS if t.startswith("x86_64") else expected_paths(t))
                 for t, _, _, args in FOREIGN for _, a in foreign_runs(args))
    assert f"**{total} cells** in all" in section


def test_matrix_doc_detects_drift(tmp_path, monkeypatch, capsys):
    """--check fails when the test data change and the doc is not regenerated."""
    doc = _matrix_doc()
    copy = tmp_path / "determinism.md"
    shutil.copy(doc.DOC, copy)
    monkeypatch.setattr(doc, "DOC", str(copy))
    assert doc.main(["--check"]) == 0
    monkeypatch.setitem(GOLDEN, "greedy ids", "0" * 64)
    assert doc.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert doc.main([]) == 0 and doc.main(["--check"]) == 0  # rewritten: current again
    assert "0" * 64 in copy.read_text(encoding="utf-8")


def test_x86_paths_are_listed():
    """X86_PATHS (what the doc counts on x86-64) names every x86 path this build has."""
    kernels = "".join(open(os.path.join(CSRC, "kernels", n), encoding="utf-8").read()
                      for n in sorted(os.listdir(os.path.join(CSRC, "kernels"))) if n.endswith(".c"))
    for p in X86_PATHS:
        assert f'"{p}"' in kernels, p
    if platform.machine() in ("x86_64", "AMD64"):
        assert set(loomrt.kernel_paths()) <= set(X86_PATHS), loomrt.kernel_paths()
