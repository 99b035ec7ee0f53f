"""Bit-level determinism of logits and seeded sampling, pinned by golden hashes.

The model is built from NumPy's seeded PCG64 stream (models.seeded_llama_tensors), so its
bytes do not depend on torch or on the machine. loomrt promises that the logits bits depend
only on (model, tokens): not on the thread count, on how the sequence is split across eval
calls, on the process, or on the kernel path (LOOMRT_KERNELS=reference forces the scalar one).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import loomrt
import models

# Golden values. The logits / token hashes may only change together with a bump of
# LRT_NUMERICS_VERSION (csrc/include/loomrt.h): any change means some output bit changed for
# the same inputs, which breaks the numerics promise made to users. When you bump the version
# on purpose, recompute both hashes and update NUMERICS_VERSION below in the same commit.
NUMERICS_VERSION = 1
# sha256 over the float32 little-endian logits (NaNs canonicalised) of models.SEQ40,
# all 40 positions x 256 vocab, on the seeded tiny llama (models.SEEDED_CONFIG, seed 1234).
GOLDEN_LOGITS_SHA256 = "bb212c3e0268be9f400867dce46cabc1ee1c79c376810b301f44b373554687a0"
# sha256 over the int32 little-endian ids of 24 tokens sampled after SEQ40 with SAMPLING.
GOLDEN_TOKENS_SHA256 = "1ecc95a754f6b4acbaca1a2acd769d9b3db0b98af959367104d321f2376e3482"
GOLDEN_TOKENS = [139, 155, 158, 205, 58, 141, 44, 102, 93, 80, 66, 79, 68, 168, 187, 55, 172, 2,
                 145, 58, 253, 190, 9, 101]
# Not a numerics promise: the model's weights themselves (sha256 over sorted name + float32
# bytes). If only this fails, NumPy changed its random stream, not loomrt.
SEEDED_WEIGHTS_SHA256 = "b22c297a5714fe22f4c8fd8c79fc439ea248352586bff9c6c257e57200f0c7dd"

SAMPLING = dict(temperature=0.8, top_p=0.95, top_k=40, seed=7)
N_SAMPLED = 24
SEQ = models.SEQ40

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import loomrt, models
m = loomrt.load(sys.argv[2], threads=int(sys.argv[3]))
lg = models.logits_sha256(m.logits(models.SEQ40))
tk = list(m.stream_tokens(models.SEQ40, 24, temperature=0.8, top_p=0.95, top_k=40, seed=7))
print(json.dumps({"logits": lg, "tokens": models.tokens_sha256(tk), "kernel": loomrt.kernel_path(),
                  "numerics": loomrt.NUMERICS_VERSION}))
"""


def run_child(folder: str, threads: int, **env_changes: str) -> dict:
    env = dict(os.environ)
    env.pop("LOOMRT_KERNELS", None)
    env.update(env_changes)
    p = subprocess.run([sys.executable, "-c", CHILD, HERE, folder, str(threads)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"child failed (rc {p.returncode}):\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def chunked_logits(m: loomrt.Model, ids, chunk: int, threads=None) -> np.ndarray:
    """Logits of every position, feeding the sequence in pieces of `chunk` tokens."""
    s = m.session(threads=threads)
    rows = [s.eval(ids[i:i + chunk], all_logits=True) for i in range(0, len(ids), chunk)]
    assert s.position == len(ids)
    return np.concatenate(rows, axis=0)


def sampled(m: loomrt.Model, prompt, n: int, chunk: int = 0, threads=None, **params) -> list:
    """n sampled tokens with the session API; the prompt goes in pieces of `chunk` tokens."""
    s = m.session(threads=threads)
    s.configure(loomrt.SamplingParams(**params))
    step = chunk or len(prompt)
    for i in range(0, len(prompt), step):
        s.eval(prompt[i:i + step])
    out = []
    while True:
        out.append(s.sample())
        if len(out) == n:
            return out
        s.eval([out[-1]])


@pytest.mark.parametrize("family", models.FAMILIES)
def test_family_golden(tmp_path, family):
    """The newer families' seeded models (tests/models.py FAMILY_GOLDEN, shared with the C
    matrix): logits and sampled tokens pinned, on the reference path and with 3 threads too."""
    folder = models.write_seeded_family_folder(str(tmp_path / family), family)
    golden = models.FAMILY_GOLDEN[family]
    m = loomrt.load(folder, threads=2)
    a = m.logits(SEQ)
    assert np.isfinite(a).all() and a.std() > 0.1
    assert models.logits_sha256(a) == golden["logits"]
    assert models.tokens_sha256(sampled(m, SEQ, N_SAMPLED, **SAMPLING)) == golden["sampled ids"]
    before = loomrt.kernel_path()
    try:
        loomrt.set_kernel_path("reference")
        assert models.logits_sha256(chunked_logits(m, SEQ, 5, threads=3)) == golden["logits"]
    finally:
        loomrt.set_kernel_path(before)


@pytest.fixture(scope="module")
def model(seeded_folder):
    return loomrt.load(seeded_folder, threads=2)


def test_numerics_version_pinned():
    assert loomrt.NUMERICS_VERSION == NUMERICS_VERSION, (
        "the numerics version changed: recompute GOLDEN_LOGITS_SHA256 / GOLDEN_TOKENS_SHA256")


def test_seeded_weights_are_stable():
    t = models.seeded_llama_tensors(models.SEEDED_CONFIG)
    h = hashlib.sha256()
    for name in sorted(t):
        h.update(name.encode())
        h.update(t[name].astype("<f4").tobytes())
    assert h.hexdigest() == SEEDED_WEIGHTS_SHA256


def test_golden_logits(model):
    a = model.logits(SEQ)
    assert a.shape == (40, 256) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.std() > 0.1  # non-trivial logits
    assert loomrt.NUMERICS_VERSION == NUMERICS_VERSION
    assert models.logits_sha256(a) == GOLDEN_LOGITS_SHA256


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7])
def test_logits_independent_of_threads(seeded_folder, threads):
    m = loomrt.load(seeded_folder, threads=threads)
    assert models.logits_sha256(m.logits(SEQ)) == GOLDEN_LOGITS_SHA256
    # and a session with its own thread count on a model loaded with another
    assert models.logits_sha256(chunked_logits(m, SEQ, 40, threads=max(1, 5 - threads))) == GOLDEN_LOGITS_SHA256


@pytest.mark.parametrize("chunk", [40, 7, 1, 16, 39])
def test_logits_independent_of_chunking(model, chunk):
    a = chunked_logits(model, SEQ, chunk)
    assert a.shape == (40, 256)
    assert models.logits_sha256(a) == GOLDEN_LOGITS_SHA256


def test_long_sequence_crosses_internal_chunks(tmp_path):
    """300 tokens cross loomrt's internal 128-token forward chunk twice (LRT_CHUNK): still the
    same bits as any other split, and the first 40 rows are the golden ones (the seeded model
    with a longer context: the same weights and math)."""
    cfg = dict(models.SEEDED_CONFIG, max_position_embeddings=512)
    model = loomrt.load(models.write_seeded_folder(str(tmp_path / "long"), cfg), threads=2)
    seq = SEQ + [(7 * i + 11) % 256 for i in range(260)]
    full = chunked_logits(model, seq, len(seq))
    assert models.logits_sha256(full[:40]) == GOLDEN_LOGITS_SHA256
    for chunk in (1, 63, 127, 128, 129, 50):
        assert np.array_equal(chunked_logits(model, seq, chunk), full), chunk


def test_kv_cache_growth_is_invisible(tmp_path):
    """A context above 256 positions makes the KV cache grow (realloc) mid-sequence; the logits
    do not depend on when that happens."""
    folder = models.write_seeded_folder(str(tmp_path / "long"), dict(models.MICRO_CONFIG, max_position_embeddings=640))
    m = loomrt.load(folder, threads=2)
    seq = [(13 * i + 1) % 48 for i in range(600)]
    full = chunked_logits(m, seq, len(seq))
    assert np.isfinite(full).all()
    assert np.array_equal(chunked_logits(m, seq, 1), full)
    assert np.array_equal(chunked_logits(m, seq, 255, threads=3), full)


def test_last_row_only_matches_all_logits(model):
    full = model.logits(SEQ)
    s = model.session()
    last = s.eval(SEQ, all_logits=False)
    assert last.shape == (1, 256)
    assert np.array_equal(last[0], full[-1])


def test_chunking_and_threads_combined(seeded_folder):
    m = loomrt.load(seeded_folder, threads=3)
    assert models.logits_sha256(chunked_logits(m, SEQ, 7)) == GOLDEN_LOGITS_SHA256
    assert models.logits_sha256(chunked_logits(m, SEQ, 1, threads=4)) == GOLDEN_LOGITS_SHA256


def test_reset_and_truncate_replay(model):
    s = model.session()
    s.eval(SEQ[:25])
    s.truncate(10)
    rows = np.concatenate([s.eval(SEQ[10:33], all_logits=True), s.eval(SEQ[33:], all_logits=True)])
    full = model.logits(SEQ)
    assert np.array_equal(rows, full[10:])
    s.reset()
    assert models.logits_sha256(s.eval(SEQ, all_logits=True)) == GOLDEN_LOGITS_SHA256


# ---- seeded sampling --------------------------------------------------------------------------


def test_golden_sampled_tokens(model):
    ids = list(model.stream_tokens(SEQ, N_SAMPLED, **SAMPLING))
    assert ids == GOLDEN_TOKENS
    assert models.tokens_sha256(ids) == GOLDEN_TOKENS_SHA256
    gen = model.generate(SEQ, N_SAMPLED, **SAMPLING)
    assert gen.token_ids == GOLDEN_TOKENS and gen.finish_reason == "length"


@pytest.mark.parametrize("threads,chunk", [(1, 0), (2, 7), (3, 1), (4, 13)])
def test_sampling_independent_of_threads_and_chunking(seeded_folder, threads, chunk):
    m = loomrt.load(seeded_folder, threads=threads)
    ids = sampled(m, SEQ, N_SAMPLED, chunk=chunk, **SAMPLING)
    assert models.tokens_sha256(ids) == GOLDEN_TOKENS_SHA256


def test_different_seeds_give_different_tokens(model):
    runs = {seed: tuple(sampled(model, SEQ, N_SAMPLED, **dict(SAMPLING, seed=seed))) for seed in (7, 8, 9, 2**63 + 5)}
    assert runs[7] == tuple(GOLDEN_TOKENS)
    assert len(set(runs.values())) == len(runs), "different seeds produced identical samples"
    # the same seed again, interleaved with other sessions, replays exactly
    assert tuple(sampled(model, SEQ, N_SAMPLED, **SAMPLING)) == runs[7]


def test_sample_step_replays_alone(model):
    """The draw depends only on (seed, position): re-sampling one step in a fresh session that
    holds the same tokens gives the same token."""
    ids = GOLDEN_TOKENS
    s = model.session()
    s.configure(loomrt.SamplingParams(**SAMPLING))
    s.eval(SEQ + ids[:10])
    assert s.sample() == ids[10]
    assert s.sample() == ids[10]  # sampling does not advance any hidden state


# ---- fresh processes and the reference kernel path ---------------------------------------------


def test_identical_across_fresh_processes(seeded_folder):
    a = run_child(seeded_folder, 2)
    b = run_child(seeded_folder, 3)
    assert a["numerics"] == NUMERICS_VERSION
    assert a["logits"] == b["logits"] == GOLDEN_LOGITS_SHA256
    assert a["tokens"] == b["tokens"] == GOLDEN_TOKENS_SHA256


def test_reference_kernels_give_the_same_hashes(seeded_folder):
    ref = run_child(seeded_folder, 2, LOOMRT_KERNELS="reference")
    assert ref["kernel"] == "reference"
    assert ref["logits"] == GOLDEN_LOGITS_SHA256
    assert ref["tokens"] == GOLDEN_TOKENS_SHA256


# ---- default thread count: physical cores ---------------------------------------------------


def test_default_threads_counts_smt_siblings_once(tmp_path):
    """Four logical CPUs on two cores (SMT pairs 0,2 and 1,3): two threads by default; a
    process allowed only CPUs 0 and 2 (one core) gets one; an unreadable topology gives None
    (default_threads then falls back to the logical CPUs)."""
    from loomrt.model import default_threads, physical_cores

    for cpu, siblings in [(0, "0,2"), (1, "1,3"), (2, "0,2"), (3, "1,3")]:
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(siblings + "\n")
    assert physical_cores([0, 1, 2, 3], str(tmp_path)) == 2
    assert physical_cores([0, 2], str(tmp_path)) == 1
    assert physical_cores([0, 1], str(tmp_path)) == 2
    assert physical_cores([0, 7], str(tmp_path)) is None
    n = default_threads()
    assert 1 <= n <= (os.cpu_count() or 1)


@pytest.mark.skipif(not (os.path.isdir("/proc/self/task") and hasattr(os, "sched_setaffinity")),
                    reason="counts threads in /proc/self/task and sets the affinity mask (Linux)")
def test_c_api_threads_zero_means_physical_cores(model):
    """lrt_session_new(threads=0) starts the same pool the Python default does: one worker
    thread fewer than the physical cores this process may use (the caller is the first).
    Pinned to one CPU, the pool has no worker at all (the online CPU count would give more)."""
    from loomrt import _lib
    from loomrt.model import default_threads

    def workers_started() -> int:
        before = len(os.listdir("/proc/self/task"))
        s = _lib.session_new(model._h, 64, 0)
        started = len(os.listdir("/proc/self/task")) - before
        del s
        return started

    assert workers_started() == default_threads() - 1
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert default_threads() == 1
        assert workers_started() == 0
    finally:
        os.sched_setaffinity(0, mask)
