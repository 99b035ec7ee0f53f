/* tokenizer.h -- the C tokenizer: loading from tokenizer.json or GGUF metadata, encoding and
 * decoding. Internal to loomrt; the public functions are lrt_tokenize / lrt_detokenize /
 * lrt_token_bytes / lrt_model_has_tokenizer. Implemented by the tok_*.c files of this folder,
 * one per pipeline stage (map and shared internals: tok_internal.h). */
#ifndef LOOMRT_TOKENIZER_H
#define LOOMRT_TOKENIZER_H

#include "../formats/formats.h"

typedef struct lrt_tokenizer lrt_tokenizer;

/* Largest tokenizer.json accepted. */
#define LRT_TOK_JSON_MAX ((uint64_t)512 << 20)

/* Parse a HuggingFace tokenizer.json held in memory. `what` names it in messages.
 * Errors: LRT_ERR_FORMAT (malformed), LRT_ERR_UNSUPPORTED (a component loomrt does not
 * implement), LRT_ERR_OUT_OF_MEMORY. */
int32_t lrt_tok_from_json(const char *text, size_t len, const char *what, lrt_tokenizer **out);
/* Build the tokenizer described by GGUF tokenizer.ggml.* metadata (the same one
 * loomrt/tokenizer.py builds, i.e. llama.cpp's). LRT_ERR_NOT_FOUND when the file has no
 * tokenizer metadata. */
int32_t lrt_tok_from_gguf(const lrt_gguf_file *g, lrt_tokenizer **out);
void lrt_tok_free(lrt_tokenizer *t);

/* Number of ids (highest assigned id + 1). */
int64_t lrt_tok_size(const lrt_tokenizer *t);
/* flags: LRT_TOKENIZE_*. Same contract as lrt_tokenize. */
int32_t lrt_tok_encode(const lrt_tokenizer *t, const char *text, size_t len, int32_t flags,
                       int32_t *ids, int64_t capacity, int64_t *n_ids);
/* Same contract as lrt_detokenize; ids >= lrt_tok_size are skipped (no text). */
int32_t lrt_tok_decode(const lrt_tokenizer *t, const int32_t *ids, int64_t n, int32_t flags,
                       char *text, size_t capacity, size_t *text_len);
int32_t lrt_tok_token_bytes(const lrt_tokenizer *t, int32_t id, const char **bytes, size_t *len);
/* Vocabulary text of id, as tokenizers' id_to_token: the content of the added token that
 * owns it (normalized when that token is), else the model vocabulary entry. Returns 0 when
 * the id is not assigned. */
int lrt_tok_id_text(const lrt_tokenizer *t, int32_t id, const char **s, size_t *n);
/* Id of a vocabulary text: added tokens first, then the model vocabulary; -1 when none. */
int32_t lrt_tok_text_id(const lrt_tokenizer *t, const char *s, size_t n);

#endif
