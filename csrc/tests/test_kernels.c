/* test_kernels.c -- every kernel path against the scalar reference, bit for bit.
 *
 * Random inputs with lengths 0..300, unaligned starts, values spread over many binades
 * (incl. subnormals, zeros and negative zeros) and M = 1..9 activation rows. Also checks
 * that the own math functions behave (exp range ends, tanh symmetry) and that a kernel
 * with a different lane order is caught (the comparison can fail). The int8-activation
 * kernels (dot_*_i8, rows_*_i8) are compared on activation rows from lrt_quantize_act_q8
 * (compare_i8), and two perturbed versions of them must be caught as well. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/kernels.h"
#include "../base/lrt_math.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next32(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}
static float rand_float(void) {
  uint32_t r = next32();
  if (r % 97 == 0) return 0.0f;
  if (r % 89 == 0) return -0.0f;
  int e = (int)(next32() % 40) - 20;           /* 2^-20 .. 2^19 */
  if (r % 101 == 0) e = -140;                  /* subnormal */
  float m = (float)(next32() & 0xffffff) / 16777216.0f + 0.5f;
  float v = m;
  for (; e > 0; e--) v *= 2.0f;
  for (; e < 0; e++) v *= 0.5f;
  return (r & 1) ? -v : v;
}
static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static int failures = 0, quiet = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; if (!quiet && failures < 20) { printf("FAIL: "); printf(__VA_ARGS__); printf("\n"); } } } while (0)

/* A deliberately wrong kernel: 4 lanes instead of 8. The comparison must notice it. */
static float dot_f32_4lanes(const float *w, const float *x, int64_t n) {
  float acc[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; j++) acc[j] = acc[j] + w[i + j] * x[i + j];
  float s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; i < n; i++) s = s + w[i] * x[i];
  return s;
}

static int same_or_nan(float a, float b) { return bits(a) == bits(b) || (a != a && b != b); }

/* A deliberately wrong BF16 tile: the eight lanes combined left to right instead of the tree. */
static void tile4_bf16_serial_tree(const uint16_t *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n,
                                   float *y, int64_t ys, const uint16_t *pf) {
  (void)pf;
  for (int64_t t = 0; t < M; t++)
    for (int64_t r = 0; r < 4; r++) {
      const uint16_t *wr = w + r * ws;
      const float *xt = x + t * xs;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] = acc[j] + lrt_bf16_to_f32(wr[i + j]) * xt[i + j];
      float s = acc[0];
      for (int j = 1; j < 8; j++) s = s + acc[j];
      for (; i < n; i++) s = s + lrt_bf16_to_f32(wr[i]) * xt[i];
      y[t * ys + r] = s;
    }
}

/* Elementwise own math (exp_f32, silu_mul_f32) against the reference: a stride through all
 * 2^32 float bit patterns (specials, subnormals, both range ends), dense bit-pattern runs
 * around the exp overflow/underflow thresholds, and random values in the finite range;
 * lengths and alignments vary (tails), both also in place. */
static void compare_math(const lrt_kernels *k, const lrt_kernels *ref) {
  enum { B = 1024 };
  static float x[B + 8], u[B + 8], y1[B + 8], y2[B + 8];
  uint64_t pat = 0;
  const uint32_t runs[4] = {0x42b17217u, 0xc2cff1b5u, 0x42b00000u, 0xc2aeac50u}; /* HI, LO, ~88, ~-87.3 */
  for (int iter = 0; iter < 1400; iter++) {
    int64_t n = 1 + (int64_t)(next32() % B);
    int off = (int)(next32() % 8);
    for (int64_t i = 0; i < n; i++) {
      uint32_t b;
      if (iter < 1000) { b = (uint32_t)pat; pat += 4099; }              /* all bit patterns, strided */
      else if (iter < 1200) b = runs[iter % 4] + (next32() % 4096) - 2048; /* threshold neighbourhoods */
      else { float v = (float)(next32() % 400000) / 2000.0f - 110.0f; memcpy(&b, &v, 4); } /* -110..90 */
      memcpy(&x[off + i], &b, 4);
      u[off + i] = rand_float();
    }
    k->exp_f32(x + off, y1 + off, n);
    ref->exp_f32(x + off, y2 + off, n);
    for (int64_t i = 0; i < n; i++)
      CHECK(same_or_nan(y1[off + i], y2[off + i]), "%s exp_f32 x=%a (0x%08x): %a vs %a", k->name, (double)x[off + i],
            bits(x[off + i]), (double)y1[off + i], (double)y2[off + i]);
    memcpy(y1, x, sizeof x); /* in place: y == x */
    k->exp_f32(y1 + off, y1 + off, n);
    for (int64_t i = 0; i < n; i++) CHECK(same_or_nan(y1[off + i], y2[off + i]), "%s exp_f32 in place", k->name);
    k->silu_mul_f32(x + off, u + off, y1 + off, n);
    ref->silu_mul_f32(x + off, u + off, y2 + off, n);
    for (int64_t i = 0; i < n; i++)
      CHECK(same_or_nan(y1[off + i], y2[off + i]), "%s silu_mul_f32 x=%a", k->name, (double)x[off + i]);
    memcpy(y1, x, sizeof x); /* in place: y == g */
    k->silu_mul_f32(y1 + off, u + off, y1 + off, n);
    for (int64_t i = 0; i < n; i++) CHECK(same_or_nan(y1[off + i], y2[off + i]), "%s silu_mul_f32 in place", k->name);
  }
}

/* A deliberately wrong exp: lrt_expf with its last sum associated differently,
 * (1 + r) + r^2 P instead of 1 + (r + r^2 P). The comparison must notice it. */
static void exp_f32_reassociated(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    if (v != v || v > 88.72283172607421875f || v < -103.972084045410156f) { y[i] = lrt_expf(v); continue; }
    float kf = (v * 1.44269502162933349609375f + 12582912.0f) - 12582912.0f;
    float r = (v - kf * 0.693145751953125f) - kf * 1.42860676533018704503775e-06f;
    float p = 1.0f / 5040.0f;
    p = 1.0f / 720.0f + r * p;
    p = 1.0f / 120.0f + r * p;
    p = 1.0f / 24.0f + r * p;
    p = 1.0f / 6.0f + r * p;
    p = 0.5f + r * p;
    p = (1.0f + r) + (r * r) * p;
    int k = (int)kf, k1 = k / 2, k2 = k - k1;
    uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    y[i] = (p * s1) * s2;
  }
}

/* Widening of halves: all 65536 F16 and BF16 bit patterns, bit for bit (NaNs included:
 * a widened NaN keeps its payload on every path), at every alignment of the tail. */
static void compare_widen(const lrt_kernels *k, const lrt_kernels *ref) {
  static uint16_t h[65536 + 8];
  static float y1[65536 + 8], y2[65536 + 8];
  for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
  for (int off = 0; off < 8; off++) {
    int64_t n = 65536 - off;
    k->widen_f16(h + off, y1, n);
    ref->widen_f16(h + off, y2, n);
    for (int64_t i = 0; i < n; i++) CHECK(bits(y1[i]) == bits(y2[i]), "%s widen_f16 0x%04x", k->name, h[off + i]);
    k->widen_bf16(h + off, y1, n);
    ref->widen_bf16(h + off, y2, n);
    for (int64_t i = 0; i < n; i++) CHECK(bits(y1[i]) == bits(y2[i]), "%s widen_bf16 0x%04x", k->name, h[off + i]);
  }
}

/* Q4_1 fused decode on long rows: a kernel may work through a row in segments and widen the
 * scales of several blocks at once (wasm_simd.c: 64-block segments, four blocks per step), so
 * rows of 1 to 200 blocks (segment and group boundaries and tails), random scales with some
 * zero, subnormal, inf and NaN ones, against dequantize + the reference dot4_f32. */
static void compare_q4_1_long(const lrt_kernels *k, const lrt_kernels *ref) {
  enum { MAXNB = 200 };
  static const uint16_t odd[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x7c00, 0xfc00, 0x7e01, 0x7bff};
  static uint8_t q[4 * MAXNB * 20];
  static float x[MAXNB * 32], d[4 * MAXNB * 32];
  static const int64_t nbs[] = {1, 3, 4, 5, 63, 64, 65, 67, 68, 128, 131, 200};
  for (size_t t = 0; t < sizeof nbs / sizeof nbs[0]; t++) {
    int64_t nb = nbs[t], n = 32 * nb, rb = 20 * nb;
    for (int64_t i = 0; i < n; i++) x[i] = rand_float();
    for (int64_t i = 0; i < 4 * rb; i++) q[i] = (uint8_t)next32();
    for (int64_t b = 0; b < 4 * nb; b++) { /* finite scales of moderate size, some odd ones */
      for (int j = 0; j < 2; j++) {
        uint32_t r = next32();
        uint16_t h = (uint16_t)((r & 0x83ff) | (((r >> 16) % 8 + 11) << 10));
        if (r % 16 == 0) h = odd[(r >> 4) % 8];
        q[20 * b + 2 * j] = (uint8_t)h;
        q[20 * b + 2 * j + 1] = (uint8_t)(h >> 8);
      }
    }
    float ya[4], yb[4];
    for (int i = 0; i < 4; i++) ref->dequant_q4_1(q + i * rb, d + i * n, n);
    k->dot4_q4_1(q, rb, x, n, ya);
    ref->dot4_f32(d, n, x, n, yb);
    for (int i = 0; i < 4; i++)
      CHECK(same_or_nan(ya[i], yb[i]), "%s dot4_q4_1 nb=%lld row %d: %a vs %a", k->name, (long long)nb, i,
            (double)ya[i], (double)yb[i]);
  }
}

/* Q4_0 / Q4_1 / Q5_0 / Q5_1 fused decode (and row dequantization) for every F16 scale:
 * each of the 65536 half patterns as d (with a varying F16 m for Q4_1 / Q5_1, both blocks of
 * a row), quants that take all 16 values in both nibbles, x in [0.5, 2) so that no product
 * is lost in the sum. Q5: one block has qh = 0, one qh = all ones (so each d meets all 32
 * values of q), the other six a random qh. Catches a wrong entry of a per-block table of the
 * 16 (Q4) or 2 x 16 (Q5) possible weights (avx2-avx512vl) for subnormal, zero, negative, inf
 * and NaN scales. */
static void compare_q4_scales(const lrt_kernels *k, const lrt_kernels *ref) {
  enum { N = 64, NB = N / 32 };
  static uint8_t q0[4 * NB * 18], q1[4 * NB * 20], q50[4 * NB * 22], q51[4 * NB * 24];
  static float x[N], da[4 * N], db[4 * N];
  for (int i = 0; i < N; i++) x[i] = 0.5f + (float)(next32() & 0xffffff) / 11184810.67f;
  for (int r = 0; r < 4; r++)
    for (int b = 0; b < NB; b++)
      for (int j = 0; j < 16; j++) {
        uint8_t v = (uint8_t)(((j + 3 * r + 5 * b) & 15) | ((15 - j + r + 7 * b) & 15) << 4);
        q0[(r * NB + b) * 18 + 2 + j] = v;
        q1[(r * NB + b) * 20 + 4 + j] = v;
        q50[(r * NB + b) * 22 + 6 + j] = v;
        q51[(r * NB + b) * 24 + 8 + j] = v;
      }
  for (uint32_t h = 0; h < 65536; h++) {
    for (int r = 0; r < 4; r++)
      for (int b = 0; b < NB; b++) {
        uint8_t *p0 = q0 + (r * NB + b) * 18, *p1 = q1 + (r * NB + b) * 20;
        uint32_t m = (h * 40503u + 7919u * (uint32_t)(r + 4 * b)) & 0xffff;
        p0[0] = p1[0] = (uint8_t)h;
        p0[1] = p1[1] = (uint8_t)(h >> 8);
        p1[2] = (uint8_t)m;
        p1[3] = (uint8_t)(m >> 8);
        uint8_t *p50 = q50 + (r * NB + b) * 22, *p51 = q51 + (r * NB + b) * 24;
        uint32_t qh = r * NB + b == 0 ? 0u : r * NB + b == 1 ? 0xffffffffu : next32();
        p50[0] = p51[0] = (uint8_t)h;
        p50[1] = p51[1] = (uint8_t)(h >> 8);
        p51[2] = (uint8_t)m;
        p51[3] = (uint8_t)(m >> 8);
        for (int i = 0; i < 4; i++) p50[2 + i] = p51[4 + i] = (uint8_t)(qh >> (8 * i));
      }
    float ya[4], yb[4];
    k->dot4_q4_0(q0, NB * 18, x, N, ya);
    ref->dot4_q4_0(q0, NB * 18, x, N, yb);
    for (int i = 0; i < 4; i++)
      CHECK(same_or_nan(ya[i], yb[i]), "%s dot4_q4_0 d=0x%04x row %d: %a vs %a", k->name, (unsigned)h, i, (double)ya[i], (double)yb[i]);
    k->dot4_q4_1(q1, NB * 20, x, N, ya);
    ref->dot4_q4_1(q1, NB * 20, x, N, yb);
    for (int i = 0; i < 4; i++)
      CHECK(same_or_nan(ya[i], yb[i]), "%s dot4_q4_1 d=0x%04x row %d: %a vs %a", k->name, (unsigned)h, i, (double)ya[i], (double)yb[i]);
    k->dot4_q5_0(q50, NB * 22, x, N, ya);
    ref->dot4_q5_0(q50, NB * 22, x, N, yb);
    for (int i = 0; i < 4; i++)
      CHECK(same_or_nan(ya[i], yb[i]), "%s dot4_q5_0 d=0x%04x row %d: %a vs %a", k->name, (unsigned)h, i, (double)ya[i], (double)yb[i]);
    k->dot4_q5_1(q51, NB * 24, x, N, ya);
    ref->dot4_q5_1(q51, NB * 24, x, N, yb);
    for (int i = 0; i < 4; i++)
      CHECK(same_or_nan(ya[i], yb[i]), "%s dot4_q5_1 d=0x%04x row %d: %a vs %a", k->name, (unsigned)h, i, (double)ya[i], (double)yb[i]);
    k->dequant_q4_0(q0, da, 4 * N);
    ref->dequant_q4_0(q0, db, 4 * N);
    for (int i = 0; i < 4 * N; i++)
      CHECK(same_or_nan(da[i], db[i]), "%s dequant_q4_0 d=0x%04x i=%d: %a vs %a", k->name, (unsigned)h, i, (double)da[i], (double)db[i]);
    k->dequant_q4_1(q1, da, 4 * N);
    ref->dequant_q4_1(q1, db, 4 * N);
    for (int i = 0; i < 4 * N; i++)
      CHECK(same_or_nan(da[i], db[i]), "%s dequant_q4_1 d=0x%04x i=%d: %a vs %a", k->name, (unsigned)h, i, (double)da[i], (double)db[i]);
    k->dequant_q5_0(q50, da, 4 * N);
    ref->dequant_q5_0(q50, db, 4 * N);
    for (int i = 0; i < 4 * N; i++)
      CHECK(same_or_nan(da[i], db[i]), "%s dequant_q5_0 d=0x%04x i=%d: %a vs %a", k->name, (unsigned)h, i, (double)da[i], (double)db[i]);
    k->dequant_q5_1(q51, da, 4 * N);
    ref->dequant_q5_1(q51, db, 4 * N);
    for (int i = 0; i < 4 * N; i++)
      CHECK(same_or_nan(da[i], db[i]), "%s dequant_q5_1 d=0x%04x i=%d: %a vs %a", k->name, (unsigned)h, i, (double)da[i], (double)db[i]);
  }
}

/* Int8 activations (dot_*_i8, rows_*_i8) against the reference, bit for bit (NaN: any NaN).
 * Activation rows come from lrt_quantize_act_q8 of random floats, per block: the spread of
 * rand_float (2^-20 .. 2^19, zeros, subnormals), all zeros, uniform values or constant
 * magnitudes with random signs (every q = +-127) times 2^e. Most rows use moderate e (-16 ..
 * 12); one row in four also gets extreme blocks: e = -140 / -130 (the quantizer's 1 / d
 * overflows: q = 0), -60 (dx rounds to F16 zero), 22 (the largest finite F16 dx), 24 / 40 /
 * 100 (dx = inf, so that row's result is NaN or inf); one row in eight holds a NaN or an
 * infinity. Weight blocks are random bytes with F16 scales random (finite) or extreme
 * (+-65504, +-smallest subnormal, +-0, smallest normal, largest subnormal, 1); Q8_0 quants
 * sometimes all -128 or alternating -128 / 127. Row lengths of 1, 7, 8, 18, 19, 48 blocks
 * (with and without a tail of blocks after the eight-block groups), M = 1..5 tokens for
 * rows_*, outputs ys = 1..3 apart (the gaps must stay untouched); every rows_* output must
 * equal the reference single-token dot (batch invariance). */
static void fill_act_block(float *x, int mode, int extreme) {
  if (mode == 0) {
    for (int i = 0; i < 32; i++) x[i] = rand_float();
    return;
  }
  if (mode == 1) {
    for (int i = 0; i < 32; i++) x[i] = (next32() & 1) ? -0.0f : 0.0f;
    return;
  }
  static const int moderate[] = {-16, -8, -3, 0, 4, 8, 12}, wild[] = {-140, -130, -60, 22, 24, 40, 100};
  int e = extreme ? wild[next32() % 7] : moderate[next32() % 7];
  float sc = 1.0f;
  for (; e > 0; e--) sc *= 2.0f;
  for (; e < 0; e++) sc *= 0.5f;
  int constant = mode == 3;
  float c = (float)(next32() & 0xffffff) / 16777216.0f + 0.5f;
  for (int i = 0; i < 32; i++) {
    float u = constant ? c : (float)((int32_t)(next32() & 0xffffff) - 0x800000) / 8388608.0f;
    if (constant && (next32() & 1)) u = -u;
    x[i] = u * sc;
  }
}

static void compare_i8(const lrt_kernels *k, const lrt_kernels *ref) {
  enum { MAXNB = 48, MAXM = 5, MAXYS = 3 };
  static const int64_t nbs[] = {1, 7, 8, 18, 19, 48};
  static const uint16_t hx[] = {0x7bff, 0xfbff, 0x0001, 0x8001, 0x0000, 0x8000, 0x0400, 0x03ff, 0x3c00};
  static float xf[MAXM * MAXNB * 32], dx[MAXM * MAXNB];
  static int8_t qx[MAXM * MAXNB * 32];
  static int32_t sx[MAXM * MAXNB];
  static uint8_t wq[MAXNB * 34];
  static float y1[MAXM * MAXYS];
  struct {
    float (*dot)(const void *, const int8_t *, const float *, const int32_t *, int64_t);
    float (*dot_ref)(const void *, const int8_t *, const float *, const int32_t *, int64_t);
    void (*rows)(const void *, const int8_t *, const float *, const int32_t *, int64_t, int64_t, float *, int64_t);
    int64_t block, nscales;
    const char *nm;
  } fm[3] = {{k->dot_q8_0_i8, ref->dot_q8_0_i8, k->rows_q8_0_i8, 34, 1, "q8_0"},
             {k->dot_q4_0_i8, ref->dot_q4_0_i8, k->rows_q4_0_i8, 18, 1, "q4_0"},
             {k->dot_q4_1_i8, ref->dot_q4_1_i8, k->rows_q4_1_i8, 20, 2, "q4_1"}};
  for (int iter = 0; iter < 720; iter++) {
    int64_t nb = nbs[iter % 6], n = nb * 32;
    int64_t M = 1 + (int64_t)((iter / 6) % MAXM);
    int64_t ys = 1 + (int64_t)(next32() % MAXYS);
    /* activations: one block mode per row, or mixed per block; special values in some rows */
    for (int64_t t = 0; t < M; t++) {
      int row_mode = (int)(next32() % 6); /* 0..3: that mode for the whole row; 4, 5: mixed */
      int wild_row = next32() % 4 == 0;
      for (int64_t b = 0; b < nb; b++) {
        int mode = row_mode < 4 ? row_mode : (int)(next32() % 4);
        fill_act_block(xf + (t * nb + b) * 32, mode, wild_row && next32() % 4 == 0);
      }
      if (next32() % 8 == 0) { /* a NaN or +-inf somewhere in the row */
        static const uint32_t sp[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7f800000u, 0xff800000u};
        uint32_t v = sp[next32() % 5];
        memcpy(&xf[t * n + (int64_t)(next32() % (uint32_t)n)], &v, 4);
      }
      lrt_quantize_act_q8(xf + t * n, qx + t * n, dx + t * nb, sx + t * nb, n);
    }
    for (int f = 0; f < 3; f++) {
      int64_t bb = fm[f].block;
      for (int64_t i = 0; i < nb * bb; i++) wq[i] = (uint8_t)next32();
      for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = wq + b * bb;
        for (int64_t s = 0; s < fm[f].nscales; s++) {
          uint8_t *hp = blk + 2 * s;
          if ((hp[1] & 0x7c) == 0x7c) hp[1] &= 0xbf; /* no inf / NaN scales */
          if (next32() % 4 == 0) {
            uint16_t v = hx[next32() % (sizeof hx / sizeof hx[0])];
            hp[0] = (uint8_t)(v & 0xff);
            hp[1] = (uint8_t)(v >> 8);
          }
        }
        if (f == 0 && next32() % 6 == 0) { /* Q8_0 quants of -128 */
          int alt = (int)(next32() & 1);
          for (int i = 0; i < 32; i++) blk[2 + i] = (uint8_t)((alt && (i & 1)) ? 0x7f : 0x80);
        }
      }
      for (int64_t t = 0; t < M; t++) {
        const int8_t *q = qx + t * n;
        const float *d = dx + t * nb;
        const int32_t *s = sx + t * nb;
        float a = fm[f].dot(wq, q, d, s, n), r = fm[f].dot_ref(wq, q, d, s, n);
        CHECK(same_or_nan(a, r), "%s dot_%s_i8 n=%lld t=%lld: %a vs %a", k->name, fm[f].nm, (long long)n,
              (long long)t, (double)a, (double)r);
      }
      for (int64_t i = 0; i < MAXM * MAXYS; i++) y1[i] = -7.0f;
      fm[f].rows(wq, qx, dx, sx, M, n, y1, ys);
      for (int64_t t = 0; t < M; t++) {
        float r = fm[f].dot_ref(wq, qx + t * n, dx + t * nb, sx + t * nb, n);
        CHECK(same_or_nan(y1[t * ys], r), "%s rows_%s_i8 n=%lld M=%lld t=%lld ys=%lld: %a vs %a", k->name, fm[f].nm,
              (long long)n, (long long)M, (long long)t, (long long)ys, (double)y1[t * ys], (double)r);
        for (int64_t g = 1; g < ys; g++)
          CHECK(y1[t * ys + g] == -7.0f, "%s rows_%s_i8 wrote between outputs (ys=%lld)", k->name, fm[f].nm,
                (long long)ys);
      }
      for (int64_t i = M * ys; i < MAXM * MAXYS; i++)
        CHECK(y1[i] == -7.0f, "%s rows_%s_i8 wrote past its M outputs", k->name, fm[f].nm);
      if (k->i8_tile) { /* the prefill tile (VNNI paths): three rows (the row, then two more) x M tokens */
        static uint8_t w3[3 * MAXNB * 34];
        static unsigned char pw[4 * LRT_I8_PW_BYTES(MAXNB * 32)], px[8 * LRT_I8_PX_BYTES(MAXNB * 32)];
        static float y3[MAXM * 3];
        memcpy(w3, wq, (size_t)(nb * bb));
        for (int64_t i = nb * bb; i < 3 * nb * bb; i++) w3[i] = wq[i % (nb * bb)] ^ (uint8_t)(next32() & 0x33);
        for (int64_t r = 1; r < 3; r++) /* the copies' scales: those of the first row (finite) */
          for (int64_t b = 0; b < nb; b++) memcpy(w3 + r * nb * bb + b * bb, wq + b * bb, (size_t)(2 * fm[f].nscales));
        k->i8_pack_x(xf, M, n, px);
        k->i8_pack_w(f, w3, nb * bb, 3, n, pw);
        k->i8_tile(f, pw, 3, px, M, n, y3, 3, NULL);
        for (int64_t t = 0; t < M; t++)
          for (int64_t r = 0; r < 3; r++) {
            float want = fm[f].dot_ref(w3 + r * nb * bb, qx + t * n, dx + t * nb, sx + t * nb, n);
            CHECK(same_or_nan(y3[t * 3 + r], want), "%s i8_tile %s n=%lld M=%lld t=%lld r=%lld: %a vs %a", k->name,
                  fm[f].nm, (long long)n, (long long)M, (long long)t, (long long)r, (double)y3[t * 3 + r], (double)want);
          }
      }
    }
  }
}

/* Deliberately wrong int8-activation kernels (the comparison must notice them): Q8_0 with the
 * block results summed strictly in order instead of the dot8 lanes, and Q4_1 rows whose eight
 * lanes are combined by another tree, (t0 + t1) + (t2 + t3). (A reassociated block result,
 * d_w * (dx_b * S_b), would not do: d_w * dx_b is a product of two halves, exact in float, so
 * the two orders differ only when dx_b * S_b is inexact, which random Q4 blocks rarely make.) */
static float dot_q8_0_i8_sequential(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n) {
  float s = 0.0f;
  for (int64_t b = 0; b < n / 32; b++) s = s + lrt_i8_cb_q8_0((const uint8_t *)w, qx, dx, sx, b);
  return s;
}
static void rows_q4_1_i8_other_tree(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M,
                                    int64_t n, float *y, int64_t ys) {
  int64_t nb = n / 32;
  for (int64_t t = 0; t < M; t++) {
    const int8_t *q = qx + t * n;
    const float *d = dx + t * nb;
    const int32_t *s = sx + t * nb;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8)
      for (int j = 0; j < 8; j++) acc[j] = acc[j] + lrt_i8_cb_q4_1((const uint8_t *)w, q, d, s, b + j);
    float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7];
    float r = (t0 + t1) + (t2 + t3);
    for (; b < nb; b++) r = r + lrt_i8_cb_q4_1((const uint8_t *)w, q, d, s, b);
    y[t * ys] = r;
  }
}

/* the training chains (lincomb_f32, rank1_f32): every element against the reference, with
 * lengths that cover the 32-, 8-wide and scalar parts, strides wider than d, and the gaps of
 * the output left untouched */
static void compare_train(const lrt_kernels *k, const lrt_kernels *ref) {
  enum { MAXJ = 70, MAXD = 90, PAD = 5 };
  static float a[MAXJ], X[MAXJ * (MAXD + PAD)], y1[MAXJ * (MAXD + PAD)], y2[MAXJ * (MAXD + PAD)], xv[MAXD];
  for (int iter = 0; iter < 600; iter++) {
    int64_t n = (int64_t)(next32() % MAXJ), d = (int64_t)(next32() % MAXD) + 1;
    int64_t xs = d + (int64_t)(next32() % PAD);
    for (int64_t j = 0; j < n; j++) a[j] = rand_float();
    for (int64_t i = 0; i < MAXJ * (MAXD + PAD); i++) X[i] = rand_float();
    for (int64_t e = 0; e < d; e++) xv[e] = rand_float();
    for (int64_t i = 0; i < MAXJ * (MAXD + PAD); i++) y1[i] = y2[i] = rand_float();
    k->lincomb_f32(a, X, xs, n, d, y1);
    ref->lincomb_f32(a, X, xs, n, d, y2);
    for (int64_t e = 0; e < d + PAD; e++)
      CHECK(bits(y1[e]) == bits(y2[e]), "%s lincomb_f32 n=%lld d=%lld e=%lld", k->name, (long long)n, (long long)d, (long long)e);
    k->rank1_f32(a, xv, n, d, y1, xs);
    ref->rank1_f32(a, xv, n, d, y2, xs);
    for (int64_t i = 0; i < MAXJ * (MAXD + PAD); i++)
      CHECK(bits(y1[i]) == bits(y2[i]), "%s rank1_f32 n=%lld d=%lld i=%lld", k->name, (long long)n, (long long)d, (long long)i);
    /* lincomb_rows_f32: R rows (the 4-row blocks and single rows), coefficients read along the
     * rows of a matrix (ar = stride, aj = 1) or down its columns (ar = 1, aj = stride); every
     * element of Y (gaps included) against the reference, and each row against lincomb_f32 */
    {
      static float A[MAXJ * MAXJ], acol[MAXJ];
      int64_t R = 1 + (int64_t)(next32() % 11), as = MAXJ, col = (int64_t)(next32() & 1);
      int64_t ar = col ? 1 : as, aj = col ? as : 1;
      int64_t ys = xs;
      if (R * ys > MAXJ * (MAXD + PAD)) R = MAXJ * (MAXD + PAD) / ys;
      for (int64_t i = 0; i < MAXJ * MAXJ; i++) A[i] = rand_float();
      static float y0[MAXJ * (MAXD + PAD)];
      for (int64_t i = 0; i < MAXJ * (MAXD + PAD); i++) y0[i] = y1[i] = y2[i] = rand_float();
      k->lincomb_rows_f32(A, ar, aj, X, xs, R, n, d, y1, ys);
      ref->lincomb_rows_f32(A, ar, aj, X, xs, R, n, d, y2, ys);
      for (int64_t i = 0; i < MAXJ * (MAXD + PAD); i++)
        CHECK(bits(y1[i]) == bits(y2[i]), "%s lincomb_rows_f32 R=%lld n=%lld d=%lld col=%lld i=%lld", k->name,
              (long long)R, (long long)n, (long long)d, (long long)col, (long long)i);
      int64_t r = (int64_t)(next32() % R);
      for (int64_t j = 0; j < n; j++) acol[j] = A[r * ar + j * aj];
      ref->lincomb_f32(acol, X, xs, n, d, y0 + r * ys);
      for (int64_t e = 0; e < d; e++)
        CHECK(bits(y0[r * ys + e]) == bits(y2[r * ys + e]), "%s lincomb_rows_f32 row %lld != lincomb_f32", k->name,
              (long long)r);
    }
  }
}

/* lincomb_f32 with the pairs of rows added first (a reassociated chain): must be caught */
static void lincomb_f32_pairs(const float *a, const float *X, int64_t xs, int64_t n, int64_t d, float *y) {
  int64_t j = 0;
  for (; j + 2 <= n; j += 2)
    for (int64_t e = 0; e < d; e++) y[e] = y[e] + (a[j] * X[j * xs + e] + a[j + 1] * X[(j + 1) * xs + e]);
  for (; j < n; j++)
    for (int64_t e = 0; e < d; e++) y[e] = y[e] + a[j] * X[j * xs + e];
}

static int compare_path(const lrt_kernels *k, const lrt_kernels *ref) {
  enum { MAXN = 300, MAXM = 21, PAD = 8 }; /* M up to 21: the tile's 8- and 4-token blocks and single tokens */
  static float w[MAXN + PAD], x[MAXM * (MAXN + PAD)], y1[MAXM], y2[MAXM];
  static uint16_t wh[MAXN + PAD], wb[MAXN + PAD];
  int before = failures;
  for (int iter = 0; iter < 3000; iter++) {
    int64_t n = (int64_t)(next32() % (MAXN + 1));
    int off = (int)(next32() % PAD);
    int64_t M = 1 + (int64_t)(next32() % MAXM);
    int64_t xs = n + off;
    for (int64_t i = 0; i < n + off; i++) {
      w[i] = rand_float();
      wb[i] = (uint16_t)(bits(w[i]) >> 16);
      wh[i] = (uint16_t)(next32() & 0xffff);
      if ((wh[i] & 0x7c00) == 0x7c00) wh[i] &= 0xbfff; /* no inf / NaN halves */
    }
    for (int64_t i = 0; i < M * xs + off; i++) x[i] = rand_float();
    const float *wp = w + off, *xp = x + off;
    const uint16_t *hp = wh + off, *bp = wb + off;
    CHECK(bits(k->dot_f32(wp, xp, n)) == bits(ref->dot_f32(wp, xp, n)), "%s dot_f32 n=%lld", k->name, (long long)n);
    CHECK(bits(k->dot_f16(hp, xp, n)) == bits(ref->dot_f16(hp, xp, n)), "%s dot_f16 n=%lld", k->name, (long long)n);
    CHECK(bits(k->dot_bf16(bp, xp, n)) == bits(ref->dot_bf16(bp, xp, n)), "%s dot_bf16 n=%lld", k->name, (long long)n);
    CHECK(bits(k->sum_f32(xp, n)) == bits(ref->sum_f32(xp, n)), "%s sum_f32 n=%lld", k->name, (long long)n);
    k->rows_f32(wp, xp, xs, M, n, y1, 1);
    ref->rows_f32(wp, xp, xs, M, n, y2, 1);
    for (int64_t t = 0; t < M; t++) {
      CHECK(bits(y1[t]) == bits(y2[t]), "%s rows_f32 n=%lld M=%lld t=%lld", k->name, (long long)n, (long long)M, (long long)t);
      /* batch invariance: row t of a batch equals the single dot */
      CHECK(bits(y1[t]) == bits(ref->dot_f32(wp, xp + t * xs, n)), "%s rows_f32 batch invariance", k->name);
    }
    k->rows_f16(hp, xp, xs, M, n, y1, 1);
    ref->rows_f16(hp, xp, xs, M, n, y2, 1);
    for (int64_t t = 0; t < M; t++) CHECK(bits(y1[t]) == bits(y2[t]), "%s rows_f16 n=%lld M=%lld", k->name, (long long)n, (long long)M);
    k->rows_bf16(bp, xp, xs, M, n, y1, 1);
    ref->rows_bf16(bp, xp, xs, M, n, y2, 1);
    for (int64_t t = 0; t < M; t++) CHECK(bits(y1[t]) == bits(y2[t]), "%s rows_bf16 n=%lld M=%lld", k->name, (long long)n, (long long)M);
    /* tile4_f32: four rows (stride ws >= n) against M tokens, output stride ys = 6: each
     * element equals the reference single dot, and the gaps of y stay untouched */
    {
      static float w4[4 * (MAXN + PAD)], yt[MAXM * 6];
      int64_t ws = n + (int64_t)(next32() % PAD);
      for (int64_t i = 0; i < 4 * ws; i++) w4[i] = rand_float();
      for (int64_t i = 0; i < MAXM * 6; i++) yt[i] = -7.0f;
      k->tile4_f32(w4, ws, xp, xs, M, n, yt, 6);
      for (int64_t t = 0; t < M; t++) {
        for (int64_t i = 0; i < 4; i++)
          CHECK(bits(yt[t * 6 + i]) == bits(ref->dot_f32(w4 + i * ws, xp + t * xs, n)), "%s tile4_f32 n=%lld M=%lld t=%lld i=%lld",
                k->name, (long long)n, (long long)M, (long long)t, (long long)i);
        CHECK(yt[t * 6 + 4] == -7.0f && yt[t * 6 + 5] == -7.0f, "%s tile4_f32 wrote outside its tile", k->name);
      }
      /* tile4_f32_pf on the same rows, with and without a prefetch hint (four more rows):
       * the same bits as tile4_f32 */
      static float pf4[4 * (MAXN + PAD)];
      for (int64_t i = 0; i < MAXM * 6; i++) yt[i] = -7.0f;
      k->tile4_f32_pf(w4, ws, xp, xs, M, n, yt, 6, (iter & 1) ? pf4 : NULL);
      for (int64_t t = 0; t < M; t++) {
        for (int64_t i = 0; i < 4; i++)
          CHECK(bits(yt[t * 6 + i]) == bits(ref->dot_f32(w4 + i * ws, xp + t * xs, n)), "%s tile4_f32_pf n=%lld M=%lld t=%lld i=%lld",
                k->name, (long long)n, (long long)M, (long long)t, (long long)i);
        CHECK(yt[t * 6 + 4] == -7.0f && yt[t * 6 + 5] == -7.0f, "%s tile4_f32_pf wrote outside its tile", k->name);
      }
      /* tile4_f16_pf / tile4_bf16_pf on four half rows: each element equals the reference
       * single dot_f16 / dot_bf16 and the reference tile4_f32 on the rows widened to float (the
       * prefill path before these kernels) */
      static uint16_t h4[4 * (MAXN + PAD)], hpf[4 * (MAXN + PAD)];
      static float w4f[4 * (MAXN + PAD)], yr[MAXM * 6];
      for (int bf = 0; bf < 2; bf++) {
        for (int64_t i = 0; i < 4 * ws; i++) {
          if (bf) {
            h4[i] = (uint16_t)(bits(rand_float()) >> 16);
            w4f[i] = lrt_bf16_to_f32(h4[i]);
          } else {
            h4[i] = (uint16_t)(next32() & 0xffff);
            if ((h4[i] & 0x7c00) == 0x7c00) h4[i] &= 0xbfff; /* no inf / NaN halves */
            w4f[i] = lrt_f16_to_f32(h4[i]);
          }
        }
        for (int64_t i = 0; i < MAXM * 6; i++) yt[i] = -7.0f;
        (bf ? k->tile4_bf16_pf : k->tile4_f16_pf)(h4, ws, xp, xs, M, n, yt, 6, (iter & 2) ? hpf : NULL);
        ref->tile4_f32(w4f, ws, xp, xs, M, n, yr, 6);
        for (int64_t t = 0; t < M; t++) {
          for (int64_t i = 0; i < 4; i++) {
            float d = bf ? ref->dot_bf16(h4 + i * ws, xp + t * xs, n) : ref->dot_f16(h4 + i * ws, xp + t * xs, n);
            CHECK(bits(yt[t * 6 + i]) == bits(d), "%s tile4_%s_pf n=%lld M=%lld t=%lld i=%lld", k->name,
                  bf ? "bf16" : "f16", (long long)n, (long long)M, (long long)t, (long long)i);
            CHECK(bits(yt[t * 6 + i]) == bits(yr[t * 6 + i]), "%s tile4_%s_pf vs tile4_f32 of the widened rows", k->name,
                  bf ? "bf16" : "f16");
          }
          CHECK(yt[t * 6 + 4] == -7.0f && yt[t * 6 + 5] == -7.0f, "%s tile4_%s_pf wrote outside its tile", k->name,
                bf ? "bf16" : "f16");
        }
      }
    }
  }
  /* dot4 (four rows, one x) and row dequantization of the GGUF block formats */
  /* block rows for the quantized formats, and also 4 rows of n halves for dot4_f16/bf16 */
  static uint8_t qbuf[4 * 34 * (MAXN / 32 + 1) + 8 * MAXN];
  static uint8_t kbuf[4 * 210 * 3];
  static float kd1[4 * 768], kd2[4 * 768];
  static float d1[4 * MAXN], d2[4 * MAXN];
  for (int iter = 0; iter < 1000; iter++) {
    int64_t n = 32 * (int64_t)(1 + next32() % (MAXN / 32));
    for (int64_t i = 0; i < 4 * n; i++) d1[i] = rand_float();
    for (int64_t i = 0; i < n; i++) x[i] = rand_float();
    float ya[4], yb[4];
    k->dot4_f32(d1, n, x, n, ya);
    ref->dot4_f32(d1, n, x, n, yb);
    for (int i = 0; i < 4; i++) {
      CHECK(bits(ya[i]) == bits(yb[i]), "%s dot4_f32 n=%lld", k->name, (long long)n);
      CHECK(bits(ya[i]) == bits(ref->dot_f32(d1 + i * n, x, n)), "%s dot4 vs dot", k->name);
    }
    for (size_t i = 0; i < sizeof qbuf; i++) qbuf[i] = (uint8_t)next32();
    struct { void (*a)(const void *, float *, int64_t), (*b)(const void *, float *, int64_t); const char *nm; } dq[5] = {
        {k->dequant_q8_0, ref->dequant_q8_0, "q8_0"}, {k->dequant_q4_0, ref->dequant_q4_0, "q4_0"},
        {k->dequant_q4_1, ref->dequant_q4_1, "q4_1"}, {k->dequant_q5_0, ref->dequant_q5_0, "q5_0"},
        {k->dequant_q5_1, ref->dequant_q5_1, "q5_1"}};
    for (int f = 0; f < 5; f++) {
      dq[f].a(qbuf, d1, n);
      dq[f].b(qbuf, d2, n);
      for (int64_t i = 0; i < n; i++) CHECK(bits(d1[i]) == bits(d2[i]), "%s dequant_%s n=%lld i=%lld", k->name, dq[f].nm, (long long)n, (long long)i);
    }
    /* fused block-format decode == dequantize each row, then the reference dot4_f32 (a path
     * may leave an entry NULL: dispatch.c then uses the reference) */
    struct { void (*a)(const void *, int64_t, const float *, int64_t, float *); void (*deq)(const void *, float *, int64_t);
             int64_t block; const char *nm; } fq[5] = {
        {k->dot4_q8_0, ref->dequant_q8_0, 34, "q8_0"}, {k->dot4_q4_0, ref->dequant_q4_0, 18, "q4_0"},
        {k->dot4_q4_1, ref->dequant_q4_1, 20, "q4_1"}, {k->dot4_q5_0, ref->dequant_q5_0, 22, "q5_0"},
        {k->dot4_q5_1, ref->dequant_q5_1, 24, "q5_1"}};
    for (int f = 0; f < 5; f++) {
      if (!fq[f].a) continue;
      int64_t rb = (n / 32) * fq[f].block;
      for (int i = 0; i < 4; i++) fq[f].deq(qbuf + i * rb, d2 + i * n, n);
      fq[f].a(qbuf, rb, x, n, ya);
      ref->dot4_f32(d2, n, x, n, yb);
      for (int i = 0; i < 4; i++)
        CHECK(bits(ya[i]) == bits(yb[i]) || (ya[i] != ya[i] && yb[i] != yb[i]), "%s dot4_%s n=%lld row %d", k->name, fq[f].nm, (long long)n, i);
    }
    /* K-quants (n % 256 == 0): random blocks with finite F16 d / dmin, dequant and fused
     * decode vs. dequantize + reference dot4_f32. Some blocks get extreme scales (d, dmin
     * = +-65504, +-smallest subnormal, +-0, ...; all 6-bit scales and mins 63; Q6_K scales
     * -128 / 127), and every ninth iteration some activations are huge (2^100 times), so
     * products overflow to +-inf and lanes become NaN. */
    if (iter % 3 == 0) {
      static const uint16_t kd_extreme[] = {0x7bff, 0xfbff, 0x0001, 0x8001, 0x0000, 0x8000, 0x0400, 0x03ff, 0x3c00};
      int64_t nk = 256 * (int64_t)(1 + next32() % 3); /* 1 to 3 super-blocks */
      int huge = iter % 9 == 0;
      for (int64_t i = 0; i < nk; i++) {
        x[i] = rand_float();
        if (huge && next32() % 16 == 0) x[i] = x[i] * 0x1p100f;
      }
      struct { void (*a)(const void *, int64_t, const float *, int64_t, float *);
               void (*da)(const void *, float *, int64_t), (*db)(const void *, float *, int64_t);
               int64_t block; int d_off[2]; const char *nm; } kq[3] = {
          {k->dot4_q4_k, k->dequant_q4_k, ref->dequant_q4_k, 144, {0, 2}, "q4_k"},
          {k->dot4_q5_k, k->dequant_q5_k, ref->dequant_q5_k, 176, {0, 2}, "q5_k"},
          {k->dot4_q6_k, k->dequant_q6_k, ref->dequant_q6_k, 210, {208, 208}, "q6_k"}};
      for (int f = 0; f < 3; f++) {
        int64_t rb = (nk / 256) * kq[f].block;
        for (size_t i = 0; i < 4 * (size_t)rb; i++) kbuf[i] = (uint8_t)next32();
        for (int64_t b = 0; b < 4 * (nk / 256); b++) {
          uint8_t *blk = kbuf + b * kq[f].block;
          for (int e = 0; e < 2; e++) {
            uint8_t *hp = blk + kq[f].d_off[e] + 1; /* high byte of the half */
            if ((*hp & 0x7c) == 0x7c) *hp &= 0xbf;   /* no inf / NaN */
            if (next32() % 4 == 0) {                 /* an extreme d / dmin */
              uint16_t v = kd_extreme[next32() % (sizeof kd_extreme / sizeof kd_extreme[0])];
              hp[-1] = (uint8_t)(v & 0xff);
              hp[0] = (uint8_t)(v >> 8);
            }
          }
          if (next32() % 4 == 0) {
            if (f < 2) memset(blk + 4, 0xff, 12);                        /* sc = m = 63 */
            else for (int i = 0; i < 16; i++) blk[192 + i] = (next32() & 1) ? 0x80 : 0x7f; /* -128 / 127 */
          }
        }
        kq[f].da(kbuf, kd1, nk);
        kq[f].db(kbuf, kd2, nk);
        for (int64_t i = 0; i < nk; i++)
          CHECK(bits(kd1[i]) == bits(kd2[i]), "%s dequant_%s n=%lld i=%lld", k->name, kq[f].nm, (long long)nk, (long long)i);
        for (int i = 0; i < 4; i++) kq[f].db(kbuf + i * rb, kd2 + i * nk, nk);
        kq[f].a(kbuf, rb, x, nk, ya);
        ref->dot4_f32(kd2, nk, x, nk, yb);
        for (int i = 0; i < 4; i++)
          CHECK(bits(ya[i]) == bits(yb[i]) || (ya[i] != ya[i] && yb[i] != yb[i]), "%s dot4_%s n=%lld row %d", k->name, kq[f].nm, (long long)nk, i);
      }
    }
    uint16_t *h = (uint16_t *)(void *)qbuf;
    k->dot4_f16(h, n, x, n, ya);
    ref->dot4_f16(h, n, x, n, yb);
    /* random halves include inf and NaN: NaN results must agree as NaN (payloads are not
     * part of the contract: hashes canonicalise them) */
    for (int i = 0; i < 4; i++) CHECK(bits(ya[i]) == bits(yb[i]) || (ya[i] != ya[i] && yb[i] != yb[i]), "%s dot4_f16 n=%lld", k->name, (long long)n);
    k->dot4_bf16(h, n, x, n, ya);
    ref->dot4_bf16(h, n, x, n, yb);
    for (int i = 0; i < 4; i++) CHECK(bits(ya[i]) == bits(yb[i]) || (ya[i] != ya[i] && yb[i] != yb[i]), "%s dot4_bf16 n=%lld", k->name, (long long)n);
  }
  compare_i8(k, ref);
  compare_q4_scales(k, ref);
  compare_q4_1_long(k, ref);
  compare_math(k, ref);
  compare_widen(k, ref);
  compare_train(k, ref);
  return failures == before;
}

int main(void) {
  const lrt_kernels *best = lrt_kernels_get();
  printf("kernel path in use: %s\n", best->name);
  compare_path(&lrt_kernels_ref, &lrt_kernels_ref);
  /* every other path this build and machine can run (avx2, avx512, neon, wasm_simd128, ...),
   * as dispatch.c completes it (entries a path leaves NULL are the reference's) */
  int checked = 0;
  for (int32_t p = 0;; p++) {
    const char *nm;
    size_t len;
    if (lrt_kernels_available(p, &nm, &len) != LRT_OK) break;
    if (strcmp(nm, "reference") == 0) continue;
    CHECK(lrt_kernels_select(nm, len) == LRT_OK && strcmp(lrt_kernels_get()->name, nm) == 0, "select %s", nm);
    if (compare_path(lrt_kernels_get(), &lrt_kernels_ref)) printf("%s == reference on all cases\n", nm);
    checked++;
  }
  lrt_kernels_select("auto", 4);
  if (!checked) printf("no SIMD path runs on this machine: only the reference is checked\n");
  /* the comparison can fail: a 4-lane order differs from dot8 on random data */
  lrt_kernels wrong = lrt_kernels_ref;
  wrong.name = "wrong-4-lanes";
  wrong.dot_f32 = dot_f32_4lanes;
  int saved = failures;
  quiet = 1;
  int caught = !compare_path(&wrong, &lrt_kernels_ref);
  quiet = 0;
  failures = saved;
  CHECK(caught, "a kernel with a 4-lane order was not detected");
  if (caught) printf("a perturbed lane order is detected, as it must be\n");
  wrong = lrt_kernels_ref;
  wrong.name = "wrong-tile4-bf16";
  wrong.tile4_bf16_pf = tile4_bf16_serial_tree;
  quiet = 1;
  caught = !compare_path(&wrong, &lrt_kernels_ref);
  quiet = 0;
  failures = saved;
  CHECK(caught, "a tile4_bf16_pf with another lane tree was not detected");
  if (caught) printf("a perturbed tile4_bf16_pf is detected, as it must be\n");
  wrong = lrt_kernels_ref;
  wrong.name = "wrong-exp";
  wrong.exp_f32 = exp_f32_reassociated;
  quiet = 1;
  caught = !compare_path(&wrong, &lrt_kernels_ref);
  quiet = 0;
  failures = saved;
  CHECK(caught, "an exp with a different association was not detected");
  if (caught) printf("a perturbed exp is detected, as it must be\n");
  wrong = lrt_kernels_ref;
  wrong.name = "wrong-lincomb";
  wrong.lincomb_f32 = lincomb_f32_pairs;
  quiet = 1;
  compare_train(&wrong, &lrt_kernels_ref);
  caught = failures > saved;
  quiet = 0;
  failures = saved;
  CHECK(caught, "a lincomb_f32 with pairs added first was not detected");
  if (caught) printf("a perturbed training chain is detected, as it must be\n");
  /* int8 activations: each wrong entry alone must be caught by compare_i8 */
  {
    const char *what[2] = {"dot_q8_0_i8 with blocks summed in order", "rows_q4_1_i8 with another lane tree"};
    int all = 1;
    for (int e = 0; e < 2; e++) {
      wrong = lrt_kernels_ref;
      wrong.name = "wrong-i8";
      if (e == 0) wrong.dot_q8_0_i8 = dot_q8_0_i8_sequential;
      else wrong.rows_q4_1_i8 = rows_q4_1_i8_other_tree;
      quiet = 1;
      compare_i8(&wrong, &lrt_kernels_ref);
      caught = failures > saved;
      quiet = 0;
      failures = saved;
      CHECK(caught, "a wrong int8-activation kernel (%s) was not detected", what[e]);
      all &= caught;
    }
    if (all) printf("a perturbed int8-activation kernel is detected, as it must be\n");
  }

  /* own math sanity */
  CHECK(lrt_expf(0.0f) == 1.0f, "expf(0)");
  CHECK(lrt_expf(-200.0f) == 0.0f, "expf(-200)");
  CHECK(bits(lrt_expf(100.0f)) == 0x7f800000u, "expf(100) = inf");
  CHECK(lrt_tanhf(-0.5f) == -lrt_tanhf(0.5f), "tanh odd");
  CHECK(lrt_tanhf(20.0f) == 1.0f, "tanh(20)");
  double s, c;
  lrt_sincos(0.0, &s, &c);
  CHECK(s == 0.0 && c == 1.0, "sincos(0)");

  if (failures) {
    printf("%d kernel checks FAILED\n", failures);
    return 1;
  }
  printf("all kernel checks passed\n");
  return 0;
}
