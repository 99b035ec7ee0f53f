/* internal.h -- declarations shared by the loomrt core modules (not part of the API). */
#ifndef LOOMRT_INTERNAL_H
#define LOOMRT_INTERNAL_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "include/loomrt.h"

/* Floats must be evaluated in their own precision (no x87 / s390x excess precision),
 * see docs/numerics.md. */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "loomrt needs FLT_EVAL_METHOD == 0 (use SSE2 on 32-bit x86, -fexcess-precision=fast on s390x)"
#endif

#if defined(_MSC_VER)
#define LRT_THREAD_LOCAL __declspec(thread)
#else
#define LRT_THREAD_LOCAL _Thread_local
#endif

/* ---- errors (error.c) ---------------------------------------------------------------- */

/* Format a message into the thread-local error buffer and return `status`. */
int32_t lrt_err(int32_t status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prefix the current thread-local message with "<prefix>: " and return status. */
int32_t lrt_err_prefix(int32_t status, const char *prefix);
void lrt_err_clear(void);

/* ---- safe arithmetic ------------------------------------------------------------------- */

/* Return 1 and set *out on success, 0 on overflow. */
static inline int lrt_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  if (a != 0 && b > UINT64_MAX / a) return 0;
  *out = a * b;
  return 1;
}
static inline int lrt_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  if (b > UINT64_MAX - a) return 0;
  *out = a + b;
  return 1;
}
static inline uint32_t lrt_rd_u32le(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t lrt_rd_u64le(const uint8_t *p) {
  return (uint64_t)lrt_rd_u32le(p) | ((uint64_t)lrt_rd_u32le(p + 4) << 32);
}
static inline uint16_t lrt_rd_u16le(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

/* UTF-8 validation (utf8.c): 1 when [s, s+n) is well-formed UTF-8 (no surrogates, no
 * overlongs, max U+10FFFF). */
int lrt_utf8_valid(const char *s, size_t n);

/* ---- platform (platform.c) ------------------------------------------------------------ */

typedef struct lrt_mapped_file {
  const uint8_t *data; /* NULL when size == 0 */
  uint64_t size;
  void *priv[2];       /* OS handles */
} lrt_mapped_file;

/* Map a whole file read-only. Errors: LRT_ERR_NOT_FOUND, LRT_ERR_IO. */
int32_t lrt_map_file(const char *path, lrt_mapped_file *out);
void lrt_unmap_file(lrt_mapped_file *f);
/* The bytes [p, p + n) of a mapping from lrt_map_file will not be read soon: the OS may drop
 * their pages from this process (they are read from the file again if touched). A no-op for
 * caller buffers, files read into memory and on Windows. */
void lrt_map_release(const lrt_mapped_file *f, const void *p, uint64_t n);
/* 1 when path is an existing directory, 0 otherwise. */
int lrt_is_dir(const char *path);
/* 1 when path is an existing regular file. */
int lrt_is_file(const char *path);
/* Read a whole (small) file into a malloc'ed, NUL-terminated buffer. max_size bounds it. */
int32_t lrt_read_file(const char *path, uint64_t max_size, char **out, size_t *out_len);
int lrt_cpu_count(void);
int lrt_physical_cores(void); /* the default thread count: physical cores this process may use */

/* Threads: a portable mutex/cond/thread trio for the pool. */
typedef struct lrt_thread lrt_thread;
typedef void (*lrt_thread_fn)(void *arg);
int32_t lrt_thread_start(lrt_thread **out, lrt_thread_fn fn, void *arg);
void lrt_thread_join(lrt_thread *t);

/* Floating-point environment guard (MXCSR / FPCR): set the IEEE default, return the old. */
typedef struct { uint64_t saved; } lrt_fpenv;
void lrt_fpenv_enter(lrt_fpenv *env);
void lrt_fpenv_leave(const lrt_fpenv *env);

/* ---- tensors -------------------------------------------------------------------------- */

/* Storage formats. F32/F16/BF16 are used in place; the GGUF block formats are
 * dequantized at load for now. */
typedef enum lrt_dtype {
  LRT_DT_F32 = 0,
  LRT_DT_F16 = 1,
  LRT_DT_BF16 = 2,
  LRT_DT_Q8_0 = 3,
  LRT_DT_Q4_0 = 4,
  LRT_DT_Q4_1 = 5,
  LRT_DT_Q4_K = 6,
  LRT_DT_Q5_K = 7,
  LRT_DT_Q6_K = 8,
  LRT_DT_Q5_0 = 9,
  LRT_DT_Q5_1 = 10,
  LRT_DT_OTHER = 100 /* a format the file may hold but loomrt cannot compute with */
} lrt_dtype;

const char *lrt_dtype_name(int dtype);

#define LRT_MAX_DIMS 8

/* A tensor inside a mapped file. shape is in row-major order, outermost first (numpy /
 * HF order; for GGUF this is ne[] reversed). data points into the mapping. */
typedef struct lrt_tensor_ref {
  char *name;          /* owned, NUL-terminated */
  size_t name_len;
  int dtype;           /* lrt_dtype */
  char dtype_name[16]; /* the file's own name for the type, e.g. "I64", "Q5_K" */
  int n_dims;
  int64_t shape[LRT_MAX_DIMS];
  uint64_t n_elems;
  const uint8_t *data;
  uint64_t nbytes;
} lrt_tensor_ref;

/* ---- JSON (json.c) -------------------------------------------------------------------- */

typedef enum lj_type { LJ_NULL, LJ_BOOL, LJ_NUMBER, LJ_STRING, LJ_ARRAY, LJ_OBJECT } lj_type;

typedef struct lj_value lj_value;
typedef struct lj_member lj_member;
struct lj_value {
  lj_type type;
  int boolean;        /* LJ_BOOL */
  double number;      /* LJ_NUMBER (parsed by loomrt's own deterministic routine) */
  int is_integer;     /* LJ_NUMBER written without '.', 'e' and fits int64 */
  int64_t integer;    /* valid when is_integer */
  const char *str;    /* LJ_STRING: unescaped, valid UTF-8, NUL-terminated */
  size_t str_len;
  lj_value *items;    /* LJ_ARRAY */
  lj_member *members; /* LJ_OBJECT, in file order */
  size_t count;       /* items or members */
};
struct lj_member {
  const char *key; /* unescaped, NUL-terminated */
  size_t key_len;
  lj_value value;
};

typedef struct lj_doc lj_doc;
/* Parse UTF-8 JSON text. Strict RFC 8259: no comments, no trailing commas, no NaN;
 * depth <= 64; duplicate keys are an error. `what` names the source for messages
 * (e.g. "config.json"). LRT_ERR_FORMAT with line:column on failure. */
int32_t lj_parse(const char *text, size_t len, const char *what, lj_doc **out);
void lj_free(lj_doc *doc);
const lj_value *lj_root(const lj_doc *doc);
/* Member of an object by key, NULL when absent or when obj is not an object. */
const lj_value *lj_get(const lj_value *obj, const char *key);

/* ---- safetensors (safetensors.c) ------------------------------------------------------- */

typedef struct lrt_st_file {
  lrt_mapped_file map; /* map.data may also be a caller buffer (then priv == NULL) */
  lrt_tensor_ref *tensors;
  size_t n_tensors;
} lrt_st_file;

/* Validate a safetensors buffer: 8-byte LE header size, JSON header, dtypes, shapes
 * (product x element size == byte span), offsets within the data section, no overlap.
 * Tensors are sorted by name. `what` names the file in messages. */
int32_t lrt_st_parse(const uint8_t *buf, uint64_t len, const char *what, lrt_st_file *out);
int32_t lrt_st_open(const char *path, lrt_st_file *out);
void lrt_st_close(lrt_st_file *f);
const lrt_tensor_ref *lrt_st_find(const lrt_st_file *f, const char *name);

/* ---- GGUF (gguf.c) -------------------------------------------------------------------- */

typedef struct lrt_gguf_kv {
  char *key; /* owned, NUL-terminated */
  size_t key_len;
  uint32_t type;      /* lrt_meta_type */
  uint32_t elem_type; /* == type for scalars */
  uint64_t count;     /* 1 for scalars */
  const uint8_t *data;  /* scalars and numeric arrays: raw little-endian bytes in the file */
  const char **strs;    /* STRING scalars / string arrays: count pointers into the file */
  uint64_t *str_lens;   /* (not NUL-terminated; validated UTF-8) */
} lrt_gguf_kv;

typedef struct lrt_gguf_file {
  lrt_mapped_file map;
  uint32_t version;
  uint64_t alignment;
  lrt_gguf_kv *kv;
  size_t n_kv;
  lrt_tensor_ref *tensors; /* in file order */
  size_t n_tensors;
} lrt_gguf_file;

int32_t lrt_gguf_parse(const uint8_t *buf, uint64_t len, const char *what, lrt_gguf_file *out);
int32_t lrt_gguf_open(const char *path, lrt_gguf_file *out);
void lrt_gguf_close(lrt_gguf_file *f);
const lrt_gguf_kv *lrt_gguf_find(const lrt_gguf_file *f, const char *key);
const lrt_tensor_ref *lrt_gguf_find_tensor(const lrt_gguf_file *f, const char *name);
/* Element `index` of an integer/bool kv as int64 (range-checked); of a float kv as double
 * (integers convert too). Return LRT_OK or LRT_ERR_FORMAT / LRT_ERR_INVALID_ARGUMENT. */
int32_t lrt_gguf_kv_int(const lrt_gguf_kv *kv, uint64_t index, int64_t *out);
int32_t lrt_gguf_kv_float(const lrt_gguf_kv *kv, uint64_t index, double *out);

/* ---- number conversions (convert.c) ---------------------------------------------------- */

static inline float lrt_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v;
  v.u = (uint32_t)h << 16;
  return v.f;
}
float lrt_f16_to_f32(uint16_t h); /* exact, table-free */
uint16_t lrt_f32_to_f16(float f);  /* round to nearest even */
/* Q8_0 blocks (34 bytes per 32 values, n % 32 == 0) of x by the rule in docs/numerics.md;
 * -1 (nothing promised about out) when a block holds NaN/infinity or its scale is out of
 * the F16 range or too small to invert. */
int lrt_quantize_q8_0(const float *x, uint8_t *out, int64_t n);
/* The same rule for an activation row, split as the int8 dot kernels read it: q[n] int8,
 * d[n/32] block scales (F16-rounded, as float), s[n/32] block sums of q. Never fails
 * (non-finite blocks give d = NaN, q = 0). */
void lrt_quantize_act_q8(const float *x, int8_t *q, float *d, int32_t *s, int64_t n);

#endif /* LOOMRT_INTERNAL_H */
