"""Quantizing a float model to Q8_0 at load (``quantize="q8_0"``, ``--quantize q8_0``,
LRT_OPEN_QUANTIZE_Q8_0; the rule is in docs/numerics.md).

* the C quantizer writes the same bytes as gguf-py's Q8_0 (random rows over many scales,
  ties, zero blocks, scales that are F16 subnormals) and its F32 -> F16 rounding equals
  NumPy's over a sweep of float bit patterns;
* a float model quantized at load gives the logits bits of a Q8_0 GGUF that gguf-py wrote
  from the same weights (HF F32 folder, tied embeddings, F16 GGUF source);
* weights it cannot quantize (NaN, a scale beyond F16) fail the open with a clear error;
* receipts record it and the verifier loads the model the same way.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil

import numpy as np
import pytest

import loomrt
import models

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    """csrc/base/convert.c alone as a shared library (its functions have default visibility)."""
    lib = models.build_c_helper(None, str(tmp_path_factory.mktemp("convert")), "convert", ["base/convert.c"])
    lib.lrt_quantize_q8_0.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.lrt_quantize_q8_0.restype = ctypes.c_int
    lib.lrt_f32_to_f16.argtypes = [ctypes.c_float]
    lib.lrt_f32_to_f16.restype = ctypes.c_uint16
    return lib


def c_quantize(lib, x: np.ndarray):
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros(x.size // 32 * 34, dtype=np.uint8)
    rc = lib.lrt_quantize_q8_0(x.ctypes.data, out.ctypes.data, x.size)
    return rc, out


# ---- the rule, against gguf-py -------------------------------------------------------------------


def crafted_blocks() -> np.ndarray:
    """Blocks that separate rounding rules: exact .5 ties (d = 2^-k, so x * id is exact),
    an all-zero block, scales that are F16 subnormals or round to 0 in F16, a lone spike."""
    rng = np.random.default_rng(7)
    blocks = []
    ties = np.array([127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 126.5, -126.5, 3.5] + [0.25] * 22, dtype=np.float64)
    for k in (0, 3, 10, 20):
        blocks.append(ties * 2.0 ** -k)
    blocks.append(np.zeros(32))
    for amax in (5e-3, 1e-4, 7.6e-6, 1e-7, 1e-9):  # d = amax/127 below F16's normal range (6.1e-5)
        b = rng.uniform(-amax, amax, 32)
        b[3] = amax
        blocks.append(b)
    spike = np.full(32, 1e-3)
    spike[17] = -40.0
    blocks.append(spike)
    return np.concatenate(blocks).astype(np.float32)


def test_quantize_bytes_match_gguf_py(conv):
    rng = np.random.default_rng(11)
    parts = [crafted_blocks()]
    for scale in (1e-6, 1e-3, 0.05, 1.0, 30.0, 1e4, 1e6):
        parts.append((rng.standard_normal(32 * 64) * scale).astype(np.float32))
    parts.append(rng.uniform(-1, 1, 32 * 64).astype(np.float32).astype(np.float16).astype(np.float32))  # F16 sources
    x = np.concatenate(parts)
    rc, got = c_quantize(conv, x)
    assert rc == 0
    want = gguf_quantize(x.reshape(-1, 32), QT.Q8_0).reshape(-1)
    diff = np.flatnonzero(got != want)
    assert diff.size == 0, f"first differing byte {diff[0]} (block {diff[0] // 34}): {got[diff[0]]} != {want[diff[0]]}"
    # the ties went away from zero (2.5 -> 3, not the even 2)
    assert got[2 + 1] == 3 and got[2 + 2] == (256 - 3)


def test_quantize_rejects_what_q8_0_cannot_hold(conv):
    ok = np.ones(64, dtype=np.float32)
    for bad in (np.nan, np.inf, -np.inf, 1e7, 3e38, 1e-39):  # NaN, inf, d beyond F16, 1/d overflows
        x = ok.copy()
        x[40] = bad
        if bad == 1e-39:
            x[32:] = bad  # the whole block tiny: d is a float subnormal
        rc, _ = c_quantize(conv, x)
        assert rc == -1, bad
    rc, _ = c_quantize(conv, ok)
    assert rc == 0


def test_f32_to_f16_matches_numpy(conv):
    """Round to nearest even, subnormals, overflow: a stride through all float bit patterns
    plus every pattern next to a half-way point of the normal range."""
    f = conv.lrt_f32_to_f16
    sweep = np.arange(0, 2 ** 32, 104729, dtype=np.uint64).astype(np.uint32)  # a prime stride
    hi = np.arange(0x33000000 >> 13, 0x47800000 >> 13, 37, dtype=np.uint32) << 13  # around the ties
    bits = np.concatenate([sweep, hi | 0x0FFF, hi | 0x1000, hi | 0x1001, hi | 0x0000,
                           np.array([0x477FEFFF, 0x477FF000, 0x33000000, 0x33000001, 0x387FFFFF, 0x38800000],
                                    dtype=np.uint32)])
    vals = bits.view(np.float32)
    vals = vals[~np.isnan(vals)]  # NaNs are never quantized (the quantizer rejects them)
    with np.errstate(over="ignore"):
        want = vals.astype(np.float16).view(np.uint16)
    got = np.array([f(float(v)) for v in vals], dtype=np.uint16)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{vals[bad[0]]!r}: {got[bad[0]]:#06x} != numpy {want[bad[0]]:#06x}"


# ---- whole models ---------------------------------------------------------------------------------


def q8_gguf(folder: str, path: str, cfg_edit=None) -> str:
    """GGUF of a seeded float32 folder with every matrix quantized to Q8_0 by gguf-py."""
    from safetensors.numpy import load_file

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    raw = {}

    def to_q8(out):
        for name in list(out):
            if out[name].ndim == 2:
                out[name] = gguf_quantize(out[name], QT.Q8_0)
                raw[name] = QT.Q8_0

    return models.write_llama_gguf(path, tensors, cfg, tensor_edit=to_q8, raw_dtypes=raw)


IDS = [1, 5, 9, 200, 17, 3, 64, 128, 255, 0, 42, 7]


def test_folder_quantized_at_load_equals_gguf_py_q8_0(seeded_folder, tmp_path):
    ref = loomrt.load(q8_gguf(seeded_folder, str(tmp_path / "q8.gguf")), threads=1)
    assert ref.info["dtype"] == "q8_0"
    for threads in (1, 2):
        m = loomrt.load(seeded_folder, threads=threads, quantize="q8_0")
        assert m.info["dtype"] == "q8_0" and m.quantize == "q8_0"
        a, b = m.logits(IDS), ref.logits(IDS)
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    plain = loomrt.load(seeded_folder, threads=1)
    assert plain.info["dtype"] == "f32"
    assert not np.array_equal(plain.logits(IDS), a)  # quantizing changed the numbers
    # the matrices live in loomrt's memory as Q8_0: 34 bytes per 32 weights (plus small vectors)
    mat_params = sum(int(np.prod(s)) for n, s in models.llama_tensor_shapes(models.SEEDED_CONFIG) if len(s) == 2)
    assert mat_params * 34 // 32 <= m.info["resident_bytes"] < mat_params * 34 // 32 + 64 * 1024


def test_tied_embeddings_and_f16_gguf_source(seeded_folder, tmp_path):
    """A tied HF folder (one Q8_0 copy serves embedding and LM head) and an F16 GGUF both
    equal the gguf-py Q8_0 file of the same values."""
    from safetensors.numpy import load_file, save_file

    tied = tmp_path / "tied"
    tied.mkdir()
    cfg = json.load(open(os.path.join(seeded_folder, "config.json"), encoding="utf-8"))
    cfg["tie_word_embeddings"] = True
    (tied / "config.json").write_text(json.dumps(cfg))
    ts = load_file(os.path.join(seeded_folder, "model.safetensors"))
    ts.pop("lm_head.weight")
    # F16 values, so the F16 GGUF below holds the same numbers
    ts = {k: (v.astype(np.float16).astype(np.float32) if v.ndim == 2 else v) for k, v in ts.items()}
    save_file(ts, str(tied / "model.safetensors"))
    ref = loomrt.load(q8_gguf(str(tied), str(tmp_path / "q8.gguf")), threads=1).logits(IDS)

    got = loomrt.load(str(tied), threads=1, quantize="q8_0").logits(IDS)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))

    def to_f16(out):
        for name in list(out):
            if out[name].ndim == 2:
                out[name] = out[name].astype(np.float16)

    f16 = models.write_llama_gguf(str(tmp_path / "f16.gguf"), ts, cfg, tensor_edit=to_f16)
    m = loomrt.load(f16, threads=1, quantize="q8_0")
    assert m.info["dtype"] == "q8_0"
    assert np.array_equal(m.logits(IDS).view(np.uint32), ref.view(np.uint32))


def test_block_quantized_weights_are_kept(seeded_folder, tmp_path):
    """A Q8_0 file opened with quantize="q8_0" is used as it is (same bits as without)."""
    path = q8_gguf(seeded_folder, str(tmp_path / "q8.gguf"))
    a = loomrt.load(path, threads=1, quantize="q8_0").logits(IDS)
    b = loomrt.load(path, threads=1).logits(IDS)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_unquantizable_weights_fail_the_open(seeded_folder, tmp_path):
    from safetensors.numpy import load_file, save_file

    bad = tmp_path / "nan"
    shutil.copytree(seeded_folder, bad)
    ts = load_file(str(bad / "model.safetensors"))
    ts["model.layers.1.mlp.up_proj.weight"][5, 40] = np.nan
    save_file(ts, str(bad / "model.safetensors"))
    with pytest.raises(loomrt.FormatError, match=r"cannot quantize layer 1 w_up to Q8_0: row 5 .*NaN"):
        loomrt.load(str(bad), quantize="q8_0")
    loomrt.load(str(bad))  # without quantizing the file opens (the NaN is the user's business)


def test_bad_quantize_argument(seeded_folder):
    with pytest.raises(loomrt.InvalidArgumentError, match="quantize must be None or one of q8_0"):
        loomrt.load(seeded_folder, quantize="q4_0")


def test_gpt2_transposed_matrices(tmp_path):
    """GPT-2 stores its Conv1D matrices transposed; loomrt transposes them once and then
    quantizes the rows it computes with. The result equals the float model whose weights are
    replaced by their gguf-py Q8_0 round trip (rows of the transposed matrices), and the float
    copies are freed: the model holds about 34/32 bytes per matrix weight, not 4 + 34/32."""
    pytest.importorskip("torch")
    from gguf.quants import dequantize
    from safetensors.numpy import load_file, save_file

    hf = models.build_hf_model("gpt2", seed=3)
    src = tmp_path / "gpt2"
    hf.save_pretrained(str(src), safe_serialization=True)
    ts = load_file(str(src / "model.safetensors"))
    ref_dir = tmp_path / "gpt2-q8-roundtrip"
    shutil.copytree(src, ref_dir)

    def roundtrip(rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        return dequantize(gguf_quantize(rows, QT.Q8_0), QT.Q8_0).astype(np.float32).reshape(rows.shape)

    out = {}
    for name, a in ts.items():
        if a.ndim == 2 and name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            out[name] = np.ascontiguousarray(roundtrip(a.T).T)  # stored (in, out): rows of the transpose
        elif a.ndim == 2 and name.endswith("wte.weight"):
            out[name] = roundtrip(a)
        else:
            out[name] = a
    save_file(out, str(ref_dir / "model.safetensors"), metadata={"format": "pt"})
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    plain = loomrt.load(str(src), threads=1)
    want = loomrt.load(str(ref_dir), threads=1).logits(ids)
    for threads in (1, 2):
        m = loomrt.load(str(src), threads=threads, quantize="q8_0")
        assert np.array_equal(m.logits(ids).view(np.uint32), want.view(np.uint32))
    mat = sum(a.size for n, a in ts.items() if a.ndim == 2 and not n.endswith("wpe.weight"))
    conv = sum(a.size for n, a in ts.items() if n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")))
    # the plain model owns float32 transposed copies of the Conv1D matrices (4 bytes each); the
    # quantized one owns Q8_0 copies of every matrix and none of those float copies
    assert m.info["resident_bytes"] == plain.info["resident_bytes"] - conv * 4 + mat * 34 // 32
