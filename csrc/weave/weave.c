/* weave.c -- the weave's state: buffers, weights (static, schedules, the route rule's fence
 * state) and the trace rows (docs/weaving.md). The per-step numerics are in combine.c. */
#include <stdlib.h>
#include <string.h>

#include "weave.h"

int32_t lrt_wv_init(lrt_weave *w) {
  int64_t n = w->n;
  w->vmax = 0;
  for (int64_t i = 0; i < n; i++)
    if (w->vocab[i] > w->vmax) w->vmax = w->vocab[i];
  w->mode = LRT_WEAVE_MIX;
  w->alpha = -1.0;
  w->amateur_temp = 1.0;
  w->top_k = 5;
  for (int64_t i = 0; i < n; i++) w->weights[i] = 1.0;
  w->pending = -1;
  w->z = (float *)malloc((size_t)(n * w->vmax) * sizeof(float));
  w->p = (float *)malloc((size_t)(n * w->vmax) * sizeof(float));
  w->comb = (float *)malloc((size_t)w->V * sizeof(float));
  w->cp = (float *)malloc((size_t)w->V * sizeof(float));
  if (!w->z || !w->p || !w->comb || !w->cp) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for the weave");
  /* the sampler carrier: the default settings of a new session, logits = comb */
  lrt_session *c = &w->carrier;
  c->m = w->s[0]->m;
  for (int64_t i = 0; i < n; i++)
    if (w->vocab[i] == w->V) { c->m = w->s[i]->m; break; } /* lrt_sample reads cfg.vocab: V */
  c->temperature = 0.0;
  c->top_p = 1.0;
  c->repeat_penalty = 1.0;
  c->repeat_last_n = -1;
  c->max_tokens = -1;
  c->logits = w->comb;
  c->logits_rows = 0;
  return lrt_sampler_reserve(c);
}

void lrt_wv_release(lrt_weave *w) {
  lrt_pool_free(w->pool);
  w->pool = NULL;
  free(w->z); free(w->p); free(w->comb); free(w->cp); free(w->sched);
  free(w->carrier.cand_ids); free(w->carrier.cand_probs); free(w->carrier.cand_logits);
  free(w->row_tok); free(w->row_dom); free(w->row_d); free(w->row_rank); free(w->row_top_id); free(w->row_top_p);
  free(w->ids);
}

int32_t lrt_wv_set_parallel(lrt_weave *w, int32_t threads) {
  if (threads > w->n) threads = (int32_t)w->n;
  if (threads < 2) threads = 0;
  if (threads == w->parallel) return LRT_OK;
  lrt_pool_free(w->pool);
  w->pool = NULL;
  w->parallel = 0;
  if (threads == 0) return LRT_OK;
  int32_t st = lrt_pool_new(threads, &w->pool);
  if (st) return st;
  w->parallel = threads;
  return LRT_OK;
}

void lrt_wv_each_model(lrt_weave *w, lrt_task_fn fn, void *ctx) {
  if (w->pool) {
    lrt_pool_run(w->pool, fn, ctx, w->n);
    return;
  }
  for (int64_t i = 0; i < w->n; i++) fn(ctx, i, 0);
}

int32_t lrt_wv_check_mode(int32_t mode, int64_t n) {
  switch (mode) {
    case LRT_WEAVE_MIX: case LRT_WEAVE_PRODUCT: return LRT_OK;
    case LRT_WEAVE_CONTRAST:
      if (n != 2) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "mode contrast weaves 2 models (expert, amateur), this weave has %lld", (long long)n);
      return LRT_OK;
    case LRT_WEAVE_PROXY:
      if (n != 3) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "mode proxy weaves 3 models (base, expert, anti-expert), this weave has %lld", (long long)n);
      return LRT_OK;
    default:
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown weave mode %d (0 mix, 1 product, 2 contrast, 3 proxy)", (int)mode);
  }
}

int32_t lrt_wv_check_weights(const double *v, int64_t n, const char *what) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (v[i] != v[i]) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: weight %lld is NaN", what, (long long)i);
    if (v[i] < 0.0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: weight %lld is negative (%g); weights must be >= 0", what, (long long)i, v[i]);
    if (!(v[i] <= 1e30)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: weight %lld is not finite or too large (%g)", what, (long long)i, v[i]);
    sum = sum + v[i];
  }
  if (!(sum > 0.0)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: all weights are 0; give at least one model a positive weight", what);
  return LRT_OK;
}

void lrt_wv_base_weights(const lrt_weave *w, int64_t step, double *out) {
  int64_t n = w->n;
  if (w->sched_kind == LRT_WEAVE_SCHEDULE_LIST && w->sched_rows > 0) {
    int64_t r = step < w->sched_rows ? step : w->sched_rows - 1;
    memcpy(out, w->sched + r * n, (size_t)n * sizeof(double));
    return;
  }
  if (w->sched_kind == LRT_WEAVE_SCHEDULE_RAMP && w->sched_rows > 0) {
    const double *k = w->sched;
    int64_t st = n + 1, last = w->sched_rows - 1;
    double x = (double)step;
    if (x <= k[0]) { memcpy(out, k + 1, (size_t)n * sizeof(double)); return; }
    if (x >= k[last * st]) { memcpy(out, k + last * st + 1, (size_t)n * sizeof(double)); return; }
    int64_t j = 0;
    while (k[(j + 1) * st] <= x) j++; /* knot j <= x < knot j+1 */
    const double *a = k + j * st, *b = k + (j + 1) * st;
    double f = (x - a[0]) / (b[0] - a[0]);
    for (int64_t i = 0; i < n; i++) out[i] = a[1 + i] + (b[1 + i] - a[1 + i]) * f;
    return;
  }
  memcpy(out, w->weights, (size_t)n * sizeof(double));
}

/* A fence is a run of three or more backticks; the state flips when a run reaches three. */
void lrt_wv_observe(lrt_weave *w, const char *bytes, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (bytes[i] == '`') {
      if (++w->backticks == 3) w->in_code = !w->in_code;
    } else {
      w->backticks = 0;
    }
  }
}

void lrt_wv_restart(lrt_weave *w) {
  w->in_code = 0;
  w->backticks = 0;
  w->n_rows = 0;
  if (w->row_top_k != w->top_k) { /* the row stride changes: allocate anew */
    free(w->row_tok); free(w->row_dom); free(w->row_d); free(w->row_rank); free(w->row_top_id); free(w->row_top_p);
    w->row_tok = w->row_dom = w->row_top_id = NULL;
    w->row_d = NULL;
    w->row_rank = NULL;
    w->row_top_p = NULL;
    w->cap_rows = 0;
  }
  w->row_top_k = w->top_k;
  w->has_comb = 0;
}

/* ---- trace -------------------------------------------------------------------------------- */

static int grow_rows(lrt_weave *w) {
  if (w->n_rows < w->cap_rows) return 1;
  int64_t cap = w->cap_rows ? 2 * w->cap_rows : 64, n = w->n, k = w->row_top_k > 0 ? w->row_top_k : 1;
  void *a = realloc(w->row_tok, (size_t)cap * sizeof(int32_t));
  if (!a) return 0;
  w->row_tok = (int32_t *)a;
  if (!(a = realloc(w->row_dom, (size_t)cap * sizeof(int32_t)))) return 0;
  w->row_dom = (int32_t *)a;
  if (!(a = realloc(w->row_d, (size_t)(cap * (2 + 3 * n)) * sizeof(double)))) return 0;
  w->row_d = (double *)a;
  if (!(a = realloc(w->row_rank, (size_t)(cap * n) * sizeof(int64_t)))) return 0;
  w->row_rank = (int64_t *)a;
  if (!(a = realloc(w->row_top_id, (size_t)(cap * (n + 1) * k) * sizeof(int32_t)))) return 0;
  w->row_top_id = (int32_t *)a;
  if (!(a = realloc(w->row_top_p, (size_t)(cap * (n + 1) * k) * sizeof(float)))) return 0;
  w->row_top_p = (float *)a;
  w->cap_rows = cap;
  return 1;
}

/* The k most probable ids of p[0..n) (probability desc, id asc), -1 / 0 past the end. */
static void top_k(const float *p, int64_t n, int32_t k, int32_t *ids, float *ps) {
  int32_t have = 0;
  for (int64_t u = 0; u < n; u++) {
    float v = p[u];
    if (have == k && !(v > ps[k - 1])) continue; /* ties keep the lower id already there */
    int32_t j = have < k ? have++ : k - 1;
    while (j > 0 && v > ps[j - 1]) {
      ps[j] = ps[j - 1];
      ids[j] = ids[j - 1];
      j--;
    }
    ps[j] = v;
    ids[j] = (int32_t)u;
  }
  for (int32_t j = have; j < k; j++) { ids[j] = -1; ps[j] = 0.0f; }
}

/* 1 + the ids ranked above t in p[0..n): higher probability, or equal and a lower id. */
static int64_t rank_of(const float *p, int64_t n, int32_t t) {
  float v = p[t];
  int64_t r = 1;
  for (int64_t u = 0; u < n; u++) r += p[u] > v || (p[u] == v && u < t);
  return r;
}

typedef struct {
  lrt_weave *w;
  int32_t t;
  int64_t r;
} record_ctx;

/* Model i's part of a trace row: its rank of t and its own top tokens (a pool task). */
static void record_model(void *ctx, int64_t i, int thread) {
  (void)thread;
  const record_ctx *c = (const record_ctx *)ctx;
  lrt_weave *w = c->w;
  int64_t n = w->n, r = c->r, k = w->row_top_k;
  const float *p = w->p + i * w->vmax;
  w->row_rank[r * n + i] = rank_of(p, w->vocab[i], c->t);
  if (k > 0) top_k(p, w->vocab[i], (int32_t)k, w->row_top_id + (r * (n + 1) + i) * k, w->row_top_p + (r * (n + 1) + i) * k);
}

int32_t lrt_wv_record(lrt_weave *w, int32_t t) {
  if (!grow_rows(w)) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for the weave trace");
  int64_t n = w->n, vm = w->vmax, r = w->n_rows, k = w->row_top_k;
  double *d = w->row_d + r * (2 + 3 * n);
  double *wt = d + 2, *pr = d + 2 + n, *sh = d + 2 + 2 * n;
  double sampled = 0.0;
  for (int64_t j = 0; j < w->carrier.n_cand; j++)
    if (w->carrier.cand_ids[j] == t) { sampled = (double)w->carrier.cand_probs[j]; break; }
  d[0] = (double)w->cp[t];
  d[1] = sampled;
  record_ctx rc = {w, t, r};
  lrt_wv_each_model(w, record_model, &rc);
  double alpha = w->alpha >= 0.0 ? w->alpha : (w->mode == LRT_WEAVE_CONTRAST ? 0.1 : 1.0);
  int32_t dom = 0;
  double best = -1.0, mix_sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const float *p = w->p + i * vm;
    wt[i] = w->w_now[i];
    pr[i] = (double)p[t];
    double lp = (double)((w->z[i * vm + t] - w->zmax[i]) - w->lz[i]);
    switch (w->mode) {
      case LRT_WEAVE_MIX: sh[i] = (double)(w->wf[i] * p[t]); mix_sum = mix_sum + sh[i]; break;
      case LRT_WEAVE_PRODUCT: sh[i] = w->w_now[i] * lp; break;
      case LRT_WEAVE_CONTRAST: sh[i] = i == 0 ? w->w_now[0] * lp : -(w->w_now[1] * lp); break;
      default: { /* proxy: the logits' terms */
        double z = (double)w->z[i * vm + t];
        sh[i] = i == 0 ? w->w_now[0] * z : (i == 1 ? alpha * (w->w_now[1] * z) : -(alpha * (w->w_now[2] * z)));
      }
    }
    double infl = w->w_now[i] * (double)p[t];
    if (infl > best) { best = infl; dom = (int32_t)i; }
  }
  if (w->mode == LRT_WEAVE_MIX)
    for (int64_t i = 0; i < n; i++) sh[i] = mix_sum > 0.0 ? sh[i] / mix_sum : 0.0;
  if (k > 0) top_k(w->cp, w->V, (int32_t)k, w->row_top_id + (r * (n + 1) + n) * k, w->row_top_p + (r * (n + 1) + n) * k);
  w->row_tok[r] = t;
  w->row_dom[r] = dom;
  w->n_rows++;
  return LRT_OK;
}
