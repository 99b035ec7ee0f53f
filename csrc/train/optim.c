/* optim.c -- AdamW with global-norm clipping, the learning-rate schedules, and the
 * optimizer state blob.
 *
 * One update (lrt_tr_apply), on the gradient sums accumulated since the last update over
 * N target tokens:
 *   1. tied LM head: G[tok_embd] = G[tok_embd] + lookup part (one add per element);
 *   2. g = G / N (IEEE division per element: the mean-loss gradient);
 *   3. ||g||^2: chunks of LRT_TRAIN_CHUNK elements of the flat buffer, each a dot8 of the
 *      chunk with itself (tasks split chunks), then the chunk sums added in order (float);
 *      norm = sqrtf. When clip > 0 and norm > clip: c = clip / (norm + 1e-6), g = g * c;
 *   4. lr = schedule(step) * lr_scale (double, rounded to float once);
 *   5. per element, in float:  p = p * (1 - lr * wd)            (matrices only)
 *                              m = b1 * m + (1 - b1) * g
 *                              v = b2 * v + (1 - b2) * (g * g)
 *                              p = p - (lr / bc1) * (m / (sqrtf(v) / sqrt(bc2) + eps))
 *      with bc1 = 1 - b1^t, bc2 = 1 - b2^t, b^t by repeated multiplication in double
 *      (no pow), the factors rounded to float once per step;
 *   6. the accumulators are cleared.
 * Elementwise steps have no order; every reduction has a fixed one. */
#include <math.h> /* sqrt / sqrtf only: correctly rounded by IEEE 754 */
#include <stdlib.h>
#include <string.h>

#include "../base/lrt_math.h"
#include "../kernels/kernels.h"
#include "train.h"

#define MIN64(a, b) ((a) < (b) ? (a) : (b))

double lrt_tr_lr_at(const lrt_trainer *t, int64_t step) {
  double lr = t->lr;
  if (t->warmup > 0 && step <= t->warmup) return lr * (double)step / (double)t->warmup * t->lr_scale;
  if (t->schedule == 1 && t->total_steps > t->warmup) { /* cosine from lr to min_lr at total_steps */
    double prog = (double)(step - t->warmup) / (double)(t->total_steps - t->warmup);
    if (prog > 1.0) prog = 1.0;
    double s, c;
    lrt_sincos(3.141592653589793 * prog, &s, &c);
    lr = t->min_lr + 0.5 * (t->lr - t->min_lr) * (1.0 + c);
  }
  return lr * t->lr_scale;
}

typedef struct opt_arg {
  lrt_trainer *t;
  float n;
  float coef;
  int phase; /* 0: mean + squares, 1: AdamW */
  float lr, b1, omb1, b2, omb2, bc1s, bc2s, eps;
} opt_arg;

/* decay flag of element e: tensors are contiguous, find by offset (chunks may span tensors) */
static int64_t tensor_of(const lrt_trainer *t, int64_t e) {
  int64_t lo = 0, hi = t->n_tensors - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (t->ten[mid].off <= e) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

static void opt_task(void *vc, int64_t task, int thread) {
  (void)thread;
  opt_arg *o = (opt_arg *)vc;
  lrt_trainer *t = o->t;
  const lrt_kernels *k = lrt_kernels_get();
  int64_t e0 = task * LRT_TRAIN_CHUNK, e1 = MIN64(e0 + LRT_TRAIN_CHUNK, t->n_params);
  float *g = t->G;
  if (o->phase == 0) {
    for (int64_t e = e0; e < e1; e++) g[e] = g[e] / o->n;
    t->parts[task] = k->dot_f32(g + e0, g + e0, e1 - e0);
    return;
  }
  int64_t ti = tensor_of(t, e0);
  for (int64_t e = e0; e < e1;) {
    const lrt_tparam *p = &t->ten[ti];
    int64_t end = MIN64(e1, p->off + p->rows * p->cols);
    float dec = p->decay ? (float)(1.0 - (double)o->lr * t->wd) : 1.0f;
    for (; e < end; e++) {
      float gi = o->coef != 1.0f ? g[e] * o->coef : g[e];
      float w = t->w[e];
      if (p->decay) w = w * dec;
      float m = o->b1 * t->m[e] + o->omb1 * gi;
      float v = o->b2 * t->v[e] + o->omb2 * (gi * gi);
      t->m[e] = m;
      t->v[e] = v;
      t->w[e] = w - o->bc1s * (m / (sqrtf(v) / o->bc2s + o->eps));
      g[e] = 0.0f;
    }
    ti++;
  }
}

int32_t lrt_tr_apply(lrt_trainer *t) {
  if (t->n_acc <= 0)
    return lrt_err(LRT_ERR_STATE, "no gradient to apply: call lrt_trainer_accumulate with a batch first");
  int64_t nch = (t->n_params + LRT_TRAIN_CHUNK - 1) / LRT_TRAIN_CHUNK;
  if (nch > t->parts_cap) {
    float *p = (float *)realloc(t->parts, (size_t)nch * sizeof(float));
    if (!p) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    t->parts = p;
    t->parts_cap = nch;
  }
  if (t->g_lookup) {
    float *ge = t->G + t->ten[t->tok_embd].off;
    int64_t n = t->cfg.vocab * t->cfg.dim;
    for (int64_t i = 0; i < n; i++) {
      ge[i] = ge[i] + t->g_lookup[i];
      t->g_lookup[i] = 0.0f;
    }
  }
  opt_arg o;
  memset(&o, 0, sizeof o);
  o.t = t;
  o.n = (float)t->n_acc;
  o.phase = 0;
  lrt_pool_run(t->pool, opt_task, &o, nch);
  float ss = 0.0f;
  for (int64_t c = 0; c < nch; c++) ss = ss + t->parts[c];
  float norm = sqrtf(ss);
  o.coef = 1.0f;
  if (t->clip > 0.0 && norm > (float)t->clip) o.coef = (float)t->clip / (norm + 1e-6f);
  t->step++;
  t->b1t = t->b1t * t->beta1;
  t->b2t = t->b2t * t->beta2;
  double lr = lrt_tr_lr_at(t, t->step);
  o.lr = (float)lr;
  o.b1 = (float)t->beta1;
  o.omb1 = (float)(1.0 - t->beta1);
  o.b2 = (float)t->beta2;
  o.omb2 = (float)(1.0 - t->beta2);
  o.bc1s = (float)((double)o.lr / (1.0 - t->b1t));
  o.bc2s = (float)sqrt(1.0 - t->b2t);
  o.eps = (float)t->eps;
  o.phase = 1;
  lrt_pool_run(t->pool, opt_task, &o, nch);
  t->last_loss = t->loss_acc / (double)t->n_acc;
  t->last_gnorm = (double)norm;
  t->last_lr = (double)o.lr;
  t->loss_acc = 0.0;
  t->n_acc = 0;
  return LRT_OK;
}

void lrt_tr_grad(const lrt_trainer *t, int64_t i, float *out) {
  const lrt_tparam *p = &t->ten[i];
  int64_t n = p->rows * p->cols;
  float cnt = (float)(t->n_acc > 0 ? t->n_acc : 1);
  const float *g = t->G + p->off;
  for (int64_t e = 0; e < n; e++) {
    float v = g[e];
    if (i == t->tok_embd && t->g_lookup) v = v + t->g_lookup[e];
    out[e] = v / cnt;
  }
}

/* ---- optimizer state blob ----------------------------------------------------------------
 * Little-endian on every host:
 *   "LRTTRAIN" | u32 format 1 | u32 numerics version | u64 total length | u64 fingerprint of
 *   the tensor table | u64 parameters | i64 step | f64 beta1^step | f64 beta2^step |
 *   f32 m[parameters] | f32 v[parameters] | u64 FNV-1a of all bytes before it */

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

uint64_t lrt_tr_fingerprint(const lrt_trainer *t) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int64_t i = 0; i < t->n_tensors; i++) {
    const lrt_tparam *p = &t->ten[i];
    h = fnv(h, (const uint8_t *)p->name, strlen(p->name) + 1);
    uint8_t b[16];
    for (int j = 0; j < 8; j++) {
      b[j] = (uint8_t)((uint64_t)p->rows >> (8 * j));
      b[8 + j] = (uint8_t)((uint64_t)p->cols >> (8 * j));
    }
    h = fnv(h, b, 16);
  }
  return h;
}

#define STATE_HEAD 64

size_t lrt_tr_state_size(const lrt_trainer *t) { return STATE_HEAD + (size_t)t->n_params * 8 + 8; }

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return u;
}
static double bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, 8);
  return d;
}
static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bitsf(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

void lrt_tr_state_write(const lrt_trainer *t, uint8_t *buf) {
  size_t len = lrt_tr_state_size(t);
  memcpy(buf, "LRTTRAIN", 8);
  put32(buf + 8, 1);
  put32(buf + 12, LRT_NUMERICS_VERSION);
  put64(buf + 16, (uint64_t)len);
  put64(buf + 24, lrt_tr_fingerprint(t));
  put64(buf + 32, (uint64_t)t->n_params);
  put64(buf + 40, (uint64_t)t->step);
  put64(buf + 48, dbits(t->b1t));
  put64(buf + 56, dbits(t->b2t));
  uint8_t *p = buf + STATE_HEAD;
  for (int64_t e = 0; e < t->n_params; e++, p += 4) put32(p, fbits(t->m[e]));
  for (int64_t e = 0; e < t->n_params; e++, p += 4) put32(p, fbits(t->v[e]));
  put64(p, fnv(0xcbf29ce484222325ull, buf, len - 8));
}

int32_t lrt_tr_state_read(lrt_trainer *t, const uint8_t *buf, size_t len) {
  if (len < STATE_HEAD + 8 || memcmp(buf, "LRTTRAIN", 8) != 0)
    return lrt_err(LRT_ERR_FORMAT, "not a loomrt optimizer state (no LRTTRAIN header)");
  if (lrt_rd_u32le(buf + 8) != 1)
    return lrt_err(LRT_ERR_UNSUPPORTED, "optimizer state format %u is not supported (this build reads 1)",
                   (unsigned)lrt_rd_u32le(buf + 8));
  if (lrt_rd_u32le(buf + 12) != LRT_NUMERICS_VERSION)
    return lrt_err(LRT_ERR_UNSUPPORTED, "optimizer state from numerics version %u; this build is %d",
                   (unsigned)lrt_rd_u32le(buf + 12), LRT_NUMERICS_VERSION);
  if (lrt_rd_u64le(buf + 16) != (uint64_t)len)
    return lrt_err(LRT_ERR_FORMAT, "optimizer state is truncated or has trailing bytes (%llu bytes, header says %llu)",
                   (unsigned long long)len, (unsigned long long)lrt_rd_u64le(buf + 16));
  if (lrt_rd_u64le(buf + len - 8) != fnv(0xcbf29ce484222325ull, buf, len - 8))
    return lrt_err(LRT_ERR_FORMAT, "optimizer state is corrupted (checksum mismatch)");
  if (lrt_rd_u64le(buf + 24) != lrt_tr_fingerprint(t) || lrt_rd_u64le(buf + 32) != (uint64_t)t->n_params ||
      len != lrt_tr_state_size(t))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "optimizer state was saved from a model of another configuration "
                   "(different tensors or shapes); resume with the configuration it was saved with");
  int64_t step = (int64_t)lrt_rd_u64le(buf + 40);
  if (step < 0) return lrt_err(LRT_ERR_FORMAT, "optimizer state has a negative step");
  t->step = step;
  t->b1t = bitsd(lrt_rd_u64le(buf + 48));
  t->b2t = bitsd(lrt_rd_u64le(buf + 56));
  const uint8_t *p = buf + STATE_HEAD;
  for (int64_t e = 0; e < t->n_params; e++, p += 4) t->m[e] = bitsf(lrt_rd_u32le(p));
  for (int64_t e = 0; e < t->n_params; e++, p += 4) t->v[e] = bitsf(lrt_rd_u32le(p));
  memset(t->G, 0, (size_t)t->n_params * sizeof(float));
  if (t->g_lookup) memset(t->g_lookup, 0, (size_t)(t->cfg.vocab * t->cfg.dim) * sizeof(float));
  t->loss_acc = 0.0;
  t->n_acc = 0;
  return LRT_OK;
}
