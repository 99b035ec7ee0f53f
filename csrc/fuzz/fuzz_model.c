/* fuzz_model.c -- a whole model from memory (lrt_model_open_memory: config, weights, tokenizer
 * cross-checked), then used: tokenize, a short forward pass, sampling, detokenize.
 * Input: first byte odd  -> the rest is one "model.gguf";
 *        first byte even -> [u32 LE n][config.json: n bytes][u32 LE m][tokenizer.json: m bytes]
 *                           [model.safetensors: the rest]. */
#include "fuzz_common.h"

static int take(const uint8_t **p, size_t *left, const uint8_t **part, size_t *len) {
  if (*left < 4) return 0;
  uint32_t n = lrt_rd_u32le(*p);
  *p += 4;
  *left -= 4;
  if (n > *left) return 0;
  *part = *p;
  *len = n;
  *p += n;
  *left -= n;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *names[3];
  size_t name_lens[3], sizes[3];
  const void *parts[3];
  int64_t n_files = 0;
  const uint8_t *p = data + 1;
  size_t left = size - 1;
  if (data[0] & 1) {
    names[0] = "model.gguf"; parts[0] = p; sizes[0] = left; n_files = 1;
  } else {
    const uint8_t *cfg, *tok;
    size_t cfg_len, tok_len;
    if (!take(&p, &left, &cfg, &cfg_len) || !take(&p, &left, &tok, &tok_len)) return 0;
    names[0] = "config.json"; parts[0] = cfg; sizes[0] = cfg_len;
    names[1] = "model.safetensors"; parts[1] = p; sizes[1] = left;
    names[2] = "tokenizer.json"; parts[2] = tok; sizes[2] = tok_len;
    n_files = tok_len ? 3 : 2;
  }
  for (int64_t i = 0; i < n_files; i++) name_lens[i] = strlen(names[i]);
  lrt_model *m = NULL;
  /* copied buffers: the copies are exactly the parts' sizes, so ASan sees any overread */
  if (lrt_model_open_memory(n_files, names, name_lens, parts, sizes, LRT_OPEN_COPY_BUFFERS, &m) != LRT_OK) {
    if (m != NULL || lrt_last_error()[0] == '\0') abort();
    return 0;
  }
  int64_t vocab = 0;
  if (lrt_model_get_int(m, LRT_INFO_VOCAB_SIZE, &vocab) != LRT_OK || vocab <= 0) abort();
  int32_t ids[64];
  int64_t n_ids = 0;
  int32_t st = lrt_tokenize(m, "Hello, world! <|im_end|>", 24, LRT_TOKENIZE_ADD_SPECIAL | LRT_TOKENIZE_PARSE_SPECIAL,
                            ids, 64, &n_ids);
  if (st != LRT_OK || n_ids == 0) {
    ids[0] = 0;
    ids[1] = (int32_t)(vocab - 1);
    n_ids = 2;
  }
  if (n_ids > 8) n_ids = 8;
  lrt_session *s = NULL;
  if (lrt_session_new(m, 16, 1, &s) == LRT_OK) {
    if (lrt_session_eval(s, ids, n_ids, 1) == LRT_OK) {
      const float *logits;
      int64_t rows, cols;
      if (lrt_session_logits(s, &logits, &rows, &cols) != LRT_OK || cols != vocab) abort();
      volatile float sink = logits[rows * cols - 1];
      (void)sink;
      int32_t next;
      if (lrt_session_sample(s, &next) != LRT_OK || next < 0 || next >= vocab) abort();
      char text[256];
      size_t len;
      (void)lrt_detokenize(m, &next, 1, 0, text, sizeof text, &len);
    }
    lrt_session_free(s);
  }
  lrt_model_close(m);
  return 0;
}
