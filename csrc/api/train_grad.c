/* train_grad.c -- the trainer's gradient accumulators as flat buffers, for data-parallel
 * training (loomrt/ray.py, docs/scale-out.md): compute the gradient of a part of a global
 * batch on one trainer, add the parts in the batch's order on another, with the additions
 * one process makes (csrc/train/train.h):
 *   - weight, bias and norm gradients: each sequence's sums are added to the accumulator one
 *     sequence after the other, so a part holding one sequence's sums (read from a cleared
 *     trainer: 0 + s = s) added in sequence order repeats them exactly;
 *   - the embedding lookup adds its rows token after token (tpass.c): it is exchanged as the
 *     per-token rows and added token after token (lrt_trainer_lookup_add).
 * (A learned position row occurs once per sequence, so it travels with the weights' part.) */
#include <string.h>

#include "../train/train.h"
#include "api_internal.h"

/* the lookup's accumulator: tied head: g_lookup; untied: the tok_embd gradient itself */
static float *lookup_acc(lrt_trainer *t) { return t->g_lookup ? t->g_lookup : t->G + t->ten[t->tok_embd].off; }

/* the part of the flat buffer that is the lookup's (untied tok_embd), as [lo, hi) */
static void lookup_span(const lrt_trainer *t, int64_t *lo, int64_t *hi) {
  *lo = *hi = 0;
  if (!t->g_lookup) {
    const lrt_tparam *p = &t->ten[t->tok_embd];
    *lo = p->off;
    *hi = p->off + p->rows * p->cols;
  }
}

static int32_t check_n(int64_t n, int64_t want, const char *what) {
  if (n != want)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the %s buffer of this trainer has %lld floats, not %lld "
                   "(a trainer of another configuration?)", what, (long long)want, (long long)n);
  return LRT_OK;
}

int32_t lrt_trainer_grad_size(const lrt_trainer *t, int64_t *n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(n, "n");
  *n = t->n_params;
  return LRT_OK;
}

int32_t lrt_trainer_grad_read(const lrt_trainer *t, float *out, int64_t n, double *loss_sum, int64_t *count) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(out, "out");
  int32_t st = check_n(n, t->n_params, "gradient");
  if (st) return st;
  memcpy(out, t->G, (size_t)n * sizeof(float));
  int64_t lo, hi;
  lookup_span(t, &lo, &hi);
  if (hi > lo) memset(out + lo, 0, (size_t)(hi - lo) * sizeof(float));
  if (loss_sum) *loss_sum = t->loss_acc;
  if (count) *count = t->n_acc;
  return LRT_OK;
}

int32_t lrt_trainer_grad_add(lrt_trainer *t, const float *in, int64_t n, double loss_sum, int64_t count) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(in, "in");
  int32_t st = check_n(n, t->n_params, "gradient");
  if (st) return st;
  if (count < 1 || count > ((int64_t)1 << 50))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "count (targets of the part) must be in [1, 2^50], got %lld",
                   (long long)count);
  if (!(loss_sum == loss_sum))
    return lrt_err(LRT_ERR_NUMERIC, "the part's loss sum is NaN: its worker's gradient is not usable");
  GUARD_ENTER;
  int64_t lo, hi;
  lookup_span(t, &lo, &hi);
  float *g = t->G;
  for (int64_t i = 0; i < lo; i++) g[i] = g[i] + in[i];
  for (int64_t i = hi > lo ? hi : 0; i < n; i++) g[i] = g[i] + in[i];
  t->loss_acc = t->loss_acc + loss_sum;
  t->n_acc += count;
  GUARD_RETURN(LRT_OK);
}

int32_t lrt_trainer_grad_clear(lrt_trainer *t) {
  CHECK_PTR(t, "trainer");
  memset(t->G, 0, (size_t)t->n_params * sizeof(float));
  if (t->g_lookup) memset(t->g_lookup, 0, (size_t)(t->cfg.vocab * t->cfg.dim) * sizeof(float));
  t->loss_acc = 0.0;
  t->n_acc = 0;
  return LRT_OK;
}

int32_t lrt_trainer_weights_read(const lrt_trainer *t, float *out, int64_t n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(out, "out");
  int32_t st = check_n(n, t->n_params, "weights");
  if (st) return st;
  memcpy(out, t->w, (size_t)n * sizeof(float));
  return LRT_OK;
}

int32_t lrt_trainer_weights_write(lrt_trainer *t, const float *in, int64_t n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(in, "in");
  int32_t st = check_n(n, t->n_params, "weights");
  if (st) return st;
  memcpy(t->w, in, (size_t)n * sizeof(float));
  return LRT_OK;
}

static int32_t check_rows_batch(const lrt_trainer *t, const int32_t *tokens, int64_t batch, int64_t seq_len,
                                const void *rows, int64_t n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(tokens, "tokens");
  CHECK_PTR(rows, "rows");
  if (batch < 1 || batch > (1 << 20)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "batch must be in [1, 2^20]");
  if (seq_len < 1 || seq_len > t->cfg.ctx)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "seq_len must be in [1, %lld] (the context)", (long long)t->cfg.ctx);
  int64_t need = batch * seq_len * t->cfg.dim;
  if (n < need)
    return lrt_err(LRT_ERR_BUFFER_TOO_SMALL, "the rows of %lld x %lld positions need %lld floats, got %lld",
                   (long long)batch, (long long)seq_len, (long long)need, (long long)n);
  return LRT_OK;
}

int32_t lrt_trainer_accumulate_rows(lrt_trainer *t, const int32_t *tokens, int64_t batch, int64_t seq_len,
                                    float *rows, int64_t capacity, double *loss) {
  int32_t st = check_rows_batch(t, tokens, batch, seq_len, rows, capacity);
  if (st) return st;
  GUARD_ENTER;
  double sum;
  int64_t cnt;
  if ((st = lrt_tr_pass(t, tokens, batch, seq_len, 1, &sum, &cnt))) GUARD_RETURN(st);
  t->loss_acc = t->loss_acc + sum;
  t->n_acc += cnt;
  /* act.dx holds the gradient at the layer-0 input, (batch * seq_len, dim): what the lookup
   * (and a learned position table) added to its rows in the backward pass just run */
  memcpy(rows, t->act.dx, (size_t)(batch * seq_len * t->cfg.dim) * sizeof(float));
  if (loss) *loss = sum / (double)cnt;
  GUARD_RETURN(LRT_OK);
}

int32_t lrt_trainer_lookup_add(lrt_trainer *t, const int32_t *tokens, int64_t batch, int64_t seq_len,
                               const float *rows, int64_t n) {
  int32_t st = check_rows_batch(t, tokens, batch, seq_len, rows, n);
  if (st) return st;
  int64_t D = t->cfg.dim, V = t->cfg.vocab;
  for (int64_t s = 0; s < batch; s++)
    for (int64_t i = 0; i < seq_len; i++) {
      int32_t tok = tokens[s * (seq_len + 1) + i];
      if (tok < 0 || tok >= V)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token id %d at row %lld position %lld is outside the vocabulary "
                       "[0, %lld)", tok, (long long)s, (long long)i, (long long)V);
    }
  GUARD_ENTER;
  float *ge = lookup_acc(t);
  for (int64_t s = 0; s < batch; s++)
    for (int64_t i = 0; i < seq_len; i++) { /* token after token, as tpass.c's backward adds them */
      float *g = ge + (int64_t)tokens[s * (seq_len + 1) + i] * D;
      const float *d = rows + (s * seq_len + i) * D;
      for (int64_t e = 0; e < D; e++) g[e] = g[e] + d[e];
    }
  GUARD_RETURN(LRT_OK);
}
