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
    return models.write_llama_gguf(path, models.seeded_llama_tensors(cfg, 91), cfg, tokens, merges)


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
