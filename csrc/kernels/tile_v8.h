/* tile_v8.h -- the prefill tile for the paths that hold the eight dot8 lanes in two 4-wide
 * registers (neon.c, wasm_simd.c). Included by those files after they define the v8 type and
 * v8_zero, v8_macc, load_x, hsum8 and dot4_f32 for their instruction set; defines the static
 * function TILE4_V8_NAME, and with TILE4_PF_V8_SUFFIX defined tile4_f32_pf_SUFFIX,
 * tile4_f16_pf_SUFFIX and tile4_bf16_pf_SUFFIX (kernels.h). (On aarch64 the twelve accumulators take 24 of the 32 vector
 * registers; an engine with fewer spills some: the bits do not depend on it.) */
/* tile4_f32: four weight rows x three tokens, twelve dot8 accumulators; leftover tokens
 * through dot4_f32, tails in the scalar order (lrt_tile4_finish). */
#define TILE_ROW(a0, a1, a2, a3, xv)                                                          \
  a0 = v8_macc(a0, load_x(w0, i), xv); a1 = v8_macc(a1, load_x(w1, i), xv);                   \
  a2 = v8_macc(a2, load_x(w2, i), xv); a3 = v8_macc(a3, load_x(w3, i), xv)
static void TILE4_V8_NAME(const float *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y,
                           int64_t ys) {
  const float *w0 = w, *w1 = w + ws, *w2 = w1 + ws, *w3 = w2 + ws;
  int64_t t = 0;
  for (; t + 3 <= M; t += 3) {
    const float *x0 = x + t * xs, *x1 = x0 + xs, *x2 = x1 + xs;
    v8 a00 = v8_zero(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    v8 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      v8 xv = load_x(x0, i);
      TILE_ROW(a00, a01, a02, a03, xv);
      xv = load_x(x1, i);
      TILE_ROW(a10, a11, a12, a13, xv);
      xv = load_x(x2, i);
      TILE_ROW(a20, a21, a22, a23, xv);
    }
    float s[12] = {hsum8(a00), hsum8(a01), hsum8(a02), hsum8(a03), hsum8(a10), hsum8(a11),
                   hsum8(a12), hsum8(a13), hsum8(a20), hsum8(a21), hsum8(a22), hsum8(a23)};
    lrt_tile4_finish(w, ws, x0, xs, i, n, s, y + t * ys, ys);
  }
  for (; t < M; t++) {
    float y4[4];
    dot4_f32(w, ws, x + t * xs, n, y4);
    for (int r = 0; r < 4; r++) y[t * ys + r] = y4[r];
  }
}
#undef TILE_ROW

#if defined(TILE4_PF_V8_SUFFIX)
/* tile4_f32_pf / tile4_f16_pf / tile4_bf16_pf (kernels.h): the same tile read straight from
 * F32 / F16 / BF16 rows, each eight weights loaded (and for halves widened, exactly) once and
 * used for the three tokens, the tail in the scalar order with the scalar widening; the rows
 * at pf are asked of the cache a line at a time during the first block of tokens. Needs
 * load_f32 / load_f16 / load_bf16, tail_f32 / tail_f16 / tail_bf16 and dot4_f32 / dot4_f16 /
 * dot4_bf16 from the including file. */
#define TILE4_PF_CAT2(a, b) a##b
#define TILE4_PF_CAT(a, b) TILE4_PF_CAT2(a, b)
#define TILE_PF_ROW(a0, a1, a2, LOAD, wr)                                                     \
  {                                                                                           \
    v8 wv_ = LOAD(wr, i);                                                                     \
    a0 = v8_macc(a0, wv_, load_x(x0, i)); a1 = v8_macc(a1, wv_, load_x(x1, i));               \
    a2 = v8_macc(a2, wv_, load_x(x2, i));                                                     \
  }
#define DEFINE_TILE4_PF_V8(NAME, WT, LOAD, TAIL, DOT4)                                        \
  static void NAME(const WT *w, int64_t ws, const float *x, int64_t xs, int64_t M, int64_t n, float *y, int64_t ys, \
                   const WT *pf) {                                                            \
    const WT *w0 = w, *w1 = w + ws, *w2 = w1 + ws, *w3 = w2 + ws;                             \
    const int64_t pm = 64 / (int64_t)sizeof(WT) - 1; /* one line per row every 64 bytes */    \
    int64_t t = 0;                                                                            \
    for (; t + 3 <= M; t += 3) {                                                              \
      const float *x0 = x + t * xs, *x1 = x0 + xs, *x2 = x1 + xs;                             \
      v8 a00 = v8_zero(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00; \
      v8 a20 = a00, a21 = a00, a22 = a00, a23 = a00;                                          \
      int64_t i = 0;                                                                          \
      for (; i + 8 <= n; i += 8) {                                                            \
        if (pf && (i & pm) == 0) LRT_KPREFETCH_ROWS4(pf, ws, i);                              \
        TILE_PF_ROW(a00, a10, a20, LOAD, w0)                                                  \
        TILE_PF_ROW(a01, a11, a21, LOAD, w1)                                                  \
        TILE_PF_ROW(a02, a12, a22, LOAD, w2)                                                  \
        TILE_PF_ROW(a03, a13, a23, LOAD, w3)                                                  \
      }                                                                                       \
      pf = NULL;                                                                              \
      float s[12] = {hsum8(a00), hsum8(a01), hsum8(a02), hsum8(a03), hsum8(a10), hsum8(a11),  \
                     hsum8(a12), hsum8(a13), hsum8(a20), hsum8(a21), hsum8(a22), hsum8(a23)}; \
      for (int k = 0; k < 3; k++)                                                             \
        for (int r = 0; r < 4; r++) {                                                         \
          float sk = s[4 * k + r];                                                            \
          for (int64_t j = i; j < n; j++) sk = sk + TAIL(w + r * ws, j) * x[(t + k) * xs + j]; \
          y[(t + k) * ys + r] = sk;                                                           \
        }                                                                                     \
    }                                                                                         \
    for (; t < M; t++) {                                                                      \
      float y4[4];                                                                            \
      DOT4(w, ws, x + t * xs, n, y4);                                                         \
      for (int r = 0; r < 4; r++) y[t * ys + r] = y4[r];                                      \
    }                                                                                         \
  }
DEFINE_TILE4_PF_V8(TILE4_PF_CAT(tile4_f32_pf_, TILE4_PF_V8_SUFFIX), float, load_f32, tail_f32, dot4_f32)
DEFINE_TILE4_PF_V8(TILE4_PF_CAT(tile4_f16_pf_, TILE4_PF_V8_SUFFIX), uint16_t, load_f16, tail_f16, dot4_f16)
DEFINE_TILE4_PF_V8(TILE4_PF_CAT(tile4_bf16_pf_, TILE4_PF_V8_SUFFIX), uint16_t, load_bf16, tail_bf16, dot4_bf16)
#undef DEFINE_TILE4_PF_V8
#undef TILE_PF_ROW
#undef TILE4_PF_CAT
#undef TILE4_PF_CAT2
#endif

#if defined(CHAINS_V8_SUFFIX)
/* The training chains (kernels.h lincomb_f32 / rank1_f32) on the same registers: vectorized
 * across e only, every element one chain over j in order (a separate multiply and add per
 * step, v8_macc); needs v8_splat and store_x from the including file. */
#define CHAINS_CAT2(a, b) a##b
#define CHAINS_CAT(a, b) CHAINS_CAT2(a, b)
static void CHAINS_CAT(lincomb_f32_, CHAINS_V8_SUFFIX)(const float *a, const float *X, int64_t xs, int64_t n,
                                                       int64_t d, float *y) {
  int64_t e = 0;
  for (; e + 16 <= d; e += 16) {
    v8 y0 = load_x(y, e), y1 = load_x(y, e + 8);
    for (int64_t j = 0; j < n; j++) {
      v8 av = v8_splat(a[j]);
      y0 = v8_macc(y0, av, load_x(X + j * xs, e));
      y1 = v8_macc(y1, av, load_x(X + j * xs, e + 8));
    }
    store_x(y, e, y0);
    store_x(y, e + 8, y1);
  }
  for (; e + 8 <= d; e += 8) {
    v8 y0 = load_x(y, e);
    for (int64_t j = 0; j < n; j++) y0 = v8_macc(y0, v8_splat(a[j]), load_x(X + j * xs, e));
    store_x(y, e, y0);
  }
  for (; e < d; e++)
    for (int64_t j = 0; j < n; j++) y[e] = y[e] + a[j] * X[j * xs + e];
}
static void CHAINS_CAT(rank1_f32_, CHAINS_V8_SUFFIX)(const float *a, const float *x, int64_t n, int64_t d, float *Y,
                                                     int64_t ys) {
  for (int64_t j = 0; j < n; j++) {
    float *yr = Y + j * ys;
    v8 av = v8_splat(a[j]);
    int64_t e = 0;
    for (; e + 8 <= d; e += 8) store_x(yr, e, v8_macc(load_x(yr, e), av, load_x(x, e)));
    for (; e < d; e++) yr[e] = yr[e] + a[j] * x[e];
  }
}
#undef CHAINS_CAT
#undef CHAINS_CAT2
#endif
