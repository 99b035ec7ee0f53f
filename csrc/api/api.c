/* api.c -- the exported gate: argument checks, floating-point guard, error mapping.
 * The guard and check macros are in api_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "../text/tokenizer.h"
#include "api_internal.h"

const char *lrt_version_string(void) { return LRT_VERSION_STRING; }
int32_t lrt_version_number(void) {
  return LRT_VERSION_MAJOR * 10000 + LRT_VERSION_MINOR * 100 + LRT_VERSION_PATCH;
}
int32_t lrt_abi_version(void) { return LRT_ABI_VERSION; }
int32_t lrt_numerics_version(void) { return LRT_NUMERICS_VERSION; }
const char *lrt_kernel_path(void) { return lrt_kernels_get()->name; }

/* ---- models ------------------------------------------------------------------------------ */

int32_t lrt_model_open(const char *path, size_t path_len, int32_t flags, lrt_model **out) {
  CHECK_PTR(out, "out");
  *out = NULL;
  CHECK_PTR(path, "path");
  if (path_len == 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the model path is empty");
  if (memchr(path, 0, path_len)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the model path contains a NUL byte");
  if (!lrt_utf8_valid(path, path_len)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the model path is not valid UTF-8");
  if (path_len > 4000) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the model path is too long");
  if (flags & ~(LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS | LRT_OPEN_COPY_BUFFERS | LRT_OPEN_QUANTIZE_Q8_0 | LRT_OPEN_INT8_ACTIVATIONS |
                LRT_OPEN_ALLOW_UNUSED_TENSORS | LRT_OPEN_NO_MMAP | LRT_OPEN_TOKENIZER_ONLY | LRT_OPEN_FULL_KV))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_model_open: unknown flags 0x%x", (unsigned)flags);
  char buf[4096];
  memcpy(buf, path, path_len);
  buf[path_len] = 0;
  while (path_len > 1 && (buf[path_len - 1] == '/' || buf[path_len - 1] == '\\')) buf[--path_len] = 0;
  GUARD_ENTER;
  lrt_err_clear();
  int32_t st = lrt_model_load(buf, flags, out);
  if (st == LRT_OK && (st = lrt_model_attach(*out, (*out)->is_gguf ? NULL : buf, NULL, 0))) *out = NULL;
  GUARD_RETURN(st);
}

int32_t lrt_model_attach(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n_files) {
  lrt_model_attach_tokenizer(m, folder, files, n_files);
  int32_t st = LRT_OK;
  if ((m->open_flags & LRT_OPEN_TOKENIZER_ONLY) && !m->tok) /* nothing else to open: say why */
    st = lrt_err(m->tok_status ? m->tok_status : LRT_ERR_NOT_FOUND, "%s", m->tok_msg);
  if (st == LRT_OK) st = lrt_text_init(m, folder, files, n_files);
  if (st) lrt_model_destroy(m);
  return st;
}

void lrt_model_destroy(lrt_model *m) {
  if (!m) return;
  lrt_tok_free(m->tok);
  lrt_text *text = m->text;
  lrt_model_free(m);
  lrt_text_free(text); /* last: it may own the buffers the files point into */
}

void lrt_model_close(lrt_model *model) { lrt_model_destroy(model); }

int32_t lrt_model_get_int(const lrt_model *m, int32_t key, int64_t *out) {
  CHECK_PTR(m, "model");
  CHECK_PTR(out, "out");
  const lrt_config *c = &m->cfg;
  switch (key) {
    case LRT_INFO_VOCAB_SIZE: *out = c->vocab; break;
    case LRT_INFO_CONTEXT_LENGTH: *out = c->ctx; break;
    case LRT_INFO_HIDDEN_SIZE: *out = c->dim; break;
    case LRT_INFO_LAYERS: *out = c->n_layers; break;
    case LRT_INFO_HEADS: *out = c->n_heads; break;
    case LRT_INFO_KV_HEADS: *out = c->n_kv_heads; break;
    case LRT_INFO_HEAD_DIM: *out = c->head_dim; break;
    case LRT_INFO_FFN_SIZE: *out = c->ffn; break;
    case LRT_INFO_PARAMETERS: *out = (int64_t)m->n_params; break;
    case LRT_INFO_WEIGHT_BYTES: *out = (int64_t)m->weight_bytes; break;
    case LRT_INFO_RESIDENT_BYTES: *out = (int64_t)m->resident_bytes; break;
    case LRT_INFO_BOS_ID: *out = c->bos; break;
    case LRT_INFO_EOS_COUNT: *out = c->n_eos; break;
    case LRT_INFO_TIED_EMBEDDINGS: *out = c->tied; break;
    case LRT_INFO_IS_GGUF: *out = m->is_gguf; break;
    case LRT_INFO_TOKENIZER_SIZE: *out = m->tok ? lrt_tok_size(m->tok) : 0; break;
    case LRT_INFO_TOKENIZER_BOS_ID: *out = lrt_text_token(m->text, 0); break;
    case LRT_INFO_TOKENIZER_EOS_ID: *out = lrt_text_token(m->text, 1); break;
    case LRT_INFO_EOG_COUNT: *out = lrt_text_eog_count(m->text); break;
    case LRT_INFO_SLIDING_WINDOW: *out = c->sliding_window > 0 ? c->sliding_window : 0; break;
    case LRT_INFO_SLIDING_LAYERS: {
      int64_t k = 0;
      for (int64_t l = 0; l < c->n_layers; l++) k += lrt_layer_window(c, l) > 0;
      *out = k;
      break;
    }
    case LRT_INFO_KV_WINDOW_ROWS: *out = lrt_kv_ring_rows(m, INT64_MAX); break;
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown model info key %d", key);
  }
  return LRT_OK;
}

int32_t lrt_model_eos_id(const lrt_model *m, int64_t index, int32_t *out) {
  CHECK_PTR(m, "model");
  CHECK_PTR(out, "out");
  if (index < 0 || index >= m->cfg.n_eos)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "eos index %lld out of range [0, %d)", (long long)index, m->cfg.n_eos);
  *out = m->cfg.eos[index];
  return LRT_OK;
}

int32_t lrt_model_eog_id(const lrt_model *m, int64_t index, int32_t *out) {
  CHECK_PTR(m, "model");
  CHECK_PTR(out, "out");
  int64_t n = lrt_text_eog_count(m->text);
  if (index < 0 || index >= n)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "end-of-generation index %lld out of range [0, %lld)", (long long)index,
                   (long long)n);
  *out = lrt_text_eog(m->text, index);
  return LRT_OK;
}

int32_t lrt_model_get_str(const lrt_model *m, int32_t key, const char **out, size_t *out_len) {
  CHECK_PTR(m, "model");
  CHECK_PTR(out, "out");
  CHECK_PTR(out_len, "out_len");
  const char *s;
  switch (key) {
    case LRT_STR_ARCHITECTURE: s = m->cfg.arch_name; break;
    case LRT_STR_DTYPE: s = m->dtype_name; break;
    case LRT_STR_SOURCE: s = m->is_gguf ? "gguf" : "safetensors"; break;
    case LRT_STR_NAME: s = m->name; break;
    case LRT_STR_FEATURES: s = m->features; break;
    case LRT_STR_CHAT_TEMPLATE: {
      size_t n;
      lrt_text_chat_template(m, out, &n);
      *out_len = n;
      return LRT_OK;
    }
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown model string key %d", key);
  }
  *out = s;
  *out_len = strlen(s);
  return LRT_OK;
}

/* ---- GGUF metadata -------------------------------------------------------------------------- */

int64_t lrt_model_meta_count(const lrt_model *m) {
  return m && m->is_gguf ? (int64_t)m->gguf.n_kv : 0;
}

int32_t lrt_model_meta_key(const lrt_model *m, int64_t i, const char **key, size_t *key_len) {
  CHECK_PTR(m, "model");
  CHECK_PTR(key, "key");
  CHECK_PTR(key_len, "key_len");
  if (i < 0 || i >= lrt_model_meta_count(m))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "metadata index %lld out of range", (long long)i);
  *key = m->gguf.kv[i].key;
  *key_len = m->gguf.kv[i].key_len;
  return LRT_OK;
}

static int32_t find_kv(const lrt_model *m, const char *key, size_t key_len, const lrt_gguf_kv **out) {
  CHECK_PTR(m, "model");
  CHECK_PTR(key, "key");
  if (m->is_gguf)
    for (size_t i = 0; i < m->gguf.n_kv; i++)
      if (m->gguf.kv[i].key_len == key_len && memcmp(m->gguf.kv[i].key, key, key_len) == 0) {
        *out = &m->gguf.kv[i];
        return LRT_OK;
      }
  return lrt_err(LRT_ERR_NOT_FOUND, "metadata key \"%.*s\" not found", (int)(key_len > 200 ? 200 : key_len), key);
}

static int32_t kv_index(const lrt_gguf_kv *kv, int64_t index) {
  if (index < 0 || (uint64_t)index >= kv->count)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "metadata \"%s\": index %lld out of range [0, %llu)", kv->key,
                   (long long)index, (unsigned long long)kv->count);
  return LRT_OK;
}

int32_t lrt_model_meta_type(const lrt_model *m, const char *key, size_t key_len, int32_t *type,
                            int32_t *elem_type, int64_t *count) {
  const lrt_gguf_kv *kv;
  int32_t st = find_kv(m, key, key_len, &kv);
  if (st) return st;
  if (type) *type = (int32_t)kv->type;
  if (elem_type) *elem_type = (int32_t)kv->elem_type;
  if (count) *count = (int64_t)kv->count;
  return LRT_OK;
}

int32_t lrt_model_meta_str(const lrt_model *m, const char *key, size_t key_len, int64_t index,
                           const char **out, size_t *out_len) {
  CHECK_PTR(out, "out");
  CHECK_PTR(out_len, "out_len");
  const lrt_gguf_kv *kv;
  int32_t st = find_kv(m, key, key_len, &kv);
  if (st) return st;
  if (kv->elem_type != LRT_META_STRING)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "metadata \"%s\" is not a string", kv->key);
  if ((st = kv_index(kv, index))) return st;
  *out = kv->strs[index];
  *out_len = (size_t)kv->str_lens[index];
  return LRT_OK;
}

int32_t lrt_model_meta_int(const lrt_model *m, const char *key, size_t key_len, int64_t index,
                           int64_t *out) {
  CHECK_PTR(out, "out");
  const lrt_gguf_kv *kv;
  int32_t st = find_kv(m, key, key_len, &kv);
  if (st) return st;
  if ((st = kv_index(kv, index))) return st;
  if (lrt_gguf_kv_int(kv, (uint64_t)index, out) != LRT_OK)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "metadata \"%s\" is not an integer (or does not fit int64)", kv->key);
  return LRT_OK;
}

int32_t lrt_model_meta_uint(const lrt_model *m, const char *key, size_t key_len, int64_t index,
                            uint64_t *out) {
  CHECK_PTR(out, "out");
  const lrt_gguf_kv *kv;
  int32_t st = find_kv(m, key, key_len, &kv);
  if (st) return st;
  if ((st = kv_index(kv, index))) return st;
  if (kv->elem_type == LRT_META_UINT64) {
    *out = lrt_rd_u64le(kv->data + 8 * (uint64_t)index);
    return LRT_OK;
  }
  int64_t v;
  if (lrt_gguf_kv_int(kv, (uint64_t)index, &v) != LRT_OK || v < 0)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "metadata \"%s\" is not a non-negative integer", kv->key);
  *out = (uint64_t)v;
  return LRT_OK;
}

int32_t lrt_model_meta_float(const lrt_model *m, const char *key, size_t key_len, int64_t index,
                             double *out) {
  CHECK_PTR(out, "out");
  const lrt_gguf_kv *kv;
  int32_t st = find_kv(m, key, key_len, &kv);
  if (st) return st;
  if ((st = kv_index(kv, index))) return st;
  if (lrt_gguf_kv_float(kv, (uint64_t)index, out) != LRT_OK)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "metadata \"%s\" is not a number", kv->key);
  return LRT_OK;
}

/* ---- sessions ---------------------------------------------------------------------------- */

int32_t lrt_session_new(lrt_model *m, int64_t context, int32_t threads, lrt_session **out) {
  CHECK_PTR(out, "out");
  *out = NULL;
  CHECK_PTR(m, "model");
  if (m->open_flags & LRT_OPEN_TOKENIZER_ONLY)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the model was opened with LRT_OPEN_TOKENIZER_ONLY (tokenizer only, no "
                   "weights): open it without that flag to run it");
  if (context < 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "context must be >= 0 (0 = the model's %lld)", (long long)m->cfg.ctx);
  if (context > m->cfg.ctx)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "context %lld exceeds the model's maximum of %lld positions",
                   (long long)context, (long long)m->cfg.ctx);
  int32_t tst = lrt_api_threads(&threads);
  if (tst) return tst;
  GUARD_ENTER;
  GUARD_RETURN(lrt_session_create(m, context ? context : m->cfg.ctx, threads, LRT_CHUNK, out));
}

void lrt_session_free(lrt_session *s) {
  if (!s) return;
  lrt_gen_free(s->gen);
  s->gen = NULL;
  lrt_session_destroy(s);
}

/* Each exported session function below is the body (a static *_in function, which the
 * library's own code calls) wrapped in lrt_session_enter / lrt_session_leave. */
#define SESSION_CALL(s, fn, call) \
  do { \
    CHECK_PTR(s, "session"); \
    int32_t busy_ = lrt_session_enter((s), fn); \
    if (busy_) return busy_; \
    int32_t st_ = (call); \
    lrt_session_leave(s); \
    return st_; \
  } while (0)

int32_t lrt_session_reset_in(lrt_session *s) {
  lrt_gen_stop(s);
  s->pos = 0;
  s->kv_lo = 0;
  s->logits_rows = 0;
  s->n_cand = 0;
  return LRT_OK;
}

int32_t lrt_session_reset(lrt_session *s) { SESSION_CALL(s, "lrt_session_reset", lrt_session_reset_in(s)); }

static int32_t truncate_in(lrt_session *s, int64_t pos) {
  if (pos < 0 || pos > s->pos)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "truncate position %lld is outside [0, %lld]", (long long)pos, (long long)s->pos);
  if (!lrt_session_can_rewind(s, pos)) return lrt_rewind_error(s, pos, "lrt_session_truncate");
  if (pos != s->pos) lrt_gen_stop(s);
  s->pos = pos;
  if (pos == 0) s->kv_lo = 0;
  s->logits_rows = 0;
  s->n_cand = 0;
  return LRT_OK;
}

int32_t lrt_session_truncate(lrt_session *s, int64_t pos) {
  SESSION_CALL(s, "lrt_session_truncate", truncate_in(s, pos));
}

static int32_t kv_rows_in(const lrt_session *s, int64_t layer, int64_t *allocated, int64_t *limit) {
  int64_t L = s->m->cfg.n_layers;
  if (layer < -1 || layer >= L)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "layer %lld is outside [-1, %lld)", (long long)layer, (long long)L);
  int64_t a = 0, b = 0;
  for (int64_t l = layer < 0 ? 0 : layer; l < (layer < 0 ? L : layer + 1); l++) {
    a += lrt_kv_layer_rows(s, l, s->cap);
    b += lrt_kv_layer_rows(s, l, s->ctx);
  }
  if (allocated) *allocated = a;
  if (limit) *limit = b;
  return LRT_OK;
}

int32_t lrt_session_kv_rows(const lrt_session *s, int64_t layer, int64_t *allocated, int64_t *limit) {
  SESSION_CALL(s, "lrt_session_kv_rows", kv_rows_in(s, layer, allocated, limit));
}

static int32_t pool_stat_in(const lrt_session *s, int32_t thread, int32_t key, int64_t *out) {
  CHECK_PTR(out, "out");
  return lrt_pool_stat(s->pool, thread, key, out);
}

int32_t lrt_session_pool_stat(const lrt_session *s, int32_t thread, int32_t key, int64_t *out) {
  SESSION_CALL(s, "lrt_session_pool_stat", pool_stat_in(s, thread, key, out));
}

static int32_t pool_stats_reset_in(lrt_session *s, int32_t on) {
  lrt_pool_stats_reset(s->pool, on != 0);
  return LRT_OK;
}

int32_t lrt_session_pool_stats_reset(lrt_session *s, int32_t on) {
  SESSION_CALL(s, "lrt_session_pool_stats_reset", pool_stats_reset_in(s, on));
}

int64_t lrt_session_position(const lrt_session *s) {
  if (!s || lrt_session_enter(s, "lrt_session_position")) return -1;
  int64_t pos = s->pos;
  lrt_session_leave(s);
  return pos;
}

static int32_t eval_in(lrt_session *s, const int32_t *tokens, int64_t n, int32_t all_logits) {
  CHECK_PTR(tokens, "tokens");
  GUARD_ENTER;
  GUARD_RETURN(lrt_forward(s, tokens, n, all_logits != 0));
}

int32_t lrt_session_eval(lrt_session *s, const int32_t *tokens, int64_t n, int32_t all_logits) {
  SESSION_CALL(s, "lrt_session_eval", eval_in(s, tokens, n, all_logits));
}

static int32_t logits_in(const lrt_session *s, const float **out, int64_t *rows, int64_t *vocab) {
  CHECK_PTR(out, "out");
  if (s->logits_rows < 1) return lrt_err(LRT_ERR_STATE, "no logits yet: call lrt_session_eval first");
  *out = s->logits;
  if (rows) *rows = s->logits_rows;
  if (vocab) *vocab = s->m->cfg.vocab;
  return LRT_OK;
}

int32_t lrt_session_logits(const lrt_session *s, const float **out, int64_t *rows, int64_t *vocab) {
  SESSION_CALL(s, "lrt_session_logits", logits_in(s, out, rows, vocab));
}

int32_t lrt_session_set_float_in(lrt_session *s, int32_t param, double v) {
  if (v != v) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "sampler parameter %d must not be NaN", param);
  switch (param) {
    case LRT_PARAM_TEMPERATURE:
      if (!(v >= 0.0 && v <= 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "temperature must be >= 0 (0 = greedy), got %g", v);
      s->temperature = v; return LRT_OK;
    case LRT_PARAM_TOP_P:
      if (!(v > 0.0 && v <= 1.0)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "top_p must be in (0, 1], got %g", v);
      s->top_p = v; return LRT_OK;
    case LRT_PARAM_MIN_P:
      if (!(v >= 0.0 && v <= 1.0)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "min_p must be in [0, 1], got %g", v);
      s->min_p = v; return LRT_OK;
    case LRT_PARAM_REPEAT_PENALTY:
      if (!(v > 0.0 && v <= 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "repetition penalty must be > 0 (1 = off), got %g", v);
      s->repeat_penalty = v; return LRT_OK;
    case LRT_PARAM_TOP_K: case LRT_PARAM_SEED: case LRT_PARAM_REPEAT_LAST_N: case LRT_PARAM_MAX_TOKENS:
      if (v != (double)(int64_t)v) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "sampler parameter %d must be an integer", param);
      return lrt_session_set_int_in(s, param, (int64_t)v);
    default:
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown sampler parameter %d", param);
  }
}

int32_t lrt_session_set_float(lrt_session *s, int32_t param, double v) {
  SESSION_CALL(s, "lrt_session_set_float", lrt_session_set_float_in(s, param, v));
}

int32_t lrt_session_set_int_in(lrt_session *s, int32_t param, int64_t v) {
  switch (param) {
    case LRT_PARAM_TOP_K:
      if (v < 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "top_k must be >= 0 (0 = off), got %lld", (long long)v);
      s->top_k = v; return LRT_OK;
    case LRT_PARAM_SEED: s->seed = (uint64_t)v; return LRT_OK;
    case LRT_PARAM_REPEAT_LAST_N:
      if (v < -1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "repeat_last_n must be >= -1, got %lld", (long long)v);
      s->repeat_last_n = v; return LRT_OK;
    case LRT_PARAM_MAX_TOKENS:
      if (v < -1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "max_tokens must be >= -1 (-1 = no limit), got %lld", (long long)v);
      s->max_tokens = v; return LRT_OK;
    case LRT_PARAM_TEMPERATURE: case LRT_PARAM_TOP_P: case LRT_PARAM_MIN_P: case LRT_PARAM_REPEAT_PENALTY:
      return lrt_session_set_float_in(s, param, (double)v);
    default:
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown sampler parameter %d", param);
  }
}

int32_t lrt_session_set_int(lrt_session *s, int32_t param, int64_t v) {
  SESSION_CALL(s, "lrt_session_set_int", lrt_session_set_int_in(s, param, v));
}

int32_t lrt_session_sample_in(lrt_session *s, int32_t *token) {
  CHECK_PTR(token, "token");
  GUARD_ENTER;
  GUARD_RETURN(lrt_sample(s, token));
}

int32_t lrt_session_sample(lrt_session *s, int32_t *token) {
  SESSION_CALL(s, "lrt_session_sample", lrt_session_sample_in(s, token));
}

static int32_t candidates_in(const lrt_session *s, const int32_t **ids, const float **probs, int64_t *count) {
  CHECK_PTR(ids, "ids");
  CHECK_PTR(probs, "probs");
  CHECK_PTR(count, "count");
  if (s->n_cand < 1) return lrt_err(LRT_ERR_STATE, "no sampling step yet: call lrt_session_sample first");
  *ids = s->cand_ids;
  *probs = s->cand_probs;
  *count = s->n_cand;
  return LRT_OK;
}

int32_t lrt_session_candidates(const lrt_session *s, const int32_t **ids, const float **probs,
                               int64_t *count) {
  SESSION_CALL(s, "lrt_session_candidates", candidates_in(s, ids, probs, count));
}

static int32_t log_softmax_in(const lrt_session *s, float *out) {
  CHECK_PTR(out, "out");
  if (s->logits_rows < 1) return lrt_err(LRT_ERR_STATE, "no logits yet: call lrt_session_eval first");
  int64_t v = s->m->cfg.vocab;
  lrt_log_softmax_row(s->logits + (s->logits_rows - 1) * v, v, out);
  return LRT_OK;
}

int32_t lrt_session_log_softmax(const lrt_session *s, float *out) {
  SESSION_CALL(s, "lrt_session_log_softmax", log_softmax_in(s, out));
}
