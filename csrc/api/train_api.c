/* train_api.c -- the exported gate of the training layer (csrc/train/): argument checks,
 * floating-point guard, error mapping. The numerics are in train/. */
#include <stdlib.h>
#include <string.h>

#include "../train/train.h"
#include "api_internal.h"



int32_t lrt_trainer_new(const char *json, size_t len, uint64_t seed, int32_t threads, lrt_trainer **out) {
  CHECK_PTR(out, "out");
  *out = NULL;
  CHECK_PTR(json, "config_json");
  int32_t st = lrt_api_threads(&threads);
  if (st) return st;
  GUARD_ENTER;
  lrt_config cfg;
  char name[256];
  st = lrt_config_from_hf_json(json, len, NULL, 0, LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS, &cfg, name, sizeof name);
  if (st) GUARD_RETURN(st);
  lrt_trainer *t = NULL;
  if ((st = lrt_tr_new_config(&cfg, threads, &t))) GUARD_RETURN(st);
  lrt_tr_init_weights(t, seed);
  *out = t;
  GUARD_RETURN(LRT_OK);
}

int32_t lrt_trainer_open(const char *path, size_t path_len, int32_t threads, lrt_trainer **out) {
  CHECK_PTR(out, "out");
  *out = NULL;
  CHECK_PTR(path, "path");
  if (path_len == 0 || path_len > 4000 || memchr(path, 0, path_len) || !lrt_utf8_valid(path, path_len))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the model path must be 1..4000 bytes of UTF-8 without NUL");
  int32_t st = lrt_api_threads(&threads);
  if (st) return st;
  char buf[4001];
  memcpy(buf, path, path_len);
  buf[path_len] = 0;
  GUARD_ENTER;
  lrt_model *m = NULL;
  if ((st = lrt_model_load(buf, LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS, &m))) GUARD_RETURN(st);
  st = lrt_tr_new_model(m, threads, out);
  lrt_model_free(m);
  GUARD_RETURN(st);
}

void lrt_trainer_free(lrt_trainer *t) { lrt_tr_free(t); }

int32_t lrt_trainer_set(lrt_trainer *t, int32_t key, double v) {
  CHECK_PTR(t, "trainer");
  if (v != v) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "trainer setting %d: NaN", key);
  switch (key) {
    case LRT_TRAIN_LR:
      if (!(v >= 0 && v < 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "learning rate must be in [0, 1e6)");
      t->lr = v; return LRT_OK;
    case LRT_TRAIN_MIN_LR:
      if (!(v >= 0 && v < 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "min learning rate must be in [0, 1e6)");
      t->min_lr = v; return LRT_OK;
    case LRT_TRAIN_WARMUP_STEPS:
    case LRT_TRAIN_TOTAL_STEPS:
      if (!(v >= 0 && v <= 1e15) || v != (double)(int64_t)v)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "step counts must be whole numbers >= 0");
      if (key == LRT_TRAIN_WARMUP_STEPS) t->warmup = (int64_t)v;
      else t->total_steps = (int64_t)v;
      return LRT_OK;
    case LRT_TRAIN_SCHEDULE:
      if (v != LRT_SCHEDULE_CONSTANT && v != LRT_SCHEDULE_COSINE)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "schedule must be LRT_SCHEDULE_CONSTANT (0) or LRT_SCHEDULE_COSINE (1)");
      t->schedule = (int32_t)v; return LRT_OK;
    case LRT_TRAIN_WEIGHT_DECAY:
      if (!(v >= 0 && v < 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "weight decay must be >= 0");
      t->wd = v; return LRT_OK;
    case LRT_TRAIN_BETA1:
    case LRT_TRAIN_BETA2:
      if (!(v >= 0 && v < 1)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "Adam betas must be in [0, 1)");
      if (t->step > 0) return lrt_err(LRT_ERR_STATE, "Adam betas cannot change after the first update");
      if (key == LRT_TRAIN_BETA1) t->beta1 = v;
      else t->beta2 = v;
      return LRT_OK;
    case LRT_TRAIN_EPS:
      if (!(v > 0 && v < 1)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "Adam eps must be in (0, 1)");
      t->eps = v; return LRT_OK;
    case LRT_TRAIN_CLIP_NORM:
      if (!(v >= 0 && v < 1e30)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "clip norm must be >= 0 (0: off)");
      t->clip = v; return LRT_OK;
    case LRT_TRAIN_LR_SCALE:
      if (!(v >= 0 && v <= 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "learning-rate scale must be in [0, 1e6]");
      t->lr_scale = v; return LRT_OK;
    default:
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown or read-only trainer setting %d", key);
  }
}

int32_t lrt_trainer_get(const lrt_trainer *t, int32_t key, double *out) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(out, "out");
  switch (key) {
    case LRT_TRAIN_LR: *out = t->lr; break;
    case LRT_TRAIN_MIN_LR: *out = t->min_lr; break;
    case LRT_TRAIN_WARMUP_STEPS: *out = (double)t->warmup; break;
    case LRT_TRAIN_TOTAL_STEPS: *out = (double)t->total_steps; break;
    case LRT_TRAIN_SCHEDULE: *out = t->schedule; break;
    case LRT_TRAIN_WEIGHT_DECAY: *out = t->wd; break;
    case LRT_TRAIN_BETA1: *out = t->beta1; break;
    case LRT_TRAIN_BETA2: *out = t->beta2; break;
    case LRT_TRAIN_EPS: *out = t->eps; break;
    case LRT_TRAIN_CLIP_NORM: *out = t->clip; break;
    case LRT_TRAIN_LR_SCALE: *out = t->lr_scale; break;
    case LRT_TRAIN_STEP: *out = (double)t->step; break;
    case LRT_TRAIN_LOSS: *out = t->last_loss; break;
    case LRT_TRAIN_GRAD_NORM: *out = t->last_gnorm; break;
    case LRT_TRAIN_LAST_LR: *out = t->last_lr; break;
    case LRT_TRAIN_PENDING_TOKENS: *out = (double)t->n_acc; break;
    case LRT_TRAIN_PARAMETERS: *out = (double)t->n_params; break;
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown trainer key %d", key);
  }
  return LRT_OK;
}

static int32_t check_batch(const lrt_trainer *t, const int32_t *tokens, int64_t batch, int64_t seq_len) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(tokens, "tokens");
  if (batch < 1 || batch > (1 << 20)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "batch must be in [1, 2^20]");
  if (seq_len < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "seq_len must be >= 1");
  if (seq_len > t->cfg.ctx)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "seq_len %lld exceeds the model's context of %lld positions",
                   (long long)seq_len, (long long)t->cfg.ctx);
  return LRT_OK;
}

int32_t lrt_trainer_accumulate(lrt_trainer *t, const int32_t *tokens, int64_t batch, int64_t seq_len, double *loss) {
  int32_t st = check_batch(t, tokens, batch, seq_len);
  if (st) return st;
  GUARD_ENTER;
  double sum;
  int64_t cnt;
  if ((st = lrt_tr_pass(t, tokens, batch, seq_len, 1, &sum, &cnt))) GUARD_RETURN(st);
  t->loss_acc = t->loss_acc + sum;
  t->n_acc += cnt;
  if (loss) *loss = sum / (double)cnt;
  GUARD_RETURN(LRT_OK);
}

int32_t lrt_trainer_apply(lrt_trainer *t) {
  CHECK_PTR(t, "trainer");
  GUARD_ENTER;
  GUARD_RETURN(lrt_tr_apply(t));
}

int32_t lrt_trainer_eval(lrt_trainer *t, const int32_t *tokens, int64_t batch, int64_t seq_len, double *loss) {
  int32_t st = check_batch(t, tokens, batch, seq_len);
  if (st) return st;
  CHECK_PTR(loss, "loss");
  GUARD_ENTER;
  double sum;
  int64_t cnt;
  if ((st = lrt_tr_pass(t, tokens, batch, seq_len, 0, &sum, &cnt))) GUARD_RETURN(st);
  *loss = sum / (double)cnt;
  GUARD_RETURN(LRT_OK);
}

int32_t lrt_trainer_logits(lrt_trainer *t, const int32_t *tokens, int64_t n, float *out, int64_t capacity) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(tokens, "tokens");
  CHECK_PTR(out, "out");
  if (n < 1 || n > t->cfg.ctx)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "n must be in [1, %lld] (the context)", (long long)t->cfg.ctx);
  if (capacity < t->cfg.vocab)
    return lrt_err(LRT_ERR_BUFFER_TOO_SMALL, "the logits need %lld floats", (long long)t->cfg.vocab);
  GUARD_ENTER;
  GUARD_RETURN(lrt_tr_last_logits(t, tokens, n, out));
}

int32_t lrt_trainer_tensor_count(const lrt_trainer *t, int64_t *count) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(count, "count");
  *count = t->n_tensors;
  return LRT_OK;
}

int32_t lrt_trainer_tensor_info(const lrt_trainer *t, int64_t i, const char **name, size_t *name_len, int64_t *rows,
                                int64_t *cols) {
  CHECK_PTR(t, "trainer");
  if (i < 0 || i >= t->n_tensors)
    return lrt_err(LRT_ERR_NOT_FOUND, "tensor index %lld is outside [0, %lld)", (long long)i, (long long)t->n_tensors);
  if (name) *name = t->ten[i].name;
  if (name_len) *name_len = strlen(t->ten[i].name);
  if (rows) *rows = t->ten[i].rows;
  if (cols) *cols = t->ten[i].cols;
  return LRT_OK;
}

int32_t lrt_trainer_tensor_read(const lrt_trainer *t, int64_t i, int32_t what, float *out, int64_t n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(out, "out");
  if (i < 0 || i >= t->n_tensors)
    return lrt_err(LRT_ERR_NOT_FOUND, "tensor index %lld is outside [0, %lld)", (long long)i, (long long)t->n_tensors);
  const lrt_tparam *p = &t->ten[i];
  if (n != p->rows * p->cols)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "tensor %s has %lld elements, not %lld", p->name,
                   (long long)(p->rows * p->cols), (long long)n);
  GUARD_ENTER;
  switch (what) {
    case LRT_TENSOR_WEIGHT: memcpy(out, t->w + p->off, (size_t)n * 4); break;
    case LRT_TENSOR_GRAD: lrt_tr_grad(t, i, out); break;
    case LRT_TENSOR_ADAM_M: memcpy(out, t->m + p->off, (size_t)n * 4); break;
    case LRT_TENSOR_ADAM_V: memcpy(out, t->v + p->off, (size_t)n * 4); break;
    default: GUARD_RETURN(lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown tensor kind %d", what));
  }
  GUARD_RETURN(LRT_OK);
}

int32_t lrt_trainer_tensor_write(lrt_trainer *t, int64_t i, const float *data, int64_t n) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(data, "data");
  if (i < 0 || i >= t->n_tensors)
    return lrt_err(LRT_ERR_NOT_FOUND, "tensor index %lld is outside [0, %lld)", (long long)i, (long long)t->n_tensors);
  const lrt_tparam *p = &t->ten[i];
  if (n != p->rows * p->cols)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "tensor %s has %lld elements, not %lld", p->name,
                   (long long)(p->rows * p->cols), (long long)n);
  memcpy(t->w + p->off, data, (size_t)n * 4);
  return LRT_OK;
}

int32_t lrt_trainer_state_size(const lrt_trainer *t, size_t *size) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(size, "size");
  *size = lrt_tr_state_size(t);
  return LRT_OK;
}

int32_t lrt_trainer_state_save(const lrt_trainer *t, void *buf, size_t cap, size_t *written) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(buf, "buf");
  if (t->n_acc > 0)
    return lrt_err(LRT_ERR_STATE, "a step is half accumulated (%lld targets): apply it before saving the state",
                   (long long)t->n_acc);
  size_t need = lrt_tr_state_size(t);
  if (cap < need) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the state needs %zu bytes, the buffer has %zu", need, cap);
  lrt_tr_state_write(t, (uint8_t *)buf);
  if (written) *written = need;
  return LRT_OK;
}

int32_t lrt_trainer_state_load(lrt_trainer *t, const void *buf, size_t len) {
  CHECK_PTR(t, "trainer");
  CHECK_PTR(buf, "buf");
  return lrt_tr_state_read(t, (const uint8_t *)buf, len);
}
