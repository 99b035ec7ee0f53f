/* fuzz_gguf.c -- lrt_gguf_parse, then everything loomrt reads from an accepted file: typed
 * metadata access, the model config (lrt_config_from_gguf) and the tokenizer built from
 * tokenizer.ggml.* (lrt_tok_from_gguf), which is then used. */
#include "fuzz_common.h"
#include "../formats/formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = fz_copy(data, size);
  if (!buf) return 0;
  lrt_gguf_file g;
  if (lrt_gguf_parse(buf, size, "fuzz.gguf", &g) == LRT_OK) {
    volatile double sink = 0;
    for (size_t i = 0; i < g.n_kv; i++) {
      const lrt_gguf_kv *kv = &g.kv[i];
      if (lrt_gguf_find(&g, kv->key) == NULL) abort();
      for (uint64_t j = 0; j < kv->count && j < 64; j++) {
        int64_t iv;
        double dv;
        if (lrt_gguf_kv_int(kv, j, &iv) == LRT_OK) sink += (double)iv;
        if (lrt_gguf_kv_float(kv, j, &dv) == LRT_OK) sink += dv;
        if (kv->strs && kv->str_lens[j]) sink += (unsigned char)kv->strs[j][kv->str_lens[j] - 1];
      }
      int64_t past;
      (void)lrt_gguf_kv_int(kv, kv->count, &past); /* one past the end: an error, not a read */
    }
    for (size_t i = 0; i < g.n_tensors; i++) {
      const lrt_tensor_ref *t = &g.tensors[i];
      if (t->data < buf || t->nbytes > size || t->data + t->nbytes > buf + size) abort();
      if (t->nbytes) sink += t->data[t->nbytes - 1];
    }
    (void)sink;
    lrt_config cfg;
    (void)lrt_config_from_gguf(&g, &cfg);
    lrt_tokenizer *tok = NULL;
    if (lrt_tok_from_gguf(&g, &tok) == LRT_OK) {
      fz_exercise_tokenizer(tok, NULL, 0);
      lrt_tok_free(tok);
    }
    lrt_gguf_close(&g);
  } else if (lrt_last_error()[0] == '\0') {
    abort();
  }
  free(buf);
  return 0;
}
