/* threadpool.c -- persistent worker threads woken by a generation counter. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "threadpool.h"

#if defined(_WIN32)
#include <windows.h>
typedef CRITICAL_SECTION lrt_mutex;
typedef CONDITION_VARIABLE lrt_cond;
#define mutex_init(m) (InitializeCriticalSection(m), 0)
#define mutex_free(m) DeleteCriticalSection(m)
#define mutex_lock(m) EnterCriticalSection(m)
#define mutex_unlock(m) LeaveCriticalSection(m)
#define cond_init(c) (InitializeConditionVariable(c), 0)
#define cond_free(c) ((void)0)
#define cond_wait(c, m) SleepConditionVariableCS(c, m, INFINITE)
#define cond_broadcast(c) WakeAllConditionVariable(c)
#elif defined(__wasi__) && defined(__wasm_atomics__)
/* The threaded wasm build (its threads are Web Workers: platform.c): wasi-libc as zig ships it
 * has no pthreads, so a futex mutex (0 free, 1 locked, 2 locked with waiters) and a sequence
 * condition variable on memory.atomic.wait32 / notify. Waiting is not allowed on a browser's
 * main thread: loomrt.mjs uses threads only where it is (workers, Node). */
typedef int lrt_mutex;
typedef int lrt_cond;
static void wasm_mutex_lock(lrt_mutex *m) {
  int c = 0;
  if (__atomic_compare_exchange_n(m, &c, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return;
  if (c != 2) c = __atomic_exchange_n(m, 2, __ATOMIC_SEQ_CST);
  while (c != 0) {
    (void)__builtin_wasm_memory_atomic_wait32(m, 2, -1);
    c = __atomic_exchange_n(m, 2, __ATOMIC_SEQ_CST);
  }
}
static void wasm_mutex_unlock(lrt_mutex *m) {
  if (__atomic_fetch_sub(m, 1, __ATOMIC_SEQ_CST) != 1) {
    __atomic_store_n(m, 0, __ATOMIC_SEQ_CST);
    (void)__builtin_wasm_memory_atomic_notify(m, 1u);
  }
}
static void wasm_cond_wait(lrt_cond *c, lrt_mutex *m) {
  int seq = __atomic_load_n(c, __ATOMIC_SEQ_CST);
  wasm_mutex_unlock(m);
  (void)__builtin_wasm_memory_atomic_wait32(c, seq, -1);
  wasm_mutex_lock(m);
}
static void wasm_cond_broadcast(lrt_cond *c) {
  (void)__atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
  (void)__builtin_wasm_memory_atomic_notify(c, 0xffffffffu);
}
#define mutex_init(m) (__atomic_store_n(m, 0, __ATOMIC_SEQ_CST), 0)
#define mutex_free(m) ((void)0)
#define mutex_lock(m) wasm_mutex_lock(m)
#define mutex_unlock(m) wasm_mutex_unlock(m)
#define cond_init(c) (__atomic_store_n(c, 0, __ATOMIC_SEQ_CST), 0)
#define cond_free(c) ((void)0)
#define cond_wait(c, m) wasm_cond_wait(c, m)
#define cond_broadcast(c) wasm_cond_broadcast(c)
#else
#include <pthread.h>
typedef pthread_mutex_t lrt_mutex;
typedef pthread_cond_t lrt_cond;
#define mutex_init(m) pthread_mutex_init(m, NULL)
#define mutex_free(m) pthread_mutex_destroy(m)
#define mutex_lock(m) pthread_mutex_lock(m)
#define mutex_unlock(m) pthread_mutex_unlock(m)
#define cond_init(c) pthread_cond_init(c, NULL)
#define cond_free(c) pthread_cond_destroy(c)
#define cond_wait(c, m) pthread_cond_wait(c, m)
#define cond_broadcast(c) pthread_cond_broadcast(c)
#endif

/* Workers spin briefly on the generation counter before sleeping, so the many short
 * dispatches of one forward pass (several per layer) do not pay a futex wake-up each. */
#include "lrt_atomic.h" /* C11 atomics, MSVC Interlocked intrinsics or GNU builtins */
#define LRT_SPIN_ITERS 4000 /* about 43 us of pause on an Intel Xeon (AMX) VM */
/* A worker's spin adapts: halved (down to LRT_SPIN_MIN) each time it ends without a job, so
 * that on a busy host, where the next job comes late because the caller is not running, the
 * worker stops taking CPU time from it; doubled (up to LRT_SPIN_ITERS) each time a job comes
 * during the spin, so a quiet host keeps the long spin. Scheduling only: no value changes. */
#define LRT_SPIN_MIN 125
typedef lrt_atomic_u64 gen_t;
typedef lrt_atomic_int pending_t;
#define GEN_LOAD(x) lrt_atomic_load_u64(&(x))
#define GEN_STORE(x, v) lrt_atomic_store_u64(&(x), (v))
#define PENDING_LOAD(x) lrt_atomic_load_int(&(x))
#define PENDING_STORE(x, v) lrt_atomic_store_int(&(x), (v))
#define DEC(x) lrt_atomic_dec_int(&(x))

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Diagnostics (off until lrt_pool_stats_reset(pool, 1); read with lrt_pool_stat, the C API's
 * lrt_session_pool_stat): how many jobs ran, how long the caller spent in them and waiting for
 * others' tasks after its own share, how often it slept, and per worker the tasks it ran, how
 * often it joined a job, how long after a job was posted it joined it, and how often it slept.
 * Each counter is written by one thread only (workers' own slots; the caller's under its own
 * control); they are read and reset under the mutex once no worker is inside a job. Off, they
 * cost one predictable branch per job and per wake. */
typedef struct pool_stats {
  uint64_t jobs, tasks, run_ns, wait_ns, sleeps; /* caller: jobs, its tasks, time in run, waiting */
  uint64_t wakes, join_ns, worker_sleeps;        /* a worker: jobs joined, post-to-join time, sleeps */
} pool_stats;

typedef struct worker {
  lrt_pool *pool;
  int id;
  lrt_thread *thread;
  pool_stats st;
} worker;

struct lrt_pool {
  int n;
  worker *workers; /* n - 1 entries: worker ids 1..n-1 */
  lrt_mutex mu;
  lrt_cond wake, done;
  gen_t generation;   /* bumped under mu for each shared job, read by spinning workers */
  int active;         /* workers that joined the current job and have not left it (under mu) */
  pending_t finished; /* tasks of the current job completed */
  lrt_atomic_int stop; /* set under mu; read by spinning workers without it */
  lrt_task_fn fn;     /* the current job: written under mu while no worker is active */
  void *ctx;
  int64_t n_tasks;
  lrt_atomic_int *cursor; /* n entries: next task of each thread's range */
  lrt_atomic_int stats_on; /* counting (lrt_pool_stats_reset); set under mu, read without it */
  uint64_t posted_ns;     /* when the current job was posted (under mu; stats only) */
  pool_stats st;          /* the caller's counters */
};

/* Thread id owns one contiguous range of the tasks, [id*N/n, (id+1)*N/n), and takes them
 * in order from that range's cursor, so it streams through consecutive weight rows (the
 * decode prefetch of "the next rows" then fetches rows it reads next). A thread that is
 * done takes what is left of the other ranges from their cursors. Every task is taken
 * exactly once (one atomic increment hands out each index); which thread computes a task
 * never changes a value: tasks write disjoint outputs.
 *
 * The caller does not wait for the workers, only for the tasks: a worker the OS does not
 * run (a busy machine, more threads than cores) does not hold a job up, the others take its
 * tasks. A worker joins a job under the mutex (active++), and a new job is set up only
 * when no worker is still in the previous one, so a late worker sees either the job it
 * joined (with exhausted cursors) or none. */
#define STATS_ON(p) lrt_atomic_load_int(&(p)->stats_on)

static int64_t range_end(const lrt_pool *p, int k) { return p->n_tasks * (k + 1) / p->n; }

static int run_share(lrt_pool *p, int id) {
  int done = 0;
  for (int j = 0; j < p->n; j++) {
    int k = (id + j) % p->n;
    int64_t end = range_end(p, k);
    for (;;) {
      int64_t t = lrt_atomic_inc_old_int(&p->cursor[k]);
      if (t >= end) break;
      p->fn(p->ctx, t, id);
      done++;
    }
  }
  if (done && lrt_atomic_add_int(&p->finished, done) == (int)p->n_tasks) { /* the job's last task */
    mutex_lock(&p->mu);
    cond_broadcast(&p->done);
    mutex_unlock(&p->mu);
  }
  return done;
}

static void worker_main(void *arg) {
  worker *w = (worker *)arg;
  lrt_pool *p = w->pool;
  uint64_t seen = 0;
  int spin = LRT_SPIN_ITERS;
  for (;;) {
    int i = 0;
    for (; i < spin && GEN_LOAD(p->generation) == seen && !lrt_atomic_load_int(&p->stop); i++) cpu_relax();
    if (i < spin) spin = spin * 2 < LRT_SPIN_ITERS ? spin * 2 : LRT_SPIN_ITERS;
    else spin = spin / 2 > LRT_SPIN_MIN ? spin / 2 : LRT_SPIN_MIN;
    mutex_lock(&p->mu);
    if (STATS_ON(p) && GEN_LOAD(p->generation) == seen && !lrt_atomic_load_int(&p->stop)) w->st.worker_sleeps++;
    while (GEN_LOAD(p->generation) == seen && !lrt_atomic_load_int(&p->stop)) cond_wait(&p->wake, &p->mu);
    if (lrt_atomic_load_int(&p->stop)) {
      mutex_unlock(&p->mu);
      return;
    }
    seen = GEN_LOAD(p->generation);
    p->active++;
    if (STATS_ON(p)) {
      uint64_t now = lrt_now_ns();
      w->st.wakes++;
      w->st.join_ns += now > p->posted_ns ? now - p->posted_ns : 0;
    }
    mutex_unlock(&p->mu);

    lrt_fpenv env; /* workers inherit the host's MXCSR/FPCR: guard them too */
    lrt_fpenv_enter(&env);
    int done = run_share(p, w->id);
    if (STATS_ON(p)) w->st.tasks += (uint64_t)done;
    lrt_fpenv_leave(&env);

    mutex_lock(&p->mu);
    if (--p->active == 0) cond_broadcast(&p->done);
    mutex_unlock(&p->mu);
  }
}

int32_t lrt_pool_new(int threads, lrt_pool **out) {
  *out = NULL;
  if (threads < 1) threads = 1;
  lrt_pool *p = (lrt_pool *)calloc(1, sizeof *p);
  if (!p) return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory creating the thread pool");
  p->n = threads;
  p->cursor = (lrt_atomic_int *)calloc((size_t)threads, sizeof(lrt_atomic_int));
  if (!p->cursor) {
    free(p);
    return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory creating the thread pool");
  }
  if (mutex_init(&p->mu) != 0 || cond_init(&p->wake) != 0 || cond_init(&p->done) != 0) {
    free((void *)p->cursor);
    free(p);
    return lrt_err(LRT_ERR_INTERNAL, "cannot create thread pool primitives");
  }
  if (threads > 1) {
    p->workers = (worker *)calloc((size_t)threads - 1, sizeof(worker));
    if (!p->workers) {
      lrt_pool_free(p);
      return lrt_err(LRT_ERR_OUT_OF_MEMORY, "out of memory creating the thread pool");
    }
    for (int i = 0; i < threads - 1; i++) {
      p->workers[i].pool = p;
      p->workers[i].id = i + 1;
      int32_t st = lrt_thread_start(&p->workers[i].thread, worker_main, &p->workers[i]);
      if (st != LRT_OK) {
        lrt_pool_free(p);
        return st;
      }
    }
  }
  *out = p;
  return LRT_OK;
}

void lrt_pool_free(lrt_pool *p) {
  if (!p) return;
  if (p->workers) {
    mutex_lock(&p->mu);
    lrt_atomic_store_int(&p->stop, 1);
    cond_broadcast(&p->wake);
    mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) lrt_thread_join(p->workers[i].thread);
  }
  if (p->workers) free(p->workers);
  cond_free(&p->wake);
  cond_free(&p->done);
  mutex_free(&p->mu);
  free((void *)p->cursor);
  free(p);
}

int lrt_pool_threads(const lrt_pool *p) { return p->n; }

void lrt_pool_run(lrt_pool *p, lrt_task_fn fn, void *ctx, int64_t n_tasks) {
  if (n_tasks <= 0) return;
  const int on = STATS_ON(p); /* changed only between jobs (lrt_pool_stats_reset) */
  uint64_t t0 = on ? lrt_now_ns() : 0;
  if (p->n == 1 || n_tasks == 1) { /* nothing to share */
    for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
    if (on) {
      p->st.jobs++;
      p->st.tasks += (uint64_t)n_tasks;
      p->st.run_ns += lrt_now_ns() - t0;
    }
    return;
  }
  mutex_lock(&p->mu);
  while (p->active > 0) cond_wait(&p->done, &p->mu); /* a late worker still in the last job */
  p->fn = fn;
  p->ctx = ctx;
  p->n_tasks = n_tasks;
  PENDING_STORE(p->finished, 0);
  for (int k = 0; k < p->n; k++) lrt_atomic_store_int(&p->cursor[k], (int)(n_tasks * k / p->n));
  if (on) p->posted_ns = lrt_now_ns();
  GEN_STORE(p->generation, GEN_LOAD(p->generation) + 1);
  cond_broadcast(&p->wake);
  mutex_unlock(&p->mu);
  int done = run_share(p, 0);
  uint64_t t1 = on ? lrt_now_ns() : 0;
  for (int i = 0; i < LRT_SPIN_ITERS && PENDING_LOAD(p->finished) < n_tasks; i++) cpu_relax();
  if (PENDING_LOAD(p->finished) < n_tasks) {
    mutex_lock(&p->mu);
    if (on) p->st.sleeps++;
    while (PENDING_LOAD(p->finished) < n_tasks) cond_wait(&p->done, &p->mu);
    mutex_unlock(&p->mu);
  }
  if (on) {
    uint64_t t2 = lrt_now_ns();
    p->st.jobs++;
    p->st.tasks += (uint64_t)done;
    p->st.wait_ns += t2 - t1;
    p->st.run_ns += t2 - t0;
  }
}

/* Wait (under mu) until no worker is inside a job, so that every worker's counters are final
 * and visible: a worker updates its own before it leaves the job under mu. */
static void quiesce(lrt_pool *p) {
  while (p->active > 0) cond_wait(&p->done, &p->mu);
}

void lrt_pool_stats_reset(lrt_pool *p, int on) {
  mutex_lock(&p->mu);
  quiesce(p);
  memset(&p->st, 0, sizeof p->st);
  for (int i = 0; i < p->n - 1; i++) memset(&p->workers[i].st, 0, sizeof p->workers[i].st);
  lrt_atomic_store_int(&p->stats_on, on != 0);
  mutex_unlock(&p->mu);
}

int32_t lrt_pool_stat(lrt_pool *p, int thread, int key, int64_t *out) {
  if (thread < 0 || thread >= p->n)
    return lrt_err(LRT_ERR_INVALID_ARGUMENT, "thread %d is outside [0, %d): the pool has %d thread(s)", thread, p->n,
                   p->n);
  mutex_lock(&p->mu);
  quiesce(p);
  const pool_stats *st = thread == 0 ? &p->st : &p->workers[thread - 1].st;
  int32_t rc = LRT_OK;
  uint64_t v = 0;
  switch (key) {
    case LRT_POOL_STAT_THREADS: v = (uint64_t)p->n; break;
    case LRT_POOL_STAT_ON: v = (uint64_t)STATS_ON(p); break;
    case LRT_POOL_STAT_JOBS: v = thread == 0 ? st->jobs : st->wakes; break;
    case LRT_POOL_STAT_TASKS: v = st->tasks; break;
    case LRT_POOL_STAT_SLEEPS: v = thread == 0 ? st->sleeps : st->worker_sleeps; break;
    case LRT_POOL_STAT_RUN_NS: v = st->run_ns; break;
    case LRT_POOL_STAT_WAIT_NS: v = st->wait_ns; break;
    case LRT_POOL_STAT_JOIN_NS: v = st->join_ns; break;
    default: rc = -1; break;
  }
  mutex_unlock(&p->mu);
  if (rc) return lrt_err(LRT_ERR_INVALID_ARGUMENT, "unknown pool statistic %d", key);
  *out = (int64_t)(v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v);
  return LRT_OK;
}
