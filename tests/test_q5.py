"""GGUF Q5_0 / Q5_1 computed in place (the fallback type llama.cpp's K-quant presets use for
rows that are not a multiple of 256 long: every matrix of SmolLM2-135M in a Q4_K_M file).

* a Q5_0 / Q5_1 GGUF written by gguf-py gives the logits bits of the F32 GGUF holding its
  weights as gguf-py dequantizes them, on every kernel path (every path's kernels are also
  compared with the reference by csrc/tests/test_kernels.c);
* a Q4_K_M file made by llama.cpp's own quantizer (llama-cpp-python) from the shipped model
  loads, mixing Q5_0, Q4_K, Q6_K and Q8_0, and equals its F32 dequantization bit for bit.
"""
from __future__ import annotations

import ctypes
import json
import os

import numpy as np
import pytest

import loomrt
import models

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

IDS = [1, 5, 9, 200, 17, 3, 64, 128, 255, 0, 42, 7, 99, 31]


def pair(seeded_folder, tmp_path, qt):
    """(Q5 GGUF, F32 GGUF of its gguf-py dequantized weights) of the seeded llama, with a
    few blocks given extreme F16 scales (+-65504, subnormal, 0) by hand."""
    from safetensors.numpy import load_file

    cfg = json.load(open(os.path.join(seeded_folder, "config.json"), encoding="utf-8"))
    tensors = load_file(os.path.join(seeded_folder, "model.safetensors"))
    raw, deq = {}, {}
    rng = np.random.default_rng(4)

    def to_q(out):
        for name in list(out):
            if out[name].ndim != 2:
                continue
            q = quantize(out[name], qt)
            blocks = q.reshape(-1, 22 if qt == QT.Q5_0 else 24)
            for b in rng.choice(len(blocks), size=min(6, len(blocks)), replace=False):
                blocks[b, 0:2] = np.array([rng.choice([0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x0000, 0x03FF])],
                                          dtype="<u2").view(np.uint8)
            out[name] = q
            raw[name] = qt
            deq[name] = dequantize(q, qt).astype(np.float32).reshape(q.shape[0], -1)

    qpath = models.write_llama_gguf(str(tmp_path / f"{qt.name}.gguf"), tensors, cfg, tensor_edit=to_q, raw_dtypes=raw)

    def to_f32(out):
        for name in deq:
            out[name] = deq[name]

    fpath = models.write_llama_gguf(str(tmp_path / f"{qt.name}.f32.gguf"), tensors, cfg, tensor_edit=to_f32)
    return qpath, fpath


@pytest.fixture
def restore_kernels():
    before = loomrt.kernel_path()
    yield
    loomrt.set_kernel_path(before)


@pytest.mark.parametrize("qt", [QT.Q5_0, QT.Q5_1], ids=["Q5_0", "Q5_1"])
def test_logits_equal_dequantized_f32(seeded_folder, tmp_path, qt, restore_kernels):
    qpath, fpath = pair(seeded_folder, tmp_path, qt)
    want = loomrt.load(fpath, threads=1).logits(IDS)
    for path in loomrt.kernel_paths():
        loomrt.set_kernel_path(path)
        m = loomrt.load(qpath, threads=2)
        assert m.info["dtype"] == qt.name.lower()
        got = m.logits(IDS)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), path
        s = m.session()  # prefill in pieces (widened rows) == decode (fused kernels)
        rows = [s.eval(IDS[:6], all_logits=True)] + [s.eval([t], all_logits=True) for t in IDS[6:]]
        assert np.array_equal(np.concatenate(rows).view(np.uint32), want.view(np.uint32)), path
    # the weights stay quantized: 22 / 24 bytes per 32 weights (plus the F32 norm vectors)
    shapes = models.llama_tensor_shapes(models.SEEDED_CONFIG)
    mats = sum(int(np.prod(s)) for n, s in shapes if len(s) == 2)
    vecs = sum(int(np.prod(s)) for n, s in shapes if len(s) == 1)
    assert m.info["weight_bytes"] == mats // 32 * (22 if qt == QT.Q5_0 else 24) + 4 * vecs


@pytest.mark.realmodel
def test_llama_cpp_q4_k_m_of_the_real_model(tmp_path):
    """llama.cpp's Q4_K_M preset on SmolLM2 (rows of 576 and 1536: mostly Q5_0 fallbacks)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from loomrt._formats import dequantized_f32

    src = loomrt.default_model_path()
    dst = str(tmp_path / "smollm2.q4_k_m.gguf")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    p.nthread = 2
    p.allow_requantize = True
    assert llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)) == 0
    types = {t.tensor_type.name for t in gguf.GGUFReader(dst).tensors}
    assert {"Q5_0", "Q4_K", "Q6_K"} <= types
    m = loomrt.load(dst, threads=2)
    ref = loomrt.load(dequantized_f32(dst, out_dir=str(tmp_path)), threads=2)
    ids = m.encode("The capital of France is")
    a, b = m.logits(ids), ref.logits(ids)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
