/* api_internal.h -- shared by the files of the top layer (csrc/api/): what is attached to a
 * model at open (tokenizer, text side) and the generation state of a session. Not part of the
 * public API; lower layers never include it. */
#ifndef LOOMRT_API_INTERNAL_H
#define LOOMRT_API_INTERNAL_H

#include "../model/model.h"

/* ---- open / close (api.c) --------------------------------------------------------------- */

/* Attach the tokenizer and the text side to a model the model layer has just loaded
 * (folder: the HF folder, or NULL with files/n_files for memory files; GGUF models read
 * their metadata). On failure the model is closed. */
int32_t lrt_model_attach(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n_files);
/* Free a model and what api/ attached to it (lrt_model_close). */
void lrt_model_destroy(lrt_model *m);

/* ---- sessions (api.c) ----------------------------------------------------------------------- */

/* The bodies of the exported functions of the same name, without lrt_session_enter /
 * lrt_session_leave: for the library's own calls while it is inside the session already. */
int32_t lrt_session_reset_in(lrt_session *s);
int32_t lrt_session_set_float_in(lrt_session *s, int32_t param, double v);
int32_t lrt_session_set_int_in(lrt_session *s, int32_t param, int64_t v);
int32_t lrt_session_sample_in(lrt_session *s, int32_t *token);

/* ---- tokenizer (tokenize.c) --------------------------------------------------------------- */

/* Attach the model's tokenizer. Never fails the open: a missing or unusable tokenizer is
 * recorded in m->tok_status / m->tok_msg and reported by lrt_tokenize. */
void lrt_model_attach_tokenizer(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n_files);

/* ---- text side of a model (model_text.c) -------------------------------------------------- */

/* Chat template, bos/eos texts, end-of-generation ids: filled once at open, read-only after. */
typedef struct lrt_text lrt_text;
int32_t lrt_text_init(lrt_model *m, const char *folder, const lrt_vfile *files, size_t n_files);
void lrt_text_free(lrt_text *t);
/* Give the text side buffers to free last (lrt_model_open_memory's copies). */
void lrt_text_own(lrt_text *t, void **owned, size_t n_owned);
/* 1 when tok ends a generation. */
int lrt_text_is_eog(const lrt_text *t, int32_t tok);
/* The ids that end a generation (count, i-th), and the tokenizer's bos (which 0) / eos
 * (which 1) id, -1 when none. t may be NULL. */
int64_t lrt_text_eog_count(const lrt_text *t);
int32_t lrt_text_eog(const lrt_text *t, int64_t i);
int32_t lrt_text_token(const lrt_text *t, int which);
/* 1 when tokenizer_config.json's add_bos_token / add_eos_token replace the post-processor;
 * then what to add around the text's ids. */
int lrt_text_special_policy(const lrt_text *t, int *add_bos, int *add_eos, int32_t *bos, int32_t *eos);
/* The model's chat template source (NUL-terminated, "" when none). */
int32_t lrt_text_chat_template(const lrt_model *m, const char **out, size_t *len);

/* ---- the gate's shared checks (api.c, train_api.c, and every later exported file) ---------- */

/* Every exported function that computes enters through GUARD_ENTER and returns through
 * GUARD_RETURN, so a host's flush-to-zero or rounding-mode setting never reaches the numerics. */
#define GUARD_ENTER \
  lrt_fpenv fpenv_; \
  lrt_fpenv_enter(&fpenv_)
#define GUARD_RETURN(x) \
  do { int32_t r_ = (x); lrt_fpenv_leave(&fpenv_); return r_; } while (0)
#define CHECK_PTR(p, name) \
  if (!(p)) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s must not be NULL", name)

/* A caller's thread count: [0, 1024], 0 = the physical cores (replaced by their number). */
static inline int32_t lrt_api_threads(int32_t *threads) {
  if (*threads < 0 || *threads > 1024)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "threads must be in [0, 1024] (0 = the physical cores)");
  if (*threads == 0) *threads = lrt_physical_cores();
  return LRT_OK;
}

/* ---- generation (generate.c) -------------------------------------------------------------- */

typedef struct lrt_gen lrt_gen;
void lrt_gen_free(lrt_gen *g);
/* End the session's pull generation (if any): the next lrt_session_step fails with
 * LRT_ERR_STATE until a new prompt. For code that replaces a session's tokens. */
void lrt_gen_stop(lrt_session *s);
/* A stream decoder of its own for other generators (the weave): the text of each token as
 * lrt_session_step gives it, decoded with the model of session s (which is not changed). */
int32_t lrt_gen_decoder_new(lrt_gen **out);
void lrt_gen_decoder_reset(lrt_gen *g);
int32_t lrt_gen_decoder_add(lrt_session *s, lrt_gen *g, int32_t tok, const char **text, size_t *len);
int32_t lrt_gen_decoder_flush(lrt_session *s, lrt_gen *g, const char **text, size_t *len);

#endif
