/* generate.c -- text in, text out without Python: generation pulled step by step
 * (lrt_session_prompt + lrt_session_step) or pushed to a callback (lrt_generate), and models
 * opened from memory buffers (lrt_model_open_memory).
 *
 * Session side (struct lrt_gen): the state of one generation, owned by a session.
 *
 * Streaming text follows the Python package's StreamDecoder exactly: the text of a small
 * window of ids is decoded with and without the new ids; the difference is new text unless
 * it ends in U+FFFD (a character whose bytes are not all there yet). */
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

struct lrt_gen {
  int active, finished;
  int32_t reason;
  int64_t call_limit; /* lrt_generate's max_tokens during the call, else -1 */
  int32_t pending; /* last given token, not evaluated yet; -1 none */
  int64_t pos_mark; /* the session position this generation left it at (detects other calls) */
  uint64_t history_mark; /* the session's history_id then (detects a loaded state) */
  int64_t n_prompt, n_generated;
  int32_t *win; /* stream decoder window: win[0..read) already emitted (left context) */
  int64_t n_win, cap_win, read;
  char *pre, *full; /* decode buffers */
  size_t cap_pre, cap_full;
  char *out; /* text given by the last step */
  size_t out_len, out_cap;
  int32_t *ids; /* tokenization buffer */
  int64_t cap_ids;
};

void lrt_gen_free(lrt_gen *g) {
  if (!g) return;
  free(g->win);
  free(g->pre);
  free(g->full);
  free(g->out);
  free(g->ids);
  free(g);
}

/* ---- generation ------------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 1;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

void lrt_gen_stop(lrt_session *s) {
  if (s && s->gen) {
    s->gen->active = 0;
    s->gen->pending = -1;
    s->gen->n_win = s->gen->read = 0;
  }
}

static int32_t gen_get(lrt_session *s, lrt_gen **out) {
  if (!s->gen) {
    s->gen = (lrt_gen *)calloc(1, sizeof(lrt_gen));
    if (!s->gen) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    s->gen->pending = -1;
    s->gen->call_limit = -1;
  }
  *out = s->gen;
  return LRT_OK;
}

/* Detokenize ids into *buf (grown as needed). */
static int32_t detok(const lrt_model *m, const int32_t *ids, int64_t n, char **buf, size_t *cap, size_t *len) {
  *len = 0;
  if (n == 0) return LRT_OK;
  for (int tries = 0; tries < 2; tries++) {
    size_t need = 0;
    int32_t st = lrt_detokenize(m, ids, n, 0, *buf, *cap, &need);
    if (st == LRT_OK) {
      *len = need;
      return LRT_OK;
    }
    if (st != LRT_ERR_BUFFER_TOO_SMALL) return st;
    if (!grow((void **)buf, cap, need + 1, 1)) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  }
  return lrt_err(LRT_ERR_INTERNAL, "detokenize did not settle on a length");
}

static int ends_with_replacement(const char *s, size_t n) {
  return n >= 3 && (unsigned char)s[n - 3] == 0xEF && (unsigned char)s[n - 2] == 0xBF && (unsigned char)s[n - 1] == 0xBD;
}

static int32_t set_out(lrt_gen *g, const char *s, size_t n) {
  if (!grow((void **)&g->out, &g->out_cap, n + 1, 1)) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (n) memcpy(g->out, s, n);
  g->out[n] = 0;
  g->out_len = n;
  return LRT_OK;
}

/* Window texts: prefix = decode(win[0..read)), full = decode(win). */
static int32_t window(const lrt_model *m, lrt_gen *g, size_t *pre_len, size_t *full_len) {
  int32_t st = detok(m, g->win, g->read, &g->pre, &g->cap_pre, pre_len);
  if (st == LRT_OK) st = detok(m, g->win, g->n_win, &g->full, &g->cap_full, full_len);
  return st;
}

/* StreamDecoder.add: append a token, set g->out to the newly completed text. */
static int32_t decode_add(lrt_session *s, lrt_gen *g, int32_t tok) {
  g->out_len = 0;
  const char *tb;
  size_t tbl;
  int32_t has = 0;
  if (lrt_model_has_tokenizer(s->m, &has) != LRT_OK || !has) return set_out(g, "", 0);
  if (lrt_token_bytes(s->m, tok, &tb, &tbl) != LRT_OK) { /* beyond the tokenizer (padded rows): no text */
    lrt_err_clear();
    return set_out(g, "", 0);
  }
  if (!grow((void **)&g->win, (size_t *)&g->cap_win, (size_t)g->n_win + 1, sizeof(int32_t)))
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  g->win[g->n_win++] = tok;
  size_t pl, fl;
  int32_t st = window(s->m, g, &pl, &fl);
  if (st) return st;
  if (ends_with_replacement(g->full, fl) || fl <= pl) return set_out(g, "", 0);
  memmove(g->win, g->win + g->read, (size_t)(g->n_win - g->read) * sizeof(int32_t));
  g->n_win -= g->read;
  g->read = g->n_win;
  return set_out(g, g->full + pl, fl - pl);
}

/* StreamDecoder.flush: the held-back text (dangling bytes as U+FFFD); resets the window. */
static int32_t decode_flush(lrt_session *s, lrt_gen *g) {
  size_t pl = 0, fl = 0;
  int32_t st = LRT_OK;
  if (g->n_win > g->read) st = window(s->m, g, &pl, &fl);
  g->n_win = g->read = 0;
  if (st) return st;
  return set_out(g, fl > pl ? g->full + pl : "", fl > pl ? fl - pl : 0);
}

static int is_eog(const lrt_model *m, int32_t tok) { return lrt_text_is_eog(m->text, tok); }

/* Evaluate tokens inside the library: the model layer's forward pass under the
 * floating-point guard (not the exported lrt_session_eval: no call back into the gate). */
static int32_t eval(lrt_session *s, const int32_t *ids, int64_t n) {
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  int32_t st = lrt_forward(s, ids, n, 0);
  lrt_fpenv_leave(&env);
  return st;
}

/* The generation still describes the session's tokens (no eval, reset, truncate or state
 * load since its last step). */
static int in_step(const lrt_session *s, const lrt_gen *g) {
  return g->pos_mark == s->pos && g->history_mark == s->history_id;
}

static int32_t prompt_tokens_in(lrt_session *s, const int32_t *ids, int64_t n, int32_t flags) {
  if (!ids) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "ids must not be NULL");
  if (n < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is empty: give at least one token");
  if (flags & ~(LRT_PROMPT_ADD_SPECIAL | LRT_PROMPT_PARSE_SPECIAL | LRT_PROMPT_KEEP))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown prompt flags 0x%x", (unsigned)flags);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= s->m->cfg.vocab)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token id %d at index %lld is outside the vocabulary [0, %lld)", ids[i],
                     (long long)i, (long long)s->m->cfg.vocab);
  lrt_gen *g = NULL;
  int32_t st = gen_get(s, &g);
  if (st) return st;
  int keep = (flags & LRT_PROMPT_KEEP) != 0;
  int carry = keep && g->active && g->pending >= 0 && in_step(s, g);
  int64_t base = keep ? s->pos : 0;
  if (base + carry + n > s->ctx)
    return lrt_err(LRT_ERR_CONTEXT_FULL, "the prompt has %lld tokens but the context holds %lld (%lld in use); "
                   "shorten the prompt or create the session with a larger context",
                   (long long)n, (long long)s->ctx, (long long)base);
  g->active = 0;
  g->finished = 0;
  g->reason = LRT_FINISH_NONE;
  g->n_win = g->read = 0;
  g->out_len = 0;
  g->n_generated = 0;
  g->n_prompt = n;
  if (!keep && (st = lrt_session_reset_in(s))) return st;
  if (carry) {
    int32_t p = g->pending;
    g->pending = -1;
    if ((st = eval(s, &p, 1))) return st;
  }
  g->pending = -1;
  if ((st = eval(s, ids, n))) return st;
  g->active = 1;
  g->pos_mark = s->pos;
  g->history_mark = s->history_id;
  return LRT_OK;
}

static int32_t prompt_in(lrt_session *s, const char *text, size_t len, int32_t flags) {
  if (!text && len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "text must not be NULL");
  if (len == 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is empty: give some text to continue");
  if (!lrt_utf8_valid(text, len)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is not valid UTF-8");
  int32_t has = 0;
  int32_t st = lrt_model_has_tokenizer(s->m, &has);
  if (st) return st;
  if (!has) { /* the tokenizer says why (absent, or present but unusable) */
    int64_t n0 = 0;
    st = lrt_tokenize(s->m, text, len, 0, NULL, 0, &n0);
    if (st == LRT_ERR_STATE) st = LRT_ERR_NOT_FOUND; /* absent */
    return lrt_err_prefix(st ? st : LRT_ERR_NOT_FOUND, "lrt_session_prompt: give token ids with lrt_session_prompt_tokens");
  }
  lrt_gen *g = NULL;
  if ((st = gen_get(s, &g))) return st;
  int32_t tf = 0;
  if (flags & LRT_PROMPT_ADD_SPECIAL) tf |= LRT_TOKENIZE_ADD_SPECIAL;
  if (flags & LRT_PROMPT_PARSE_SPECIAL) tf |= LRT_TOKENIZE_PARSE_SPECIAL;
  int64_t n = 0;
  for (int tries = 0; tries < 2; tries++) {
    st = lrt_tokenize(s->m, text, len, tf, g->ids, g->cap_ids, &n);
    if (st == LRT_OK) break;
    if (st != LRT_ERR_BUFFER_TOO_SMALL) return st;
    size_t cap = (size_t)g->cap_ids;
    if (n < 1 || !grow((void **)&g->ids, &cap, (size_t)n, sizeof(int32_t)))
      return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    g->cap_ids = (int64_t)cap;
  }
  if (st) return st;
  if (n < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt gives no tokens");
  return prompt_tokens_in(s, g->ids, n, flags);
}

static int32_t finish(lrt_session *s, lrt_gen *g, int32_t reason, int32_t *token, const char **text, size_t *len) {
  g->finished = 1;
  g->reason = reason;
  int32_t st = decode_flush(s, g);
  *token = -1;
  *text = g->out;
  *len = g->out_len;
  return st;
}

static int32_t step_in(lrt_session *s, int32_t *token, const char **text, size_t *text_len) {
  if (!token || !text || !text_len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token, text and text_len must not be NULL");
  *token = -1;
  *text = "";
  *text_len = 0;
  lrt_gen *g = s->gen;
  if (!g || !g->active) return lrt_err(LRT_ERR_STATE, "no generation: call lrt_session_prompt first");
  if (g->finished) return LRT_OK;
  if (!in_step(s, g)) {
    g->active = 0;
    return lrt_err(LRT_ERR_STATE, "the session's tokens changed since the last step (eval, reset, truncate or a "
                   "loaded state): call lrt_session_prompt again");
  }
  int32_t st;
  if ((s->max_tokens >= 0 && g->n_generated >= s->max_tokens) || (g->call_limit >= 0 && g->n_generated >= g->call_limit))
    return finish(s, g, LRT_FINISH_LENGTH, token, text, text_len);
  if (g->pending >= 0) {
    if (s->pos >= s->ctx) return finish(s, g, LRT_FINISH_CONTEXT, token, text, text_len);
    int32_t p = g->pending;
    if ((st = eval(s, &p, 1))) return st;
    g->pending = -1;
    g->pos_mark = s->pos;
    g->history_mark = s->history_id;
  }
  int32_t tok;
  if ((st = lrt_session_sample_in(s, &tok))) return st;
  if (is_eog(s->m, tok)) return finish(s, g, LRT_FINISH_EOS, token, text, text_len);
  g->n_generated++;
  g->pending = tok;
  if ((st = decode_add(s, g, tok))) return st;
  *token = tok;
  *text = g->out;
  *text_len = g->out_len;
  return LRT_OK;
}

static int32_t get_int_in(const lrt_session *s, int32_t key, int64_t *out) {
  if (!out) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "out must not be NULL");
  const lrt_gen *g = s->gen;
  switch (key) {
    case LRT_SESSION_FINISH_REASON: *out = g ? g->reason : LRT_FINISH_NONE; return LRT_OK;
    case LRT_SESSION_PROMPT_TOKENS: *out = g ? g->n_prompt : 0; return LRT_OK;
    case LRT_SESSION_GENERATED_TOKENS: *out = g ? g->n_generated : 0; return LRT_OK;
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown session info key %d", key);
  }
}

static int32_t generate_in(lrt_session *s, const char *text, size_t len, int32_t flags, int64_t max_tokens,
                           lrt_token_callback cb, void *user_data) {
  if (max_tokens < 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "max_tokens must be >= 0, got %lld", (long long)max_tokens);
  int32_t st = prompt_in(s, text, len, flags);
  if (st) return st;
  lrt_gen *g = s->gen;
  g->call_limit = max_tokens;
  for (;;) {
    int32_t tok;
    const char *piece;
    size_t plen;
    if ((st = step_in(s, &tok, &piece, &plen))) break;
    if (tok < 0) {
      if (cb && plen) cb(user_data, -1, piece, plen);
      break;
    }
    if (cb && cb(user_data, tok, piece, plen) != 0) {
      g->finished = 1;
      g->reason = LRT_FINISH_CALLBACK;
      g->n_win = g->read = 0;
      break;
    }
  }
  g->call_limit = -1;
  return st;
}

/* The exported entry points: the bodies above inside lrt_session_enter / lrt_session_leave
 * (a callback of lrt_generate that calls into the same session gets LRT_ERR_BUSY). */
#define SESSION_CALL(s, fn, call) \
  do { \
    if (!(s)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL"); \
    int32_t busy_ = lrt_session_enter((s), fn); \
    if (busy_) return busy_; \
    int32_t st_ = (call); \
    lrt_session_leave(s); \
    return st_; \
  } while (0)

int32_t lrt_session_prompt_tokens(lrt_session *s, const int32_t *ids, int64_t n, int32_t flags) {
  SESSION_CALL(s, "lrt_session_prompt_tokens", prompt_tokens_in(s, ids, n, flags));
}

int32_t lrt_session_prompt(lrt_session *s, const char *text, size_t len, int32_t flags) {
  SESSION_CALL(s, "lrt_session_prompt", prompt_in(s, text, len, flags));
}

int32_t lrt_session_step(lrt_session *s, int32_t *token, const char **text, size_t *text_len) {
  SESSION_CALL(s, "lrt_session_step", step_in(s, token, text, text_len));
}

int32_t lrt_session_get_int(const lrt_session *s, int32_t key, int64_t *out) {
  SESSION_CALL(s, "lrt_session_get_int", get_int_in(s, key, out));
}

int32_t lrt_generate(lrt_session *s, const char *text, size_t len, int32_t flags, int64_t max_tokens,
                     lrt_token_callback cb, void *user_data) {
  SESSION_CALL(s, "lrt_generate", generate_in(s, text, len, flags, max_tokens, cb, user_data));
}

/* ---- opening from memory ----------------------------------------------------------------- */

int32_t lrt_model_open_memory(int64_t n_files, const char *const *names, const size_t *names_lens,
                              const void *const *data, const size_t *sizes, int32_t flags, lrt_model **out) {
  if (!out) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "out must not be NULL");
  *out = NULL;
  if (n_files < 1 || n_files > 65536) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "n_files must be in [1, 65536]");
  if (!names || !names_lens || !data || !sizes)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "names, names_lens, data and sizes must not be NULL");
  if (flags & ~(LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS | LRT_OPEN_COPY_BUFFERS | LRT_OPEN_QUANTIZE_Q8_0 | LRT_OPEN_INT8_ACTIVATIONS |
                LRT_OPEN_ALLOW_UNUSED_TENSORS | LRT_OPEN_NO_MMAP | LRT_OPEN_TOKENIZER_ONLY | LRT_OPEN_FULL_KV))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown open flags 0x%x", (unsigned)flags);
  for (int64_t i = 0; i < n_files; i++) {
    if (!names[i] || names_lens[i] == 0 || names_lens[i] > 1024)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "file %lld: the name must be 1 to 1024 bytes", (long long)i);
    if (memchr(names[i], 0, names_lens[i]) || !lrt_utf8_valid(names[i], names_lens[i]))
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "file %lld: the name must be UTF-8 without NUL bytes", (long long)i);
    if (!data[i] && sizes[i]) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "file %lld: NULL data with a non-zero size", (long long)i);
  }
  size_t n = (size_t)n_files;
  lrt_vfile *vf = (lrt_vfile *)calloc(n, sizeof *vf);
  void **owned = (void **)calloc(2 * n, sizeof(void *));
  size_t n_owned = 0;
  int32_t st = LRT_OK;
  if (!vf || !owned) { st = lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
  for (size_t i = 0; i < n; i++) {
    char *nm = lrt_dup_mem(names[i], names_lens[i]);
    if (!nm) { st = lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
    owned[n_owned++] = nm;
    vf[i].name = nm;
    vf[i].size = sizes[i];
    vf[i].data = (const uint8_t *)data[i];
    if (flags & LRT_OPEN_COPY_BUFFERS) {
      void *c = malloc(sizes[i] ? sizes[i] : 1);
      if (!c) { st = lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory copying %s (%zu bytes)", nm, sizes[i]); goto fail; }
      if (sizes[i]) memcpy(c, data[i], sizes[i]);
      owned[n_owned++] = c;
      vf[i].data = (const uint8_t *)c;
    }
  }
  lrt_err_clear();
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  lrt_model *m = NULL;
  st = lrt_model_load_memory(vf, n, flags & (LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS | LRT_OPEN_ALLOW_UNUSED_TENSORS |
                                           LRT_OPEN_TOKENIZER_ONLY), &m);
  lrt_fpenv_leave(&env);
  if (st) goto fail;
  if ((st = lrt_model_attach(m, NULL, vf, n))) goto fail; /* closes m on failure */
  lrt_text_own(m->text, owned, n_owned);
  free(vf);
  *out = m;
  return LRT_OK;
fail:
  for (size_t i = 0; i < n_owned; i++) free(owned[i]);
  free(owned);
  free(vf);
  return st;
}

/* ---- stream decoding for other generators (api/weave_api.c) ------------------------------ */

int32_t lrt_gen_decoder_new(lrt_gen **out) {
  *out = (lrt_gen *)calloc(1, sizeof(lrt_gen));
  if (!*out) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  (*out)->pending = -1;
  (*out)->call_limit = -1;
  return LRT_OK;
}

void lrt_gen_decoder_reset(lrt_gen *g) {
  g->n_win = g->read = 0;
  g->out_len = 0;
}

int32_t lrt_gen_decoder_add(lrt_session *s, lrt_gen *g, int32_t tok, const char **text, size_t *len) {
  int32_t st = decode_add(s, g, tok);
  *text = g->out ? g->out : "";
  *len = g->out_len;
  return st;
}

int32_t lrt_gen_decoder_flush(lrt_session *s, lrt_gen *g, const char **text, size_t *len) {
  int32_t st = decode_flush(s, g);
  *text = g->out ? g->out : "";
  *len = g->out_len;
  return st;
}
