"""Reference peers for tests and benchmarks (needs ``torch``, ``transformers`` and ``gguf``,
which loomrt itself does not depend on).

:func:`hf_model_from_gguf` builds a HuggingFace transformers model holding the weights of a
llama-architecture GGUF file dequantized by the ``gguf`` package: an implementation of the
block formats and of llama.cpp's Q/K row order that is independent of loomrt's.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's convert-time reordering of Q/K rows ((h, hd/2, 2) -> (h, 2, hd/2))."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_model_from_gguf(path: str) -> Any:
    """A float32 ``transformers.LlamaForCausalLM`` with the dequantized weights of a llama GGUF."""
    import gguf
    import torch
    import transformers
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    if meta.get("general.architecture") != "llama":
        raise ValueError(f"{path}: only llama GGUF files are supported here")
    n_head = int(meta["llama.attention.head_count"])
    n_kv = int(meta["llama.attention.head_count_kv"])
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
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
            w = unpermute_qk(w, n_head)
        elif kind == "attn_k":
            w = unpermute_qk(w, n_kv)
        state[f"model.layers.{layer}.{per_layer[kind]}.weight"] = w
    tied = "lm_head.weight" not in state
    cfg = transformers.LlamaConfig(
        vocab_size=state["model.embed_tokens.weight"].shape[0], hidden_size=int(meta["llama.embedding_length"]),
        intermediate_size=int(meta["llama.feed_forward_length"]), num_hidden_layers=int(meta["llama.block_count"]),
        num_attention_heads=n_head, num_key_value_heads=n_kv,
        max_position_embeddings=int(meta["llama.context_length"]),
        rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
        rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)), tie_word_embeddings=tied)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).float().eval()
    missing, unexpected = hf.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    if unexpected or not set(missing) <= {"lm_head.weight"}:
        raise ValueError(f"weight mismatch: missing {missing}, unexpected {unexpected}")
    if tied:
        hf.tie_weights()
    return hf
