"""Session state save / resume (lrt_session_state_*): resuming continues bit-identically, and
corrupt, crafted or foreign blobs are rejected cleanly without touching the session."""
from __future__ import annotations

import random
import struct
from typing import List, Tuple

import numpy as np
import pytest

import loomrt
import models

SAMPLING = loomrt.SamplingParams(temperature=0.9, top_k=30, top_p=0.95, repetition_penalty=1.3, seed=11)
HEADER = 152
M64 = (1 << 64) - 1


def _run(s: loomrt.Session, steps: int) -> Tuple[List[int], List[bytes]]:
    """Sample-then-append `steps` times; returns tokens and the logits bits after each eval."""
    toks, logits = [], []
    for _ in range(steps):
        t = s.sample()
        toks.append(t)
        logits.append(s.eval([t]).tobytes())
    return toks, logits


@pytest.fixture(scope="module")
def seeded(seeded_folder):
    return loomrt.load(seeded_folder, threads=2)


@pytest.fixture(scope="module")
def micro(micro_folder):
    return loomrt.load(micro_folder, threads=1)


@pytest.mark.parametrize("split", [0, 1, 7])
def test_resume_is_bit_identical(seeded, split: int) -> None:
    prompt = models.SEQ40[:24]
    ref = seeded.session(threads=2)
    ref.configure(SAMPLING)
    ref.eval(prompt)
    want_toks, want_logits = _run(ref, 16)

    a = seeded.session(threads=2)
    a.configure(SAMPLING)
    a.eval(prompt)
    toks, logits = _run(a, split)
    blob = a.save_state()
    del a
    # a fresh session: other thread count, other (smaller) context, default sampler settings
    b = seeded.session(context=64, threads=1)
    b.load_state(blob)
    assert b.position == len(prompt) + split
    t2, l2 = _run(b, 16 - split)
    assert toks + t2 == want_toks
    assert logits + l2 == want_logits
    # saving again gives the same bytes as the blob of a never-stopped session at that point
    assert b.save_state() == ref.save_state()


def test_resume_on_another_kernel_path(seeded) -> None:
    s = seeded.session()
    s.configure(SAMPLING)
    s.eval(models.SEQ40[:20])
    want = _run(s, 6)
    a = seeded.session()
    a.configure(SAMPLING)
    a.eval(models.SEQ40[:20])
    blob = a.save_state()
    loomrt.set_kernel_path("reference")
    try:
        b = seeded.session(threads=3)
        b.load_state(blob)
        assert _run(b, 6) == want
    finally:
        loomrt.set_kernel_path("auto")


def test_resume_keeps_last_logits_and_candidates(seeded) -> None:
    s = seeded.session()
    s.configure(SAMPLING)
    lg = s.eval(models.SEQ40[:10], all_logits=True)
    s.sample()
    ids, probs = s.candidates()
    r = seeded.session()
    r.load_state(s.save_state())
    assert np.array_equal(loomrt._lib.session_logits(r._h).view(np.uint32), lg.view(np.uint32))  # all 10 rows
    rid, rprob = r.candidates()
    assert np.array_equal(rid, ids) and np.array_equal(rprob.view(np.uint32), probs.view(np.uint32))


def test_max_tokens_setting_round_trips(micro) -> None:
    lib = loomrt._lib.lib
    s = micro.session()
    loomrt._lib.check(lib.lrt_session_set_int(s._h, lib.LRT_PARAM_MAX_TOKENS, 5))
    blob = s.save_state()
    assert struct.unpack_from("<q", blob, 144)[0] == 5
    r = micro.session()
    assert struct.unpack_from("<q", r.save_state(), 144)[0] == -1
    r.load_state(blob)
    assert r.save_state() == blob


def test_empty_session_round_trips(micro) -> None:
    s = micro.session()
    blob = s.save_state()
    assert len(blob) == HEADER + 16
    r = micro.session()
    r.eval([1, 2, 3])
    r.load_state(blob)
    assert r.position == 0
    with pytest.raises(loomrt.StateError):
        r.sample()  # no logits in an empty state


# ---- rejection ---------------------------------------------------------------------------------


def _blob(micro) -> bytes:
    s = micro.session()
    s.configure(SAMPLING)
    s.eval([1, 5, 7, 9, 3, 11])
    s.sample()
    return s.save_state()


def _assert_untouched(s: loomrt.Session, blob: bytes) -> None:
    assert s.save_state() == blob


def test_every_single_byte_corruption_is_rejected(micro) -> None:
    good = _blob(micro)
    s = micro.session()
    s.load_state(good)
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises((loomrt.FormatError, loomrt.UnsupportedError)):
            s.load_state(bytes(bad))
    _assert_untouched(s, good)


def test_random_corruption_truncation_and_garbage_are_rejected(micro) -> None:
    good = _blob(micro)
    s = micro.session()
    s.load_state(good)
    rng = random.Random(5)
    for _ in range(300):
        bad = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        if bytes(bad) == good:
            continue
        with pytest.raises((loomrt.FormatError, loomrt.UnsupportedError)):
            s.load_state(bytes(bad))
    for n in list(range(0, len(good), 7)) + [len(good) - 1]:
        with pytest.raises(loomrt.FormatError):
            s.load_state(good[:n])
    with pytest.raises(loomrt.FormatError):
        s.load_state(good + b"\0")
    for _ in range(50):
        with pytest.raises(loomrt.FormatError):
            s.load_state(bytes(rng.randrange(256) for _ in range(rng.randrange(400))))
    with pytest.raises(loomrt.InvalidArgumentError):
        s.load_state("not bytes")  # type: ignore[arg-type]
    _assert_untouched(s, good)


# A re-implementation of the blob checksum (csrc/model/state.c) so the tests can craft blobs that
# pass it and reach the field validation behind it.
def _mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _checksum(data: bytes) -> bytes:
    a, b, n = _mix64(2 ^ 0x6C6F6F6D72742D61), _mix64(2 ^ 0x6C6F6F6D72742D62), 0

    def word(w: int) -> None:
        nonlocal a, b, n
        a = _mix64(a ^ w)
        b = _mix64((b + (w ^ 0xA0761D6478BD642F)) & M64) ^ (b >> 17)
        n += 1

    padded = data + b"\0" * (-len(data) % 8)
    for (w,) in struct.iter_unpack("<Q", padded):
        word(w)
    word(len(data))
    o0 = _mix64(a ^ _mix64(n))
    return struct.pack("<QQ", o0, _mix64(b ^ o0))


def _reseal(body: bytearray) -> bytes:
    struct.pack_into("<Q", body, 16, len(body) + 16)
    return bytes(body) + _checksum(bytes(body))


def test_checksum_reimplementation_matches(micro) -> None:
    good = _blob(micro)
    assert _reseal(bytearray(good[:-16])) == good


def test_crafted_blobs_with_valid_checksums_are_rejected(micro) -> None:
    good = _blob(micro)
    body = bytearray(good[:-16])
    s = micro.session()
    s.load_state(good)
    P = struct.unpack_from("<q", body, 64)[0]

    def crafted(off: int, fmt: str, value) -> bytes:
        b = bytearray(body)
        struct.pack_into(fmt, b, off, value)
        return _reseal(b)

    cases = [
        (crafted(12, "<I", loomrt.NUMERICS_VERSION + 1), loomrt.UnsupportedError, "numerics version"),
        (crafted(24, "<Q", 12345), loomrt.InvalidArgumentError, "different model"),
        (crafted(40, "<q", 49), loomrt.InvalidArgumentError, "different model"),
        (crafted(64, "<q", P + 1), loomrt.FormatError, "bytes"),
        (crafted(64, "<q", -1), loomrt.FormatError, "inconsistent"),
        (crafted(64, "<q", 1 << 62), loomrt.FormatError, "too large"),
        (crafted(72, "<q", P + 1), loomrt.FormatError, "inconsistent"),
        (crafted(80, "<q", 49), loomrt.FormatError, "inconsistent"),
        (crafted(88, "<d", float("nan")), loomrt.FormatError, "sampler setting"),
        (crafted(96, "<d", 1.5), loomrt.FormatError, "top_p"),
        (crafted(120, "<q", -3), loomrt.FormatError, "top_k"),
        (crafted(144, "<q", -5), loomrt.FormatError, "max_tokens"),
        (crafted(HEADER + 4, "<i", 48), loomrt.FormatError, "token 1"),
        (crafted(HEADER + 4, "<i", -1), loomrt.FormatError, "token 1"),
        # the logits follow the P tokens: an eval never saves non-finite ones (LRT_ERR_NUMERIC)
        (crafted(HEADER + 4 * P + 8, "<f", float("nan")), loomrt.FormatError, "logit 2 of row 0 is NaN or infinite"),
        (crafted(HEADER + 4 * P, "<f", float("-inf")), loomrt.FormatError, "NaN or infinite"),
    ]
    for blob, exc, words in cases:
        with pytest.raises(exc, match=words):
            s.load_state(blob)
    _assert_untouched(s, good)


def test_blob_from_another_model_is_rejected(micro, seeded, tmp_path) -> None:
    other = loomrt.load(models.write_seeded_folder(str(tmp_path / "other"), models.MICRO_CONFIG, seed=99))
    blob = _blob(micro)
    with pytest.raises(loomrt.InvalidArgumentError, match="different model"):
        other.session().load_state(blob)  # same shapes, other weights
    with pytest.raises(loomrt.InvalidArgumentError, match="different model"):
        seeded.session().load_state(blob)  # other shapes
    micro.session().load_state(blob)


def test_state_larger_than_the_context_is_rejected(micro) -> None:
    blob = _blob(micro)
    s = micro.session(context=4)
    with pytest.raises(loomrt.ContextFullError, match="larger context"):
        s.load_state(blob)
    assert s.position == 0


def test_load_ends_a_pull_generation(micro) -> None:
    """lrt_session_step after a load fails with LRT_ERR_STATE (even at the same position)."""
    from loomrt._lib import ffi, lib

    s = micro.session()
    blob_ids = ffi.new("int32_t[]", [1, 5, 7])
    assert lib.lrt_session_prompt_tokens(s._h, blob_ids, 3, 0) == lib.LRT_OK
    tok, text, n = ffi.new("int32_t *"), ffi.new("const char **"), ffi.new("size_t *")
    assert lib.lrt_session_step(s._h, tok, text, n) == lib.LRT_OK and tok[0] >= 0
    blob = s.save_state()  # position 3: the step's token is not evaluated yet
    s.load_state(blob)
    assert s.position == 3
    assert lib.lrt_session_step(s._h, tok, text, n) == lib.LRT_ERR_STATE
    assert lib.lrt_session_prompt_tokens(s._h, blob_ids, 3, lib.LRT_PROMPT_KEEP) == lib.LRT_OK
    assert lib.lrt_session_step(s._h, tok, text, n) == lib.LRT_OK


def test_state_does_not_cross_the_int8_mode(tmp_path) -> None:
    """A KV cache computed with int8 activations is not the exact mode's (same weights, other
    numbers): each mode refuses the other's state, and takes its own."""
    folder = models.write_seeded_folder(str(tmp_path / "m"))
    exact = loomrt.load(folder, threads=1, quantize="q8_0")
    int8 = loomrt.load(folder, threads=1, quantize="q8_0", int8_activations=True)
    blobs = {}
    for name, m in (("exact", exact), ("int8", int8)):
        s = m.session()
        s.eval([1, 2, 3, 4])
        blobs[name] = s.save_state()
    with pytest.raises(loomrt.InvalidArgumentError, match="different model"):
        exact.session().load_state(blobs["int8"])
    with pytest.raises(loomrt.InvalidArgumentError, match="different model"):
        int8.session().load_state(blobs["exact"])
    int8.session().load_state(blobs["int8"])
    exact.session().load_state(blobs["exact"])
