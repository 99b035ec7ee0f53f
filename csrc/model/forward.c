/* forward.c -- the transformer forward pass over a chunk of tokens, and the KV cache.
 *
 * Shapes (M = tokens in the chunk, D = hidden size, H/KVH = heads, hd = head dim, F = FFN):
 *   x, xb   (M, D)        residual stream and normed / projected copy
 *   q, att  (M, H*hd)     queries and attention output
 *   k, v    (M, KVH*hd)   new keys / values (copied into the cache)
 *   hb, hb2 (M, F)        MLP hidden
 *   cache   (cap, KVH*hd) per layer, keys and values at absolute positions (a windowed
 *           layer's: a ring of kv_ring rows, position p in row p % kv_ring; model.h)
 *
 * Batch invariance: every output element is one dot product in the dot8 order over the same
 * inputs, whatever M is; attention for a query at position p reduces over positions in
 * order 0..p. So logits do not depend on how a sequence is split into eval calls. Threads
 * take whole rows / heads (threadpool.h), never part of a reduction. */
#include <math.h> /* sqrtf only: correctly rounded by IEEE 754 */
#include <stdio.h>  /* snprintf (error messages) */
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "../base/lrt_math.h"
#include "model.h"

#define ROW_BLOCK 16

/* A hint to the cache to start loading bytes that are read soon (decode streams every weight
 * once per token; four interleaved short rows defeat the hardware prefetcher, measured 3.3x
 * slower on a Q8_0 LM head). Never changes a result; a no-op where unavailable. */
#if defined(__GNUC__) || defined(__clang__)
#define LRT_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define LRT_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define LRT_PREFETCH(p) ((void)(p))
#endif

#if defined(__wasm__)
/* WebAssembly has no prefetch instruction: load one byte of each cache line instead, so the
 * lines are on their way while the rows before them are computed (the bytes are summed into
 * a thread-local sink so that the loads stay). No effect on results. Measured in Node: the
 * Q8_0 LM head of SmolLM2 25% faster, the whole decode 20% (docs/web.md "Speed"). */
static LRT_THREAD_LOCAL volatile uint32_t touch_sink;
static void prefetch_bytes(const void *p, size_t n) {
  uint32_t s = 0;
  for (size_t o = 0; o < n; o += 64) s += ((const uint8_t *)p)[o];
  touch_sink = s;
}
#else
static void prefetch_bytes(const void *p, size_t n) {
  for (size_t o = 0; o < n; o += 64) LRT_PREFETCH((const uint8_t *)p + o);
}
#endif

/* ---- matrix products split over row blocks -------------------------------------------- */

typedef struct mm_job {
  const lrt_mat *w;
  const float *in;   /* (M, w->cols) */
  float *out;        /* (M, out_stride) */
  int64_t out_stride;
  const float *bias; /* (w->rows) or NULL */
  const int32_t *dest; /* output column of each weight row, or NULL for identity */
} mm_job;

typedef struct mm_ctx {
  const lrt_kernels *k;
  float *wrow;      /* per-thread row buffers for block formats */
  int64_t wrow_cap;
  mm_job jobs[3];
  int n_jobs;
  /* int8 activations: which jobs use them, and the M input rows quantized (one input for all) */
  int i8[3];
  const int8_t *qx;  /* (M, cols)    */
  const float *dx;   /* (M, cols/32) */
  const int32_t *sx; /* (M, cols/32) */
  const void *px;    /* the same rows packed for the kernels' i8_tile, or NULL (decode) */
  int64_t first_block[4];
  int64_t M;
  int act; /* MM_ACT_*: a gated MLP's activation applied by the task that computed its rows */
} mm_ctx;

/* What a task does after its rows (matmul_act): nothing, or the MLP activation of the rows it
 * just computed, so that the gate, the up projection and the activation of the same rows are
 * one task (one dispatch per MLP half instead of a dispatch and a serial pass over M x F).
 * Each element is still act(gate) * up (or gelu(up)) of the same two values: same bits. */
enum { MM_ACT_NONE = 0, MM_ACT_SILU_GLU = 1, MM_ACT_GELU_GLU = 2, MM_ACT_GELU = 3 };

size_t lrt_mat_row_bytes(const lrt_mat *w) {
  switch (w->dtype) {
    case LRT_DT_F32: return (size_t)w->cols * 4;
    case LRT_DT_Q8_0: return (size_t)(w->cols / 32) * 34;
    case LRT_DT_Q4_0: return (size_t)(w->cols / 32) * 18;
    case LRT_DT_Q4_1: return (size_t)(w->cols / 32) * 20;
    case LRT_DT_Q5_0: return (size_t)(w->cols / 32) * 22;
    case LRT_DT_Q5_1: return (size_t)(w->cols / 32) * 24;
    case LRT_DT_Q4_K: return (size_t)(w->cols / 256) * 144;
    case LRT_DT_Q5_K: return (size_t)(w->cols / 256) * 176;
    case LRT_DT_Q6_K: return (size_t)(w->cols / 256) * 210;
    default: return (size_t)w->cols * 2;
  }
}


/* Four rows r.. of w (F32 / F16 / BF16 where they are, or with wbuf a block format's rows
 * dequantized there) against M activation rows of x (row stride w->cols):
 * y[t * ys + i] = dot(row r + i, token t). next: NULL or the four rows to ask the cache for
 * meanwhile (tile4_*_pf). */
static void tile_rows(const lrt_kernels *k, const lrt_mat *w, int64_t r, const float *wbuf, const void *next,
                      const float *x, int64_t M, float *y, int64_t ys) {
  int64_t n = w->cols;
  if (wbuf)
    k->tile4_f32(wbuf, n, x, n, M, n, y, ys);
  else if (w->dtype == LRT_DT_F32)
    k->tile4_f32_pf((const float *)w->data + r * n, n, x, n, M, n, y, ys, (const float *)next);
  else if (w->dtype == LRT_DT_BF16)
    k->tile4_bf16_pf((const uint16_t *)w->data + r * n, n, x, n, M, n, y, ys, (const uint16_t *)next);
  else
    k->tile4_f16_pf((const uint16_t *)w->data + r * n, n, x, n, M, n, y, ys, (const uint16_t *)next);
}

/* Rows [blk * ROW_BLOCK, +ROW_BLOCK) of job j (all M tokens) on thread `thread`. */
static void mm_block(const mm_ctx *c, int j, int64_t blk, int thread) {
  const mm_job *jb = &c->jobs[j];
  const lrt_mat *w = jb->w;
  int64_t r0 = blk * ROW_BLOCK;
  int64_t r1 = r0 + ROW_BLOCK < w->rows ? r0 + ROW_BLOCK : w->rows;
  int64_t n = w->cols;
  size_t row_bytes = lrt_mat_row_bytes(w);
  void (*rows)(const void *, const float *, int64_t, int64_t, int64_t, float *, int64_t) =
      w->dtype == LRT_DT_BF16 ? c->k->rows_bf16 : w->dtype == LRT_DT_F16 ? c->k->rows_f16 : c->k->rows_f32;
  void (*deq)(const void *, float *, int64_t) = w->dtype == LRT_DT_Q8_0 ? c->k->dequant_q8_0
                                               : w->dtype == LRT_DT_Q4_0 ? c->k->dequant_q4_0
                                               : w->dtype == LRT_DT_Q4_1 ? c->k->dequant_q4_1
                                               : w->dtype == LRT_DT_Q4_K ? c->k->dequant_q4_k
                                               : w->dtype == LRT_DT_Q5_K ? c->k->dequant_q5_k
                                               : w->dtype == LRT_DT_Q6_K ? c->k->dequant_q6_k
                                               : w->dtype == LRT_DT_Q5_0 ? c->k->dequant_q5_0
                                               : w->dtype == LRT_DT_Q5_1 ? c->k->dequant_q5_1 : NULL;
  void (*dot4)(const void *, int64_t, const float *, int64_t, float *) =
      w->dtype == LRT_DT_BF16 ? c->k->dot4_bf16 : w->dtype == LRT_DT_F16 ? c->k->dot4_f16 : c->k->dot4_f32;
  /* block formats in decode: fused dequantize-and-dot, same bits as the two steps */
  void (*dot4q)(const void *, int64_t, const float *, int64_t, float *) =
      w->dtype == LRT_DT_Q8_0 ? c->k->dot4_q8_0 : w->dtype == LRT_DT_Q4_0 ? c->k->dot4_q4_0
      : w->dtype == LRT_DT_Q4_1 ? c->k->dot4_q4_1 : w->dtype == LRT_DT_Q4_K ? c->k->dot4_q4_k
      : w->dtype == LRT_DT_Q5_K ? c->k->dot4_q5_k : w->dtype == LRT_DT_Q6_K ? c->k->dot4_q6_k
      : w->dtype == LRT_DT_Q5_0 ? c->k->dot4_q5_0 : w->dtype == LRT_DT_Q5_1 ? c->k->dot4_q5_1 : NULL;
  float *buf = c->wrow + (int64_t)thread * c->wrow_cap;
  int64_t ys = jb->out_stride;
  int64_t r = r0;
  if (c->i8[j]) { /* int8 activations: integer block dots, every (token, row) on its own */
    void (*rows_i8)(const void *, const int8_t *, const float *, const int32_t *, int64_t, int64_t, float *, int64_t) =
        w->dtype == LRT_DT_Q8_0 ? c->k->rows_q8_0_i8 : w->dtype == LRT_DT_Q4_0 ? c->k->rows_q4_0_i8 : c->k->rows_q4_1_i8;
    if (c->px) { /* prefill: the task's rows packed once, then tiles of rows x tokens (same bits) */
      int fmt = w->dtype == LRT_DT_Q8_0 ? LRT_I8_Q8_0 : w->dtype == LRT_DT_Q4_0 ? LRT_I8_Q4_0 : LRT_I8_Q4_1;
      const uint8_t *wr = (const uint8_t *)w->data + (size_t)r0 * row_bytes;
      c->k->i8_pack_w(fmt, wr, (int64_t)row_bytes, r1 - r0, n, buf);
      c->k->i8_tile(fmt, buf, r1 - r0, c->px, c->M, n, jb->dest ? jb->out : jb->out + r0, ys,
                    jb->dest ? jb->dest + r0 : NULL);
      if (jb->bias)
        for (int64_t t = 0; t < c->M; t++)
          for (r = r0; r < r1; r++) {
            int64_t col = jb->dest ? jb->dest[r] : r;
            jb->out[t * ys + col] = jb->out[t * ys + col] + jb->bias[r];
          }
      return;
    }
    for (r = r0; r < r1; r++) {
      int64_t col = jb->dest ? jb->dest[r] : r;
      /* decode reads each row once: fetch the row four ahead while this one is computed */
      if (c->M < 4 && r + 4 < w->rows) prefetch_bytes((const uint8_t *)w->data + (size_t)(r + 4) * row_bytes, row_bytes);
      rows_i8((const uint8_t *)w->data + (size_t)r * row_bytes, c->qx, c->dx, c->sx, c->M, n, jb->out + col, ys);
      if (jb->bias)
        for (int64_t t = 0; t < c->M; t++) jb->out[t * ys + col] = jb->out[t * ys + col] + jb->bias[r];
    }
    return;
  }
  /* F32 / F16 / BF16 rows are read where they are, by the tile below at every M (decode too) */
  int direct = w->dtype == LRT_DT_F32 || w->dtype == LRT_DT_F16 || w->dtype == LRT_DT_BF16;
  if (c->M < 4 && !direct) { /* block formats' decode: four rows at a time share the loads of x */
    for (; r + 4 <= r1; r += 4) {
      const void *wr = (const uint8_t *)w->data + (size_t)r * row_bytes;
      if (r + 8 <= w->rows) prefetch_bytes((const uint8_t *)wr + 4 * row_bytes, 4 * row_bytes);
      int64_t ws = n; /* row stride in elements */
      if (deq && !dot4q) {
        for (int i = 0; i < 4; i++) deq((const uint8_t *)wr + (size_t)i * row_bytes, buf + i * n, n);
        wr = buf;
      }
      for (int64_t t = 0; t < c->M; t++) {
        float y4[4];
        if (dot4q) dot4q(wr, (int64_t)row_bytes, jb->in + t * n, n, y4);
        else dot4(wr, ws, jb->in + t * n, n, y4);
        for (int i = 0; i < 4; i++) {
          int64_t col = jb->dest ? jb->dest[r + i] : r + i;
          jb->out[t * ys + col] = jb->bias ? y4[i] + jb->bias[r + i] : y4[i];
        }
      }
    }
  }
  if ((c->M >= 4 || direct) && r1 - r0 >= 4) {
    /* register tiles of four rows x a few tokens over blocks of tokens small enough to stay in
     * cache while every group of four rows passes over them. F32 / F16 / BF16 rows are read
     * where they are (tile4_*_pf: halves widened in registers, exactly), the next four rows
     * asked of the cache a line at a time while a tile computes (decode and speculation's
     * verification chunks are bound by reading the weights: one burst of prefetches per group
     * stalled the core, spread out they arrive during the compute); block formats' rows are
     * dequantized into the thread's buffer first (exact: the same floats as the kernels'
     * own loads). Each output is still one dot8 of a row and a token. */
    int64_t nr = (r1 - r0) / 4 * 4;
    if (!direct)
      for (int64_t i = 0; i < nr; i++) lrt_mat_row(w, r0 + i, buf + i * n);
    int64_t tb = (256 * 1024) / (n * 4); /* tokens per block: about 256 KiB of activations */
    if (tb < 4) tb = 4;
    for (int64_t t0 = 0; t0 < c->M; t0 += tb) {
      int64_t mt = c->M - t0 < tb ? c->M - t0 : tb;
      for (int64_t g = 0; g < nr; g += 4) {
        /* the next four rows (the next task's first ones at the end of this task), on the first
         * pass over the rows only */
        const uint8_t *next = t0 == 0 && r0 + g + 8 <= w->rows
                                  ? (const uint8_t *)w->data + (size_t)(r0 + g + 4) * row_bytes : NULL;
        if (!jb->dest) {
          tile_rows(c->k, w, r0 + g, direct ? NULL : buf + g * n, next, jb->in + t0 * n, mt,
                    jb->out + t0 * ys + r0 + g, ys);
          continue;
        }
        /* a row map (GGUF Q/K rows): the tile into a small buffer, then each row to its column */
        float tmp[4 * LRT_CHUNK];
        for (int64_t t1 = 0; t1 < mt; t1 += LRT_CHUNK) {
          int64_t m1 = mt - t1 < LRT_CHUNK ? mt - t1 : LRT_CHUNK;
          tile_rows(c->k, w, r0 + g, direct ? NULL : buf + g * n, t1 == 0 ? next : NULL, jb->in + (t0 + t1) * n, m1,
                    tmp, 4);
          for (int64_t t = 0; t < m1; t++)
            for (int i = 0; i < 4; i++) jb->out[(t0 + t1 + t) * ys + jb->dest[r0 + g + i]] = tmp[t * 4 + i];
        }
      }
    }
    if (jb->bias)
      for (int64_t t = 0; t < c->M; t++)
        for (int64_t i = r0; i < r0 + nr; i++) {
          int64_t col = jb->dest ? jb->dest[i] : i;
          jb->out[t * ys + col] = jb->out[t * ys + col] + jb->bias[i];
        }
    r = r0 + nr;
  }
  for (; r < r1; r++) { /* leftover rows: one row against four tokens at a time */
    int64_t col = jb->dest ? jb->dest[r] : r;
    float *y = jb->out + col;
    const void *wr = (const uint8_t *)w->data + (size_t)r * row_bytes;
    if (deq) { /* block format: dequantize the row (same floats as at load), then F32 */
      deq(wr, buf, n);
      wr = buf;
    }
    rows(wr, jb->in, n, c->M, n, y, ys);
    if (jb->bias)
      for (int64_t t = 0; t < c->M; t++) y[t * ys] = y[t * ys] + jb->bias[r];
  }
}

static void mm_task(void *vctx, int64_t task, int thread) {
  const mm_ctx *c = (const mm_ctx *)vctx;
  int j = 0;
  while (task >= c->first_block[j + 1]) j++;
  mm_block(c, j, task - c->first_block[j], thread);
}

/* matmul_act's task: block `task` of every job (the same rows of each: gate and up), then the
 * activation of those rows for every token, in place in job 0's output. */
static void mm_act_task(void *vctx, int64_t task, int thread) {
  const mm_ctx *c = (const mm_ctx *)vctx;
  for (int j = 0; j < c->n_jobs; j++) mm_block(c, j, task, thread);
  const mm_job *g = &c->jobs[0];
  int64_t r0 = task * ROW_BLOCK, r1 = r0 + ROW_BLOCK < g->w->rows ? r0 + ROW_BLOCK : g->w->rows;
  for (int64_t t = 0; t < c->M; t++) {
    float *h = g->out + t * g->out_stride;
    if (c->act == MM_ACT_GELU) {
      for (int64_t i = r0; i < r1; i++) h[i] = lrt_gelu_tanhf(h[i]);
      continue;
    }
    const float *u = c->jobs[1].out + t * c->jobs[1].out_stride;
    if (c->act == MM_ACT_GELU_GLU)
      for (int64_t i = r0; i < r1; i++) h[i] = lrt_gelu_tanhf(h[i]) * u[i];
    else /* the kernels' silu_mul_f32: lrt_siluf(g) * u per element, vectorized (same bits) */
      c->k->silu_mul_f32(h + r0, u + r0, h + r0, r1 - r0);
  }
}

static int int8_job(const lrt_session *s, const mm_job *jb) {
  int dt = jb->w->dtype;
  return (s->m->open_flags & LRT_OPEN_INT8_ACTIVATIONS) && jb->w->cols % 32 == 0 &&
         (dt == LRT_DT_Q8_0 || dt == LRT_DT_Q4_0 || dt == LRT_DT_Q4_1);
}

/* act != MM_ACT_NONE: the jobs have the same rows, no row map, and one task per block of rows
 * computes that block of every job and then the activation (mm_act_task). */
static void matmul_act(lrt_session *s, int64_t M, const mm_job *jobs, int n_jobs, int act) {
  /* int8 activations: quantize the input rows once for all the jobs that read them (one
   * input per call; a call whose jobs read different inputs runs them one by one) */
  int any = 0;
  for (int j = 0; j < n_jobs; j++) any |= int8_job(s, &jobs[j]);
  if (any && n_jobs > 1)
    for (int j = 1; j < n_jobs; j++)
      if (jobs[j].in != jobs[0].in || jobs[j].w->cols != jobs[0].w->cols) {
        for (int i = 0; i < n_jobs; i++) matmul_act(s, M, &jobs[i], 1, MM_ACT_NONE);
        if (act == MM_ACT_SILU_GLU || act == MM_ACT_GELU_GLU) { /* then the activation, serially */
          int64_t F = jobs[0].w->rows;
          for (int64_t t = 0; t < M; t++)
            for (int64_t i = 0; i < F; i++) {
              float *h = jobs[0].out + t * jobs[0].out_stride + i;
              float u = jobs[1].out[t * jobs[1].out_stride + i];
              *h = act == MM_ACT_GELU_GLU ? lrt_gelu_tanhf(*h) * u : lrt_siluf(*h) * u;
            }
        }
        return;
      }
  mm_ctx c;
  c.k = lrt_kernels_get();
  c.px = NULL;
  if (any) {
    int64_t n = jobs[0].w->cols, nb = n / 32;
    if (M >= 4 && c.k->i8_tile) { /* prefill: quantized and packed once for every task's tiles */
      c.k->i8_pack_x(jobs[0].in, M, n, s->act_p);
      c.px = s->act_p;
    } else {
      for (int64_t t = 0; t < M; t++)
        lrt_quantize_act_q8(jobs[0].in + t * n, s->act_q + t * n, s->act_d + t * nb, s->act_s + t * nb, n);
    }
  }
  c.wrow = s->wrow;
  c.wrow_cap = s->wrow_cap;
  c.M = M;
  c.n_jobs = n_jobs;
  c.qx = s->act_q;
  c.dx = s->act_d;
  c.sx = s->act_s;
  c.act = act;
  c.first_block[0] = 0;
  for (int j = 0; j < n_jobs; j++) {
    c.jobs[j] = jobs[j];
    c.i8[j] = int8_job(s, &jobs[j]);
    c.first_block[j + 1] = c.first_block[j] + (jobs[j].w->rows + ROW_BLOCK - 1) / ROW_BLOCK;
  }
  if (act != MM_ACT_NONE)
    lrt_pool_run(s->pool, mm_act_task, &c, c.first_block[1]);
  else
    lrt_pool_run(s->pool, mm_task, &c, c.first_block[n_jobs]);
}

static void matmul(lrt_session *s, int64_t M, const mm_job *jobs, int n_jobs) {
  matmul_act(s, M, jobs, n_jobs, MM_ACT_NONE);
}

/* ---- norms ------------------------------------------------------------------------------- */

static void rmsnorm(const lrt_kernels *k, float *out, const float *x, const float *w, int64_t n,
                    float eps) {
  float ss = k->dot_f32(x, x, n);
  float scale = 1.0f / sqrtf(ss / (float)n + eps);
  for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

static void layernorm(const lrt_kernels *k, float *out, const float *x, const float *w,
                      const float *b, int64_t n, float eps) {
  float mean = k->sum_f32(x, n) / (float)n;
  for (int64_t i = 0; i < n; i++) out[i] = x[i] - mean; /* centred, reused below */
  float var = k->dot_f32(out, out, n) / (float)n;
  float scale = 1.0f / sqrtf(var + eps);
  for (int64_t i = 0; i < n; i++) out[i] = (out[i] * scale) * w[i] + b[i];
}

static void norm_rows(const lrt_model *m, float *out, const float *x, int64_t M, const float *w,
                      const float *b) {
  const lrt_kernels *k = lrt_kernels_get();
  int64_t D = m->cfg.dim;
  for (int64_t t = 0; t < M; t++) {
    if (m->cfg.layernorm) layernorm(k, out + t * D, x + t * D, w, b, D, m->cfg.norm_eps);
    else rmsnorm(k, out + t * D, x + t * D, w, D, m->cfg.norm_eps);
  }
}

/* ---- RoPE -------------------------------------------------------------------------------- */

/* cos/sin of position p for each frequency: the angle is rounded to float first (as HF
 * computes inv_freq * position in float32), then cos/sin are taken in double by loomrt's own
 * functions and rounded to float. The trainer's RoPE uses it too. */
void lrt_rope_cs(const float *inv_freq, int64_t half, int64_t pos, float *cs) {
  for (int64_t i = 0; i < half; i++) {
    float angle = (float)pos * inv_freq[i];
    double sn, cn;
    lrt_sincos((double)angle, &sn, &cn);
    cs[2 * i] = (float)cn;
    cs[2 * i + 1] = (float)sn;
  }
}

/* The model's table for position pos: the global one, or the local one (`local`, Gemma 3
 * sliding layers). Longrope (Phi-3) takes the long factors' table from position rope_orig_ctx
 * on (transformers' choice when it decodes token by token) and multiplies cos/sin by the
 * attention factor, rounded to float. */
static void rope_cs(const lrt_model *m, int64_t pos, float *cs, int local) {
  const lrt_config *c = &m->cfg;
  int64_t half = c->rotary_dim / 2;
  const float *inv = local ? m->rope_inv_freq_local : m->rope_inv_freq;
  if (!local && m->rope_inv_freq_long && (double)pos >= c->rope_orig_ctx) inv = m->rope_inv_freq_long;
  lrt_rope_cs(inv, half, pos, cs);
  if (!local && c->rope_longrope) {
    float af = (float)c->rope_attn_factor;
    for (int64_t i = 0; i < 2 * half; i++) cs[i] = cs[i] * af;
  }
}

/* The cos/sin rows of positions pos[0..M) into the session's tables (global, and local after
 * the chunk's rows when the model has one). */
static void rope_rows(lrt_session *s, const int64_t *pos, int64_t M) {
  const lrt_config *c = &s->m->cfg;
  for (int64_t t = 0; t < M; t++) {
    rope_cs(s->m, pos[t], s->rope_cs + t * c->head_dim, 0);
    if (s->m->rope_inv_freq_local) rope_cs(s->m, pos[t], s->rope_cs + (s->chunk + t) * c->head_dim, 1);
  }
}

/* Rotate pairs (i, i + rd/2) of every head ("rotate_half" layout, as HF stores Q and K) over
 * the first rd (rotary) dimensions; the others pass through (partial rotary, Phi-4-mini). */
static void rope_apply(float *v, int64_t heads, int64_t hd, int64_t rd, const float *cs) {
  int64_t half = rd / 2;
  for (int64_t h = 0; h < heads; h++) {
    float *x = v + h * hd;
    for (int64_t i = 0; i < half; i++) {
      float c = cs[2 * i], sn = cs[2 * i + 1];
      float x0 = x[i], x1 = x[i + half];
      x[i] = x0 * c - x1 * sn;
      x[i + half] = x1 * c + x0 * sn;
    }
  }
}

/* cap * tanh(x / cap), in that order of roundings (transformers' soft-capping), with
 * loomrt's own tanh (csrc/base/math.c). */
static float softcap(float x, float cap) { return lrt_tanhf(x / cap) * cap; }

/* ---- attention ------------------------------------------------------------------------- */

typedef struct att_ctx {
  lrt_session *s;
  lrt_session *const *own;   /* per row: the session whose KV cache it reads (NULL: all s) */
  const int64_t *pos;        /* per row: its absolute position                             */
  int64_t layer, M;
} att_ctx;

static void att_task(void *vctx, int64_t h, int thread) {
  att_ctx *a = (att_ctx *)vctx;
  lrt_session *s = a->s;
  const lrt_config *c = &s->m->cfg;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
  int64_t kvh = h / (c->n_heads / c->n_kv_heads);
  float *sc = s->scores + (int64_t)thread * s->scores_cap;
  float scale = c->attn_scale != 0.0f ? c->attn_scale : 1.0f / sqrtf((float)hd);
  float cap = c->attn_softcap;
  /* window: Mistral's applies to every layer; the newer families' to their sliding layers */
  int64_t window = !c->any_sliding ? c->sliding_window
                 : (c->layer_kind[a->layer] & LRT_LAYER_SLIDING) ? c->sliding_window : 0;
  for (int64_t t = 0; t < a->M; t++) {
    const lrt_session *kv = a->own ? a->own[t] : s;
    const float *K = kv->k_cache[a->layer] + kvh * hd;
    const float *V = kv->v_cache[a->layer] + kvh * hd;
    int64_t p = a->pos[t];
    int64_t lo = 0;
    if (window > 0 && p - window + 1 > 0) lo = p - window + 1;
    int64_t n = p - lo + 1;
    /* key positions lo..p are rows r0..r0+n1-1, then (a ring that wrapped) rows 0..n-n1-1:
     * the same values in the same order as a full cache */
    int64_t r0 = lrt_kv_row(kv, a->layer, lo), n1 = n;
    if (kv->kv_ring && window > 0 && n > kv->kv_ring - r0) n1 = kv->kv_ring - r0;
    const float *q = s->q + t * qd + h * hd;
    float mx = -3.402823466e38f;
    /* the dots first (four keys at a time share the loads of q: dot4_f32, each the dot_f32 of
     * its key), rows r0.. then (wrapped ring) rows 0.. */
    for (int seg = 0; seg < 2; seg++) {
      int64_t j = seg ? n1 : 0, j1 = seg ? n : n1;
      const float *kr = K + (seg ? 0 : r0) * kvd;
      for (; j + 4 <= j1; j += 4, kr += 4 * kvd) k->dot4_f32(kr, kvd, q, hd, sc + j);
      for (; j < j1; j++, kr += kvd) sc[j] = k->dot_f32(kr, q, hd);
    }
    for (int64_t j = 0; j < n; j++) {
      float v = sc[j] * scale;
      if (cap != 0.0f) v = softcap(v, cap); /* Gemma 2 attention-logit soft-capping */
      sc[j] = v;
      if (v > mx) mx = v;
    }
    for (int64_t j = 0; j < n; j++) sc[j] = sc[j] - mx;
    k->exp_f32(sc, sc, n); /* = lrt_expf per element */
    float sum = k->sum_f32(sc, n);
    for (int64_t j = 0; j < n; j++) sc[j] = sc[j] / sum;
    if (s->insp && s->insp->attn && p >= s->insp->pos_lo && p - s->insp->pos_lo < s->insp->n_pos && p < s->insp->n_key)
      memcpy(s->insp->attn + ((a->layer * c->n_heads + h) * s->insp->n_pos + p - s->insp->pos_lo) * s->insp->n_key + lo,
             sc, (size_t)n * sizeof(float));
    /* o[d] = sum over j in order of sc[j] * V[j][d], from 0 (the kernels' lincomb_f32: each
     * column's chain is the plain sequential loop, columns side by side in SIMD lanes): rows
     * r0.. then, for a ring that wrapped, rows 0.., so j stays in order */
    float *o = s->att + t * qd + h * hd;
    memset(o, 0, (size_t)hd * sizeof(float));
    k->lincomb_f32(sc, V + r0 * kvd, kvd, n1, hd, o);
    if (n > n1) k->lincomb_f32(sc + n1, V, kvd, n - n1, hd, o);
  }
}

/* ---- embeddings --------------------------------------------------------------------------- */

void lrt_mat_row(const lrt_mat *w, int64_t r, float *out) {
  int64_t n = w->cols;
  const lrt_kernels *k = lrt_kernels_get();
  const void *row = (const uint8_t *)w->data + (size_t)r * lrt_mat_row_bytes(w);
  if (w->dtype == LRT_DT_Q8_0) {
    k->dequant_q8_0(row, out, n);
  } else if (w->dtype == LRT_DT_Q4_0) {
    k->dequant_q4_0(row, out, n);
  } else if (w->dtype == LRT_DT_Q4_1) {
    k->dequant_q4_1(row, out, n);
  } else if (w->dtype == LRT_DT_Q4_K) {
    k->dequant_q4_k(row, out, n);
  } else if (w->dtype == LRT_DT_Q5_K) {
    k->dequant_q5_k(row, out, n);
  } else if (w->dtype == LRT_DT_Q6_K) {
    k->dequant_q6_k(row, out, n);
  } else if (w->dtype == LRT_DT_Q5_0) {
    k->dequant_q5_0(row, out, n);
  } else if (w->dtype == LRT_DT_Q5_1) {
    k->dequant_q5_1(row, out, n);
  } else if (w->dtype == LRT_DT_F32) {
    memcpy(out, (const float *)w->data + r * n, (size_t)n * 4);
  } else {
    const uint16_t *p = (const uint16_t *)w->data + r * n;
    if (w->dtype == LRT_DT_BF16) k->widen_bf16(p, out, n);
    else k->widen_f16(p, out, n);
  }
}

/* ---- KV cache ------------------------------------------------------------------------------ */

int32_t lrt_session_reserve(lrt_session *s, int64_t positions) {
  if (positions <= s->cap) return LRT_OK;
  int64_t cap = s->cap ? s->cap : 256;
  while (cap < positions) cap *= 2;
  if (cap > s->ctx) cap = s->ctx;
  const lrt_config *c = &s->m->cfg;
  size_t row = (size_t)(c->n_kv_heads * c->head_dim) * sizeof(float);
  for (int64_t l = 0; l < c->n_layers; l++) {
    int64_t rows = lrt_kv_layer_rows(s, l, cap); /* a windowed layer's ring stops growing */
    if (rows == lrt_kv_layer_rows(s, l, s->cap) && s->k_cache[l]) continue;
    float *k = (float *)realloc(s->k_cache[l], (size_t)rows * row);
    if (!k) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory growing the KV cache to %lld positions", (long long)cap);
    s->k_cache[l] = k;
    float *v = (float *)realloc(s->v_cache[l], (size_t)rows * row);
    if (!v) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory growing the KV cache to %lld positions", (long long)cap);
    s->v_cache[l] = v;
  }
  int32_t *tk = (int32_t *)realloc(s->tokens, (size_t)cap * sizeof(int32_t));
  if (!tk) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  s->tokens = tk;
  float *sc = (float *)realloc(s->scores, (size_t)cap * (size_t)lrt_pool_threads(s->pool) * sizeof(float));
  if (!sc) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  s->scores = sc;
  s->scores_cap = cap;
  s->cap = cap;
  return LRT_OK;
}

int lrt_session_can_rewind(const lrt_session *s, int64_t pos) {
  if (s->kv_lo == 0 || pos <= 0) return 1;
  int64_t need = pos - s->m->cfg.sliding_window + 1;
  return (need > 0 ? need : 0) >= s->kv_lo;
}

int32_t lrt_rewind_error(const lrt_session *s, int64_t pos, const char *fn) {
  return lrt_err(LRT_ERR_STATE, "%s: cannot continue from position %lld: the sliding-window layers' KV cache is a "
                 "ring of the last window + %d positions and no longer holds positions %lld..%lld that it needs "
                 "(it holds %lld on); move back at most %d positions from the furthest one evaluated, reset the "
                 "session (or truncate to 0), or open the model with LRT_OPEN_FULL_KV (Python: full_kv=True) to "
                 "keep every position", fn, (long long)pos, LRT_CHUNK - 1,
                 (long long)(pos - s->m->cfg.sliding_window + 1 > 0 ? pos - s->m->cfg.sliding_window + 1 : 0),
                 (long long)(s->kv_lo - 1), (long long)s->kv_lo, LRT_CHUNK);
}

/* ---- one chunk --------------------------------------------------------------------------- */

/* 1 when no value of a[0..n) is NaN or infinite (exponent bits all ones). A bit test, the
 * same on every compiler and flag set (no isfinite, which fast-math builds may drop). */
static int all_finite(const float *a, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, a + i, 4);
    bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

/* Where a diagnostic run (forward_chunk with `where`) first met a non-finite value. */
#define WHERE_NONE (-2)      /* everything finite                                   */
#define WHERE_EMBEDDING (-1) /* the embedded token (and position) rows              */
/* 2*l: layer l's attention block, 2*l + 1: its MLP block, 2*n_layers: final norm + LM head */

/* Inspection: copy the residual stream of rows at positions pos[0..M) (stage 0 = embedding). */
static void insp_hidden(const lrt_session *s, int64_t stage, int64_t M, const int64_t *pos) {
  const lrt_inspect_hook *h = s->insp;
  int64_t D = s->m->cfg.dim;
  if (!h->hidden) return;
  for (int64_t t = 0; t < M; t++) {
    int64_t p = pos[t];
    if (p >= h->pos_lo && p - h->pos_lo < h->n_pos)
      memcpy(h->hidden + (stage * h->n_pos + p - h->pos_lo) * D, s->x + t * D, (size_t)D * sizeof(float));
  }
}

/* The rows of one pass: row t is token tok[t] at absolute position pos[t] of the sequence
 * whose KV cache is own[t] (own NULL: every row is the scratch session's own sequence).
 * Rows of one sequence come in position order. */
typedef struct fwd_rows {
  const int32_t *tok;
  const int64_t *pos;
  lrt_session *const *own;
  int64_t M;
  const int64_t *lrows; /* rows whose logits are wanted, in order (n_lrows of them) */
  int64_t n_lrows;
} fwd_rows;

/* Run M rows through the model with the scratch buffers and threads of `s`. If `logits` is
 * not NULL, write the logits of the rows lrows[0..n_lrows) into it (n_lrows x vocab). Every
 * value of a row is computed from that row's inputs and its own sequence's cache only, by
 * the same code whatever the other rows are: one sequence's logits do not depend on what
 * shares its pass (batch invariance, docs/numerics.md). With `where` (the failure path only:
 * lrt_forward's diagnosis), check the residual stream after the embedding and after every
 * attention and MLP block, and the logits, and stop at the first non-finite value, setting
 * *where (WHERE_*; WHERE_NONE when all are finite). */
static void forward_chunk(lrt_session *s, const fwd_rows *r, float *logits, int64_t *where) {
#define CHECK_FINITE(ptr, count, code) \
  if (where && !all_finite((ptr), (count))) { *where = (code); return; }
  const lrt_model *m = s->m;
  const lrt_config *c = &m->cfg;
  int64_t M = r->M;
  int64_t D = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
  for (int64_t t = 0; t < M; t++) { /* the rows written below overwrite the rings' oldest */
    lrt_session *kv = r->own ? r->own[t] : s;
    if (kv->kv_ring && r->pos[t] + 1 - kv->kv_ring > kv->kv_lo) kv->kv_lo = r->pos[t] + 1 - kv->kv_ring;
  }
  if (!c->learned_pos) rope_rows(s, r->pos, M);
  for (int64_t t = 0; t < M; t++) {
    lrt_mat_row(&m->tok_embd, r->tok[t], s->x + t * D);
    if (c->learned_pos) {
      float *pe = s->xb;
      lrt_mat_row(&m->pos_embd, r->pos[t], pe);
      for (int64_t i = 0; i < D; i++) s->x[t * D + i] = s->x[t * D + i] + pe[i];
    }
    if (c->embed_scale != 0.0f) /* Gemma: embedding * sqrt(hidden) */
      for (int64_t i = 0; i < D; i++) s->x[t * D + i] = s->x[t * D + i] * c->embed_scale;
  }
  CHECK_FINITE(s->x, M * D, WHERE_EMBEDDING);
  const lrt_kernels *kr = lrt_kernels_get();
  if (s->insp) insp_hidden(s, 0, M, r->pos);
  for (int64_t l = 0; l < c->n_layers; l++) {
    const lrt_layer *L = &m->layers[l];
    int kind = c->layer_kind[l];
    /* attention: HF LlamaAttention / Qwen3Attention / Gemma2Attention / Olmo2Attention ...:
     * x_in = norm(x) (OLMo 2: x itself); q, k, v = projections (+ bias); q/k norm; RoPE */
    const float *ain = s->xb;
    if (c->pre_norms) norm_rows(m, s->xb, s->x, M, L->attn_norm, L->attn_norm_b);
    else ain = s->x;
    mm_job qkv[3] = {{&L->wq, ain, s->q, qd, L->bq, L->qk_perm_q},
                     {&L->wk, ain, s->k, kvd, L->bk, L->qk_perm_k},
                     {&L->wv, ain, s->v, kvd, L->bv, NULL}};
    matmul(s, M, qkv, 3);
    if (c->qk_norm == LRT_QK_NORM_HEAD) /* Qwen3 / Gemma 3: RMSNorm of each head (head_dim) */
      for (int64_t t = 0; t < M; t++) {
        for (int64_t h = 0; h < c->n_heads; h++) rmsnorm(kr, s->q + t * qd + h * hd, s->q + t * qd + h * hd, L->q_norm, hd, c->norm_eps);
        for (int64_t h = 0; h < c->n_kv_heads; h++) rmsnorm(kr, s->k + t * kvd + h * hd, s->k + t * kvd + h * hd, L->k_norm, hd, c->norm_eps);
      }
    else if (c->qk_norm == LRT_QK_NORM_FULL) /* OLMo 2: RMSNorm of the whole projection */
      for (int64_t t = 0; t < M; t++) {
        rmsnorm(kr, s->q + t * qd, s->q + t * qd, L->q_norm, qd, c->norm_eps);
        rmsnorm(kr, s->k + t * kvd, s->k + t * kvd, L->k_norm, kvd, c->norm_eps);
      }
    const float *cs = s->rope_cs + ((kind & LRT_LAYER_LOCAL_ROPE) ? s->chunk * hd : 0);
    for (int64_t t = 0; t < M; t++) {
      if (!c->learned_pos && !(kind & LRT_LAYER_NO_ROPE)) {
        rope_apply(s->q + t * qd, c->n_heads, hd, c->rotary_dim, cs + t * hd);
        rope_apply(s->k + t * kvd, c->n_kv_heads, hd, c->rotary_dim, cs + t * hd);
      }
      lrt_session *kv = r->own ? r->own[t] : s;
      int64_t row = lrt_kv_row(kv, l, r->pos[t]);
      memcpy(kv->k_cache[l] + row * kvd, s->k + t * kvd, (size_t)kvd * 4);
      memcpy(kv->v_cache[l] + row * kvd, s->v + t * kvd, (size_t)kvd * 4);
    }
    att_ctx a = {s, r->own, r->pos, l, M};
    lrt_pool_run(s->pool, att_task, &a, c->n_heads);
    mm_job o = {&L->wo, s->att, s->xb, D, L->bo, NULL};
    matmul(s, M, &o, 1);
    if (L->attn_post_norm) norm_rows(m, s->xb, s->xb, M, L->attn_post_norm, NULL); /* Gemma / OLMo 2 */
    for (int64_t i = 0; i < M * D; i++) s->x[i] = s->x[i] + s->xb[i];
    CHECK_FINITE(s->x, M * D, 2 * l);
    /* MLP: SwiGLU down(silu(gate(x)) * up(x)) (Llama), GeGLU down(gelu_tanh(gate(x)) * up(x))
     * (Gemma), or GPT-2's up / tanh-GELU / down */
    const float *fin = s->xb;
    if (c->pre_norms) norm_rows(m, s->xb, s->x, M, L->ffn_norm, L->ffn_norm_b);
    else fin = s->x;
    int64_t F = c->ffn;
    if (c->gelu) {
      mm_job up = {&L->w_up, fin, s->hb, F, L->b_up, NULL};
      matmul_act(s, M, &up, 1, MM_ACT_GELU);
    } else {
      mm_job gu[2] = {{&L->w_gate, fin, s->hb, F, NULL, NULL}, {&L->w_up, fin, s->hb2, F, L->b_up, NULL}};
      matmul_act(s, M, gu, 2, c->geglu ? MM_ACT_GELU_GLU : MM_ACT_SILU_GLU);
    }
    mm_job down = {&L->w_down, s->hb, s->xb, D, L->b_down, NULL};
    matmul(s, M, &down, 1);
    if (L->ffn_post_norm) norm_rows(m, s->xb, s->xb, M, L->ffn_post_norm, NULL);
    for (int64_t i = 0; i < M * D; i++) s->x[i] = s->x[i] + s->xb[i];
    CHECK_FINITE(s->x, M * D, 2 * l + 1);
    if (s->insp) insp_hidden(s, l + 1, M, r->pos);
  }
  if (!logits || r->n_lrows < 1) return;
  int64_t rows = r->n_lrows;
  for (int64_t i = 0; i < rows; i++)
    norm_rows(m, s->xb + i * D, s->x + r->lrows[i] * D, 1, m->out_norm, m->out_norm_b);
  mm_job head = {&m->lm_head, s->xb, logits, c->vocab, NULL, NULL};
  matmul(s, rows, &head, 1);
  CHECK_FINITE(logits, rows * c->vocab, 2 * c->n_layers); /* before soft-capping, which would hide an infinity */
  if (c->final_softcap != 0.0f) /* Gemma 2: final-logit soft-capping */
    for (int64_t i = 0; i < rows * c->vocab; i++) logits[i] = softcap(logits[i], c->final_softcap);
  if (where) *where = WHERE_NONE;
#undef CHECK_FINITE
}

/* The failure path of lrt_forward: the logits row of position `bad_pos` is not finite.
 * Re-run the positions from `from` (the first this eval added, or the first bad row when
 * every row's logits were computed) one at a time with checks after every block, up to the
 * first position where a value stops being finite, and say where: the position, its token
 * and the block, with the names of the tensors to look at. The re-runs read the KV cache of
 * the positions before them (written by this eval or earlier ones: the same values, since
 * results do not depend on chunking) and leave nothing behind (the eval fails and the
 * session's position does not move). Costs nothing unless an eval produced a non-finite
 * logit. */
/* Re-run positions [0, to) (history s->tokens below s->pos, then `tokens`) without logits:
 * refills the rings of windowed layers (the same values: results do not depend on chunking)
 * after an eval of more than LRT_CHUNK tokens that failed overwrote rows the session needs. */
static void kv_replay(lrt_session *s, const int32_t *tokens, int64_t to) {
  int32_t tok[LRT_CHUNK];
  int64_t pos[LRT_CHUNK];
  s->kv_lo = 0;
  for (int64_t p0 = 0; p0 < to; p0 += LRT_CHUNK) {
    int64_t M = to - p0 < LRT_CHUNK ? to - p0 : LRT_CHUNK;
    for (int64_t t = 0; t < M; t++) {
      pos[t] = p0 + t;
      tok[t] = pos[t] < s->pos ? s->tokens[pos[t]] : tokens[pos[t] - s->pos];
    }
    fwd_rows r = {tok, pos, NULL, M, NULL, 0};
    forward_chunk(s, &r, NULL, NULL);
  }
}

static int32_t numeric_error(lrt_session *s, const int32_t *tokens, int64_t from, int64_t bad_pos) {
  const lrt_model *m = s->m;
  const lrt_config *c = &m->cfg;
  int64_t where = WHERE_NONE, p = from;
  if (!lrt_session_can_rewind(s, from)) kv_replay(s, tokens, from);
  for (; p <= bad_pos; p++) {
    int64_t row0 = 0;
    fwd_rows r = {tokens + (p - s->pos), &p, NULL, 1, &row0, 1};
    forward_chunk(s, &r, s->logits, &where);
    if (where != WHERE_NONE) break;
  }
  /* the session stays as it was: its windowed layers hold its window again */
  if (!lrt_session_can_rewind(s, s->pos)) kv_replay(s, tokens, s->pos);
  char at[96], what[400];
  if (where == WHERE_NONE) {
    return lrt_err(LRT_ERR_NUMERIC, "non-finite logits (NaN or infinity) at position %lld, but a re-run of "
                   "positions %lld..%lld alone gave finite values (please report this); the session is unchanged",
                   (long long)bad_pos, (long long)from, (long long)bad_pos);
  }
  int32_t tok = tokens[p - s->pos];
  if (p == bad_pos)
    snprintf(at, sizeof at, "at position %lld (token %d): values first stopped being finite", (long long)p, (int)tok);
  else
    snprintf(at, sizeof at, "at position %lld: values first stopped being finite at position %lld (token %d),",
             (long long)bad_pos, (long long)p, (int)tok);
  int gguf = m->is_gguf, gpt2 = c->learned_pos;
  if (where == WHERE_EMBEDDING) {
    snprintf(what, sizeof what, "in the token embedding (row %d of %s%s)", (int)tok,
             gguf ? "token_embd.weight" : gpt2 ? "wte.weight" : "model.embed_tokens.weight",
             gpt2 ? ", or the position embedding wpe.weight" : "");
  } else if (where == 2 * c->n_layers) {
    snprintf(what, sizeof what, "in the final norm or LM head (every layer's output is finite): check %s",
             gguf ? "output_norm.weight and output.weight"
             : gpt2 ? "ln_f and the LM head (wte.weight when tied)"
             : c->tied ? "model.norm.weight and the LM head (model.embed_tokens.weight, tied)"
             : "model.norm.weight and lm_head.weight");
  } else {
    long long l = (long long)(where / 2);
    int mlp = (int)(where % 2);
    const char *fmt = gguf ? (mlp ? "blk.%lld.ffn_norm and blk.%lld.ffn_*" : "blk.%lld.attn_norm and blk.%lld.attn_*")
                      : gpt2 ? (mlp ? "h.%lld.ln_2 and h.%lld.mlp.*" : "h.%lld.ln_1 and h.%lld.attn.*")
                      : (mlp ? "model.layers.%lld.post_attention_layernorm and model.layers.%lld.mlp.*"
                             : "model.layers.%lld.input_layernorm and model.layers.%lld.self_attn.*");
    char names[160];
    snprintf(names, sizeof names, fmt, l, l);
    snprintf(what, sizeof what, "in the output of layer %lld of %lld (%s): check the weights %s", l,
             (long long)c->n_layers, mlp ? "MLP" : "attention", names);
  }
  return lrt_err(LRT_ERR_NUMERIC, "non-finite logits (NaN or infinity) %s %s; the model's weights (or a "
                 "conversion of them) produce NaN or infinity. Nothing was added to the session", at, what);
}

static int32_t check_tokens(const lrt_config *c, const int32_t *tokens, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= c->vocab)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token id %d at index %lld is outside the vocabulary [0, %lld)",
                     tokens[i], (long long)i, (long long)c->vocab);
  return LRT_OK;
}

static int32_t reserve_logits(lrt_session *s, int64_t rows) {
  int64_t vocab = s->m->cfg.vocab;
  if (rows * vocab <= s->logits_cap) return LRT_OK;
  float *lg = (float *)realloc(s->logits, (size_t)(rows * vocab) * sizeof(float));
  if (!lg) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for %lld x %lld logits", (long long)rows, (long long)vocab);
  s->logits = lg;
  s->logits_cap = rows * vocab;
  return LRT_OK;
}

int32_t lrt_forward(lrt_session *s, const int32_t *tokens, int64_t n, int all_logits) {
  const lrt_config *c = &s->m->cfg;
  if (n <= 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "eval needs at least one token");
  int32_t st = check_tokens(c, tokens, n);
  if (st) return st;
  if (s->pos == 0) s->kv_lo = 0;
  if (!lrt_session_can_rewind(s, s->pos)) return lrt_rewind_error(s, s->pos, "eval");
  if (n > s->ctx - s->pos)
    return lrt_err(LRT_ERR_CONTEXT_FULL, "context full: %lld tokens are in the session and %lld more do not fit in "
                   "the context of %lld; start a new session, truncate it, or open it with a larger context",
                   (long long)s->pos, (long long)n, (long long)s->ctx);
  st = lrt_session_reserve(s, s->pos + n);
  if (st) return st;
  int64_t rows = all_logits ? n : 1;
  st = reserve_logits(s, rows);
  if (st) return st;
  s->logits_rows = 0; /* invalid until the pass completes */
  int64_t pos[LRT_CHUNK], lrows[LRT_CHUNK];
  for (int64_t start = 0; start < n; start += LRT_CHUNK) {
    int64_t M = n - start < LRT_CHUNK ? n - start : LRT_CHUNK;
    fwd_rows r = {tokens + start, pos, NULL, M, lrows, 0};
    for (int64_t t = 0; t < M; t++) pos[t] = s->pos + start + t;
    float *out = NULL;
    if (all_logits) {
      out = s->logits + start * c->vocab;
      for (int64_t t = 0; t < M; t++) lrows[t] = t;
      r.n_lrows = M;
    } else if (start + M == n) {
      out = s->logits;
      lrows[0] = M - 1;
      r.n_lrows = 1;
    }
    forward_chunk(s, &r, out, NULL);
  }
  /* non-finite logits are an error, never a token: find where they came from (the
   * diagnosis costs only on this path; the check is one pass over the logits) */
  for (int64_t r = 0; r < rows; r++)
    if (!all_finite(s->logits + r * c->vocab, c->vocab)) {
      int64_t bad_pos = s->pos + (all_logits ? r : n - 1);
      return numeric_error(s, tokens, all_logits ? bad_pos : s->pos, bad_pos);
    }
  memcpy(s->tokens + s->pos, tokens, (size_t)n * sizeof(int32_t));
  s->pos += n;
  s->logits_rows = rows;
  return LRT_OK;
}

/* ---- many sequences in one pass ---------------------------------------------------------- */

int32_t lrt_forward_batch(lrt_session *w, lrt_session *const *seqs, const int32_t *const *tokens,
                          const int64_t *counts, int64_t n_seqs) {
  const lrt_model *m = w->m;
  const lrt_config *c = &m->cfg;
  if (n_seqs < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the batch is empty: add sequences with lrt_batch_add first");
  /* everything is checked and every buffer reserved before any cache row is written, so a
   * failure leaves every session as it was */
  int64_t total = 0, max_pos = 0;
  for (int64_t i = 0; i < n_seqs; i++) {
    lrt_session *s = seqs[i];
    if (s->m != m)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "batch entry %lld: the session belongs to another model than the batch",
                     (long long)i);
    for (int64_t j = 0; j < i; j++)
      if (seqs[j] == s)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "batch entries %lld and %lld are the same session: add each session "
                       "once per step, with all its tokens", (long long)j, (long long)i);
    if (counts[i] < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "batch entry %lld has no tokens", (long long)i);
    if (s->pos == 0) s->kv_lo = 0;
    if (!lrt_session_can_rewind(s, s->pos)) return lrt_rewind_error(s, s->pos, "batch entry");
    for (int64_t j = 0; j < counts[i]; j++)
      if (tokens[i][j] < 0 || tokens[i][j] >= c->vocab)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "batch entry %lld: token id %d at index %lld is outside the "
                       "vocabulary [0, %lld)", (long long)i, tokens[i][j], (long long)j, (long long)c->vocab);
    if (counts[i] > s->ctx - s->pos)
      return lrt_err(LRT_ERR_CONTEXT_FULL, "batch entry %lld: context full: %lld tokens are in the session and %lld "
                     "more do not fit in its context of %lld", (long long)i, (long long)s->pos, (long long)counts[i],
                     (long long)s->ctx);
    total += counts[i];
    if (s->pos + counts[i] > max_pos) max_pos = s->pos + counts[i];
  }
  for (int64_t i = 0; i < n_seqs; i++) {
    int32_t st = lrt_session_reserve(seqs[i], seqs[i]->pos + counts[i]);
    if (!st) st = reserve_logits(seqs[i], 1);
    if (st) return st;
  }
  /* the scratch session: attention scores for the longest sequence, logits of one chunk */
  if (max_pos > w->scores_cap) {
    float *sc = (float *)realloc(w->scores, (size_t)max_pos * (size_t)lrt_pool_threads(w->pool) * sizeof(float));
    if (!sc) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for attention scores");
    w->scores = sc;
    w->scores_cap = max_pos;
  }
  int64_t chunk = w->chunk < LRT_CHUNK ? w->chunk : LRT_CHUNK;
  int32_t st = reserve_logits(w, n_seqs < chunk ? n_seqs : chunk);
  if (st) return st;
  int32_t tok[LRT_CHUNK];
  int64_t pos[LRT_CHUNK], lrows[LRT_CHUNK], lseq[LRT_CHUNK];
  lrt_session *own[LRT_CHUNK];
  int64_t M = 0, nl = 0;
  for (int64_t i = 0; i < n_seqs; i++) {
    for (int64_t j = 0; j < counts[i]; j++) {
      tok[M] = tokens[i][j];
      pos[M] = seqs[i]->pos + j;
      own[M] = seqs[i];
      if (j == counts[i] - 1) { lrows[nl] = M; lseq[nl++] = i; }
      M++;
      int last = i == n_seqs - 1 && j == counts[i] - 1;
      if (M == chunk || last) {
        fwd_rows r = {tok, pos, own, M, lrows, nl};
        forward_chunk(w, &r, w->logits, NULL);
        for (int64_t k = 0; k < nl; k++) {
          lrt_session *s = seqs[lseq[k]];
          memcpy(s->logits, w->logits + k * c->vocab, (size_t)c->vocab * sizeof(float));
        }
        M = nl = 0;
      }
    }
  }
  for (int64_t i = 0; i < n_seqs; i++) {
    lrt_session *s = seqs[i];
    memcpy(s->tokens + s->pos, tokens[i], (size_t)counts[i] * sizeof(int32_t));
    s->pos += counts[i];
    s->logits_rows = 1;
  }
  return LRT_OK;
}

void lrt_forward_head(lrt_session *s, const float *hidden, int64_t rows, float *logits) {
  const lrt_model *m = s->m;
  int64_t D = m->cfg.dim, V = m->cfg.vocab;
  for (int64_t r0 = 0; r0 < rows; r0 += LRT_CHUNK) {
    int64_t M = rows - r0 < LRT_CHUNK ? rows - r0 : LRT_CHUNK;
    norm_rows(m, s->xb, hidden + r0 * D, M, m->out_norm, m->out_norm_b);
    mm_job head = {&m->lm_head, s->xb, logits + r0 * V, V, NULL, NULL};
    matmul(s, M, &head, 1);
  }
}
