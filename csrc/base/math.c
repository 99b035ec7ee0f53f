/* math.c -- loomrt's own elementary functions. See lrt_math.h and docs/numerics.md.
 *
 * Every function here uses only IEEE-754 + - * / (each correctly rounded), comparisons and
 * bit manipulation, in a fixed order. With FLT_EVAL_METHOD == 0 and no FMA contraction
 * (-ffp-contract=off) they give the same bits on every platform. SIMD versions, when they
 * exist, must perform exactly the same operations per lane. */
#include <string.h>

#include "lrt_math.h"

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint64_t d2u(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static inline double u2d(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

/* ---- float exp ------------------------------------------------------------------------
 * x = k ln2 + r, |r| <= ln2/2, k = nearest integer to x log2(e) (ties to even, by the
 * 1.5*2^23 trick). ln2 is split so that k*LN2_HI is exact (Cody-Waite). e^r by a degree-7
 * Taylor polynomial (truncation error < 6e-9 relative) evaluated as 1 + (r + r^2 P(r)).
 * 2^k is applied as two exact power-of-two factors so subnormal results round once. */
#define EXPF_HI 88.72283172607421875f    /* largest x with finite e^x (0x42b17217)   */
#define EXPF_LO (-103.972084045410156f)  /* below this e^x rounds to 0 (0xc2cff1b5)   */

float lrt_expf(float x) {
  if (x != x) return x;
  if (x > EXPF_HI) return u2f(0x7f800000u);
  if (x < EXPF_LO) return 0.0f;
  const float log2e = 1.44269502162933349609375f;   /* 0x3fb8aa3b */
  const float ln2_hi = 0.693145751953125f;          /* 0x3f317200, 16 significant bits */
  const float ln2_lo = 1.42860676533018704503775e-06f; /* ln2 - ln2_hi */
  const float magic = 12582912.0f;                  /* 1.5 * 2^23 */
  float kf = (x * log2e + magic) - magic;
  float r = (x - kf * ln2_hi) - kf * ln2_lo;
  float p = 1.0f / 5040.0f;
  p = 1.0f / 720.0f + r * p;
  p = 1.0f / 120.0f + r * p;
  p = 1.0f / 24.0f + r * p;
  p = 1.0f / 6.0f + r * p;
  p = 0.5f + r * p;
  p = 1.0f + (r + (r * r) * p);
  int k = (int)kf;              /* -150 <= k <= 128 */
  int k1 = k / 2, k2 = k - k1;  /* both in [-75, 64]: 2^k1, 2^k2 are normal floats */
  float s1 = u2f((uint32_t)(k1 + 127) << 23);
  float s2 = u2f((uint32_t)(k2 + 127) << 23);
  return (p * s1) * s2;
}

/* tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)). Absolute error about 1 ulp of 1.0, which is
 * what matters where it is used (GELU adds it to 1). |x| < 2^-12: tanh(x) = x to within
 * 2^-24 relative. |x| > 9: +-1 (tanh(9) rounds to 1). */
float lrt_tanhf(float x) {
  if (x != x) return x;
  uint32_t sign = f2u(x) & 0x80000000u;
  float ax = u2f(f2u(x) & 0x7fffffffu);
  float t;
  if (ax < 0.000244140625f) return x;
  if (ax > 9.0f) t = 1.0f;
  else t = 1.0f - 2.0f / (lrt_expf(2.0f * ax) + 1.0f);
  return u2f(f2u(t) | sign);
}

float lrt_siluf(float x) { return x / (1.0f + lrt_expf(-x)); }

float lrt_gelu_tanhf(float x) {
  const float k0 = 0.79788456080286535588f; /* sqrt(2/pi) */
  float inner = k0 * (x + 0.044715f * ((x * x) * x));
  return (0.5f * x) * (1.0f + lrt_tanhf(inner));
}

/* ---- double functions for tables -------------------------------------------------------- */

static const double LN2_HI_D = 6.93147180369123816490e-01; /* 0x3fe62e42fee00000 */
static const double LN2_LO_D = 1.90821492927058770002e-10;
static const double ROUND_D = 6755399441055744.0;          /* 1.5 * 2^52 */

static double scale2(double x, int k) { /* x * 2^k for |k| <= 2000, two exact steps */
  int k1 = k / 2, k2 = k - k1;
  while (k1 > 1000 || k1 < -1000) { /* not reached for the ranges used */
    int s = k1 > 0 ? 1000 : -1000;
    x = x * u2d((uint64_t)(s + 1023) << 52);
    k1 -= s;
  }
  return (x * u2d((uint64_t)(k1 + 1023) << 52)) * u2d((uint64_t)(k2 + 1023) << 52);
}

double lrt_exp(double x) {
  if (x != x) return x;
  if (x > 709.782712893384) return u2d(0x7ff0000000000000ull);
  if (x < -745.2) return 0.0;
  double kd = (x * 1.4426950408889634 + ROUND_D) - ROUND_D;
  double r = (x - kd * LN2_HI_D) - kd * LN2_LO_D;
  /* Taylor to r^13: |r| <= 0.347, truncation < 5e-18 relative */
  double p = 1.0 / 6227020800.0;
  static const double inv_fact[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                    1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                                    1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                                    1.0 / 6.0,         0.5};
  for (int i = 0; i < 11; i++) p = inv_fact[i] + r * p;
  p = 1.0 + (r + (r * r) * p);
  return scale2(p, (int)kd);
}

double lrt_log(double x) {
  if (!(x > 0.0)) return u2d(0x7ff8000000000000ull); /* NaN for x <= 0 or NaN */
  if (x == u2d(0x7ff0000000000000ull)) return x;
  int e = 0;
  if (x < 2.2250738585072014e-308) { x = x * 18014398509481984.0; e = -54; } /* 2^54 */
  uint64_t u = d2u(x);
  e += (int)((u >> 52) & 0x7ff) - 1023;
  double m = u2d((u & 0x000fffffffffffffull) | 0x3ff0000000000000ull); /* [1, 2) */
  if (m > 1.4142135623730951) { m = m * 0.5; e += 1; }
  /* log(m) = 2 atanh(f), f = (m-1)/(m+1), |f| <= 0.1716 */
  double f = (m - 1.0) / (m + 1.0);
  double f2 = f * f;
  double s = 1.0 / 25.0;
  for (int k = 23; k >= 3; k -= 2) s = 1.0 / (double)k + f2 * s;
  double logm = 2.0 * f + (2.0 * f) * (f2 * s);
  double ed = (double)e;
  return (ed * LN2_HI_D + logm) + ed * LN2_LO_D;
}

double lrt_pow(double x, double y) { return lrt_exp(y * lrt_log(x)); }

/* sin and cos of |r| <= pi/4 by Taylor series in z = r^2 (to r^17 / r^18; truncation
 * < 1e-18), Horner from the highest term. Factorials up to 18! are exact doubles. */
static double sin_kernel(double r) {
  static const double c[] = {-1.0 / 1307674368000.0, 1.0 / 6227020800.0, -1.0 / 39916800.0,
                             1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0};
  double z = r * r, p = 1.0 / 355687428096000.0; /* 1/17! */
  for (int i = 0; i < 7; i++) p = c[i] + z * p;
  return r + (r * z) * p;
}

static double cos_kernel(double r) {
  static const double c[] = {1.0 / 20922789888000.0, -1.0 / 87178291200.0, 1.0 / 479001600.0,
                             -1.0 / 3628800.0, 1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5};
  double z = r * r, p = -1.0 / 6402373705728000.0; /* -1/18! */
  for (int i = 0; i < 8; i++) p = c[i] + z * p;
  return 1.0 + z * p;
}

void lrt_sincos(double x, double *s, double *c) {
  if (x != x || x - x != 0.0) { /* NaN or infinite */
    *s = *c = u2d(0x7ff8000000000000ull);
    return;
  }
  /* x = n pi/2 + r, pi/2 split in three parts of 33 bits each (n*part exact for n < 2^20) */
  const double pio2_1 = 1.57079632673412561417e+00;
  const double pio2_2 = 6.07710050630396597660e-11;
  const double pio2_3 = 2.02226624871116645580e-21;
  double nd = (x * 6.36619772367581382433e-01 + ROUND_D) - ROUND_D;
  double r = ((x - nd * pio2_1) - nd * pio2_2) - nd * pio2_3;
  int64_t n = (int64_t)nd;
  double sr = sin_kernel(r), cr = cos_kernel(r);
  switch ((int)(n & 3)) {
    case 0: *s = sr; *c = cr; break;
    case 1: *s = cr; *c = -sr; break;
    case 2: *s = -sr; *c = -cr; break;
    default: *s = -cr; *c = sr; break;
  }
}
