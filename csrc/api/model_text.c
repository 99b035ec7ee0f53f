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
  void **owned; /* buffers copied by lrt_model_open_memory (LRT_OPEN_COPY_BUFFERS) and names */
  size_t n_owned;
};

static char *dup_mem(const void *p, size_t n) {
  char *d = (char *)malloc(n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, p, n);
  d[n] = 0;
  return d;
}

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

/* A token string from a config value: a string or an AddedToken object {"content": ...}. */
static const lj_value *token_content(const lj_value *v) {
  if (!v) return NULL;
  if (v->type == LJ_STRING) return v;
  if (v->type == LJ_OBJECT) {
    const lj_value *c = lj_get(v, "content");
    if (c && c->type == LJ_STRING) return c;
  }
  return NULL;
}

static void add_eog(lrt_text *t, int64_t id) {
  if (id < 0 || id > INT32_MAX) return;
  for (int i = 0; i < t->n_eog; i++)
    if (t->eog[i] == (int32_t)id) return;
  if (t->n_eog < MAX_EOG) t->eog[t->n_eog++] = (int32_t)id;
}

/* Id of a special token text through the tokenizer: the text tokenized with special tokens
 * recognised gives a single id. -1 when not a single token or no tokenizer. */
static int32_t special_id(const lrt_model *m, const char *text, size_t len) {
  int32_t ids[4];
  int64_t n = 0;
  if (lrt_tokenize(m, text, len, LRT_TOKENIZE_PARSE_SPECIAL, ids, 4, &n) != LRT_OK || n != 1) return -1;
  return ids[0];
}

/* ---- model init --------------------------------------------------------------------------- */

static int32_t set_text(char **dst, size_t *dl, const char *src, size_t n) {
  free(*dst);
  *dst = dup_mem(src, n);
  *dl = n;
  return *dst ? LRT_OK : lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
}

/* Text of a token id: GGUF token list entry, else the tokenizer's bytes. */
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
  if (lrt_token_bytes(m, id, &b, &bl) == LRT_OK) return set_text(dst, dl, b, bl);
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
  int32_t st = token_text(m, (int32_t)bos, &t->chat.bos_text, &t->chat.bos_len);
  if (st == LRT_OK) st = token_text(m, first_eos, &t->chat.eos_text, &t->chat.eos_len);
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
  /* bos / eos token texts: tokenizer_config.json, else special_tokens_map.json */
  const lj_value *bos = token_content(cfg ? lj_get(lj_root(cfg), "bos_token") : NULL);
  if (!bos && !(cfg && lj_get(lj_root(cfg), "bos_token") && lj_get(lj_root(cfg), "bos_token")->type != LJ_NULL))
    bos = token_content(special ? lj_get(lj_root(special), "bos_token") : NULL);
  const lj_value *eos = token_content(cfg ? lj_get(lj_root(cfg), "eos_token") : NULL);
  if (!eos && !(cfg && lj_get(lj_root(cfg), "eos_token") && lj_get(lj_root(cfg), "eos_token")->type != LJ_NULL))
    eos = token_content(special ? lj_get(lj_root(special), "eos_token") : NULL);
  if (bos && special_id(m, bos->str, bos->str_len) >= 0 && (st = set_text(&t->chat.bos_text, &t->chat.bos_len, bos->str, bos->str_len)))
    goto done;
  int32_t first_eos = -1;
  if (eos) {
    first_eos = special_id(m, eos->str, eos->str_len);
    add_eog(t, first_eos);
  }
  /* generation_config.json's eos ids are already in the config (m->cfg.eos) */
  if (first_eos < 0 && m->cfg.n_eos > 0) first_eos = m->cfg.eos[0];
  st = token_text(m, first_eos, &t->chat.eos_text, &t->chat.eos_len);
done:
  lj_free(cfg);
  lj_free(special);
  lj_free(ctj);
  return st;
}

int32_t lrt_text_init(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n) {
  lrt_text *t = (lrt_text *)calloc(1, sizeof *t);
  if (!t) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
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
