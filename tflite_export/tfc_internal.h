/* tfcompress sparse kernels: private header shared by the tfc_*.c files.
 *
 * Files by job:
 *   tfc_format.c            TFCS packed-weight parsing and validation (Prepare)
 *   tfc_relayout.c          Prepare-time re-layouts of the validated weights (CSR pairs / quads)
 *   tfc_kernels_portable.c  portable C kernels (GCC/Clang vector extensions) + their picker
 *   tfc_kernels_x86.c       AVX-512 kernels (runtime dispatch) + their picker
 *   tfc_kernels_x86_avx2.c  AVX-VNNI / AVX2 kernels for x86 without AVX-512 (VNNI) + picker
 *   tfc_kernels_aarch64.c   (ARM, added by the "neon" work) same picker interface
 *   tfc_op.c                Init / Prepare / Invoke / Free, kernel pick, registrations
 *   tfc_sparse_delegate.c   the TfLiteDelegate
 *
 * Work-range interface (for threading): Prepare picks a TfcPlan.  Its kernel
 * `run` computes work units [u0, u1) of the output; units are either
 * (TFC_UNITS_ROWS) blocks of `unit_rows` input rows (all output channels) or
 * (TFC_UNITS_SLICES) slices of 16 output channels in the packed order (all
 * rows).  Two different units never write the same output byte and read only
 * validated, read-only state plus the worker's own `scratch` (plan.scratch_bytes
 * bytes, 64-byte aligned, one per worker, TFC_MAX_THREADS workers allocated in
 * Prepare).  So any split of [0, units) into ranges may run concurrently.
 */
#ifndef TFC_INTERNAL_H_
#define TFC_INTERNAL_H_

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfc_sparse_ops.h"

#if !defined(__GNUC__) && !defined(__clang__)
#error "tfcompress sparse kernels need GCC or Clang (vector extensions)"
#endif

#if defined(TFC_MULTIVERSION) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* Host build only: one binary with AVX-512, AVX2+FMA and baseline x86-64
 * bodies of the hot loops (x86-64-v4 = AVX-512, v3 = AVX2+FMA), chosen at load time
 * from the CPU features (GCC ifunc); "arch=<cpu name>" clones would test the CPU model. */
#define TFC_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TFC_HOT
#endif

#if defined(TFC_X86_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
#define TFC_HAVE_X86 1
#else
#define TFC_HAVE_X86 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(TFC_NO_AARCH64)
#define TFC_HAVE_AARCH64 1
#else
#define TFC_HAVE_AARCH64 0
#endif

#define TFC_TILE 16 /* rows of the input processed together in the tiled path */
#define TFC_GATHER_MAX_ROWS 4 /* fewer input rows than this: per-row gather path */
#define TFC_CSR_MIN_ROWS 16 /* from this many rows: the CSR kernel (float32, AVX-512) */
#define TFC_CSR_TILE 64 /* rows per tile of the CSR kernel */
#define TFC_MAX_THREADS 8 /* per-worker scratch buffers allocated in Prepare */
#define TFC_I8_TILE 64 /* rows per tile of the int8 many-row (quad) kernel */
#define TFC_MAX_TASKS 32 /* tasks (unit ranges) of one Invoke */
#define TFC_MAX_PARTS 16 /* channel parts of one CSR tile */
#define TFC_I8C_MAX 8 /* entry counts with their own class (i8c_*); more: one generic class */
#define TFC_I8C_GENERIC (TFC_I8C_MAX + 1)

/* ISA levels for the dispatch cap (env TFCOMPRESS_ISA_CAP=<level>, tests force each path):
 * 0 portable C only; 1 first SIMD level (x86: AVX-512F, and for int8 with >= 4 rows AVX2;
 * ARM: NEON); 2 dot-product level (x86: AVX-512 VNNI, else AVX-VNNI; ARM: sdot).  Unset = the
 * best the CPU has.  x86 only: TFCOMPRESS_NO_AVX512=1 hides AVX-512 from the pickers (as on
 * Intel client CPUs or AMD Zen 1-3), so cap 1 = the AVX2 int8 kernels, cap 2 (or unset) = the
 * AVX-VNNI ones when the CPU has AVX-VNNI; float32 then runs the AVX2 CSR kernel from 16 rows and
 * the portable kernels below (whose TFC_HOT clones the loader still picks from the real CPU). */
enum { TFC_ISA_PORTABLE = 0, TFC_ISA_SIMD = 1, TFC_ISA_DOT = 2, TFC_ISA_ANY = 99 };

enum { TFC_OP_FC = 1, TFC_OP_CONV1X1 = 2 };
enum { TFC_UNITS_ROWS = 1, TFC_UNITS_SLICES = 2 };
/* TFC_NEEDS_I8_WIN8 (with TFC_NEEDS_I8_WIN): the windows hold 8 quads (32 inputs, AVX2 /
 * AVX-VNNI) instead of 32 (128 inputs, AVX-512) */
enum {
  TFC_NEEDS_NONE = 0,
  TFC_NEEDS_CSR_F32 = 1,
  TFC_NEEDS_I8_QUADS = 2,
  TFC_NEEDS_I8_WIN = 4,
  TFC_NEEDS_I8_WIN8 = 8,
  TFC_NEEDS_G8_F32 = 16
};

struct TfcStateTag;

/* Pointers of one Invoke: activations, bias (NULL if none), output. */
typedef struct TfcIO {
  const void* x;
  const void* bias;
  void* y;
} TfcIO;

/* Computes work units [u0, u1) (see the top of this file) with the worker's scratch. */
typedef void (*TfcRangeFn)(const struct TfcStateTag* s, const TfcIO* io, int u0, int u1, void* scratch);

typedef struct TfcPlan {
  TfcRangeFn run;
  int units; /* number of work units of one Invoke */
  int unit_kind; /* TFC_UNITS_ROWS or TFC_UNITS_SLICES */
  int unit_rows; /* rows per unit (TFC_UNITS_ROWS) */
  size_t scratch_bytes; /* per worker */
  int needs; /* TFC_NEEDS_*: re-layout Prepare must build before `run` may be used */
  const char* name; /* kernel name (debugging, fuzz) */
  int channel_parts; /* 1: `run` also takes (tile, channel part) units, see tile_parts below */
} TfcPlan;

/* Per-row kernels take the output slices [s0, s1) of one row. */
typedef void (*TfcRowF32Fn)(const struct TfcStateTag* s, const float* x, const float* bias, float* y, int s0, int s1);
typedef void (*TfcRowI8Fn)(const struct TfcStateTag* s, const int8_t* x, const int32_t* bias, int8_t* y, int s0,
                           int s1);

typedef struct TfcStateTag {
  /* from the options */
  int op;
  int options_ok;
  int activation;
  int layout;
  /* from the packed weights, validated in Prepare */
  const uint8_t* blob_seen; /* tensor data pointer validated last */
  size_t blob_bytes_seen;
  uint8_t* aligned_copy; /* owned copy when the tensor data is not 16-byte aligned */
  int value_type;
  int block;
  int index_bytes;
  int n_out;
  int k_in;
  uint32_t nslots;
  int n_slices;
  const uint32_t* slice_ptr;
  const uint32_t* perm;
  const uint8_t* steps; /* windowed layout: steps per (slice, window) */
  int n_windows;
  const void* col;
  const void* values;
  const float* scales;
  /* per-shape state */
  int rows; /* P */
  int isa_cap; /* TFC_ISA_* cap for the pick */
  int prepared; /* the last Prepare succeeded */
  int test_ranges; /* Invoke splits the units into this many ranges (tests, single thread) */
  TfcPlan plan; /* kernel of Invoke, picked in Prepare */
  void* scratch; /* TFC_MAX_THREADS buffers of scratch_stride bytes, 64-byte aligned */
  size_t scratch_stride;
  size_t scratch_bytes; /* allocated in total */
  int32_t* row_sums; /* int8: sum of q_w per row */
  float* multipliers; /* int8: s_x * scale[n] / s_y */
  int row_state_n; /* N the two arrays above were sized for */
  int32_t zp_in, zp_out, qmin, qmax;
  float fmin, fmax;
  /* sub-kernels the plan's runner calls (set by the picker) */
  TfcRowF32Fn row_f32;
  TfcRowI8Fn row_i8;
  /* float32, many rows, AVX-512: the weights re-laid in channel pairs or quads
   * (tfc_build_csr), built in Prepare; csr_tile 0 = not built */
  int csr_tile; /* rows per tile T */
  int csr_chunks; /* input features are taken in this many chunks */
  int csr_quads; /* 1: entries serve 4 consecutive channels (4x1 output blocks), 0: channel pairs */
  uint32_t* csr_ptr; /* [chunks * 8 * ceil(N/16) + 1] first entry of each channel pair and chunk */
  uint32_t* csr_off; /* [2 * entries] (quads: [entries]) input feature * T: its row in the tile */
  float* csr_val; /* [2 * entries] (quads: [4 * entries]) */
  uint8_t* pair_row; /* [2 * pairs] tile row (channel - 16 * group) of each half, 16 = none */
  const uint8_t* csr_blob; /* packed weights the CSR copy was built from */
  /* float32, many rows, NHWC in and out (tfc_build_g8): output channels in groups of 8; group g
   * has entries g8_ptr[g] .. g8_ptr[g + 1], one per input feature any of its channels uses, in
   * increasing order: the feature in g8_k, the group's 8 weights in g8_w (0 for a channel
   * without it, and for the channels past N of the last group); g8_ptr NULL = not built */
  uint32_t* g8_ptr; /* [ceil(N / 8) + 1] */
  uint32_t* g8_k; /* [entries] */
  float* g8_w; /* [8 * entries], 64-byte aligned */
  const uint8_t* g8_blob; /* packed weights the groups were built from */
  /* int8, many rows (dot-product kernels): per output channel (natural order) the
   * 4-feature quads it uses (tfc_build_i8_quads), built in Prepare; i8q_tile 0 = not built */
  int i8q_tile; /* rows per tile T */
  uint32_t* i8q_ptr; /* [N + 1] first entry of each output channel */
  uint32_t* i8q_off; /* [entries] quad * T * 4: byte offset of the quad's rows in the tile */
  int32_t* i8q_w; /* [entries] the 4 int8 weights of features 4q..4q+3 (little-endian bytes) */
  int32_t* i8q_corr; /* [N] -(128 + zp_in) * row_sums[n] (uint32 wrap-around), set in Prepare */
  const uint8_t* i8q_blob; /* packed weights the quads were built from */
  /* per 16-channel group g (built with the quads): its nb <= 16 channels (0..15 within the group)
   * ordered by entry-count class (the count, TFC_I8C_GENERIC for more than TFC_I8C_MAX), and
   * runs of equal class: i8c_nruns[g] pairs (class, length) at i8c_runs + 32 g.  The many-row
   * kernels run each run with its count known at compile time (no per-channel branch) */
  uint8_t* i8c_chan; /* [16 G] */
  uint8_t* i8c_runs; /* [32 G] */
  uint8_t* i8c_nruns; /* [G] */
  /* int8, 1-15 rows (dot-product kernels): the quads of slice s (channels 16s..16s+15, natural
   * order) in 32-quad windows of x (128 input features): window w of slice s has
   * i8w_steps[s * W4 + w] steps of 16 lanes starting at step i8w_first[s * W4 + w]; a step holds
   * 16 window offsets (u8 < 32) and 16 weight dwords (0 for a padded lane) */
  int i8w_built;
  int i8w_windows; /* W4 = ceil(K / (4 * i8w_quads)) */
  int i8w_quads; /* quads per window: 32 (AVX-512: 128 inputs) or 8 (AVX2 / AVX-VNNI: 32 inputs) */
  uint8_t* i8w_steps; /* [S * W4] */
  uint32_t* i8w_first; /* [S * W4] */
  uint8_t* i8w_idx; /* [steps * 16] */
  int32_t* i8w_val; /* [steps * 16], 64-byte aligned */
  void* arm_tbl; /* aarch64: tbl re-layout (tfc_kernels_aarch64.c), built by its picker */
  /* threads (tfc_op.c, Prepare): Invoke runs task i on units [task_u[i], task_u[i+1]) on the
   * interpreter's pool.  Few row tiles: the units of the tiled many-row kernels (float32 CSR,
   * int8 quads) are (tile, part) pairs, u = tile * tile_parts + part, part p covering the
   * 16-channel groups [part_g[p], part_g[p+1]) (parts balanced by stored weights) */
  struct TfcPool* pool; /* NULL: one thread */
  int workers; /* threads Invoke may use (scratch allocated for this many) */
  int n_tasks;
  int task_u[TFC_MAX_TASKS + 1];
  int tile_parts; /* 1: units are whole tiles */
  int part_g[TFC_MAX_PARTS + 1];
} TfcState;

/* Picks a plan for s (rows, value type, layout known) at ISA level <= cap.
 * Returns 1 when it set *plan, 0 when it has nothing for this case. */
typedef int (*TfcPickFn)(TfcState* s, int cap, TfcPlan* plan);

#define TFC_FAIL(ctx, ...)                                           \
  do {                                                               \
    (ctx)->ReportError((ctx), "tfcompress sparse op: " __VA_ARGS__); \
    return kTfLiteError;                                             \
  } while (0)

static inline float tfc_clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
/* Real-valued range of a fused activation (0 none, 1 relu, 2 relu6, 3 relu_n1_to_1). */
static inline void tfc_act_bounds(int act, float* lo, float* hi) {
  *lo = act == 1 || act == 2 ? 0.f : act == 3 ? -1.f : -INFINITY;
  *hi = act == 2 ? 6.f : act == 3 ? 1.f : INFINITY;
}
static inline size_t tfc_round64(size_t b) { return (b + 63u) & ~(size_t)63u; }

/* Windowed layout (B = 1): x is read through 32-feature windows. */
static inline const float* tfc_window_f32(const TfcState* s, const float* x, int w, float* tail) {
  const int k = s->k_in, start = w * 32;
  if (start + 32 <= k) return x + start;
  for (int i = 0; i < 32; ++i) tail[i] = start + i < k ? x[start + i] : 0.f;
  return tail;
}


/* int8 requantization of one accumulator of output channel r (float multiplier). */
static inline int8_t tfc_requant(const TfcState* s, uint32_t r, int64_t acc) {
  float q = nearbyintf((float)acc * s->multipliers[r]);
  int32_t v;
  if (q > 1e9f) v = 1000000000;
  else if (q < -1e9f) v = -1000000000;
  else v = (int32_t)q;
  v += s->zp_out;
  if (v < s->qmin) v = s->qmin;
  if (v > s->qmax) v = s->qmax;
  return (int8_t)v;
}


/* tfc_op.c */
void* tfc_alloc64(size_t bytes);
void tfc_free64(void* p);

/* tfc_format.c */
const char* tfc_parse_blob(TfcState* s, const uint8_t* p, size_t bytes);
uint8_t* tfc_seen_buffer(TfcState* s, size_t n);
/* tfc_op.c, shared with the fused op's 1x1s (tfc_fused.c) */
const char* tfc_validate_blob(TfcState* s, const uint8_t* wp, size_t bytes);
void tfc_free_weights_state(TfcState* s);
const char* tfc_int8_row_state(TfcState* s, float sx, float sy);
void tfc_pick_kernel(TfcState* s, int cap);
int tfc_isa_cap(void);
const char* tfc_relayout_for_plan(TfcState* s);
/* 1 when the plan's kernel takes (tile, channel part) units and its re-layout is built: the int8
 * quad kernels, the x86 float32 CSR and 8-channel-group kernels */
int tfc_plan_has_parts(const TfcState* s);
/* Stored weights (zero padding included) of output channels [n0, n1) of such a plan, n0 a
 * multiple of 16 (the CSR layout counts whole 16-channel groups) */
uint64_t tfc_part_weights(const TfcState* s, int n0, int n1);

/* tfc_relayout.c */
int tfc_build_csr(TfcState* s, int T, int KC);
int tfc_dense_f32(const TfcState* s, float* w); /* [N][K], 0 = out of memory */
void tfc_free_csr(TfcState* s);
/* float32 weights in groups of 8 output channels (TFC_NEEDS_G8_F32); 0 when out of memory */
int tfc_build_g8(TfcState* s);
void tfc_free_g8(TfcState* s);
/* entries of the 8-channel groups and of the 4-channel quads the weights would give */
void tfc_count_groups_f32(const TfcState* s, uint64_t* g8, uint64_t* quads);
int tfc_build_i8_quads(TfcState* s, int T);
void tfc_free_i8_quads(TfcState* s);
int tfc_build_i8_windows(TfcState* s, int wq);

/* tfc_kernels_portable.c */
int tfc_pick_portable(TfcState* s, int cap, TfcPlan* plan);
/* runners shared with the ISA files: per-row kernels s->row_f32 / s->row_i8 on slice units */
void tfc_run_rows_f32(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch);
void tfc_run_rows_i8(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch);
/* plan of the per-row kernels: units = output slices, no scratch */
void tfc_plan_rows(const TfcState* s, TfcPlan* plan, TfcRangeFn run, const char* name);

/* tfc_kernels_x86.c */
#if TFC_HAVE_X86
int tfc_pick_x86(TfcState* s, int cap, TfcPlan* plan);
/* tfc_kernels_x86_avx2.c: int8 on x86 without AVX-512 VNNI (AVX-VNNI at cap >= TFC_ISA_DOT,
 * else AVX2) and float32 >= 16 rows (AVX2 + FMA: g8 wherever tfc_f32_prefer_g8, also planned by
 * tfc_pick_x86; else CSR without AVX-512); tfc_x86_no_avx512(): env
 * TFCOMPRESS_NO_AVX512=1, tfc_pick_x86 then picks nothing, as on a CPU without AVX-512 (tests
 * force the AVX2 / AVX-VNNI paths with it) */
int tfc_pick_x86_avx2(TfcState* s, int cap, TfcPlan* plan);
int tfc_x86_no_avx512(void);
int tfc_x86_has_avxvnni(void); /* the CPU has AVX-VNNI and this build has its kernels */
/* float32 >= 16 rows: 1 when the 8-channel-group kernel (avx2_g8_f32) is predicted cheaper than
 * the CSR kernel (or TFCOMPRESS_F32_KERNEL=g8); both x86 pickers ask it and plan that kernel
 * with tfc_plan_f32_g8 (returns 1) */
int tfc_f32_prefer_g8(const TfcState* s);
int tfc_plan_f32_g8(const TfcState* s, TfcPlan* plan);
#endif

/* tfc_kernels_aarch64.c */
#if TFC_HAVE_AARCH64
int tfc_pick_aarch64(TfcState* s, int cap, TfcPlan* plan);
void tfc_free_aarch64(TfcState* s);
int tfc_aarch64_has_dotprod(void);
#endif

/* Splits [0, units) into <= n ranges of about equal cost (tfc_op.c); bounds[0..k], returns k. */
int tfc_split_units(int units, const uint64_t* cost, int n, int* bounds);

/* ------------------------------------------------ fused inverted residual (tfc_fused*.c) */
struct TfcFusedTag;
/* One output row of the 3x3 depthwise, channel groups [g0, g1) of the kernel's dw_gw channels
 * (all: 0, dw_groups): rows[k] = input row oh * stride - pad_top + k (NULL: padding), bias
 * int32[Ce], out int8 [Wo][Ce] (only the groups' channels written), acc int32[Ce padded to 16]
 * scratch. */
typedef void (*TfcDwRowFn)(const struct TfcFusedTag* f, const int8_t* const rows[3], const int32_t* bias, int8_t* out,
                           int32_t* acc, int g0, int g1);
/* float32 blocks (params flag bit 3): the same row, rows[k] never NULL (padding rows point at a
 * row of zeros), bias float32 [Ce], out float32 [Wo][Ce]. */
typedef void (*TfcDwRowF32Fn)(const struct TfcFusedTag* f, const float* const rows[3], const float* bias, float* out,
                              int g0, int g1);

typedef struct TfcFusedTag {
  int options_ok, prepared;
  /* from the validated params blob (tfc_fused.c) */
  int has_expand, has_residual, stride, H, W, Cin, Ce, Co, Ho, Wo, pt, pl, act_e, act_d;
  /* float32 block (flag bit 3): activations, biases and depthwise weights float32, no
   * quantization fields; esz = bytes per activation value (1 int8, 4 float32) */
  int f32, esz;
  /* stem (flag bit 2): the expand is a 3x3 conv (stride s_stride, pads s_pt / s_pl) over the
   * image x [1, Hi, Wi, Ci]; its input rows are built per strip (tfc_fused_im2col): Cin = Kp =
   * 9 Ci rounded up to 4 bytes per expanded pixel, taps in the conv weights' (kh, kw, c) order */
  int stem, Hi, Wi, Ci, s_stride, s_pt, s_pl;
  int32_t zp_x; /* the input's zero point (the im2col padding value) */
  /* stem on AVX-512 VNNI (tfc_fused_x86.c, NULL: im2col + the expand's 1x1 kernel): one expanded
   * row from the image; weights int8 [3][Q][Ce][4] (tfc_fused_stem_weights: Q dwords per kernel
   * row), `rowlen` bytes per copied image row (3 rows of scratch) */
  void (*stem_row)(const struct TfcFusedTag* f, const int8_t* x, const int32_t* bias, int h, int8_t* out,
                   uint8_t* urows);
  int32_t* stem_w;
  int stem_rowlen;
  const char* stem_name;
  /* float32 stem (tfc_fused_kernels.c, every CPU; no im2col): one expanded row from the image,
   * weights [3][3 Ci][dw_cpad] and bias [dw_cpad] (Ce rounded up to 16, zero lanes, as the
   * float32 depthwise's), 3 rows of `stem_rowlen` floats of scratch */
  void (*stem_row_f32)(const struct TfcFusedTag* f, const float* x, int h, float* out, float* urows);
  float* stem_wf;
  float* stem_bf;
  const void* eb_seen; /* the expand bias Prepare saw (the float32 stem copied it) */
  float s_e, s_d, s_p;
  int32_t zp_e, zp_d, zp_p;
  const int8_t* dw_w; /* [9][Ce] */
  const float* dw_scales; /* [Ce] */
  uint8_t* params_copy; /* aligned copy of the params when the tensor data is not 16-byte aligned */
  /* depthwise, set up in Prepare */
  int32_t* dw_w32; /* [9][dw_cpad] weights widened to int32, zero lanes past Ce */
  float* dw_mult; /* [dw_cpad] s_e * scale[c] / s_d (float, as XNNPACK) */
  int dw_cpad;
  int32_t dw_qmin, dw_qmax;
  TfcDwRowFn dw_row;
  /* float32 depthwise (tfc_fused_kernels.c): weights [9][dw_cpad], bias [dw_cpad] (zero lanes
   * past Ce), a row of W x Ce zeros for the padding rows, the activation's clamp */
  TfcDwRowF32Fn dw_row_f32;
  float* dw_wf;
  float* dw_bf;
  float* dw_zrow_f;
  float dw_fmin, dw_fmax;
  const char* dw_name;
  int dw_gw, dw_groups; /* channels per group of dw_row (16, 32 or 64), groups = ceil(Ce / dw_gw) */
  /* AVX-512 depthwise (tfc_fused_x86.c): tap pairs of int16 weights interleaved as vpmaddwd
   * wants them, bias with the input zero point folded in and multipliers in the same lane order,
   * and a row of zero-point bytes the padding taps read */
  int16_t* dw_wp;
  int32_t* dw_bp;
  float* dw_mp;
  int8_t* dw_zrow;
  /* VNNI depthwise (tfc_fused_x86.c; AVX-512: groups of 64 channels, the last <= 32 and every
   * AVX-VNNI group: 32): vpdpbusd weights [group][kernel column][4 registers] (dword = the
   * column's 3 taps and a 0), bias (input zero point and the +128 of the unsigned inputs folded
   * in) and multipliers [group][4 registers], in the lane order of the interleaved columns */
  int8_t* dw_qv;
  int32_t* dw_qb;
  float* dw_qm;
  const int32_t* dw_bias_seen; /* the bias the folded copy dw_bp was made from */
  /* residual ADD (XNNPACK's qs8 add): out = clamp((bias + p * ma + x * mb) >> shift) + zp */
  int32_t add_ma, add_mb, add_bias, add_zp, add_lo, add_hi;
  int add_shift;
  /* the two sparse 1x1s, set up as TFC_SPARSE_CONV_1X1 states; wstates: per-worker copies */
  TfcState ex, pr;
  TfcState* wstates;
  /* strips and scratch (per worker: 1x1 scratch, expanded rows, depthwise strip, project strip, acc) */
  int SH, ring_rows;
  size_t off_k, off_ring, off_dw, off_pj, off_acc, off_col;
  void* scratch;
  size_t scratch_stride, scratch_bytes;
  /* threads: task t = output rows [task_r[t], task_r[t+1]) */
  struct TfcPool* pool;
  int workers, n_tasks;
  int task_r[TFC_MAX_TASKS + 1];
  int steal, test_steal; /* row ranges steal strips from each other (tfc_fused.c) */
  /* phased (small maps on several threads, tfc_fused.c): expand + depthwise over channel parts
   * into full_e / full_d, barrier, project (+ add) over pixel ranges or channel parts; no halo
   * recomputed, tasks balanced by predicted work */
  int phased;
  int8_t* full_e; /* [H][W][Ce] (with expand), esz bytes per value */
  int8_t* full_d; /* [Ho][Wo][Ce], esz bytes per value */
  size_t full_bytes;
  int n_ab, n_pc; /* tasks of the two phases */
  int ab_g[TFC_MAX_PARTS + 1]; /* AB task t: depthwise groups [ab_g[t], ab_g[t+1]) */
  int parts_c; /* > 1: the project is one row tile, its tasks are channel parts */
  int pc[TFC_MAX_TASKS + 1]; /* else project task t: output pixels [pc[t], pc[t+1]) */
} TfcFused;

/* The three input rows of a depthwise output row as (base, column stride): a missing (padding)
 * row reads f->dw_zrow, the zero-point row, at every column (stride 0), so every tap is a load. */
static inline void tfc_dw_row_bases(const TfcFused* f, const int8_t* const rows[3], const int8_t* base[3],
                                    size_t cs[3]) {
  for (int kh = 0; kh < 3; ++kh) {
    base[kh] = rows[kh] != NULL ? rows[kh] : f->dw_zrow;
    cs[kh] = rows[kh] != NULL ? (size_t)f->Ce : 0u;
  }
}

/* tfc_fused_kernels.c: depthwise row kernels (portable; AVX-512 / AVX-VNNI in tfc_fused_x86.c), the add */
int tfc_fused_pick_dw(TfcFused* f, int cap, const int32_t* bias); /* 0: out of memory */
void tfc_fused_free_dw(TfcFused* f);
void tfc_fused_add(const TfcFused* f, const int8_t* p, const int8_t* x, int8_t* y, size_t n);
void tfc_fused_add_f32(const float* p, const float* x, float* y, size_t n);
/* float32 depthwise: weights / bias / zero row from the params (f->dw_w as float32 [9][Ce]) */
int tfc_fused_setup_dw_f32(TfcFused* f, const float* bias); /* 0: out of memory */
void tfc_fused_note_plan(const TfcFused* f);
const char* tfc_fused_expand_name(const TfcFused* f); /* the stem row's or the expand plan's, or "none" */
void tfc_fused_im2col(const TfcFused* f, const int8_t* x, int h0, int h1, int8_t* out);
int tfc_fused_stem_weights(TfcFused* f, int Q, int window); /* -1 out of memory, 0 none, 1 set */
int tfc_fused_stem_f32(TfcFused* f, const float* bias); /* 0: out of memory */
#if TFC_HAVE_AARCH64
int tfc_fused_stem_aarch64(TfcFused* f, int cap); /* -1 out of memory, 0 none (im2col path), 1 set */
#endif
#if TFC_HAVE_X86
int tfc_fused_dw_x86(TfcFused* f, int cap, const int32_t* bias); /* -1 out of memory, 0 none, 1 set */
int tfc_fused_stem_x86(TfcFused* f, int cap); /* -1 out of memory, 0 none (im2col path), 1 set */
void tfc_fused_free_dw_x86(TfcFused* f);
#endif

#endif /* TFC_INTERNAL_H_ */
