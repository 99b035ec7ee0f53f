/* tmodel.c -- the trainer's parameters: the tensor table of a configuration (names, shapes,
 * offsets in one flat float32 buffer), seeded initialisation, and copying the weights of an
 * opened model.
 *
 * Tensor names are loomrt's own, the same for every architecture (the Python layer maps
 * them to HF names when it writes a checkpoint):
 *   tok_embd (vocab, D)   pos_embd (ctx, D) [learned positions]
 *   blk.<l>.attn_norm (D) [.attn_norm_b]  blk.<l>.wq (H*hd, D) [.bq]  .wk (KVH*hd, D) [.bk]
 *   .wv (KVH*hd, D) [.bv]  .wo (D, H*hd) [.bo]  .ffn_norm (D) [.ffn_norm_b]
 *   .w_gate (F, D) [SwiGLU]  .w_up (F, D) [.b_up]  .w_down (D, F) [.b_down]
 *   out_norm (D) [out_norm_b]  lm_head (vocab, D) [untied]
 * Matrices are (out, in), row-major: y = W x. */
#include <math.h> /* sqrt only: correctly rounded by IEEE 754 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/lrt_math.h"
#include "../model/model.h"
#include "train.h"

static int64_t add_ten(lrt_trainer *t, int64_t *cap, const char *name, int64_t rows, int64_t cols, int decay,
                       float std, float cst) {
  if (t->n_tensors == *cap) {
    int64_t nc = *cap ? *cap * 2 : 64;
    lrt_tparam *p = (lrt_tparam *)realloc(t->ten, (size_t)nc * sizeof *p);
    if (!p) return -2;
    t->ten = p;
    *cap = nc;
  }
  lrt_tparam *p = &t->ten[t->n_tensors];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->rows = rows;
  p->cols = cols;
  p->off = t->n_params;
  p->decay = decay;
  p->init_std = std;
  p->init_const = cst;
  t->n_params += rows * cols;
  return t->n_tensors++;
}

int64_t lrt_tr_find(const lrt_trainer *t, const char *name) {
  for (int64_t i = 0; i < t->n_tensors; i++)
    if (strcmp(t->ten[i].name, name) == 0) return i;
  return -1;
}

void lrt_tr_free(lrt_trainer *t) {
  if (!t) return;
  lrt_pool_free(t->pool);
  free(t->ten);
  free(t->L);
  free(t->w);
  free(t->G);
  free(t->m);
  free(t->v);
  free(t->g_lookup);
  free(t->inv_freq);
  free(t->act.mem);
  free(t->parts);
  free(t);
}

int32_t lrt_tr_new_config(const lrt_config *cfg, int threads, lrt_trainer **out) {
  *out = NULL;
  const lrt_config *c = cfg;
  if (c->vocab < 1 || c->dim < 1 || c->n_layers < 1 || c->n_heads < 1 || c->n_kv_heads < 1 || c->head_dim < 2 ||
      c->ffn < 1 || c->ctx < 1)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "training needs a positive vocabulary, width, layers, heads, FFN size "
                   "and context");
  if (c->n_heads % c->n_kv_heads)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "heads (%lld) must be a multiple of kv heads (%lld)",
                   (long long)c->n_heads, (long long)c->n_kv_heads);
  if (!c->learned_pos && c->head_dim % 2)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "RoPE needs an even head dimension (got %lld)", (long long)c->head_dim);
  /* 2^31 elements per tensor at most: every offset and product below fits easily */
  if (c->vocab > (1 << 24) || c->dim > (1 << 16) || c->ffn > (1 << 18) || c->n_layers > 1024 ||
      c->n_heads * c->head_dim > (1 << 16) || c->ctx > (1 << 20))
    return lrt_err(LRT_ERR_UNSUPPORTED, "model too large for the trainer (vocab %lld, dim %lld, ffn %lld, layers %lld)",
                   (long long)c->vocab, (long long)c->dim, (long long)c->ffn, (long long)c->n_layers);
  lrt_trainer *t = (lrt_trainer *)calloc(1, sizeof *t);
  if (!t) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  t->cfg = *c;
  t->threads = threads;
  t->lr = 1e-3;
  t->min_lr = 0.0;
  t->wd = 0.0;
  t->beta1 = 0.9;
  t->beta2 = 0.999;
  t->eps = 1e-8;
  t->clip = 0.0;
  t->lr_scale = 1.0;
  t->b1t = t->b2t = 1.0;
  int32_t st = lrt_pool_new(threads, &t->pool);
  if (st) { lrt_tr_free(t); return st; }
  t->L = (lrt_tlayer *)calloc((size_t)c->n_layers, sizeof *t->L);
  if (!t->L) { lrt_tr_free(t); return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory"); }
  int64_t D = c->dim, F = c->ffn, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  const float std = 0.02f;
  /* residual projections scaled by 1/sqrt(2 * layers) (GPT-2's initialisation) */
  float rstd = (float)(0.02 / sqrt(2.0 * (double)c->n_layers));
  int64_t cap = 0;
  char nm[48];
#define ADD(name, r, cl, dec, sd, cs) add_ten(t, &cap, name, r, cl, dec, sd, cs)
  t->tok_embd = ADD("tok_embd", c->vocab, D, 1, std, 0.0f);
  t->pos_embd = c->learned_pos ? ADD("pos_embd", c->ctx, D, 1, 0.01f, 0.0f) : -1;
  for (int64_t l = 0; l < c->n_layers; l++) {
    lrt_tlayer *L = &t->L[l];
#define NM(s) (snprintf(nm, sizeof nm, "blk.%lld." s, (long long)l), nm)
    L->attn_norm = ADD(NM("attn_norm"), 1, D, 0, 0.0f, 1.0f);
    L->attn_norm_b = c->layernorm ? ADD(NM("attn_norm_b"), 1, D, 0, 0.0f, 0.0f) : -1;
    L->wq = ADD(NM("wq"), qd, D, 1, std, 0.0f);
    L->bq = c->qkv_bias ? ADD(NM("bq"), 1, qd, 0, 0.0f, 0.0f) : -1;
    L->wk = ADD(NM("wk"), kvd, D, 1, std, 0.0f);
    L->bk = c->qkv_bias ? ADD(NM("bk"), 1, kvd, 0, 0.0f, 0.0f) : -1;
    L->wv = ADD(NM("wv"), kvd, D, 1, std, 0.0f);
    L->bv = c->qkv_bias ? ADD(NM("bv"), 1, kvd, 0, 0.0f, 0.0f) : -1;
    L->wo = ADD(NM("wo"), D, qd, 1, rstd, 0.0f);
    L->bo = c->o_bias ? ADD(NM("bo"), 1, D, 0, 0.0f, 0.0f) : -1;
    L->ffn_norm = ADD(NM("ffn_norm"), 1, D, 0, 0.0f, 1.0f);
    L->ffn_norm_b = c->layernorm ? ADD(NM("ffn_norm_b"), 1, D, 0, 0.0f, 0.0f) : -1;
    L->w_gate = c->gelu ? -1 : ADD(NM("w_gate"), F, D, 1, std, 0.0f);
    L->w_up = ADD(NM("w_up"), F, D, 1, std, 0.0f);
    L->b_up = c->mlp_bias ? ADD(NM("b_up"), 1, F, 0, 0.0f, 0.0f) : -1;
    L->w_down = ADD(NM("w_down"), D, F, 1, rstd, 0.0f);
    L->b_down = c->mlp_bias ? ADD(NM("b_down"), 1, D, 0, 0.0f, 0.0f) : -1;
#undef NM
  }
  t->out_norm = ADD("out_norm", 1, D, 0, 0.0f, 1.0f);
  t->out_norm_b = c->layernorm ? ADD("out_norm_b", 1, D, 0, 0.0f, 0.0f) : -1;
  t->lm_head = c->tied ? -1 : ADD("lm_head", c->vocab, D, 1, std, 0.0f);
#undef ADD
  for (int64_t i = 0; i < t->n_tensors; i++)
    if (t->ten[i].rows < 0) { lrt_tr_free(t); return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory"); }
  size_t bytes = (size_t)t->n_params * sizeof(float);
  t->w = (float *)calloc(1, bytes);
  t->G = (float *)calloc(1, bytes);
  t->m = (float *)calloc(1, bytes);
  t->v = (float *)calloc(1, bytes);
  if (c->tied) t->g_lookup = (float *)calloc((size_t)(c->vocab * D), sizeof(float));
  t->inv_freq = (float *)calloc((size_t)(c->head_dim / 2 + 1), sizeof(float));
  if (!t->w || !t->G || !t->m || !t->v || (c->tied && !t->g_lookup) || !t->inv_freq) {
    lrt_tr_free(t);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory for %lld parameters", (long long)t->n_params);
  }
  if (!c->learned_pos)
    for (int64_t i = 0; i < c->head_dim / 2; i++) t->inv_freq[i] = (float)lrt_rope_freq(c, i);
  *out = t;
  return LRT_OK;
}

/* ---- seeded initialisation ----------------------------------------------------------------
 * Element e of tensor i: two 64-bit draws of SplitMix64 at counters derived from (seed, i, e),
 * Box-Muller with loomrt's own log / sincos in double, times std, rounded to float. Every
 * element depends only on (seed, tensor index, element index). */
static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void lrt_tr_init_weights(lrt_trainer *t, uint64_t seed) {
  for (int64_t i = 0; i < t->n_tensors; i++) {
    const lrt_tparam *p = &t->ten[i];
    float *w = t->w + p->off;
    int64_t n = p->rows * p->cols;
    if (p->init_std <= 0.0f) {
      for (int64_t e = 0; e < n; e++) w[e] = p->init_const;
      continue;
    }
    uint64_t key = splitmix64(seed ^ splitmix64(0x6C6F6F6D72740000ull + (uint64_t)i));
    for (int64_t e = 0; e < n; e++) {
      uint64_t r1 = splitmix64(key + 2 * (uint64_t)e), r2 = splitmix64(key + 2 * (uint64_t)e + 1);
      double u1 = ((double)(r1 >> 11) + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1] */
      double u2 = (double)(r2 >> 11) * (1.0 / 9007199254740992.0);         /* [0, 1) */
      double s, cth;
      lrt_sincos(6.283185307179586 * u2, &s, &cth);
      double z = sqrt(-2.0 * lrt_log(u1)) * cth;
      w[e] = (float)((double)p->init_std * z);
    }
  }
}

/* ---- from an opened model ---------------------------------------------------------------- */

static void copy_mat(lrt_trainer *t, int64_t i, const lrt_mat *w, const int32_t *perm) {
  if (i < 0) return;
  const lrt_tparam *p = &t->ten[i];
  for (int64_t r = 0; r < p->rows; r++) {
    int64_t dst = perm ? perm[r] : r;
    lrt_mat_row(w, r, t->w + p->off + dst * p->cols);
  }
}

static void copy_vec(lrt_trainer *t, int64_t i, const float *v) {
  if (i < 0) return;
  const lrt_tparam *p = &t->ten[i];
  float *w = t->w + p->off;
  for (int64_t e = 0; e < p->rows * p->cols; e++) w[e] = v ? v[e] : p->init_const;
}

int32_t lrt_tr_new_model(const lrt_model *m, int threads, lrt_trainer **out) {
  lrt_config cfg = m->cfg;
  int32_t st = lrt_tr_new_config(&cfg, threads, out);
  if (st) return st;
  lrt_trainer *t = *out;
  copy_mat(t, t->tok_embd, &m->tok_embd, NULL);
  copy_mat(t, t->pos_embd, &m->pos_embd, NULL);
  for (int64_t l = 0; l < cfg.n_layers; l++) {
    const lrt_layer *S = &m->layers[l];
    const lrt_tlayer *L = &t->L[l];
    copy_vec(t, L->attn_norm, S->attn_norm);
    copy_vec(t, L->attn_norm_b, S->attn_norm_b);
    copy_mat(t, L->wq, &S->wq, S->qk_perm_q);
    copy_mat(t, L->wk, &S->wk, S->qk_perm_k);
    copy_mat(t, L->wv, &S->wv, NULL);
    copy_mat(t, L->wo, &S->wo, NULL);
    copy_vec(t, L->bq, S->bq);
    copy_vec(t, L->bk, S->bk);
    copy_vec(t, L->bv, S->bv);
    copy_vec(t, L->bo, S->bo);
    copy_vec(t, L->ffn_norm, S->ffn_norm);
    copy_vec(t, L->ffn_norm_b, S->ffn_norm_b);
    copy_mat(t, L->w_gate, &S->w_gate, NULL);
    copy_mat(t, L->w_up, &S->w_up, NULL);
    copy_mat(t, L->w_down, &S->w_down, NULL);
    copy_vec(t, L->b_up, S->b_up);
    copy_vec(t, L->b_down, S->b_down);
  }
  copy_vec(t, t->out_norm, m->out_norm);
  copy_vec(t, t->out_norm_b, m->out_norm_b);
  copy_mat(t, t->lm_head, &m->lm_head, NULL);
  return LRT_OK;
}
