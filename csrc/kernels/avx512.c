/* avx512.c -- x86-64 AVX-512F (+AVX2, F16C) kernels. Bit-identical to ref.c.
 *
 * The dot8 order has eight lanes per dot product, so one ZMM register cannot hold more of
 * one dot product without changing the order. It holds two: the low 256 bits are the eight
 * lanes of one dot product, the high 256 bits those of another (two weight rows against one
 * x in dot4, or one weight row against two x rows in rows_*, the prefill building block).
 * Products and sums are separate instructions (no FMA; -ffp-contract=off), each half is
 * combined with the reference tree t = lo128 + hi128, s = (t0 + t2) + (t1 + t3), tails are
 * scalar in order. The single dot product and the sum work on 256 bits, as AVX2 does.
 *
 * All vector operations go through the small z16_* / y8_* helpers below. They have two
 * implementations: AVX-512 intrinsics (the real path, compiled with per-function target
 * attributes: the library itself targets baseline x86-64), and, when LRT_AVX512_EMULATE is
 * defined, portable C with the documented lane semantics of each intrinsic. The emulated
 * build lets tests/test_kernels_foreign.py check the kernels' lane arrangement (pairing,
 * shuffles, combination trees) bit for bit against the reference on any machine.
 *
 * Status: csrc/tests/test_kernels.c runs the intrinsic build where the CPU has AVX-512 (the
 * project's Zen 4 VM). The "avx512" table is still only taken when asked for
 * (LOOMRT_KERNELS=avx512 or lrt_kernels_select("avx512")): its 512-bit kernels were slower
 * than AVX2 for the quantized formats there. The file also holds the Q4_0 / Q4_1 / Q5_0 / Q5_1
 * table-lookup kernels of the default "avx2-avx512vl" path (end of the file). */
#if defined(__x86_64__) || defined(_M_X64) || defined(LRT_AVX512_EMULATE)
#include <string.h>

#include "../base/base.h"
#include "kernels.h"

#if defined(LRT_AVX512_EMULATE)
/* ---- portable emulation: exactly one IEEE float operation per lane per helper ---------- */
#define LRT_AVX512
typedef struct y8 { float f[8]; } y8;
typedef struct z16 { float f[16]; } z16;

static inline y8 y8_zero(void) { y8 r; for (int j = 0; j < 8; j++) r.f[j] = 0.0f; return r; }
static inline y8 y8_load(const float *p) { y8 r; memcpy(r.f, p, 32); return r; }
static inline y8 y8_add(y8 a, y8 b) { for (int j = 0; j < 8; j++) a.f[j] = a.f[j] + b.f[j]; return a; }
static inline y8 y8_mul(y8 a, y8 b) { for (int j = 0; j < 8; j++) a.f[j] = a.f[j] * b.f[j]; return a; }
static inline float y8_hsum(y8 a) {
  float t0 = a.f[0] + a.f[4], t1 = a.f[1] + a.f[5], t2 = a.f[2] + a.f[6], t3 = a.f[3] + a.f[7];
  return (t0 + t2) + (t1 + t3);
}
static inline y8 y8_load_f16(const uint16_t *p) { y8 r; for (int j = 0; j < 8; j++) r.f[j] = lrt_f16_to_f32(p[j]); return r; }
static inline y8 y8_load_bf16(const uint16_t *p) { y8 r; for (int j = 0; j < 8; j++) r.f[j] = lrt_bf16_to_f32(p[j]); return r; }

static inline z16 z16_zero(void) { z16 r; for (int j = 0; j < 16; j++) r.f[j] = 0.0f; return r; }
static inline z16 z16_add(z16 a, z16 b) { for (int j = 0; j < 16; j++) a.f[j] = a.f[j] + b.f[j]; return a; }
static inline z16 z16_mul(z16 a, z16 b) { for (int j = 0; j < 16; j++) a.f[j] = a.f[j] * b.f[j]; return a; }
static inline z16 z16_splat(float v) { z16 r; for (int j = 0; j < 16; j++) r.f[j] = v; return r; }
static inline void z16_store(float *p, z16 a) { memcpy(p, a.f, 64); }
static inline z16 z16_ld(const float *p) { z16 r; memcpy(r.f, p, 64); return r; }
/* [lo | hi] */
static inline z16 z16_pair(y8 lo, y8 hi) { z16 r; memcpy(r.f, lo.f, 32); memcpy(r.f + 8, hi.f, 32); return r; }
static inline z16 z16_bcast8(const float *p) { z16 r; memcpy(r.f, p, 32); memcpy(r.f + 8, p, 32); return r; }
static inline y8 z16_lo(z16 a) { y8 r; memcpy(r.f, a.f, 32); return r; }
static inline y8 z16_hi(z16 a) { y8 r; memcpy(r.f, a.f + 8, 32); return r; }
/* [a0..a7 | b0..b7] and [a8..a15 | b8..b15] */
static inline z16 z16_join_lo(z16 a, z16 b) { z16 r; memcpy(r.f, a.f, 32); memcpy(r.f + 8, b.f, 32); return r; }
static inline z16 z16_join_hi(z16 a, z16 b) { z16 r; memcpy(r.f, a.f + 8, 32); memcpy(r.f + 8, b.f + 8, 32); return r; }
/* eight halves / bfloat16s from a and eight from b, widened: [a | b] */
static inline z16 z16_f16_pair(const uint16_t *a, const uint16_t *b) { return z16_pair(y8_load_f16(a), y8_load_f16(b)); }
static inline z16 z16_bf16_pair(const uint16_t *a, const uint16_t *b) { return z16_pair(y8_load_bf16(a), y8_load_bf16(b)); }
/* 16 signed bytes to float */
static inline z16 z16_from_i8(const uint8_t *p) { z16 r; for (int j = 0; j < 16; j++) r.f[j] = (float)(int8_t)p[j]; return r; }
/* 16 bytes: low nibbles minus bias, high nibbles minus bias */
static inline void z16_nibbles(const uint8_t *p, int bias, z16 *lo, z16 *hi) {
  for (int j = 0; j < 16; j++) {
    lo->f[j] = (float)((int)(p[j] & 0x0f) - bias);
    hi->f[j] = (float)((int)(p[j] >> 4) - bias);
  }
}
/* 128-bit blocks: blocks 0, 1 of the result from a (blocks imm[1:0], imm[3:2]), 2, 3 from b
 * (imm[5:4], imm[7:6]) (vshuff32x4) */
static inline z16 z16_shuf128(z16 a, z16 b, int imm) {
  z16 r;
  for (int c = 0; c < 4; c++) memcpy(r.f + 4 * c, (c < 2 ? a.f : b.f) + 4 * ((imm >> (2 * c)) & 3), 16);
  return r;
}
/* in each 128-bit block c: (a[c][imm[1:0]], a[c][imm[3:2]], b[c][imm[5:4]], b[c][imm[7:6]]) (vshufps) */
static inline z16 z16_shufps(z16 a, z16 b, int imm) {
  z16 r;
  for (int c = 0; c < 4; c++)
    for (int j = 0; j < 4; j++) r.f[4 * c + j] = (j < 2 ? a.f : b.f)[4 * c + ((imm >> (2 * j)) & 3)];
  return r;
}
/* lane j = lane idx[j] of a (vpermps with a constant index) */
static inline z16 z16_permute(z16 a, const int idx[16]) {
  z16 r;
  for (int j = 0; j < 16; j++) r.f[j] = a.f[idx[j]];
  return r;
}
#define Z16_SHUF128(a, b, imm) z16_shuf128(a, b, imm)
#define Z16_SHUFPS(a, b, imm) z16_shufps(a, b, imm)
/* for the AVX-512VL table kernels (Q4_0 / Q4_1 / Q5_0 / Q5_1): sixteen int32 lanes, vpermps
 * on 512 bits (16 entries) */
#define LRT_AVX512VL
typedef struct z16i { uint32_t u[16]; } z16i;
static inline z16 z16_load(const float *p) { z16 r; memcpy(r.f, p, 64); return r; }
static inline z16 z16_splat_f16(const uint8_t *p) { return z16_splat(lrt_f16_to_f32(lrt_rd_u16le(p))); }
static inline void z16_splat_f16x2(const uint8_t *p, z16 *a, z16 *b) { *a = z16_splat_f16(p); *b = z16_splat_f16(p + 2); }
static inline z16i z16i_from_u8(const uint8_t *p) { z16i r; for (int j = 0; j < 16; j++) r.u[j] = p[j]; return r; }
static inline z16i z16i_srl4(z16i a) { for (int j = 0; j < 16; j++) a.u[j] >>= 4; return a; }
/* lane j = entry (idx_j mod 16) of t (vpermps: the other index bits are ignored) */
static inline z16 z16_lookup16(z16 t, z16i idx) {
  z16 r;
  for (int j = 0; j < 16; j++) r.f[j] = t.f[idx.u[j] & 15];
  return r;
}
/* lane j = entry (idx_j mod 16) of t1 where bit j of k is set, else of t0 (vpermps, then
 * vpermps merging under k) */
static inline z16 z16_lookup16x2(z16 t0, z16 t1, z16i idx, unsigned k) {
  z16 r;
  for (int j = 0; j < 16; j++) r.f[j] = ((k >> j) & 1) ? t1.f[idx.u[j] & 15] : t0.f[idx.u[j] & 15];
  return r;
}
#else
/* ---- AVX-512F intrinsics ------------------------------------------------------------------ */
#include <immintrin.h>
#if defined(__GNUC__) || defined(__clang__)
#define LRT_AVX512 __attribute__((target("avx512f,avx2,f16c")))
#else
#define LRT_AVX512
#endif
typedef __m256 y8;
typedef __m512 z16;

#define Z16_SHUF128(a, b, imm) _mm512_shuffle_f32x4(a, b, imm)
#define Z16_SHUFPS(a, b, imm) _mm512_shuffle_ps(a, b, imm)
LRT_AVX512 static inline z16 z16_permute(z16 a, const int idx[16]) {
  return _mm512_permutexvar_ps(_mm512_loadu_si512((const void *)idx), a);
}

/* the table kernels of the avx2-avx512vl path (512-bit vpermps) */
#if defined(__GNUC__) || defined(__clang__)
#define LRT_AVX512VL __attribute__((target("avx512f,avx512vl,avx2,f16c")))
#else
#define LRT_AVX512VL
#endif

LRT_AVX512 static inline y8 y8_zero(void) { return _mm256_setzero_ps(); }
LRT_AVX512 static inline y8 y8_load(const float *p) { return _mm256_loadu_ps(p); }
LRT_AVX512 static inline y8 y8_add(y8 a, y8 b) { return _mm256_add_ps(a, b); }
LRT_AVX512 static inline y8 y8_mul(y8 a, y8 b) { return _mm256_mul_ps(a, b); }
LRT_AVX512 static inline float y8_hsum(y8 a) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); /* t0..t3 */
  __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));                                  /* t0+t2, t1+t3 */
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}
LRT_AVX512 static inline y8 y8_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
LRT_AVX512 static inline y8 y8_load_bf16(const uint16_t *p) {
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

LRT_AVX512 static inline z16 z16_zero(void) { return _mm512_setzero_ps(); }
LRT_AVX512 static inline z16 z16_add(z16 a, z16 b) { return _mm512_add_ps(a, b); }
LRT_AVX512 static inline z16 z16_mul(z16 a, z16 b) { return _mm512_mul_ps(a, b); }
LRT_AVX512 static inline z16 z16_splat(float v) { return _mm512_set1_ps(v); }
LRT_AVX512 static inline void z16_store(float *p, z16 a) { _mm512_storeu_ps(p, a); }
LRT_AVX512 static inline z16 z16_ld(const float *p) { return _mm512_loadu_ps(p); }
LRT_AVX512 static inline z16 z16_pair(y8 lo, y8 hi) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}
/* the eight floats at p in both halves (one vbroadcastf64x4 load) */
LRT_AVX512 static inline z16 z16_bcast8(const float *p) {
  return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd((const double *)p)));
}
LRT_AVX512 static inline y8 z16_lo(z16 a) { return _mm512_castps512_ps256(a); }
LRT_AVX512 static inline y8 z16_hi(z16 a) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)); }
/* 128-bit lanes: result = (a.0, a.1, b.0, b.1) and (a.2, a.3, b.2, b.3) */
LRT_AVX512 static inline z16 z16_join_lo(z16 a, z16 b) { return _mm512_shuffle_f32x4(a, b, 0x44); }
LRT_AVX512 static inline z16 z16_join_hi(z16 a, z16 b) { return _mm512_shuffle_f32x4(a, b, 0xEE); }
LRT_AVX512 static inline __m256i u16_pair(const uint16_t *a, const uint16_t *b) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                 _mm_loadu_si128((const __m128i *)b), 1);
}
LRT_AVX512 static inline z16 z16_f16_pair(const uint16_t *a, const uint16_t *b) { return _mm512_cvtph_ps(u16_pair(a, b)); }
LRT_AVX512 static inline z16 z16_bf16_pair(const uint16_t *a, const uint16_t *b) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(u16_pair(a, b)), 16));
}
LRT_AVX512 static inline z16 z16_from_i8(const uint8_t *p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
LRT_AVX512 static inline void z16_nibbles(const uint8_t *p, int bias, z16 *lo, z16 *hi) {
  __m128i v = _mm_loadu_si128((const __m128i *)p), mask = _mm_set1_epi8(0x0f);
  __m512i b = _mm512_set1_epi32(bias);
  __m512i l = _mm512_cvtepu8_epi32(_mm_and_si128(v, mask));
  __m512i h = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), mask));
  *lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(l, b));
  *hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(h, b));
}
/* the F16 at p, widened (F16C, exact), in all lanes: a 32-bit load of the halves at p and
 * p + 2 (a load, no move from a general register), both widened, then lane 0 broadcast */
LRT_AVX512VL static inline __m128 f16x2_widen(const uint8_t *p) {
  uint32_t u; /* memcpy: p has no alignment (a float load through it is undefined; compilers emit vmovd) */
  memcpy(&u, p, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128((int)u));
}
typedef __m512i z16i;
LRT_AVX512VL static inline z16 z16_load(const float *p) { return _mm512_loadu_ps(p); }
LRT_AVX512VL static inline z16 z16_splat_f16(const uint8_t *p) { return _mm512_broadcastss_ps(f16x2_widen(p)); }
LRT_AVX512VL static inline void z16_splat_f16x2(const uint8_t *p, z16 *a, z16 *b) {
  __m128 v = f16x2_widen(p);
  *a = _mm512_broadcastss_ps(v);
  *b = _mm512_broadcastss_ps(_mm_movehdup_ps(v));
}
LRT_AVX512VL static inline z16i z16i_from_u8(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
LRT_AVX512VL static inline z16i z16i_srl4(z16i a) { return _mm512_srli_epi32(a, 4); }
LRT_AVX512VL static inline z16 z16_lookup16(z16 t, z16i idx) { return _mm512_permutexvar_ps(idx, t); }
LRT_AVX512VL static inline z16 z16_lookup16x2(z16 t0, z16 t1, z16i idx, unsigned k) {
  return _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(idx, t0), (__mmask16)k, idx, t1);
}
#endif

/* ---- loads per weight format: 8 weights (y8), and 8 + 8 from two rows (z16) -------------- */
LRT_AVX512 static inline y8 w8_f32(const void *w, int64_t i) { return y8_load((const float *)w + i); }
LRT_AVX512 static inline y8 w8_f16(const void *w, int64_t i) { return y8_load_f16((const uint16_t *)w + i); }
LRT_AVX512 static inline y8 w8_bf16(const void *w, int64_t i) { return y8_load_bf16((const uint16_t *)w + i); }
LRT_AVX512 static inline z16 w16_f32(const void *a, const void *b, int64_t i) {
  return z16_pair(y8_load((const float *)a + i), y8_load((const float *)b + i));
}
LRT_AVX512 static inline z16 w16_f16(const void *a, const void *b, int64_t i) {
  return z16_f16_pair((const uint16_t *)a + i, (const uint16_t *)b + i);
}
LRT_AVX512 static inline z16 w16_bf16(const void *a, const void *b, int64_t i) {
  return z16_bf16_pair((const uint16_t *)a + i, (const uint16_t *)b + i);
}
static inline float tail_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
static inline float tail_f16(const void *w, int64_t i) { return lrt_f16_to_f32(((const uint16_t *)w)[i]); }
static inline float tail_bf16(const void *w, int64_t i) { return lrt_bf16_to_f32(((const uint16_t *)w)[i]); }

/* DOT: one row, one x (256 bits). ROWS: one row against M x vectors, eight at a time in
 * four ZMM accumulators (x rows 2k and 2k+1 share one), then two at a time, then single
 * dots. DOT4: four rows against one x, rows (0, 1) and (2, 3) sharing a ZMM accumulator. */
#define DEFINE_KERNELS(SUF, W8, W16, TAIL, ELEM)                                              \
  LRT_AVX512 static float dot_##SUF(const void *w, const float *x, int64_t n) {               \
    y8 acc = y8_zero();                                                                       \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) acc = y8_add(acc, y8_mul(W8(w, i), y8_load(x + i)));           \
    float s = y8_hsum(acc);                                                                   \
    for (; i < n; i++) s = s + TAIL(w, i) * x[i];                                             \
    return s;                                                                                 \
  }                                                                                           \
  LRT_AVX512 static void rows_##SUF(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, \
                                    float *y, int64_t ys) {                                   \
    int64_t t = 0;                                                                            \
    for (; t + 8 <= M; t += 8) {                                                              \
      const float *xr[8];                                                                     \
      for (int k = 0; k < 8; k++) xr[k] = x + (t + k) * xs;                                   \
      z16 a0 = z16_zero(), a1 = a0, a2 = a0, a3 = a0;                                         \
      int64_t i = 0;                                                                          \
      for (; i + 8 <= n; i += 8) {                                                            \
        y8 w8 = W8(w, i);                                                                     \
        z16 wz = z16_pair(w8, w8);                                                            \
        a0 = z16_add(a0, z16_mul(wz, z16_pair(y8_load(xr[0] + i), y8_load(xr[1] + i))));      \
        a1 = z16_add(a1, z16_mul(wz, z16_pair(y8_load(xr[2] + i), y8_load(xr[3] + i))));      \
        a2 = z16_add(a2, z16_mul(wz, z16_pair(y8_load(xr[4] + i), y8_load(xr[5] + i))));      \
        a3 = z16_add(a3, z16_mul(wz, z16_pair(y8_load(xr[6] + i), y8_load(xr[7] + i))));      \
      }                                                                                       \
      float s[8] = {y8_hsum(z16_lo(a0)), y8_hsum(z16_hi(a0)), y8_hsum(z16_lo(a1)), y8_hsum(z16_hi(a1)), \
                    y8_hsum(z16_lo(a2)), y8_hsum(z16_hi(a2)), y8_hsum(z16_lo(a3)), y8_hsum(z16_hi(a3))}; \
      for (; i < n; i++) {                                                                    \
        float wi = TAIL(w, i);                                                                \
        for (int k = 0; k < 8; k++) s[k] = s[k] + wi * xr[k][i];                              \
      }                                                                                       \
      for (int k = 0; k < 8; k++) y[(t + k) * ys] = s[k];                                     \
    }                                                                                         \
    for (; t + 2 <= M; t += 2) {                                                              \
      const float *x0 = x + t * xs, *x1 = x0 + xs;                                            \
      z16 a = z16_zero();                                                                     \
      int64_t i = 0;                                                                          \
      for (; i + 8 <= n; i += 8) {                                                            \
        y8 w8 = W8(w, i);                                                                     \
        a = z16_add(a, z16_mul(z16_pair(w8, w8), z16_pair(y8_load(x0 + i), y8_load(x1 + i))));  \
      }                                                                                       \
      float s0 = y8_hsum(z16_lo(a)), s1 = y8_hsum(z16_hi(a));                                 \
      for (; i < n; i++) {                                                                    \
        float wi = TAIL(w, i);                                                                \
        s0 = s0 + wi * x0[i]; s1 = s1 + wi * x1[i];                                           \
      }                                                                                       \
      y[t * ys] = s0; y[(t + 1) * ys] = s1;                                                   \
    }                                                                                         \
    for (; t < M; t++) y[t * ys] = dot_##SUF(w, x + t * xs, n);                               \
  }                                                                                           \
  LRT_AVX512 static void dot4_##SUF(const void *w, int64_t ws, const float *x, int64_t n, float *y) { \
    const void *w1 = ELEM(w, ws), *w2 = ELEM(w1, ws), *w3 = ELEM(w2, ws);                      \
    z16 a01 = z16_zero(), a23 = a01;                                                          \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) {                                                              \
      y8 x8 = y8_load(x + i);                                                                 \
      z16 xz = z16_pair(x8, x8);                                                              \
      a01 = z16_add(a01, z16_mul(W16(w, w1, i), xz));                                         \
      a23 = z16_add(a23, z16_mul(W16(w2, w3, i), xz));                                        \
    }                                                                                         \
    float s0 = y8_hsum(z16_lo(a01)), s1 = y8_hsum(z16_hi(a01));                               \
    float s2 = y8_hsum(z16_lo(a23)), s3 = y8_hsum(z16_hi(a23));                               \
    for (; i < n; i++) {                                                                      \
      s0 = s0 + TAIL(w, i) * x[i]; s1 = s1 + TAIL(w1, i) * x[i];                              \
      s2 = s2 + TAIL(w2, i) * x[i]; s3 = s3 + TAIL(w3, i) * x[i];                             \
    }                                                                                         \
    y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;                                               \
  }

#define ELEM_F32(p, k) ((const void *)((const float *)(p) + (k)))
#define ELEM_U16(p, k) ((const void *)((const uint16_t *)(p) + (k)))
DEFINE_KERNELS(f32, w8_f32, w16_f32, tail_f32, ELEM_F32)
DEFINE_KERNELS(f16, w8_f16, w16_f16, tail_f16, ELEM_U16)
DEFINE_KERNELS(bf16, w8_bf16, w16_bf16, tail_bf16, ELEM_U16)
#undef ELEM_F32
#undef ELEM_U16
#undef DEFINE_KERNELS

static float dot_f32_avx512(const float *w, const float *x, int64_t n) { return dot_f32(w, x, n); }
static float dot_f16_avx512(const uint16_t *w, const float *x, int64_t n) { return dot_f16(w, x, n); }
static float dot_bf16_avx512(const uint16_t *w, const float *x, int64_t n) { return dot_bf16(w, x, n); }

LRT_AVX512 static float sum_f32_avx512(const float *x, int64_t n) {
  y8 acc = y8_zero();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = y8_add(acc, y8_load(x + i));
  float s = y8_hsum(acc);
  for (; i < n; i++) s = s + x[i];
  return s;
}

/* ---- GGUF blocks: 32 weights as two z16 (weights 0-15, 16-31). Scales widened from F16
 * exactly (scalar), integers converted exactly, one multiply (and one add for Q4_1) per
 * element, as in the reference. ---------------------------------------------------------- */
LRT_AVX512 static inline void block_q8_0(const uint8_t *p, z16 *a, z16 *b) {
  z16 d = z16_splat(lrt_f16_to_f32(lrt_rd_u16le(p)));
  *a = z16_mul(d, z16_from_i8(p + 2));
  *b = z16_mul(d, z16_from_i8(p + 18));
}
LRT_AVX512 static inline void block_q4_0(const uint8_t *p, z16 *a, z16 *b) {
  z16 d = z16_splat(lrt_f16_to_f32(lrt_rd_u16le(p))), lo, hi;
  z16_nibbles(p + 2, 8, &lo, &hi);
  *a = z16_mul(d, lo);
  *b = z16_mul(d, hi);
}
LRT_AVX512 static inline void block_q4_1(const uint8_t *p, z16 *a, z16 *b) {
  z16 d = z16_splat(lrt_f16_to_f32(lrt_rd_u16le(p))), m = z16_splat(lrt_f16_to_f32(lrt_rd_u16le(p + 2))), lo, hi;
  z16_nibbles(p + 4, 0, &lo, &hi);
  *a = z16_add(z16_mul(d, lo), m);
  *b = z16_add(z16_mul(d, hi), m);
}

/* DEQUANT: one row to float. DOT4Q: four rows against one x; rows (0, 1) and (2, 3) share
 * a ZMM accumulator: the dequantized blocks of the two rows are interleaved by 256-bit
 * halves (join_lo: weights 0-7 of both rows, join_hi: 8-15, ...) so that every lane adds
 * its products in the order i = 0, 8, 16, 24 of each block, as dot_f32 over the row. */
#define DEFINE_BLOCK_KERNELS(FMT, BLOCK, BYTES)                                               \
  LRT_AVX512 static void dequant_##FMT##_avx512(const void *row, float *y, int64_t n) {       \
    const uint8_t *p = (const uint8_t *)row;                                                  \
    for (int64_t b = 0; b < n / 32; b++, p += BYTES, y += 32) {                               \
      z16 lo, hi;                                                                             \
      BLOCK(p, &lo, &hi);                                                                     \
      z16_store(y, lo);                                                                       \
      z16_store(y + 16, hi);                                                                  \
    }                                                                                         \
  }                                                                                           \
  LRT_AVX512 static void dot4_##FMT##_avx512(const void *w, int64_t row_bytes, const float *x, int64_t n, \
                                             float *y) {                                      \
    const uint8_t *p[4];                                                                      \
    for (int r = 0; r < 4; r++) p[r] = (const uint8_t *)w + r * row_bytes;                    \
    z16 acc[2] = {z16_zero(), z16_zero()};                                                    \
    for (int64_t b = 0; b < n / 32; b++, x += 32) {                                           \
      z16 xz[4];                                                                              \
      for (int k = 0; k < 4; k++) {                                                           \
        y8 x8 = y8_load(x + 8 * k);                                                           \
        xz[k] = z16_pair(x8, x8);                                                             \
      }                                                                                       \
      for (int h = 0; h < 2; h++) {                                                           \
        z16 a0, a1, b0, b1;                                                                   \
        BLOCK(p[2 * h], &a0, &a1);                                                            \
        BLOCK(p[2 * h + 1], &b0, &b1);                                                        \
        p[2 * h] += BYTES;                                                                    \
        p[2 * h + 1] += BYTES;                                                                \
        acc[h] = z16_add(acc[h], z16_mul(z16_join_lo(a0, b0), xz[0]));                        \
        acc[h] = z16_add(acc[h], z16_mul(z16_join_hi(a0, b0), xz[1]));                        \
        acc[h] = z16_add(acc[h], z16_mul(z16_join_lo(a1, b1), xz[2]));                        \
        acc[h] = z16_add(acc[h], z16_mul(z16_join_hi(a1, b1), xz[3]));                        \
      }                                                                                       \
    }                                                                                         \
    y[0] = y8_hsum(z16_lo(acc[0])); y[1] = y8_hsum(z16_hi(acc[0]));                           \
    y[2] = y8_hsum(z16_lo(acc[1])); y[3] = y8_hsum(z16_hi(acc[1]));                           \
  }

DEFINE_BLOCK_KERNELS(q8_0, block_q8_0, 34)
DEFINE_BLOCK_KERNELS(q4_0, block_q4_0, 18)
DEFINE_BLOCK_KERNELS(q4_1, block_q4_1, 20)
#undef DEFINE_BLOCK_KERNELS

/* ---- Q4_0 / Q4_1 decode by table lookup (the avx2-avx512vl path) ------------------------
 * A 4-bit weight of a block can take only 16 values, and the reference computes each of them
 * with the same operations whatever the element: Q4_0 w = d * (k - 8) (one rounding), Q4_1
 * w = (d * k) + m (product rounded, then the sum), k = 0..15. So each row's block builds
 * that table once, in one 512-bit register (one multiply, + one add for Q4_1), and its 32
 * weights are looked up 16 at a time with vpermps (4-bit index, the other index bits ignored:
 * the byte itself indexes its low nibble, elements 0-15; byte >> 4 its high one, 16-31)
 * instead of sub / convert / multiply (/ add) per 8 weights. The 16 weights are multiplied by
 * x in one 512-bit multiply and the products added to the row's 8-lane accumulator half by
 * half (elements 0-7, then 8-15, 16-23, 24-31): the same values, products and sums in the
 * same order as the AVX2 kernels, so the same bits as dequantize-then-dot4_f32. Measured on
 * the Zen 4 VM, 1 thread: 1.18x a 256-bit version (two ymm tables, one vpermt2ps per 8
 * weights) in cache. The path's other entries are the AVX2 ones (dispatch.c). */
static const float q4_tab_k[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const float q4_tab_k8[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};

#define TAB_Q4_0(p, t)                                                                        \
  z16 t = z16_mul(z16_splat_f16(p), z16_load(q4_tab_k8))
#define TAB_Q4_1(p, t)                                                                        \
  z16 d_, m_;                                                                                 \
  z16_splat_f16x2(p, &d_, &m_);                                                               \
  z16 t = z16_add(z16_mul(d_, z16_load(q4_tab_k)), m_)

/* acc += w * x for the 32 weights of one block (quants at p + QOFF), in element order */
#define TAB_ROW(acc, p, TAB, QOFF)                                                            \
  {                                                                                           \
    TAB(p, t_);                                                                               \
    z16i i0_ = z16i_from_u8((p) + (QOFF));                                                    \
    z16 p0_ = z16_mul(z16_lookup16(t_, i0_), x01);                                            \
    z16 p1_ = z16_mul(z16_lookup16(t_, z16i_srl4(i0_)), x23);                                 \
    acc = y8_add(acc, z16_lo(p0_)); /* 0-7   */                                               \
    acc = y8_add(acc, z16_hi(p0_)); /* 8-15  */                                               \
    acc = y8_add(acc, z16_lo(p1_)); /* 16-23 */                                               \
    acc = y8_add(acc, z16_hi(p1_)); /* 24-31 */                                               \
  }

#define DEFINE_TAB_DOT4(NAME, BYTES, TAB, QOFF)                                               \
  LRT_AVX512VL static void NAME(const void *w, int64_t rb, const float *x, int64_t n, float *y) { \
    y8 a0 = y8_zero(), a1 = a0, a2 = a0, a3 = a0;                                             \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    for (int64_t b = 0; b < n / 32; b++, p += BYTES) {                                        \
      z16 x01 = z16_load(x + b * 32), x23 = z16_load(x + b * 32 + 16);                        \
      TAB_ROW(a0, p, TAB, QOFF)                                                               \
      TAB_ROW(a1, p + rb, TAB, QOFF)                                                          \
      TAB_ROW(a2, p + 2 * rb, TAB, QOFF)                                                      \
      TAB_ROW(a3, p + 3 * rb, TAB, QOFF)                                                      \
    }                                                                                         \
    y[0] = y8_hsum(a0); y[1] = y8_hsum(a1); y[2] = y8_hsum(a2); y[3] = y8_hsum(a3);           \
  }

DEFINE_TAB_DOT4(dot4_q4_0_vl, 18, TAB_Q4_0, 2)
DEFINE_TAB_DOT4(dot4_q4_1_vl, 20, TAB_Q4_1, 4)

/* Row dequantization by the same table: per block one table (one multiply, + one add for
 * Q4_1) and two lookups of 16 weights, stored. The prefill / batch path dequantizes every
 * weight row once per pass into F32 for its register tiles (forward.c mm_task); at 16
 * sequences of SmolLM2-135M Q4_1 the AVX2 dequantizer (convert, multiply, add and store per
 * 8 weights) was 15-19% of a batched step (perf, Intel Xeon). Same values as the reference:
 * each weight is the table entry the reference's own operations give for its k. */
#define DEFINE_TAB_DEQUANT(NAME, BYTES, TAB, QOFF)                                            \
  LRT_AVX512VL static void NAME(const void *row, float *y, int64_t n) {                       \
    const uint8_t *p = (const uint8_t *)row;                                                  \
    for (int64_t b = 0; b < n / 32; b++, p += BYTES, y += 32) {                               \
      TAB(p, t_);                                                                             \
      z16i i0_ = z16i_from_u8(p + (QOFF));                                                    \
      z16_store(y, z16_lookup16(t_, i0_));                /* elements 0-15: low nibbles  */   \
      z16_store(y + 16, z16_lookup16(t_, z16i_srl4(i0_))); /* 16-31: high nibbles        */   \
    }                                                                                         \
  }

DEFINE_TAB_DEQUANT(dequant_q4_0_vl, 18, TAB_Q4_0, 2)
DEFINE_TAB_DEQUANT(dequant_q4_1_vl, 20, TAB_Q4_1, 4)

/* Q8_0 rows: the scale widened by F16C (exact) and splat, 16 weights per convert and
 * multiply (the reference's d * q, one rounding). */
LRT_AVX512VL static void dequant_q8_0_vl(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 34, y += 32) {
    z16 d = z16_splat_f16(p);
    z16_store(y, z16_mul(d, z16_from_i8(p + 2)));
    z16_store(y + 16, z16_mul(d, z16_from_i8(p + 18)));
  }
}

/* ---- Q5_0 / Q5_1 decode by table lookup: the same idea with two 16-entry tables per block,
 * one for each value of the fifth bit (bit j of the block's qh for element j). Q5_0:
 * T0[k] = d * (k - 16), T1[k] = d * k (the reference's d * (q - 16) for q = k and q = k + 16,
 * one rounding each); Q5_1: T0[k] = (d * k) + m, T1[k] = (d * (k + 16)) + m (product rounded,
 * then the sum). As for Q4, a table is one 512-bit register: 16 weights are looked up in T0 by
 * their nibbles with vpermps, then a second vpermps looks them up in T1, merging under a
 * 16-bit mask that is half of qh (no vector work for the fifth bit). The 16 weights are
 * multiplied by x in one 512-bit multiply and the products added to the row's 8-lane
 * accumulator half by half (elements 0-7, then 8-15, 16-23, 24-31): the same values,
 * products and sums in the same order as the AVX2 kernels, so the same bits. Measured on the
 * Zen 4 VM, this beat a 256-bit version (two vpermt2ps and a blend per 8 weights) by 1.5x. */
static const float q5_tab_k16[16] = {-16, -15, -14, -13, -12, -11, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1};
static const float q5_tab_k16p[16] = {16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

#define TAB_Q5_0(p, t0, t1)                                                                   \
  z16 d_ = z16_splat_f16(p);                                                                  \
  z16 t0 = z16_mul(d_, z16_load(q5_tab_k16)), t1 = z16_mul(d_, z16_load(q4_tab_k))
#define TAB_Q5_1(p, t0, t1)                                                                   \
  z16 d_, m_;                                                                                 \
  z16_splat_f16x2(p, &d_, &m_);                                                               \
  z16 t0 = z16_add(z16_mul(d_, z16_load(q4_tab_k)), m_), t1 = z16_add(z16_mul(d_, z16_load(q5_tab_k16p)), m_)

/* acc += w * x for the 32 weights of one block (qh at p + HOFF, quants at p + HOFF + 4) */
#define TAB5_ROW(acc, p, TAB, HOFF)                                                           \
  {                                                                                           \
    TAB(p, t0_, t1_);                                                                         \
    uint32_t qh_ = lrt_rd_u32le((p) + (HOFF));                                                \
    z16i i0_ = z16i_from_u8((p) + (HOFF) + 4);                                                \
    z16 p0_ = z16_mul(z16_lookup16x2(t0_, t1_, i0_, qh_ & 0xffff), x01);                      \
    z16 p1_ = z16_mul(z16_lookup16x2(t0_, t1_, z16i_srl4(i0_), qh_ >> 16), x23);              \
    acc = y8_add(acc, z16_lo(p0_)); /* 0-7   */                                               \
    acc = y8_add(acc, z16_hi(p0_)); /* 8-15  */                                               \
    acc = y8_add(acc, z16_lo(p1_)); /* 16-23 */                                               \
    acc = y8_add(acc, z16_hi(p1_)); /* 24-31 */                                               \
  }

#define DEFINE_TAB5_DOT4(NAME, BYTES, TAB, HOFF)                                              \
  LRT_AVX512VL static void NAME(const void *w, int64_t rb, const float *x, int64_t n, float *y) { \
    y8 a0 = y8_zero(), a1 = a0, a2 = a0, a3 = a0;                                             \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    for (int64_t b = 0; b < n / 32; b++, p += BYTES) {                                        \
      z16 x01 = z16_load(x + b * 32), x23 = z16_load(x + b * 32 + 16);                        \
      TAB5_ROW(a0, p, TAB, HOFF)                                                              \
      TAB5_ROW(a1, p + rb, TAB, HOFF)                                                         \
      TAB5_ROW(a2, p + 2 * rb, TAB, HOFF)                                                     \
      TAB5_ROW(a3, p + 3 * rb, TAB, HOFF)                                                     \
    }                                                                                         \
    y[0] = y8_hsum(a0); y[1] = y8_hsum(a1); y[2] = y8_hsum(a2); y[3] = y8_hsum(a3);           \
  }

DEFINE_TAB5_DOT4(dot4_q5_0_vl, 22, TAB_Q5_0, 2)
DEFINE_TAB5_DOT4(dot4_q5_1_vl, 24, TAB_Q5_1, 4)

/* row dequantization (prefill) with the same lookups */
#define DEFINE_TAB5_DEQUANT(NAME, BYTES, TAB, HOFF)                                           \
  LRT_AVX512VL static void NAME(const void *row, float *y, int64_t n) {                      \
    const uint8_t *p = (const uint8_t *)row;                                                  \
    for (int64_t b = 0; b < n / 32; b++, p += BYTES, y += 32) {                               \
      TAB(p, t0_, t1_);                                                                       \
      uint32_t qh_ = lrt_rd_u32le(p + (HOFF));                                                \
      z16i i0_ = z16i_from_u8(p + (HOFF) + 4);                                                \
      z16_store(y, z16_lookup16x2(t0_, t1_, i0_, qh_ & 0xffff));                              \
      z16_store(y + 16, z16_lookup16x2(t0_, t1_, z16i_srl4(i0_), qh_ >> 16));                 \
    }                                                                                         \
  }
DEFINE_TAB5_DEQUANT(dequant_q5_0_vl, 22, TAB_Q5_0, 2)
DEFINE_TAB5_DEQUANT(dequant_q5_1_vl, 24, TAB_Q5_1, 4)
#undef DEFINE_TAB5_DEQUANT
#undef DEFINE_TAB5_DOT4
#undef TAB5_ROW
#undef TAB_Q5_0
#undef TAB_Q5_1
#undef DEFINE_TAB_DOT4
#undef TAB_ROW
#undef TAB_Q4_0
#undef TAB_Q4_1

/* The prefill / batch tile at 512 bits: four F32 rows x up to eight tokens per pass over n.
 * Rows (0, 1) and (2, 3) share a ZMM (low half / high half), each token's eight x values are
 * repeated in both halves (one broadcast load), so each accumulator holds two (row, token)
 * products, each half the eight dot8 lanes of one of them, reduced by the reference tree
 * (y8_hsum) and finished by the scalar tail in order: the bits of dot_f32. (Six tokens per
 * block before: a 16-sequence batch step then ran 4 of its 16 tokens one at a time.) */

/* One token of a tile: products of the row pair (0, 1) in a, (2, 3) in c. */
#define TILE_STEP(a, c, xp)                                                                   \
  {                                                                                           \
    z16 xb_ = z16_bcast8((xp) + i);                                                           \
    a = z16_add(a, z16_mul(w01, xb_));                                                        \
    c = z16_add(c, z16_mul(w23, xb_));                                                        \
  }
/* y[(t + k) * ys + 0..3] from the tile's accumulators of token k: each half summed with the
 * reference tree, then the scalar tail in order */
LRT_AVX512 static inline void tile_out(const float *const *wr, const float *xk, int64_t i, int64_t n, z16 a, z16 c,
                                       float *y) {
  float s[4] = {y8_hsum(z16_lo(a)), y8_hsum(z16_hi(a)), y8_hsum(z16_lo(c)), y8_hsum(z16_hi(c))};
  for (int r = 0; r < 4; r++) {
    for (int64_t j = i; j < n; j++) s[r] = s[r] + wr[r][j] * xk[j];
    y[r] = s[r];
  }
}

/* Sixteen dot products from eight accumulators of two each (low / high eight lanes), every one
 * with the reference tree, computed for all sixteen at once:
 *   stage 1 pairs (A, B): t[j] = acc[j] + acc[j + 4], one 128-bit block per dot product;
 *   stage 2: u0 = t0 + t2, u1 = t1 + t3;  stage 3: s = u0 + u1
 * (additions are commutative bit for bit; each dot product's values meet only its own). The
 * result's lanes are [A.lo C.lo E.lo G.lo | A.hi C.hi E.hi G.hi | B.lo D.lo F.lo H.lo |
 * B.hi D.hi F.hi H.hi]. */
LRT_AVX512 static inline z16 z16_reduce8(z16 A, z16 B, z16 C, z16 D, z16 E, z16 F, z16 G, z16 H) {
  z16 s1 = z16_add(Z16_SHUF128(A, B, 0x88), Z16_SHUF128(A, B, 0xDD));
  z16 s2 = z16_add(Z16_SHUF128(C, D, 0x88), Z16_SHUF128(C, D, 0xDD));
  z16 s3 = z16_add(Z16_SHUF128(E, F, 0x88), Z16_SHUF128(E, F, 0xDD));
  z16 s4 = z16_add(Z16_SHUF128(G, H, 0x88), Z16_SHUF128(G, H, 0xDD));
  z16 u1 = z16_add(Z16_SHUFPS(s1, s2, 0x44), Z16_SHUFPS(s1, s2, 0xEE));
  z16 u2 = z16_add(Z16_SHUFPS(s3, s4, 0x44), Z16_SHUFPS(s3, s4, 0xEE));
  return z16_add(Z16_SHUFPS(u1, u2, 0x88), Z16_SHUFPS(u1, u2, 0xDD));
}
/* four tokens k of a tile (accumulators a_k: rows 0, 1; c_k: rows 2, 3) reduced into
 * s[4 * k + r] */
static const int g_tile_order[16] = {0, 4, 1, 5, 8, 12, 9, 13, 2, 6, 3, 7, 10, 14, 11, 15};
LRT_AVX512 static inline void tile_reduce4(z16 a0, z16 a1, z16 a2, z16 a3, z16 c0, z16 c1, z16 c2, z16 c3, float *s) {
  z16_store(s, z16_permute(z16_reduce8(a0, a1, c0, c1, a2, a3, c2, c3), g_tile_order));
}
/* y[k * ys + r] = s[4 * k + r] after the scalar tail (elements i..n) in order, k < nk */
static inline void tile_store(const float *const *wr, const float *const *xk, int64_t i, int64_t n, float *s, int nk,
                              float *y, int64_t ys) {
  if (i < n)
    for (int k = 0; k < nk; k++)
      for (int r = 0; r < 4; r++)
        for (int64_t j = i; j < n; j++) s[4 * k + r] = s[4 * k + r] + wr[r][j] * xk[k][j];
  for (int k = 0; k < nk; k++) memcpy(y + k * ys, s + 4 * k, 4 * sizeof(float));
}

/* Four weight rows x eight tokens (16 accumulators of the 32 ZMM registers: each weight load
 * and pairing serves eight tokens), then four, then one at a time. Which block a token falls
 * in changes nothing in its arithmetic: each output is the same lanes, tree and tail. */
LRT_AVX512 static void tile4_f32_z(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n,
                                   float *y, int64_t ys) {
  const float *wr[4] = {w, w + ws, w + 2 * ws, w + 3 * ws};
  int64_t t = 0;
  float s[32];
  for (; t + 8 <= M; t += 8) {
    const float *xt[8];
    for (int k = 0; k < 8; k++) xt[k] = x + (t + k) * xs;
    z16 a0 = z16_zero(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    z16 c0 = a0, c1 = a0, c2 = a0, c3 = a0, c4 = a0, c5 = a0, c6 = a0, c7 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      z16 w01 = z16_pair(y8_load(wr[0] + i), y8_load(wr[1] + i));
      z16 w23 = z16_pair(y8_load(wr[2] + i), y8_load(wr[3] + i));
      TILE_STEP(a0, c0, xt[0]) TILE_STEP(a1, c1, xt[1]) TILE_STEP(a2, c2, xt[2]) TILE_STEP(a3, c3, xt[3])
      TILE_STEP(a4, c4, xt[4]) TILE_STEP(a5, c5, xt[5]) TILE_STEP(a6, c6, xt[6]) TILE_STEP(a7, c7, xt[7])
    }
    tile_reduce4(a0, a1, a2, a3, c0, c1, c2, c3, s);
    tile_reduce4(a4, a5, a6, a7, c4, c5, c6, c7, s + 16);
    tile_store(wr, xt, i, n, s, 8, y + t * ys, ys);
  }
  for (; t + 4 <= M; t += 4) {
    const float *xt[4];
    for (int k = 0; k < 4; k++) xt[k] = x + (t + k) * xs;
    z16 a0 = z16_zero(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      z16 w01 = z16_pair(y8_load(wr[0] + i), y8_load(wr[1] + i));
      z16 w23 = z16_pair(y8_load(wr[2] + i), y8_load(wr[3] + i));
      TILE_STEP(a0, c0, xt[0]) TILE_STEP(a1, c1, xt[1]) TILE_STEP(a2, c2, xt[2]) TILE_STEP(a3, c3, xt[3])
    }
    tile_reduce4(a0, a1, a2, a3, c0, c1, c2, c3, s);
    tile_store(wr, xt, i, n, s, 4, y + t * ys, ys);
  }
  for (; t < M; t++) {
    const float *x0 = x + t * xs;
    z16 a0 = z16_zero(), c0 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      z16 w01 = z16_pair(y8_load(wr[0] + i), y8_load(wr[1] + i));
      z16 w23 = z16_pair(y8_load(wr[2] + i), y8_load(wr[3] + i));
      TILE_STEP(a0, c0, x0)
    }
    tile_out(wr, x0, i, n, a0, c0, y + t * ys);
  }
}
#undef TILE_STEP

/* tile4_f32_pf / tile4_f16_pf / tile4_bf16_pf (kernels.h): the same pairing read straight from
 * F32, F16 or BF16 rows; halves widened in registers (w16_f16 / w16_bf16, exact) once per eight
 * elements and used for the block's tokens, the tail widened with the scalar conversion: the
 * lanes, tree and tail of the widened rows, so the bits of dot_f16 / dot_bf16, without a float
 * copy of the rows in memory. One block of K <= 8 tokens: 2K accumulators (16 of the 32 ZMM
 * registers at K = 8); M is cut into blocks of balanced sizes (M = 5: one block of 5, M = 9:
 * 4 + 5), so no token is left to a one-token pass that re-reads the rows. Which block a token
 * falls in changes nothing in its arithmetic. The first block asks the cache for the rows at
 * pf, one line of each per 64 bytes of weights. */
#if defined(__GNUC__) || defined(__clang__)
#define LRT_FORCE_INLINE __attribute__((always_inline)) inline
#define LRT_UNROLL _Pragma("GCC unroll 16")
#elif defined(_MSC_VER)
#define LRT_FORCE_INLINE __forceinline
#define LRT_UNROLL
#else
#define LRT_FORCE_INLINE inline
#define LRT_UNROLL
#endif
#define TILE_KZ 8 /* most tokens per block */
#define DEFINE_TILE4_Z(NAME, WT, W16, TAIL)                                                   \
  LRT_AVX512 static LRT_FORCE_INLINE void NAME##_blk(const WT *const *wr, const float *x, int64_t xs, const int K, \
                                                     int64_t n, float *y, int64_t ys, const WT *pf, int64_t ws) { \
    z16 a[TILE_KZ], c[TILE_KZ];                                                               \
    LRT_UNROLL for (int k = 0; k < K; k++) {                                                  \
      a[k] = z16_zero();                                                                      \
      c[k] = a[k];                                                                            \
    }                                                                                         \
    const int64_t pm = 64 / (int64_t)sizeof(WT) - 1; /* one line per row every 64 bytes */    \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) {                                                              \
      if (pf && (i & pm) == 0) LRT_KPREFETCH_ROWS4(pf, ws, i);                                \
      z16 w01 = W16(wr[0], wr[1], i), w23 = W16(wr[2], wr[3], i);                             \
      LRT_UNROLL for (int k = 0; k < K; k++) {                                                \
        z16 xb = z16_bcast8(x + k * xs + i);                                                  \
        a[k] = z16_add(a[k], z16_mul(w01, xb));                                               \
        c[k] = z16_add(c[k], z16_mul(w23, xb));                                               \
      }                                                                                       \
    }                                                                                         \
    LRT_UNROLL for (int k = 0; k < K; k++) {                                                  \
      float s[4] = {y8_hsum(z16_lo(a[k])), y8_hsum(z16_hi(a[k])), y8_hsum(z16_lo(c[k])), y8_hsum(z16_hi(c[k]))}; \
      for (int r = 0; r < 4; r++) {                                                           \
        for (int64_t j = i; j < n; j++) s[r] = s[r] + TAIL(wr[r], j) * x[k * xs + j];         \
        y[k * ys + r] = s[r];                                                                 \
      }                                                                                       \
    }                                                                                         \
  }                                                                                           \
  LRT_AVX512 static void NAME(const WT *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y, \
                              int64_t ys, const WT *pf) {                                     \
    const WT *wr[4] = {w, w + ws, w + 2 * ws, w + 3 * ws};                                    \
    int64_t nb = (M + TILE_KZ - 1) / TILE_KZ, t = 0;                                          \
    for (int64_t b = 0; b < nb; b++) {                                                        \
      int64_t K = (M - t) / (nb - b); /* balanced block sizes */                              \
      const float *xt = x + t * xs;                                                           \
      float *yt = y + t * ys;                                                                 \
      const WT *pb = b == 0 ? pf : NULL; /* the first block asks for the next rows */         \
      switch (K) {                                                                            \
        case 8: NAME##_blk(wr, xt, xs, 8, n, yt, ys, pb, ws); break;                          \
        case 7: NAME##_blk(wr, xt, xs, 7, n, yt, ys, pb, ws); break;                          \
        case 6: NAME##_blk(wr, xt, xs, 6, n, yt, ys, pb, ws); break;                          \
        case 5: NAME##_blk(wr, xt, xs, 5, n, yt, ys, pb, ws); break;                          \
        case 4: NAME##_blk(wr, xt, xs, 4, n, yt, ys, pb, ws); break;                          \
        case 3: NAME##_blk(wr, xt, xs, 3, n, yt, ys, pb, ws); break;                          \
        case 2: NAME##_blk(wr, xt, xs, 2, n, yt, ys, pb, ws); break;                          \
        default: NAME##_blk(wr, xt, xs, 1, n, yt, ys, pb, ws); break;                         \
      }                                                                                       \
      t += K;                                                                                 \
    }                                                                                         \
  }
DEFINE_TILE4_Z(tile4_f32_pf_z, float, w16_f32, tail_f32)
DEFINE_TILE4_Z(tile4_f16_pf_z, uint16_t, w16_f16, tail_f16)
DEFINE_TILE4_Z(tile4_bf16_pf_z, uint16_t, w16_bf16, tail_bf16)
#undef DEFINE_TILE4_Z

/* lincomb_rows_f32 (kernels.h): four rows x 32 elements of Y in registers (eight ZMM
 * accumulators: each weight of a row broadcast once per j serves 32 chains), then 16, then
 * scalar; each lane its own chain over j in order, multiply then add. */
#define LR_STEP(p, q, a)                                                                       \
  {                                                                                            \
    z16 b_ = z16_splat((a)[j * aj]);                                                           \
    p = z16_add(p, z16_mul(b_, x0));                                                           \
    q = z16_add(q, z16_mul(b_, x1));                                                           \
  }
LRT_AVX512 static void lincomb_rows_f32_z(const float *A, int64_t ar, int64_t aj, const float *X, int64_t xs, int64_t R,
                                          int64_t n, int64_t d, float *Y, int64_t ys) {
  int64_t r = 0;
  for (; r + 4 <= R; r += 4) {
    const float *a0 = A + r * ar, *a1 = a0 + ar, *a2 = a1 + ar, *a3 = a2 + ar;
    float *y0 = Y + r * ys, *y1 = y0 + ys, *y2 = y1 + ys, *y3 = y2 + ys;
    int64_t e = 0;
    for (; e + 32 <= d; e += 32) {
      z16 p0 = z16_ld(y0 + e), q0 = z16_ld(y0 + e + 16), p1 = z16_ld(y1 + e), q1 = z16_ld(y1 + e + 16);
      z16 p2 = z16_ld(y2 + e), q2 = z16_ld(y2 + e + 16), p3 = z16_ld(y3 + e), q3 = z16_ld(y3 + e + 16);
      for (int64_t j = 0; j < n; j++) {
        z16 x0 = z16_ld(X + j * xs + e), x1 = z16_ld(X + j * xs + e + 16);
        LR_STEP(p0, q0, a0) LR_STEP(p1, q1, a1) LR_STEP(p2, q2, a2) LR_STEP(p3, q3, a3)
      }
      z16_store(y0 + e, p0); z16_store(y0 + e + 16, q0); z16_store(y1 + e, p1); z16_store(y1 + e + 16, q1);
      z16_store(y2 + e, p2); z16_store(y2 + e + 16, q2); z16_store(y3 + e, p3); z16_store(y3 + e + 16, q3);
    }
    for (; e + 16 <= d; e += 16) {
      z16 p0 = z16_ld(y0 + e), p1 = z16_ld(y1 + e), p2 = z16_ld(y2 + e), p3 = z16_ld(y3 + e);
      for (int64_t j = 0; j < n; j++) {
        z16 x0 = z16_ld(X + j * xs + e);
        p0 = z16_add(p0, z16_mul(z16_splat(a0[j * aj]), x0));
        p1 = z16_add(p1, z16_mul(z16_splat(a1[j * aj]), x0));
        p2 = z16_add(p2, z16_mul(z16_splat(a2[j * aj]), x0));
        p3 = z16_add(p3, z16_mul(z16_splat(a3[j * aj]), x0));
      }
      z16_store(y0 + e, p0); z16_store(y1 + e, p1); z16_store(y2 + e, p2); z16_store(y3 + e, p3);
    }
    for (; e < d; e++)
      for (int64_t j = 0; j < n; j++) {
        float xv = X[j * xs + e];
        y0[e] = y0[e] + a0[j * aj] * xv;
        y1[e] = y1[e] + a1[j * aj] * xv;
        y2[e] = y2[e] + a2[j * aj] * xv;
        y3[e] = y3[e] + a3[j * aj] * xv;
      }
  }
  for (; r < R; r++) {
    const float *a0 = A + r * ar;
    float *y0 = Y + r * ys;
    int64_t e = 0;
    for (; e + 32 <= d; e += 32) {
      z16 p0 = z16_ld(y0 + e), q0 = z16_ld(y0 + e + 16);
      for (int64_t j = 0; j < n; j++) {
        z16 x0 = z16_ld(X + j * xs + e), x1 = z16_ld(X + j * xs + e + 16);
        LR_STEP(p0, q0, a0)
      }
      z16_store(y0 + e, p0); z16_store(y0 + e + 16, q0);
    }
    for (; e + 16 <= d; e += 16) {
      z16 p0 = z16_ld(y0 + e);
      for (int64_t j = 0; j < n; j++) p0 = z16_add(p0, z16_mul(z16_splat(a0[j * aj]), z16_ld(X + j * xs + e)));
      z16_store(y0 + e, p0);
    }
    for (; e < d; e++)
      for (int64_t j = 0; j < n; j++) y0[e] = y0[e] + a0[j * aj] * X[j * xs + e];
  }
}
#undef LR_STEP

/* Only the entries this path changes: dispatch.c fills the others from lrt_kernels_avx2 (the
 * reference where there is no AVX2 table, e.g. an LRT_AVX512_EMULATE build off x86). */
const lrt_kernels lrt_kernels_avx2_avx512vl = {
    .name = "avx2-avx512vl",
    .tile4_f32 = tile4_f32_z, .lincomb_rows_f32 = lincomb_rows_f32_z,
    .tile4_f32_pf = tile4_f32_pf_z, .tile4_f16_pf = tile4_f16_pf_z, .tile4_bf16_pf = tile4_bf16_pf_z,
    .dot4_q4_0 = dot4_q4_0_vl, .dot4_q4_1 = dot4_q4_1_vl,
    .dequant_q8_0 = dequant_q8_0_vl, .dequant_q4_0 = dequant_q4_0_vl, .dequant_q4_1 = dequant_q4_1_vl,
    .dequant_q5_0 = dequant_q5_0_vl, .dequant_q5_1 = dequant_q5_1_vl,
    .dot4_q5_0 = dot4_q5_0_vl, .dot4_q5_1 = dot4_q5_1_vl,
};

const lrt_kernels lrt_kernels_avx512 = {
    .name = "avx512",
    .dot_f32 = dot_f32_avx512, .dot_f16 = dot_f16_avx512, .dot_bf16 = dot_bf16_avx512, .sum_f32 = sum_f32_avx512,
    .rows_f32 = rows_f32, .rows_f16 = rows_f16, .rows_bf16 = rows_bf16,
    .dot4_f32 = dot4_f32, .dot4_f16 = dot4_f16, .dot4_bf16 = dot4_bf16,
    .dequant_q8_0 = dequant_q8_0_avx512, .dequant_q4_0 = dequant_q4_0_avx512, .dequant_q4_1 = dequant_q4_1_avx512,
    .dot4_q8_0 = dot4_q8_0_avx512, .dot4_q4_0 = dot4_q4_0_avx512, .dot4_q4_1 = dot4_q4_1_avx512,
    .lincomb_rows_f32 = lincomb_rows_f32_z, /* training: attention's row blocks */
#if !defined(LRT_AVX512_EMULATE) /* elementwise math: the AVX2 versions (every AVX-512F CPU has AVX2) */
    .exp_f32 = lrt_exp_f32_avx2, .silu_mul_f32 = lrt_silu_mul_f32_avx2, .log_f32 = lrt_log_f32_avx2,
    .tile4_f32 = tile4_f32_z, /* 512-bit prefill / batch / speculation tile, same bits as the AVX2 one */
    .tile4_f32_pf = tile4_f32_pf_z, .tile4_f16_pf = tile4_f16_pf_z, .tile4_bf16_pf = tile4_bf16_pf_z,
    .lincomb_f32 = lrt_lincomb_f32_avx2, .rank1_f32 = lrt_rank1_f32_avx2, /* training chains */
    /* K-quants: the AVX2 kernels (eight lanes per dot product, 256-bit registers) */
    .dequant_q4_k = lrt_dequant_q4_k_avx2, .dequant_q5_k = lrt_dequant_q5_k_avx2, .dequant_q6_k = lrt_dequant_q6_k_avx2,
    .dot4_q4_k = lrt_dot4_q4_k_avx2, .dot4_q5_k = lrt_dot4_q5_k_avx2, .dot4_q6_k = lrt_dot4_q6_k_avx2,
#endif
};
#endif
