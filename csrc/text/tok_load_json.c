/* tok_load_json.c -- lrt_tok_from_json: a HuggingFace tokenizer.json (model, normalizer,
 * pre_tokenizer, decoder, post_processor, added_tokens) into the builder and the pipeline
 * steps, then finished by tok_build.c. Unsupported components are refused by name. */
#include <stdlib.h>
#include <string.h>

#include "../formats/formats.h" /* JSON, GGUF metadata */
#include "tok_internal.h"

/* ---- tokenizer.json ---------------------------------------------------------------------------- */

static const lj_value *jget(const lj_value *o, const char *k) { return lj_get(o, k); }

static int jstr(const lj_value *v, const char **s, size_t *n) {
  if (!v || v->type != LJ_STRING) return 0;
  *s = v->str; *n = v->str_len;
  return 1;
}

/* Optional bool: absent or null gives def; else must be a bool. */
static int32_t jbool(const char *what, const lj_value *o, const char *key, int def, int *out) {
  const lj_value *v = jget(o, key);
  if (!v || v->type == LJ_NULL) { *out = def; return LRT_OK; }
  if (v->type != LJ_BOOL) return lrt_err(LRT_ERR_FORMAT, "%s: \"%s\" must be true or false", what, key);
  *out = v->boolean;
  return LRT_OK;
}

static const char *jtype(const lj_value *o) {
  const lj_value *t = jget(o, "type");
  return (t && t->type == LJ_STRING) ? t->str : NULL;
}

static int32_t unsupported(const char *what, const char *section, const char *type) {
  return lrt_err(LRT_ERR_UNSUPPORTED, "%s: %s type \"%.60s\" is not supported by the C tokenizer", what, section,
                 type ? type : "(missing)");
}

/* Single code point of a UTF-8 string, 0 if it is not exactly one. */
static uint32_t one_char(const char *s, size_t n) {
  if (!n) return 0;
  int l;
  uint32_t cp = lrt_tok_u8_dec((const uint8_t *)s, n, 0, &l);
  return (size_t)l == n ? cp : 0;
}

static int32_t parse_pattern(const char *what, const lj_value *v, int *is_regex, const char **s, size_t *n) {
  if (!v || v->type != LJ_OBJECT || v->count != 1) return lrt_err(LRT_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", what);
  const lj_member *m = &v->members[0];
  if (m->value.type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: \"pattern\" value must be a string", what);
  if (strcmp(m->key, "String") == 0) *is_regex = 0;
  else if (strcmp(m->key, "Regex") == 0) *is_regex = 1;
  else return lrt_err(LRT_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", what);
  *s = m->value.str;
  *n = m->value.str_len;
  return LRT_OK;
}

#define R_CONTR_CI "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
#define R_CONTR_CLS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define R_LLAMA3_TAIL "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_QWEN2_TAIL "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

static const struct { const char *re; int pat, ci; } k_regexes[] = {
    {R_GPT2 "|\\s+", PAT_GPT2, 0},
    {R_GPT2, PAT_GPT2, 0},
    {R_CONTR_CI R_LLAMA3_TAIL, PAT_LLAMA3, 1},
    {R_CONTR_CLS R_LLAMA3_TAIL, PAT_LLAMA3, 2},
    {R_CONTR_CI R_QWEN2_TAIL, PAT_QWEN2, 1},
    {R_CONTR_CLS R_QWEN2_TAIL, PAT_QWEN2, 2},
    {"\\p{N}", PAT_N1, 0},
    {"\\p{N}{1}", PAT_N1, 0},
    {"\\p{N}{1,3}", PAT_N3, 0},
    {"\\p{N}+", PAT_NPLUS, 0},
};

static int32_t parse_prepend_scheme(const char *what, const lj_value *o, int *out) {
  const lj_value *ps = jget(o, "prepend_scheme");
  if (ps && ps->type == LJ_STRING) {
    if (strcmp(ps->str, "always") == 0) *out = PREPEND_ALWAYS;
    else if (strcmp(ps->str, "first") == 0) *out = PREPEND_FIRST;
    else if (strcmp(ps->str, "never") == 0) *out = PREPEND_NEVER;
    else return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace prepend_scheme \"%.20s\" is not always/first/never", what, ps->str);
    return LRT_OK;
  }
  if (ps && ps->type != LJ_NULL) return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace prepend_scheme must be a string", what);
  int add = 1;
  int32_t st = jbool(what, o, "add_prefix_space", 1, &add);
  if (st) return st;
  *out = add ? PREPEND_ALWAYS : PREPEND_NEVER;
  return LRT_OK;
}

static int32_t parse_metaspace_repl(const char *what, const lj_value *o, uint32_t *cp, char **lit, size_t *lit_len) {
  const char *s = "\xE2\x96\x81";
  size_t n = 3;
  const lj_value *r = jget(o, "replacement");
  if (r && !jstr(r, &s, &n)) return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace replacement must be a string", what);
  *cp = one_char(s, n);
  if (!*cp) return lrt_err(LRT_ERR_FORMAT, "%s: Metaspace replacement must be one character", what);
  if (lit) {
    *lit = lrt_dup_mem(s, n);
    if (!*lit) return lrt_tok_oom();
    *lit_len = n;
  }
  return LRT_OK;
}

static int32_t parse_pre(lrt_tokenizer *t, const char *what, const lj_value *o, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: pre_tokenizer must be an object or null", what);
  const char *type = jtype(o);
  int32_t st;
  pt_step *p = NULL;
  if (!type) return unsupported(what, "pre_tokenizer", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "pretokenizers");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence pre_tokenizer needs a \"pretokenizers\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: pre_tokenizer sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_pre(t, what, &a->items[i], depth + 1))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "ByteLevel") == 0) {
    if ((st = lrt_tok_add_pt(t, what, &p))) return st;
    p->type = PT_BYTELEVEL;
    if ((st = jbool(what, o, "add_prefix_space", 1, &p->add_prefix_space))) return st;
    if ((st = jbool(what, o, "use_regex", 1, &p->use_regex))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "Metaspace") == 0) {
    if ((st = lrt_tok_add_pt(t, what, &p))) return st;
    p->type = PT_METASPACE;
    if ((st = parse_metaspace_repl(what, o, &p->repl, &p->lit, &p->lit_len))) return st;
    if ((st = parse_prepend_scheme(what, o, &p->prepend))) return st;
    if ((st = jbool(what, o, "split", 1, &p->split))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "Digits") == 0) {
    if ((st = lrt_tok_add_pt(t, what, &p))) return st;
    p->type = PT_DIGITS;
    return jbool(what, o, "individual_digits", 0, &p->individual);
  }
  if (strcmp(type, "Split") == 0) {
    if ((st = lrt_tok_add_pt(t, what, &p))) return st;
    p->type = PT_SPLIT;
    int is_re;
    const char *s;
    size_t n;
    if ((st = parse_pattern(what, jget(o, "pattern"), &is_re, &s, &n))) return st;
    if ((st = jbool(what, o, "invert", 0, &p->invert))) return st;
    const lj_value *b = jget(o, "behavior");
    if (!b || b->type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: Split pre_tokenizer needs a \"behavior\" string", what);
    static const char *const beh[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    p->behavior = -1;
    for (int i = 0; i < 5; i++) if (strcmp(b->str, beh[i]) == 0) p->behavior = i;
    if (p->behavior < 0) return lrt_err(LRT_ERR_FORMAT, "%s: Split behavior \"%.30s\" is not known", what, b->str);
    if (!is_re) {
      p->pat = PAT_LITERAL;
      p->lit = lrt_dup_mem(s, n);
      if (!p->lit) return lrt_tok_oom();
      p->lit_len = n;
      return LRT_OK;
    }
    for (size_t i = 0; i < sizeof k_regexes / sizeof k_regexes[0]; i++)
      if (strlen(k_regexes[i].re) == n && memcmp(k_regexes[i].re, s, n) == 0) {
        p->pat = k_regexes[i].pat;
        p->ci = k_regexes[i].ci;
        return LRT_OK;
      }
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: the Split expression %.120s is not one the C tokenizer implements "
                   "(GPT-2, Llama 3, Qwen2 and digit expressions)", what, s);
  }
  return unsupported(what, "pre_tokenizer", type);
}

static int32_t parse_norm(lrt_tokenizer *t, const char *what, const lj_value *o, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: normalizer must be an object or null", what);
  const char *type = jtype(o);
  int32_t st;
  if (!type) return unsupported(what, "normalizer", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "normalizers");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence normalizer needs a \"normalizers\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: normalizer sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_norm(t, what, &a->items[i], depth + 1))) return st;
    return LRT_OK;
  }
  if (t->n_nm >= TOK_MAX_STEPS) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than %d normalizer steps", what, TOK_MAX_STEPS);
  nm_step *m = &t->nm[t->n_nm];
  memset(m, 0, sizeof *m);
  const char *s;
  size_t n;
  if (strcmp(type, "Prepend") == 0) {
    if (!jstr(jget(o, "prepend"), &s, &n)) return lrt_err(LRT_ERR_FORMAT, "%s: Prepend normalizer needs a \"prepend\" string", what);
    m->type = NM_PREPEND;
    m->a = lrt_dup_mem(s, n);
    m->a_len = n;
    if (!m->a) return lrt_tok_oom();
  } else if (strcmp(type, "Replace") == 0) {
    int is_re;
    if ((st = parse_pattern(what, jget(o, "pattern"), &is_re, &s, &n))) return st;
    if (is_re) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: Replace normalizer with a regular expression is not supported", what);
    const char *c;
    size_t cn;
    if (!jstr(jget(o, "content"), &c, &cn)) return lrt_err(LRT_ERR_FORMAT, "%s: Replace normalizer needs a \"content\" string", what);
    m->type = NM_REPLACE;
    m->a = lrt_dup_mem(s, n); m->a_len = n;
    m->b = lrt_dup_mem(c, cn); m->b_len = cn;
    if (!m->a || !m->b) { free(m->a); free(m->b); m->a = m->b = NULL; return lrt_tok_oom(); }
  } else if (strcmp(type, "NFC") == 0) {
    m->type = NM_NFC;
  } else if (strcmp(type, "NFD") == 0) {
    m->type = NM_NFD;
  } else {
    return unsupported(what, "normalizer", type);
  }
  t->n_nm++;
  return LRT_OK;
}

static int32_t parse_dec(lrt_tokenizer *t, const char *what, const lj_value *o, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: decoder must be an object or null", what);
  t->has_decoder = 1;
  const char *type = jtype(o);
  int32_t st;
  if (!type) return unsupported(what, "decoder", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "decoders");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence decoder needs a \"decoders\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: decoder sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_dec(t, what, &a->items[i], depth + 1))) return st;
    return LRT_OK;
  }
  if (t->n_dc >= TOK_MAX_STEPS) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than %d decoder steps", what, TOK_MAX_STEPS);
  dc_step *d = &t->dc[t->n_dc];
  memset(d, 0, sizeof *d);
  const char *s;
  size_t n;
  if (strcmp(type, "ByteLevel") == 0) {
    d->type = DC_BYTELEVEL;
  } else if (strcmp(type, "Metaspace") == 0) {
    d->type = DC_METASPACE;
    if ((st = parse_metaspace_repl(what, o, &d->repl, NULL, NULL))) return st;
    if ((st = parse_prepend_scheme(what, o, &d->prepend))) return st;
  } else if (strcmp(type, "Replace") == 0) {
    int is_re;
    if ((st = parse_pattern(what, jget(o, "pattern"), &is_re, &s, &n))) return st;
    if (is_re) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: Replace decoder with a regular expression is not supported", what);
    const char *c;
    size_t cn;
    if (!jstr(jget(o, "content"), &c, &cn)) return lrt_err(LRT_ERR_FORMAT, "%s: Replace decoder needs a \"content\" string", what);
    d->type = DC_REPLACE;
    d->a = lrt_dup_mem(s, n); d->a_len = n;
    d->b = lrt_dup_mem(c, cn); d->b_len = cn;
    if (!d->a || !d->b) { free(d->a); free(d->b); d->a = d->b = NULL; return lrt_tok_oom(); }
  } else if (strcmp(type, "ByteFallback") == 0) {
    d->type = DC_BYTEFALLBACK;
  } else if (strcmp(type, "Fuse") == 0) {
    d->type = DC_FUSE;
  } else if (strcmp(type, "Strip") == 0) {
    d->type = DC_STRIP;
    if (!jstr(jget(o, "content"), &s, &n) || !one_char(s, n))
      return lrt_err(LRT_ERR_FORMAT, "%s: Strip decoder needs a one-character \"content\"", what);
    const lj_value *a = jget(o, "start"), *b = jget(o, "stop");
    if (!a || !b || a->type != LJ_NUMBER || b->type != LJ_NUMBER || !a->is_integer || !b->is_integer ||
        a->integer < 0 || b->integer < 0)
      return lrt_err(LRT_ERR_FORMAT, "%s: Strip decoder needs non-negative integers \"start\" and \"stop\"", what);
    d->a = lrt_dup_mem(s, n); d->a_len = n;
    if (!d->a) return lrt_tok_oom();
    d->start = a->integer;
    d->stop = b->integer;
  } else {
    return unsupported(what, "decoder", type);
  }
  t->n_dc++;
  return LRT_OK;
}

static int32_t check_post_id(const char *what, const lj_value *v, int32_t *id) {
  if (!v || v->type != LJ_NUMBER || !v->is_integer || v->integer < 0 || v->integer >= TOK_MAX_VOCAB)
    return lrt_err(LRT_ERR_FORMAT, "%s: post_processor token ids must be integers in [0, %d)", what, TOK_MAX_VOCAB);
  *id = (int32_t)v->integer;
  return LRT_OK;
}

static int32_t parse_post(lrt_tokenizer *t, const char *what, const lj_value *o, size_t *cap, int depth) {
  if (!o || o->type == LJ_NULL) return LRT_OK;
  if (o->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: post_processor must be an object or null", what);
  const char *type = jtype(o);
  int32_t st, id = 0;
  if (!type) return unsupported(what, "post_processor", NULL);
  if (strcmp(type, "Sequence") == 0) {
    const lj_value *a = jget(o, "processors");
    if (!a || a->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: Sequence post_processor needs a \"processors\" array", what);
    if (depth > 4) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: post_processor sequences nested too deeply", what);
    for (size_t i = 0; i < a->count; i++)
      if ((st = parse_post(t, what, &a->items[i], cap, depth + 1))) return st;
    return LRT_OK;
  }
  if (strcmp(type, "ByteLevel") == 0) return LRT_OK; /* offsets only */
  if (t->has_post) return lrt_err(LRT_ERR_UNSUPPORTED, "%s: more than one post_processor adding tokens", what);
  t->has_post = 1;
  if (strcmp(type, "TemplateProcessing") == 0) {
    const lj_value *single = jget(o, "single"), *sp = jget(o, "special_tokens");
    if (!single || single->type != LJ_ARRAY || (sp && sp->type != LJ_OBJECT && sp->type != LJ_NULL))
      return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing needs a \"single\" array and a \"special_tokens\" object", what);
    int seen_seq = 0;
    for (size_t i = 0; i < single->count; i++) {
      const lj_value *it = &single->items[i];
      if (it->type != LJ_OBJECT || it->count != 1)
        return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing items must be {\"SpecialToken\": ...} or {\"Sequence\": ...}", what);
      const lj_member *m = &it->members[0];
      const lj_value *idv = jget(&m->value, "id");
      if (!idv || idv->type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing item needs an \"id\" string", what);
      if (strcmp(m->key, "Sequence") == 0) {
        if (strcmp(idv->str, "A") != 0 || seen_seq)
          return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing \"single\" must use sequence A once", what);
        seen_seq = 1;
        if ((st = lrt_tok_post_push(t, cap, -1))) return st;
      } else if (strcmp(m->key, "SpecialToken") == 0) {
        const lj_value *e = sp && sp->type == LJ_OBJECT ? jget(sp, idv->str) : NULL;
        const lj_value *ids = e ? jget(e, "ids") : NULL;
        if (!ids || ids->type != LJ_ARRAY)
          return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing special token %.60s is missing from special_tokens", what, idv->str);
        for (size_t k = 0; k < ids->count; k++) {
          if ((st = check_post_id(what, &ids->items[k], &id))) return st;
          if ((st = lrt_tok_post_push(t, cap, id))) return st;
        }
      } else {
        return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing item %.30s is not SpecialToken or Sequence", what, m->key);
      }
    }
    if (!seen_seq) return lrt_err(LRT_ERR_FORMAT, "%s: TemplateProcessing \"single\" does not contain sequence A", what);
    return LRT_OK;
  }
  if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
    const lj_value *cls = jget(o, "cls"), *sep = jget(o, "sep");
    if (!cls || !sep || cls->type != LJ_ARRAY || sep->type != LJ_ARRAY || cls->count != 2 || sep->count != 2)
      return lrt_err(LRT_ERR_FORMAT, "%s: %s needs \"cls\" and \"sep\" as [token, id]", what, type);
    if ((st = check_post_id(what, &cls->items[1], &id)) || (st = lrt_tok_post_push(t, cap, id))) return st;
    if ((st = lrt_tok_post_push(t, cap, -1))) return st;
    if ((st = check_post_id(what, &sep->items[1], &id)) || (st = lrt_tok_post_push(t, cap, id))) return st;
    return LRT_OK;
  }
  return unsupported(what, "post_processor", type);
}

static int32_t parse_model(lrt_tokenizer *t, builder *b, const char *what, const lj_value *m, int32_t *st_out) {
  (void)st_out;
  if (!m || m->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: \"model\" must be an object", what);
  const char *type = jtype(m);
  if (type && strcmp(type, "BPE") != 0) return unsupported(what, "model", type);
  if (!type && !jget(m, "merges")) return unsupported(what, "model", NULL);
  const lj_value *v = jget(m, "vocab"), *mg = jget(m, "merges");
  if (!v || v->type != LJ_OBJECT) return lrt_err(LRT_ERR_FORMAT, "%s: model.vocab must be an object", what);
  if (mg && mg->type != LJ_ARRAY && mg->type != LJ_NULL) return lrt_err(LRT_ERR_FORMAT, "%s: model.merges must be an array", what);
  const lj_value *drop = jget(m, "dropout");
  if (drop && drop->type != LJ_NULL && !(drop->type == LJ_NUMBER && drop->number == 0.0))
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: BPE dropout is random and not supported", what);
  const char *s;
  size_t n;
  if (jstr(jget(m, "continuing_subword_prefix"), &s, &n) && n)
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: BPE continuing_subword_prefix is not supported", what);
  if (jstr(jget(m, "end_of_word_suffix"), &s, &n) && n)
    return lrt_err(LRT_ERR_UNSUPPORTED, "%s: BPE end_of_word_suffix is not supported", what);
  int32_t st;
  if ((st = jbool(what, m, "fuse_unk", 0, &t->fuse_unk))) return st;
  if ((st = jbool(what, m, "byte_fallback", 0, &t->byte_fallback))) return st;
  if ((st = jbool(what, m, "ignore_merges", 0, &t->ignore_merges))) return st;
  const lj_value *u = jget(m, "unk_token");
  if (u && u->type != LJ_NULL) {
    if (u->type != LJ_STRING) return lrt_err(LRT_ERR_FORMAT, "%s: model.unk_token must be a string or null", what);
    b->unk = u->str;
    b->unk_len = u->str_len;
  }
  b->n_vocab = v->count;
  b->vocab = (vocab_entry *)calloc(v->count + 1, sizeof(vocab_entry));
  if (!b->vocab) return lrt_tok_oom();
  for (size_t i = 0; i < v->count; i++) {
    const lj_member *e = &v->members[i];
    if (e->value.type != LJ_NUMBER || !e->value.is_integer || e->value.integer < 0 || e->value.integer >= TOK_MAX_VOCAB)
      return lrt_err(LRT_ERR_FORMAT, "%s: model.vocab[%.60s] must be an integer id in [0, %d)", what, e->key, TOK_MAX_VOCAB);
    b->vocab[i].s = e->key;
    b->vocab[i].n = e->key_len;
    b->vocab[i].id = (int32_t)e->value.integer;
  }
  if (mg && mg->type == LJ_ARRAY) {
    b->n_merges = mg->count;
    b->merges = (merge_entry *)calloc(mg->count + 1, sizeof(merge_entry));
    if (!b->merges) return lrt_tok_oom();
    for (size_t i = 0; i < mg->count; i++) {
      const lj_value *e = &mg->items[i];
      merge_entry *me = &b->merges[i];
      if (e->type == LJ_STRING) {
        const char *sp = memchr(e->str, ' ', e->str_len);
        if (!sp || memchr(sp + 1, ' ', e->str_len - (size_t)(sp + 1 - e->str)))
          return lrt_err(LRT_ERR_FORMAT, "%s: merge %zu \"%.60s\" is not of the form \"left right\"", what, i, e->str);
        me->a = e->str; me->na = (size_t)(sp - e->str);
        me->b = sp + 1; me->nb = e->str_len - me->na - 1;
      } else if (e->type == LJ_ARRAY && e->count == 2 && e->items[0].type == LJ_STRING && e->items[1].type == LJ_STRING) {
        me->a = e->items[0].str; me->na = e->items[0].str_len;
        me->b = e->items[1].str; me->nb = e->items[1].str_len;
      } else {
        return lrt_err(LRT_ERR_FORMAT, "%s: merge %zu must be \"left right\" or [left, right]", what, i);
      }
    }
  }
  return LRT_OK;
}

int32_t lrt_tok_from_json(const char *text, size_t len, const char *what, lrt_tokenizer **out) {
  *out = NULL;
  lj_doc *doc = NULL;
  int32_t st = lj_parse(text, len, what, &doc);
  if (st) return st;
  lrt_tokenizer *t = (lrt_tokenizer *)calloc(1, sizeof *t);
  builder b;
  memset(&b, 0, sizeof b);
  b.what = what;
  if (!t) { lj_free(doc); return lrt_tok_oom(); }
  const lj_value *root = lj_root(doc);
  if (root->type != LJ_OBJECT || !jget(root, "model")) {
    st = lrt_err(LRT_ERR_FORMAT, "%s: not a HuggingFace tokenizer.json (no \"model\" section)", what);
    goto done;
  }
  if ((st = parse_model(t, &b, what, jget(root, "model"), NULL))) goto done;
  if ((st = parse_norm(t, what, jget(root, "normalizer"), 0))) goto done;
  if ((st = parse_pre(t, what, jget(root, "pre_tokenizer"), 0))) goto done;
  if ((st = parse_dec(t, what, jget(root, "decoder"), 0))) goto done;
  {
    size_t cap = 0;
    if ((st = parse_post(t, what, jget(root, "post_processor"), &cap, 0))) goto done;
  }
  {
    const lj_value *a = jget(root, "added_tokens");
    if (a && a->type != LJ_ARRAY && a->type != LJ_NULL) { st = lrt_err(LRT_ERR_FORMAT, "%s: \"added_tokens\" must be an array", what); goto done; }
    if (a && a->type == LJ_ARRAY) {
      b.added = (added_entry *)calloc(a->count + 1, sizeof(added_entry));
      if (!b.added) { st = lrt_tok_oom(); goto done; }
      for (size_t i = 0; i < a->count; i++) {
        const lj_value *e = &a->items[i];
        added_entry *ae = &b.added[b.n_added];
        if (e->type != LJ_OBJECT || !jstr(jget(e, "content"), &ae->s, &ae->n)) {
          st = lrt_err(LRT_ERR_FORMAT, "%s: added_tokens[%zu] needs a \"content\" string", what, i);
          goto done;
        }
        int sp, ls, rs, sw, nm;
        if ((st = jbool(what, e, "special", 0, &sp)) || (st = jbool(what, e, "lstrip", 0, &ls)) ||
            (st = jbool(what, e, "rstrip", 0, &rs)) || (st = jbool(what, e, "single_word", 0, &sw)) ||
            (st = jbool(what, e, "normalized", !sp, &nm)))
          goto done;
        ae->special = (uint8_t)sp; ae->lstrip = (uint8_t)ls; ae->rstrip = (uint8_t)rs;
        ae->single_word = (uint8_t)sw; ae->normalized = (uint8_t)nm;
        b.n_added++;
      }
    }
  }
  st = lrt_tok_finish(t, &b);
done:
  free(b.vocab);
  free(b.merges);
  free(b.added);
  lj_free(doc);
  if (st) { lrt_tok_free(t); return st; }
  *out = t;
  return LRT_OK;
}
