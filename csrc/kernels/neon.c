/* neon.c -- aarch64 NEON kernels. Bit-identical to ref.c: the eight dot8 lanes live in two
 * float32x4_t accumulators (lanes 0-3 and 4-7); every product and every sum is its own
 * instruction (vmulq_f32 then vaddq_f32, never vfmaq: the file is compiled with
 * -ffp-contract=off, and the pragma below says the same to clang), and the lanes are
 * combined with the reference tree: t = lo + hi, s = (t0 + t2) + (t1 + t3).
 * F16 weights are widened with FCVTL (vcvt_f32_f16: exact for every half, subnormals
 * included), BF16 by a 16-bit shift. NEON is part of the aarch64 baseline, so this file
 * needs no target attributes and the path is always runnable there (dispatch.c). */
#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>

#include "../base/base.h"
#include "../base/lrt_math.h"
#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

typedef struct v8 {
  float32x4_t lo, hi; /* dot8 lanes 0-3 and 4-7 */
} v8;

static inline v8 v8_zero(void) {
  v8 r = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
  return r;
}
/* a + w * x, lane by lane, product rounded before the sum */
static inline v8 v8_macc(v8 a, v8 w, v8 x) {
  a.lo = vaddq_f32(a.lo, vmulq_f32(w.lo, x.lo));
  a.hi = vaddq_f32(a.hi, vmulq_f32(w.hi, x.hi));
  return a;
}
static inline float hsum8(v8 a) {
  float32x4_t t = vaddq_f32(a.lo, a.hi);                          /* t0..t3 */
  float32x2_t u = vadd_f32(vget_low_f32(t), vget_high_f32(t));   /* t0+t2, t1+t3 */
  return vget_lane_f32(u, 0) + vget_lane_f32(u, 1);
}
static inline v8 load_x(const float *x, int64_t i) {
  v8 r = {vld1q_f32(x + i), vld1q_f32(x + i + 4)};
  return r;
}
static inline v8 load_f32(const void *w, int64_t i) { return load_x((const float *)w, i); }
static inline v8 load_f16(const void *w, int64_t i) {
  uint16x8_t h = vld1q_u16((const uint16_t *)w + i);
  v8 r = {vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))),
          vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h)))};
  return r;
}
static inline v8 load_bf16(const void *w, int64_t i) {
  uint16x8_t h = vld1q_u16((const uint16_t *)w + i);
  v8 r = {vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)),
          vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16))};
  return r;
}
static inline float tail_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
static inline float tail_f16(const void *w, int64_t i) { return lrt_f16_to_f32(((const uint16_t *)w)[i]); }
static inline float tail_bf16(const void *w, int64_t i) { return lrt_bf16_to_f32(((const uint16_t *)w)[i]); }

/* DOT: one row, one x. ROWS: one row against M x vectors, four at a time (independent
 * accumulators, each in the exact dot8 order). DOT4: four rows against one x. */
#define DEFINE_KERNELS(SUF, LOAD, TAIL, ELEM)                                                 \
  static float dot_##SUF(const void *w, const float *x, int64_t n) {                          \
    v8 acc = v8_zero();                                                                       \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) acc = v8_macc(acc, LOAD(w, i), load_x(x, i));                  \
    float s = hsum8(acc);                                                                     \
    for (; i < n; i++) s = s + TAIL(w, i) * x[i];                                             \
    return s;                                                                                 \
  }                                                                                           \
  static void rows_##SUF(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, float *y, \
                         int64_t ys) {                                                        \
    int64_t t = 0;                                                                            \
    for (; t + 4 <= M; t += 4) {                                                              \
      const float *x0 = x + t * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;              \
      v8 a0 = v8_zero(), a1 = a0, a2 = a0, a3 = a0;                                           \
      int64_t i = 0;                                                                          \
      for (; i + 8 <= n; i += 8) {                                                            \
        v8 wv = LOAD(w, i);                                                                   \
        a0 = v8_macc(a0, wv, load_x(x0, i));                                                  \
        a1 = v8_macc(a1, wv, load_x(x1, i));                                                  \
        a2 = v8_macc(a2, wv, load_x(x2, i));                                                  \
        a3 = v8_macc(a3, wv, load_x(x3, i));                                                  \
      }                                                                                       \
      float s0 = hsum8(a0), s1 = hsum8(a1), s2 = hsum8(a2), s3 = hsum8(a3);                   \
      for (; i < n; i++) {                                                                    \
        float wi = TAIL(w, i);                                                                \
        s0 = s0 + wi * x0[i]; s1 = s1 + wi * x1[i]; s2 = s2 + wi * x2[i]; s3 = s3 + wi * x3[i]; \
      }                                                                                       \
      y[t * ys] = s0; y[(t + 1) * ys] = s1; y[(t + 2) * ys] = s2; y[(t + 3) * ys] = s3;       \
    }                                                                                         \
    for (; t < M; t++) y[t * ys] = dot_##SUF(w, x + t * xs, n);                               \
  }                                                                                           \
  static void dot4_##SUF(const void *w, int64_t ws, const float *x, int64_t n, float *y) {    \
    const void *w1 = ELEM(w, ws), *w2 = ELEM(w1, ws), *w3 = ELEM(w2, ws);                      \
    v8 a0 = v8_zero(), a1 = a0, a2 = a0, a3 = a0;                                             \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) {                                                              \
      v8 xv = load_x(x, i);                                                                   \
      a0 = v8_macc(a0, LOAD(w, i), xv);                                                       \
      a1 = v8_macc(a1, LOAD(w1, i), xv);                                                      \
      a2 = v8_macc(a2, LOAD(w2, i), xv);                                                      \
      a3 = v8_macc(a3, LOAD(w3, i), xv);                                                      \
    }                                                                                         \
    float s0 = hsum8(a0), s1 = hsum8(a1), s2 = hsum8(a2), s3 = hsum8(a3);                     \
    for (; i < n; i++) {                                                                      \
      s0 = s0 + TAIL(w, i) * x[i]; s1 = s1 + TAIL(w1, i) * x[i];                              \
      s2 = s2 + TAIL(w2, i) * x[i]; s3 = s3 + TAIL(w3, i) * x[i];                             \
    }                                                                                         \
    y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;                                               \
  }

#define ELEM_F32(p, k) ((const void *)((const float *)(p) + (k)))
#define ELEM_U16(p, k) ((const void *)((const uint16_t *)(p) + (k)))
DEFINE_KERNELS(f32, load_f32, tail_f32, ELEM_F32)
DEFINE_KERNELS(f16, load_f16, tail_f16, ELEM_U16)
DEFINE_KERNELS(bf16, load_bf16, tail_bf16, ELEM_U16)
#undef ELEM_F32
#undef ELEM_U16
#undef DEFINE_KERNELS

static float dot_f32_neon(const float *w, const float *x, int64_t n) { return dot_f32(w, x, n); }
static float dot_f16_neon(const uint16_t *w, const float *x, int64_t n) { return dot_f16(w, x, n); }
static float dot_bf16_neon(const uint16_t *w, const float *x, int64_t n) { return dot_bf16(w, x, n); }

static float sum_f32_neon(const float *x, int64_t n) {
  v8 acc = v8_zero();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc.lo = vaddq_f32(acc.lo, vld1q_f32(x + i));
    acc.hi = vaddq_f32(acc.hi, vld1q_f32(x + i + 4));
  }
  float s = hsum8(acc);
  for (; i < n; i++) s = s + x[i];
  return s;
}

/* ---- GGUF blocks ------------------------------------------------------------------------
 * One block of 32 weights as eight float32x4_t (b[k] = weights 4k..4k+3): the scale(s) are
 * widened from F16 exactly (scalar, then broadcast), the integers converted exactly, then
 * one multiply (and one add for Q4_1) per element, as in the reference. */
typedef struct blk32 {
  float32x4_t v[8];
} blk32;

static inline void i8x16_to_f32(int8x16_t q, float32x4_t *out) {
  int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_s8(vget_high_s8(q));
  out[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
  out[1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo)));
  out[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
  out[3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi)));
}

static inline blk32 block_q8_0(const uint8_t *p) {
  blk32 b;
  float32x4_t d = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p)));
  i8x16_to_f32(vld1q_s8((const int8_t *)(p + 2)), &b.v[0]);
  i8x16_to_f32(vld1q_s8((const int8_t *)(p + 18)), &b.v[4]);
  for (int k = 0; k < 8; k++) b.v[k] = vmulq_f32(d, b.v[k]);
  return b;
}

/* weights j and j + 16 are the low and high nibble of byte j */
static inline void nibbles(const uint8_t *qs, int8_t bias, float32x4_t *out) {
  uint8x16_t v = vld1q_u8(qs);
  int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), vdupq_n_s8(bias));
  int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(bias));
  i8x16_to_f32(lo, &out[0]);
  i8x16_to_f32(hi, &out[4]);
}

static inline blk32 block_q4_0(const uint8_t *p) {
  blk32 b;
  float32x4_t d = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p)));
  nibbles(p + 2, 8, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = vmulq_f32(d, b.v[k]);
  return b;
}

static inline blk32 block_q4_1(const uint8_t *p) {
  blk32 b;
  float32x4_t d = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p)));
  float32x4_t m = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p + 2)));
  nibbles(p + 4, 0, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = vaddq_f32(vmulq_f32(d, b.v[k]), m);
  return b;
}

/* Q5_0 / Q5_1: the Q4 nibbles with bit j of qh on top as 16. Lane j of a byte vector holds
 * byte j / 8 of the 16 qh bits of those elements, tested (vtstq_u8) against 1 << (j % 8);
 * the all-ones lanes anded with 16 and or-ed onto the nibble give q in 0..31 (bias 16 for
 * Q5_0: q - 16 in -16..15 is exact in int8), then widened exactly as Q4's. */
static inline uint8x16_t q5_high16(uint32_t h16) {
  static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)h16), vdup_n_u8((uint8_t)(h16 >> 8)));
  return vandq_u8(vtstq_u8(v, vld1q_u8(bit)), vdupq_n_u8(16));
}
static inline void nibbles5(const uint8_t *qs, uint32_t qh, int8_t bias, float32x4_t *out) {
  uint8x16_t v = vld1q_u8(qs);
  uint8x16_t lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), q5_high16(qh & 0xffffu));
  uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), q5_high16(qh >> 16));
  i8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(bias)), &out[0]);
  i8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(bias)), &out[4]);
}

static inline blk32 block_q5_0(const uint8_t *p) {
  blk32 b;
  float32x4_t d = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p)));
  nibbles5(p + 6, lrt_rd_u32le(p + 2), 16, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = vmulq_f32(d, b.v[k]);
  return b;
}

static inline blk32 block_q5_1(const uint8_t *p) {
  blk32 b;
  float32x4_t d = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p)));
  float32x4_t m = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p + 2)));
  nibbles5(p + 8, lrt_rd_u32le(p + 4), 0, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = vaddq_f32(vmulq_f32(d, b.v[k]), m);
  return b;
}

/* DEQUANT: one row to float. DOT4Q: four rows against one x, each block dequantized in
 * registers and accumulated into the dot8 lanes in order (n % 32 == 0: no tail). */
#define DEFINE_BLOCK_KERNELS(FMT, BLOCK, BYTES)                                               \
  static void dequant_##FMT##_neon(const void *row, float *y, int64_t n) {                    \
    const uint8_t *p = (const uint8_t *)row;                                                  \
    for (int64_t b = 0; b < n / 32; b++, p += BYTES, y += 32) {                               \
      blk32 q = BLOCK(p);                                                                     \
      for (int k = 0; k < 8; k++) vst1q_f32(y + 4 * k, q.v[k]);                               \
    }                                                                                         \
  }                                                                                           \
  static void dot4_##FMT##_neon(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y) { \
    const uint8_t *p[4];                                                                      \
    v8 a[4];                                                                                  \
    for (int r = 0; r < 4; r++) {                                                             \
      p[r] = (const uint8_t *)w + r * row_bytes;                                              \
      a[r] = v8_zero();                                                                       \
    }                                                                                         \
    for (int64_t b = 0; b < n / 32; b++, x += 32) {                                           \
      v8 xv[4] = {load_x(x, 0), load_x(x, 8), load_x(x, 16), load_x(x, 24)};                 \
      for (int r = 0; r < 4; r++) {                                                           \
        blk32 q = BLOCK(p[r]);                                                                \
        p[r] += BYTES;                                                                        \
        for (int k = 0; k < 4; k++) {                                                         \
          v8 wv = {q.v[2 * k], q.v[2 * k + 1]};                                               \
          a[r] = v8_macc(a[r], wv, xv[k]);                                                    \
        }                                                                                     \
      }                                                                                       \
    }                                                                                         \
    for (int r = 0; r < 4; r++) y[r] = hsum8(a[r]);                                           \
  }

DEFINE_BLOCK_KERNELS(q8_0, block_q8_0, 34)
DEFINE_BLOCK_KERNELS(q4_0, block_q4_0, 18)
DEFINE_BLOCK_KERNELS(q4_1, block_q4_1, 20)
DEFINE_BLOCK_KERNELS(q5_0, block_q5_0, 22)
DEFINE_BLOCK_KERNELS(q5_1, block_q5_1, 24)
#undef DEFINE_BLOCK_KERNELS

/* ---- K-quants: 256-element super-blocks (docs/numerics.md, ref.c) ---------------------------
 * Per row and super-block the float scales are computed as the reference does (ds = d * sc,
 * dm = dmin * m, Q6_K ds = d * sc: one rounding each) into a small float array, then
 * broadcast. Sixteen elements at a time: the integers widened exactly (u8 -> u16 -> u32 ->
 * f32, or s8 -> ... for Q6_K's q - 32), then (ds * q) - dm (Q4_K, Q5_K) or ds * (q - 32)
 * (Q6_K), each operation its own instruction. Sixteen consecutive elements starting at a
 * multiple of 8 are two dot8 groups: elements 0-3 and 8-11 go to lanes 0-3 (lo), 4-7 and
 * 12-15 to lanes 4-7 (hi), added in element order. dot4 interleaves the four rows chunk by
 * chunk (independent accumulator chains; each chain adds its chunks in element order). */

/* Q4_K / Q5_K: the 8 sub-block scales and mins of a block, times d and dmin */
static inline void k4_scales(const uint8_t *p, float *ds, float *dm) {
  const uint8_t *s = p + 4;
  uint8_t v[16];
  for (int j = 0; j < 4; j++) {
    v[j] = s[j] & 63;                                             /* sc, j < 4 */
    v[8 + j] = s[j + 4] & 63;                                     /* m,  j < 4 */
    v[4 + j] = (uint8_t)((s[j + 8] & 15) | ((s[j] >> 6) << 4));   /* sc, j + 4 */
    v[12 + j] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4)); /* m, j + 4 */
  }
  uint8x16_t b = vld1q_u8(v);
  uint16x8_t sc = vmovl_u8(vget_low_u8(b)), m = vmovl_u8(vget_high_u8(b));
  float32x4_t d = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p)));
  float32x4_t dmin = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p + 2)));
  vst1q_f32(ds, vmulq_f32(d, vcvtq_f32_u32(vmovl_u16(vget_low_u16(sc)))));
  vst1q_f32(ds + 4, vmulq_f32(d, vcvtq_f32_u32(vmovl_u16(vget_high_u16(sc)))));
  vst1q_f32(dm, vmulq_f32(dmin, vcvtq_f32_u32(vmovl_u16(vget_low_u16(m)))));
  vst1q_f32(dm + 4, vmulq_f32(dmin, vcvtq_f32_u32(vmovl_u16(vget_high_u16(m)))));
}

/* Q6_K: the 16 int8 scales of a block times d */
static inline void k6_scales(const uint8_t *p, float *ds) {
  float32x4_t d = vdupq_n_f32(lrt_f16_to_f32(lrt_rd_u16le(p + 208)));
  float32x4_t s[4];
  i8x16_to_f32(vld1q_s8((const int8_t *)(p + 192)), s);
  for (int k = 0; k < 4; k++) vst1q_f32(ds + 4 * k, vmulq_f32(d, s[k]));
}

/* sixteen weights (ds * q) - dm, q unsigned in the u8 lanes of v */
static inline void k4_w16(uint8x16_t v, float ds, float dm, float32x4_t *w) {
  float32x4_t dsv = vdupq_n_f32(ds), dmv = vdupq_n_f32(dm);
  uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_u8(vget_high_u8(v));
  w[0] = vsubq_f32(vmulq_f32(dsv, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)))), dmv);
  w[1] = vsubq_f32(vmulq_f32(dsv, vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo)))), dmv);
  w[2] = vsubq_f32(vmulq_f32(dsv, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)))), dmv);
  w[3] = vsubq_f32(vmulq_f32(dsv, vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi)))), dmv);
}

/* sixteen weights ds * (q - 32), q - 32 signed in the s8 lanes of v */
static inline void k6_w16(int8x16_t v, float ds, float32x4_t *w) {
  float32x4_t dsv = vdupq_n_f32(ds);
  i8x16_to_f32(v, w);
  for (int k = 0; k < 4; k++) w[k] = vmulq_f32(dsv, w[k]);
}

/* acc + w * x for sixteen consecutive elements (two dot8 groups, in order) */
static inline v8 k_acc16(v8 a, const float32x4_t *w, const float32x4_t *xv) {
  a.lo = vaddq_f32(a.lo, vmulq_f32(w[0], xv[0]));
  a.hi = vaddq_f32(a.hi, vmulq_f32(w[1], xv[1]));
  a.lo = vaddq_f32(a.lo, vmulq_f32(w[2], xv[2]));
  a.hi = vaddq_f32(a.hi, vmulq_f32(w[3], xv[3]));
  return a;
}
static inline void load_x16(const float *x, float32x4_t *xv) {
  for (int k = 0; k < 4; k++) xv[k] = vld1q_f32(x + 4 * k);
}
static inline void store16(float *y, const float32x4_t *w) {
  for (int k = 0; k < 4; k++) vst1q_f32(y + 4 * k, w[k]);
}

/* Q4_K: sub-block j (32 elements), half g (16 elements): nibble j & 1 of bytes
 * 16 + 32 (j / 2) + 16 g .. +15 */
static inline uint8x16_t q4k_int16(const uint8_t *p, int j, int g) {
  uint8x16_t v = vld1q_u8(p + 16 + 32 * (j >> 1) + 16 * g);
  return (j & 1) ? vshrq_n_u8(v, 4) : vandq_u8(v, vdupq_n_u8(15));
}
/* Q5_K: the Q4_K nibble (bytes from 48) plus bit j of qh[16 g ..] as bit 4 */
static inline uint8x16_t q5k_int16(const uint8_t *p, int j, int g) {
  uint8x16_t v = vld1q_u8(p + 48 + 32 * (j >> 1) + 16 * g);
  uint8x16_t lo = (j & 1) ? vshrq_n_u8(v, 4) : vandq_u8(v, vdupq_n_u8(15));
  uint8x16_t qh = vld1q_u8(p + 16 + 16 * g);
  uint8x16_t hi = vandq_u8(vtstq_u8(qh, vdupq_n_u8((uint8_t)(1u << j))), vdupq_n_u8(16));
  return vorrq_u8(lo, hi);
}
/* Q6_K: elements 128 h + 32 k + 16 g .. +15 as q - 32: low 4 bits from
 * ql[64 h + 32 (k & 1) + 16 g ..] >> 4 (k / 2), high 2 bits from qh[32 h + 16 g ..] >> 2 k */
static inline int8x16_t q6k_int16(const uint8_t *p, int h, int k, int g) {
  uint8x16_t ql = vld1q_u8(p + 64 * h + 32 * (k & 1) + 16 * g);
  uint8x16_t qh = vld1q_u8(p + 128 + 32 * h + 16 * g);
  uint8x16_t lo = vandq_u8(vshlq_u8(ql, vdupq_n_s8((int8_t)(-4 * (k >> 1)))), vdupq_n_u8(15));
  uint8x16_t hi = vshlq_n_u8(vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * k))), vdupq_n_u8(3)), 4);
  return vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), vdupq_n_s8(32));
}

#define DEFINE_K4_KERNELS(FMT, INT16, BYTES)                                                    \
  static void dequant_##FMT##_neon(const void *row, float *y, int64_t n) {                     \
    const uint8_t *p = (const uint8_t *)row;                                                   \
    float ds[8], dm[8];                                                                        \
    float32x4_t w[4];                                                                          \
    for (int64_t b = 0; b < n / 256; b++, p += BYTES, y += 256) {                              \
      k4_scales(p, ds, dm);                                                                    \
      for (int j = 0; j < 8; j++)                                                              \
        for (int g = 0; g < 2; g++) {                                                          \
          k4_w16(INT16(p, j, g), ds[j], dm[j], w);                                             \
          store16(y + 32 * j + 16 * g, w);                                                     \
        }                                                                                      \
    }                                                                                          \
  }                                                                                            \
  static void dot4_##FMT##_neon(const void *w, int64_t rb, const float *x, int64_t n, float *y) { \
    const uint8_t *p[4];                                                                       \
    v8 a[4];                                                                                   \
    float ds[4][8], dm[4][8];                                                                  \
    for (int r = 0; r < 4; r++) {                                                              \
      p[r] = (const uint8_t *)w + r * rb;                                                      \
      a[r] = v8_zero();                                                                        \
    }                                                                                          \
    for (int64_t b = 0; b < n / 256; b++, x += 256) {                                          \
      for (int r = 0; r < 4; r++) k4_scales(p[r], ds[r], dm[r]);                               \
      for (int j = 0; j < 8; j++)                                                              \
        for (int g = 0; g < 2; g++) {                                                          \
          float32x4_t xv[4], wv[4];                                                            \
          load_x16(x + 32 * j + 16 * g, xv);                                                   \
          for (int r = 0; r < 4; r++) {                                                        \
            k4_w16(INT16(p[r], j, g), ds[r][j], dm[r][j], wv);                                 \
            a[r] = k_acc16(a[r], wv, xv);                                                      \
          }                                                                                    \
        }                                                                                      \
      for (int r = 0; r < 4; r++) p[r] += BYTES;                                               \
    }                                                                                          \
    for (int r = 0; r < 4; r++) y[r] = hsum8(a[r]);                                            \
  }
DEFINE_K4_KERNELS(q4_k, q4k_int16, 144)
DEFINE_K4_KERNELS(q5_k, q5k_int16, 176)
#undef DEFINE_K4_KERNELS

static void dequant_q6_k_neon(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  float ds[16];
  float32x4_t w[4];
  for (int64_t b = 0; b < n / 256; b++, p += 210, y += 256) {
    k6_scales(p, ds);
    for (int h = 0; h < 2; h++)
      for (int k = 0; k < 4; k++)
        for (int g = 0; g < 2; g++) {
          k6_w16(q6k_int16(p, h, k, g), ds[8 * h + 2 * k + g], w);
          store16(y + 128 * h + 32 * k + 16 * g, w);
        }
  }
}

static void dot4_q6_k_neon(const void *w, int64_t rb, const float *x, int64_t n, float *y) {
  const uint8_t *p[4];
  v8 a[4];
  float ds[4][16];
  for (int r = 0; r < 4; r++) {
    p[r] = (const uint8_t *)w + r * rb;
    a[r] = v8_zero();
  }
  for (int64_t b = 0; b < n / 256; b++, x += 256) {
    for (int r = 0; r < 4; r++) k6_scales(p[r], ds[r]);
    for (int h = 0; h < 2; h++)
      for (int k = 0; k < 4; k++)
        for (int g = 0; g < 2; g++) {
          float32x4_t xv[4], wv[4];
          load_x16(x + 128 * h + 32 * k + 16 * g, xv);
          for (int r = 0; r < 4; r++) {
            k6_w16(q6k_int16(p[r], h, k, g), ds[r][8 * h + 2 * k + g], wv);
            a[r] = k_acc16(a[r], wv, xv);
          }
        }
    for (int r = 0; r < 4; r++) p[r] += 210;
  }
  for (int r = 0; r < 4; r++) y[r] = hsum8(a[r]);
}

/* ---- own math, four lanes at a time: the operations of lrt_expf (math.c) in its order ----
 * Out-of-range and NaN lanes compute garbage that the final selects replace, as the scalar
 * function's early returns do (NaN: x itself; x > EXPF_HI: +inf; x < EXPF_LO: 0). */
static inline float32x4_t exp4(float32x4_t x) {
  const float32x4_t magic = vdupq_n_f32(12582912.0f);
  float32x4_t kf = vsubq_f32(vaddq_f32(vmulq_f32(x, vdupq_n_f32(1.44269502162933349609375f)), magic), magic);
  float32x4_t r = vsubq_f32(vsubq_f32(x, vmulq_f32(kf, vdupq_n_f32(0.693145751953125f))),
                            vmulq_f32(kf, vdupq_n_f32(1.42860676533018704503775e-06f)));
  float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
  p = vaddq_f32(vdupq_n_f32(1.0f / 720.0f), vmulq_f32(r, p));
  p = vaddq_f32(vdupq_n_f32(1.0f / 120.0f), vmulq_f32(r, p));
  p = vaddq_f32(vdupq_n_f32(1.0f / 24.0f), vmulq_f32(r, p));
  p = vaddq_f32(vdupq_n_f32(1.0f / 6.0f), vmulq_f32(r, p));
  p = vaddq_f32(vdupq_n_f32(0.5f), vmulq_f32(r, p));
  p = vaddq_f32(vdupq_n_f32(1.0f), vaddq_f32(r, vmulq_f32(vmulq_f32(r, r), p)));
  int32x4_t k = vcvtq_s32_f32(kf);                              /* kf is an integer here */
  int32x4_t k1 = vshrq_n_s32(vsubq_s32(k, vshrq_n_s32(k, 31)), 1); /* k / 2, toward zero */
  int32x4_t k2 = vsubq_s32(k, k1);
  float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k1, vdupq_n_s32(127)), 23));
  float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k2, vdupq_n_s32(127)), 23));
  float32x4_t y = vmulq_f32(vmulq_f32(p, s1), s2);
  y = vbslq_f32(vcltq_f32(x, vdupq_n_f32(-103.972084045410156f)), vdupq_n_f32(0.0f), y);
  y = vbslq_f32(vcgtq_f32(x, vdupq_n_f32(88.72283172607421875f)), vreinterpretq_f32_u32(vdupq_n_u32(0x7f800000u)), y);
  return vbslq_f32(vceqq_f32(x, x), y, x);
}

static void exp_f32_neon(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, exp4(vld1q_f32(x + i)));
  for (; i < n; i++) y[i] = lrt_expf(x[i]);
}

/* lrt_siluf(g) * u = (g / (1 + e^-g)) * u */
static void silu_mul_f32_neon(const float *g, const float *u, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t gv = vld1q_f32(g + i);
    float32x4_t s = vdivq_f32(gv, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(gv))));
    vst1q_f32(y + i, vmulq_f32(s, vld1q_f32(u + i)));
  }
  for (; i < n; i++) y[i] = lrt_siluf(g[i]) * u[i];
}

static void widen_f16_neon(const uint16_t *h, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 v = load_f16(h, i);
    vst1q_f32(y + i, v.lo);
    vst1q_f32(y + i + 4, v.hi);
  }
  for (; i < n; i++) y[i] = lrt_f16_to_f32(h[i]);
}
static void widen_bf16_neon(const uint16_t *h, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 v = load_bf16(h, i);
    vst1q_f32(y + i, v.lo);
    vst1q_f32(y + i + 4, v.hi);
  }
  for (; i < n; i++) y[i] = lrt_bf16_to_f32(h[i]);
}

/* ---- int8 activations (LRT_OPEN_INT8_ACTIVATIONS; the rule is in ref.c) --------------------
 * Integer block sums S_b with baseline NEON (no dotprod extension): vmull_s8 (int8 x int8
 * into int16, at most 128 * 128: no overflow), vpaddlq_s16 / vpadalq_s16 into int32 lanes,
 * eight blocks' lanes reduced to two vectors of four S_b by pairwise adds (exact in any
 * order). Q4_0's - 8 is applied to the nibbles before the products, as in the reference.
 * The float part is the reference's, eight blocks at a time in the dot8 lanes (blocks
 * b..b+3 in lo, b+4..b+7 in hi): dd = d_w * dx_b, dd * S_b [+ (m_w * dx_b) * sx_b], each a
 * separate rounded instruction; the tail blocks are lrt_i8_cb_*'s scalar float steps with
 * the integer sum in NEON. */

/* int32 partial sums of one block: weights w0 (elements 0-15) and w1 (16-31) times qx */
static inline int32x4_t i8_block(int8x16_t w0, int8x16_t w1, const int8_t *qx) {
  int8x16_t x0 = vld1q_s8(qx), x1 = vld1q_s8(qx + 16);
  int32x4_t a = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)));
  a = vpadalq_s16(a, vmull_s8(vget_high_s8(w0), vget_high_s8(x0)));
  a = vpadalq_s16(a, vmull_s8(vget_low_s8(w1), vget_low_s8(x1)));
  return vpadalq_s16(a, vmull_s8(vget_high_s8(w1), vget_high_s8(x1)));
}

/* a block's weights as int8: Q8_0 as stored; Q4 byte j holds element j (low nibble) and
 * j + 16 (high nibble), minus 8 for Q4_0 */
static inline void i8_w_q8_0(const uint8_t *p, int8x16_t *w0, int8x16_t *w1) {
  *w0 = vld1q_s8((const int8_t *)(p + 2));
  *w1 = vld1q_s8((const int8_t *)(p + 18));
}
static inline void i8_w_q4_0(const uint8_t *p, int8x16_t *w0, int8x16_t *w1) {
  uint8x16_t v = vld1q_u8(p + 2);
  *w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), vdupq_n_s8(8));
  *w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
}
static inline void i8_w_q4_1(const uint8_t *p, int8x16_t *w0, int8x16_t *w1) {
  uint8x16_t v = vld1q_u8(p + 4);
  *w0 = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15)));
  *w1 = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
}

/* four blocks' partial sums -> their four totals */
static inline int32x4_t i8_reduce4(int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3) {
  return vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
}

/* the F16 at offset off of eight consecutive blocks (bb bytes apart), widened exactly */
static inline v8 i8_f16x8(const uint8_t *p, int64_t bb, int off) {
  uint16_t h[8];
  for (int k = 0; k < 8; k++) h[k] = lrt_rd_u16le(p + k * bb + off);
  return load_f16(h, 0);
}

/* the float steps of eight blocks b..b+7 of one token: acc + c_b, lane by lane */
static inline v8 i8_f8(v8 acc, int32x4_t S0, int32x4_t S1, v8 dw, v8 mw, int has_m, const float *dx,
                       const int32_t *sx, int64_t b) {
  v8 d = load_x(dx, b);
  float32x4_t c0 = vmulq_f32(vmulq_f32(dw.lo, d.lo), vcvtq_f32_s32(S0));
  float32x4_t c1 = vmulq_f32(vmulq_f32(dw.hi, d.hi), vcvtq_f32_s32(S1));
  if (has_m) {
    c0 = vaddq_f32(c0, vmulq_f32(vmulq_f32(mw.lo, d.lo), vcvtq_f32_s32(vld1q_s32(sx + b))));
    c1 = vaddq_f32(c1, vmulq_f32(vmulq_f32(mw.hi, d.hi), vcvtq_f32_s32(vld1q_s32(sx + b + 4))));
  }
  acc.lo = vaddq_f32(acc.lo, c0);
  acc.hi = vaddq_f32(acc.hi, c1);
  return acc;
}

/* c_b of a tail block: lrt_i8_cb_*'s float steps, S_b from the NEON sums */
static inline float i8_tail(int32x4_t part, const uint8_t *pb, int has_m, const float *dx, const int32_t *sx,
                            int64_t b) {
  float S = (float)vaddvq_s32(part);
  float dd = lrt_f16_to_f32(lrt_rd_u16le(pb)) * dx[b];
  if (!has_m) return dd * S;
  float md = lrt_f16_to_f32(lrt_rd_u16le(pb + 2)) * dx[b];
  return dd * S + md * (float)sx[b];
}

/* DOT: one row, one token. ROWS: one row against M tokens, two at a time sharing the weight
 * loads, unpacking and scale widening; each token's integer sums and float steps are DOT's,
 * so every output has its bits. */
#define DEFINE_I8_KERNELS(FMT, BB, WLOAD, HAS_M)                                                \
  static float dot_##FMT##_i8_neon(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n) { \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    int64_t nb = n / 32, b = 0;                                                               \
    v8 acc = v8_zero();                                                                       \
    for (; b + 8 <= nb; b += 8) {                                                             \
      const uint8_t *pb = p + b * (BB);                                                       \
      const int8_t *xb = qx + b * 32;                                                         \
      int32x4_t a[8];                                                                         \
      for (int k = 0; k < 8; k++) {                                                           \
        int8x16_t w0, w1;                                                                     \
        WLOAD(pb + k * (BB), &w0, &w1);                                                       \
        a[k] = i8_block(w0, w1, xb + 32 * k);                                                 \
      }                                                                                       \
      v8 dw = i8_f16x8(pb, BB, 0), mw = HAS_M ? i8_f16x8(pb, BB, 2) : dw;                     \
      acc = i8_f8(acc, i8_reduce4(a[0], a[1], a[2], a[3]), i8_reduce4(a[4], a[5], a[6], a[7]), dw, mw, HAS_M, dx, \
                  sx, b);                                                                     \
    }                                                                                         \
    float s = hsum8(acc);                                                                     \
    for (; b < nb; b++) {                                                                     \
      int8x16_t w0, w1;                                                                       \
      WLOAD(p + b * (BB), &w0, &w1);                                                          \
      s = s + i8_tail(i8_block(w0, w1, qx + b * 32), p + b * (BB), HAS_M, dx, sx, b);         \
    }                                                                                         \
    return s;                                                                                 \
  }                                                                                           \
  static void rows_##FMT##_i8_neon(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M, \
                                   int64_t n, float *y, int64_t ys) {                         \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    int64_t nb = n / 32, t = 0;                                                               \
    for (; t + 2 <= M; t += 2) {                                                              \
      const int8_t *x0 = qx + t * n, *x1 = x0 + n;                                            \
      const float *d0 = dx + t * nb, *d1 = d0 + nb;                                           \
      const int32_t *s0 = sx + t * nb, *s1 = s0 + nb;                                         \
      v8 acc0 = v8_zero(), acc1 = acc0;                                                       \
      int64_t b = 0;                                                                          \
      for (; b + 8 <= nb; b += 8) {                                                           \
        const uint8_t *pb = p + b * (BB);                                                     \
        int32x4_t a[8], c[8];                                                                 \
        for (int k = 0; k < 8; k++) {                                                         \
          int8x16_t w0, w1;                                                                   \
          WLOAD(pb + k * (BB), &w0, &w1);                                                     \
          a[k] = i8_block(w0, w1, x0 + (b + k) * 32);                                         \
          c[k] = i8_block(w0, w1, x1 + (b + k) * 32);                                         \
        }                                                                                     \
        v8 dw = i8_f16x8(pb, BB, 0), mw = HAS_M ? i8_f16x8(pb, BB, 2) : dw;                   \
        acc0 = i8_f8(acc0, i8_reduce4(a[0], a[1], a[2], a[3]), i8_reduce4(a[4], a[5], a[6], a[7]), dw, mw, HAS_M, \
                     d0, s0, b);                                                              \
        acc1 = i8_f8(acc1, i8_reduce4(c[0], c[1], c[2], c[3]), i8_reduce4(c[4], c[5], c[6], c[7]), dw, mw, HAS_M, \
                     d1, s1, b);                                                              \
      }                                                                                       \
      float r0 = hsum8(acc0), r1 = hsum8(acc1);                                               \
      for (; b < nb; b++) {                                                                   \
        int8x16_t w0, w1;                                                                     \
        WLOAD(p + b * (BB), &w0, &w1);                                                        \
        r0 = r0 + i8_tail(i8_block(w0, w1, x0 + b * 32), p + b * (BB), HAS_M, d0, s0, b);     \
        r1 = r1 + i8_tail(i8_block(w0, w1, x1 + b * 32), p + b * (BB), HAS_M, d1, s1, b);     \
      }                                                                                       \
      y[t * ys] = r0;                                                                         \
      y[(t + 1) * ys] = r1;                                                                   \
    }                                                                                         \
    for (; t < M; t++) y[t * ys] = dot_##FMT##_i8_neon(w, qx + t * n, dx + t * nb, sx + t * nb, n); \
  }
DEFINE_I8_KERNELS(q8_0, 34, i8_w_q8_0, 0)
DEFINE_I8_KERNELS(q4_0, 18, i8_w_q4_0, 0)
DEFINE_I8_KERNELS(q4_1, 20, i8_w_q4_1, 1)
#undef DEFINE_I8_KERNELS

static inline v8 v8_splat(float v) {
  v8 r = {vdupq_n_f32(v), vdupq_n_f32(v)};
  return r;
}
static inline void store_x(float *x, int64_t i, v8 v) {
  vst1q_f32(x + i, v.lo);
  vst1q_f32(x + i + 4, v.hi);
}
#define TILE4_V8_NAME tile4_f32_neon
#define CHAINS_V8_SUFFIX neon
#define TILE4_PF_V8_SUFFIX neon
#include "tile_v8.h"

const lrt_kernels lrt_kernels_neon = {
    .name = "neon",
    .dot_f32 = dot_f32_neon, .dot_f16 = dot_f16_neon, .dot_bf16 = dot_bf16_neon, .sum_f32 = sum_f32_neon,
    .rows_f32 = rows_f32, .rows_f16 = rows_f16, .rows_bf16 = rows_bf16,
    .dot4_f32 = dot4_f32, .dot4_f16 = dot4_f16, .dot4_bf16 = dot4_bf16,
    .dequant_q8_0 = dequant_q8_0_neon, .dequant_q4_0 = dequant_q4_0_neon, .dequant_q4_1 = dequant_q4_1_neon,
    .dot4_q8_0 = dot4_q8_0_neon, .dot4_q4_0 = dot4_q4_0_neon, .dot4_q4_1 = dot4_q4_1_neon,
    .exp_f32 = exp_f32_neon, .silu_mul_f32 = silu_mul_f32_neon,
    .dequant_q4_k = dequant_q4_k_neon, .dequant_q5_k = dequant_q5_k_neon, .dequant_q6_k = dequant_q6_k_neon,
    .dot4_q4_k = dot4_q4_k_neon, .dot4_q5_k = dot4_q5_k_neon, .dot4_q6_k = dot4_q6_k_neon,
    .tile4_f32 = tile4_f32_neon, .widen_f16 = widen_f16_neon, .widen_bf16 = widen_bf16_neon,
    .dot_q8_0_i8 = dot_q8_0_i8_neon, .dot_q4_0_i8 = dot_q4_0_i8_neon, .dot_q4_1_i8 = dot_q4_1_i8_neon,
    .rows_q8_0_i8 = rows_q8_0_i8_neon, .rows_q4_0_i8 = rows_q4_0_i8_neon, .rows_q4_1_i8 = rows_q4_1_i8_neon,
    .dequant_q5_0 = dequant_q5_0_neon, .dequant_q5_1 = dequant_q5_1_neon,
    .dot4_q5_0 = dot4_q5_0_neon, .dot4_q5_1 = dot4_q5_1_neon,
    .lincomb_f32 = lincomb_f32_neon, .rank1_f32 = rank1_f32_neon,
    .tile4_f32_pf = tile4_f32_pf_neon, .tile4_f16_pf = tile4_f16_pf_neon, .tile4_bf16_pf = tile4_bf16_pf_neon,
};
#endif
