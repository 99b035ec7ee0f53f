/* tpass.c -- the training forward pass (keeping activations) and the backward pass.
 *
 * One pass takes B sequences of T + 1 token ids: the first T are the inputs, the last T the
 * targets (each position predicts the next id). M = B * T rows. Every value is computed by
 * the same operations whatever B, the thread count or the kernel path (train.h):
 *   - products y = W x are kernel dot8 products (tile4_f32 / dot_f32, bit-identical);
 *   - the input gradient dX = dY W is the same with W transposed: dot8 over W's rows;
 *   - the weight gradient dW[r][k] = sum over tokens of dY[t][r] X[t][k]: per sequence one
 *     dot8 over its T tokens (dY and X transposed so tokens are contiguous), added to the
 *     accumulator sequence after sequence (bias gradients: sum_f32 over the tokens);
 *   - attention runs per (sequence, head) like inference; its backward per (sequence,
 *     kv head), the query heads of the group in order, so dK / dV of a shared kv head are
 *     summed in one order;
 *   - the loss of a sequence is sum_f32 of its token losses; the batch's is the sequence
 *     sums added in order (double).
 * The forward operations are those of inference (model/forward.c): a trained checkpoint
 * gives the same logits bits in lrt_session_eval as here. */
#include <math.h> /* sqrtf only: correctly rounded by IEEE 754 */
#include <stdlib.h>
#include <string.h>

#include "../base/lrt_math.h"
#include "../kernels/kernels.h"
#include "../model/model.h"
#include "train.h"

#define ROWS_TASK 16
#define MIN64(a, b) ((a) < (b) ? (a) : (b))
#define MAX64(a, b) ((a) > (b) ? (a) : (b))

#define W_(t, i) ((t)->w + (t)->ten[i].off)
#define G_(t, i) ((t)->G + (t)->ten[i].off)
#define WOPT(t, i) ((i) >= 0 ? W_(t, i) : NULL)
#define GOPT(t, i) ((i) >= 0 ? G_(t, i) : NULL)

/* ---- scratch ------------------------------------------------------------------------------ */

#define ACT_TASK 4096 /* elements per activation-function task */

static int32_t reserve(lrt_trainer *t, int64_t B, int64_t T) {
  lrt_tact *a = &t->act;
  if (a->mem && a->B == B && a->T == T) return LRT_OK;
  const lrt_config *c = &t->cfg;
  int64_t L = c->n_layers, D = c->dim, F = c->ffn, H = c->n_heads, V = c->vocab;
  int64_t qd = H * c->head_dim, kvd = c->n_kv_heads * c->head_dim, M = B * T;
  int64_t maxR = MAX64(MAX64(V, F), MAX64(D, qd)), maxK = MAX64(MAX64(D, F), qd);
  /* per thread: the attention backward's (T, T) block of dP / dS, and the smaller scratches */
  int64_t thr = MAX64(MAX64(MAX64(4 * maxK, 2 * T), 2 * D), MAX64(T * T, ACT_TASK)) + 16;
  /* sizes in floats (int32 arrays count as floats) */
  int64_t sz[64];
  int n = 0;
  sz[n++] = M; sz[n++] = M;                                   /* tok, tgt */
  sz[n++] = T * c->head_dim;                                  /* cs */
  sz[n++] = (L + 1) * M * D;                                  /* xin */
  sz[n++] = L * M * D; sz[n++] = L * M * D; sz[n++] = L * M * D; /* xn1 xmid xn2 */
  sz[n++] = L * M * qd; sz[n++] = L * M * kvd; sz[n++] = L * M * kvd; sz[n++] = L * M * qd; /* q k v att */
  sz[n++] = L * B * H * T * T;                                /* P */
  sz[n++] = c->gelu ? 0 : L * M * F; sz[n++] = L * M * F; sz[n++] = L * M * F; /* g u a */
  for (int i = 0; i < 4; i++) sz[n++] = L * M;                /* rs1 mu1 rs2 mu2 */
  sz[n++] = M; sz[n++] = M;                                   /* rsf muf */
  sz[n++] = M * D; sz[n++] = M * V; sz[n++] = M;              /* xnf logits loss */
  for (int i = 0; i < 5; i++) sz[n++] = M * D;                /* dx dxm dn dn2 tmpd */
  sz[n++] = M * F; sz[n++] = M * F;                           /* df1 df2 */
  sz[n++] = M * qd; sz[n++] = M * kvd; sz[n++] = M * kvd; sz[n++] = M * qd; /* dq dk dv datt */
  sz[n++] = M * maxR; sz[n++] = M * maxK; sz[n++] = maxR * maxK; /* dyt xt wt */
  sz[n++] = thr * t->threads;                                 /* thr */
  double total = 0;
  for (int i = 0; i < n; i++) total += (double)(sz[i] + 16);
  if (total * 4.0 > 1.8e19) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "batch too large");
  size_t bytes = (size_t)total * 4;
  free(a->mem);
  memset(a, 0, sizeof *a);
  a->mem = malloc(bytes);
  if (!a->mem)
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for the activations of %lld x %lld tokens (%.1f MiB); "
                   "use a smaller batch or context and more accumulation steps", (long long)B, (long long)T,
                   (double)bytes / 1048576.0);
  a->bytes = bytes;
  a->B = B;
  a->T = T;
  float *p = (float *)a->mem;
  int i = 0;
#define TAKE(field, type) (a->field = (type *)p, p += sz[i++] + 16)
  TAKE(tok, int32_t); TAKE(tgt, int32_t); TAKE(cs, float); TAKE(xin, float);
  TAKE(xn1, float); TAKE(xmid, float); TAKE(xn2, float);
  TAKE(q, float); TAKE(k, float); TAKE(v, float); TAKE(att, float); TAKE(P, float);
  TAKE(g, float); TAKE(u, float); TAKE(a, float);
  TAKE(rs1, float); TAKE(mu1, float); TAKE(rs2, float); TAKE(mu2, float); TAKE(rsf, float); TAKE(muf, float);
  TAKE(xnf, float); TAKE(logits, float); TAKE(loss, float);
  TAKE(dx, float); TAKE(dxm, float); TAKE(dn, float); TAKE(dn2, float); TAKE(tmpd, float);
  TAKE(df1, float); TAKE(df2, float);
  TAKE(dq, float); TAKE(dk, float); TAKE(dv, float); TAKE(datt, float);
  TAKE(dyt, float); TAKE(xt, float); TAKE(wt, float); TAKE(thr, float);
#undef TAKE
  a->thr_stride = thr;
  /* the attention probabilities above the diagonal are never written: keep them defined */
  memset(a->P, 0, (size_t)(L * B * H * T * T) * sizeof(float));
  return LRT_OK;
}

/* ---- matrix products ----------------------------------------------------------------------- */

/* Y[t * ys + r] = dot8(W[r, :], X[t, :]) (+ b[r]) for r < R, t < M; W is (R, K), X (M, K).
 * A task is a block of TOK_TASK tokens times a block of rows (all rows when there are enough
 * token blocks to share among the threads): its tokens (at most about 100 KiB) stay in cache
 * while every row of W passes over them, four rows by six tokens at a time (tile4_f32). Each
 * output is one dot8 computed by one task, so neither the split nor the thread count changes
 * a bit. */
#define TOK_TASK 48 /* a multiple of the six tokens of the widest tile */
typedef struct mm_arg {
  const float *W, *b, *X;
  int64_t R, K, M, ys;
  float *Y;
  int64_t tb, rb, nrb; /* tokens per task, rows per task, row blocks */
} mm_arg;

static void mm_task(void *vc, int64_t task, int thread) {
  (void)thread;
  const mm_arg *a = (const mm_arg *)vc;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t K = a->K, ys = a->ys;
  int64_t t0 = (task / a->nrb) * a->tb, mt = MIN64(a->tb, a->M - t0);
  int64_t r0 = (task % a->nrb) * a->rb, r1 = MIN64(r0 + a->rb, a->R), r = r0;
  for (; r + 4 <= r1; r += 4) k->tile4_f32(a->W + r * K, K, a->X + t0 * K, K, mt, K, a->Y + t0 * ys + r, ys);
  for (; r < r1; r++)
    for (int64_t t = t0; t < t0 + mt; t++) a->Y[t * ys + r] = k->dot_f32(a->W + r * K, a->X + t * K, K);
  if (a->b)
    for (int64_t t = t0; t < t0 + mt; t++)
      for (int64_t rr = r0; rr < r1; rr++) a->Y[t * ys + rr] = a->Y[t * ys + rr] + a->b[rr];
}

static void mm_run(lrt_pool *pool, const float *W, int64_t R, int64_t K, const float *b, const float *X, int64_t M,
                   float *Y, int64_t ys) {
  mm_arg a = {W, b, X, R, K, M, ys, Y, TOK_TASK, R, 1};
  int64_t ntb = (M + TOK_TASK - 1) / TOK_TASK;
  if (ntb < 8) { /* few tokens: split the rows too */
    a.tb = M;
    ntb = 1;
    a.rb = ROWS_TASK;
    a.nrb = (R + ROWS_TASK - 1) / ROWS_TASK;
  }
  lrt_pool_run(pool, mm_task, &a, ntb * a.nrb);
}

static void matmul(lrt_trainer *t, const float *W, int64_t R, int64_t K, const float *b, const float *X, int64_t M,
                   float *Y) {
  mm_run(t->pool, W, R, K, b, X, M, Y, R);
}

/* dst (C, R) = src (R, C) transposed; per sequence when `seq` > 0: src rows s*T.. form
 * block s of dst, (B, C, T). Tasks split the destination rows. */
typedef struct tr_arg {
  const float *src;
  float *dst;
  int64_t R, C, T; /* T = rows per block (sequence) */
} tr_arg;

static void tr_task(void *vc, int64_t task, int thread) {
  (void)thread;
  const tr_arg *a = (const tr_arg *)vc;
  int64_t nblk = (a->C + 15) / 16, s = task / nblk, c0 = (task % nblk) * 16, c1 = MIN64(c0 + 16, a->C);
  const float *src = a->src + s * a->T * a->C;
  float *dst = a->dst + s * a->C * a->T;
  for (int64_t r = 0; r < a->T; r++)
    for (int64_t c = c0; c < c1; c++) dst[c * a->T + r] = src[r * a->C + c];
}

/* src (R, C) with R = nseq * T: dst (nseq, C, T) */
static void transpose(lrt_trainer *t, const float *src, int64_t R, int64_t C, int64_t T, float *dst) {
  tr_arg a = {src, dst, R, C, T};
  lrt_pool_run(t->pool, tr_task, &a, (R / T) * ((C + 15) / 16));
}

/* Weight gradient: G[r][k] += sum_t dY[t][r] X[t][k], per sequence s in order (dyt (B, R, T),
 * xt (B, K, T)); gb[r] += sum_f32 of dY[., r] per sequence. A task owns a block of TOK_TASK
 * columns k times a block of rows r (all rows when there are enough column blocks) and runs
 * the sequences in order over them: its slice of X^T stays in cache while every row of dY^T
 * passes. Each G element gets its per-sequence dot8 sums in sequence order, whatever the split. */
typedef struct wg_arg {
  lrt_trainer *t;
  const float *dyt, *xt;
  int64_t R, K, T, B;
  float *G, *gb;
  int64_t rb, nrb; /* rows per task, row blocks */
} wg_arg;

static void wg_task(void *vc, int64_t task, int thread) {
  const wg_arg *a = (const wg_arg *)vc;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t K = a->K, T = a->T, R = a->R;
  int64_t k0 = (task / a->nrb) * TOK_TASK, kn = MIN64(TOK_TASK, K - k0);
  int64_t r0 = (task % a->nrb) * a->rb, r1 = MIN64(r0 + a->rb, R);
  float *tmp = a->t->act.thr + (int64_t)thread * a->t->act.thr_stride;
  for (int64_t s = 0; s < a->B; s++) {
    const float *dy = a->dyt + s * R * T, *x = a->xt + s * K * T + k0 * T;
    if (a->G && kn > 0) {
      int64_t r = r0;
      for (; r + 4 <= r1; r += 4) {
        k->tile4_f32(dy + r * T, T, x, T, kn, T, tmp, 4); /* tmp[kk * 4 + i] = dot(dy[r + i], x[kk]) */
        for (int64_t i = 0; i < 4; i++) {
          float *g = a->G + (r + i) * K + k0;
          for (int64_t kk = 0; kk < kn; kk++) g[kk] = g[kk] + tmp[kk * 4 + i];
        }
      }
      for (; r < r1; r++) {
        float *g = a->G + r * K + k0;
        for (int64_t kk = 0; kk < kn; kk++) g[kk] = g[kk] + k->dot_f32(dy + r * T, x + kk * T, T);
      }
    }
    if (a->gb && k0 == 0)
      for (int64_t r = r0; r < r1; r++) a->gb[r] = a->gb[r] + k->sum_f32(dy + r * T, T);
  }
}

/* dY (M, R) of a linear layer whose input was X (M, K): G (R, K) and gb (R) accumulate.
 * xt_ready: X is already transposed in act.xt. */
static void wgrad(lrt_trainer *t, const float *dY, int64_t R, const float *X, int64_t K, int xt_ready, float *G,
                  float *gb) {
  lrt_tact *a = &t->act;
  int64_t M = a->B * a->T;
  transpose(t, dY, M, R, a->T, a->dyt);
  if (!xt_ready && G) transpose(t, X, M, K, a->T, a->xt);
  int64_t nkb = G ? (K + TOK_TASK - 1) / TOK_TASK : 1;
  wg_arg w = {t, a->dyt, a->xt, R, K, a->T, a->B, G, gb, R, 1};
  if (nkb < 8) { /* few columns: split the rows too */
    w.rb = ROWS_TASK;
    w.nrb = (R + ROWS_TASK - 1) / ROWS_TASK;
  }
  lrt_pool_run(t->pool, wg_task, &w, nkb * w.nrb);
}

/* dX (M, K) = dY (M, R) W (R, K): W transposed into act.wt, then dot8 products over R. */
static void xgrad(lrt_trainer *t, const float *W, int64_t R, int64_t K, const float *dY, float *dX) {
  lrt_tact *a = &t->act;
  transpose(t, W, R, K, R, a->wt); /* one block: (K, R) */
  matmul(t, a->wt, K, R, NULL, dY, a->B * a->T, dX);
}

/* ---- norms (the operations of model/forward.c) ---------------------------------------------- */

typedef struct norm_arg {
  const lrt_trainer *t;
  const float *x, *w, *b, *dy;
  float *out, *rs, *mu;
  int64_t M;
} norm_arg;

static void norm_fwd_task(void *vc, int64_t task, int thread) {
  (void)thread;
  const norm_arg *a = (const norm_arg *)vc;
  const lrt_kernels *k = lrt_kernels_get();
  const lrt_config *c = &a->t->cfg;
  int64_t n = c->dim, t0 = task * 8, t1 = MIN64(t0 + 8, a->M);
  for (int64_t t = t0; t < t1; t++) {
    const float *x = a->x + t * n;
    float *out = a->out + t * n;
    if (c->layernorm) {
      float mean = k->sum_f32(x, n) / (float)n;
      for (int64_t i = 0; i < n; i++) out[i] = x[i] - mean;
      float var = k->dot_f32(out, out, n) / (float)n;
      float scale = 1.0f / sqrtf(var + c->norm_eps);
      for (int64_t i = 0; i < n; i++) out[i] = (out[i] * scale) * a->w[i] + a->b[i];
      a->rs[t] = scale;
      a->mu[t] = mean;
    } else {
      float ss = k->dot_f32(x, x, n);
      float scale = 1.0f / sqrtf(ss / (float)n + c->norm_eps);
      for (int64_t i = 0; i < n; i++) out[i] = a->w[i] * (x[i] * scale);
      a->rs[t] = scale;
      a->mu[t] = 0.0f;
    }
  }
}

static void norm_fwd(lrt_trainer *t, const float *x, const float *w, const float *b, float *out, float *rs, float *mu) {
  norm_arg a = {t, x, w, b, NULL, out, rs, mu, t->act.B * t->act.T};
  lrt_pool_run(t->pool, norm_fwd_task, &a, (a.M + 7) / 8);
}

/* the normalized value before the weight: x * r (RMS) or (x - mean) * r (LayerNorm) */
static inline float norm_xh(int ln, float x, float mu, float r) { return ln ? (x - mu) * r : x * r; }

/* dx = r * (dxh - mean(dxh) [LayerNorm] - xh * mean(dxh * xh)), dxh = dy * w (per token) */
static void norm_bwd_task(void *vc, int64_t task, int thread) {
  const norm_arg *a = (const norm_arg *)vc;
  const lrt_kernels *k = lrt_kernels_get();
  const lrt_config *c = &a->t->cfg;
  int ln = c->layernorm;
  int64_t n = c->dim, t0 = task * 8, t1 = MIN64(t0 + 8, a->M);
  float *xh = a->t->act.thr + (int64_t)thread * a->t->act.thr_stride, *dxh = xh + n;
  for (int64_t t = t0; t < t1; t++) {
    const float *x = a->x + t * n, *dy = a->dy + t * n;
    float r = a->rs[t], mu = a->mu[t];
    for (int64_t i = 0; i < n; i++) {
      xh[i] = norm_xh(ln, x[i], mu, r);
      dxh[i] = dy[i] * a->w[i];
    }
    float s = k->dot_f32(dxh, xh, n) / (float)n;
    float mdy = ln ? k->sum_f32(dxh, n) / (float)n : 0.0f;
    float *out = a->out + t * n;
    if (ln)
      for (int64_t i = 0; i < n; i++) out[i] = r * ((dxh[i] - mdy) - xh[i] * s);
    else
      for (int64_t i = 0; i < n; i++) out[i] = r * (dxh[i] - xh[i] * s);
  }
}

/* Backward of a norm: dx_out (M, D) from dy; weight / bias gradients added per sequence (each
 * sequence's sum over its tokens in order, then the sequences in order). */
static void norm_bwd(lrt_trainer *t, const float *x, const float *w, const float *rs, const float *mu, const float *dy,
                     float *dx_out, float *gw, float *gb) {
  lrt_tact *a = &t->act;
  norm_arg na = {t, x, w, NULL, dy, dx_out, (float *)rs, (float *)mu, a->B * a->T};
  lrt_pool_run(t->pool, norm_bwd_task, &na, (na.M + 7) / 8);
  int64_t D = t->cfg.dim, T = a->T;
  int ln = t->cfg.layernorm;
  float *pw = a->thr, *pb = a->thr + D; /* worker 0's scratch: the pool is idle now */
  for (int64_t s = 0; s < a->B; s++) {
    for (int64_t i = 0; i < D; i++) pw[i] = pb[i] = 0.0f;
    for (int64_t tt = 0; tt < T; tt++) {
      int64_t row = s * T + tt;
      const float *xr = x + row * D, *dr = dy + row * D;
      float r = rs[row], m = mu[row];
      for (int64_t i = 0; i < D; i++) {
        pw[i] = pw[i] + dr[i] * norm_xh(ln, xr[i], m, r);
        pb[i] = pb[i] + dr[i];
      }
    }
    for (int64_t i = 0; i < D; i++) gw[i] = gw[i] + pw[i];
    if (gb)
      for (int64_t i = 0; i < D; i++) gb[i] = gb[i] + pb[i];
  }
}

/* ---- RoPE ---------------------------------------------------------------------------------- */

/* rotate (dir = +1) or apply the transposed rotation (dir = -1, the backward) to every head of
 * M rows (width heads * hd) at their positions t % T */
static void rope_rows(const lrt_trainer *t, float *v, int64_t heads, int dir) {
  const lrt_tact *a = &t->act;
  int64_t hd = t->cfg.head_dim, half = hd / 2, M = a->B * a->T;
  for (int64_t row = 0; row < M; row++) {
    const float *cs = a->cs + (row % a->T) * hd;
    for (int64_t h = 0; h < heads; h++) {
      float *x = v + (row * heads + h) * hd;
      for (int64_t i = 0; i < half; i++) {
        float c = cs[2 * i], sn = cs[2 * i + 1], x0 = x[i], x1 = x[i + half];
        if (dir > 0) {
          x[i] = x0 * c - x1 * sn;
          x[i + half] = x1 * c + x0 * sn;
        } else {
          x[i] = x0 * c + x1 * sn;
          x[i + half] = x1 * c - x0 * sn;
        }
      }
    }
  }
}

/* ---- attention ----------------------------------------------------------------------------- */

typedef struct att_arg {
  lrt_trainer *t;
  int64_t l;
} att_arg;

static int64_t att_lo(const lrt_config *c, int64_t p) {
  return (c->sliding_window > 0 && p - c->sliding_window + 1 > 0) ? p - c->sliding_window + 1 : 0;
}

/* Blocked attention (no sliding window inside the context, the common case): the same values
 * as the row-at-a-time loops below, computed by blocks.
 * S[i][j] = dot_f32(a_i, b_j) for j <= i < T (rows of a at stride as, of b at stride bs) into
 * S (T, T): four b rows against all the a rows from theirs on (tile4_f32: each element the
 * dot8 of that pair; dot8 is symmetric, a product is the same rounded value either way).
 * zero_upper: the few elements the tiles write above the diagonal are set back to 0. */
static void att_scores(const lrt_kernels *k, const float *a, int64_t as, const float *b, int64_t bs, int64_t T,
                       int64_t hd, float *S, int zero_upper) {
  int64_t r0 = 0;
  for (; r0 + 4 <= T; r0 += 4) {
    k->tile4_f32(b + r0 * bs, bs, a + r0 * as, as, T - r0, hd, S + r0 * T + r0, T);
    if (zero_upper)
      for (int64_t t = 0; t < 3; t++)
        for (int64_t i = t + 1; i < 4; i++) S[(r0 + t) * T + r0 + i] = 0.0f;
  }
  for (; r0 < T; r0++) k->rows_f32(b + r0 * bs, a + r0 * as, as, T - r0, hd, S + r0 * T + r0, T);
}

/* Y[i] += sum over j <= i, in order, of A[i][j] X[j] (rows of Y at stride ys, X at xs; A (T, T)):
 * four rows of Y per lincomb_rows_f32 call over their common keys 0..i0, then each row's last
 * keys -- each element one chain over j in order, as lincomb_f32 per row gives */
static void att_lincomb_causal(const lrt_kernels *k, const float *A, int64_t T, const float *X, int64_t xs, int64_t hd,
                               float *Y, int64_t ys) {
  int64_t i0 = 0;
  for (; i0 + 4 <= T; i0 += 4) {
    k->lincomb_rows_f32(A + i0 * T, T, 1, X, xs, 4, i0 + 1, hd, Y + i0 * ys, ys);
    for (int64_t r = 1; r < 4; r++)
      k->lincomb_rows_f32(A + (i0 + r) * T + i0 + 1, T, 1, X + (i0 + 1) * xs, xs, 1, r, hd, Y + (i0 + r) * ys, ys);
  }
  for (; i0 < T; i0++) k->lincomb_rows_f32(A + i0 * T, T, 1, X, xs, 1, i0 + 1, hd, Y + i0 * ys, ys);
}

/* Y[j] += sum over i >= j, in order of i, of A[i][j] X[i]: the transposed product (dK += dS^T Q,
 * dV += P^T dO). Four rows j0..j0+3 of Y: each first alone over the queries i < j0 + 3 it has,
 * then together over i = j0 + 3 .. T - 1 (coefficients down the columns of A) -- per element
 * the terms in the order of i, as one rank-1 update per query gives. */
static void att_lincomb_causal_t(const lrt_kernels *k, const float *A, int64_t T, const float *X, int64_t xs,
                                 int64_t hd, float *Y, int64_t ys) {
  int64_t j0 = 0;
  for (; j0 + 4 <= T; j0 += 4) {
    for (int64_t r = 0; r < 3; r++)
      k->lincomb_rows_f32(A + (j0 + r) * T + j0 + r, 1, T, X + (j0 + r) * xs, xs, 1, 3 - r, hd, Y + (j0 + r) * ys, ys);
    k->lincomb_rows_f32(A + (j0 + 3) * T + j0, 1, T, X + (j0 + 3) * xs, xs, 4, T - j0 - 3, hd, Y + j0 * ys, ys);
  }
  for (; j0 < T; j0++) k->lincomb_rows_f32(A + j0 * T + j0, 1, T, X + j0 * xs, xs, 1, T - j0, hd, Y + j0 * ys, ys);
}

/* softmax of row i of the scores (n = i + 1 keys), in place: the operations of model/forward.c */
static void att_softmax_row(const lrt_kernels *k, float *sc, int64_t n, float scale) {
  float mx = -3.402823466e38f;
  for (int64_t j = 0; j < n; j++) {
    float v = sc[j] * scale;
    sc[j] = v;
    if (v > mx) mx = v;
  }
  for (int64_t j = 0; j < n; j++) sc[j] = sc[j] - mx;
  k->exp_f32(sc, sc, n);
  float sum = k->sum_f32(sc, n);
  for (int64_t j = 0; j < n; j++) sc[j] = sc[j] / sum;
}

static int att_blocked(const lrt_config *c, int64_t T) { return att_lo(c, T - 1) == 0; }

/* task = (sequence, query head): probabilities and output, as model/forward.c computes them */
static void att_fwd_task(void *vc, int64_t task, int thread) {
  (void)thread;
  const att_arg *aa = (const att_arg *)vc;
  lrt_trainer *t = aa->t;
  const lrt_config *c = &t->cfg;
  const lrt_tact *a = &t->act;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t H = c->n_heads, T = a->T, M = a->B * T, hd = c->head_dim, qd = H * hd, kvd = c->n_kv_heads * hd;
  int64_t s = task / H, h = task % H, kvh = h / (H / c->n_kv_heads);
  const float *Q = a->q + aa->l * M * qd, *K = a->k + aa->l * M * kvd, *Vv = a->v + aa->l * M * kvd;
  float *O = a->att + aa->l * M * qd;
  float *P = a->P + (((aa->l * a->B + s) * H + h) * T) * T;
  float scale = 1.0f / sqrtf((float)hd);
  if (att_blocked(c, T)) {
    const float *qh = Q + s * T * qd + h * hd, *kh = K + s * T * kvd + kvh * hd, *vh = Vv + s * T * kvd + kvh * hd;
    float *oh = O + s * T * qd + h * hd;
    att_scores(k, qh, qd, kh, kvd, T, hd, P, 1);
    for (int64_t i = 0; i < T; i++) {
      att_softmax_row(k, P + i * T, i + 1, scale);
      for (int64_t d = 0; d < hd; d++) oh[i * qd + d] = 0.0f;
    }
    att_lincomb_causal(k, P, T, vh, kvd, hd, oh, qd);
    return;
  }
  for (int64_t i = 0; i < T; i++) {
    int64_t lo = att_lo(c, i), n = i - lo + 1;
    const float *q = Q + (s * T + i) * qd + h * hd;
    float *sc = P + i * T + lo;
    k->rows_f32(q, K + (s * T + lo) * kvd + kvh * hd, kvd, n, hd, sc, 1); /* each the dot_f32 */
    att_softmax_row(k, sc, n, scale);
    float *o = O + (s * T + i) * qd + h * hd;
    const float *vb = Vv + (s * T + lo) * kvd + kvh * hd;
    for (int64_t d = 0; d < hd; d++) o[d] = 0.0f;
    k->lincomb_f32(sc, vb, kvd, n, hd, o); /* each column its own chain over j in order */
  }
}

/* task = (sequence, kv head): dQ of its query heads, dK and dV of the kv head */
static void att_bwd_task(void *vc, int64_t task, int thread) {
  const att_arg *aa = (const att_arg *)vc;
  lrt_trainer *t = aa->t;
  const lrt_config *c = &t->cfg;
  lrt_tact *a = &t->act;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t H = c->n_heads, KVH = c->n_kv_heads, grp = H / KVH, T = a->T, M = a->B * T, hd = c->head_dim;
  int64_t qd = H * hd, kvd = KVH * hd;
  int64_t s = task / KVH, kvh = task % KVH;
  const float *Q = a->q + aa->l * M * qd, *K = a->k + aa->l * M * kvd, *Vv = a->v + aa->l * M * kvd;
  float *dp = a->thr + (int64_t)thread * a->thr_stride, *ds = dp + T;
  float scale = 1.0f / sqrtf((float)hd);
  for (int64_t i = 0; i < T; i++) { /* dK, dV of this kv head start at 0 */
    float *dk = a->dk + (s * T + i) * kvd + kvh * hd, *dv = a->dv + (s * T + i) * kvd + kvh * hd;
    for (int64_t d = 0; d < hd; d++) dk[d] = dv[d] = 0.0f;
  }
  if (att_blocked(c, T)) {
    const float *kh = K + s * T * kvd + kvh * hd, *vh = Vv + s * T * kvd + kvh * hd;
    float *dkh = a->dk + s * T * kvd + kvh * hd, *dvh = a->dv + s * T * kvd + kvh * hd;
    float *S = dp; /* (T, T): dP, then dS in place */
    for (int64_t h = kvh * grp; h < (kvh + 1) * grp; h++) {
      const float *P = a->P + (((aa->l * a->B + s) * H + h) * T) * T;
      const float *qh = Q + s * T * qd + h * hd, *dOh = a->datt + s * T * qd + h * hd;
      float *dqh = a->dq + s * T * qd + h * hd;
      att_scores(k, dOh, qd, vh, kvd, T, hd, S, 0); /* S[i][j] = dot_f32(dO_i, v_j) */
      for (int64_t i = 0; i < T; i++) {
        const float *pr = P + i * T;
        float *sr = S + i * T;
        float rd = k->dot_f32(pr, sr, i + 1);
        for (int64_t j = 0; j <= i; j++) sr[j] = (pr[j] * (sr[j] - rd)) * scale;
        for (int64_t d = 0; d < hd; d++) dqh[i * qd + d] = 0.0f;
      }
      att_lincomb_causal(k, S, T, kh, kvd, hd, dqh, qd);    /* dQ = dS K */
      att_lincomb_causal_t(k, S, T, qh, qd, hd, dkh, kvd);  /* dK += dS^T Q */
      att_lincomb_causal_t(k, P, T, dOh, qd, hd, dvh, kvd); /* dV += P^T dO */
    }
    return;
  }
  for (int64_t h = kvh * grp; h < (kvh + 1) * grp; h++) {
    const float *P = a->P + (((aa->l * a->B + s) * H + h) * T) * T;
    for (int64_t i = 0; i < T; i++) {
      int64_t lo = att_lo(c, i), n = i - lo + 1;
      const float *pr = P + i * T + lo;
      const float *dO = a->datt + (s * T + i) * qd + h * hd, *q = Q + (s * T + i) * qd + h * hd;
      int64_t kv0 = (s * T + lo) * kvd + kvh * hd; /* key / value row lo of this kv head */
      k->rows_f32(dO, Vv + kv0, kvd, n, hd, dp, 1); /* dp[j] = dot_f32(dO, v_j) */
      float rd = k->dot_f32(pr, dp, n);
      for (int64_t j = 0; j < n; j++) ds[j] = (pr[j] * (dp[j] - rd)) * scale;
      float *dq = a->dq + (s * T + i) * qd + h * hd;
      for (int64_t d = 0; d < hd; d++) dq[d] = 0.0f;
      /* dq[d] chains over j in order; dk[j][d], dv[j][d] get one term per (head, query), in
       * the order of the loops above */
      k->lincomb_f32(ds, K + kv0, kvd, n, hd, dq);
      k->rank1_f32(ds, q, n, hd, a->dk + kv0, kvd);
      k->rank1_f32(pr, dO, n, hd, a->dv + kv0, kvd);
    }
  }
}

/* ---- loss ---------------------------------------------------------------------------------- */

typedef struct ce_arg {
  lrt_trainer *t;
  int grads;
} ce_arg;

/* per token: loss = log(sum exp(z - max)) + (max - z[target]); dz = softmax(z) - onehot */
static void ce_task(void *vc, int64_t task, int thread) {
  (void)thread;
  const ce_arg *ca = (const ce_arg *)vc;
  lrt_tact *a = &ca->t->act;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t V = ca->t->cfg.vocab, M = a->B * a->T, t0 = task * 4, t1 = MIN64(t0 + 4, M);
  for (int64_t r = t0; r < t1; r++) {
    float *z = a->logits + r * V;
    int32_t y = a->tgt[r];
    float mx = z[0];
    for (int64_t i = 1; i < V; i++)
      if (z[i] > mx) mx = z[i];
    float zy = z[y];
    for (int64_t i = 0; i < V; i++) z[i] = z[i] - mx;
    k->exp_f32(z, z, V);
    float sum = k->sum_f32(z, V);
    a->loss[r] = (float)lrt_log((double)sum) + (mx - zy);
    if (ca->grads) {
      for (int64_t i = 0; i < V; i++) z[i] = z[i] / sum;
      z[y] = z[y] - 1.0f;
    }
  }
}

/* ---- activation functions ------------------------------------------------------------------ */

typedef struct act_arg {
  lrt_trainer *t;
  int64_t l;
  int bwd;
} act_arg;

/* GELU (tanh) derivative with the forward's inner value u = k0 * (x + 0.044715 x^3):
 * d/dx = 0.5 (1 + th) + 0.5 x (1 - th^2) k0 (1 + 3 * 0.044715 x^2) */
static inline float gelu_grad(float x) {
  const float k0 = 0.79788456080286535588f;
  float inner = k0 * (x + 0.044715f * ((x * x) * x));
  float th = lrt_tanhf(inner);
  return 0.5f * (1.0f + th) + ((0.5f * x) * (1.0f - th * th)) * (k0 * (1.0f + 0.134145f * (x * x)));
}

static void act_task(void *vc, int64_t task, int thread) {
  const act_arg *aa = (const act_arg *)vc;
  lrt_trainer *t = aa->t;
  lrt_tact *a = &t->act;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t F = t->cfg.ffn, M = a->B * a->T, off = aa->l * M * F;
  int64_t i0 = task * ACT_TASK, i1 = MIN64(i0 + ACT_TASK, M * F);
  const float *g = a->g + off, *u = a->u + off;
  float *y = a->a + off;
  if (!aa->bwd) {
    if (t->cfg.gelu)
      for (int64_t i = i0; i < i1; i++) y[i] = lrt_gelu_tanhf(u[i]);
    else
      k->silu_mul_f32(g + i0, u + i0, y + i0, i1 - i0); /* lrt_siluf(g) * u, vectorized lane for lane */
    return;
  }
  /* df1 = d(activation) on entry; out: df1 = dgate (SwiGLU) or dup (GELU), df2 = dup (SwiGLU) */
  float *d1 = a->df1, *d2 = a->df2;
  if (t->cfg.gelu) {
    for (int64_t i = i0; i < i1; i++) d1[i] = d1[i] * gelu_grad(u[i]);
  } else {
    float *e = a->thr + (int64_t)thread * a->thr_stride - i0; /* e[i], i0 <= i < i1: lrt_expf(-g[i]) */
    for (int64_t i = i0; i < i1; i++) e[i] = -g[i];
    k->exp_f32(e + i0, e + i0, i1 - i0);
    for (int64_t i = i0; i < i1; i++) {
      float gi = g[i], sg = 1.0f / (1.0f + e[i]), sil = gi * sg, da = d1[i];
      d2[i] = da * sil;
      d1[i] = (da * u[i]) * (sg * (1.0f + gi * (1.0f - sg)));
    }
  }
}

static void run_act(lrt_trainer *t, int64_t l, int bwd) {
  act_arg aa = {t, l, bwd};
  int64_t n = t->act.B * t->act.T * t->cfg.ffn;
  lrt_pool_run(t->pool, act_task, &aa, (n + ACT_TASK - 1) / ACT_TASK);
}

static void add_into(float *y, const float *a, const float *b, int64_t n) { /* y = a + b */
  for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* ---- the pass ------------------------------------------------------------------------------ */

static void forward(lrt_trainer *t, int want_logits) {
  const lrt_config *c = &t->cfg;
  lrt_tact *a = &t->act;
  int64_t T = a->T, M = a->B * T, D = c->dim, F = c->ffn, L = c->n_layers, H = c->n_heads;
  int64_t qd = H * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  const float *E = W_(t, t->tok_embd);
  for (int64_t r = 0; r < M; r++) {
    float *x = a->xin + r * D;
    memcpy(x, E + (int64_t)a->tok[r] * D, (size_t)D * sizeof(float));
    if (c->learned_pos) {
      const float *pe = W_(t, t->pos_embd) + (r % T) * D;
      for (int64_t i = 0; i < D; i++) x[i] = x[i] + pe[i];
    }
  }
  for (int64_t l = 0; l < L; l++) {
    const lrt_tlayer *Ly = &t->L[l];
    float *xin = a->xin + l * M * D, *xn1 = a->xn1 + l * M * D, *xmid = a->xmid + l * M * D, *xn2 = a->xn2 + l * M * D;
    float *q = a->q + l * M * qd, *k = a->k + l * M * kvd, *v = a->v + l * M * kvd, *att = a->att + l * M * qd;
    norm_fwd(t, xin, W_(t, Ly->attn_norm), WOPT(t, Ly->attn_norm_b), xn1, a->rs1 + l * M, a->mu1 + l * M);
    matmul(t, W_(t, Ly->wq), qd, D, WOPT(t, Ly->bq), xn1, M, q);
    matmul(t, W_(t, Ly->wk), kvd, D, WOPT(t, Ly->bk), xn1, M, k);
    matmul(t, W_(t, Ly->wv), kvd, D, WOPT(t, Ly->bv), xn1, M, v);
    if (!c->learned_pos) {
      rope_rows(t, q, H, 1);
      rope_rows(t, k, c->n_kv_heads, 1);
    }
    att_arg aa = {t, l};
    lrt_pool_run(t->pool, att_fwd_task, &aa, a->B * H);
    matmul(t, W_(t, Ly->wo), D, qd, WOPT(t, Ly->bo), att, M, a->tmpd);
    add_into(xmid, xin, a->tmpd, M * D);
    norm_fwd(t, xmid, W_(t, Ly->ffn_norm), WOPT(t, Ly->ffn_norm_b), xn2, a->rs2 + l * M, a->mu2 + l * M);
    if (!c->gelu) matmul(t, W_(t, Ly->w_gate), F, D, NULL, xn2, M, a->g + l * M * F);
    matmul(t, W_(t, Ly->w_up), F, D, WOPT(t, Ly->b_up), xn2, M, a->u + l * M * F);
    run_act(t, l, 0);
    matmul(t, W_(t, Ly->w_down), D, F, WOPT(t, Ly->b_down), a->a + l * M * F, M, a->tmpd);
    add_into(a->xin + (l + 1) * M * D, xmid, a->tmpd, M * D);
  }
  if (!want_logits) return;
  norm_fwd(t, a->xin + L * M * D, W_(t, t->out_norm), WOPT(t, t->out_norm_b), a->xnf, a->rsf, a->muf);
  const float *head = t->lm_head >= 0 ? W_(t, t->lm_head) : E;
  matmul(t, head, c->vocab, D, NULL, a->xnf, M, a->logits);
}

static void backward(lrt_trainer *t) {
  const lrt_config *c = &t->cfg;
  lrt_tact *a = &t->act;
  int64_t T = a->T, M = a->B * T, D = c->dim, F = c->ffn, L = c->n_layers, H = c->n_heads, V = c->vocab;
  int64_t qd = H * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  /* LM head: its weight gradient goes to lm_head, or (tied) to tok_embd's accumulator */
  int64_t hi = t->lm_head >= 0 ? t->lm_head : t->tok_embd;
  wgrad(t, a->logits, V, a->xnf, D, 0, G_(t, hi), NULL);
  xgrad(t, W_(t, hi), V, D, a->logits, a->dn);
  norm_bwd(t, a->xin + L * M * D, W_(t, t->out_norm), a->rsf, a->muf, a->dn, a->dx, G_(t, t->out_norm),
           GOPT(t, t->out_norm_b));
  for (int64_t l = L - 1; l >= 0; l--) {
    const lrt_tlayer *Ly = &t->L[l];
    float *xin = a->xin + l * M * D, *xn1 = a->xn1 + l * M * D, *xmid = a->xmid + l * M * D, *xn2 = a->xn2 + l * M * D;
    /* MLP: out = xmid + W_down act */
    wgrad(t, a->dx, D, a->a + l * M * F, F, 0, G_(t, Ly->w_down), GOPT(t, Ly->b_down));
    xgrad(t, W_(t, Ly->w_down), D, F, a->dx, a->df1);
    run_act(t, l, 1);
    transpose(t, xn2, M, D, T, a->xt); /* shared by gate and up */
    if (!c->gelu) {
      wgrad(t, a->df1, F, xn2, D, 1, G_(t, Ly->w_gate), NULL);
      wgrad(t, a->df2, F, xn2, D, 1, G_(t, Ly->w_up), GOPT(t, Ly->b_up));
      xgrad(t, W_(t, Ly->w_gate), F, D, a->df1, a->dn);
      xgrad(t, W_(t, Ly->w_up), F, D, a->df2, a->dn2);
      add_into(a->dn, a->dn, a->dn2, M * D);
    } else {
      wgrad(t, a->df1, F, xn2, D, 1, G_(t, Ly->w_up), GOPT(t, Ly->b_up));
      xgrad(t, W_(t, Ly->w_up), F, D, a->df1, a->dn);
    }
    norm_bwd(t, xmid, W_(t, Ly->ffn_norm), a->rs2 + l * M, a->mu2 + l * M, a->dn, a->dn2, G_(t, Ly->ffn_norm),
             GOPT(t, Ly->ffn_norm_b));
    add_into(a->dxm, a->dx, a->dn2, M * D); /* d xmid */
    /* attention: xmid = xin + W_o att */
    wgrad(t, a->dxm, D, a->att + l * M * qd, qd, 0, G_(t, Ly->wo), GOPT(t, Ly->bo));
    xgrad(t, W_(t, Ly->wo), D, qd, a->dxm, a->datt);
    att_arg aa = {t, l};
    lrt_pool_run(t->pool, att_bwd_task, &aa, a->B * c->n_kv_heads);
    if (!c->learned_pos) {
      rope_rows(t, a->dq, H, -1);
      rope_rows(t, a->dk, c->n_kv_heads, -1);
    }
    transpose(t, xn1, M, D, T, a->xt);
    wgrad(t, a->dq, qd, xn1, D, 1, G_(t, Ly->wq), GOPT(t, Ly->bq));
    wgrad(t, a->dk, kvd, xn1, D, 1, G_(t, Ly->wk), GOPT(t, Ly->bk));
    wgrad(t, a->dv, kvd, xn1, D, 1, G_(t, Ly->wv), GOPT(t, Ly->bv));
    xgrad(t, W_(t, Ly->wq), qd, D, a->dq, a->dn);
    xgrad(t, W_(t, Ly->wk), kvd, D, a->dk, a->dn2);
    add_into(a->dn, a->dn, a->dn2, M * D);
    xgrad(t, W_(t, Ly->wv), kvd, D, a->dv, a->dn2);
    add_into(a->dn, a->dn, a->dn2, M * D);
    norm_bwd(t, xin, W_(t, Ly->attn_norm), a->rs1 + l * M, a->mu1 + l * M, a->dn, a->dn2, G_(t, Ly->attn_norm),
             GOPT(t, Ly->attn_norm_b));
    add_into(a->dx, a->dxm, a->dn2, M * D); /* d xin */
  }
  /* embeddings: rows added token after token, in order */
  float *ge = t->g_lookup ? t->g_lookup : G_(t, t->tok_embd);
  for (int64_t r = 0; r < M; r++) {
    float *g = ge + (int64_t)a->tok[r] * D;
    const float *d = a->dx + r * D;
    for (int64_t i = 0; i < D; i++) g[i] = g[i] + d[i];
    if (c->learned_pos) {
      float *gp = G_(t, t->pos_embd) + (r % T) * D;
      for (int64_t i = 0; i < D; i++) gp[i] = gp[i] + d[i];
    }
  }
}

static int32_t check_tokens(const lrt_trainer *t, const int32_t *tokens, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= t->cfg.vocab)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token id %d at index %lld is outside the vocabulary [0, %lld)",
                     tokens[i], (long long)i, (long long)t->cfg.vocab);
  return LRT_OK;
}

static void setup(lrt_trainer *t, int64_t T) {
  lrt_tact *a = &t->act;
  if (!t->cfg.learned_pos)
    for (int64_t p = 0; p < T; p++) lrt_rope_cs(t->inv_freq, t->cfg.head_dim / 2, p, a->cs + p * t->cfg.head_dim);
}

int32_t lrt_tr_pass(lrt_trainer *t, const int32_t *tokens, int64_t B, int64_t T, int grads, double *loss_sum,
                    int64_t *count) {
  int32_t st = check_tokens(t, tokens, B * (T + 1));
  if (st) return st;
  if ((st = reserve(t, B, T))) return st;
  lrt_tact *a = &t->act;
  for (int64_t s = 0; s < B; s++)
    for (int64_t i = 0; i < T; i++) {
      a->tok[s * T + i] = tokens[s * (T + 1) + i];
      a->tgt[s * T + i] = tokens[s * (T + 1) + i + 1];
    }
  setup(t, T);
  forward(t, 1);
  ce_arg ca = {t, grads};
  lrt_pool_run(t->pool, ce_task, &ca, (B * T + 3) / 4);
  const lrt_kernels *k = lrt_kernels_get();
  double total = 0.0;
  for (int64_t s = 0; s < B; s++) total = total + (double)k->sum_f32(a->loss + s * T, T);
  *loss_sum = total;
  *count = B * T;
  if (grads) backward(t);
  return LRT_OK;
}

int32_t lrt_tr_last_logits(lrt_trainer *t, const int32_t *tokens, int64_t n, float *out) {
  int32_t st = check_tokens(t, tokens, n);
  if (st) return st;
  if ((st = reserve(t, 1, n))) return st;
  lrt_tact *a = &t->act;
  for (int64_t i = 0; i < n; i++) a->tok[i] = tokens[i];
  setup(t, n);
  forward(t, 0);
  /* only the last row through the final norm and the head */
  const lrt_config *c = &t->cfg;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t D = c->dim;
  const float *x = a->xin + c->n_layers * n * D + (n - 1) * D;
  float *xn = a->xnf;
  const float *w = W_(t, t->out_norm);
  if (c->layernorm) {
    const float *b = W_(t, t->out_norm_b);
    float mean = k->sum_f32(x, D) / (float)D;
    for (int64_t i = 0; i < D; i++) xn[i] = x[i] - mean;
    float var = k->dot_f32(xn, xn, D) / (float)D;
    float scale = 1.0f / sqrtf(var + c->norm_eps);
    for (int64_t i = 0; i < D; i++) xn[i] = (xn[i] * scale) * w[i] + b[i];
  } else {
    float ss = k->dot_f32(x, x, D);
    float scale = 1.0f / sqrtf(ss / (float)D + c->norm_eps);
    for (int64_t i = 0; i < D; i++) xn[i] = w[i] * (x[i] * scale);
  }
  const float *head = t->lm_head >= 0 ? W_(t, t->lm_head) : W_(t, t->tok_embd);
  mm_run(t->pool, head, c->vocab, D, NULL, xn, 1, out, c->vocab);
  return LRT_OK;
}
