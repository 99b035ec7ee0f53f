"""Training tiny GPTs from folders, bit-reproducibly: data, tokenizers, checkpoints, the loop.

``loomrt.train(["my_notes/"], "runs/notes", size="tiny", steps=2000)`` reads the folders,
trains a tokenizer (or uses bytes), trains a Llama-style (or GPT-2-style) model in the C core
(:class:`loomrt.trainer.Trainer`) and writes HF checkpoints that ``loomrt.load`` and
``transformers`` open. The walkthrough is docs/training.md.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import errors
from .trainer import Trainer

# ---- model configurations ----------------------------------------------------------------

SIZES: Dict[str, Dict[str, int]] = {
    # dim, layers, heads, kv_heads, context
    "micro": dict(dim=64, layers=2, heads=4, kv_heads=2, context=128),
    "tiny": dict(dim=128, layers=4, heads=4, kv_heads=2, context=256),
    "small": dict(dim=256, layers=6, heads=8, kv_heads=4, context=256),
    "medium": dict(dim=512, layers=8, heads=8, kv_heads=4, context=512),
}


def model_config(arch: str = "llama", vocab: int = 259, dim: int = 128, layers: int = 4, heads: int = 4,
                 kv_heads: Optional[int] = None, context: int = 256, ffn: Optional[int] = None,
                 tied: bool = True, bos: Optional[int] = None, eos: Optional[int] = None) -> Dict[str, Any]:
    """An HF config.json dict for a ``LlamaForCausalLM`` ("llama") or ``GPT2LMHeadModel``
    ("gpt2") of the given dimensions. ffn defaults to about 8/3 dim rounded up to 32
    (SwiGLU) or 4 dim (GPT-2)."""
    if arch == "llama":
        if dim % heads:
            raise errors.InvalidArgumentError(f"dim {dim} is not divisible by heads {heads}")
        kv = kv_heads or heads
        if heads % kv:
            raise errors.InvalidArgumentError(f"heads {heads} is not a multiple of kv_heads {kv}")
        if ffn is None:
            ffn = (dim * 8 // 3 + 31) // 32 * 32
        cfg: Dict[str, Any] = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
            "hidden_size": dim, "intermediate_size": ffn, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": dim // heads,
            "max_position_embeddings": context, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
            "tie_word_embeddings": bool(tied), "torch_dtype": "float32",
        }
    elif arch == "gpt2":
        if dim % heads:
            raise errors.InvalidArgumentError(f"dim {dim} is not divisible by heads {heads}")
        cfg = {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab, "n_embd": dim,
            "n_layer": layers, "n_head": heads, "n_positions": context, "n_ctx": context,
            "n_inner": ffn or 4 * dim, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
            "tie_word_embeddings": True, "torch_dtype": "float32",
        }
    else:
        raise errors.InvalidArgumentError(f"arch must be 'llama' or 'gpt2', got {arch!r}")
    if bos is not None:
        cfg["bos_token_id"] = int(bos)
    if eos is not None:
        cfg["eos_token_id"] = int(eos)
    return cfg


# ---- loomrt tensor names <-> HF names ------------------------------------------------------

_LLAMA = {
    "attn_norm": "input_layernorm.weight", "wq": "self_attn.q_proj.weight", "bq": "self_attn.q_proj.bias",
    "wk": "self_attn.k_proj.weight", "bk": "self_attn.k_proj.bias", "wv": "self_attn.v_proj.weight",
    "bv": "self_attn.v_proj.bias", "wo": "self_attn.o_proj.weight", "bo": "self_attn.o_proj.bias",
    "ffn_norm": "post_attention_layernorm.weight", "w_gate": "mlp.gate_proj.weight",
    "w_up": "mlp.up_proj.weight", "b_up": "mlp.up_proj.bias", "w_down": "mlp.down_proj.weight",
    "b_down": "mlp.down_proj.bias",
}
_GPT2 = {  # name -> (HF name, transposed)
    "attn_norm": ("ln_1.weight", False), "attn_norm_b": ("ln_1.bias", False),
    "wo": ("attn.c_proj.weight", True), "bo": ("attn.c_proj.bias", False),
    "ffn_norm": ("ln_2.weight", False), "ffn_norm_b": ("ln_2.bias", False),
    "w_up": ("mlp.c_fc.weight", True), "b_up": ("mlp.c_fc.bias", False),
    "w_down": ("mlp.c_proj.weight", True), "b_down": ("mlp.c_proj.bias", False),
}


def is_gpt2(config: Dict[str, Any]) -> bool:
    return config.get("model_type") == "gpt2" or "GPT2LMHeadModel" in (config.get("architectures") or [])


def to_hf(weights: Dict[str, np.ndarray], config: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """loomrt tensor names (Trainer.weights()) -> the HF state dict of the config's class."""
    out: Dict[str, np.ndarray] = {}
    if not is_gpt2(config):
        for name, w in weights.items():
            if name == "tok_embd":
                out["model.embed_tokens.weight"] = w
            elif name == "out_norm":
                out["model.norm.weight"] = w
            elif name == "lm_head":
                out["lm_head.weight"] = w
            else:
                _, layer, key = name.split(".", 2)
                out[f"model.layers.{layer}.{_LLAMA[key]}"] = w
        return out
    layers = int(config["n_layer"])
    out["transformer.wte.weight"] = weights["tok_embd"]
    out["transformer.wpe.weight"] = weights["pos_embd"]
    out["transformer.ln_f.weight"] = weights["out_norm"]
    out["transformer.ln_f.bias"] = weights["out_norm_b"]
    for l in range(layers):
        p = f"blk.{l}."
        h = f"transformer.h.{l}."
        qkv = np.concatenate([weights[p + "wq"], weights[p + "wk"], weights[p + "wv"]], axis=0)
        out[h + "attn.c_attn.weight"] = np.ascontiguousarray(qkv.T)
        out[h + "attn.c_attn.bias"] = np.concatenate([weights[p + "bq"], weights[p + "bk"], weights[p + "bv"]])
        for key, (hf, tr) in _GPT2.items():
            w = weights[p + key]
            out[h + hf] = np.ascontiguousarray(w.T) if tr else w
    return out


def from_hf(state: Dict[str, np.ndarray], config: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """An HF state dict -> loomrt tensor names (the inverse of :func:`to_hf`)."""
    out: Dict[str, np.ndarray] = {}
    if not is_gpt2(config):
        inv = {v: k for k, v in _LLAMA.items()}
        for name, w in state.items():
            if name == "model.embed_tokens.weight":
                out["tok_embd"] = w
            elif name == "model.norm.weight":
                out["out_norm"] = w
            elif name == "lm_head.weight":
                out["lm_head"] = w
            elif name.startswith("model.layers."):
                _, _, layer, rest = name.split(".", 3)
                if rest in inv:
                    out[f"blk.{layer}.{inv[rest]}"] = w
        return out
    out["tok_embd"] = state["transformer.wte.weight"]
    out["pos_embd"] = state["transformer.wpe.weight"]
    out["out_norm"] = state["transformer.ln_f.weight"]
    out["out_norm_b"] = state["transformer.ln_f.bias"]
    d = int(config["n_embd"])
    for l in range(int(config["n_layer"])):
        p = f"blk.{l}."
        h = f"transformer.h.{l}."
        qkv = np.asarray(state[h + "attn.c_attn.weight"]).T
        b = np.asarray(state[h + "attn.c_attn.bias"])
        for i, k in enumerate(("q", "k", "v")):
            out[p + "w" + k] = np.ascontiguousarray(qkv[i * d:(i + 1) * d])
            out[p + "b" + k] = b[i * d:(i + 1) * d]
        for key, (hf, tr) in _GPT2.items():
            w = np.asarray(state[h + hf])
            out[p + key] = np.ascontiguousarray(w.T) if tr else w
    return out
