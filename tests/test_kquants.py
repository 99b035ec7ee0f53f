"""GGUF K-quants (Q4_K, Q5_K, Q6_K) computed in place, without dequantizing the model.

gguf-py cannot quantize K-quants, so the tests write random valid blocks (finite F16 d /
dmin, every other byte random) as raw tensor bytes. Checked here:

* loomrt's row dequantization (every kernel path) equals ``gguf.quants.dequantize`` bit for
  bit (the rule of docs/numerics.md is the float32 order gguf-py uses);
* a K-quant GGUF gives bit-identical logits to an F32 GGUF holding the dequantized weights,
  for 1 and 2 threads, prefill at once and token by token (fused decode kernels), on every
  kernel path;
* truncated tensors and rows that are not a multiple of 256 are clean load errors;
* llama.cpp (if it loads the tiny file) agrees approximately on the Q4_K model.
"""
from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import loomrt
import models

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf.quants import dequantize  # noqa: E402


CFG = dict(models.SEEDED_CONFIG, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, vocab_size=64, max_position_embeddings=64,
           eos_token_id=2)
SEQ = [(7 * i + 3) % CFG["vocab_size"] for i in range(24)]

BLOCK_BYTES = {QT.Q4_K: 144, QT.Q5_K: 176, QT.Q6_K: 210}
KINDS = {"Q4_K": QT.Q4_K, "Q5_K": QT.Q5_K, "Q6_K": QT.Q6_K}


def random_blocks(qt: QT, rows: int, cols: int, amp: float, rng: np.random.Generator) -> np.ndarray:
    """rows x (cols / 256 blocks) of random bytes with valid F16 scales, weights about +-amp."""
    assert cols % 256 == 0
    nb = rows * cols // 256
    b = rng.integers(0, 256, size=(nb, BLOCK_BYTES[qt]), dtype=np.uint8)

    def f16(v):
        return np.asarray(v, dtype=np.float16).reshape(nb, 1).view(np.uint8)

    u = rng.uniform(0.5, 1.5, size=nb)
    if qt == QT.Q4_K:
        b[:, 0:2] = f16(amp / (32 * 15) * u)
        b[:, 2:4] = f16(amp / 32 * rng.uniform(0.5, 1.5, size=nb))
    elif qt == QT.Q5_K:
        b[:, 0:2] = f16(amp / (32 * 31) * u)
        b[:, 2:4] = f16(amp / 32 * rng.uniform(0.5, 1.5, size=nb))
    else:
        b[:, 208:210] = f16(amp / (64 * 32) * u * rng.choice([-1.0, 1.0], size=nb))
    return b.reshape(rows, cols // 256 * BLOCK_BYTES[qt])


def quant_tensors(kind: str, seed: int = 5):
    """GGUF-named raw blocks for every matrix: one type, or "mixed" (Q4_K with Q6_K for the
    output, V and down projections, like llama.cpp's Q4_K_M)."""
    rng = np.random.default_rng(seed)
    shapes = {"token_embd.weight": (CFG["vocab_size"], CFG["hidden_size"]),
              "output.weight": (CFG["vocab_size"], CFG["hidden_size"])}
    hd = CFG["hidden_size"] // CFG["num_attention_heads"]
    kvd = CFG["num_key_value_heads"] * hd
    for l in range(CFG["num_hidden_layers"]):
        d, f = CFG["hidden_size"], CFG["intermediate_size"]
        shapes.update({f"blk.{l}.attn_q.weight": (d, d), f"blk.{l}.attn_k.weight": (kvd, d),
                       f"blk.{l}.attn_v.weight": (kvd, d), f"blk.{l}.attn_output.weight": (d, d),
                       f"blk.{l}.ffn_gate.weight": (f, d), f"blk.{l}.ffn_up.weight": (f, d),
                       f"blk.{l}.ffn_down.weight": (d, f)})
    raw, types = {}, {}
    for name, (r, c) in shapes.items():
        if kind == "mixed":
            qt = QT.Q6_K if name.startswith("output") or "attn_v" in name or "ffn_down" in name else QT.Q4_K
        else:
            qt = KINDS[kind]
        amp = 1.0 if name == "token_embd.weight" else float(np.sqrt(3.0 / c))
        raw[name] = random_blocks(qt, r, c, amp, rng)
        types[name] = qt
    return raw, types


def write_pair(tmp_path, kind: str):
    """(K-quant GGUF, F32 GGUF of the same weights dequantized by gguf-py, raw, types)"""
    raw, types = quant_tensors(kind)
    tensors = models.seeded_llama_tensors(CFG, 99)  # norms (and unused float matrices)
    tokens, merges = models.byte_level_vocab(CFG["vocab_size"] - 4, [("#", "$"), ("%", "&"), ("#$", "%&"), ("(", ")")])

    def put_raw(out):
        out.update(raw)

    def put_f32(out):
        for n, b in raw.items():
            out[n] = dequantize(b, types[n])

    q = models.write_llama_gguf(str(tmp_path / f"{kind}.gguf"), tensors, CFG, tokens, merges,
                                tensor_edit=put_raw, raw_dtypes=types)
    f = models.write_llama_gguf(str(tmp_path / f"{kind}-f32.gguf"), tensors, CFG, tokens, merges,
                                tensor_edit=put_f32)
    return q, f, raw, types


def chunked_logits(m, ids, chunk, threads):
    s = m.session(threads=threads)
    return np.concatenate([s.eval(ids[i:i + chunk], all_logits=True) for i in range(0, len(ids), chunk)])


@pytest.fixture
def restore_kernels():
    yield
    loomrt.set_kernel_path("auto")


# ---- (a) row dequantization vs gguf-py ----------------------------------------------------------

HELPER = r"""
#include <string.h>
#include "kernels/kernels.h"
#include "include/loomrt.h"
/* kind 0/1/2 = Q4_K/Q5_K/Q6_K; dequantize `rows` rows of n elements with the named path */
int kq_dequant(const char *path, int kind, const unsigned char *w, long long row_bytes,
               long long rows, long long n, float *y) {
  if (lrt_kernels_select(path, strlen(path)) != 0) return -1;
  const lrt_kernels *k = lrt_kernels_get();
  void (*f)(const void *, float *, int64_t) = kind == 0 ? k->dequant_q4_k : kind == 1 ? k->dequant_q5_k : k->dequant_q6_k;
  for (long long r = 0; r < rows; r++) f(w + r * row_bytes, y + r * n, n);
  return 0;
}
/* the fused decode kernel on 4 rows */
int kq_dot4(const char *path, int kind, const unsigned char *w, long long row_bytes,
            const float *x, long long n, float *y) {
  if (lrt_kernels_select(path, strlen(path)) != 0) return -1;
  const lrt_kernels *k = lrt_kernels_get();
  void (*f)(const void *, int64_t, const float *, int64_t, float *) =
      kind == 0 ? k->dot4_q4_k : kind == 1 ? k->dot4_q5_k : k->dot4_q6_k;
  f(w, row_bytes, x, n, y);
  return 0;
}
"""


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    lib = models.build_c_helper(HELPER, str(tmp_path_factory.mktemp("kqhelper")), "kq_helper")
    ptr = ctypes.c_void_p
    lib.kq_dequant.argtypes = [ctypes.c_char_p, ctypes.c_int, ptr, ctypes.c_longlong, ctypes.c_longlong,
                               ctypes.c_longlong, ptr]
    lib.kq_dot4.argtypes = [ctypes.c_char_p, ctypes.c_int, ptr, ctypes.c_longlong, ptr, ctypes.c_longlong, ptr]
    return lib


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_K", "Q6_K"])
def test_dequant_matches_gguf_py(helper, kind):
    qt = KINDS[kind]
    rng = np.random.default_rng(11)
    rows, n = 8, 1024
    w = random_blocks(qt, rows, n, 1.0, rng)
    # also extreme but finite scales: largest and subnormal halves, negative d / dmin
    w[0, 0:2] = np.array([65504.0], dtype=np.float16).view(np.uint8)
    w[1, 0:2] = np.array([2.0 ** -24], dtype=np.float16).view(np.uint8)
    if qt != QT.Q6_K:
        w[2, 2:4] = np.array([-3.5], dtype=np.float16).view(np.uint8)
    else:
        w[2, 208:210] = np.array([-1e-3], dtype=np.float16).view(np.uint8)
    want = dequantize(w, qt)
    assert want.dtype == np.float32 and want.shape == (rows, n)
    kind_i = ["Q4_K", "Q5_K", "Q6_K"].index(kind)
    for path in loomrt.kernel_paths():
        got = np.zeros((rows, n), dtype=np.float32)
        assert helper.kq_dequant(path.encode(), kind_i, w.ctypes.data, w.shape[1], rows, n, got.ctypes.data) == 0
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), path
        x = rng.standard_normal(n).astype(np.float32)
        y = np.zeros(4, dtype=np.float32)
        ref = np.zeros(4, dtype=np.float32)
        for r0 in (0, 4):
            wr = np.ascontiguousarray(w[r0:r0 + 4])
            assert helper.kq_dot4(path.encode(), kind_i, wr.ctypes.data, w.shape[1], x.ctypes.data, n, y.ctypes.data) == 0
            assert helper.kq_dot4(b"reference", kind_i, wr.ctypes.data, w.shape[1], x.ctypes.data, n, ref.ctypes.data) == 0
            assert np.array_equal(y.view(np.uint32), ref.view(np.uint32)), path


# ---- (b) logits: K-quant GGUF == F32 GGUF of the dequantized weights -----------------------------

@pytest.mark.parametrize("kind", ["Q4_K", "Q5_K", "Q6_K", "mixed"])
def test_logits_equal_dequantized_f32(tmp_path, restore_kernels, kind):
    qpath, fpath, _, _ = write_pair(tmp_path, kind)
    f = loomrt.load(fpath, threads=1)
    want = chunked_logits(f, SEQ, len(SEQ), 1)
    assert np.isfinite(want).all() and want.std() > 0.05
    for path in loomrt.kernel_paths():
        loomrt.set_kernel_path(path)
        m = loomrt.load(qpath, threads=1)
        assert m.info["dtype"] == ("q4_k" if kind == "mixed" else kind.lower())
        for threads in (1, 2):
            for chunk in (len(SEQ), 1, 5):
                got = chunked_logits(m, SEQ, chunk, threads)
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (path, threads, chunk)
        # greedy generation agrees too
        assert list(m.stream_tokens(SEQ[:5], 8, temperature=0)) == list(f.stream_tokens(SEQ[:5], 8, temperature=0))


def test_weights_stay_quantized(tmp_path):
    """The model is not dequantized at load: its weight bytes are the K-quant sizes."""
    qpath, fpath, raw, _ = write_pair(tmp_path, "Q4_K")
    mq, mf = loomrt.load(qpath), loomrt.load(fpath)
    assert mq.info["parameters"] == mf.info["parameters"]
    assert os.path.getsize(qpath) < os.path.getsize(fpath) / 5


# ---- (c) malformed K-quant files ----------------------------------------------------------------

def _tensor_info_offset(data: bytes, name: str) -> int:
    """Byte offset of the tensor-info record (its n_dims field) of `name` in a GGUF."""
    key = struct.pack("<Q", len(name)) + name.encode()
    i = data.index(key)
    return i + len(key)


def test_truncated_kquant_tensor(tmp_path):
    qpath, _, _, _ = write_pair(tmp_path, "Q4_K")
    data = open(qpath, "rb").read()
    for cut in (len(data) - 1, len(data) - 144, len(data) - 5000):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        with pytest.raises(loomrt.FormatError):
            loomrt.load(str(p))


def test_row_not_multiple_of_256(tmp_path):
    qpath, _, _, _ = write_pair(tmp_path, "Q6_K")
    data = bytearray(open(qpath, "rb").read())
    o = _tensor_info_offset(bytes(data), "blk.0.attn_q.weight")
    n_dims = struct.unpack_from("<I", data, o)[0]
    assert n_dims == 2
    ne0, ne1 = struct.unpack_from("<QQ", data, o + 4)
    assert ne0 == 256
    struct.pack_into("<QQ", data, o + 4, 128, ne1 * 2)  # same bytes, rows of 128
    p = tmp_path / "rows128.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(loomrt.FormatError, match="multiple of the Q6_K block size 256"):
        loomrt.load(str(p))


def test_wrong_type_size_is_clean(tmp_path):
    """A Q4_K tensor whose declared type is changed to Q6_K reads past its bytes or overlaps the
    next tensor: a FormatError, never a crash."""
    qpath, _, _, _ = write_pair(tmp_path, "Q4_K")
    data = bytearray(open(qpath, "rb").read())
    o = _tensor_info_offset(bytes(data), "output.weight")
    t = o + 4 + 2 * 8
    assert struct.unpack_from("<I", data, t)[0] == int(QT.Q4_K)
    struct.pack_into("<I", data, t, int(QT.Q6_K))
    p = tmp_path / "retyped.gguf"
    p.write_bytes(bytes(data))
    try:
        m = loomrt.load(str(p))
    except loomrt.FormatError:
        return
    m.logits(SEQ[:4])  # if it still parses (the bytes lie within the data), it must compute


# ---- llama.cpp as an approximate peer ----------------------------------------------------------

LLAMA_CHILD = r"""
import json, sys
import numpy as np
from llama_cpp import Llama
ids = json.loads(sys.argv[2])
llm = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, logits_all=True, verbose=False, n_batch=64)
llm.eval(ids)
print(json.dumps(np.asarray(llm.scores[:len(ids)], dtype=np.float64).tolist()))
"""


def test_q4_k_close_to_llama_cpp(tmp_path):
    pytest.importorskip("llama_cpp")
    import json

    qpath, _, _, _ = write_pair(tmp_path, "Q4_K")
    p = subprocess.run([sys.executable, "-c", LLAMA_CHILD, qpath, json.dumps(SEQ)], capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        pytest.skip("llama.cpp cannot load the tiny K-quant model: " + p.stderr[-500:])
    theirs = np.asarray(json.loads(p.stdout.strip().splitlines()[-1]), dtype=np.float64)
    ours = loomrt.load(qpath).logits(SEQ).astype(np.float64)
    assert theirs.shape == ours.shape
    # llama.cpp rounds activations to 8 bits (Q8_K) before the K-quant dot products: only close
    err = np.abs(theirs - ours).max() / np.abs(ours).max()
    corr = np.corrcoef(theirs.ravel(), ours.ravel())[0, 1]
    agree = np.mean(theirs.argmax(-1) == ours.argmax(-1))
    print("llama.cpp vs loomrt:", corr, err, agree)
    assert corr > 0.999 and err < 0.05 and agree >= 0.9, (corr, err, agree)
