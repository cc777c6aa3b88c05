/* tfcompress: the thread pool of the sparse kernels (see tfc_threads.h).
 *
 * A job is published in three steps, all sequentially consistent atomics:
 *   1. claim = (job << 32) | 0    invalidates every claim of the previous job
 *   2. fn, arg, n_tasks, max_threads, done = 0
 *   3. generation = job           wakes the workers (futex / condvar if asleep)
 * A participant takes task t by a compare-and-swap of claim from (job, t) to
 * (job, t + 1); it only runs fn if the high half still names the job whose
 * fields it read, so a worker that wakes up late (or reads the fields of a
 * newer job) can never run a task of the wrong job.  The caller takes tasks
 * too, then waits until done == n_tasks; a worker that has not woken up yet
 * costs nothing (it finds no task left), so the caller never waits for a
 * thread that has no work.
 *
 * Wake-up latency: workers pause-spin for spin_ns after their last task
 * (sched_yield() only when a worker finds itself on the caller's CPU, checked
 * every 64 turns; see tfc_threads.h), then sleep on the generation
 * word; the caller, which has nothing else to run, pause-spins on `done` up to
 * its own share of the job + 20 us, then sleeps on it.  Linux and
 * Android sleep in futex(FUTEX_WAIT_PRIVATE); other systems (iOS, macOS) on a
 * condition variable.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* syscall(), pthread_setname_np() */
#endif

#include "tfc_threads.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && !defined(TFC_POOL_NO_FUTEX) /* TFC_POOL_NO_FUTEX: test the condvar path */
#include <linux/futex.h>
#include <sys/syscall.h>
#define TFC_HAVE_FUTEX 1
#else
#define TFC_HAVE_FUTEX 0
#endif

#define TFC_POOL_SPIN_US_DEFAULT 20
#define TFC_POOL_CALLER_PAUSE_NS 2000L   /* caller waiting for the last tasks: pause-spin this long, */
#define TFC_POOL_CALLER_YIELD_NS 2000000L /* then sched_yield() up to this, then sleep */
#define TFC_POOL_CALLER_SPIN_NS 20000LL /* no-yield mode: pause-spin up to own work + this, then sleep */
#define TFC_POOL_STALL_NS 50000LL /* see tfc_pool_run */
#define TFC_POOL_BACKOFF_MIN 64
#define TFC_POOL_BACKOFF_MAX 4096

typedef struct {
  struct TfcPool* pool;
  pthread_t tid;
  int index;      /* 1 .. threads-1 */
  uint32_t seen;  /* generation seen at creation */
} TfcWorker;

struct TfcPool {
  /* registry (under tfc_registry_mu) */
  const void* key;
  int refs;
  struct TfcPool* next;
  int threads; /* caller + workers started */
  long spin_ns;
  TfcWorker workers[TFC_POOL_MAX_THREADS];
  /* the job */
  atomic_uint generation;
  atomic_ullong claim;
  _Atomic(TfcTaskFn) fn;
  _Atomic(void*) arg;
  atomic_int n_tasks;
  atomic_int max_threads;
  atomic_uint done;
  atomic_int sleepers;
  atomic_int caller_waiting;
  atomic_int stop;
  atomic_flag busy;
  int yield_spin;   /* TFC_POOL_YIELD=1 at creation: the previous waiting (sched_yield() while spinning) */
  int colocate_check;
  atomic_int caller_cpu; /* CPU the caller published the last job from (-1: unknown) */
  int trace;        /* TFC_POOL_TRACE=1 at creation: record every job (tfc_pool_trace) */
  atomic_llong first_claim_ns; /* trace: when a worker first claimed a task of the job */
  atomic_int worker_tasks;     /* trace: tasks of the job run by workers */
  atomic_llong busy_ns;        /* trace: time inside the job's tasks, all threads */
  int backoff_left; /* jobs still to run on the caller after a stall (caller-only state) */
  int backoff_len;  /* length of the last backoff; 0 = the last parallel job did not stall */
  int backoff_min;  /* first backoff length (TFC_POOL_BACKOFF, default TFC_POOL_BACKOFF_MIN; 0: never) */
#if !TFC_HAVE_FUTEX
  pthread_mutex_t mu;
  pthread_cond_t cv;
#endif
};

enum { TFC_STAT_PARALLEL = 0, TFC_STAT_STALLED = 1, TFC_STAT_BACKOFF = 2 };
static atomic_llong tfc_stats[3]; /* process-wide job counters (tfc_pool_stats) */

/* Trace (TFC_POOL_TRACE=1 read when a pool is created; off: one branch per job and per task
 * claimed): one record per parallel job in a static ring, read by tfc_pool_trace().  Times in ns
 * from the job's publication. */
#define TFC_TRACE_N 32768
static TfcTraceRec tfc_trace_buf[TFC_TRACE_N];
static atomic_llong tfc_trace_n;

static long long tfc_now_ns(void);

int tfc_trace_serial_on; /* set in tfc_trace_init: serial runs are recorded too */

static int tfc_trace_env(void) {
  const char* tr = getenv("TFC_POOL_TRACE");
  return tr != NULL && tr[0] == '1';
}

void tfc_trace_init(void) { tfc_trace_serial_on = tfc_trace_env(); }

/* One record of the ring; times relative to start_ns (first claim -1: no worker took a task). */
static void tfc_trace_put(long long start_ns, const void* fn, const void* tag, int n_tasks, int worker_tasks,
                          int sleepers, long long first_claim_ns, long long caller_done_ns, long long end_ns,
                          long long busy_ns) {
  TfcTraceRec* r = &tfc_trace_buf[atomic_fetch_add(&tfc_trace_n, 1) % TFC_TRACE_N];
  memset(r, 0, sizeof(*r));
  r->start_ns = start_ns;
  r->fn = fn;
  r->tag = tag;
  r->n_tasks = n_tasks;
  r->worker_tasks = worker_tasks;
  r->sleepers = sleepers;
  r->busy_ns = busy_ns < INT_MAX ? (int)busy_ns : INT_MAX;
  r->first_worker_claim_ns = first_claim_ns;
  r->caller_done_ns = caller_done_ns;
  r->end_ns = end_ns;
}

void tfc_trace_serial(const void* fn, const void* tag, int n_tasks, long long start_ns) {
  const long long d = tfc_now_ns() - start_ns;
  tfc_trace_put(start_ns, fn, tag, n_tasks, 0, 0, -1, d, d, d);
}

long long tfc_trace_now_ns(void) { return tfc_now_ns(); }

static pthread_mutex_t tfc_registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct TfcPool* tfc_registry;
static atomic_int tfc_live_workers;

/* ------------------------------------------------------------ primitives */

static inline void tfc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* The CPU this thread runs on, -1 where unknown (sched_getcpu: vDSO / rdpid, ~20 ns). */
static inline int tfc_cpu(void) {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

static long long tfc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps while *word == expected (spurious returns allowed: callers loop). */
static void tfc_sleep_on(struct TfcPool* p, atomic_uint* word, unsigned expected) {
#if TFC_HAVE_FUTEX
  (void)p;
  syscall(SYS_futex, (unsigned*)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
  pthread_mutex_lock(&p->mu);
  if (atomic_load(word) == expected && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
#endif
}

static void tfc_wake_all(struct TfcPool* p, atomic_uint* word) {
#if TFC_HAVE_FUTEX
  (void)p;
  syscall(SYS_futex, (unsigned*)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
  (void)word;
  pthread_mutex_lock(&p->mu);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
#endif
}

/* Claims and runs tasks of job `gen` until none is left (or the job changed). */
static void tfc_run_tasks(struct TfcPool* p, unsigned gen, int n, TfcTaskFn fn, void* arg, int worker) {
  for (;;) {
    unsigned long long c = atomic_load(&p->claim);
    unsigned t;
    do {
      if ((unsigned)(c >> 32) != gen) return;
      t = (unsigned)(c & 0xffffffffu);
      if (t >= (unsigned)n) return;
    } while (!atomic_compare_exchange_weak(&p->claim, &c, c + 1));
    const long long t0 = p->trace ? tfc_now_ns() : 0;
    if (p->trace && worker != 0) {
      long long zero = 0;
      atomic_compare_exchange_strong(&p->first_claim_ns, &zero, t0);
      atomic_fetch_add(&p->worker_tasks, 1);
    }
    fn(arg, (int)t, worker);
    if (p->trace) atomic_fetch_add(&p->busy_ns, tfc_now_ns() - t0);
    if (atomic_fetch_add(&p->done, 1u) + 1u == (unsigned)n && atomic_load(&p->caller_waiting))
      tfc_wake_all(p, &p->done);
  }
}

/* ---------------------------------------------------------------- worker */

static void* tfc_worker_main(void* a) {
  TfcWorker* w = (TfcWorker*)a;
  struct TfcPool* p = w->pool;
#if defined(__APPLE__) /* Linux / Android: named by the creator (tfc_pool_grow) */
  pthread_setname_np("tfc-pool");
#endif
  unsigned seen = w->seen;
  for (;;) {
    unsigned g = atomic_load(&p->generation);
    if (g == seen && !atomic_load(&p->stop)) {
      /* spin by yielding: the kernel may have put this worker on the caller's CPU (wake-affine,
       * the other CPUs busy), and a pause loop would then hold the caller off for the whole spin */
      const long long deadline = tfc_now_ns() + p->spin_ns;
      for (int i = 1;; ++i) {
        tfc_cpu_relax();
        g = atomic_load(&p->generation);
        if (g != seen || atomic_load(&p->stop)) break;
        if ((i & 15) == 0) {
          if (tfc_now_ns() > deadline) break;
          if (p->yield_spin) {
            sched_yield();
          } else if ((i & 63) == 0 && p->colocate_check && tfc_cpu() == atomic_load(&p->caller_cpu) &&
                     atomic_load(&p->caller_cpu) >= 0) {
            sched_yield(); /* put on the caller's CPU: let the caller run (see the header) */
          }
        }
      }
      if (g == seen && !atomic_load(&p->stop)) {
        atomic_fetch_add(&p->sleepers, 1);
        while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
          tfc_sleep_on(p, &p->generation, seen);
        atomic_fetch_sub(&p->sleepers, 1);
      }
    }
    if (atomic_load(&p->stop)) break;
    seen = g;
    if (w->index >= atomic_load(&p->max_threads)) continue; /* checked again by the claim */
    TfcTaskFn fn = atomic_load(&p->fn);
    void* arg = atomic_load(&p->arg);
    int n = atomic_load(&p->n_tasks);
    tfc_run_tasks(p, g, n, fn, arg, w->index);
  }
  atomic_fetch_sub(&tfc_live_workers, 1);
  return NULL;
}

/* Starts workers up to `threads` (registry lock held, no job running). */
static void tfc_pool_grow(struct TfcPool* p, int threads) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* workers inherit: signals go to the app's threads */
  while (p->threads < threads) {
    TfcWorker* w = &p->workers[p->threads];
    w->pool = p;
    w->index = p->threads;
    w->seen = atomic_load(&p->generation);
    if (pthread_create(&w->tid, NULL, tfc_worker_main, w) != 0) break;
#if defined(__linux__)
    char name[16]; /* visible in /proc/<pid>/task/<tid>/comm as soon as acquire returns */
    snprintf(name, sizeof name, "tfc-pool-%d", w->index);
    pthread_setname_np(w->tid, name);
#endif
    atomic_fetch_add(&tfc_live_workers, 1);
    p->threads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void tfc_pool_destroy(struct TfcPool* p) {
  atomic_store(&p->stop, 1);
  atomic_fetch_add(&p->generation, 1u);
  tfc_wake_all(p, &p->generation);
  for (int i = 1; i < p->threads; ++i) pthread_join(p->workers[i].tid, NULL);
#if !TFC_HAVE_FUTEX
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
#endif
  free(p);
}

/* ------------------------------------------------------------------- API */

TfcPool* tfc_pool_acquire(const void* key, int threads) {
  if (threads <= 1) return NULL;
  if (threads > TFC_POOL_MAX_THREADS) threads = TFC_POOL_MAX_THREADS;
  pthread_mutex_lock(&tfc_registry_mu);
  struct TfcPool* p = tfc_registry;
  while (p != NULL && p->key != key) p = p->next;
  if (p == NULL) {
    p = (struct TfcPool*)calloc(1, sizeof(struct TfcPool));
    if (p == NULL) {
      pthread_mutex_unlock(&tfc_registry_mu);
      return NULL;
    }
    p->key = key;
    p->threads = 1;
    long spin_us = TFC_POOL_SPIN_US_DEFAULT;
    const char* env = getenv("TFC_POOL_SPIN_US");
    if (env != NULL) {
      char* end = NULL;
      long v = strtol(env, &end, 10);
      if (end != env && v >= 0 && v <= 1000000) spin_us = v;
    }
    p->spin_ns = spin_us * 1000L;
    p->backoff_min = TFC_POOL_BACKOFF_MIN;
    const char* bo = getenv("TFC_POOL_BACKOFF"); /* benchmarks: the stall backoff's first length */
    if (bo != NULL) {
      char* end = NULL;
      long v = strtol(bo, &end, 10);
      if (end != bo && v >= 0 && v <= TFC_POOL_BACKOFF_MAX) p->backoff_min = (int)v;
    }
    p->trace = tfc_trace_env();
    const char* y = getenv("TFC_POOL_YIELD");
    p->yield_spin = y != NULL && y[0] == '1';
    p->colocate_check = !(y != NULL && y[0] == '2'); /* TFC_POOL_YIELD=2: no yield, no CPU check (benchmarks) */
    atomic_init(&p->caller_cpu, -1);
    atomic_init(&p->generation, 0u);
    atomic_init(&p->claim, 0ull);
    atomic_init(&p->fn, (TfcTaskFn)NULL);
    atomic_init(&p->arg, (void*)NULL);
    atomic_init(&p->n_tasks, 0);
    atomic_init(&p->max_threads, 0);
    atomic_init(&p->done, 0u);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->stop, 0);
    atomic_flag_clear(&p->busy);
#if !TFC_HAVE_FUTEX
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    p->next = tfc_registry;
    tfc_registry = p;
  }
  if (p->threads < threads) tfc_pool_grow(p, threads);
  if (p->threads <= 1) { /* no thread could be started: serial */
    if (p->refs == 0) {
      struct TfcPool** link = &tfc_registry;
      while (*link != p) link = &(*link)->next;
      *link = p->next;
      pthread_mutex_unlock(&tfc_registry_mu);
      tfc_pool_destroy(p);
      return NULL;
    }
    pthread_mutex_unlock(&tfc_registry_mu);
    return NULL;
  }
  p->refs++;
  pthread_mutex_unlock(&tfc_registry_mu);
  return p;
}

void tfc_pool_release(TfcPool* p) {
  if (p == NULL) return;
  pthread_mutex_lock(&tfc_registry_mu);
  if (--p->refs > 0) {
    pthread_mutex_unlock(&tfc_registry_mu);
    return;
  }
  struct TfcPool** link = &tfc_registry;
  while (*link != NULL && *link != p) link = &(*link)->next;
  if (*link == p) *link = p->next;
  pthread_mutex_unlock(&tfc_registry_mu);
  tfc_pool_destroy(p);
}

int tfc_pool_threads(const TfcPool* p) { return p == NULL ? 1 : p->threads; }

int tfc_pool_live_workers(void) { return atomic_load(&tfc_live_workers); }

int tfc_online_cpus(void) {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > TFC_POOL_MAX_THREADS ? TFC_POOL_MAX_THREADS : (int)n);
}

void tfc_pool_run(TfcPool* p, int n_tasks, int max_threads, TfcTaskFn fn, void* arg) {
  if (n_tasks <= 0) return;
  if (p == NULL || n_tasks == 1 || max_threads <= 1 || p->threads <= 1 || atomic_flag_test_and_set(&p->busy)) {
    for (int t = 0; t < n_tasks; ++t) fn(arg, t, 0);
    return;
  }
  if (p->backoff_left > 0) { /* recent jobs stalled on a descheduled worker: run on the caller */
    p->backoff_left--;
    atomic_fetch_add(&tfc_stats[TFC_STAT_BACKOFF], 1);
    const long long t0 = p->trace ? tfc_now_ns() : 0;
    for (int t = 0; t < n_tasks; ++t) fn(arg, t, 0);
    if (p->trace) tfc_trace_serial((const void*)fn, *(void* const*)arg, -n_tasks, t0); /* n_tasks < 0: backoff */
    atomic_flag_clear(&p->busy);
    return;
  }
  const long long t_start = tfc_now_ns();
  const int sleepers_at_start = p->trace ? atomic_load(&p->sleepers) : 0;
  if (p->trace) {
    atomic_store(&p->first_claim_ns, 0);
    atomic_store(&p->worker_tasks, 0);
    atomic_store(&p->busy_ns, 0);
  }
  const unsigned gen = atomic_load(&p->generation) + 1u;
  if (!p->yield_spin) atomic_store_explicit(&p->caller_cpu, tfc_cpu(), memory_order_relaxed);
  atomic_store(&p->claim, (unsigned long long)gen << 32);
  atomic_store(&p->fn, fn);
  atomic_store(&p->arg, arg);
  atomic_store(&p->n_tasks, n_tasks);
  atomic_store(&p->max_threads, max_threads);
  atomic_store(&p->done, 0u);
  atomic_store(&p->generation, gen);
  if (atomic_load(&p->sleepers) > 0) tfc_wake_all(p, &p->generation);
  tfc_run_tasks(p, gen, n_tasks, fn, arg, 0);
  unsigned d = atomic_load(&p->done);
  long long own = 0, waited = 0;
  if (d != (unsigned)n_tasks) {
    /* the caller has nothing else to do: pause-spin briefly, then yield the core (to a
     * descheduled worker, or anything else runnable) until the wait gets long */
    const long long start = tfc_now_ns();
    own = start - t_start;
    for (int i = 1; (d = atomic_load(&p->done)) != (unsigned)n_tasks; ++i) {
      if ((i & 63) != 0) {
        tfc_cpu_relax();
        continue;
      }
      const long long w = tfc_now_ns() - start;
      if (w > TFC_POOL_CALLER_YIELD_NS) break;
      if (p->yield_spin) {
        if (w > TFC_POOL_CALLER_PAUSE_NS) sched_yield();
      } else if (w > own + TFC_POOL_CALLER_SPIN_NS) {
        break; /* longer than the caller's own share: a worker is late or descheduled, sleep */
      }
    }
    if (d != (unsigned)n_tasks) {
      atomic_store(&p->caller_waiting, 1);
      while ((d = atomic_load(&p->done)) != (unsigned)n_tasks) tfc_sleep_on(p, &p->done, d);
      atomic_store(&p->caller_waiting, 0);
    }
    waited = tfc_now_ns() - start;
  }
  if (p->trace) {
    const long long end = tfc_now_ns(), fc = atomic_load(&p->first_claim_ns);
    /* tag: the kernels' jobs start with their node state pointer */
    tfc_trace_put(t_start, (const void*)fn, *(void* const*)arg, n_tasks, atomic_load(&p->worker_tasks),
                  sleepers_at_start, fc == 0 ? -1 : fc - t_start, (waited > 0 || own > 0) ? own : end - t_start,
                  end - t_start, atomic_load(&p->busy_ns));
  }
  /* Stall detection: the caller waited longer for the workers' last tasks than it worked
   * itself (+ 50 us): a worker holding a task was descheduled (more runnable threads than
   * cores).  Then the next jobs run on the caller (64, doubling while retries stall, up to
   * 4096 jobs); a job without a stall resets it.  Outputs are the same either way. */
  atomic_fetch_add(&tfc_stats[TFC_STAT_PARALLEL], 1);
  if (waited > own + TFC_POOL_STALL_NS) {
    atomic_fetch_add(&tfc_stats[TFC_STAT_STALLED], 1);
    p->backoff_len = p->backoff_min == 0 ? 0 : p->backoff_len == 0 ? p->backoff_min
                                         : (p->backoff_len >= TFC_POOL_BACKOFF_MAX ? TFC_POOL_BACKOFF_MAX : 2 * p->backoff_len);
    p->backoff_left = p->backoff_len;
  } else {
    p->backoff_len = 0;
  }
  atomic_flag_clear(&p->busy);
}

long long tfc_pool_trace(TfcTraceRec* out, long long max_records) {
  const long long n = atomic_exchange(&tfc_trace_n, 0);
  const long long k = n < TFC_TRACE_N ? n : TFC_TRACE_N, first = n - k;
  long long m = 0;
  for (long long i = first; i < n && m < max_records; ++i) out[m++] = tfc_trace_buf[i % TFC_TRACE_N];
  return m;
}

void tfc_pool_stats(long long out[3]) {
  for (int i = 0; i < 3; ++i) out[i] = atomic_load(&tfc_stats[i]);
}
