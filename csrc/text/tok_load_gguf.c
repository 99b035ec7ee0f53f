/* tok_load_gguf.c -- lrt_tok_from_gguf: a tokenizer from GGUF tokenizer.ggml.* metadata.
 *
 * GGUF metadata (tokenizer.ggml.*) is turned into the pipeline llama.cpp runs for the file:
 * byte-level BPE with the pre-tokenizer's split expressions for model "gpt2", and for model
 * "llama" llama.cpp's SentencePiece merges by score (tok_bpe.c) with byte fallback and the
 * SentencePiece normalizer/decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/formats.h" /* JSON, GGUF metadata */
#include "tok_internal.h"

/* ---- GGUF ------------------------------------------------------------------------------------- */

/* Texts llama.cpp treats as control / user-defined whatever their declared type
 * (llama.cpp's llama-vocab.cpp lists them by text). */
static const char *const k_forced_control[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|eom_id|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "</s>",
    "<eos>", "<turn|>", "<|tool_response>", "<end_of_utterance>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>",
    "<|prefix|>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>",
    "<|suffix|>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>",
    "<|middle|>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>", NULL};
static const char *const k_forced_user[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

static int in_list(const char *const *list, const char *s, size_t n) {
  for (int i = 0; list[i]; i++)
    if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0) return 1;
  return 0;
}

/* tokenizer.ggml.pre names, grouped by the split expressions llama.cpp uses for them */
static const char *const k_gpt2_names[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                                          "a.x-4.0", "mellum", "modern-bert", "exaone4", "mpt", "olmo", "jais", "trillion",
                                          "granite-docling", NULL};
static const char *const k_llama3_names[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                            "midm-2.0", "lfm2", "jina-v5-nano", NULL};
static const char *const k_dbrx_names[] = {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe", NULL};
static const char *const k_qwen2_names[] = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2",
                                           "hunyuan", "solar-open", "grok-2", NULL};
static const char *const k_starcoder_names[] = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
                                               "minerva-7b", "mellum2", NULL};

static int32_t gfail(const char *key, const char *problem) {
  return lrt_err(LRT_ERR_FORMAT, "GGUF metadata '%s': %s; re-convert the model with a current llama.cpp", key, problem);
}

static int32_t g_str(const lrt_gguf_file *g, const char *key, const char **s, size_t *n) {
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) { *s = NULL; *n = 0; return LRT_OK; }
  if (kv->type != LRT_META_STRING) return gfail(key, "expected a string");
  *s = kv->strs[0];
  *n = (size_t)kv->str_lens[0];
  return LRT_OK;
}

static int32_t g_bool(const lrt_gguf_file *g, const char *key, int *out) {
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) return LRT_OK; /* keep the default */
  if (kv->type != LRT_META_BOOL) return gfail(key, "expected a bool");
  int64_t v;
  if (lrt_gguf_kv_int(kv, 0, &v)) return gfail(key, "bad bool");
  *out = v != 0;
  return LRT_OK;
}

static int32_t g_id(const lrt_gguf_file *g, const char *key, int64_t n_tokens, int32_t *out) {
  const lrt_gguf_kv *kv = lrt_gguf_find(g, key);
  if (!kv) return LRT_OK;
  int64_t v;
  if (kv->type == LRT_META_ARRAY || kv->type == LRT_META_STRING || kv->type == LRT_META_BOOL ||
      kv->type == LRT_META_FLOAT32 || kv->type == LRT_META_FLOAT64 || lrt_gguf_kv_int(kv, 0, &v))
    return gfail(key, "expected an integer token id");
  if (v < 0 || v >= n_tokens) return gfail(key, "token id is outside the vocabulary");
  *out = (int32_t)v;
  return LRT_OK;
}

int32_t lrt_tok_from_gguf(const lrt_gguf_file *g, lrt_tokenizer **out) {
  *out = NULL;
  const char *model;
  size_t model_len;
  int32_t st = g_str(g, "tokenizer.ggml.model", &model, &model_len);
  if (st) return st;
  const lrt_gguf_kv *tk = lrt_gguf_find(g, "tokenizer.ggml.tokens");
  if (!model && !tk) return lrt_err(LRT_ERR_NOT_FOUND, "the GGUF file has no tokenizer metadata");
  if (!model) return gfail("tokenizer.ggml.model", "missing");
  if (!tk) return gfail("tokenizer.ggml.tokens", "missing");
  if (tk->type != LRT_META_ARRAY || tk->elem_type != LRT_META_STRING || tk->count < 1)
    return gfail("tokenizer.ggml.tokens", "expected a non-empty array of strings");
  if (tk->count >= TOK_MAX_VOCAB) return gfail("tokenizer.ggml.tokens", "too many tokens");
  int is_gpt2 = model_len == 4 && memcmp(model, "gpt2", 4) == 0;
  int is_llama = model_len == 5 && memcmp(model, "llama", 5) == 0;
  if (!is_gpt2 && !is_llama)
    return lrt_err(LRT_ERR_UNSUPPORTED, "GGUF tokenizer model '%.40s' is not supported (supported: 'gpt2', 'llama')",
                   model);
  int64_t n = (int64_t)tk->count;
  lrt_tokenizer *t = (lrt_tokenizer *)calloc(1, sizeof *t);
  builder b;
  memset(&b, 0, sizeof b);
  b.what = "GGUF metadata";
  char *names = NULL; /* "[EMPTY_i]" replacements */
  int32_t *types = NULL;
  double *scores = NULL;
  if (!t) return lrt_tok_oom();
  b.vocab = (vocab_entry *)calloc((size_t)n, sizeof(vocab_entry));
  types = (int32_t *)malloc((size_t)n * sizeof(int32_t));
  names = (char *)malloc((size_t)n * 20);
  if (!b.vocab || !types || !names) { st = lrt_tok_oom(); goto done; }
  for (int64_t i = 0; i < n; i++) {
    b.vocab[i].id = (int32_t)i;
    if (tk->str_lens[i] == 0) {
      int l = snprintf(names + i * 20, 20, "[EMPTY_%lld]", (long long)i);
      b.vocab[i].s = names + i * 20;
      b.vocab[i].n = (size_t)l;
    } else {
      b.vocab[i].s = tk->strs[i];
      b.vocab[i].n = (size_t)tk->str_lens[i];
    }
    types[i] = 1;
  }
  b.n_vocab = (size_t)n;
  {
    const lrt_gguf_kv *tt = lrt_gguf_find(g, "tokenizer.ggml.token_type");
    if (tt) {
      if (tt->type != LRT_META_ARRAY || tt->elem_type == LRT_META_STRING || tt->elem_type == LRT_META_BOOL ||
          tt->elem_type == LRT_META_FLOAT32 || tt->elem_type == LRT_META_FLOAT64)
        { st = gfail("tokenizer.ggml.token_type", "expected an array of integers"); goto done; }
      if ((int64_t)tt->count < n) { st = gfail("tokenizer.ggml.token_type", "has fewer entries than tokenizer.ggml.tokens"); goto done; }
      for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (lrt_gguf_kv_int(tt, (uint64_t)i, &v)) { st = gfail("tokenizer.ggml.token_type", "bad element"); goto done; }
        types[i] = (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v);
      }
    }
  }
  /* added tokens: user-defined then special (control / unknown / forced), raw text */
  b.added = (added_entry *)calloc((size_t)n + 1, sizeof(added_entry));
  if (!b.added) { st = lrt_tok_oom(); goto done; }
  for (int pass = 0; pass < 2; pass++)
    for (int64_t i = 0; i < n; i++) {
      const char *s = b.vocab[i].s;
      size_t l = b.vocab[i].n;
      int user = 0, special = 0;
      if (in_list(k_forced_user, s, l)) user = 1;
      else if (types[i] == 3 || types[i] == 2 || in_list(k_forced_control, s, l)) special = 1;
      else if (types[i] == 4) user = 1;
      if ((pass == 0 && user) || (pass == 1 && special)) {
        added_entry *e = &b.added[b.n_added++];
        e->s = s; e->n = l; e->special = (uint8_t)special; e->normalized = 0;
      }
    }
  int add_bos = 0, add_eos = 0;
  int32_t bos = -1, eos = -1;
  size_t post_cap = 0;
  if (is_gpt2) {
    const lrt_gguf_kv *mk = lrt_gguf_find(g, "tokenizer.ggml.merges");
    if (!mk) { st = gfail("tokenizer.ggml.merges", "missing"); goto done; }
    if (mk->type != LRT_META_ARRAY || mk->elem_type != LRT_META_STRING) { st = gfail("tokenizer.ggml.merges", "expected an array of strings"); goto done; }
    b.merges = (merge_entry *)calloc(mk->count + 1, sizeof(merge_entry));
    if (!b.merges) { st = lrt_tok_oom(); goto done; }
    for (uint64_t i = 0; i < mk->count; i++) {
      const char *s = mk->strs[i];
      size_t l = (size_t)mk->str_lens[i];
      const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
      if (!sp) { st = lrt_err(LRT_ERR_FORMAT, "GGUF metadata 'tokenizer.ggml.merges': entry %llu is not of the form 'left right'", (unsigned long long)i); goto done; }
      merge_entry *me = &b.merges[b.n_merges++];
      me->a = s; me->na = (size_t)(sp - s);
      me->b = sp + 1; me->nb = l - me->na - 1;
    }
    b.merges_keep_first = 1;
    b.unk_drop = 1; /* byte symbols missing from the vocabulary block merges, then vanish */
    const char *pre;
    size_t pre_len;
    if ((st = g_str(g, "tokenizer.ggml.pre", &pre, &pre_len))) goto done;
    char pname[64];
    if (!pre) snprintf(pname, sizeof pname, "default");
    else snprintf(pname, sizeof pname, "%.*s", (int)(pre_len < 63 ? pre_len : 63), pre);
    int pats[4] = {0}, np = 0;
    if (strcmp(pname, "default") == 0) {
      pats[np++] = PAT_PUNCT; pats[np++] = PAT_GPT2; pats[np++] = PAT_NPLUS; pats[np++] = PAT_DIGIT3;
    } else if (strcmp(pname, "falcon") == 0) {
      pats[np++] = PAT_PUNCT_TICK; pats[np++] = PAT_GPT2; pats[np++] = PAT_DIGIT3;
    } else if (in_list(k_gpt2_names, pname, strlen(pname))) { pats[np++] = PAT_GPT2; }
    else if (in_list(k_llama3_names, pname, strlen(pname))) { pats[np++] = PAT_LLAMA3; t->ignore_merges = 1; add_bos = 1; }
    else if (in_list(k_dbrx_names, pname, strlen(pname))) { pats[np++] = PAT_LLAMA3; }
    else if (in_list(k_qwen2_names, pname, strlen(pname))) { pats[np++] = PAT_QWEN2; }
    else if (in_list(k_starcoder_names, pname, strlen(pname))) { pats[np++] = PAT_N1; pats[np++] = PAT_GPT2; }
    else { st = lrt_err(LRT_ERR_UNSUPPORTED, "GGUF pre-tokenizer type '%s' is not supported by the C tokenizer", pname); goto done; }
    for (int i = 0; i < np; i++) {
      pt_step *p = NULL;
      if ((st = lrt_tok_add_pt(t, "GGUF metadata", &p))) goto done;
      p->type = PT_SPLIT; p->pat = pats[i]; p->ci = 2; p->behavior = BEH_ISOLATED;
    }
    pt_step *p = NULL;
    if ((st = lrt_tok_add_pt(t, "GGUF metadata", &p))) goto done;
    p->type = PT_BYTELEVEL; p->add_prefix_space = 0; p->use_regex = 0;
    t->has_decoder = 1;
    t->dc[t->n_dc++].type = DC_BYTELEVEL;
  } else {
    /* SentencePiece vocabulary: the entries' scores drive the merges */
    scores = (double *)calloc((size_t)n, sizeof(double));
    if (!scores) { st = lrt_tok_oom(); goto done; }
    const lrt_gguf_kv *sk = lrt_gguf_find(g, "tokenizer.ggml.scores");
    if (sk) {
      if (sk->type != LRT_META_ARRAY || sk->elem_type == LRT_META_STRING || sk->elem_type == LRT_META_BOOL)
        { st = gfail("tokenizer.ggml.scores", "expected an array of numbers"); goto done; }
      if ((int64_t)sk->count < n) { st = gfail("tokenizer.ggml.scores", "has fewer entries than tokenizer.ggml.tokens"); goto done; }
      for (int64_t i = 0; i < n; i++) {
        double v;
        if (lrt_gguf_kv_float(sk, (uint64_t)i, &v) || v != v || v > 1e308 || v < -1e308)
          { st = gfail("tokenizer.ggml.scores", "contains NaN, infinite or bad scores"); goto done; }
        scores[i] = v;
      }
    }
    /* llama.cpp merges by these scores (tok_bpe.c): no merge list */
    t->spm = 1;
    t->score = scores;
    scores = NULL;
    b.merges_keep_first = 0;
    int32_t unk = -1;
    if ((st = g_id(g, "tokenizer.ggml.unknown_token_id", n, &unk))) goto done;
    if (unk < 0)
      for (int64_t i = 0; i < n; i++) if (types[i] == 2) { unk = (int32_t)i; break; }
    if (unk >= 0) { b.unk = b.vocab[unk].s; b.unk_len = b.vocab[unk].n; }
    t->fuse_unk = 1;
    t->byte_fallback = 1;
    int add_prefix = 1;
    if ((st = g_bool(g, "tokenizer.ggml.add_space_prefix", &add_prefix))) goto done;
    nm_step *m;
    if (add_prefix) {
      m = &t->nm[t->n_nm++];
      m->type = NM_PREPEND;
      m->a = lrt_dup_mem("\xE2\x96\x81", 3); m->a_len = 3;
      if (!m->a) { st = lrt_tok_oom(); goto done; }
    }
    m = &t->nm[t->n_nm++];
    m->type = NM_REPLACE;
    m->a = lrt_dup_mem(" ", 1); m->a_len = 1;
    m->b = lrt_dup_mem("\xE2\x96\x81", 3); m->b_len = 3;
    if (!m->a || !m->b) { st = lrt_tok_oom(); goto done; }
    t->has_decoder = 1;
    dc_step *d = &t->dc[t->n_dc++];
    d->type = DC_REPLACE;
    d->a = lrt_dup_mem("\xE2\x96\x81", 3); d->a_len = 3;
    d->b = lrt_dup_mem(" ", 1); d->b_len = 1;
    if (!d->a || !d->b) { st = lrt_tok_oom(); goto done; }
    t->dc[t->n_dc++].type = DC_BYTEFALLBACK;
    t->dc[t->n_dc++].type = DC_FUSE;
    if (add_prefix) {
      d = &t->dc[t->n_dc++];
      d->type = DC_STRIP;
      d->a = lrt_dup_mem(" ", 1); d->a_len = 1;
      if (!d->a) { st = lrt_tok_oom(); goto done; }
      d->start = 1;
      d->stop = 0;
    }
    add_bos = 1;
    bos = n > 1 ? 1 : -1;
    eos = n > 2 ? 2 : -1;
  }
  if ((st = g_id(g, "tokenizer.ggml.bos_token_id", n, &bos))) goto done;
  if ((st = g_id(g, "tokenizer.ggml.eos_token_id", n, &eos))) goto done;
  if ((st = g_bool(g, "tokenizer.ggml.add_bos_token", &add_bos))) goto done;
  if ((st = g_bool(g, "tokenizer.ggml.add_eos_token", &add_eos))) goto done;
  if (add_bos && bos < 0) { st = gfail("tokenizer.ggml.bos_token_id", "missing although add_bos_token is true"); goto done; }
  if (add_eos && eos < 0) { st = gfail("tokenizer.ggml.eos_token_id", "missing although add_eos_token is true"); goto done; }
  t->has_post = 1;
  if (add_bos && (st = lrt_tok_post_push(t, &post_cap, bos))) goto done;
  if ((st = lrt_tok_post_push(t, &post_cap, -1))) goto done;
  if (add_eos && (st = lrt_tok_post_push(t, &post_cap, eos))) goto done;
  st = lrt_tok_finish(t, &b);
done:
  free(b.vocab); free(b.merges); free(b.added);
  free(names); free(types); free(scores);
  if (st) { lrt_tok_free(t); return st; }
  *out = t;
  return LRT_OK;
}
