"""Training (issue 12): the C backward pass against PyTorch autograd, AdamW against a PyTorch
loop, bit-exact determinism (threads, kernel paths, accumulation, resume), the data pipeline,
checkpoints and a real corpus.

Tolerances are stated where used: loomrt computes in float32, the references in float64 (or
float32 for the optimizer loop)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import loomrt  # noqa: E402
from loomrt.trainer import Trainer  # noqa: E402
from loomrt.train import from_hf, model_config, to_hf  # noqa: E402

# Dimensions chosen so that dot products have tails (not multiples of 8) and attention is grouped.
LLAMA = model_config("llama", vocab=67, dim=40, layers=2, heads=4, kv_heads=2, context=32, ffn=52, tied=False)
LLAMA_TIED = model_config("llama", vocab=61, dim=24, layers=2, heads=2, kv_heads=1, context=32, ffn=36, tied=True)
GPT2 = model_config("gpt2", vocab=59, dim=36, layers=2, heads=3, context=32, ffn=44)


def hf_model(config, weights):
    """The HF model of a config in float64 holding the trainer's weights."""
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    cls = transformers.GPT2LMHeadModel if config["model_type"] == "gpt2" else transformers.LlamaForCausalLM
    cfg._attn_implementation = "eager"
    model = cls(cfg).double().eval()
    state = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in to_hf(weights, config).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith(("attn.bias", "attn.masked_bias", "rotary_emb.inv_freq"))]
    if config.get("tie_word_embeddings"):
        missing = [m for m in missing if m != "lm_head.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    return model


def batch(vocab, b, t, seed):
    return np.random.default_rng(seed).integers(0, vocab, size=(b, t + 1), dtype=np.int32)


def torch_loss(model, tokens):
    ids = torch.tensor(tokens[:, :-1].astype(np.int64))
    tgt = torch.tensor(tokens[:, 1:].astype(np.int64))
    logits = model(input_ids=ids).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))


@pytest.mark.parametrize("config", [LLAMA, LLAMA_TIED, GPT2], ids=["llama", "llama-tied", "gpt2"])
def test_loss_and_every_gradient_match_torch_float64(config):
    """Loss and the gradient of every tensor vs HF transformers in float64 autograd.
    Tolerance: loss within 1e-5 relative; each gradient tensor within 1e-4 in relative
    Frobenius norm and every element within 1e-3 of the tensor's largest magnitude."""
    tr = Trainer(config, seed=3, threads=2)
    tokens = batch(config["vocab_size"], 3, 13, seed=5)
    loss = tr.accumulate(tokens)
    model = hf_model(config, tr.weights())
    ref = torch_loss(model, tokens)
    ref.backward()
    assert abs(loss - ref.item()) <= 1e-5 * abs(ref.item())
    ref_grads = from_hf({k: p.grad.numpy() for k, p in model.named_parameters() if p.grad is not None}, config)
    assert set(ref_grads) == set(tr.names)
    top = max(np.abs(r).max() for r in ref_grads.values())
    for name in tr.names:
        g = tr.read(name, "grad").astype(np.float64)
        r = ref_grads[name]
        if np.abs(r).max() < 1e-9 * top:
            # analytically zero (the key bias shifts every score of a row equally): float32 noise only
            assert np.abs(g).max() < 1e-6 * top, name
            continue
        rel = np.linalg.norm(g - r) / np.linalg.norm(r)
        assert rel < 1e-4, (name, rel)
        assert np.abs(g - r).max() <= 1e-3 * np.abs(r).max(), name
