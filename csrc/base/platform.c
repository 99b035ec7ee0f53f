/* platform.c -- the OS layer: file mapping, small file reads, threads, CPU count and the
 * floating-point environment guard. Everything OS-specific in loomrt lives here. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#if defined(__linux__)
#define _GNU_SOURCE /* sched_getaffinity, CPU_ISSET */
#elif defined(__APPLE__)
#define _DARWIN_C_SOURCE /* sysctlbyname */
#endif
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

#if defined(_WIN32)
#include <windows.h>
#else
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__wasi__)
/* WASI has no mmap (and, without the threads proposal, no threads): files are read into
 * memory and the library runs single-threaded (lrt_cpu_count() == 1, lrt_thread_start
 * fails). The browser/Node build with atomics and a shared memory (tools/build_wasm.py,
 * loomrt-threads.wasm) runs its threads on Web Workers that bindings/js/loomrt.mjs keeps
 * (LRT_WASM_THREADS below); its thread count comes from the caller, never from the CPU. */
#define LRT_NO_MMAP 1
#if defined(__wasm_atomics__)
#define LRT_WASM_THREADS 1
#elif !defined(_REENTRANT)
#define LRT_NO_THREADS 1
#endif
#else
#include <sys/mman.h>
#endif
#if defined(__linux__)
#include <sched.h>
#include <stdio.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>
#define LRT_X86 1
#elif !(defined(__aarch64__) && defined(__GNUC__))
#include <fenv.h>
#endif

/* ---- files ---------------------------------------------------------------------------- */

#if defined(_WIN32)
static wchar_t *utf8_to_wide(const char *s) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  if (n <= 0) return NULL;
  wchar_t *w = (wchar_t *)malloc((size_t)n * sizeof(wchar_t));
  if (w && MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) <= 0) {
    free(w);
    return NULL;
  }
  return w;
}

int lrt_is_dir(const char *path) {
  wchar_t *w = utf8_to_wide(path);
  if (!w) return 0;
  DWORD a = GetFileAttributesW(w);
  free(w);
  return a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY);
}

int lrt_is_file(const char *path) {
  wchar_t *w = utf8_to_wide(path);
  if (!w) return 0;
  DWORD a = GetFileAttributesW(w);
  free(w);
  return a != INVALID_FILE_ATTRIBUTES && !(a & FILE_ATTRIBUTE_DIRECTORY);
}

/* Opens `path` (UTF-8) for reading with the given attribute flags and reads its size: the
 * shared first half of lrt_map_file and lrt_read_whole_file. */
static int32_t win_open_read(const char *path, DWORD flags, HANDLE *fh_out, uint64_t *size_out) {
  wchar_t *w = utf8_to_wide(path);
  if (!w) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "path is not valid UTF-8: %s", path);
  HANDLE fh = CreateFileW(w, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, flags, NULL);
  free(w);
  if (fh == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    if (e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND)
      return lrt_err(LRT_ERR_NOT_FOUND, "file not found: %s", path);
    return lrt_err(LRT_ERR_IO, "cannot open %s (Windows error %lu)", path, (unsigned long)e);
  }
  LARGE_INTEGER sz;
  if (!GetFileSizeEx(fh, &sz)) {
    CloseHandle(fh);
    return lrt_err(LRT_ERR_IO, "cannot get the size of %s", path);
  }
  *fh_out = fh;
  *size_out = (uint64_t)sz.QuadPart;
  return LRT_OK;
}

int32_t lrt_map_file(const char *path, lrt_mapped_file *out) {
  memset(out, 0, sizeof *out);
  HANDLE fh;
  int32_t st = win_open_read(path, FILE_ATTRIBUTE_NORMAL, &fh, &out->size);
  if (st != LRT_OK) return st;
  if (out->size == 0) {
    CloseHandle(fh);
    return LRT_OK;
  }
  HANDLE mh = CreateFileMappingW(fh, NULL, PAGE_READONLY, 0, 0, NULL);
  if (!mh) {
    CloseHandle(fh);
    return lrt_err(LRT_ERR_IO, "cannot map %s", path);
  }
  void *p = MapViewOfFile(mh, FILE_MAP_READ, 0, 0, 0);
  if (!p) {
    CloseHandle(mh);
    CloseHandle(fh);
    return lrt_err(LRT_ERR_IO, "cannot map %s", path);
  }
  out->data = (const uint8_t *)p;
  out->priv[0] = fh;
  out->priv[1] = mh;
  return LRT_OK;
}

int32_t lrt_read_whole_file(const char *path, lrt_mapped_file *out) {
  memset(out, 0, sizeof *out);
  HANDLE fh;
  uint64_t size;
  int32_t st = win_open_read(path, FILE_ATTRIBUTE_NORMAL | FILE_FLAG_SEQUENTIAL_SCAN, &fh, &size);
  if (st != LRT_OK) return st;
  if ((uint64_t)(size_t)size != size) {
    CloseHandle(fh);
    return lrt_err(LRT_ERR_IO, "%s is too large to read into memory on this platform", path);
  }
  if (size == 0) {
    CloseHandle(fh);
    return LRT_OK;
  }
  uint8_t *p = (uint8_t *)malloc((size_t)size);
  if (!p) {
    CloseHandle(fh);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory reading %s into memory (%llu bytes)", path,
                   (unsigned long long)size);
  }
  uint64_t got = 0;
  while (got < size) {
    DWORD want = size - got > 0x40000000u ? 0x40000000u : (DWORD)(size - got), n = 0;
    if (!ReadFile(fh, p + got, want, &n, NULL) || n == 0) {
      free(p);
      CloseHandle(fh);
      return lrt_err(LRT_ERR_IO, "cannot read %s (the file shrank or a read failed)", path);
    }
    got += n;
  }
  CloseHandle(fh);
  out->data = p;
  out->size = size;
  out->priv[0] = p;
  out->priv[1] = LRT_MAP_HEAP;
  return LRT_OK;
}

void lrt_unmap_file(lrt_mapped_file *f) {
  if (f->data && f->priv[1] == LRT_MAP_HEAP) {
    free(f->priv[0]);
  } else if (f->data && f->priv[0]) {
    UnmapViewOfFile((void *)f->data);
    CloseHandle((HANDLE)f->priv[1]);
    CloseHandle((HANDLE)f->priv[0]);
  }
  memset(f, 0, sizeof *f);
}

void lrt_map_release(const lrt_mapped_file *f, const void *p, uint64_t n) {
  (void)f; (void)p; (void)n;
}

int lrt_cpu_count(void) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwNumberOfProcessors > 0 ? (int)si.dwNumberOfProcessors : 1;
}

/* Physical cores of the processor group: one RelationProcessorCore record per core, however
 * many logical processors (SMT siblings) it has. */
int lrt_physical_cores(void) {
  DWORD len = 0;
  GetLogicalProcessorInformation(NULL, &len);
  if (len == 0) return lrt_cpu_count();
  SYSTEM_LOGICAL_PROCESSOR_INFORMATION *info = (SYSTEM_LOGICAL_PROCESSOR_INFORMATION *)malloc(len);
  if (!info) return lrt_cpu_count();
  int cores = 0;
  if (GetLogicalProcessorInformation(info, &len)) {
    for (DWORD i = 0; i < len / sizeof *info; i++)
      if (info[i].Relationship == RelationProcessorCore) cores++;
  }
  free(info);
  return cores > 0 ? cores : lrt_cpu_count();
}

#else /* POSIX */

int lrt_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lrt_is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Files of at least HUGE_MIN bytes read into memory go into an anonymous mapping aligned to
 * 2 MiB and advised MADV_HUGEPAGE (Linux; where transparent huge pages are "madvise" or
 * "always"): decode streams every weight once per token, and with 4 KiB pages that is one
 * page-table walk per 4 KiB. Only advice: without huge pages the buffer works the same. */
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(LRT_NO_MMAP)
#define LRT_HUGE_READ 1
#define HUGE_ALIGN ((size_t)2 << 20)
#define HUGE_MIN ((uint64_t)8 << 20)
static size_t huge_span(uint64_t size) { return ((size_t)size + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN + HUGE_ALIGN; }
#endif

/* Read size bytes of an open file into new memory (the file read into memory); *base and
 * *kind are what lrt_unmap_file needs to release it. */
static int32_t read_all(int fd, const char *path, uint64_t size, uint8_t **out, void **base, void **kind) {
  uint8_t *p = NULL;
  *kind = LRT_MAP_HEAP;
#if defined(LRT_HUGE_READ)
  if (size >= HUGE_MIN) {
    void *m = mmap(NULL, huge_span(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
      uintptr_t a = ((uintptr_t)m + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
      (void)madvise((void *)a, huge_span(size) - HUGE_ALIGN, MADV_HUGEPAGE);
      p = (uint8_t *)a;
      *base = m;
      *kind = LRT_MAP_HUGE;
    }
  }
#endif
  if (!p) {
    p = (uint8_t *)malloc((size_t)size);
    *base = p;
  }
  if (!p)
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory reading %s into memory (%llu bytes)", path,
                   (unsigned long long)size);
  size_t got = 0;
  while (got < (size_t)size) {
    ssize_t r = read(fd, p + got, (size_t)size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      lrt_mapped_file tmp = {p, size, {*base, *kind}};
      lrt_unmap_file(&tmp);
      return lrt_err(LRT_ERR_IO, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "file shrank");
    }
    got += (size_t)r;
  }
  *out = p;
  return LRT_OK;
}

/* Open and check a file for mapping or reading: *fd and *size, or an error. */
static int32_t open_regular(const char *path, int *fd, uint64_t *size) {
  *fd = open(path, O_RDONLY);
  if (*fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return lrt_err(LRT_ERR_NOT_FOUND, "file not found: %s", path);
    return lrt_err(LRT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  }
  struct stat st;
  if (fstat(*fd, &st) != 0) {
    close(*fd);
    return lrt_err(LRT_ERR_IO, "cannot stat %s", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(*fd);
    return lrt_err(LRT_ERR_IO, "%s is not a regular file", path);
  }
  *size = (uint64_t)st.st_size;
  if ((uint64_t)(size_t)*size != *size) {
    close(*fd);
    return lrt_err(LRT_ERR_IO, "%s is too large for this platform's address space", path);
  }
  return LRT_OK;
}

int32_t lrt_read_whole_file(const char *path, lrt_mapped_file *out) {
  memset(out, 0, sizeof *out);
  int fd;
  uint64_t size;
  int32_t st = open_regular(path, &fd, &size);
  if (st != LRT_OK) return st;
  uint8_t *p = NULL;
  void *base = NULL, *kind = LRT_MAP_HEAP;
  if (size > 0 && (st = read_all(fd, path, size, &p, &base, &kind)) != LRT_OK) {
    close(fd);
    return st;
  }
  close(fd);
  out->size = size;
  out->data = p;
  out->priv[0] = base;
  out->priv[1] = kind;
  return LRT_OK;
}

int32_t lrt_map_file(const char *path, lrt_mapped_file *out) {
#if defined(LRT_NO_MMAP)
  return lrt_read_whole_file(path, out);
#else
  memset(out, 0, sizeof *out);
  int fd;
  uint64_t size;
  int32_t st = open_regular(path, &fd, &size);
  if (st != LRT_OK) return st;
  out->size = size;
  if (out->size == 0) {
    close(fd);
    return LRT_OK;
  }
  void *p = mmap(NULL, (size_t)out->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    out->size = 0;
    return lrt_err(LRT_ERR_IO, "cannot map %s: %s", path, strerror(errno));
  }
  out->data = (const uint8_t *)p;
  out->priv[0] = p;
  return LRT_OK;
#endif
}

void lrt_unmap_file(lrt_mapped_file *f) {
  if (f->data && f->priv[1] == LRT_MAP_HEAP) free(f->priv[0]);
#if defined(LRT_HUGE_READ)
  else if (f->data && f->priv[1] == LRT_MAP_HUGE) munmap(f->priv[0], huge_span(f->size));
#endif
#if !defined(LRT_NO_MMAP)
  else if (f->data && f->priv[0]) munmap((void *)f->data, (size_t)f->size);
#endif
  memset(f, 0, sizeof *f);
}

void lrt_map_release(const lrt_mapped_file *f, const void *p, uint64_t n) {
#if defined(LRT_NO_MMAP)
  (void)f; (void)p; (void)n;
#else
  const uint8_t *b = (const uint8_t *)p;
  if (!f->data || !f->priv[0] || f->priv[1] == LRT_MAP_HEAP || f->priv[1] == LRT_MAP_HUGE || b < f->data || n > f->size || (uint64_t)(b - f->data) > f->size - n) return;
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) return;
  uintptr_t lo = ((uintptr_t)b + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
  uintptr_t hi = ((uintptr_t)b + (uintptr_t)n) / (uintptr_t)page * (uintptr_t)page;
  if (hi > lo) (void)madvise((void *)lo, (size_t)(hi - lo), MADV_DONTNEED); /* only advice: errors are harmless */
#endif
}

int lrt_cpu_count(void) {
#if defined(LRT_NO_THREADS) || defined(LRT_WASM_THREADS)
  return 1;
#else
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
#endif
}

#if defined(__linux__) && !defined(LRT_NO_THREADS)
/* The lowest CPU id in cpu<cpu>/topology/thread_siblings_list (the CPUs sharing its core,
 * "0,64" or "0-1"): the same number for every SMT sibling of one core. -1 if unreadable. */
static int first_sibling(int cpu) {
  char path[96], buf[64];
  snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  int v = 0, digits = 0;
  for (const char *c = buf; *c >= '0' && *c <= '9' && digits < 9; c++, digits++) v = v * 10 + (*c - '0');
  return digits ? v : -1;
}
#endif

/* Physical cores this process may run on: on Linux the CPUs of its affinity mask, SMT
 * siblings of one core counted once (sysfs topology); on macOS hw.physicalcpu; elsewhere,
 * or when the topology cannot be read, the online CPUs. */
int lrt_physical_cores(void) {
#if defined(LRT_NO_THREADS) || defined(LRT_WASM_THREADS)
  return 1;
#elif defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return lrt_cpu_count();
  unsigned char seen[CPU_SETSIZE / 8];
  memset(seen, 0, sizeof seen);
  int cores = 0, allowed = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &set)) continue;
    allowed++;
    int f = first_sibling(cpu);
    if (f < 0 || f >= CPU_SETSIZE) return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : lrt_cpu_count();
    if (!(seen[f / 8] & (1u << (f % 8)))) {
      seen[f / 8] = (unsigned char)(seen[f / 8] | (1u << (f % 8)));
      cores++;
    }
  }
  return cores > 0 ? cores : (allowed > 0 ? allowed : lrt_cpu_count());
#elif defined(__APPLE__)
  int n = 0;
  size_t len = sizeof n;
  if (sysctlbyname("hw.physicalcpu", &n, &len, NULL, 0) == 0 && n > 0) return n;
  return lrt_cpu_count();
#else
  return lrt_cpu_count();
#endif
}
#endif

char *lrt_dup_mem(const void *p, size_t n) {
  char *d = (char *)malloc(n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, p, n);
  d[n] = 0;
  return d;
}

int32_t lrt_read_file(const char *path, uint64_t max_size, char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  lrt_mapped_file m;
  int32_t st = lrt_map_file(path, &m);
  if (st != LRT_OK) return st;
  if (m.size > max_size) {
    lrt_unmap_file(&m);
    return lrt_err(LRT_ERR_FORMAT, "%s is %llu bytes, more than the %llu allowed for it", path,
                   (unsigned long long)m.size, (unsigned long long)max_size);
  }
  char *buf = lrt_dup_mem(m.data, (size_t)m.size);
  if (!buf) {
    lrt_unmap_file(&m);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory reading %s", path);
  }
  *out = buf;
  *out_len = (size_t)m.size;
  lrt_unmap_file(&m);
  return LRT_OK;
}

/* ---- threads -------------------------------------------------------------------------- */

#if defined(LRT_WASM_THREADS)
#include "lrt_atomic.h"
/* A thread of the wasm build is a Web Worker (a Node worker thread) holding its own instance
 * of the module over the shared memory. lrt_wasm_thread_spawn (provided by loomrt.mjs) hands
 * the thread to an idle worker without waiting for it; the worker points its instance's stack
 * pointer at stack_top, initialises its thread-local block at tls and calls
 * lrt_wasm_thread_main(thread). It returns nonzero when no worker is free. */
__attribute__((import_module("env"), import_name("lrt_wasm_thread_spawn")))
int32_t lrt_wasm_thread_spawn(void *thread, void *stack_top, void *tls);
#define LRT_WASM_THREAD_STACK (1u << 20) /* pool tasks use a few KB of stack */
#endif

struct lrt_thread {
#if defined(_WIN32)
  HANDLE h;
#elif defined(LRT_WASM_THREADS)
  unsigned char *stack;
  void *tls;
  lrt_atomic_int done; /* set by the thread when fn returns; lrt_thread_join waits on it */
#else
  pthread_t t;
#endif
  lrt_thread_fn fn;
  void *arg;
};

#if defined(LRT_WASM_THREADS)
void lrt_wasm_thread_main(lrt_thread *t);
__attribute__((export_name("lrt_wasm_thread_main"))) void lrt_wasm_thread_main(lrt_thread *t) {
  t->fn(t->arg);
  lrt_atomic_store_int(&t->done, 1);
  (void)__builtin_wasm_memory_atomic_notify((int *)&t->done, 1u);
}
#endif

#if defined(_WIN32)
static DWORD WINAPI thread_main(LPVOID p) {
  lrt_thread *t = (lrt_thread *)p;
  t->fn(t->arg);
  return 0;
}
#else
static void *thread_main(void *p) {
  lrt_thread *t = (lrt_thread *)p;
  t->fn(t->arg);
  return NULL;
}
#endif

int32_t lrt_thread_start(lrt_thread **out, lrt_thread_fn fn, void *arg) {
  lrt_thread *t = (lrt_thread *)calloc(1, sizeof *t);
  if (!t) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory creating a thread");
  t->fn = fn;
  t->arg = arg;
#if defined(_WIN32)
  t->h = CreateThread(NULL, 0, thread_main, t, 0, NULL);
  if (!t->h) {
    free(t);
    return lrt_err(LRT_ERR_INTERNAL, "cannot create a thread");
  }
#elif defined(LRT_WASM_THREADS)
  (void)thread_main;
  size_t align = __builtin_wasm_tls_align(), tls_size = __builtin_wasm_tls_size();
  t->stack = (unsigned char *)malloc(LRT_WASM_THREAD_STACK);
  t->tls = tls_size ? aligned_alloc(align < sizeof(void *) ? sizeof(void *) : align,
                                    (tls_size + align - 1) / align * align) : NULL;
  if (!t->stack || (tls_size && !t->tls)) {
    free(t->stack);
    free(t->tls);
    free(t);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory creating a thread");
  }
  lrt_atomic_store_int(&t->done, 0);
  if (lrt_wasm_thread_spawn(t, t->stack + LRT_WASM_THREAD_STACK, t->tls) != 0) {
    free(t->stack);
    free(t->tls);
    free(t);
    return lrt_err(LRT_ERR_UNSUPPORTED, "no Web Worker is free for another thread (loomrt.mjs starts them before "
                   "the session: load the model with the thread count you use)");
  }
#elif defined(LRT_NO_THREADS)
  (void)thread_main;
  free(t);
  return lrt_err(LRT_ERR_UNSUPPORTED, "this build has no threads (WASI without the threads proposal): use 1 thread");
#else
  if (pthread_create(&t->t, NULL, thread_main, t) != 0) {
    free(t);
    return lrt_err(LRT_ERR_INTERNAL, "cannot create a thread");
  }
#endif
  *out = t;
  return LRT_OK;
}

uint64_t lrt_now_ns(void) {
#if defined(_WIN32)
  LARGE_INTEGER f, c;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&c);
  return (uint64_t)((double)c.QuadPart * (1e9 / (double)f.QuadPart));
#else
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

void lrt_thread_join(lrt_thread *t) {
  if (!t) return;
#if defined(_WIN32)
  WaitForSingleObject(t->h, INFINITE);
  CloseHandle(t->h);
#elif defined(LRT_WASM_THREADS)
  /* bounded waits (1 ms): a missed wake-up costs a millisecond, never a hang */
  while (lrt_atomic_load_int(&t->done) == 0) (void)__builtin_wasm_memory_atomic_wait32((int *)&t->done, 0, 1000000);
  free(t->stack);
  free(t->tls);
#elif defined(LRT_NO_THREADS)
  (void)0; /* never started */
#else
  pthread_join(t->t, NULL);
#endif
  free(t);
}

/* ---- floating-point environment -------------------------------------------------------- */
/* A host may have set flush-to-zero, denormals-are-zero or another rounding mode. loomrt
 * computes with the IEEE default (round to nearest even, subnormals kept) and restores the
 * host's setting on the way out. */

void lrt_fpenv_enter(lrt_fpenv *env) {
#if defined(LRT_X86)
  env->saved = _mm_getcsr();
  _mm_setcsr(0x1f80u);
#elif defined(__aarch64__) && defined(__GNUC__)
  uint64_t v;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
  env->saved = v;
  __asm__ __volatile__("msr fpcr, %0" : : "r"((uint64_t)0));
#else
  /* Other ISAs (s390x, ppc64le, riscv64, ...): at least the rounding mode, through C99
   * <fenv.h>. (On wasm it is always round-to-nearest.) */
  int r = fegetround();
  env->saved = (uint64_t)(uint32_t)r;
  if (r != FE_TONEAREST) fesetround(FE_TONEAREST);
#endif
}

void lrt_fpenv_leave(const lrt_fpenv *env) {
#if defined(LRT_X86)
  _mm_setcsr((unsigned int)env->saved);
#elif defined(__aarch64__) && defined(__GNUC__)
  __asm__ __volatile__("msr fpcr, %0" : : "r"(env->saved));
#else
  int r = (int)(uint32_t)env->saved;
  if (r != FE_TONEAREST) fesetround(r);
#endif
}
