/* avx2.c -- x86-64 AVX2 (+F16C) kernels. Bit-identical to ref.c: one __m256 accumulator
 * holds the 8 dot8 lanes, products and sums are separate instructions (no FMA; the file is
 * compiled with -ffp-contract=off so the compiler does not fuse them either), and the lanes
 * are combined with the same tree: t = lo128 + hi128, s = (t0 + t2) + (t1 + t3).
 * Only this file is compiled for AVX2 (function attributes); the library itself targets
 * baseline x86-64 and picks this table at run time (dispatch.c). */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

#include "../base/base.h"
#include "kernels.h"

#if defined(__GNUC__) || defined(__clang__)
#define LRT_AVX2 __attribute__((target("avx2,f16c")))
#else
#define LRT_AVX2
#endif

LRT_AVX2 static inline float hsum8(__m256 acc) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)); /* t0..t3 */
  __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));                                      /* t0+t2, t1+t3 */
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

LRT_AVX2 static inline __m256 load_f32(const void *w, int64_t i) {
  return _mm256_loadu_ps((const float *)w + i);
}
LRT_AVX2 static inline __m256 load_f16(const void *w, int64_t i) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
}
LRT_AVX2 static inline __m256 load_bf16(const void *w, int64_t i) {
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
static inline float tail_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
static inline float tail_f16(const void *w, int64_t i) { return lrt_f16_to_f32(((const uint16_t *)w)[i]); }
static inline float tail_bf16(const void *w, int64_t i) { return lrt_bf16_to_f32(((const uint16_t *)w)[i]); }

/* DOT: one row, one x.  ROWS: one row, M x vectors, four at a time (independent
 * accumulators, each in the exact dot8 order). */
#define DEFINE_KERNELS(SUF, LOAD, TAIL)                                                       \
  LRT_AVX2 static float dot_##SUF(const void *w, const float *x, int64_t n) {                 \
    __m256 acc = _mm256_setzero_ps();                                                         \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(LOAD(w, i), _mm256_loadu_ps(x + i))); \
    float s = hsum8(acc);                                                                     \
    for (; i < n; i++) s = s + TAIL(w, i) * x[i];                                             \
    return s;                                                                                 \
  }                                                                                           \
  LRT_AVX2 static void rows_##SUF(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, \
                                  float *y, int64_t ys) {                                     \
    int64_t t = 0;                                                                            \
    for (; t + 4 <= M; t += 4) {                                                              \
      const float *x0 = x + t * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;              \
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                             \
      int64_t i = 0;                                                                          \
      for (; i + 8 <= n; i += 8) {                                                            \
        __m256 wv = LOAD(w, i);                                                               \
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(wv, _mm256_loadu_ps(x0 + i)));                   \
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(wv, _mm256_loadu_ps(x1 + i)));                   \
        a2 = _mm256_add_ps(a2, _mm256_mul_ps(wv, _mm256_loadu_ps(x2 + i)));                   \
        a3 = _mm256_add_ps(a3, _mm256_mul_ps(wv, _mm256_loadu_ps(x3 + i)));                   \
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
  LRT_AVX2 static void dot4_##SUF(const void *w, int64_t ws, const float *x, int64_t n, float *y) { \
    const void *w1 = ELEM(w, ws), *w2 = ELEM(w1, ws), *w3 = ELEM(w2, ws);                      \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                               \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) {                                                              \
      __m256 xv = _mm256_loadu_ps(x + i);                                                     \
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(LOAD(w, i), xv));                                  \
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(LOAD(w1, i), xv));                                 \
      a2 = _mm256_add_ps(a2, _mm256_mul_ps(LOAD(w2, i), xv));                                 \
      a3 = _mm256_add_ps(a3, _mm256_mul_ps(LOAD(w3, i), xv));                                 \
    }                                                                                         \
    float s0 = hsum8(a0), s1 = hsum8(a1), s2 = hsum8(a2), s3 = hsum8(a3);                     \
    for (; i < n; i++) {                                                                      \
      s0 = s0 + TAIL(w, i) * x[i]; s1 = s1 + TAIL(w1, i) * x[i];                              \
      s2 = s2 + TAIL(w2, i) * x[i]; s3 = s3 + TAIL(w3, i) * x[i];                             \
    }                                                                                         \
    y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;                                               \
  }

#define ELEM(p, k) ((const void *)((const float *)(p) + (k)))
DEFINE_KERNELS(f32, load_f32, tail_f32)
#undef ELEM
#define ELEM(p, k) ((const void *)((const uint16_t *)(p) + (k)))
DEFINE_KERNELS(f16, load_f16, tail_f16)
DEFINE_KERNELS(bf16, load_bf16, tail_bf16)
#undef ELEM

/* The tiles (tile4_f32, and tile4_*_pf over F32 / F16 / BF16 rows): four weight rows x a block
 * of K <= 3 tokens, 4K accumulators each in the dot8 order (twelve of the sixteen YMM
 * registers at K = 3). Each step widens eight weights of a row once (F16C / a 16-bit shift for
 * halves, exact; a plain load for F32) and uses them for the K tokens, whose x loads are memory
 * operands. M is cut into blocks of balanced sizes (M = 4: 2 + 2, M = 5: 3 + 2), so no token is
 * left to a one-token pass that re-reads the rows. Tails in the scalar order of the single dot.
 * Which block a token falls in changes nothing in its arithmetic. The first block asks the
 * cache for the rows at pf, one line of each per 64 bytes of weights. */
#if defined(__GNUC__) || defined(__clang__)
#define LRT_FORCE_INLINE __attribute__((always_inline)) inline
#define LRT_UNROLL _Pragma("GCC unroll 16")
#else
#define LRT_FORCE_INLINE __forceinline
#define LRT_UNROLL
#endif
#define TILE_K2 3 /* most tokens per block */
#define DEFINE_TILE4_AVX2(NAME, WT, LOAD, TAIL)                                               \
  LRT_AVX2 static LRT_FORCE_INLINE void NAME##_blk(const WT *w, int64_t ws, const float *x, int64_t xs, const int K, \
                                                   int64_t n, float *y, int64_t ys, const WT *pf) { \
    __m256 a[TILE_K2][4];                                                                     \
    LRT_UNROLL for (int k = 0; k < K; k++) {                                                  \
      LRT_UNROLL for (int r = 0; r < 4; r++) a[k][r] = _mm256_setzero_ps();                   \
    }                                                                                         \
    const int64_t pm = 64 / (int64_t)sizeof(WT) - 1; /* one line per row every 64 bytes */    \
    int64_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) {                                                              \
      if (pf && (i & pm) == 0) LRT_KPREFETCH_ROWS4(pf, ws, i);                                \
      LRT_UNROLL for (int r = 0; r < 4; r++) {                                                \
        __m256 wv = LOAD(w + r * ws, i);                                                      \
        LRT_UNROLL for (int k = 0; k < K; k++)                                                \
          a[k][r] = _mm256_add_ps(a[k][r], _mm256_mul_ps(wv, _mm256_loadu_ps(x + k * xs + i))); \
      }                                                                                       \
    }                                                                                         \
    LRT_UNROLL for (int k = 0; k < K; k++) {                                                  \
      for (int r = 0; r < 4; r++) {                                                           \
        float s = hsum8(a[k][r]);                                                             \
        for (int64_t j = i; j < n; j++) s = s + TAIL(w + r * ws, j) * x[k * xs + j];          \
        y[k * ys + r] = s;                                                                    \
      }                                                                                       \
    }                                                                                         \
  }                                                                                           \
  LRT_AVX2 static void NAME(const WT *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y, \
                            int64_t ys, const WT *pf) {                                       \
    int64_t nb = (M + TILE_K2 - 1) / TILE_K2, t = 0;                                          \
    for (int64_t b = 0; b < nb; b++) {                                                        \
      int64_t K = (M - t) / (nb - b); /* balanced block sizes */                              \
      const float *xt = x + t * xs;                                                           \
      float *yt = y + t * ys;                                                                 \
      const WT *pb = b == 0 ? pf : NULL;                                                      \
      if (K == 3) NAME##_blk(w, ws, xt, xs, 3, n, yt, ys, pb);                                \
      else if (K == 2) NAME##_blk(w, ws, xt, xs, 2, n, yt, ys, pb);                           \
      else NAME##_blk(w, ws, xt, xs, 1, n, yt, ys, pb);                                       \
      t += K;                                                                                 \
    }                                                                                         \
  }
DEFINE_TILE4_AVX2(tile4_f32_pf_avx2, float, load_f32, tail_f32)
DEFINE_TILE4_AVX2(tile4_f16_pf_avx2, uint16_t, load_f16, tail_f16)
DEFINE_TILE4_AVX2(tile4_bf16_pf_avx2, uint16_t, load_bf16, tail_bf16)
#undef DEFINE_TILE4_AVX2
LRT_AVX2 void lrt_tile4_f32_avx2(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n,
                                    float *y, int64_t ys) {
  tile4_f32_pf_avx2(w, ws, x, xs, M, n, y, ys, NULL);
}

/* Training chains (kernels.h): vectorized across e only; each y element is one chain over j in
 * order, a separate multiply then add per step, as the reference. */
LRT_AVX2 void lrt_lincomb_f32_avx2(const float *a, const float *X, int64_t xs, int64_t n, int64_t d, float *y) {
  int64_t e = 0;
  for (; e + 32 <= d; e += 32) {
    __m256 y0 = _mm256_loadu_ps(y + e), y1 = _mm256_loadu_ps(y + e + 8), y2 = _mm256_loadu_ps(y + e + 16),
           y3 = _mm256_loadu_ps(y + e + 24);
    for (int64_t j = 0; j < n; j++) {
      const float *xr = X + j * xs + e;
      __m256 av = _mm256_broadcast_ss(a + j);
      y0 = _mm256_add_ps(y0, _mm256_mul_ps(av, _mm256_loadu_ps(xr)));
      y1 = _mm256_add_ps(y1, _mm256_mul_ps(av, _mm256_loadu_ps(xr + 8)));
      y2 = _mm256_add_ps(y2, _mm256_mul_ps(av, _mm256_loadu_ps(xr + 16)));
      y3 = _mm256_add_ps(y3, _mm256_mul_ps(av, _mm256_loadu_ps(xr + 24)));
    }
    _mm256_storeu_ps(y + e, y0); _mm256_storeu_ps(y + e + 8, y1);
    _mm256_storeu_ps(y + e + 16, y2); _mm256_storeu_ps(y + e + 24, y3);
  }
  for (; e + 8 <= d; e += 8) {
    __m256 y0 = _mm256_loadu_ps(y + e);
    for (int64_t j = 0; j < n; j++) y0 = _mm256_add_ps(y0, _mm256_mul_ps(_mm256_broadcast_ss(a + j), _mm256_loadu_ps(X + j * xs + e)));
    _mm256_storeu_ps(y + e, y0);
  }
  for (; e < d; e++)
    for (int64_t j = 0; j < n; j++) y[e] = y[e] + a[j] * X[j * xs + e];
}

LRT_AVX2 void lrt_rank1_f32_avx2(const float *a, const float *x, int64_t n, int64_t d, float *Y, int64_t ys) {
  for (int64_t j = 0; j < n; j++) {
    float *yr = Y + j * ys;
    __m256 av = _mm256_broadcast_ss(a + j);
    int64_t e = 0;
    for (; e + 8 <= d; e += 8) _mm256_storeu_ps(yr + e, _mm256_add_ps(_mm256_loadu_ps(yr + e), _mm256_mul_ps(av, _mm256_loadu_ps(x + e))));
    for (; e < d; e++) yr[e] = yr[e] + a[j] * x[e];
  }
}

/* lincomb_rows_f32 (kernels.h): four rows x sixteen elements of Y in registers (eight
 * accumulators), each lane its own chain over j in order, multiply then add */
LRT_AVX2 void lrt_lincomb_rows_f32_avx2(const float *A, int64_t ar, int64_t aj, const float *X, int64_t xs, int64_t R,
                                        int64_t n, int64_t d, float *Y, int64_t ys) {
  int64_t r = 0;
  for (; r + 4 <= R; r += 4) {
    const float *a0 = A + r * ar, *a1 = a0 + ar, *a2 = a1 + ar, *a3 = a2 + ar;
    float *y0 = Y + r * ys, *y1 = y0 + ys, *y2 = y1 + ys, *y3 = y2 + ys;
    int64_t e = 0;
    for (; e + 16 <= d; e += 16) {
      __m256 p0 = _mm256_loadu_ps(y0 + e), q0 = _mm256_loadu_ps(y0 + e + 8), p1 = _mm256_loadu_ps(y1 + e),
             q1 = _mm256_loadu_ps(y1 + e + 8), p2 = _mm256_loadu_ps(y2 + e), q2 = _mm256_loadu_ps(y2 + e + 8),
             p3 = _mm256_loadu_ps(y3 + e), q3 = _mm256_loadu_ps(y3 + e + 8);
      for (int64_t j = 0; j < n; j++) {
        const float *xr = X + j * xs + e;
        __m256 x0 = _mm256_loadu_ps(xr), x1 = _mm256_loadu_ps(xr + 8), b;
        b = _mm256_broadcast_ss(a0 + j * aj);
        p0 = _mm256_add_ps(p0, _mm256_mul_ps(b, x0)); q0 = _mm256_add_ps(q0, _mm256_mul_ps(b, x1));
        b = _mm256_broadcast_ss(a1 + j * aj);
        p1 = _mm256_add_ps(p1, _mm256_mul_ps(b, x0)); q1 = _mm256_add_ps(q1, _mm256_mul_ps(b, x1));
        b = _mm256_broadcast_ss(a2 + j * aj);
        p2 = _mm256_add_ps(p2, _mm256_mul_ps(b, x0)); q2 = _mm256_add_ps(q2, _mm256_mul_ps(b, x1));
        b = _mm256_broadcast_ss(a3 + j * aj);
        p3 = _mm256_add_ps(p3, _mm256_mul_ps(b, x0)); q3 = _mm256_add_ps(q3, _mm256_mul_ps(b, x1));
      }
      _mm256_storeu_ps(y0 + e, p0); _mm256_storeu_ps(y0 + e + 8, q0);
      _mm256_storeu_ps(y1 + e, p1); _mm256_storeu_ps(y1 + e + 8, q1);
      _mm256_storeu_ps(y2 + e, p2); _mm256_storeu_ps(y2 + e + 8, q2);
      _mm256_storeu_ps(y3 + e, p3); _mm256_storeu_ps(y3 + e + 8, q3);
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
    for (; e + 8 <= d; e += 8) {
      __m256 p0 = _mm256_loadu_ps(y0 + e);
      for (int64_t j = 0; j < n; j++)
        p0 = _mm256_add_ps(p0, _mm256_mul_ps(_mm256_broadcast_ss(a0 + j * aj), _mm256_loadu_ps(X + j * xs + e)));
      _mm256_storeu_ps(y0 + e, p0);
    }
    for (; e < d; e++)
      for (int64_t j = 0; j < n; j++) y0[e] = y0[e] + a0[j * aj] * X[j * xs + e];
  }
}

LRT_AVX2 static void widen_f16_avx2(const uint16_t *h, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16(h, i));
  for (; i < n; i++) y[i] = lrt_f16_to_f32(h[i]);
}
LRT_AVX2 static void widen_bf16_avx2(const uint16_t *h, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16(h, i));
  for (; i < n; i++) y[i] = lrt_bf16_to_f32(h[i]);
}

LRT_AVX2 static float sum_f32_avx2(const float *x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
  float s = hsum8(acc);
  for (; i < n; i++) s = s + x[i];
  return s;
}

static float dot_f32_avx2(const float *w, const float *x, int64_t n) { return dot_f32(w, x, n); }
static float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n) { return dot_f16(w, x, n); }
static float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n) { return dot_bf16(w, x, n); }

/* GGUF blocks: the scale(s) are widened from F16 with F16C (exact), the integers converted
 * exactly, then one multiply (and one add for Q4_1) per element, as in the reference. */
LRT_AVX2 static inline __m256 f16_splat(const uint8_t *p) {
  return _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(lrt_rd_u16le(p)))));
}

LRT_AVX2 static void dequant_q8_0_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 34, y += 32) {
    __m256 d = f16_splat(p);
    for (int j = 0; j < 32; j += 8) {
      __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 2 + j)));
      _mm256_storeu_ps(y + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
    }
  }
}

LRT_AVX2 static inline void nibbles(const uint8_t *qs, __m256i *lo0, __m256i *lo1, __m256i *hi0, __m256i *hi1) {
  __m128i v = _mm_loadu_si128((const __m128i *)qs);
  __m128i mask = _mm_set1_epi8(0x0f);
  __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
  *lo0 = _mm256_cvtepu8_epi32(lo);
  *lo1 = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
  *hi0 = _mm256_cvtepu8_epi32(hi);
  *hi1 = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
}

LRT_AVX2 static void dequant_q4_0_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  const __m256i eight = _mm256_set1_epi32(8);
  for (int64_t b = 0; b < n / 32; b++, p += 18, y += 32) {
    __m256 d = f16_splat(p);
    __m256i q[4];
    nibbles(p + 2, &q[0], &q[1], &q[2], &q[3]);
    for (int j = 0; j < 4; j++)
      _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[j], eight))));
  }
}

LRT_AVX2 static void dequant_q4_1_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 20, y += 32) {
    __m256 d = f16_splat(p), m = f16_splat(p + 2);
    __m256i q[4];
    nibbles(p + 4, &q[0], &q[1], &q[2], &q[3]);
    for (int j = 0; j < 4; j++)
      _mm256_storeu_ps(y + 8 * j, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[j])), m));
  }
}

/* Fused decode for block formats: four rows share the x loads; each block's integers are
 * widened in registers (byte j of a Q4 block holds element j in its low nibble and element
 * j + 16 in its high nibble), scaled exactly as dequant_* does, and accumulated in the dot8
 * lane order: the same bits as dequantize-then-dot4_f32, with no trip through memory. */
/* (Written out without arrays or inner loops: GCC at -O2 keeps small __m256 arrays on the
 * stack, which costs more than the arithmetic.) */
#define Q4_INTS(qs, e0, e1, e2, e3)                                                           \
  __m256i e0, e1, e2, e3;                                                                     \
  {                                                                                           \
    __m256i b0_ = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs)));       /* bytes 0-7  */ \
    __m256i b1_ = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)((qs) + 8))); /* bytes 8-15 */ \
    __m256i lo_ = _mm256_set1_epi32(0x0f);                                                    \
    e0 = _mm256_and_si256(b0_, lo_); /* elements 0-7   */                                     \
    e1 = _mm256_and_si256(b1_, lo_); /* elements 8-15  */                                     \
    e2 = _mm256_srli_epi32(b0_, 4);  /* elements 16-23 */                                     \
    e3 = _mm256_srli_epi32(b1_, 4);  /* elements 24-31 */                                     \
  }

/* acc = acc + w_k * x_k for the four 8-element groups of one block, in order */
#define ACC4(acc, w0, w1, w2, w3)                                                             \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(w0, x0));                                            \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(w1, x1));                                            \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(w2, x2));                                            \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(w3, x3))

#define Q8_0_ROW(acc, p)                                                                      \
  {                                                                                           \
    __m256 d_ = f16_splat(p);                                                                 \
    ACC4(acc, Q8_W(p, 0), Q8_W(p, 1), Q8_W(p, 2), Q8_W(p, 3));                                \
  }
#define Q8_W(p, k) _mm256_mul_ps(d_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((p) + 2 + 8 * (k))))))

#define Q4_0_ROW(acc, p)                                                                      \
  {                                                                                           \
    __m256 d_ = f16_splat(p);                                                                 \
    __m256i eight_ = _mm256_set1_epi32(8);                                                    \
    Q4_INTS((p) + 2, e0, e1, e2, e3)                                                          \
    ACC4(acc, Q4_0_W(e0), Q4_0_W(e1), Q4_0_W(e2), Q4_0_W(e3));                                \
  }
#define Q4_0_W(e) _mm256_mul_ps(d_, _mm256_cvtepi32_ps(_mm256_sub_epi32(e, eight_)))

#define Q4_1_ROW(acc, p)                                                                      \
  {                                                                                           \
    __m256 d_ = f16_splat(p), m_ = f16_splat((p) + 2);                                        \
    Q4_INTS((p) + 4, e0, e1, e2, e3)                                                          \
    ACC4(acc, Q4_1_W(e0), Q4_1_W(e1), Q4_1_W(e2), Q4_1_W(e3));                                \
  }
#define Q4_1_W(e) _mm256_add_ps(_mm256_mul_ps(d_, _mm256_cvtepi32_ps(e)), m_)

#define DEFINE_DOT4_BLOCKS(NAME, BLOCK_BYTES, ROW)                                            \
  LRT_AVX2 static void NAME(const void *w, int64_t rb, const float *x, int64_t n, float *y) { \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                               \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    for (int64_t b = 0; b < n / 32; b++, p += BLOCK_BYTES) {                                  \
      const float *xb = x + b * 32;                                                           \
      __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);                         \
      __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);                   \
      ROW(a0, p);                                                                             \
      ROW(a1, p + rb);                                                                        \
      ROW(a2, p + 2 * rb);                                                                    \
      ROW(a3, p + 3 * rb);                                                                    \
    }                                                                                         \
    y[0] = hsum8(a0); y[1] = hsum8(a1); y[2] = hsum8(a2); y[3] = hsum8(a3);                   \
  }

DEFINE_DOT4_BLOCKS(dot4_q8_0_avx2, 34, Q8_0_ROW)
DEFINE_DOT4_BLOCKS(dot4_q4_0_avx2, 18, Q4_0_ROW)
DEFINE_DOT4_BLOCKS(dot4_q4_1_avx2, 20, Q4_1_ROW)

/* Q5_0 / Q5_1: the Q4 nibbles plus bit j of qh as 16 (a variable shift puts bit j of the
 * broadcast qh in lane j, then and 1, shift to 16, or) */
#define Q5_INTS(qs, qh32, e0, e1, e2, e3)                                                     \
  Q4_INTS(qs, e0, e1, e2, e3)                                                                 \
  {                                                                                           \
    __m256i h_ = _mm256_set1_epi32((int)(qh32)), one_ = _mm256_set1_epi32(1);                 \
    __m256i s_ = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), eight_s_ = _mm256_set1_epi32(8);  \
    e0 = _mm256_or_si256(e0, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(h_, s_), one_), 4)); \
    s_ = _mm256_add_epi32(s_, eight_s_);                                                      \
    e1 = _mm256_or_si256(e1, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(h_, s_), one_), 4)); \
    s_ = _mm256_add_epi32(s_, eight_s_);                                                      \
    e2 = _mm256_or_si256(e2, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(h_, s_), one_), 4)); \
    s_ = _mm256_add_epi32(s_, eight_s_);                                                      \
    e3 = _mm256_or_si256(e3, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(h_, s_), one_), 4)); \
  }

#define Q5_0_ROW(acc, p)                                                                      \
  {                                                                                           \
    __m256 d_ = f16_splat(p);                                                                 \
    __m256i sixteen_ = _mm256_set1_epi32(16);                                                 \
    Q5_INTS((p) + 6, lrt_rd_u32le((p) + 2), e0, e1, e2, e3)                                   \
    ACC4(acc, Q5_0_W(e0), Q5_0_W(e1), Q5_0_W(e2), Q5_0_W(e3));                                \
  }
#define Q5_0_W(e) _mm256_mul_ps(d_, _mm256_cvtepi32_ps(_mm256_sub_epi32(e, sixteen_)))

#define Q5_1_ROW(acc, p)                                                                      \
  {                                                                                           \
    __m256 d_ = f16_splat(p), m_ = f16_splat((p) + 2);                                        \
    Q5_INTS((p) + 8, lrt_rd_u32le((p) + 4), e0, e1, e2, e3)                                   \
    ACC4(acc, Q4_1_W(e0), Q4_1_W(e1), Q4_1_W(e2), Q4_1_W(e3));                                \
  }

DEFINE_DOT4_BLOCKS(dot4_q5_0_avx2, 22, Q5_0_ROW)
DEFINE_DOT4_BLOCKS(dot4_q5_1_avx2, 24, Q5_1_ROW)

LRT_AVX2 static void dequant_q5_0_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 22, y += 32) {
    __m256 d_ = f16_splat(p);
    __m256i sixteen_ = _mm256_set1_epi32(16);
    Q5_INTS(p + 6, lrt_rd_u32le(p + 2), e0, e1, e2, e3)
    _mm256_storeu_ps(y, Q5_0_W(e0));
    _mm256_storeu_ps(y + 8, Q5_0_W(e1));
    _mm256_storeu_ps(y + 16, Q5_0_W(e2));
    _mm256_storeu_ps(y + 24, Q5_0_W(e3));
  }
}

LRT_AVX2 static void dequant_q5_1_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  for (int64_t b = 0; b < n / 32; b++, p += 24, y += 32) {
    __m256 d_ = f16_splat(p), m_ = f16_splat(p + 2);
    Q5_INTS(p + 8, lrt_rd_u32le(p + 4), e0, e1, e2, e3)
    _mm256_storeu_ps(y, Q4_1_W(e0));
    _mm256_storeu_ps(y + 8, Q4_1_W(e1));
    _mm256_storeu_ps(y + 16, Q4_1_W(e2));
    _mm256_storeu_ps(y + 24, Q4_1_W(e3));
  }
}

/* ---- K-quants: 256-element super-blocks ------------------------------------------------------
 * Per row and super-block, the float scales are computed as in the reference (ds = d * sc,
 * dm = dmin * m, one rounding each), eight at a time, and kept in a small float array read
 * back with broadcast loads (a load, not a shuffle). The four rows are interleaved group by
 * group (8 elements), so their four accumulator chains run in parallel; each chain adds its
 * groups in element order, as dot_f32 does over the dequantized row. Exported (kernels.h):
 * the avx512 table uses them too. */

/* Q4_K / Q5_K: the 8 sub-block scales and mins of a block as floats */
LRT_AVX2 static inline void k4_scales(const uint8_t *p, float *ds, float *dm) {
  uint32_t s0 = lrt_rd_u32le(p + 4), s1 = lrt_rd_u32le(p + 8), s2 = lrt_rd_u32le(p + 12);
  /* byte j of (sc_lo, sc_hi) = sc of sub-block j; the same for m */
  uint32_t sc_lo = s0 & 0x3f3f3f3fu, m_lo = s1 & 0x3f3f3f3fu;
  uint32_t sc_hi = (s2 & 0x0f0f0f0fu) | ((s0 >> 2) & 0x30303030u);
  uint32_t m_hi = ((s2 >> 4) & 0x0f0f0f0fu) | ((s1 >> 2) & 0x30303030u);
  __m128i v = _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
  __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
  __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
  _mm256_storeu_ps(ds, _mm256_mul_ps(f16_splat(p), sc));
  _mm256_storeu_ps(dm, _mm256_mul_ps(f16_splat(p + 2), m));
}

/* acc = acc + ((ds * q) - dm) * x for one 8-element group; q as int32 lanes */
#define K4_ACC(acc, q, ds, dm, xv)                                                             \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_broadcast_ss(ds), _mm256_cvtepi32_ps(q)), \
                                                       _mm256_broadcast_ss(dm)), xv))

#define Q8BYTES(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p)))

/* Row dequantization (prefill): the same per-element operations as the reference,
 * y = (ds * q) - dm (Q4_K / Q5_K) and y = ds * (q - 32) (Q6_K), eight elements at a time. */
#define K4_STORE(yp, q, ds, dm)                                                                \
  _mm256_storeu_ps(yp, _mm256_sub_ps(_mm256_mul_ps(_mm256_broadcast_ss(ds), _mm256_cvtepi32_ps(q)), \
                                     _mm256_broadcast_ss(dm)))

LRT_AVX2 void lrt_dequant_q4_k_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  const __m256i m4 = _mm256_set1_epi32(15);
  float ds[8], dm[8];
  for (int64_t b = 0; b < n / 256; b++, p += 144, y += 256) {
    k4_scales(p, ds, dm);
    for (int j = 0; j < 8; j += 2) { /* sub-blocks j (low nibbles) and j + 1 (high) share bytes */
      const uint8_t *q = p + 16 + 16 * j;
      for (int g = 0; g < 4; g++) {
        __m256i v = Q8BYTES(q + 8 * g);
        K4_STORE(y + 32 * j + 8 * g, _mm256_and_si256(v, m4), &ds[j], &dm[j]);
        K4_STORE(y + 32 * (j + 1) + 8 * g, _mm256_srli_epi32(v, 4), &ds[j + 1], &dm[j + 1]);
      }
    }
  }
}

LRT_AVX2 void lrt_dequant_q5_k_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  const __m256i m4 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
  float ds[8], dm[8];
  for (int64_t b = 0; b < n / 256; b++, p += 176, y += 256) {
    k4_scales(p, ds, dm);
    for (int j = 0; j < 8; j++) {
      const uint8_t *q = p + 48 + 32 * (j >> 1);
      __m128i jc = _mm_cvtsi32_si128(j), sh = _mm_cvtsi32_si128(4 * (j & 1));
      for (int g = 0; g < 4; g++) {
        __m256i lo = _mm256_and_si256(_mm256_srl_epi32(Q8BYTES(q + 8 * g), sh), m4);
        __m256i hi = _mm256_and_si256(_mm256_srl_epi32(Q8BYTES(p + 16 + 8 * g), jc), one);
        K4_STORE(y + 32 * j + 8 * g, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), &ds[j], &dm[j]);
      }
    }
  }
}
#undef K4_STORE

LRT_AVX2 void lrt_dot4_q4_k_avx2(const void *w, int64_t rb, const float *x, int64_t n, float *y) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const __m256i m4 = _mm256_set1_epi32(15);
  const uint8_t *p0 = (const uint8_t *)w, *p1 = p0 + rb, *p2 = p1 + rb, *p3 = p2 + rb;
  float ds[4][8], dm[4][8];
  for (int64_t b = 0; b < n / 256; b++, p0 += 144, p1 += 144, p2 += 144, p3 += 144) {
    const float *xb = x + b * 256;
    k4_scales(p0, ds[0], dm[0]);
    k4_scales(p1, ds[1], dm[1]);
    k4_scales(p2, ds[2], dm[2]);
    k4_scales(p3, ds[3], dm[3]);
    for (int j = 0; j < 8; j++) {
      int qo = 16 + 32 * (j >> 1);
      if ((j & 1) == 0) {
        for (int g = 0; g < 4; g++) {
          __m256 xv = _mm256_loadu_ps(xb + 32 * j + 8 * g);
          K4_ACC(a0, _mm256_and_si256(Q8BYTES(p0 + qo + 8 * g), m4), &ds[0][j], &dm[0][j], xv);
          K4_ACC(a1, _mm256_and_si256(Q8BYTES(p1 + qo + 8 * g), m4), &ds[1][j], &dm[1][j], xv);
          K4_ACC(a2, _mm256_and_si256(Q8BYTES(p2 + qo + 8 * g), m4), &ds[2][j], &dm[2][j], xv);
          K4_ACC(a3, _mm256_and_si256(Q8BYTES(p3 + qo + 8 * g), m4), &ds[3][j], &dm[3][j], xv);
        }
      } else {
        for (int g = 0; g < 4; g++) {
          __m256 xv = _mm256_loadu_ps(xb + 32 * j + 8 * g);
          K4_ACC(a0, _mm256_srli_epi32(Q8BYTES(p0 + qo + 8 * g), 4), &ds[0][j], &dm[0][j], xv);
          K4_ACC(a1, _mm256_srli_epi32(Q8BYTES(p1 + qo + 8 * g), 4), &ds[1][j], &dm[1][j], xv);
          K4_ACC(a2, _mm256_srli_epi32(Q8BYTES(p2 + qo + 8 * g), 4), &ds[2][j], &dm[2][j], xv);
          K4_ACC(a3, _mm256_srli_epi32(Q8BYTES(p3 + qo + 8 * g), 4), &ds[3][j], &dm[3][j], xv);
        }
      }
    }
  }
  y[0] = hsum8(a0); y[1] = hsum8(a1); y[2] = hsum8(a2); y[3] = hsum8(a3);
}

/* Q5_K: the Q4_K nibble plus bit j of qh[l] as bit 4 */
#define Q5_INT(p, qo, g, j, lohi)                                                              \
  _mm256_or_si256(lohi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srl_epi32(Q8BYTES((p) + 16 + 8 * (g)), jc), one), 4))

LRT_AVX2 void lrt_dot4_q5_k_avx2(const void *w, int64_t rb, const float *x, int64_t n, float *y) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const __m256i m4 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
  const uint8_t *p0 = (const uint8_t *)w, *p1 = p0 + rb, *p2 = p1 + rb, *p3 = p2 + rb;
  float ds[4][8], dm[4][8];
  for (int64_t b = 0; b < n / 256; b++, p0 += 176, p1 += 176, p2 += 176, p3 += 176) {
    const float *xb = x + b * 256;
    k4_scales(p0, ds[0], dm[0]);
    k4_scales(p1, ds[1], dm[1]);
    k4_scales(p2, ds[2], dm[2]);
    k4_scales(p3, ds[3], dm[3]);
    for (int j = 0; j < 8; j++) {
      int qo = 48 + 32 * (j >> 1);
      __m128i jc = _mm_cvtsi32_si128(j), sh = _mm_cvtsi32_si128(4 * (j & 1));
      for (int g = 0; g < 4; g++) {
        __m256 xv = _mm256_loadu_ps(xb + 32 * j + 8 * g);
        K4_ACC(a0, Q5_INT(p0, qo, g, j, _mm256_and_si256(_mm256_srl_epi32(Q8BYTES(p0 + qo + 8 * g), sh), m4)), &ds[0][j], &dm[0][j], xv);
        K4_ACC(a1, Q5_INT(p1, qo, g, j, _mm256_and_si256(_mm256_srl_epi32(Q8BYTES(p1 + qo + 8 * g), sh), m4)), &ds[1][j], &dm[1][j], xv);
        K4_ACC(a2, Q5_INT(p2, qo, g, j, _mm256_and_si256(_mm256_srl_epi32(Q8BYTES(p2 + qo + 8 * g), sh), m4)), &ds[2][j], &dm[2][j], xv);
        K4_ACC(a3, Q5_INT(p3, qo, g, j, _mm256_and_si256(_mm256_srl_epi32(Q8BYTES(p3 + qo + 8 * g), sh), m4)), &ds[3][j], &dm[3][j], xv);
      }
    }
  }
  y[0] = hsum8(a0); y[1] = hsum8(a1); y[2] = hsum8(a2); y[3] = hsum8(a3);
}
#undef Q5_INT

/* Q6_K: the 16 scales of a block times d, as floats */
LRT_AVX2 static inline void k6_scales(const uint8_t *p, float *ds) {
  __m256 d = f16_splat(p + 208);
  __m256i s0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 192)));
  __m256i s1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 200)));
  _mm256_storeu_ps(ds, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s0)));
  _mm256_storeu_ps(ds + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s1)));
}

/* q - 32 of the 8 elements r = 32k + 8g (k, g < 4) of half h of a Q6_K block: low 4 bits from
 * ql[64h + 32(k & 1) + 8g ..] >> 4(k >> 1), high 2 bits from qh[32h + 8g ..] >> 2k. k is a
 * constant in each use, so the shifts are immediates. */
#define Q6_INT(p, k)                                                                           \
  _mm256_sub_epi32(_mm256_or_si256(                                                           \
      _mm256_and_si256(_mm256_srli_epi32(Q8BYTES((p) + 64 * h + 32 * ((k) & 1) + 8 * g), 4 * ((k) >> 1)), m4), \
      _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(Q8BYTES((p) + 128 + 32 * h + 8 * g), 2 * (k)), m2), 4)), k32)
#define K6_ACC(acc, q, ds, xv)                                                                 \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(_mm256_broadcast_ss(ds), _mm256_cvtepi32_ps(q)), xv))
/* the 32 elements 128h + 32k .. +31, in order, for the four rows */
#define Q6_QUARTER(k)                                                                          \
  for (int g = 0; g < 4; g++) {                                                               \
    __m256 xv = _mm256_loadu_ps(xb + 128 * h + 32 * (k) + 8 * g);                             \
    int si = 8 * h + 2 * (k) + (g >> 1);                                                      \
    K6_ACC(a0, Q6_INT(p0, k), &ds[0][si], xv);                                                \
    K6_ACC(a1, Q6_INT(p1, k), &ds[1][si], xv);                                                \
    K6_ACC(a2, Q6_INT(p2, k), &ds[2][si], xv);                                                \
    K6_ACC(a3, Q6_INT(p3, k), &ds[3][si], xv);                                                \
  }

#define Q6_STORE(k)                                                                            \
  for (int g = 0; g < 4; g++)                                                                 \
    _mm256_storeu_ps(y + 128 * h + 32 * (k) + 8 * g,                                          \
                     _mm256_mul_ps(_mm256_broadcast_ss(&ds[8 * h + 2 * (k) + (g >> 1)]), _mm256_cvtepi32_ps(Q6_INT(p, k))));

LRT_AVX2 void lrt_dequant_q6_k_avx2(const void *row, float *y, int64_t n) {
  const uint8_t *p = (const uint8_t *)row;
  const __m256i m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3), k32 = _mm256_set1_epi32(32);
  float ds[16];
  for (int64_t b = 0; b < n / 256; b++, p += 210, y += 256) {
    k6_scales(p, ds);
    for (int h = 0; h < 2; h++) {
      Q6_STORE(0)
      Q6_STORE(1)
      Q6_STORE(2)
      Q6_STORE(3)
    }
  }
}
#undef Q6_STORE

LRT_AVX2 void lrt_dot4_q6_k_avx2(const void *w, int64_t rb, const float *x, int64_t n, float *y) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const __m256i m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3), k32 = _mm256_set1_epi32(32);
  const uint8_t *p0 = (const uint8_t *)w, *p1 = p0 + rb, *p2 = p1 + rb, *p3 = p2 + rb;
  float ds[4][16];
  for (int64_t b = 0; b < n / 256; b++, p0 += 210, p1 += 210, p2 += 210, p3 += 210) {
    const float *xb = x + b * 256;
    k6_scales(p0, ds[0]);
    k6_scales(p1, ds[1]);
    k6_scales(p2, ds[2]);
    k6_scales(p3, ds[3]);
    for (int h = 0; h < 2; h++) {
      Q6_QUARTER(0)
      Q6_QUARTER(1)
      Q6_QUARTER(2)
      Q6_QUARTER(3)
    }
  }
  y[0] = hsum8(a0); y[1] = hsum8(a1); y[2] = hsum8(a2); y[3] = hsum8(a3);
}
#undef Q6_QUARTER
#undef Q6_INT
#undef K6_ACC
#undef K4_ACC
#undef Q8BYTES

/* ---- int8 activations (LRT_OPEN_INT8_ACTIVATIONS; the rule is in ref.c) --------------------
 * Integer block sums S_b with maddubs (u8 x s8 pairs into int16: at most 2 * 128 * 127, no
 * saturation) and madd (int16 pairs into int32); eight blocks' int32 lanes are reduced to one
 * vector of eight S_b by integer adds (exact in any order); the float part is then the
 * reference's, eight blocks at a time in the dot8 lanes, and the tail blocks are the
 * reference's own scalar code (kernels.h). */
LRT_AVX2 static inline __m256i i8_sums_q8_0(const uint8_t *p, const int8_t *qx) {
  __m256i w = _mm256_loadu_si256((const __m256i *)(p + 2));
  __m256i x = _mm256_loadu_si256((const __m256i *)qx);
  __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)); /* |w| * (x * sign w) */
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* raw nibbles (0..15): byte j holds element j (low) and j + 16 (high) */
LRT_AVX2 static inline __m256i i8_sums_q4(const uint8_t *qs, const int8_t *qx) {
  __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);
  __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
  __m256i x = _mm256_loadu_si256((const __m256i *)qx);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

/* eight vectors of int32 partial sums -> one vector of their eight totals */
LRT_AVX2 static inline __m256i i8_reduce8(__m256i m0, __m256i m1, __m256i m2, __m256i m3, __m256i m4,
                                          __m256i m5, __m256i m6, __m256i m7) {
  __m256i b0 = _mm256_hadd_epi32(_mm256_hadd_epi32(m0, m1), _mm256_hadd_epi32(m2, m3));
  __m256i b1 = _mm256_hadd_epi32(_mm256_hadd_epi32(m4, m5), _mm256_hadd_epi32(m6, m7));
  return _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31));
}

/* total of eight int32 lanes (the tail blocks' S_b) */
LRT_AVX2 static inline int32_t i8_hsum(__m256i v) {
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
  return _mm_cvtsi128_si32(t);
}

/* the F16 at offset off of eight consecutive blocks, widened (exact) */
LRT_AVX2 static inline __m256 f16_gather8(const uint8_t *p, int64_t bb, int off) {
  __m128i h = _mm_setr_epi16((short)lrt_rd_u16le(p + off), (short)lrt_rd_u16le(p + bb + off),
                             (short)lrt_rd_u16le(p + 2 * bb + off), (short)lrt_rd_u16le(p + 3 * bb + off),
                             (short)lrt_rd_u16le(p + 4 * bb + off), (short)lrt_rd_u16le(p + 5 * bb + off),
                             (short)lrt_rd_u16le(p + 6 * bb + off), (short)lrt_rd_u16le(p + 7 * bb + off));
  return _mm256_cvtph_ps(h);
}

/* block b's c_b (the tail blocks): lrt_i8_cb_* with the integer sum in SIMD */
LRT_AVX2 static inline float f16_at(const uint8_t *p) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(lrt_rd_u16le(p)))); }
LRT_AVX2 static inline float i8_tail_q8_0(const uint8_t *p, const int8_t *qx, const float *dx, const int32_t *sx, int64_t b) {
  (void)sx;
  int32_t S = i8_hsum(i8_sums_q8_0(p + b * 34, qx + b * 32));
  return (f16_at(p + b * 34) * dx[b]) * (float)S;
}
LRT_AVX2 static inline float i8_tail_q4_0(const uint8_t *p, const int8_t *qx, const float *dx, const int32_t *sx, int64_t b) {
  int32_t S = i8_hsum(i8_sums_q4(p + b * 18 + 2, qx + b * 32)) - 8 * sx[b];
  return (f16_at(p + b * 18) * dx[b]) * (float)S;
}
LRT_AVX2 static inline float i8_tail_q4_1(const uint8_t *p, const int8_t *qx, const float *dx, const int32_t *sx, int64_t b) {
  int32_t S = i8_hsum(i8_sums_q4(p + b * 20 + 4, qx + b * 32));
  float dd = f16_at(p + b * 20) * dx[b], md = f16_at(p + b * 20 + 2) * dx[b];
  return dd * (float)S + md * (float)sx[b];
}

#define I8_SUMS8(SUMS, p, bb, qo, qx)                                                          \
  i8_reduce8(SUMS((p) + (qo), (qx)), SUMS((p) + (bb) + (qo), (qx) + 32), SUMS((p) + 2 * (bb) + (qo), (qx) + 64), \
             SUMS((p) + 3 * (bb) + (qo), (qx) + 96), SUMS((p) + 4 * (bb) + (qo), (qx) + 128),  \
             SUMS((p) + 5 * (bb) + (qo), (qx) + 160), SUMS((p) + 6 * (bb) + (qo), (qx) + 192), \
             SUMS((p) + 7 * (bb) + (qo), (qx) + 224))

/* the float steps of eight blocks for one token: acc += c_b (the reference's steps, eight blocks
 * in the eight lanes) */
#define I8_F8_Q8_0(acc, S, dw, mw, d, s, b) \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_loadu_ps((d) + (b))), _mm256_cvtepi32_ps(S)))
#define I8_F8_Q4_0(acc, S, dw, mw, d, s, b)                                                     \
  acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_loadu_ps((d) + (b))),        \
                                         _mm256_cvtepi32_ps(_mm256_sub_epi32(S, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)((s) + (b))), 3)))))
#define I8_F8_Q4_1(acc, S, dw, mw, d, s, b)                                                     \
  {                                                                                           \
    __m256 dxv_ = _mm256_loadu_ps((d) + (b));                                                 \
    __m256 sxv_ = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)((s) + (b))));       \
    acc = _mm256_add_ps(acc, _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(dw, dxv_), _mm256_cvtepi32_ps(S)), \
                                           _mm256_mul_ps(_mm256_mul_ps(mw, dxv_), sxv_)));    \
  }

/* one row, one token: S_b of eight blocks at a time, their float steps in the dot8 lanes, the
 * tail blocks one by one */
#define DEFINE_I8_DOT(ATTR, NAME, SUMS, BB, QO, HAS_M, F8, TAIL)                                \
  ATTR static float NAME(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n) { \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    int64_t nb = n / 32, b = 0;                                                               \
    __m256 acc = _mm256_setzero_ps();                                                         \
    for (; b + 8 <= nb; b += 8) {                                                             \
      const uint8_t *pb = p + b * (BB);                                                       \
      __m256i S = I8_SUMS8(SUMS, pb, BB, QO, qx + b * 32);                                    \
      __m256 dw = f16_gather8(pb, BB, 0), mw = HAS_M ? f16_gather8(pb, BB, 2) : dw;           \
      (void)mw;                                                                               \
      F8(acc, S, dw, mw, dx, sx, b);                                                          \
    }                                                                                         \
    float s = hsum8(acc);                                                                     \
    for (; b < nb; b++) s = s + TAIL(p, qx, dx, sx, b);                                       \
    return s;                                                                                 \
  }

DEFINE_I8_DOT(LRT_AVX2, dot_q8_0_i8_avx2, i8_sums_q8_0, 34, 0, 0, I8_F8_Q8_0, i8_tail_q8_0)
DEFINE_I8_DOT(LRT_AVX2, dot_q4_0_i8_avx2, i8_sums_q4, 18, 2, 0, I8_F8_Q4_0, i8_tail_q4_0)
DEFINE_I8_DOT(LRT_AVX2, dot_q4_1_i8_avx2, i8_sums_q4, 20, 4, 1, I8_F8_Q4_1, i8_tail_q4_1)

/* One weight row against M tokens (prefill): two tokens at a time share the weight loads,
 * the unpacking and the scale gathers; each token's S_b and float steps are those of the
 * single-token kernels above, so every output has the bits of dot_*_i8. qx rows are n apart,
 * dx / sx rows n / 32 apart; y[t * ys]. */
LRT_AVX2 static inline void i8_pair_q8_0(const uint8_t *p, const int8_t *x0, const int8_t *x1, __m256i *m0, __m256i *m1) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i w = _mm256_loadu_si256((const __m256i *)(p + 2)), a = _mm256_abs_epi8(w);
  *m0 = _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x0), w)), ones);
  *m1 = _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x1), w)), ones);
}
LRT_AVX2 static inline void i8_pair_q4(const uint8_t *qs, const int8_t *x0, const int8_t *x1, __m256i *m0, __m256i *m1) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);
  __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
  *m0 = _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_loadu_si256((const __m256i *)x0)), ones);
  *m1 = _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_loadu_si256((const __m256i *)x1)), ones);
}

/* S_b of eight blocks for two tokens, reduced as they come (fewer live registers) */
#define I8_PAIR2(PAIR, pb, bb, qo, x0, x1, k, A, C)                                             \
  {                                                                                           \
    __m256i a0_, a1_, c0_, c1_;                                                               \
    PAIR((pb) + (k) * (bb) + (qo), (x0) + 32 * (k), (x1) + 32 * (k), &a0_, &c0_);             \
    PAIR((pb) + ((k) + 1) * (bb) + (qo), (x0) + 32 * ((k) + 1), (x1) + 32 * ((k) + 1), &a1_, &c1_); \
    A = _mm256_hadd_epi32(a0_, a1_);                                                          \
    C = _mm256_hadd_epi32(c0_, c1_);                                                          \
  }
#define I8_PAIR8(PAIR, pb, bb, qo, x0, x1, S0, S1)                                              \
  {                                                                                           \
    __m256i A01_, C01_, A23_, C23_, A45_, C45_, A67_, C67_;                                   \
    I8_PAIR2(PAIR, pb, bb, qo, x0, x1, 0, A01_, C01_)                                         \
    I8_PAIR2(PAIR, pb, bb, qo, x0, x1, 2, A23_, C23_)                                         \
    __m256i A0_ = _mm256_hadd_epi32(A01_, A23_), C0_ = _mm256_hadd_epi32(C01_, C23_);         \
    I8_PAIR2(PAIR, pb, bb, qo, x0, x1, 4, A45_, C45_)                                         \
    I8_PAIR2(PAIR, pb, bb, qo, x0, x1, 6, A67_, C67_)                                         \
    __m256i A1_ = _mm256_hadd_epi32(A45_, A67_), C1_ = _mm256_hadd_epi32(C45_, C67_);         \
    S0 = _mm256_add_epi32(_mm256_permute2x128_si256(A0_, A1_, 0x20), _mm256_permute2x128_si256(A0_, A1_, 0x31)); \
    S1 = _mm256_add_epi32(_mm256_permute2x128_si256(C0_, C1_, 0x20), _mm256_permute2x128_si256(C0_, C1_, 0x31)); \
  }

#define DEFINE_I8_ROWS(ATTR, NAME, DOT1, PAIR, BB, QO, HAS_M, F8, TAIL)                         \
  ATTR static void NAME(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M, \
                            int64_t n, float *y, int64_t ys) {                                 \
    const uint8_t *p = (const uint8_t *)w;                                                    \
    int64_t nb = n / 32, t = 0;                                                               \
    for (; t + 2 <= M; t += 2) {                                                              \
      const int8_t *x0 = qx + t * n, *x1 = x0 + n;                                            \
      const float *d0 = dx + t * nb, *d1 = d0 + nb;                                           \
      const int32_t *s0 = sx + t * nb, *s1 = s0 + nb;                                         \
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                         \
      int64_t b = 0;                                                                          \
      for (; b + 8 <= nb; b += 8) {                                                           \
        const uint8_t *pb = p + b * (BB);                                                     \
        __m256i S0, S1;                                                                       \
        I8_PAIR8(PAIR, pb, BB, QO, x0 + b * 32, x1 + b * 32, S0, S1)                          \
        __m256 dw = f16_gather8(pb, BB, 0), mw = HAS_M ? f16_gather8(pb, BB, 2) : dw;         \
        (void)mw;                                                                             \
        F8(acc0, S0, dw, mw, d0, s0, b);                                                      \
        F8(acc1, S1, dw, mw, d1, s1, b);                                                      \
      }                                                                                       \
      float r0 = hsum8(acc0), r1 = hsum8(acc1);                                               \
      for (; b < nb; b++) {                                                                   \
        r0 = r0 + TAIL(p, x0, d0, s0, b);                                                     \
        r1 = r1 + TAIL(p, x1, d1, s1, b);                                                     \
      }                                                                                       \
      y[t * ys] = r0;                                                                         \
      y[(t + 1) * ys] = r1;                                                                   \
    }                                                                                         \
    for (; t < M; t++) y[t * ys] = DOT1(w, qx + t * n, dx + t * nb, sx + t * nb, n);          \
  }

DEFINE_I8_ROWS(LRT_AVX2, rows_q8_0_i8_avx2, dot_q8_0_i8_avx2, i8_pair_q8_0, 34, 0, 0, I8_F8_Q8_0, i8_tail_q8_0)
DEFINE_I8_ROWS(LRT_AVX2, rows_q4_0_i8_avx2, dot_q4_0_i8_avx2, i8_pair_q4, 18, 2, 0, I8_F8_Q4_0, i8_tail_q4_0)
DEFINE_I8_ROWS(LRT_AVX2, rows_q4_1_i8_avx2, dot_q4_1_i8_avx2, i8_pair_q4, 20, 4, 1, I8_F8_Q4_1, i8_tail_q4_1)

/* ---- int8 activations, prefill tile with VNNI (i8_pack_x, i8_pack_w, i8_tile; kernels.h) ----
 * The chunk's activation rows and a task's weight rows are first copied block-interleaved:
 * per group of eight blocks, 32-bit lane j of vector k holds elements 4k..4k+3 of block 8g + j
 * (an 8 x 8 transpose of 32-bit words). Then one vpdpbusd per vector adds every block's
 * partial sum into its own lane, so after the group's eight vectors lane j holds block 8g + j's
 * whole sum: no horizontal integer reduction at all, and a tile of rows x tokens shares every
 * load. vpdpbusd multiplies unsigned by signed bytes, so the activations are stored as
 * q_x + 128 (0..255) and the weights as signed bytes (Q8_0 q, Q4_0 q - 8, Q4_1 q), and
 * sum (q_x + 128) w - 128 sum w = sum q_x w = S_b exactly (|lane| < 32 * 255 * 128, no
 * overflow; the pack stores 128 sum w per block). The float part is then the reference's
 * steps for eight blocks in the eight dot8 lanes (the AVX2 kernels' I8_F8_*), the tree, and
 * the tail group's block results added one by one in block order: every output has the bits
 * of rows_*_i8.
 * Packed activation row, per group (320 bytes): 8 x 32 bytes q_x + 128, float dx[8], int32
 * sx[8]. Packed weight row, per group (352 bytes): 8 x 32 bytes w, int32 128 sum w [8],
 * float d_w[8], float m_w[8] (zero for Q8_0 / Q4_0). Missing blocks are zero (q_x + 128 = 128). */
#define I8T_TRANSPOSE8(r)                                                                       \
  {                                                                                           \
    __m256i t0_ = _mm256_unpacklo_epi32(r[0], r[1]), t1_ = _mm256_unpackhi_epi32(r[0], r[1]);  \
    __m256i t2_ = _mm256_unpacklo_epi32(r[2], r[3]), t3_ = _mm256_unpackhi_epi32(r[2], r[3]);  \
    __m256i t4_ = _mm256_unpacklo_epi32(r[4], r[5]), t5_ = _mm256_unpackhi_epi32(r[4], r[5]);  \
    __m256i t6_ = _mm256_unpacklo_epi32(r[6], r[7]), t7_ = _mm256_unpackhi_epi32(r[6], r[7]);  \
    __m256i u0_ = _mm256_unpacklo_epi64(t0_, t2_), u1_ = _mm256_unpackhi_epi64(t0_, t2_);      \
    __m256i u2_ = _mm256_unpacklo_epi64(t1_, t3_), u3_ = _mm256_unpackhi_epi64(t1_, t3_);      \
    __m256i u4_ = _mm256_unpacklo_epi64(t4_, t6_), u5_ = _mm256_unpackhi_epi64(t4_, t6_);      \
    __m256i u6_ = _mm256_unpacklo_epi64(t5_, t7_), u7_ = _mm256_unpackhi_epi64(t5_, t7_);      \
    r[0] = _mm256_permute2x128_si256(u0_, u4_, 0x20);                                          \
    r[1] = _mm256_permute2x128_si256(u1_, u5_, 0x20);                                          \
    r[2] = _mm256_permute2x128_si256(u2_, u6_, 0x20);                                          \
    r[3] = _mm256_permute2x128_si256(u3_, u7_, 0x20);                                          \
    r[4] = _mm256_permute2x128_si256(u0_, u4_, 0x31);                                          \
    r[5] = _mm256_permute2x128_si256(u1_, u5_, 0x31);                                          \
    r[6] = _mm256_permute2x128_si256(u2_, u6_, 0x31);                                          \
    r[7] = _mm256_permute2x128_si256(u3_, u7_, 0x31);                                          \
  }

#define I8T_UNROLL _Pragma("GCC unroll 8")
/* RT rows x 4 tokens per tile (RT = 4 with the 32 registers of AVX-512VL, 2 with AVX-VNNI's 16) */
#define DEFINE_I8_TILE(SFX, ATTR, DPBUSD, RT)                                                   \
  /* one block of 32 floats quantized as lrt_quantize_act_q8 does (base/convert.c), returned as   \
   * q + 128 bytes; *d the block scale as used, *s the sum of q */                              \
  ATTR static inline __m256i i8_quant_block_##SFX(const float *x, float *d, int32_t *s) {        \
    const __m256i absm = _mm256_set1_epi32(0x7fffffff);                                       \
    __m256 v[4];                                                                              \
    __m256i mx = _mm256_setzero_si256();                                                      \
    I8T_UNROLL for (int i = 0; i < 4; i++) {                                                  \
      v[i] = _mm256_loadu_ps(x + 8 * i);                                                      \
      mx = _mm256_max_epi32(mx, _mm256_and_si256(_mm256_castps_si256(v[i]), absm));          \
    }                                                                                         \
    __m128i m4_ = _mm_max_epi32(_mm256_castsi256_si128(mx), _mm256_extracti128_si256(mx, 1)); \
    m4_ = _mm_max_epi32(m4_, _mm_shuffle_epi32(m4_, 0x4e));                                   \
    m4_ = _mm_max_epi32(m4_, _mm_shuffle_epi32(m4_, 0xb1));                                   \
    uint32_t amax_bits = (uint32_t)_mm_cvtsi128_si32(m4_);                                    \
    float amax, dd, id;                                                                       \
    memcpy(&amax, &amax_bits, 4);                                                             \
    dd = amax / 127.0f;                                                                       \
    id = dd != 0.0f ? 1.0f / dd : 0.0f;                                                       \
    uint32_t id_bits;                                                                         \
    memcpy(&id_bits, &id, 4);                                                                 \
    if (amax_bits >= 0x7f800000u || id_bits >= 0x7f800000u) {                                 \
      uint32_t nan_bits = 0x7fc00000u;                                                        \
      float nanf_;                                                                            \
      memcpy(&nanf_, &nan_bits, 4);                                                           \
      *d = amax_bits >= 0x7f800000u ? nanf_ : 0.0f;                                           \
      *s = 0;                                                                                 \
      return _mm256_set1_epi8((char)0x80);                                                    \
    }                                                                                         \
    const __m256 idv = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f);                       \
    const __m256i c127 = _mm256_set1_epi32(127);                                              \
    __m256i q[4], sum = _mm256_setzero_si256();                                               \
    I8T_UNROLL for (int i = 0; i < 4; i++) {                                                  \
      __m256 p = _mm256_mul_ps(v[i], idv);                                                    \
      __m256 a = _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(p), absm));         \
      __m256i t = _mm256_cvttps_epi32(a);                         /* truncation, a < 2^23 */ \
      __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, _mm256_cvtepi32_ps(t)), half, _CMP_GE_OQ);  \
      t = _mm256_sub_epi32(t, _mm256_castps_si256(up));           /* half away from zero */  \
      t = _mm256_min_epi32(t, c127);                                                          \
      q[i] = _mm256_sign_epi32(t, _mm256_castps_si256(p));        /* the sign of x * id */   \
      sum = _mm256_add_epi32(sum, q[i]);                                                      \
    }                                                                                         \
    *s = i8_hsum(sum);                                                                        \
    *d = lrt_f16_to_f32(lrt_f32_to_f16(dd));                                                  \
    __m256i b16 = _mm256_packs_epi32(q[0], q[1]), b16b = _mm256_packs_epi32(q[2], q[3]);      \
    __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(b16, b16b),                   \
                                             _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));      \
    return _mm256_xor_si256(b8, _mm256_set1_epi8((char)0x80));                                \
  }                                                                                           \
  ATTR static void i8_pack_x_##SFX(const float *x, int64_t M, int64_t n, void *out) {         \
    int64_t nb = n / 32, ng = LRT_I8_GROUPS(n), M4 = LRT_I8_ROUND4(M);                        \
    uint8_t *o = (uint8_t *)out;                                                              \
    const __m256i off = _mm256_set1_epi8((char)0x80);                                         \
    for (int64_t t = 0; t < M4; t++)                                                          \
      for (int64_t g = 0; g < ng; g++, o += 320) {                                            \
        __m256i r[8];                                                                         \
        float d8[8];                                                                          \
        int32_t s8[8];                                                                        \
        for (int j = 0; j < 8; j++) {                                                         \
          int64_t b = 8 * g + j;                                                              \
          r[j] = off;                                                                         \
          d8[j] = 0.0f;                                                                       \
          s8[j] = 0;                                                                          \
          if (t < M && b < nb) r[j] = i8_quant_block_##SFX(x + t * n + b * 32, &d8[j], &s8[j]); \
        }                                                                                     \
        I8T_TRANSPOSE8(r)                                                                     \
        for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i *)(o + 32 * k), r[k]);      \
        memcpy(o + 256, d8, 32);                                                              \
        memcpy(o + 288, s8, 32);                                                              \
      }                                                                                       \
  }                                                                                           \
  ATTR static void i8_pack_w_##SFX(int fmt, const void *w, int64_t row_bytes, int64_t R, int64_t n, void *out) { \
    int64_t nb = n / 32, ng = LRT_I8_GROUPS(n), R4 = LRT_I8_ROUND4(R);                        \
    int64_t bb = fmt == LRT_I8_Q8_0 ? 34 : fmt == LRT_I8_Q4_0 ? 18 : 20;                      \
    uint8_t *o = (uint8_t *)out;                                                              \
    const __m128i m4 = _mm_set1_epi8(15);                                                     \
    const __m256i ones = _mm256_set1_epi8(1), eight = _mm256_set1_epi8(8);                    \
    for (int64_t r = 0; r < R4; r++)                                                          \
      for (int64_t g = 0; g < ng; g++, o += 352) {                                            \
        const uint8_t *p = (const uint8_t *)w + r * row_bytes;                                \
        __m256i v[8];                                                                         \
        float d8[8], m8[8];                                                                   \
        I8T_UNROLL for (int j = 0; j < 8; j++) {                                                         \
          int64_t b = 8 * g + j;                                                              \
          d8[j] = m8[j] = 0.0f;                                                               \
          v[j] = _mm256_setzero_si256();                                                      \
          if (r >= R || b >= nb) continue;                                                    \
          const uint8_t *blk = p + b * bb;                                                    \
          d8[j] = f16_at(blk);                                                                \
          if (fmt == LRT_I8_Q8_0) {                                                           \
            v[j] = _mm256_loadu_si256((const __m256i *)(blk + 2));                            \
          } else {                                                                            \
            __m128i q = _mm_loadu_si128((const __m128i *)(blk + (fmt == LRT_I8_Q4_0 ? 2 : 4))); \
            v[j] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4)); \
            if (fmt == LRT_I8_Q4_0) v[j] = _mm256_sub_epi8(v[j], eight);                      \
            else m8[j] = f16_at(blk + 2);                                                     \
          }                                                                                   \
        }                                                                                     \
        I8T_TRANSPOSE8(v)                                                                     \
        __m256i sw = _mm256_setzero_si256();                                                  \
        I8T_UNROLL for (int k = 0; k < 8; k++) {                                                         \
          _mm256_storeu_si256((__m256i *)(o + 32 * k), v[k]);                                 \
          sw = DPBUSD(sw, ones, v[k]);                                                        \
        }                                                                                     \
        _mm256_storeu_si256((__m256i *)(o + 256), _mm256_slli_epi32(sw, 7));                  \
        memcpy(o + 288, d8, 32);                                                              \
        memcpy(o + 320, m8, 32);                                                              \
      }                                                                                       \
  }                                                                                           \
  ATTR static void i8_tile_##SFX(int fmt, const void *pw, int64_t R, const void *px, int64_t M, int64_t n, \
                                 float *y, int64_t ys, const int32_t *cols) {                 \
    int64_t nb = n / 32, ng = LRT_I8_GROUPS(n), nfull = nb / 8, ntail = nb % 8;                \
    int64_t PW = ng * 352, PX = ng * 320;                                                     \
    int has_m = fmt == LRT_I8_Q4_1;                                                           \
    for (int64_t r0 = 0; r0 < R; r0 += RT)                                                    \
      for (int64_t t0 = 0; t0 < M; t0 += 4) {                                                 \
        const uint8_t *wp = (const uint8_t *)pw + r0 * PW, *xp = (const uint8_t *)px + t0 * PX; \
        __m256 fs[RT][4];                                                                     \
        float tail[RT][4][8];                                                                 \
        I8T_UNROLL for (int r = 0; r < RT; r++)                                                          \
          I8T_UNROLL for (int t = 0; t < 4; t++) fs[r][t] = _mm256_setzero_ps();                         \
        for (int64_t g = 0; g < ng; g++) {                                                    \
          __m256i acc[RT][4];                                                                 \
          I8T_UNROLL for (int r = 0; r < RT; r++)                                                        \
            I8T_UNROLL for (int t = 0; t < 4; t++) acc[r][t] = _mm256_setzero_si256();                   \
          I8T_UNROLL for (int k = 0; k < 8; k++) {                                                       \
            __m256i wv[RT];                                                                   \
            I8T_UNROLL for (int r = 0; r < RT; r++) wv[r] = _mm256_loadu_si256((const __m256i *)(wp + r * PW + g * 352 + 32 * k)); \
            I8T_UNROLL for (int t = 0; t < 4; t++) {                                                     \
              __m256i xv = _mm256_loadu_si256((const __m256i *)(xp + t * PX + g * 320 + 32 * k)); \
              I8T_UNROLL for (int r = 0; r < RT; r++) acc[r][t] = DPBUSD(acc[r][t], xv, wv[r]);          \
            }                                                                                 \
          }                                                                                   \
          I8T_UNROLL for (int r = 0; r < RT; r++) {                                                      \
            const uint8_t *wg = wp + r * PW + g * 352;                                        \
            __m256i corr = _mm256_loadu_si256((const __m256i *)(wg + 256));                   \
            __m256 dw = _mm256_loadu_ps((const float *)(wg + 288));                           \
            I8T_UNROLL for (int t = 0; t < 4; t++) {                                                     \
              const uint8_t *xg = xp + t * PX + g * 320;                                      \
              __m256 dxv = _mm256_loadu_ps((const float *)(xg + 256));                        \
              __m256 c = _mm256_mul_ps(_mm256_mul_ps(dw, dxv), _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][t], corr))); \
              if (has_m) {                                                                    \
                __m256 mw = _mm256_loadu_ps((const float *)(wg + 320));                       \
                __m256 sxf = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(xg + 288))); \
                c = _mm256_add_ps(c, _mm256_mul_ps(_mm256_mul_ps(mw, dxv), sxf));             \
              }                                                                               \
              if (g < nfull) fs[r][t] = _mm256_add_ps(fs[r][t], c);                           \
              else _mm256_storeu_ps(tail[r][t], c);                                           \
            }                                                                                 \
          }                                                                                   \
        }                                                                                     \
        I8T_UNROLL for (int r = 0; r < RT; r++)                                                          \
          I8T_UNROLL for (int t = 0; t < 4; t++) {                                                       \
            if (r0 + r >= R || t0 + t >= M) continue;                                         \
            float s = hsum8(fs[r][t]);                                                        \
            for (int64_t j = 0; j < ntail; j++) s = s + tail[r][t][j];                        \
            y[(t0 + t) * ys + (cols ? cols[r0 + r] : r0 + r)] = s;                             \
          }                                                                                   \
      }                                                                                       \
  }

/* ---- int8 activations with VNNI ----------------------------------------------------------
 * vpdpbusd multiplies unsigned by signed bytes and adds each group of four products into an
 * int32 lane, exactly (no int16 step, no saturation): it replaces maddubs + madd above. The
 * lanes then hold the same partial sums as the AVX2 kernels' (elements 4j..4j+3 of the block),
 * so every S_b, the float steps and the results are those of the kernels above, bit for bit.
 * Two encodings of the same instruction: AVX512-VNNI with AVX512VL on 256-bit registers (Ice
 * Lake and later Xeons, Zen 4) and AVX-VNNI (Alder Lake and later cores without AVX-512);
 * dispatch.c checks cpuid for each. */
#define DEFINE_I8_VNNI(SFX, ATTR, DPBUSD)                                                       \
  ATTR static inline __m256i i8_sums_q8_0_##SFX(const uint8_t *p, const int8_t *qx) {          \
    __m256i w = _mm256_loadu_si256((const __m256i *)(p + 2));                                 \
    __m256i x = _mm256_loadu_si256((const __m256i *)qx);                                      \
    return DPBUSD(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));        \
  }                                                                                           \
  ATTR static inline __m256i i8_sums_q4_##SFX(const uint8_t *qs, const int8_t *qx) {            \
    __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);                 \
    __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4)); \
    return DPBUSD(_mm256_setzero_si256(), w, _mm256_loadu_si256((const __m256i *)qx));        \
  }                                                                                           \
  ATTR static inline void i8_pair_q8_0_##SFX(const uint8_t *p, const int8_t *x0, const int8_t *x1, __m256i *m0, \
                                             __m256i *m1) {                                   \
    __m256i w = _mm256_loadu_si256((const __m256i *)(p + 2)), a = _mm256_abs_epi8(w);         \
    *m0 = DPBUSD(_mm256_setzero_si256(), a, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x0), w)); \
    *m1 = DPBUSD(_mm256_setzero_si256(), a, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x1), w)); \
  }                                                                                           \
  ATTR static inline void i8_pair_q4_##SFX(const uint8_t *qs, const int8_t *x0, const int8_t *x1, __m256i *m0, \
                                           __m256i *m1) {                                     \
    __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);                 \
    __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4)); \
    *m0 = DPBUSD(_mm256_setzero_si256(), w, _mm256_loadu_si256((const __m256i *)x0));         \
    *m1 = DPBUSD(_mm256_setzero_si256(), w, _mm256_loadu_si256((const __m256i *)x1));         \
  }                                                                                           \
  DEFINE_I8_DOT(ATTR, dot_q8_0_i8_##SFX, i8_sums_q8_0_##SFX, 34, 0, 0, I8_F8_Q8_0, i8_tail_q8_0) \
  DEFINE_I8_DOT(ATTR, dot_q4_0_i8_##SFX, i8_sums_q4_##SFX, 18, 2, 0, I8_F8_Q4_0, i8_tail_q4_0)   \
  DEFINE_I8_DOT(ATTR, dot_q4_1_i8_##SFX, i8_sums_q4_##SFX, 20, 4, 1, I8_F8_Q4_1, i8_tail_q4_1)   \
  DEFINE_I8_ROWS(ATTR, rows_q8_0_i8_##SFX, dot_q8_0_i8_##SFX, i8_pair_q8_0_##SFX, 34, 0, 0, I8_F8_Q8_0, i8_tail_q8_0) \
  DEFINE_I8_ROWS(ATTR, rows_q4_0_i8_##SFX, dot_q4_0_i8_##SFX, i8_pair_q4_##SFX, 18, 2, 0, I8_F8_Q4_0, i8_tail_q4_0) \
  DEFINE_I8_ROWS(ATTR, rows_q4_1_i8_##SFX, dot_q4_1_i8_##SFX, i8_pair_q4_##SFX, 20, 4, 1, I8_F8_Q4_1, i8_tail_q4_1) \
  void lrt_i8_kernels_##SFX(lrt_kernels *t) {                                                 \
    t->dot_q8_0_i8 = dot_q8_0_i8_##SFX;                                                       \
    t->dot_q4_0_i8 = dot_q4_0_i8_##SFX;                                                       \
    t->dot_q4_1_i8 = dot_q4_1_i8_##SFX;                                                       \
    t->rows_q8_0_i8 = rows_q8_0_i8_##SFX;                                                     \
    t->rows_q4_0_i8 = rows_q4_0_i8_##SFX;                                                     \
    t->rows_q4_1_i8 = rows_q4_1_i8_##SFX;                                                     \
    t->i8_pack_x = i8_pack_x_##SFX;                                                           \
    t->i8_pack_w = i8_pack_w_##SFX;                                                           \
    t->i8_tile = i8_tile_##SFX;                                                               \
  }

#if defined(__GNUC__) || defined(__clang__)
#define LRT_AVX512VNNI __attribute__((target("avx2,f16c,avx512f,avx512vl,avx512vnni")))
#define LRT_AVXVNNI __attribute__((target("avx2,f16c,avxvnni")))
#define LRT_DPBUSD_AVX(a, b, c) _mm256_dpbusd_avx_epi32(a, b, c)
#else
#define LRT_AVX512VNNI
#define LRT_AVXVNNI
#define LRT_DPBUSD_AVX(a, b, c) _mm256_dpbusd_avx_epi32(a, b, c)
#endif
DEFINE_I8_TILE(avx512vnni, LRT_AVX512VNNI, _mm256_dpbusd_epi32, 4)
DEFINE_I8_TILE(avxvnni, LRT_AVXVNNI, LRT_DPBUSD_AVX, 2)
DEFINE_I8_VNNI(avx512vnni, LRT_AVX512VNNI, _mm256_dpbusd_epi32)
DEFINE_I8_VNNI(avxvnni, LRT_AVXVNNI, LRT_DPBUSD_AVX)
#undef DEFINE_I8_TILE
#undef I8T_TRANSPOSE8
#undef I8T_UNROLL
#undef DEFINE_I8_VNNI
#undef DEFINE_I8_ROWS
#undef DEFINE_I8_DOT
#undef I8_SUMS8
#undef I8_PAIR8

const lrt_kernels lrt_kernels_avx2 = {"avx2", dot_f32_avx2, dot_f16_avx2, dot_bf16_avx2, sum_f32_avx2,
                                      rows_f32, rows_f16, rows_bf16, dot4_f32, dot4_f16, dot4_bf16,
                                      dequant_q8_0_avx2, dequant_q4_0_avx2, dequant_q4_1_avx2,
                                      dot4_q8_0_avx2, dot4_q4_0_avx2, dot4_q4_1_avx2,
                                      lrt_exp_f32_avx2, lrt_silu_mul_f32_avx2 /* avx2_math.c */,
                                      lrt_dequant_q4_k_avx2, lrt_dequant_q5_k_avx2, lrt_dequant_q6_k_avx2,
                                      lrt_dot4_q4_k_avx2, lrt_dot4_q5_k_avx2, lrt_dot4_q6_k_avx2,
                                      lrt_tile4_f32_avx2, widen_f16_avx2, widen_bf16_avx2,
                                      dot_q8_0_i8_avx2, dot_q4_0_i8_avx2, dot_q4_1_i8_avx2,
                                      rows_q8_0_i8_avx2, rows_q4_0_i8_avx2, rows_q4_1_i8_avx2,
                                      dequant_q5_0_avx2, dequant_q5_1_avx2, dot4_q5_0_avx2, dot4_q5_1_avx2,
                                       lrt_lincomb_f32_avx2, lrt_rank1_f32_avx2,
                                       lrt_log_f32_avx2 /* avx2_math.c */, lrt_lincomb_rows_f32_avx2,
                                       tile4_f32_pf_avx2, tile4_f16_pf_avx2, tile4_bf16_pf_avx2,
                                       NULL, NULL, NULL /* int8 prefill tile: VNNI paths only */};
#endif
