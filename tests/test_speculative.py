"""Exact speculative decoding (lrt_spec_*, Model.generate(draft=..., lookup=...)).

Speculation may only change the speed: for every proposer (a draft model, prompt lookup,
both), every k and every sampler setting, the generated token ids and the digest of the logits
row behind every step must equal plain decoding's, and so must the whole receipt (which then
verifies by the plain replay of loomrt.verify_receipt).

Models: the seeded tiny llama (token ids, no tokenizer; its drafts are another seeded model with
the same vocabulary, which disagrees often, and the target itself quantized to Q8_0 with int8
activations, which agrees mostly), and SmolLM2-135M (Q4_1, exact mode) with the same file in the
int8 mode as the draft, and prompt lookup on a code-editing prompt.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

import loomrt
from loomrt import _lib, errors
from loomrt.audit import verify_receipt

import models

SAMPLERS = [
    {},  # greedy
    {"temperature": 0.7, "seed": 11},
    {"temperature": 1.0, "top_p": 0.9, "seed": 12345},
    {"temperature": 1.3, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.3, "seed": 7},
]

# a prompt with repeats, so prompt lookup finds n-grams (ids < 256)
REPEAT_PROMPT = [1] + [(7 * i + 3) % 50 + 10 for i in range(12)] * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("spec")
    target = models.write_seeded_folder(str(base / "target"))
    other = models.write_seeded_folder(str(base / "other"), seed=99)
    t = loomrt.load(target, threads=1)
    drafts = {
        "other": loomrt.load(other, threads=1),
        "q8_int8": loomrt.load(target, threads=1, quantize="q8_0", int8_activations=True),
    }
    return t, drafts


def _plain_and_spec(model, prompt, n, sampling, **spec):
    plain = model.generate(prompt, n, receipt=True, **sampling)
    fast = model.generate(prompt, n, receipt=True, **sampling, **spec)
    return plain, fast


def _assert_same(plain, fast) -> None:
    assert fast.token_ids == plain.token_ids
    assert fast.receipt["step_logits_sha256"] == plain.receipt["step_logits_sha256"]
    assert fast.finish_reason == plain.finish_reason
    assert fast.receipt == plain.receipt  # the whole receipt: nothing records the speculation


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("proposer", ["other", "q8_int8", "lookup", "lookup+other"])
def test_fixed_k_equals_plain(tiny, k, proposer) -> None:
    """k = 1..8 with adaptation off (every round proposes k tokens where the proposer can),
    four sampler settings: same ids, same per-step logits digests, same receipt."""
    t, drafts = tiny
    spec = {"speculate_k": k}
    if proposer.startswith("lookup"):
        spec["lookup"] = 3
    if proposer.endswith("other") or proposer == "q8_int8":
        spec["draft"] = drafts["other" if proposer.endswith("other") else proposer]
    rounds = proposed = 0
    for sampling in SAMPLERS:
        plain = t.generate(REPEAT_PROMPT, 40, receipt=True, **sampling)
        fast = _generate_fixed_k(t, REPEAT_PROMPT, 40, sampling, spec)
        _assert_same(plain, fast)
        rounds += fast.timings.spec_rounds
        proposed += fast.timings.proposed_tokens
    assert proposed > 0  # the rounds really verified proposals
    assert rounds < 4 * 40


def _generate_fixed_k(model, prompt, n, sampling, spec):
    """generate() with LRT_SPEC_ADAPTIVE = 0 (the Python API always adapts)."""
    orig = _lib.spec_set

    def fixed(h, **values):
        orig(h, **values)
        orig(h, adaptive=0)

    _lib.spec_set = fixed
    try:
        return model.generate(prompt, n, receipt=True, **sampling, **spec)
    finally:
        _lib.spec_set = orig


@pytest.mark.parametrize("sampling", SAMPLERS)
def test_adaptive_equals_plain_and_verifies(tiny, sampling) -> None:
    t, drafts = tiny
    for spec in ({"draft": drafts["q8_int8"]}, {"draft": drafts["other"], "lookup": True}, {"lookup": 2}):
        plain, fast = _plain_and_spec(t, REPEAT_PROMPT, 60, sampling, **spec)
        _assert_same(plain, fast)
        assert verify_receipt(fast.receipt, t).ok  # made with speculation, replayed without
    assert fast.timings.accepted_tokens <= fast.timings.proposed_tokens


def test_length_and_context_limits(tiny) -> None:
    """Rounds never pass max_tokens or the context: same tokens and finish reasons as plain."""
    t, drafts = tiny
    for n in (0, 1, 2, 3, 9):
        plain, fast = _plain_and_spec(t, REPEAT_PROMPT, n, {"temperature": 0.9, "seed": 3},
                                      draft=drafts["q8_int8"], lookup=True)
        _assert_same(plain, fast)
        assert len(fast.token_ids) <= n
    small = loomrt.load(t.path, threads=1, context=len(REPEAT_PROMPT) + 5)
    plain, fast = _plain_and_spec(small, REPEAT_PROMPT, 50, {}, draft=drafts["other"], lookup=True)
    _assert_same(plain, fast)
    assert fast.finish_reason == "context" and len(fast.token_ids) == 6


def test_stream_and_session_reuse(tiny) -> None:
    """stream_tokens with speculation, then plain decoding on the same (default) session."""
    t, drafts = tiny
    sampling = {"temperature": 0.8, "top_p": 0.95, "seed": 5}
    plain = list(t.stream_tokens(REPEAT_PROMPT, 30, **sampling))
    tm = loomrt.Timings()
    fast = list(t.stream_tokens(REPEAT_PROMPT, 30, timings=tm, draft=drafts["other"], speculate_k=5, **sampling))
    assert fast == plain
    assert tm.spec_rounds >= 1 and 0.0 <= tm.acceptance_rate <= 1.0
    assert list(t.stream_tokens(REPEAT_PROMPT, 30, **sampling)) == plain
    # a generator closed early leaves the target session usable
    g = t.stream_tokens(REPEAT_PROMPT, 30, lookup=True, **sampling)
    assert [next(g) for _ in range(3)] == plain[:3]
    g.close()
    assert list(t.stream_tokens(REPEAT_PROMPT, 30, **sampling)) == plain


def test_c_api_states_and_arguments(tiny) -> None:
    t, drafts = tiny
    s = t.session(context=128)
    d = drafts["other"].session(context=128)
    with pytest.raises(errors.InvalidArgumentError, match="another session"):
        _lib.spec_new(s._h, s._h)
    h = _lib.spec_new(s._h, d._h)
    try:
        with pytest.raises(errors.StateError, match="lrt_spec_start"):
            _lib.spec_next(h, t.vocab_size, False)
        with pytest.raises(errors.StateError, match="no logits"):
            _lib.spec_start(h)
        for key, bad in (("k", 0), ("k", 65), ("adaptive", 2), ("lookup", -1), ("lookup_min", 0), ("max_tokens", -2),
                         ("rounds", 1)):
            with pytest.raises(errors.InvalidArgumentError):
                _lib.spec_set(h, **{key: bad})
        _lib.spec_set(h, k=6, lookup=2)
        assert _lib.spec_get(h, "k") == 6 and _lib.spec_get(h, "lookup") == 2
        s.eval(REPEAT_PROMPT)
        _lib.spec_start(h)
        first, row = _lib.spec_next(h, t.vocab_size, True)
        assert row.shape == (t.vocab_size,)
        assert first == int(np.argmax(t.logits(REPEAT_PROMPT)[-1]))
        s.eval([first])  # the caller changed the target: the speculation must notice
        with pytest.raises(errors.StateError, match="changed"):
            _lib.spec_next(h, t.vocab_size, False)
    finally:
        _lib.spec_free(h)
    with pytest.raises(errors.InvalidArgumentError, match="vocabulary"):
        other_vocab = loomrt.load(models.write_seeded_folder(os.path.join(os.path.dirname(t.path), "v48"),
                                                             models.MICRO_CONFIG), threads=1)
        t.generate(REPEAT_PROMPT, 4, draft=other_vocab)
    with pytest.raises(errors.ArgumentTypeError):
        t.generate(REPEAT_PROMPT, 4, draft=b"x")
    with pytest.raises(errors.InvalidArgumentError):
        t.generate(REPEAT_PROMPT, 4, lookup=True, speculate_k=0)


# ---- SmolLM2-135M --------------------------------------------------------------------------------

CODE_PROMPT = """Rename the function `area` to `rect_area` everywhere in this code and return the whole file.

```python
def area(w, h):
    return w * h


def total(shapes):
    s = 0
    for w, h in shapes:
        s += area(w, h)
    return s
```

The file with `area` renamed:

```python
"""


@pytest.fixture(scope="module")
def smol():
    path = loomrt.default_model_path()
    return loomrt.load(path, threads=2), loomrt.load(path, threads=2, int8_activations=True)


@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.8, "top_p": 0.9, "seed": 42}])
def test_real_model_draft_and_lookup(smol, sampling) -> None:
    target, draft = smol
    plain = target.generate(CODE_PROMPT, 48, receipt=True, **sampling)
    for spec in ({"draft": draft, "speculate_k": 4}, {"lookup": True}):
        fast = target.generate(CODE_PROMPT, 48, receipt=True, **sampling, **spec)
        _assert_same(plain, fast)
        assert fast.text == plain.text
        assert fast.timings.proposed_tokens > 0
        if "lookup" in spec and not sampling:
            # the answer copies the code: prompt lookup proposes it and most is accepted
            assert fast.timings.acceptance_rate > 0.3, fast.timings
        if "draft" in spec and not sampling:
            assert fast.timings.acceptance_rate > 0.5, fast.timings  # int8 mode mostly agrees
    assert verify_receipt(fast.receipt, target).ok
    # and the other way round: the plain receipt replays under speculation
    replay = target.generate(plain.receipt["prompt_token_ids"], plain.receipt["max_tokens"], receipt=True,
                             draft=draft, lookup=True, **plain.receipt["sampling"])
    want = copy.deepcopy(plain.receipt)
    assert replay.receipt["step_logits_sha256"] == want["step_logits_sha256"]
    assert replay.token_ids == want["output_token_ids"]


def test_cli_flags_give_the_same_hashes(tiny) -> None:
    """`loomrt hash` with --draft / --lookup prints the hashes of plain decoding."""
    import json
    import subprocess
    import sys

    t, _ = tiny
    other = os.path.join(os.path.dirname(t.path), "other")
    ids = ",".join(map(str, REPEAT_PROMPT))
    base = [sys.executable, "-m", "loomrt", "hash", t.path, ids, "--ids", "-n", "24", "--temperature", "0.9",
            "--seed", "4", "-t", "1", "--json"]
    outs = []
    for extra in ([], ["--lookup"], ["--draft", other, "--speculate-k", "3"], ["--lookup", "2", "--draft", other]):
        r = subprocess.run(base + extra, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert all(o == outs[0] for o in outs)
    assert len(outs[0]["output_hash"]) == 64
