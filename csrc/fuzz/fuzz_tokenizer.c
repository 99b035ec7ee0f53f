/* fuzz_tokenizer.c -- the tokenizer.json loader (lrt_tok_from_json); an accepted tokenizer is
 * used to encode and decode fixed texts and the input bytes themselves. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = fz_copy(data, size);
  if (!buf) return 0;
  lrt_tokenizer *tok = NULL;
  if (lrt_tok_from_json((const char *)buf, size, "fuzz tokenizer.json", &tok) == LRT_OK) {
    size_t n = size < 256 ? size : 256;
    fz_exercise_tokenizer(tok, lrt_utf8_valid((const char *)buf, n) ? buf : NULL, n);
    lrt_tok_free(tok);
  } else if (tok != NULL || lrt_last_error()[0] == '\0') {
    abort();
  }
  free(buf);
  return 0;
}
