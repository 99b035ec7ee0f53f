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
from .tokenizer import Tokenizer as CTokenizer
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
_LLAMA_TOP = {"tok_embd": "model.embed_tokens.weight", "out_norm": "model.norm.weight", "lm_head": "lm_head.weight"}
_GPT2_TOP = {"tok_embd": "transformer.wte.weight", "pos_embd": "transformer.wpe.weight",
             "out_norm": "transformer.ln_f.weight", "out_norm_b": "transformer.ln_f.bias"}
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
            if name in _LLAMA_TOP:
                out[_LLAMA_TOP[name]] = w
            else:
                _, layer, key = name.split(".", 2)
                out[f"model.layers.{layer}.{_LLAMA[key]}"] = w
        return out
    layers = int(config["n_layer"])
    for name, hf in _GPT2_TOP.items():
        out[hf] = weights[name]
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
        top = {v: k for k, v in _LLAMA_TOP.items()}
        for name, w in state.items():
            if name in top:
                out[top[name]] = w
            elif name.startswith("model.layers."):
                _, _, layer, rest = name.split(".", 3)
                if rest in inv:
                    out[f"blk.{layer}.{inv[rest]}"] = w
        return out
    for name, hf in _GPT2_TOP.items():
        out[name] = state[hf]
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


# ---- data: folders -> documents ----------------------------------------------------------

TEXT_EXTENSIONS = {".txt", ".md", ".csv", ".jsonl", ".rst", ".tex"}
EOS_TEXT = "<|endoftext|>"


@dataclass
class CorpusStats:
    """What reading the data found (also written to RUN_DIR/data/corpus.json)."""
    files: int = 0
    documents: int = 0
    train_documents: int = 0
    val_documents: int = 0
    bytes: int = 0
    binary_skipped: int = 0
    invalid_utf8_files: int = 0
    bad_jsonl_lines: int = 0
    bad_jsonl_examples: List[str] = field(default_factory=list)
    empty_skipped: int = 0


def list_files(paths: Sequence[str]) -> List[str]:
    """Every file under the given files / folders, recursively, hidden names skipped, sorted
    by their path's bytes (the same order on every OS and file system); a file reached twice
    (a symbolic link to a file already listed) is listed once, under its first name."""
    out: List[str] = []
    for p in paths:
        if os.path.isfile(p):
            out.append(os.path.abspath(p))
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
                out += [os.path.abspath(os.path.join(root, f)) for f in files if not f.startswith(".")]
        else:
            raise errors.NotFoundError(f"data path not found: {p!r} (pass folders or files of text)")
    seen = set()
    unique = []
    for path in sorted(set(out), key=os.fsencode):
        real = os.path.realpath(path)
        if real in seen:  # a link to a file already listed (e.g. fortune's art.u8 -> art) is read once
            continue
        seen.add(real)
        unique.append(path)
    return unique


def _is_binary(head: bytes) -> bool:
    return b"\0" in head


def _val_split(key: str, fraction: float) -> bool:
    """True when the document `key` belongs to the validation set: the first 8 bytes of
    SHA-256(key), as a number in [0, 1), fall below the fraction."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big")
    return h / 2.0 ** 64 < fraction


def iter_documents(paths: Sequence[str], text_field: str = "text", val_fraction: float = 0.05,
                   stats: Optional[CorpusStats] = None, base: Optional[str] = None
                   ) -> Iterable[Tuple[str, bool, str]]:
    """(key, is_validation, text) for every document in the data, in the defined order: files
    sorted bytewise; a .jsonl file gives one document per line (the `text_field` string; lines
    that are not JSON objects with that field are skipped and counted), other text files one
    document each. Binary files (a NUL byte) are skipped and counted; invalid UTF-8 is decoded
    with U+FFFD and counted. The key (path relative to the common folder, plus ':line' for
    .jsonl) decides the split."""
    st = stats if stats is not None else CorpusStats()
    files = list_files(paths)
    if base is None:
        dirs = [os.path.dirname(f) for f in files]
        base = os.path.commonpath(dirs) if dirs else ""
    for path in files:
        with open(path, "rb") as f:
            raw = f.read()
        st.files += 1
        if _is_binary(raw[:65536]):
            st.binary_skipped += 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            st.invalid_utf8_files += 1
        rel = os.path.relpath(path, base) if base else path
        rel = rel.replace(os.sep, "/")
        if path.lower().endswith(".jsonl"):
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    doc = obj[text_field] if isinstance(obj, dict) else None
                    if not isinstance(doc, str):
                        raise ValueError(f"no string field {text_field!r}")
                except (ValueError, KeyError) as exc:
                    st.bad_jsonl_lines += 1
                    if len(st.bad_jsonl_examples) < 10:
                        st.bad_jsonl_examples.append(f"{rel}:{n}: {str(exc)[:80]}")
                    continue
                if not doc:
                    st.empty_skipped += 1
                    continue
                key = f"{rel}:{n}"
                yield key, _val_split(key, val_fraction), doc
        else:
            if not text.strip():
                st.empty_skipped += 1
                continue
            yield rel, _val_split(rel, val_fraction), text


# ---- tokenizers -------------------------------------------------------------------------

def _byte_level_tokenizer(merges_from: Optional[Iterable[str]] = None, vocab_size: int = 0) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if merges_from is None:  # bytes only: the 256 byte-level characters, no merges
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        # ids in byte order: the byte-level character of byte b gets id b
        chars = _bytes_to_unicode()
        vocab = {chars[b]: b for b in range(256)}
        assert set(vocab) == set(alphabet)
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    else:
        tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if merges_from is None:
        tok.add_special_tokens([EOS_TEXT])
        return tok
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(merges_from, trainer=trainer)
    return tok


def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's byte -> printable character table (the byte-level alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_tokenizer(spec: str, documents: Optional[Iterable[str]] = None) -> Tuple[Any, str]:
    """loomrt's (C) tokenizer and its tokenizer.json text from a spec: "byte" (256 byte tokens
    + <|endoftext|>), "bpe:VOCAB" (byte-level BPE trained on the documents with HF tokenizers'
    trainer, the one use of HF tokenizers here) or "from:MODEL" (a model folder's
    tokenizer.json, or one written from a GGUF file's metadata: loomrt.gguf_hf). The corpus is then encoded by the same C tokenizer that generation uses."""
    from tokenizers import Tokenizer
    if spec == "byte":
        tok = _byte_level_tokenizer()
    elif spec.startswith("bpe:"):
        try:
            size = int(spec[4:])
        except ValueError:
            raise errors.InvalidArgumentError(f"--tokenizer bpe:VOCAB needs a number, got {spec!r}") from None
        if not 300 <= size <= 1 << 20:
            raise errors.InvalidArgumentError(f"BPE vocabulary must be in [300, 2^20], got {size}")
        tok = _byte_level_tokenizer(documents or [], size)
    elif spec.startswith("from:"):
        path = spec[5:]
        if os.path.isfile(path) and _is_gguf(path):  # tokenizer.json written from the GGUF metadata, checked
            from .gguf_hf import tokenizer_json_from_gguf
            text = tokenizer_json_from_gguf(path)
            return CTokenizer.from_str(text), text
        tj = path if path.endswith(".json") else os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tj):
            raise errors.NotFoundError(f"--tokenizer {spec}: no tokenizer.json at {tj}")
        with open(tj, encoding="utf-8") as f:
            text = f.read()
        return CTokenizer.from_str(text), text
    else:
        raise errors.InvalidArgumentError(f"--tokenizer must be byte, bpe:VOCAB or from:MODEL, got {spec!r}")
    text = tok.to_str()
    return CTokenizer.from_str(text), text


def _is_gguf(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def eos_id(tok: Any) -> int:
    for name in (EOS_TEXT, "</s>", "<|im_end|>", "<eos>"):
        i = tok.token_to_id(name)
        if i is not None:
            return int(i)
    raise errors.UnsupportedError("the tokenizer has no end-of-text token (<|endoftext|> or </s>)")


# ---- token cache --------------------------------------------------------------------------

def write_token_cache(docs: Iterable[Tuple[str, bool, str]], tok: Any, eos: int, folder: str,
                      stats: CorpusStats) -> Dict[str, Any]:
    """Tokenize the documents once into folder/train.bin and folder/val.bin (uint16 or uint32
    ids, each document followed by EOS), written through temporary files and renamed."""
    os.makedirs(folder, exist_ok=True)
    vocab = tok.vocab_size
    dtype = np.uint16 if vocab <= 65535 else np.uint32
    paths = {s: os.path.join(folder, f"{s}.bin") for s in ("train", "val")}
    outs = {s: open(p + ".tmp", "wb") for s, p in paths.items()}
    counts = {"train": 0, "val": 0}
    try:
        batch: List[Tuple[bool, str]] = []

        def flush() -> None:
            enc = tok.encode_batch([t for _, t in batch], add_special_tokens=False)
            for (is_val, _), e in zip(batch, enc):
                ids = np.asarray(e.ids + [eos], dtype=dtype)
                s = "val" if is_val else "train"
                outs[s].write(ids.tobytes())
                counts[s] += ids.size
            batch.clear()

        for key, is_val, text in docs:
            stats.documents += 1
            stats.bytes += len(text.encode("utf-8", "surrogatepass"))
            if is_val:
                stats.val_documents += 1
            else:
                stats.train_documents += 1
            batch.append((is_val, text))
            if len(batch) >= 256:
                flush()
        if batch:
            flush()
    finally:
        for f in outs.values():
            f.close()
    for s, p in paths.items():
        os.replace(p + ".tmp", p)
    return {"dtype": np.dtype(dtype).name, "train_tokens": counts["train"], "val_tokens": counts["val"]}


def _atomic_write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _splitmix64(x: int) -> int:
    m = 0xFFFFFFFFFFFFFFFF
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def batch_offsets(seed: int, step: int, batch: int, n_tokens: int, seq_len: int) -> List[int]:
    """Start offsets of the `batch` training windows of step `step` (1-based): SplitMix64 of
    (seed, step, row), modulo the number of windows. Depends on nothing else, so a resumed
    run reads the same batches."""
    windows = n_tokens - seq_len
    return [_splitmix64((seed * 0x100000001B3 + step * 65599 + j) & 0xFFFFFFFFFFFFFFFF) % windows
            for j in range(batch)]


# ---- checkpoints ----------------------------------------------------------------------------

def save_safetensors(path: str, tensors: Dict[str, np.ndarray], metadata: Optional[Dict[str, str]] = None) -> None:
    """Write float32 tensors as a .safetensors file (sorted names; atomic)."""
    header: Dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    names = sorted(tensors)
    for n in names:
        a = tensors[n]
        header[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.size * 4]}
        off += a.size * 4
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    parts = [len(h).to_bytes(8, "little"), h] + [np.ascontiguousarray(tensors[n], dtype="<f4").tobytes() for n in names]
    _atomic_write(path, b"".join(parts))


def load_safetensors(path: str) -> Dict[str, np.ndarray]:
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise errors.UnsupportedError(f"{path}: tensor {name} is {info['dtype']}; training checkpoints are F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(info["shape"]).astype(np.float32)
    return out


def default_tokenizer_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """tokenizer_config.json of a model trained from scratch (byte or BPE tokenizer)."""
    return {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS_TEXT, "bos_token": EOS_TEXT,
            "model_max_length": int(config.get("max_position_embeddings", config.get("n_positions", 1024)))}


def write_checkpoint(folder: str, trainer: Trainer, config: Dict[str, Any], tokenizer_json: str,
                     state: Dict[str, Any], tokenizer_config: Optional[Dict[str, Any]] = None) -> None:
    """An HF model folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
    generation_config.json) plus optimizer.bin and trainer_state.json for an exact resume.
    Written into folder + '.tmp' and renamed, so a folder is complete or absent. Raises
    NumericError (and writes nothing) when a weight is not finite."""
    weights = trainer.weights()
    for name, w in weights.items():
        if not np.isfinite(w).all():
            raise errors.NumericError(
                f"weight {name} holds non-finite values after step {trainer.step}: training diverged")
    tmp = folder + ".tmp"
    if os.path.isdir(tmp):
        import shutil
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    hf = to_hf(weights, config)
    save_safetensors(os.path.join(tmp, "model.safetensors"), hf, {"format": "pt"})
    cfg = dict(config)
    cfg["transformers_version"] = cfg.get("transformers_version", "4.45.0")
    _atomic_write(os.path.join(tmp, "config.json"), json.dumps(cfg, indent=2, sort_keys=True).encode())
    gen = {"bos_token_id": config.get("bos_token_id"), "eos_token_id": config.get("eos_token_id"),
           "do_sample": True, "temperature": 0.8, "top_k": 40}
    _atomic_write(os.path.join(tmp, "generation_config.json"), json.dumps(gen, indent=2, sort_keys=True).encode())
    _atomic_write(os.path.join(tmp, "tokenizer.json"), tokenizer_json.encode("utf-8"))
    tc = dict(tokenizer_config) if tokenizer_config is not None else default_tokenizer_config(config)
    _atomic_write(os.path.join(tmp, "tokenizer_config.json"), json.dumps(tc, indent=2, sort_keys=True).encode())
    _atomic_write(os.path.join(tmp, "optimizer.bin"), trainer.state_bytes())
    _atomic_write(os.path.join(tmp, "trainer_state.json"), json.dumps(state, indent=2, sort_keys=True).encode())
    if os.path.isdir(folder):
        import shutil
        shutil.rmtree(folder)
    os.replace(tmp, folder)


_SHAPE_KEYS = ("model_type", "vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
               "num_attention_heads", "n_head", "num_key_value_heads", "intermediate_size", "n_inner",
               "tie_word_embeddings")


def load_checkpoint_weights(trainer: Trainer, folder: str, config: Dict[str, Any]) -> None:
    """Write a checkpoint's weights into the trainer. Raises InvalidArgumentError naming the
    first differing setting when the checkpoint was saved with another configuration."""
    cfg_path = os.path.join(folder, "config.json")
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            saved = json.load(f)
        for key in _SHAPE_KEYS:
            if saved.get(key) != config.get(key):
                raise errors.InvalidArgumentError(
                    f"checkpoint {folder} was saved with another configuration ({key} {saved.get(key)!r}, this run "
                    f"{config.get(key)!r}); resume it from its own run folder, or start a new run (--overwrite)")
    weights = from_hf(load_safetensors(os.path.join(folder, "model.safetensors")), config)
    names = set(trainer.names)
    if set(weights) != names:
        raise errors.InvalidArgumentError(
            f"checkpoint {folder} does not fit this model: tensors differ "
            f"({sorted(names ^ set(weights))[:4]}); resume with the configuration it was saved with")
    for name, w in weights.items():
        if tuple(np.atleast_2d(w).shape) != trainer.shape(name) and w.size != np.prod(trainer.shape(name)):
            raise errors.InvalidArgumentError(f"checkpoint tensor {name} has shape {w.shape}, the model "
                                              f"{trainer.shape(name)}: another configuration")
        trainer.write(name, w)


# ---- the training run ------------------------------------------------------------------------

@dataclass
class TrainOptions:
    """Every setting of a run (written to RUN_DIR/run.json; ``loomrt train --help`` says the same)."""
    arch: str = "llama"
    size: str = "tiny"
    dim: Optional[int] = None
    layers: Optional[int] = None
    heads: Optional[int] = None
    kv_heads: Optional[int] = None
    context: Optional[int] = None
    ffn: Optional[int] = None
    tied: bool = True
    tokenizer: Optional[str] = None  # byte, bpe:VOCAB, from:MODEL; default byte (from:INIT with init_from)
    init_from: Optional[str] = None  # fine-tune: an HF folder or GGUF file whose weights the run starts from
    steps: Optional[int] = None
    epochs: Optional[float] = None
    batch: int = 8
    accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 8
    save_every: Optional[int] = None
    patience: int = 0
    plateau: int = 0
    sample_every: int = 0
    sample_prompt: str = ""
    sample_tokens: int = 64
    seed: int = 0
    threads: int = 0
    val_fraction: float = 0.05
    text_field: str = "text"
    bpe_train_bytes: int = 50_000_000


@dataclass
class Run:
    """The result of :func:`train`."""
    dir: str
    checkpoint: Optional[str]
    step: int
    losses: List[float]
    val_losses: List[Tuple[int, float]]
    best_val: Optional[float]
    unigram_val: Optional[float]
    interrupted: bool
    early_stopped: bool
    stats: Dict[str, Any]
    trainer: Trainer
    config: Dict[str, Any]
    tokens_per_s: float


def unigram_loss(train: np.ndarray, val: np.ndarray, vocab: int) -> float:
    """Cross-entropy (nats/token) of the validation tokens under the training set's unigram
    frequencies with add-one smoothing: the baseline a model must beat to have learned context."""
    counts = np.bincount(np.asarray(train, dtype=np.int64), minlength=vocab).astype(np.float64) + 1.0
    p = counts / counts.sum()
    return float(-np.mean(np.log(p[np.asarray(val, dtype=np.int64)])))


def _plot(path: str, losses: List[float], val: List[Tuple[int, float]], unigram: Optional[float]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is optional; metrics.jsonl has the numbers
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, color="C0", label="train (step)")
    if len(losses) >= 10:
        k = max(1, len(losses) // 50)
        sm = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], sm, lw=1.5, color="C0", label=f"train (mean of {k})")
    if val:
        ax.plot([s for s, _ in val], [v for _, v in val], "o-", color="C1", label="validation")
    if unigram is not None:
        ax.axhline(unigram, color="gray", ls="--", lw=1, label="unigram baseline (val)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def sample_text(trainer: Trainer, tok: Any, prompt_ids: List[int], n: int, seq_len: int, seed: int,
                temperature: float = 0.8) -> str:
    """A short generation from the trainer's current weights (temperature sampling with a
    SplitMix64 stream of the seed; for display)."""
    ids = list(prompt_ids)
    out: List[int] = []
    for i in range(n):
        logits = trainer.logits(ids[-seq_len:]).astype(np.float64)
        z = (logits - logits.max()) / max(temperature, 1e-6)
        p = np.exp(z)
        c = np.cumsum(p / p.sum())
        u = (_splitmix64((seed * 1000003 + i) & 0xFFFFFFFFFFFFFFFF) >> 11) / 2.0 ** 53
        nxt = int(min(np.searchsorted(c, u, side="right"), len(c) - 1))
        ids.append(nxt)
        out.append(nxt)
    return tok.decode(out, skip_special_tokens=False)


def _source_tokenizer_config(source: str) -> Dict[str, Any]:
    """The tokenizer_config.json fields of a model a run takes its tokenizer from (its eos /
    bos text and chat template, so the fine-tune chats like its base): a folder's own file, or
    the fields a GGUF's metadata gives."""
    if os.path.isfile(source) and _is_gguf(source):
        from .gguf_hf import read_metadata, tokenizer_config
        return tokenizer_config(read_metadata(source))
    folder = os.path.dirname(source) if source.endswith(".json") else source
    path = os.path.join(folder, "tokenizer_config.json")
    tc: Dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            tc = json.load(f)
    tc.pop("auto_map", None)
    tc.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    return tc


# Debug hook (docs/training.md): LOOMRT_TRAIN_DEBUG_NAN_STEP=N writes a NaN into the final norm's
# weights just before step N's forward pass, so the non-finite-loss stop can be exercised.
DEBUG_NAN_ENV = "LOOMRT_TRAIN_DEBUG_NAN_STEP"


def _resolve_options(o: TrainOptions, resume: bool = False) -> Dict[str, int]:
    if o.size not in SIZES:
        raise errors.InvalidArgumentError(f"--size must be one of {', '.join(SIZES)}, got {o.size!r}")
    dims = dict(SIZES[o.size])
    for k in ("dim", "layers", "heads", "kv_heads", "context"):
        v = getattr(o, k)
        if v is not None:
            dims[k] = int(v)
    if o.batch < 1 or o.accum < 1 or o.batch % o.accum:
        raise errors.InvalidArgumentError(f"--batch {o.batch} must be a positive multiple of --accum {o.accum}")
    if not 0.0 <= o.val_fraction < 1.0:
        raise errors.InvalidArgumentError("--val-fraction must be in [0, 1)")
    if o.schedule not in ("cosine", "constant"):
        raise errors.InvalidArgumentError("--schedule must be cosine or constant")
    if o.init_from:
        if not resume and not os.path.exists(o.init_from):
            raise errors.NotFoundError(f"--init-from: {o.init_from!r} not found (pass an HF model folder or a .gguf file)")
        shaped = [k for k in ("dim", "layers", "heads", "kv_heads", "ffn") if getattr(o, k) is not None]
        if shaped:
            raise errors.InvalidArgumentError(
                f"--init-from {o.init_from} fine-tunes that model as it is; drop --{shaped[0].replace('_', '-')} "
                "(only --context, the training window, may be set)")
        if o.tokenizer is not None and not o.tokenizer.startswith("from:"):
            raise errors.InvalidArgumentError(
                f"--init-from {o.init_from} trains with the model's own tokenizer; drop --tokenizer {o.tokenizer}")
    return dims


def train(data: Sequence[str], out: str, *, resume: bool = False, overwrite: bool = False,
          callback: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None,
          **options: Any) -> Run:
    """Train a model on the text in ``data`` (folders or files) into the run folder ``out``.

    ``options`` are the fields of :class:`TrainOptions` (size, steps, batch, lr, tokenizer, ...).
    ``callback(record)`` is called after every step with a dict (step, loss, lr, grad_norm,
    tokens, tokens_per_s, eta_s, and val_loss / sample when computed); returning True stops the
    run (a checkpoint is written). With ``resume=True`` the run continues from its latest
    checkpoint, bit-identically to a run that never stopped (the options are those of the run;
    ``steps`` may be raised). Raises InvalidArgumentError for a run folder that holds another
    run (pass resume or overwrite), an empty corpus, or settings out of range."""
    import shutil
    run_json = os.path.join(out, "run.json")
    if isinstance(data, str):
        data = [data]
    if resume:
        if not os.path.isfile(run_json):
            raise errors.NotFoundError(f"--resume: {out} holds no run (no run.json)")
        with open(run_json, encoding="utf-8") as f:
            saved = json.load(f)
        opts = dict(saved["options"])
        for k in ("steps", "threads", "eval_every", "sample_every", "patience"):
            if options.get(k) is not None:
                opts[k] = options[k]
        data = saved["data"]
        o = TrainOptions(**opts)
    else:
        if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
            if not overwrite:
                what = "another run" if os.path.isfile(run_json) else "files"
                raise errors.InvalidArgumentError(
                    f"the run folder {out} already holds {what}; pass --resume to continue it or --overwrite "
                    "to replace it, or choose another -o folder")
            shutil.rmtree(out)
        o = TrainOptions(**{k: v for k, v in options.items() if v is not None})
    dims = _resolve_options(o, resume)
    os.makedirs(out, exist_ok=True)
    data_dir = os.path.join(out, "data")
    meta_path = os.path.join(data_dir, "meta.json")
    tok_path = os.path.join(data_dir, "tokenizer.json")
    tok_cfg_path = os.path.join(data_dir, "tokenizer_config.json")
    data = [os.path.abspath(p) for p in data]

    # 1. data and tokenizer (once per run; a resume reuses them)
    if resume and os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        with open(tok_path, encoding="utf-8") as f:
            tok_json = f.read()
        tok = CTokenizer.from_str(tok_json)
    else:
        os.makedirs(data_dir, exist_ok=True)
        stats = CorpusStats()
        spec = o.tokenizer or ("from:" + o.init_from if o.init_from else "byte")
        if spec.startswith("bpe:"):
            budget = [o.bpe_train_bytes]

            def texts() -> Iterable[str]:
                for _, is_val, text in iter_documents(data, o.text_field, o.val_fraction):
                    if is_val:
                        continue
                    if budget[0] <= 0:
                        return
                    budget[0] -= len(text)
                    yield text
            tok, tok_json = build_tokenizer(spec, texts())
        else:
            tok, tok_json = build_tokenizer(spec)
        eos = eos_id(tok)
        counts = write_token_cache(iter_documents(data, o.text_field, o.val_fraction, stats), tok, eos, data_dir, stats)
        if counts["train_tokens"] == 0:
            raise errors.InvalidArgumentError(
                f"no training text in {', '.join(data)}: {stats.files} files read, {stats.binary_skipped} binary "
                f"skipped, {stats.empty_skipped} empty, {stats.bad_jsonl_lines} bad .jsonl lines"
                + (f" (e.g. {stats.bad_jsonl_examples[0]})" if stats.bad_jsonl_examples else "")
                + (f", {stats.val_documents} documents all in the validation split (lower --val-fraction)"
                   if stats.val_documents else ""))
        meta = dict(counts, stats=asdict(stats), eos=eos, vocab=tok.vocab_size)
        if spec.startswith("from:"):  # the source's tokenizer_config.json (eos text, chat template) for checkpoints
            _atomic_write(tok_cfg_path, json.dumps(_source_tokenizer_config(spec[5:]), indent=2,
                                                   sort_keys=True).encode())
        _atomic_write(tok_path, tok_json.encode("utf-8"))
        _atomic_write(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    eos = int(meta["eos"])
    vocab = int(meta["vocab"])
    dtype = np.dtype(meta["dtype"])
    train_tok = np.memmap(os.path.join(data_dir, "train.bin"), dtype=dtype, mode="r")
    val_path = os.path.join(data_dir, "val.bin")
    val_tok = np.memmap(val_path, dtype=dtype, mode="r") if meta["val_tokens"] else np.zeros(0, dtype=dtype)
    # 2. model
    if o.init_from and resume:  # the weights come from the checkpoint; the model need not be there any more
        config = saved["config"]
        trainer = Trainer(config, seed=o.seed, threads=o.threads)
    elif o.init_from:  # fine-tune: the model's weights (a GGUF's dequantized to float32)
        trainer = Trainer.from_pretrained(o.init_from, threads=o.threads)
        if os.path.isfile(o.init_from) and _is_gguf(o.init_from):
            from .gguf_hf import hf_config, read_metadata
            config = hf_config(read_metadata(o.init_from), tied="lm_head" not in trainer.names)
        else:
            with open(os.path.join(o.init_from, "config.json"), encoding="utf-8") as f:
                config = dict(json.load(f), torch_dtype="float32")  # checkpoints are float32
            for k in ("quantization_config", "auto_map"):
                config.pop(k, None)
        if int(config.get("vocab_size", 0)) < vocab:
            raise errors.InvalidArgumentError(f"the tokenizer has {vocab} ids, the model {config.get('vocab_size')}")
    else:
        config = model_config(o.arch, vocab=vocab, dim=dims["dim"], layers=dims["layers"], heads=dims["heads"],
                              kv_heads=dims["kv_heads"], context=dims["context"], ffn=o.ffn, tied=o.tied,
                              bos=eos, eos=eos)
        trainer = Trainer(config, seed=o.seed, threads=o.threads)
    model_ctx = int(config.get("max_position_embeddings", config.get("n_positions", dims["context"])))
    seq_len = min(dims["context"], model_ctx, len(train_tok) - 1)
    if seq_len < 1:
        raise errors.InvalidArgumentError("the training text is shorter than two tokens")
    tok_cfg = default_tokenizer_config(config)
    if os.path.isfile(tok_cfg_path):
        with open(tok_cfg_path, encoding="utf-8") as f:
            tok_cfg = json.load(f)
    steps = o.steps
    if steps is None:
        epochs = o.epochs if o.epochs is not None else 1.0
        steps = max(1, math.ceil(epochs * len(train_tok) / (o.batch * seq_len)))
    warmup = min(o.warmup, max(steps // 10, 0)) if o.warmup else 0
    trainer.set(lr=o.lr, min_lr=o.lr * o.min_lr_ratio, warmup=warmup, total_steps=steps, schedule=o.schedule,
                weight_decay=o.weight_decay, beta1=o.beta1, beta2=o.beta2, clip=o.clip)
    if not resume:
        _atomic_write(run_json, json.dumps({"data": data, "options": asdict(o), "config": config,
                                            "loomrt": _version()}, indent=2, sort_keys=True).encode())

    # 3. state (fresh or from the latest checkpoint)
    ck_root = os.path.join(out, "checkpoints")
    latest_file = os.path.join(out, "latest")
    losses: List[float] = []
    val_losses: List[Tuple[int, float]] = []
    st: Dict[str, Any] = {"step": 0, "lr_scale": 1.0, "best_val": None, "bad_evals": 0, "plateau_evals": 0,
                          "tokens": 0, "elapsed": 0.0}
    checkpoint: Optional[str] = None
    if resume and os.path.isfile(latest_file):
        with open(latest_file, encoding="utf-8") as f:
            checkpoint = os.path.join(ck_root, f.read().strip())
        load_checkpoint_weights(trainer, checkpoint, config)
        with open(os.path.join(checkpoint, "optimizer.bin"), "rb") as f:
            trainer.load_state(f.read())
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as f:
            st = json.load(f)
        trainer.set(lr_scale=st["lr_scale"])
    metrics_path = os.path.join(out, "metrics.jsonl")
    if os.path.isfile(metrics_path):  # keep the records up to the checkpoint (a resume rewrites the rest)
        kept = []
        with open(metrics_path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec["step"] <= st["step"]:
                    kept.append(line)
                    if "loss" in rec:
                        losses.append(rec["loss"])
                    if "val_loss" in rec:
                        val_losses.append((rec["step"], rec["val_loss"]))
        _atomic_write(metrics_path, "".join(kept).encode())
    unigram = unigram_loss(train_tok, val_tok, vocab) if len(val_tok) > seq_len else None

    val_windows = []
    if len(val_tok) > seq_len:
        n_win = min(o.eval_batches * o.batch, (len(val_tok) - 1) // seq_len)
        val_windows = [i * seq_len for i in range(n_win)]

    def evaluate() -> Optional[float]:
        if not val_windows:
            return None
        total, count = 0.0, 0
        for i in range(0, len(val_windows), o.batch):
            rows = np.stack([val_tok[s:s + seq_len + 1] for s in val_windows[i:i + o.batch]]).astype(np.int32)
            total += trainer.eval_loss(rows) * rows.shape[0]
            count += rows.shape[0]
        return total / count

    prompt_ids = tok.encode(o.sample_prompt, add_special_tokens=False).ids if o.sample_prompt else []
    prompt_ids = prompt_ids or [eos]
    save_every = o.save_every or o.eval_every or steps
    stop = {"flag": False}
    old_handler = None

    def on_sigint(signum: int, frame: Any) -> None:
        if stop["flag"]:  # a second Ctrl-C: stop now, without the checkpoint of the current step
            raise KeyboardInterrupt
        stop["flag"] = True  # the first: finish this step, write a checkpoint, return

    if hasattr(signal, "SIGINT"):
        try:
            old_handler = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread
            old_handler = None
    try:
        debug_nan_step = int(os.environ.get(DEBUG_NAN_ENV, "0") or 0)
    except ValueError:
        raise errors.InvalidArgumentError(f"{DEBUG_NAN_ENV} must be a step number") from None
    metrics = open(metrics_path, "a", encoding="utf-8")
    interrupted = early = False
    t_start = time.perf_counter()
    elapsed_before = float(st.get("elapsed", 0.0))
    step0 = trainer.step
    tokens_per_step = o.batch * seq_len

    def diverged(what: str) -> errors.NumericError:
        return errors.NumericError(
            f"{what}: training diverged, the run stopped. Its last good checkpoint is "
            f"{checkpoint or 'none (no step was saved yet)'}. Start again with a lower --lr (now {o.lr:g}), a longer "
            f"--warmup (now {o.warmup}) or --clip (now {o.clip:g})")

    def save() -> str:
        name = f"step_{trainer.step:07d}"
        path = os.path.join(ck_root, name)
        os.makedirs(ck_root, exist_ok=True)
        try:
            write_checkpoint(path, trainer, config, tok_json, dict(st), tokenizer_config=tok_cfg)
        except errors.NumericError as exc:
            raise diverged(str(exc)) from None
        _atomic_write(latest_file, name.encode())
        return path

    try:
        while trainer.step < steps:
            step = trainer.step + 1
            offs = batch_offsets(o.seed, step, o.batch, len(train_tok), seq_len)
            rows = np.stack([train_tok[s:s + seq_len + 1] for s in offs]).astype(np.int32)
            if step == debug_nan_step:
                w = trainer.read("out_norm")
                w[0] = np.nan
                trainer.write("out_norm", w)
            mb = o.batch // o.accum
            loss_sum = 0.0
            for i in range(o.accum):
                loss_sum += trainer.accumulate(rows[i * mb:(i + 1) * mb])
            loss = loss_sum / o.accum
            if not math.isfinite(loss):
                raise diverged(f"the loss became {loss} at step {step}")
            trainer.apply()
            if not math.isfinite(trainer.grad_norm):
                raise diverged(f"the gradient norm became {trainer.grad_norm} at step {step}")
            loss = trainer.loss
            losses.append(loss)
            st["step"] = trainer.step
            st["tokens"] += tokens_per_step
            elapsed = time.perf_counter() - t_start
            done = trainer.step - step0
            tps = done * tokens_per_step / max(elapsed, 1e-9)
            rec: Dict[str, Any] = {"step": trainer.step, "loss": loss, "lr": trainer.last_lr,
                                   "grad_norm": trainer.grad_norm, "tokens": st["tokens"],
                                   "tokens_per_s": tps, "eta_s": (steps - trainer.step) * elapsed / max(done, 1),
                                   "steps": steps}
            if o.eval_every and (trainer.step % o.eval_every == 0 or trainer.step == steps):
                v = evaluate()
                if v is not None:
                    rec["val_loss"] = v
                    val_losses.append((trainer.step, v))
                    if st["best_val"] is None or v < st["best_val"]:
                        st["best_val"] = v
                        st["bad_evals"] = st["plateau_evals"] = 0
                    else:
                        st["bad_evals"] += 1
                        st["plateau_evals"] += 1
                        if o.plateau and st["plateau_evals"] >= o.plateau:  # TinyLM's rule: halve the rate
                            st["lr_scale"] = st["lr_scale"] * 0.5
                            st["plateau_evals"] = 0
                            trainer.set(lr_scale=st["lr_scale"])
                            rec["lr_scale"] = st["lr_scale"]
                        if o.patience and st["bad_evals"] >= o.patience:
                            early = True
                _plot(os.path.join(out, "loss.png"), losses, val_losses, unigram)
            if o.sample_every and trainer.step % o.sample_every == 0:
                rec["sample"] = sample_text(trainer, tok, prompt_ids, o.sample_tokens, seq_len,
                                            o.seed + trainer.step)
            metrics.write(json.dumps({k: v for k, v in rec.items() if k not in ("eta_s", "steps")}) + "\n")
            metrics.flush()
            if callback is not None and callback(rec):
                stop["flag"] = True
            if trainer.step % save_every == 0 or trainer.step == steps or stop["flag"] or early:
                st["elapsed"] = elapsed_before + (time.perf_counter() - t_start)
                checkpoint = save()
            if stop["flag"]:
                interrupted = True
                break
            if early:
                break
    finally:
        metrics.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    _plot(os.path.join(out, "loss.png"), losses, val_losses, unigram)
    elapsed = time.perf_counter() - t_start
    return Run(dir=out, checkpoint=checkpoint, step=trainer.step, losses=losses, val_losses=val_losses,
               best_val=st["best_val"], unigram_val=unigram, interrupted=interrupted, early_stopped=early,
               stats=meta, trainer=trainer, config=config,
               tokens_per_s=(trainer.step - step0) * tokens_per_step / max(elapsed, 1e-9))


def latest_checkpoint(run_dir: str) -> str:
    """The newest checkpoint folder of a run folder (``loomrt chat RUN_DIR``)."""
    latest = os.path.join(run_dir, "latest")
    if not os.path.isfile(latest):
        raise errors.NotFoundError(f"{run_dir} has no checkpoint yet (no 'latest' file)")
    with open(latest, encoding="utf-8") as f:
        return os.path.join(run_dir, "checkpoints", f.read().strip())


def _version() -> str:
    from . import _lib
    return _lib.version()
