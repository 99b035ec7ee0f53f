/* dispatch.c -- choose the kernel table once: LOOMRT_KERNELS=reference forces the scalar
 * reference; otherwise the best path this CPU and OS support (only the reference exists in
 * numerics version 1; SIMD paths are added beside it and must match it bit for bit). */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const lrt_kernels *choose(void) {
  const char *env = getenv("LOOMRT_KERNELS");
  if (env && strcmp(env, "reference") == 0) return &lrt_kernels_ref;
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
