/* A small persistent thread pool for the addon: the caller plus up to 63 workers share the parts of
 * one parallel-for at a time. Installed into the kernels with qg_set_parallel(). */
#include <pthread.h>
#include <stdatomic.h>
#include "qg_internal.h"

#define QG_MAX_WORKERS 63

static pthread_mutex_t g_call_mu = PTHREAD_MUTEX_INITIALIZER; /* one parallel call at a time */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER, g_done = PTHREAD_COND_INITIALIZER;
static pthread_t g_threads[QG_MAX_WORKERS];
static int g_workers;
static uint64_t g_generation;
static int g_wanted; /* workers that take part in the current job */
static int g_active; /* workers inside run_parts(); the next job waits for zero */
/* g_generation mirrored for lock-free polling: a worker that just finished spins on it for a short while
 * before sleeping, so back-to-back calls (a model's layers, a benchmark loop) find it awake instead of
 * paying a futex wake-up each (tens of microseconds, more on a loaded machine). */
static atomic_ullong g_generation_seen;
#define QG_SPIN_POLLS 4000 /* about 50-100 us of pause instructions */

static struct {
  qg_task_fn task;
  void* ctx;
  int64_t count, parts;
  atomic_llong next;
  atomic_llong finished;
} g_job;

static void run_parts(void) {
  for (;;) {
    const int64_t p = atomic_fetch_add(&g_job.next, 1);
    if (p >= g_job.parts) return;
    const int64_t i0 = g_job.count * p / g_job.parts, i1 = g_job.count * (p + 1) / g_job.parts;
    g_job.task(g_job.ctx, i0, i1);
    if (atomic_fetch_add(&g_job.finished, 1) + 1 == g_job.parts) {
      pthread_mutex_lock(&g_mu);
      pthread_cond_signal(&g_done);
      pthread_mutex_unlock(&g_mu);
    }
  }
}

static void* worker_main(void* arg) {
  const int id = (int)(intptr_t)arg;
  uint64_t seen = 0;
  for (;;) {
    for (int i = 0; i < QG_SPIN_POLLS && atomic_load_explicit(&g_generation_seen, memory_order_relaxed) == seen; i++) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      __asm__ __volatile__("yield");
#endif
    }
    pthread_mutex_lock(&g_mu);
    while (g_generation == seen || id >= g_wanted) {
      if (g_generation != seen) seen = g_generation; /* a job we sit out */
      pthread_cond_wait(&g_wake, &g_mu);
    }
    seen = g_generation;
    g_active++;
    pthread_mutex_unlock(&g_mu);
    run_parts();
    pthread_mutex_lock(&g_mu);
    if (--g_active == 0) pthread_cond_signal(&g_done);
    pthread_mutex_unlock(&g_mu);
  }
  return NULL;
}

static void pool_parallel(qg_task_fn task, void* ctx, int64_t count, int64_t grain, int threads) {
  if (count <= 0) return;
  if (grain < 1) grain = 1;
  int64_t parts = (count + grain - 1) / grain;
  if (threads > QG_MAX_WORKERS + 1) threads = QG_MAX_WORKERS + 1;
  if (threads <= 1 || parts <= 1) { task(ctx, 0, count); return; }
  /* Up to 4 parts per thread, taken first come first served: a thread slowed by another process
   * (shared cores) leaves its later parts to the others instead of holding up the whole call. */
  const int64_t workers = (parts < threads ? parts : threads) - 1;
  if (parts > 4 * (int64_t)threads) parts = 4 * (int64_t)threads;
  pthread_mutex_lock(&g_call_mu);
  pthread_mutex_lock(&g_mu);
  while (g_workers < workers) {
    if (pthread_create(&g_threads[g_workers], NULL, worker_main, (void*)(intptr_t)g_workers) != 0) break;
    pthread_detach(g_threads[g_workers]);
    g_workers++;
  }
  g_job.task = task;
  g_job.ctx = ctx;
  g_job.count = count;
  g_job.parts = parts;
  atomic_store(&g_job.next, 0);
  atomic_store(&g_job.finished, 0);
  g_wanted = (int)workers;
  g_generation++;
  atomic_store_explicit(&g_generation_seen, g_generation, memory_order_relaxed);
  pthread_cond_broadcast(&g_wake);
  pthread_mutex_unlock(&g_mu);
  run_parts(); /* the caller works too; parts left by missing workers are picked up here */
  pthread_mutex_lock(&g_mu);
  while (atomic_load(&g_job.finished) < parts || g_active > 0) pthread_cond_wait(&g_done, &g_mu);
  pthread_mutex_unlock(&g_mu);
  pthread_mutex_unlock(&g_call_mu);
}

void qg_threads_install(void) { qg_set_parallel(pool_parallel); }
