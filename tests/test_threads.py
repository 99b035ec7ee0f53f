"""One model, many threads (issue 11, items 1 and 2).

* The friendly API (``Model.generate`` / ``chat`` / ``stream``) takes a session from the
  model's pool for each call or stream, so calls from many threads, and streams interleaved
  in one thread, give exactly what the same call gives alone.
* One ``Session`` used from two threads at once raises ``loomrt.BusyError`` (Python) and the
  C library returns ``LRT_ERR_BUSY`` instead of corrupting memory (the C race program is
  csrc/tests/test_busy.c, run here normally and under ASan and TSan).
"""
from __future__ import annotations

import gc
import os
import random
import shutil
import subprocess
import sys
import threading
from typing import Any, Dict, List, Tuple

import pytest

import loomrt
import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")

PROMPTS = ["Once upon a time", "The quick brown fox", "Hello there", "Grüße, world 🌍!", "in the beginning",
           "a b c d e f", "Ünïcödé ✓ text", "the theory of everything"]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    """Seeded llama with a complete byte-level BPE vocabulary in a GGUF (the tokenizer comes
    from the metadata, the chat template is ChatML)."""
    cfg = dict(models.SEEDED_CONFIG, vocab_size=models.VOCAB, eos_token_id=models.EOS_ID)
    tokens, merges = models.byte_level_vocab()
    path = str(tmp_path_factory.mktemp("threads") / "tiny.gguf")
    return models.write_llama_gguf(path, models.seeded_llama_tensors(cfg, 91), cfg, tokens, merges,
                                   meta_edit=_gpt2_pre)


def _gpt2_pre(kv) -> None:
    """GPT-2's pre-tokenizer, which the C tokenizer implements (the writer's default is
    llama.cpp's "default"): the C race program's text prompts need it."""
    import gguf

    kv["tokenizer.ggml.pre"] = gguf.GGUFValue(value="gpt-2", type=gguf.GGUFValueType.STRING)


def _calls(n: int) -> List[Tuple[str, str, Dict[str, Any]]]:
    rng = random.Random(11)
    out = []
    for i in range(n):
        kind = ("generate", "chat", "stream")[i % 3]
        kw: Dict[str, Any] = dict(max_tokens=rng.randrange(4, 20), seed=i)
        if i % 5:
            kw["temperature"] = rng.choice([0.7, 1.0, 1.3])
            kw["top_k"] = rng.choice([0, 20])
        out.append((kind, rng.choice(PROMPTS), kw))
    return out


def _run(m: loomrt.Model, kind: str, prompt: str, kw: Dict[str, Any]) -> Any:
    if kind == "stream":
        return "".join(m.stream(prompt, **kw))
    g = m.chat(prompt, **kw) if kind == "chat" else m.generate(prompt, **kw)
    return g.text, tuple(g.token_ids), tuple(g.prompt_token_ids), g.finish_reason


def test_friendly_api_from_eight_threads(tiny_path) -> None:
    """8 threads share 400 mixed generate / chat / stream calls with different seeds on one
    model: every result equals the same call made alone (before the fix 194 of 200 differed,
    most of them silently)."""
    m = loomrt.load(tiny_path, threads=1)
    calls = _calls(400)
    alone = [_run(m, *c) for c in calls]
    assert len(set(alone)) > 100  # the calls really differ from each other
    results: List[Any] = [None] * len(calls)
    errors: List[BaseException] = []
    next_i = iter(range(len(calls)))
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        while True:
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            try:
                results[i] = _run(m, *calls[i])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    wrong = [i for i in range(len(calls)) if results[i] != alone[i]]
    assert not wrong, f"{len(wrong)} of {len(calls)} results differ from the call alone, e.g. {calls[wrong[0]]}"
    # the pool stays bounded: idle sessions kept for reuse never exceed the limit
    assert 1 <= m._pool.idle() <= m._pool.max_idle


def test_interleaved_streams_in_one_thread(tiny_path) -> None:
    """Two streams on one model advanced in turn: each gives its text alone."""
    m = loomrt.load(tiny_path, threads=1)
    a_alone = list(m.stream("Once upon a time", max_tokens=30, temperature=1.0, seed=1))
    b_alone = list(m.stream("Hello there", max_tokens=30, temperature=1.0, seed=2, chat=True))
    a = m.stream("Once upon a time", max_tokens=30, temperature=1.0, seed=1)
    b = m.stream("Hello there", max_tokens=30, temperature=1.0, seed=2, chat=True)
    got_a: List[str] = []
    got_b: List[str] = []
    done_a = done_b = False
    while not (done_a and done_b):
        if not done_a:
            try:
                got_a.append(next(a))
            except StopIteration:
                done_a = True
        if not done_b:
            try:
                got_b.append(next(b))
            except StopIteration:
                done_b = True
    assert "".join(got_a) == "".join(a_alone) and "".join(got_b) == "".join(b_alone)
    # a generate() while a stream is open, and a stream abandoned half way
    c = m.stream("Once upon a time", max_tokens=30, temperature=1.0, seed=1)
    first = next(c)
    g = m.generate("Hello there", max_tokens=30, temperature=1.0, seed=2, chat=True)
    assert g.text == "".join(b_alone)
    assert first + "".join(c) == "".join(a_alone)
    d = m.stream("in the beginning", max_tokens=10)
    next(d)
    del d  # its session goes back to the pool when the generator is collected
    gc.collect()
    assert m.generate("Once upon a time", max_tokens=30, temperature=1.0, seed=1).text == "".join(a_alone)


def test_session_pool_is_bounded_and_reused(tiny_path) -> None:
    m = loomrt.load(tiny_path, threads=1)
    m._pool.max_idle = 2
    streams = [m.stream(p, max_tokens=5) for p in PROMPTS[:5]]
    for s in streams:
        next(s)  # five sessions in use at once
    assert m._pool.idle() == 0
    for s in streams:
        s.close()
    assert m._pool.idle() == 2  # three were dropped, not kept
    kept = set(map(id, m._pool._idle))
    m.generate("Hello", max_tokens=3)
    assert set(map(id, m._pool._idle)) == kept  # a later call reused one of them


def test_generation_holds_a_given_session(tiny_path) -> None:
    """stream_tokens over a caller's session holds it until the stream ends: another use of
    that session meanwhile raises BusyError (it used to interleave silently)."""
    m = loomrt.load(tiny_path, threads=1)
    s = m.session()
    it = m.stream_tokens("Once upon a time", 10, session=s)
    next(it)
    with pytest.raises(loomrt.BusyError, match="in use by a stream_tokens call"):
        s.eval([1, 2])
    with pytest.raises(loomrt.BusyError):
        next(m.stream_tokens("Hello", 5, session=s))
    it.close()
    assert s.eval([1, 2]).shape == (1, m.vocab_size)  # free again


def test_one_session_from_two_threads_raises_busy(tiny_path) -> None:
    """Two threads hammer one Session (eval against save_state / sample / reset): every call
    either succeeds or raises BusyError; nothing crashes and no other error appears."""
    m = loomrt.load(tiny_path, threads=2)
    s = m.session()
    s.eval(list(range(3, 40)))
    counts = {"ok": 0, "busy": 0}
    other: List[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def hammer(ops) -> None:
        start.wait()
        for i in range(300):
            try:
                ops[i % len(ops)]()
                key = "ok"
            except loomrt.BusyError as e:
                assert "in use by" in str(e) and "model.session()" in str(e)
                key = "busy"
            except BaseException as e:  # noqa: BLE001
                other.append(e)
                return
            with lock:
                counts[key] += 1

    def ev() -> None:
        if s.position > 100:
            s.truncate(40)
        s.eval([5, 6, 7, 8])

    a = threading.Thread(target=hammer, args=([ev, s.sample],))
    b = threading.Thread(target=hammer, args=([s.save_state, lambda: s.position],))
    a.start(); b.start(); a.join(); b.join()
    assert not other, other[:3]
    assert counts["ok"] > 0 and counts["busy"] > 0, counts


# ---- the C layer: concurrent entry into one session ------------------------------------------------

SANITIZERS = {
    "plain": ("-O2", {}),
    "asan": ("-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all",
             {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}),
    "tsan": ("-O1 -fsanitize=thread", {"TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"}),
}


def _build_busy(flavour: str, out_dir: str) -> str:
    """csrc/tests/test_busy.c linked with the library's sources (one gcc call)."""
    assert shutil.which("gcc"), "gcc is installed by tests/install-deps.sh"
    flags, _ = SANITIZERS[flavour]
    exe = os.path.join(out_dir, "test_busy_" + flavour)
    srcs = [os.path.join(CSRC, "tests", "test_busy.c")] + [os.path.join(CSRC, s) for s in models.library_sources()]
    cmd = ["gcc", "-std=c11", "-g", "-Wall", "-Wextra", "-ffp-contract=off", "-fno-fast-math", *flags.split(),
           "-o", exe, *srcs, "-lpthread", "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warning" not in r.stderr.lower(), r.stderr[-3000:]
    return exe


@pytest.mark.parametrize("flavour", ["plain", pytest.param("asan", marks=pytest.mark.slow),
                                     pytest.param("tsan", marks=pytest.mark.slow)])
def test_c_session_race_returns_busy(tiny_path, tmp_path, flavour) -> None:
    """Two threads on one session (eval / truncate / sample / prompt / step / lrt_generate against
    state save / load / size, getters and setters): every call returns LRT_OK or LRT_ERR_BUSY
    and the session still computes what a fresh one does; under ASan + UBSan and TSan no
    report. Before the atomic in-use flag: "free(): invalid next size" and SIGSEGV."""
    exe = _build_busy(flavour, str(tmp_path))
    env = dict(os.environ, **SANITIZERS[flavour][1])
    for threads in ("1", "2"):  # 2: the session's worker thread runs under TSan too
        r = subprocess.run([exe, tiny_path, threads], capture_output=True, text=True, timeout=600, env=env)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-6000:]
        assert "no corruption: every call returned LRT_OK or LRT_ERR_BUSY" in r.stdout, out[-6000:]
        assert "Sanitizer" not in out and "runtime error" not in out, out[-6000:]
        phases = [line for line in r.stdout.splitlines() if line.startswith("phase")]
        assert len(phases) == 2 and all("bad 0" in p for p in phases), r.stdout


def test_c_busy_status_and_name() -> None:
    """LRT_ERR_BUSY is -11, named, mapped to loomrt.BusyError; the ctypes and C# bindings list it."""
    from loomrt import _lib

    assert _lib.lib.LRT_ERR_BUSY == -11
    assert _lib.ffi.string(_lib.lib.lrt_status_name(-11)) == b"LRT_ERR_BUSY"
    with pytest.raises(loomrt.BusyError):
        _lib.check(-11)
    with open(os.path.join(ROOT, "bindings", "python", "loomrt_ctypes.py"), encoding="utf-8") as f:
        assert '-11: "LRT_ERR_BUSY"' in f.read()
    with open(os.path.join(ROOT, "bindings", "csharp", "Loomrt.cs"), encoding="utf-8") as f:
        assert "Busy = -11" in f.read()


def test_c_generate_callback_into_same_session_is_refused(tiny_path) -> None:
    """lrt_generate holds its session: a callback calling into that session gets LRT_ERR_BUSY
    (it used to be undefined behaviour), and the generation goes on unharmed."""
    from loomrt import _lib

    ffi, lib = _lib.ffi, _lib.lib
    m = loomrt.load(tiny_path, threads=1)
    s = m.session()
    seen: List[int] = []

    @ffi.callback("int32_t(void *, int32_t, const char *, size_t)")
    def cb(user, token, text, n):
        pos = lib.lrt_session_position(s._h)
        st = lib.lrt_session_eval(s._h, ffi.new("int32_t[]", [5]), 1, 0)
        seen.append((pos, st))
        return 0

    prompt = b"Once upon a time"
    _lib.check(lib.lrt_generate(s._h, prompt, len(prompt), lib.LRT_PROMPT_ADD_SPECIAL, 6, cb, ffi.NULL))
    assert seen and all(p == -1 and st == lib.LRT_ERR_BUSY for p, st in seen), seen


def test_pool_stats_count_jobs_and_reset(tiny_path) -> None:
    """lrt_session_pool_stat: off (all zero) until reset_pool_stats(True); then the counters move
    with a 2-thread decode and add up (every job's tasks were run by someone; the worker joins at
    most every job; the caller's wait is part of its time in jobs); reset zeroes them, and off
    they stay zero while the session keeps evaluating. Counting changes no logits. The library
    writes nothing: the read-out is the only way out (the bench writes files)."""
    import numpy as np

    m = loomrt.load(tiny_path, threads=2)
    s = m.session()
    ids = list(range(1, 9))
    base = s.eval(ids).copy()
    d = s.pool_stats()
    assert d["threads"] == 2 and not d["on"] and d["jobs"] == 0 and d["caller_tasks"] == 0
    assert d["workers"] == [{"tasks": 0, "joined": 0, "join_after_post_s": 0.0, "sleeps": 0}]

    s.reset()
    s.reset_pool_stats(True)
    counted = s.eval(ids).copy()
    assert np.array_equal(base.view(np.uint32), counted.view(np.uint32))
    for _ in range(4):
        s.eval([s.sample()])
    d = s.pool_stats()
    w = d["workers"][0]
    assert d["on"] and d["jobs"] > 5 * 4, d  # several dispatches per token
    assert d["caller_tasks"] + w["tasks"] >= d["jobs"], d
    assert 0 <= w["joined"] <= d["jobs"] and w["join_after_post_s"] >= 0
    assert 0 < d["caller_run_s"] and 0 <= d["caller_wait_s"] <= d["caller_run_s"]
    jobs = d["jobs"]
    s.eval([s.sample()])
    assert s.pool_stats()["jobs"] > jobs  # still counting

    s.reset_pool_stats(True)  # zero, still on
    d = s.pool_stats()
    assert d["on"] and d["jobs"] == d["caller_tasks"] == d["caller_sleeps"] == 0 and d["caller_run_s"] == 0
    assert d["workers"] == [{"tasks": 0, "joined": 0, "join_after_post_s": 0.0, "sleeps": 0}]
    s.reset_pool_stats(False)  # zero and off
    s.eval([s.sample()])
    d = s.pool_stats()
    assert not d["on"] and d["jobs"] == 0 and d["workers"][0]["tasks"] == 0

    one = m.session(threads=1)
    one.reset_pool_stats(True)
    one.eval(ids)
    d1 = one.pool_stats()
    assert d1["threads"] == 1 and d1["workers"] == [] and d1["jobs"] > 0 and d1["caller_tasks"] >= d1["jobs"]


def test_pool_stat_bad_arguments(tiny_path) -> None:
    from loomrt._lib import ffi, lib

    s = loomrt.load(tiny_path, threads=2).session()
    v = ffi.new("int64_t *")
    assert lib.lrt_session_pool_stat(s._h, 2, lib.LRT_POOL_STAT_JOBS, v) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_session_pool_stat(s._h, -1, lib.LRT_POOL_STAT_JOBS, v) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_session_pool_stat(s._h, 0, 99, v) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_session_pool_stat(s._h, 0, lib.LRT_POOL_STAT_JOBS, ffi.NULL) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_session_pool_stat(ffi.NULL, 0, lib.LRT_POOL_STAT_JOBS, v) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_session_pool_stats_reset(ffi.NULL, 1) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_session_pool_stat(s._h, 1, lib.LRT_POOL_STAT_THREADS, v) == lib.LRT_OK and v[0] == 2


def test_library_writes_no_pool_file(tiny_path, tmp_path) -> None:
    """The old LRT_POOL_STATS=FILE environment switch is gone: the library writes no file."""
    code = ("import gc, sys, loomrt\n"
            "m = loomrt.load(sys.argv[1], threads=2)\n"
            "s = m.session()\n"
            "s.eval(list(range(1, 9)))\n"
            "del s, m\n"
            "gc.collect()\n")
    out = tmp_path / "pool.jsonl"
    env = dict(os.environ, PYTHONPATH=ROOT, LRT_POOL_STATS=str(out))
    r = subprocess.run([sys.executable, "-c", code, tiny_path], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not out.exists() and r.stdout == ""
