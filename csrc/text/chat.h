/* chat.h -- chat templates rendered in C (chat.c). Internal; the public functions are
 * lrt_chat_detect and lrt_chat_apply (api/model_text.c). */
#ifndef LOOMRT_CHAT_H
#define LOOMRT_CHAT_H

#include "../base/base.h"

/* What rendering needs to know of a model's chat template. Strings are owned (malloc),
 * NUL-terminated; NULL when unknown. */
typedef struct lrt_chat_info {
  char *chat_template; /* "" when the model has none */
  size_t chat_template_len;
  int32_t chat_format;  /* detected family (LRT_CHAT_*), -1 when unknown */
  char *default_system; /* ChatML default system message, NULL when none */
  size_t default_system_len;
  char *bos_text, *eos_text;
  size_t bos_len, eos_len;
} lrt_chat_info;

/* Set t->chat_format (and t->default_system for ChatML) from t->chat_template. Conservative:
 * a template that renders differently from the family in C is "unknown" (-1). */
int32_t lrt_chat_detect_family(lrt_chat_info *t);
void lrt_chat_info_free(lrt_chat_info *t);

/* Render a conversation in `format` (a family, not LRT_CHAT_MODEL; arguments checked by the
 * caller). t: the model's facts, or NULL for the family's usual bos/eos texts. The output
 * contract is lrt_chat_apply's (LRT_ERR_BUFFER_TOO_SMALL with *out_len = bytes needed). */
int32_t lrt_chat_render(const lrt_chat_info *t, int32_t format, int64_t n_msg, const char *const *roles,
                        const size_t *roles_lens, const char *const *contents, const size_t *contents_lens,
                        int32_t add_gen, char *out, size_t capacity, size_t *out_len);

#endif
