/* convert.c -- exact number format conversions and dtype names. */
#include <string.h>

#include "base.h"

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
    case LRT_DT_Q5_0: return "q5_0";
    case LRT_DT_Q5_1: return "q5_1";
    default: return "other";
  }
}

/* float -> IEEE half, rounded to nearest, ties to even (the rounding of F16C's vcvtps2ph and
 * numpy's astype(float16)); values from 65520 up become infinity, NaN stays a quiet NaN. */
uint16_t lrt_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds past 65504 */
  if (ax < 0x38800000u) {                                     /* below 2^-14: subnormal half or 0 */
    if (ax < 0x33000000u) return sign;                        /* below 2^-25 (2^-25 itself ties to 0) */
    uint32_t e = ax >> 23, man = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* value / 2^-24 = man >> shift, shift in [14, 24] */
    uint32_t q = man >> shift, rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t r = ax - 0x38000000u; /* exponent bias 127 -> 15 */
  uint32_t q = r >> 13, rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++; /* a carry moves into the exponent */
  return (uint16_t)(sign | q);
}

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Q8_0 quantization (docs/numerics.md, "Quantizing at load"), per block of 32 values:
 *   amax = max |x|, d = amax / 127, id = d != 0 ? 1 / d : 0, q = round_half_away(x * id),
 *   stored: F16(d) (nearest even), then q as int8
 * -- the rule of gguf-py's Q8_0 and llama.cpp's quantize_row_q8_0_ref, in float32. */
int lrt_quantize_q8_0(const float *x, uint8_t *out, int64_t n) {
  /* Written with integer bit operations instead of sign branches (they mispredict on
   * weights, whose signs are random): for non-negative floats the bit patterns order as the
   * values do, and NaN / infinity are the patterns from 0x7f800000 up. */
  for (int64_t b = 0; b < n / 32; b++, x += 32, out += 34) {
    uint32_t amax_bits = 0;
    for (int i = 0; i < 32; i++) {
      uint32_t a = f32_bits(x[i]) & 0x7fffffffu;
      amax_bits = a > amax_bits ? a : amax_bits;
    }
    if (amax_bits >= 0x7f800000u) return -1; /* NaN or infinity */
    float d = bits_f32(amax_bits) / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    if (f32_bits(id) >= 0x7f800000u) return -1; /* d so small that 1 / d overflows */
    uint16_t h = lrt_f32_to_f16(d);
    if ((h & 0x7c00u) == 0x7c00u) return -1; /* d beyond the F16 range */
    out[0] = (uint8_t)(h & 0xffu);
    out[1] = (uint8_t)(h >> 8);
    for (int i = 0; i < 32; i++) {
      uint32_t v = f32_bits(x[i] * id);
      float a = bits_f32(v & 0x7fffffffu);        /* |x * id| <= 127 + a rounding */
      int32_t t = (int32_t)a;                     /* truncation (exact: a < 2^23) */
      t += (a - (float)t >= 0.5f);                /* round half away from zero: C's roundf */
      t = t > 127 ? 127 : t;
      int32_t neg = -(int32_t)(v >> 31);          /* 0 or -1 */
      out[2 + i] = (uint8_t)(int8_t)((t ^ neg) - neg);
    }
  }
  return 0;
}

/* Int8 activations (LRT_OPEN_INT8_ACTIVATIONS; docs/numerics.md "Int8 activations"): one
 * activation row of n floats (n % 32 == 0) as Q8_0-style blocks, split for the integer dot
 * kernels: q[n] int8, d[n/32] the block scale as used (the F16 rounding of amax / 127, widened
 * back to float), s[n/32] the sum of the block's q. The quantization is lrt_quantize_q8_0's;
 * it never fails: a block holding NaN or infinity gets q = 0 and d = NaN (its products are
 * NaN, as the float path's would be), a block whose 1 / d overflows gets q = 0. */
void lrt_quantize_act_q8(const float *x, int8_t *q, float *d, int32_t *s, int64_t n) {
  for (int64_t b = 0; b < n / 32; b++, x += 32, q += 32) {
    uint32_t amax_bits = 0;
    for (int i = 0; i < 32; i++) {
      uint32_t a = f32_bits(x[i]) & 0x7fffffffu;
      amax_bits = a > amax_bits ? a : amax_bits;
    }
    float dd = bits_f32(amax_bits) / 127.0f;
    float id = dd != 0.0f ? 1.0f / dd : 0.0f;
    int32_t sum = 0;
    if (amax_bits >= 0x7f800000u || f32_bits(id) >= 0x7f800000u) {
      memset(q, 0, 32);
      d[b] = amax_bits >= 0x7f800000u ? bits_f32(0x7fc00000u) : 0.0f;
      s[b] = 0;
      continue;
    }
    for (int i = 0; i < 32; i++) {
      uint32_t v = f32_bits(x[i] * id);
      float a = bits_f32(v & 0x7fffffffu);
      int32_t t = (int32_t)a;
      t += (a - (float)t >= 0.5f);
      t = t > 127 ? 127 : t;
      int32_t neg = -(int32_t)(v >> 31);
      q[i] = (int8_t)((t ^ neg) - neg);
      sum += q[i];
    }
    d[b] = lrt_f16_to_f32(lrt_f32_to_f16(dd));
    s[b] = sum;
  }
}
