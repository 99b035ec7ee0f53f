"""HF model-folder files from a GGUF file's metadata: ``config.json`` and ``tokenizer.json``.

Fine-tuning a GGUF (``loomrt train DATA -o RUN --init-from model.gguf``) starts from its
weights, dequantized to float32 by the C core, and writes HuggingFace checkpoints. Those need a
``config.json`` and a ``tokenizer.json`` that ``transformers`` and loomrt load, which a GGUF
file does not carry; this module writes them from the ``llama.*`` and ``tokenizer.ggml.*``
metadata (read through the C GGUF reader, ``lrt_model_meta_*``).

Supported: ``general.architecture = llama`` with a byte-level BPE tokenizer
(``tokenizer.ggml.model = gpt2``) whose pre-tokenizer is one of llama.cpp's GPT-2, StarCoder /
SmolLM, Llama 3 or Qwen2 groups. The tokenizer is checked after conversion: the C tokenizer
built from the new ``tokenizer.json`` must give the same ids as the one built from the GGUF
metadata on a probe text (prose, code, digits, contractions, whitespace runs, non-ASCII and
every special token), or the conversion is refused.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from . import _lib, errors

# llama.cpp's tokenizer.ggml.pre names, by the split expressions it uses for them (the same
# groups as csrc/text/tok_load_gguf.c)
_GPT2 = {"default", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "mpt", "olmo",
         "jais", "trillion"}
_STARCODER = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}
_LLAMA3 = {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"}
_QWEN2 = {"qwen2", "deepseek-r1-qwen", "stablelm2"}

_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type)
_CONTROL, _USER_DEFINED = 3, 4

PROBE = ("Hello, world! It's 2024 and we'll test 1234567 numbers, don't we?\n\n"
         "def f(x):\n    return x ** 2  # square\n\tif  x:\n        pass\r\n"
         "Café naïve résumé — 東京 😀   trailing   \n")


def read_metadata(path: str) -> Dict[str, Any]:
    """All GGUF metadata of a file (the tensors are not read)."""
    handle = _lib.model_open(path, _lib.lib.LRT_OPEN_TOKENIZER_ONLY)
    return _lib.model_metadata(handle)


def _pre_tokenizer(pre: str) -> Dict[str, Any]:
    if pre in _GPT2:
        return dict(_BYTE_LEVEL)
    if pre in _STARCODER:
        return {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, dict(_BYTE_LEVEL)]}
    if pre in _LLAMA3 or pre in _QWEN2:
        regex = _LLAMA3_RE if pre in _LLAMA3 else _QWEN2_RE
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            dict(_BYTE_LEVEL, use_regex=False)]}
    raise errors.UnsupportedError(
        f"GGUF pre-tokenizer {pre!r} has no tokenizer.json equivalent here (supported: gpt-2, starcoder/smollm, "
        "llama3, qwen2 groups); pass the original model's folder with --tokenizer from:FOLDER")


def tokenizer_json(meta: Dict[str, Any]) -> str:
    """The text of an HF ``tokenizer.json`` equivalent to a GGUF file's tokenizer metadata."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise errors.UnsupportedError(
            f"GGUF tokenizer model {model!r}: only byte-level BPE ('gpt2') converts to tokenizer.json here; "
            "pass the original model's folder with --tokenizer from:FOLDER")
    tokens: List[str] = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise errors.FormatError("the GGUF file has no tokenizer.ggml.tokens")
    types: List[int] = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges: List[str] = list(meta.get("tokenizer.ggml.merges") or [])
    pre = _pre_tokenizer(str(meta.get("tokenizer.ggml.pre", "default")))
    vocab = {}
    added = []
    for i, t in enumerate(tokens):
        if t in vocab:
            raise errors.UnsupportedError(f"GGUF token {i} {t!r} repeats id {vocab[t]}; cannot write a tokenizer.json")
        vocab[t] = i
        if types[i] in (_CONTROL, _USER_DEFINED):
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": types[i] != _CONTROL, "special": types[i] == _CONTROL})
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    return json.dumps(doc, ensure_ascii=False, indent=1)


def tokenizer_json_from_gguf(path: str) -> str:
    """:func:`tokenizer_json` of a GGUF file, checked: loomrt's tokenizer from the result and
    from the GGUF give the same ids on :data:`PROBE` and on every special token."""
    from .tokenizer import Tokenizer

    meta = read_metadata(path)
    text = tokenizer_json(meta)
    ours = Tokenizer.from_str(text)
    ref = Tokenizer.from_gguf(path)
    specials = "".join(t for t, ty in zip(meta.get("tokenizer.ggml.tokens", []), meta.get("tokenizer.ggml.token_type", []))
                       if ty == _CONTROL)
    for probe in (PROBE, PROBE + specials):
        a = list(ours.encode(probe, add_special_tokens=False))
        b = list(ref.encode(probe, add_special_tokens=False))
        if a != b:
            n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            raise errors.UnsupportedError(
                f"{path}: the tokenizer.json written from its metadata encodes differently from the GGUF tokenizer "
                f"(first difference at token {n}); pass the original model's folder with --tokenizer from:FOLDER")
    return text


def hf_config(meta: Dict[str, Any], tied: bool) -> Dict[str, Any]:
    """An HF ``config.json`` dict (``LlamaForCausalLM``, float32) from GGUF ``llama.*`` metadata."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise errors.UnsupportedError(
            f"fine-tuning a GGUF needs general.architecture 'llama' (got {arch!r}); convert the original HF folder "
            "instead (--init-from FOLDER)")
    if any(k.startswith("llama.rope.scaling") for k in meta):
        raise errors.UnsupportedError("fine-tuning a GGUF with RoPE scaling is not supported; use the HF folder")

    def need(key: str) -> Any:
        if f"llama.{key}" not in meta:
            raise errors.FormatError(f"the GGUF metadata has no llama.{key}")
        return meta[f"llama.{key}"]

    dim, heads = int(need("embedding_length")), int(need("attention.head_count"))
    kv = int(meta.get("llama.attention.head_count_kv", heads))
    vocab = int(meta.get("llama.vocab_size", len(meta.get("tokenizer.ggml.tokens") or [])))
    cfg: Dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "hidden_size": dim, "intermediate_size": int(need("feed_forward_length")),
        "num_hidden_layers": int(need("block_count")), "num_attention_heads": heads, "num_key_value_heads": kv,
        "head_dim": int(meta.get("llama.rope.dimension_count", dim // heads)),
        "max_position_embeddings": int(need("context_length")),
        "rms_norm_eps": float(need("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(meta.get("llama.rope.freq_base", 10000.0)),
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": bool(tied),
        "torch_dtype": "float32",
    }
    for key, hf in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                    ("padding_token_id", "pad_token_id")):
        v = meta.get(f"tokenizer.ggml.{key}")
        if v is not None:
            cfg[hf] = int(v)
    return cfg


def tokenizer_config(meta: Dict[str, Any]) -> Dict[str, Any]:
    """The ``tokenizer_config.json`` fields a GGUF's metadata gives (bos / eos text, chat template)."""
    tokens = meta.get("tokenizer.ggml.tokens") or []
    out: Dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key in ("bos", "eos", "padding", "unknown"):
        v: Optional[int] = meta.get(f"tokenizer.ggml.{key}_token_id")
        if v is not None and 0 <= int(v) < len(tokens):
            name = {"padding": "pad", "unknown": "unk"}.get(key, key)
            out[f"{name}_token"] = tokens[int(v)]
    out["add_bos_token"] = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    template = meta.get("tokenizer.chat_template")
    if template:
        out["chat_template"] = template
    return out
