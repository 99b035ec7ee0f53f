"""Batched decoding (lrt_batch_*, loomrt.Batch): every sequence's logits in a batch equal,
bit for bit, the logits of the same tokens run through a session alone -- for batches of 1
to 8 sequences at different positions, in any order, mixing prompt chunks and single
tokens, at 1, 2 and 3 threads."""
from __future__ import annotations

import numpy as np
import pytest

import loomrt
import models


def _reference(m: loomrt.Model, seqs):
    """Logits of every position of each sequence, evaluated alone in one session."""
    out = []
    for ids in seqs:
        s = m.session()
        out.append(s.eval(ids, all_logits=True))
    return out


def _run_batched(m: loomrt.Model, seqs, ref, threads: int, rng: np.random.Generator, max_chunk: int = 9) -> int:
    """Advance all sequences in random batches (random subsets, random order, random chunk
    sizes) and compare each session's logits with the reference after every step."""
    batch = loomrt.Batch(m, threads=threads)
    sess = [m.session(threads=1) for _ in seqs]
    done = [0] * len(seqs)
    checked = 0
    while any(d < len(s) for d, s in zip(done, seqs)):
        live = [i for i in range(len(seqs)) if done[i] < len(seqs[i])]
        k = int(rng.integers(1, min(8, len(live)) + 1))
        pick = [live[j] for j in rng.permutation(len(live))[:k]]
        entries = []
        for i in pick:
            n = 1 if rng.random() < 0.5 else int(rng.integers(1, max_chunk + 1))
            n = min(n, len(seqs[i]) - done[i])
            entries.append((sess[i], seqs[i][done[i]:done[i] + n]))
            done[i] += n
        batch.eval(entries)
        for i in pick:
            got = loomrt.batch.last_logits(sess[i])
            want = ref[i][done[i] - 1]
            assert sess[i].position == done[i]
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (i, done[i], threads, len(pick))
            checked += 1
    return checked


def _seqs(rng: np.random.Generator, vocab: int, n: int, lo: int, hi: int):
    return [[int(t) for t in rng.integers(0, vocab, int(rng.integers(lo, hi)))] for _ in range(n)]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_equals_single_seeded(seeded_folder, threads):
    m = loomrt.load(seeded_folder, threads=2)
    rng = np.random.default_rng(100 + threads)
    seqs = _seqs(rng, m.vocab_size, 8, 3, 70)
    ref = _reference(m, seqs)
    assert _run_batched(m, seqs, ref, threads, rng) > 40


def test_batch_equals_single_gguf_and_quantized(micro_gguf, seeded_folder):
    """GGUF llama (Q/K row maps), Q8_0 at load and int8 activations take other kernel paths."""
    rng = np.random.default_rng(7)
    for m in (loomrt.load(micro_gguf, threads=2), loomrt.load(seeded_folder, quantize="q8_0"),
              loomrt.load(seeded_folder, quantize="q8_0", int8_activations=True)):
        seqs = _seqs(rng, m.vocab_size, 6, 2, min(30, m.context_length))
        ref = _reference(m, seqs)
        for threads in (1, 3):
            _run_batched(m, seqs, ref, threads, rng)


@pytest.mark.parametrize("arch", ["gpt2", "mistral", "qwen2"])
def test_batch_equals_single_architectures(hf_models, arch):
    """Learned positions + LayerNorm (gpt2), a sliding window shorter than the sequences
    (mistral), attention biases and tied embeddings (qwen2)."""
    m = loomrt.load(hf_models[arch].f32_dir, threads=2)
    rng = np.random.default_rng(11)
    seqs = _seqs(rng, m.vocab_size, 5, 10, 50)
    ref = _reference(m, seqs)
    _run_batched(m, seqs, ref, 2, rng)


def test_long_prefill_crosses_internal_chunk(seeded_folder):
    """More rows than one internal pass (128): a sequence split across two passes."""
    m = loomrt.load(seeded_folder, threads=2)
    rng = np.random.default_rng(3)
    seqs = _seqs(rng, m.vocab_size, 3, 100, 120)
    ref = _reference(m, seqs)
    sess = [m.session() for _ in seqs]
    loomrt.Batch(m, threads=2).eval([(s, ids[:90]) for s, ids in zip(sess, seqs)])  # 270 rows
    for s, r in zip(sess, ref):
        assert np.array_equal(loomrt.batch.last_logits(s), r[89])
    # sampling after a batch step is the session's own: same token as alone
    s = m.session()
    s.eval(seqs[0][:90])
    for a in (s, sess[0]):
        a.configure(loomrt.SamplingParams(temperature=0.9, seed=5))
    assert s.sample() == sess[0].sample()


@pytest.mark.realmodel
def test_batch_equals_single_real_model():
    """SmolLM2-135M Q4_1: decode rows take the fused block kernels, prefill rows the tiles."""
    m = loomrt.load(loomrt.default_model_path(), threads=2)
    prompts = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "1, 2, 3,"]
    seqs = [m.encode(p) + [int(t) for t in np.random.default_rng(i).integers(0, 1000, 6)] for i, p in enumerate(prompts)]
    ref = _reference(m, seqs)
    _run_batched(m, seqs, ref, 2, np.random.default_rng(1), max_chunk=5)


def test_batch_errors_leave_sessions_unchanged(seeded_folder, micro_folder):
    m = loomrt.load(seeded_folder, threads=1)
    other = loomrt.load(micro_folder, threads=1)
    b = loomrt.Batch(m, threads=1)
    a, c = m.session(context=8), m.session()
    a.eval([1, 2, 3])
    before = loomrt.batch.last_logits(a).copy()
    with pytest.raises(loomrt.InvalidArgumentError, match="already in the batch"):
        b.eval([(a, [4]), (a, [5])])
    with pytest.raises(loomrt.InvalidArgumentError, match="another model"):
        b.eval([(a, [4]), (other.session(), [1])])
    with pytest.raises(loomrt.InvalidArgumentError, match="outside the vocabulary"):
        b.eval([(a, [4]), (c, [m.vocab_size])])
    with pytest.raises(loomrt.ContextFullError, match="batch entry 1"):
        b.eval([(c, [4]), (a, [1, 2, 3, 4, 5, 6])])
    with pytest.raises(loomrt.InvalidArgumentError, match="empty"):
        b.eval([])
    assert a.position == 3 and c.position == 0
    assert np.array_equal(loomrt.batch.last_logits(a), before)
    b.eval([(a, [4]), (c, [4])])  # the batch still works
    assert a.position == 4 and c.position == 1


def test_batch_refuses_a_session_in_use(seeded_folder):
    """A session another user holds (here an open stream over it) makes the batch step raise
    BusyError before anything runs; the batch then works once the session is free."""
    m = loomrt.load(seeded_folder, threads=1)
    busy, other = m.session(), m.session()
    gen = m.stream_tokens([1, 2, 3], 5, session=busy)
    next(gen)  # the stream now holds `busy`
    pos = other.position
    with pytest.raises(loomrt.BusyError, match="in use"):
        loomrt.Batch(m, threads=1).eval([(other, [4, 5]), (busy, [6])])
    assert other.position == pos  # nothing ran
    gen.close()
    loomrt.Batch(m, threads=1).eval([(other, [4, 5]), (busy, [6])])
    assert other.position == pos + 2
