/* batch.c -- lrt_batch_*: advance many sessions of one model in one pass (forward.c's
 * lrt_forward_batch), with the batch's own scratch buffers and worker threads. */
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

struct lrt_batch {
  lrt_model *m;
  lrt_session *work;     /* scratch and thread pool (its own KV cache stays empty) */
  lrt_session **seqs;    /* queued entries */
  int64_t *offsets;      /* start of entry i in toks */
  int64_t *counts;
  const int32_t **ptrs;  /* filled at eval */
  int64_t n, cap;
  int32_t *toks;
  int64_t n_toks, cap_toks;
};

int32_t lrt_batch_new(lrt_model *m, int32_t threads, lrt_batch **out) {
  CHECK_PTR(out, "out");
  *out = NULL;
  CHECK_PTR(m, "model");
  if (threads < 0 || threads > 1024) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "threads must be in [0, 1024] (0 = the physical cores)");
  if (threads == 0) threads = lrt_physical_cores();
  lrt_batch *b = (lrt_batch *)calloc(1, sizeof *b);
  if (!b) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  b->m = m;
  GUARD_ENTER;
  int32_t st = lrt_session_create(m, m->cfg.ctx, threads, LRT_CHUNK, &b->work);
  if (st) { free(b); GUARD_RETURN(st); }
  *out = b;
  GUARD_RETURN(LRT_OK);
}

void lrt_batch_free(lrt_batch *b) {
  if (!b) return;
  lrt_session_destroy(b->work);
  free(b->seqs); free(b->offsets); free(b->counts); free(b->ptrs); free(b->toks);
  free(b);
}

int32_t lrt_batch_add(lrt_batch *b, lrt_session *s, const int32_t *tokens, int64_t n) {
  CHECK_PTR(b, "batch");
  CHECK_PTR(s, "session");
  CHECK_PTR(tokens, "tokens");
  if (n < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "a batch entry needs at least one token, got %lld", (long long)n);
  if (s->m != b->m) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the session belongs to another model than the batch");
  for (int64_t i = 0; i < b->n; i++)
    if (b->seqs[i] == s)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "this session is already in the batch (entry %lld): add each session "
                     "once per step, with all its tokens", (long long)i);
  if (b->n == b->cap) {
    int64_t cap = b->cap ? b->cap * 2 : 16;
    lrt_session **sq = (lrt_session **)realloc(b->seqs, (size_t)cap * sizeof *sq);
    if (sq) b->seqs = sq;
    int64_t *of = (int64_t *)realloc(b->offsets, (size_t)cap * sizeof *of);
    if (of) b->offsets = of;
    int64_t *ct = (int64_t *)realloc(b->counts, (size_t)cap * sizeof *ct);
    if (ct) b->counts = ct;
    const int32_t **pt = (const int32_t **)realloc((void *)b->ptrs, (size_t)cap * sizeof *pt);
    if (pt) b->ptrs = pt;
    if (!sq || !of || !ct || !pt) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory growing the batch");
    b->cap = cap;
  }
  if (n > INT64_MAX / 2 - b->n_toks) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "too many tokens");
  if (b->n_toks + n > b->cap_toks) {
    int64_t cap = b->cap_toks ? b->cap_toks : 256;
    while (cap < b->n_toks + n) cap *= 2;
    int32_t *t = (int32_t *)realloc(b->toks, (size_t)cap * sizeof *t);
    if (!t) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for %lld batch tokens", (long long)cap);
    b->toks = t;
    b->cap_toks = cap;
  }
  memcpy(b->toks + b->n_toks, tokens, (size_t)n * sizeof(int32_t));
  b->seqs[b->n] = s;
  b->offsets[b->n] = b->n_toks;
  b->counts[b->n] = n;
  b->n++;
  b->n_toks += n;
  return LRT_OK;
}

int64_t lrt_batch_count(const lrt_batch *b) { return b ? b->n : -1; }

int32_t lrt_batch_clear(lrt_batch *b) {
  CHECK_PTR(b, "batch");
  b->n = 0;
  b->n_toks = 0;
  return LRT_OK;
}

int32_t lrt_batch_eval(lrt_batch *b) {
  CHECK_PTR(b, "batch");
  for (int64_t i = 0; i < b->n; i++) b->ptrs[i] = b->toks + b->offsets[i];
  /* every queued session is entered like any exported session call (docs/threads.md): a
   * session another thread is inside fails the whole step with LRT_ERR_BUSY, nothing run */
  int64_t entered = 0;
  int32_t st = LRT_OK;
  for (; entered < b->n; entered++) {
    int dup = 0; /* the same session twice: lrt_forward_batch refuses it with its own message */
    for (int64_t j = 0; j < entered; j++) dup |= b->seqs[j] == b->seqs[entered];
    if (dup) continue;
    if ((st = lrt_session_enter(b->seqs[entered], "lrt_batch_eval"))) break;
  }
  if (!st) {
    GUARD_ENTER;
    st = lrt_forward_batch(b->work, b->seqs, b->ptrs, b->counts, b->n);
    lrt_fpenv_leave(&fpenv_);
  }
  for (int64_t i = 0; i < entered; i++) {
    int dup = 0;
    for (int64_t j = 0; j < i; j++) dup |= b->seqs[j] == b->seqs[i];
    if (!dup) lrt_session_leave(b->seqs[i]);
  }
  b->n = 0;
  b->n_toks = 0;
  return st;
}
