/* kernels.h -- the hot loops, behind a table chosen once at start-up.
 *
 * The reference implementation (ref.c) is the spec: every other path must return the same
 * bits for every input (tests/test_kernels compares them). The canonical dot product order
 * (docs/numerics.md, "dot8"):
 *   for i in 0, 8, 16, ... while i + 8 <= n:  acc[j] = acc[j] + w[i+j] * x[i+j], j = 0..7
 *   t[j] = acc[j] + acc[j+4]           (j = 0..3)
 *   s    = (t[0] + t[2]) + (t[1] + t[3])
 *   for the n % 8 tail, in order:      s = s + w[i] * x[i]
 * Each product and each sum is rounded to float separately (no FMA). F16/BF16 weights are
 * widened to float exactly before the product, so a BF16 model and its F32 copy give the
 * same bits. */
#ifndef LOOMRT_KERNELS_H
#define LOOMRT_KERNELS_H

#include <stdint.h>

#include "../base/base.h" /* lrt_f16_to_f32, lrt_rd_u16le (the int8-activation block rule below) */

typedef struct lrt_kernels {
  const char *name;
  float (*dot_f32)(const float *w, const float *x, int64_t n);
  float (*dot_f16)(const uint16_t *w, const float *x, int64_t n);
  float (*dot_bf16)(const uint16_t *w, const float *x, int64_t n);
  /* sum of x[0..n) in the dot8 order (softmax denominators, norms) */
  float (*sum_f32)(const float *x, int64_t n);
  /* One weight row against M activation rows (the matrix-matrix building block):
   *   y[t * ys] = dot(w, x + t * xs, n)  for t < M
   * Every y is bit-identical to the single dot above (batch invariance); fast paths only
   * share the weight loads across t. w is float (F32) or uint16 (F16 / BF16). */
  void (*rows_f32)(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, float *y, int64_t ys);
  void (*rows_f16)(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, float *y, int64_t ys);
  void (*rows_bf16)(const void *w, const float *x, int64_t xs, int64_t M, int64_t n, float *y, int64_t ys);
  /* Four weight rows (w + i*ws, i < 4) against one x: y[i] = dot(w + i*ws, x, n). The
   * decode building block: four independent accumulator chains, same per-row order. */
  void (*dot4_f32)(const void *w, int64_t ws, const float *x, int64_t n, float *y);
  void (*dot4_f16)(const void *w, int64_t ws, const float *x, int64_t n, float *y);
  void (*dot4_bf16)(const void *w, int64_t ws, const float *x, int64_t n, float *y);
  /* Dequantize one row of n elements (n % 32 == 0) of a GGUF block format to float:
   *   Q8_0  y = d * q        Q4_0  y = d * (q - 8)        Q4_1  y = d * q + m
   * (d, m widened from F16 exactly; product rounded, then the sum). Quantized matrices are
   * computed as "dequantize the row, then rows_f32", so their bits equal those of the same
   * weights dequantized to F32 in a file. */
  void (*dequant_q8_0)(const void *row, float *y, int64_t n);
  void (*dequant_q4_0)(const void *row, float *y, int64_t n);
  void (*dequant_q4_1)(const void *row, float *y, int64_t n);
  /* Fused decode kernels for block formats: four rows (w + i*row_bytes, i < 4) against one
   * x, y[i] = dot(dequant(row i), x, n) in the dot8 order -- the same bits as dequantizing
   * each row and calling dot4_f32, without the round trip through memory. n % 32 == 0.
   * (Entries added at the end: tables initialised by position leave them NULL, and
   * dispatch.c then takes the reference.) */
  void (*dot4_q8_0)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  void (*dot4_q4_0)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  void (*dot4_q4_1)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  /* Elementwise own math (csrc/math.c), vectorized with exactly the per-lane operations of
   * the scalar functions, so the bits are those of the scalar loop:
   *   exp_f32:      y[i] = lrt_expf(x[i])                  (softmax numerators; y may equal x)
   *   silu_mul_f32: y[i] = lrt_siluf(g[i]) * u[i]          (SwiGLU; y may equal g or u)
   * NaN inputs give NaN (payloads are not part of the contract). */
  void (*exp_f32)(const float *x, float *y, int64_t n);
  void (*silu_mul_f32)(const float *g, const float *u, float *y, int64_t n);
  /* GGUF K-quants (256-element super-blocks, n % 256 == 0; layouts as ggml's block_q4_K,
   * block_q5_K, block_q6_K; exact rules in docs/numerics.md):
   *   Q4_K, Q5_K  y = (d * sc) * q - (dmin * m)     (6-bit sc, m per 32 elements)
   *   Q6_K        y = (d * sc) * (q - 32)           (int8 sc per 16 elements)
   * every product and the difference rounded to float separately. dot4_q4_k/q5_k/q6_k have
   * the contract of dot4_q4_1 above: the bits of dequantize-then-dot4_f32. (Appended at the
   * end of the table: paths that do not set them get the reference from dispatch.c.) */
  void (*dequant_q4_k)(const void *row, float *y, int64_t n);
  void (*dequant_q5_k)(const void *row, float *y, int64_t n);
  void (*dequant_q6_k)(const void *row, float *y, int64_t n);
  void (*dot4_q4_k)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  void (*dot4_q5_k)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  void (*dot4_q6_k)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  /* The prefill building block: four F32 weight rows (w + i*ws, i < 4) against M
   * activation rows (x + t*xs, t < M):
   *   y[t * ys + i] = dot_f32(w + i*ws, x + t*xs, n)
   * every element bit-identical to the single dot (fast paths keep a register tile of
   * rows x tokens, each accumulator in the dot8 order). */
  void (*tile4_f32)(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                    int64_t ys);
  /* Exact widening of a row of halves to float (prefill's F16/BF16 rows):
   *   y[i] = lrt_f16_to_f32(h[i])  /  y[i] = lrt_bf16_to_f32(h[i])   (NaN payloads kept) */
  void (*widen_f16)(const uint16_t *h, float *y, int64_t n);
  void (*widen_bf16)(const uint16_t *h, float *y, int64_t n);
  /* Int8 activations (LRT_OPEN_INT8_ACTIVATIONS, opt-in): one row of a block format against
   * an activation row quantized by lrt_quantize_act_q8 (qx int8[n], dx block scales, sx block
   * sums of qx; n % 32 == 0). Per block an exact integer sum, then the float combination of
   * lrt_i8_cb_* below, and the row is sum_f32 of those block results (dot8 lanes over blocks,
   * tree, tail). Inputs as lrt_quantize_act_q8 makes them: every q_x in [-127, 127] (the AVX2
   * Q8_0 kernel negates them) and sx the true block sums (the AVX2 Q4_0 kernel uses
   * sum (q_w - 8) q_x = sum q_w q_x - 8 sx). d_w * dx_b is a product of two halves, so exact. */
  float (*dot_q8_0_i8)(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n);
  float (*dot_q4_0_i8)(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n);
  float (*dot_q4_1_i8)(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t n);
  /* The same row against M activation rows (prefill): qx rows n apart, dx / sx rows n / 32
   * apart; y[t * ys] = dot_*_i8(w, qx + t * n, dx + t * n / 32, sx + t * n / 32, n), bit for bit. */
  void (*rows_q8_0_i8)(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M, int64_t n,
                       float *y, int64_t ys);
  void (*rows_q4_0_i8)(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M, int64_t n,
                       float *y, int64_t ys);
  void (*rows_q4_1_i8)(const void *w, const int8_t *qx, const float *dx, const int32_t *sx, int64_t M, int64_t n,
                       float *y, int64_t ys);
  /* GGUF Q5_0 (22 bytes: F16 d, 32 high bits qh little-endian, 16 bytes of nibbles laid out as
   * Q4_0's) and Q5_1 (24 bytes: F16 d, F16 m, qh, nibbles); element j has
   * q = nibble | ((qh >> j) & 1) << 4 (0..31):  Q5_0  y = d * (q - 16)   Q5_1  y = d * q + m
   * (product rounded, then the sum), as gguf-py dequantizes them. dot4_q5_0/q5_1 have the
   * contract of dot4_q4_1. (Q5_0 is the fallback llama.cpp's K-quant presets use for rows that
   * are not a multiple of 256 long, e.g. every matrix of SmolLM2-135M.) */
  void (*dequant_q5_0)(const void *row, float *y, int64_t n);
  void (*dequant_q5_1)(const void *row, float *y, int64_t n);
  void (*dot4_q5_0)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  void (*dot4_q5_1)(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
  /* Training (csrc/train/): elementwise chains that SIMD paths vectorize across e, never
   * across j, so every output keeps its one chain of roundings in the order of j:
   *   lincomb_f32: y[e] = y[e] + a[j] * X[j * xs + e]   for j = 0, 1, ..., n-1, e < d
   *                (attention's P V and dQ = dS K: the caller zeroes y first)
   *   rank1_f32:   Y[j * ys + e] = Y[j * ys + e] + a[j] * x[e]   for j < n, e < d
   *                (attention's dK += dS^T q, dV += P^T dO, one query row per call)
   * Each product is rounded, then the sum (no FMA). */
  void (*lincomb_f32)(const float *a, const float *X, int64_t xs, int64_t n, int64_t d, float *y);
  void (*rank1_f32)(const float *a, const float *x, int64_t n, int64_t d, float *Y, int64_t ys);
  /* Own log of probabilities (the weave's mix): y[i] = x[i] > 0 ? (float)lrt_log((double)x[i])
   * : -inf (NaN too), the scalar function's double operations lane for lane. y may equal x. */
  void (*log_f32)(const float *x, float *y, int64_t n);
  /* Training: lincomb_f32 for R output rows at once, the coefficients of row r at
   * A[r * ar + j * aj] (a row of a matrix: aj = 1; a column: ar = 1, aj = its row stride):
   *   Y[r * ys + e] = Y[r * ys + e] + A[r * ar + j * aj] * X[j * xs + e]  for j = 0..n-1 in order
   * for r < R, e < d: every element one chain over j, as lincomb_f32 (attention's P V, dS K,
   * dS^T Q, P^T dO with a block of rows in registers). (Appended: tables initialised by
   * position leave it NULL and dispatch.c takes the reference.) */
  void (*lincomb_rows_f32)(const float *A, int64_t ar, int64_t aj, const float *X, int64_t xs, int64_t R, int64_t n,
                           int64_t d, float *Y, int64_t ys);
  /* The tile read straight from the weights (decode, speculation's verification chunks, prefill
   * of F32 / F16 / BF16 matrices): four rows (w + i*ws, ws in elements) against M activation rows,
   *   y[t * ys + i] = dot_f32 / dot_f16 / dot_bf16 (w + i*ws, x + t*xs, n)
   * bit for bit -- for halves also tile4_f32 on the rows widened to float (the widening is exact);
   * fast paths widen in registers, once per weight load and block of tokens, instead of writing
   * float rows to memory first. pf is NULL or four more rows of the same type and stride (pf +
   * i*ws, n elements each, normally the next tile's): fast paths ask the cache for them a line
   * at a time while they compute (one burst of prefetches stalls the core; spread over the
   * loop the next rows arrive while this tile computes). pf never changes a result. (Appended
   * at the end: tables initialised by position leave them NULL, and dispatch.c then takes the
   * reference.) */
  void (*tile4_f32_pf)(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                       int64_t ys, const float *pf);
  void (*tile4_f16_pf)(const uint16_t *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                       int64_t ys, const uint16_t *pf);
  void (*tile4_bf16_pf)(const uint16_t *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                        int64_t ys, const uint16_t *pf);
  /* Int8 activations, prefill tile (optional: NULL in every table without one, then forward.c
   * uses rows_*_i8; dispatch.c does not fill these from the reference). The same products as
   * rows_*_i8, bit for bit, on block-interleaved copies made once per chunk: i8_pack_x quantizes
   * M float activation rows x (n apart) by lrt_quantize_act_q8's rule, bit for bit, into
   * M * LRT_I8_PX_BYTES(n) bytes, i8_pack_w R
   * weight rows (row_bytes apart, format fmt = LRT_I8_Q8_0 / Q4_0 / Q4_1) into
   * R * LRT_I8_PW_BYTES(n) bytes (each writes LRT_I8_ROUND4(M) / LRT_I8_ROUND4(R) rows, the
   * last ones zero, so that tiles of four tokens / rows need no edge code), and i8_tile writes
   *   y[t * ys + (cols ? cols[r] : r)] = rows_<fmt>_i8 result of weight row r and token t
   * for r < R, t < M. The layout (avx2.c): per group of eight blocks, 32-bit lane j of vector k
   * holds elements 4k..4k+3 of block 8g + j, so one vpdpbusd per vector adds every block's
   * partial sum into its own lane; the last group is zero-padded. Alignment: 32 bytes. */
  void (*i8_pack_x)(const float *x, int64_t M, int64_t n, void *out);
  void (*i8_pack_w)(int fmt, const void *w, int64_t row_bytes, int64_t R, int64_t n, void *out);
  void (*i8_tile)(int fmt, const void *pw, int64_t R, const void *px, int64_t M, int64_t n, float *y, int64_t ys,
                  const int32_t *cols);
} lrt_kernels;

/* the int8 prefill tile's formats and packed sizes (bytes per activation row / weight row) */
enum { LRT_I8_Q8_0 = 0, LRT_I8_Q4_0 = 1, LRT_I8_Q4_1 = 2 };
#define LRT_I8_GROUPS(n) (((n) / 32 + 7) / 8)
#define LRT_I8_ROUND4(m) (((m) + 3) / 4 * 4)
#define LRT_I8_PX_BYTES(n) (LRT_I8_GROUPS(n) * 320)
#define LRT_I8_PW_BYTES(n) (LRT_I8_GROUPS(n) * 352)

/* Shared by the tile4_f32 paths: finish a tile of four rows (w + r*ws) x three tokens
 * (x + k*xs, outputs y + k*ys) whose eight-lane parts are already reduced into s[4*k + r]
 * up to element i: the scalar tail in the dot8 order, then the stores. */
static inline void lrt_tile4_finish(const float *w, int64_t ws, const float *x, int64_t xs, int64_t i, int64_t n,
                                    float s[12], float *y, int64_t ys) {
  for (; i < n; i++)
    for (int k = 0; k < 3; k++)
      for (int r = 0; r < 4; r++) s[4 * k + r] = s[4 * k + r] + w[r * ws + i] * x[k * xs + i];
  for (int k = 0; k < 3; k++)
    for (int r = 0; r < 4; r++) y[k * ys + r] = s[4 * k + r];
}

/* A hint to the cache (the tile4_*_pf kernels): load the line at p soon. Never changes a result. */
#if defined(__GNUC__) || defined(__clang__)
#define LRT_KPREFETCH(p) __builtin_prefetch((p), 0, 3)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define LRT_KPREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define LRT_KPREFETCH(p) ((void)(p))
#endif
/* The tile4_*_pf kernels' spread-out prefetch: at element i of a row, a line of each of the four
 * rows pf, pf + ws, pf + 2ws, pf + 3ws (called once per 64 bytes of a row). */
#define LRT_KPREFETCH_ROWS4(pf, ws, i)                                                    \
  do {                                                                                    \
    LRT_KPREFETCH((pf) + (i)); LRT_KPREFETCH((pf) + (ws) + (i));                          \
    LRT_KPREFETCH((pf) + 2 * (ws) + (i)); LRT_KPREFETCH((pf) + 3 * (ws) + (i));           \
  } while (0)

/* Int8 activations: the result c_b of block b of a weight row (the reference's rule, shared by
 * every path for its scalar tail). S_b is an exact integer sum (|S_b| < 2^24, so exact as a
 * float); each product and sum is rounded to float:
 *   Q8_0  c_b = (d_w * dx_b) * S_b,  S_b = sum q_w * q_x
 *   Q4_0  c_b = (d_w * dx_b) * S_b,  S_b = sum (q_w - 8) * q_x
 *   Q4_1  c_b = (d_w * dx_b) * S_b + (m_w * dx_b) * sx_b,  S_b = sum q_w * q_x */
static inline float lrt_i8_cb_q8_0(const uint8_t *p, const int8_t *qx, const float *dx, const int32_t *sx, int64_t b) {
  (void)sx;
  p += b * 34;
  qx += b * 32;
  int32_t S = 0;
  for (int i = 0; i < 32; i++) S += (int32_t)(int8_t)p[2 + i] * qx[i];
  return (lrt_f16_to_f32(lrt_rd_u16le(p)) * dx[b]) * (float)S;
}
static inline float lrt_i8_cb_q4_0(const uint8_t *p, const int8_t *qx, const float *dx, const int32_t *sx, int64_t b) {
  (void)sx;
  p += b * 18;
  qx += b * 32;
  int32_t S = 0;
  for (int i = 0; i < 16; i++) S += ((p[2 + i] & 15) - 8) * qx[i] + ((p[2 + i] >> 4) - 8) * qx[i + 16];
  return (lrt_f16_to_f32(lrt_rd_u16le(p)) * dx[b]) * (float)S;
}
static inline float lrt_i8_cb_q4_1(const uint8_t *p, const int8_t *qx, const float *dx, const int32_t *sx, int64_t b) {
  p += b * 20;
  qx += b * 32;
  int32_t S = 0;
  for (int i = 0; i < 16; i++) S += (p[4 + i] & 15) * qx[i] + (p[4 + i] >> 4) * qx[i + 16];
  float dd = lrt_f16_to_f32(lrt_rd_u16le(p)) * dx[b], md = lrt_f16_to_f32(lrt_rd_u16le(p + 2)) * dx[b];
  return dd * (float)S + md * (float)sx[b];
}

extern const lrt_kernels lrt_kernels_ref;
#if defined(__x86_64__) || defined(_M_X64)
extern const lrt_kernels lrt_kernels_avx2; /* needs AVX2 + F16C, checked at run time */
/* avx2_math.c: exp_f32 / silu_mul_f32 for AVX2 (also used by the avx512 table) */
void lrt_exp_f32_avx2(const float *x, float *y, int64_t n);
void lrt_silu_mul_f32_avx2(const float *g, const float *u, float *y, int64_t n);
void lrt_log_f32_avx2(const float *x, float *y, int64_t n);
/* avx2.c: the prefill tile (also used by the avx512 table) */
void lrt_tile4_f32_avx2(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                        int64_t ys);
/* avx2.c: the training chains (also used by the avx512 table) */
void lrt_lincomb_f32_avx2(const float *a, const float *X, int64_t xs, int64_t n, int64_t d, float *y);
void lrt_rank1_f32_avx2(const float *a, const float *x, int64_t n, int64_t d, float *Y, int64_t ys);
void lrt_lincomb_rows_f32_avx2(const float *A, int64_t ar, int64_t aj, const float *X, int64_t xs, int64_t R, int64_t n,
                               int64_t d, float *Y, int64_t ys);
/* avx2.c: the K-quant kernels (also used by the avx512 table: eight lanes per dot anyway) */
void lrt_dequant_q4_k_avx2(const void *row, float *y, int64_t n);
void lrt_dequant_q5_k_avx2(const void *row, float *y, int64_t n);
void lrt_dequant_q6_k_avx2(const void *row, float *y, int64_t n);
void lrt_dot4_q4_k_avx2(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
void lrt_dot4_q5_k_avx2(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
void lrt_dot4_q6_k_avx2(const void *w, int64_t row_bytes, const float *x, int64_t n, float *y);
/* avx2.c: set the six int8-activation entries (dot_*_i8, rows_*_i8) of a table to the VNNI
 * kernels (vpdpbusd; same integer sums, so the bits of the AVX2 ones): AVX512-VNNI + VL on
 * 256-bit registers, or AVX-VNNI */
void lrt_i8_kernels_avx512vnni(lrt_kernels *t);
void lrt_i8_kernels_avxvnni(lrt_kernels *t);
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(LRT_AVX512_EMULATE)
extern const lrt_kernels lrt_kernels_avx512; /* AVX-512F + AVX2 + F16C; opt-in, see avx512.c */
/* avx512.c: the AVX2 table with the Q4_0 / Q4_1 decode kernels replaced by AVX-512VL table
 * lookups (256-bit); only those entries are set, dispatch.c takes the rest from the AVX2 table */
extern const lrt_kernels lrt_kernels_avx2_avx512vl;
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
extern const lrt_kernels lrt_kernels_neon; /* aarch64 baseline */
#endif
#if defined(__wasm_simd128__)
extern const lrt_kernels lrt_kernels_wasm_simd128; /* built with -msimd128 */
#endif

/* The kernel table in use: the best path the CPU and OS support, or the reference when the
 * environment variable LOOMRT_KERNELS=reference is set. Chosen once, thread-safely. */
const lrt_kernels *lrt_kernels_get(void);

#endif
