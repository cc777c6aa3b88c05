/* tfcompress sparse kernels for TFLite: TFC_SPARSE_FC and TFC_SPARSE_CONV_1X1 op glue:
 * Init / Prepare / Invoke / Free, the kernel pick and the registrations.
 *
 * No allocation in Invoke: every buffer is sized in Prepare.  Every byte read
 * from the model (options, packed weights (tfc_format.c), tensor shapes and
 * types) is validated in Prepare; Invoke only runs on validated state.
 *
 * Custom options (node custom_initial_data), exactly 8 bytes:
 *   byte 0  version      = 1
 *   byte 1  activation   0 none, 1 RELU, 2 RELU6, 3 RELU_N1_TO_1
 *   byte 2  layout       0 output = input shape with last dim N
 *                        1 output = [P, N], P = product of leading input dims
 *                        (TFC_SPARSE_CONV_1X1 requires 0)
 *   bytes 3..7           0
 */
#include <stdatomic.h>
#include <stdio.h>

#include "tfc_internal.h"
#include "tfc_threads.h"

/* 64-byte aligned (one cache line: vector loads of the tiles never split lines), released with
 * tfc_free64.  By hand rather than aligned_alloc, which Android has only from API 28. */
#if defined(__SANITIZE_ADDRESS__)
#define TFC_ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TFC_ASAN_BUILD 1
#endif
#endif

#ifndef TFC_ASAN_BUILD
void* tfc_alloc64(size_t bytes) {
  uint8_t* raw = (uint8_t*)malloc(bytes + 64u + sizeof(void*));
  if (raw == NULL) return NULL;
  uintptr_t a = ((uintptr_t)(raw + sizeof(void*)) + 63u) & ~(uintptr_t)63u;
  ((void**)a)[-1] = raw;
  return (void*)a;
}
void tfc_free64(void* p) {
  if (p != NULL) free(((void**)p)[-1]);
}
#else
/* AddressSanitizer builds (fuzzing, the sanitizer tests): 64 guard bytes on each side of the
 * buffer, poisoned, so an instrumented access past either end stops at once, and filled with a
 * pattern checked on free, so a store ASan does not see (NEON intrinsics under GCC, inline asm
 * everywhere) stops the run in the input that made it, instead of corrupting a later heap
 * chunk.  Layout: raw[0] = bytes, [a - 72, a - 64) = raw, [a - 64, a) and [a + bytes,
 * a + bytes + 64) = guards. */
void __asan_poison_memory_region(void const volatile* addr, size_t size);
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
void __sanitizer_print_stack_trace(void);
enum { TFC_GUARD = 64, TFC_GUARD_BYTE = 0xA5 };

void* tfc_alloc64(size_t bytes) {
  uint8_t* raw = (uint8_t*)malloc(bytes + 16u + 3u * TFC_GUARD);
  if (raw == NULL) return NULL;
  uint8_t* a = (uint8_t*)(((uintptr_t)raw + 16u + TFC_GUARD + 63u) & ~(uintptr_t)63u);
  memcpy(raw, &bytes, sizeof bytes);
  memcpy(a - TFC_GUARD - sizeof(void*), &raw, sizeof raw);
  memset(a - TFC_GUARD, TFC_GUARD_BYTE, TFC_GUARD);
  memset(a + bytes, TFC_GUARD_BYTE, TFC_GUARD);
  __asan_poison_memory_region(a - TFC_GUARD, TFC_GUARD);
  __asan_poison_memory_region(a + bytes, TFC_GUARD);
  return a;
}

static void tfc_guard_check(const uint8_t* g, const uint8_t* a, size_t bytes, const char* side) {
  for (int i = 0; i < TFC_GUARD; ++i)
    if (g[i] != TFC_GUARD_BYTE) {
      fprintf(stderr, "tfc_free64: byte %d of the guard %s the %zu-byte buffer at %p was overwritten "
              "(0x%02x): a store ran past the buffer\n", i, side, bytes, (const void*)a, g[i]);
      __sanitizer_print_stack_trace();
      abort();
    }
}

void tfc_free64(void* p) {
  if (p == NULL) return;
  uint8_t* a = (uint8_t*)p;
  uint8_t* raw;
  size_t bytes;
  memcpy(&raw, a - TFC_GUARD - sizeof(void*), sizeof raw);
  memcpy(&bytes, raw, sizeof bytes);
  __asan_unpoison_memory_region(a - TFC_GUARD, TFC_GUARD);
  __asan_unpoison_memory_region(a + bytes, TFC_GUARD);
  tfc_guard_check(a - TFC_GUARD, a, bytes, "before");
  tfc_guard_check(a + bytes, a, bytes, "after");
  free(raw);
}
#endif

static int tfc_tensor_index_ok(const TfLiteContext* ctx, int idx) {
  return idx >= 0 && (size_t)idx < ctx->tensors_size;
}

/* ------------------------------------------------------------- kernel pick
 * Pickers by ISA, best first; the first that has a kernel for the case wins.
 * ARM: add tfc_pick_aarch64 (tfc_kernels_aarch64.c) to this table. */
static const TfcPickFn kTfcPickers[] = {
#if TFC_HAVE_X86
    tfc_pick_x86,
    tfc_pick_x86_avx2, /* int8 where tfc_pick_x86 has no kernel (no AVX-512 VNNI) */
#endif
#if TFC_HAVE_AARCH64
    tfc_pick_aarch64,
#endif
    tfc_pick_portable,
};

/* ISA cap from the environment (tests force every path on one machine); also tfc_fused.c's. */
int tfc_isa_cap(void) {
  const char* e = getenv("TFCOMPRESS_ISA_CAP");
  if (e == NULL || e[0] < '0' || e[0] > '9' || e[1] != 0) return TFC_ISA_ANY;
  return e[0] - '0';
}

/* Name of the kernel the last Prepare picked (tests check that a forced path is taken). */
static _Atomic(const char*) tfc_last_plan = "";
const char* TfcLastKernelName(void) { return atomic_load(&tfc_last_plan); }

/* int8: sum of the stored weights per output channel and the requantization multipliers
 * s_x * s_w[n] / s_y (in float, as XNNPACK computes them), refused from XNNPACK's bound 256 on
 * (an infinite one would reach an undefined float-to-int cast).  Shared with tfc_fused.c. */
const char* tfc_int8_row_state(TfcState* s, float sx, float sy) {
  static _Thread_local char msg[200]; /* per thread: interpreters may prepare concurrently */
  if (tfc_seen_buffer(s, (size_t)s->n_out) == NULL) return "out of memory";
  const int8_t* v = (const int8_t*)s->values;
  for (int r = 0; r < s->n_out; ++r) s->row_sums[r] = 0;
  for (int sl = 0; sl < s->n_slices; ++sl)
    for (int l = 0; l < 16; ++l) {
      uint32_t r = s->perm[sl * 16 + l];
      if (r == 0xFFFFFFFFu) continue;
      int32_t sum = 0;
      for (uint32_t i = s->slice_ptr[sl] + (uint32_t)l; i < s->slice_ptr[sl + 1]; i += 16u)
        for (int b = 0; b < s->block; ++b) sum += v[(size_t)i * s->block + b];
      s->row_sums[r] = sum;
    }
  for (int r = 0; r < s->n_out; ++r) {
    s->multipliers[r] = sx * s->scales[r] / sy;
    if (!(s->multipliers[r] < 256.f)) {
      snprintf(msg, sizeof msg, "int8 requantization scale s_x * s_w / s_y of output channel %d is %g: it must be "
               "< 256 (re-export the model: its input, weight and output scales do not fit together)", r,
               (double)s->multipliers[r]);
      return msg;
    }
  }
  return NULL;
}

/* The first picker of kTfcPickers that has a kernel for s at ISA level `cap` (no re-layout). */
void tfc_pick_kernel(TfcState* s, int cap) {
  memset(&s->plan, 0, sizeof(s->plan));
  for (size_t i = 0; i < sizeof(kTfcPickers) / sizeof(kTfcPickers[0]); ++i)
    if (kTfcPickers[i](s, cap, &s->plan)) break;
}

/* Builds the Prepare-time re-layout the picked plan needs (only for new weights).  Shared with
 * tfc_fused.c.  Returns NULL or the error. */
const char* tfc_relayout_for_plan(TfcState* s) {
  if (s->plan.needs == TFC_NEEDS_CSR_F32) {
    /* 64 rows per tile (4 vectors per weight); the features in chunks of 96 rows of
     * the tile (24 KiB, fits L1) unless all K fit in 32 KiB.
     * T and KC follow from the packed weights: rebuild only for new weights */
    const int T = TFC_CSR_TILE, KC = s->k_in <= 128 ? 128 : 96;
    if ((s->csr_tile == 0 || s->csr_blob != s->blob_seen) && !tfc_build_csr(s, T, KC))
      return "out of memory for the CSR weights";
    s->csr_blob = s->blob_seen;
  }
  if (s->plan.needs == TFC_NEEDS_G8_F32) {
    if ((s->g8_ptr == NULL || s->g8_blob != s->blob_seen) && !tfc_build_g8(s)) return "out of memory for the float32 weight groups";
    s->g8_blob = s->blob_seen;
  }
  if (s->plan.needs & (TFC_NEEDS_I8_QUADS | TFC_NEEDS_I8_WIN)) {
    if ((s->i8q_tile == 0 || s->i8q_blob != s->blob_seen) && !tfc_build_i8_quads(s, TFC_I8_TILE))
      return "out of memory for the int8 quad weights";
    s->i8q_blob = s->blob_seen;
    const int wq = (s->plan.needs & TFC_NEEDS_I8_WIN8) ? 8 : 32;
    if ((s->plan.needs & TFC_NEEDS_I8_WIN) && (!s->i8w_built || s->i8w_quads != wq) && !tfc_build_i8_windows(s, wq))
      return "out of memory for the windowed int8 weights";
    /* sum_k w (x_k - zp) = sum_k w (x_k + 128) - (128 + zp) sum_k w, in uint32 wrap-around:
     * exact whenever the true int32 accumulator fits (TFLite's own int8 kernels need that) */
    for (int r = 0; r < s->n_out; ++r)
      s->i8q_corr[r] = (int32_t)(0u - (uint32_t)(128 + s->zp_in) * (uint32_t)s->row_sums[r]);
  }
  return NULL;
}

static void tfc_pick_plan(TfcState* s) {
  s->isa_cap = tfc_isa_cap();
  /* tests: TFCOMPRESS_TEST_RANGES=n splits the units into n ranges run in turn (checks that any
   * split computes the same output, as a thread pool would) */
  const char* r = getenv("TFCOMPRESS_TEST_RANGES");
  s->test_ranges = (r != NULL && r[0] >= '1' && r[0] <= '9' && r[1] == 0) ? r[0] - '0' : 1;
  tfc_pick_kernel(s, s->isa_cap);
  atomic_store(&tfc_last_plan, s->plan.name ? s->plan.name : "");
}

/* ------------------------------------------------------------------ threads
 * Invoke splits the plan's units over the threads the interpreter was given
 * (TfLiteContext.recommended_num_threads, set by Interpreter::SetNumThreads /
 * Python's num_threads; <= 0 means the runtime default, 1 thread, as TFLite's
 * own kernels), on a pool shared by all TFC_* nodes of the interpreter
 * (tfc_threads.c, keyed by the context).  Everything is decided here in
 * Prepare: the pool, the per-worker scratch, the unit ranges (tasks). */

/* A layer whose estimated one-thread time is below this stays on one thread: handing work to
 * a worker costs ~0.3 us when it spins, ~4 us to wake it (futex, measured here), and MobileNetV2's
 * 1x1 layers take 4-120 us.  Estimate: multiply-adds / rate + bytes in and out / bandwidth, rates
 * measured on this machine per layer (float32 CSR ~80 MAC/ns, int8 VNNI ~140 MAC/ns, ~50 B/ns
 * for the NHWC <-> tile transposes of the big maps). */
#ifndef TFC_PAR_MIN_NS /* -DTFC_PAR_MIN_NS=0: split every layer (fuzzing the split) */
#define TFC_PAR_MIN_NS 15000
#endif
#define TFC_MACS_PER_NS_F32 80
#define TFC_MACS_PER_NS_I8 140
#define TFC_BYTES_PER_NS 50
/* Tasks per thread: more balances preemption and uneven units, fewer costs less claiming. */
#define TFC_TASKS_PER_WORKER 4
/* Tiled many-row kernels (float32 CSR, int8 quads) with fewer row tiles than this per thread
 * (MobileNetV2: 1 tile at 7x7): tiles are split into channel parts too.  Each part transposes
 * its tile again, and a worker that wakes late leaves all parts to the caller: measured under
 * load, 1 part per thread cost least (3 per thread made a 7x7 layer 1.8x slower than 1 part). */
#define TFC_PART_UNITS_PER_WORKER 1

/* Workers Invoke may split the units over (scratch is allocated for this many): the
 * interpreter's threads, at most the CPUs online (more threads than cores only add waiting
 * on descheduled workers; TFCOMPRESS_THREADS_OVERSUBSCRIBE=1 lifts that cap, for tests), at
 * most TFCOMPRESS_THREADS_MAX=1..8 if set (benchmarks: the kernels' own share of a speed-up). */
static int tfc_workers(const TfLiteContext* ctx) {
  int n = ctx->recommended_num_threads;
  if (n > TFC_MAX_THREADS) n = TFC_MAX_THREADS;
  const char* cap = getenv("TFCOMPRESS_THREADS_MAX");
  if (cap != NULL && cap[0] >= '1' && cap[0] <= '8' && cap[1] == 0 && n > cap[0] - '0') n = cap[0] - '0';
  const char* over = getenv("TFCOMPRESS_THREADS_OVERSUBSCRIBE");
  if (!(over != NULL && over[0] == '1') && n > tfc_online_cpus()) n = tfc_online_cpus();
  return n <= 1 ? 1 : n;
}

/* Splits [0, units) into n ranges of about equal cost (cost[u] >= 0; NULL: all units equal);
 * writes bounds[0..n] and returns the number of non-empty ranges. */
int tfc_split_units(int units, const uint64_t* cost, int n, int* bounds) {
  if (n > units) n = units;
  if (n < 1) n = 1;
  if (cost == NULL) {
    for (int i = 0; i <= n; ++i) bounds[i] = (int)((int64_t)units * i / n);
    return n;
  }
  uint64_t total = 0;
  for (int u = 0; u < units; ++u) total += cost[u];
  int k = 0, u = 0;
  uint64_t acc = 0;
  bounds[0] = 0;
  for (int i = 1; i < n; ++i) {
    const uint64_t want = total * (uint64_t)i / (uint64_t)n;
    while (u < units && acc + cost[u] / 2 < want) acc += cost[u++];
    if (u > bounds[k] && u < units) bounds[++k] = u;
  }
  bounds[++k] = units;
  return k;
}

/* Estimated one-thread time of one Invoke in ns (stored slots include the zero padding the
 * kernels also run). */
static uint64_t tfc_invoke_ns(const TfcState* s) {
  const int f32 = s->value_type == kTfLiteFloat32;
  const uint64_t macs = (uint64_t)s->rows * (uint64_t)s->nslots * (uint64_t)s->block;
  const uint64_t bytes = (uint64_t)s->rows * ((uint64_t)s->k_in + (uint64_t)s->n_out) * (f32 ? 4u : 1u);
  return macs / (f32 ? TFC_MACS_PER_NS_F32 : TFC_MACS_PER_NS_I8) + bytes / TFC_BYTES_PER_NS;
}

int tfc_plan_has_parts(const TfcState* s) {
  return s->plan.channel_parts && s->plan.unit_kind == TFC_UNITS_ROWS &&
         ((s->plan.needs == TFC_NEEDS_I8_QUADS && s->i8q_tile != 0) ||
          (s->plan.needs == TFC_NEEDS_CSR_F32 && s->csr_tile != 0) || (s->plan.needs == TFC_NEEDS_G8_F32 && s->g8_ptr != NULL));
}

uint64_t tfc_part_weights(const TfcState* s, int n0, int n1) {
  if (n1 > s->n_out) n1 = s->n_out;
  if (n0 >= n1) return 0u;
  if (s->plan.needs == TFC_NEEDS_G8_F32) { /* 8-channel groups of 8 weights */
    const int G8 = (s->n_out + 7) / 8, h1 = (n1 + 7) / 8 < G8 ? (n1 + 7) / 8 : G8;
    return 8u * (uint64_t)(s->g8_ptr[h1] - s->g8_ptr[n0 / 8]);
  }
  if (s->plan.needs != TFC_NEEDS_CSR_F32) return 4u * (uint64_t)(s->i8q_ptr[n1] - s->i8q_ptr[n0]); /* int8 quads */
  const int G = (s->n_out + 15) / 16, per_group = s->csr_quads ? 4 : 8; /* quads or pairs per group */
  const size_t nper = (size_t)per_group * (size_t)G;
  const int g0 = n0 / 16, g1 = (n1 + 15) / 16;
  uint64_t e = 0;
  for (int c = 0; c < s->csr_chunks; ++c)
    e += s->csr_ptr[(size_t)c * nper + (size_t)(per_group * g1)] - s->csr_ptr[(size_t)c * nper + (size_t)(per_group * g0)];
  return e * (s->csr_quads ? 4u : 2u);
}

/* The pool, the CSR channel parts and the tasks of this node for `workers` threads. */
static int tfc_plan_threads(TfLiteContext* ctx, TfcState* s, int workers) {
  s->tile_parts = 1;
  s->n_tasks = 1;
  s->task_u[0] = 0;
  s->task_u[1] = s->plan.units;
  if (workers > 1 && tfc_invoke_ns(s) < TFC_PAR_MIN_NS) workers = 1;
  if (workers > 1 && s->pool == NULL) s->pool = tfc_pool_acquire(ctx, workers);
  if (workers > 1 && s->pool != NULL && tfc_pool_threads(s->pool) < workers) {
    TfcPool* bigger = tfc_pool_acquire(ctx, workers); /* same pool, grown */
    tfc_pool_release(s->pool);
    s->pool = bigger;
  }
  if (s->pool == NULL) workers = 1;
  else if (tfc_pool_threads(s->pool) < workers) workers = tfc_pool_threads(s->pool);
  if (workers <= 1 || s->plan.units < 1) { /* keep the pool reference: the node may be re-prepared with more rows */
    s->workers = 1;
    return 1;
  }
  s->workers = workers;
  int units = s->plan.units;
  const int want = workers * TFC_TASKS_PER_WORKER;
  const int n = want < TFC_MAX_TASKS ? want : TFC_MAX_TASKS;
  const int G = (s->n_out + 15) / 16;
  /* per-unit costs for the split (NULL: equal units) */
  uint64_t* cost = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)(units > G ? units : G));
  int gb[TFC_MAX_PARTS + 1];
  if (cost == NULL) {
    ctx->ReportError(ctx, "tfcompress sparse op: out of memory planning threads");
    return 0;
  }
  const uint64_t* ucost = NULL;
  /* only kernels that declare it take (tile, part) units (the aarch64 ones take whole tiles) */
  if (tfc_plan_has_parts(s) && units < workers * TFC_PART_UNITS_PER_WORKER) {
    /* few row tiles (7x7, 14x14 maps): also split each tile's 16-channel groups, balanced by
     * the stored weights of each group plus its transpose-and-store */
    const int want_units = workers * TFC_PART_UNITS_PER_WORKER;
    int parts = (want_units + units - 1) / units;
    if (parts > G) parts = G;
    if (parts > TFC_MAX_PARTS) parts = TFC_MAX_PARTS;
    if (parts > 1) {
      for (int g = 0; g < G; ++g) cost[g] = tfc_part_weights(s, 16 * g, 16 * (g + 1)) + 64u;
      parts = tfc_split_units(G, cost, parts, gb);
      for (int i = 0; i <= parts; ++i) s->part_g[i] = gb[i];
      s->tile_parts = parts;
      units *= parts;
      s->plan.units = units;
    }
  } else if (s->plan.unit_kind == TFC_UNITS_SLICES && (s->plan.needs & TFC_NEEDS_I8_WIN) && s->i8w_built) {
    /* windowed int8 slices (natural channel order): balance by their steps */
    for (int sl = 0; sl < units; ++sl) {
      uint64_t e = 4u;
      for (int w = 0; w < s->i8w_windows; ++w) e += s->i8w_steps[(size_t)sl * (size_t)s->i8w_windows + (size_t)w];
      cost[sl] = e;
    }
    ucost = cost;
  } else if (s->plan.unit_kind == TFC_UNITS_SLICES && units <= s->n_slices) {
    /* packed slices have uneven lengths (sorted by non-zero count): balance by stored slots */
    for (int sl = 0; sl < units; ++sl) cost[sl] = (uint64_t)(s->slice_ptr[sl + 1] - s->slice_ptr[sl]) + 16u;
    ucost = cost;
  }
  s->n_tasks = units < 2 ? 1 : tfc_split_units(units, ucost, n, s->task_u);
  if (s->n_tasks <= 1) { /* one unit: nothing to split */
    s->task_u[0] = 0;
    s->task_u[1] = units;
  }
  free(cost);
  return 1;
}

typedef struct {
  const TfcState* s;
  const TfcIO* io;
} TfcInvokeJob;

static void* tfc_worker_scratch(const TfcState* s, int worker);

static void tfc_invoke_task(void* arg, int task, int worker) {
  const TfcInvokeJob* j = (const TfcInvokeJob*)arg;
  const TfcState* s = j->s;
  s->plan.run(s, j->io, s->task_u[task], s->task_u[task + 1], tfc_worker_scratch(s, worker));
}

static void* tfc_worker_scratch(const TfcState* s, int worker) {
  return s->scratch == NULL ? NULL : (uint8_t*)s->scratch + (size_t)worker * s->scratch_stride;
}

/* --------------------------------------------------------------- lifecycle */

/* Validates the packed weights at `wp` (tfc_parse_blob, on a 16-byte aligned copy when the tensor
 * data is not aligned) unless they are the ones validated last.  Shared with tfc_fused.c. */
const char* tfc_validate_blob(TfcState* s, const uint8_t* wp, size_t bytes) {
  if (wp == s->blob_seen && bytes == s->blob_bytes_seen) return NULL;
  const uint8_t* src = wp;
  free(s->aligned_copy);
  s->aligned_copy = NULL;
  s->blob_seen = NULL;
  if (((uintptr_t)wp & 15u) != 0) {
    s->aligned_copy = (uint8_t*)malloc(bytes + 16);
    if (s->aligned_copy == NULL) return "out of memory copying packed weights";
    uint8_t* a = (uint8_t*)(((uintptr_t)s->aligned_copy + 15u) & ~(uintptr_t)15u);
    memcpy(a, wp, bytes);
    src = a;
  }
  const char* err = tfc_parse_blob(s, src, bytes);
  if (err != NULL) return err;
  s->blob_seen = wp;
  s->blob_bytes_seen = bytes;
  return NULL;
}

/* Frees what Prepare built from the weights (the aligned copy, row state, re-layouts), not the
 * state itself.  Shared with tfc_fused.c. */
void tfc_free_weights_state(TfcState* s) {
  free(s->aligned_copy);
  free(s->row_sums);
  free(s->multipliers);
  tfc_free_csr(s);
  tfc_free_g8(s);
  tfc_free_i8_quads(s);
#if TFC_HAVE_AARCH64
  tfc_free_aarch64(s);
#endif
}

static void* tfc_init_common(TfLiteContext* ctx, const char* buffer, size_t length, int op) {
  (void)ctx;
  TfcState* s = (TfcState*)calloc(1, sizeof(TfcState));
  if (s == NULL) return NULL;
  s->op = op;
  s->options_ok = 0;
  if (buffer != NULL && length == 8) {
    const uint8_t* o = (const uint8_t*)buffer;
    int zeros = (o[3] | o[4] | o[5] | o[6] | o[7]) == 0;
    if (o[0] == 1 && o[1] <= 3 && o[2] <= 1 && zeros && !(op == TFC_OP_CONV1X1 && o[2] != 0)) {
      s->activation = o[1];
      s->layout = o[2];
      s->options_ok = 1;
    }
  }
  return s;
}

static void* tfc_init_fc(TfLiteContext* ctx, const char* buffer, size_t length) {
  return tfc_init_common(ctx, buffer, length, TFC_OP_FC);
}

static void* tfc_init_conv(TfLiteContext* ctx, const char* buffer, size_t length) {
  return tfc_init_common(ctx, buffer, length, TFC_OP_CONV1X1);
}

static void tfc_free(TfLiteContext* ctx, void* buffer) {
  (void)ctx;
  TfcState* s = (TfcState*)buffer;
  if (s == NULL) return;
  tfc_free64(s->scratch);
  tfc_pool_release(s->pool);
  tfc_free_weights_state(s);
  free(s);
}

/* ------------------------------------------------------------------ prepare */

static TfLiteStatus tfc_prepare(TfLiteContext* ctx, TfLiteNode* node) {
  TfcState* s = (TfcState*)node->user_data;
  if (s == NULL) TFC_FAIL(ctx, "kernel state missing (out of memory in init)");
  s->prepared = 0;
  if (!s->options_ok)
    TFC_FAIL(ctx, "custom options must be 8 bytes {version=1, activation 0..3, layout 0..1 (0 for CONV_1X1), 0,0,0,0,0}");
  if (node->inputs == NULL || node->outputs == NULL) TFC_FAIL(ctx, "node has no inputs/outputs");
  if (node->inputs->size != 2 && node->inputs->size != 3) TFC_FAIL(ctx, "expects 2 or 3 inputs (x, packed, [bias]), got %d", node->inputs->size);
  if (node->outputs->size != 1) TFC_FAIL(ctx, "expects 1 output, got %d", node->outputs->size);
  int ix = node->inputs->data[0], iw = node->inputs->data[1];
  int ib = node->inputs->size == 3 ? node->inputs->data[2] : -1, io = node->outputs->data[0];
  if (!tfc_tensor_index_ok(ctx, ix) || !tfc_tensor_index_ok(ctx, iw) || !tfc_tensor_index_ok(ctx, io) ||
      (ib != -1 && !tfc_tensor_index_ok(ctx, ib)))
    TFC_FAIL(ctx, "tensor index out of range");
  if (ix == io || iw == io || ib == io) TFC_FAIL(ctx, "output tensor aliases an input");
  const TfLiteTensor* x = TFC_TENSOR(ctx, ix);
  const TfLiteTensor* w = TFC_TENSOR(ctx, iw);
  TfLiteTensor* y = TFC_TENSOR(ctx, io);

  /* packed weights */
  if (w->type != kTfLiteUInt8 && w->type != kTfLiteInt8) TFC_FAIL(ctx, "packed weights must be a uint8 tensor");
  if (w->allocation_type != kTfLiteMmapRo && w->allocation_type != kTfLitePersistentRo)
    TFC_FAIL(ctx, "packed weights must be a constant tensor");
  if (w->data.raw_const == NULL || w->bytes == 0) TFC_FAIL(ctx, "packed weights tensor has no data");
  const char* blob_err = tfc_validate_blob(s, (const uint8_t*)w->data.raw_const, w->bytes);
  if (blob_err != NULL) TFC_FAIL(ctx, "%s", blob_err);

  /* activations */
  if (x->type != kTfLiteFloat32 && x->type != kTfLiteInt8) TFC_FAIL(ctx, "input must be float32 or int8");
  /* int8 products are <= 2^14, so K <= 2^16 keeps the int32 accumulators exact */
  if (x->type == kTfLiteInt8 && s->k_in > 65536) TFC_FAIL(ctx, "int8 packed weights need K <= 65536");
  if ((int)x->type != s->value_type) TFC_FAIL(ctx, "input type and packed value_type differ (float32 input needs float32 values, int8 input int8 values)");
  if (y->type != x->type) TFC_FAIL(ctx, "output type must equal input type");
  if (x->dims == NULL || x->dims->size < 1 || x->dims->size > 6) TFC_FAIL(ctx, "input rank must be 1..6");
  if (s->op == TFC_OP_CONV1X1 && x->dims->size != 4) TFC_FAIL(ctx, "CONV_1X1 input must be NHWC (rank 4)");
  int rank = x->dims->size;
  if (x->dims->data[rank - 1] != s->k_in)
    TFC_FAIL(ctx, "input last dim %d != packed K %d", x->dims->data[rank - 1], s->k_in);
  int64_t rows = 1;
  for (int i = 0; i < rank - 1; ++i) {
    if (x->dims->data[i] < 0) TFC_FAIL(ctx, "negative input dim");
    rows *= x->dims->data[i];
    if (rows > INT_MAX / 8) TFC_FAIL(ctx, "input too large");
  }
  uint64_t esz = (x->type == kTfLiteFloat32) ? 4u : 1u;
  if ((uint64_t)x->bytes != (uint64_t)rows * (uint64_t)s->k_in * esz) TFC_FAIL(ctx, "input byte size does not match its shape");
  if ((uint64_t)rows * (uint64_t)s->n_out > (uint64_t)INT_MAX) TFC_FAIL(ctx, "output too large");
  s->rows = (int)rows;

  /* bias */
  if (ib != -1) {
    const TfLiteTensor* b = TFC_TENSOR(ctx, ib);
    TfLiteType want = (x->type == kTfLiteFloat32) ? kTfLiteFloat32 : kTfLiteInt32;
    if (b->type != want) TFC_FAIL(ctx, "bias must be float32 (float model) or int32 (int8 model)");
    if (b->data.raw_const == NULL || (uint64_t)b->bytes != 4ull * (uint64_t)s->n_out)
      TFC_FAIL(ctx, "bias must hold exactly N=%d values", s->n_out);
  }

  /* int8 quantization */
  float fmin, fmax;
  tfc_act_bounds(s->activation, &fmin, &fmax);
  s->fmin = fmin;
  s->fmax = fmax;
  if (x->type == kTfLiteInt8) {
    float sx = x->params.scale, sy = y->params.scale;
    if (!(isfinite(sx) && sx > 0.f && isfinite(sy) && sy > 0.f)) TFC_FAIL(ctx, "int8 input/output need a finite scale > 0");
    if (x->params.zero_point < -128 || x->params.zero_point > 127 || y->params.zero_point < -128 || y->params.zero_point > 127)
      TFC_FAIL(ctx, "int8 zero points must be in -128..127");
    s->zp_in = x->params.zero_point;
    s->zp_out = y->params.zero_point;
    double lo = -128.0, hi = 127.0;
    if (isfinite(fmin)) { double q = s->zp_out + nearbyint(fmin / sy); if (q > lo) lo = q; }
    if (isfinite(fmax)) { double q = s->zp_out + nearbyint(fmax / sy); if (q < hi) hi = q; }
    if (lo > hi) lo = hi;
    s->qmin = (int32_t)lo;
    s->qmax = (int32_t)hi;
    const char* err = tfc_int8_row_state(s, sx, sy);
    if (err != NULL) TFC_FAIL(ctx, "%s", err);
  }

  tfc_pick_plan(s);
  const char* relayout_err = tfc_relayout_for_plan(s);
  if (relayout_err != NULL) TFC_FAIL(ctx, "%s", relayout_err);

  tfc_trace_init();
  /* per-worker scratch of the plan */
  const int workers = tfc_workers(ctx);
  const size_t stride = tfc_round64(s->plan.scratch_bytes);
  if (stride > 0 && (size_t)workers * stride > s->scratch_bytes) {
    tfc_free64(s->scratch);
    s->scratch_bytes = 0;
    s->scratch = tfc_alloc64((size_t)workers * stride);
    if (s->scratch == NULL) TFC_FAIL(ctx, "out of memory for %d x %zu bytes of kernel scratch", workers, stride);
    s->scratch_bytes = (size_t)workers * stride;
  }
  s->scratch_stride = stride;
  if (!tfc_plan_threads(ctx, s, workers)) return kTfLiteError;

  /* output shape */
  int shape[6];
  int out_rank;
  if (s->layout == 1) {
    shape[0] = s->rows;
    shape[1] = s->n_out;
    out_rank = 2;
  } else {
    for (int i = 0; i < rank - 1; ++i) shape[i] = x->dims->data[i];
    shape[rank - 1] = s->n_out;
    out_rank = rank;
  }
  if (TFC_TENSOR_RESIZE(ctx, y, out_rank, shape) != kTfLiteOk) TFC_FAIL(ctx, "could not resize the output");
  s->prepared = s->plan.run != NULL;
  return kTfLiteOk;
}


/* ------------------------------------------------------------------- invoke */

static TfLiteStatus tfc_invoke(TfLiteContext* ctx, TfLiteNode* node) {
  TfcState* s = (TfcState*)node->user_data;
  if (s == NULL || s->blob_seen == NULL || !s->prepared) TFC_FAIL(ctx, "Invoke before a successful Prepare");
  const TfLiteTensor* x = TFC_TENSOR(ctx, node->inputs->data[0]);
  const TfLiteTensor* w = TFC_TENSOR(ctx, node->inputs->data[1]);
  const int ib = node->inputs->size == 3 ? node->inputs->data[2] : -1;
  TfLiteTensor* y = TFC_TENSOR(ctx, node->outputs->data[0]);
  if ((const uint8_t*)w->data.raw_const != s->blob_seen || w->bytes != s->blob_bytes_seen)
    TFC_FAIL(ctx, "packed weights changed after Prepare");
  if (x->data.raw_const == NULL || y->data.data == NULL) TFC_FAIL(ctx, "input or output has no buffer");
  TfcIO io;
  io.x = x->data.raw_const;
  io.bias = ib >= 0 ? TFC_TENSOR(ctx, ib)->data.raw_const : NULL;
  io.y = y->data.data;
  /* The units [0, units) are independent (tfc_internal.h); task i = units
   * [task_u[i], task_u[i+1]) (tfc_plan_threads), on the caller and the pool's workers.
   * One thread: TFCOMPRESS_TEST_RANGES=n (tests) still runs n ranges in turn. */
  if (s->n_tasks > 1 && s->pool != NULL) {
    TfcInvokeJob job = {s, &io};
    tfc_pool_run(s->pool, s->n_tasks, s->workers, tfc_invoke_task, &job);
  } else {
    const long long t0 = tfc_trace_serial_on ? tfc_trace_now_ns() : 0;
    const int units = s->plan.units, ranges = s->test_ranges > 1 ? s->test_ranges : 1;
    for (int r = 0; r < ranges; ++r) {
      const int u0 = (int)((int64_t)units * r / ranges), u1 = (int)((int64_t)units * (r + 1) / ranges);
      if (u1 > u0) s->plan.run(s, &io, u0, u1, tfc_worker_scratch(s, 0));
    }
    if (tfc_trace_serial_on) tfc_trace_serial((const void*)tfc_invoke_task, s, ranges, t0);
  }
  return kTfLiteOk;
}

/* ------------------------------------------------------------ registration */

/* Fills one of the two (static) registrations; the ops differ only in Init and name. */
static TfLiteRegistration* tfc_registration(TfLiteRegistration* r, int* done,
                                            void* (*init)(TfLiteContext*, const char*, size_t),
                                            const char* name) {
  if (!*done) {
    memset(r, 0, sizeof(*r));
    r->init = init;
    r->free = tfc_free;
    r->prepare = tfc_prepare;
    r->invoke = tfc_invoke;
    r->builtin_code = kTfLiteBuiltinCustom;
    r->custom_name = name;
    r->version = 1;
    *done = 1;
  }
  return r;
}

TfLiteRegistration* TfcRegisterSparseFullyConnected(void) {
  static TfLiteRegistration r;
  static int done = 0;
  return tfc_registration(&r, &done, tfc_init_fc, TFC_SPARSE_FC_NAME);
}

TfLiteRegistration* TfcRegisterSparseConv1x1(void) {
  static TfLiteRegistration r;
  static int done = 0;
  return tfc_registration(&r, &done, tfc_init_conv, TFC_SPARSE_CONV_1X1_NAME);
}

int TfcAbiVersion(void) { return 1; }
