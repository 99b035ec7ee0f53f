/* ref.c -- the scalar reference kernels: plain C, the numerics spec (see kernels.h). */
#include <string.h>

#include "../base/base.h"
#include "../base/lrt_math.h"
#include "kernels.h"

/* The dot8 combination tree and tail, shared by the three weight formats. W(i) reads weight
 * i as float. Written as a macro so each format gets its own tight loop. */
#define LRT_DOT8_BODY(W)                                                                   \
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                  \
  int64_t i = 0;                                                                            \
  for (; i + 8 <= n; i += 8)                                                                \
    for (int j = 0; j < 8; j++) acc[j] = acc[j] + W(i + j) * x[i + j];                      \
  float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7]; \
  float s = (t0 + t2) + (t1 + t3);                                                          \
  for (; i < n; i++) s = s + W(i) * x[i];                                                   \
  return s;

static float dot_f32_ref(const float *w, const float *x, int64_t n) {
#define W_F32(k) w[k]
  LRT_DOT8_BODY(W_F32)
#undef W_F32
}

static float dot_f16_ref(const uint16_t *w, const float *x, int64_t n) {
#define W_F16(k) lrt_f16_to_f32(w[k])
  LRT_DOT8_BODY(W_F16)
#undef W_F16
}

static float dot_bf16_ref(const uint16_t *w, const float *x, int64_t n) {
#define W_BF16(k) lrt_bf16_to_f32(w[k])
  LRT_DOT8_BODY(W_BF16)
#undef W_BF16
}

static float sum_f32_ref(const float *x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] = acc[j] + x[i + j];
  float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7];
  float s = (t0 + t2) + (t1 + t3);
  for (; i < n; i++) s = s + x[i];
  return s;
}

static void rows_f32_ref(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, float *y, int64_t ys) {
  for (int64_t t = 0; t < M; t++) y[t * ys] = dot_f32_ref((const float *)w, x + t * xs, n);
}
static void rows_f16_ref(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, float *y, int64_t ys) {
  for (int64_t t = 0; t < M; t++) y[t * ys] = dot_f16_ref((const uint16_t *)w, x + t * xs, n);
}
static void rows_bf16_ref(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, float *y, int64_t ys) {
  for (int64_t t = 0; t < M; t++) y[t * ys] = dot_bf16_ref((const uint16_t *)w, x + t * xs, n);
}

static void dot4_f32_ref(const void *w, int64_t ws, const float *x, int64_t n, float *y) {
  for (int i = 0; i < 4; i++) y[i] = dot_f32_ref((const float *)w + i * ws, x, n);
}
static void dot4_f16_ref(const void *w, int64_t ws, const float *x, int64_t n, float *y) {
  for (int i = 0; i < 4; i++) y[i] = dot_f16_ref((const uint16_t *)w + i * ws, x, n);
}
static void dot4_bf16_ref(const void *w, int64_t ws, const float *x, int64_t n, float *y) {
  for (int i = 0; i < 4; i++) y[i] = dot_bf16_ref((const uint16_t *)w + i * ws, x, n);
}

static void dequant_q8_0_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 34, y += 32) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p));
    for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)p[2 + j];
  }
}

static void dequant_q4_0_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 18, y += 32) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p));
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)((int)(p[2 + j] & 0x0f) - 8);
      y[j + 16] = d * (float)((int)(p[2 + j] >> 4) - 8);
    }
  }
}

static void dequant_q4_1_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 20, y += 32) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p)), m = lrt_f16_to_f32(lrt_rd_u16le(p + 2));
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)(p[4 + j] & 0x0f) + m;
      y[j + 16] = d * (float)(p[4 + j] >> 4) + m;
    }
  }
}

/* Fused block-format decode: dequantize 32 weights at a time and accumulate them into the
 * dot8 lanes exactly as dot_f32 would over the fully dequantized row (n % 32 == 0, so there
 * is no tail). */
/* Q5_0 / Q5_1: the 5-bit q of element j (< 16: low nibble of byte j, else high nibble of
 * byte j - 16; bit j of the little-endian qh on top) */
static void dequant_q5_0_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 22, y += 32) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p));
    uint32_t qh = lrt_rd_u32le(p + 2);
    for (int j = 0; j < 16; j++) {
      int lo = (p[6 + j] & 15) | (int)(((qh >> j) & 1u) << 4);
      int hi = (p[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
      y[j] = d * (float)(lo - 16);
      y[j + 16] = d * (float)(hi - 16);
    }
  }
}

static void dequant_q5_1_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 24, y += 32) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p)), m = lrt_f16_to_f32(lrt_rd_u16le(p + 2));
    uint32_t qh = lrt_rd_u32le(p + 4);
    for (int j = 0; j < 16; j++) {
      int lo = (p[8 + j] & 15) | (int)(((qh >> j) & 1u) << 4);
      int hi = (p[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
      y[j] = d * (float)lo + m;
      y[j + 16] = d * (float)hi + m;
    }
  }
}

#define LRT_DOT4_BLOCKS(NAME, DEQ, BLOCK_BYTES)                                               \
  static void NAME(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y) {  \
    for (int r = 0; r < 4; r++) {                                                           \
      const uint8_t *p = (const uint8_t *)w + r * row_bytes;                                \
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, blk[32];                                      \
      for (int64_t b = 0; b < n / 32; b++, p += BLOCK_BYTES) {                              \
        DEQ(p, blk, 32);                                                                    \
        for (int i = 0; i < 32; i += 8)                                                     \
          for (int j = 0; j < 8; j++) acc[j] = acc[j] + blk[i + j] * x[b * 32 + i + j];     \
      }                                                                                     \
      float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7]; \
      y[r] = (t0 + t2) + (t1 + t3);                                                         \
    }                                                                                       \
  }
LRT_DOT4_BLOCKS(dot4_q8_0_ref, dequant_q8_0_ref, 34)
LRT_DOT4_BLOCKS(dot4_q4_0_ref, dequant_q4_0_ref, 18)
LRT_DOT4_BLOCKS(dot4_q4_1_ref, dequant_q4_1_ref, 20)
LRT_DOT4_BLOCKS(dot4_q5_0_ref, dequant_q5_0_ref, 22)
LRT_DOT4_BLOCKS(dot4_q5_1_ref, dequant_q5_1_ref, 24)
#undef LRT_DOT4_BLOCKS

/* ---- K-quants: 256-element super-blocks (ggml's block_q4_K / block_q5_K / block_q6_K) ----
 * Q4_K (144 bytes): f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for the eight
 *   32-element sub-blocks, 128 bytes of 4-bit q: sub-blocks 2k and 2k+1 are the low and high
 *   nibbles of bytes 32k .. 32k+31.
 * Q5_K (176 bytes): d, dmin, the same 12 scale bytes, qh[32] (bit j of qh[l] is the fifth
 *   bit of element l of sub-block j), qs[128] as in Q4_K.
 * Q6_K (210 bytes): ql[128], qh[64], int8 scales[16] (one per 16 elements), f16 d. Element
 *   i = 128h + r (h = 0, 1; r < 128): low 4 bits from ql[64h + r % 64] >> 4(r / 64), high 2
 *   bits from qh[32h + r % 32] >> 2(r / 32); q = value - 32. */

/* 6-bit scale and min of sub-block j from the 12 packed bytes s */
static inline void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

static void dequant_q4_k_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 256; b++, p += 144, y += 256) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p)), dmin = lrt_f16_to_f32(lrt_rd_u16le(p + 2));
    for (int j = 0; j < 8; j++) {
      int sc, m;
      k_scale_min(p + 4, j, &sc, &m);
      float ds = d * (float)sc, dm = dmin * (float)m;
      const uint8_t *q = p + 16 + 32 * (j / 2);
      int sh = 4 * (j & 1);
      for (int l = 0; l < 32; l++) y[32 * j + l] = ds * (float)((q[l] >> sh) & 15) - dm;
    }
  }
}

static void dequant_q5_k_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 256; b++, p += 176, y += 256) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p)), dmin = lrt_f16_to_f32(lrt_rd_u16le(p + 2));
    const uint8_t *qh = p + 16;
    for (int j = 0; j < 8; j++) {
      int sc, m;
      k_scale_min(p + 4, j, &sc, &m);
      float ds = d * (float)sc, dm = dmin * (float)m;
      const uint8_t *q = p + 48 + 32 * (j / 2);
      int sh = 4 * (j & 1);
      for (int l = 0; l < 32; l++)
        y[32 * j + l] = ds * (float)(((q[l] >> sh) & 15) | (((qh[l] >> j) & 1) << 4)) - dm;
    }
  }
}

static void dequant_q6_k_ref(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 256; b++, p += 210, y += 256) {
    float d = lrt_f16_to_f32(lrt_rd_u16le(p + 208));
    for (int i = 0; i < 256; i++) {
      int h = i / 128, r = i % 128;
      int lo = (p[64 * h + r % 64] >> (4 * (r / 64))) & 15;
      int hi = (p[128 + 32 * h + r % 32] >> (2 * (r / 32))) & 3;
      float ds = d * (float)(int8_t)p[192 + i / 16];
      y[i] = ds * (float)((lo | (hi << 4)) - 32);
    }
  }
}

/* Fused decode for the K-quants: one super-block at a time, same lanes as dot_f32. */
#define LRT_DOT4_KBLOCKS(NAME, DEQ, BLOCK_BYTES)                                              \
  static void NAME(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y) {  \
    for (int r = 0; r < 4; r++) {                                                           \
      const uint8_t *p = (const uint8_t *)w + r * row_bytes;                                \
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, blk[256];                                     \
      for (int64_t b = 0; b < n / 256; b++, p += BLOCK_BYTES) {                             \
        DEQ(p, blk, 256);                                                                   \
        for (int i = 0; i < 256; i += 8)                                                    \
          for (int j = 0; j < 8; j++) acc[j] = acc[j] + blk[i + j] * x[b * 256 + i + j];    \
      }                                                                                     \
      float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7]; \
      y[r] = (t0 + t2) + (t1 + t3);                                                         \
    }                                                                                       \
  }
LRT_DOT4_KBLOCKS(dot4_q4_k_ref, dequant_q4_k_ref, 144)
LRT_DOT4_KBLOCKS(dot4_q5_k_ref, dequant_q5_k_ref, 176)
LRT_DOT4_KBLOCKS(dot4_q6_k_ref, dequant_q6_k_ref, 210)
#undef LRT_DOT4_KBLOCKS

static void exp_f32_ref(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = lrt_expf(x[i]);
}
static void silu_mul_f32_ref(const float *g, const float *u, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = lrt_siluf(g[i]) * u[i];
}

static void log_f32_ref(const float *x, float *y, int64_t n) {
  const uint32_t nb = 0xff800000u;
  float ninf;
  memcpy(&ninf, &nb, sizeof ninf);
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? (float)lrt_log((double)x[i]) : ninf;
}

static void tile4_f32_ref(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                          int64_t ys) {
  for (int64_t t = 0; t < M; t++)
    for (int64_t i = 0; i < 4; i++) y[t * ys + i] = dot_f32_ref(w + i * ws, x + t * xs, n);
}

/* pf (a prefetch hint) is ignored here: it never changes a result */
static void tile4_f32_pf_ref(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                             int64_t ys, const float *pf) {
  (void)pf;
  tile4_f32_ref(w, ws, x, xs, M, n, y, ys);
}
static void tile4_f16_pf_ref(const uint16_t *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                             int64_t ys, const uint16_t *pf) {
  (void)pf;
  for (int64_t t = 0; t < M; t++)
    for (int64_t i = 0; i < 4; i++) y[t * ys + i] = dot_f16_ref(w + i * ws, x + t * xs, n);
}
static void tile4_bf16_pf_ref(const uint16_t *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n,
                              float *y, int64_t ys, const uint16_t *pf) {
  (void)pf;
  for (int64_t t = 0; t < M; t++)
    for (int64_t i = 0; i < 4; i++) y[t * ys + i] = dot_bf16_ref(w + i * ws, x + t * xs, n);
}

static void lincomb_f32_ref(const float *a, const float *X, int64_t xs, int64_t n, int64_t d, float *y) {
  for (int64_t j = 0; j < n; j++)
    for (int64_t e = 0; e < d; e++) y[e] = y[e] + a[j] * X[j * xs + e];
}
static void rank1_f32_ref(const float *a, const float *x, int64_t n, int64_t d, float *Y, int64_t ys) {
  for (int64_t j = 0; j < n; j++)
    for (int64_t e = 0; e < d; e++) Y[j * ys + e] = Y[j * ys + e] + a[j] * x[e];
}

static void lincomb_rows_f32_ref(const float *A, int64_t ar, int64_t aj, const float *X, int64_t xs, int64_t R,
                                 int64_t n, int64_t d, float *Y, int64_t ys) {
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < n; j++)
      for (int64_t e = 0; e < d; e++) Y[r * ys + e] = Y[r * ys + e] + A[r * ar + j * aj] * X[j * xs + e];
}

static void widen_f16_ref(const uint16_t *h, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = lrt_f16_to_f32(h[i]);
}
static void widen_bf16_ref(const uint16_t *h, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = lrt_bf16_to_f32(h[i]);
}

/* ---- int8 activations (LRT_OPEN_INT8_ACTIVATIONS) ------------------------------------------
 * One weight row of a block format against an activation row quantized by
 * lrt_quantize_act_q8 (qx int8, dx block scales, sx block sums of qx): the block results c_b
 * (lrt_i8_cb_* in kernels.h) summed as sum_f32 sums: the dot8 lanes over blocks, tree, tail. */
#define LRT_I8_ROW(CB)                                                                      \
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                 \
  int64_t nb = n / 32, b = 0;                                                               \
  for (; b + 8 <= nb; b += 8)                                                               \
    for (int j = 0; j < 8; j++) acc[j] = acc[j] + CB(b + j);                                \
  float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7]; \
  float s = (t0 + t2) + (t1 + t3);                                                          \
  for (; b < nb; b++) s = s + CB(b);                                                        \
  return s;

static float dot_q8_0_i8_ref(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n) {
#define CB(b) lrt_i8_cb_q8_0((const uint8_t *)w, qx, dx, sx, b)
  LRT_I8_ROW(CB)
#undef CB
}

static float dot_q4_0_i8_ref(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n) {
#define CB(b) lrt_i8_cb_q4_0((const uint8_t *)w, qx, dx, sx, b)
  LRT_I8_ROW(CB)
#undef CB
}

static float dot_q4_1_i8_ref(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n) {
#define CB(b) lrt_i8_cb_q4_1((const uint8_t *)w, qx, dx, sx, b)
  LRT_I8_ROW(CB)
#undef CB
}
#undef LRT_I8_ROW

#define LRT_I8_ROWS(NAME, DOT)                                                                \
  static void NAME(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M, int64_t n, \
                   float *y, int64_t ys) {                                                    \
    for (int64_t t = 0; t < M; t++) y[t * ys] = DOT(w, qx + t * n, dx + t * (n / 32), sx + t * (n / 32), n); \
  }
LRT_I8_ROWS(rows_q8_0_i8_ref, dot_q8_0_i8_ref)
LRT_I8_ROWS(rows_q4_0_i8_ref, dot_q4_0_i8_ref)
LRT_I8_ROWS(rows_q4_1_i8_ref, dot_q4_1_i8_ref)
#undef LRT_I8_ROWS

const lrt_kernels lrt_kernels_ref = {"reference", dot_f32_ref, dot_f16_ref, dot_bf16_ref, sum_f32_ref,
                                     rows_f32_ref, rows_f16_ref, rows_bf16_ref,
                                     dot4_f32_ref, dot4_f16_ref, dot4_bf16_ref,
                                     dequant_q8_0_ref, dequant_q4_0_ref, dequant_q4_1_ref,
                                     dot4_q8_0_ref, dot4_q4_0_ref, dot4_q4_1_ref,
                                     exp_f32_ref, silu_mul_f32_ref,
                                     dequant_q4_k_ref, dequant_q5_k_ref, dequant_q6_k_ref,
                                     dot4_q4_k_ref, dot4_q5_k_ref, dot4_q6_k_ref, tile4_f32_ref,
                                     widen_f16_ref, widen_bf16_ref,
                                     dot_q8_0_i8_ref, dot_q4_0_i8_ref, dot_q4_1_i8_ref,
                                     rows_q8_0_i8_ref, rows_q4_0_i8_ref, rows_q4_1_i8_ref,
                                     dequant_q5_0_ref, dequant_q5_1_ref, dot4_q5_0_ref, dot4_q5_1_ref,
                                     lincomb_f32_ref, rank1_f32_ref, log_f32_ref,
                                     lincomb_rows_f32_ref,
                                     tile4_f32_pf_ref, tile4_f16_pf_ref, tile4_bf16_pf_ref,
                                     NULL, NULL, NULL /* no int8 prefill tile: rows_*_i8 is the spec */};
