"""Seeded corruption of model files, and the child process that tries to load them.

The parent test (test_bad_input.py) starts this file as a script on a batch of cases:

    python fuzz_child.py KIND BASE WORKDIR START COUNT

KIND is "safetensors", "gguf", "config" or "layout"; BASE is the valid model (a folder for
safetensors/config, a .gguf file for gguf and layout). "layout" cases are files that are wrong
but parse (issue 11): layers the header does not count (GGUF block_count, config.json
num_hidden_layers), a GGUF tensor retyped in place, moved tensor extents (overlaps, holes),
bytes inserted into or appended to the data section; every one of them must be refused. For each case i in [START, START + COUNT) the
child derives the corrupted bytes from random.Random(f"{KIND}:{i}") (stable across Python
versions and machines), writes them under WORKDIR (before loading, so the file that crashed a
child is still there afterwards), then runs loomrt.load + one logits eval and, when those succeed, one greedy and one
sampled step (the token must lie in the vocabulary and among the sampler's candidates),
and prints one line, flushed:

    "<i> ok"                     loaded and evaluated
    "<i> loomrt <ClassName>"     raised a loomrt.LoomrtError subclass
    "<i> other <ClassName> <message>"   raised anything else, or sampling after a successful
                                        load failed or gave a bad token (a bug)

A child killed by a signal or hanging is a bug too: the parent reports the first case with no
line.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import struct
import sys
from typing import Any, List

KINDS = ("safetensors", "gguf", "config", "layout")

INTERESTING_U64 = [0, 1, 2, 3, 7, 8, 31, 32, 33, 255, 256, 4095, 4096, 65535, 65536, 2**31 - 1, 2**31,
                   2**32 - 1, 2**32, 2**40, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64 - 8]
INTERESTING_U32 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 30, 31, 255, 2**16, 2**31 - 1, 2**31,
                   2**32 - 1]


# ---- byte-level mutations ---------------------------------------------------------------------


def _pos(rng: random.Random, n: int, hot: int) -> int:
    """A position, biased (3 in 4) towards the first `hot` bytes (the header)."""
    if n == 0:
        return 0
    if hot > 0 and rng.random() < 0.75:
        return rng.randrange(min(hot, n))
    return rng.randrange(n)


def mutate_bytes(data: bytes, rng: random.Random, hot: int) -> bytes:
    b = bytearray(data)
    op = rng.randrange(9)
    n = len(b)
    if op == 0:  # flip 1..8 bits
        for _ in range(rng.randint(1, 8)):
            p = _pos(rng, n, hot)
            b[p] ^= 1 << rng.randrange(8)
    elif op == 1:  # random bytes
        for _ in range(rng.randint(1, 4)):
            b[_pos(rng, n, hot)] = rng.randrange(256)
    elif op == 2:  # truncate
        del b[rng.randrange(n):]
    elif op == 3:  # insert random bytes
        p = _pos(rng, n, hot)
        b[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 4:  # delete a range
        p = _pos(rng, n, hot)
        del b[p:p + rng.randint(1, 32)]
    elif op == 5:  # overwrite a u64 with an interesting value
        p = _pos(rng, max(n - 8, 1), hot)
        b[p:p + 8] = struct.pack("<Q", rng.choice(INTERESTING_U64))
    elif op == 6:  # overwrite a u32 with an interesting value
        p = _pos(rng, max(n - 4, 1), hot)
        b[p:p + 4] = struct.pack("<I", rng.choice(INTERESTING_U32))
    elif op == 7:  # duplicate a chunk
        p = _pos(rng, n, hot)
        q = _pos(rng, n, hot)
        b[q:q] = b[p:p + rng.randint(1, 64)]
    else:  # swap two chunks of equal length
        k = rng.randint(1, 16)
        p, q = _pos(rng, max(n - k, 1), hot), _pos(rng, max(n - k, 1), hot)
        b[p:p + k], b[q:q + k] = b[q:q + k], b[p:p + k]
    return bytes(b)


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    hlen = struct.unpack("<Q", data[:8])[0]
    r = rng.random()
    if r < 0.2:  # header-length rewrite
        v = rng.choice(INTERESTING_U64 + [hlen - 1, hlen + 1, hlen + 8, len(data), len(data) - 8, hlen // 2])
        return struct.pack("<Q", v % 2**64) + data[8:]
    if r < 0.45:  # structured edit of the JSON header
        try:
            header = json.loads(data[8:8 + hlen])
        except ValueError:
            return mutate_bytes(data, rng, 8 + hlen)
        names = sorted(k for k in header if k != "__metadata__")
        t = header[rng.choice(names)]
        field = rng.choice(["dtype", "shape", "data_offsets", "extra", "del", "name"])
        if field == "dtype":
            t["dtype"] = rng.choice(["F16", "BF16", "I64", "I8", "U8", "F64", "BOOL", "F8_E4M3", "F4", "Q4", "", 3])
        elif field == "shape":
            s = list(t["shape"])
            choice = rng.randrange(5)
            if choice == 0 and s:
                s[rng.randrange(len(s))] = rng.choice([0, 1, -1, 2**31, 2**62, 2**64, 1.5, "4"])
            elif choice == 1:
                s.append(1)
            elif choice == 2:
                s = s[::-1]
            elif choice == 3:
                s = s[:-1]
            else:
                s = [int(x) * 2 for x in s]
            t["shape"] = s
        elif field == "data_offsets":
            o = list(t["data_offsets"])
            i = rng.randrange(2)
            o[i] = rng.choice([0, o[i] + 1, o[i] - 1, o[1 - i], 2**63, 2**64, -4, len(data), 1e300, None])
            t["data_offsets"] = o
        elif field == "extra":
            t["extra"] = 1
        elif field == "del":
            del t[rng.choice(["dtype", "shape", "data_offsets"])]
        else:
            header[rng.choice(names) + rng.choice(["", "x", "\u0000", "\u00e9"])] = dict(t)
        hb = json.dumps(header).encode()
        if len(hb) <= hlen and rng.random() < 0.5:  # same length: the data section stays in place
            hb = hb.ljust(hlen, b" ")
        return struct.pack("<Q", len(hb)) + hb + data[8 + hlen:]
    return mutate_bytes(data, rng, 8 + hlen)


def mutate_gguf(data: bytes, rng: random.Random, data_start: int) -> bytes:
    r = rng.random()
    if r < 0.15:  # rewrite a header count (tensor_count @8, kv_count @16) or the version @4
        where = rng.choice([4, 8, 16])
        if where == 4:
            return data[:4] + struct.pack("<I", rng.choice(INTERESTING_U32)) + data[8:]
        return data[:where] + struct.pack("<Q", rng.choice(INTERESTING_U64)) + data[where + 8:]
    return mutate_bytes(data, rng, data_start)


def _gguf_weird_value(rng: random.Random) -> Any:
    from gguf import GGUFValueType as T
    from gguf.gguf_writer import GGUFValue as V

    return rng.choice([
        V("x", T.STRING), V("", T.STRING), V(2**32 - 1, T.UINT32), V(0, T.UINT32), V(3, T.UINT32), V(-1, T.INT32),
        V(float("nan"), T.FLOAT32), V(float("inf"), T.FLOAT32), V(-0.5, T.FLOAT32), V(True, T.BOOL),
        V([1, 2], T.ARRAY, T.INT32), V([""], T.ARRAY, T.STRING), V(["a", "b"], T.ARRAY, T.STRING),
        V(2**64 - 1, T.UINT64), V(2**63, T.UINT64), V(-2**63, T.INT64), V(1e300, T.FLOAT64), V(255, T.UINT8),
        V(-128, T.INT8), V(65535, T.UINT16), V(-1, T.INT16), V([1.5, float("nan")], T.ARRAY, T.FLOAT32),
        V([True], T.ARRAY, T.BOOL), V([2**64 - 1], T.ARRAY, T.UINT64)])


def _edit_gguf_meta(kv: dict, rng: random.Random) -> None:
    from gguf import GGUFValueType as T
    from gguf.gguf_writer import GGUFValue as V

    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        keys = sorted(kv)
        if op == 0:  # any key gets a value of another type
            kv[rng.choice(keys)] = _gguf_weird_value(rng)
        elif op == 1:
            del kv[rng.choice(keys)]
        elif op == 2:  # token list edits
            toks = list(kv["tokenizer.ggml.tokens"].value) if "tokenizer.ggml.tokens" in kv else ["a"]
            c = rng.randrange(6)
            if c == 0 and len(toks) > 1:
                toks[rng.randrange(len(toks))] = toks[rng.randrange(len(toks))]  # maybe a duplicate
            elif c == 1:
                toks[rng.randrange(len(toks))] = rng.choice(["", " ", "\u0000", "\u2581x", "<|im_end|>", "\U0001f600"])
            elif c == 2:
                toks = toks[:rng.randrange(len(toks) + 1)]
            elif c == 3:
                toks = toks + [f"extra{i}" for i in range(rng.randint(1, 300))]
            elif c == 4:
                rng.shuffle(toks)
            else:
                toks = toks[:1]
            kv["tokenizer.ggml.tokens"] = V(toks, T.ARRAY, T.STRING)
        elif op == 3:  # merges edits
            merges = list(kv["tokenizer.ggml.merges"].value) if "tokenizer.ggml.merges" in kv else []
            merges.insert(rng.randrange(len(merges) + 1),
                          rng.choice(["#$ %&", "a b", "ab", " x", "x ", "# $ %", "#$", "", "\u0000 \u0000"]))
            kv["tokenizer.ggml.merges"] = V(merges, T.ARRAY, T.STRING)
        elif op == 4:  # token types
            n = len(kv["tokenizer.ggml.tokens"].value) if "tokenizer.ggml.tokens" in kv else 4
            types = [rng.choice([1, 1, 1, 2, 3, 4, 5, 6, 0, 99, -1]) for _ in range(rng.choice([n, n - 1, n + 5, 1]))]
            kv["tokenizer.ggml.token_type"] = V(types, T.ARRAY, T.INT32)
        elif op == 5:  # tokenizer choices
            key, values = rng.choice([
                ("tokenizer.ggml.model", ["llama", "bert", "", "gpt2", "rwkv"]),
                ("tokenizer.ggml.pre", ["qwen2", "llama-bpe", "nope", "", "gpt-2"]),
                ("tokenizer.ggml.bos_token_id", [10**6, 47, 48, 0]),
                ("tokenizer.ggml.eos_token_id", [10**6, 47, 48, 0]),
                ("tokenizer.ggml.eot_token_id", [10**6, 47, 48, 0]),
                ("tokenizer.chat_template", ["{{ messages[0]['content'] }}", "{% if %}", ""]),
                ("tokenizer.ggml.add_bos_token", [True, False]),
                ("tokenizer.ggml.add_eos_token", [True, False]),
                ("tokenizer.ggml.scores", [[0.0] * 8, [float("nan")] * 48])])
            v = rng.choice(values)
            if isinstance(v, str):
                kv[key] = V(v, T.STRING)
            elif isinstance(v, bool):
                kv[key] = V(v, T.BOOL)
            elif isinstance(v, list):
                kv[key] = V(v, T.ARRAY, T.FLOAT32)
            else:
                kv[key] = V(v, T.UINT32)
        elif op == 6:  # model hyper-parameters
            key, values = rng.choice([
                ("llama.attention.key_length", [2, 3, 4, 8, 0]), ("llama.attention.value_length", [4, 8]),
                ("llama.rope.dimension_count", [2, 3, 4, 5]), ("llama.attention.head_count_kv", [0, 1, 3, 4, 8]),
                ("llama.attention.head_count", [0, 1, 2, 3, 8]), ("llama.context_length", [0, 1, 2, 2**40, 2**63]),
                ("llama.block_count", [0, 2, 4096]), ("llama.embedding_length", [0, 8, 32]),
                ("llama.feed_forward_length", [0, 16, 64]), ("llama.expert_count", [4]),
                ("general.architecture", ["qwen2", "gpt2", "mistral", "llama4"])])
            v = rng.choice(values)
            kv[key] = V(v, T.STRING) if isinstance(v, str) else V(v, T.UINT64 if v >= 2**32 else T.UINT32)
        else:  # rope variants
            key, v, t = rng.choice([
                ("llama.rope.scaling.type", "linear", T.STRING), ("llama.rope.scaling.type", "none", T.STRING),
                ("llama.rope.scaling.factor", 8.0, T.FLOAT32), ("llama.rope.freq_base", 0.0, T.FLOAT32),
                ("llama.rope.freq_base", float("nan"), T.FLOAT32), ("llama.rope.freq_base", 1e30, T.FLOAT32),
                ("llama.attention.layer_norm_rms_epsilon", -1.0, T.FLOAT32),
                ("llama.attention.layer_norm_rms_epsilon", 0.0, T.FLOAT32),
                ("llama.attention.layer_norm_rms_epsilon", 1e-5, T.FLOAT64)])
            kv[key] = V(v, t)


def _edit_gguf_tensors(ts: dict, rng: random.Random) -> None:
    import numpy as np

    names = sorted(ts)
    n = rng.choice(names)
    op = rng.randrange(8)
    if op == 0:
        ts[n] = ts[n].astype(np.float16)
    elif op == 1:
        ts[n] = ts[n].astype(np.int32)
    elif op == 2:
        del ts[n]
    elif op == 3 and ts[n].ndim == 2:
        ts[n] = np.ascontiguousarray(ts[n].T)
    elif op == 4:
        half = rng.choice([2, 3, 4])
        ts["rope_freqs.weight"] = np.ones(half, dtype=rng.choice([np.float32, np.float16]))
    elif op == 5:
        ts[n] = ts[n].reshape((1,) + ts[n].shape)
    elif op == 6:
        ts[n] = np.full_like(ts[n], rng.choice([np.nan, np.inf, -np.inf, 0.0, 1e38]))
    else:
        ts[n] = ts[n][: max(1, ts[n].shape[0] // 2)]


def gguf_structured_case(path: str, rng: random.Random) -> None:
    """Re-write the micro GGUF with the gguf package, editing metadata and tensors."""
    import logging

    import models

    logging.getLogger("gguf").setLevel(logging.ERROR)  # "duplicated key" warnings
    cfg = dict(models.MICRO_CONFIG)
    tensors = models.seeded_llama_tensors(cfg)
    tokens, merges = models.byte_level_vocab(cfg["vocab_size"] - 4, [("#", "$"), ("%", "&"), ("#$", "%&"), ("(", ")")])
    edit_meta = rng.random() < 0.7
    edit_tensors = not edit_meta or rng.random() < 0.3
    alignment = rng.choice([None, None, None, 1, 8, 64])
    models.write_llama_gguf(path, tensors, cfg, tokens, merges, alignment=alignment,
                            meta_edit=(lambda kv: _edit_gguf_meta(kv, rng)) if edit_meta else None,
                            tensor_edit=(lambda ts: _edit_gguf_tensors(ts, rng)) if edit_tensors else None)


# ---- config.json mutations --------------------------------------------------------------------

_WEIRD_VALUES: List[Any] = [None, True, False, 0, -1, 1, 2, 3, 7, 1.5, 64.0, 1e308, -1e308, 2**31, 2**63 - 1,
                            2**63, 2**64, 10**30, "", "silu", "llama", "64", [], [1, 2], {}, {"rope_type": "llama3"},
                            {"rope_type": "default"}, {"rope_type": "yarn", "factor": 2.0}, 1e-300, -0.0]
_RAW_NUMBERS = ["1e400", "-1e400", "123456789012345678901234567890", "1.0e-400", "-0", "0.5e1", "1E2"]


def _mutate_value(rng: random.Random, v: Any) -> Any:
    if isinstance(v, dict) and v and rng.random() < 0.5:
        v = dict(v)
        k = rng.choice(sorted(v))
        if rng.random() < 0.3:
            del v[k]
        else:
            v[k] = _mutate_value(rng, v[k])
        return v
    if isinstance(v, list) and v and rng.random() < 0.5:
        v = list(v)
        v[rng.randrange(len(v))] = rng.choice(_WEIRD_VALUES)
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and rng.random() < 0.5:
        return rng.choice([v * 2, v + 1, v - 1, -v, v // 2 if isinstance(v, int) else v / 2, str(v), [v]])
    return rng.choice(_WEIRD_VALUES)


def mutate_config(text: bytes, rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.25:
        return mutate_bytes(text, rng, len(text))
    cfg = json.loads(text)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        keys = sorted(cfg)
        if op == 0 and keys:
            del cfg[rng.choice(keys)]
        elif op in (1, 2) and keys:
            k = rng.choice(keys)
            cfg[k] = _mutate_value(rng, cfg[k])
        elif op == 3:
            cfg[rng.choice(["rope_scaling", "rope_parameters", "head_dim", "sliding_window", "attention_bias",
                            "mlp_bias", "layer_types", "use_sliding_window", "quantization_config",
                            "rope_theta", "tie_word_embeddings", "eos_token_id", "n_embd", "frobnicate"])] = \
                rng.choice(_WEIRD_VALUES)
        elif op == 4:
            cfg["model_type"] = rng.choice(["mistral", "qwen2", "gpt2", "llama", "bert", "", None, 3])
            if rng.random() < 0.5:
                cfg["architectures"] = rng.choice([["MistralForCausalLM"], ["Qwen2ForCausalLM"], ["GPT2LMHeadModel"],
                                                   [], "LlamaForCausalLM", [3], None])
        else:  # a number JSON can spell but a double cannot hold (or only inexactly)
            k = rng.choice(keys) if keys else "vocab_size"
            cfg[k] = "__RAW__"
            return json.dumps(cfg).replace('"__RAW__"', rng.choice(_RAW_NUMBERS), 1).encode()
    return json.dumps(cfg, indent=rng.choice([None, 2]), ensure_ascii=rng.random() < 0.5).encode("utf-8")


# ---- GGUF layout (for in-place edits of tensor infos) -------------------------------------------

# ggml type id -> (elements per block, bytes per block), for the types the tests write
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
               12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}
_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_layout(data: bytes) -> dict:
    """Parse a (valid) GGUF header by hand: {"alignment", "data_start", "tensors": [...]}, each
    tensor a dict with name, ne, type, offset and the byte positions of its type and offset
    fields (type_at, offset_at), so that a test can patch one field in place."""
    pos = 4 + 4
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16

    def string(p: int) -> tuple:
        n = struct.unpack_from("<Q", data, p)[0]
        return data[p + 8:p + 8 + n].decode("utf-8"), p + 8 + n

    def value(t: int, p: int) -> tuple:
        if t == 8:
            return string(p)
        if t == 9:
            et, count = struct.unpack_from("<IQ", data, p)
            p += 12
            for _ in range(count):
                _, p = value(et, p)
            return None, p
        size = _GGUF_SCALAR[t]
        return int.from_bytes(data[p:p + size], "little"), p + size

    alignment = 32
    for _ in range(n_kv):
        key, pos = string(pos)
        t = struct.unpack_from("<I", data, pos)[0]
        v, pos = value(t, pos + 4)
        if key == "general.alignment":
            alignment = int(v)
    tensors = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        n_dims = struct.unpack_from("<I", data, pos)[0]
        ne = list(struct.unpack_from(f"<{n_dims}Q", data, pos + 4))
        pos += 4 + 8 * n_dims
        gtype, offset = struct.unpack_from("<IQ", data, pos)
        tensors.append(dict(name=name, ne=ne, type=gtype, offset=offset, type_at=pos, offset_at=pos + 4))
        pos += 12
    data_start = (pos + alignment - 1) // alignment * alignment
    return dict(alignment=alignment, data_start=data_start, tensors=tensors)


def gguf_nbytes(ne: List[int], gtype: int) -> int:
    block, size = GGML_BLOCKS[gtype]
    n = 1
    for d in ne:
        n *= d
    return n // block * size


# ---- layout mutations: wrong files that parse ---------------------------------------------------

LAYOUT_OPS = ("gguf-dropped-layers", "config-dropped-layers", "gguf-retype", "gguf-move", "gguf-insert",
              "gguf-append", "st-move", "st-append")


def layout_case(base_gguf: str, path: str, rng: random.Random) -> str:
    """Write one wrong-but-parsable model derived from the micro model; returns the path to load
    (`path` + ".gguf" or the folder `path`)."""
    import models

    op = rng.choice(LAYOUT_OPS)
    cfg = dict(models.MICRO_CONFIG)
    if op in ("gguf-dropped-layers", "config-dropped-layers"):
        have = rng.randint(2, 3)
        claim = rng.randint(1, have - 1)
        tensors = models.seeded_llama_tensors(dict(cfg, num_hidden_layers=have), seed=rng.randrange(1000))
        if op == "config-dropped-layers":
            return models.write_folder(path, dict(cfg, num_hidden_layers=claim), models.safetensors_bytes(tensors))
        from gguf import GGUFValueType as T
        from gguf.gguf_writer import GGUFValue

        def fewer(kv: dict) -> None:
            kv["llama.block_count"] = GGUFValue(claim, T.UINT32)

        return models.write_llama_gguf(path + ".gguf", tensors, dict(cfg, num_hidden_layers=have), meta_edit=fewer)
    if op in ("st-move", "st-append"):
        data = models.safetensors_bytes(models.seeded_llama_tensors(cfg))
        if op == "st-append":
            data += bytes(rng.randint(1, 64))
        else:
            hlen = struct.unpack("<Q", data[:8])[0]
            header = json.loads(data[8:8 + hlen])
            t = header[rng.choice(sorted(header))]
            o = t["data_offsets"]
            d = rng.choice([-8, -4, -1, 1, 4, 8, 64])
            if o[0] + d >= 0:
                t["data_offsets"] = [o[0] + d, o[1] + d]
            else:  # the first tensor cannot move back: it moves forward and leaves a hole
                t["data_offsets"] = [o[0] - d, o[1] - d]
            hb = json.dumps(header).encode()
            data = struct.pack("<Q", len(hb)) + hb + data[8 + hlen:]
        return models.write_folder(path, cfg, data)
    with open(base_gguf, "rb") as f:
        data = bytearray(f.read())
    lay = gguf_layout(bytes(data))
    al = lay["alignment"]
    ts = sorted(lay["tensors"], key=lambda t: t["offset"])
    t = rng.choice(ts)
    if op == "gguf-retype":  # a type of another size that the row length allows
        size = gguf_nbytes(t["ne"], t["type"])
        choices = [k for k, (blk, _) in sorted(GGML_BLOCKS.items())
                   if t["ne"][0] % blk == 0 and gguf_nbytes(t["ne"], k) != size]
        struct.pack_into("<I", data, t["type_at"], rng.choice(choices))
    elif op == "gguf-move":  # onto another tensor, or one alignment unit either way
        other = rng.choice([u for u in ts if u is not t])
        new = rng.choice([other["offset"], t["offset"] + al, t["offset"] - al if t["offset"] >= al else t["offset"] + 2 * al])
        struct.pack_into("<Q", data, t["offset_at"], new)
    elif op == "gguf-insert":  # aligned bytes inserted before a tensor's data: the offsets no longer fit
        at = lay["data_start"] + t["offset"]
        data[at:at] = bytes(al * rng.randint(1, 3))
    else:  # gguf-append: more than the padding after the last tensor
        data += bytes(al * rng.randint(1, 4))
    with open(path + ".gguf", "wb") as f:
        f.write(bytes(data))
    return path + ".gguf"


# ---- one case ---------------------------------------------------------------------------------


_DATA_START: dict = {}


def gguf_data_start(path: str) -> int:
    """Where the tensor data begins: the mutation hot zone is everything before it."""
    if path not in _DATA_START:
        import gguf

        _DATA_START[path] = int(gguf.GGUFReader(path).data_offset)
    return _DATA_START[path]


def make_case(kind: str, base: str, work: str, i: int) -> tuple:
    """Write case i under `work`; returns (path to load, allow_unknown_config_keys)."""
    rng = random.Random(f"{kind}:{i}")
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, f"{kind}-case")
    if kind == "layout":
        if os.path.isdir(path):
            shutil.rmtree(path)
        for stale in (path, path + ".gguf"):
            if os.path.isfile(stale):
                os.remove(stale)
        return layout_case(base, path, rng), False
    if kind == "gguf":
        with open(base, "rb") as f:
            data = f.read()
        path += ".gguf"
        if rng.random() < 0.4:
            try:
                gguf_structured_case(path, rng)
                return path, False
            except (ValueError, TypeError, OverflowError, struct.error):
                pass  # the gguf writer refused the edit: fall back to a byte-level mutation
        with open(path, "wb") as f:
            f.write(mutate_gguf(data, rng, gguf_data_start(base)))
        return path, False
    if os.path.isdir(path):
        shutil.rmtree(path)
    shutil.copytree(base, path)
    if kind == "safetensors":
        st = os.path.join(path, "model.safetensors")
        with open(st, "rb") as f:
            data = f.read()
        with open(st, "wb") as f:
            f.write(mutate_safetensors(data, rng))
        return path, False
    cp = os.path.join(path, "config.json")
    with open(cp, "rb") as f:
        text = f.read()
    with open(cp, "wb") as f:
        f.write(mutate_config(text, rng))
    return path, rng.random() < 0.3


def run_case(path: str, allow_unknown: bool, seed: int = 0) -> str:
    import loomrt

    try:
        m = loomrt.load(path, threads=1, allow_unknown_config_keys=allow_unknown)
        v = m.vocab_size
        ids = [1 % v, 2 % v, 3 % v, 0, 5 % v]
        lg = m.logits(ids)
        assert lg.shape == (5, v), lg.shape
    except loomrt.LoomrtError as e:
        return f"loomrt {type(e).__name__}"
    except Exception as e:  # any other exception type is a bug in loomrt
        msg = " ".join(str(e).split())[:200]
        return f"other {type(e).__name__} {msg}"
    # the model loaded and ran: sampling from its logits must work (whatever their values)
    try:
        s = m.session()
        s.eval(ids)
        for params in (loomrt.SamplingParams(temperature=0.0),
                       loomrt.SamplingParams(temperature=0.8, top_p=0.9, seed=seed)):
            s.configure(params)
            t = s.sample()
            assert 0 <= t < v, f"sampled token id {t} is outside [0, {v})"
            cand, _ = s.candidates()
            assert t in cand, f"sampled token {t} is not among the candidates {cand[:8]}"
        return "ok"
    except Exception as e:
        msg = " ".join(str(e).split())[:200]
        return f"other {type(e).__name__} (sampling after a successful load) {msg}"


def main(argv: List[str]) -> int:
    kind, base, work, start, count = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5])
    assert kind in KINDS, kind
    os.makedirs(work, exist_ok=True)
    crash_at = os.environ.get("LOOMRT_FUZZ_CRASH_AT")  # self-test of the parent's crash detection
    for i in range(start, start + count):
        path, allow = make_case(kind, base, work, i)
        if crash_at is not None and int(crash_at) == i:
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)
        print(f"{i} {run_case(path, allow, i)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
