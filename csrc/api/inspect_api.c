/* inspect_api.c -- the exported inspection gate: lrt_session_inspect (the model layer's
 * recording hook, lrt_inspect_hook in model/model.h) and lrt_session_lens (the logit lens). */
#include <stdlib.h>

#include "api_internal.h"

int32_t lrt_session_inspect(lrt_session *s, float *hidden, float *attn, int64_t pos_lo, int64_t n_pos, int64_t n_key) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  if (!hidden && !attn) {
    free(s->insp);
    s->insp = NULL;
    return LRT_OK;
  }
  if (pos_lo < 0 || n_pos < 1 || n_pos > s->ctx)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "pos_lo must be >= 0 and n_pos in [1, %lld]", (long long)s->ctx);
  if (attn && (n_key < 1 || n_key > s->ctx))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "n_key must be in [1, %lld] when attn is given", (long long)s->ctx);
  if (!s->insp) {
    s->insp = (lrt_inspect_hook *)calloc(1, sizeof *s->insp);
    if (!s->insp) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  }
  s->insp->hidden = hidden;
  s->insp->attn = attn;
  s->insp->pos_lo = pos_lo;
  s->insp->n_pos = n_pos;
  s->insp->n_key = attn ? n_key : 0;
  return LRT_OK;
}

int32_t lrt_session_lens(lrt_session *s, const float *hidden, int64_t rows, float *logits) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  if (!hidden || !logits) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "hidden and logits must not be NULL");
  if (rows < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "rows must be >= 1");
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  lrt_forward_head(s, hidden, rows, logits);
  lrt_fpenv_leave(&env);
  return LRT_OK;
}
