"""Seeded corruption of model files, and the child process that tries to load them.

The parent test (test_bad_input.py) starts this file as a script on a batch of cases:

    python fuzz_child.py KIND BASE WORKDIR START COUNT

KIND is "safetensors", "gguf" or "config"; BASE is the valid model (a folder for
safetensors/config, a .gguf file for gguf). For each case i in [START, START + COUNT) the
child derives the corrupted bytes from random.Random(f"{KIND}:{i}") (stable across Python
versions and machines), writes them under WORKDIR (before loading, so the file that crashed a
child is still there afterwards), then runs loomrt.load + one logits eval + one greedy step,
and prints one line, flushed:

    "<i> ok"                     loaded and evaluated
    "<i> loomrt <ClassName>"     raised a loomrt.LoomrtError subclass
    "<i> other <ClassName> <message>"   raised anything else (a bug)

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
from typing import Any, Callable, List

KINDS = ("safetensors", "gguf", "config")

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
    path = os.path.join(work, f"{kind}-case")
    if kind == "gguf":
        with open(base, "rb") as f:
            data = f.read()
        hot = gguf_data_start(base)
        path += ".gguf"
        with open(path, "wb") as f:
            f.write(mutate_gguf(data, rng, hot))
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


def run_case(path: str, allow_unknown: bool) -> str:
    import loomrt

    try:
        m = loomrt.load(path, threads=1, allow_unknown_config_keys=allow_unknown)
        v = m.vocab_size
        ids = [1 % v, 2 % v, 3 % v, 0, 5 % v]
        lg = m.logits(ids)
        assert lg.shape == (5, v), lg.shape
        list(m.stream_tokens(ids, 2, temperature=0.0))
        return "ok"
    except loomrt.LoomrtError as e:
        return f"loomrt {type(e).__name__}"
    except Exception as e:  # any other exception type is a bug in loomrt
        msg = " ".join(str(e).split())[:200]
        return f"other {type(e).__name__} {msg}"


def main(argv: List[str]) -> int:
    kind, base, work, start, count = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5])
    assert kind in KINDS, kind
    os.makedirs(work, exist_ok=True)
    for i in range(start, start + count):
        path, allow = make_case(kind, base, work, i)
        print(f"{i} {run_case(path, allow)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
