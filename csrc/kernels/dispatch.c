/* dispatch.c -- the kernel path registry. At the first use the best path this CPU and OS
 * support is chosen, unless the environment variable LOOMRT_KERNELS names another runnable
 * path ("reference", "avx2", ...). lrt_kernels_select() switches paths at run time and
 * lrt_kernels_available() lists them (loomrt.h). Every path returns the same bits as the
 * reference (csrc/tests/test_kernels.c, tests/test_matrix.py). */
#include <stdlib.h>
#include "../base/lrt_atomic.h" /* C11 atomics, MSVC Interlocked or GNU builtins */
#include <string.h>

#include "../base/base.h"
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

/* AVX-512F path (avx512.c): AVX2 + F16C as above, AVX512F (cpuid 7.0 EBX bit 16), and the
 * OS saving the opmask and ZMM state (XCR0 bits 5-7) besides XMM/YMM. Test builds with
 * LRT_AVX512_EMULATE compile avx512.c as portable C, which runs anywhere. */
#if defined(LRT_AVX512_EMULATE)
static int cpu_has_avx512(void) { return 1; }
#elif defined(__x86_64__) || defined(_M_X64)
static int cpu_has_avx512(void) {
  if (!cpu_has_avx2()) return 0;
#if defined(_MSC_VER)
  int r[4];
  if ((_xgetbv(0) & 0xe6) != 0xe6) return 0;
  __cpuidex(r, 7, 0);
  return (r[1] >> 16) & 1;
#else
  unsigned a, b, c, d, lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  if ((lo & 0xe6) != 0xe6) return 0;
  __cpuid_count(7, 0, a, b, c, d);
  return (b >> 16) & 1;
#endif
}
#endif

/* The AVX2 table with the Q4_0 / Q4_1 decode kernels of avx512.c (256-bit vpermt2ps table
 * lookups, 13-29% faster per kernel on Zen 4): AVX-512F as above plus AVX-512VL (cpuid 7.0
 * EBX bit 31). In an LRT_AVX512_EMULATE build the lookups are portable C and the other
 * entries still the AVX2 ones (x86-64) or the reference's. */
#if defined(LRT_AVX512_EMULATE)
#if defined(__x86_64__) || defined(_M_X64)
static int cpu_has_avx512vl(void) { return cpu_has_avx2(); }
#else
static int cpu_has_avx512vl(void) { return 1; }
#endif
#elif defined(__x86_64__) || defined(_M_X64)
static int cpu_has_avx512vl(void) {
  if (!cpu_has_avx512()) return 0;
#if defined(_MSC_VER)
  int r[4];
  __cpuidex(r, 7, 0);
  return ((unsigned)r[1] >> 31) & 1;
#else
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  return (b >> 31) & 1;
#endif
}
#endif

/* VNNI for the int8-activation kernels (avx2.c): AVX512-VNNI (cpuid 7.0 ECX bit 11) with
 * AVX-512VL as above, or AVX-VNNI (cpuid 7.1 EAX bit 4) with AVX2. Real CPUs only (an
 * LRT_AVX512_EMULATE build has no VNNI paths). */
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(LRT_AVX512_EMULATE)
#define LRT_HAVE_VNNI_PATHS 1
static void cpuid_regs(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
  int q[4];
  __cpuidex(q, (int)leaf, (int)sub);
  for (int i = 0; i < 4; i++) r[i] = (unsigned)q[i];
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}
static int cpu_has_avx512vnni(void) {
  if (!cpu_has_avx512vl()) return 0;
  unsigned r[4];
  cpuid_regs(7, 0, r);
  return (r[2] >> 11) & 1;
}
static int cpu_has_avxvnni(void) {
  if (!cpu_has_avx2()) return 0;
  unsigned r[4];
  cpuid_regs(7, 0, r);
  if (r[0] < 1) return 0; /* no subleaf 1 */
  cpuid_regs(7, 1, r);
  return (r[0] >> 4) & 1;
}
#endif

/* Every kernel path compiled into this build, best first, the reference last. `supported`
 * says whether this CPU and OS can run it (cpuid + xgetbv on x86). A new path adds one line
 * here (and its table to kernels.h). */
typedef struct lrt_path {
  const lrt_kernels *table;
  int (*supported)(void);
  const lrt_kernels *base; /* entries `table` leaves NULL come from here (then the reference) */
  void (*patch)(lrt_kernels *t); /* optional: replaces entries of the completed table ...   */
  const char *name;              /* ... which then has this name                            */
} lrt_path;

static int always(void) { return 1; }

#if defined(__x86_64__) || defined(_M_X64)
#define LRT_AVX2_BASE (&lrt_kernels_avx2)
#else
#define LRT_AVX2_BASE NULL
#endif

static const lrt_path g_paths[] = {
#if defined(LRT_HAVE_VNNI_PATHS)
    /* avx2-avx512vl with the int8-activation kernels on vpdpbusd (same bits) */
    {&lrt_kernels_avx2_avx512vl, cpu_has_avx512vnni, LRT_AVX2_BASE, lrt_i8_kernels_avx512vnni, "avx2-avx512vnni"},
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(LRT_AVX512_EMULATE)
    /* the default where AVX-512VL exists: AVX2 except the Q4_0 / Q4_1 decode kernels */
    {&lrt_kernels_avx2_avx512vl, cpu_has_avx512vl, LRT_AVX2_BASE, NULL, NULL},
#endif
#if defined(LRT_HAVE_VNNI_PATHS)
    {&lrt_kernels_avx2, cpu_has_avxvnni, NULL, lrt_i8_kernels_avxvnni, "avx2-vnni"},
#endif
#if defined(__x86_64__) || defined(_M_X64)
    {&lrt_kernels_avx2, cpu_has_avx2, NULL, NULL, NULL},
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(LRT_AVX512_EMULATE)
    /* after avx2 on purpose: its 512-bit kernels were slower than AVX2 for the quantized
     * formats on the one AVX-512 CPU measured (Zen 4, 512-bit ops as two halves), so only
     * taken when asked for by name (LOOMRT_KERNELS=avx512, lrt_kernels_select) */
    {&lrt_kernels_avx512, cpu_has_avx512, NULL, NULL, NULL},
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
    {&lrt_kernels_neon, always, NULL, NULL, NULL}, /* NEON is part of the aarch64 baseline */
#endif
#if defined(__wasm_simd128__)
    {&lrt_kernels_wasm_simd128, always, NULL, NULL, NULL}, /* compiled for SIMD128: the engine validated it */
#endif
    {&lrt_kernels_ref, always, NULL, NULL, NULL},
};
#define LRT_N_PATHS ((int)(sizeof g_paths / sizeof g_paths[0]))

/* A fast path may leave entries NULL: they are taken from its base table if it names one,
 * else from the reference, so a path implements only what it speeds up. Every field of lrt_kernels is listed here. */
static lrt_kernels g_tables[LRT_N_PATHS]; /* completed copies of g_paths, filled once */
static int g_runnable[LRT_N_PATHS];       /* supported() of each, evaluated once */

static void complete(const lrt_kernels *k, const lrt_kernels *base, lrt_kernels *out) {
  lrt_kernels t = *k;
#define LRT_FILL(f) if (!t.f) t.f = (base && base->f) ? base->f : lrt_kernels_ref.f
  LRT_FILL(dot_f32); LRT_FILL(dot_f16); LRT_FILL(dot_bf16); LRT_FILL(sum_f32);
  LRT_FILL(rows_f32); LRT_FILL(rows_f16); LRT_FILL(rows_bf16);
  LRT_FILL(dot4_f32); LRT_FILL(dot4_f16); LRT_FILL(dot4_bf16);
  LRT_FILL(dequant_q8_0); LRT_FILL(dequant_q4_0); LRT_FILL(dequant_q4_1);
  LRT_FILL(dot4_q8_0); LRT_FILL(dot4_q4_0); LRT_FILL(dot4_q4_1);
  LRT_FILL(exp_f32); LRT_FILL(silu_mul_f32);
  LRT_FILL(dequant_q4_k); LRT_FILL(dequant_q5_k); LRT_FILL(dequant_q6_k);
  LRT_FILL(dot4_q4_k); LRT_FILL(dot4_q5_k); LRT_FILL(dot4_q6_k);
  LRT_FILL(dot_q8_0_i8); LRT_FILL(dot_q4_0_i8); LRT_FILL(dot_q4_1_i8);
  LRT_FILL(rows_q8_0_i8); LRT_FILL(rows_q4_0_i8); LRT_FILL(rows_q4_1_i8);
  LRT_FILL(dequant_q5_0); LRT_FILL(dequant_q5_1); LRT_FILL(dot4_q5_0); LRT_FILL(dot4_q5_1);
  LRT_FILL(tile4_f32); LRT_FILL(widen_f16); LRT_FILL(widen_bf16);
  LRT_FILL(lincomb_f32); LRT_FILL(rank1_f32); LRT_FILL(log_f32); LRT_FILL(lincomb_rows_f32);
  LRT_FILL(tile4_f32_pf); LRT_FILL(tile4_f16_pf); LRT_FILL(tile4_bf16_pf);
  /* not filled on purpose: i8_pack_x, i8_pack_w, i8_tile (optional; NULL = rows_*_i8) */
#undef LRT_FILL
  *out = t;
}

/* Index of the runnable path called name[0..len), or -1. */
static int find_path(const char *name, size_t len) {
  for (int i = 0; i < LRT_N_PATHS; i++) {
    const char *n = g_tables[i].name;
    if (g_runnable[i] && strlen(n) == len && memcmp(n, name, len) == 0) return i;
  }
  return -1;
}

/* The first runnable path (the best one; the reference is always runnable). */
static int best_path(void) {
  for (int i = 0; i < LRT_N_PATHS; i++)
    if (g_runnable[i]) return i;
  return LRT_N_PATHS - 1;
}

/* Initialised once: the first caller fills the tables, concurrent first callers wait for
 * it. After that the table in use is one atomic pointer, switched by lrt_kernels_select;
 * the tables themselves never change, so a switch while another thread computes is safe
 * (and gives the same bits: every path equals the reference). */
static lrt_atomic_int g_state; /* 0 = not initialised, 1 = being initialised, 2 = ready */
static lrt_atomic_ptr g_current; /* const lrt_kernels * */

static void init_once(void) {
  if (lrt_atomic_load_int(&g_state) == 2) return;
  int expected = 0;
  if (lrt_atomic_cas_int(&g_state, &expected, 1)) {
    for (int i = 0; i < LRT_N_PATHS; i++) {
      complete(g_paths[i].table, g_paths[i].base, &g_tables[i]);
      if (g_paths[i].patch) {
        g_paths[i].patch(&g_tables[i]);
        g_tables[i].name = g_paths[i].name;
      }
      g_runnable[i] = g_paths[i].supported();
    }
    /* LOOMRT_KERNELS=<name> forces a path when it is runnable here; anything else (unset,
     * "auto", a path this CPU cannot run) means the best path. */
    const char *env = getenv("LOOMRT_KERNELS");
    int idx = env ? find_path(env, strlen(env)) : -1;
    if (idx < 0) idx = best_path();
    lrt_atomic_store_ptr(&g_current, (void *)&g_tables[idx]);
    lrt_atomic_store_int(&g_state, 2);
  } else {
    while (lrt_atomic_load_int(&g_state) != 2) {
    }
  }
}

const lrt_kernels *lrt_kernels_get(void) {
  init_once();
  return (const lrt_kernels *)lrt_atomic_load_ptr(&g_current);
}

int32_t lrt_kernels_available(int32_t index, const char **name, size_t *name_len) {
  init_once();
  if (!name || !name_len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "name and name_len must not be NULL");
  *name = NULL;
  *name_len = 0;
  int32_t k = 0;
  for (int i = 0; i < LRT_N_PATHS; i++) {
    if (!g_runnable[i]) continue;
    if (k++ == index) {
      *name = g_tables[i].name;
      *name_len = strlen(g_tables[i].name);
      return LRT_OK;
    }
  }
  return lrt_err(LRT_ERR_NOT_FOUND, "there is no kernel path number %d (this machine runs %d)",
                 (int)index, (int)k);
}

int32_t lrt_kernels_select(const char *name, size_t len) {
  init_once();
  if (!name && len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "name is NULL");
  int idx;
  if (len == 0 || (len == 4 && memcmp(name, "auto", 4) == 0)) {
    idx = best_path();
  } else {
    idx = find_path(name, len);
    if (idx < 0) {
      char avail[256] = "";
      size_t off = 0;
      for (int i = 0; i < LRT_N_PATHS; i++) {
        if (!g_runnable[i]) continue;
        size_t n = strlen(g_tables[i].name);
        if (off + n + 3 >= sizeof avail) break;
        if (off) { memcpy(avail + off, ", ", 2); off += 2; }
        memcpy(avail + off, g_tables[i].name, n);
        off += n;
        avail[off] = 0;
      }
      int known = 0;
      for (int i = 0; i < LRT_N_PATHS; i++)
        if (strlen(g_tables[i].name) == len && memcmp(g_tables[i].name, name, len) == 0) known = 1;
      return lrt_err(known ? LRT_ERR_UNSUPPORTED : LRT_ERR_NOT_FOUND,
                     "kernel path \"%.*s\" %s; this machine runs: %s, or \"auto\"",
                     (int)(len > 64 ? 64 : len), name,
                     known ? "is compiled in but this CPU/OS cannot run it" : "does not exist in this build", avail);
    }
  }
  lrt_atomic_store_ptr(&g_current, (void *)&g_tables[idx]);
  return LRT_OK;
}
