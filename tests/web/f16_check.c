/* f16_check.c -- the inline F16 scale widening of csrc/kernels/wasm_simd.c (f16_le) gives the
 * bits of lrt_f16_to_f32 for all 65536 halves. Compiled for wasm32-wasi with SIMD128 and run
 * under wasmtime by tests/test_web.py. */
#include <stdio.h>
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
  printf("checked 65536 halves, %u differ\n", bad);
  return bad != 0;
}
