"""Builders for tiny test models (no network, everything in temporary folders).

Three families:

* Tiny random HuggingFace models built with ``transformers`` (llama, llama with llama3 RoPE
  scaling, mistral with a sliding window, qwen2 with q/k/v biases and tied embeddings,
  gpt2), saved with ``save_pretrained`` in float32 and bfloat16. They are the parity
  references: the in-memory ``transformers`` model is the oracle.
* A GGUF copy of a llama model's float32 weights written with the ``gguf`` package, Q/K
  rows permuted exactly as llama.cpp's ``convert_hf_to_gguf.py`` does, with a small
  byte-level BPE tokenizer in the metadata.
* Seeded models whose bytes depend only on NumPy's PCG64 stream (``np.random.default_rng``),
  never on torch: the source of pinned golden hashes (test_determinism.py) and the base
  files of the mutation tests (test_bad_input.py).
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

# ---- shared shapes ----------------------------------------------------------------------------

HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
FFN = 128
MAX_POS = 128
BOS_ID = 1
EOS_ID = 2

# 256 byte-level tokens + 8 merges (see byte_level_vocab): every HF test model uses this
# vocabulary size so that the GGUF copy can carry a complete tokenizer.
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n"), ("r", "e")]
VOCAB = 256 + len(MERGES)

ARCHS = ("llama", "llama3", "mistral", "qwen2", "gpt2")

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

# The fixed 40-token sequence the parity and determinism tests evaluate (ids < 256).
SEQ40 = [BOS_ID] + [(17 * i + 5) % 251 + 3 for i in range(39)]


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's byte -> printable character table (as in openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def byte_level_vocab(n_byte_tokens: int = 256, merges: Sequence[Tuple[str, str]] = MERGES) -> Tuple[List[str], List[str]]:
    """(tokens, merges) of a small byte-level BPE: the byte characters in byte order (the
    first ``n_byte_tokens`` of them), then one token per merge."""
    table = bytes_to_unicode()
    tokens = [table[b] for b in range(256)][:n_byte_tokens]
    merge_lines = []
    for left, right in merges:
        assert left in tokens and right in tokens, (left, right)
        tokens.append(left + right)
        merge_lines.append(f"{left} {right}")
    return tokens, merge_lines


# ---- transformers models ----------------------------------------------------------------------


def hf_config(arch: str) -> Any:
    import transformers as tf

    common = dict(vocab_size=VOCAB, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    llama_like = dict(hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                      max_position_embeddings=MAX_POS, **common)
    if arch == "llama":
        return tf.LlamaConfig(**llama_like)
    if arch == "llama3":
        return tf.LlamaConfig(rope_parameters=dict(LLAMA3_ROPE), **llama_like)
    if arch == "mistral":
        return tf.MistralConfig(sliding_window=16, **llama_like)
    if arch == "qwen2":
        return tf.Qwen2Config(tie_word_embeddings=True, **llama_like)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=MAX_POS, **common)
    raise ValueError(arch)


def build_hf_model(arch: str, seed: int = 0) -> Any:
    """A tiny random ``transformers`` model in eval mode (dropout off), float32. Every
    parameter gets seeded N(0, 0.05^2) noise so norms, biases and logits are non-trivial."""
    import torch
    import transformers as tf

    classes = {"llama": tf.LlamaForCausalLM, "llama3": tf.LlamaForCausalLM, "mistral": tf.MistralForCausalLM,
               "qwen2": tf.Qwen2ForCausalLM, "gpt2": tf.GPT2LMHeadModel}
    torch.manual_seed(seed)
    model = classes[arch](hf_config(arch)).to(torch.float32)
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):  # shared (tied) once
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.05)
    model.eval()
    return model


def load_hf_folder(folder: str, dtype: Any = None) -> Any:
    import torch
    import transformers as tf

    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32)
    model.eval()
    return model


class HFModelSet:
    """One architecture: the float32 oracle, its saved folders and the bf16 oracle."""

    def __init__(self, arch: str, root: str, seed: int = 0):
        import torch

        self.arch = arch
        self.model = build_hf_model(arch, seed)
        self.f32_dir = os.path.join(root, f"{arch}-f32")
        self.bf16_dir = os.path.join(root, f"{arch}-bf16")
        self.model.save_pretrained(self.f32_dir, safe_serialization=True)
        copy.deepcopy(self.model).to(torch.bfloat16).save_pretrained(self.bf16_dir, safe_serialization=True)
        # the bf16 weights widened back to float32 by transformers' own loader: the exact
        # function loomrt computes on a bf16 checkpoint (rotary buffers stay float32)
        self.bf16_ref = load_hf_folder(self.bf16_dir, torch.float32)

    def folder(self, dtype: str) -> str:
        return {"f32": self.f32_dir, "bf16": self.bf16_dir}[dtype]

    def reference(self, dtype: str) -> Any:
        return {"f32": self.model, "bf16": self.bf16_ref}[dtype]


def hf_logits(model: Any, ids: Sequence[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([list(ids)], dtype=torch.long)).logits[0].to(torch.float32).numpy()


def hf_greedy(model: Any, ids: Sequence[int], n: int, **extra: Any) -> List[int]:
    """HF greedy continuation of exactly n tokens: end-of-sequence detection is switched off
    (the generation config gets eos_token_id=None) so that both sides run n steps. ``extra``
    goes to GenerationConfig (e.g. repetition_penalty)."""
    import torch
    from transformers import GenerationConfig

    gc = GenerationConfig(do_sample=False, max_new_tokens=n, min_new_tokens=0, eos_token_id=None,
                          pad_token_id=0, bos_token_id=BOS_ID, num_beams=1, **extra)
    with torch.no_grad():
        out = model.generate(torch.tensor([list(ids)], dtype=torch.long),
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long), generation_config=gc)
    return [int(t) for t in out[0, len(ids):]]


# ---- GGUF -------------------------------------------------------------------------------------


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (rows of Q / K)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path: str, tensors: Dict[str, np.ndarray], cfg: Dict[str, Any],
                     tokens: Optional[List[str]] = None, merges: Optional[List[str]] = None,
                     name: str = "loomrt-test", permute: bool = True, alignment: Optional[int] = None,
                     meta_edit: Optional[Callable[[Dict[str, Any]], None]] = None,
                     tensor_edit: Optional[Callable[[Dict[str, np.ndarray]], None]] = None,
                     raw_dtypes: Optional[Dict[str, Any]] = None) -> str:
    """Write a llama GGUF from HF-named float32 tensors and an HF-style config dict.

    ``permute=False`` skips llama.cpp's Q/K row permutation (a deliberately wrong file).
    ``meta_edit(kv)`` may edit the writer's metadata dict (key -> gguf GGUFValue) and
    ``tensor_edit(ts)`` the GGUF-named arrays (dtype, shape, presence) before writing.
    ``raw_dtypes`` maps GGUF names to a ggml type whose blocks the (uint8) array holds as
    raw bytes (e.g. K-quants, which gguf-py cannot quantize)."""
    import gguf

    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    dim = cfg["hidden_size"]
    head_dim = dim // n_heads
    rope = cfg.get("rope_parameters") or {}
    w = gguf.GGUFWriter(path, "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_name(name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(dim)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_rope_dimension_count(head_dim)
    if tokens is not None:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_types([1] * len(tokens))  # all NORMAL
        w.add_token_merges(merges or [])
        w.add_bos_token_id(cfg.get("bos_token_id", BOS_ID))
        w.add_eos_token_id(cfg.get("eos_token_id", EOS_ID))
        w.add_add_bos_token(False)
    if meta_edit is not None:
        meta_edit(w.kv_data[0])

    def f32(name: str) -> np.ndarray:
        return np.ascontiguousarray(tensors[name], dtype=np.float32)

    out: Dict[str, np.ndarray] = {}
    out["token_embd.weight"] = f32("model.embed_tokens.weight")
    out["output_norm.weight"] = f32("model.norm.weight")
    out["output.weight"] = f32("lm_head.weight") if "lm_head.weight" in tensors else f32("model.embed_tokens.weight")
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        q, k = f32(p + "self_attn.q_proj.weight"), f32(p + "self_attn.k_proj.weight")
        if permute:
            q, k = llama_permute(q, n_heads), llama_permute(k, n_kv)
        out[f"blk.{l}.attn_norm.weight"] = f32(p + "input_layernorm.weight")
        out[f"blk.{l}.ffn_norm.weight"] = f32(p + "post_attention_layernorm.weight")
        out[f"blk.{l}.attn_q.weight"] = q
        out[f"blk.{l}.attn_k.weight"] = k
        out[f"blk.{l}.attn_v.weight"] = f32(p + "self_attn.v_proj.weight")
        out[f"blk.{l}.attn_output.weight"] = f32(p + "self_attn.o_proj.weight")
        out[f"blk.{l}.ffn_gate.weight"] = f32(p + "mlp.gate_proj.weight")
        out[f"blk.{l}.ffn_up.weight"] = f32(p + "mlp.up_proj.weight")
        out[f"blk.{l}.ffn_down.weight"] = f32(p + "mlp.down_proj.weight")
    if tensor_edit is not None:
        tensor_edit(out)
    for tname, arr in out.items():
        raw = (raw_dtypes or {}).get(tname)
        w.add_tensor(tname, np.ascontiguousarray(arr), raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_from_hf_folder(folder: str, path: str, permute: bool = True) -> str:
    """GGUF copy of a saved llama float32 folder, with the test tokenizer."""
    from safetensors.numpy import load_file

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    tokens, merges = byte_level_vocab()
    assert len(tokens) == cfg["vocab_size"]
    return write_llama_gguf(path, tensors, cfg, tokens, merges, permute=permute)


# ---- seeded NumPy models ----------------------------------------------------------------------

SEEDED_CONFIG: Dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
}

# Much smaller model for the mutation tests (so hundreds of corrupted copies stay cheap).
MICRO_CONFIG: Dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 48,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def llama_tensor_shapes(cfg: Dict[str, Any]) -> List[Tuple[str, Tuple[int, ...]]]:
    """HF tensor names and shapes of a llama config, in a fixed order."""
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    out: List[Tuple[str, Tuple[int, ...]]] = [("model.embed_tokens.weight", (v, d))]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (d,)), (p + "self_attn.q_proj.weight", (qd, d)),
                (p + "self_attn.k_proj.weight", (kvd, d)), (p + "self_attn.v_proj.weight", (kvd, d)),
                (p + "self_attn.o_proj.weight", (d, qd)), (p + "post_attention_layernorm.weight", (d,)),
                (p + "mlp.gate_proj.weight", (f, d)), (p + "mlp.up_proj.weight", (f, d)),
                (p + "mlp.down_proj.weight", (d, f))]
    out += [("model.norm.weight", (d,))]
    if not cfg.get("tie_word_embeddings", False):
        out += [("lm_head.weight", (v, d))]
    return out


def seeded_llama_tensors(cfg: Dict[str, Any], seed: int = 1234) -> Dict[str, np.ndarray]:
    """Weights from np.random.default_rng(seed).random() (PCG64 uniform doubles, whose
    stream NumPy keeps stable), scaled to keep activations in a healthy range: matrices
    uniform in +-sqrt(3/fan_in) (variance 1/fan_in), embeddings +-1, norm weights in
    [0.8, 1.2]. Rounded to float32 once."""
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for name, shape in llama_tensor_shapes(cfg):
        u = rng.random(shape) * 2.0 - 1.0  # float64 in [-1, 1)
        if len(shape) == 1:
            a = 1.0 + 0.2 * u
        elif name == "model.embed_tokens.weight":
            a = u
        else:
            a = u * np.sqrt(3.0 / shape[1])
        out[name] = np.ascontiguousarray(a.astype(np.float32))
    return out


def write_seeded_folder(folder: str, cfg: Dict[str, Any] = SEEDED_CONFIG, seed: int = 1234) -> str:
    """config.json (hand-written, sorted keys) + model.safetensors from seeded NumPy weights."""
    from safetensors.numpy import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(seeded_llama_tensors(cfg, seed), os.path.join(folder, "model.safetensors"))
    return folder


def write_seeded_gguf(path: str, cfg: Dict[str, Any] = MICRO_CONFIG, seed: int = 1234,
                      with_tokenizer: bool = True) -> str:
    tensors = seeded_llama_tensors(cfg, seed)
    tokens = merges = None
    if with_tokenizer:
        # byte tokens for the first bytes, then merges built from printable ones
        n_merge = 4
        n_bytes = cfg["vocab_size"] - n_merge
        tokens, merges = byte_level_vocab(n_bytes, [("#", "$"), ("%", "&"), ("#$", "%&"), ("(", ")")])
        assert len(tokens) == cfg["vocab_size"]
    return write_llama_gguf(path, tensors, cfg, tokens, merges)


# ---- raw safetensors writing (for crafting corrupt files) -------------------------------------

_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64",
              np.dtype(np.int32): "I32", np.dtype(np.float64): "F64"}


def safetensors_bytes(tensors: Dict[str, np.ndarray], header_edit: Any = None,
                      metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serialize tensors as safetensors by hand. ``header_edit(header_dict)`` may mutate the
    header (e.g. offsets, shapes, dtypes) before it is written."""
    header: Dict[str, Any] = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST_DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = dict(metadata)
    if header_edit is not None:
        header_edit(header)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    return len(hb).to_bytes(8, "little") + hb + b"".join(blobs)


def write_folder(folder: str, config: Any, st_bytes: Optional[bytes] = None) -> str:
    """A model folder from a config (dict, or str/bytes written verbatim) and safetensors bytes."""
    os.makedirs(folder, exist_ok=True)
    raw = config if isinstance(config, (bytes, str)) else json.dumps(config, indent=2)
    with open(os.path.join(folder, "config.json"), "wb") as f:
        f.write(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if st_bytes is not None:
        with open(os.path.join(folder, "model.safetensors"), "wb") as f:
            f.write(st_bytes)
    return folder


# ---- hashing ----------------------------------------------------------------------------------


def canonical_logits_bytes(a: np.ndarray) -> bytes:
    """Little-endian float32 bytes with every NaN replaced by the one quiet NaN 0x7fc00000."""
    a = np.ascontiguousarray(a, dtype="<f4")
    bits = a.view("<u4").copy()
    bits[np.isnan(a)] = 0x7FC00000
    return bits.tobytes()


def logits_sha256(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(canonical_logits_bytes(a)).hexdigest()


def tokens_sha256(ids: Sequence[int]) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(list(ids), dtype="<i4").tobytes()).hexdigest()


# ---- C helpers over the kernel sources ----------------------------------------------------------

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
KERNEL_SOURCES = ["kernels/ref.c", "kernels/avx2.c", "kernels/avx512.c", "kernels/neon.c", "kernels/wasm_simd.c",
                  "kernels/avx2_math.c", "kernels/dispatch.c", "base/convert.c", "base/math.c", "base/error.c"]


def library_sources(csrc: str = CSRC) -> List[str]:
    """The library's C files (relative to ``csrc``) as csrc/Makefile finds them: every .c file
    of the folders on its LAYERS line. The one list every test that compiles the library uses."""
    import re

    with open(os.path.join(csrc, "Makefile"), encoding="utf-8") as f:
        m = re.search(r"^LAYERS\s*=(.*)$", f.read(), re.M)
    assert m, "csrc/Makefile has no LAYERS line"
    return sorted(f"{d}/{n}" for d in m.group(1).split()
                  for n in os.listdir(os.path.join(csrc, d)) if n.endswith(".c"))


def build_c_helper(code: Optional[str], workdir: str, name: str, sources: Sequence[str] = KERNEL_SOURCES) -> Any:
    """A ctypes library compiled (cc, the project's numerics flags) from ``code`` (C that may
    include "kernels/kernels.h" and "base/base.h"; None: none) and csrc ``sources``: how the
    tests call kernel paths and internal functions directly. A build failure fails the test."""
    import ctypes
    import subprocess

    srcs = [os.path.join(CSRC, k) for k in sources]
    if code is not None:
        c = os.path.join(workdir, name + ".c")
        with open(c, "w", encoding="utf-8") as f:
            f.write(code)
        srcs.insert(0, c)
    so = os.path.join(workdir, name + ".so")
    cmd = ["cc", "-std=c11", "-O2", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared", "-I", CSRC,
           "-o", so] + srcs + ["-lpthread"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, "cannot build the C helper: " + p.stderr[-3000:]
    return ctypes.CDLL(so)


# ---- the newer families (tests/test_families.py, tests/test_matrix.py) -----------------------

FAMILY_WINDOW = 8  # sliding window, shorter than SEQ40
FAMILIES = ("qwen3", "gemma2", "gemma3", "smollm3", "olmo2", "phi3")
PHI3_ORIG_CTX = 32  # longrope: short factors below position 32, long factors from it on


def family_config(family: str, llama_cpp_compatible: bool = False) -> Any:
    """A tiny transformers config of a family (its real config scaled down) with every
    distinctive feature switched on. ``llama_cpp_compatible``: only settings llama.cpp can
    read from a GGUF and computes as transformers does (Gemma: query_pre_attn_scalar =
    head_dim; Phi-3: no sliding window, which llama.cpp switches off, and long factors equal
    to the short ones, since llama.cpp chooses between them by context size, not position)."""
    import transformers as tf

    common = dict(vocab_size=VOCAB, bos_token_id=BOS_ID, eos_token_id=EOS_ID, hidden_size=HIDDEN,
                  intermediate_size=FFN, num_hidden_layers=4, num_attention_heads=HEADS,
                  num_key_value_heads=KV_HEADS, max_position_embeddings=MAX_POS, pad_token_id=0)
    qpas = 32 if llama_cpp_compatible else 24
    if family == "qwen3":  # explicit head_dim (32) != hidden / heads (16); q/k norms
        return tf.Qwen3Config(head_dim=32, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common)
    if family == "gemma2":  # alternating sliding / global layers, soft-capping, sandwich norms
        return tf.Gemma2Config(head_dim=32, query_pre_attn_scalar=qpas, sliding_window=FAMILY_WINDOW,
                               attn_logit_softcapping=3.0, final_logit_softcapping=4.0, **common)
    if family == "gemma3":  # 5 local layers (own RoPE base), 1 global (linear scaling), q/k norms
        return tf.Gemma3TextConfig(**dict(common, num_hidden_layers=6), head_dim=32, query_pre_attn_scalar=qpas,
                                   sliding_window=FAMILY_WINDOW, rope_parameters={
                                       "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                                       "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    if family == "smollm3":  # layer 3 has no RoPE
        return tf.SmolLM3Config(no_rope_layer_interval=4, **common)
    if family == "olmo2":  # norms after attention / MLP, q/k norms over the whole projection
        return tf.Olmo2Config(**common)
    if family == "phi3":  # fused qkv / gate_up, partial rotary (0.75 of 16), longrope
        half = int(HIDDEN // HEADS * 0.75) // 2
        rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
                "original_max_position_embeddings": PHI3_ORIG_CTX,
                "short_factor": [1.0 + 0.25 * i for i in range(half)],
                "long_factor": [2.0 + 1.5 * i for i in range(half)]}
        if llama_cpp_compatible:  # llama.cpp picks one set by context size (padded to 256): make them equal
            rope["long_factor"] = list(rope["short_factor"])
        return tf.Phi3Config(rope_parameters=rope, original_max_position_embeddings=PHI3_ORIG_CTX,
                             sliding_window=None if llama_cpp_compatible else 24, **common)
    raise ValueError(family)


def build_family_model(family: str, seed: int = 0, llama_cpp_compatible: bool = False) -> Any:
    """Like build_hf_model: random init plus seeded N(0, 0.05^2) noise on every parameter."""
    import torch
    import transformers as tf

    cfg = family_config(family, llama_cpp_compatible)
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    gen = torch.Generator().manual_seed(2000 + seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.05)
    model.eval()
    return model


def hf_incremental_logits(model: Any, ids: Sequence[int]) -> np.ndarray:
    """transformers' logits fed one token at a time through its KV cache (what generate()
    computes while decoding)."""
    import torch

    out, past = [], None
    with torch.no_grad():
        for i, t in enumerate(ids):
            r = model(torch.tensor([[t]]), past_key_values=past, use_cache=True,
                      position_ids=torch.tensor([[i]]))
            past = r.past_key_values
            out.append(r.logits[0, -1].to(torch.float32).numpy())
    return np.stack(out)


def hf_greedy_cached(model: Any, ids: Sequence[int], n: int) -> List[int]:
    """Greedy decoding as generate() does it (prefill the prompt, then one token at a time
    through the KV cache), without its end-of-sequence handling: exactly n tokens."""
    import torch

    with torch.no_grad():
        r = model(torch.tensor([list(ids)]), use_cache=True)
        out: List[int] = []
        for i in range(n):
            out.append(int(r.logits[0, -1].argmax()))
            r = model(torch.tensor([[out[-1]]]), past_key_values=r.past_key_values, use_cache=True,
                      position_ids=torch.tensor([[len(ids) + i]]))
    return out


def write_family_gguf(folder: Optional[str], path: str, name: str = "loomrt-family-test",
                      cfg: Optional[Dict[str, Any]] = None, tensors: Optional[Dict[str, np.ndarray]] = None,
                      matrix_dtype: Any = np.float32) -> str:
    """GGUF copy of a saved float32 family folder (or of ``cfg`` + HF-named ``tensors``) with
    llama.cpp's tensor names and metadata (as its convert_hf_to_gguf.py writes them) and the
    test tokenizer (padded with unused tokens to the vocabulary size). ``matrix_dtype``:
    np.float16 writes the matrices as F16 (benchmarks/families.py), "q8_0" as gguf-py's Q8_0."""
    import gguf
    from safetensors.numpy import load_file

    if folder is not None:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        tensors = load_file(os.path.join(folder, "model.safetensors"))
    assert cfg is not None and tensors is not None
    t = tensors
    mt = cfg["model_type"]
    arch = {"gemma3_text": "gemma3"}.get(mt, mt)
    L, d, nh, nkv = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // nh
    # rope settings in either style: transformers 5's rope_parameters, or the older top-level
    # rope_theta / rope_scaling / partial_rotary_factor / rope_local_base_freq
    rope = dict(cfg.get("rope_parameters") or {})
    if arch == "gemma3" and "full_attention" not in rope:
        full = dict(cfg.get("rope_scaling") or {"rope_type": "default"}, rope_theta=cfg.get("rope_theta", 1e6))
        rope = {"full_attention": full, "sliding_attention": {"rope_theta": cfg.get("rope_local_base_freq", 1e4)}}
    if arch != "gemma3":
        rope.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
        rope.update(cfg.get("rope_scaling") or {})
        if "type" in rope:
            rope["rope_type"] = rope.pop("type")
        rope.setdefault("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
        if "original_max_position_embeddings" in cfg:
            rope.setdefault("original_max_position_embeddings", cfg["original_max_position_embeddings"])
    gemma = arch in ("gemma2", "gemma3")
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(d)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    if arch == "gemma3":
        w.add_rope_freq_base(float(rope["full_attention"]["rope_theta"]))
        w.add_rope_freq_base_swa(float(rope["sliding_attention"]["rope_theta"]))
        if rope["full_attention"].get("rope_type") == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(rope["full_attention"]["factor"]))
    else:
        w.add_rope_freq_base(float(rope["rope_theta"]))
    rd = int(hd * rope.get("partial_rotary_factor", 1.0))
    w.add_rope_dimension_count(rd)
    if gemma:
        w.add_sliding_window(cfg["sliding_window"])
        if arch == "gemma2":
            w.add_attn_logit_softcapping(float(cfg["attn_logit_softcapping"]))
            w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))
        if cfg["query_pre_attn_scalar"] != hd:  # llama.cpp assumes head_dim; loomrt reads attention.scale
            w.add_attention_scale(float(cfg["query_pre_attn_scalar"]) ** -0.5)
    if arch == "phi3":
        if cfg.get("sliding_window"):
            w.add_sliding_window(cfg["sliding_window"])
        if rope.get("rope_type") in ("longrope", "su"):
            orig = rope["original_max_position_embeddings"]
            scale = cfg["max_position_embeddings"] / orig
            w.add_rope_scaling_attn_factors(float(np.sqrt(1 + np.log(scale) / np.log(orig))) if scale > 1 else 1.0)
            w.add_rope_scaling_orig_ctx_len(orig)
    tokens, merges = byte_level_vocab()
    types = [1] * len(tokens)
    if cfg["vocab_size"] > len(tokens):  # UNUSED (5) filler tokens
        types += [5] * (cfg["vocab_size"] - len(tokens))
        tokens = tokens + [f"<unused{i}>" for i in range(cfg["vocab_size"] - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(False)

    def f32(n: str) -> np.ndarray:
        a = t[n]
        dt = matrix_dtype if a.ndim == 2 and matrix_dtype != "q8_0" else np.float32
        return np.ascontiguousarray(a, dtype=dt)

    def norm(n: str) -> np.ndarray:  # llama.cpp's converter stores Gemma norms as 1 + w
        return f32(n) + np.float32(1.0) if gemma else f32(n)

    out: Dict[str, np.ndarray] = {"token_embd.weight": f32("model.embed_tokens.weight"),
                                  "output_norm.weight": norm("model.norm.weight")}
    if "lm_head.weight" in t:
        out["output.weight"] = f32("lm_head.weight")
    if arch == "phi3" and rope.get("rope_type") in ("longrope", "su"):
        out["rope_factors_short.weight"] = np.asarray(rope["short_factor"], dtype=np.float32)
        out["rope_factors_long.weight"] = np.asarray(rope["long_factor"], dtype=np.float32)
    for l in range(L):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        if arch == "phi3":
            out[b + "attn_qkv.weight"] = f32(p + "self_attn.qkv_proj.weight")
            out[b + "ffn_up.weight"] = f32(p + "mlp.gate_up_proj.weight")
        else:
            q, k = f32(p + "self_attn.q_proj.weight"), f32(p + "self_attn.k_proj.weight")
            if arch == "smollm3":  # converted by llama.cpp's LlamaModel: Q/K rows permuted
                q, k = llama_permute(q, nh), llama_permute(k, nkv)
            out[b + "attn_q.weight"], out[b + "attn_k.weight"] = q, k
            out[b + "attn_v.weight"] = f32(p + "self_attn.v_proj.weight")
            out[b + "ffn_gate.weight"] = f32(p + "mlp.gate_proj.weight")
            out[b + "ffn_up.weight"] = f32(p + "mlp.up_proj.weight")
        out[b + "attn_output.weight"] = f32(p + "self_attn.o_proj.weight")
        out[b + "ffn_down.weight"] = f32(p + "mlp.down_proj.weight")
        if p + "self_attn.q_norm.weight" in t:
            out[b + "attn_q_norm.weight"] = norm(p + "self_attn.q_norm.weight")
            out[b + "attn_k_norm.weight"] = norm(p + "self_attn.k_norm.weight")
        if gemma:
            out[b + "attn_norm.weight"] = norm(p + "input_layernorm.weight")
            out[b + "post_attention_norm.weight"] = norm(p + "post_attention_layernorm.weight")
            out[b + "ffn_norm.weight"] = norm(p + "pre_feedforward_layernorm.weight")
            out[b + "post_ffw_norm.weight"] = norm(p + "post_feedforward_layernorm.weight")
        elif arch == "olmo2":
            out[b + "post_attention_norm.weight"] = f32(p + "post_attention_layernorm.weight")
            out[b + "post_ffw_norm.weight"] = f32(p + "post_feedforward_layernorm.weight")
        else:
            out[b + "attn_norm.weight"] = f32(p + "input_layernorm.weight")
            out[b + "ffn_norm.weight"] = f32(p + "post_attention_layernorm.weight")
    for tname, arr in out.items():
        if matrix_dtype == "q8_0" and arr.ndim == 2:  # gguf-py's Q8_0 blocks, stored raw
            q = gguf.quants.quantize(np.ascontiguousarray(arr, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(tname, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(tname, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# ---- seeded family models (golden hashes; no torch) --------------------------------------------

def _seeded_common(arch: str, model_type: str, **extra: Any) -> Dict[str, Any]:
    cfg = {"architectures": [arch], "model_type": model_type, "vocab_size": VOCAB, "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID,
           "pad_token_id": 0}
    cfg.update(extra)
    return cfg


# Hand-written config.json files in the older (transformers 4.x) style the published models
# carry: rope_theta / rope_scaling at the top level, Gemma 3's rope_local_base_freq and
# sliding_window_pattern, Phi-3's top-level partial_rotary_factor and longrope rope_scaling.
SEEDED_FAMILY_CONFIGS: Dict[str, Dict[str, Any]] = {
    "qwen3": _seeded_common("Qwen3ForCausalLM", "qwen3", head_dim=32, rope_theta=1000000.0, hidden_act="silu",
                            attention_bias=False, use_sliding_window=False, sliding_window=None,
                            max_window_layers=28, tie_word_embeddings=False),
    "gemma2": _seeded_common("Gemma2ForCausalLM", "gemma2", head_dim=32, query_pre_attn_scalar=24,
                             hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh",
                             attn_logit_softcapping=3.0, final_logit_softcapping=4.0, sliding_window=8,
                             rope_theta=10000.0, cache_implementation="hybrid"),
    "gemma3": _seeded_common("Gemma3ForCausalLM", "gemma3_text", num_hidden_layers=6, head_dim=32,
                             query_pre_attn_scalar=24, hidden_activation="gelu_pytorch_tanh", sliding_window=8,
                             sliding_window_pattern=6, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                             rope_scaling={"rope_type": "linear", "factor": 8.0}, attn_logit_softcapping=None,
                             final_logit_softcapping=None),
    "smollm3": _seeded_common("SmolLM3ForCausalLM", "smollm3", rope_theta=5000000.0, hidden_act="silu",
                              no_rope_layers=[1, 1, 1, 0], no_rope_layer_interval=4, use_sliding_window=False,
                              sliding_window=None, tie_word_embeddings=True),
    "olmo2": _seeded_common("Olmo2ForCausalLM", "olmo2", rope_theta=500000.0, hidden_act="silu",
                            attention_bias=False, tie_word_embeddings=False),
    "phi3": _seeded_common("Phi3ForCausalLM", "phi3", rope_theta=10000.0, hidden_act="silu", partial_rotary_factor=0.75,
                           original_max_position_embeddings=32, sliding_window=24, tie_word_embeddings=False,
                           rope_scaling={"type": "longrope", "short_factor": [1.0, 1.25, 1.5, 1.75, 2.0, 2.25],
                                         "long_factor": [2.0, 3.5, 5.0, 6.5, 8.0, 9.5]}),
}


def family_tensor_shapes(family: str, cfg: Dict[str, Any]) -> List[Tuple[str, Tuple[int, ...]]]:
    """HF tensor names and shapes of a family's config, in a fixed order."""
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    out: List[Tuple[str, Tuple[int, ...]]] = [("model.embed_tokens.weight", (v, d))]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        if family == "phi3":
            out += [(p + "self_attn.qkv_proj.weight", (qd + 2 * kvd, d)), (p + "mlp.gate_up_proj.weight", (2 * f, d))]
        else:
            out += [(p + "self_attn.q_proj.weight", (qd, d)), (p + "self_attn.k_proj.weight", (kvd, d)),
                    (p + "self_attn.v_proj.weight", (kvd, d)), (p + "mlp.gate_proj.weight", (f, d)),
                    (p + "mlp.up_proj.weight", (f, d))]
        out += [(p + "self_attn.o_proj.weight", (d, qd)), (p + "mlp.down_proj.weight", (d, f))]
        if family != "olmo2":
            out += [(p + "input_layernorm.weight", (d,))]
        out += [(p + "post_attention_layernorm.weight", (d,))]
        if family in ("gemma2", "gemma3"):
            out += [(p + "pre_feedforward_layernorm.weight", (d,)), (p + "post_feedforward_layernorm.weight", (d,))]
        if family == "olmo2":
            out += [(p + "post_feedforward_layernorm.weight", (d,)), (p + "self_attn.q_norm.weight", (qd,)),
                    (p + "self_attn.k_norm.weight", (kvd,))]
        if family in ("qwen3", "gemma3"):
            out += [(p + "self_attn.q_norm.weight", (hd,)), (p + "self_attn.k_norm.weight", (hd,))]
    out += [("model.norm.weight", (d,))]
    if not cfg.get("tie_word_embeddings", family in ("gemma2", "gemma3", "smollm3")):
        out += [("lm_head.weight", (v, d))]
    return out


def write_seeded_family_folder(folder: str, family: str, seed: int = 4321) -> str:
    """config.json + model.safetensors of a family from NumPy's PCG64 stream, scaled as
    seeded_llama_tensors does (Gemma's norm weights, used as 1 + w, are 0.2 u)."""
    from safetensors.numpy import save_file

    cfg = SEEDED_FAMILY_CONFIGS[family]
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for name, shape in family_tensor_shapes(family, cfg):
        u = rng.random(shape) * 2.0 - 1.0
        if len(shape) == 1:
            a = 0.2 * u if family in ("gemma2", "gemma3") else 1.0 + 0.2 * u
        elif name == "model.embed_tokens.weight":
            a = u / 8.0 if family in ("gemma2", "gemma3") else u  # Gemma multiplies by sqrt(64)
        else:
            a = u * np.sqrt(3.0 / shape[1])
        out[name] = np.ascontiguousarray(a.astype(np.float32))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(out, os.path.join(folder, "model.safetensors"))
    return folder


# Golden hashes of the seeded family models (write_seeded_family_folder; the GGUF copy gives the
# same): tests/test_determinism.py (through Python) and tests/test_matrix.py (the C driver on
# every build). They change only with LRT_NUMERICS_VERSION.
FAMILY_GOLDEN: Dict[str, Dict[str, str]] = {
    "qwen3": {
        "logits": "cd75c86ccd338113c938255a27253a6f649ccdfe4ceb18dfbeda65090674b611",
        "greedy ids": "38e4927c5e3a94d2083ec259bd2cbebfdeb1117b128f7be13f7677d5173c76cf",
        "greedy logits": "b5149349af4a3e0eaa2d0e62196f9f1409caddaf5f50cf71798d34a4c11e22be",
        "sampled ids": "75a6bf27afc4cf6188d5e2917aca1e3906ab508e555a2491a65deb24580dd7d3",
        "sampled logits": "9d05ba10ff5845e03688e625421fe793c042fffaf602124198e4b5a0269225b2",
    },
    "gemma2": {
        "logits": "ffd2b1c1ece2db0e021419d286e9c7c822d7ad7015f213bace558c326b7734f2",
        "greedy ids": "28f16d5be1298a2f206985d1991fa8282eb1397619e822003d5a5ea312792aa3",
        "greedy logits": "c2c144b808110ff64b0bad6df34090c7d032390671c32541e715f38eb681361d",
        "sampled ids": "32068365767330d694966eac6771df229a5ec842353464a39ddff47cead38000",
        "sampled logits": "466574d29fd3318dd7fe6b13e475050e59e1822ba96f11d630d8c68efd97d471",
    },
    "gemma3": {
        "logits": "44a6b434b56647f266521c6795ff57197a53aef7345dfc4255094673f64bd939",
        "greedy ids": "1f072ad4515ca8fd98f6bfa20bc58f45a39c1bee522c9e240c0b2eb89b66f5c2",
        "greedy logits": "cb81fb2e6cb95c32d760560b97823174c63a8b9bf6681bffefe59e72d62c5764",
        "sampled ids": "f07fb5a44412c241564682bbb225cfa94af28dbef4136e1f143cc51c3acbb2fe",
        "sampled logits": "834b9e5116178cf9f58b2769de211b1a4700477a4ef54bca72fabd2e364819ed",
    },
    "smollm3": {
        "logits": "4e5b85e86e93422fd2f31268e293bd8defc1ca217b85307bac07b27499d47645",
        "greedy ids": "e5880c4ee88905a7a9fd7eb65432073c772c77d0e466f8c140a6295cd776ade5",
        "greedy logits": "3864c5f3bacb8716e32496c2c814f562f0e77132341f042c5db376e822037278",
        "sampled ids": "996281fd804e7b938a68f2e8a29571ad7df08c92b962f771951009cfc02944c5",
        "sampled logits": "0c25ecb3d7e3708a2169d01116a0142bbf017bec6ec90e0f789c58687840b4d3",
    },
    "olmo2": {
        "logits": "265fe42a47891a79391a0604f445bce7aae211b3592d2f31ab16d1ddffee324e",
        "greedy ids": "78570e949e7337602d216df74f06d483bfb650d07798ed5aa6001f7925368860",
        "greedy logits": "f2f963580be7b474423d5c22d1da818e03714952683aac5e054dad014f3776e5",
        "sampled ids": "01200ec672dca2cb58e3ff75dbf926d629dfeb06ab56fc743b43dd60c7c72da9",
        "sampled logits": "fedb217b758e90e5979c3655dfaedd265f94d08601b0a2e3e2276b8eab7ab71b",
    },
    "phi3": {
        "logits": "6acb024233792b6c22bc74481f70d15a35834ab07c197eee84bddaf4693b43bd",
        "greedy ids": "dc90877533f6df5e82b13fa42143abd37f414595a713cd81cb4862f8a4e66773",
        "greedy logits": "412ca3928b3e804bb71a949f045c0579c2e699ac358ffda76923ed5f3bc90b9e",
        "sampled ids": "f285740851f7a662750105ded9fa94eec10ce8b24e69644743a08c46cf8714e1",
        "sampled logits": "b25b455a2497d71cb2ae4fab76b6ec48e1eb335525389795f15d0f8da5a2593e",
    },
}
