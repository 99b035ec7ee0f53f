/* base.h -- the bottom layer (csrc/base/): errors, safe arithmetic, platform (files, threads,
 * floating-point environment), UTF-8, storage formats and number conversion. Not part of the
 * API. Every other layer may include it; it includes only the public header. */
#ifndef LOOMRT_BASE_H
#define LOOMRT_BASE_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "../include/loomrt.h"

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

/* Map a whole file read-only. Errors: LRT_ERR_NOT_FOUND, LRT_ERR_IO. A mapping reads the
 * file's pages when they are touched: if the file is truncated or rewritten in place while
 * mapped, a touched page past the new end raises SIGBUS (POSIX), which no library can catch
 * safely -- lrt_read_whole_file is the robust alternative (LRT_OPEN_NO_MMAP). */
int32_t lrt_map_file(const char *path, lrt_mapped_file *out);
/* The same interface for a file read into a heap buffer (priv[1] == LRT_MAP_HEAP, or, for a
 * file of 8 MiB or more on Linux, LRT_MAP_HUGE: memory advised for transparent huge pages): the
 * process no longer depends on the file afterwards. Errors as lrt_map_file, and
 * LRT_ERR_OUT_OF_MEMORY. */
int32_t lrt_read_whole_file(const char *path, lrt_mapped_file *out);
#define LRT_MAP_HEAP ((void *)(uintptr_t)1) /* priv[1] of a read-in file (never an OS handle) */
/* priv[1] of a large read-in file in a 2 MiB-aligned anonymous mapping advised for huge pages */
#define LRT_MAP_HUGE ((void *)(uintptr_t)2)
/* Unmap or free a file from lrt_map_file / lrt_read_whole_file (caller buffers, priv all
 * NULL, are left alone). */
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
/* A malloc'ed copy of n bytes with a NUL after them (NULL when out of memory). */
char *lrt_dup_mem(const void *p, size_t n);
int lrt_cpu_count(void);
int lrt_physical_cores(void); /* the default thread count: physical cores this process may use */

/* Threads: a portable mutex/cond/thread trio for the pool. */
typedef struct lrt_thread lrt_thread;
typedef void (*lrt_thread_fn)(void *arg);
int32_t lrt_thread_start(lrt_thread **out, lrt_thread_fn fn, void *arg);
void lrt_thread_join(lrt_thread *t);
/* A monotonic clock in nanoseconds (diagnostics only: never feeds a computed value). */
uint64_t lrt_now_ns(void);

/* Floating-point environment guard (MXCSR / FPCR): set the IEEE default, return the old. */
typedef struct { uint64_t saved; } lrt_fpenv;
void lrt_fpenv_enter(lrt_fpenv *env);
void lrt_fpenv_leave(const lrt_fpenv *env);

/* ---- storage formats (names: convert.c) ------------------------------------------------ */

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

#endif /* LOOMRT_BASE_H */
