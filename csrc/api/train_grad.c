/* train_grad.c -- the trainer's gradient accumulators as a flat buffer, for data-parallel
 * training (loomrt/ray.py, docs/scale-out.md): read the raw sums of a part of a global batch
 * on one trainer, add the parts in the batch's order on another. The addition is one float
 * add per element in the caller's order, the rule by which lrt_trainer_accumulate adds each
 * sequence's sums (csrc/train/train.h), so the result is the bits of one process. */
#include <string.h>

#include "../train/train.h"
#include "api_internal.h"

static int64_t grad_floats(const lrt_trainer *t) {
  return t->n_params + (t->g_lookup ? t->cfg.vocab * t->cfg.dim : 0);
}

static int32_t check_n(const lrt_trainer *t, int64_t n, int64_t want, const char *what) {
  if (n != want)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the %s buffer of this trainer has %lld floats, not %lld "
                   "(a trainer of another configuration?)", what, (long long)want, (long long)n);
  (void)t;
  return LRT_OK;
}

int32_t lrt_trainer_grad_size(const lrt_trainer *t, int64_t *n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(n, "n");
  *n = grad_floats(t);
  return LRT_OK;
}

int32_t lrt_trainer_grad_read(const lrt_trainer *t, float *out, int64_t n, double *loss_sum, int64_t *count) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(out, "out");
  int32_t st = check_n(t, n, grad_floats(t), "gradient");
  if (st) return st;
  memcpy(out, t->G, (size_t)t->n_params * sizeof(float));
  if (t->g_lookup) memcpy(out + t->n_params, t->g_lookup, (size_t)(n - t->n_params) * sizeof(float));
  if (loss_sum) *loss_sum = t->loss_acc;
  if (count) *count = t->n_acc;
  return LRT_OK;
}

int32_t lrt_trainer_grad_add(lrt_trainer *t, const float *in, int64_t n, double loss_sum, int64_t count) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(in, "in");
  int32_t st = check_n(t, n, grad_floats(t), "gradient");
  if (st) return st;
  if (count < 1 || count > ((int64_t)1 << 50))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "count (targets of the part) must be in [1, 2^50], got %lld",
                   (long long)count);
  if (!(loss_sum == loss_sum))
    return lrt_err(LRT_ERR_NUMERIC, "the part's loss sum is NaN: its worker's gradient is not usable");
  GUARD_ENTER;
  float *g = t->G;
  for (int64_t i = 0; i < t->n_params; i++) g[i] = g[i] + in[i];
  if (t->g_lookup) {
    const float *p = in + t->n_params;
    for (int64_t i = 0; i < n - t->n_params; i++) t->g_lookup[i] = t->g_lookup[i] + p[i];
  }
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
  int32_t st = check_n(t, n, t->n_params, "weights");
  if (st) return st;
  memcpy(out, t->w, (size_t)n * sizeof(float));
  return LRT_OK;
}

int32_t lrt_trainer_weights_write(lrt_trainer *t, const float *in, int64_t n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(in, "in");
  int32_t st = check_n(t, n, t->n_params, "weights");
  if (st) return st;
  memcpy(t->w, in, (size_t)n * sizeof(float));
  return LRT_OK;
}
