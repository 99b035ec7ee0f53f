/* model_text.c -- the text side of a model, filled once at open and read-only after (so a
 * model stays shareable across threads): its chat template and family (text/chat.c), the
 * bos/eos texts, and the ids that end a generation; plus the public lrt_chat_detect and
 * lrt_chat_apply. */
#include <stdlib.h>
#include <string.h>

#include "../text/chat.h"
#include "../text/tokenizer.h"
#include "api_internal.h"

#define SIDE_FILE_MAX (64u << 20) /* tokenizer_config.json, chat_template.*: generous bound */
#define MAX_EOG 64

struct lrt_text {
  lrt_chat_info chat;   /* template, detected family, default system, bos/eos texts */
  int32_t eog[MAX_EOG]; /* ids that end a generation */
  int n_eog;
  int32_t bos_id, eos_id; /* the tokenizer's bos / eos (-1: none) */
  int policy;             /* tokenizer_config.json add_bos_token / add_eos_token given */
  int add_bos, add_eos;
  void **owned; /* buffers copied by lrt_model_open_memory (LRT_OPEN_COPY_BUFFERS) and names */
  size_t n_owned;
};

void lrt_text_free(lrt_text *t) {
  if (!t) return;
  lrt_chat_info_free(&t->chat);
  for (size_t i = 0; i < t->n_owned; i++) free(t->owned[i]);
  free(t->owned);
  free(t);
}

void lrt_text_own(lrt_text *t, void **owned, size_t n_owned) {
  t->owned = owned;
  t->n_owned = n_owned;
}

int64_t lrt_text_eog_count(const lrt_text *t) { return t ? t->n_eog : 0; }
int32_t lrt_text_eog(const lrt_text *t, int64_t i) { return t && i >= 0 && i < t->n_eog ? t->eog[i] : -1; }
int32_t lrt_text_token(const lrt_text *t, int which) { return !t ? -1 : which ? t->eos_id : t->bos_id; }

int lrt_text_special_policy(const lrt_text *t, int *add_bos, int *add_eos, int32_t *bos, int32_t *eos) {
  if (!t || !t->policy) return 0;
  *add_bos = t->add_bos;
  *add_eos = t->add_eos;
  *bos = t->bos_id;
  *eos = t->eos_id;
  return 1;
}

int lrt_text_is_eog(const lrt_text *t, int32_t tok) {
  for (int i = 0; t && i < t->n_eog; i++)
    if (t->eog[i] == tok) return 1;
  return 0;
}

/* A side file of the model (folder path, or memory files). *data NULL when absent;
 * *owned tells whether the caller must free it. */
static int32_t side_file(const char *folder, const lrt_vfile *files, size_t n, const char *name,
                         const char **data, size_t *len, int *owned) {
  *data = NULL;
  *len = 0;
  *owned = 0;
  if (folder) {
    char path[4200];
    if (strlen(folder) + strlen(name) + 2 > sizeof path) return LRT_OK;
    strcpy(path, folder);
    strcat(path, "/");
    strcat(path, name);
    if (!lrt_is_file(path)) return LRT_OK;
    char *buf;
    int32_t st = lrt_read_file(path, SIDE_FILE_MAX, &buf, len);
    if (st) return st;
    *data = buf;
    *owned = 1;
    return LRT_OK;
  }
  const lrt_vfile *f = lrt_vfile_find(files, n, name);
  if (f) {
    if (f->size > SIDE_FILE_MAX) return lrt_err(LRT_ERR_FORMAT, "%s is larger than %u bytes", name, (unsigned)SIDE_FILE_MAX);
    *data = (const char *)f->data;
    *len = f->size;
  }
  return LRT_OK;
}

/* Parse a side JSON file (absent: *doc NULL). */
static int32_t side_json(const char *folder, const lrt_vfile *files, size_t n, const char *name, lj_doc **doc) {
  const char *data;
  size_t len;
  int owned;
  *doc = NULL;
  int32_t st = side_file(folder, files, n, name, &data, &len, &owned);
  if (st || !data) return st;
  st = lj_parse(data, len, name, doc);
  if (owned) free((void *)data);
  if (st == LRT_OK && lj_root(*doc)->type != LJ_OBJECT) {
    lj_free(*doc);
    *doc = NULL;
    return lrt_err(LRT_ERR_FORMAT, "%s: the top level must be a JSON object", name);
  }
  return st;
}

/* A template value: a string, or HF's list of {"name", "template"} ("default" wins, else the first). */
static int32_t pick_template(const lj_value *v, const char *where, const char **out, size_t *len) {
  *out = NULL;
  if (!v || v->type == LJ_NULL) return LRT_OK;
  if (v->type == LJ_STRING) {
    *out = v->str;
    *len = v->str_len;
    return LRT_OK;
  }
  if (v->type != LJ_ARRAY) return lrt_err(LRT_ERR_FORMAT, "%s: chat_template must be a string or a list of named templates", where);
  /* like a dict built from the list: a later entry of the same name replaces an earlier one;
   * "default" wins, else the first name */
  const char *want = NULL;
  for (size_t i = 0; i < v->count; i++) {
    const lj_value *nm = lj_get(&v->items[i], "name"), *tp = lj_get(&v->items[i], "template");
    if (!nm || nm->type != LJ_STRING || !tp || tp->type != LJ_STRING)
      return lrt_err(LRT_ERR_FORMAT, "%s: chat_template list entries must be objects with string 'name' and 'template'", where);
    if (!want || strcmp(nm->str, "default") == 0) want = strcmp(nm->str, "default") == 0 ? "default" : (want ? want : nm->str);
  }
  for (size_t i = 0; want && i < v->count; i++) {
    const lj_value *nm = lj_get(&v->items[i], "name"), *tp = lj_get(&v->items[i], "template");
    if (strcmp(nm->str, want) == 0) {
      *out = tp->str;
      *len = tp->str_len;
    }
  }
  return LRT_OK;
}

/* A token string from a config value: a string or an AddedToken object {"content": ...};
 * absent / null: *out NULL. Anything else is a format error. */
static int32_t token_content(const lj_value *v, const char *file, const char *key, const lj_value **out) {
  *out = NULL;
  if (!v || v->type == LJ_NULL) return LRT_OK;
  if (v->type == LJ_STRING) {
    *out = v;
    return LRT_OK;
  }
  if (v->type == LJ_OBJECT) {
    const lj_value *c = lj_get(v, "content");
    if (c && c->type == LJ_STRING) {
      *out = c;
      return LRT_OK;
    }
  }
  return lrt_err(LRT_ERR_FORMAT, "%s: '%s': expected a token string or an object with a 'content' string", file, key);
}

/* The id of a bos / eos token text named in a side file: its vocabulary id (added tokens
 * first), as transformers looks it up; a text the vocabulary lacks is a format error. */
static int32_t named_token(const lrt_model *m, const lj_value *v, const char *file, const char *key, int32_t *id) {
  *id = lrt_tok_text_id(m->tok, v->str, v->str_len);
  if (*id >= 0) return LRT_OK;
  return lrt_err(LRT_ERR_FORMAT, "%s: %s \"%.*s\" is not in the vocabulary of tokenizer.json; fix the token string "
                 "or add it to added_tokens", file, key, (int)(v->str_len > 80 ? 80 : v->str_len), v->str);
}

static void add_eog(lrt_text *t, int64_t id) {
  if (id < 0 || id > INT32_MAX) return;
  for (int i = 0; i < t->n_eog; i++)
    if (t->eog[i] == (int32_t)id) return;
  if (t->n_eog < MAX_EOG) t->eog[t->n_eog++] = (int32_t)id;
}

/* ---- model init --------------------------------------------------------------------------- */

static int32_t set_text(char **dst, size_t *dl, const char *src, size_t n) {
  free(*dst);
  *dst = lrt_dup_mem(src, n);
  *dl = n;
  return *dst ? LRT_OK : lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
}

/* Text of a token id: GGUF token list entry, else the tokenizer's vocabulary text. */
static int32_t token_text(const lrt_model *m, int32_t id, char **dst, size_t *dl) {
  if (id < 0) return LRT_OK;
  if (m->is_gguf) {
    const lrt_gguf_kv *tk = lrt_gguf_find(&m->gguf, "tokenizer.ggml.tokens");
    if (tk && tk->type == LRT_META_ARRAY && tk->elem_type == LRT_META_STRING && (uint64_t)id < tk->count)
      return set_text(dst, dl, tk->strs[id], (size_t)tk->str_lens[id]);
    return LRT_OK;
  }
  const char *b;
  size_t bl;
  if (m->tok && lrt_tok_id_text(m->tok, id, &b, &bl)) return set_text(dst, dl, b, bl);
  return LRT_OK;
}

/* GGUF: the tokenizer's end-of-generation ids as the Python package computes them (eos,
 * eot, eom and the usual end-of-turn token texts present in the vocabulary). */
static const char *const END_OF_TURN_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<|eom_id|>", "<EOT>", "<end_of_utterance>", NULL};

static int32_t init_gguf(lrt_model *m, lrt_text *t) {
  const lrt_gguf_file *g = &m->gguf;
  const lrt_gguf_kv *tmpl = lrt_gguf_find(g, "tokenizer.chat_template");
  if (tmpl && tmpl->type == LRT_META_STRING) {
    int32_t st = set_text(&t->chat.chat_template, &t->chat.chat_template_len, tmpl->strs[0], (size_t)tmpl->str_lens[0]);
    if (st) return st;
  }
  const lrt_gguf_kv *model = lrt_gguf_find(g, "tokenizer.ggml.model");
  const lrt_gguf_kv *tk = lrt_gguf_find(g, "tokenizer.ggml.tokens");
  if (!model || model->type != LRT_META_STRING || !tk || tk->type != LRT_META_ARRAY || tk->elem_type != LRT_META_STRING)
    return LRT_OK; /* no tokenizer: the config's eos ids only */
  int spm = model->str_lens[0] == 5 && memcmp(model->strs[0], "llama", 5) == 0;
  int64_t n_tok = (int64_t)tk->count, v;
  int64_t bos = -1, eos = -1;
  const lrt_gguf_kv *kv;
  if ((kv = lrt_gguf_find(g, "tokenizer.ggml.bos_token_id")) && lrt_gguf_kv_int(kv, 0, &v) == LRT_OK && v < n_tok) bos = v;
  if ((kv = lrt_gguf_find(g, "tokenizer.ggml.eos_token_id")) && lrt_gguf_kv_int(kv, 0, &v) == LRT_OK && v < n_tok) eos = v;
  if (spm) { /* llama.cpp's SentencePiece defaults */
    if (bos < 0 && !lrt_gguf_find(g, "tokenizer.ggml.bos_token_id") && n_tok > 1) bos = 1;
    if (eos < 0 && !lrt_gguf_find(g, "tokenizer.ggml.eos_token_id") && n_tok > 2) eos = 2;
  }
  int32_t first_eos = (int32_t)eos;
  add_eog(t, eos);
  if ((kv = lrt_gguf_find(g, "tokenizer.ggml.eot_token_id")) && lrt_gguf_kv_int(kv, 0, &v) == LRT_OK && v < n_tok) {
    if (first_eos < 0) first_eos = (int32_t)v;
    add_eog(t, v);
  }
  if ((kv = lrt_gguf_find(g, "tokenizer.ggml.eom_token_id")) && lrt_gguf_kv_int(kv, 0, &v) == LRT_OK && v < n_tok) {
    if (first_eos < 0) first_eos = (int32_t)v;
    add_eog(t, v);
  }
  /* END_OF_TURN_TEXTS in sorted order, as Python's sorted() (byte order for these ASCII texts) */
  const char *sorted[16];
  int ns = 0;
  for (int i = 0; END_OF_TURN_TEXTS[i]; i++) sorted[ns++] = END_OF_TURN_TEXTS[i];
  for (int i = 1; i < ns; i++)
    for (int j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
      const char *x = sorted[j];
      sorted[j] = sorted[j - 1];
      sorted[j - 1] = x;
    }
  for (int k = 0; k < ns; k++) {
    size_t kl = strlen(sorted[k]);
    for (uint64_t i = 0; i < tk->count; i++)
      if (tk->str_lens[i] == kl && memcmp(tk->strs[i], sorted[k], kl) == 0) {
        if (first_eos < 0) first_eos = (int32_t)i;
        add_eog(t, (int64_t)i);
        break; /* first occurrence (the vocabulary has unique entries) */
      }
  }
  int32_t has_tok = 0;
  if (lrt_model_has_tokenizer(m, &has_tok) == LRT_OK && has_tok) { /* the tokenizer's own facts */
    t->bos_id = (int32_t)bos;
    t->eos_id = first_eos;
  }
  int32_t st = token_text(m, (int32_t)bos, &t->chat.bos_text, &t->chat.bos_len);
  if (st == LRT_OK) st = token_text(m, first_eos, &t->chat.eos_text, &t->chat.eos_len);
  return st;
}

/* generation_config.json's eos_token_id (an integer or a list of them): ids that end a
 * generation. A full open has read them into the config already; a tokenizer-only open
 * reads them here. */
static int32_t generation_eos(lrt_text *t, const char *folder, const lrt_vfile *files, size_t n) {
  lj_doc *gen = NULL;
  int32_t st = side_json(folder, files, n, "generation_config.json", &gen);
  if (st || !gen) return st;
  const lj_value *e = lj_get(lj_root(gen), "eos_token_id");
  if (e && e->type != LJ_NULL) {
    size_t k = e->type == LJ_ARRAY ? e->count : 1;
    for (size_t i = 0; i < k && st == LRT_OK; i++) {
      const lj_value *x = e->type == LJ_ARRAY ? &e->items[i] : e;
      if (x->type != LJ_NUMBER || !x->is_integer || x->integer < 0 || x->integer > INT32_MAX)
        st = lrt_err(LRT_ERR_FORMAT, "generation_config.json: eos_token_id must be a non-negative integer or a list of them");
      else
        add_eog(t, x->integer);
    }
  }
  lj_free(gen);
  return st;
}

static int32_t init_folder(lrt_model *m, lrt_text *t, const char *folder, const lrt_vfile *files, size_t n) {
  lj_doc *cfg = NULL, *special = NULL, *ctj = NULL;
  const char *data;
  size_t len;
  int owned;
  int32_t has_tok = 0;
  /* without a tokenizer the side files are not read (as in the Python package, whose
   * tokenizer holds them): no chat template, the config's eos ids only */
  if (lrt_model_has_tokenizer(m, &has_tok) != LRT_OK || !has_tok) return LRT_OK;
  int32_t st = side_json(folder, files, n, "tokenizer_config.json", &cfg);
  if (st == LRT_OK) st = side_json(folder, files, n, "special_tokens_map.json", &special);
  if (st) goto done;
  /* chat template: chat_template.jinja, chat_template.json, tokenizer_config.json */
  if ((st = side_file(folder, files, n, "chat_template.jinja", &data, &len, &owned))) goto done;
  if (data) {
    if (!lrt_utf8_valid(data, len)) st = lrt_err(LRT_ERR_FORMAT, "chat_template.jinja: not valid UTF-8; re-save the template as UTF-8");
    else st = set_text(&t->chat.chat_template, &t->chat.chat_template_len, data, len);
    if (owned) free((void *)data);
    if (st) goto done;
  } else {
    const char *tp = NULL;
    size_t tl = 0;
    if ((st = side_json(folder, files, n, "chat_template.json", &ctj))) goto done;
    if (ctj) st = pick_template(lj_get(lj_root(ctj), "chat_template"), "chat_template.json", &tp, &tl);
    else if (cfg) st = pick_template(lj_get(lj_root(cfg), "chat_template"), "tokenizer_config.json", &tp, &tl);
    if (st) goto done;
    if (tp && (st = set_text(&t->chat.chat_template, &t->chat.chat_template_len, tp, tl))) goto done;
  }
  /* bos / eos: tokenizer_config.json, else special_tokens_map.json (a null value counts as
   * absent), looked up in the vocabulary as transformers does */
  const char *keys[2] = {"bos_token", "eos_token"};
  int32_t ids[2] = {-1, -1};
  for (int k = 0; k < 2; k++) {
    const lj_value *v = cfg ? lj_get(lj_root(cfg), keys[k]) : NULL, *text = NULL;
    const char *file = "tokenizer_config.json";
    if (!v || v->type == LJ_NULL) {
      v = special ? lj_get(lj_root(special), keys[k]) : NULL;
      file = "special_tokens_map.json";
    }
    if ((st = token_content(v, file, keys[k], &text))) goto done;
    if (text && (st = named_token(m, text, file, keys[k], &ids[k]))) goto done;
    if (text && k == 0 && (st = set_text(&t->chat.bos_text, &t->chat.bos_len, text->str, text->str_len))) goto done;
  }
  t->bos_id = ids[0];
  add_eog(t, ids[1]);
  if ((st = generation_eos(t, folder, files, n))) goto done;
  /* add_bos_token / add_eos_token replace the post-processor (transformers); a flag whose
   * token is not defined is ignored, as there */
  const lj_value *ab = cfg ? lj_get(lj_root(cfg), "add_bos_token") : NULL;
  const lj_value *ae = cfg ? lj_get(lj_root(cfg), "add_eos_token") : NULL;
  if (ab || ae) {
    if ((ab && ab->type != LJ_BOOL) || (ae && ae->type != LJ_BOOL)) {
      st = lrt_err(LRT_ERR_FORMAT, "tokenizer_config.json: add_bos_token/add_eos_token must be true or false");
      goto done;
    }
    t->policy = 1;
    t->add_bos = ab && ab->boolean && ids[0] >= 0;
    t->add_eos = ae && ae->boolean && ids[1] >= 0;
  }
  /* the eos chat templates write: the named one, else the config's first */
  t->eos_id = ids[1] >= 0 ? ids[1] : m->cfg.n_eos > 0 ? m->cfg.eos[0] : t->n_eog > 0 ? t->eog[0] : -1;
  st = token_text(m, t->eos_id, &t->chat.eos_text, &t->chat.eos_len);
done:
  lj_free(cfg);
  lj_free(special);
  lj_free(ctj);
  return st;
}

int32_t lrt_text_init(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n) {
  lrt_text *t = (lrt_text *)calloc(1, sizeof *t);
  if (!t) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  t->bos_id = t->eos_id = -1;
  m->text = t;
  for (int i = 0; i < m->cfg.n_eos; i++) add_eog(t, m->cfg.eos[i]);
  int32_t st = m->is_gguf ? init_gguf(m, t) : init_folder(m, t, folder, files, n);
  if (st) return st;
  if (!t->chat.chat_template && (st = set_text(&t->chat.chat_template, &t->chat.chat_template_len, "", 0))) return st;
  return lrt_chat_detect_family(&t->chat);
}

/* ---- public: model facts ------------------------------------------------------------------ */

int32_t lrt_text_chat_template(const lrt_model *m, const char **out, size_t *len) {
  *out = m->text ? m->text->chat.chat_template : "";
  *len = m->text ? m->text->chat.chat_template_len : 0;
  return LRT_OK;
}

int32_t lrt_chat_detect(const lrt_model *m, int32_t *format) {
  if (!m) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "model must not be NULL");
  if (!format) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "format must not be NULL");
  *format = m->text ? m->text->chat.chat_format : LRT_CHAT_CHATML;
  if (*format < 0) {
    *format = LRT_CHAT_MODEL;
    return lrt_err(LRT_ERR_UNSUPPORTED, "the model's chat template is not one of the families loomrt renders in C "
                   "(ChatML, Llama 3, Llama 2 [INST], Zephyr); pass an explicit LRT_CHAT_* format");
  }
  return LRT_OK;
}

int32_t lrt_chat_apply(const lrt_model *m, int32_t format, int64_t n_msg, const char *const *roles,
                       const size_t *roles_lens, const char *const *contents, const size_t *contents_lens,
                       int32_t add_gen, char *out, size_t capacity, size_t *out_len) {
  if (!out_len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "out_len must not be NULL");
  *out_len = 0;
  if (!out && capacity > 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "out must not be NULL when capacity > 0");
  if (n_msg < 0 || n_msg > ((int64_t)1 << 30)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "n_messages must be >= 0");
  if (n_msg > 0 && (!roles || !roles_lens || !contents || !contents_lens))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "roles, roles_lens, contents and contents_lens must not be NULL");
  for (int64_t i = 0; i < n_msg; i++) {
    if ((!roles[i] && roles_lens[i]) || (!contents[i] && contents_lens[i]))
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "message %lld: NULL text with a non-zero length", (long long)i);
    if (!lrt_utf8_valid(roles[i] ? roles[i] : "", roles_lens[i]) || !lrt_utf8_valid(contents[i] ? contents[i] : "", contents_lens[i]))
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "message %lld is not valid UTF-8", (long long)i);
  }
  const lrt_text *t = m ? m->text : NULL;
  if (format == LRT_CHAT_MODEL) {
    if (!m) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "LRT_CHAT_MODEL needs a model");
    int32_t st = lrt_chat_detect(m, &format);
    if (st) return st;
  } else if (format < LRT_CHAT_CHATML || format > LRT_CHAT_ZEPHYR) {
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown chat format %d", format);
  }
  return lrt_chat_render(t ? &t->chat : NULL, format, n_msg, roles, roles_lens, contents, contents_lens, add_gen,
                         out, capacity, out_len);
}
