"""Seeded corruption of tokenizers, and the child process that loads and uses them.

The parent test (test_c_tokenizer.py::test_corrupt_tokenizers_never_crash) starts:

    python tok_fuzz_child.py KIND BASE WORKDIR START COUNT

KIND is "json" (BASE: a folder holding a micro model and base tokenizer files
base-*.json) or "gguf" (BASE: a JSON file with the GGUF tokenizer metadata of a few base
tokenizers). Case i is derived from random.Random(f"{KIND}:{i}") only. For each case the
child writes the corrupted tokenizer (tokenizer.json into WORKDIR/model, or a micro GGUF
WORKDIR/case.gguf), opens the model with the C library and, when a tokenizer loaded,
tokenizes texts with every flag combination, decodes the ids and random ids, and reads
token bytes, checking that every id is in range. It prints one line per case, flushed:

    "<i> ok"                          tokenizer loaded and used
    "<i> loomrt <ClassName>"          the model or tokenizer reported a loomrt error
    "<i> other <ClassName> <message>" anything else (a bug)

A child killed by a signal or hanging is a bug too: the parent reports the first case
without a line.
"""
from __future__ import annotations

import copy
import json
import os
import random
import shutil
import sys
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TEXTS = ["Hello world! 123 4567", "", " ", "<|im_start|>user\nhi<|im_end|>", "don't\r\n\tx  y",
         "emoji 😀👍🏽 中文 é e\u0301 ▁a<s></s><unk><0x41>", "\ufffd\u0000\x7f" * 3, "a" * 300]
ODD = [None, True, False, -1, 0, 1, 2 ** 31, 2 ** 40, -2 ** 63, 1.5, float("nan") if False else 1e308, "", "x",
       "\u2581", "<0xZZ>", [], [1, 2], ["a"], {}, {"type": "Sequence"}, {"type": "Nope"}, "a" * 5000]
TYPES = {"normalizer": ["NFC", "NFD", "Prepend", "Replace", "Sequence", "Lowercase", "NFKC"],
         "pre_tokenizer": ["ByteLevel", "Metaspace", "Split", "Digits", "Sequence", "Whitespace"],
         "decoder": ["ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip", "Sequence", "WordPiece"],
         "post_processor": ["TemplateProcessing", "ByteLevel", "RobertaProcessing", "Sequence", "BertProcessing"]}


def _paths(obj: Any, prefix: List[Any], out: List[List[Any]]) -> None:
    out.append(prefix)
    if len(out) > 4000:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _paths(v, prefix + [k], out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:50]):
            _paths(v, prefix + [i], out)


def _get(obj: Any, path: List[Any]) -> Any:
    for k in path:
        obj = obj[k]
    return obj


FLAGS = ["lstrip", "rstrip", "single_word", "normalized", "special", "add_prefix_space", "use_regex", "split",
         "individual_digits", "byte_fallback", "fuse_unk", "ignore_merges", "invert", "trim_offsets"]
ENUMS = {"behavior": ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"],
         "prepend_scheme": ["always", "first", "never"], "start": [0, 1, 2], "stop": [0, 1, 2],
         "Regex": [r"\p{N}", r"\p{N}{1,3}", r"\p{N}+",
                   r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"],
         "String": [" ", "\u2581", "a", "ab", "\n"], "content": [" ", "\u2581", "<s>", "x", "<|im_end|>"],
         "prepend": ["\u2581", " ", "ab"]}


def benign(rng: random.Random, doc: Any) -> None:
    """A change that keeps the tokenizer valid: flags, enums, patterns, added tokens."""
    paths: List[List[Any]] = []
    for section in ("normalizer", "pre_tokenizer", "decoder", "post_processor", "added_tokens"):
        _paths(doc.get(section), [section], paths)
    _paths({k: v for k, v in doc["model"].items() if k not in ("vocab", "merges")}, ["model"], paths)
    cands = [q for q in paths if q and (q[-1] in FLAGS or q[-1] in ENUMS)]
    if cands and rng.random() < 0.8:
        path = rng.choice(cands)
        parent = _get(doc, path[:-1])
        key = path[-1]
        if key in FLAGS:
            parent[key] = not parent[key] if isinstance(parent[key], bool) else rng.random() < 0.5
        else:
            parent[key] = rng.choice(ENUMS[key])
        return
    vocab = doc["model"]["vocab"]
    tok = rng.choice(list(vocab)[:400] + ["<new>", "▁a", "a b", "ab", "é", "😀", "<|im_start|>"])
    doc.setdefault("added_tokens", []).append({
        "id": vocab.get(tok, len(vocab) + 50), "content": tok, "single_word": rng.random() < 0.3,
        "lstrip": rng.random() < 0.3, "rstrip": rng.random() < 0.3, "normalized": rng.random() < 0.5,
        "special": rng.random() < 0.5})


def mutate_json(rng: random.Random, base: str) -> bytes:
    if rng.random() < 0.35:  # changes that keep it valid: compared with tokenizers by the child
        doc = json.loads(base)
        for _ in range(rng.randint(1, 3)):
            benign(rng, doc)
        return json.dumps(doc).encode("utf-8")
    if rng.random() < 0.3:  # byte-level damage
        raw = bytearray(base.encode("utf-8"))
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(raw))
            if op < 0.4:
                raw[pos] = rng.randrange(256)
            elif op < 0.6:
                del raw[pos:pos + rng.randint(1, 40)]
            elif op < 0.8:
                raw[pos:pos] = raw[rng.randrange(len(raw)):][: rng.randint(1, 40)]
            else:
                del raw[pos:]
        return bytes(raw)
    doc = json.loads(base)
    for _ in range(rng.randint(1, 4)):
        paths: List[List[Any]] = []
        if rng.random() < 0.6:  # the pipeline sections and added tokens, not the big vocabulary
            for section in ("normalizer", "pre_tokenizer", "decoder", "post_processor", "added_tokens"):
                _paths(doc.get(section), [section], paths)
            _paths({k: v for k, v in doc["model"].items() if k not in ("vocab", "merges")}, ["model"], paths)
            paths = [q for q in paths if len(q) > 1 and (q[0] != "model" or q[1] not in ("vocab", "merges"))]
        if not paths:
            _paths(doc, [], paths)
            paths = paths[1:]
        path = rng.choice(paths)
        parent = _get(doc, path[:-1])
        key = path[-1]
        op = rng.random()
        if op < 0.35:
            parent[key] = copy.deepcopy(rng.choice(ODD))
        elif op < 0.5 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.65 and key == "type" and isinstance(parent, dict):
            parent[key] = rng.choice(sum(TYPES.values(), []))
        elif op < 0.8 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = rng.choice([-1, 0, 1, 255, 256, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32, parent[key] + 1])
        elif op < 0.9 and isinstance(parent[key], str):
            parent[key] = rng.choice(["", " ", parent[key] * 2, parent[key][:1], "\u2581", "<0x0A>", "Ġ", "a b"])
        else:
            section = rng.choice(list(TYPES))
            doc[section] = {"type": rng.choice(TYPES[section])}
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8")


def mutate_gguf_meta(rng: random.Random, meta: Dict[str, Any]) -> Dict[str, Any]:
    meta = copy.deepcopy(meta)
    keys = [k for k in meta if k.startswith("tokenizer.")]
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(keys + ["tokenizer.ggml.pre", "tokenizer.ggml.model", "tokenizer.ggml.add_bos_token",
                                 "tokenizer.ggml.add_space_prefix"])
        value = meta.get(key)
        op = rng.random()
        if op < 0.2:
            meta.pop(key, None)
        elif op < 0.45 and isinstance(value, list) and value:
            v = list(value)
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(len(v))
                if isinstance(v[i], str):
                    v[i] = rng.choice(["", " ", "a", "Ġ", "<0x41>", "\u2581", "x y z", v[rng.randrange(len(v))], "\u00e9" * 40])
                elif isinstance(v[i], float):
                    v[i] = rng.choice([0.0, -1.0, 1e30, -1e30, v[rng.randrange(len(v))]])
                else:
                    v[i] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, -1, 1000])
            if rng.random() < 0.3:
                v = v[: rng.randrange(len(v))]
            meta[key] = v
        elif op < 0.6:
            meta[key] = rng.choice([0, 1, 2, 7, 10 ** 6, -5, 2 ** 31, True, False, "gpt2", "llama", "qwen2", "llama-bpe",
                                    "smollm", "default", "bert", "", 1.5, ["a"], [1, 2]])
        elif op < 0.8 and key.endswith("_id"):
            meta[key] = rng.choice([0, 1, 2, len(meta.get("tokenizer.ggml.tokens", [])), 2 ** 32 - 1])
        else:
            meta[key] = rng.choice(["gpt2", "llama", "x"]) if key.endswith("model") else rng.choice([True, False, 3])
    return meta


def write_gguf(path: str, meta: Dict[str, Any]) -> None:
    from gguf.gguf_writer import GGUFValue
    from gguf import GGUFValueType as T

    import models

    def vtype(value: Any) -> Any:
        if isinstance(value, bool):
            return T.BOOL
        if isinstance(value, int):
            return T.INT64 if value < 0 or value >= 2 ** 32 else T.UINT32
        if isinstance(value, float):
            return T.FLOAT32
        return T.STRING

    def edit(kv: Dict[str, Any]) -> None:
        for key in [k for k in kv if k.startswith("tokenizer.")]:
            del kv[key]
        for key, value in meta.items():
            if isinstance(value, list):
                sub = vtype(value[0]) if value else T.INT32
                if sub == T.UINT32 and any(isinstance(x, int) and x < 0 for x in value):
                    sub = T.INT32
                kv[key] = GGUFValue(value, T.ARRAY, sub)
            else:
                kv[key] = GGUFValue(value, vtype(value))

    tensors = models.seeded_llama_tensors(models.MICRO_CONFIG)
    models.write_llama_gguf(path, tensors, models.MICRO_CONFIG, tokens=None, meta_edit=edit)


def compare_with_tokenizers(handle: Any, data: bytes) -> None:
    """When tokenizers accepts the file too, both must give the same ids and text."""
    from tokenizers import Tokenizer

    from loomrt import _lib

    try:
        hf = Tokenizer.from_str(data.decode("utf-8"))
        for text in TEXTS:
            hf.encode(text)
    except BaseException as exc:  # noqa: BLE001 - tokenizers rejects (or panics on) it: nothing to compare
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return
    if not _lib.model_has_tokenizer(handle):
        return  # loomrt rejected a file tokenizers takes (unsupported component, or stricter checks)
    for text in TEXTS:
        for add in (False, True):
            got = _lib.tokenize(handle, text, add, True)
            try:
                want = list(hf.encode(text, add_special_tokens=add).ids)
                texts = [hf.decode(got, skip_special_tokens=skip) for skip in (False, True)]
            except BaseException as exc:  # noqa: BLE001 - tokenizers panics: nothing to compare
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                continue
            if got != want:
                raise AssertionError(f"ids differ from tokenizers on {text!r} (add={add}): {got[:20]} != {want[:20]}")
            for skip in (False, True):
                if _lib.detokenize(handle, got, skip) != texts[skip]:
                    raise AssertionError(f"decode differs from tokenizers on {got[:20]} (skip={skip})")


def exercise(handle: Any, rng: random.Random) -> None:
    from loomrt import _lib

    if not _lib.model_has_tokenizer(handle):
        _lib.tokenize(handle, "x")  # must raise a loomrt error saying why
        raise RuntimeError("tokenize worked on a model without tokenizer")
    limit = 1 << 24
    for text in TEXTS:
        for add in (False, True):
            for parse in (False, True):
                ids = _lib.tokenize(handle, text, add, parse)
                assert all(0 <= i < limit for i in ids), ids
                _lib.detokenize(handle, ids, add)
    some = [rng.randrange(0, 70000) for _ in range(30)]
    for i in some:
        try:
            _lib.token_bytes(handle, i)
        except Exception as exc:  # ids beyond the model's vocabulary are an argument error
            if type(exc).__name__ != "InvalidArgumentError":
                raise
    try:
        _lib.detokenize(handle, some, True)
    except Exception as exc:
        if type(exc).__name__ != "InvalidArgumentError":
            raise


def main() -> None:
    kind, base, work, start, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    import loomrt
    from loomrt import _lib

    os.makedirs(work, exist_ok=True)
    if kind == "json":
        bases = [open(os.path.join(base, f), encoding="utf-8").read() for f in sorted(os.listdir(base))
                 if f.startswith("base-") and f.endswith(".json")]
        folder = os.path.join(work, "model")
        os.makedirs(folder, exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(base, f), os.path.join(folder, f))
    else:
        with open(base, encoding="utf-8") as fh:
            metas = json.load(fh)
    for i in range(start, start + count):
        rng = random.Random(f"{kind}:{i}")
        try:
            if kind == "json":
                data = mutate_json(rng, rng.choice(bases))
                with open(os.path.join(folder, "tokenizer.json"), "wb") as fh:
                    fh.write(data)
                path = folder
            else:
                path = os.path.join(work, "case.gguf")
                write_gguf(path, mutate_gguf_meta(rng, rng.choice(metas)))
            handle = _lib.model_open(path)
            if kind == "json":
                compare_with_tokenizers(handle, data)
            exercise(handle, rng)
            print(f"{i} ok", flush=True)
        except loomrt.LoomrtError as exc:
            print(f"{i} loomrt {type(exc).__name__}", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported as a bug
            print(f"{i} other {type(exc).__name__} {str(exc)[:200]!r}", flush=True)


if __name__ == "__main__":
    main()
