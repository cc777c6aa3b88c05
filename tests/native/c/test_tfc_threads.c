/* Standalone test of the tfcompress thread pool (tflite_export/tfc_threads.c).
 *
 *   test_tfc_threads [quick]    checks (quick: 1/5 of the rounds); exit 0 and "OK" when all pass
 *   test_tfc_threads bench T    wake-up latency of an almost empty job on T threads
 *
 * Built and run by tests/native/test_threads.py (also under -fsanitize=thread).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tfc_threads.h"

#define CHECK(c)                                                   \
  do {                                                             \
    if (!(c)) {                                                    \
      fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #c); \
      exit(1);                                                     \
    }                                                              \
  } while (0)

/* Threads of this process named tfc-pool-* (/proc/self/task/<tid>/comm); -1 without /proc. */
static int count_pool_threads(void) {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[300], comm[32] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE* f = fopen(path, "r");
    if (f == NULL) continue;
    if (fgets(comm, sizeof comm, f) != NULL && strncmp(comm, "tfc-pool-", 9) == 0) ++n;
    fclose(f);
  }
  closedir(d);
  return n;
}

/* Worker threads name themselves when they start, and a joined thread's /proc/self/task entry
 * can outlive pthread_join until the kernel has reaped it (seen once in CI under load): wait a
 * little for the count to settle. */
static int pool_threads_settled(int want) {
  int n = count_pool_threads();
  for (int i = 0; i < 200 && n != want && n >= 0; ++i) {
    usleep(5000);
    n = count_pool_threads();
  }
  return n;
}

typedef struct {
  atomic_int* hits;      /* per task */
  atomic_int* by_worker; /* per worker */
  int max_worker;
  atomic_int bad_worker;
  double* out; /* out[t] = f(t) written by task t */
  int spin;    /* busy work per task */
} Job;

static void job_fn(void* a, int t, int worker) {
  Job* j = (Job*)a;
  atomic_fetch_add(&j->hits[t], 1);
  if (worker < 0 || worker >= j->max_worker) atomic_store(&j->bad_worker, 1);
  else atomic_fetch_add(&j->by_worker[worker], 1);
  double v = (double)t;
  for (int i = 0; i < j->spin; ++i) v = v * 0.999 + 1.0;
  j->out[t] = v;
}

static double expect(int t, int spin) {
  double v = (double)t;
  for (int i = 0; i < spin; ++i) v = v * 0.999 + 1.0;
  return v;
}

/* Runs one job of n tasks with at most m threads and checks every task ran once. */
static void run_check(TfcPool* p, int n, int m, int spin, int* used_workers) {
  Job j;
  j.hits = calloc((size_t)n + 1, sizeof(atomic_int));
  j.by_worker = calloc(TFC_POOL_MAX_THREADS, sizeof(atomic_int));
  j.out = calloc((size_t)n + 1, sizeof(double));
  j.max_worker = m < 1 ? 1 : m;
  atomic_init(&j.bad_worker, 0);
  j.spin = spin;
  tfc_pool_run(p, n, m, job_fn, &j);
  for (int t = 0; t < n; ++t) {
    CHECK(atomic_load(&j.hits[t]) == 1);
    CHECK(j.out[t] == expect(t, spin));
  }
  CHECK(atomic_load(&j.bad_worker) == 0);
  if (used_workers != NULL)
    for (int w = 0; w < TFC_POOL_MAX_THREADS; ++w) used_workers[w] += atomic_load(&j.by_worker[w]);
  free(j.hits);
  free(j.by_worker);
  free(j.out);
}

typedef struct {
  TfcPool* pool;
  int rounds;
} Caller;

static void* caller_main(void* a) {
  Caller* c = (Caller*)a;
  for (int r = 0; r < c->rounds; ++r) run_check(c->pool, 1 + r % 37, tfc_pool_threads(c->pool), r % 3 * 200, NULL);
  return NULL;
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void* a, const void* b) {
  long long x = *(const long long*)a, y = *(const long long*)b;
  return x < y ? -1 : x > y;
}

static void noop(void* a, int t, int w) {
  (void)t;
  (void)w;
  atomic_fetch_add((atomic_int*)a, 1);
}

/* Task 0 takes 0.3 ms (a worker wakes up meanwhile), task 1 2 ms: when a worker runs task 1,
 * the caller waits for it much longer than it worked. */
static void slow_task_1(void* a, int t, int w) {
  (void)w;
  usleep(t == 1 ? 2000 : 300);
  atomic_fetch_add((atomic_int*)a, 1);
}

/* A job whose caller waited on a worker (a stall) makes the next jobs run on the caller. */
static void check_stall_backoff(TfcPool* p) {
  long long st0[3], st[3];
  tfc_pool_stats(st0);
  atomic_int c;
  atomic_init(&c, 0);
  int tries = 0;
  do {
    tfc_pool_run(p, 2, tfc_pool_threads(p), slow_task_1, &c);
    tfc_pool_stats(st);
  } while (st[1] == st0[1] && ++tries < 500);
  CHECK(st[1] > st0[1]); /* a worker took the slow task at least once in 500 tries */
  int used[TFC_POOL_MAX_THREADS] = {0};
  for (int r = 0; r < 10; ++r) run_check(p, 16, tfc_pool_threads(p), 100, used);
  CHECK(used[0] == 10 * 16); /* backoff: all on the caller */
  long long st2[3];
  tfc_pool_stats(st2);
  CHECK(st2[2] >= st[2] + 10);
  /* backoff ends: a worker takes part in a job again (within 200 jobs on a quiet machine; up to
   * 5000 when the workers sleep at once (TFC_POOL_SPIN_US=0) and the CPUs are busy, so the
   * caller finishes short jobs before a woken worker gets a CPU) */
  int runs = 0;
  do {
    run_check(p, 16, tfc_pool_threads(p), 100, NULL);
    tfc_pool_stats(st);
  } while (st[0] == st2[0] && ++runs < 5000);
  CHECK(st[0] > st2[0]);
}

static int bench(int threads, int gap_us) {
  int key;
  TfcPool* p = tfc_pool_acquire(&key, threads);
  enum { R = 2000 };
  static long long dt[R];
  atomic_int c;
  atomic_init(&c, 0);
  for (int r = 0; r < R; ++r) {
    if (gap_us > 0) { /* the caller does other work between jobs (like XNNPACK's ops) */
      long long until = now_ns() + gap_us * 1000LL;
      while (now_ns() < until) {
      }
    }
    long long t0 = now_ns();
    tfc_pool_run(p, threads, threads, noop, &c);
    dt[r] = now_ns() - t0;
  }
  qsort(dt, R, sizeof dt[0], cmp_ll);
  printf("{\"threads\": %d, \"gap_us\": %d, \"p10_ns\": %lld, \"median_ns\": %lld, \"p90_ns\": %lld}\n", threads,
         gap_us, dt[R / 10], dt[R / 2], dt[R * 9 / 10]);
  tfc_pool_release(p);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 3 && strcmp(argv[1], "bench") == 0) return bench(atoi(argv[2]), argc >= 4 ? atoi(argv[3]) : 0);
  const int q = argc >= 2 && strcmp(argv[1], "quick") == 0 ? 5 : 1; /* fewer rounds (sanitizers) */
  const int base = count_pool_threads();
  CHECK(base <= 0);
  int key_a, key_b;

  /* no pool for one thread */
  CHECK(tfc_pool_acquire(&key_a, 1) == NULL);
  CHECK(tfc_pool_acquire(&key_a, 0) == NULL);
  CHECK(tfc_pool_threads(NULL) == 1);
  run_check(NULL, 17, 4, 10, NULL); /* serial fallback */

  /* one pool, shared and refcounted */
  TfcPool* a = tfc_pool_acquire(&key_a, 3);
  CHECK(a != NULL && tfc_pool_threads(a) == 3);
  CHECK(tfc_pool_live_workers() == 2);
  TfcPool* a2 = tfc_pool_acquire(&key_a, 2);
  CHECK(a2 == a && tfc_pool_threads(a) == 3); /* never shrinks */
  if (base == 0) CHECK(pool_threads_settled(2) == 2);

  /* every task once, results right, many jobs in a row of all sizes */
  int used[TFC_POOL_MAX_THREADS] = {0};
  for (int r = 0; r < 20000 / q; ++r) run_check(a, 1 + r % 50, 3, (r % 5) * 50, used);
  for (int r = 0; r < 200 / q; ++r) run_check(a, 64, 3, 20000, used);
  CHECK(used[0] > 0 && used[1] > 0 && used[2] > 0); /* the workers took part */

  check_stall_backoff(a);

  /* max_threads limits the workers that take tasks */
  int used2[TFC_POOL_MAX_THREADS] = {0};
  for (int r = 0; r < 300 / q; ++r) run_check(a, 16, 2, 2000, used2);
  CHECK(used2[2] == 0 && used2[0] + used2[1] == 300 / q * 16);
  for (int r = 0; r < 10; ++r) run_check(a, 16, 1, 100, used2);

  /* grow: a node prepared with more threads */
  TfcPool* a3 = tfc_pool_acquire(&key_a, 4);
  CHECK(a3 == a && tfc_pool_threads(a) == 4 && tfc_pool_live_workers() == 3);
  for (int r = 0; r < 2000 / q; ++r) run_check(a, 1 + r % 9, 4, 300, NULL);

  /* a second pool, used at the same time from another thread; and the first pool
   * used from two callers at once (one of them falls back to serial) */
  TfcPool* b = tfc_pool_acquire(&key_b, 2);
  CHECK(b != NULL && b != a && tfc_pool_live_workers() == 4);
  Caller c1 = {a, 3000 / q}, c2 = {b, 3000 / q}, c3 = {a, 3000 / q};
  pthread_t t1, t2, t3;
  CHECK(pthread_create(&t1, NULL, caller_main, &c1) == 0);
  CHECK(pthread_create(&t2, NULL, caller_main, &c2) == 0);
  CHECK(pthread_create(&t3, NULL, caller_main, &c3) == 0);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  pthread_join(t3, NULL);

  /* release: the last reference joins the workers */
  tfc_pool_release(a);
  tfc_pool_release(a2);
  CHECK(tfc_pool_live_workers() == 4);
  tfc_pool_release(a3);
  CHECK(tfc_pool_live_workers() == 1);
  tfc_pool_release(b);
  CHECK(tfc_pool_live_workers() == 0);
  if (base == 0) CHECK(pool_threads_settled(0) == 0);

  /* the same key again after the last release: a fresh pool */
  TfcPool* again = tfc_pool_acquire(&key_a, 2);
  CHECK(again != NULL && tfc_pool_threads(again) == 2);
  run_check(again, 5, 2, 10, NULL);
  tfc_pool_release(again);
  CHECK(tfc_pool_live_workers() == 0);
  if (base == 0) CHECK(pool_threads_settled(0) == 0);
  printf("OK\n");
  return 0;
}
