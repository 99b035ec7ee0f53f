/* sampler.c -- choose the next token from the last logits row.
 *
 * Pipeline (fixed order, as HF transformers applies its processors):
 *   repetition penalty -> greedy if temperature == 0 -> divide by temperature -> softmax ->
 *   top-k -> top-p -> min-p -> renormalise -> one uniform draw.
 * Candidates are ordered by (probability desc, token id asc): a total order, so the sort
 * result is the same on every platform. The draw is u = hash(seed, position), a
 * counter-based RNG, so any step can be replayed alone (docs/numerics.md). */
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "../base/lrt_math.h"
#include "model.h"

/* SplitMix64 finaliser: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Uniform float in [0, 1) for (seed, position): 24 random bits times 2^-24. */
static float uniform(uint64_t seed, int64_t position) {
  uint64_t r = mix64(mix64(seed) ^ (uint64_t)position);
  return (float)(r >> 40) * (1.0f / 16777216.0f);
}

typedef struct cand { float p; int32_t id; } cand;

static int cand_cmp(const void *a, const void *b) {
  const cand *x = (const cand *)a, *y = (const cand *)b;
  if (x->p > y->p) return -1;
  if (x->p < y->p) return 1;
  return x->id < y->id ? -1 : (x->id > y->id);
}

static int32_t ensure_buffers(lrt_session *s, int64_t vocab) {
  if (s->cand_ids) return LRT_OK;
  s->cand_ids = (int32_t *)malloc((size_t)vocab * sizeof(int32_t));
  s->cand_probs = (float *)malloc((size_t)vocab * sizeof(float));
  /* layout: V logits, V candidates, V scaled exponentials */
  s->cand_logits = (float *)malloc((size_t)vocab * (2 * sizeof(float) + sizeof(cand)));
  if (!s->cand_ids || !s->cand_probs || !s->cand_logits)
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for the sampler");
  return LRT_OK;
}

int32_t lrt_sampler_reserve(lrt_session *s) { return ensure_buffers(s, s->m->cfg.vocab); }

/* The first maximum, i.e. the lowest id on ties. */
static int32_t greedy(lrt_session *s, const float *l, int64_t V, int32_t *token) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; i++)
    if (l[i] > l[best]) best = i;
  s->cand_ids[0] = (int32_t)best;
  s->cand_probs[0] = 1.0f;
  s->n_cand = 1;
  *token = (int32_t)best;
  return LRT_OK;
}

int32_t lrt_sample(lrt_session *s, int32_t *token) {
  if (s->logits_rows < 1)
    return lrt_err(LRT_ERR_STATE, "no logits to sample from: call lrt_session_eval first");
  return lrt_sample_at(s, s->logits + (s->logits_rows - 1) * s->m->cfg.vocab, s->pos, token);
}

int32_t lrt_sample_at(lrt_session *s, const float *row, int64_t pos, int32_t *token) {
  const lrt_config *c = &s->m->cfg;
  int64_t V = c->vocab;
  int32_t st = ensure_buffers(s, V);
  if (st) return st;
  float *l = s->cand_logits;
  cand *cs = (cand *)(void *)(s->cand_logits + V);
  memcpy(l, row, (size_t)V * sizeof(float));
  for (int64_t i = 0; i < V; i++)
    if (l[i] != l[i]) l[i] = -3.402823466e38f; /* a NaN logit never wins */

  /* repetition penalty over the last repeat_last_n tokens (each id penalised once) */
  if (s->repeat_penalty != 1.0) {
    float pen = (float)s->repeat_penalty;
    int64_t from = s->repeat_last_n < 0 || s->repeat_last_n > pos ? 0 : pos - s->repeat_last_n;
    uint8_t *seen = (uint8_t *)s->cand_probs; /* scratch: V bytes fit in V floats */
    memset(seen, 0, (size_t)V);
    for (int64_t i = from; i < pos; i++) {
      int32_t t = s->tokens[i];
      if (seen[t]) continue;
      seen[t] = 1;
      l[t] = l[t] > 0.0f ? l[t] / pen : l[t] * pen;
    }
  }

  if (s->temperature == 0.0) return greedy(s, l, V, token);

  /* keep the penalised logits for the greedy fallback below */
  float *e = (float *)(void *)(cs + V);
  float temp = (float)s->temperature;
  float mx = -3.402823466e38f;
  for (int64_t i = 0; i < V; i++) {
    e[i] = l[i] / temp;
    if (e[i] > mx) mx = e[i];
  }
  for (int64_t i = 0; i < V; i++) e[i] = lrt_expf(e[i] - mx);
  float z = lrt_kernels_get()->sum_f32(e, V); /* in token-id order */

  int64_t n = 0;
  for (int64_t i = 0; i < V; i++) {
    float p = e[i] / z;
    if (p > 0.0f) { cs[n].p = p; cs[n].id = (int32_t)i; n++; }
  }
  /* A degenerate softmax (temperature so small that l / T overflows, or no finite logit)
   * leaves no candidate with a positive probability: fall back to greedy. */
  if (n == 0) return greedy(s, l, V, token);
  qsort(cs, (size_t)n, sizeof(cand), cand_cmp);
  if (s->top_k > 0 && s->top_k < n) n = s->top_k;
  if (s->top_p < 1.0) {
    float cum = 0.0f, tp = (float)s->top_p;
    int64_t keep = 0;
    while (keep < n) {
      cum = cum + cs[keep].p;
      keep++;
      if (cum >= tp) break;
    }
    n = keep;
  }
  if (s->min_p > 0.0) {
    float thr = cs[0].p * (float)s->min_p;
    int64_t keep = 1;
    while (keep < n && cs[keep].p >= thr) keep++;
    n = keep;
  }
  float total = 0.0f;
  for (int64_t i = 0; i < n; i++) total = total + cs[i].p;
  float target = uniform(s->seed, pos) * total;
  int64_t pick = n - 1;
  float cum = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    cum = cum + cs[i].p;
    if (target < cum) { pick = i; break; }
  }
  for (int64_t i = 0; i < n; i++) {
    s->cand_ids[i] = cs[i].id;
    s->cand_probs[i] = cs[i].p / total;
  }
  s->n_cand = n;
  *token = cs[pick].id;
  return LRT_OK;
}

/* log softmax of one logits row (docs/numerics.md, "Log-probabilities"): m = the largest
 * logit; s = sum over i in index order of exp(l_i - m) in double (lrt_exp); out_i =
 * (float)(l_i - (m + log s)) with the difference taken in double. One fixed order, own exp
 * and log, so the bits are the same everywhere. -inf logits give -inf; no NaN reaches here
 * (a session's logits are checked finite). */
void lrt_log_softmax_row(const float *logits, int64_t n, float *out) {
  float m = logits[0];
  for (int64_t i = 1; i < n; i++)
    if (logits[i] > m) m = logits[i];
  double md = (double)m;
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) sum = sum + lrt_exp((double)logits[i] - md);
  double lse = md + lrt_log(sum);
  for (int64_t i = 0; i < n; i++) out[i] = (float)((double)logits[i] - lse);
}
