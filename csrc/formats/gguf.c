/* gguf.c -- validate and index a GGUF file (llama.cpp's model format).
 *
 * Layout (little-endian throughout; versions 2 and 3 share it):
 *
 *   "GGUF"               magic
 *   u32 version          2 or 3 (version 1 used 32-bit counts and is rejected)
 *   u64 tensor_count
 *   u64 kv_count
 *   kv_count x { string key; u32 value_type; value }
 *   tensor_count x { string name; u32 n_dims; u64 ne[n_dims]; u32 ggml_type; u64 offset }
 *   padding to a multiple of general.alignment (default 32)
 *   data section: each tensor at `offset` from its start (a multiple of the alignment)
 *
 *   string = u64 byte length + bytes (UTF-8, no terminator)
 *   value  = a scalar of value_type, a string, or an array:
 *            u32 element type + u64 count + count elements (arrays of arrays are rejected)
 *
 * ne[0] is the fastest-varying dimension; shapes are stored reversed (numpy order).
 * Every length and count is checked against the bytes that remain before anything is
 * allocated, so a corrupt or hostile header fails fast with LRT_ERR_FORMAT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* ---- value types and ggml tensor types -------------------------------------------------- */

static const char *const k_vt_names[13] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                           "bool", "string", "array", "u64", "i64", "f64"};
static const uint8_t k_vt_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct gg_type {
  const char *name; /* NULL: an id ggml does not (or no longer) define */
  uint32_t block;   /* elements per block */
  uint32_t size;    /* bytes per block */
  int dtype;        /* lrt_dtype */
} gg_type;

#define OTHER LRT_DT_OTHER
static const gg_type k_types[] = {
    [0] = {"F32", 1, 4, LRT_DT_F32},        [1] = {"F16", 1, 2, LRT_DT_F16},
    [2] = {"Q4_0", 32, 18, LRT_DT_Q4_0},    [3] = {"Q4_1", 32, 20, LRT_DT_Q4_1},
    [6] = {"Q5_0", 32, 22, LRT_DT_Q5_0},    [7] = {"Q5_1", 32, 24, LRT_DT_Q5_1},
    [8] = {"Q8_0", 32, 34, LRT_DT_Q8_0},    [9] = {"Q8_1", 32, 36, OTHER},
    [10] = {"Q2_K", 256, 84, OTHER},        [11] = {"Q3_K", 256, 110, OTHER},
    [12] = {"Q4_K", 256, 144, LRT_DT_Q4_K}, [13] = {"Q5_K", 256, 176, LRT_DT_Q5_K},
    [14] = {"Q6_K", 256, 210, LRT_DT_Q6_K}, [15] = {"Q8_K", 256, 292, OTHER},
    [16] = {"IQ2_XXS", 256, 66, OTHER},     [17] = {"IQ2_XS", 256, 74, OTHER},
    [18] = {"IQ3_XXS", 256, 98, OTHER},     [19] = {"IQ1_S", 256, 50, OTHER},
    [20] = {"IQ4_NL", 32, 18, OTHER},       [21] = {"IQ3_S", 256, 110, OTHER},
    [22] = {"IQ2_S", 256, 82, OTHER},       [23] = {"IQ4_XS", 256, 136, OTHER},
    [24] = {"I8", 1, 1, OTHER},             [25] = {"I16", 1, 2, OTHER},
    [26] = {"I32", 1, 4, OTHER},            [27] = {"I64", 1, 8, OTHER},
    [28] = {"F64", 1, 8, OTHER},            [29] = {"IQ1_M", 256, 56, OTHER},
    [30] = {"BF16", 1, 2, LRT_DT_BF16},     [34] = {"TQ1_0", 256, 54, OTHER},
    [35] = {"TQ2_0", 256, 66, OTHER},       [39] = {"MXFP4", 32, 17, OTHER},
};
#undef OTHER
#define N_TYPES (sizeof k_types / sizeof k_types[0])

/* ---- reader ----------------------------------------------------------------------------- */

typedef struct reader {
  const uint8_t *buf;
  uint64_t len, pos;
  const char *what;
} reader;

static uint64_t remaining(const reader *r) { return r->len - r->pos; }

/* Error unless n more bytes are available; `ctx` says what was being read. */
static int32_t need(const reader *r, uint64_t n, const char *ctx) {
  if (n <= remaining(r)) return LRT_OK;
  return lrt_err(LRT_ERR_FORMAT, "%s: truncated GGUF file: %s needs %llu bytes at offset %llu "
                 "but only %llu remain", r->what, ctx, (unsigned long long)n,
                 (unsigned long long)r->pos, (unsigned long long)remaining(r));
}

static int32_t rd_u32(reader *r, uint32_t *v, const char *ctx) {
  int32_t st = need(r, 4, ctx);
  if (st != LRT_OK) return st;
  *v = lrt_rd_u32le(r->buf + r->pos);
  r->pos += 4;
  return LRT_OK;
}

static int32_t rd_u64(reader *r, uint64_t *v, const char *ctx) {
  int32_t st = need(r, 8, ctx);
  if (st != LRT_OK) return st;
  *v = lrt_rd_u64le(r->buf + r->pos);
  r->pos += 8;
  return LRT_OK;
}

/* A GGUF string: points into the buffer, validated UTF-8. */
static int32_t rd_str(reader *r, const char **s, uint64_t *n, const char *ctx) {
  int32_t st = rd_u64(r, n, ctx);
  if (st == LRT_OK) st = need(r, *n, ctx);
  if (st != LRT_OK) return st;
  *s = (const char *)r->buf + r->pos;
  if (!lrt_utf8_valid(*s, (size_t)*n))
    return lrt_err(LRT_ERR_FORMAT, "%s: %s at offset %llu is not valid UTF-8", r->what, ctx,
                   (unsigned long long)r->pos);
  r->pos += *n;
  return LRT_OK;
}

/* A malloc'ed NUL-terminated copy of a name or key (which must not contain NUL). */
static int32_t rd_name(reader *r, char **out, size_t *out_len, const char *ctx) {
  const char *s;
  uint64_t n;
  int32_t st = rd_str(r, &s, &n, ctx);
  if (st != LRT_OK) return st;
  if (n == 0) return lrt_err(LRT_ERR_FORMAT, "%s: empty %s", r->what, ctx);
  if (memchr(s, 0, (size_t)n))
    return lrt_err(LRT_ERR_FORMAT, "%s: %s \"%s\" contains a NUL byte", r->what, ctx, s);
  *out = (char *)malloc((size_t)n + 1);
  if (!*out) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", r->what);
  memcpy(*out, s, (size_t)n);
  (*out)[n] = 0;
  *out_len = (size_t)n;
  return LRT_OK;
}

/* At most `max` bytes of s, not splitting a UTF-8 sequence (for quoting in messages). */
static int utf8_prefix(const char *s, size_t n, size_t max) {
  if (n <= max) return (int)n;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
  return (int)max;
}

/* ---- metadata --------------------------------------------------------------------------- */

static int32_t rd_strings(reader *r, lrt_gguf_kv *kv) {
  /* each string takes at least its 8-byte length: bound the count before allocating */
  if (kv->count > remaining(r) / 8)
    return lrt_err(LRT_ERR_FORMAT, "%s: key %s claims %llu strings, more than the file can "
                   "hold", r->what, kv->key, (unsigned long long)kv->count);
  size_t n = kv->count ? (size_t)kv->count : 1;
  kv->strs = (const char **)malloc(n * sizeof *kv->strs);
  kv->str_lens = (uint64_t *)malloc(n * sizeof *kv->str_lens);
  if (!kv->strs || !kv->str_lens) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", r->what);
  char ctx[160];
  snprintf(ctx, sizeof ctx, "the value of %.*s", utf8_prefix(kv->key, kv->key_len, 100), kv->key);
  for (uint64_t i = 0; i < kv->count; i++) {
    int32_t st = rd_str(r, &kv->strs[i], &kv->str_lens[i], ctx);
    if (st != LRT_OK) return st;
  }
  return LRT_OK;
}

static int32_t rd_kv(reader *r, lrt_gguf_kv *kv) {
  int32_t st = rd_name(r, &kv->key, &kv->key_len, "metadata key");
  if (st == LRT_OK) st = rd_u32(r, &kv->type, "a value type");
  if (st != LRT_OK) return st;
  if (kv->type > LRT_META_FLOAT64)
    return lrt_err(LRT_ERR_FORMAT, "%s: key %s has unknown value type %u", r->what, kv->key,
                   kv->type);
  kv->elem_type = kv->type;
  kv->count = 1;
  if (kv->type == LRT_META_ARRAY) {
    if ((st = rd_u32(r, &kv->elem_type, "an array element type")) != LRT_OK ||
        (st = rd_u64(r, &kv->count, "an array length")) != LRT_OK)
      return st;
    if (kv->elem_type == LRT_META_ARRAY)
      return lrt_err(LRT_ERR_FORMAT, "%s: key %s is an array of arrays, which loomrt does not "
                     "support", r->what, kv->key);
    if (kv->elem_type > LRT_META_FLOAT64)
      return lrt_err(LRT_ERR_FORMAT, "%s: array %s has unknown element type %u", r->what,
                     kv->key, kv->elem_type);
  }
  if (kv->elem_type == LRT_META_STRING) return rd_strings(r, kv);
  uint64_t bytes;
  if (!lrt_mul_u64(kv->count, k_vt_size[kv->elem_type], &bytes) || bytes > remaining(r))
    return lrt_err(LRT_ERR_FORMAT, "%s: key %s claims %llu values of type %s, more than the "
                   "file holds", r->what, kv->key, (unsigned long long)kv->count,
                   k_vt_names[kv->elem_type]);
  kv->data = r->buf + r->pos;
  r->pos += bytes;
  return LRT_OK;
}

static int cmp_kv_ptr(const void *a, const void *b) {
  return strcmp((*(const lrt_gguf_kv *const *)a)->key, (*(const lrt_gguf_kv *const *)b)->key);
}
static int cmp_tensor_ptr(const void *a, const void *b) {
  return strcmp((*(const lrt_tensor_ref *const *)a)->name,
                (*(const lrt_tensor_ref *const *)b)->name);
}

/* Find a duplicate among n names (sorting pointers); *dup gets the index, -1 if none. */
static int32_t find_dup(const void *base, size_t n, size_t stride, int (*cmp)(const void *, const void *),
                        const char *what, size_t *dup) {
  *dup = (size_t)-1;
  if (n < 2) return LRT_OK;
  const void **idx = (const void **)malloc(n * sizeof *idx);
  if (!idx) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
  for (size_t i = 0; i < n; i++) idx[i] = (const uint8_t *)base + i * stride;
  qsort(idx, n, sizeof *idx, cmp);
  for (size_t i = 1; i < n && *dup == (size_t)-1; i++)
    if (cmp(&idx[i - 1], &idx[i]) == 0) *dup = (size_t)((const uint8_t *)idx[i] - (const uint8_t *)base) / stride;
  free(idx);
  return LRT_OK;
}

/* ---- tensor infos ----------------------------------------------------------------------- */

static int32_t rd_tensor(reader *r, uint64_t alignment, lrt_tensor_ref *t, uint64_t *offset) {
  int32_t st = rd_name(r, &t->name, &t->name_len, "tensor name");
  if (st != LRT_OK) return st;
  const char *nm = t->name;
  uint32_t n_dims, type;
  uint64_t ne[GGUF_MAX_DIMS];
  if ((st = rd_u32(r, &n_dims, "a tensor's dimension count")) != LRT_OK) return st;
  if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\" has %u dimensions (1 to %d allowed)",
                   r->what, nm, n_dims, GGUF_MAX_DIMS);
  for (uint32_t i = 0; i < n_dims; i++)
    if ((st = rd_u64(r, &ne[i], "a tensor dimension")) != LRT_OK) return st;
  if ((st = rd_u32(r, &type, "a tensor type")) != LRT_OK ||
      (st = rd_u64(r, offset, "a tensor offset")) != LRT_OK)
    return st;
  if (type >= N_TYPES || !k_types[type].name)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\" has unknown ggml type %u", r->what, nm, type);
  const gg_type *gt = &k_types[type];
  t->dtype = gt->dtype;
  memcpy(t->dtype_name, gt->name, strlen(gt->name) + 1);
  t->n_dims = (int)n_dims;
  uint64_t n_elems = 1;
  for (uint32_t i = 0; i < n_dims; i++) {
    if (ne[i] > (uint64_t)INT64_MAX || !lrt_mul_u64(n_elems, ne[i], &n_elems))
      return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\": element count overflows", r->what, nm);
    t->shape[n_dims - 1 - i] = (int64_t)ne[i]; /* numpy order: ne[0] last */
  }
  t->n_elems = n_elems;
  if (ne[0] % gt->block != 0)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\": row length %llu is not a multiple of the "
                   "%s block size %u", r->what, nm, (unsigned long long)ne[0], gt->name, gt->block);
  if (!lrt_mul_u64(n_elems / gt->block, gt->size, &t->nbytes))
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\": byte size overflows", r->what, nm);
  if (*offset % alignment != 0)
    return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\": offset %llu is not a multiple of the "
                   "alignment %llu", r->what, nm, (unsigned long long)*offset,
                   (unsigned long long)alignment);
  return LRT_OK;
}

typedef struct gg_span {
  uint64_t begin, end;
  size_t idx;
} gg_span;

static int cmp_span(const void *a, const void *b) {
  const gg_span *x = (const gg_span *)a, *y = (const gg_span *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The tensors must account for the whole data section, as every GGUF writer lays it out
 * (llama.cpp's gguf.cpp, gguf-py): in offset order each tensor starts at the first multiple
 * of the alignment after the end of the previous one, and at most the alignment padding
 * follows the last. Bytes that belong to no tensor mean a tensor's type or shape was edited
 * (a Q8_0 tensor relabelled Q4_0 would read the first half of its bytes as garbage), data was
 * inserted, or the file is corrupt. Spans are sorted and do not overlap (checked before). */
static int32_t account_data(const reader *r, const lrt_gguf_file *f, const gg_span *spans, size_t n,
                            uint64_t data_size) {
  const uint64_t al = f->alignment;
  uint64_t next = 0; /* where the next tensor must start */
  const gg_span *prev = NULL;
  for (size_t i = 0; i < n; i++) {
    if (spans[i].begin == spans[i].end) continue;
    if (spans[i].begin != next) {
      if (prev)
        return lrt_err(LRT_ERR_FORMAT, "%s: %llu bytes of the data section (offsets %llu..%llu, between tensors "
                       "\"%s\" and \"%s\") belong to no tensor: a tensor's type or shape was changed (\"%s\" "
                       "declares %llu bytes), data was inserted, or the file is corrupt", r->what,
                       (unsigned long long)(spans[i].begin - prev->end), (unsigned long long)prev->end,
                       (unsigned long long)spans[i].begin, f->tensors[prev->idx].name,
                       f->tensors[spans[i].idx].name, f->tensors[prev->idx].name,
                       (unsigned long long)f->tensors[prev->idx].nbytes);
      return lrt_err(LRT_ERR_FORMAT, "%s: the first %llu bytes of the data section (before tensor \"%s\") "
                     "belong to no tensor: a tensor's offset was changed or the file is corrupt", r->what,
                     (unsigned long long)spans[i].begin, f->tensors[spans[i].idx].name);
    }
    prev = &spans[i];
    next = spans[i].end + (al - spans[i].end % al) % al; /* end <= file size: no overflow */
  }
  if (data_size > next) {
    if (prev)
      return lrt_err(LRT_ERR_FORMAT, "%s: %llu bytes at the end of the data section (after tensor \"%s\", "
                     "which declares %llu bytes) belong to no tensor: a tensor's type or shape was changed, "
                     "data was appended, or the file is corrupt", r->what,
                     (unsigned long long)(data_size - prev->end), f->tensors[prev->idx].name,
                     (unsigned long long)f->tensors[prev->idx].nbytes);
    return lrt_err(LRT_ERR_FORMAT, "%s: the %llu-byte data section belongs to no tensor (the file declares "
                   "no tensor data): the file is corrupt", r->what, (unsigned long long)data_size);
  }
  return LRT_OK;
}

/* Place the tensors in the data section and check bounds, overlaps and that they account
 * for the whole data section. */
static int32_t place_tensors(reader *r, lrt_gguf_file *f, const uint64_t *offsets) {
  uint64_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
  uint64_t data_start = r->pos + pad; /* pos <= len, pad < 2^32: no overflow */
  uint64_t data_size = data_start <= r->len ? r->len - data_start : 0;
  size_t n = f->n_tensors;
  gg_span *spans = (gg_span *)malloc((n ? n : 1) * sizeof *spans);
  if (!spans) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", r->what);
  for (size_t i = 0; i < n; i++) {
    lrt_tensor_ref *t = &f->tensors[i];
    if (data_start > r->len || offsets[i] > data_size || t->nbytes > data_size - offsets[i]) {
      free(spans);
      return lrt_err(LRT_ERR_FORMAT, "%s: tensor \"%s\" (offset %llu, %llu bytes) lies outside "
                     "the %llu-byte data section; the file is truncated or corrupt", r->what,
                     t->name, (unsigned long long)offsets[i], (unsigned long long)t->nbytes,
                     (unsigned long long)data_size);
    }
    t->data = r->buf + data_start + offsets[i];
    spans[i].begin = offsets[i];
    spans[i].end = offsets[i] + t->nbytes;
    spans[i].idx = i;
  }
  qsort(spans, n, sizeof *spans, cmp_span);
  const gg_span *prev = NULL;
  for (size_t i = 0; i < n; i++) {
    if (spans[i].begin == spans[i].end) continue; /* empty tensors occupy no bytes */
    if (prev && spans[i].begin < prev->end) {
      int32_t st = lrt_err(LRT_ERR_FORMAT, "%s: tensors \"%s\" and \"%s\" overlap in the data "
                           "section", r->what, f->tensors[prev->idx].name,
                           f->tensors[spans[i].idx].name);
      free(spans);
      return st;
    }
    if (!prev || spans[i].end > prev->end) prev = &spans[i];
  }
  int32_t st = account_data(r, f, spans, n, data_size);
  free(spans);
  return st;
}

/* ---- parse ------------------------------------------------------------------------------ */

static int32_t parse_body(reader *r, lrt_gguf_file *f) {
  int32_t st;
  uint64_t n_tensors, n_kv;
  if (r->len < 4 || memcmp(r->buf, "GGUF", 4) != 0)
    return lrt_err(LRT_ERR_FORMAT, "%s: not a GGUF file (the first 4 bytes are not \"GGUF\")",
                   r->what);
  r->pos = 4;
  if ((st = rd_u32(r, &f->version, "the version")) != LRT_OK) return st;
  if (f->version == 1)
    return lrt_err(LRT_ERR_FORMAT, "%s: GGUF version 1 is not supported (it predates 64-bit "
                   "counts); re-convert the model with a current llama.cpp", r->what);
  if (f->version != 2 && f->version != 3) {
    if ((f->version & 0xFFFFu) == 0)
      return lrt_err(LRT_ERR_FORMAT, "%s: this looks like a big-endian GGUF file, which loomrt "
                     "does not support", r->what);
    return lrt_err(LRT_ERR_FORMAT, "%s: unsupported GGUF version %u (2 and 3 are supported)",
                   r->what, f->version);
  }
  if ((st = rd_u64(r, &n_tensors, "the tensor count")) != LRT_OK ||
      (st = rd_u64(r, &n_kv, "the metadata count")) != LRT_OK)
    return st;

  /* metadata: an entry takes >= 13 bytes (key length, 1-byte key, type, 0-byte value...) */
  if (n_kv > remaining(r) / 13)
    return lrt_err(LRT_ERR_FORMAT, "%s: header claims %llu metadata entries, more than a "
                   "%llu-byte file can hold", r->what, (unsigned long long)n_kv,
                   (unsigned long long)r->len);
  f->kv = (lrt_gguf_kv *)calloc(n_kv ? (size_t)n_kv : 1, sizeof *f->kv);
  if (!f->kv) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", r->what);
  for (uint64_t i = 0; i < n_kv; i++) {
    f->n_kv++; /* counted first so close() frees a half-read entry */
    if ((st = rd_kv(r, &f->kv[i])) != LRT_OK) return st;
  }
  size_t dup;
  if ((st = find_dup(f->kv, f->n_kv, sizeof *f->kv, cmp_kv_ptr, r->what, &dup)) != LRT_OK)
    return st;
  if (dup != (size_t)-1)
    return lrt_err(LRT_ERR_FORMAT, "%s: duplicate metadata key %s", r->what, f->kv[dup].key);

  f->alignment = GGUF_DEFAULT_ALIGNMENT;
  const lrt_gguf_kv *al = lrt_gguf_find(f, "general.alignment");
  if (al) {
    if (al->type != LRT_META_UINT32)
      return lrt_err(LRT_ERR_FORMAT, "%s: general.alignment must be a u32, not %s", r->what,
                     k_vt_names[al->type]);
    f->alignment = lrt_rd_u32le(al->data);
    if (f->alignment == 0 || (f->alignment & (f->alignment - 1)) != 0)
      return lrt_err(LRT_ERR_FORMAT, "%s: general.alignment %llu is not a nonzero power of two",
                     r->what, (unsigned long long)f->alignment);
  }

  /* tensor infos: each takes >= 33 bytes (8 + 1-byte name + 4 + 8 + 4 + 8) */
  if (n_tensors > remaining(r) / 33)
    return lrt_err(LRT_ERR_FORMAT, "%s: header claims %llu tensors, more than a %llu-byte file "
                   "can hold", r->what, (unsigned long long)n_tensors, (unsigned long long)r->len);
  size_t nt = n_tensors ? (size_t)n_tensors : 1;
  f->tensors = (lrt_tensor_ref *)calloc(nt, sizeof *f->tensors);
  uint64_t *offsets = (uint64_t *)malloc(nt * sizeof *offsets);
  if (!f->tensors || !offsets) {
    free(offsets);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "%s: out of memory", r->what);
  }
  st = LRT_OK;
  for (uint64_t i = 0; i < n_tensors && st == LRT_OK; i++) {
    f->n_tensors++;
    st = rd_tensor(r, f->alignment, &f->tensors[i], &offsets[i]);
  }
  if (st == LRT_OK) st = place_tensors(r, f, offsets);
  free(offsets);
  if (st != LRT_OK) return st;
  if ((st = find_dup(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_tensor_ptr, r->what,
                     &dup)) != LRT_OK)
    return st;
  if (dup != (size_t)-1)
    return lrt_err(LRT_ERR_FORMAT, "%s: duplicate tensor name \"%s\"", r->what,
                   f->tensors[dup].name);
  return LRT_OK;
}

static void free_tables(lrt_gguf_file *f) {
  for (size_t i = 0; i < f->n_kv; i++) {
    free(f->kv[i].key);
    free((void *)f->kv[i].strs);
    free(f->kv[i].str_lens);
  }
  free(f->kv);
  for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
  free(f->tensors);
  f->kv = NULL;
  f->tensors = NULL;
  f->n_kv = f->n_tensors = 0;
}

int32_t lrt_gguf_parse(const uint8_t *buf, uint64_t len, const char *what, lrt_gguf_file *out) {
  memset(out, 0, sizeof *out);
  if (!what) what = "GGUF buffer";
  if (!buf && len > 0) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "%s: NULL buffer", what);
  reader r = {buf, len, 0, what};
  int32_t st = parse_body(&r, out);
  if (st != LRT_OK) {
    free_tables(out);
    memset(out, 0, sizeof *out);
    return st;
  }
  out->map.data = buf;
  out->map.size = len;
  return LRT_OK;
}

/* ---- files and lookups ------------------------------------------------------------------ */

int32_t lrt_gguf_open(const char *path, int in_memory, lrt_gguf_file *out) {
  memset(out, 0, sizeof *out);
  lrt_mapped_file m;
  int32_t st = in_memory ? lrt_read_whole_file(path, &m) : lrt_map_file(path, &m);
  if (st != LRT_OK) return st;
  st = lrt_gguf_parse(m.data, m.size, path, out);
  if (st != LRT_OK) {
    lrt_unmap_file(&m);
    return st;
  }
  out->map = m; /* same data pointer; now the file owns the mapping */
  return LRT_OK;
}

void lrt_gguf_close(lrt_gguf_file *f) {
  if (!f) return;
  free_tables(f);
  lrt_unmap_file(&f->map); /* only unmaps when priv says we mapped it */
  memset(f, 0, sizeof *f);
}

const lrt_gguf_kv *lrt_gguf_find(const lrt_gguf_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (size_t i = 0; i < f->n_kv; i++)
    if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
  return NULL;
}

const lrt_tensor_ref *lrt_gguf_find_tensor(const lrt_gguf_file *f, const char *name) {
  if (!f || !name) return NULL;
  for (size_t i = 0; i < f->n_tensors; i++)
    if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
  return NULL;
}

/* Shared argument checks for the typed getters. */
static int32_t kv_elem(const lrt_gguf_kv *kv, uint64_t index, const uint8_t **p) {
  if (!kv) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "NULL metadata entry");
  if (index >= kv->count)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "index %llu is out of range for %s (%llu elements)",
                   (unsigned long long)index, kv->key, (unsigned long long)kv->count);
  if (kv->elem_type == LRT_META_STRING || kv->elem_type > LRT_META_FLOAT64 || !kv->data)
    return lrt_err(LRT_ERR_FORMAT, "metadata %s is a string, not a number", kv->key);
  *p = kv->data + index * k_vt_size[kv->elem_type];
  return LRT_OK;
}

int32_t lrt_gguf_kv_int(const lrt_gguf_kv *kv, uint64_t index, int64_t *out) {
  const uint8_t *p = NULL;
  int32_t st = kv_elem(kv, index, &p);
  if (st != LRT_OK) return st;
  switch (kv->elem_type) {
    case LRT_META_UINT8: *out = p[0]; break;
    case LRT_META_INT8: *out = (int8_t)p[0]; break;
    case LRT_META_BOOL: *out = p[0] != 0; break;
    case LRT_META_UINT16: *out = lrt_rd_u16le(p); break;
    case LRT_META_INT16: *out = (int16_t)lrt_rd_u16le(p); break;
    case LRT_META_UINT32: *out = lrt_rd_u32le(p); break;
    case LRT_META_INT32: *out = (int32_t)lrt_rd_u32le(p); break;
    case LRT_META_INT64: *out = (int64_t)lrt_rd_u64le(p); break;
    case LRT_META_UINT64: {
      uint64_t u = lrt_rd_u64le(p);
      if (u > (uint64_t)INT64_MAX)
        return lrt_err(LRT_ERR_FORMAT, "metadata %s: value %llu does not fit an int64", kv->key,
                       (unsigned long long)u);
      *out = (int64_t)u;
      break;
    }
    default:
      return lrt_err(LRT_ERR_FORMAT, "metadata %s is a %s, not an integer", kv->key,
                     k_vt_names[kv->elem_type]);
  }
  return LRT_OK;
}

int32_t lrt_gguf_kv_float(const lrt_gguf_kv *kv, uint64_t index, double *out) {
  const uint8_t *p = NULL;
  int32_t st = kv_elem(kv, index, &p);
  if (st != LRT_OK) return st;
  if (kv->elem_type == LRT_META_FLOAT32) {
    uint32_t u = lrt_rd_u32le(p);
    float x;
    memcpy(&x, &u, sizeof x);
    *out = (double)x;
  } else if (kv->elem_type == LRT_META_FLOAT64) {
    uint64_t u = lrt_rd_u64le(p);
    memcpy(out, &u, sizeof *out);
  } else if (kv->elem_type == LRT_META_UINT64) {
    *out = (double)lrt_rd_u64le(p);
  } else {
    int64_t v;
    if ((st = lrt_gguf_kv_int(kv, index, &v)) != LRT_OK) return st;
    *out = (double)v;
  }
  return LRT_OK;
}
