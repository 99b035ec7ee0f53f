/* threadpool.h -- a small persistent pool. Work is split over *outputs* only: task i always
 * writes the same outputs, computed by the same code, whatever the thread count, so the
 * result bits never depend on the number of threads (docs/numerics.md). */
#ifndef LOOMRT_THREADPOOL_H
#define LOOMRT_THREADPOOL_H

#include <stdint.h>

typedef struct lrt_pool lrt_pool;
/* Run task `task` (0 <= task < n_tasks) on worker `thread` (0 <= thread < threads). */
typedef void (*lrt_task_fn)(void *ctx, int64_t task, int thread);

/* threads >= 1; the calling thread is worker 0, so threads - 1 OS threads are started. */
int32_t lrt_pool_new(int threads, lrt_pool **out);
void lrt_pool_free(lrt_pool *pool);
int lrt_pool_threads(const lrt_pool *pool);
/* Run fn over n_tasks tasks and return when all are done. Thread t first runs the tasks of its
 * contiguous range [t*N/T, (t+1)*N/T) in order, then helps with what is left of the others. */
void lrt_pool_run(lrt_pool *pool, lrt_task_fn fn, void *ctx, int64_t n_tasks);

/* Diagnostics (docs/performance.md): zero every counter and turn counting on (on != 0) or off.
 * Waits for a worker still inside the last job. Never call it from inside a task. */
void lrt_pool_stats_reset(lrt_pool *pool, int on);
/* One counter (LRT_POOL_STAT_*, loomrt.h) of thread `thread` (0: the caller, 1..threads-1:
 * the workers) into *out. LRT_ERR_INVALID_ARGUMENT for an unknown key or thread. */
int32_t lrt_pool_stat(lrt_pool *pool, int thread, int key, int64_t *out);

#endif
