/* test_busy.c -- two threads race on one session; every call must return LRT_OK or
 * LRT_ERR_BUSY (never corrupt memory, never crash). Public API only.
 *
 *   test_busy MODEL [THREADS]
 *
 * MODEL is a small model with a tokenizer (tests/test_threads.py writes one). Thread A
 * evaluates, samples and generates (lrt_session_eval / truncate / sample, then
 * lrt_session_prompt + lrt_session_step and lrt_generate); thread B saves and loads the state,
 * reads the position, logits and counters and changes sampler settings, all on the same
 * session. Each phase runs until each thread has been refused (LRT_ERR_BUSY) and served at
 * least MIN_BUSY times, or MAX_SECONDS. Prints the counts; exit status 0 when every call
 * returned an expected status and both threads saw LRT_ERR_BUSY, else 1. Built as is and under
 * AddressSanitizer and ThreadSanitizer by tests/test_threads.py (by hand: compile it with every
 * .c file of the library's layer folders, e.g. with -fsanitize=thread, and -lpthread -lm). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../include/loomrt.h"

#define MIN_BUSY 20    /* a phase ends when each thread was refused and served this often, */
#define MAX_SECONDS 30 /* or after this long (the machine may be busy: a thread preempted
                          inside a call holds the session for a whole time slice) */

static lrt_session *S;
static pthread_barrier_t start;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long busy[2], ok[2], bad[2];
static char bad_msg[2][512];
static unsigned char *blob;
static size_t blob_len;

static void count(int who, int32_t st, const char *call) {
  pthread_mutex_lock(&lock);
  if (st == LRT_OK) {
    ok[who]++;
  } else if (st == LRT_ERR_BUSY) {
    busy[who]++;
    if (strstr(lrt_last_error(), "in use by another thread") == NULL && !bad[who]) {
      snprintf(bad_msg[who], sizeof bad_msg[who], "%s: LRT_ERR_BUSY with message \"%s\"", call, lrt_last_error());
      bad[who]++;
    }
  } else {
    if (!bad[who])
      snprintf(bad_msg[who], sizeof bad_msg[who], "%s: %s %s", call, lrt_status_name(st), lrt_last_error());
    bad[who]++;
  }
  pthread_mutex_unlock(&lock);
}

static struct timespec t0;

static int done(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  if (t.tv_sec - t0.tv_sec > MAX_SECONDS) return 1;
  pthread_mutex_lock(&lock);
  int d = (busy[0] >= MIN_BUSY && busy[1] >= MIN_BUSY && ok[0] >= MIN_BUSY && ok[1] >= MIN_BUSY);
  pthread_mutex_unlock(&lock);
  return d;
}

/* A pause of random length (0 to a few microseconds) between calls, so that the two threads'
 * calls overlap in every way: without it the thread with the longer calls holds the session
 * nearly all the time and the other is refused every time. */
static void jitter(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  volatile unsigned spin = 0;
  for (unsigned n = (*seed >> 16) % 4000; spin < n;) spin = spin + 1;
}

/* A call that must not be refused for a reason other than the race: retried while busy. */
static int32_t retry_eval(const int32_t *t, int64_t n) {
  int32_t st;
  unsigned seed = 7;
  while ((st = lrt_session_eval(S, t, n, 0)) == LRT_ERR_BUSY) {
    count(0, st, "lrt_session_eval");
    jitter(&seed);
  }
  return st;
}

static int phase;

static void *thread_a(void *arg) {
  (void)arg;
  pthread_barrier_wait(&start);
  const int32_t toks[4] = {5, 6, 7, 8};
  unsigned seed = 1;
  for (int i = 0; !done(); i++) {
    int32_t st, tok;
    jitter(&seed);
    if (phase == 0) {
      int64_t pos;
      while ((pos = lrt_session_position(S)) < 0) {
        count(0, LRT_ERR_BUSY, "lrt_session_position");
        jitter(&seed);
      }
      if (pos > 96) {
        while ((st = lrt_session_truncate(S, 8)) == LRT_ERR_BUSY) {
          count(0, st, "lrt_session_truncate");
          jitter(&seed);
        }
        count(0, st, "lrt_session_truncate");
      }
      st = retry_eval(toks, 4);
      count(0, st, "lrt_session_eval");
      st = lrt_session_sample(S, &tok);
      count(0, st, "lrt_session_sample");
    } else {
      /* pull generation: a refused prompt is retried; a step after B loaded a state is
       * refused with LRT_ERR_STATE by design (the tokens changed): start again */
      while ((st = lrt_session_prompt(S, "Once upon a time", 16, LRT_PROMPT_ADD_SPECIAL)) == LRT_ERR_BUSY) {
        count(0, st, "lrt_session_prompt");
        jitter(&seed);
      }
      count(0, st, "lrt_session_prompt");
      for (int k = 0; k < 6; k++) {
        const char *text;
        size_t len;
        st = lrt_session_step(S, &tok, &text, &len);
        if (st == LRT_ERR_STATE) break; /* B loaded a state in between: allowed */
        count(0, st, "lrt_session_step");
        if (st == LRT_OK && tok < 0) break;
      }
      st = lrt_generate(S, "Hello there", 11, LRT_PROMPT_ADD_SPECIAL, 5, NULL, NULL);
      count(0, st, "lrt_generate");
    }
  }
  return NULL;
}

static void *thread_b(void *arg) {
  (void)arg;
  pthread_barrier_wait(&start);
  unsigned seed = 2;
  for (int i = 0; !done(); i++) {
    size_t size = 0, written = 0;
    jitter(&seed);
    int32_t st = lrt_session_state_size(S, &size);
    count(1, st, "lrt_session_state_size");
    if (st == LRT_OK) {
      unsigned char *buf = (unsigned char *)malloc(size ? size : 1);
      st = lrt_session_state_save(S, buf, size, &written);
      /* the state may have grown between the two calls: then the buffer is too small */
      if (st == LRT_ERR_INVALID_ARGUMENT && strstr(lrt_last_error(), "lrt_session_state_size")) st = LRT_OK;
      count(1, st, "lrt_session_state_save");
      free(buf);
    }
    if (i % 7 == 3 && blob) {
      st = lrt_session_state_load(S, blob, blob_len);
      count(1, st, "lrt_session_state_load");
    }
    int64_t v;
    st = lrt_session_get_int(S, LRT_SESSION_GENERATED_TOKENS, &v);
    count(1, st, "lrt_session_get_int");
    st = lrt_session_set_int(S, LRT_PARAM_SEED, i);
    count(1, st, "lrt_session_set_int");
    st = lrt_session_set_float(S, LRT_PARAM_TEMPERATURE, (i & 1) ? 0.8 : 0.0);
    count(1, st, "lrt_session_set_float");
    const float *lg;
    int64_t rows, vocab;
    st = lrt_session_logits(S, &lg, &rows, &vocab);
    if (st == LRT_ERR_STATE) st = LRT_OK; /* between A's reset and eval: no logits, by design */
    count(1, st, "lrt_session_logits");
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_busy MODEL [THREADS]\n");
    return 2;
  }
  int threads = argc > 2 ? atoi(argv[2]) : 1;
  lrt_model *m = NULL;
  if (lrt_model_open(argv[1], strlen(argv[1]), 0, &m) != LRT_OK) {
    fprintf(stderr, "open: %s\n", lrt_last_error());
    return 2;
  }
  if (lrt_session_new(m, 128, threads, &S) != LRT_OK) {
    fprintf(stderr, "session: %s\n", lrt_last_error());
    return 2;
  }
  const int32_t first[8] = {1, 10, 20, 30, 40, 50, 60, 70};
  if (lrt_session_eval(S, first, 8, 0) != LRT_OK) return 2;
  if (lrt_session_state_size(S, &blob_len) != LRT_OK) return 2;
  blob = (unsigned char *)malloc(blob_len);
  if (!blob || lrt_session_state_save(S, blob, blob_len, NULL) != LRT_OK) return 2;
  int failed = 0;
  for (phase = 0; phase < 2; phase++) {
    memset(busy, 0, sizeof busy);
    memset(ok, 0, sizeof ok);
    pthread_barrier_init(&start, NULL, 2);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t a, b;
    pthread_create(&a, NULL, thread_a, NULL);
    pthread_create(&b, NULL, thread_b, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&start);
    printf("phase %d: A ok %ld busy %ld bad %ld; B ok %ld busy %ld bad %ld\n", phase, ok[0], busy[0], bad[0], ok[1],
           busy[1], bad[1]);
    for (int w = 0; w < 2; w++)
      if (bad[w]) printf("  thread %c: %s\n", "AB"[w], bad_msg[w]);
    if (bad[0] || bad[1] || busy[0] == 0 || busy[1] == 0 || ok[0] == 0 || ok[1] == 0) failed = 1;
    bad[0] = bad[1] = 0;
  }
  /* after the race the session is whole: a fresh eval matches a fresh session's */
  lrt_session *fresh = NULL;
  const float *l1, *l2;
  int64_t r1, r2, v1, v2;
  if (lrt_session_reset(S) != LRT_OK || lrt_session_eval(S, first, 8, 0) != LRT_OK ||
      lrt_session_new(m, 128, threads, &fresh) != LRT_OK || lrt_session_eval(fresh, first, 8, 0) != LRT_OK ||
      lrt_session_logits(S, &l1, &r1, &v1) != LRT_OK || lrt_session_logits(fresh, &l2, &r2, &v2) != LRT_OK ||
      r1 != r2 || v1 != v2 || memcmp(l1, l2, (size_t)(r1 * v1) * sizeof(float)) != 0) {
    printf("the session differs from a fresh one after the race: %s\n", lrt_last_error());
    failed = 1;
  }
  lrt_session_free(fresh);
  lrt_session_free(S);
  lrt_model_close(m);
  free(blob);
  printf(failed ? "FAILED\n" : "no corruption: every call returned LRT_OK or LRT_ERR_BUSY\n");
  return failed;
}
