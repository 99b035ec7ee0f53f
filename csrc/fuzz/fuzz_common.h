/* fuzz_common.h -- helpers shared by the libFuzzer harnesses. */
#ifndef LOOMRT_FUZZ_COMMON_H
#define LOOMRT_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/formats.h"
#include "../text/tokenizer.h"

/* A private heap copy of the input, so reading one byte past the end is an ASan error even
 * when libFuzzer's own buffer would allow it, and text parsers never see a terminator. */
static inline uint8_t *fz_copy(const uint8_t *data, size_t size) {
  uint8_t *p = (uint8_t *)malloc(size ? size : 1);
  if (p && size) memcpy(p, data, size);
  return p;
}

/* Exercise an accepted tokenizer: encode texts through every code path (plain, special
 * tokens, odd bytes), decode the ids back, and ask for every token's bytes. */
static inline void fz_exercise_tokenizer(const lrt_tokenizer *t, const uint8_t *extra, size_t extra_len) {
  static const char *texts[] = {
      "Hello, world! It's 2024.", "  two  spaces\tand\r\nCRLF\n\n", "<|im_start|>user\nhi<|im_end|>",
      "\xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 12345", "",
  };
  int32_t ids[512];
  char out[2048];
  for (size_t i = 0; i < sizeof texts / sizeof texts[0] + 1; i++) {
    const char *s = i < sizeof texts / sizeof texts[0] ? texts[i] : (const char *)extra;
    size_t n = i < sizeof texts / sizeof texts[0] ? strlen(texts[i]) : extra_len;
    if (!s) continue;
    for (int32_t flags = 0; flags < 4; flags++) {
      int64_t n_ids = 0;
      int32_t st = lrt_tok_encode(t, s, n, flags, ids, 512, &n_ids);
      if (st != LRT_OK && st != LRT_ERR_BUFFER_TOO_SMALL) continue;
      int64_t m = n_ids < 512 ? n_ids : 512;
      size_t len = 0;
      (void)lrt_tok_decode(t, ids, m, flags & 1, out, sizeof out, &len);
      (void)lrt_tok_decode(t, ids, m, 0, NULL, 0, &len);
    }
  }
  int64_t size = lrt_tok_size(t);
  for (int64_t id = -1; id <= size && id < 4096; id++) {
    const char *b;
    size_t len;
    (void)lrt_tok_token_bytes(t, (int32_t)id, &b, &len);
  }
  int32_t odd[] = {0, 1, 2, 3, (int32_t)size - 1, (int32_t)size, -1, 257, 65535};
  size_t len = 0;
  (void)lrt_tok_decode(t, odd, 9, 0, out, sizeof out, &len);
}

#endif
