/* avx2_math.c -- the own elementwise math (csrc/math.c) for AVX2, eight lanes at a time:
 * exactly the operations of lrt_expf in its order (each rounded, no FMA), so every lane
 * gives the scalar function's bits. Used by the avx2 and avx512 kernel tables (kernels.h:
 * exp_f32, silu_mul_f32). Kept apart from avx2.c, which holds the dot-product kernels.
 * Compiled for AVX2 through function attributes only; chosen at run time (dispatch.c). */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "../base/lrt_math.h"
#include "kernels.h"

#if defined(__GNUC__) || defined(__clang__)
#define LRT_AVX2 __attribute__((target("avx2")))
#else
#define LRT_AVX2
#endif

/* Out-of-range and NaN lanes compute garbage that the final blends replace, as the scalar
 * function's early returns do (NaN: x itself; x > EXPF_HI: +inf; x < EXPF_LO: 0). */
LRT_AVX2 static inline __m256 exp8(__m256 x) {
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  __m256 kf = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269502162933349609375f)), magic), magic);
  __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(0.693145751953125f))),
                           _mm256_mul_ps(kf, _mm256_set1_ps(1.42860676533018704503775e-06f)));
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_add_ps(_mm256_set1_ps(1.0f / 720.0f), _mm256_mul_ps(r, p));
  p = _mm256_add_ps(_mm256_set1_ps(1.0f / 120.0f), _mm256_mul_ps(r, p));
  p = _mm256_add_ps(_mm256_set1_ps(1.0f / 24.0f), _mm256_mul_ps(r, p));
  p = _mm256_add_ps(_mm256_set1_ps(1.0f / 6.0f), _mm256_mul_ps(r, p));
  p = _mm256_add_ps(_mm256_set1_ps(0.5f), _mm256_mul_ps(r, p));
  p = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(r, _mm256_mul_ps(_mm256_mul_ps(r, r), p)));
  __m256i k = _mm256_cvttps_epi32(kf);                                              /* kf is an integer here */
  __m256i k1 = _mm256_srai_epi32(_mm256_sub_epi32(k, _mm256_srai_epi32(k, 31)), 1); /* k / 2, toward zero */
  __m256i k2 = _mm256_sub_epi32(k, k1);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, _mm256_set1_epi32(127)), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, _mm256_set1_epi32(127)), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-103.972084045410156f), _CMP_LT_OQ));
  y = _mm256_blendv_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)),
                       _mm256_cmp_ps(x, _mm256_set1_ps(88.72283172607421875f), _CMP_GT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

LRT_AVX2 void lrt_exp_f32_avx2(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  for (; i < n; i++) y[i] = lrt_expf(x[i]);
}

/* lrt_siluf(g) * u = (g / (1 + e^-g)) * u; -g by flipping the sign bit (exact) */
LRT_AVX2 void lrt_silu_mul_f32_avx2(const float *g, const float *u, float *y, int64_t n) {
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 gv = _mm256_loadu_ps(g + i);
    __m256 s = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_xor_ps(gv, sign))));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
  }
  for (; i < n; i++) y[i] = lrt_siluf(g[i]) * u[i];
}
#endif
