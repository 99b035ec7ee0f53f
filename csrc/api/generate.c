/* text.c -- text in, text out without Python: models opened from memory buffers, chat
 * templates rendered in C, and generation pulled step by step (lrt_session_prompt +
 * lrt_session_step) or pushed to a callback (lrt_generate).
 *
 * Model side (struct lrt_text): everything is computed once in lrt_text_init, while the
 * model is being opened, and only read afterwards, so a model stays shareable across
 * threads. Session side (struct lrt_gen): the state of one generation, owned by a session.
 *
 * Streaming text follows the Python package's StreamDecoder exactly: the text of a small
 * window of ids is decoded with and without the new ids; the difference is new text unless
 * it ends in U+FFFD (a character whose bytes are not all there yet). */
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define SIDE_FILE_MAX (64u << 20) /* tokenizer_config.json, chat_template.*: generous bound */
#define MAX_EOG 64

struct lrt_text {
  char *chat_template; /* NUL-terminated, "" when none */
  size_t chat_template_len;
  int32_t chat_format;  /* detected family, -1 when unknown */
  char *default_system; /* ChatML default system message, NULL when none */
  size_t default_system_len;
  char *bos_text, *eos_text; /* NULL when unknown */
  size_t bos_len, eos_len;
  int32_t eog[MAX_EOG]; /* ids that end a generation */
  int n_eog;
  void **owned; /* buffers copied by lrt_model_open_memory (LRT_OPEN_COPY_BUFFERS) and names */
  size_t n_owned;
};

struct lrt_gen {
  int active, finished;
  int32_t reason;
  int64_t call_limit; /* lrt_generate's max_tokens during the call, else -1 */
  int32_t pending; /* last given token, not evaluated yet; -1 none */
  int64_t pos_mark; /* the session position this generation left it at (detects other calls) */
  int64_t n_prompt, n_generated;
  int32_t *win; /* stream decoder window: win[0..read) already emitted (left context) */
  int64_t n_win, cap_win, read;
  char *pre, *full; /* decode buffers */
  size_t cap_pre, cap_full;
  char *out; /* text given by the last step */
  size_t out_len, out_cap;
  int32_t *ids; /* tokenization buffer */
  int64_t cap_ids;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static char *dup_mem(const void *p, size_t n) {
  char *d = (char *)malloc(n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, p, n);
  d[n] = 0;
  return d;
}

static int has_sub(const char *s, size_t n, const char *sub) {
  size_t k = strlen(sub);
  if (k > n) return 0;
  for (size_t i = 0; i + k <= n; i++)
    if (s[i] == sub[0] && memcmp(s + i, sub, k) == 0) return 1;
  return 0;
}

static int eq(const char *a, size_t an, const char *b) {
  return an == strlen(b) && memcmp(a, b, an) == 0;
}

void lrt_text_free(lrt_text *t) {
  if (!t) return;
  free(t->chat_template);
  free(t->default_system);
  free(t->bos_text);
  free(t->eos_text);
  for (size_t i = 0; i < t->n_owned; i++) free(t->owned[i]);
  free(t->owned);
  free(t);
}

void lrt_gen_free(lrt_gen *g) {
  if (!g) return;
  free(g->win);
  free(g->pre);
  free(g->full);
  free(g->out);
  free(g->ids);
  free(g);
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

/* ---- chat template families -------------------------------------------------------------- */

/* Find a ChatML default system message: a string literal in the template that reads
 * '<|im_start|>system\n...<|im_end|>\n' (Jinja escapes undone). */
static int32_t chatml_default_system(lrt_text *t) {
  const char *s = t->chat_template;
  size_t n = t->chat_template_len;
  static const char key[] = "<|im_start|>system";
  size_t kl = sizeof key - 1;
  int tries = 0;
  for (size_t i = 1; i + kl <= n && tries < 64; i++) { /* bounded work on untrusted templates */
    if (memcmp(s + i, key, kl) != 0) continue;
    tries++;
    char q = s[i - 1];
    if (q != '\'' && q != '"') continue;
    /* decode the literal from i to the closing quote */
    char *buf = (char *)malloc(n - i + 1);
    if (!buf) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    size_t bl = 0, j = i;
    int closed = 0;
    while (j < n) {
      char c = s[j];
      if (c == q) { closed = 1; break; }
      if (c == '\\' && j + 1 < n) {
        char e = s[j + 1];
        buf[bl++] = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        j += 2;
        continue;
      }
      buf[bl++] = c;
      j++;
    }
    static const char head[] = "<|im_start|>system\n", tail[] = "<|im_end|>\n";
    size_t hl = sizeof head - 1, tl = sizeof tail - 1;
    if (closed && bl > hl + tl && memcmp(buf, head, hl) == 0 && memcmp(buf + bl - tl, tail, tl) == 0 &&
        !has_sub(buf + hl, bl - hl - tl, "<|im_")) {
      t->default_system = dup_mem(buf + hl, bl - hl - tl);
      t->default_system_len = bl - hl - tl;
      free(buf);
      return t->default_system ? LRT_OK : lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    free(buf);
  }
  return LRT_OK;
}

/* Which family a template belongs to, by its content. Conservative: a template that
 * renders differently from the family in C (extra bos/eos, a missing <|im_end|>, tool or
 * date headers, ...) is "unknown" (-1) rather than rendered wrong. */
static int32_t detect_family(lrt_text *t) {
  const char *s = t->chat_template;
  size_t n = t->chat_template_len;
  t->chat_format = -1;
  if (n == 0) {
    t->chat_format = LRT_CHAT_CHATML; /* no template: ChatML, as the Python package does */
    return LRT_OK;
  }
  if (has_sub(s, n, "<|im_start|>") && has_sub(s, n, "<|im_end|>")) {
    if (has_sub(s, n, "bos_token") || has_sub(s, n, "eos_token") || has_sub(s, n, "not loop.last")) return LRT_OK;
    t->chat_format = LRT_CHAT_CHATML;
    return chatml_default_system(t);
  }
  if (has_sub(s, n, "<|start_header_id|>") && has_sub(s, n, "<|eot_id|>")) {
    if (has_sub(s, n, "bos_token") && !has_sub(s, n, "Cutting Knowledge") && !has_sub(s, n, "tools"))
      t->chat_format = LRT_CHAT_LLAMA3;
    return LRT_OK;
  }
  if (has_sub(s, n, "bos_token + '[INST] '") && has_sub(s, n, "<<SYS>>")) {
    t->chat_format = LRT_CHAT_LLAMA2;
    return LRT_OK;
  }
  if (has_sub(s, n, "<|user|>") && has_sub(s, n, "<|system|>") && has_sub(s, n, "<|assistant|>") &&
      has_sub(s, n, "eos_token") && !has_sub(s, n, "<|end|>"))
    t->chat_format = LRT_CHAT_ZEPHYR;
  return LRT_OK;
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
    int32_t st = set_text(&t->chat_template, &t->chat_template_len, tmpl->strs[0], (size_t)tmpl->str_lens[0]);
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
  int32_t st = token_text(m, (int32_t)bos, &t->bos_text, &t->bos_len);
  if (st == LRT_OK) st = token_text(m, first_eos, &t->eos_text, &t->eos_len);
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
    else st = set_text(&t->chat_template, &t->chat_template_len, data, len);
    if (owned) free((void *)data);
    if (st) goto done;
  } else {
    const char *tp = NULL;
    size_t tl = 0;
    if ((st = side_json(folder, files, n, "chat_template.json", &ctj))) goto done;
    if (ctj) st = pick_template(lj_get(lj_root(ctj), "chat_template"), "chat_template.json", &tp, &tl);
    else if (cfg) st = pick_template(lj_get(lj_root(cfg), "chat_template"), "tokenizer_config.json", &tp, &tl);
    if (st) goto done;
    if (tp && (st = set_text(&t->chat_template, &t->chat_template_len, tp, tl))) goto done;
  }
  /* bos / eos token texts: tokenizer_config.json, else special_tokens_map.json */
  const lj_value *bos = token_content(cfg ? lj_get(lj_root(cfg), "bos_token") : NULL);
  if (!bos && !(cfg && lj_get(lj_root(cfg), "bos_token") && lj_get(lj_root(cfg), "bos_token")->type != LJ_NULL))
    bos = token_content(special ? lj_get(lj_root(special), "bos_token") : NULL);
  const lj_value *eos = token_content(cfg ? lj_get(lj_root(cfg), "eos_token") : NULL);
  if (!eos && !(cfg && lj_get(lj_root(cfg), "eos_token") && lj_get(lj_root(cfg), "eos_token")->type != LJ_NULL))
    eos = token_content(special ? lj_get(lj_root(special), "eos_token") : NULL);
  if (bos && special_id(m, bos->str, bos->str_len) >= 0 && (st = set_text(&t->bos_text, &t->bos_len, bos->str, bos->str_len)))
    goto done;
  int32_t first_eos = -1;
  if (eos) {
    first_eos = special_id(m, eos->str, eos->str_len);
    add_eog(t, first_eos);
  }
  /* generation_config.json's eos ids are already in the config (m->cfg.eos) */
  if (first_eos < 0 && m->cfg.n_eos > 0) first_eos = m->cfg.eos[0];
  st = token_text(m, first_eos, &t->eos_text, &t->eos_len);
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
  if (!t->chat_template && (st = set_text(&t->chat_template, &t->chat_template_len, "", 0))) return st;
  return detect_family(t);
}

/* ---- public: model facts ------------------------------------------------------------------ */

int32_t lrt_text_chat_template(const lrt_model *m, const char **out, size_t *len) {
  *out = m->text ? m->text->chat_template : "";
  *len = m->text ? m->text->chat_template_len : 0;
  return LRT_OK;
}

int32_t lrt_chat_detect(const lrt_model *m, int32_t *format) {
  if (!m) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "model must not be NULL");
  if (!format) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "format must not be NULL");
  *format = m->text ? m->text->chat_format : LRT_CHAT_CHATML;
  if (*format < 0) {
    *format = LRT_CHAT_MODEL;
    return lrt_err(LRT_ERR_UNSUPPORTED, "the model's chat template is not one of the families loomrt renders in C "
                   "(ChatML, Llama 3, Llama 2 [INST], Zephyr); pass an explicit LRT_CHAT_* format");
  }
  return LRT_OK;
}

/* ---- chat rendering ------------------------------------------------------------------------ */

typedef struct {
  char *out;
  size_t cap, len;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->len < b->cap && b->out) {
    size_t k = b->cap - b->len < n ? b->cap - b->len : n;
    memcpy(b->out + b->len, s, k);
  }
  b->len += n;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* Length of the Unicode white space (Python's str.isspace) at s[0..n), or 0. */
static size_t space_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (n >= 2 && c == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
  if (n >= 3) {
    unsigned cp = 0;
    if ((c & 0xf0) == 0xe0) cp = ((c & 0x0f) << 12) | ((s[1] & 0x3f) << 6) | (s[2] & 0x3f);
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
        cp == 0x205f || cp == 0x3000)
      return 3;
  }
  return 0;
}

/* Python's str.strip(): drop Unicode white space at both ends. */
static void strip(const char **s, size_t *n) {
  const unsigned char *p = (const unsigned char *)*s;
  size_t a = 0, b = *n, k;
  while (a < b && (k = space_len(p + a, b - a))) a += k;
  for (;;) { /* from the right: try 1-, 2- and 3-byte white space ending at b */
    if (b > a && (k = space_len(p + b - 1, 1)) == 1) { b--; continue; }
    if (b >= a + 2 && space_len(p + b - 2, 2) == 2) { b -= 2; continue; }
    if (b >= a + 3 && space_len(p + b - 3, 3) == 3) { b -= 3; continue; }
    break;
  }
  *s = (const char *)p + a;
  *n = b - a;
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
  int own_family = t && t->chat_format == format;
  const char *bos = NULL, *eos = NULL;
  size_t bos_len = 0, eos_len = 0;
  if (t) {
    bos = t->bos_text ? t->bos_text : "";
    bos_len = t->bos_len;
    eos = t->eos_text ? t->eos_text : "";
    eos_len = t->eos_len;
  } else {
    bos = format == LRT_CHAT_LLAMA3 ? "<|begin_of_text|>" : "<s>";
    bos_len = strlen(bos);
    eos = format == LRT_CHAT_LLAMA3 ? "<|eot_id|>" : "</s>";
    eos_len = strlen(eos);
  }
  sbuf b = {out, capacity, 0};
#define ROLE(i) roles[i] ? roles[i] : "", roles_lens[i]
#define CONTENT(i) contents[i] ? contents[i] : "", contents_lens[i]
  switch (format) {
    case LRT_CHAT_CHATML:
      if (own_family && t->default_system && n_msg > 0 && !eq(ROLE(0), "system")) {
        puts_(&b, "<|im_start|>system\n");
        put(&b, t->default_system, t->default_system_len);
        puts_(&b, "<|im_end|>\n");
      }
      for (int64_t i = 0; i < n_msg; i++) {
        puts_(&b, "<|im_start|>");
        put(&b, ROLE(i));
        puts_(&b, "\n");
        put(&b, CONTENT(i));
        puts_(&b, "<|im_end|>\n");
      }
      if (add_gen) puts_(&b, "<|im_start|>assistant\n");
      break;
    case LRT_CHAT_LLAMA3:
      for (int64_t i = 0; i < n_msg; i++) {
        const char *c = contents[i] ? contents[i] : "";
        size_t cl = contents_lens[i];
        strip(&c, &cl);
        if (i == 0) put(&b, bos, bos_len);
        puts_(&b, "<|start_header_id|>");
        put(&b, ROLE(i));
        puts_(&b, "<|end_header_id|>\n\n");
        put(&b, c, cl);
        puts_(&b, "<|eot_id|>");
      }
      if (add_gen) puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;
    case LRT_CHAT_LLAMA2: {
      int64_t first = 0;
      const char *sys = NULL;
      size_t sys_len = 0;
      if (n_msg > 0 && eq(ROLE(0), "system")) {
        sys = contents[0] ? contents[0] : "";
        sys_len = contents_lens[0];
        first = 1;
      }
      for (int64_t i = first; i < n_msg; i++) {
        int is_user = eq(ROLE(i), "user");
        if (is_user != ((i - first) % 2 == 0))
          return lrt_err(LRT_ERR_INVALID_ARGUMENT, "Llama 2 chat: conversation roles must alternate user/assistant/user/assistant/... "
                         "(after an optional first system message)");
        if (is_user) {
          put(&b, bos, bos_len);
          puts_(&b, "[INST] ");
          if (i == first && sys) { /* "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content, stripped */
            const char *c = contents[i] ? contents[i] : "";
            size_t cl = contents_lens[i];
            /* the joined string starts with "<<SYS>>": only its end can be stripped */
            const char *end_c = c;
            size_t end_l = cl;
            strip(&end_c, &end_l);
            if (end_l == 0) { /* content all white space: strip reaches into the system part */
              char *joined = (char *)malloc(sys_len + 20);
              if (!joined) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
              size_t jl = 0;
              memcpy(joined, "<<SYS>>\n", 8); jl = 8;
              memcpy(joined + jl, sys, sys_len); jl += sys_len;
              memcpy(joined + jl, "\n<</SYS>>\n\n", 11); jl += 11;
              const char *js = joined;
              strip(&js, &jl);
              put(&b, js, jl);
              free(joined);
            } else {
              size_t keep = (size_t)(end_c - c) + end_l; /* strip the end only */
              puts_(&b, "<<SYS>>\n");
              put(&b, sys, sys_len);
              puts_(&b, "\n<</SYS>>\n\n");
              put(&b, c, keep);
            }
          } else {
            const char *c = contents[i] ? contents[i] : "";
            size_t cl = contents_lens[i];
            strip(&c, &cl);
            put(&b, c, cl);
          }
          puts_(&b, " [/INST]");
        } else if (eq(ROLE(i), "assistant")) {
          const char *c = contents[i] ? contents[i] : "";
          size_t cl = contents_lens[i];
          strip(&c, &cl);
          puts_(&b, " ");
          put(&b, c, cl);
          puts_(&b, " ");
          put(&b, eos, eos_len);
        }
      }
      break;
    }
    case LRT_CHAT_ZEPHYR:
      for (int64_t i = 0; i < n_msg; i++) {
        if (eq(ROLE(i), "user") || eq(ROLE(i), "system") || eq(ROLE(i), "assistant")) {
          puts_(&b, "<|");
          put(&b, ROLE(i));
          puts_(&b, "|>\n");
          put(&b, CONTENT(i));
          put(&b, eos, eos_len);
          puts_(&b, "\n");
        }
        if (i == n_msg - 1 && add_gen) puts_(&b, "<|assistant|>\n");
      }
      break;
  }
#undef ROLE
#undef CONTENT
  *out_len = b.len;
  if (b.len > capacity)
    return lrt_err(LRT_ERR_BUFFER_TOO_SMALL, "the rendered chat needs %zu bytes but the buffer holds %zu", b.len, capacity);
  return LRT_OK;
}

/* ---- generation ------------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 1;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

void lrt_gen_stop(lrt_session *s) {
  if (s && s->gen) {
    s->gen->active = 0;
    s->gen->pending = -1;
    s->gen->n_win = s->gen->read = 0;
  }
}

static int32_t gen_get(lrt_session *s, lrt_gen **out) {
  if (!s->gen) {
    s->gen = (lrt_gen *)calloc(1, sizeof(lrt_gen));
    if (!s->gen) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    s->gen->pending = -1;
    s->gen->call_limit = -1;
  }
  *out = s->gen;
  return LRT_OK;
}

/* Detokenize ids into *buf (grown as needed). */
static int32_t detok(const lrt_model *m, const int32_t *ids, int64_t n, char **buf, size_t *cap, size_t *len) {
  *len = 0;
  if (n == 0) return LRT_OK;
  for (int tries = 0; tries < 2; tries++) {
    size_t need = 0;
    int32_t st = lrt_detokenize(m, ids, n, 0, *buf, *cap, &need);
    if (st == LRT_OK) {
      *len = need;
      return LRT_OK;
    }
    if (st != LRT_ERR_BUFFER_TOO_SMALL) return st;
    if (!grow((void **)buf, cap, need + 1, 1)) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  }
  return lrt_err(LRT_ERR_INTERNAL, "detokenize did not settle on a length");
}

static int ends_with_replacement(const char *s, size_t n) {
  return n >= 3 && (unsigned char)s[n - 3] == 0xEF && (unsigned char)s[n - 2] == 0xBF && (unsigned char)s[n - 1] == 0xBD;
}

static int32_t set_out(lrt_gen *g, const char *s, size_t n) {
  if (!grow((void **)&g->out, &g->out_cap, n + 1, 1)) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (n) memcpy(g->out, s, n);
  g->out[n] = 0;
  g->out_len = n;
  return LRT_OK;
}

/* Window texts: prefix = decode(win[0..read)), full = decode(win). */
static int32_t window(const lrt_model *m, lrt_gen *g, size_t *pre_len, size_t *full_len) {
  int32_t st = detok(m, g->win, g->read, &g->pre, &g->cap_pre, pre_len);
  if (st == LRT_OK) st = detok(m, g->win, g->n_win, &g->full, &g->cap_full, full_len);
  return st;
}

/* StreamDecoder.add: append a token, set g->out to the newly completed text. */
static int32_t decode_add(lrt_session *s, lrt_gen *g, int32_t tok) {
  g->out_len = 0;
  const char *tb;
  size_t tbl;
  int32_t has = 0;
  if (lrt_model_has_tokenizer(s->m, &has) != LRT_OK || !has) return set_out(g, "", 0);
  if (lrt_token_bytes(s->m, tok, &tb, &tbl) != LRT_OK) { /* beyond the tokenizer (padded rows): no text */
    lrt_err_clear();
    return set_out(g, "", 0);
  }
  if (!grow((void **)&g->win, (size_t *)&g->cap_win, (size_t)g->n_win + 1, sizeof(int32_t)))
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
  g->win[g->n_win++] = tok;
  size_t pl, fl;
  int32_t st = window(s->m, g, &pl, &fl);
  if (st) return st;
  if (ends_with_replacement(g->full, fl) || fl <= pl) return set_out(g, "", 0);
  memmove(g->win, g->win + g->read, (size_t)(g->n_win - g->read) * sizeof(int32_t));
  g->n_win -= g->read;
  g->read = g->n_win;
  return set_out(g, g->full + pl, fl - pl);
}

/* StreamDecoder.flush: the held-back text (dangling bytes as U+FFFD); resets the window. */
static int32_t decode_flush(lrt_session *s, lrt_gen *g) {
  size_t pl = 0, fl = 0;
  int32_t st = LRT_OK;
  if (g->n_win > g->read) st = window(s->m, g, &pl, &fl);
  g->n_win = g->read = 0;
  if (st) return st;
  return set_out(g, fl > pl ? g->full + pl : "", fl > pl ? fl - pl : 0);
}

static int is_eog(const lrt_model *m, int32_t tok) {
  const lrt_text *t = m->text;
  if (!t) return 0;
  for (int i = 0; i < t->n_eog; i++)
    if (t->eog[i] == tok) return 1;
  return 0;
}

int32_t lrt_session_prompt_tokens(lrt_session *s, const int32_t *ids, int64_t n, int32_t flags) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  if (!ids) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "ids must not be NULL");
  if (n < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is empty: give at least one token");
  if (flags & ~(LRT_PROMPT_ADD_SPECIAL | LRT_PROMPT_PARSE_SPECIAL | LRT_PROMPT_KEEP))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown prompt flags 0x%x", (unsigned)flags);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= s->m->cfg.vocab)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token id %d at index %lld is outside the vocabulary [0, %lld)", ids[i],
                     (long long)i, (long long)s->m->cfg.vocab);
  lrt_gen *g = NULL;
  int32_t st = gen_get(s, &g);
  if (st) return st;
  int keep = (flags & LRT_PROMPT_KEEP) != 0;
  int carry = keep && g->active && g->pending >= 0 && g->pos_mark == s->pos;
  int64_t base = keep ? s->pos : 0;
  if (base + carry + n > s->ctx)
    return lrt_err(LRT_ERR_CONTEXT_FULL, "the prompt has %lld tokens but the context holds %lld (%lld in use); "
                   "shorten the prompt or create the session with a larger context",
                   (long long)n, (long long)s->ctx, (long long)base);
  g->active = 0;
  g->finished = 0;
  g->reason = LRT_FINISH_NONE;
  g->n_win = g->read = 0;
  g->out_len = 0;
  g->n_generated = 0;
  g->n_prompt = n;
  if (!keep && (st = lrt_session_reset(s))) return st;
  if (carry) {
    int32_t p = g->pending;
    g->pending = -1;
    if ((st = lrt_session_eval(s, &p, 1, 0))) return st;
  }
  g->pending = -1;
  if ((st = lrt_session_eval(s, ids, n, 0))) return st;
  g->active = 1;
  g->pos_mark = s->pos;
  return LRT_OK;
}

int32_t lrt_session_prompt(lrt_session *s, const char *text, size_t len, int32_t flags) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  if (!text && len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "text must not be NULL");
  if (len == 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is empty: give some text to continue");
  if (!lrt_utf8_valid(text, len)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt is not valid UTF-8");
  int32_t has = 0;
  int32_t st = lrt_model_has_tokenizer(s->m, &has);
  if (st) return st;
  if (!has) { /* the tokenizer says why (absent, or present but unusable) */
    int64_t n0 = 0;
    st = lrt_tokenize(s->m, text, len, 0, NULL, 0, &n0);
    if (st == LRT_ERR_STATE) st = LRT_ERR_NOT_FOUND; /* absent */
    return lrt_err_prefix(st ? st : LRT_ERR_NOT_FOUND, "lrt_session_prompt: give token ids with lrt_session_prompt_tokens");
  }
  lrt_gen *g = NULL;
  if ((st = gen_get(s, &g))) return st;
  int32_t tf = 0;
  if (flags & LRT_PROMPT_ADD_SPECIAL) tf |= LRT_TOKENIZE_ADD_SPECIAL;
  if (flags & LRT_PROMPT_PARSE_SPECIAL) tf |= LRT_TOKENIZE_PARSE_SPECIAL;
  int64_t n = 0;
  for (int tries = 0; tries < 2; tries++) {
    st = lrt_tokenize(s->m, text, len, tf, g->ids, g->cap_ids, &n);
    if (st == LRT_OK) break;
    if (st != LRT_ERR_BUFFER_TOO_SMALL) return st;
    size_t cap = (size_t)g->cap_ids;
    if (n < 1 || !grow((void **)&g->ids, &cap, (size_t)n, sizeof(int32_t)))
      return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory");
    g->cap_ids = (int64_t)cap;
  }
  if (st) return st;
  if (n < 1) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "the prompt gives no tokens");
  return lrt_session_prompt_tokens(s, g->ids, n, flags);
}

static int32_t finish(lrt_session *s, lrt_gen *g, int32_t reason, int32_t *token, const char **text, size_t *len) {
  g->finished = 1;
  g->reason = reason;
  int32_t st = decode_flush(s, g);
  *token = -1;
  *text = g->out;
  *len = g->out_len;
  return st;
}

int32_t lrt_session_step(lrt_session *s, int32_t *token, const char **text, size_t *text_len) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  if (!token || !text || !text_len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "token, text and text_len must not be NULL");
  *token = -1;
  *text = "";
  *text_len = 0;
  lrt_gen *g = s->gen;
  if (!g || !g->active) return lrt_err(LRT_ERR_STATE, "no generation: call lrt_session_prompt first");
  if (g->finished) return LRT_OK;
  if (g->pos_mark != s->pos) {
    g->active = 0;
    return lrt_err(LRT_ERR_STATE, "the session's tokens changed since the last step (eval, reset, truncate or a "
                   "loaded state): call lrt_session_prompt again");
  }
  int32_t st;
  if ((s->max_tokens >= 0 && g->n_generated >= s->max_tokens) || (g->call_limit >= 0 && g->n_generated >= g->call_limit))
    return finish(s, g, LRT_FINISH_LENGTH, token, text, text_len);
  if (g->pending >= 0) {
    if (s->pos >= s->ctx) return finish(s, g, LRT_FINISH_CONTEXT, token, text, text_len);
    int32_t p = g->pending;
    if ((st = lrt_session_eval(s, &p, 1, 0))) return st;
    g->pending = -1;
    g->pos_mark = s->pos;
  }
  int32_t tok;
  if ((st = lrt_session_sample(s, &tok))) return st;
  if (is_eog(s->m, tok)) return finish(s, g, LRT_FINISH_EOS, token, text, text_len);
  g->n_generated++;
  g->pending = tok;
  if ((st = decode_add(s, g, tok))) return st;
  *token = tok;
  *text = g->out;
  *text_len = g->out_len;
  return LRT_OK;
}

int32_t lrt_session_get_int(const lrt_session *s, int32_t key, int64_t *out) {
  if (!s) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "session must not be NULL");
  if (!out) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "out must not be NULL");
  const lrt_gen *g = s->gen;
  switch (key) {
    case LRT_SESSION_FINISH_REASON: *out = g ? g->reason : LRT_FINISH_NONE; return LRT_OK;
    case LRT_SESSION_PROMPT_TOKENS: *out = g ? g->n_prompt : 0; return LRT_OK;
    case LRT_SESSION_GENERATED_TOKENS: *out = g ? g->n_generated : 0; return LRT_OK;
    default: return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown session info key %d", key);
  }
}

int32_t lrt_generate(lrt_session *s, const char *text, size_t len, int32_t flags, int64_t max_tokens,
                     lrt_token_callback cb, void *user_data) {
  if (max_tokens < 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "max_tokens must be >= 0, got %lld", (long long)max_tokens);
  int32_t st = lrt_session_prompt(s, text, len, flags);
  if (st) return st;
  lrt_gen *g = s->gen;
  g->call_limit = max_tokens;
  for (;;) {
    int32_t tok;
    const char *piece;
    size_t plen;
    if ((st = lrt_session_step(s, &tok, &piece, &plen))) break;
    if (tok < 0) {
      if (cb && plen) cb(user_data, -1, piece, plen);
      break;
    }
    if (cb && cb(user_data, tok, piece, plen) != 0) {
      g->finished = 1;
      g->reason = LRT_FINISH_CALLBACK;
      g->n_win = g->read = 0;
      break;
    }
  }
  g->call_limit = -1;
  return st;
}

/* ---- opening from memory ----------------------------------------------------------------- */

int32_t lrt_model_open_memory(int64_t n_files, const char *const *names, const size_t *names_lens,
                              const void *const *data, const size_t *sizes, int32_t flags, lrt_model **out) {
  if (!out) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "out must not be NULL");
  *out = NULL;
  if (n_files < 1 || n_files > 65536) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "n_files must be in [1, 65536]");
  if (!names || !names_lens || !data || !sizes)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "names, names_lens, data and sizes must not be NULL");
  if (flags & ~(LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS | LRT_OPEN_COPY_BUFFERS | LRT_OPEN_QUANTIZE_Q8_0 | LRT_OPEN_INT8_ACTIVATIONS))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown open flags 0x%x", (unsigned)flags);
  for (int64_t i = 0; i < n_files; i++) {
    if (!names[i] || names_lens[i] == 0 || names_lens[i] > 1024)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "file %lld: the name must be 1 to 1024 bytes", (long long)i);
    if (memchr(names[i], 0, names_lens[i]) || !lrt_utf8_valid(names[i], names_lens[i]))
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "file %lld: the name must be UTF-8 without NUL bytes", (long long)i);
    if (!data[i] && sizes[i]) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "file %lld: NULL data with a non-zero size", (long long)i);
  }
  size_t n = (size_t)n_files;
  lrt_vfile *vf = (lrt_vfile *)calloc(n, sizeof *vf);
  void **owned = (void **)calloc(2 * n, sizeof(void *));
  size_t n_owned = 0;
  int32_t st = LRT_OK;
  if (!vf || !owned) { st = lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
  for (size_t i = 0; i < n; i++) {
    char *nm = dup_mem(names[i], names_lens[i]);
    if (!nm) { st = lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
    owned[n_owned++] = nm;
    vf[i].name = nm;
    vf[i].size = sizes[i];
    vf[i].data = (const uint8_t *)data[i];
    if (flags & LRT_OPEN_COPY_BUFFERS) {
      void *c = malloc(sizes[i] ? sizes[i] : 1);
      if (!c) { st = lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory copying %s (%zu bytes)", nm, sizes[i]); goto fail; }
      if (sizes[i]) memcpy(c, data[i], sizes[i]);
      owned[n_owned++] = c;
      vf[i].data = (const uint8_t *)c;
    }
  }
  lrt_err_clear();
  lrt_fpenv env;
  lrt_fpenv_enter(&env);
  lrt_model *m = NULL;
  st = lrt_model_load_memory(vf, n, flags & LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS, &m);
  lrt_fpenv_leave(&env);
  if (st) goto fail;
  m->text->owned = owned;
  m->text->n_owned = n_owned;
  free(vf);
  *out = m;
  return LRT_OK;
fail:
  for (size_t i = 0; i < n_owned; i++) free(owned[i]);
  free(owned);
  free(vf);
  return st;
}
