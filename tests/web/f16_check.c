/* f16_check.c -- the inline F16 scale widening of csrc/kernels/wasm_simd.c (f16_le) gives the
 * bits of lrt_f16_to_f32 for all 65536 halves, and so does the Q4_1 kernel's vector widening of
 * block scales (q4_1_scales: f16_finite_x4, inf / NaN groups through f16_le) with every half
 * as d and as m, in groups of four blocks with and without an inf / NaN. Compiled for
 * wasm32-wasi with SIMD128 and run under wasmtime by tests/test_web.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/wasm_simd.c"

int main(void) {
  unsigned bad = 0;
  for (unsigned h = 0; h < 65536; h++) {
    uint8_t le[2] = {(uint8_t)(h & 0xff), (uint8_t)(h >> 8)};
    float a = f16_le(le), r = lrt_f16_to_f32((uint16_t)h);
    if (memcmp(&a, &r, 4) != 0) {
      if (bad++ < 5) printf("half 0x%04x: f16_le %a, lrt_f16_to_f32 %a\n", h, (double)a, (double)r);
    }
  }
  /* 65536 blocks: d = h, m = the half 12345 places on; blocks b and b + 1 of each group swapped
   * for half of the groups so that specials meet finite halves in every lane */
  enum { NB = 65536 };
  uint8_t *row = calloc(NB, 20);
  float *sc = malloc(2 * NB * sizeof(float));
  if (!row || !sc) return 2;
  for (unsigned b = 0; b < NB; b++) {
    unsigned d = ((b / 4) % 2 && b % 4 < 2) ? (b ^ 1u) : b, m = (d + 12345u) & 0xffffu;
    row[20 * b] = (uint8_t)(d & 0xff), row[20 * b + 1] = (uint8_t)(d >> 8);
    row[20 * b + 2] = (uint8_t)(m & 0xff), row[20 * b + 3] = (uint8_t)(m >> 8);
  }
  unsigned bad_sc = 0;
  for (int64_t nb = NB - 3; nb <= NB; nb += 3) { /* with and without a tail of blocks */
    q4_1_scales(row, nb, sc);
    for (int64_t k = 0; k < 2 * nb; k++) {
      float r = lrt_f16_to_f32(lrt_rd_u16le(row + 20 * (k / 2) + 2 * (k % 2)));
      if (memcmp(&sc[k], &r, 4) != 0 && bad_sc++ < 5)
        printf("q4_1_scales block %lld %s: %a, lrt_f16_to_f32 %a\n", (long long)(k / 2), k % 2 ? "m" : "d",
               (double)sc[k], (double)r);
    }
  }
  free(row);
  free(sc);
  printf("checked 65536 halves, %u differ; q4_1_scales: %u differ\n", bad, bad_sc);
  return bad != 0 || bad_sc != 0;
}
