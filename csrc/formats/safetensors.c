/* safetensors.c -- validate and index a safetensors file.
 *
 * Layout (https://github.com/huggingface/safetensors):
 *
 *   [8 bytes]  N, the header length, unsigned little-endian
 *   [N bytes]  UTF-8 JSON object:
 *                { "__metadata__": { "key": "value", ... },            (optional)
 *                  "tensor.name": { "dtype": "BF16",
 *                                   "shape": [4096, 11008],
 *                                   "data_offsets": [begin, end] },
 *                  ... }
 *              possibly padded with trailing spaces
 *   [rest]     the data section; begin/end are byte offsets relative to its start (8 + N)
 *
 * Every tensor is checked: known dtype, shape of non-negative integers whose element
 * count times the element size (without overflow) equals end - begin, begin <= end <= the
 * data size, no two tensors share bytes, and together they fill the data section (no hole,
 * nothing after the last). The resulting table is sorted by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)

/* ---- dtypes ----------------------------------------------------------------------------- */

typedef struct st_dtype {
  const char *name;
  int dtype;     /* lrt_dtype */
  unsigned bits; /* per element; F4 and F6 pack below a byte */
} st_dtype;

static const st_dtype k_dtypes[] = {
    {"F32", LRT_DT_F32, 32},       {"F16", LRT_DT_F16, 16},       {"BF16", LRT_DT_BF16, 16},
    {"F64", LRT_DT_OTHER, 64},     {"I64", LRT_DT_OTHER, 64},     {"U64", LRT_DT_OTHER, 64},
    {"I32", LRT_DT_OTHER, 32},     {"U32", LRT_DT_OTHER, 32},     {"I16", LRT_DT_OTHER, 16},
    {"U16", LRT_DT_OTHER, 16},     {"I8", LRT_DT_OTHER, 8},       {"U8", LRT_DT_OTHER, 8},
    {"BOOL", LRT_DT_OTHER, 8},     {"F8_E4M3", LRT_DT_OTHER, 8},  {"F8_E5M2", LRT_DT_OTHER, 8},
    {"F8_E8M0", LRT_DT_OTHER, 8},  {"F6_E2M3", LRT_DT_OTHER, 6},  {"F6_E3M2", LRT_DT_OTHER, 6},
    {"F4", LRT_DT_OTHER, 4},       {"C64", LRT_DT_OTHER, 64},
};

static const st_dtype *find_dtype(const char *s, size_t n) {
  for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
    if (strlen(k_dtypes[i].name) == n && !memcmp(k_dtypes[i].name, s, n)) return &k_dtypes[i];
  return NULL;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* At most `max` bytes of s, not splitting a UTF-8 sequence (for quoting in messages). */
static int qlen(const char *s, size_t n, size_t max) {
  if (n <= max) return (int)n;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
  return (int)max;
}

static int is_uint(const lj_value *v) {
  return v->type == LJ_NUMBER && v->is_integer && v->integer >= 0;
}

/* Byte span of one tensor, for the overlap check. */
typedef struct st_span {
  uint64_t begin, end;
  size_t idx;
} st_span;

static int cmp_span(const void *a, const void *b) {
  const st_span *x = (const st_span *)a, *y = (const st_span *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_tensor_name(const void *a, const void *b) {
  return strcmp(((const lrt_tensor_ref *)a)->name, ((const lrt_tensor_ref *)b)->name);
}

static void free_tensors(lrt_tensor_ref *t, size_t n) {
  if (!t) return;
  for (size_t i = 0; i < n; i++) free(t[i].name);
  free(t);
}

/* ---- header entries --------------------------------------------------------------------- */

static int32_t check_metadata(const char *what, const lj_value *v) {
  if (v->type != LJ_OBJECT)
    return lrt_err(LRT_ERR_FORMAT, "%s: \"__metadata__\" must be an object of strings", what);
  for (size_t i = 0; i < v->count; i++)
    if (v->members[i].value.type != LJ_STRING)
      return lrt_err(LRT_ERR_FORMAT, "%s: \"__metadata__\" entry \"%.*s\" is not a string", what,
                     qlen(v->members[i].key, v->members[i].key_len, 100), v->members[i].key);
  return LRT_OK;
}

/* Fill t (name already set) and *span from one tensor entry. data_size bounds the
 * offsets. */
static int32_t parse_entry(const char *what, const lj_member *mem, uint64_t data_size,
                           lrt_tensor_ref *t, st_span *span) {
  const int nl = qlen(mem->key, mem->key_len, 100);
  const char *nm = mem->key;
  const lj_value *v = &mem->value;
  const lj_value *dtype = NULL, *shape = NULL, *offs = NULL;
  if (v->type != LJ_OBJECT)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": entry is not an object", what, nl, nm);
  for (size_t i = 0; i < v->count; i++) {
    const lj_member *f = &v->members[i];
    if (!strcmp(f->key, "dtype") && f->key_len == 5) dtype = &f->value;
    else if (!strcmp(f->key, "shape") && f->key_len == 5) shape = &f->value;
    else if (!strcmp(f->key, "data_offsets") && f->key_len == 12) offs = &f->value;
    else
      return lrt_err(LRT_ERR_FORMAT,
                     "%s: tensor \"%.*s\": unexpected field \"%.*s\" (allowed: dtype, shape, "
                     "data_offsets)",
                     what, nl, nm, qlen(f->key, f->key_len, 60), f->key);
  }
  if (!dtype || !shape || !offs)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": missing field \"%s\"", what, nl, nm,
                   !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

  /* dtype */
  if (dtype->type != LJ_STRING)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": dtype is not a string", what, nl, nm);
  const st_dtype *dt = find_dtype(dtype->str, dtype->str_len);
  if (!dt)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": unknown dtype \"%.*s\"", what, nl, nm,
                   qlen(dtype->str, dtype->str_len, 40), dtype->str);
  t->dtype = dt->dtype;
  snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->name);

  /* shape */
  if (shape->type != LJ_ARRAY)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": shape is not an array", what, nl, nm);
  if (shape->count > LRT_MAX_DIMS)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": shape has %zu dimensions, at most %d "
                   "are supported", what, nl, nm, shape->count, LRT_MAX_DIMS);
  uint64_t n_elems = 1;
  for (size_t i = 0; i < shape->count; i++) {
    const lj_value *d = &shape->items[i];
    if (!is_uint(d))
      return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": shape[%zu] is not a non-negative "
                     "integer", what, nl, nm, i);
    t->shape[i] = d->integer;
    if (!lrt_mul_u64(n_elems, (uint64_t)d->integer, &n_elems))
      return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": element count overflows", what, nl, nm);
  }
  t->n_dims = (int)shape->count;
  t->n_elems = n_elems;
  uint64_t bits;
  if (!lrt_mul_u64(n_elems, dt->bits, &bits))
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": byte size overflows", what, nl, nm);
  if (bits % 8 != 0)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": %llu elements of %s do not fill whole "
                   "bytes", what, nl, nm, (unsigned long long)n_elems, dt->name);
  t->nbytes = bits / 8;

  /* data_offsets */
  if (offs->type != LJ_ARRAY || offs->count != 2 || !is_uint(&offs->items[0]) ||
      !is_uint(&offs->items[1]))
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": data_offsets must be [begin, end] "
                   "with non-negative integers", what, nl, nm);
  uint64_t begin = (uint64_t)offs->items[0].integer, end = (uint64_t)offs->items[1].integer;
  if (begin > end || end > data_size)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": data_offsets [%llu, %llu] are outside "
                   "the %llu-byte data section", what, nl, nm, (unsigned long long)begin,
                   (unsigned long long)end, (unsigned long long)data_size);
  if (end - begin != t->nbytes)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%.*s\": shape and dtype %s need %llu bytes but "
                   "data_offsets span %llu", what, nl, nm, dt->name,
                   (unsigned long long)t->nbytes, (unsigned long long)(end - begin));
  span->begin = begin;
  span->end = end;
  return LRT_OK;
}

/* ---- parse ------------------------------------------------------------------------------ */

/* Everything after the JSON parse; *doc is the parsed header, tensors are appended to
 * out->tensors (allocated by the caller with room for all). */
static int32_t build_table(const char *what, const lj_value *root, const uint8_t *data,
                           uint64_t data_size, lrt_st_file *out, st_span *spans) {
  int32_t st;
  for (size_t i = 0; i < root->count; i++) {
    const lj_member *mem = &root->members[i];
    if (mem->key_len == 12 && !memcmp(mem->key, "__metadata__", 12)) {
      if ((st = check_metadata(what, &mem->value)) != LRT_OK) return st;
      continue;
    }
    if (mem->key_len == 0) return lrt_err(LRT_ERR_FORMAT, "%s: a tensor has an empty name", what);
    if (memchr(mem->key, 0, mem->key_len) || !lrt_utf8_valid(mem->key, mem->key_len))
      return lrt_err(LRT_ERR_FORMAT, "%s: a tensor name contains a NUL byte or invalid UTF-8",
                     what);
    lrt_tensor_ref *t = &out->tensors[out->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = (char *)malloc(mem->key_len + 1);
    if (!t->name) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    memcpy(t->name, mem->key, mem->key_len + 1);
    t->name_len = mem->key_len;
    out->n_tensors++;
    if ((st = parse_entry(what, mem, data_size, t, &spans[out->n_tensors - 1])) != LRT_OK)
      return st;
    spans[out->n_tensors - 1].idx = out->n_tensors - 1;
    t->data = data + spans[out->n_tensors - 1].begin;
  }

  /* no two tensors may share bytes (empty ones occupy none) */
  size_t n = out->n_tensors;
  qsort(spans, n, sizeof *spans, cmp_span);
  const st_span *prev = NULL;
  for (size_t i = 0; i < n; i++) {
    if (spans[i].begin == spans[i].end) continue;
    if (prev && spans[i].begin < prev->end) {
      const lrt_tensor_ref *a = &out->tensors[prev->idx], *b = &out->tensors[spans[i].idx];
      return lrt_err(LRT_ERR_FORMAT, "%s: tensors \"%.*s\" (bytes %llu..%llu) and \"%.*s\" "
                     "(bytes %llu..%llu) overlap", what, qlen(a->name, a->name_len, 100),
                     a->name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
                     qlen(b->name, b->name_len, 100), b->name,
                     (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
    }
    if (!prev || spans[i].end > prev->end) prev = &spans[i];
  }
  /* the tensors fill the data section exactly, as the safetensors library requires: in
   * offset order each starts where the previous one ends, and the last ends at the end of the
   * file. Bytes that belong to no tensor mean an edited dtype/shape/offset or appended data. */
  uint64_t next = 0;
  const st_span *last = NULL;
  for (size_t i = 0; i < n; i++) {
    if (spans[i].begin == spans[i].end) continue;
    if (spans[i].begin != next) {
      const lrt_tensor_ref *b = &out->tensors[spans[i].idx];
      if (!last)
        return lrt_err(LRT_ERR_FORMAT, "%s: the first %llu bytes of the data section (before tensor \"%.*s\") "
                       "belong to no tensor; the header was edited or the file is corrupt", what,
                       (unsigned long long)spans[i].begin, qlen(b->name, b->name_len, 100), b->name);
      const lrt_tensor_ref *a = &out->tensors[last->idx];
      return lrt_err(LRT_ERR_FORMAT, "%s: bytes %llu..%llu of the data section (between tensors \"%.*s\" and "
                     "\"%.*s\") belong to no tensor; the header was edited or the file is corrupt", what,
                     (unsigned long long)next, (unsigned long long)spans[i].begin, qlen(a->name, a->name_len, 100),
                     a->name, qlen(b->name, b->name_len, 100), b->name);
    }
    next = spans[i].end;
    last = &spans[i];
  }
  if (data_size != next) {
    if (!last)
      return lrt_err(LRT_ERR_FORMAT, "%s: the %llu-byte data section belongs to no tensor (the header declares "
                     "no tensor data); the file is corrupt", what, (unsigned long long)data_size);
    const lrt_tensor_ref *a = &out->tensors[last->idx];
    return lrt_err(LRT_ERR_FORMAT, "%s: %llu bytes after the last tensor \"%.*s\" belong to no tensor; data was "
                   "appended, the header was edited or the file is corrupt", what,
                   (unsigned long long)(data_size - next), qlen(a->name, a->name_len, 100), a->name);
  }

  /* sorted by name for lrt_st_find; JSON already rejects duplicate keys */
  qsort(out->tensors, n, sizeof *out->tensors, cmp_tensor_name);
  for (size_t i = 1; i < n; i++)
    if (!strcmp(out->tensors[i - 1].name, out->tensors[i].name))
      return lrt_err(LRT_ERR_FORMAT, "%s: duplicate tensor name \"%.*s\"", what,
                     qlen(out->tensors[i].name, out->tensors[i].name_len, 100),
                     out->tensors[i].name);
  return LRT_OK;
}

int32_t lrt_st_parse(const uint8_t *buf, uint64_t len, const char *what, lrt_st_file *out) {
  memset(out, 0, sizeof *out);
  if (!what) what = "safetensors buffer";
  if (!buf && len > 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: NULL buffer", what);
  if (len < 8)
    return lrt_err(LRT_ERR_FORMAT, "%s: file is %llu bytes, too short for a safetensors header "
                   "(at least 8 bytes)", what, (unsigned long long)len);
  uint64_t hlen = lrt_rd_u64le(buf);
  if (hlen > ST_MAX_HEADER || hlen > len - 8)
    return lrt_err(LRT_ERR_FORMAT, "%s: absurd header length %llu (file is %llu bytes, the "
                   "limit is %llu); not a safetensors file or truncated", what,
                   (unsigned long long)hlen, (unsigned long long)len,
                   (unsigned long long)ST_MAX_HEADER);
  char jwhat[512];
  snprintf(jwhat, sizeof jwhat, "%s (safetensors header)", what);
  lj_doc *doc = NULL;
  int32_t st = lj_parse((const char *)buf + 8, (size_t)hlen, jwhat, &doc);
  if (st != LRT_OK) return st;
  const lj_value *root = lj_root(doc);
  if (root->type != LJ_OBJECT) {
    lj_free(doc);
    return lrt_err(LRT_ERR_FORMAT, "%s: the safetensors header is not a JSON object", what);
  }
  size_t cap = root->count ? root->count : 1;
  out->tensors = (lrt_tensor_ref *)calloc(cap, sizeof *out->tensors);
  st_span *spans = (st_span *)calloc(cap, sizeof *spans);
  if (!out->tensors || !spans) {
    st = lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
  } else {
    st = build_table(what, root, buf + 8 + hlen, len - 8 - hlen, out, spans);
  }
  free(spans);
  lj_free(doc);
  if (st != LRT_OK) {
    free_tensors(out->tensors, out->n_tensors);
    memset(out, 0, sizeof *out);
    return st;
  }
  out->map.data = buf;
  out->map.size = len;
  return LRT_OK;
}

/* ---- files ------------------------------------------------------------------------------ */

int32_t lrt_st_open(const char *path, int in_memory, lrt_st_file *out) {
  memset(out, 0, sizeof *out);
  lrt_mapped_file m;
  int32_t st = in_memory ? lrt_read_whole_file(path, &m) : lrt_map_file(path, &m);
  if (st != LRT_OK) return st;
  st = lrt_st_parse(m.data, m.size, path, out);
  if (st != LRT_OK) {
    lrt_unmap_file(&m);
    return st;
  }
  out->map = m; /* same data pointer; now the file owns the mapping */
  return LRT_OK;
}

void lrt_st_close(lrt_st_file *f) {
  if (!f) return;
  free_tensors(f->tensors, f->n_tensors);
  lrt_unmap_file(&f->map); /* only unmaps when priv says we mapped it */
  memset(f, 0, sizeof *f);
}

const lrt_tensor_ref *lrt_st_find(const lrt_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  size_t lo = 0, hi = f->n_tensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, f->tensors[mid].name);
    if (c == 0) return &f->tensors[mid];
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}
