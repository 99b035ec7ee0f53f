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
/* lrt_log of four doubles that are floats widened (m in [1, 2), e its exponent, both exact):
 * the scalar function's operations from its mantissa reduction on, lane for lane. */
LRT_AVX2 static inline __m256d log4_reduced(__m256d m, __m256d e) {
  const __m256d one = _mm256_set1_pd(1.0);
  __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
  m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
  e = _mm256_add_pd(e, _mm256_and_pd(big, one));
  __m256d f = _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one));
  __m256d f2 = _mm256_mul_pd(f, f);
  __m256d s = _mm256_set1_pd(1.0 / 25.0);
  static const double inv[11] = {1.0 / 23.0, 1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0,
                                 1.0 / 11.0, 1.0 / 9.0,  1.0 / 7.0,  1.0 / 5.0,  1.0 / 3.0};
  for (int k = 0; k < 11; k++) s = _mm256_add_pd(_mm256_set1_pd(inv[k]), _mm256_mul_pd(f2, s));
  __m256d f2x = _mm256_mul_pd(_mm256_set1_pd(2.0), f);
  __m256d logm = _mm256_add_pd(f2x, _mm256_mul_pd(f2x, _mm256_mul_pd(f2, s)));
  __m256d hi = _mm256_add_pd(_mm256_mul_pd(e, _mm256_set1_pd(6.93147180369123816490e-01)), logm);
  return _mm256_add_pd(hi, _mm256_mul_pd(e, _mm256_set1_pd(1.90821492927058770002e-10)));
}

/* y = x > 0 ? (float)lrt_log((double)x) : -inf. A float widened to double is never
 * subnormal, so the scalar function's subnormal step is not taken; a subnormal float is
 * scaled by 2^24 (exact) to read its normalised mantissa and exponent from float bits. */
LRT_AVX2 void lrt_log_f32_avx2(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  const __m256 ninf = _mm256_castsi256_ps(_mm256_set1_epi32((int)0xff800000u));
  const __m256 pinf = _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000));
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 sub = _mm256_cmp_ps(v, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
    __m256 vs = _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(16777216.0f)), sub);
    __m256i u = _mm256_castps_si256(vs);
    __m256i e = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(u, 23), _mm256_set1_epi32(0xff)),
                                 _mm256_set1_epi32(127));
    e = _mm256_sub_epi32(e, _mm256_and_si256(_mm256_castps_si256(sub), _mm256_set1_epi32(24)));
    __m256 mf = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffff)),
                                                    _mm256_set1_epi32(0x3f800000)));
    __m256d lo = log4_reduced(_mm256_cvtps_pd(_mm256_castps256_ps128(mf)),
                              _mm256_cvtepi32_pd(_mm256_castsi256_si128(e)));
    __m256d hi = log4_reduced(_mm256_cvtps_pd(_mm256_extractf128_ps(mf, 1)),
                              _mm256_cvtepi32_pd(_mm256_extracti128_si256(e, 1)));
    __m256 r = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
    r = _mm256_blendv_ps(r, pinf, _mm256_cmp_ps(v, pinf, _CMP_EQ_OQ));
    r = _mm256_blendv_ps(r, ninf, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NGT_UQ)); /* <= 0 or NaN */
    _mm256_storeu_ps(y + i, r);
  }
  for (; i < n; i++) y[i] = x[i] > 0.0f ? (float)lrt_log((double)x[i]) : _mm256_cvtss_f32(ninf);
}
#endif
