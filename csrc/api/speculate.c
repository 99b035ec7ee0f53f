/* speculate.c -- exact speculative decoding (lrt_spec_*).
 *
 * The target session holds the tokens evaluated so far; `pending` is the last token given to
 * the caller, sampled but not evaluated yet (plain decoding evaluates it at the next step).
 * A round:
 *   1. propose up to k tokens d[0..k) that might follow `pending` (prompt lookup, then the
 *      draft session);
 *   2. evaluate [pending, d0, .., d(k-1)] on the target in one chunk, keeping every row of
 *      logits. Row i equals, bit for bit, the row plain decoding computes at that position
 *      (logits do not depend on chunking);
 *   3. sample row i with the target's own sampler at position pos + 1 + i, over the history
 *      tokens[0..pos + 1 + i) (lrt_sample_at): the token plain decoding would pick there,
 *      because the random number depends only on (seed, position) and the history is the
 *      accepted one. While it equals d[i] (and does not end the generation) go on; the first
 *      token that differs, or the one after the last draft, ends the round;
 *   4. roll the target back to the accepted tokens: its position drops past the first
 *      rejected draft (KV rows there are overwritten later), its logits become the row of
 *      the last sampled token, which is the new `pending`.
 * The sampled tokens and their rows wait in a queue that lrt_spec_next hands out one by one.
 * Nothing the proposers do reaches the output: they only decide how many rows one chunk
 * verifies. */
#include <stdlib.h>
#include <string.h>

#include "../base/lrt_math.h"
#include "api_internal.h"

#define SPEC_K_LIMIT 64
/* the target steps back at most SPEC_K_LIMIT + 1 positions: sliding-window rings hold that */
typedef char spec_rollback_fits_the_kv_ring[(SPEC_K_LIMIT + 1 <= LRT_CHUNK) ? 1 : -1];
#define SPEC_NGRAM_LIMIT 64
/* Scheduling constants (they decide how many rows a chunk verifies, never a token):
 * SPEC_COST, the cost of one more verified row relative to one decode step (measured 0.15 for
 * an F32 target, 0.25-0.3 for BF16 and Q4_1 on one thread of an x86-64 server): prompt lookup
 * proposes its i-th token while the estimated chance that tokens 1..i are all accepted is at
 * least that; SPEC_DRAFT_P_MIN: the draft stops proposing when its own top probability falls
 * below it (llama.cpp's speculative example uses 0.75 by default). */
#define SPEC_COST 0.2
#define SPEC_DRAFT_P_MIN 0.5f

struct lrt_spec {
  lrt_session *t, *d;
  int64_t k_max, lookup_max, lookup_min, max_tokens;
  int adaptive;
  int64_t k_draft; /* the draft's adaptive k */
  /* prompt lookup's acceptance counts by matched n-gram length and proposal index */
  int32_t lk_tried[SPEC_NGRAM_LIMIT + 1][SPEC_K_LIMIT], lk_ok[SPEC_NGRAM_LIMIT + 1][SPEC_K_LIMIT];
  int64_t lk_n; /* n-gram length of this round's lookup proposal */
  /* generation */
  int started;
  int32_t pending;      /* last given token, not evaluated on the target; -1 before the first */
  int64_t given;        /* tokens given since lrt_spec_start */
  int64_t pos_mark;     /* target position / history id after our last change */
  uint64_t history_mark;
  /* verified tokens waiting to be given, with their logits rows */
  int32_t q_tok[SPEC_K_LIMIT + 1];
  float *q_rows;        /* (SPEC_K_LIMIT + 1) x vocab */
  int64_t q_n, q_head;
  int32_t prop[SPEC_K_LIMIT];
  int32_t *catchup;     /* tokens the draft evaluates to catch up with the target */
  int64_t catchup_cap;
  /* counters */
  int64_t rounds, proposed, accepted, draft_evals;
};

static int32_t draft_sync(lrt_spec *sp, int64_t L);

static int is_eog(const lrt_session *s, int32_t tok) { return lrt_text_is_eog(s->m->text, tok); }

/* Token i of the target's history followed by the pending token: tokens[0..pos), pending. */
static int32_t hist(const lrt_spec *sp, int64_t i) { return i < sp->t->pos ? sp->t->tokens[i] : sp->pending; }

int32_t lrt_spec_new(lrt_session *t, lrt_session *d, lrt_spec **out) {
  CHECK_PTR(out, "out");
  *out = NULL;
  CHECK_PTR(t, "target");
  if (d == t) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the draft must be another session than the target");
  int64_t V = t->m->cfg.vocab;
  if (d && d->m->cfg.vocab != V)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the draft model has %lld tokens in its vocabulary, the target %lld: a draft "
                   "must share the target's vocabulary", (long long)d->m->cfg.vocab, (long long)V);
  if (d && d->m != t->m && d->m->tok && t->m->tok) {
    for (int64_t i = 0; i < V; i++) {
      const char *a, *b;
      size_t na, nb;
      int32_t sa = lrt_token_bytes(t->m, (int32_t)i, &a, &na), sb = lrt_token_bytes(d->m, (int32_t)i, &b, &nb);
      if (sa != sb || (sa == LRT_OK && (na != nb || (na && memcmp(a, b, na) != 0)))) {
        lrt_err_clear();
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the draft model's tokenizer differs from the target's at token id %lld: "
                       "a draft must share the target's vocabulary", (long long)i);
      }
    }
    lrt_err_clear();
  }
  lrt_spec *sp = (lrt_spec *)calloc(1, sizeof *sp);
  if (!sp) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  sp->q_rows = (float *)malloc((size_t)((SPEC_K_LIMIT + 1) * V) * sizeof(float));
  if (!sp->q_rows) {
    free(sp);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for %lld logits rows", (long long)(SPEC_K_LIMIT + 1));
  }
  sp->t = t;
  sp->d = d;
  sp->k_max = 8;
  sp->adaptive = 1;
  sp->lookup_max = 0;
  sp->lookup_min = 1;
  sp->max_tokens = -1;
  sp->pending = -1;
  *out = sp;
  return LRT_OK;
}

void lrt_spec_free(lrt_spec *sp) {
  if (!sp) return;
  free(sp->q_rows);
  free(sp->catchup);
  free(sp);
}

int32_t lrt_spec_set_int(lrt_spec *sp, int32_t key, int64_t v) {
  CHECK_PTR(sp, "spec");
  switch (key) {
    case LRT_SPEC_K:
      if (v < 1 || v > SPEC_K_LIMIT) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "LRT_SPEC_K must be in [1, %d], got %lld", SPEC_K_LIMIT, (long long)v);
      sp->k_max = v;
      if (sp->k_draft > v) sp->k_draft = v;
      return LRT_OK;
    case LRT_SPEC_ADAPTIVE:
      if (v != 0 && v != 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "LRT_SPEC_ADAPTIVE must be 0 or 1, got %lld", (long long)v);
      sp->adaptive = (int)v;
      return LRT_OK;
    case LRT_SPEC_LOOKUP:
      if (v < 0 || v > SPEC_NGRAM_LIMIT)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "LRT_SPEC_LOOKUP must be in [0, %d] (0 = off), got %lld", SPEC_NGRAM_LIMIT, (long long)v);
      sp->lookup_max = v;
      return LRT_OK;
    case LRT_SPEC_LOOKUP_MIN:
      if (v < 1 || v > SPEC_NGRAM_LIMIT)
        return lrt_err(LRT_ERR_INVALID_ARGUMENT, "LRT_SPEC_LOOKUP_MIN must be in [1, %d], got %lld", SPEC_NGRAM_LIMIT, (long long)v);
      sp->lookup_min = v;
      return LRT_OK;
    case LRT_SPEC_MAX_TOKENS:
      if (v < -1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "LRT_SPEC_MAX_TOKENS must be >= -1 (-1 = no limit), got %lld", (long long)v);
      sp->max_tokens = v;
      return LRT_OK;
    case LRT_SPEC_ROUNDS: case LRT_SPEC_PROPOSED: case LRT_SPEC_ACCEPTED: case LRT_SPEC_DRAFT_EVALS:
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "speculation key %d is read-only", key);
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown speculation key %d", key);
  }
}

int32_t lrt_spec_get_int(const lrt_spec *sp, int32_t key, int64_t *out) {
  CHECK_PTR(sp, "spec");
  CHECK_PTR(out, "out");
  switch (key) {
    case LRT_SPEC_K: *out = sp->k_max; return LRT_OK;
    case LRT_SPEC_ADAPTIVE: *out = sp->adaptive; return LRT_OK;
    case LRT_SPEC_LOOKUP: *out = sp->lookup_max; return LRT_OK;
    case LRT_SPEC_LOOKUP_MIN: *out = sp->lookup_min; return LRT_OK;
    case LRT_SPEC_MAX_TOKENS: *out = sp->max_tokens; return LRT_OK;
    case LRT_SPEC_ROUNDS: *out = sp->rounds; return LRT_OK;
    case LRT_SPEC_PROPOSED: *out = sp->proposed; return LRT_OK;
    case LRT_SPEC_ACCEPTED: *out = sp->accepted; return LRT_OK;
    case LRT_SPEC_DRAFT_EVALS: *out = sp->draft_evals; return LRT_OK;
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown speculation key %d", key);
  }
}

static void mark(lrt_spec *sp) {
  sp->pos_mark = sp->t->pos;
  sp->history_mark = sp->t->history_id;
}

int32_t lrt_spec_start(lrt_spec *sp) {
  CHECK_PTR(sp, "spec");
  lrt_session *t = sp->t;
  if (t->logits_rows < 1)
    return lrt_err(LRT_ERR_STATE, "the target session has no logits: evaluate the prompt before lrt_spec_start");
  if (sp->d) {
    lrt_session *d = sp->d;
    d->temperature = t->temperature;
    d->top_k = t->top_k;
    d->top_p = t->top_p;
    d->min_p = t->min_p;
    d->repeat_penalty = t->repeat_penalty;
    d->repeat_last_n = t->repeat_last_n;
    d->seed = t->seed;
  }
  sp->started = 1;
  sp->pending = -1;
  sp->given = 0;
  sp->q_n = sp->q_head = 0;
  sp->rounds = sp->proposed = sp->accepted = sp->draft_evals = 0;
  sp->k_draft = sp->k_max < 4 ? sp->k_max : 4;
  memset(sp->lk_tried, 0, sizeof sp->lk_tried);
  memset(sp->lk_ok, 0, sizeof sp->lk_ok);
  int32_t st = LRT_OK;
  if (sp->d) { /* the draft reads the prompt now, not in the first round */
    GUARD_ENTER;
    st = draft_sync(sp, t->pos);
    lrt_fpenv_leave(&fpenv_);
  }
  if (st) {
    sp->started = 0;
    return st;
  }
  mark(sp);
  return LRT_OK;
}

/* ---- proposers ------------------------------------------------------------------------ */

/* Prompt lookup: the continuation of the most recent earlier occurrence of the last n
 * tokens of history + pending (n from lookup_max down to lookup_min). */
static int64_t propose_lookup(lrt_spec *sp, int64_t k) {
  int64_t L = sp->t->pos + 1;
  for (int64_t n = sp->lookup_max; n >= sp->lookup_min; n--) {
    if (n >= L) continue;
    for (int64_t j = L - n - 1; j >= 0; j--) {
      int64_t i = 0;
      while (i < n && hist(sp, j + i) == hist(sp, L - n + i)) i++;
      if (i < n) continue;
      int64_t c = L - (j + n);
      if (c > k) c = k;
      sp->lk_n = n;
      if (sp->adaptive) { /* while the estimated chance that all so far are accepted is worth a row */
        double p = 1.0;
        int64_t keep = 0;
        while (keep < c) {
          p *= (sp->lk_ok[n][keep] + 1.0) / (sp->lk_tried[n][keep] + 2.0);
          if (p < SPEC_COST) break;
          keep++;
        }
        c = keep;
      }
      for (i = 0; i < c; i++) sp->prop[i] = hist(sp, j + n + i);
      return c;
    }
  }
  return 0;
}

/* Bring the draft session to the first L tokens of history + pending: keep the common
 * prefix, evaluate the rest in one chunk (its last logits row then predicts token L). */
static int32_t draft_sync(lrt_spec *sp, int64_t L) {
  lrt_session *d = sp->d;
  if (L < 1 || L > d->ctx) return LRT_OK;
  int64_t c = 0;
  while (c < d->pos && c < L && d->tokens[c] == hist(sp, c)) c++;
  if (c == L) c = L - 1; /* the last token must be evaluated again to get its logits */
  if (!lrt_session_can_rewind(d, c)) c = 0; /* its rings no longer hold c's window: from the start */
  int64_t m = L - c;
  if (m > sp->catchup_cap) {
    int32_t *b = (int32_t *)realloc(sp->catchup, (size_t)m * sizeof(int32_t));
    if (!b) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    sp->catchup = b;
    sp->catchup_cap = m;
  }
  for (int64_t i = 0; i < m; i++) sp->catchup[i] = hist(sp, c + i);
  d->pos = c;
  d->logits_rows = 0;
  d->n_cand = 0;
  d->history_id++;
  lrt_gen_stop(d);
  int32_t st = lrt_forward(d, sp->catchup, m, 0);
  if (st) return st;
  sp->draft_evals++;
  return LRT_OK;
}

/* Probability of the most likely token of a logits row (softmax at temperature 1). */
static float top_prob(const float *l, int64_t V) {
  float mx = l[0];
  for (int64_t i = 1; i < V; i++)
    if (l[i] > mx) mx = l[i];
  if (!(mx > -3.0e38f && mx < 3.0e38f)) return 1.0f;
  float z = 0.0f;
  for (int64_t i = 0; i < V; i++) z += lrt_expf(l[i] - mx);
  return z > 0.0f ? 1.0f / z : 1.0f;
}

/* The draft session: synced to history + pending, it samples up to k tokens with the target's
 * settings, one eval each, and stops early where its own top probability is low (adaptive
 * mode) or it proposes an end-of-generation token. */
static int32_t propose_draft(lrt_spec *sp, int64_t k, int64_t *n_out) {
  lrt_session *d = sp->d;
  *n_out = 0;
  int64_t L = sp->t->pos + 1;
  if (L + k - 1 > d->ctx) k = d->ctx - L + 1;
  if (k < 1) return LRT_OK;
  int32_t st = draft_sync(sp, L);
  if (st) return st;
  int64_t n = 0, V = d->m->cfg.vocab;
  for (;;) {
    int32_t x;
    if (sp->adaptive && n > 0 && top_prob(d->logits + (d->logits_rows - 1) * V, V) < SPEC_DRAFT_P_MIN) break;
    if ((st = lrt_sample(d, &x))) return st;
    sp->prop[n++] = x;
    if (n == k || is_eog(sp->t, x)) break;
    if ((st = lrt_forward(d, &x, 1, 0))) return st;
    sp->draft_evals++;
  }
  *n_out = n;
  return LRT_OK;
}

static void adapt(lrt_spec *sp, int64_t *kk, int64_t proposed, int64_t accepted) {
  if (!sp->adaptive) { *kk = sp->k_max; return; }
  if (accepted == proposed) *kk = *kk + 2 < sp->k_max ? *kk + 2 : sp->k_max;
  else *kk = *kk > 1 ? *kk - 1 : 1;
}

static void lookup_learn(lrt_spec *sp, int64_t proposed, int64_t accepted) {
  for (int64_t i = 0; i < proposed; i++) {
    sp->lk_tried[sp->lk_n][i]++;
    if (i >= accepted) break;
    sp->lk_ok[sp->lk_n][i]++;
  }
}

/* One round: verify [pending, proposals] on the target and queue the sampled tokens. */
static int32_t round_run(lrt_spec *sp) {
  lrt_session *t = sp->t;
  int64_t V = t->m->cfg.vocab;
  int64_t pos = t->pos;
  if (pos + 1 > t->ctx)
    return lrt_err(LRT_ERR_CONTEXT_FULL, "context full: the %lld positions of the target session are used; start a new "
                   "generation or open the session with a larger context", (long long)t->ctx);
  int64_t lim = t->ctx - pos - 1;
  if (sp->max_tokens >= 0) {
    int64_t left = sp->max_tokens - sp->given - 1;
    if (left < lim) lim = left < 0 ? 0 : left;
  }
  int64_t k = 0, *kk = NULL;
  int used_lookup = 0;
  int32_t st;
  if (lim > 0 && sp->lookup_max > 0) {
    k = propose_lookup(sp, sp->k_max < lim ? sp->k_max : lim);
    used_lookup = k > 0;
  }
  if (lim > 0 && k == 0 && sp->d) {
    int64_t want = sp->adaptive ? sp->k_draft : sp->k_max;
    if ((st = propose_draft(sp, want < lim ? want : lim, &k))) return st;
    if (k > 0) kk = &sp->k_draft;
  }
  int32_t chunk[SPEC_K_LIMIT + 1];
  chunk[0] = sp->pending;
  memcpy(chunk + 1, sp->prop, (size_t)k * sizeof(int32_t));
  if ((st = lrt_forward(t, chunk, k + 1, 1))) return st;
  /* lrt_forward appended k + 1 tokens; sample row i at position pos + 1 + i */
  int64_t acc = 0;
  sp->q_n = sp->q_head = 0;
  for (int64_t i = 0; i <= k; i++) {
    const float *row = t->logits + i * V;
    int32_t tok;
    if ((st = lrt_sample_at(t, row, pos + 1 + i, &tok))) {
      t->pos = pos;
      t->logits_rows = 0;
      return st;
    }
    memcpy(sp->q_rows + i * V, row, (size_t)V * sizeof(float));
    sp->q_tok[i] = tok;
    sp->q_n = i + 1;
    if (i < k && tok == sp->prop[i] && !is_eog(t, tok)) {
      acc++;
      continue;
    }
    break;
  }
  /* keep pending + the accepted drafts; the last sampled token is the new pending one (a
   * step back of at most SPEC_K_LIMIT positions: sliding-window rings hold it, model.h) */
  t->pos = pos + 1 + acc;
  if (acc) memmove(t->logits, t->logits + acc * V, (size_t)V * sizeof(float));
  t->logits_rows = 1;
  sp->pending = sp->q_tok[sp->q_n - 1];
  sp->rounds++;
  sp->proposed += k;
  sp->accepted += acc;
  if (kk) adapt(sp, kk, k, acc);
  if (used_lookup) lookup_learn(sp, k, acc);
  return LRT_OK;
}

int32_t lrt_spec_next(lrt_spec *sp, int32_t *token, const float **logits) {
  CHECK_PTR(sp, "spec");
  CHECK_PTR(token, "token");
  *token = -1;
  if (logits) *logits = NULL;
  if (!sp->started) return lrt_err(LRT_ERR_STATE, "call lrt_spec_start first");
  lrt_session *t = sp->t;
  if (t->pos != sp->pos_mark || t->history_id != sp->history_mark) {
    sp->started = 0;
    return lrt_err(LRT_ERR_STATE, "the target session changed since the speculation's last step (eval, reset, truncate "
                   "or a loaded state): call lrt_spec_start again");
  }
  int64_t V = t->m->cfg.vocab;
  GUARD_ENTER;
  if (sp->q_head >= sp->q_n) {
    int32_t st;
    if (sp->pending < 0) { /* the first token: the target's last row, as plain decoding samples it */
      if (t->logits_rows < 1) {
        sp->started = 0;
        GUARD_RETURN(lrt_err(LRT_ERR_STATE, "the target session has no logits: call lrt_spec_start again"));
      }
      const float *row = t->logits + (t->logits_rows - 1) * V;
      if ((st = lrt_sample_at(t, row, t->pos, &sp->q_tok[0]))) GUARD_RETURN(st);
      memcpy(sp->q_rows, row, (size_t)V * sizeof(float));
      sp->q_n = 1;
      sp->q_head = 0;
      sp->pending = sp->q_tok[0];
    } else if ((st = round_run(sp))) {
      sp->started = 0;
      GUARD_RETURN(st);
    }
    mark(sp);
  }
  *token = sp->q_tok[sp->q_head];
  if (logits) *logits = sp->q_rows + sp->q_head * V;
  sp->q_head++;
  sp->given++;
  GUARD_RETURN(LRT_OK);
}
