"""Bad input of every kind fails with a typed loomrt error (a loomrt.LoomrtError subclass)
that names the problem: never a crash, a hang, a silent wrong answer or a foreign exception.

Covers: model paths, config.json (syntax, encoding, architecture, unknown keys, RoPE types),
safetensors (truncation, header length, offsets, overlaps, shapes, dtypes), sharded index
files, GGUF (truncation, magic, version), the token / context / sampling arguments of the
Python API, >= 300 seeded random corruptions each of a safetensors file, a GGUF file and a
config.json, and 200 wrong-but-parsable layouts (dropped layers, retyped tensors, overlapping or
holed extents), loaded in child processes so that a segfault is caught and reported.
"""
from __future__ import annotations

import collections
import json
import os
import random
import shutil
import subprocess
import sys
from typing import Any, Dict

import numpy as np
import pytest

import loomrt
import models
from loomrt import _lib

HERE = os.path.dirname(os.path.abspath(__file__))
CFG: Dict[str, Any] = models.MICRO_CONFIG
V = CFG["vocab_size"]


@pytest.fixture(scope="module")
def tensors():
    return models.seeded_llama_tensors(CFG)


@pytest.fixture(scope="module")
def good_st(tensors) -> bytes:
    return models.safetensors_bytes(tensors)


@pytest.fixture(scope="module")
def micro(micro_folder):
    return loomrt.load(micro_folder, threads=1)


@pytest.fixture
def folder(tmp_path):
    """folder(config, safetensors_bytes) -> a fresh model folder under tmp_path."""
    n = [0]

    def make(config: Any = CFG, st: Any = None) -> str:
        n[0] += 1
        return models.write_folder(str(tmp_path / f"m{n[0]}"), config, st)

    return make


def load_and_eval(path: str, **kw) -> np.ndarray:
    return loomrt.load(path, threads=1, **kw).logits([1, 2, 3])


def test_reference_micro_model_loads(micro_folder, micro_gguf, good_st, folder):
    """The valid bases of the corruption tests load (so failures below are about the edit)."""
    a = load_and_eval(micro_folder)
    assert a.shape == (3, V) and np.isfinite(a).all()
    assert np.array_equal(load_and_eval(folder(CFG, good_st)), a)
    # the GGUF holds the same weights (Q/K permuted): the same bits
    assert np.array_equal(load_and_eval(micro_gguf), a)


# ---- paths --------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(loomrt.NotFoundError):
        loomrt.load(str(tmp_path / "does-not-exist"))
    with pytest.raises(loomrt.NotFoundError):
        loomrt.load(str(tmp_path / "missing.gguf"))
    assert issubclass(loomrt.NotFoundError, FileNotFoundError)


def test_folder_without_config(tmp_path, good_st):
    d = tmp_path / "noconfig"
    d.mkdir()
    (d / "model.safetensors").write_bytes(good_st)
    with pytest.raises(loomrt.NotFoundError, match="config.json"):
        loomrt.load(str(d))


def test_folder_without_weights(folder):
    with pytest.raises(loomrt.NotFoundError, match="safetensors"):
        loomrt.load(folder(CFG))


def test_file_that_is_not_gguf(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(b"\x00" * 64)
    with pytest.raises(loomrt.InvalidArgumentError):
        loomrt.load(str(p))


def test_empty_path():
    with pytest.raises(loomrt.InvalidArgumentError):
        loomrt.load("")


# ---- config.json --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "   ", "{", '{"vocab_size": 48,', "[]", "null", '"llama"', '{"a": 1,}', '{/* c */}',
    '{"vocab_size": NaN}', "{'model_type': 'llama'}", '{"a": 01}', '{"a": 1} {"b": 2}',
    '{"a": "\\x41"}', '{"a": 1e999}',
], ids=lambda t: repr(t)[:24])
def test_malformed_config(folder, good_st, text):
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(text, good_st))


@pytest.mark.parametrize("where", ["value", "key", "lone continuation", "overlong", "surrogate"])
def test_config_bad_utf8(folder, good_st, where):
    raw = json.dumps(dict(CFG, note="x")).encode()
    bad = {"value": (b'"llama"', b'"ll\xffama"'), "key": (b'"note"', b'"n\xc3\x28te"'),
           "lone continuation": (b'"x"', b'"\x80"'), "overlong": (b'"x"', b'"\xc0\xaf"'),
           "surrogate": (b'"x"', b'"\xed\xa0\x80"')}[where]
    assert bad[0] in raw
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(raw.replace(bad[0], bad[1], 1), good_st))


def test_config_duplicate_key(folder, good_st):
    text = json.dumps(CFG)[:-1] + ', "vocab_size": 48}'
    with pytest.raises(loomrt.FormatError, match="duplicate"):
        load_and_eval(folder(text, good_st))


def test_config_with_utf8_bom_loads(folder, good_st, micro_folder):
    raw = b"\xef\xbb\xbf" + json.dumps(CFG).encode()
    assert np.array_equal(load_and_eval(folder(raw, good_st)), load_and_eval(micro_folder))


@pytest.mark.parametrize("edit,err", [
    ({"architectures": ["BertForMaskedLM"], "model_type": "bert"}, loomrt.UnsupportedError),
    ({"architectures": ["GemmaForCausalLM"], "model_type": None}, loomrt.UnsupportedError),
    ({"architectures": None, "model_type": "falcon"}, loomrt.UnsupportedError),
    ({"architectures": None, "model_type": None}, loomrt.FormatError),
    ({"model_type": "mistral"}, loomrt.FormatError),  # contradicts architectures
    ({"architectures": "LlamaForCausalLM"}, loomrt.FormatError),  # not a list
], ids=["bert", "gemma-class", "falcon-type", "none", "contradiction", "not-a-list"])
def test_unknown_or_inconsistent_architecture(folder, good_st, edit, err):
    cfg = dict(CFG)
    for k, v in edit.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    with pytest.raises(err):
        load_and_eval(folder(cfg, good_st))


def test_unknown_config_key(folder, good_st, micro_folder):
    path = folder(dict(CFG, attn_logit_softcapping=30.0), good_st)
    with pytest.raises(loomrt.UnsupportedError, match="attn_logit_softcapping"):
        load_and_eval(path)
    # the caller can vouch for the key: then it loads and computes what the base model does
    assert np.array_equal(load_and_eval(path, allow_unknown_config_keys=True), load_and_eval(micro_folder))


@pytest.mark.parametrize("rope", [
    {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
    {"rope_scaling": {"type": "linear", "factor": 2.0}},
    {"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 10000.0}},
    {"rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0}},
    {"rope_parameters": dict(models.LLAMA3_ROPE, beta_fast=32.0)},  # unknown key in a known type
    {"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}},
], ids=["dynamic", "linear", "yarn", "longrope", "llama3+extra", "partial"])
def test_unknown_rope_type(folder, good_st, rope):
    with pytest.raises(loomrt.UnsupportedError):
        load_and_eval(folder(dict(CFG, **rope), good_st))


@pytest.mark.parametrize("edit", [
    {"vocab_size": -1}, {"vocab_size": "48"}, {"hidden_size": 16.5}, {"num_attention_heads": 0},
    {"num_key_value_heads": 3}, {"rms_norm_eps": -1.0}, {"rope_theta": "big"}, {"tie_word_embeddings": 1},
    {"max_position_embeddings": 0}, {"eos_token_id": [-1]}, {"hidden_act": 3},
    {"rope_parameters": dict(models.LLAMA3_ROPE, low_freq_factor=4.0)},  # high <= low
], ids=lambda e: next(iter(e)))
def test_bad_config_values(folder, good_st, edit):
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(dict(CFG, **edit), good_st))


def test_unsupported_config_values(folder, good_st):
    with pytest.raises(loomrt.UnsupportedError):
        load_and_eval(folder(dict(CFG, hidden_act="gelu"), good_st))
    with pytest.raises(loomrt.UnsupportedError):
        load_and_eval(folder(dict(CFG, sliding_window=8), good_st))  # llama has no window


# ---- safetensors --------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["4", "8", "header/2", "data/2", "-1"])
def test_truncated_safetensors(folder, good_st, cut):
    hlen = int.from_bytes(good_st[:8], "little")
    n = {"4": 4, "8": 8, "header/2": 8 + hlen // 2, "data/2": 8 + hlen + (len(good_st) - 8 - hlen) // 2,
         "-1": len(good_st) - 1}[cut]
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(CFG, good_st[:n]))


def test_empty_safetensors(folder):
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(CFG, b""))


@pytest.mark.parametrize("hlen", [2**64 - 1, 2**63, 2**40, 100 * 2**20 + 1, "file", "file-7"])
def test_absurd_header_length(folder, good_st, hlen):
    n = {"file": len(good_st), "file-7": len(good_st) - 7}.get(hlen, hlen)  # type: ignore[arg-type]
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(CFG, int(n).to_bytes(8, "little") + good_st[8:]))


def _st_with(tensors, edit):
    return models.safetensors_bytes(tensors, header_edit=edit)


@pytest.mark.parametrize("offsets", ["past-end", "far", "begin>end", "negative", "float", "three", "u64max"])
def test_offsets_out_of_range(folder, tensors, offsets):
    def edit(h):
        o = h["model.norm.weight"]["data_offsets"]
        total = max(t["data_offsets"][1] for t in h.values())  # size of the data section
        h["model.norm.weight"]["data_offsets"] = {
            "past-end": [total - (o[1] - o[0]) + 4, total + 4],  # right size, last 4 bytes missing
            "far": [10**9, 10**9 + 64], "begin>end": [o[1], o[0]], "negative": [-64, 0],
            "float": [float(o[0]), float(o[1])], "three": [o[0], o[1], o[1]], "u64max": [2**64 - 64, 2**64 - 1]}[offsets]
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(CFG, _st_with(tensors, edit)))


def test_overlapping_offsets(folder, tensors):
    def edit(h):  # two same-size vectors share bytes
        h["model.norm.weight"]["data_offsets"] = list(h["model.layers.0.input_layernorm.weight"]["data_offsets"])
    with pytest.raises(loomrt.FormatError, match="overlap"):
        load_and_eval(folder(CFG, _st_with(tensors, edit)))

    def edit2(h):  # partial overlap: shifted by half a tensor
        a = h["model.layers.0.mlp.up_proj.weight"]["data_offsets"]
        h["model.layers.0.mlp.up_proj.weight"]["data_offsets"] = [a[0] + 64, a[1] + 64]
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(CFG, _st_with(tensors, edit2)))


def test_shape_and_bytes_disagree(folder, tensors):
    def edit(h):
        h["model.norm.weight"]["shape"] = [32]  # 128 bytes of F32, but the offsets span 64
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(CFG, _st_with(tensors, edit)))


@pytest.mark.parametrize("which", ["norm-length", "q-transposed", "embed-vocab", "3d"])
def test_shape_mismatch_with_config(folder, tensors, which):
    t = dict(tensors)
    if which == "norm-length":
        t["model.norm.weight"] = np.ones(17, np.float32)
    elif which == "q-transposed":
        k = "model.layers.0.self_attn.k_proj.weight"  # (8, 16) -> (16, 8)
        t[k] = np.ascontiguousarray(t[k].T)
    elif which == "embed-vocab":
        t["model.embed_tokens.weight"] = t["model.embed_tokens.weight"][:40]
    else:
        t["model.layers.0.mlp.up_proj.weight"] = t["model.layers.0.mlp.up_proj.weight"].reshape(2, 16, 16)
    with pytest.raises(loomrt.FormatError, match="shape"):
        load_and_eval(folder(CFG, models.safetensors_bytes(t)))


def test_missing_tensor(folder, tensors):
    t = {k: v for k, v in tensors.items() if k != "model.layers.0.mlp.down_proj.weight"}
    with pytest.raises(loomrt.FormatError, match="down_proj"):
        load_and_eval(folder(CFG, models.safetensors_bytes(t)))


@pytest.mark.parametrize("name,dtype", [("model.layers.0.mlp.up_proj.weight", np.int64),
                                        ("model.norm.weight", np.int64),
                                        ("model.layers.0.self_attn.q_proj.weight", np.int32),
                                        ("model.embed_tokens.weight", np.float64)])
def test_unsupported_dtype(folder, tensors, name, dtype):
    t = dict(tensors)
    t[name] = tensors[name].astype(dtype)
    with pytest.raises(loomrt.UnsupportedError, match=name):
        load_and_eval(folder(CFG, models.safetensors_bytes(t)))


@pytest.mark.parametrize("dtype", ["Q4", "f32", "", "FLOAT"])
def test_unknown_dtype_string(folder, tensors, dtype):
    def edit(h):
        h["model.norm.weight"]["dtype"] = dtype
    with pytest.raises(loomrt.FormatError):
        load_and_eval(folder(CFG, _st_with(tensors, edit)))


def test_header_entry_problems(folder, tensors):
    for edit in (lambda h: h["model.norm.weight"].update(extra=1),
                 lambda h: h["model.norm.weight"].pop("shape"),
                 lambda h: h.update({"__metadata__": {"a": 1}}),
                 lambda h: h.update({"": dict(h["model.norm.weight"])}),
                 lambda h: h["model.norm.weight"].update(shape=[-16])):
        with pytest.raises(loomrt.FormatError):
            load_and_eval(folder(CFG, _st_with(tensors, edit)))


def test_float16_weights_load(folder, tensors, micro_folder):
    """Control: a supported dtype other than F32 loads (so the dtype tests test the dtype)."""
    t = {k: (v.astype(np.float16) if v.ndim == 2 else v) for k, v in tensors.items()}
    a = load_and_eval(folder(CFG, models.safetensors_bytes(t)))
    b = load_and_eval(micro_folder)
    assert np.isfinite(a).all() and not np.array_equal(a, b) and np.allclose(a, b, atol=0.05)


# ---- sharded index --------------------------------------------------------------------------------


def _sharded(folder_path: str, tensors, weight_map_edit=None) -> str:
    os.makedirs(folder_path, exist_ok=True)
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    wm = {}
    for fname, ns in shards.items():
        with open(os.path.join(folder_path, fname), "wb") as f:
            f.write(models.safetensors_bytes({n: tensors[n] for n in ns}))
        wm.update({n: fname for n in ns})
    if weight_map_edit:
        weight_map_edit(wm)
    with open(os.path.join(folder_path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)
    with open(os.path.join(folder_path, "config.json"), "w") as f:
        json.dump(CFG, f)
    return folder_path


def test_sharded_index_problems(tmp_path, tensors, micro_folder):
    assert np.array_equal(load_and_eval(_sharded(str(tmp_path / "ok"), tensors)), load_and_eval(micro_folder))
    cases = [
        (lambda wm: wm.update({"lm_head.weight": "../ok/model-00001-of-00002.safetensors"}), loomrt.FormatError),
        (lambda wm: wm.update({"lm_head.weight": "/etc/passwd"}), loomrt.FormatError),
        (lambda wm: wm.update({"ghost.weight": "model-00001-of-00002.safetensors"}), loomrt.FormatError),
        (lambda wm: wm.update({"lm_head.weight": "missing.safetensors"}), loomrt.NotFoundError),
        (lambda wm: wm.update({"lm_head.weight": 3}), loomrt.FormatError),
        (lambda wm: wm.clear(), loomrt.FormatError),
    ]
    for i, (edit, err) in enumerate(cases):
        with pytest.raises(err):
            load_and_eval(_sharded(str(tmp_path / f"bad{i}"), tensors, edit))


# ---- GGUF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 3, 4, 8, 20, 24, 100, "header-1", "data/2", "-1"])
def test_truncated_gguf(tmp_path, micro_gguf, cut):
    import fuzz_child

    raw = open(micro_gguf, "rb").read()
    n = {"header-1": fuzz_child.gguf_data_start(micro_gguf) - 1, "-1": len(raw) - 1,
         "data/2": (fuzz_child.gguf_data_start(micro_gguf) + len(raw)) // 2}.get(cut, cut)  # type: ignore[arg-type]
    p = tmp_path / "t.gguf"
    p.write_bytes(raw[:int(n)])
    with pytest.raises(loomrt.FormatError):
        load_and_eval(str(p))


@pytest.mark.parametrize("magic", [b"GGUX", b"GGML", b"\x00\x00\x00\x00", b"FUGG"])
def test_gguf_bad_magic(tmp_path, micro_gguf, magic):
    raw = open(micro_gguf, "rb").read()
    p = tmp_path / "m.gguf"
    p.write_bytes(magic + raw[4:])
    with pytest.raises(loomrt.FormatError, match="GGUF"):
        load_and_eval(str(p))


@pytest.mark.parametrize("version", [0, 1, 4, 2**24])
def test_gguf_bad_version(tmp_path, micro_gguf, version):
    raw = open(micro_gguf, "rb").read()
    p = tmp_path / "v.gguf"
    p.write_bytes(raw[:4] + version.to_bytes(4, "little") + raw[8:])
    with pytest.raises(loomrt.FormatError):
        load_and_eval(str(p))


@pytest.mark.parametrize("field,value", [(8, 2**64 - 1), (8, 10**6), (16, 2**64 - 1), (16, 2**40)])
def test_gguf_absurd_counts(tmp_path, micro_gguf, field, value):
    raw = open(micro_gguf, "rb").read()
    p = tmp_path / "c.gguf"
    p.write_bytes(raw[:field] + value.to_bytes(8, "little") + raw[field + 8:])
    with pytest.raises(loomrt.FormatError):
        load_and_eval(str(p))


# ---- the Python API: tokens, context, sampling ---------------------------------------------------


def test_empty_prompt(micro, micro_gguf):
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.logits([])
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.session().eval([])
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.generate([], 4)
    with pytest.raises(loomrt.InvalidArgumentError):
        list(micro.stream_tokens([], 4))
    gg = loomrt.load(micro_gguf, threads=1)  # has a tokenizer: text prompts are possible
    with pytest.raises(loomrt.InvalidArgumentError):
        gg.generate("", 4)
    with pytest.raises(loomrt.LoomrtError):
        micro.generate("", 4)  # no tokenizer here; any typed error will do
    # the C entry point itself refuses n = 0
    with pytest.raises(loomrt.InvalidArgumentError):
        _lib.check(_lib.lib.lrt_session_eval(micro.session()._h, _lib.ffi.new("int32_t[1]", [1]), 0, 1))


@pytest.mark.parametrize("bad", [V, V + 1, -1, 2**31, 2**40, -2**63])
def test_token_id_out_of_vocab(micro, bad):
    for call in (lambda: micro.logits([1, bad, 2]), lambda: micro.session().eval([bad]),
                 lambda: micro.generate([1, bad], 2)):
        with pytest.raises(loomrt.InvalidArgumentError, match="vocabulary"):
            call()


def test_token_id_out_of_vocab_c_level(micro):
    """Bypass the Python check: the C library must refuse the ids itself, and the session must
    stay usable (the failed eval appends nothing)."""
    s = micro.session()
    for bad in (V, -1, 2**31 - 1):
        with pytest.raises(loomrt.InvalidArgumentError):
            _lib.session_eval(s._h, [1, bad], True)
        assert s.position == 0
    assert np.array_equal(s.eval([1, 2, 3], all_logits=True), micro.logits([1, 2, 3]))


def test_context_overflow(micro_folder):
    m = loomrt.load(micro_folder, threads=1, context=16)
    assert m.context_length == 16
    with pytest.raises(loomrt.ContextFullError):
        m.logits(list(range(1, 21)))
    s = m.session()
    s.eval(list(range(1, 11)))
    with pytest.raises(loomrt.ContextFullError):
        s.eval(list(range(1, 11)))
    assert s.position == 10  # the failed eval left the session as it was
    s.eval(list(range(1, 7)))  # exactly fills the context
    assert s.position == 16
    with pytest.raises(loomrt.ContextFullError):
        s.eval([1])
    with pytest.raises(loomrt.ContextFullError):
        m.generate(list(range(1, 21)), 4)
    g = m.generate(list(range(1, 11)), 20)  # generation stops at the context, no error
    assert g.finish_reason == "context" and 0 < len(g.token_ids) <= 7


@pytest.mark.parametrize("params", [
    dict(temperature=-1), dict(temperature=float("nan")), dict(temperature=float("inf")),
    dict(temperature=-1e-30), dict(top_p=0), dict(top_p=-0.5), dict(top_p=1.5), dict(top_p=float("nan")),
    dict(top_k=-1), dict(top_k=1.5), dict(min_p=2), dict(min_p=-0.1), dict(min_p=float("nan")),
    dict(repetition_penalty=0), dict(repetition_penalty=-1), dict(repetition_penalty=float("nan")),
    dict(seed=1.5), dict(temperature="hot"), dict(top_k=True), dict(seed=-1), dict(seed=2**64 + 3),
    dict(temperature=None),
], ids=lambda p: f"{next(iter(p))}={list(p.values())[0]!r}")
def test_invalid_sampling_values(micro, params):
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.generate([1, 2, 3], 4, **params)
    s = micro.session()
    with pytest.raises(loomrt.InvalidArgumentError):
        s.configure(loomrt.SamplingParams(**params))


def test_valid_sampling_edges(micro):
    for params in (dict(top_p=1.0), dict(min_p=0.0), dict(min_p=1.0, temperature=1.0), dict(top_k=0),
                   dict(top_k=10**9, temperature=1.0), dict(temperature=0.0), dict(seed=0),
                   dict(seed=2**64 - 1), dict(repetition_penalty=1e-3), dict(top_p=1e-9, temperature=2.0)):
        g = micro.generate([1, 2, 3], 3, **params)
        assert len(g.token_ids) <= 3 and all(0 <= t < V for t in g.token_ids)


def test_invalid_load_and_session_arguments(micro_folder, micro):
    for kw in (dict(threads=0), dict(threads=-1), dict(threads=2000), dict(threads="2"), dict(threads=True),
               dict(context=0), dict(context=-3), dict(context=CFG["max_position_embeddings"] + 1)):
        with pytest.raises(loomrt.InvalidArgumentError):  # at load, or at the latest on first use
            loomrt.load(micro_folder, **kw).logits([1])
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.session(context=10**6)
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.session(threads=5000)
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.generate([1], -1)


def test_state_errors(micro):
    s = micro.session()
    with pytest.raises(loomrt.StateError):
        s.sample()
    with pytest.raises(loomrt.StateError):
        s.candidates()
    with pytest.raises(loomrt.InvalidArgumentError):
        s.truncate(1)
    s.eval([1, 2, 3])
    with pytest.raises(loomrt.InvalidArgumentError):
        s.truncate(4)
    with pytest.raises(loomrt.InvalidArgumentError):
        s.truncate(-1)
    s.truncate(1)
    with pytest.raises(loomrt.StateError):  # truncation invalidates the logits
        s.sample()


# ---- seeded random corruption, in child processes -------------------------------------------------

N_CASES = 400  # per file kind
BATCH = 100  # cases per child process


def _run_batches(kind: str, base: str, work: str, keep: str, n_cases: int = N_CASES,
                 env: Any = None) -> Dict[str, int]:
    """Run all cases of one kind; return outcome counts; fail with a reproduction on any
    crash, hang or foreign exception."""
    import collections

    counts: Dict[str, int] = collections.Counter()
    problems = []
    for start in range(0, n_cases, BATCH):
        cmd = [sys.executable, os.path.join(HERE, "fuzz_child.py"), kind, base, work, str(start), str(BATCH)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
            out, rc, why = p.stdout, p.returncode, ""
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            rc, why = None, "hung (300 s timeout)"
        seen = {}
        for line in out.splitlines():
            i, _, result = line.partition(" ")
            seen[int(i)] = result
        for i in range(start, start + BATCH):
            if i not in seen:
                case_file = os.path.join(work, f"{kind}-case" + (".gguf" if kind == "gguf" else ""))
                if kind == "layout" and not os.path.exists(case_file):
                    case_file += ".gguf"
                saved = os.path.join(keep, f"{kind}-case-{i}")
                if os.path.isdir(case_file):
                    shutil.copytree(case_file, saved)
                elif os.path.exists(case_file):
                    shutil.copy(case_file, saved + ".gguf")
                what = why or (f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with {rc}")
                stderr = "" if rc is None else p.stderr[-2000:]
                problems.append(f"{kind} case {i}: child {what}; input kept at {saved}; reproduce with\n"
                                f"  python {cmd[1]} {kind} {base} /tmp/lrt-fuzz {i} 1\n{stderr}")
                break
            r = seen[i]
            if r.startswith("other "):
                problems.append(f"{kind} case {i}: {r[6:]}\n"
                                f"  reproduce: python {cmd[1]} {kind} {base} /tmp/lrt-fuzz {i} 1")
            counts[r.split(" ")[0] if r == "ok" else r.split(" ")[1]] += 1
    shown = problems[:6] + ([f"... and {len(problems) - 6} more"] if len(problems) > 6 else [])
    assert not problems, f"{len(problems)} of {n_cases} {kind} cases went wrong:\n" + "\n".join(shown)
    return counts


@pytest.mark.parametrize("kind", ["safetensors", "gguf", "config"])
def test_random_corruptions_fail_cleanly(kind, micro_folder, micro_gguf, tmp_path):
    base = micro_gguf if kind == "gguf" else micro_folder
    counts = _run_batches(kind, base, str(tmp_path / "work"), str(tmp_path))
    assert sum(counts.values()) == N_CASES
    # the mutations reach past the first check: some still load, most are rejected
    assert counts["ok"] >= 5, counts
    assert counts["FormatError"] >= N_CASES // 3, counts
    if kind != "safetensors":
        assert counts["UnsupportedError"] >= 1, counts


N_LAYOUT_CASES = 200


def test_layout_mutations_are_refused(micro_gguf, tmp_path):
    """Files that are wrong but parse (issue 11): dropped layers (GGUF block_count / config.json
    num_hidden_layers below the layers present), GGUF tensors retyped in place to a type of
    another size, moved tensor extents (overlaps, holes), bytes inserted into or appended to the
    data section of a GGUF or a safetensors file. Each case is wrong, so none may load, and none
    may crash: every one is a typed error, nearly all of them a FormatError naming the file."""
    import fuzz_child

    counts = _run_batches("layout", micro_gguf, str(tmp_path / "work"), str(tmp_path), n_cases=N_LAYOUT_CASES)
    assert sum(counts.values()) == N_LAYOUT_CASES
    assert counts["ok"] == 0, counts
    assert counts["FormatError"] >= N_LAYOUT_CASES * 9 // 10, counts
    # the cases cover every class
    ops = collections.Counter(random.Random(f"layout:{i}").choice(fuzz_child.LAYOUT_OPS) for i in range(N_LAYOUT_CASES))
    assert set(ops) == set(fuzz_child.LAYOUT_OPS) and min(ops.values()) >= 10, ops


def test_corruption_harness_reports_crashes(micro_folder, tmp_path):
    """The harness itself: a child that dies by a signal is reported with the case number."""
    env = dict(os.environ, LOOMRT_FUZZ_CRASH_AT="5")
    with pytest.raises(AssertionError, match=r"config case 5: child killed by signal 11") as info:  # SIGSEGV
        _run_batches("config", micro_folder, str(tmp_path / "w"), str(tmp_path), n_cases=BATCH, env=env)
    assert os.path.isdir(str(tmp_path / "config-case-5"))
    assert "fuzz_child.py config" in str(info.value)


# ---- known library bugs (kept last so the checks above run first under pytest -x) -----------------


@pytest.mark.parametrize("bad", [1.5, "3", "abc", None, np.float32(2.0)], ids=repr)
def test_non_integer_token_ids_rejected(micro, bad):
    """BUG (loomrt/model.py _check_ids): ids go through int(), so 1.5 silently becomes token 1
    and "3" token 3, while "abc" / None raise ValueError / TypeError instead of a loomrt error."""
    with pytest.raises(loomrt.InvalidArgumentError):
        micro.logits([1, bad])


def test_config_key_with_nul_is_not_silently_ignored(folder, good_st):
    """BUG (csrc/formats/config.c check_unknown/in_list): keys are compared with strcmp, so a key with an
    embedded NUL ("rope_theta\\u0000x") passes the unknown-key check as "rope_theta" although
    nothing reads it; every other unknown key is an UnsupportedError."""
    text = json.dumps(dict(CFG, rope_scaling=None)).replace('"rope_scaling"', '"rope_scaling\\u0000x"')
    text = text.replace("null", json.dumps({"rope_type": "yarn", "factor": 4.0}), 1)
    assert "rope_scaling\\u0000x" in text
    with pytest.raises((loomrt.UnsupportedError, loomrt.FormatError)):
        load_and_eval(folder(text, good_st))


def test_gguf_u64_metadata_above_int64_max_loads(tmp_path, tensors):
    """BUG (loomrt/_lib.py model_metadata): a GGUF with any UINT64 metadata value >= 2**63 (a legal
    GGUF value, here in a key loomrt does not use) cannot be loaded from Python: reading the
    metadata dict calls lrt_model_meta_int, which refuses such values, and loomrt.load raises
    InvalidArgumentError although the caller's arguments are fine and the C library opened it."""
    from gguf import GGUFValueType
    from gguf.gguf_writer import GGUFValue

    def edit(kv):
        kv["test.big_u64"] = GGUFValue(2**64 - 1, GGUFValueType.UINT64)

    p = models.write_llama_gguf(str(tmp_path / "u64.gguf"), tensors, CFG, meta_edit=edit)
    m = loomrt.load(p, threads=1)
    assert m.metadata["test.big_u64"] == 2**64 - 1
    assert m.logits([1, 2]).shape == (2, V)


@pytest.mark.parametrize("temperature", [1e-40, 1e-50])
def test_tiny_temperature_samples_a_valid_token(micro, temperature):
    """BUG (csrc/model/sampler.c lrt_sample): the temperature is narrowed to float, so a valid tiny
    temperature (1e-40 is subnormal, 1e-50 becomes 0.0f) turns the scaled logits into +-inf;
    exp(inf - inf) is NaN, no candidate passes `l[i] > 0`, n = 0, and `*token = cs[n - 1].id`
    reads cs[-1]: sample() returns LRT_OK with a garbage id (observed: 0, then -4194304) and
    candidates() then fails with StateError. As T -> 0 the answer must be the greedy token
    (or the setter must refuse the value)."""
    s = micro.session()
    try:
        s.configure(loomrt.SamplingParams(temperature=temperature, seed=3))
    except loomrt.InvalidArgumentError:
        return  # refusing a temperature the sampler cannot represent is an acceptable fix
    g = micro.session()
    g.configure(loomrt.SamplingParams(temperature=0.0))
    prompt = [1, 2, 3]
    s.eval(prompt)
    g.eval(prompt)
    for _ in range(3):
        t = s.sample()
        assert 0 <= t < V, f"sample() returned token id {t} outside [0, {V})"
        ids, _ = s.candidates()
        assert t in ids
        assert t == g.sample()
        s.eval([t])
        g.eval([t])


def test_all_nan_logits_raise_numeric_error(tmp_path, tensors):
    """When every logit is NaN (e.g. a corrupted weight; the random-corruption tests hit this
    often), eval used to return them and the sampler picked token 0 ("a NaN logit never
    wins"), so generate ended at once with empty text and finish_reason "stop". Non-finite
    logits are now an error (LRT_ERR_NUMERIC) naming where they came from, and nothing is
    added to the session (issue 11; the poisoned-layer cases are in test_numeric.py)."""
    t = dict(tensors)
    t["lm_head.weight"] = np.full_like(tensors["lm_head.weight"], np.nan)
    m = loomrt.load(models.write_folder(str(tmp_path / "nan"), CFG, models.safetensors_bytes(t)), threads=1)
    s = m.session()
    with pytest.raises(loomrt.NumericError, match="final norm or LM head"):
        s.eval([1, 2, 3])
    assert s.position == 0
    with pytest.raises(loomrt.StateError):
        s.sample()  # no logits to sample from
    s.configure(loomrt.SamplingParams(temperature=0.8, seed=1))
    with pytest.raises(loomrt.NumericError):
        m.generate([1, 2, 3], max_tokens=4, temperature=0.8, seed=1)
