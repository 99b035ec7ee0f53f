/* config.c -- model configuration from a HuggingFace config.json (+ generation_config.json)
 * or from GGUF metadata.
 *
 * Rule: a config key that loomrt does not understand and that may change the math is an
 * error, never a silent default. Keys are sorted in three groups per architecture: read
 * (used), checked (must hold a value loomrt implements) and inert (training or bookkeeping
 * settings that do not change inference). Anything else fails unless the caller passed
 * LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h> /* sqrt only: correctly rounded by IEEE 754 */

#include "../base/lrt_math.h"
#include "formats.h"

#define CONFIG_MAX_BYTES (16u << 20)

/* Keys that never change inference math, for any architecture. */
static const char *const INERT_KEYS[] = {
    "_name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype",
    "dtype", "use_cache", "initializer_range", "attention_dropout", "pad_token_id",
    "bos_token_id", "eos_token_id", "output_attentions", "output_hidden_states",
    "return_dict", "id2label", "label2id", "is_decoder", "is_encoder_decoder",
    "tokenizer_class", "prefix", "problem_type", "task_specific_params", "chunk_size_feed_forward",
    "tie_encoder_decoder", "torchscript", "use_return_dict", "finetuning_task",
    "cross_attention_hidden_size", "add_cross_attention", "decoder_start_token_id",
    "sep_token_id", "unk_token_id", "pretraining_tp", "embd_pdrop", "attn_pdrop",
    "resid_pdrop", "summary_activation", "summary_first_dropout", "summary_proj_to_labels",
    "summary_type", "summary_use_proj", "reorder_and_upcast_attn", "max_window_layers",
    "quantization_config_none", "num_labels", "max_length", "min_length", "do_sample",
    "early_stopping", "num_beams", "temperature", "top_k", "top_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
    "typical_p", "diversity_penalty", "num_beam_groups", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "output_scores", "return_dict_in_generate",
    "tf_legacy_loss", "pruned_heads", "chunk_size", "bits", "image_token_id",
    "hidden_dropout", "dropout", "layer_types", "use_sliding_window", "sliding_window",
    "tie_word_embeddings", NULL};

static int in_list(const char *key, const char *const *list) {
  for (; *list; list++)
    if (strcmp(key, *list) == 0) return 1;
  return 0;
}

/* ---- typed getters with messages ------------------------------------------------------ */

static int32_t get_int(const lj_value *root, const char *key, int64_t lo, int64_t hi,
                       int64_t *out, int required) {
  const lj_value *v = lj_get(root, key);
  if (!v || v->type == LJ_NULL) {
    if (required)
      return lrt_err(LRT_ERR_FORMAT, "config.json: required key \"%s\" is missing", key);
    return LRT_OK;
  }
  if (v->type != LJ_NUMBER || !v->is_integer)
    return lrt_err(LRT_ERR_FORMAT, "config.json: \"%s\" must be an integer", key);
  if (v->integer < lo || v->integer > hi)
    return lrt_err(LRT_ERR_FORMAT, "config.json: \"%s\" = %lld is out of range [%lld, %lld]",
                   key, (long long)v->integer, (long long)lo, (long long)hi);
  *out = v->integer;
  return LRT_OK;
}

static int32_t get_num(const lj_value *obj, const char *where, const char *key, double lo,
                       double hi, double *out, int required) {
  const lj_value *v = lj_get(obj, key);
  if (!v || v->type == LJ_NULL) {
    if (required)
      return lrt_err(LRT_ERR_FORMAT, "%s: required key \"%s\" is missing", where, key);
    return LRT_OK;
  }
  if (v->type != LJ_NUMBER) return lrt_err(LRT_ERR_FORMAT, "%s: \"%s\" must be a number", where, key);
  if (!(v->number >= lo && v->number <= hi))
    return lrt_err(LRT_ERR_FORMAT, "%s: \"%s\" = %g is out of range [%g, %g]", where, key,
                   v->number, lo, hi);
  *out = v->number;
  return LRT_OK;
}

static int32_t get_bool(const lj_value *root, const char *key, int *out) {
  const lj_value *v = lj_get(root, key);
  if (!v || v->type == LJ_NULL) return LRT_OK;
  if (v->type != LJ_BOOL) return lrt_err(LRT_ERR_FORMAT, "config.json: \"%s\" must be true or false", key);
  *out = v->boolean;
  return LRT_OK;
}

/* The value must be absent/null/false: loomrt does not implement the feature. */
static int32_t require_off(const lj_value *root, const char *key, const char *what) {
  const lj_value *v = lj_get(root, key);
  if (!v || v->type == LJ_NULL || (v->type == LJ_BOOL && !v->boolean)) return LRT_OK;
  return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: \"%s\" is set, but loomrt does not implement %s", key, what);
}

static int32_t require_str(const lj_value *root, const char *key, const char *const *allowed,
                           const char *what) {
  const lj_value *v = lj_get(root, key);
  if (!v || v->type == LJ_NULL) return LRT_OK;
  if (v->type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "config.json: \"%s\" must be a string", key);
  for (const char *const *a = allowed; *a; a++)
    if (strcmp(v->str, *a) == 0) return LRT_OK;
  return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: %s \"%s\" is not supported (loomrt implements: %s)",
                 key, v->str, what);
}

/* eos_token_id: an integer or a list of integers. Adds to cfg->eos without duplicates. */
static int32_t add_eos(lrt_config *cfg, const lj_value *v, const char *where) {
  if (!v || v->type == LJ_NULL) return LRT_OK;
  size_t n = v->type == LJ_ARRAY ? v->count : 1;
  for (size_t i = 0; i < n; i++) {
    const lj_value *e = v->type == LJ_ARRAY ? &v->items[i] : v;
    if (e->type != LJ_NUMBER || !e->is_integer || e->integer < 0 || e->integer > INT32_MAX)
      return lrt_err(LRT_ERR_FORMAT, "%s: eos_token_id must be a non-negative integer or a list of them", where);
    int dup = 0;
    for (int j = 0; j < cfg->n_eos; j++) dup |= cfg->eos[j] == (int32_t)e->integer;
    if (!dup) {
      if (cfg->n_eos == LRT_MAX_EOS) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than %d eos ids", where, LRT_MAX_EOS);
      cfg->eos[cfg->n_eos++] = (int32_t)e->integer;
    }
  }
  return LRT_OK;
}

/* A number or a list of numbers from a rope dict (longrope factors). */
static int32_t get_factor_list(const lj_value *params, const char *key, int64_t n, double *out) {
  const lj_value *v = lj_get(params, key);
  if (!v || v->type != LJ_ARRAY)
    return lrt_err(LRT_ERR_FORMAT, "config.json: longrope \"%s\" must be a list of %lld numbers", key, (long long)n);
  if ((int64_t)v->count != n)
    return lrt_err(LRT_ERR_FORMAT, "config.json: longrope \"%s\" has %lld numbers; rotary dimension / 2 = %lld",
                   key, (long long)v->count, (long long)n);
  for (size_t i = 0; i < v->count; i++) {
    if (v->items[i].type != LJ_NUMBER || !(v->items[i].number > 0.0) || v->items[i].number > 1e9)
      return lrt_err(LRT_ERR_FORMAT, "config.json: longrope \"%s\"[%zu] must be a positive number", key, i);
    out[i] = v->items[i].number;
  }
  return LRT_OK;
}

/* One rope dict (rope_parameters, rope_scaling, or one layer type's entry of Gemma 3's
 * per-layer-type rope_parameters). `theta` receives rope_theta when the dict has one.
 * `ext`: the newer families, which may use linear / longrope scaling and partial rotary. */
static int32_t read_rope_dict(const lj_value *root, const lj_value *params, lrt_config *cfg, double *theta,
                              int ext, int local) {
  int32_t st;
  if (params->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "config.json: a rope dict must be an object");
  if (theta && (st = get_num(params, "config.json rope_parameters", "rope_theta", 1e-6, 1e12, theta, 0))) return st;
  const lj_value *type = lj_get(params, "rope_type");
  if (!type) type = lj_get(params, "type");
  const char *t = type && type->type == LJ_STRING ? type->str : "default";
  if (type && type->type != LJ_STRING)
    return lrt_err(LRT_ERR_FORMAT, "config.json: rope type must be a string");
  static const char *const known_default[] = {"rope_type", "type", "rope_theta", NULL};
  static const char *const known_default_ext[] = {"rope_type", "type", "rope_theta", "partial_rotary_factor", NULL};
  static const char *const known_llama3[] = {"rope_type", "type", "rope_theta", "factor",
                                             "low_freq_factor", "high_freq_factor",
                                             "original_max_position_embeddings", NULL};
  static const char *const known_linear[] = {"rope_type", "type", "rope_theta", "factor", "partial_rotary_factor", NULL};
  static const char *const known_longrope[] = {"rope_type", "type", "rope_theta", "factor", "short_factor",
                                               "long_factor", "attention_factor", "original_max_position_embeddings",
                                               "partial_rotary_factor", NULL};
  const char *const *known;
  const char *w = "config.json rope scaling";
  if (ext) { /* partial_rotary_factor (transformers >= 5 keeps it in the rope dict) */
    double prf = 1.0;
    const lj_value *pv = lj_get(params, "partial_rotary_factor");
    if (pv && pv->type != LJ_NULL) {
      if ((st = get_num(params, w, "partial_rotary_factor", 1e-6, 1.0, &prf, 0))) return st;
      int64_t rd = (int64_t)((double)cfg->head_dim * prf); /* int(head_dim * factor), as transformers */
      if (rd < 2 || rd % 2) return lrt_err(LRT_ERR_FORMAT, "config.json: partial_rotary_factor %g gives an odd or empty rotary dimension", prf);
      cfg->rotary_dim = rd;
    }
  }
  if (strcmp(t, "default") == 0) {
    known = ext ? known_default_ext : known_default;
  } else if (strcmp(t, "llama3") == 0 && !local) {
    known = known_llama3;
    cfg->rope_llama3 = 1;
    if ((st = get_num(params, w, "factor", 1e-6, 1e6, &cfg->rope_factor, 1))) return st;
    if ((st = get_num(params, w, "low_freq_factor", 1e-6, 1e6, &cfg->rope_low_freq, 1))) return st;
    if ((st = get_num(params, w, "high_freq_factor", 1e-6, 1e6, &cfg->rope_high_freq, 1))) return st;
    if ((st = get_num(params, w, "original_max_position_embeddings", 1, 1e9, &cfg->rope_orig_ctx, 1))) return st;
    if (!(cfg->rope_high_freq > cfg->rope_low_freq))
      return lrt_err(LRT_ERR_FORMAT, "config.json: llama3 rope needs high_freq_factor > low_freq_factor");
  } else if (ext && !local && strcmp(t, "linear") == 0) {
    known = known_linear;
    if ((st = get_num(params, w, "factor", 1e-6, 1e6, &cfg->rope_linear, 1))) return st;
  } else if (ext && !local && cfg->arch == LRT_ARCH_PHI3 && (strcmp(t, "longrope") == 0 || strcmp(t, "su") == 0)) {
    known = known_longrope;
    cfg->rope_longrope = 1;
    double orig = 0.0, factor = 0.0, attn = 0.0;
    if ((st = get_num(params, w, "original_max_position_embeddings", 1, 1e9, &orig, 0))) return st;
    if (orig == 0.0 && (st = get_num(root, "config.json", "original_max_position_embeddings", 1, 1e9, &orig, 1))) return st;
    cfg->rope_orig_ctx = orig;
    if ((st = get_num(params, w, "factor", 1e-6, 1e6, &factor, 0))) return st;
    if (factor == 0.0) factor = (double)cfg->ctx / orig; /* transformers' default */
    if ((st = get_num(params, w, "attention_factor", 1e-6, 1e6, &attn, 0))) return st;
    if (attn == 0.0) /* sqrt(1 + ln(factor) / ln(original)), 1 when not extended */
      attn = factor <= 1.0 ? 1.0 : sqrt(1.0 + lrt_log(factor) / lrt_log(orig));
    cfg->rope_attn_factor = attn;
    int64_t half = cfg->rotary_dim / 2;
    if (half > LRT_MAX_ROPE_FACTORS) return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: rotary dimension too large for longrope");
    if ((st = get_factor_list(params, "short_factor", half, cfg->rope_short))) return st;
    if ((st = get_factor_list(params, "long_factor", half, cfg->rope_long))) return st;
  } else {
    return lrt_err(LRT_ERR_UNSUPPORTED,
                   "config.json: rope type \"%s\" is not supported%s (loomrt implements default and llama3%s)", t,
                   local ? " for local layers" : "", ext ? "; linear for this family; longrope for phi3" : "");
  }
  for (size_t i = 0; i < params->count; i++)
    if (!in_list(params->members[i].key, known))
      return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: rope key \"%s\" is not understood by loomrt; it changes positional encoding",
                     params->members[i].key);
  return LRT_OK;
}

/* rope_parameters (transformers >= 5) or rope_theta + rope_scaling (older). Gemma 3's
 * rope_parameters hold one dict per layer type ("full_attention", "sliding_attention"). */
static int32_t read_rope(const lj_value *root, lrt_config *cfg) {
  int32_t st;
  int ext = cfg->arch >= LRT_ARCH_QWEN3;
  const lj_value *rp = lj_get(root, "rope_parameters");
  const lj_value *rs = lj_get(root, "rope_scaling");
  cfg->rope_theta = 10000.0;
  cfg->rotary_dim = cfg->head_dim;
  if ((st = get_num(root, "config.json", "rope_theta", 1e-6, 1e12, &cfg->rope_theta, 0))) return st;
  if (ext) { /* older configs: partial_rotary_factor at the top level (Phi-4-mini) */
    double prf = 1.0;
    if ((st = get_num(root, "config.json", "partial_rotary_factor", 1e-6, 1.0, &prf, 0))) return st;
    int64_t rd = (int64_t)((double)cfg->head_dim * prf);
    if (rd < 2 || rd % 2) return lrt_err(LRT_ERR_FORMAT, "config.json: partial_rotary_factor %g gives an odd or empty rotary dimension", prf);
    cfg->rotary_dim = rd;
  }
  if (cfg->arch == LRT_ARCH_GEMMA3) {
    cfg->rope_local_theta = 10000.0;
    if ((st = get_num(root, "config.json", "rope_local_base_freq", 1e-6, 1e12, &cfg->rope_local_theta, 0))) return st;
    if (rp && rp->type == LJ_OBJECT && (lj_get(rp, "full_attention") || lj_get(rp, "sliding_attention"))) {
      for (size_t i = 0; i < rp->count; i++) {
        const char *k = rp->members[i].key;
        int local = strcmp(k, "sliding_attention") == 0;
        if (!local && strcmp(k, "full_attention") != 0)
          return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: rope_parameters for layer type \"%s\" are not understood by loomrt", k);
        if ((st = read_rope_dict(root, &rp->members[i].value, cfg, local ? &cfg->rope_local_theta : &cfg->rope_theta, ext, local)))
          return st;
      }
      rp = NULL;
    }
  }
  const lj_value *params = NULL;
  if (rp && rp->type != LJ_NULL) {
    if (rp->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "config.json: \"rope_parameters\" must be an object");
    if ((st = get_num(rp, "config.json rope_parameters", "rope_theta", 1e-6, 1e12, &cfg->rope_theta, 0))) return st;
    params = rp;
  }
  if (rs && rs->type != LJ_NULL) {
    if (rs->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "config.json: \"rope_scaling\" must be an object or null");
    params = rs;
  }
  if (!params) return LRT_OK;
  /* (rope_theta inside rope_scaling is read for the newer families only: older ones ignored it) */
  return read_rope_dict(root, params, cfg, params == rp || ext ? &cfg->rope_theta : NULL, ext, 0);
}

static int32_t check_unknown2(const lj_value *root, const char *const *read, const char *const *read2,
                              int32_t flags, const char *arch);
static int32_t check_unknown(const lj_value *root, const char *const *read, int32_t flags,
                             const char *arch) {
  static const char *const none[] = {NULL};
  return check_unknown2(root, read, none, flags, arch);
}

/* Keys of `read` and `read2` (a family's own) are understood, and the inert ones. */
static int32_t check_unknown2(const lj_value *root, const char *const *read, const char *const *read2,
                              int32_t flags, const char *arch) {
  if (flags & LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS) return LRT_OK;
  for (size_t i = 0; i < root->count; i++) {
    const char *k = root->members[i].key;
    if (strlen(k) != root->members[i].key_len)
      return lrt_err(LRT_ERR_FORMAT, "config.json: a key contains a NUL character (\"%s\\u0000...\")", k);
    if (!in_list(k, read) && !in_list(k, read2) && !in_list(k, INERT_KEYS))
      return lrt_err(LRT_ERR_UNSUPPORTED,
                     "config.json: key \"%s\" is not understood by loomrt for %s and may change the "
                     "model's math; if you know it does not, open with allow_unknown_config_keys=True "
                     "(flag LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS)", k, arch);
  }
  return LRT_OK;
}

static const char *const LLAMA_KEYS[] = {
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_parameters", "rope_scaling", "hidden_act", "attention_bias", "mlp_bias", NULL};
static const char *const GPT2_KEYS[] = {"vocab_size", "n_embd", "n_layer", "n_head", "n_positions",
                                        "n_ctx", "n_inner", "layer_norm_epsilon", "activation_function",
                                        "scale_attn_weights", "scale_attn_by_inverse_layer_idx", NULL};

static int32_t parse_llama_like(const lj_value *root, lrt_config *c) {
  int32_t st;
  int64_t big = (int64_t)1 << 40;
  if ((st = get_int(root, "vocab_size", 1, INT32_MAX, &c->vocab, 1))) return st;
  if ((st = get_int(root, "hidden_size", 1, 1 << 20, &c->dim, 1))) return st;
  if ((st = get_int(root, "intermediate_size", 1, 1 << 22, &c->ffn, 1))) return st;
  if ((st = get_int(root, "num_hidden_layers", 1, 4096, &c->n_layers, 1))) return st;
  if ((st = get_int(root, "num_attention_heads", 1, 4096, &c->n_heads, 1))) return st;
  c->n_kv_heads = c->n_heads;
  if ((st = get_int(root, "num_key_value_heads", 1, 4096, &c->n_kv_heads, 0))) return st;
  c->head_dim = c->dim / c->n_heads;
  if (c->dim % c->n_heads != 0 && !lj_get(root, "head_dim"))
    return lrt_err(LRT_ERR_FORMAT, "config.json: hidden_size %lld is not divisible by num_attention_heads %lld",
                   (long long)c->dim, (long long)c->n_heads);
  if ((st = get_int(root, "head_dim", 2, 1 << 16, &c->head_dim, 0))) return st;
  if (c->head_dim % 2) return lrt_err(LRT_ERR_FORMAT, "config.json: head_dim must be even for RoPE");
  if (c->n_heads % c->n_kv_heads)
    return lrt_err(LRT_ERR_FORMAT, "config.json: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                   (long long)c->n_heads, (long long)c->n_kv_heads);
  c->ctx = 2048;
  if ((st = get_int(root, "max_position_embeddings", 1, big, &c->ctx, 0))) return st;
  double eps = 1e-6;
  if ((st = get_num(root, "config.json", "rms_norm_eps", 0.0, 1.0, &eps, 0))) return st;
  c->norm_eps = (float)eps;
  static const char *const silu[] = {"silu", NULL};
  static const char *const gelu_tanh[] = {"gelu_pytorch_tanh", NULL};
  int gemma = c->arch == LRT_ARCH_GEMMA2 || c->arch == LRT_ARCH_GEMMA3;
  if ((st = require_str(root, "hidden_act", gemma ? gelu_tanh : silu, gemma ? "gelu_pytorch_tanh" : "silu"))) return st;
  int bias = 0, mlp_bias = 0;
  if ((st = get_bool(root, "attention_bias", &bias))) return st;
  if ((st = get_bool(root, "mlp_bias", &mlp_bias))) return st;
  c->qkv_bias = c->o_bias = bias;
  c->mlp_bias = mlp_bias;
  return read_rope(root, c);
}

static int32_t parse_gpt2(const lj_value *root, lrt_config *c) {
  int32_t st;
  int64_t big = (int64_t)1 << 40;
  if ((st = get_int(root, "vocab_size", 1, INT32_MAX, &c->vocab, 1))) return st;
  if ((st = get_int(root, "n_embd", 1, 1 << 20, &c->dim, 1))) return st;
  if ((st = get_int(root, "n_layer", 1, 4096, &c->n_layers, 1))) return st;
  if ((st = get_int(root, "n_head", 1, 4096, &c->n_heads, 1))) return st;
  if (c->dim % c->n_heads)
    return lrt_err(LRT_ERR_FORMAT, "config.json: n_embd is not divisible by n_head");
  c->n_kv_heads = c->n_heads;
  c->head_dim = c->dim / c->n_heads;
  c->ctx = 1024;
  if ((st = get_int(root, "n_ctx", 1, big, &c->ctx, 0))) return st;
  if ((st = get_int(root, "n_positions", 1, big, &c->ctx, 0))) return st;
  c->ffn = 4 * c->dim;
  if ((st = get_int(root, "n_inner", 1, 1 << 22, &c->ffn, 0))) return st;
  double eps = 1e-5;
  if ((st = get_num(root, "config.json", "layer_norm_epsilon", 0.0, 1.0, &eps, 0))) return st;
  c->norm_eps = (float)eps;
  static const char *const gelu[] = {"gelu_new", "gelu_pytorch_tanh", NULL};
  if ((st = require_str(root, "activation_function", gelu, "gelu_new, gelu_pytorch_tanh"))) return st;
  if ((st = require_off(root, "scale_attn_by_inverse_layer_idx", "per-layer attention scaling"))) return st;
  const lj_value *saw = lj_get(root, "scale_attn_weights");
  if (saw && !(saw->type == LJ_BOOL && saw->boolean))
    return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: scale_attn_weights=false is not supported");
  if ((st = require_off(root, "add_cross_attention", "cross-attention"))) return st;
  c->layernorm = c->gelu = c->learned_pos = 1;
  c->qkv_bias = c->o_bias = c->mlp_bias = 1;
  c->tied = 1;
  return LRT_OK;
}


/* ---- the newer families (Qwen3, Gemma 2 / 3, SmolLM3, OLMo 2, Phi-3) -------------------- */

static const char *const QWEN3_KEYS[] = {"layer_types", "use_sliding_window", "sliding_window", "max_window_layers", NULL};
static const char *const GEMMA_KEYS[] = {"hidden_activation", "query_pre_attn_scalar", "attn_logit_softcapping",
                                         "final_logit_softcapping", "sliding_window", "layer_types",
                                         "use_bidirectional_attention", "cache_implementation",
                                         "rope_local_base_freq", "sliding_window_pattern", "_sliding_window_pattern", NULL};
static const char *const SMOLLM3_KEYS[] = {"no_rope_layers", "no_rope_layer_interval", "layer_types",
                                           "use_sliding_window", "sliding_window", "max_window_layers", NULL};
static const char *const OLMO2_KEYS[] = {NULL};
/* Phi-4-mini's "full_attn_mod" and "interpolate_factor" are read by no transformers code
 * (remote-code leftovers), so they do not change the math transformers computes. */
static const char *const PHI3_KEYS[] = {"original_max_position_embeddings", "partial_rotary_factor", "sliding_window",
                                        "lm_head_bias", "full_attn_mod", "interpolate_factor", "auto_map", NULL};

/* layer_types: "full_attention" / "sliding_attention" per layer, or absent (then `dflt`
 * says which layers slide). */
static int32_t read_layer_types(const lj_value *root, lrt_config *c, int (*dflt)(const lrt_config *, int64_t, int64_t),
                                int64_t arg) {
  const lj_value *lt = lj_get(root, "layer_types");
  if (lt && lt->type != LJ_NULL) {
    if (lt->type != LJ_ARRAY || (int64_t)lt->count != c->n_layers)
      return lrt_err(LRT_ERR_FORMAT, "config.json: \"layer_types\" must list one type per layer (%lld)", (long long)c->n_layers);
    for (size_t i = 0; i < lt->count; i++) {
      const lj_value *e = &lt->items[i];
      if (e->type == LJ_STRING && strcmp(e->str, "sliding_attention") == 0) c->layer_kind[i] |= LRT_LAYER_SLIDING;
      else if (!(e->type == LJ_STRING && strcmp(e->str, "full_attention") == 0))
        return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: layer_types[%zu] is not \"full_attention\" or \"sliding_attention\"", i);
    }
  } else if (dflt) {
    for (int64_t i = 0; i < c->n_layers; i++)
      if (dflt(c, i, arg)) c->layer_kind[i] |= LRT_LAYER_SLIDING;
  }
  return LRT_OK;
}

static int gemma_pattern(const lrt_config *c, int64_t i, int64_t pattern) {
  (void)c;
  return (i + 1) % pattern != 0;
}
static int qwen3_pattern(const lrt_config *c, int64_t i, int64_t max_window_layers) {
  (void)c;
  return i >= max_window_layers;
}

/* A positive number or null; `out` stays 0 for null / absent. */
static int32_t get_cap(const lj_value *root, const char *key, float *out) {
  double v = 0.0;
  int32_t st = get_num(root, "config.json", key, 1e-6, 1e9, &v, 0);
  if (st) return st;
  *out = (float)v;
  return LRT_OK;
}

static int32_t parse_family(const lj_value *root, lrt_config *c) {
  int32_t st;
  int64_t big = (int64_t)1 << 40;
  int slide = 0;
  c->pre_norms = 1;
  switch (c->arch) {
    case LRT_ARCH_QWEN3: {
      c->qk_norm = LRT_QK_NORM_HEAD;
      if ((st = get_bool(root, "use_sliding_window", &slide))) return st;
      if (slide) {
        int64_t mwl = 0;
        if ((st = get_int(root, "sliding_window", 1, big, &c->sliding_window, 1))) return st;
        if ((st = get_int(root, "max_window_layers", 0, 4096, &mwl, 0))) return st;
        if ((st = read_layer_types(root, c, qwen3_pattern, mwl))) return st;
      } else if ((st = read_layer_types(root, c, NULL, 0))) {
        return st;
      }
      break;
    }
    case LRT_ARCH_GEMMA2:
    case LRT_ARCH_GEMMA3: {
      int g3 = c->arch == LRT_ARCH_GEMMA3;
      static const char *const gelu_tanh[] = {"gelu_pytorch_tanh", NULL};
      if ((st = require_str(root, "hidden_activation", gelu_tanh, "gelu_pytorch_tanh"))) return st;
      if ((st = require_off(root, "use_bidirectional_attention", "bidirectional attention"))) return st;
      c->norm_plus_one = c->post_norms = c->geglu = 1;
      c->embed_scale = (float)sqrt((double)c->dim); /* hidden_size ** 0.5, rounded to float */
      if (g3) c->qk_norm = LRT_QK_NORM_HEAD;
      c->attn_scalar = (double)c->head_dim;
      if ((st = get_num(root, "config.json", "query_pre_attn_scalar", 1e-6, 1e9, &c->attn_scalar, 0))) return st;
      if ((st = get_cap(root, "attn_logit_softcapping", &c->attn_softcap))) return st;
      if ((st = get_cap(root, "final_logit_softcapping", &c->final_softcap))) return st;
      if (!g3 && !lj_get(root, "attn_logit_softcapping")) c->attn_softcap = 50.0f; /* transformers' defaults */
      if (!g3 && !lj_get(root, "final_logit_softcapping")) c->final_softcap = 30.0f;
      if ((st = get_int(root, "sliding_window", 1, big, &c->sliding_window, 0))) return st;
      int64_t pattern = g3 ? 6 : 2;
      if ((st = get_int(root, "sliding_window_pattern", 1, 4096, &pattern, 0))) return st;
      if ((st = get_int(root, "_sliding_window_pattern", 1, 4096, &pattern, 0))) return st;
      if ((st = read_layer_types(root, c, c->sliding_window ? gemma_pattern : NULL, pattern))) return st;
      if (g3)
        for (int64_t i = 0; i < c->n_layers; i++)
          if (c->layer_kind[i] & LRT_LAYER_SLIDING) c->layer_kind[i] |= LRT_LAYER_LOCAL_ROPE;
      break;
    }
    case LRT_ARCH_SMOLLM3: {
      if ((st = get_bool(root, "use_sliding_window", &slide))) return st;
      if (slide) return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: use_sliding_window is not supported for smollm3");
      int64_t interval = 4;
      if ((st = get_int(root, "no_rope_layer_interval", 1, 4096, &interval, 0))) return st;
      const lj_value *nr = lj_get(root, "no_rope_layers");
      if (nr && nr->type != LJ_NULL) {
        if (nr->type != LJ_ARRAY || (int64_t)nr->count != c->n_layers)
          return lrt_err(LRT_ERR_FORMAT, "config.json: \"no_rope_layers\" must hold one 0/1 per layer (%lld)", (long long)c->n_layers);
        for (size_t i = 0; i < nr->count; i++) {
          const lj_value *e = &nr->items[i];
          if (e->type != LJ_NUMBER || !e->is_integer || (e->integer != 0 && e->integer != 1))
            return lrt_err(LRT_ERR_FORMAT, "config.json: no_rope_layers[%zu] must be 0 or 1 (1: the layer uses RoPE)", i);
          if (e->integer == 0) c->layer_kind[i] |= LRT_LAYER_NO_ROPE;
        }
      } else {
        for (int64_t i = 0; i < c->n_layers; i++)
          if ((i + 1) % interval == 0) c->layer_kind[i] |= LRT_LAYER_NO_ROPE;
      }
      if ((st = read_layer_types(root, c, NULL, 0))) return st;
      for (int64_t i = 0; i < c->n_layers; i++)
        if (c->layer_kind[i] & LRT_LAYER_SLIDING)
          return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: sliding_attention layers are not supported for smollm3");
      break;
    }
    case LRT_ARCH_OLMO2:
      c->qk_norm = LRT_QK_NORM_FULL;
      c->pre_norms = 0;
      c->post_norms = 1;
      break;
    case LRT_ARCH_PHI3: {
      c->fused_qkv = 1;
      if ((st = require_off(root, "lm_head_bias", "an LM head bias"))) return st;
      if ((st = get_int(root, "sliding_window", 1, big, &c->sliding_window, 0))) return st;
      for (int64_t i = 0; i < c->n_layers && c->sliding_window; i++) c->layer_kind[i] |= LRT_LAYER_SLIDING;
      break;
    }
    default:
      break;
  }
  /* scores times query_pre_attn_scalar ** -0.5 (Gemma) or head_dim ** -0.5, as transformers:
   * the double rounded to float once */
  c->attn_scale = (float)(1.0 / sqrt(c->attn_scalar > 0.0 ? c->attn_scalar : (double)c->head_dim));
  for (int64_t i = 0; i < c->n_layers; i++) c->any_sliding |= c->layer_kind[i] & LRT_LAYER_SLIDING;
  if (c->any_sliding && c->sliding_window <= 0)
    return lrt_err(LRT_ERR_FORMAT, "config.json: sliding_attention layers need a \"sliding_window\"");
  if (!c->any_sliding && c->arch != LRT_ARCH_MISTRAL) c->sliding_window = 0;
  return LRT_OK;
}

int32_t lrt_config_from_hf(const char *folder, int32_t flags, lrt_config *c, char *name,
                           size_t name_cap) {
  memset(c, 0, sizeof *c);
  c->bos = -1;
  c->pre_norms = 1;
  char path[4096];
  if (snprintf(path, sizeof path, "%s/config.json", folder) >= (int)sizeof path)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "model path is too long");
  char *text = NULL, *gen_text = NULL;
  size_t len = 0, gen_len = 0;
  int32_t st = lrt_read_file(path, CONFIG_MAX_BYTES, &text, &len);
  if (st == LRT_ERR_NOT_FOUND)
    return lrt_err(st, "%s has no config.json: a HuggingFace model folder needs config.json, "
                       "*.safetensors and tokenizer.json", folder);
  if (st) return st;
  /* generation_config.json: more eos ids (optional file) */
  if (snprintf(path, sizeof path, "%s/generation_config.json", folder) < (int)sizeof path && lrt_is_file(path) &&
      (st = lrt_read_file(path, CONFIG_MAX_BYTES, &gen_text, &gen_len))) {
    free(text);
    return st;
  }
  st = lrt_config_from_hf_json(text, len, gen_text, gen_len, flags, c, name, name_cap);
  free(text);
  free(gen_text);
  return st;
}

int32_t lrt_config_from_hf_json(const char *text, size_t len, const char *gen_text, size_t gen_len,
                                int32_t flags, lrt_config *c, char *name, size_t name_cap) {
  memset(c, 0, sizeof *c);
  if (name && name_cap) name[0] = '\0'; /* "" unless config.json names the model */
  c->bos = -1;
  c->pre_norms = 1;
  if (len > CONFIG_MAX_BYTES || gen_len > CONFIG_MAX_BYTES)
    return lrt_err(LRT_ERR_FORMAT, "config.json / generation_config.json is larger than %u bytes", (unsigned)CONFIG_MAX_BYTES);
  lj_doc *doc = NULL;
  int32_t st = lj_parse(text, len, "config.json", &doc);
  if (st) return st;
  const lj_value *root = lj_root(doc);
  if (root->type != LJ_OBJECT) {
    lj_free(doc);
    return lrt_err(LRT_ERR_FORMAT, "config.json: the top level must be a JSON object");
  }

  /* architecture: model_type, cross-checked with architectures[0] when present */
  const lj_value *mt = lj_get(root, "model_type");
  const lj_value *archs = lj_get(root, "architectures");
  const char *a = mt && mt->type == LJ_STRING ? mt->str : NULL;
  static const struct { const char *model_type, *cls, *name; lrt_arch arch; const char *const *keys; } ARCHS[] = {
      {"llama", "LlamaForCausalLM", "llama", LRT_ARCH_LLAMA, NULL},
      {"mistral", "MistralForCausalLM", "mistral", LRT_ARCH_MISTRAL, NULL},
      {"qwen2", "Qwen2ForCausalLM", "qwen2", LRT_ARCH_QWEN2, NULL},
      {"gpt2", "GPT2LMHeadModel", "gpt2", LRT_ARCH_GPT2, NULL},
      {"qwen3", "Qwen3ForCausalLM", "qwen3", LRT_ARCH_QWEN3, QWEN3_KEYS},
      {"gemma2", "Gemma2ForCausalLM", "gemma2", LRT_ARCH_GEMMA2, GEMMA_KEYS},
      {"gemma3_text", "Gemma3ForCausalLM", "gemma3", LRT_ARCH_GEMMA3, GEMMA_KEYS},
      {"smollm3", "SmolLM3ForCausalLM", "smollm3", LRT_ARCH_SMOLLM3, SMOLLM3_KEYS},
      {"olmo2", "Olmo2ForCausalLM", "olmo2", LRT_ARCH_OLMO2, OLMO2_KEYS},
      {"phi3", "Phi3ForCausalLM", "phi3", LRT_ARCH_PHI3, PHI3_KEYS}};
  enum { N_ARCHS = sizeof ARCHS / sizeof ARCHS[0] };
  int found = -1;
  for (int i = 0; i < N_ARCHS; i++)
    if (a && strcmp(a, ARCHS[i].model_type) == 0) found = i;
  if (archs && archs->type != LJ_NULL) {
    if (archs->type != LJ_ARRAY || archs->count < 1 || archs->items[0].type != LJ_STRING) {
      st = lrt_err(LRT_ERR_FORMAT, "config.json: \"architectures\" must be a list of class names");
      goto done;
    }
    const char *cls = archs->items[0].str;
    int by_cls = -1;
    for (int i = 0; i < N_ARCHS; i++)
      if (strcmp(cls, ARCHS[i].cls) == 0) by_cls = i;
    if (by_cls < 0) {
      st = lrt_err(LRT_ERR_UNSUPPORTED, "config.json: architecture \"%s\" is not supported; loomrt runs "
                   "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, Qwen3ForCausalLM, "
                   "Gemma2ForCausalLM, Gemma3ForCausalLM, SmolLM3ForCausalLM, Olmo2ForCausalLM and Phi3ForCausalLM", cls);
      goto done;
    }
    if (found >= 0 && found != by_cls) {
      st = lrt_err(LRT_ERR_FORMAT, "config.json: model_type \"%s\" contradicts architectures [\"%s\"]", a, cls);
      goto done;
    }
    found = by_cls;
  }
  if (found < 0) {
    st = lrt_err(a ? LRT_ERR_UNSUPPORTED : LRT_ERR_FORMAT,
                 a ? "config.json: model_type \"%s\" is not supported; loomrt runs llama, mistral, qwen2, gpt2, qwen3, "
                     "gemma2, gemma3_text, smollm3, olmo2 and phi3"
                   : "config.json: neither \"model_type\" nor \"architectures\" says what the model is%s",
                 a ? a : "");
    goto done;
  }
  c->arch = ARCHS[found].arch;
  snprintf(c->arch_name, sizeof c->arch_name, "%s", ARCHS[found].name);

  if (ARCHS[found].keys) { /* the newer families: llama's keys, their own, then their features */
    if ((st = check_unknown2(root, LLAMA_KEYS, ARCHS[found].keys, flags, c->arch_name))) goto done;
    if (c->arch == LRT_ARCH_PHI3 && lj_get(root, "attention_bias") && lj_get(root, "attention_bias")->type == LJ_BOOL &&
        lj_get(root, "attention_bias")->boolean) {
      st = lrt_err(LRT_ERR_UNSUPPORTED, "config.json: attention_bias is not supported for phi3");
      goto done;
    }
    if ((st = parse_llama_like(root, c))) goto done;
    if ((st = parse_family(root, c))) goto done;
  } else if (c->arch == LRT_ARCH_GPT2) {
    if ((st = check_unknown(root, GPT2_KEYS, flags, "gpt2"))) goto done;
    if ((st = parse_gpt2(root, c))) goto done;
  } else {
    if ((st = check_unknown(root, LLAMA_KEYS, flags, c->arch_name))) goto done;
    if ((st = parse_llama_like(root, c))) goto done;
    if (c->arch == LRT_ARCH_QWEN2) {
      c->qkv_bias = 1;
      c->o_bias = 0;
      if ((st = require_off(root, "use_sliding_window", "sliding-window attention for qwen2"))) goto done;
      const lj_value *lt = lj_get(root, "layer_types");
      if (lt && lt->type == LJ_ARRAY)
        for (size_t i = 0; i < lt->count; i++)
          if (lt->items[i].type != LJ_STRING || strcmp(lt->items[i].str, "full_attention") != 0) {
            st = lrt_err(LRT_ERR_UNSUPPORTED, "config.json: layer_types other than \"full_attention\" are not supported");
            goto done;
          }
    } else {
      if (c->arch == LRT_ARCH_MISTRAL) {
        if ((st = get_int(root, "sliding_window", 1, (int64_t)1 << 40, &c->sliding_window, 0))) goto done;
      } else if (lj_get(root, "sliding_window") && lj_get(root, "sliding_window")->type != LJ_NULL) {
        st = lrt_err(LRT_ERR_UNSUPPORTED, "config.json: sliding_window is not supported for llama");
        goto done;
      }
      if (lj_get(root, "layer_types")) {
        st = lrt_err(LRT_ERR_UNSUPPORTED, "config.json: layer_types is not supported for %s", c->arch_name);
        goto done;
      }
    }
  }
  /* tie_word_embeddings: the transformers default is true for gpt2, gemma2, gemma3 and smollm3,
   * false for the others */
  int tied = c->arch == LRT_ARCH_GPT2 || c->arch == LRT_ARCH_GEMMA2 || c->arch == LRT_ARCH_GEMMA3 ||
             c->arch == LRT_ARCH_SMOLLM3;
  if ((st = get_bool(root, "tie_word_embeddings", &tied))) goto done;
  c->tied = tied;
  int64_t bos = -1;
  if ((st = get_int(root, "bos_token_id", 0, INT32_MAX, &bos, 0))) goto done;
  c->bos = (int32_t)bos;
  if ((st = add_eos(c, lj_get(root, "eos_token_id"), "config.json"))) goto done;
  const lj_value *nm = lj_get(root, "_name_or_path");
  if (nm && nm->type == LJ_STRING) snprintf(name, name_cap, "%s", nm->str);
done:
  lj_free(doc);
  if (st) return st;

  /* generation_config.json: more eos ids (optional) */
  if (!gen_text) return LRT_OK;
  st = lj_parse(gen_text, gen_len, "generation_config.json", &doc);
  if (st) return st;
  root = lj_root(doc);
  if (root->type != LJ_OBJECT)
    st = lrt_err(LRT_ERR_FORMAT, "generation_config.json: the top level must be a JSON object");
  else
    st = add_eos(c, lj_get(root, "eos_token_id"), "generation_config.json");
  lj_free(doc);
  return st;
}

/* ---- GGUF ------------------------------------------------------------------------------ */

static int32_t gguf_int(const lrt_gguf_file *g, const char *arch, const char *suffix,
                        int64_t lo, int64_t hi, int64_t *out, int required) {
  char key[128];
  snprintf(key, sizeof key, "%s.%s", arch, suffix);
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) {
    if (required) return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: required key %s is missing", key);
    return LRT_OK;
  }
  int64_t v;
  if (kv->count != 1 || kv->type == LRT_META_ARRAY || lrt_gguf_kv_int(kv, 0, &v) != LRT_OK)
    return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: %s must be an integer", key);
  if (v < lo || v > hi)
    return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: %s = %lld is out of range", key, (long long)v);
  *out = v;
  return LRT_OK;
}

static int32_t gguf_float(const lrt_gguf_file *g, const char *key, double lo, double hi,
                          double *out, int required) {
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) {
    if (required) return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: required key %s is missing", key);
    return LRT_OK;
  }
  double v;
  if (kv->count != 1 || kv->type == LRT_META_ARRAY || lrt_gguf_kv_float(kv, 0, &v) != LRT_OK)
    return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: %s must be a number", key);
  if (!(v >= lo && v <= hi))
    return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: %s = %g is out of range", key, v);
  *out = v;
  return LRT_OK;
}

/* The newer families' GGUF metadata, with llama.cpp's keys and its defaults where a key is
 * absent (llama.cpp's converters write what llama.cpp reads; what it hard-codes per
 * architecture is hard-coded here in the same way). */
static int32_t gguf_family(const lrt_gguf_file *g, const char *arch, lrt_config *c) {
  int32_t st;
  char key[128];
  c->pre_norms = 1;
  int64_t pattern = 0; /* sliding-window pattern: layer l slides when l % pattern < pattern - 1 */
  switch (c->arch) {
    case LRT_ARCH_QWEN3: c->qk_norm = LRT_QK_NORM_HEAD; break;
    case LRT_ARCH_OLMO2: c->qk_norm = LRT_QK_NORM_FULL; c->pre_norms = 0; c->post_norms = 1; break;
    case LRT_ARCH_SMOLLM3: /* llama.cpp: every 4th layer has no RoPE */
      for (int64_t i = 0; i < c->n_layers; i++)
        if ((i + 1) % 4 == 0) c->layer_kind[i] |= LRT_LAYER_NO_ROPE;
      break;
    case LRT_ARCH_GEMMA2:
    case LRT_ARCH_GEMMA3: {
      int g3 = c->arch == LRT_ARCH_GEMMA3;
      c->post_norms = c->geglu = 1; /* norm weights are stored as 1 + w: norm_plus_one stays 0 */
      c->embed_scale = (float)sqrt((double)c->dim);
      if (g3) c->qk_norm = LRT_QK_NORM_HEAD;
      double cap = 0.0;
      snprintf(key, sizeof key, "%s.attn_logit_softcapping", arch);
      if ((st = gguf_float(g, key, 0.0, 1e9, &cap, 0))) return st;
      c->attn_softcap = (float)cap;
      cap = 0.0;
      snprintf(key, sizeof key, "%s.final_logit_softcapping", arch);
      if ((st = gguf_float(g, key, 0.0, 1e9, &cap, 0))) return st;
      c->final_softcap = (float)cap;
      if ((st = gguf_int(g, arch, "attention.sliding_window", 0, (int64_t)1 << 40, &c->sliding_window, 0))) return st;
      pattern = g3 ? 6 : 2;
      if (g3) {
        c->rope_local_theta = 10000.0;
        snprintf(key, sizeof key, "%s.rope.freq_base_swa", arch);
        if ((st = gguf_float(g, key, 1e-6, 1e12, &c->rope_local_theta, 0))) return st;
      }
      /* llama.cpp: 1/sqrt(head_dim), except the 27B models: 1/sqrt(hidden / heads) */
      c->attn_scalar = (double)c->head_dim;
      if (c->n_layers == (g3 ? 62 : 46)) c->attn_scalar = (double)(c->dim / c->n_heads);
      break;
    }
    case LRT_ARCH_PHI3: {
      c->fused_qkv = 1;
      if ((st = gguf_int(g, arch, "attention.sliding_window", 0, (int64_t)1 << 40, &c->sliding_window, 0))) return st;
      pattern = 1;
      if (lrt_gguf_find_tensor(g, "rope_factors_long.weight")) {
        c->rope_longrope = 1;
        double orig = 0.0, attn = 1.0;
        snprintf(key, sizeof key, "%s.rope.scaling.original_context_length", arch);
        if ((st = gguf_float(g, key, 1.0, 1e12, &orig, 1))) return st;
        c->rope_orig_ctx = orig;
        snprintf(key, sizeof key, "%s.rope.scaling.attn_factor", arch);
        if ((st = gguf_float(g, key, 1e-6, 1e6, &attn, 0))) return st;
        c->rope_attn_factor = attn; /* the factors themselves are tensors (model.c) */
      }
      break;
    }
    default: break;
  }
  if (pattern && c->sliding_window > 0) {
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", arch);
    const lrt_gguf_kv *pk = lrt_gguf_find(g, key);
    if (pk && pk->type == LRT_META_ARRAY) { /* one flag per layer: 1 = sliding */
      if ((int64_t)pk->count != c->n_layers)
        return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: %s must hold one value per layer", key);
      for (int64_t i = 0; i < c->n_layers; i++) {
        int64_t v;
        if (lrt_gguf_kv_int(pk, (uint64_t)i, &v) != LRT_OK) return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: %s must hold integers or booleans", key);
        if (v) c->layer_kind[i] |= LRT_LAYER_SLIDING;
      }
    } else {
      if ((st = gguf_int(g, arch, "attention.sliding_window_pattern", 1, 4096, &pattern, 0))) return st;
      for (int64_t i = 0; i < c->n_layers; i++)
        if (pattern == 1 || i % pattern < pattern - 1) c->layer_kind[i] |= LRT_LAYER_SLIDING;
    }
  }
  for (int64_t i = 0; i < c->n_layers; i++) {
    if ((c->layer_kind[i] & LRT_LAYER_SLIDING) && c->arch == LRT_ARCH_GEMMA3) c->layer_kind[i] |= LRT_LAYER_LOCAL_ROPE;
    c->any_sliding |= c->layer_kind[i] & LRT_LAYER_SLIDING;
  }
  if (!c->any_sliding) c->sliding_window = 0;
  double scale = 0.0;
  snprintf(key, sizeof key, "%s.attention.scale", arch);
  if ((st = gguf_float(g, key, 1e-9, 1e9, &scale, 0))) return st;
  c->attn_scale = scale > 0.0 ? (float)scale : (float)(1.0 / sqrt(c->attn_scalar > 0.0 ? c->attn_scalar : (double)c->head_dim));
  if (scale > 0.0) c->attn_scalar = 1.0 / (scale * scale); /* reported only (loomrt info) */
  return LRT_OK;
}

int32_t lrt_config_from_gguf(const lrt_gguf_file *g, lrt_config *c) {
  memset(c, 0, sizeof *c);
  c->bos = -1;
  c->pre_norms = 1;
  const lrt_gguf_kv *ak = lrt_gguf_find(g, "general.architecture");
  if (!ak || ak->type != LRT_META_STRING)
    return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: general.architecture is missing or not a string");
  char arch[32];
  if (ak->str_lens[0] >= sizeof arch)
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF architecture name is too long");
  memcpy(arch, ak->strs[0], ak->str_lens[0]);
  arch[ak->str_lens[0]] = 0;
  static const struct { const char *name; lrt_arch arch; } GARCHS[] = {
      {"llama", LRT_ARCH_LLAMA}, {"qwen2", LRT_ARCH_QWEN2}, {"qwen3", LRT_ARCH_QWEN3},
      {"gemma2", LRT_ARCH_GEMMA2}, {"gemma3", LRT_ARCH_GEMMA3}, {"smollm3", LRT_ARCH_SMOLLM3},
      {"olmo2", LRT_ARCH_OLMO2}, {"phi3", LRT_ARCH_PHI3}};
  int found = -1;
  for (size_t i = 0; i < sizeof GARCHS / sizeof GARCHS[0]; i++)
    if (strcmp(arch, GARCHS[i].name) == 0) found = (int)i;
  if (found < 0)
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF architecture \"%s\" is not supported (loomrt reads llama, qwen2, qwen3, "
                   "gemma2, gemma3, smollm3, olmo2 and phi3 GGUF files)", arch);
  c->arch = GARCHS[found].arch;
  int ext = c->arch >= LRT_ARCH_QWEN3;
  snprintf(c->arch_name, sizeof c->arch_name, "%s", arch);
  int32_t st;
  if ((st = gguf_int(g, arch, "embedding_length", 1, 1 << 20, &c->dim, 1))) return st;
  if ((st = gguf_int(g, arch, "block_count", 1, 4096, &c->n_layers, 1))) return st;
  if ((st = gguf_int(g, arch, "feed_forward_length", 1, 1 << 22, &c->ffn, 1))) return st;
  if ((st = gguf_int(g, arch, "attention.head_count", 1, 4096, &c->n_heads, 1))) return st;
  c->n_kv_heads = c->n_heads;
  if ((st = gguf_int(g, arch, "attention.head_count_kv", 1, 4096, &c->n_kv_heads, 0))) return st;
  char key[128];
  snprintf(key, sizeof key, "%s.attention.key_length", arch);
  if (c->dim % c->n_heads && !(ext && lrt_gguf_find(g, key)))
    return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: embedding_length is not divisible by head_count");
  if (c->n_heads % c->n_kv_heads) return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: head_count is not a multiple of head_count_kv");
  c->head_dim = c->dim / c->n_heads;
  if ((st = gguf_int(g, arch, "attention.key_length", 2, 1 << 16, &c->head_dim, 0))) return st;
  int64_t vlen = c->head_dim;
  if (ext && (st = gguf_int(g, arch, "attention.value_length", 2, 1 << 16, &vlen, 0))) return st;
  if (vlen != c->head_dim)
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF metadata: value_length %lld != key_length %lld is not supported",
                   (long long)vlen, (long long)c->head_dim);
  int64_t rope_dim = c->head_dim;
  if ((st = gguf_int(g, arch, "rope.dimension_count", 2, 1 << 16, &rope_dim, 0))) return st;
  if (c->head_dim % 2 || rope_dim % 2 || rope_dim > c->head_dim || (rope_dim != c->head_dim && c->arch != LRT_ARCH_PHI3))
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF metadata: partial rotary embeddings (rope.dimension_count %lld != head dim %lld) are not supported",
                   (long long)rope_dim, (long long)c->head_dim);
  c->rotary_dim = rope_dim;
  c->ctx = 2048;
  if ((st = gguf_int(g, arch, "context_length", 1, (int64_t)1 << 40, &c->ctx, 0))) return st;
  double eps = 1e-5;
  snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
  if ((st = gguf_float(g, key, 0.0, 1.0, &eps, 1))) return st;
  c->norm_eps = (float)eps;
  c->rope_theta = 10000.0;
  snprintf(key, sizeof key, "%s.rope.freq_base", arch);
  if ((st = gguf_float(g, key, 1e-6, 1e12, &c->rope_theta, 0))) return st;
  snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
  const lrt_gguf_kv *sk = lrt_gguf_find(g, key);
  int scaling_none = !sk || (sk->type == LRT_META_STRING && sk->str_lens[0] == 4 && memcmp(sk->strs[0], "none", 4) == 0);
  int scaling_linear = sk && sk->type == LRT_META_STRING && sk->str_lens[0] == 6 && memcmp(sk->strs[0], "linear", 6) == 0;
  if (ext && scaling_linear) {
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    if ((st = gguf_float(g, key, 1e-6, 1e6, &c->rope_linear, 1))) return st;
    if (c->rope_linear == 1.0) c->rope_linear = 0.0;
  } else if (!scaling_none && !(c->arch == LRT_ARCH_PHI3 && lrt_gguf_find_tensor(g, "rope_factors_long.weight"))) {
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF metadata: %s is set; loomrt does not implement that rope scaling", key);
  }
  if (c->arch == LRT_ARCH_QWEN2) c->qkv_bias = 1;
  if (ext) {
    if ((st = gguf_family(g, arch, c))) return st;
  }
  int64_t v;
  if (gguf_int(g, "tokenizer", "ggml.bos_token_id", 0, INT32_MAX, &v, 0) == LRT_OK && lrt_gguf_find(g, "tokenizer.ggml.bos_token_id"))
    c->bos = (int32_t)v;
  if ((st = gguf_int(g, "tokenizer", "ggml.eos_token_id", 0, INT32_MAX, &v, 0))) return st;
  if (lrt_gguf_find(g, "tokenizer.ggml.eos_token_id")) c->eos[c->n_eos++] = (int32_t)v;
  if (lrt_gguf_find(g, "tokenizer.ggml.eot_token_id") &&
      gguf_int(g, "tokenizer", "ggml.eot_token_id", 0, INT32_MAX, &v, 0) == LRT_OK &&
      (c->n_eos == 0 || c->eos[0] != (int32_t)v))
    c->eos[c->n_eos++] = (int32_t)v;
  return LRT_OK;
}
