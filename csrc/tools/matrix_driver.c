/* matrix_driver.c -- the standalone determinism driver (no Python): loads a model through
 * the public C API only, runs a fixed schedule and prints SHA-256 hashes of the logits bits
 * (little-endian float32, every NaN canonicalised to 0x7fc00000) and of the token ids
 * (little-endian int32). tests/test_matrix.py builds it with several compilers, flags and
 * targets (zig cc -target ...: aarch64/s390x Linux under qemu, Windows under wine, WASI
 * under wasmtime) and checks that every configuration prints the pinned golden hashes.
 *
 *   matrix_driver MODEL [--threads 1,2,8] [--chunks 1,3,16,0] [--kernels all|NAME]
 *                 [--hostile] [--no-gen] [--train]
 *
 * Schedule, for every kernel path (all runnable ones, or NAME) and every thread count:
 *   logits chunk=C   the 40-token sequence SEQ40 evaluated in pieces of C tokens (0: all at
 *                    once) with all logits kept: hash of the 40 x vocab logits
 *   greedy           SEQ40, then 16 greedy tokens: hash of the ids, hash of every decode
 *                    step's logits row
 *   sampled          SEQ40, then 24 tokens at temperature 0.8, top-k 40, top-p 0.95, seed 7
 *   resume           (when the library has lrt_session_state_*) SEQ40 + 8 sampled tokens,
 *                    state saved, loaded into a fresh session, 16 more: must equal sampled
 *   train            (--train) a trainer made from MODEL's weights (lrt_trainer_open) takes
 *                    three AdamW steps (warmup 1, cosine over 3, weight decay 0.1, clipping
 *                    at norm 1) on fixed batches of 4 x 24 tokens (rows with repeated
 *                    tokens), the second step
 *                    accumulated from two micro-batches of 2: hash of every tensor's final
 *                    weights in tensor order ("train weights"), and of the three step losses
 *                    as little-endian float64 bits ("train losses")
 * --hostile: before every library call the driver sets flush-to-zero, denormals-are-zero
 * (x86 MXCSR / aarch64 FPCR where available) and round-toward-zero (fesetround), and after
 * every call checks that the library left that environment exactly as it found it. The
 * library computes under its own IEEE default, so the hashes must not change.
 *
 * Output: one line per result, "<kernel> t=<threads> <what> <sha256>", then "done". Exit
 * status 0 on success, 1 on any library error or environment violation (message on stderr). */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
#include <fenv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/loomrt.h"
#include "sha256.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define DRV_X86 1
#endif

/* ---- the hostile floating-point environment ------------------------------------------ */

static int g_hostile = 0;
static unsigned long long g_expect_ctl; /* control word the driver set */
static int g_expect_round;

static unsigned long long read_ctl(void) {
#if defined(DRV_X86)
  return _mm_getcsr() & 0xffc0u; /* control bits only (the low 6 are sticky flags) */
#elif defined(__aarch64__) && defined(__GNUC__)
  unsigned long long v;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
  return v;
#else
  return 0;
#endif
}

static void hostile_set(void) {
  if (!g_hostile) return;
#if defined(FE_TOWARDZERO)
  fesetround(FE_TOWARDZERO);
#endif
#if defined(DRV_X86)
  /* FTZ (bit 15) | DAZ (bit 6) | all exceptions masked | RC = toward zero (bits 13-14) */
  _mm_setcsr(0x8000u | 0x0040u | 0x1f80u | 0x6000u);
#elif defined(__aarch64__) && defined(__GNUC__)
  unsigned long long v = (1ull << 24) | (3ull << 22); /* FZ | RMode = toward zero */
  __asm__ __volatile__("msr fpcr, %0" : : "r"(v));
#endif
  g_expect_ctl = read_ctl();
  g_expect_round = fegetround();
}

static void hostile_check(const char *what) {
  if (!g_hostile) return;
  if (read_ctl() != g_expect_ctl || fegetround() != g_expect_round) {
    fprintf(stderr, "error: %s changed the caller's floating-point environment (0x%llx -> 0x%llx)\n",
            what, g_expect_ctl, read_ctl());
    exit(1);
  }
}

static void hostile_clear(void) {
  if (!g_hostile) return;
  fesetround(FE_TONEAREST);
#if defined(DRV_X86)
  _mm_setcsr(0x1f80u);
#elif defined(__aarch64__) && defined(__GNUC__)
  __asm__ __volatile__("msr fpcr, %0" : : "r"(0ull));
#endif
}

/* Every library call goes through CALL: hostile environment before, checked after. */
static void fail(const char *what, int32_t st) {
  hostile_clear();
  fprintf(stderr, "error: %s: %s: %s\n", what, lrt_status_name(st), lrt_last_error());
  exit(1);
}
#define CALL(expr)                                  \
  do {                                              \
    hostile_set();                                  \
    int32_t st_ = (expr);                           \
    hostile_check(#expr);                           \
    if (st_ != LRT_OK) fail(#expr, st_);            \
  } while (0)

/* ---- hashing ------------------------------------------------------------------------- */

static void hash_floats(lrt_sha256 *h, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) u = 0x7fc00000u; /* NaN */
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    lrt_sha256_update(h, b, 4);
  }
}

static void hash_ids(lrt_sha256 *h, const int32_t *ids, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)ids[i];
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    lrt_sha256_update(h, b, 4);
  }
}

static void finish(lrt_sha256 *h, char out[65]) {
  uint8_t d[32];
  lrt_sha256_final(h, d);
  lrt_sha256_hex(d, out);
}

/* ---- the schedule -------------------------------------------------------------------- */

#define SEQ_LEN 40
static int32_t SEQ[SEQ_LEN];

static void make_seq(void) { /* tests/models.py SEQ40 */
  SEQ[0] = 1;
  for (int i = 1; i < SEQ_LEN; i++) SEQ[i] = (17 * (i - 1) + 5) % 251 + 3;
}

static lrt_session *new_session(lrt_model *m, int threads) {
  lrt_session *s = NULL;
  CALL(lrt_session_new(m, 128, threads, &s));
  return s;
}

static void logits_chunked(lrt_model *m, int threads, int chunk, char out[65]) {
  lrt_session *s = new_session(m, threads);
  lrt_sha256 h;
  lrt_sha256_init(&h);
  int step = chunk > 0 ? chunk : SEQ_LEN;
  for (int i = 0; i < SEQ_LEN; i += step) {
    int n = SEQ_LEN - i < step ? SEQ_LEN - i : step;
    CALL(lrt_session_eval(s, SEQ + i, n, 1));
    const float *lg;
    int64_t rows, vocab;
    CALL(lrt_session_logits(s, &lg, &rows, &vocab));
    if (rows != n) fail("row count", LRT_ERR_INTERNAL);
    hash_floats(&h, lg, rows * vocab);
  }
  finish(&h, out);
  lrt_session_free(s);
}

/* Generate n tokens after the current sequence; hash ids and each step's logits row. */
static void generate(lrt_session *s, int n, lrt_sha256 *ids_h, lrt_sha256 *lg_h, int32_t *ids) {
  for (int i = 0; i < n; i++) {
    const float *lg;
    int64_t rows, vocab;
    CALL(lrt_session_logits(s, &lg, &rows, &vocab));
    hash_floats(lg_h, lg + (rows - 1) * vocab, vocab);
    int32_t tok;
    CALL(lrt_session_sample(s, &tok));
    hash_ids(ids_h, &tok, 1);
    if (ids) ids[i] = tok;
    if (i + 1 < n) CALL(lrt_session_eval(s, &tok, 1, 0));
  }
}

static void configure_sampled(lrt_session *s) {
  CALL(lrt_session_set_float(s, LRT_PARAM_TEMPERATURE, 0.8));
  CALL(lrt_session_set_int(s, LRT_PARAM_TOP_K, 40));
  CALL(lrt_session_set_float(s, LRT_PARAM_TOP_P, 0.95));
  CALL(lrt_session_set_int(s, LRT_PARAM_SEED, 7));
}

static void run_gen(lrt_model *m, int threads, int sampled, int n, char ids_out[65], char lg_out[65]) {
  lrt_session *s = new_session(m, threads);
  if (sampled) configure_sampled(s);
  CALL(lrt_session_eval(s, SEQ, SEQ_LEN, 0));
  lrt_sha256 hi, hl;
  lrt_sha256_init(&hi);
  lrt_sha256_init(&hl);
  generate(s, n, &hi, &hl, NULL);
  finish(&hi, ids_out);
  finish(&hl, lg_out);
  lrt_session_free(s);
}

#if defined(LRT_HAVE_SESSION_STATE)
/* SEQ40 + 8 sampled tokens, state saved, restored into a fresh session (other thread
 * count), 16 more tokens. The 24 ids must hash like the uninterrupted sampled run. */
static void run_resume(lrt_model *m, int threads, char ids_out[65], char lg_out[65]) {
  lrt_session *a = new_session(m, threads);
  configure_sampled(a);
  CALL(lrt_session_eval(a, SEQ, SEQ_LEN, 0));
  lrt_sha256 hi, hl;
  lrt_sha256_init(&hi);
  lrt_sha256_init(&hl);
  int32_t first[8];
  generate(a, 8, &hi, &hl, first);
  CALL(lrt_session_eval(a, &first[7], 1, 0));
  size_t size = 0, written = 0;
  CALL(lrt_session_state_size(a, &size));
  void *buf = malloc(size ? size : 1);
  if (!buf) fail("malloc", LRT_ERR_OUT_OF_MEMORY);
  CALL(lrt_session_state_save(a, buf, size, &written));
  lrt_session_free(a);
  lrt_session *b = NULL;
  hostile_set();
  int32_t st = lrt_session_new(m, 128, threads == 1 ? 2 : 1, &b);
  hostile_check("lrt_session_new");
  if (st == LRT_ERR_UNSUPPORTED) b = new_session(m, threads); /* a build without threads */
  else if (st != LRT_OK) fail("lrt_session_new", st);
  CALL(lrt_session_state_load(b, buf, written));
  free(buf);
  generate(b, 16, &hi, &hl, NULL);
  finish(&hi, ids_out);
  finish(&hl, lg_out);
  lrt_session_free(b);
}
#endif

/* ---- training ------------------------------------------------------------------------ */

#define TR_B 4
#define TR_T 24

static void train_batch(int step, int64_t vocab, int32_t *tok) {
  /* row b follows x -> (3x + 1) mod 13, plus 3, from a start that depends on the step and
   * the row: a period of at most 12, so tokens repeat within a row and across rows and the
   * order in which the embedding rows' gradient terms are added shows in the hashes (a
   * per-sequence-partials order gives other ones) */
  for (int b = 0; b < TR_B; b++) {
    int64_t x = (37 * step + 11 * b + 5) % 13;
    for (int i = 0; i <= TR_T; i++) {
      tok[b * (TR_T + 1) + i] = (int32_t)((x + 3) % vocab);
      x = (3 * x + 1) % 13;
    }
  }
}

static void run_train(const char *path, int threads, char w_out[65], char l_out[65]) {
  lrt_trainer *t = NULL;
  CALL(lrt_trainer_open(path, strlen(path), threads, &t));
  CALL(lrt_trainer_set(t, LRT_TRAIN_LR, 1e-2));
  CALL(lrt_trainer_set(t, LRT_TRAIN_WARMUP_STEPS, 1));
  CALL(lrt_trainer_set(t, LRT_TRAIN_TOTAL_STEPS, 3));
  CALL(lrt_trainer_set(t, LRT_TRAIN_SCHEDULE, LRT_SCHEDULE_COSINE));
  CALL(lrt_trainer_set(t, LRT_TRAIN_WEIGHT_DECAY, 0.1));
  CALL(lrt_trainer_set(t, LRT_TRAIN_CLIP_NORM, 1.0));
  int64_t count = 0, vocab = 0;
  CALL(lrt_trainer_tensor_count(t, &count));
  for (int64_t i = 0; i < count; i++) { /* the vocabulary: rows of tok_embd */
    const char *name;
    size_t len;
    int64_t rows, cols;
    CALL(lrt_trainer_tensor_info(t, i, &name, &len, &rows, &cols));
    if (len == 8 && !memcmp(name, "tok_embd", 8)) vocab = rows;
  }
  if (vocab < 2) fail("tok_embd", LRT_ERR_INTERNAL);
  int32_t tok[TR_B * (TR_T + 1)];
  lrt_sha256 hl;
  lrt_sha256_init(&hl);
  for (int step = 0; step < 3; step++) {
    train_batch(step, vocab, tok);
    if (step == 1) { /* two micro-batches of two sequences: the bits of one batch of four */
      CALL(lrt_trainer_accumulate(t, tok, 2, TR_T, NULL));
      CALL(lrt_trainer_accumulate(t, tok + 2 * (TR_T + 1), 2, TR_T, NULL));
    } else {
      CALL(lrt_trainer_accumulate(t, tok, TR_B, TR_T, NULL));
    }
    CALL(lrt_trainer_apply(t));
    double loss;
    CALL(lrt_trainer_get(t, LRT_TRAIN_LOSS, &loss));
    uint64_t u;
    memcpy(&u, &loss, 8);
    uint8_t b[8];
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)(u >> (8 * k));
    lrt_sha256_update(&hl, b, 8);
  }
  finish(&hl, l_out);
  lrt_sha256 hw;
  lrt_sha256_init(&hw);
  for (int64_t i = 0; i < count; i++) {
    const char *name;
    size_t len;
    int64_t rows, cols;
    CALL(lrt_trainer_tensor_info(t, i, &name, &len, &rows, &cols));
    float *w = (float *)malloc((size_t)(rows * cols) * sizeof(float));
    if (!w) fail("malloc", LRT_ERR_OUT_OF_MEMORY);
    CALL(lrt_trainer_tensor_read(t, i, LRT_TENSOR_WEIGHT, w, rows * cols));
    hash_floats(&hw, w, rows * cols);
    free(w);
  }
  finish(&hw, w_out);
  hostile_set();
  lrt_trainer_free(t);
  hostile_check("lrt_trainer_free");
}

static int parse_list(const char *s, int *out, int cap) {
  int n = 0;
  while (*s && n < cap) {
    out[n++] = atoi(s);
    const char *c = strchr(s, ',');
    if (!c) break;
    s = c + 1;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL [--threads 1,2] [--chunks 1,3,16,0] [--kernels all|NAME] [--hostile] [--no-gen] [--train]\n", argv[0]);
    return 2;
  }
  const char *model_path = argv[1];
  int threads[16] = {1}, n_threads = 1;
  int chunks[16] = {1, 3, 16, 0}, n_chunks = 4;
  const char *kernels = "all";
  int gen = 1, train = 0;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) n_threads = parse_list(argv[++i], threads, 16);
    else if (!strcmp(argv[i], "--chunks") && i + 1 < argc) n_chunks = parse_list(argv[++i], chunks, 16);
    else if (!strcmp(argv[i], "--kernels") && i + 1 < argc) kernels = argv[++i];
    else if (!strcmp(argv[i], "--hostile")) g_hostile = 1;
    else if (!strcmp(argv[i], "--no-gen")) gen = 0;
    else if (!strcmp(argv[i], "--train")) train = 1;
    else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  make_seq();
  printf("loomrt %s numerics %d\n", lrt_version_string(), (int)lrt_numerics_version());

  lrt_model *m = NULL;
  CALL(lrt_model_open(model_path, strlen(model_path), 0, &m));

  const char *paths[16];
  int n_paths = 0;
  if (!strcmp(kernels, "all")) {
    const char *name;
    size_t len;
    while (n_paths < 16 && lrt_kernels_available(n_paths, &name, &len) == LRT_OK) paths[n_paths++] = name;
  } else {
    paths[n_paths++] = kernels;
  }
  for (int p = 0; p < n_paths; p++) {
    CALL(lrt_kernels_select(paths[p], strlen(paths[p])));
    const char *k = lrt_kernel_path();
    for (int t = 0; t < n_threads; t++) {
      char a[65], b[65];
      for (int c = 0; c < n_chunks; c++) {
        logits_chunked(m, threads[t], chunks[c], a);
        if (chunks[c] > 0) printf("%s t=%d logits chunk=%d %s\n", k, threads[t], chunks[c], a);
        else printf("%s t=%d logits chunk=all %s\n", k, threads[t], a);
      }
      if (train) {
        run_train(model_path, threads[t], a, b);
        printf("%s t=%d train weights %s\n%s t=%d train losses %s\n", k, threads[t], a, k, threads[t], b);
      }
      if (!gen) continue;
      run_gen(m, threads[t], 0, 16, a, b);
      printf("%s t=%d greedy ids %s\n%s t=%d greedy logits %s\n", k, threads[t], a, k, threads[t], b);
      run_gen(m, threads[t], 1, 24, a, b);
      printf("%s t=%d sampled ids %s\n%s t=%d sampled logits %s\n", k, threads[t], a, k, threads[t], b);
#if defined(LRT_HAVE_SESSION_STATE)
      run_resume(m, threads[t], a, b);
      printf("%s t=%d resume ids %s\n%s t=%d resume logits %s\n", k, threads[t], a, k, threads[t], b);
#endif
      fflush(stdout);
    }
  }
  hostile_set();
  lrt_model_close(m);
  hostile_check("lrt_model_close");
  hostile_clear();
  printf("done\n");
  return 0;
}
