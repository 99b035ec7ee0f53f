/* model.h -- the model layer (csrc/model/): the immutable model (config + weights) and the
 * mutable session (KV cache, scratch, sampler). Includes base/, formats/ and kernels/ only. */
#ifndef LOOMRT_MODEL_H
#define LOOMRT_MODEL_H

#include "../base/lrt_atomic.h"
#include "../base/threadpool.h"
#include "../formats/formats.h"

/* A weight matrix (rows x cols, row-major) in its stored format, usually in the mapping. */
typedef struct lrt_mat {
  int dtype; /* LRT_DT_F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q5_K / Q6_K */
  const void *data;
  int64_t rows, cols;
} lrt_mat;

/* Tokens per internal forward chunk: bounds scratch memory only (results do not depend on it). */
#define LRT_CHUNK 128

typedef struct lrt_layer {
  float *attn_norm, *attn_norm_b; /* (dim)                                  */
  lrt_mat wq, wk, wv, wo;         /* (q_dim, dim) (kv_dim, dim) x2 (dim, q_dim) */
  float *bq, *bk, *bv, *bo;       /* biases or NULL                         */
  float *ffn_norm, *ffn_norm_b;   /* (dim)                                  */
  lrt_mat w_gate, w_up, w_down;   /* (ffn, dim) (ffn, dim) (dim, ffn); no gate for GELU */
  float *b_up, *b_down;
  int32_t *qk_perm_q, *qk_perm_k; /* GGUF llama: HF row of each file row of Q / K, or NULL */
  float *attn_post_norm, *ffn_post_norm; /* (dim) norms after attention / MLP, or NULL (Gemma, OLMo 2) */
  float *q_norm, *k_norm;         /* (head_dim) per head, or (q_dim) / (kv_dim) whole (OLMo 2), or NULL */
} lrt_layer;

struct lrt_model {
  lrt_config cfg;
  int is_gguf;
  int32_t open_flags;  /* LRT_OPEN_* given at open */
  int quantized_at_load; /* matrices quantized to Q8_0 by LRT_OPEN_QUANTIZE_Q8_0 */
  lrt_mat tok_embd;   /* (vocab, dim) */
  lrt_mat pos_embd;   /* (ctx, dim), GPT-2 only */
  lrt_mat lm_head;    /* (vocab, dim) */
  float *out_norm, *out_norm_b;
  float *rope_inv_freq; /* (rotary_dim / 2); longrope: the short factors' */
  float *rope_inv_freq_long;  /* (rotary_dim / 2) longrope: positions >= rope_orig_ctx, or NULL */
  float *rope_inv_freq_local; /* (rotary_dim / 2) LRT_LAYER_LOCAL_ROPE layers, or NULL */
  lrt_layer *layers;
  /* storage */
  lrt_st_file *st_files;
  size_t n_st_files;
  lrt_gguf_file gguf;
  void **owned;       /* buffers loomrt allocated (dequantized / transposed / f32 vectors) */
  size_t *owned_bytes; /* their sizes */
  size_t n_owned, cap_owned;
  uint64_t weight_bytes, resident_bytes, n_params;
  char dtype_name[16];
  char name[256];
  char features[512]; /* the family's distinctive settings in words (LRT_STR_FEATURES) */
  /* Attached by api/ at open and freed by lrt_model_close (the model layer never reads them):
   * the text side (chat template, end-of-generation ids, copied buffers) and the tokenizer
   * (NULL when absent or unusable; tok_status / tok_msg say why). */
  struct lrt_text *text;
  struct lrt_tokenizer *tok;
  int32_t tok_status;
  char tok_msg[512];
};

/* model.c */
int32_t lrt_model_load(const char *path, int32_t flags, lrt_model **out);
void lrt_model_free(lrt_model *m);
/* model.c: open a model from in-memory files (one *.gguf, or config.json + safetensors).
 * The buffers must outlive the model. */
int32_t lrt_model_load_memory(const lrt_vfile *files, size_t n_files, int32_t flags, lrt_model **out);


/* ---- session ------------------------------------------------------------------------- */

struct lrt_session {
  lrt_model *m;
  int64_t n_layers;  /* the model's, copied: lrt_session_free reads nothing of the model
                        (Python's cyclic GC may close the model before its sessions) */
  lrt_pool *pool;
  int64_t ctx;       /* max positions */
  int64_t cap;       /* positions allocated in the KV cache */
  int64_t pos;       /* tokens in the cache */
  float **k_cache;   /* per layer (rows, kv_dim): position p in row p, or in row p % kv_ring */
  float **v_cache;   /* for a windowed layer when kv_ring > 0 (lrt_kv_row)                    */
  int64_t kv_ring;   /* rows of a windowed layer's ring (lrt_kv_ring_rows); 0: no ring      */
  int64_t kv_lo;     /* windowed layers hold positions [kv_lo, pos) (0 without a ring)      */
  int32_t *tokens;   /* (cap) token history */
  /* scratch for one chunk of up to `chunk` tokens */
  int64_t chunk;
  float *x, *xb, *q, *k, *v, *att, *hb, *hb2;
  float *rope_cs;    /* (2, chunk, head_dim): cos/sin per position, global then local RoPE */
  float *scores;     /* (threads, ctx) */
  float *wrow;       /* (threads, max_cols): one dequantized weight row per worker */
  int8_t *act_q;     /* LRT_OPEN_INT8_ACTIVATIONS: (chunk, max_cols) quantized activations, */
  float *act_d;      /* their block scales and                                            */
  int32_t *act_s;    /* block sums (lrt_quantize_act_q8)                                  */
  void *act_p;       /* the same rows packed for the int8 prefill tile (kernels.h i8_pack_x) */
  int64_t wrow_cap;
  int64_t scores_cap;
  /* logits of the last eval */
  float *logits;
  int64_t logits_rows, logits_cap;
  /* sampler */
  double temperature, top_p, min_p, repeat_penalty;
  int64_t top_k, repeat_last_n;
  uint64_t seed;
  int32_t *cand_ids;
  float *cand_probs, *cand_logits;
  int64_t n_cand;
  int64_t max_tokens;  /* LRT_PARAM_MAX_TOKENS for lrt_session_step, -1 = none */
  struct lrt_gen *gen; /* api/generate.c: prompt/step generation state, created on first use */
  uint64_t history_id; /* bumped when the token history is replaced (state load): a pull
                          generation started before it ends (api/generate.c) */
  lrt_atomic_int busy; /* 1 while an exported function runs on the session (lrt_session_enter) */
  struct lrt_inspect_hook *insp; /* inspection (lrt_session_inspect): NULL = off, costs a test */
};

/* Concurrent-use detection (docs/threads.md): every exported function that takes a session
 * enters it first and leaves it on return. Entering a session another thread is inside
 * fails with LRT_ERR_BUSY, before anything of the session is read. One compare-and-swap and
 * one store per call; functions inside the library call each other's unguarded bodies. */
static inline int32_t lrt_session_enter(const lrt_session *s, const char *fn) {
  int expected = 0;
  if (lrt_atomic_cas_int((lrt_atomic_int *)&s->busy, &expected, 1)) return LRT_OK;
  return lrt_err(LRT_ERR_BUSY, "%s: the session is in use by another thread; a session serves one thread at a "
                 "time: give each thread its own session (lrt_session_new)", fn);
}
static inline void lrt_session_leave(const lrt_session *s) {
  lrt_atomic_store_int((lrt_atomic_int *)&s->busy, 0);
}

/* Inspection: while a session's `insp` is set, lrt_forward copies, for every evaluated token at
 * a position p in [pos_lo, pos_lo + n_pos), the residual stream after the embedding and after
 * each layer into hidden[(l * n_pos + p - pos_lo) * dim] (l = 0 embedding, l = 1.. layers), and
 * each head's attention probabilities over key positions lo..p into
 * attn[((l * n_heads + h) * n_pos + p - pos_lo) * n_key + j] (key position j; the rest of the
 * row is left as the caller filled it). Buffers are the caller's. Nothing else changes: the
 * values are copies of what the pass computes anyway. */
typedef struct lrt_inspect_hook {
  float *hidden, *attn; /* either may be NULL */
  int64_t pos_lo, n_pos, n_key;
} lrt_inspect_hook;

/* ---- the KV cache of sliding-window layers: a ring ------------------------------------
 *
 * A layer whose attention is limited to the last W positions (lrt_layer_window) keeps K/V
 * of position p in row p % R of a ring of R = W + LRT_CHUNK - 1 rows (when R is less than the
 * session's context and the model was not opened with LRT_OPEN_FULL_KV). A pass writes the
 * rows of its (at most LRT_CHUNK) new positions before its attention reads them, so the
 * query at the chunk's first position p0 still finds p0 - W + 1 (written rows reach
 * p0 + LRT_CHUNK - 1 = p0 - W + 1 + R - 1). The values and the order they are read in are
 * those of a full cache: the same bits. kv_lo tracks the oldest position the rings still
 * hold; moving the position back (truncate, speculation's rollback, a state load) is exact
 * while the window of the new position, [pos - W + 1, pos), is at or above kv_lo
 * (lrt_session_can_rewind): always for a step back of up to LRT_CHUNK positions. */

/* The window of layer l (positions it attends to), 0 for full attention. */
static inline int64_t lrt_layer_window(const lrt_config *c, int64_t l) {
  if (c->sliding_window <= 0) return 0;
  if (!c->any_sliding) return c->sliding_window; /* Mistral-style: every layer */
  return (c->layer_kind[l] & LRT_LAYER_SLIDING) ? c->sliding_window : 0;
}
/* Ring rows of a windowed layer of model m in a session of `context` positions; 0: no ring
 * (no windowed layer, LRT_OPEN_FULL_KV, or the context is not longer than the ring). */
int64_t lrt_kv_ring_rows(const lrt_model *m, int64_t context);
/* The cache row of position p in layer l. */
static inline int64_t lrt_kv_row(const lrt_session *s, int64_t l, int64_t p) {
  return (s->kv_ring && lrt_layer_window(&s->m->cfg, l)) ? p % s->kv_ring : p;
}
/* Rows allocated for layer l when the session has room for `cap` positions. */
static inline int64_t lrt_kv_layer_rows(const lrt_session *s, int64_t l, int64_t cap) {
  return (s->kv_ring && lrt_layer_window(&s->m->cfg, l) && cap > s->kv_ring) ? s->kv_ring : cap;
}
/* 1 when the session may continue from position pos <= s->pos: every windowed layer still
 * holds the positions a query at pos reads. */
int lrt_session_can_rewind(const lrt_session *s, int64_t pos);
/* The LRT_ERR_STATE error for a step back to pos that the rings cannot serve. */
int32_t lrt_rewind_error(const lrt_session *s, int64_t pos, const char *fn);

/* session.c: a session with scratch for `chunk` tokens per pass and `threads` workers
 * (context > 0: positions it may hold); destroy frees everything but s->gen (api/'s). */
int32_t lrt_session_create(lrt_model *m, int64_t context, int32_t threads, int64_t chunk, lrt_session **out);
void lrt_session_destroy(lrt_session *s);

/* forward.c */
size_t lrt_mat_row_bytes(const lrt_mat *w);
/* Row r of a matrix as float (block formats dequantized, F16/BF16 widened: exact). */
void lrt_mat_row(const lrt_mat *w, int64_t r, float *out);
/* RoPE cos/sin of position pos for `half` frequencies: cs[2i] = cos, cs[2i+1] = sin of the
 * float angle (float)pos * inv_freq[i] (own sincos in double, rounded to float). */
void lrt_rope_cs(const float *inv_freq, int64_t half, int64_t pos, float *cs);
/* model.c: RoPE inverse frequency i of a configuration, in double (see model.c). */
double lrt_rope_freq(const lrt_config *c, int64_t i);
int32_t lrt_forward(lrt_session *s, const int32_t *tokens, int64_t n, int all_logits);
/* Advance n_seqs distinct sessions of w's model together: session i appends counts[i] >= 1
 * tokens tokens[i] and gets the logits of its last one (as lrt_forward(.., 0) would give,
 * bit for bit). Runs on w's scratch buffers and threads (w's own cache is not touched);
 * every weight row is read once per pass of up to w->chunk rows for all sequences. On
 * failure no session changes. */
int32_t lrt_forward_batch(lrt_session *w, lrt_session *const *seqs, const int32_t *const *tokens,
                          const int64_t *counts, int64_t n_seqs);
int32_t lrt_session_reserve(lrt_session *s, int64_t positions);
/* The LM head on rows x dim hidden states: final norm, then the output matrix (the same
 * operations as the last step of lrt_forward, so the last layer's rows give the logits bits).
 * Uses the session's scratch and threads; logits is rows x vocab. */
void lrt_forward_head(lrt_session *s, const float *hidden, int64_t rows, float *logits);
/* sampler.c */
int32_t lrt_sample(lrt_session *s, int32_t *token);
/* The same for a given logits row (vocab floats) as if the session held pos tokens: the
 * repetition penalty reads s->tokens[0..pos) and the draw is uniform(seed, pos). lrt_sample
 * is lrt_sample_at(last row, s->pos); exact speculation (api/speculate.c) samples the rows of
 * a verified chunk with it. pos <= s->pos, or the tokens up to pos must be in s->tokens. */
int32_t lrt_sample_at(lrt_session *s, const float *row, int64_t pos, int32_t *token);
/* Allocate the candidate buffers (vocab entries) if not yet done. */
int32_t lrt_sampler_reserve(lrt_session *s);
/* out[i] = log softmax(logits)[i] over n entries, in one fixed order (out may equal logits). */
void lrt_log_softmax_row(const float *logits, int64_t n, float *out);
/* state.c: lrt_session_state_* (public) */

#endif
