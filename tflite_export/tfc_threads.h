/* tfcompress: the thread pool the sparse kernels run on.
 *
 * One pool per interpreter (keyed by its TfLiteContext*), shared by all the
 * TFC_* nodes of that interpreter and reference counted: the first node that
 * wants N threads creates it in Prepare, the last node's Free joins its
 * threads.  A pool of N threads is the calling thread plus N - 1 workers.
 *
 *   tfc_pool_acquire(ctx, n)     Prepare: get (or create / grow) the pool
 *   tfc_pool_release(pool)       Free: drop one reference, last one joins
 *   tfc_pool_run(pool, n, m, fn, a)  Invoke: fn(a, task, worker) for every
 *                                task in [0, n), on the caller (worker 0) and
 *                                the workers 1 .. m-1; returns when all tasks
 *                                are done.  Allocates nothing, takes no lock.
 *
 * Tasks are claimed one at a time from a shared counter (a worker that is
 * descheduled or still asleep simply claims fewer), so which worker runs a
 * task varies from run to run: a task's result must depend only on its index
 * (`worker` selects per-worker scratch memory, nothing else).
 *
 * Waking: a worker that finished a job spins on the job counter for a while
 * (20 us, or the environment variable TFC_POOL_SPIN_US read once at pool
 * creation) with pause instructions, then sleeps (futex on Linux / Android, a
 * condition variable elsewhere).  Every 64 turns it checks whether the kernel
 * put it on the CPU the caller published the last job from (sched_getcpu); only
 * then does it sched_yield(), so the caller gets its CPU back.  The caller
 * pause-spins while the last tasks finish, up to its own share of the job
 * + 20 us, then sleeps.  Before issue 11 both yielded while spinning (the
 * worker every 16 turns, the caller after 2 us): a
 * yielding spinner hands its CPU to any other runnable task, e.g. another
 * session's SCHED_IDLE job in its own autogroup (which SCHED_IDLE does not
 * demote across groups), which may keep it until the next tick: the trace
 * showed workers first claiming a task 2-8 ms after the job was published on
 * this loaded machine.  Sleeping at once when on the caller's CPU (tried first)
 * fed back on itself under load (the futex wake put the worker on the caller's
 * CPU again): MobileNetV2 int8 fused 1.26 vs 0.89 ms in one run.  In four runs
 * against the yielding spin (tflite_export/README.md "Threads"): float32 per-layer
 * MobileNetV2 +1 to +16 %, int8 per-layer -5 to +34 %, int8 fused neutral.  The yielding
 * spin is kept as TFC_POOL_YIELD=1 (at pool creation), TFC_POOL_YIELD=2 = no
 * yield at all (benchmarks).  20 us and 300 us of spin measured the same on
 * MobileNetV2; 1000 us was slower (a spinning worker holds the core XNNPACK's
 * own worker needs).
 *
 * Stalls: when the caller waited for the workers' last tasks longer than it
 * worked itself (+ 50 us), a worker holding a task was descheduled (more
 * runnable threads than cores: a loaded phone, other apps); the pool then runs
 * the next 64 jobs on the caller alone (doubling while retries stall, up to
 * 4096) instead of stalling every job.  Results do not depend on it.
 *
 * Plain C11 atomics + pthreads: Linux, Android, iOS/macOS.
 */
#ifndef TFC_THREADS_H_
#define TFC_THREADS_H_

#ifdef __cplusplus
extern "C" {
#endif

#define TFC_POOL_MAX_THREADS 64

typedef struct TfcPool TfcPool;

/* A task: `task` in [0, n_tasks), `worker` in [0, tfc_pool_threads(pool)). */
typedef void (*TfcTaskFn)(void* arg, int task, int worker);

/* The pool of `key` (any pointer; the kernels use the TfLiteContext*) with at
 * least `threads` threads (the caller included), created or grown as needed;
 * threads is clamped to [1, TFC_POOL_MAX_THREADS].  Each successful call takes
 * one reference.  Returns NULL if threads <= 1 (run serially, no pool) or if
 * no thread could be created.  Not to be called while the pool runs a job
 * (TFLite calls Prepare and Invoke of one interpreter from one thread). */
TfcPool* tfc_pool_acquire(const void* key, int threads);

/* Drops one reference; the last one stops and joins the workers and frees the
 * pool.  NULL is ignored. */
void tfc_pool_release(TfcPool* pool);

/* Threads of the pool (caller included); 1 for NULL. */
int tfc_pool_threads(const TfcPool* pool);

/* Runs fn(arg, t, worker) for t in [0, n_tasks) with worker < max_threads (the
 * per-worker scratch a node sized; workers of a pool grown since take no
 * task).  With a NULL pool, n_tasks <= 1, max_threads <= 1, or the pool busy
 * with another caller, everything runs on the calling thread as worker 0. */
void tfc_pool_run(TfcPool* pool, int n_tasks, int max_threads, TfcTaskFn fn, void* arg);

/* Number of live worker threads of all pools in the process (tests). */
int tfc_pool_live_workers(void);

/* Process-wide job counters: out[0] jobs run in parallel, out[1] of them stalled on a
 * descheduled worker, out[2] jobs run on the caller during the backoff after a stall. */
void tfc_pool_stats(long long out[3]);

/* Trace of parallel jobs, recorded only by pools created with TFC_POOL_TRACE=1 in the
 * environment (benchmarks; off, it costs one branch per job): the last records (at most 32768),
 * oldest first; reading resets it.  Times in ns from the job's start (tfc_pool_run entry). */
typedef struct {
  long long start_ns;              /* CLOCK_MONOTONIC at tfc_pool_run entry */
  const void* fn;                  /* task function (which op type) */
  const void* tag;                 /* first pointer of the job argument (the node's state) */
  int n_tasks, worker_tasks;       /* tasks, of them run by workers (not the caller) */
  int sleepers;                    /* workers asleep (futex / condvar) when the job was published */
  int busy_ns;                     /* time inside the tasks, summed over the threads (capped at INT_MAX) */
  long long first_worker_claim_ns; /* first task claimed by a worker; -1: the caller ran all */
  long long caller_done_ns;        /* the caller found no task left to claim */
  long long end_ns;                /* all tasks done, tfc_pool_run returns */
} TfcTraceRec;
long long tfc_pool_trace(TfcTraceRec* out, long long max_records);
/* Serial runs of a node (no pool) are traced too when TFC_POOL_TRACE=1 was set at a Prepare:
 * the op checks tfc_trace_serial_on, takes tfc_trace_now_ns() and calls tfc_trace_serial. */
extern int tfc_trace_serial_on;
void tfc_trace_init(void);
long long tfc_trace_now_ns(void);
void tfc_trace_serial(const void* fn, const void* tag, int n_tasks, long long start_ns);

/* CPUs online (sysconf), in [1, TFC_POOL_MAX_THREADS]. */
int tfc_online_cpus(void);

#ifdef __cplusplus
}
#endif
#endif /* TFC_THREADS_H_ */
