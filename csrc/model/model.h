/* model.h -- the immutable model (config + weights) and the mutable session. */
#ifndef LOOMRT_MODEL_H
#define LOOMRT_MODEL_H

#include "internal.h"
#include "threadpool.h"

typedef enum lrt_arch { LRT_ARCH_LLAMA, LRT_ARCH_MISTRAL, LRT_ARCH_QWEN2, LRT_ARCH_GPT2 } lrt_arch;

#define LRT_MAX_EOS 16

/* Everything the forward pass needs to know, from config.json or GGUF metadata. */
typedef struct lrt_config {
  lrt_arch arch;
  char arch_name[32];
  int64_t vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn, ctx;
  float norm_eps;
  int layernorm;      /* 1: LayerNorm with bias (GPT-2); 0: RMSNorm                      */
  int gelu;           /* 1: tanh-GELU MLP (GPT-2); 0: SwiGLU                             */
  int learned_pos;    /* 1: learned position embeddings (GPT-2); 0: RoPE                 */
  double rope_theta;
  int rope_llama3;    /* rope_scaling of type llama3                                     */
  double rope_factor, rope_low_freq, rope_high_freq, rope_orig_ctx;
  int64_t sliding_window; /* 0: none; else attend to the last `sliding_window` positions */
  int tied;           /* LM head = token embedding                                       */
  int qkv_bias, o_bias, mlp_bias;
  int32_t bos;        /* -1 when unknown */
  int32_t eos[LRT_MAX_EOS];
  int n_eos;
} lrt_config;

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
  float *rope_inv_freq; /* (head_dim / 2) */
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
  struct lrt_text *text; /* text.c: chat template, end-of-generation ids, copied buffers */
  /* tokenizer.c: NULL when absent or unusable; tok_status / tok_msg say why */
  struct lrt_tokenizer *tok;
  int32_t tok_status;
  char tok_msg[512];
};

/* model.c */
int32_t lrt_model_load(const char *path, int32_t flags, lrt_model **out);
void lrt_model_free(lrt_model *m);
/* config.c */
int32_t lrt_config_from_hf(const char *folder, int32_t flags, lrt_config *cfg, char *name,
                           size_t name_cap);
int32_t lrt_config_from_gguf(const lrt_gguf_file *g, lrt_config *cfg);
/* The same from the texts of config.json and generation_config.json (gen_text NULL: none). */
int32_t lrt_config_from_hf_json(const char *text, size_t len, const char *gen_text, size_t gen_len,
                                int32_t flags, lrt_config *cfg, char *name, size_t name_cap);

/* A file given in memory (lrt_model_open_memory): name as in a model folder, bytes borrowed. */
typedef struct lrt_vfile {
  const char *name; /* NUL-terminated copy owned by the caller of lrt_model_load_memory */
  const uint8_t *data;
  size_t size;
} lrt_vfile;
/* model.c: open a model from in-memory files (one *.gguf, or config.json + safetensors).
 * The buffers must outlive the model. */
int32_t lrt_model_load_memory(const lrt_vfile *files, size_t n_files, int32_t flags, lrt_model **out);
const lrt_vfile *lrt_vfile_find(const lrt_vfile *files, size_t n_files, const char *name);

/* tokenizer.c: attach the model's tokenizer (tokenizer.json of the folder or of the files
 * given, or the GGUF metadata). Never fails the open: a missing or unusable tokenizer is
 * recorded in m->tok_status / m->tok_msg and reported by lrt_tokenize. */
void lrt_model_attach_tokenizer(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n_files);
void lrt_tok_free(struct lrt_tokenizer *t);

/* text.c: chat template, end-of-generation ids (filled once at open; read-only after). */
typedef struct lrt_text lrt_text;
/* folder: the HF folder path, or NULL with files/n_files for a model opened from memory;
 * GGUF models read their metadata. */
int32_t lrt_text_init(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n_files);
void lrt_text_free(lrt_text *t);
/* The model's chat template source (NUL-terminated, "" when none). */
int32_t lrt_text_chat_template(const lrt_model *m, const char **out, size_t *len);
/* text.c: the generation state of a session (pull API). */
typedef struct lrt_gen lrt_gen;
void lrt_gen_free(lrt_gen *g);
/* End the session's pull generation (if any): the next lrt_session_step fails with
 * LRT_ERR_STATE until a new prompt. For code that replaces a session's tokens. */
void lrt_gen_stop(lrt_session *s);

/* ---- session ------------------------------------------------------------------------- */

struct lrt_session {
  lrt_model *m;
  int64_t n_layers;  /* the model's, copied: lrt_session_free reads nothing of the model
                        (Python's cyclic GC may close the model before its sessions) */
  lrt_pool *pool;
  int64_t ctx;       /* max positions */
  int64_t cap;       /* positions allocated in the KV cache */
  int64_t pos;       /* tokens in the cache */
  float **k_cache;   /* per layer (cap, kv_dim) */
  float **v_cache;
  int32_t *tokens;   /* (cap) token history */
  /* scratch for one chunk of up to `chunk` tokens */
  int64_t chunk;
  float *x, *xb, *q, *k, *v, *att, *hb, *hb2, *rope_cs;
  float *scores;     /* (threads, ctx) */
  float *wrow;       /* (threads, max_cols): one dequantized weight row per worker */
  int8_t *act_q;     /* LRT_OPEN_INT8_ACTIVATIONS: (chunk, max_cols) quantized activations, */
  float *act_d;      /* their block scales and                                            */
  int32_t *act_s;    /* block sums (lrt_quantize_act_q8)                                  */
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
  struct lrt_gen *gen; /* text.c: prompt/step generation state, created on first use */
};

/* forward.c */
size_t lrt_mat_row_bytes(const lrt_mat *w);
int32_t lrt_forward(lrt_session *s, const int32_t *tokens, int64_t n, int all_logits);
int32_t lrt_session_reserve(lrt_session *s, int64_t positions);
/* sampler.c */
int32_t lrt_sample(lrt_session *s, int32_t *token);
/* Allocate the candidate buffers (vocab entries) if not yet done. */
int32_t lrt_sampler_reserve(lrt_session *s);
/* state.c: lrt_session_state_* (public) */

#endif
