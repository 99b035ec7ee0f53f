/* weave_api.c -- the exported lrt_weave_* gate: argument checks, the vocabulary check,
 * prompts (tokenized by model 0), the pull generation over all sessions and the trace
 * accessors. The numerics and the trace are the weave layer's (csrc/weave/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../text/tokenizer.h"
#include "../weave/weave.h"
#include "api_internal.h"

/* A token's bytes for a message: printable ASCII as is, the rest as \xNN, at most 48 bytes. */
static void show_bytes(const char *b, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)b[i];
    if (i == 48) { o += (size_t)snprintf(out + o, cap - o, "..."); break; }
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out[o++] = (char)c;
    else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
  }
  out[o] = 0;
}

/* The shared ids: [0, S) must be the same token in every model with a tokenizer. */
static int32_t shared_vocab(lrt_session *const *s, int64_t n, int64_t V, int64_t *S_out) {
  int64_t S = V, ref = -1;
  for (int64_t i = 0; i < n; i++) {
    const lrt_tokenizer *t = (const lrt_tokenizer *)s[i]->m->tok;
    if (!t) continue;
    if (ref < 0) ref = i;
    if (lrt_tok_size(t) < S) S = lrt_tok_size(t);
  }
  if (ref < 0) { *S_out = V; return LRT_OK; }
  const lrt_tokenizer *rt = (const lrt_tokenizer *)s[ref]->m->tok;
  for (int64_t i = ref + 1; i < n; i++) {
    const lrt_tokenizer *t = (const lrt_tokenizer *)s[i]->m->tok;
    if (!t) continue;
    for (int64_t id = 0; id < S; id++) {
      const char *a, *b;
      size_t la, lb;
      if (lrt_tok_token_bytes(rt, (int32_t)id, &a, &la) || lrt_tok_token_bytes(t, (int32_t)id, &b, &lb))
        return LRT_ERR_INTERNAL;
      if (la == lb && memcmp(a, b, la) == 0) continue;
      char sa[256], sb[256];
      show_bytes(a, la, sa, sizeof sa);
      show_bytes(b, lb, sb, sizeof sb);
      return lrt_err(LRT_ERR_INVALID_ARGUMENT,
                     "the models do not share a vocabulary: token id %lld is \"%s\" in model %lld but \"%s\" in model %lld; "
                     "weaving needs the same token ids (the same tokenizer, or one whose vocabulary is a padded superset "
                     "of the other's)", (long long)id, sa, (long long)ref, sb, (long long)i);
    }
  }
  *S_out = S;
  return LRT_OK;
}

int32_t lrt_weave_new(lrt_session *const *sessions, int64_t n, lrt_weave **out) {
  CHECK_PTR(out, "out");
  *out = NULL;
  CHECK_PTR(sessions, "sessions");
  if (n < 1 || n > LRT_WEAVE_MAX_MODELS)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "a weave has 1 to %d models, got %lld", LRT_WEAVE_MAX_MODELS, (long long)n);
  for (int64_t i = 0; i < n; i++) {
    if (!sessions[i]) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session %lld is NULL", (long long)i);
    for (int64_t j = 0; j < i; j++)
      if (sessions[j] == sessions[i])
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "sessions %lld and %lld are the same session; give each model its own",
                       (long long)j, (long long)i);
  }
  int64_t V = sessions[0]->m->cfg.vocab;
  for (int64_t i = 1; i < n; i++)
    if (sessions[i]->m->cfg.vocab < V) V = sessions[i]->m->cfg.vocab;
  int64_t S = V;
  int32_t st = shared_vocab(sessions, n, V, &S);
  if (st) return st;
  if (S < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the models share no token ids");
  lrt_weave *w = (lrt_weave *)calloc(1, sizeof *w);
  if (!w) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  w->n = n;
  for (int64_t i = 0; i < n; i++) {
    w->s[i] = sessions[i];
    w->vocab[i] = sessions[i]->m->cfg.vocab;
  }
  w->V = V;
  w->S = S;
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  st = lrt_wv_init(w);
  lrt_fpenv_leave(&env);
  if (st == LRT_OK) st = lrt_gen_decoder_new(&w->dec);
  if (st) { lrt_weave_free(w); return st; }
  lrt_wv_restart(w);
  *out = w;
  return LRT_OK;
}

void lrt_weave_free(lrt_weave *w) {
  if (!w) return;
  lrt_wv_release(w);
  lrt_gen_free(w->dec);
  free(w);
}

int32_t lrt_weave_set_mode(lrt_weave *w, int32_t mode) {
  CHECK_PTR(w, "weave");
  int32_t st = lrt_wv_check_mode(mode, w->n);
  if (st) return st;
  w->mode = mode;
  return LRT_OK;
}

int32_t lrt_weave_set_weights(lrt_weave *w, const double *weights, int64_t n) {
  CHECK_PTR(w, "weave");
  CHECK_PTR(weights, "weights");
  if (n != w->n) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "give one weight per model: %lld weights for %lld models", (long long)n, (long long)w->n);
  int32_t st = lrt_wv_check_weights(weights, n, "weights");
  if (st) return st;
  memcpy(w->weights, weights, (size_t)n * sizeof(double));
  return LRT_OK;
}

int32_t lrt_weave_set_schedule(lrt_weave *w, int32_t kind, const double *v, int64_t n_values) {
  CHECK_PTR(w, "weave");
  int64_t n = w->n;
  if (kind == LRT_WEAVE_SCHEDULE_NONE) {
    free(w->sched);
    w->sched = NULL;
    w->sched_rows = 0;
    w->sched_kind = kind;
    return LRT_OK;
  }
  if (kind != LRT_WEAVE_SCHEDULE_LIST && kind != LRT_WEAVE_SCHEDULE_RAMP)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown schedule kind %d (0 none, 1 list, 2 ramp)", (int)kind);
  CHECK_PTR(v, "values");
  int64_t stride = kind == LRT_WEAVE_SCHEDULE_LIST ? n : n + 1;
  if (n_values < stride || n_values % stride || n_values / stride > (1 << 24))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "a %s schedule has rows of %lld values (%s), got %lld values",
                   kind == LRT_WEAVE_SCHEDULE_LIST ? "list" : "ramp", (long long)stride,
                   kind == LRT_WEAVE_SCHEDULE_LIST ? "one weight per model" : "a step, then one weight per model",
                   (long long)n_values);
  int64_t rows = n_values / stride;
  char what[64];
  for (int64_t r = 0; r < rows; r++) {
    const double *row = v + r * stride;
    if (kind == LRT_WEAVE_SCHEDULE_RAMP) {
      if (!(row[0] >= 0.0 && row[0] <= 1e15))
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "ramp knot %lld: the step must be a number >= 0, got %g", (long long)r, row[0]);
      if (r > 0 && !(row[0] > v[(r - 1) * stride]))
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "ramp knot %lld: steps must increase (%g after %g)", (long long)r, row[0], v[(r - 1) * stride]);
      row++;
    }
    snprintf(what, sizeof what, "schedule row %lld", (long long)r);
    int32_t st = lrt_wv_check_weights(row, n, what);
    if (st) return st;
  }
  double *copy = (double *)malloc((size_t)n_values * sizeof(double));
  if (!copy) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  memcpy(copy, v, (size_t)n_values * sizeof(double));
  free(w->sched);
  w->sched = copy;
  w->sched_rows = rows;
  w->sched_kind = kind;
  return LRT_OK;
}

int32_t lrt_weave_set_rule(lrt_weave *w, const char *name, size_t len, const double *params, int64_t n_params) {
  CHECK_PTR(w, "weave");
  if (!name && len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "name must not be NULL");
  if (n_params < 0 || (n_params > 0 && !params)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "params must hold n_params values");
#define IS(s) (len == sizeof(s) - 1 && memcmp(name, s, len) == 0)
  if (len == 0 || IS("none")) {
    if (n_params) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "rule none takes no parameters");
    w->rule = LRT_WV_RULE_NONE;
    return LRT_OK;
  }
  if (IS("confidence")) {
    if (n_params) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "rule confidence takes no parameters");
    w->rule = LRT_WV_RULE_CONFIDENCE;
    return LRT_OK;
  }
  if (IS("route")) {
    if (n_params != 2 * w->n)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "rule route takes %lld weights: %lld outside code fences, then %lld inside; got %lld",
                     (long long)(2 * w->n), (long long)w->n, (long long)w->n, (long long)n_params);
    int32_t st = lrt_wv_check_weights(params, w->n, "route weights outside code");
    if (!st) st = lrt_wv_check_weights(params + w->n, w->n, "route weights inside code");
    if (st) return st;
    if (!w->s[0]->m->tok)
      return lrt_err(LRT_ERR_UNSUPPORTED, "rule route reads the text of the stream, but model 0 has no tokenizer");
    memcpy(w->route_w, params, (size_t)(2 * w->n) * sizeof(double));
    w->rule = LRT_WV_RULE_ROUTE;
    return LRT_OK;
  }
#undef IS
  char shown[64];
  show_bytes(name, len, shown, sizeof shown);
  return lrt_err(LRT_ERR_NOT_FOUND, "unknown weave rule \"%s\"; the rules are none, confidence, route", shown);
}

int32_t lrt_weave_set_float(lrt_weave *w, int32_t key, double v) {
  CHECK_PTR(w, "weave");
  switch (key) {
    case LRT_WEAVE_ALPHA:
      if (!(v >= 0.0 && v <= 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "alpha must be a number in [0, 1e6], got %g", v);
      w->alpha = v;
      return LRT_OK;
    case LRT_WEAVE_AMATEUR_TEMPERATURE:
      if (!(v > 0.0 && v <= 1e6)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the amateur temperature must be > 0, got %g", v);
      w->amateur_temp = v;
      return LRT_OK;
    case LRT_WEAVE_TRACE_TOP_K: case LRT_WEAVE_PARALLEL:
      if (!(v >= -1e18 && v <= 1e18) || v != (double)(int64_t)v)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s must be an integer", key == LRT_WEAVE_PARALLEL ? "LRT_WEAVE_PARALLEL" : "trace top-k");
      return lrt_weave_set_int(w, key, (int64_t)v);
    default:
      return lrt_session_set_float(&w->carrier, key, v);
  }
}

int32_t lrt_weave_set_int(lrt_weave *w, int32_t key, int64_t v) {
  CHECK_PTR(w, "weave");
  switch (key) {
    case LRT_WEAVE_PARALLEL:
      if (v < 0 || v > 1024) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "LRT_WEAVE_PARALLEL must be in [0, 1024], got %lld", (long long)v);
      return lrt_wv_set_parallel(w, (int32_t)v);
    case LRT_WEAVE_TRACE_TOP_K:
      if (v < 0 || v > LRT_WEAVE_MAX_TOP_K)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "trace top-k must be in [0, %d], got %lld", LRT_WEAVE_MAX_TOP_K, (long long)v);
      w->top_k = (int32_t)v; /* takes effect at the next prompt */
      return LRT_OK;
    case LRT_WEAVE_ALPHA: case LRT_WEAVE_AMATEUR_TEMPERATURE:
      return lrt_weave_set_float(w, key, (double)v);
    default:
      return lrt_session_set_int(&w->carrier, key, v);
  }
}

int32_t lrt_weave_get_int(const lrt_weave *w, int32_t key, int64_t *out) {
  CHECK_PTR(w, "weave");
  CHECK_PTR(out, "out");
  switch (key) {
    case LRT_WEAVE_INFO_FINISH_REASON: *out = w->reason; return LRT_OK;
    case LRT_WEAVE_INFO_PROMPT_TOKENS: *out = w->n_prompt; return LRT_OK;
    case LRT_WEAVE_INFO_GENERATED_TOKENS: *out = w->n_generated; return LRT_OK;
    case LRT_WEAVE_INFO_VOCAB: *out = w->V; return LRT_OK;
    case LRT_WEAVE_INFO_SHARED_VOCAB: *out = w->S; return LRT_OK;
    case LRT_WEAVE_INFO_MODELS: *out = w->n; return LRT_OK;
    case LRT_WEAVE_INFO_TRACE_ROWS: *out = w->n_rows; return LRT_OK;
    case LRT_WEAVE_INFO_MODE: *out = w->mode; return LRT_OK;
    case LRT_WEAVE_INFO_TRACE_TOP_K: *out = w->row_top_k; return LRT_OK;
    case LRT_WEAVE_INFO_PARALLEL: *out = w->parallel; return LRT_OK;
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown weave info key %d", key);
  }
}

/* ---- generation ----------------------------------------------------------------------------- */

static int64_t min_ctx(const lrt_weave *w) {
  int64_t c = w->s[0]->ctx;
  for (int64_t i = 1; i < w->n; i++)
    if (w->s[i]->ctx < c) c = w->s[i]->ctx;
  return c;
}

/* Model i's eval of the step's ids on its own session (a pool task when models run at once;
 * the error message is thread-local, so a worker's is kept beside its status). */
static void eval_model(void *ctx, int64_t i, int thread) {
  (void)thread;
  lrt_weave *w = (lrt_weave *)ctx;
  int32_t st = lrt_forward(w->s[i], w->task_ids, w->task_n, 0);
  w->task_st[i] = st;
  if (st) snprintf(w->task_msg[i], sizeof w->task_msg[i], "%s", lrt_last_error());
}

/* Evaluate ids on every session (each keeps its own KV cache), under the guard; with
 * LRT_WEAVE_PARALLEL the models run at once. The error reported is the first failing
 * model's, in model order, whichever thread ran it. */
static int32_t eval_all(lrt_weave *w, const int32_t *ids, int64_t n) {
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  w->task_ids = ids;
  w->task_n = n;
  int32_t st = LRT_OK;
  if (w->pool) {
    lrt_wv_each_model(w, eval_model, w);
  } else {
    for (int64_t i = 0; i < w->n; i++) {
      eval_model(w, i, 0);
      if (w->task_st[i]) break; /* the later models are not run */
    }
  }
  for (int64_t i = 0; i < w->n && st == LRT_OK; i++) {
    if (!w->task_st[i]) continue;
    char pre[64];
    snprintf(pre, sizeof pre, "weave: model %lld", (long long)i);
    st = lrt_err(w->task_st[i], "%s: %s", pre, w->task_msg[i]);
  }
  for (int64_t i = 0; i < w->n; i++) w->task_st[i] = LRT_OK;
  lrt_fpenv_leave(&env);
  return st;
}

static void mark(lrt_weave *w) {
  w->pos_mark = w->s[0]->pos;
  for (int64_t i = 0; i < w->n; i++) w->hist_mark[i] = w->s[i]->history_id;
}

static int in_step(const lrt_weave *w) {
  for (int64_t i = 0; i < w->n; i++)
    if (w->s[i]->pos != w->pos_mark || w->s[i]->history_id != w->hist_mark[i]) return 0;
  return 1;
}

static void observe_tokens(lrt_weave *w, const int32_t *ids, int64_t n) {
  const lrt_tokenizer *t = (const lrt_tokenizer *)w->s[0]->m->tok;
  if (!t) return;
  for (int64_t i = 0; i < n; i++) {
    const char *b;
    size_t len;
    if (lrt_tok_token_bytes(t, ids[i], &b, &len) == LRT_OK) lrt_wv_observe(w, b, len);
  }
}

/* Enter every session as an exported session call does (docs/threads.md): a session another
 * thread is inside fails the call with LRT_ERR_BUSY before anything runs. */
static int32_t enter_all(lrt_weave *w, const char *fn) {
  for (int64_t i = 0; i < w->n; i++) {
    int32_t st = lrt_session_enter(w->s[i], fn);
    if (st) {
      while (i-- > 0) lrt_session_leave(w->s[i]);
      char pre[64];
      snprintf(pre, sizeof pre, "weave: model %lld", (long long)i);
      return lrt_err_prefix(st, pre);
    }
  }
  return LRT_OK;
}

static void leave_all(lrt_weave *w) {
  for (int64_t i = 0; i < w->n; i++) lrt_session_leave(w->s[i]);
}

static int32_t prompt_tokens(lrt_weave *w, const int32_t *ids, int64_t n, int32_t flags);

int32_t lrt_weave_prompt_tokens(lrt_weave *w, const int32_t *ids, int64_t n, int32_t flags) {
  CHECK_PTR(w, "weave");
  CHECK_PTR(ids, "ids");
  int32_t st = enter_all(w, "lrt_weave_prompt");
  if (st) return st;
  st = prompt_tokens(w, ids, n, flags);
  leave_all(w);
  return st;
}

static int32_t prompt_tokens(lrt_weave *w, const int32_t *ids, int64_t n, int32_t flags) {
  if (n < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is empty: give at least one token");
  if (flags & ~(LRT_PROMPT_ADD_SPECIAL | LRT_PROMPT_PARSE_SPECIAL | LRT_PROMPT_KEEP))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown prompt flags 0x%x", (unsigned)flags);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= w->V)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token id %d at index %lld is outside the woven vocabulary [0, %lld)", ids[i],
                     (long long)i, (long long)w->V);
  int keep = (flags & LRT_PROMPT_KEEP) != 0;
  if (keep)
    for (int64_t i = 1; i < w->n; i++)
      if (w->s[i]->pos != w->s[0]->pos)
        return lrt_err(LRT_ERR_STATE, "LRT_PROMPT_KEEP: the sessions hold different numbers of tokens (%lld and %lld)",
                       (long long)w->s[0]->pos, (long long)w->s[i]->pos);
  int carry = keep && w->active && w->pending >= 0 && in_step(w);
  int64_t base = keep ? w->s[0]->pos : 0, ctx = min_ctx(w);
  if (base + carry + n > ctx)
    return lrt_err(LRT_ERR_CONTEXT_FULL, "the prompt has %lld tokens but the smallest context holds %lld (%lld in use); "
                   "shorten the prompt or create the sessions with a larger context",
                   (long long)n, (long long)ctx, (long long)base);
  w->active = 0;
  w->finished = 0;
  w->reason = LRT_FINISH_NONE;
  w->n_generated = 0;
  w->n_prompt = n;
  int in_code = w->in_code, backticks = w->backticks;
  lrt_wv_restart(w);
  if (keep) { w->in_code = in_code; w->backticks = backticks; }
  lrt_gen_decoder_reset(w->dec);
  for (int64_t i = 0; i < w->n; i++) {
    if (!keep) lrt_session_reset_in(w->s[i]);
    else lrt_gen_stop(w->s[i]);
  }
  int32_t st;
  if (carry) {
    int32_t p = w->pending;
    w->pending = -1;
    if ((st = eval_all(w, &p, 1))) return st;
  }
  w->pending = -1;
  if ((st = eval_all(w, ids, n))) return st;
  observe_tokens(w, ids, n);
  w->active = 1;
  mark(w);
  return LRT_OK;
}

int32_t lrt_weave_prompt(lrt_weave *w, const char *text, size_t len, int32_t flags) {
  CHECK_PTR(w, "weave");
  if (!text && len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "text must not be NULL");
  if (len == 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is empty: give some text to continue");
  int32_t tf = 0;
  if (flags & LRT_PROMPT_ADD_SPECIAL) tf |= LRT_TOKENIZE_ADD_SPECIAL;
  if (flags & LRT_PROMPT_PARSE_SPECIAL) tf |= LRT_TOKENIZE_PARSE_SPECIAL;
  int64_t n = 0;
  int32_t st = LRT_OK;
  for (int tries = 0; tries < 2; tries++) {
    st = lrt_tokenize(w->s[0]->m, text, len, tf, w->ids, w->cap_ids, &n);
    if (st != LRT_ERR_BUFFER_TOO_SMALL) break;
    int32_t *q = (int32_t *)realloc(w->ids, (size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!q) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    w->ids = q;
    w->cap_ids = n;
  }
  if (st) return lrt_err_prefix(st, "lrt_weave_prompt (model 0's tokenizer)");
  if (n < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt gives no tokens");
  return lrt_weave_prompt_tokens(w, w->ids, n, flags);
}

static int32_t finish(lrt_weave *w, int32_t reason, int32_t *token, const char **text, size_t *len) {
  w->finished = 1;
  w->reason = reason;
  *token = -1;
  return lrt_gen_decoder_flush(w->s[0], w->dec, text, len);
}

static int32_t step(lrt_weave *w, int32_t *token, const char **text, size_t *text_len);

int32_t lrt_weave_step(lrt_weave *w, int32_t *token, const char **text, size_t *text_len) {
  CHECK_PTR(w, "weave");
  if (!token || !text || !text_len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token, text and text_len must not be NULL");
  int32_t st = enter_all(w, "lrt_weave_step");
  if (st) return st;
  st = step(w, token, text, text_len);
  leave_all(w);
  return st;
}

static int32_t step(lrt_weave *w, int32_t *token, const char **text, size_t *text_len) {
  *token = -1;
  *text = "";
  *text_len = 0;
  if (!w->active) return lrt_err(LRT_ERR_STATE, "no woven generation: call lrt_weave_prompt first");
  if (w->finished) return LRT_OK;
  if (!in_step(w)) {
    w->active = 0;
    return lrt_err(LRT_ERR_STATE, "a woven session's tokens changed since the last step (eval, reset, truncate or a "
                   "loaded state): call lrt_weave_prompt again");
  }
  int32_t st;
  if (w->carrier.max_tokens >= 0 && w->n_generated >= w->carrier.max_tokens)
    return finish(w, LRT_FINISH_LENGTH, token, text, text_len);
  if (w->pending >= 0) {
    if (w->s[0]->pos >= min_ctx(w)) return finish(w, LRT_FINISH_CONTEXT, token, text, text_len);
    int32_t p = w->pending;
    if ((st = eval_all(w, &p, 1))) { w->active = 0; return st; }
    w->pending = -1;
    mark(w);
  }
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  st = lrt_wv_combine(w, w->n_generated);
  int32_t tok = -1;
  if (st == LRT_OK) {
    lrt_session *c = &w->carrier;
    c->pos = w->s[0]->pos;
    c->tokens = w->s[0]->tokens;
    c->logits = w->comb;
    c->logits_rows = 1;
    st = lrt_sample(c, &tok);
  }
  lrt_fpenv_leave(&env);
  if (st) return st;
  if (lrt_text_is_eog(w->s[0]->m->text, tok)) return finish(w, LRT_FINISH_EOS, token, text, text_len);
  if ((st = lrt_wv_record(w, tok))) return st;
  w->n_generated++;
  w->pending = tok;
  observe_tokens(w, &tok, 1);
  if ((st = lrt_gen_decoder_add(w->s[0], w->dec, tok, text, text_len))) return st;
  *token = tok;
  return LRT_OK;
}

int32_t lrt_weave_logits(const lrt_weave *w, const float **out, int64_t *vocab) {
  CHECK_PTR(w, "weave");
  CHECK_PTR(out, "out");
  if (!w->has_comb) return lrt_err(LRT_ERR_STATE, "no woven step yet: call lrt_weave_step first");
  *out = w->comb;
  if (vocab) *vocab = w->V;
  return LRT_OK;
}

static int32_t check_row(const lrt_weave *w, int64_t row) {
  if (row < 0 || row >= w->n_rows)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "trace row %lld is outside [0, %lld)", (long long)row, (long long)w->n_rows);
  return LRT_OK;
}

int32_t lrt_weave_trace_row(const lrt_weave *w, int64_t row, int32_t *token, int32_t *dominant, double *combined,
                            double *sampled, double *weights, double *probs, int64_t *ranks, double *shares,
                            int64_t n_models) {
  CHECK_PTR(w, "weave");
  int32_t st = check_row(w, row);
  if (st) return st;
  if (n_models != w->n && (weights || probs || ranks || shares))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "n_models is %lld but the weave has %lld models", (long long)n_models, (long long)w->n);
  int64_t n = w->n;
  const double *d = w->row_d + row * (2 + 3 * n);
  if (token) *token = w->row_tok[row];
  if (dominant) *dominant = w->row_dom[row];
  if (combined) *combined = d[0];
  if (sampled) *sampled = d[1];
  for (int64_t i = 0; i < n; i++) {
    if (weights) weights[i] = d[2 + i];
    if (probs) probs[i] = d[2 + n + i];
    if (shares) shares[i] = d[2 + 2 * n + i];
    if (ranks) ranks[i] = w->row_rank[row * n + i];
  }
  return LRT_OK;
}

int32_t lrt_weave_trace_top(const lrt_weave *w, int64_t row, int64_t model, int32_t *ids, double *probs, int64_t capacity,
                            int64_t *count) {
  CHECK_PTR(w, "weave");
  CHECK_PTR(count, "count");
  int32_t st = check_row(w, row);
  if (st) return st;
  if (model < -1 || model >= w->n)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "model %lld is outside [-1, %lld) (-1 = combined)", (long long)model, (long long)w->n);
  if (capacity < 0 || (capacity > 0 && (!ids || !probs)))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "ids and probs must hold capacity entries");
  int64_t k = w->row_top_k, slot = model < 0 ? w->n : model;
  const int32_t *ti = w->row_top_id + (row * (w->n + 1) + slot) * k;
  const float *tp = w->row_top_p + (row * (w->n + 1) + slot) * k;
  int64_t have = 0;
  while (have < k && ti[have] >= 0) have++;
  *count = have;
  for (int64_t j = 0; j < have && j < capacity; j++) {
    ids[j] = ti[j];
    probs[j] = (double)tp[j];
  }
  return LRT_OK;
}
