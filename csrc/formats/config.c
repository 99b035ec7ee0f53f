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

/* rope_parameters (transformers >= 5) or rope_theta + rope_scaling (older). */
static int32_t read_rope(const lj_value *root, lrt_config *cfg) {
  int32_t st;
  const lj_value *rp = lj_get(root, "rope_parameters");
  const lj_value *rs = lj_get(root, "rope_scaling");
  cfg->rope_theta = 10000.0;
  if ((st = get_num(root, "config.json", "rope_theta", 1e-6, 1e12, &cfg->rope_theta, 0))) return st;
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
  const lj_value *type = lj_get(params, "rope_type");
  if (!type) type = lj_get(params, "type");
  const char *t = type && type->type == LJ_STRING ? type->str : "default";
  if (type && type->type != LJ_STRING)
    return lrt_err(LRT_ERR_FORMAT, "config.json: rope type must be a string");
  static const char *const known_default[] = {"rope_type", "type", "rope_theta", NULL};
  static const char *const known_llama3[] = {"rope_type", "type", "rope_theta", "factor",
                                             "low_freq_factor", "high_freq_factor",
                                             "original_max_position_embeddings", NULL};
  const char *const *known;
  if (strcmp(t, "default") == 0) {
    known = known_default;
  } else if (strcmp(t, "llama3") == 0) {
    known = known_llama3;
    cfg->rope_llama3 = 1;
    const char *w = "config.json rope scaling";
    if ((st = get_num(params, w, "factor", 1e-6, 1e6, &cfg->rope_factor, 1))) return st;
    if ((st = get_num(params, w, "low_freq_factor", 1e-6, 1e6, &cfg->rope_low_freq, 1))) return st;
    if ((st = get_num(params, w, "high_freq_factor", 1e-6, 1e6, &cfg->rope_high_freq, 1))) return st;
    if ((st = get_num(params, w, "original_max_position_embeddings", 1, 1e9, &cfg->rope_orig_ctx, 1))) return st;
    if (!(cfg->rope_high_freq > cfg->rope_low_freq))
      return lrt_err(LRT_ERR_FORMAT, "config.json: llama3 rope needs high_freq_factor > low_freq_factor");
  } else {
    return lrt_err(LRT_ERR_UNSUPPORTED,
                   "config.json: rope type \"%s\" is not supported (loomrt implements default and llama3)", t);
  }
  for (size_t i = 0; i < params->count; i++)
    if (!in_list(params->members[i].key, known))
      return lrt_err(LRT_ERR_UNSUPPORTED, "config.json: rope key \"%s\" is not understood by loomrt; it changes positional encoding",
                     params->members[i].key);
  return LRT_OK;
}

static int32_t check_unknown(const lj_value *root, const char *const *read, int32_t flags,
                             const char *arch) {
  if (flags & LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS) return LRT_OK;
  for (size_t i = 0; i < root->count; i++) {
    const char *k = root->members[i].key;
    if (strlen(k) != root->members[i].key_len)
      return lrt_err(LRT_ERR_FORMAT, "config.json: a key contains a NUL character (\"%s\\u0000...\")", k);
    if (!in_list(k, read) && !in_list(k, INERT_KEYS))
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
  if ((st = require_str(root, "hidden_act", silu, "silu"))) return st;
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

int32_t lrt_config_from_hf(const char *folder, int32_t flags, lrt_config *c, char *name,
                           size_t name_cap) {
  memset(c, 0, sizeof *c);
  c->bos = -1;
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
  static const struct { const char *model_type, *cls; lrt_arch arch; } ARCHS[] = {
      {"llama", "LlamaForCausalLM", LRT_ARCH_LLAMA},
      {"mistral", "MistralForCausalLM", LRT_ARCH_MISTRAL},
      {"qwen2", "Qwen2ForCausalLM", LRT_ARCH_QWEN2},
      {"gpt2", "GPT2LMHeadModel", LRT_ARCH_GPT2}};
  int found = -1;
  for (int i = 0; i < 4; i++)
    if (a && strcmp(a, ARCHS[i].model_type) == 0) found = i;
  if (archs && archs->type != LJ_NULL) {
    if (archs->type != LJ_ARRAY || archs->count < 1 || archs->items[0].type != LJ_STRING) {
      st = lrt_err(LRT_ERR_FORMAT, "config.json: \"architectures\" must be a list of class names");
      goto done;
    }
    const char *cls = archs->items[0].str;
    int by_cls = -1;
    for (int i = 0; i < 4; i++)
      if (strcmp(cls, ARCHS[i].cls) == 0) by_cls = i;
    if (by_cls < 0) {
      st = lrt_err(LRT_ERR_UNSUPPORTED, "config.json: architecture \"%s\" is not supported; loomrt runs "
                   "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and GPT2LMHeadModel", cls);
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
                 a ? "config.json: model_type \"%s\" is not supported; loomrt runs llama, mistral, qwen2 and gpt2"
                   : "config.json: neither \"model_type\" nor \"architectures\" says what the model is%s",
                 a ? a : "");
    goto done;
  }
  c->arch = ARCHS[found].arch;
  snprintf(c->arch_name, sizeof c->arch_name, "%s", ARCHS[found].model_type);

  if (c->arch == LRT_ARCH_GPT2) {
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
  /* tie_word_embeddings: the transformers default is true for gpt2 and false for the others */
  int tied = c->arch == LRT_ARCH_GPT2;
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

int32_t lrt_config_from_gguf(const lrt_gguf_file *g, lrt_config *c) {
  memset(c, 0, sizeof *c);
  c->bos = -1;
  const lrt_gguf_kv *ak = lrt_gguf_find(g, "general.architecture");
  if (!ak || ak->type != LRT_META_STRING)
    return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: general.architecture is missing or not a string");
  char arch[32];
  if (ak->str_lens[0] >= sizeof arch)
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF architecture name is too long");
  memcpy(arch, ak->strs[0], ak->str_lens[0]);
  arch[ak->str_lens[0]] = 0;
  if (strcmp(arch, "llama") == 0) c->arch = LRT_ARCH_LLAMA;
  else if (strcmp(arch, "qwen2") == 0) c->arch = LRT_ARCH_QWEN2;
  else
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF architecture \"%s\" is not supported (loomrt reads llama and qwen2 GGUF files)", arch);
  snprintf(c->arch_name, sizeof c->arch_name, "%s", arch);
  int32_t st;
  if ((st = gguf_int(g, arch, "embedding_length", 1, 1 << 20, &c->dim, 1))) return st;
  if ((st = gguf_int(g, arch, "block_count", 1, 4096, &c->n_layers, 1))) return st;
  if ((st = gguf_int(g, arch, "feed_forward_length", 1, 1 << 22, &c->ffn, 1))) return st;
  if ((st = gguf_int(g, arch, "attention.head_count", 1, 4096, &c->n_heads, 1))) return st;
  c->n_kv_heads = c->n_heads;
  if ((st = gguf_int(g, arch, "attention.head_count_kv", 1, 4096, &c->n_kv_heads, 0))) return st;
  if (c->dim % c->n_heads) return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: embedding_length is not divisible by head_count");
  if (c->n_heads % c->n_kv_heads) return lrt_err(LRT_ERR_FORMAT, "GGUF metadata: head_count is not a multiple of head_count_kv");
  c->head_dim = c->dim / c->n_heads;
  if ((st = gguf_int(g, arch, "attention.key_length", 2, 1 << 16, &c->head_dim, 0))) return st;
  int64_t rope_dim = c->head_dim;
  if ((st = gguf_int(g, arch, "rope.dimension_count", 2, 1 << 16, &rope_dim, 0))) return st;
  if (rope_dim != c->head_dim || c->head_dim % 2)
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF metadata: partial rotary embeddings (rope.dimension_count %lld != head dim %lld) are not supported",
                   (long long)rope_dim, (long long)c->head_dim);
  c->ctx = 2048;
  if ((st = gguf_int(g, arch, "context_length", 1, (int64_t)1 << 40, &c->ctx, 0))) return st;
  char key[128];
  double eps = 1e-5;
  snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
  if ((st = gguf_float(g, key, 0.0, 1.0, &eps, 1))) return st;
  c->norm_eps = (float)eps;
  c->rope_theta = 10000.0;
  snprintf(key, sizeof key, "%s.rope.freq_base", arch);
  if ((st = gguf_float(g, key, 1e-6, 1e12, &c->rope_theta, 0))) return st;
  snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
  const lrt_gguf_kv *sk = lrt_gguf_find(g, key);
  if (sk && !(sk->type == LRT_META_STRING && sk->str_lens[0] == 4 && memcmp(sk->strs[0], "none", 4) == 0))
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF metadata: %s is set; loomrt does not implement that rope scaling", key);
  if (c->arch == LRT_ARCH_QWEN2) c->qkv_bias = 1;
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
