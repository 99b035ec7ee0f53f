/* convert.c -- exact number format conversions and dtype names. */
#include <string.h>

#include "internal.h"

/* IEEE half -> float, exact for every input (subnormals normalised by shifting). */
float lrt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13); /* inf / NaN (payload kept, quieted as F16C does) */
    if (man) bits |= 0x00400000u;
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else { /* subnormal half: value = man * 2^-24 */
    uint32_t e = 113;
    while (!(man & 0x400u)) { man <<= 1; e--; }
    bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

const char *lrt_dtype_name(int dtype) {
  switch (dtype) {
    case LRT_DT_F32: return "f32";
    case LRT_DT_F16: return "f16";
    case LRT_DT_BF16: return "bf16";
    case LRT_DT_Q8_0: return "q8_0";
    case LRT_DT_Q4_0: return "q4_0";
    case LRT_DT_Q4_1: return "q4_1";
    case LRT_DT_Q4_K: return "q4_k";
    case LRT_DT_Q5_K: return "q5_k";
    case LRT_DT_Q6_K: return "q6_k";
    default: return "other";
  }
}
