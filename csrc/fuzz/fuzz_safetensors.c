/* fuzz_safetensors.c -- lrt_st_parse (header size, JSON header, dtypes, shapes, offsets). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = fz_copy(data, size);
  if (!buf) return 0;
  lrt_st_file f;
  if (lrt_st_parse(buf, size, "fuzz.safetensors", &f) == LRT_OK) {
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
      const lrt_tensor_ref *t = &f.tensors[i];
      if (t->data < buf || t->nbytes > size || t->data + t->nbytes > buf + size) abort();
      if (t->nbytes) sink += t->data[0] + t->data[t->nbytes - 1]; /* the claimed bytes exist */
      if (lrt_st_find(&f, t->name) == NULL) abort();
    }
    (void)sink;
    lrt_st_close(&f);
  } else if (lrt_last_error()[0] == '\0') {
    abort();
  }
  free(buf);
  return 0;
}
