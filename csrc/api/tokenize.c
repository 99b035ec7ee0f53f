/* tokenize.c -- the model's tokenizer: attached at open (tokenizer.json of the folder or of
 * the files given, or the GGUF metadata) and the public lrt_tokenize / lrt_detokenize /
 * lrt_token_bytes / lrt_model_has_tokenizer. The tokenizer itself is text/tok_*.c (see
 * text/tok_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../text/tokenizer.h"
#include "api_internal.h"

void lrt_model_attach_tokenizer(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n_files) {
  int32_t st;
  lrt_tokenizer *t = NULL;
  m->tok = NULL;
  m->tok_status = LRT_ERR_NOT_FOUND;
  if (m->is_gguf) {
    st = lrt_tok_from_gguf(&m->gguf, &t);
    if (st == LRT_ERR_NOT_FOUND) {
      snprintf(m->tok_msg, sizeof m->tok_msg, "the model has no tokenizer (the GGUF file has no tokenizer.ggml.* metadata)");
      lrt_err_clear();
      return;
    }
  } else if (folder) {
    size_t pl = strlen(folder);
    char *fp = (char *)malloc(pl + 32);
    if (!fp) { m->tok_status = LRT_ERR_OUT_OF_MEMORY; snprintf(m->tok_msg, sizeof m->tok_msg, "out of memory"); return; }
    snprintf(fp, pl + 32, "%s/tokenizer.json", folder);
    if (!lrt_is_file(fp)) {
      free(fp);
      snprintf(m->tok_msg, sizeof m->tok_msg, "the model has no tokenizer (no tokenizer.json in the model folder)");
      return;
    }
    char *text = NULL;
    size_t len = 0;
    st = lrt_read_file(fp, LRT_TOK_JSON_MAX, &text, &len);
    free(fp);
    if (!st) st = lrt_tok_from_json(text, len, "tokenizer.json", &t);
    free(text);
  } else {
    const lrt_vfile *f = lrt_vfile_find(files, n_files, "tokenizer.json");
    if (!f) {
      snprintf(m->tok_msg, sizeof m->tok_msg, "the model has no tokenizer (no \"tokenizer.json\" among the files given)");
      return;
    }
    st = f->size > LRT_TOK_JSON_MAX ? lrt_err(LRT_ERR_FORMAT, "tokenizer.json is too large")
                                : lrt_tok_from_json((const char *)f->data, f->size, "tokenizer.json", &t);
  }
  if (st) {
    m->tok_status = st;
    snprintf(m->tok_msg, sizeof m->tok_msg, "the model's tokenizer could not be loaded: %s", lrt_last_error());
    lrt_err_clear();
    return;
  }
  m->tok = t;
  m->tok_status = LRT_OK;
  m->tok_msg[0] = 0;
}

static int32_t need_tok(const lrt_model *model, const char *fn) {
  if (!model) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
  if (!model->tok) return lrt_err(model->tok_status ? model->tok_status : LRT_ERR_NOT_FOUND, "%s: %s", fn, model->tok_msg);
  return LRT_OK;
}

int32_t lrt_model_has_tokenizer(const lrt_model *model, int32_t *out) {
  if (!model || !out) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_model_has_tokenizer: NULL argument");
  *out = model->tok != NULL;
  return LRT_OK;
}

int32_t lrt_tokenize(const lrt_model *model, const char *text, size_t text_len, int32_t flags, int32_t *ids,
                     int64_t capacity, int64_t *n_ids) {
  if (n_ids) *n_ids = 0;
  int32_t st = need_tok(model, "lrt_tokenize");
  if (st) return st;
  int add_bos, add_eos;
  int32_t bos, eos;
  if (!(flags & LRT_TOKENIZE_ADD_SPECIAL) || !lrt_text_special_policy(model->text, &add_bos, &add_eos, &bos, &eos))
    return lrt_tok_encode(model->tok, text, text_len, flags, ids, capacity, n_ids);
  /* tokenizer_config.json's add_bos_token / add_eos_token replace the post-processor: the
   * text's ids go after the bos slot, then the eos */
  if (capacity < 0 || (!ids && capacity > 0) || !n_ids)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_tokenize: NULL argument or negative capacity");
  int64_t pre = add_bos ? 1 : 0, n = 0;
  st = lrt_tok_encode(model->tok, text, text_len, flags & ~LRT_TOKENIZE_ADD_SPECIAL, capacity > pre ? ids + pre : NULL,
                      capacity > pre ? capacity - pre : 0, &n);
  if (st && st != LRT_ERR_BUFFER_TOO_SMALL) return st;
  int64_t total = pre + n + (add_eos ? 1 : 0);
  *n_ids = total;
  if (add_bos && capacity > 0) ids[0] = bos;
  if (total > capacity)
    return lrt_err(LRT_ERR_BUFFER_TOO_SMALL, "lrt_tokenize: %lld ids do not fit in capacity %lld", (long long)total,
                   (long long)capacity);
  if (add_eos) ids[total - 1] = eos;
  return LRT_OK;
}

int32_t lrt_token_text(const lrt_model *model, int32_t id, const char **text, size_t *len) {
  if (!text || !len) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_text: NULL argument");
  *text = "";
  *len = 0;
  int32_t st = need_tok(model, "lrt_token_text");
  if (st) return st;
  if (id < 0 || id >= lrt_tok_size(model->tok))
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_text: token id %d is out of range [0, %lld)", (int)id,
                   (long long)lrt_tok_size(model->tok));
  if (!lrt_tok_id_text(model->tok, id, text, len))
    return lrt_err(LRT_ERR_NOT_FOUND, "lrt_token_text: token id %d is not assigned in this vocabulary", (int)id);
  return LRT_OK;
}

int32_t lrt_token_id(const lrt_model *model, const char *text, size_t len, int32_t *id) {
  if (!id || (!text && len)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_id: NULL argument");
  *id = -1;
  int32_t st = need_tok(model, "lrt_token_id");
  if (st) return st;
  *id = lrt_tok_text_id(model->tok, text ? text : "", len);
  if (*id < 0)
    return lrt_err(LRT_ERR_NOT_FOUND, "lrt_token_id: no token has the text \"%.*s\"", (int)(len > 80 ? 80 : len),
                   text ? text : "");
  return LRT_OK;
}

int32_t lrt_detokenize(const lrt_model *model, const int32_t *ids, int64_t n, int32_t flags, char *text,
                       size_t capacity, size_t *text_len) {
  if (text_len) *text_len = 0;
  int32_t st = need_tok(model, "lrt_detokenize");
  if (st) return st;
  int64_t limit = model->cfg.vocab > lrt_tok_size(model->tok) ? model->cfg.vocab : lrt_tok_size(model->tok);
  for (int64_t i = 0; ids && i < n; i++)
    if (ids[i] >= limit)
      return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_detokenize: token id %d is out of range [0, %lld)", (int)ids[i],
                     (long long)limit);
  return lrt_tok_decode(model->tok, ids, n, flags, text, capacity, text_len);
}

int32_t lrt_token_bytes(const lrt_model *model, int32_t id, const char **bytes, size_t *len) {
  int32_t st = need_tok(model, "lrt_token_bytes");
  if (st) return st;
  int64_t limit = model->cfg.vocab > lrt_tok_size(model->tok) ? model->cfg.vocab : lrt_tok_size(model->tok);
  if (id >= limit)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "lrt_token_bytes: token id %d is out of range [0, %lld)", (int)id,
                   (long long)limit);
  return lrt_tok_token_bytes(model->tok, id, bytes, len);
}
