/* dispatch.c -- choose the kernel table once: LOOMRT_KERNELS=reference (or =avx2, to
 * insist) selects a path; otherwise the best path this CPU and OS support. Every path
 * returns the same bits as the reference (tests/test_kernels.py). */
#include <stdlib.h>
#include <stdatomic.h>
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

/* A fast path may leave entries NULL: they are taken from the reference, so a path
 * implements only what it speeds up. Every field of lrt_kernels is listed here. */
static lrt_kernels g_table;

static void complete(const lrt_kernels *k) {
  lrt_kernels t = *k;
#define LRT_FILL(f) if (!t.f) t.f = lrt_kernels_ref.f
  LRT_FILL(dot_f32); LRT_FILL(dot_f16); LRT_FILL(dot_bf16); LRT_FILL(sum_f32);
  LRT_FILL(rows_f32); LRT_FILL(rows_f16); LRT_FILL(rows_bf16);
  LRT_FILL(dot4_f32); LRT_FILL(dot4_f16); LRT_FILL(dot4_bf16);
  LRT_FILL(dequant_q8_0); LRT_FILL(dequant_q4_0); LRT_FILL(dequant_q4_1);
#undef LRT_FILL
  g_table = t;
}

/* Chosen once: the first caller fills the table, concurrent first callers wait for it. */
static atomic_int g_state; /* 0 = not chosen, 1 = being chosen, 2 = ready */

const lrt_kernels *lrt_kernels_get(void) {
  if (atomic_load_explicit(&g_state, memory_order_acquire) == 2) return &g_table;
  int expected = 0;
  if (atomic_compare_exchange_strong(&g_state, &expected, 1)) {
    complete(choose());
    atomic_store_explicit(&g_state, 2, memory_order_release);
  } else {
    while (atomic_load_explicit(&g_state, memory_order_acquire) != 2) {
    }
  }
  return &g_table;
}
