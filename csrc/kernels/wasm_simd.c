/* wasm_simd.c -- WebAssembly SIMD128 kernels (compiled when the compiler targets simd128,
 * e.g. clang/zig -msimd128). Bit-identical to ref.c: the eight dot8 lanes live in two
 * f32x4 accumulators (lanes 0-3 and 4-7); f32x4.mul then f32x4.add, each rounded (SIMD128
 * has no fused multiply-add outside the relaxed-simd proposal, which is not used; the file
 * is compiled with -ffp-contract=off as well); lanes combined as t = lo + hi,
 * s = (t0 + t2) + (t1 + t3). WebAssembly arithmetic is IEEE-754 with subnormals, so the
 * only thing it leaves open is NaN payloads, which are not part of the contract.
 * F16 weights are widened exactly by bit manipulation (SIMD128 has no half conversion):
 * the magnitude bits shifted into a float's position and scaled by 2^112 (exact, since it
 * is a power of two and the result is representable; subnormal halves come out normal),
 * the inf/NaN exponent patched, the sign put back. BF16 is a 16-bit shift. */
#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

#include "../base/base.h"
#include "../base/lrt_math.h"
#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

typedef struct v8 {
  v128_t lo, hi; /* f32x4: dot8 lanes 0-3 and 4-7 */
} v8;

static inline v8 v8_zero(void) {
  v8 r = {wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f)};
  return r;
}
static inline v8 v8_macc(v8 a, v8 w, v8 x) {
  a.lo = wasm_f32x4_add(a.lo, wasm_f32x4_mul(w.lo, x.lo));
  a.hi = wasm_f32x4_add(a.hi, wasm_f32x4_mul(w.hi, x.hi));
  return a;
}
static inline float hsum8(v8 a) {
  v128_t t = wasm_f32x4_add(a.lo, a.hi); /* t0..t3 */
  float t0 = wasm_f32x4_extract_lane(t, 0), t1 = wasm_f32x4_extract_lane(t, 1);
  float t2 = wasm_f32x4_extract_lane(t, 2), t3 = wasm_f32x4_extract_lane(t, 3);
  return (t0 + t2) + (t1 + t3);
}
static inline v8 load_x(const float *x, int64_t i) {
  v8 r = {wasm_v128_load(x + i), wasm_v128_load(x + i + 4)};
  return r;
}
static inline v8 load_f32(const void *w, int64_t i) { return load_x((const float *)w, i); }

/* A block's F16 scale at p widened to float: normal numbers here, inline (the bits of
 * lrt_f16_to_f32's normal branch: exponent rebased by 127 - 15, mantissa shifted up), zero,
 * subnormals, inf and NaN through lrt_f16_to_f32 itself. Same bits as lrt_f16_to_f32 for
 * all 65536 inputs (tests/test_kernels.py); saves a call per scale (7% of a Q4_1 decode). */
static inline float f16_le(const uint8_t *p) {
  uint16_t h = lrt_rd_u16le(p);
  uint32_t e = (h >> 10) & 0x1fu;
  if (e - 1u < 30u) {
    uint32_t bits = ((uint32_t)(h & 0x8000u) << 16) | ((e + 112u) << 23) | ((uint32_t)(h & 0x3ffu) << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
  }
  return lrt_f16_to_f32(h);
}

/* four halves (in the low 16 bits of each u32 lane) to four floats, exactly */
static inline v128_t f16x4_to_f32(v128_t h) {
  v128_t mag = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x7fff)), 13);
  v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16);
  v128_t finite = wasm_f32x4_mul(mag, wasm_f32x4_splat(5.192296858534828e+33f)); /* 2^112 */
  /* exponent 31: inf (mantissa 0) or NaN (quieted, payload kept, as lrt_f16_to_f32) */
  v128_t inf_exp = wasm_i32x4_splat(0x0f800000);
  v128_t special = wasm_v128_or(wasm_v128_or(mag, wasm_i32x4_splat(0x7f800000)),
                                wasm_v128_and(wasm_u32x4_gt(mag, inf_exp), wasm_i32x4_splat(0x00400000)));
  v128_t r = wasm_v128_bitselect(special, finite, wasm_u32x4_ge(mag, inf_exp));
  return wasm_v128_or(r, sign);
}
static inline v8 load_f16(const void *w, int64_t i) {
  v128_t h = wasm_v128_load((const uint16_t *)w + i);
  v8 r = {f16x4_to_f32(wasm_u32x4_extend_low_u16x8(h)), f16x4_to_f32(wasm_u32x4_extend_high_u16x8(h))};
  return r;
}
static inline v8 load_bf16(const void *w, int64_t i) {
  v128_t h = wasm_v128_load((const uint16_t *)w + i);
  v8 r = {wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h), 16), wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(h), 16)};
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

static float dot_f32_wasm(const float *w, const float *x, int64_t n) { return dot_f32(w, x, n); }
static float dot_f16_wasm(const uint16_t *w, const float *x, int64_t n) { return dot_f16(w, x, n); }
static float dot_bf16_wasm(const uint16_t *w, const float *x, int64_t n) { return dot_bf16(w, x, n); }

static float sum_f32_wasm(const float *x, int64_t n) {
  v8 acc = v8_zero();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc.lo = wasm_f32x4_add(acc.lo, wasm_v128_load(x + i));
    acc.hi = wasm_f32x4_add(acc.hi, wasm_v128_load(x + i + 4));
  }
  float s = hsum8(acc);
  for (; i < n; i++) s = s + x[i];
  return s;
}

/* ---- GGUF blocks ------------------------------------------------------------------------
 * One block of 32 weights as eight f32x4 (v[k] = weights 4k..4k+3): scale(s) widened from
 * F16 exactly (scalar, then splat), integers converted exactly, then one multiply (and one
 * add for Q4_1) per element, as in the reference. */
typedef struct blk32 {
  v128_t v[8];
} blk32;

static inline void i8x16_to_f32(v128_t q, v128_t *out) {
  v128_t lo = wasm_i16x8_extend_low_i8x16(q), hi = wasm_i16x8_extend_high_i8x16(q);
  out[0] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(lo));
  out[1] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(lo));
  out[2] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(hi));
  out[3] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(hi));
}

static inline blk32 block_q8_0(const uint8_t *p) {
  blk32 b;
  v128_t d = wasm_f32x4_splat(f16_le(p));
  i8x16_to_f32(wasm_v128_load(p + 2), &b.v[0]);
  i8x16_to_f32(wasm_v128_load(p + 18), &b.v[4]);
  for (int k = 0; k < 8; k++) b.v[k] = wasm_f32x4_mul(d, b.v[k]);
  return b;
}

/* weights j and j + 16 are the low and high nibble of byte j */
static inline void nibbles(const uint8_t *qs, int8_t bias, v128_t *out) {
  v128_t v = wasm_v128_load(qs);
  v128_t b = wasm_i8x16_splat(bias);
  v128_t lo = wasm_i8x16_sub(wasm_v128_and(v, wasm_i8x16_splat(0x0f)), b);
  v128_t hi = wasm_i8x16_sub(wasm_u8x16_shr(v, 4), b);
  i8x16_to_f32(lo, &out[0]);
  i8x16_to_f32(hi, &out[4]);
}

static inline blk32 block_q4_0(const uint8_t *p) {
  blk32 b;
  v128_t d = wasm_f32x4_splat(f16_le(p));
  nibbles(p + 2, 8, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = wasm_f32x4_mul(d, b.v[k]);
  return b;
}

static inline blk32 block_q4_1(const uint8_t *p) {
  blk32 b;
  v128_t d = wasm_f32x4_splat(f16_le(p));
  v128_t m = wasm_f32x4_splat(f16_le(p + 2));
  nibbles(p + 4, 0, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = wasm_f32x4_add(wasm_f32x4_mul(d, b.v[k]), m);
  return b;
}

/* Q5_0 / Q5_1: the Q4 nibbles with bit j of qh on top as 16. Lane j of a byte vector holds
 * byte j / 8 of the 16 qh bits of those elements (a swizzle of the splat qh; WebAssembly is
 * little-endian), and-ed with 1 << (j % 8) and compared equal to it; the all-ones lanes
 * anded with 16 and or-ed onto the nibble give q in 0..31 (bias 16 for Q5_0: q - 16 in
 * -16..15 is exact in int8), then widened exactly as Q4's. */
static inline v128_t q5_high16(v128_t qh, v128_t idx) {
  const v128_t bit = wasm_u8x16_const(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
  v128_t v = wasm_v128_and(wasm_i8x16_swizzle(qh, idx), bit);
  return wasm_v128_and(wasm_i8x16_eq(v, bit), wasm_i8x16_splat(16));
}
static inline void nibbles5(const uint8_t *qs, uint32_t qh32, int8_t bias, v128_t *out) {
  v128_t v = wasm_v128_load(qs), qh = wasm_i32x4_splat((int32_t)qh32);
  v128_t b = wasm_i8x16_splat(bias);
  v128_t hlo = q5_high16(qh, wasm_u8x16_const(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  v128_t hhi = q5_high16(qh, wasm_u8x16_const(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  v128_t lo = wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(v, wasm_i8x16_splat(0x0f)), hlo), b);
  v128_t hi = wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(v, 4), hhi), b);
  i8x16_to_f32(lo, &out[0]);
  i8x16_to_f32(hi, &out[4]);
}

static inline blk32 block_q5_0(const uint8_t *p) {
  blk32 b;
  v128_t d = wasm_f32x4_splat(f16_le(p));
  nibbles5(p + 6, lrt_rd_u32le(p + 2), 16, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = wasm_f32x4_mul(d, b.v[k]);
  return b;
}

static inline blk32 block_q5_1(const uint8_t *p) {
  blk32 b;
  v128_t d = wasm_f32x4_splat(f16_le(p));
  v128_t m = wasm_f32x4_splat(f16_le(p + 2));
  nibbles5(p + 8, lrt_rd_u32le(p + 4), 0, b.v);
  for (int k = 0; k < 8; k++) b.v[k] = wasm_f32x4_add(wasm_f32x4_mul(d, b.v[k]), m);
  return b;
}

/* DEQUANT: one row to float. DOT4Q: four rows against one x, each block dequantized in
 * registers and accumulated into the dot8 lanes in order (n % 32 == 0: no tail). Q8_0 and
 * Q4_1 have their own dot4 (below): row by row, a quarter block at a time. */
#define DEFINE_BLOCK_DEQUANT(FMT, BLOCK, BYTES)                                               \
  static void dequant_##FMT##_wasm(const void *row, float *y, int64_t n) {                    \
    const uint8_t *p = (const uint8_t *)row;                                                  \
    for (int64_t b = 0; b < n / 32; b++, p += BYTES, y += 32) {                               \
      blk32 q = BLOCK(p);                                                                     \
      for (int k = 0; k < 8; k++) wasm_v128_store(y + 4 * k, q.v[k]);                        \
    }                                                                                         \
  }
#define DEFINE_BLOCK_KERNELS(FMT, BLOCK, BYTES)                                               \
  DEFINE_BLOCK_DEQUANT(FMT, BLOCK, BYTES)                                                     \
  static void dot4_##FMT##_wasm(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y) { \
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

/* Q4_1 (the format of the web demo's model), four rows, two at a time (four independent
 * accumulator chains) over a segment of up to Q4_1_SEG blocks. The block scales of the segment
 * are widened first, four blocks per f32x4 step (f16_finite_x4; a group with an inf or NaN
 * half goes through f16_le), into a small float array that the block loop splats straight
 * from memory (a load, no shuffle): V8 spent most of a scalar f16_le's instructions on the
 * scalar ports that the vector work also needs. Each quarter of a block's nibbles is zero
 * extended to u32 lanes by a constant swizzle (out-of-range indices give 0). Per row the lanes
 * add the same products in the same order as the generic kernel (chunk k of block b, k = 0..3,
 * blocks in order) and each weight is d * q + m as block_q4_1 computes it: the same bits.
 * Measured in Node: 23.6 -> 25.9 decode tokens per CPU-second (docs/web.md). */
#define Q4_1_SEG 64

/* four halves (low 16 bits of u32 lanes, exponent < 31) to floats, exactly: the magnitude
 * bits moved to a float's place and scaled by 2^112 (subnormal halves come out normal), the
 * sign put back */
static inline v128_t f16_finite_x4(v128_t h) {
  v128_t mag = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x7fff)), 13);
  v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16);
  return wasm_v128_or(wasm_f32x4_mul(mag, wasm_f32x4_splat(5.192296858534828e+33f)), sign);
}

/* the (d, m) of nb Q4_1 blocks of a row as floats: sc[2b] = d, sc[2b + 1] = m */
static void q4_1_scales(const uint8_t *p, int64_t nb, float *sc) {
  const v128_t e = wasm_i16x8_splat(0x7c00);
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4, p += 80) {
    v128_t v = wasm_v128_load32_zero(p); /* d | m << 16 of four blocks */
    v = wasm_v128_load32_lane(p + 20, v, 1);
    v = wasm_v128_load32_lane(p + 40, v, 2);
    v = wasm_v128_load32_lane(p + 60, v, 3);
    if (wasm_v128_any_true(wasm_i16x8_eq(wasm_v128_and(v, e), e))) { /* an inf or NaN half */
      for (int k = 0; k < 8; k++) sc[2 * b + k] = f16_le(p + 20 * (k / 2) + 2 * (k % 2));
      continue;
    }
    wasm_v128_store(sc + 2 * b, f16_finite_x4(wasm_u32x4_extend_low_u16x8(v)));
    wasm_v128_store(sc + 2 * b + 4, f16_finite_x4(wasm_u32x4_extend_high_u16x8(v)));
  }
  for (; b < nb; b++, p += 20) {
    sc[2 * b] = f16_le(p);
    sc[2 * b + 1] = f16_le(p + 2);
  }
}

static void dot4_q4_1_seg_wasm(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y) {
  const v128_t low4 = wasm_i8x16_splat(0x0f);
  /* byte j of a vector to u32 lane j % 4, zeros above (swizzle index >= 16 gives 0) */
  const v128_t s0 = wasm_u8x16_const(0, 128, 128, 128, 1, 128, 128, 128, 2, 128, 128, 128, 3, 128, 128, 128);
  const v128_t s1 = wasm_u8x16_const(4, 128, 128, 128, 5, 128, 128, 128, 6, 128, 128, 128, 7, 128, 128, 128);
  const v128_t s2 = wasm_u8x16_const(8, 128, 128, 128, 9, 128, 128, 128, 10, 128, 128, 128, 11, 128, 128, 128);
  const v128_t s3 = wasm_u8x16_const(12, 128, 128, 128, 13, 128, 128, 128, 14, 128, 128, 128, 15, 128, 128, 128);
  float sc[4][2 * Q4_1_SEG];
  v8 acc[4];
  for (int r = 0; r < 4; r++) acc[r] = v8_zero();
  const int64_t nb = n / 32;
  for (int64_t b0 = 0; b0 < nb; b0 += Q4_1_SEG) {
    int64_t ns = nb - b0 < Q4_1_SEG ? nb - b0 : Q4_1_SEG;
    for (int r = 0; r < 4; r++) q4_1_scales((const uint8_t *)w + r * row_bytes + b0 * 20, ns, sc[r]);
    for (int r = 0; r < 4; r += 2) {
      const uint8_t *p0 = (const uint8_t *)w + r * row_bytes + b0 * 20 + 4, *p1 = p0 + row_bytes;
      const float *xb = x + b0 * 32, *c0 = sc[r], *c1 = sc[r + 1];
      v8 a0 = acc[r], a1 = acc[r + 1];
      for (int64_t b = 0; b < ns; b++, p0 += 20, p1 += 20, xb += 32, c0 += 2, c1 += 2) {
        v128_t d0 = wasm_v128_load32_splat(c0), m0 = wasm_v128_load32_splat(c0 + 1);
        v128_t d1 = wasm_v128_load32_splat(c1), m1 = wasm_v128_load32_splat(c1 + 1);
        v128_t v0 = wasm_v128_load(p0), v1 = wasm_v128_load(p1);
        /* a += (d * q + m) * x over 4 lanes, each operation rounded (as block_q4_1, v8_macc) */
#define Q41_STEP(a, q, d, m, xv) \
  a = wasm_f32x4_add(a, wasm_f32x4_mul(wasm_f32x4_add(wasm_f32x4_mul(d, wasm_f32x4_convert_i32x4(q)), m), xv))
        /* chunk of 8 weights at xb + off: u32 lanes of nibble bytes sa (dot8 lanes 0-3), sb (4-7) */
#define Q41_CHUNK(n0, n1, sa, sb, off)                                                                      \
  {                                                                                                       \
    v128_t xl = wasm_v128_load(xb + (off)), xh = wasm_v128_load(xb + (off) + 4);                            \
    Q41_STEP(a0.lo, wasm_i8x16_swizzle(n0, sa), d0, m0, xl);                                              \
    Q41_STEP(a0.hi, wasm_i8x16_swizzle(n0, sb), d0, m0, xh);                                              \
    Q41_STEP(a1.lo, wasm_i8x16_swizzle(n1, sa), d1, m1, xl);                                              \
    Q41_STEP(a1.hi, wasm_i8x16_swizzle(n1, sb), d1, m1, xh);                                              \
  }
        { /* weights 0..15: the low nibbles of bytes 0..15 */
          v128_t lo0 = wasm_v128_and(v0, low4), lo1 = wasm_v128_and(v1, low4);
          Q41_CHUNK(lo0, lo1, s0, s1, 0)
          Q41_CHUNK(lo0, lo1, s2, s3, 8)
        }
        { /* weights 16..31: the high nibbles (a 16-bit shift and the same mask: V8 builds a
           * mask of its own for every 8-bit shift) */
          v128_t hi0 = wasm_v128_and(wasm_u16x8_shr(v0, 4), low4), hi1 = wasm_v128_and(wasm_u16x8_shr(v1, 4), low4);
          Q41_CHUNK(hi0, hi1, s0, s1, 16)
          Q41_CHUNK(hi0, hi1, s2, s3, 24)
        }
#undef Q41_CHUNK
#undef Q41_STEP
      }
      acc[r] = a0;
      acc[r + 1] = a1;
    }
  }
  for (int r = 0; r < 4; r++) y[r] = hsum8(acc[r]);
}

/* Q8_0 (the demo model's embedding / LM head), four rows, the same way: one row at a time, a
 * quarter block (8 weights: d * q, as block_q8_0) per step. */
static inline void q8_0_quarter(v128_t q16, v128_t d, v8 *wv) {
  wv->lo = wasm_f32x4_mul(d, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(q16)));
  wv->hi = wasm_f32x4_mul(d, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(q16)));
}
static void dot4_q8_0_rowwise_wasm(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y) {
  for (int r = 0; r < 4; r++) {
    const uint8_t *p = (const uint8_t *)w + r * row_bytes;
    const float *xb = x;
    v8 a = v8_zero();
    for (int64_t b = 0; b < n / 32; b++, p += 34, xb += 32) {
      v128_t d = wasm_f32x4_splat(f16_le(p));
      v128_t q0 = wasm_v128_load(p + 2), q1 = wasm_v128_load(p + 18);
      v8 wv;
      q8_0_quarter(wasm_i16x8_extend_low_i8x16(q0), d, &wv);
      a = v8_macc(a, wv, load_x(xb, 0));
      q8_0_quarter(wasm_i16x8_extend_high_i8x16(q0), d, &wv);
      a = v8_macc(a, wv, load_x(xb, 8));
      q8_0_quarter(wasm_i16x8_extend_low_i8x16(q1), d, &wv);
      a = v8_macc(a, wv, load_x(xb, 16));
      q8_0_quarter(wasm_i16x8_extend_high_i8x16(q1), d, &wv);
      a = v8_macc(a, wv, load_x(xb, 24));
    }
    y[r] = hsum8(a);
  }
}

DEFINE_BLOCK_DEQUANT(q8_0, block_q8_0, 34) /* dot4: dot4_q8_0_rowwise_wasm */
DEFINE_BLOCK_KERNELS(q4_0, block_q4_0, 18)
DEFINE_BLOCK_DEQUANT(q4_1, block_q4_1, 20) /* dot4: dot4_q4_1_seg_wasm */
DEFINE_BLOCK_KERNELS(q5_0, block_q5_0, 22)
DEFINE_BLOCK_KERNELS(q5_1, block_q5_1, 24)
#undef DEFINE_BLOCK_KERNELS
#undef DEFINE_BLOCK_DEQUANT

/* ---- K-quants: 256-element super-blocks (docs/numerics.md, ref.c) ---------------------------
 * Per row and super-block the float scales are computed as the reference does (ds = d * sc,
 * dm = dmin * m, Q6_K ds = d * sc: one rounding each) into a small float array, then
 * splatted. Sixteen elements at a time: the integers widened exactly (u8 -> u16 -> u32 ->
 * f32, or s8 -> ... for Q6_K's q - 32), then (ds * q) - dm (Q4_K, Q5_K) or ds * (q - 32)
 * (Q6_K), each operation its own instruction. Sixteen consecutive elements starting at a
 * multiple of 8 are two dot8 groups: elements 0-3 and 8-11 go to lanes 0-3 (lo), 4-7 and
 * 12-15 to lanes 4-7 (hi), added in element order. dot4 interleaves the four rows chunk by
 * chunk (independent accumulator chains; each chain adds its chunks in element order). */

static inline void u8x16_to_f32(v128_t q, v128_t *out) {
  v128_t lo = wasm_u16x8_extend_low_u8x16(q), hi = wasm_u16x8_extend_high_u8x16(q);
  out[0] = wasm_f32x4_convert_u32x4(wasm_u32x4_extend_low_u16x8(lo));
  out[1] = wasm_f32x4_convert_u32x4(wasm_u32x4_extend_high_u16x8(lo));
  out[2] = wasm_f32x4_convert_u32x4(wasm_u32x4_extend_low_u16x8(hi));
  out[3] = wasm_f32x4_convert_u32x4(wasm_u32x4_extend_high_u16x8(hi));
}

/* Q4_K / Q5_K: the 8 sub-block scales and mins of a block, times d and dmin */
static inline void k4_scales(const uint8_t *p, float *ds, float *dm) {
  const uint8_t *s = p + 4;
  uint8_t v[16];
  for (int j = 0; j < 4; j++) {
    v[j] = s[j] & 63;                                                /* sc, j < 4 */
    v[8 + j] = s[j + 4] & 63;                                        /* m,  j < 4 */
    v[4 + j] = (uint8_t)((s[j + 8] & 15) | ((s[j] >> 6) << 4));      /* sc, j + 4 */
    v[12 + j] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4)); /* m, j + 4 */
  }
  v128_t f[4];
  u8x16_to_f32(wasm_v128_load(v), f);
  v128_t d = wasm_f32x4_splat(f16_le(p));
  v128_t dmin = wasm_f32x4_splat(f16_le(p + 2));
  wasm_v128_store(ds, wasm_f32x4_mul(d, f[0]));
  wasm_v128_store(ds + 4, wasm_f32x4_mul(d, f[1]));
  wasm_v128_store(dm, wasm_f32x4_mul(dmin, f[2]));
  wasm_v128_store(dm + 4, wasm_f32x4_mul(dmin, f[3]));
}

/* Q6_K: the 16 int8 scales of a block times d */
static inline void k6_scales(const uint8_t *p, float *ds) {
  v128_t d = wasm_f32x4_splat(f16_le(p + 208));
  v128_t s[4];
  i8x16_to_f32(wasm_v128_load(p + 192), s);
  for (int k = 0; k < 4; k++) wasm_v128_store(ds + 4 * k, wasm_f32x4_mul(d, s[k]));
}

/* sixteen weights (ds * q) - dm, q unsigned in the u8 lanes of v */
static inline void k4_w16(v128_t v, float ds, float dm, v128_t *w) {
  v128_t dsv = wasm_f32x4_splat(ds), dmv = wasm_f32x4_splat(dm);
  u8x16_to_f32(v, w);
  for (int k = 0; k < 4; k++) w[k] = wasm_f32x4_sub(wasm_f32x4_mul(dsv, w[k]), dmv);
}

/* sixteen weights ds * (q - 32), q - 32 signed in the i8 lanes of v */
static inline void k6_w16(v128_t v, float ds, v128_t *w) {
  v128_t dsv = wasm_f32x4_splat(ds);
  i8x16_to_f32(v, w);
  for (int k = 0; k < 4; k++) w[k] = wasm_f32x4_mul(dsv, w[k]);
}

/* acc + w * x for sixteen consecutive elements (two dot8 groups, in order) */
static inline v8 k_acc16(v8 a, const v128_t *w, const v128_t *xv) {
  a.lo = wasm_f32x4_add(a.lo, wasm_f32x4_mul(w[0], xv[0]));
  a.hi = wasm_f32x4_add(a.hi, wasm_f32x4_mul(w[1], xv[1]));
  a.lo = wasm_f32x4_add(a.lo, wasm_f32x4_mul(w[2], xv[2]));
  a.hi = wasm_f32x4_add(a.hi, wasm_f32x4_mul(w[3], xv[3]));
  return a;
}
static inline void load_x16(const float *x, v128_t *xv) {
  for (int k = 0; k < 4; k++) xv[k] = wasm_v128_load(x + 4 * k);
}
static inline void store16(float *y, const v128_t *w) {
  for (int k = 0; k < 4; k++) wasm_v128_store(y + 4 * k, w[k]);
}

/* Q4_K: sub-block j (32 elements), half g (16 elements): nibble j & 1 of bytes
 * 16 + 32 (j / 2) + 16 g .. +15 */
static inline v128_t q4k_int16(const uint8_t *p, int j, int g) {
  v128_t v = wasm_v128_load(p + 16 + 32 * (j >> 1) + 16 * g);
  return (j & 1) ? wasm_u8x16_shr(v, 4) : wasm_v128_and(v, wasm_i8x16_splat(15));
}
/* Q5_K: the Q4_K nibble (bytes from 48) plus bit j of qh[16 g ..] as bit 4 */
static inline v128_t q5k_int16(const uint8_t *p, int j, int g) {
  v128_t v = wasm_v128_load(p + 48 + 32 * (j >> 1) + 16 * g);
  v128_t lo = (j & 1) ? wasm_u8x16_shr(v, 4) : wasm_v128_and(v, wasm_i8x16_splat(15));
  v128_t qh = wasm_v128_load(p + 16 + 16 * g);
  v128_t hi = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(qh, (uint32_t)j), wasm_i8x16_splat(1)), 4);
  return wasm_v128_or(lo, hi);
}
/* Q6_K: elements 128 h + 32 k + 16 g .. +15 as q - 32: low 4 bits from
 * ql[64 h + 32 (k & 1) + 16 g ..] >> 4 (k / 2), high 2 bits from qh[32 h + 16 g ..] >> 2 k */
static inline v128_t q6k_int16(const uint8_t *p, int h, int k, int g) {
  v128_t ql = wasm_v128_load(p + 64 * h + 32 * (k & 1) + 16 * g);
  v128_t qh = wasm_v128_load(p + 128 + 32 * h + 16 * g);
  v128_t lo = wasm_v128_and(wasm_u8x16_shr(ql, (uint32_t)(4 * (k >> 1))), wasm_i8x16_splat(15));
  v128_t hi = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(qh, (uint32_t)(2 * k)), wasm_i8x16_splat(3)), 4);
  return wasm_i8x16_sub(wasm_v128_or(lo, hi), wasm_i8x16_splat(32));
}

#define DEFINE_K4_KERNELS(FMT, INT16, BYTES)                                                    \
  static void dequant_##FMT##_wasm(const void *row, float *y, int64_t n) {                     \
    const uint8_t *p = (const uint8_t *)row;                                                   \
    float ds[8], dm[8];                                                                        \
    v128_t w[4];                                                                               \
    for (int64_t b = 0; b < n / 256; b++, p += BYTES, y += 256) {                              \
      k4_scales(p, ds, dm);                                                                    \
      for (int j = 0; j < 8; j++)                                                              \
        for (int g = 0; g < 2; g++) {                                                          \
          k4_w16(INT16(p, j, g), ds[j], dm[j], w);                                             \
          store16(y + 32 * j + 16 * g, w);                                                     \
        }                                                                                      \
    }                                                                                          \
  }                                                                                            \
  static void dot4_##FMT##_wasm(const void *w, int64_t rb, const float *x, int64_t n, float *y) { \
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
          v128_t xv[4], wv[4];                                                                 \
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

static void dequant_q6_k_wasm(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  float ds[16];
  v128_t w[4];
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

static void dot4_q6_k_wasm(const void *w, int64_t rb, const float *x, int64_t n, float *y) {
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
          v128_t xv[4], wv[4];
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
static inline v128_t exp4(v128_t x) {
  const v128_t magic = wasm_f32x4_splat(12582912.0f);
  v128_t kf = wasm_f32x4_sub(wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269502162933349609375f)), magic), magic);
  v128_t r = wasm_f32x4_sub(wasm_f32x4_sub(x, wasm_f32x4_mul(kf, wasm_f32x4_splat(0.693145751953125f))),
                            wasm_f32x4_mul(kf, wasm_f32x4_splat(1.42860676533018704503775e-06f)));
  v128_t p = wasm_f32x4_splat(1.0f / 5040.0f);
  p = wasm_f32x4_add(wasm_f32x4_splat(1.0f / 720.0f), wasm_f32x4_mul(r, p));
  p = wasm_f32x4_add(wasm_f32x4_splat(1.0f / 120.0f), wasm_f32x4_mul(r, p));
  p = wasm_f32x4_add(wasm_f32x4_splat(1.0f / 24.0f), wasm_f32x4_mul(r, p));
  p = wasm_f32x4_add(wasm_f32x4_splat(1.0f / 6.0f), wasm_f32x4_mul(r, p));
  p = wasm_f32x4_add(wasm_f32x4_splat(0.5f), wasm_f32x4_mul(r, p));
  p = wasm_f32x4_add(wasm_f32x4_splat(1.0f), wasm_f32x4_add(r, wasm_f32x4_mul(wasm_f32x4_mul(r, r), p)));
  v128_t k = wasm_i32x4_trunc_sat_f32x4(kf);                                     /* kf is an integer here */
  v128_t k1 = wasm_i32x4_shr(wasm_i32x4_sub(k, wasm_i32x4_shr(k, 31)), 1);        /* k / 2, toward zero */
  v128_t k2 = wasm_i32x4_sub(k, k1);
  v128_t s1 = wasm_i32x4_shl(wasm_i32x4_add(k1, wasm_i32x4_splat(127)), 23);
  v128_t s2 = wasm_i32x4_shl(wasm_i32x4_add(k2, wasm_i32x4_splat(127)), 23);
  v128_t y = wasm_f32x4_mul(wasm_f32x4_mul(p, s1), s2);
  y = wasm_v128_bitselect(wasm_f32x4_splat(0.0f), y, wasm_f32x4_lt(x, wasm_f32x4_splat(-103.972084045410156f)));
  y = wasm_v128_bitselect(wasm_i32x4_splat(0x7f800000), y, wasm_f32x4_gt(x, wasm_f32x4_splat(88.72283172607421875f)));
  return wasm_v128_bitselect(y, x, wasm_f32x4_eq(x, x));
}

static void exp_f32_wasm(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, exp4(wasm_v128_load(x + i)));
  for (; i < n; i++) y[i] = lrt_expf(x[i]);
}

/* lrt_siluf(g) * u = (g / (1 + e^-g)) * u */
static void silu_mul_f32_wasm(const float *g, const float *u, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t gv = wasm_v128_load(g + i);
    v128_t s = wasm_f32x4_div(gv, wasm_f32x4_add(wasm_f32x4_splat(1.0f), exp4(wasm_f32x4_neg(gv))));
    wasm_v128_store(y + i, wasm_f32x4_mul(s, wasm_v128_load(u + i)));
  }
  for (; i < n; i++) y[i] = lrt_siluf(g[i]) * u[i];
}

/* ---- int8 activations (LRT_OPEN_INT8_ACTIVATIONS; the rule is in ref.c) --------------------
 * Integer block sums S_b: int8 weights and activations sign-extended to i16x8 and multiplied
 * by i32x4.dot_i16x8_s (pair sums in int32: exact), eight blocks' lanes reduced to two
 * vectors of four S_b by a 4x4 transpose and integer adds (exact in any order). Q4_0's - 8
 * is applied to the nibbles before the products, as in the reference. The float part is the
 * reference's, eight blocks at a time in the dot8 lanes (blocks b..b+3 in lo, b+4..b+7 in
 * hi): dd = d_w * dx_b, dd * S_b [+ (m_w * dx_b) * sx_b], each f32x4.mul / f32x4.add
 * rounded; the block scales are widened by the scalar lrt_f16_to_f32 (exact). The tail
 * blocks are lrt_i8_cb_*'s scalar float steps with the integer sum in SIMD128. */

/* int32 partial sums of one block: weights w0 (elements 0-15) and w1 (16-31) times qx */
static inline v128_t i8_block(v128_t w0, v128_t w1, const int8_t *qx) {
  v128_t x0 = wasm_v128_load(qx), x1 = wasm_v128_load(qx + 16);
  v128_t a = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w0), wasm_i16x8_extend_low_i8x16(x0));
  a = wasm_i32x4_add(a, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w0), wasm_i16x8_extend_high_i8x16(x0)));
  a = wasm_i32x4_add(a, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w1), wasm_i16x8_extend_low_i8x16(x1)));
  return wasm_i32x4_add(a, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w1), wasm_i16x8_extend_high_i8x16(x1)));
}

/* a block's weights as int8: Q8_0 as stored; Q4 byte j holds element j (low nibble) and
 * j + 16 (high nibble), minus 8 for Q4_0 */
static inline void i8_w_q8_0(const uint8_t *p, v128_t *w0, v128_t *w1) {
  *w0 = wasm_v128_load(p + 2);
  *w1 = wasm_v128_load(p + 18);
}
static inline void i8_w_q4_0(const uint8_t *p, v128_t *w0, v128_t *w1) {
  v128_t v = wasm_v128_load(p + 2);
  *w0 = wasm_i8x16_sub(wasm_v128_and(v, wasm_i8x16_splat(15)), wasm_i8x16_splat(8));
  *w1 = wasm_i8x16_sub(wasm_u8x16_shr(v, 4), wasm_i8x16_splat(8));
}
static inline void i8_w_q4_1(const uint8_t *p, v128_t *w0, v128_t *w1) {
  v128_t v = wasm_v128_load(p + 4);
  *w0 = wasm_v128_and(v, wasm_i8x16_splat(15));
  *w1 = wasm_u8x16_shr(v, 4);
}

/* four blocks' partial sums -> their four totals */
static inline v128_t i8_reduce4(v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
  v128_t u0 = wasm_i32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
  v128_t u1 = wasm_i32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
  /* u0 = (a0 even, a1 even, a0 odd, a1 odd) lane sums; likewise u1 for a2, a3 */
  return wasm_i32x4_add(wasm_i32x4_shuffle(u0, u1, 0, 1, 4, 5), wasm_i32x4_shuffle(u0, u1, 2, 3, 6, 7));
}

/* the F16 at offset off of eight consecutive blocks (bb bytes apart), widened exactly */
static inline v8 i8_f16x8(const uint8_t *p, int64_t bb, int off) {
  float f[8];
  for (int k = 0; k < 8; k++) f[k] = f16_le(p + k * bb + off);
  return load_x(f, 0);
}

/* the float steps of eight blocks b..b+7 of one token: acc + c_b, lane by lane */
static inline v8 i8_f8(v8 acc, v128_t S0, v128_t S1, v8 dw, v8 mw, int has_m, const float *dx, const int32_t *sx,
                       int64_t b) {
  v8 d = load_x(dx, b);
  v128_t c0 = wasm_f32x4_mul(wasm_f32x4_mul(dw.lo, d.lo), wasm_f32x4_convert_i32x4(S0));
  v128_t c1 = wasm_f32x4_mul(wasm_f32x4_mul(dw.hi, d.hi), wasm_f32x4_convert_i32x4(S1));
  if (has_m) {
    c0 = wasm_f32x4_add(c0, wasm_f32x4_mul(wasm_f32x4_mul(mw.lo, d.lo), wasm_f32x4_convert_i32x4(wasm_v128_load(sx + b))));
    c1 = wasm_f32x4_add(c1, wasm_f32x4_mul(wasm_f32x4_mul(mw.hi, d.hi),
                                           wasm_f32x4_convert_i32x4(wasm_v128_load(sx + b + 4))));
  }
  acc.lo = wasm_f32x4_add(acc.lo, c0);
  acc.hi = wasm_f32x4_add(acc.hi, c1);
  return acc;
}

/* c_b of a tail block: lrt_i8_cb_*'s float steps, S_b from the SIMD128 sums */
static inline float i8_tail(v128_t part, const uint8_t *pb, int has_m, const float *dx, const int32_t *sx, int64_t b) {
  float S = (float)(wasm_i32x4_extract_lane(part, 0) + wasm_i32x4_extract_lane(part, 1) +
                    wasm_i32x4_extract_lane(part, 2) + wasm_i32x4_extract_lane(part, 3));
  float dd = f16_le(pb) * dx[b];
  if (!has_m) return dd * S;
  float md = f16_le(pb + 2) * dx[b];
  return dd * S + md * (float)sx[b];
}

/* DOT: one row, one token. ROWS: one row against M tokens, two at a time sharing the weight
 * loads, unpacking and scale widening; each token's integer sums and float steps are DOT's,
 * so every output has its bits. */
#define DEFINE_I8_KERNELS(FMT, BB, WLOAD, HAS_M)                                                \
  static float dot_##FMT##_i8_wasm(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n) { \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    int64_t nb = n / 32, b = 0;                                                               \
    v8 acc = v8_zero();                                                                       \
    for (; b + 8 <= nb; b += 8) {                                                             \
      const uint8_t *pb = p + b * (BB);                                                       \
      const int8_t *xb = qx + b * 32;                                                         \
      v128_t a[8];                                                                            \
      for (int k = 0; k < 8; k++) {                                                           \
        v128_t w0, w1;                                                                        \
        WLOAD(pb + k * (BB), &w0, &w1);                                                       \
        a[k] = i8_block(w0, w1, xb + 32 * k);                                                 \
      }                                                                                       \
      v8 dw = i8_f16x8(pb, BB, 0), mw = HAS_M ? i8_f16x8(pb, BB, 2) : dw;                     \
      acc = i8_f8(acc, i8_reduce4(a[0], a[1], a[2], a[3]), i8_reduce4(a[4], a[5], a[6], a[7]), dw, mw, HAS_M, dx, \
                  sx, b);                                                                     \
    }                                                                                         \
    float s = hsum8(acc);                                                                     \
    for (; b < nb; b++) {                                                                     \
      v128_t w0, w1;                                                                          \
      WLOAD(p + b * (BB), &w0, &w1);                                                          \
      s = s + i8_tail(i8_block(w0, w1, qx + b * 32), p + b * (BB), HAS_M, dx, sx, b);         \
    }                                                                                         \
    return s;                                                                                 \
  }                                                                                           \
  static void rows_##FMT##_i8_wasm(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M, \
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
        v128_t a[8], c[8];                                                                    \
        for (int k = 0; k < 8; k++) {                                                         \
          v128_t w0, w1;                                                                      \
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
        v128_t w0, w1;                                                                        \
        WLOAD(p + b * (BB), &w0, &w1);                                                        \
        r0 = r0 + i8_tail(i8_block(w0, w1, x0 + b * 32), p + b * (BB), HAS_M, d0, s0, b);     \
        r1 = r1 + i8_tail(i8_block(w0, w1, x1 + b * 32), p + b * (BB), HAS_M, d1, s1, b);     \
      }                                                                                       \
      y[t * ys] = r0;                                                                         \
      y[(t + 1) * ys] = r1;                                                                   \
    }                                                                                         \
    for (; t < M; t++) y[t * ys] = dot_##FMT##_i8_wasm(w, qx + t * n, dx + t * nb, sx + t * nb, n); \
  }
DEFINE_I8_KERNELS(q8_0, 34, i8_w_q8_0, 0)
DEFINE_I8_KERNELS(q4_0, 18, i8_w_q4_0, 0)
DEFINE_I8_KERNELS(q4_1, 20, i8_w_q4_1, 1)
#undef DEFINE_I8_KERNELS

static inline v8 v8_splat(float v) {
  v8 r = {wasm_f32x4_splat(v), wasm_f32x4_splat(v)};
  return r;
}
static inline void store_x(float *x, int64_t i, v8 v) {
  wasm_v128_store(x + i, v.lo);
  wasm_v128_store(x + i + 4, v.hi);
}
#define TILE4_V8_NAME tile4_f32_wasm
#define CHAINS_V8_SUFFIX wasm
#include "tile_v8.h"

const lrt_kernels lrt_kernels_wasm_simd128 = {
    .name = "wasm_simd128",
    .dot_f32 = dot_f32_wasm, .dot_f16 = dot_f16_wasm, .dot_bf16 = dot_bf16_wasm, .sum_f32 = sum_f32_wasm,
    .rows_f32 = rows_f32, .rows_f16 = rows_f16, .rows_bf16 = rows_bf16,
    .dot4_f32 = dot4_f32, .dot4_f16 = dot4_f16, .dot4_bf16 = dot4_bf16,
    .dequant_q8_0 = dequant_q8_0_wasm, .dequant_q4_0 = dequant_q4_0_wasm, .dequant_q4_1 = dequant_q4_1_wasm,
    .dot4_q8_0 = dot4_q8_0_rowwise_wasm, .dot4_q4_0 = dot4_q4_0_wasm, .dot4_q4_1 = dot4_q4_1_seg_wasm,
    .exp_f32 = exp_f32_wasm, .silu_mul_f32 = silu_mul_f32_wasm,
    .dequant_q4_k = dequant_q4_k_wasm, .dequant_q5_k = dequant_q5_k_wasm, .dequant_q6_k = dequant_q6_k_wasm,
    .dot4_q4_k = dot4_q4_k_wasm, .dot4_q5_k = dot4_q5_k_wasm, .dot4_q6_k = dot4_q6_k_wasm,
    .tile4_f32 = tile4_f32_wasm,
    .dot_q8_0_i8 = dot_q8_0_i8_wasm, .dot_q4_0_i8 = dot_q4_0_i8_wasm, .dot_q4_1_i8 = dot_q4_1_i8_wasm,
    .rows_q8_0_i8 = rows_q8_0_i8_wasm, .rows_q4_0_i8 = rows_q4_0_i8_wasm, .rows_q4_1_i8 = rows_q4_1_i8_wasm,
    .dequant_q5_0 = dequant_q5_0_wasm, .dequant_q5_1 = dequant_q5_1_wasm,
    .dot4_q5_0 = dot4_q5_0_wasm, .dot4_q5_1 = dot4_q5_1_wasm,
    .lincomb_f32 = lincomb_f32_wasm, .rank1_f32 = rank1_f32_wasm,
};
#endif
