/* dispatch.c -- choose the kernel table once: LOOMRT_KERNELS=reference (or =avx2, to
 * insist) selects a path; otherwise the best path this CPU and OS support. Every path
 * returns the same bits as the reference (tests/test_kernels.py). */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <immintrin.h>
#include <intrin.h>
static int cpu_has_avx2(void) {
  int r[4];
  __cpuid(r, 0);
  if (r[0] < 7) return 0;
  __cpuid(r, 1);
  int f16c = (r[2] >> 29) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
  if (!f16c || !osxsave || !avx) return 0;
  if ((_xgetbv(0) & 6) != 6) return 0; /* OS saves XMM and YMM state */
  __cpuidex(r, 7, 0);
  return (r[1] >> 5) & 1;
}
#else
#include <cpuid.h>
static int cpu_has_avx2(void) {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, 0) < 7) return 0;
  __cpuid(1, a, b, c, d);
  if (!((c >> 29) & 1) || !((c >> 27) & 1) || !((c >> 28) & 1)) return 0; /* F16C, OSXSAVE, AVX */
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  if ((lo & 6) != 6) return 0;
  __cpuid_count(7, 0, a, b, c, d);
  return (b >> 5) & 1;
}
#endif
#endif

static const lrt_kernels *choose(void) {
  const char *env = getenv("LOOMRT_KERNELS");
  if (env && strcmp(env, "reference") == 0) return &lrt_kernels_ref;
#if defined(__x86_64__) || defined(_M_X64)
  if (cpu_has_avx2()) return &lrt_kernels_avx2;
#endif
  return &lrt_kernels_ref;
}

/* The choice is a pure function of the environment and the CPU, so a benign race (two
 * threads computing the same pointer) is harmless; the pointer store is one word. */
static const lrt_kernels *volatile g_kernels;

const lrt_kernels *lrt_kernels_get(void) {
  const lrt_kernels *k = g_kernels;
  if (!k) {
    k = choose();
    g_kernels = k;
  }
  return k;
}
