/* fuzz_json.c -- lj_parse (config.json, tokenizer.json, safetensors headers) on any bytes. */
#include "fuzz_common.h"

static size_t walk(const lj_value *v, int depth) {
  size_t n = 1;
  if (v->type == LJ_STRING) n += v->str_len ? (unsigned char)v->str[v->str_len - 1] + strlen(v->str) : 0;
  if (v->type == LJ_ARRAY)
    for (size_t i = 0; i < v->count; i++) n += walk(&v->items[i], depth + 1);
  if (v->type == LJ_OBJECT)
    for (size_t i = 0; i < v->count; i++) {
      n += strlen(v->members[i].key) + walk(&v->members[i].value, depth + 1);
      if (lj_get(v, v->members[i].key) != &v->members[i].value) abort(); /* lookup agrees */
    }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = fz_copy(data, size);
  if (!buf) return 0;
  lj_doc *doc = NULL;
  if (lj_parse((const char *)buf, size, "fuzz.json", &doc) == LRT_OK) {
    volatile size_t sink = walk(lj_root(doc), 0);
    (void)sink;
    lj_free(doc);
  } else if (doc != NULL || lrt_last_error()[0] == '\0') {
    abort(); /* a failure leaves no document and always says why */
  }
  free(buf);
  return 0;
}
