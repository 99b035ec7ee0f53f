/* test_math_exhaustive.c -- loomrt's own float transcendentals (csrc/math.c) over all 2^32
 * float inputs.
 *
 * 1. Accuracy: lrt_expf, lrt_tanhf, lrt_siluf and lrt_gelu_tanhf against the same function
 *    computed in double with the C library (glibc's double exp/tanh are accurate to < 1 ulp
 *    of double, i.e. ~2^-29 float ulp: exact enough to measure float ulps). Reports the
 *    maximum error in units of the last place of the correctly rounded float result, the input
 *    where it happens, and the maximum absolute error; fails when a documented bound
 *    (docs/numerics.md) is exceeded or a special value (NaN, +-inf, +-0, overflow) is wrong.
 * 2. Identity (built with -DLRT_TEST_VECTOR_MATH when kernels.h has the elementwise math
 *    entries): for every kernel path this machine runs, the vector exp_f32, silu_mul_f32 and log_f32
 *    return the same bits as the scalar reference for every input (NaNs: any NaN).
 *
 *   test_math_exhaustive [threads] [stride]     stride > 1 checks every stride-th input only
 *
 * Prints one line per function and path; exit status 0 when all checks pass. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/loomrt.h"
#include "../kernels/kernels.h"
#include "../base/lrt_math.h"

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ---- double references ---------------------------------------------------------------- */

static double ref_exp(float x) { return exp((double)x); }
static double ref_tanh(float x) { return tanh((double)x); }
static double ref_silu(float x) { return (double)x / (1.0 + exp(-(double)x)); }
static double ref_gelu(float x) {
  double d = (double)x;
  return 0.5 * d * (1.0 + tanh(0.79788456080286535588 * (d + 0.044715 * d * d * d)));
}

/* error of y in ulps of the float nearest to r (ulp of the binade of |r|, subnormal ulp 2^-149) */
static double ulp_error(float y, double r) {
  double ar = fabs(r);
  double ulp;
  if (ar < 1.1754943508222875e-38) ulp = ldexp(1.0, -149);
  else {
    int e;
    frexp(ar, &e); /* ar = m 2^e, m in [0.5, 1) */
    ulp = ldexp(1.0, e - 24);
  }
  return fabs((double)y - r) / ulp;
}

/* Each function has a domain where its value is computed by the double reference; outside
 * it the float result is fixed by simple analysis and checked exactly instead (so that the
 * exhaustive run spends libm time only where a result can be inexact):
 *   tiny |x| (< 2^-26): e^x rounds to 1, silu(x) and gelu(x) to x/2 (their next terms are
 *   below half an ulp), tanh(x) = x for |x| < 2^-12 (loomrt's definition; the error is below
 *   2^-24 relative);  saturation: e^x overflows above 88.72 and underflows to 0 below -103.97,
 *   tanh = +-1 for |x| > 9, silu(x) = x for x >= 32 and -0 for x <= -104 (|true value| < 2^-142),
 *   gelu(x) = x for x >= 16 and -0 for x <= -16 (|true value| < 2^-150, below the subnormals).
 *   silu(-inf) and gelu(-inf) are NaN (-inf / inf, -inf * 0), as in x * sigmoid(x). */
static int dom_exp(float x) { float a = fabsf(x); return a >= 0x1p-26f && x <= 104.0f && x >= -104.0f; }
static int dom_tanh(float x) { float a = fabsf(x); return a >= 0x1p-12f && a <= 9.5f; }
static int dom_silu(float x) { float a = fabsf(x); return a >= 0x1p-26f && x < 32.0f && x > -104.0f; }
static int dom_gelu(float x) { float a = fabsf(x); return a >= 0x1p-26f && a < 16.0f; }

static int out_exp(float x, float y) {
  if (fabsf(x) < 0x1p-26f) return y == 1.0f;
  return x > 0 ? f2u(y) == 0x7f800000u : f2u(y) == 0u;
}
static int out_tanh(float x, float y) {
  if (fabsf(x) < 0x1p-12f) return f2u(y) == f2u(x);
  return y == (x > 0 ? 1.0f : -1.0f);
}
/* silu(-inf) and gelu(-inf) are NaN: -inf / inf and -inf * 0 (as in PyTorch's x * sigmoid(x)) */
static int out_silu(float x, float y) {
  if (isinf(x) && x < 0) return y != y;
  if (fabsf(x) < 0x1p-26f) return f2u(y) == f2u(x * 0.5f);
  return x > 0 ? f2u(y) == f2u(x) : f2u(y) == 0x80000000u;
}
static int out_gelu(float x, float y) {
  if (isinf(x) && x < 0) return y != y;
  if (fabsf(x) < 0x1p-26f) return f2u(y) == f2u(x * 0.5f);
  return x > 0 ? f2u(y) == f2u(x) : (y == 0.0f);
}

typedef struct fn_case {
  const char *name;
  float (*f)(float);
  double (*ref)(float);
  int (*domain)(float);
  int (*outside)(float x, float y);
  double max_ulp_bound;  /* documented bound in ulps (checked where |ref| >= ulp_floor) */
  double ulp_floor;      /* ulp errors count where |reference| >= this */
  double max_abs_bound;  /* documented absolute error bound */
} fn_case;

static const fn_case CASES[] = {
    {"lrt_expf", lrt_expf, ref_exp, dom_exp, out_exp, 2.0, 0.0, INFINITY},
    {"lrt_tanhf", lrt_tanhf, ref_tanh, dom_tanh, out_tanh, INFINITY, 0.0, 0x1p-23},
    {"lrt_siluf", lrt_siluf, ref_silu, dom_silu, out_silu, 3.0, 0x1p-100, 0x1p-19},
    {"lrt_gelu_tanhf", lrt_gelu_tanhf, ref_gelu, dom_gelu, out_gelu, INFINITY, 0.0, 0x1p-20},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

typedef struct result {
  double max_ulp, max_abs;
  uint32_t ulp_at, abs_at;
  uint64_t special_bad, checked, referenced;
  uint32_t special_at;
} result;

typedef struct job {
  int fn, tid, nthreads;
  uint64_t stride;
  result r;
} job;

static void *acc_worker(void *arg) {
  job *j = (job *)arg;
  const fn_case *c = &CASES[j->fn];
  result r;
  memset(&r, 0, sizeof r);
  uint64_t total = (1ull << 32) / j->stride;
  uint64_t per = (total + (uint64_t)j->nthreads - 1) / (uint64_t)j->nthreads;
  uint64_t lo = per * (uint64_t)j->tid, hi = lo + per;
  if (hi > total) hi = total;
  for (uint64_t k = lo; k < hi; k++) {
    uint32_t u = (uint32_t)(k * j->stride);
    float x = u2f(u), y = c->f(x);
    r.checked++;
    if (x != x) {
      if (y == y) { r.special_bad++; r.special_at = u; }
      continue;
    }
    if (!c->domain(x)) {
      if (!c->outside(x, y)) { r.special_bad++; r.special_at = u; }
      continue;
    }
    double ref = c->ref(x);
    r.referenced++;
    if (fabs(ref) > 3.4028235677973366e38) { /* overflows float: must be inf of the right sign */
      if (!(isinf(y) && (y > 0) == (ref > 0))) { r.special_bad++; r.special_at = u; }
      continue;
    }
    if (isnan(y) || isinf(y)) { r.special_bad++; r.special_at = u; continue; }
    double ae = fabs((double)y - ref);
    if (ae > r.max_abs) { r.max_abs = ae; r.abs_at = u; }
    if (fabs(ref) >= c->ulp_floor) {
      double ue = ulp_error(y, ref);
      if (ue > r.max_ulp) { r.max_ulp = ue; r.ulp_at = u; }
    }
  }
  j->r = r;
  return NULL;
}

static int run_accuracy(int nthreads, uint64_t stride) {
  int fails = 0;
  for (int f = 0; f < N_CASES; f++) {
    job jobs[64];
    pthread_t th[64];
    for (int t = 0; t < nthreads; t++) {
      jobs[t].fn = f; jobs[t].tid = t; jobs[t].nthreads = nthreads; jobs[t].stride = stride;
      pthread_create(&th[t], NULL, acc_worker, &jobs[t]);
    }
    result tot;
    memset(&tot, 0, sizeof tot);
    for (int t = 0; t < nthreads; t++) {
      pthread_join(th[t], NULL);
      result *r = &jobs[t].r;
      if (r->max_ulp > tot.max_ulp) { tot.max_ulp = r->max_ulp; tot.ulp_at = r->ulp_at; }
      if (r->max_abs > tot.max_abs) { tot.max_abs = r->max_abs; tot.abs_at = r->abs_at; }
      tot.special_bad += r->special_bad;
      if (r->special_bad) tot.special_at = r->special_at;
      tot.checked += r->checked;
      tot.referenced += r->referenced;
    }
    const fn_case *c = &CASES[f];
    int ok = tot.special_bad == 0 && tot.max_ulp <= c->max_ulp_bound && tot.max_abs <= c->max_abs_bound;
    printf("accuracy %s inputs=%llu referenced=%llu max_ulp=%.4f at=0x%08x (x=%.9g) max_abs=%.4g at=0x%08x (x=%.9g) special_errors=%llu %s\n",
           c->name, (unsigned long long)tot.checked, (unsigned long long)tot.referenced, tot.max_ulp, tot.ulp_at, (double)u2f(tot.ulp_at), tot.max_abs,
           tot.abs_at, (double)u2f(tot.abs_at), (unsigned long long)tot.special_bad, ok ? "ok" : "FAIL");
    if (tot.special_bad) printf("  first special-value error at 0x%08x\n", tot.special_at);
    fails += !ok;
  }
  return fails;
}

/* ---- vector paths == scalar, bit for bit ----------------------------------------------------- */
#if defined(LRT_TEST_VECTOR_MATH)
#define BLOCK 4096

typedef struct vjob {
  const lrt_kernels *k, *ref;
  int tid, nthreads;
  uint64_t stride, bad_exp, bad_silu, bad_log;
  uint32_t bad_exp_at, bad_silu_at, bad_log_at;
} vjob;

static int same(float a, float b) { return (isnan(a) && isnan(b)) || f2u(a) == f2u(b); }

static void *vec_worker(void *arg) {
  vjob *j = (vjob *)arg;
  float x[BLOCK], u[BLOCK], y[BLOCK], z[BLOCK];
  uint64_t total = (1ull << 32) / j->stride, blocks = (total + BLOCK - 1) / BLOCK;
  for (uint64_t b = (uint64_t)j->tid; b < blocks; b += (uint64_t)j->nthreads) {
    int64_t n = 0;
    for (uint64_t k = b * BLOCK; k < total && n < BLOCK; k++, n++) {
      x[n] = u2f((uint32_t)(k * j->stride));
      u[n] = u2f(0x3f800000u ^ ((uint32_t)k & 0x807fffffu)); /* varied multipliers around +-1 */
    }
    /* odd lengths too, so every tail rule runs: split the block as n-3 then 3 */
    j->k->exp_f32(x, y, n - 3);
    j->k->exp_f32(x + n - 3, y + n - 3, 3);
#if defined(LRT_TEST_PERTURB) /* tests/test_own_math.py: show that a wrong lane is caught */
    if (b == 0) y[0] = 0.0f;
#endif
    j->ref->exp_f32(x, z, n);
    for (int64_t i = 0; i < n; i++)
      if (!same(y[i], z[i])) {
        j->bad_exp++;
        j->bad_exp_at = f2u(x[i]);
      }
    j->k->silu_mul_f32(x, u, y, n);
    j->ref->silu_mul_f32(x, u, z, n);
    for (int64_t i = 0; i < n; i++)
      if (!same(y[i], z[i])) {
        j->bad_silu++;
        j->bad_silu_at = f2u(x[i]);
      }
    j->k->log_f32(x, y, n - 5); /* the weave's log of probabilities: every float input */
    j->k->log_f32(x + n - 5, y + n - 5, 5);
    j->ref->log_f32(x, z, n);
    for (int64_t i = 0; i < n; i++)
      if (!same(y[i], z[i])) {
        j->bad_log++;
        j->bad_log_at = f2u(x[i]);
      }
  }
  return NULL;
}

static int run_vectors(int nthreads, uint64_t stride) {
  int fails = 0;
  const char *name;
  size_t len;
  const lrt_kernels *ref = &lrt_kernels_ref;
  for (int32_t p = 0; lrt_kernels_available(p, &name, &len) == LRT_OK; p++) {
    if (lrt_kernels_select(name, len) != LRT_OK) return 1;
    const lrt_kernels *k = lrt_kernels_get();
    if (k->exp_f32 == ref->exp_f32 && k->silu_mul_f32 == ref->silu_mul_f32 && k->log_f32 == ref->log_f32) {
      printf("vector %s: no vector exp_f32 / silu_mul_f32 (uses the scalar reference)\n", name);
      continue;
    }
    vjob jobs[64];
    pthread_t th[64];
    for (int t = 0; t < nthreads; t++) {
      memset(&jobs[t], 0, sizeof jobs[t]);
      jobs[t].k = k; jobs[t].ref = ref; jobs[t].tid = t; jobs[t].nthreads = nthreads; jobs[t].stride = stride;
      pthread_create(&th[t], NULL, vec_worker, &jobs[t]);
    }
    uint64_t be = 0, bs = 0, bl = 0;
    uint32_t ae = 0, as = 0, al = 0;
    for (int t = 0; t < nthreads; t++) {
      pthread_join(th[t], NULL);
      be += jobs[t].bad_exp; bs += jobs[t].bad_silu;
      if (jobs[t].bad_exp) ae = jobs[t].bad_exp_at;
      if (jobs[t].bad_silu) as = jobs[t].bad_silu_at;
      bl += jobs[t].bad_log;
      if (jobs[t].bad_log) al = jobs[t].bad_log_at;
    }
    printf("vector %s exp_f32 inputs=%llu mismatches=%llu%s\n", name, (unsigned long long)((1ull << 32) / stride),
           (unsigned long long)be, be ? "" : " ok");
    printf("vector %s silu_mul_f32 inputs=%llu mismatches=%llu%s\n", name, (unsigned long long)((1ull << 32) / stride),
           (unsigned long long)bs, bs ? "" : " ok");
    printf("vector %s log_f32 inputs=%llu mismatches=%llu%s\n", name, (unsigned long long)((1ull << 32) / stride),
           (unsigned long long)bl, bl ? "" : " ok");
    if (be) printf("  first exp mismatch at 0x%08x\n", ae);
    if (bs) printf("  first silu mismatch at 0x%08x\n", as);
    if (bl) printf("  first log mismatch at 0x%08x\n", al);
    fails += (be != 0) + (bs != 0) + (bl != 0);
  }
  lrt_kernels_select("auto", 4);
  return fails;
}
#endif

int main(int argc, char **argv) {
  int nthreads = argc > 1 ? atoi(argv[1]) : 2;
  uint64_t stride = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
  if (nthreads < 1 || nthreads > 64 || stride < 1) return 2;
  int fails = 0;
#if defined(LRT_TEST_VECTOR_MATH)
  fails += run_vectors(nthreads, stride);
#else
  printf("vector: this build's kernel table has no elementwise math entries\n");
#endif
  fails += run_accuracy(nthreads, stride);
  printf(fails ? "FAILED\n" : "all ok\n");
  return fails ? 1 : 0;
}
