/* session.c -- allocating and freeing a session's buffers (the KV cache grows on demand in
 * forward.c). Used by api/ for lrt_session_new and for the scratch of a batch. */
#include <stdlib.h>

#include "model.h"
#include "../kernels/kernels.h" /* LRT_I8_* packed sizes */

int64_t lrt_kv_ring_rows(const lrt_model *m, int64_t context) {
  const lrt_config *c = &m->cfg;
  if (c->sliding_window <= 0 || (m->open_flags & LRT_OPEN_FULL_KV)) return 0;
  int64_t any = 0;
  for (int64_t l = 0; l < c->n_layers; l++) any |= lrt_layer_window(c, l) > 0;
  int64_t rows = c->sliding_window + LRT_CHUNK - 1;
  return any && rows < context ? rows : 0;
}

int32_t lrt_session_create(lrt_model *m, int64_t context, int32_t threads, int64_t chunk, lrt_session **out) {
  *out = NULL;
  lrt_session *s = (lrt_session *)calloc(1, sizeof *s);
  if (!s) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  const lrt_config *c = &m->cfg;
  s->m = m;
  s->n_layers = c->n_layers;
  s->ctx = context;
  s->kv_ring = lrt_kv_ring_rows(m, context);
  s->temperature = 0.0;
  s->top_p = 1.0;
  s->repeat_penalty = 1.0;
  s->repeat_last_n = -1;
  s->max_tokens = -1;
  int32_t st = lrt_pool_new(threads, &s->pool);
  if (st) { lrt_session_destroy(s); return st; }
  s->k_cache = (float **)calloc((size_t)c->n_layers, sizeof(float *));
  s->v_cache = (float **)calloc((size_t)c->n_layers, sizeof(float *));
  int64_t M = chunk, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  s->chunk = M;
  s->x = (float *)malloc((size_t)(M * c->dim) * 4);
  s->xb = (float *)malloc((size_t)(M * c->dim) * 4);
  s->q = (float *)malloc((size_t)(M * qd) * 4);
  s->att = (float *)malloc((size_t)(M * qd) * 4);
  s->k = (float *)malloc((size_t)(M * kvd) * 4);
  s->v = (float *)malloc((size_t)(M * kvd) * 4);
  s->hb = (float *)malloc((size_t)(M * c->ffn) * 4);
  s->hb2 = (float *)malloc((size_t)(M * c->ffn) * 4);
  s->rope_cs = (float *)malloc((size_t)(2 * M * c->head_dim) * 4); /* global + local tables (Gemma 3) */
  s->wrow_cap = c->dim > c->ffn ? c->dim : c->ffn;
  if (qd > s->wrow_cap) s->wrow_cap = qd;
  s->wrow_cap *= 16; /* prefill widens a task's rows (ROW_BLOCK = 16 in forward.c) */
  if (m->open_flags & LRT_OPEN_INT8_ACTIVATIONS) { /* ... or packs them for the int8 tile */
    int64_t pw = (16 * LRT_I8_PW_BYTES(s->wrow_cap / 16) + 3) / 4;
    if (pw > s->wrow_cap) s->wrow_cap = pw;
  }
  s->wrow = (float *)malloc((size_t)(s->wrow_cap * threads) * 4);
  if (m->open_flags & LRT_OPEN_INT8_ACTIVATIONS) { /* quantized activation rows (forward.c) */
    int64_t w = c->dim > c->ffn ? c->dim : c->ffn;
    if (qd > w) w = qd;
    s->act_q = (int8_t *)malloc((size_t)(M * w));
    s->act_d = (float *)malloc((size_t)(M * (w / 32 + 1)) * 4);
    s->act_s = (int32_t *)malloc((size_t)(M * (w / 32 + 1)) * 4);
    s->act_p = malloc((size_t)(LRT_I8_ROUND4(M) * LRT_I8_PX_BYTES(w)));
    if (!s->act_q || !s->act_d || !s->act_s || !s->act_p) {
      lrt_session_destroy(s);
      return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for session buffers");
    }
  }
  if (!s->k_cache || !s->v_cache || !s->x || !s->xb || !s->q || !s->att || !s->k || !s->v || !s->hb ||
      !s->hb2 || !s->rope_cs || !s->wrow) {
    lrt_session_destroy(s);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for session buffers");
  }
  *out = s;
  return LRT_OK;
}

void lrt_session_destroy(lrt_session *s) {
  if (!s) return;
  lrt_pool_free(s->pool);
  if (s->k_cache)
    for (int64_t l = 0; l < s->n_layers; l++) free(s->k_cache[l]);
  if (s->v_cache)
    for (int64_t l = 0; l < s->n_layers; l++) free(s->v_cache[l]);
  free(s->k_cache); free(s->v_cache); free(s->tokens);
  free(s->x); free(s->xb); free(s->q); free(s->att); free(s->k); free(s->v);
  free(s->hb); free(s->hb2); free(s->rope_cs); free(s->wrow); free(s->scores); free(s->logits);
  free(s->act_q); free(s->act_d); free(s->act_s); free(s->act_p);
  free(s->cand_ids); free(s->cand_probs); free(s->cand_logits);
  free(s->insp);
  free(s);
}
