"""The opt-in int8-activation mode (``int8_activations=True``, ``--int8-activations``,
LRT_OPEN_INT8_ACTIVATIONS; rule in docs/numerics.md "Int8 activations").

* the activation quantizer and the reference block dots follow the written rule (a NumPy
  re-implementation of it, float32 step by step);
* every kernel path on this machine gives the reference's bits (random blocks, extreme
  scales, weights of -128, all-zero blocks, row lengths with and without a tail of blocks);
* a model in the mode is deterministic across threads and chunking, differs from the exact
  mode, stays close to it, and leaves float formats untouched.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

import loomrt
import models

HELPER = r"""
#include <string.h>
#include "kernels/kernels.h"
#include "include/loomrt.h"
void i8_quantize(const float *x, int8_t *q, float *d, int32_t *s, long long n) { lrt_quantize_act_q8(x, q, d, s, n); }
/* kind 0/1/2 = Q8_0/Q4_0/Q4_1: one row with the named kernel path; -1 if the path is unknown */
int i8_dot(const char *path, int kind, const unsigned char *w, const int8_t *q, const float *d, const int32_t *s,
           long long n, float *y) {
  if (lrt_kernels_select(path, strlen(path)) != 0) return -1;
  const lrt_kernels *k = lrt_kernels_get();
  *y = (kind == 0 ? k->dot_q8_0_i8 : kind == 1 ? k->dot_q4_0_i8 : k->dot_q4_1_i8)(w, q, d, s, n);
  return 0;
}
/* the prefill form: one row against M activation rows, outputs ys apart */
int i8_rows(const char *path, int kind, const unsigned char *w, const int8_t *q, const float *d, const int32_t *s,
            long long M, long long n, float *y, long long ys) {
  if (lrt_kernels_select(path, strlen(path)) != 0) return -1;
  const lrt_kernels *k = lrt_kernels_get();
  (kind == 0 ? k->rows_q8_0_i8 : kind == 1 ? k->rows_q4_0_i8 : k->rows_q4_1_i8)(w, q, d, s, M, n, y, ys);
  return 0;
}
/* the prefill tile: R rows (row_bytes apart) against M float activation rows, quantized and
 * packed by the path's own i8_pack_x / i8_pack_w; output of row r, token t at y[t * ys + cols[r]];
 * -2 if the path has no tile */
int i8_tile(const char *path, int kind, const unsigned char *w, long long row_bytes, long long R, const float *x,
            long long M, long long n, float *y, long long ys, const int32_t *cols, void *pw, void *px) {
  if (lrt_kernels_select(path, strlen(path)) != 0) return -1;
  const lrt_kernels *k = lrt_kernels_get();
  if (!k->i8_tile) return -2;
  k->i8_pack_x(x, M, n, px);
  k->i8_pack_w(kind, w, row_bytes, R, n, pw);
  k->i8_tile(kind, pw, R, px, M, n, y, ys, cols);
  return 0;
}
long long i8_pw_bytes(long long R, long long n) { return LRT_I8_ROUND4(R) * LRT_I8_PW_BYTES(n); }
long long i8_px_bytes(long long M, long long n) { return LRT_I8_ROUND4(M) * LRT_I8_PX_BYTES(n); }
"""

KINDS = {"Q8_0": (0, 34), "Q4_0": (1, 18), "Q4_1": (2, 20)}


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    lib = models.build_c_helper(HELPER, str(tmp_path_factory.mktemp("i8helper")), "i8_helper")
    ptr = ctypes.c_void_p
    lib.i8_quantize.argtypes = [ptr, ptr, ptr, ptr, ctypes.c_longlong]
    lib.i8_dot.argtypes = [ctypes.c_char_p, ctypes.c_int, ptr, ptr, ptr, ptr, ctypes.c_longlong, ptr]
    lib.i8_rows.argtypes = [ctypes.c_char_p, ctypes.c_int, ptr, ptr, ptr, ptr, ctypes.c_longlong, ctypes.c_longlong,
                            ptr, ctypes.c_longlong]
    ll = ctypes.c_longlong
    lib.i8_tile.argtypes = [ctypes.c_char_p, ctypes.c_int, ptr, ll, ll, ptr, ll, ll, ptr, ll, ptr, ptr, ptr]
    lib.i8_pw_bytes.argtypes = lib.i8_px_bytes.argtypes = [ll, ll]
    lib.i8_pw_bytes.restype = lib.i8_px_bytes.restype = ll
    return lib


def quantize(lib, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    q = np.zeros(x.size, np.int8)
    d = np.zeros(x.size // 32, np.float32)
    s = np.zeros(x.size // 32, np.int32)
    lib.i8_quantize(x.ctypes.data, q.ctypes.data, d.ctypes.data, s.ctypes.data, x.size)
    return q, d, s


def dot(lib, path, kind, w, q, d, s):
    y = np.zeros(1, np.float32)
    assert lib.i8_dot(path.encode(), KINDS[kind][0], w.ctypes.data, q.ctypes.data, d.ctypes.data, s.ctypes.data,
                      q.size, y.ctypes.data) == 0
    return y[0]


def random_row(kind, nb, rng, extreme=False):
    """nb blocks of a GGUF block format as bytes, scales finite (some extreme)."""
    bb = KINDS[kind][1]
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    nh = 1 if kind != "Q4_1" else 2
    scales = rng.standard_normal((nb, nh)).astype(np.float16)
    if extreme:
        pick = np.array([65504, -65504, 6e-8, -6e-8, 0, 1e-4, 3.0], dtype=np.float16)
        scales = pick[rng.integers(0, len(pick), size=(nb, nh))]
    raw[:, : 2 * nh] = scales.view(np.uint8).reshape(nb, 2 * nh)
    if kind == "Q8_0" and nb > 1:
        raw[1, 2:] = 0x80  # every weight -128
        raw[0, 2:] = 0
    return np.ascontiguousarray(raw.reshape(-1))


def numpy_rule(kind, w, q, d, s):
    """The documented rule in float32, step by step: c_b per block, then the dot8 lanes
    over blocks, the tree and the tail."""
    f32 = np.float32
    bb = KINDS[kind][1]
    nb = q.size // 32
    blocks = w.reshape(nb, bb)
    c = np.zeros(nb, np.float32)
    for b in range(nb):
        qx = q[32 * b: 32 * b + 32].astype(np.int64)
        dw = blocks[b, 0:2].view(np.float16).astype(np.float32)[0]
        if kind == "Q8_0":
            qw = blocks[b, 2:].view(np.int8).astype(np.int64)
        else:
            off = 2 if kind == "Q4_0" else 4
            nib = blocks[b, off: off + 16].astype(np.int64)
            qw = np.concatenate([nib & 15, nib >> 4]) - (8 if kind == "Q4_0" else 0)
        S = f32(int((qw * qx).sum()))
        with np.errstate(all="ignore"):
            cb = f32(f32(dw * d[b]) * S)
            if kind == "Q4_1":
                mw = blocks[b, 2:4].view(np.float16).astype(np.float32)[0]
                cb = f32(cb + f32(f32(mw * d[b]) * f32(s[b])))
        c[b] = cb
    acc = np.zeros(8, np.float32)
    b = 0
    with np.errstate(all="ignore"):
        while b + 8 <= nb:
            acc = (acc + c[b: b + 8]).astype(np.float32)
            b += 8
        t = (acc[:4] + acc[4:]).astype(np.float32)
        r = f32(f32(t[0] + t[2]) + f32(t[1] + t[3]))
        while b < nb:
            r = f32(r + c[b])
            b += 1
    return r


def test_activation_quantizer_follows_the_q8_0_rule(helper):
    """Same q as the weight quantizer's rule (gguf-py's Q8_0), d its F16 rounding, s the
    block sums; NaN / infinity blocks become d = NaN, q = 0."""
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(32 * 40) * 10.0 ** rng.integers(-6, 4, 32 * 40),
                        np.array([2.5, -2.5] * 16) * 2.0 ** -3]).astype(np.float32)
    q, d, s = quantize(helper, x)
    ref = gguf.quants.quantize(x.reshape(-1, 32), gguf.GGMLQuantizationType.Q8_0).reshape(-1, 34)
    assert np.array_equal(q.reshape(-1, 32), ref[:, 2:].view(np.int8))
    assert np.array_equal(d, ref[:, :2].copy().view(np.float16).astype(np.float32).reshape(-1))
    assert np.array_equal(s, q.reshape(-1, 32).astype(np.int32).sum(axis=1))
    bad = np.ones(64, np.float32)
    bad[3] = np.nan
    bad[40] = np.inf
    q, d, s = quantize(helper, bad)
    assert np.isnan(d).all() and not q.any() and not s.any()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reference_follows_the_written_rule(helper, kind):
    rng = np.random.default_rng(5)
    for nb in (1, 7, 8, 18, 19, 48):
        for extreme in (False, True):
            w = random_row(kind, nb, rng, extreme)
            q, d, s = quantize(helper, rng.standard_normal(32 * nb).astype(np.float32))
            got, want = dot(helper, "reference", kind, w, q, d, s), numpy_rule(kind, w, q, d, s)
            assert np.array_equal(np.float32(got).view(np.uint32), np.float32(want).view(np.uint32)), (nb, got, want)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_path_equals_the_reference(helper, kind):
    paths = [p for p in loomrt.kernel_paths() if p != "reference"]
    rng = np.random.default_rng(9)
    checked = 0
    for trial in range(300):
        nb = int(rng.integers(1, 70))
        w = random_row(kind, nb, rng, extreme=trial % 3 == 0)
        x = rng.standard_normal(32 * nb).astype(np.float32) * np.float32(10.0 ** rng.integers(-8, 6))
        q, d, s = quantize(helper, x)
        want = np.float32(dot(helper, "reference", kind, w, q, d, s)).view(np.uint32)
        for p in paths:
            got = np.float32(dot(helper, p, kind, w, q, d, s)).view(np.uint32)
            assert got == want, (p, nb, trial)
            checked += 1
    assert checked >= 300 * len(paths)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_prefill_rows_equal_single_dots(helper, kind):
    """rows_*_i8 (one row against M tokens, two at a time on AVX2) gives each token the bits
    of the single-token reference dot, for odd and even M and with tail blocks."""
    rng = np.random.default_rng(13)
    for nb, M in ((18, 5), (8, 2), (19, 1), (48, 4), (3, 7)):
        n = 32 * nb
        w = random_row(kind, nb, rng, extreme=nb == 19)
        q, d, s = quantize(helper, rng.standard_normal(M * n).astype(np.float32))
        want = [np.float32(dot(helper, "reference", kind, w, q[t * n:(t + 1) * n], d[t * nb:(t + 1) * nb],
                               s[t * nb:(t + 1) * nb])) for t in range(M)]
        for p in loomrt.kernel_paths():
            y = np.full(3 * M, np.nan, np.float32)
            assert helper.i8_rows(p.encode(), KINDS[kind][0], w.ctypes.data, q.ctypes.data, d.ctypes.data,
                                  s.ctypes.data, M, n, y.ctypes.data, 3) == 0
            assert np.array_equal(y[::3].view(np.uint32), np.array(want, np.float32).view(np.uint32)), (p, nb, M)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_prefill_tile_equals_single_dots(helper, kind):
    """The VNNI prefill tile (i8_pack_x quantizing the float rows itself, i8_pack_w, i8_tile:
    block-interleaved copies, rows x tokens per tile) gives every (row, token) the bits of the
    reference's single dot on lrt_quantize_act_q8's rows: row lengths with and without full
    eight-block groups and tails, token and row counts that are not multiples of the tile,
    extreme scales, NaN / infinite activations, all-zero blocks, blocks whose 1 / d overflows,
    values at half-way points of the rounding, a column map."""
    paths = loomrt.kernel_paths()
    vnni = [p for p in paths if "vnni" in p]
    rng = np.random.default_rng(29)
    bb = KINDS[kind][1]
    for nb, M, R in ((18, 5, 16), (8, 4, 4), (19, 7, 3), (48, 13, 6), (3, 1, 1), (1, 9, 5), (16, 130, 2)):
        n = 32 * nb
        w = np.concatenate([random_row(kind, nb, rng, extreme=(r % 3 == 1)) for r in range(R)])
        x = rng.standard_normal(M * n).astype(np.float32) * np.float32(2.0) ** rng.integers(-20, 20, M * n)
        x = x.astype(np.float32)
        if M > 2:
            x[n + 5] = np.inf
            x[2 * n + 40] = np.nan
        if M > 3:
            x[3 * n: 3 * n + 32] = 0.0                          # amax 0: q = 0, d = 0
            x[3 * n + 32 * (nb - 1): 3 * n + 32 * nb] = 1e-44   # 1 / d overflows: q = 0
            x[2 * n - 32: 2 * n] = (np.arange(32) - 16) * 0.5 + 0.25 * (np.arange(32) % 3)  # halves
            x[2 * n - 32] = 127.0                               # d = 1: the halves are exact
        q, d, s = quantize(helper, x)
        want = np.array([[dot(helper, "reference", kind, w[r * nb * bb:(r + 1) * nb * bb], q[t * n:(t + 1) * n],
                              d[t * nb:(t + 1) * nb], s[t * nb:(t + 1) * nb]) for r in range(R)] for t in range(M)],
                        np.float32)
        cols = np.ascontiguousarray(rng.permutation(R + 3)[:R].astype(np.int32))
        ys = R + 3
        for p in vnni:
            pw = np.zeros(helper.i8_pw_bytes(R, n), np.uint8)
            px = np.zeros(helper.i8_px_bytes(M, n), np.uint8)
            y = np.full(M * ys, -7.0, np.float32)
            assert helper.i8_tile(p.encode(), KINDS[kind][0], w.ctypes.data, nb * bb, R, x.ctypes.data, M, n,
                                  y.ctypes.data, ys, cols.ctypes.data, pw.ctypes.data, px.ctypes.data) == 0, p
            got = y.reshape(M, ys)[:, cols]
            same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
            assert same.all(), (p, nb, M, R, np.argwhere(~same)[:4])
            untouched = np.ones(ys, bool)
            untouched[cols] = False
            assert (y.reshape(M, ys)[:, untouched] == -7.0).all(), p
    for p in paths:  # only the VNNI paths have the tile (forward.c uses rows_*_i8 elsewhere)
        r = helper.i8_tile(p.encode(), 0, None, 0, 0, None, 0, 32, None, 1, None, None, None)
        assert (r == 0) == ("vnni" in p), p


# ---- whole models -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def q_models(seeded_folder, tmp_path_factory):
    """The seeded llama as Q8_0 / Q4_0 / Q4_1 GGUFs quantized by gguf-py."""
    gguf = pytest.importorskip("gguf")
    import json

    from safetensors.numpy import load_file

    d = tmp_path_factory.mktemp("i8models")
    cfg = json.load(open(os.path.join(seeded_folder, "config.json"), encoding="utf-8"))
    tensors = load_file(os.path.join(seeded_folder, "model.safetensors"))
    out = {}
    for kind in KINDS:
        qt = getattr(gguf.GGMLQuantizationType, kind)
        raw = {}

        def edit(ts, qt=qt, raw=raw):
            for name in list(ts):
                if ts[name].ndim == 2:
                    ts[name] = gguf.quants.quantize(ts[name], qt)
                    raw[name] = qt

        out[kind] = models.write_llama_gguf(str(d / f"{kind}.gguf"), tensors, cfg, tensor_edit=edit, raw_dtypes=raw)
    return out


IDS = [1, 5, 9, 200, 17, 3, 64, 128, 255, 0, 42, 7, 99, 31, 8, 250, 2, 77, 13]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_model_is_deterministic_and_close_to_exact(q_models, kind):
    ref = loomrt.load(q_models[kind], threads=1, int8_activations=True)
    base = ref.logits(IDS)
    for threads in (2, 3):
        m = loomrt.load(q_models[kind], threads=threads, int8_activations=True)
        assert np.array_equal(m.logits(IDS).view(np.uint32), base.view(np.uint32))
        s = m.session()
        rows = [s.eval(IDS[:5], all_logits=True), s.eval(IDS[5:6], all_logits=True), s.eval(IDS[6:], all_logits=True)]
        assert np.array_equal(np.concatenate(rows).view(np.uint32), base.view(np.uint32))
    exact = loomrt.load(q_models[kind], threads=1).logits(IDS)
    assert not np.array_equal(exact, base)
    # the same model, a little noisier: top tokens agree on most positions
    assert (exact.argmax(axis=1) == base.argmax(axis=1)).mean() >= 0.7
    assert np.abs(exact - base).max() < 0.2 * np.abs(exact).max()


def test_float_formats_are_untouched(seeded_folder):
    a = loomrt.load(seeded_folder, threads=1).logits(IDS)
    b = loomrt.load(seeded_folder, threads=1, int8_activations=True).logits(IDS)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    # ... and quantizing at load plus int8 activations is the Q8_0 mode
    c = loomrt.load(seeded_folder, threads=1, quantize="q8_0", int8_activations=True).logits(IDS)
    assert not np.array_equal(a, c)


# sha256 of the logits bits of IDS in the int8 mode (models.logits_sha256), numerics version 1.
# A change of the int8 rule changes these on purpose, with docs/numerics.md, in one commit.
GOLDEN_INT8 = {"Q4_0": "5974eba7e9ab7171bfb7f41d4ff5a28b708e395c9aee7105d6617f71e1d239f3",
               "Q4_1": "8819f8af4afbbf6e257266638ffcdcca86704972bcc61cc1ad1b99500a3c0772",
               "Q8_0": "4b65d7c5a0ad95bd87ab1497e19fdbae5074af1f9c7774b789bba2d0d57571f3"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_golden_int8_logits_on_every_path(q_models, kind):
    assert loomrt.NUMERICS_VERSION == 1
    before = loomrt.kernel_path()
    try:
        for path in loomrt.kernel_paths():
            loomrt.set_kernel_path(path)
            m = loomrt.load(q_models[kind], threads=2, int8_activations=True)
            assert models.logits_sha256(m.logits(IDS)) == GOLDEN_INT8[kind], path
    finally:
        loomrt.set_kernel_path(before)
