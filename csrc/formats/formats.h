/* formats.h -- the file-format layer (csrc/formats/): JSON, safetensors, GGUF, the model
 * configuration read from config.json or GGUF metadata, and the in-memory file set of a model
 * opened from buffers. Not part of the API. Includes only base/. */
#ifndef LOOMRT_FORMATS_H
#define LOOMRT_FORMATS_H

#include "../base/base.h"

/* ---- tensors ------------------------------------------------------------------------ */

/* A tensor inside a mapped file. shape is in row-major order, outermost first (numpy /
 * HF order; for GGUF this is ne[] reversed). data points into the mapping. */
typedef struct lrt_tensor_ref {
  char *name;          /* owned, NUL-terminated */
  size_t name_len;
  int dtype;           /* lrt_dtype */
  char dtype_name[16]; /* the file's own name for the type, e.g. "I64", "Q5_K" */
  int n_dims;
  int64_t shape[LRT_MAX_DIMS];
  uint64_t n_elems;
  const uint8_t *data;
  uint64_t nbytes;
  int used;            /* set by the model layer when it binds the tensor (unused check) */
} lrt_tensor_ref;
/* ---- JSON (json.c) -------------------------------------------------------------------- */

typedef enum lj_type { LJ_NULL, LJ_BOOL, LJ_NUMBER, LJ_STRING, LJ_ARRAY, LJ_OBJECT } lj_type;

typedef struct lj_value lj_value;
typedef struct lj_member lj_member;
struct lj_value {
  lj_type type;
  int boolean;        /* LJ_BOOL */
  double number;      /* LJ_NUMBER (parsed by loomrt's own deterministic routine) */
  int is_integer;     /* LJ_NUMBER written without '.', 'e' and fits int64 */
  int64_t integer;    /* valid when is_integer */
  const char *str;    /* LJ_STRING: unescaped, valid UTF-8, NUL-terminated */
  size_t str_len;
  lj_value *items;    /* LJ_ARRAY */
  lj_member *members; /* LJ_OBJECT, in file order */
  size_t count;       /* items or members */
};
struct lj_member {
  const char *key; /* unescaped, NUL-terminated */
  size_t key_len;
  lj_value value;
};

typedef struct lj_doc lj_doc;
/* Parse UTF-8 JSON text. Strict RFC 8259: no comments, no trailing commas, no NaN;
 * depth <= 64; duplicate keys are an error. `what` names the source for messages
 * (e.g. "config.json"). LRT_ERR_FORMAT with line:column on failure. */
int32_t lj_parse(const char *text, size_t len, const char *what, lj_doc **out);
void lj_free(lj_doc *doc);
const lj_value *lj_root(const lj_doc *doc);
/* Member of an object by key, NULL when absent or when obj is not an object. */
const lj_value *lj_get(const lj_value *obj, const char *key);

/* ---- safetensors (safetensors.c) ------------------------------------------------------- */

typedef struct lrt_st_file {
  lrt_mapped_file map; /* map.data may also be a caller buffer (then priv == NULL) */
  lrt_tensor_ref *tensors;
  size_t n_tensors;
} lrt_st_file;

/* Validate a safetensors buffer: 8-byte LE header size, JSON header, dtypes, shapes
 * (product x element size == byte span), offsets within the data section, no overlap, and
 * no byte of the data section outside every tensor (no holes, nothing after the last).
 * Tensors are sorted by name. `what` names the file in messages. */
int32_t lrt_st_parse(const uint8_t *buf, uint64_t len, const char *what, lrt_st_file *out);
/* Open a file: mapped, or read into memory when in_memory (LRT_OPEN_NO_MMAP). */
int32_t lrt_st_open(const char *path, int in_memory, lrt_st_file *out);
void lrt_st_close(lrt_st_file *f);
const lrt_tensor_ref *lrt_st_find(const lrt_st_file *f, const char *name);

/* ---- GGUF (gguf.c) -------------------------------------------------------------------- */

typedef struct lrt_gguf_kv {
  char *key; /* owned, NUL-terminated */
  size_t key_len;
  uint32_t type;      /* lrt_meta_type */
  uint32_t elem_type; /* == type for scalars */
  uint64_t count;     /* 1 for scalars */
  const uint8_t *data;  /* scalars and numeric arrays: raw little-endian bytes in the file */
  const char **strs;    /* STRING scalars / string arrays: count pointers into the file */
  uint64_t *str_lens;   /* (not NUL-terminated; validated UTF-8) */
} lrt_gguf_kv;

typedef struct lrt_gguf_file {
  lrt_mapped_file map;
  uint32_t version;
  uint64_t alignment;
  lrt_gguf_kv *kv;
  size_t n_kv;
  lrt_tensor_ref *tensors; /* in file order */
  size_t n_tensors;
} lrt_gguf_file;

int32_t lrt_gguf_parse(const uint8_t *buf, uint64_t len, const char *what, lrt_gguf_file *out);
/* Open a file: mapped, or read into memory when in_memory (LRT_OPEN_NO_MMAP). */
int32_t lrt_gguf_open(const char *path, int in_memory, lrt_gguf_file *out);
void lrt_gguf_close(lrt_gguf_file *f);
const lrt_gguf_kv *lrt_gguf_find(const lrt_gguf_file *f, const char *key);
const lrt_tensor_ref *lrt_gguf_find_tensor(const lrt_gguf_file *f, const char *name);
/* Element `index` of an integer/bool kv as int64 (range-checked); of a float kv as double
 * (integers convert too). Return LRT_OK or LRT_ERR_FORMAT / LRT_ERR_INVALID_ARGUMENT. */
int32_t lrt_gguf_kv_int(const lrt_gguf_kv *kv, uint64_t index, int64_t *out);
int32_t lrt_gguf_kv_float(const lrt_gguf_kv *kv, uint64_t index, double *out);

/* ---- model configuration (config.c) ---------------------------------------------------- */

typedef enum lrt_arch {
  LRT_ARCH_LLAMA, LRT_ARCH_MISTRAL, LRT_ARCH_QWEN2, LRT_ARCH_GPT2,
  LRT_ARCH_QWEN3, LRT_ARCH_GEMMA2, LRT_ARCH_GEMMA3, LRT_ARCH_SMOLLM3, LRT_ARCH_OLMO2, LRT_ARCH_PHI3
} lrt_arch;

#define LRT_MAX_EOS 16
#define LRT_MAX_LAYERS 4096
#define LRT_MAX_ROPE_FACTORS 512 /* longrope short/long factors: rotary_dim / 2 of them */

/* Per-layer kind (lrt_config.layer_kind). */
#define LRT_LAYER_SLIDING 1 /* attends to the last `sliding_window` positions only          */
#define LRT_LAYER_NO_ROPE 2 /* no positional encoding in this layer (SmolLM3 no_rope_layers) */
#define LRT_LAYER_LOCAL_ROPE 4 /* RoPE with the local base (Gemma 3 sliding layers)          */

/* Query/key normalisation (lrt_config.qk_norm). */
#define LRT_QK_NORM_NONE 0
#define LRT_QK_NORM_HEAD 1 /* RMSNorm of each head's head_dim values (Qwen3, Gemma 3)      */
#define LRT_QK_NORM_FULL 2 /* RMSNorm over the whole q / k projection (OLMo 2)            */

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
  /* newer families (all 0 for llama / mistral / qwen2 / gpt2) */
  int qk_norm;        /* LRT_QK_NORM_*                                                   */
  int norm_plus_one;  /* Gemma: RMSNorm weight is (1 + w) (HF files store w; GGUF 1 + w)  */
  int pre_norms;      /* 1: norms before attention and MLP (all but OLMo 2)              */
  int post_norms;     /* 1: norms after attention and MLP, before the residual add        */
  int geglu;          /* 1: gated MLP with tanh-GELU (Gemma) instead of SiLU              */
  int fused_qkv;      /* Phi-3: one qkv_proj / gate_up_proj matrix in the files           */
  float embed_scale;  /* 0: none; else embeddings multiplied by it (Gemma: sqrt(hidden))  */
  float attn_softcap, final_softcap; /* 0: none; else cap * tanh(x / cap)                */
  double attn_scalar; /* query_pre_attn_scalar (Gemma), reported only; 0: none          */
  float attn_scale;   /* 0: scores scaled by 1/sqrtf(head_dim) (older families); else this */
  int64_t rotary_dim; /* dimensions rotated per head (partial rotary); == head_dim else  */
  double rope_local_theta; /* RoPE base of LRT_LAYER_LOCAL_ROPE layers                   */
  double rope_linear; /* 0: none; else inv_freq / factor (rope_scaling linear; Gemma 3:
                         global layers only)                                             */
  int rope_longrope;  /* longrope / su scaling: short factors below rope_orig_ctx, long
                         from it on (per position), cos/sin times rope_attn_factor        */
  double rope_attn_factor;
  double rope_short[LRT_MAX_ROPE_FACTORS], rope_long[LRT_MAX_ROPE_FACTORS];
  int any_sliding;    /* some layer is LRT_LAYER_SLIDING                                 */
  uint8_t layer_kind[LRT_MAX_LAYERS]; /* LRT_LAYER_* bits per layer                       */
  int32_t bos;        /* -1 when unknown */
  int32_t eos[LRT_MAX_EOS];
  int n_eos;
} lrt_config;

/* From a model folder's config.json (+ generation_config.json). */
int32_t lrt_config_from_hf(const char *folder, int32_t flags, lrt_config *cfg, char *name,
                           size_t name_cap);
int32_t lrt_config_from_gguf(const lrt_gguf_file *g, lrt_config *cfg);
/* The same from the texts of config.json and generation_config.json (gen_text NULL: none). */
int32_t lrt_config_from_hf_json(const char *text, size_t len, const char *gen_text, size_t gen_len,
                                int32_t flags, lrt_config *cfg, char *name, size_t name_cap);


/* ---- in-memory file set (vfile.c) ------------------------------------------------------- */

/* A file given in memory (lrt_model_open_memory): name as in a model folder, bytes borrowed. */
typedef struct lrt_vfile {
  const char *name; /* NUL-terminated copy owned by the caller of lrt_model_load_memory */
  const uint8_t *data;
  size_t size;
} lrt_vfile;
const lrt_vfile *lrt_vfile_find(const lrt_vfile *files, size_t n_files, const char *name);

#endif /* LOOMRT_FORMATS_H */
