"""Argument slips of the Python API (issue 11 item 7): wrong types and out-of-range values are
refused with clear loomrt errors instead of being coerced. A wrong type raises
``loomrt.ArgumentTypeError`` (both a ``TypeError`` and an ``InvalidArgumentError``, itself a
``ValueError``); a wrong value of the right type raises ``InvalidArgumentError``."""
from __future__ import annotations

import numpy as np
import pytest

import loomrt


@pytest.fixture(scope="module")
def gg(micro_gguf):
    return loomrt.load(micro_gguf, threads=1)


def test_error_classes():
    assert issubclass(loomrt.ArgumentTypeError, TypeError)
    assert issubclass(loomrt.ArgumentTypeError, loomrt.InvalidArgumentError)
    assert issubclass(loomrt.InvalidArgumentError, ValueError)


@pytest.mark.parametrize("prompt", [b"hello", bytearray(b"hello"), memoryview(b"hi"), 5, None, 1.5,
                                    {"role": "user", "content": "hi"}],
                         ids=["bytes", "bytearray", "memoryview", "int", "None", "float", "dict"])
def test_prompt_of_the_wrong_type(gg, prompt):
    """bytes used to be taken as a list of token ids (b"hello" = [104, 101, 108, 108, 111])."""
    for call in (lambda: gg.generate(prompt, 2), lambda: list(gg.stream(prompt, 2)),
                 lambda: list(gg.stream_tokens(prompt, 2)), lambda: gg.chat(prompt, 2)):
        with pytest.raises(loomrt.ArgumentTypeError, match="prompt|messages") as e:
            call()
        assert type(prompt).__name__ in str(e.value)


def test_prompt_types_that_work(gg):
    assert gg.generate([1, 2, 3], 2).prompt_token_ids == [1, 2, 3]
    assert gg.generate(np.array([1, 2, 3]), 2).prompt_token_ids == [1, 2, 3]
    assert gg.generate((1, 2, 3), 2).prompt_token_ids == [1, 2, 3]
    assert gg.generate("#$", 2).prompt_token_ids == gg.encode("#$")


@pytest.mark.parametrize("context", [1.5, 16.0, "16", True, False, [16], np.float32(16)],
                         ids=["1.5", "16.0", "'16'", "True", "False", "list", "np.float32"])
def test_context_of_the_wrong_type(micro_gguf, gg, context):
    with pytest.raises(loomrt.ArgumentTypeError, match="context"):
        loomrt.load(micro_gguf, threads=1, context=context)
    with pytest.raises(loomrt.ArgumentTypeError, match="context"):
        gg.session(context=context)


def test_context_values(micro_gguf, gg):
    assert loomrt.load(micro_gguf, threads=1, context=np.int64(16)).context_length == 16
    assert gg.session(context=8).context == 8
    for bad in (0, -1, 10**9):
        with pytest.raises(loomrt.InvalidArgumentError, match="context"):
            loomrt.load(micro_gguf, threads=1, context=bad)


@pytest.mark.parametrize("seed", [2**64, 2**64 + 3, -1, -2**63, 2**70])
def test_seed_out_of_range(gg, seed):
    """seed=2**64 used to be taken modulo 2**64: the same tokens as seed=0, silently."""
    with pytest.raises(loomrt.InvalidArgumentError, match=r"seed.*\[0, 2\*\*64\)"):
        gg.generate([1, 2], 2, temperature=1.0, seed=seed)
    with pytest.raises(loomrt.InvalidArgumentError, match="seed"):
        gg.session().configure(loomrt.SamplingParams(seed=seed))


@pytest.mark.parametrize("seed", [1.0, "7", True, None, np.float64(3)], ids=repr)
def test_seed_of_the_wrong_type(gg, seed):
    with pytest.raises(loomrt.ArgumentTypeError, match="seed"):
        gg.generate([1, 2], 2, temperature=1.0, seed=seed)


def test_seed_edges(gg):
    top = gg.generate([1, 2, 3], 6, temperature=1.5, seed=2**64 - 1).token_ids
    zero = gg.generate([1, 2, 3], 6, temperature=1.5, seed=0).token_ids
    assert gg.generate([1, 2, 3], 6, temperature=1.5, seed=np.uint64(2**64 - 1)).token_ids == top
    assert len(top) == len(zero) == 6


@pytest.mark.parametrize("kw", [dict(max_tokens=2.0), dict(max_tokens="2"), dict(max_tokens=True),
                                dict(temperature="hot"), dict(temperature=None), dict(top_k=1.5), dict(top_k=True),
                                dict(top_p="1"), dict(min_p=[0.1]), dict(repetition_penalty=b"1")], ids=repr)
def test_other_arguments_of_the_wrong_type(gg, kw):
    max_tokens = kw.pop("max_tokens", 2)
    with pytest.raises(loomrt.ArgumentTypeError):
        gg.generate([1, 2], max_tokens, **kw)


def test_threads_of_the_wrong_type(micro_gguf):
    for threads in (2.0, "2", True):
        with pytest.raises(loomrt.ArgumentTypeError, match="threads"):
            loomrt.load(micro_gguf, threads=threads)
