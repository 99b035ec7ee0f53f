"""Files that are wrong but parse (issue 11 item 4): they must be refused, never run silently.

* A GGUF ``block_count`` or a config.json ``num_hidden_layers`` smaller than the layers whose
  tensors the file holds: the extra layers would be ignored and the model would compute
  something else. Every tensor of the files must be used by the model, or be one of the few
  known harmless extras (HF's old rotary ``inv_freq`` buffers, GPT-2's attention-mask buffers,
  a stored copy of tied LM-head weights); the opt-out is ``allow_unused_tensors=True``
  (``LRT_OPEN_ALLOW_UNUSED_TENSORS``).
* A GGUF tensor whose type is changed to a smaller block type (F32 -> F16, Q8_0 -> Q4_0)
  reads the first part of its old bytes as garbage: the tensors must account for the whole
  data section (each starts where the previous one ends, plus the alignment padding; nothing
  after the last but padding), and extents must not overlap. The same for safetensors (no
  holes, nothing after the last tensor), as the safetensors library itself requires.
"""
from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np
import pytest

import fuzz_child
import loomrt
import models
from loomrt import _lib

CFG = models.MICRO_CONFIG
CFG2 = dict(CFG, num_hidden_layers=2)  # the two-layer model whose second layer a bad header hides
IDS = [1, 2, 3, 5, 8]


def logits(path: str, **kw) -> np.ndarray:
    return loomrt.load(path, threads=1, **kw).logits(IDS)


def first_layer_only(tensors: dict) -> dict:
    return {k: v for k, v in tensors.items() if ".layers.1." not in k}


@pytest.fixture(scope="module")
def t2():
    return models.seeded_llama_tensors(CFG2)


@pytest.fixture(scope="module")
def one_layer_reference(t2, tmp_path_factory) -> np.ndarray:
    """Logits of the honest one-layer model made of the first layer of the two-layer weights."""
    d = str(tmp_path_factory.mktemp("ref") / "one")
    return logits(models.write_folder(d, CFG, models.safetensors_bytes(first_layer_only(t2))))


# ---- layers the header does not count ---------------------------------------------------------


def test_gguf_block_count_smaller_than_tensors(tmp_path, t2, one_layer_reference):
    from gguf import GGUFValueType as T
    from gguf.gguf_writer import GGUFValue

    def fewer_blocks(kv):
        kv["llama.block_count"] = GGUFValue(1, T.UINT32)

    p = models.write_llama_gguf(str(tmp_path / "hidden-layer.gguf"), t2, CFG2, meta_edit=fewer_blocks)
    with pytest.raises(loomrt.FormatError, match=r'blk\.1\.\w+\.weight.*layer 1.*1 layer') as e:
        logits(p)
    assert "allow_unused_tensors" in str(e.value) and "hidden-layer.gguf" in str(e.value)
    # the caller may accept the file as it is: then it computes the one-layer model
    assert np.array_equal(logits(p, allow_unused_tensors=True), one_layer_reference)


def test_config_num_hidden_layers_smaller_than_tensors(tmp_path, t2, one_layer_reference):
    p = models.write_folder(str(tmp_path / "m"), CFG, models.safetensors_bytes(t2))  # 2 layers of tensors
    with pytest.raises(loomrt.FormatError, match=r"model\.layers\.1\..*num_hidden_layers"):
        logits(p)
    assert np.array_equal(logits(p, allow_unused_tensors=True), one_layer_reference)


def test_unknown_tensor_is_named(tmp_path, micro_folder):
    t = dict(models.seeded_llama_tensors(CFG))
    t["model.layers.0.self_attn.q_norm.weight"] = np.ones(4, np.float32)  # a Qwen3 tensor in a llama file
    p = models.write_folder(str(tmp_path / "extra"), CFG, models.safetensors_bytes(t))
    with pytest.raises(loomrt.FormatError, match=r"self_attn\.q_norm\.weight.*not use"):
        logits(p)
    assert np.array_equal(logits(p, allow_unused_tensors=True), logits(micro_folder))


def test_unused_bias_is_refused(tmp_path):
    """A llama config without attention_bias over a file that has q/k/v biases: the biases would
    be dropped silently (the model is really a Qwen2-style one)."""
    t = dict(models.seeded_llama_tensors(CFG))
    t["model.layers.0.self_attn.q_proj.bias"] = np.full(16, 0.5, np.float32)
    p = models.write_folder(str(tmp_path / "bias"), CFG, models.safetensors_bytes(t))
    with pytest.raises(loomrt.FormatError, match=r"q_proj\.bias"):
        logits(p)


def test_gguf_unknown_tensor(tmp_path, micro_gguf):
    tensors = models.seeded_llama_tensors(CFG)

    def add(ts):
        ts["blk.0.ffn_gate_exps.weight"] = np.zeros((2, 32, 16), np.float32)

    p = models.write_llama_gguf(str(tmp_path / "x.gguf"), tensors, CFG, meta_edit=None, tensor_edit=add)
    with pytest.raises(loomrt.FormatError, match=r"ffn_gate_exps"):
        logits(p)
    ref = models.write_llama_gguf(str(tmp_path / "ref.gguf"), tensors, CFG)
    assert np.array_equal(logits(p, allow_unused_tensors=True), logits(ref))


def test_known_harmless_extras_load(tmp_path, micro_folder):
    """HF checkpoints of older transformers versions carry the rotary inv_freq buffers; tied
    models sometimes store the LM head anyway (HF ignores it and ties). Both load as they are."""
    base = logits(micro_folder)
    t = dict(models.seeded_llama_tensors(CFG))
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(2, np.float32)
    p = models.write_folder(str(tmp_path / "inv"), CFG, models.safetensors_bytes(t))
    assert np.array_equal(logits(p), base)
    tied = dict(CFG, tie_word_embeddings=True)
    t = dict(models.seeded_llama_tensors(tied))
    ref = logits(models.write_folder(str(tmp_path / "tied"), tied, models.safetensors_bytes(t)))
    t["lm_head.weight"] = t["model.embed_tokens.weight"].copy()
    assert np.array_equal(logits(models.write_folder(str(tmp_path / "tied2"), tied, models.safetensors_bytes(t))), ref)


def test_gpt2_attention_buffers_are_harmless(tmp_path, hf_models):
    """Older GPT-2 checkpoints store the causal-mask buffers h.N.attn.bias / masked_bias."""
    from safetensors.numpy import load_file, save_file

    src = hf_models["gpt2"].f32_dir
    d = str(tmp_path / "gpt2")
    shutil.copytree(src, d)
    t = load_file(os.path.join(d, "model.safetensors"))
    n = models.MAX_POS
    for l in range(models.LAYERS):
        t[f"h.{l}.attn.bias"] = np.tril(np.ones((n, n), np.uint8)).reshape(1, 1, n, n)
        t[f"h.{l}.attn.masked_bias"] = np.array(-1e4, np.float32)
    prefixed = any(k.startswith("transformer.") for k in load_file(os.path.join(src, "model.safetensors")))
    if prefixed:
        t = {(k if k.startswith("transformer.") or k.startswith("lm_head") else "transformer." + k): v
             for k, v in t.items()}
    save_file(t, os.path.join(d, "model.safetensors"))
    assert np.array_equal(logits(d), logits(src))


def test_open_flag_value():
    assert _lib.lib.LRT_OPEN_ALLOW_UNUSED_TENSORS == 16


# ---- tensor extents: overlap, holes, trailing bytes, retyped tensors ------------------------------


def _patch(path: str, out: str, edit) -> str:
    data = bytearray(open(path, "rb").read())
    edit(data, fuzz_child.gguf_layout(bytes(data)))
    with open(out, "wb") as f:
        f.write(bytes(data))
    return out


def _q8_gguf(path: str) -> str:
    from gguf import GGMLQuantizationType as QT
    from gguf.quants import quantize

    raw = {}

    def to_q8(ts):
        for name in list(ts):
            if ts[name].ndim == 2:
                ts[name] = quantize(ts[name], QT.Q8_0)
                raw[name] = QT.Q8_0

    cfg = dict(CFG, hidden_size=32, intermediate_size=64)  # rows of 32 and 64: whole Q8_0 blocks
    return models.write_llama_gguf(path, models.seeded_llama_tensors(cfg), cfg, tensor_edit=to_q8, raw_dtypes=raw)


@pytest.mark.parametrize("old,new,where", [(0, 1, "first"), (0, 1, "last"), (8, 2, "middle"), (8, 3, "last"),
                                           (8, 2, "first")],
                         ids=["f32-f16-first", "f32-f16-last", "q8_0-q4_0", "q8_0-q4_1-last", "q8_0-q4_0-first"])
def test_gguf_retyped_to_smaller_type(tmp_path, micro_gguf, old, new, where):
    base = micro_gguf if old == 0 else _q8_gguf(str(tmp_path / "q8.gguf"))
    logits(base)  # the unedited file loads

    def retype(data, lay):
        cands = sorted((t for t in lay["tensors"] if t["type"] == old and len(t["ne"]) == 2), key=lambda t: t["offset"])
        t = {"first": cands[0], "last": cands[-1], "middle": cands[len(cands) // 2]}[where]
        retype.name = t["name"]
        assert fuzz_child.gguf_nbytes(t["ne"], new) < fuzz_child.gguf_nbytes(t["ne"], old)
        struct.pack_into("<I", data, t["type_at"], new)

    p = _patch(base, str(tmp_path / "retyped.gguf"), retype)
    with pytest.raises(loomrt.FormatError, match=r"belong to no tensor") as e:
        logits(p)
    assert retype.name in str(e.value), str(e.value)


def test_gguf_overlapping_extents(tmp_path, micro_gguf):
    def overlap(data, lay):
        ts = sorted(lay["tensors"], key=lambda t: t["offset"])
        struct.pack_into("<Q", data, ts[3]["offset_at"], ts[2]["offset"])

    with pytest.raises(loomrt.FormatError, match="overlap"):
        logits(_patch(micro_gguf, str(tmp_path / "overlap.gguf"), overlap))


def test_gguf_hole_and_trailing_bytes(tmp_path, micro_gguf):
    raw = open(micro_gguf, "rb").read()
    lay = fuzz_child.gguf_layout(raw)
    al = lay["alignment"]
    p = tmp_path / "trail.gguf"
    p.write_bytes(raw + b"\0" * al)  # one more aligned block after the padding of the last tensor
    with pytest.raises(loomrt.FormatError, match="belong to no tensor"):
        logits(str(p))
    assert (len(raw) - lay["data_start"]) % al == 0  # gguf-py pads after the last tensor too: that loads

    def shift_last(data, lay):  # move the last tensor one alignment unit later (into the added bytes)
        t = max(lay["tensors"], key=lambda t: t["offset"])
        struct.pack_into("<Q", data, t["offset_at"], t["offset"] + lay["alignment"])
        data.extend(b"\0" * lay["alignment"])

    with pytest.raises(loomrt.FormatError, match="belong to no tensor"):
        logits(_patch(micro_gguf, str(tmp_path / "hole.gguf"), shift_last))


def test_safetensors_hole_and_trailing_bytes(tmp_path):
    t = models.seeded_llama_tensors(CFG)
    good = models.safetensors_bytes(t)
    with pytest.raises(loomrt.FormatError, match="belong to no tensor"):
        logits(models.write_folder(str(tmp_path / "trail"), CFG, good + b"\0" * 8))

    def hole(h):  # every tensor after the first moves 4 bytes later: a 4-byte hole
        first = min(v["data_offsets"][0] for k, v in h.items())
        for v in h.values():
            if v["data_offsets"][0] != first:
                v["data_offsets"] = [v["data_offsets"][0] + 4, v["data_offsets"][1] + 4]

    body = models.safetensors_bytes(t, header_edit=hole)
    hlen = int.from_bytes(body[:8], "little")
    first = min(v["data_offsets"][1] for v in json.loads(body[8:8 + hlen]).values() if v["data_offsets"][0] == 0)
    data = body[8 + hlen:]
    body = body[:8 + hlen] + data[:first] + b"\0" * 4 + data[first:]  # bytes really moved, hole zeroed
    with pytest.raises(loomrt.FormatError, match="belong to no tensor"):
        logits(models.write_folder(str(tmp_path / "hole"), CFG, body))
