/* tfcompress: TFC_SPARSE_INVERTED_RESIDUAL, one int8 or float32 MobileNetV2 block in one node:
 *
 *   [1x1 expand (sparse, TFCS) + act] -> depthwise 3x3 (stride 1/2) + act -> 1x1 project
 *   (sparse, TFCS, linear) -> [+ block input (int8 ADD as XNNPACK computes it; float32: p + x)]
 *
 * run on strips of output rows: the expanded rows live in a small per-worker buffer (the rows
 * the next strip shares with this one are kept, not recomputed), the depthwise writes one strip,
 * the project 1x1 runs on that strip and the residual add is applied before the strip is
 * written.  The expanded tensor never exists in memory.  The 1x1s are the TFC_SPARSE_CONV_1X1
 * kernels (tfc_kernels_*.c) called through their plan interface on per-worker copies of their
 * state (only `rows` differs between strips); the depthwise rows are tfc_fused_kernels.c.
 *
 * Threads: output rows are split into ranges (tasks) on the interpreter's pool; each task
 * recomputes the expanded halo rows at its top.  Everything is sized and validated in Prepare,
 * nothing is allocated in Invoke.
 *
 * Inputs: 7 = [x int8 [1,H,W,Cin], expand TFCS, expand bias int32[Ce], params "TFCI",
 * depthwise bias int32[Ce], project TFCS, project bias int32[Co]] or 5 = the same without the
 * expand pair.  Output int8 [1,Ho,Wo,Co].  Float32 blocks (flag bit 3): x, y and the three biases
 * float32, TFCS blobs of float32 values.  Custom options: 8 bytes {1,0,0,0,0,0,0,0}.
 *
 * Params blob "TFCI" v1 (uint8 constant tensor, little-endian):
 *   off  0 char[4] "TFCI"      4 u16 version = 1    6 u8 flags (bit 0 expand, bit 1 residual,
 *          bit 2 stem: the expand is the network's first conv, 3x3 over the image x, see below;
 *          bit 3 float32 block: scales and zero points below all 0)
 *   off  7 u8 stride (1, 2)    8 u32 H, W, Cin, Ce, Co, Ho, Wo, kh = 3, kw = 3 (off 8..44)
 *   off 44 u8 pad_top, pad_left (0..2), act_expand, act_dw, act_project (0 none, 1 relu,
 *          2 relu6, 3 relu_n1_to_1; project must be 0), 3 zero bytes
 *   off 52 f32 scale_e, scale_d, scale_p   off 64 i32 zp_e, zp_d, zp_p
 *   off 76 stem only (flag bit 2), else zero: u32 Hi, Wi, Ci (the image x), off 88 u8 stem
 *          stride (1, 2), pad_top, pad_left (0..2), off 91..95 zero
 *   off 96 int8 depthwise weights [3][3][Ce], zero-padded to 16 bytes, then f32 scales [Ce]
 *          (padded to 16): w_real = scale[c] * q.  The tensor ends there.  Float32 block: f32
 *          depthwise weights [3][3][Ce], zero-padded to 16 bytes, and nothing after them.
 *   e = expand output (without expand: must equal x's quantization), d = depthwise output,
 *   p = project output (without residual: must equal the output's quantization).
 *
 * Stem: MobileNetV2's first conv (3x3, stride 2, 3 channels, ReLU6) fused into its first block
 * (depthwise + project, no expand): the expand TFCS holds the conv's weights [Ce][Kp] with Kp =
 * 9 Ci rounded up to 4 (zero columns), H, W, Cin of the header are the conv's output size and Kp.
 * Each strip's expanded rows come straight from x by a direct stem row where one fits (int8: x86
 * AVX-512 VNNI, tfc_fused_x86.c; aarch64 dotprod, tfc_fused_aarch64.c; float32: every CPU,
 * tfc_fused_kernels.c), else from tfc_fused_im2col rows and the expand's 1x1 plan.  The first op
 * of the network then runs on this node's pool with the rest of the block (no XNNPACK partition
 * to enter, no 112x112x32 tensor written and read back).
 */
#include <stdatomic.h>

#include "tfc_internal.h"
#include "tfc_threads.h"

#define TFC_FUSED_HEADER 96
#define TFC_FUSED_MAX_DIM 65536
#define TFC_FUSED_MAX_SCRATCH ((size_t)1 << 28) /* per worker */

typedef struct { /* int8 blocks: int8 x / y, int32 biases; float32 blocks: all float32 */
  const void* x;
  const void* eb; /* expand bias */
  const void* db; /* depthwise bias */
  const void* pb; /* project bias */
  void* y;
} TfcFusedIO;

static void tfc_fused_free_sub(TfcState* s) {
  tfc_free_weights_state(s);
  memset(s, 0, sizeof(*s));
}

static uint32_t rd32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static float rdf(const uint8_t* p) {
  uint32_t u = rd32(p);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Quantized clamp of an activation for output (scale sy, zero point zp). */
static void tfc_act_range(int act, float sy, int32_t zp, int32_t* qmin, int32_t* qmax) {
  float fmin, fmax;
  tfc_act_bounds(act, &fmin, &fmax);
  double lo = -128.0, hi = 127.0;
  if (isfinite(fmin)) { double q = zp + nearbyint(fmin / sy); if (q > lo) lo = q; }
  if (isfinite(fmax)) { double q = zp + nearbyint(fmax / sy); if (q < hi) hi = q; }
  if (lo > hi) lo = hi;
  *qmin = (int32_t)lo;
  *qmax = (int32_t)hi;
}

static int tfc_const_ok(const TfLiteTensor* t) {
  return (t->allocation_type == kTfLiteMmapRo || t->allocation_type == kTfLitePersistentRo) && t->data.raw_const != NULL;
}

/* One sparse 1x1 (expand or project) as a TfcState, as tfc_op.c's Prepare sets it up:
 * packed weights validated (tfc_parse_blob), K/N checked; int8: per-channel multipliers in float
 * as XNNPACK computes them; float32 (f32): the activation's clamp; the plan for `rows` picked
 * and its re-layout built. */
static const char* tfc_fused_setup_1x1(TfcState* s, const TfLiteTensor* w, const TfLiteTensor* b, int K, int N, int f32,
                                       int act, float sx, int32_t zx, float sy, int32_t zy, int rows, int cap) {
  if (w->type != kTfLiteUInt8 && w->type != kTfLiteInt8) return "1x1 packed weights must be a uint8 tensor";
  if (!tfc_const_ok(w) || w->bytes == 0) return "1x1 packed weights must be a constant tensor with data";
  const char* blob_err = tfc_validate_blob(s, (const uint8_t*)w->data.raw_const, w->bytes);
  if (blob_err != NULL) return blob_err;
  if (s->value_type != (f32 ? kTfLiteFloat32 : kTfLiteInt8))
    return f32 ? "1x1 packed weights must hold float32 values (float32 block)" : "1x1 packed weights must hold int8 values";
  if (s->k_in != K || s->n_out != N) return "1x1 packed weights K/N do not match the block's channels";
  if (b->type != (f32 ? kTfLiteFloat32 : kTfLiteInt32) || !tfc_const_ok(b) || (uint64_t)b->bytes != 4ull * (uint64_t)N)
    return f32 ? "1x1 bias must be a constant float32 tensor of N values" : "1x1 bias must be a constant int32 tensor of N values";
  s->op = TFC_OP_CONV1X1;
  s->options_ok = 1;
  s->activation = act;
  s->layout = 0;
  tfc_act_bounds(act, &s->fmin, &s->fmax);
  if (!f32) {
    s->zp_in = zx;
    s->zp_out = zy;
    tfc_act_range(act, sy, zy, &s->qmin, &s->qmax);
    const char* err = tfc_int8_row_state(s, sx, sy);
    if (err != NULL) return err;
  }
  s->rows = rows;
  s->isa_cap = cap;
  s->tile_parts = 1;
  s->pool = NULL;
  tfc_pick_kernel(s, cap);
  if (s->plan.run == NULL) return "no 1x1 kernel for this case";
  if (!f32 && (s->plan.needs & (TFC_NEEDS_CSR_F32 | TFC_NEEDS_G8_F32))) return "unexpected float32 plan";
  return tfc_relayout_for_plan(s);
}

/* Parses and validates the TFCI header into f (shapes checked against the tensors later). */
static const char* tfc_fused_parse(TfcFused* f, const uint8_t* p, size_t bytes) {
  if (bytes < TFC_FUSED_HEADER) return "params: shorter than the 96-byte header";
  if (memcmp(p, "TFCI", 4) != 0) return "params: bad magic (expected \"TFCI\")";
  if ((p[4] | (p[5] << 8)) != 1) return "params: unsupported version (expected 1)";
  if (p[6] > 15) return "params: unknown flags";
  const int f32 = (p[6] >> 3) & 1;
  if (p[7] != 1 && p[7] != 2) return "params: stride must be 1 or 2";
  uint32_t d[9];
  for (int i = 0; i < 9; ++i) d[i] = rd32(p + 8 + 4 * i);
  for (int i = 0; i < 7; ++i)
    if (d[i] == 0 || d[i] > TFC_FUSED_MAX_DIM) return "params: H, W, Cin, Ce, Co, Ho, Wo must be in 1..65536";
  if (d[7] != 3 || d[8] != 3) return "params: only 3x3 depthwise kernels";
  if (p[44] > 2 || p[45] > 2) return "params: paddings must be 0..2";
  if (p[46] > 3 || p[47] > 3 || p[48] != 0) return "params: activations must be 0..3 (project: 0)";
  for (int i = 49; i < 52; ++i)
    if (p[i] != 0) return "params: reserved bytes must be 0";
  const int stem = (p[6] >> 2) & 1;
  for (int i = stem ? 91 : 76; i < TFC_FUSED_HEADER; ++i)
    if (p[i] != 0) return "params: reserved bytes must be 0";
  for (int i = 0; i < 3; ++i) {
    float sc = rdf(p + 52 + 4 * i);
    int32_t zp = (int32_t)rd32(p + 64 + 4 * i);
    if (f32 && (rd32(p + 52 + 4 * i) != 0 || zp != 0)) return "params: a float32 block's scales and zero points must be 0";
    if (!f32 && !(isfinite(sc) && sc > 0.f)) return "params: scales must be finite and > 0";
    if (zp < -128 || zp > 127) return "params: zero points must be in -128..127";
  }
  const uint64_t ce = d[3];
  /* int8: weights [9][Ce] int8 then scales f32 [Ce]; float32: weights f32 [9][Ce], no scales */
  const uint64_t wlen = (f32 ? 36u : 9u) * ce;
  const uint64_t wbytes = (wlen + 15u) & ~(uint64_t)15u, sbytes = f32 ? 0u : (4u * ce + 15u) & ~(uint64_t)15u;
  if ((uint64_t)bytes != TFC_FUSED_HEADER + wbytes + sbytes) return "params: byte length does not match the header";
  const float* sc = (const float*)(p + TFC_FUSED_HEADER + wbytes);
  for (uint64_t c = 0; c < (f32 ? 0u : ce); ++c)
    if (!(isfinite(sc[c]) && sc[c] > 0.f)) return "params: depthwise scales must be finite and > 0";
  for (uint64_t i = wlen; i < wbytes; ++i)
    if (p[TFC_FUSED_HEADER + i] != 0) return "params: padding bytes must be 0";
  f->has_expand = p[6] & 1;
  f->has_residual = (p[6] >> 1) & 1;
  f->stride = p[7];
  f->H = (int)d[0];
  f->W = (int)d[1];
  f->Cin = (int)d[2];
  f->Ce = (int)d[3];
  f->Co = (int)d[4];
  f->Ho = (int)d[5];
  f->Wo = (int)d[6];
  f->pt = p[44];
  f->pl = p[45];
  f->act_e = p[46];
  f->act_d = p[47];
  f->s_e = rdf(p + 52);
  f->s_d = rdf(p + 56);
  f->s_p = rdf(p + 60);
  f->zp_e = (int32_t)rd32(p + 64);
  f->zp_d = (int32_t)rd32(p + 68);
  f->zp_p = (int32_t)rd32(p + 72);
  f->f32 = f32;
  f->esz = f32 ? 4 : 1;
  f->dw_w = (const int8_t*)(p + TFC_FUSED_HEADER);
  f->dw_scales = f32 ? NULL : sc;
  /* every output row / column reads input rows / columns in [-pad, size - 1 + 2]: at most two
   * padding rows below / right (what SAME or a PAD of 0..2 gives) */
  const int64_t bottom = (int64_t)(f->Ho - 1) * f->stride + 3 - f->pt - f->H;
  const int64_t right = (int64_t)(f->Wo - 1) * f->stride + 3 - f->pl - f->W;
  if (bottom > 2 || right > 2) return "params: Ho/Wo need more than 2 padding rows/columns";
  if ((int64_t)(f->Ho - 1) * f->stride - f->pt > f->H - 1 || (int64_t)(f->Wo - 1) * f->stride - f->pl > f->W - 1)
    return "params: Ho/Wo too large for H/W";
  if (f->has_residual && (f->stride != 1 || f->Cin != f->Co || f->Ho != f->H || f->Wo != f->W))
    return "params: a residual block needs stride 1, Cin == Co and the output size of the input";
  if (!f->has_expand && f->Cin != f->Ce) return "params: without expand, Cin must equal Ce";
  f->stem = stem;
  f->Hi = f->Wi = f->Ci = 0;
  f->s_stride = 1;
  f->s_pt = f->s_pl = 0;
  if (stem) {
    const uint32_t hi = rd32(p + 76), wi = rd32(p + 80), ci = rd32(p + 84);
    if (!f->has_expand || f->has_residual) return "params: a stem block needs the expand flag and no residual";
    if (hi == 0 || wi == 0 || hi > TFC_FUSED_MAX_DIM || wi > TFC_FUSED_MAX_DIM) return "params: stem Hi, Wi must be in 1..65536";
    if (ci == 0 || ci > 16) return "params: stem input channels must be 1..16";
    if ((uint32_t)f->Cin != ((9u * ci + 3u) & ~3u)) return "params: stem Cin must be 9 * Ci rounded up to 4";
    if (p[88] != 1 && p[88] != 2) return "params: stem stride must be 1 or 2";
    if (p[89] > 2 || p[90] > 2) return "params: stem paddings must be 0..2";
    f->Hi = (int)hi;
    f->Wi = (int)wi;
    f->Ci = (int)ci;
    f->s_stride = p[88];
    f->s_pt = p[89];
    f->s_pl = p[90];
    const int64_t sb = (int64_t)(f->H - 1) * f->s_stride + 3 - f->s_pt - f->Hi;
    const int64_t sr = (int64_t)(f->W - 1) * f->s_stride + 3 - f->s_pl - f->Wi;
    if (sb > 2 || sr > 2 || (int64_t)(f->H - 1) * f->s_stride - f->s_pt > f->Hi - 1 ||
        (int64_t)(f->W - 1) * f->s_stride - f->s_pl > f->Wi - 1)
      return "params: the stem's H/W do not fit Hi/Wi with its stride and paddings";
  }
  return NULL;
}

/* XNNPACK's int8 ADD parameters (xnn_init_qs8_add_minmax_scalar_params): multipliers of
 * 21 bits at most, shift from the larger scale ratio's exponent. */
static const char* tfc_fused_add_params(TfcFused* f, float sa, int32_t za, float sb, int32_t zb, float so, int32_t zo) {
  const float ra = sa / so, rb = sb / so;
  if (!(ra >= 0x1.0p-10f && ra < 0x1.0p+8f && rb >= 0x1.0p-10f && rb < 0x1.0p+8f))
    return "residual ADD: input/output scale ratios must be in [2^-10, 2^8)";
  const float mx = ra > rb ? ra : rb;
  uint32_t bits;
  memcpy(&bits, &mx, 4);
  const int32_t e = (int32_t)(bits >> 23) - 127;
  const int shift = 20 - e;
  if (shift < 12 || shift > 30) return "residual ADD: scale ratio out of range";
  f->add_shift = shift;
  f->add_ma = (int32_t)lrintf(ldexpf(ra, shift));
  f->add_mb = (int32_t)lrintf(ldexpf(rb, shift));
  f->add_bias = (int32_t)((1u << (shift - 1)) - (uint32_t)(f->add_ma * za) - (uint32_t)(f->add_mb * zb));
  f->add_zp = zo;
  f->add_lo = -128 - zo;
  f->add_hi = 127 - zo;
  return NULL;
}

/* ------------------------------------------------------------------ invoke */

/* Strips of one row range still to run: (next strip << 32) | end strip, own cache line.  The
 * range's owner takes strips from the front one at a time (its expanded rows carry over from
 * strip to strip); a participant that finished its own range steals the back half of what is
 * left (tfc_fused_steal). */
typedef struct {
  _Alignas(64) atomic_ullong span;
} TfcFusedSpan;

typedef struct {
  TfcFused* f;
  const TfcFusedIO* io;
  TfcFusedSpan* spans; /* [n_tasks], or NULL: every task runs its whole range */
} TfcFusedJob;

/* 1x1 through its plan on `rows` rows (the worker's own copy of the state). */
static void tfc_fused_1x1(TfcState* s, const void* x, const void* b, void* y, int rows, void* scratch) {
  s->rows = rows;
  int units = s->plan.unit_kind == TFC_UNITS_ROWS ? (rows + s->plan.unit_rows - 1) / s->plan.unit_rows : s->plan.units;
  if (s->plan.unit_kind == TFC_UNITS_ROWS && s->tile_parts > 1) units *= s->tile_parts;
  TfcIO io = {x, b, y};
  s->plan.run(s, &io, 0, units, scratch);
}

/* The channel part `part` of a 1x1 on `rows` rows: its units (tile, part) of every tile
 * (tfc_internal.h). */
static void tfc_fused_1x1_part(TfcState* s, const void* x, const void* b, void* y, int rows, int part, void* scratch) {
  s->rows = rows;
  TfcIO io = {x, b, y};
  const int tiles = (rows + s->plan.unit_rows - 1) / s->plan.unit_rows;
  for (int t = 0; t < tiles; ++t) s->plan.run(s, &io, t * s->tile_parts + part, t * s->tile_parts + part + 1, scratch);
}

/* Splits the 1x1's 16-channel groups into <= n parts of about equal stored quads; returns the
 * parts (1: no split possible). */
static int tfc_fused_channel_parts(TfcState* s, int n) {
  s->tile_parts = 1;
  if (!tfc_plan_has_parts(s)) return 1;
  const int G = (s->n_out + 15) / 16;
  if (n > TFC_MAX_PARTS) n = TFC_MAX_PARTS;
  uint64_t cost[TFC_FUSED_MAX_DIM / 16 + 1];
  if (G > (int)(sizeof cost / sizeof cost[0])) return 1;
  for (int g = 0; g < G; ++g) cost[g] = tfc_part_weights(s, 16 * g, 16 * (g + 1)) + 64u; /* + transpose, store */
  const int k = tfc_split_units(G, cost, n, s->part_g);
  s->tile_parts = k > 1 ? k : 1;
  return s->tile_parts;
}

/* The expand + depthwise phase's channel parts: f->ab_g[0..k] in depthwise groups (dw_gw
 * channels), about equal predicted work (expand: stored quads x pixels; depthwise: channels x
 * output pixels x 6, about its instructions per channel relative to one quad-row), and the
 * expand's parts set to the same channels.  Returns k (1: no split). */
static int tfc_fused_ab_parts(TfcFused* f, int n) {
  const int G = f->dw_groups, gw = f->dw_gw;
  if (n > TFC_MAX_PARTS) n = TFC_MAX_PARTS;
  uint64_t cost[TFC_FUSED_MAX_DIM / 16 + 1];
  if (G > (int)(sizeof cost / sizeof cost[0]) || n < 2) return 1;
  const uint64_t pin = (uint64_t)f->H * f->W, pout = (uint64_t)f->Ho * f->Wo;
  for (int g = 0; g < G; ++g) {
    const int c1 = gw * (g + 1) < f->Ce ? gw * (g + 1) : f->Ce;
    cost[g] = (uint64_t)(c1 - gw * g) * pout * 6u + (f->has_expand ? tfc_part_weights(&f->ex, gw * g, c1) / 4u * pin : 0u);
  }
  const int k = tfc_split_units(G, cost, n, f->ab_g);
  if (k < 2) return 1;
  if (f->has_expand) {
    for (int i = 0; i < k; ++i) f->ex.part_g[i] = f->ab_g[i] * gw / 16;
    f->ex.part_g[k] = (f->Ce + 15) / 16;
    f->ex.tile_parts = k;
  }
  return k;
}

/* The residual add of n values (project output p, block input x, output y; esz-byte values). */
static void tfc_fused_add_any(const TfcFused* f, const void* p, const void* x, void* y, size_t n) {
  if (f->f32)
    tfc_fused_add_f32((const float*)p, (const float*)x, (float*)y, n);
  else
    tfc_fused_add(f, (const int8_t*)p, (const int8_t*)x, (int8_t*)y, n);
}

/* One depthwise output row, channel groups [g0, g1): rows[k] = input row k (NULL: padding). */
static void tfc_fused_dw(const TfcFused* f, const uint8_t* const rows[3], const void* bias, uint8_t* out, int32_t* acc,
                         int g0, int g1) {
  if (f->f32) {
    const float* rf[3];
    for (int k = 0; k < 3; ++k) rf[k] = rows[k] != NULL ? (const float*)rows[k] : f->dw_zrow_f;
    f->dw_row_f32(f, rf, (const float*)bias, (float*)out, g0, g1);
  } else {
    const int8_t* ri[3] = {(const int8_t*)rows[0], (const int8_t*)rows[1], (const int8_t*)rows[2]};
    f->dw_row(f, ri, (const int32_t*)bias, (int8_t*)out, acc, g0, g1);
  }
}

/* Output rows [r0, r1) of the block; with `span`, strip s = rows [r0 + s SH, ..) only once
 * claimed from the front of the span (the rest is left to a thief). */
static void tfc_fused_rows(TfcFused* f, const TfcFusedIO* io, int r0, int r1, int worker, atomic_ullong* span) {
  uint8_t* sc = (uint8_t*)f->scratch + (size_t)worker * f->scratch_stride;
  TfcState* ex = &f->wstates[2 * worker];
  TfcState* pr = &f->wstates[2 * worker + 1];
  uint8_t* ring = sc + f->off_ring;
  uint8_t* dwb = sc + f->off_dw;
  uint8_t* pjb = sc + f->off_pj;
  int32_t* acc = (int32_t*)(sc + f->off_acc);
  void* ks = sc + f->off_k;
  const uint8_t* x = (const uint8_t*)io->x;
  uint8_t* y = (uint8_t*)io->y;
  /* row sizes in bytes (esz bytes per value) */
  const size_t es = (size_t)f->esz;
  const size_t in_row = es * f->W * f->Cin, e_row = es * f->W * f->Ce;
  const size_t d_row = es * f->Wo * f->Ce, o_row = es * f->Wo * f->Co;
  int ring_first = 0, ring_n = 0;
  for (int oh0 = r0; oh0 < r1; oh0 += f->SH) {
    if (span != NULL) { /* claim strip (oh0 - r0) / SH: the owner is the only one to move the front */
      unsigned long long c = atomic_load(span);
      do {
        if ((c >> 32) >= (c & 0xffffffffull)) return;
      } while (!atomic_compare_exchange_weak(span, &c, c + (1ull << 32)));
    }
    const int oh1 = oh0 + f->SH < r1 ? oh0 + f->SH : r1, n = oh1 - oh0;
    int lo = oh0 * f->stride - f->pt, hi = (oh1 - 1) * f->stride - f->pt + 2;
    if (lo < 0) lo = 0;
    if (hi > f->H - 1) hi = f->H - 1;
    const uint8_t* base;
    int first;
    if (f->has_expand) {
      if (ring_n > 0 && lo > ring_first) {
        const int drop = lo - ring_first < ring_n ? lo - ring_first : ring_n;
        if (ring_n > drop) memmove(ring, ring + (size_t)drop * e_row, (size_t)(ring_n - drop) * e_row);
        ring_first += drop;
        ring_n -= drop;
      }
      if (ring_n == 0) ring_first = lo;
      const int next = ring_first + ring_n;
      if (next <= hi) {
        const void* src;
        if (f->stem_row_f32 != NULL) { /* float32 stem row: straight from the image */
          for (int h = next; h <= hi; ++h)
            f->stem_row_f32(f, (const float*)io->x, h, (float*)(ring + (size_t)(ring_n + h - next) * e_row),
                            (float*)(sc + f->off_col));
          src = NULL;
        } else if (f->stem_row != NULL) { /* direct stem row (VNNI / sdot): straight from the image */
          for (int h = next; h <= hi; ++h)
            f->stem_row(f, (const int8_t*)io->x, (const int32_t*)io->eb, h, (int8_t*)(ring + (size_t)(ring_n + h - next) * e_row),
                        sc + f->off_col);
          src = NULL;
        } else if (f->stem) {
          tfc_fused_im2col(f, (const int8_t*)io->x, next, hi + 1, (int8_t*)(sc + f->off_col));
          src = sc + f->off_col;
        } else {
          src = x + (size_t)next * in_row;
        }
        if (src != NULL) tfc_fused_1x1(ex, src, io->eb, ring + (size_t)ring_n * e_row, (hi - next + 1) * f->W, ks);
        ring_n += hi - next + 1;
      }
      base = ring;
      first = ring_first;
    } else {
      base = x;
      first = 0;
    }
    for (int oh = oh0; oh < oh1; ++oh) {
      const uint8_t* rp[3];
      for (int k = 0; k < 3; ++k) {
        const int ih = oh * f->stride - f->pt + k;
        rp[k] = (ih >= 0 && ih < f->H) ? base + (size_t)(ih - first) * e_row : NULL;
      }
      tfc_fused_dw(f, rp, io->db, dwb + (size_t)(oh - oh0) * d_row, acc, 0, f->dw_groups);
    }
    if (f->has_residual) {
      tfc_fused_1x1(pr, dwb, io->pb, pjb, n * f->Wo, ks);
      tfc_fused_add_any(f, pjb, x + (size_t)oh0 * in_row, y + (size_t)oh0 * o_row, (size_t)n * f->Wo * f->Co);
    } else {
      tfc_fused_1x1(pr, dwb, io->pb, y + (size_t)oh0 * o_row, n * f->Wo, ks);
    }
  }
}

/* After its own range: the back half of what another range has left (rounded down, at least
 * one strip when two or more are left), run with fresh expanded rows (<= 2 halo rows
 * recomputed), until no range has two strips left.  A worker that is descheduled or woke late
 * (a loaded phone, a shared VM: the pool's stall counter) then holds up at most the strip it is
 * running, not half of the block. */
static void tfc_fused_steal(const TfcFusedJob* j, int task, int worker) {
  TfcFused* f = j->f;
  for (int k = 1; k < f->n_tasks; ++k) {
    const int v = (task + k) % f->n_tasks;
    atomic_ullong* span = &j->spans[v].span;
    for (;;) {
      unsigned long long c = atomic_load(span);
      unsigned lo, hi, mid;
      do {
        lo = (unsigned)(c >> 32);
        hi = (unsigned)(c & 0xffffffffull);
        if (hi < lo + 2) break;
        mid = hi - (hi - lo) / 2;
      } while (!atomic_compare_exchange_weak(span, &c, ((unsigned long long)lo << 32) | mid));
      if (hi < lo + 2) break;
      const int r0 = f->task_r[v], r1 = f->task_r[v + 1];
      const int s0 = r0 + (int)mid * f->SH, s1 = r0 + (int)hi * f->SH;
      tfc_fused_rows(f, j->io, s0, s1 < r1 ? s1 : r1, worker, NULL);
    }
  }
}

static void tfc_fused_task(void* arg, int task, int worker) {
  const TfcFusedJob* j = (const TfcFusedJob*)arg;
  const int r0 = j->f->task_r[task], r1 = j->f->task_r[task + 1];
  tfc_fused_rows(j->f, j->io, r0, r1, worker, j->spans ? &j->spans[task].span : NULL);
  if (j->spans) tfc_fused_steal(j, task, worker);
}

/* Phased run (f->phased), one pool job per phase (the pool returns when all its tasks are done:
 * the barrier between phases).  AB: task t = the depthwise channel groups [ab_g[t], ab_g[t+1]):
 * the expand 1x1 of those channels for every pixel into full_e, then the depthwise of those
 * channels for every output row into full_d (a channel needs only its own expanded channel: no
 * barrier in between).  C: project 1x1 (+ residual add) of output pixels [pc[t], pc[t+1]), or of
 * channel part t where the project is one row tile. */
static void tfc_fused_phase_ab(void* arg, int task, int worker) {
  const TfcFusedJob* j = (const TfcFusedJob*)arg;
  TfcFused* f = j->f;
  uint8_t* sc = (uint8_t*)f->scratch + (size_t)worker * f->scratch_stride;
  if (f->has_expand) tfc_fused_1x1_part(&f->wstates[2 * worker], j->io->x, j->io->eb, f->full_e, f->H * f->W, task, sc + f->off_k);
  int32_t* acc = (int32_t*)(sc + f->off_acc);
  const uint8_t* base = f->has_expand ? (const uint8_t*)f->full_e : (const uint8_t*)j->io->x;
  const size_t es = (size_t)f->esz, e_row = es * f->W * f->Ce, d_row = es * f->Wo * f->Ce;
  for (int oh = 0; oh < f->Ho; ++oh) {
    const uint8_t* rp[3];
    for (int k = 0; k < 3; ++k) {
      const int ih = oh * f->stride - f->pt + k;
      rp[k] = (ih >= 0 && ih < f->H) ? base + (size_t)ih * e_row : NULL;
    }
    tfc_fused_dw(f, rp, j->io->db, (uint8_t*)f->full_d + (size_t)oh * d_row, acc, f->ab_g[task], f->ab_g[task + 1]);
  }
}

static void tfc_fused_phase_c(void* arg, int task, int worker) {
  const TfcFusedJob* j = (const TfcFusedJob*)arg;
  TfcFused* f = j->f;
  uint8_t* sc = (uint8_t*)f->scratch + (size_t)worker * f->scratch_stride;
  TfcState* pr = &f->wstates[2 * worker + 1];
  const size_t es = (size_t)f->esz;
  const uint8_t* x = (const uint8_t*)j->io->x;
  uint8_t* y = (uint8_t*)j->io->y;
  uint8_t* pjb = sc + f->off_pj;
  if (f->parts_c > 1) { /* one tile: task = channel part; the residual add of its channels */
    const int n = f->Ho * f->Wo;
    if (f->has_residual) {
      tfc_fused_1x1_part(pr, f->full_d, j->io->pb, pjb, n, task, sc + f->off_k);
      const int c0 = 16 * pr->part_g[task], c1 = 16 * pr->part_g[task + 1] < f->Co ? 16 * pr->part_g[task + 1] : f->Co;
      for (int p = 0; p < n; ++p)
        tfc_fused_add_any(f, pjb + es * ((size_t)p * f->Co + c0), x + es * ((size_t)p * f->Cin + c0),
                          y + es * ((size_t)p * f->Co + c0), (size_t)(c1 - c0));
    } else {
      tfc_fused_1x1_part(pr, f->full_d, j->io->pb, y, n, task, sc + f->off_k);
    }
    return;
  }
  const int chunk = f->SH * f->Wo;
  for (int p0 = f->pc[task]; p0 < f->pc[task + 1]; p0 += chunk) {
    const int n = f->pc[task + 1] - p0 < chunk ? f->pc[task + 1] - p0 : chunk;
    const uint8_t* d = (const uint8_t*)f->full_d + es * (size_t)p0 * f->Ce;
    uint8_t* yp = y + es * (size_t)p0 * f->Co;
    if (f->has_residual) {
      tfc_fused_1x1(pr, d, j->io->pb, pjb, n, sc + f->off_k);
      tfc_fused_add_any(f, pjb, x + es * (size_t)p0 * f->Cin, yp, (size_t)n * f->Co);
    } else {
      tfc_fused_1x1(pr, d, j->io->pb, yp, n, sc + f->off_k);
    }
  }
}

/* --------------------------------------------------------------- lifecycle */

static void* tfc_fused_init(TfLiteContext* ctx, const char* buffer, size_t length) {
  (void)ctx;
  TfcFused* f = (TfcFused*)calloc(1, sizeof(TfcFused));
  if (f == NULL) return NULL;
  if (buffer != NULL && length == 8) {
    const uint8_t* o = (const uint8_t*)buffer;
    f->options_ok = o[0] == 1 && (o[1] | o[2] | o[3] | o[4] | o[5] | o[6] | o[7]) == 0;
  }
  return f;
}

static void tfc_fused_free(TfLiteContext* ctx, void* buffer) {
  (void)ctx;
  TfcFused* f = (TfcFused*)buffer;
  if (f == NULL) return;
  tfc_fused_free_sub(&f->ex);
  tfc_fused_free_sub(&f->pr);
  free(f->params_copy);
  free(f->wstates);
  tfc_free64(f->full_e);
  tfc_free64(f->full_d);
  tfc_free64(f->scratch);
  tfc_free64(f->dw_w32);
  free(f->dw_mult);
  tfc_fused_free_dw(f);
  tfc_pool_release(f->pool);
  free(f);
}

static int tfc_fused_workers(const TfLiteContext* ctx) {
  int n = ctx->recommended_num_threads;
  if (n > TFC_MAX_THREADS) n = TFC_MAX_THREADS;
  const char* cap = getenv("TFCOMPRESS_THREADS_MAX");
  if (cap != NULL && cap[0] >= '1' && cap[0] <= '8' && cap[1] == 0 && n > cap[0] - '0') n = cap[0] - '0';
  const char* over = getenv("TFCOMPRESS_THREADS_OVERSUBSCRIBE");
  if (!(over != NULL && over[0] == '1') && n > tfc_online_cpus()) n = tfc_online_cpus();
  return n <= 1 ? 1 : n;
}

#define FAIL(...) TFC_FAIL(ctx, "TFC_SPARSE_INVERTED_RESIDUAL: " __VA_ARGS__)

static TfLiteStatus tfc_fused_prepare(TfLiteContext* ctx, TfLiteNode* node) {
  TfcFused* f = (TfcFused*)node->user_data;
  if (f == NULL) TFC_FAIL(ctx, "kernel state missing (out of memory in init)");
  f->prepared = 0;
  if (!f->options_ok) FAIL("custom options must be 8 bytes {1,0,0,0,0,0,0,0}");
  if (node->inputs == NULL || node->outputs == NULL) FAIL("node has no inputs/outputs");
  const int ni = node->inputs->size;
  if (ni != 5 && ni != 7) FAIL("expects 7 inputs (with expand) or 5, got %d", ni);
  if (node->outputs->size != 1) FAIL("expects 1 output");
  const int io = node->outputs->data[0];
  if (io < 0 || (size_t)io >= ctx->tensors_size) FAIL("tensor index out of range");
  for (int i = 0; i < ni; ++i) {
    const int t = node->inputs->data[i];
    if (t < 0 || (size_t)t >= ctx->tensors_size) FAIL("tensor index out of range");
    if (t == io) FAIL("output tensor aliases an input");
  }
  const int e7 = ni == 7;
  const TfLiteTensor* x = TFC_TENSOR(ctx, node->inputs->data[0]);
  const TfLiteTensor* prm = TFC_TENSOR(ctx, node->inputs->data[e7 ? 3 : 1]);
  const TfLiteTensor* db = TFC_TENSOR(ctx, node->inputs->data[e7 ? 4 : 2]);
  const TfLiteTensor* pw = TFC_TENSOR(ctx, node->inputs->data[e7 ? 5 : 3]);
  const TfLiteTensor* pb = TFC_TENSOR(ctx, node->inputs->data[e7 ? 6 : 4]);
  TfLiteTensor* y = TFC_TENSOR(ctx, io);

  /* params */
  if (prm->type != kTfLiteUInt8 && prm->type != kTfLiteInt8) FAIL("params must be a uint8 tensor");
  if (!tfc_const_ok(prm) || prm->bytes == 0) FAIL("params must be a constant tensor with data");
  const uint8_t* pp = (const uint8_t*)prm->data.raw_const;
  if (((uintptr_t)pp & 15u) != 0) { /* f32 scales are read in place: keep them aligned */
    free(f->params_copy);
    f->params_copy = (uint8_t*)malloc(prm->bytes + 16);
    if (f->params_copy == NULL) FAIL("out of memory");
    uint8_t* a = (uint8_t*)(((uintptr_t)f->params_copy + 15u) & ~(uintptr_t)15u);
    memcpy(a, pp, prm->bytes);
    pp = a;
  }
  const char* err = tfc_fused_parse(f, pp, prm->bytes);
  if (err != NULL) FAIL("%s", err);
  if (f->has_expand != e7) FAIL("params flags say %s expand but the node has %d inputs", f->has_expand ? "an" : "no", ni);

  /* activations */
  const TfLiteType vt = f->f32 ? kTfLiteFloat32 : kTfLiteInt8;
  if (x->type != vt || y->type != vt)
    FAIL("input and output must be %s (params flag bit 3 %s)", f->f32 ? "float32" : "int8", f->f32 ? "set" : "clear");
  const int xh = f->stem ? f->Hi : f->H, xw = f->stem ? f->Wi : f->W, xc = f->stem ? f->Ci : f->Cin;
  if (x->dims == NULL || x->dims->size != 4 || x->dims->data[0] != 1 || x->dims->data[1] != xh ||
      x->dims->data[2] != xw || x->dims->data[3] != xc)
    FAIL("input must be [1, %d, %d, %d] as the params say", xh, xw, xc);
  if ((uint64_t)x->bytes != (uint64_t)f->esz * xh * xw * xc) FAIL("input byte size does not match its shape");
  const float sx = f->f32 ? 1.f : x->params.scale, sy = f->f32 ? 1.f : y->params.scale;
  const int32_t zx = x->params.zero_point, zy = y->params.zero_point;
  if (!(isfinite(sx) && sx > 0.f && isfinite(sy) && sy > 0.f)) FAIL("int8 input/output need a finite scale > 0");
  if (zx < -128 || zx > 127 || zy < -128 || zy > 127) FAIL("int8 zero points must be in -128..127");
  f->zp_x = zx;
  if (!f->f32 && !f->has_expand && (f->s_e != sx || f->zp_e != zx)) FAIL("without expand, params' scale_e/zp_e must be the input's");
  if (!f->f32 && !f->has_residual && (f->s_p != sy || f->zp_p != zy)) FAIL("without residual, params' scale_p/zp_p must be the output's");
  if (db->type != (f->f32 ? kTfLiteFloat32 : kTfLiteInt32) || !tfc_const_ok(db) || (uint64_t)db->bytes != 4ull * (uint64_t)f->Ce)
    FAIL("depthwise bias must be a constant %s tensor of Ce values", f->f32 ? "float32" : "int32");
  if (f->has_residual && !f->f32) {
    err = tfc_fused_add_params(f, f->s_p, f->zp_p, sx, zx, sy, zy);
    if (err != NULL) FAIL("%s", err);
  }

  /* strips: SH output rows at a time.  The 1x1 kernels cost per stored weight and 16-row vector
   * (x86: 16 rows per register; aarch64: 4 registers of 4), so a strip is a whole number of
   * vectors where a few map rows make one: the smallest SH with SH * Wo a multiple of 16 and <=
   * 128 (56-wide: 2 rows = 112 = 7 vectors, where 1 row = 56 took 4 of 64); else as many rows as
   * fit one 64-row tile (7-wide: 7 rows = 49) */
  const int cap = tfc_isa_cap();
  tfc_trace_init();
  f->SH = f->Wo >= 64 ? 1 : 64 / f->Wo;
  for (int k = 1; k * f->Wo <= 128; ++k)
    if ((k * f->Wo) % 16 == 0) {
      f->SH = k;
      break;
    }
  if (f->SH > f->Ho) f->SH = f->Ho;
  f->ring_rows = f->stride * (f->SH - 1) + 3;
  if (f->has_expand) {
    err = tfc_fused_setup_1x1(&f->ex, TFC_TENSOR(ctx, node->inputs->data[1]), TFC_TENSOR(ctx, node->inputs->data[2]),
                              f->Cin, f->Ce, f->f32, f->act_e, sx, zx, f->s_e, f->zp_e, f->stride * f->SH * f->W, cap);
    if (err != NULL) FAIL("expand: %s", err);
  }
  err = tfc_fused_setup_1x1(&f->pr, pw, pb, f->Ce, f->Co, f->f32, 0, f->s_d, f->zp_d, f->s_p, f->zp_p, f->SH * f->Wo, cap);
  if (err != NULL) FAIL("project: %s", err);

  /* depthwise: float32 (tfc_fused_setup_dw_f32), or int8 with multipliers in float as XNNPACK
   * (s_in * s_w[c] / s_out), clamp of its activation */
  f->dw_bias_seen = (const int32_t*)db->data.raw_const;
  if (f->f32) {
    tfc_act_bounds(f->act_d, &f->dw_fmin, &f->dw_fmax);
    if (!tfc_fused_setup_dw_f32(f, (const float*)db->data.raw_const)) FAIL("out of memory");
  } else {
    tfc_free64(f->dw_w32);
    free(f->dw_mult);
    const int cpad = (f->Ce + 15) & ~15;
    f->dw_w32 = (int32_t*)tfc_alloc64(sizeof(int32_t) * 9u * (size_t)cpad);
    f->dw_mult = (float*)malloc(sizeof(float) * (size_t)cpad);
    if (f->dw_w32 == NULL || f->dw_mult == NULL) FAIL("out of memory");
    for (int t = 0; t < 9; ++t)
      for (int c = 0; c < cpad; ++c) f->dw_w32[t * cpad + c] = c < f->Ce ? f->dw_w[t * f->Ce + c] : 0;
    for (int c = 0; c < cpad; ++c) f->dw_mult[c] = c < f->Ce ? f->s_e * f->dw_scales[c] / f->s_d : 0.f;
    f->dw_cpad = cpad;
    tfc_act_range(f->act_d, f->s_d, f->zp_d, &f->dw_qmin, &f->dw_qmax);
    if (!tfc_fused_pick_dw(f, cap, (const int32_t*)db->data.raw_const)) FAIL("out of memory");
  }

  /* per-worker scratch: 1x1 kernel scratch, expanded rows, depthwise strip, project strip */
  const int workers = tfc_fused_workers(ctx);
  size_t ks = f->pr.plan.scratch_bytes;
  if (f->has_expand && f->ex.plan.scratch_bytes > ks) ks = f->ex.plan.scratch_bytes;
  const uint64_t es = (uint64_t)f->esz; /* bytes per value */
  const uint64_t ring = f->has_expand ? es * f->ring_rows * f->W * f->Ce : 0;
  const uint64_t dwb = es * f->SH * f->Wo * f->Ce, pjb = f->has_residual ? es * f->SH * f->Wo * f->Co : 0;
  if (ring > TFC_FUSED_MAX_SCRATCH || dwb > TFC_FUSED_MAX_SCRATCH || pjb > TFC_FUSED_MAX_SCRATCH || ks > TFC_FUSED_MAX_SCRATCH)
    FAIL("block too large");
  f->off_k = 0;
  f->off_ring = tfc_round64(ks);
  f->off_dw = f->off_ring + tfc_round64((size_t)ring);
  f->off_pj = f->off_dw + tfc_round64((size_t)dwb);
  f->off_acc = f->off_pj + tfc_round64((size_t)pjb);
  f->off_col = f->off_acc + tfc_round64(f->f32 ? 0u : sizeof(int32_t) * (size_t)f->dw_cpad);
  uint64_t col = 0; /* per worker: a stem's im2col rows, or the image rows its direct row copies */
  f->eb_seen = f->has_expand ? TFC_TENSOR(ctx, node->inputs->data[2])->data.raw_const : NULL;
  if (f->stem && f->f32) { /* float32 stem: always the direct row (three image rows of floats) */
    if (!tfc_fused_stem_f32(f, (const float*)f->eb_seen)) FAIL("out of memory");
    col = 12u * (uint64_t)f->stem_rowlen;
  } else {
    if (f->stem) col = (uint64_t)f->ring_rows * f->W * f->Cin;
#if TFC_HAVE_X86
    if (tfc_fused_stem_x86(f, cap) < 0) FAIL("out of memory");
#elif TFC_HAVE_AARCH64
    if (tfc_fused_stem_aarch64(f, cap) < 0) FAIL("out of memory");
#endif
  }
  if (f->stem_row != NULL && 3u * (uint64_t)f->stem_rowlen > col) col = 3u * (uint64_t)f->stem_rowlen; /* image rows */
  if (col > TFC_FUSED_MAX_SCRATCH) FAIL("block too large");
  const size_t stride = f->off_col + tfc_round64((size_t)col);
  if ((size_t)workers * stride > f->scratch_bytes) {
    tfc_free64(f->scratch);
    f->scratch_bytes = 0;
    f->scratch = tfc_alloc64((size_t)workers * stride);
    if (f->scratch == NULL) FAIL("out of memory for %d x %zu bytes of scratch", workers, stride);
    f->scratch_bytes = (size_t)workers * stride;
  }
  f->scratch_stride = stride;
  free(f->wstates);
  f->wstates = (TfcState*)malloc(sizeof(TfcState) * 2u * (size_t)workers);
  if (f->wstates == NULL) FAIL("out of memory");
  for (int w = 0; w < workers; ++w) {
    f->wstates[2 * w] = f->ex;
    f->wstates[2 * w + 1] = f->pr;
  }

  /* tasks: ranges of output rows, one per worker (each recomputes <= 2 expanded halo rows);
   * TFCOMPRESS_TEST_RANGES=n (tests, one thread): n ranges run in turn */
  int tasks = 1;
  f->workers = 1;
  if (workers > 1) {
    if (f->pool == NULL) f->pool = tfc_pool_acquire(ctx, workers);
    if (f->pool != NULL && tfc_pool_threads(f->pool) < workers) {
      TfcPool* bigger = tfc_pool_acquire(ctx, workers);
      tfc_pool_release(f->pool);
      f->pool = bigger;
    }
    if (f->pool != NULL) {
      f->workers = tfc_pool_threads(f->pool) < workers ? tfc_pool_threads(f->pool) : workers;
      tasks = f->workers;
    }
  }
  const char* r = getenv("TFCOMPRESS_TEST_RANGES");
  if (f->workers <= 1 && r != NULL && r[0] >= '1' && r[0] <= '9' && r[1] == 0) tasks = r[0] - '0';
  /* stealing strips between row ranges (tfc_fused_steal); TFCOMPRESS_FUSED_STEAL=0: off
   * (benchmarks); with TFCOMPRESS_TEST_RANGES at one thread, =1 runs the ranges in turn with
   * stealing (tests: the first range takes half of every other range's strips) */
  const char* st = getenv("TFCOMPRESS_FUSED_STEAL");
  f->steal = !(st != NULL && st[0] == '0');
  f->test_steal = f->workers <= 1 && r != NULL && st != NULL && st[0] == '1' && st[1] == 0;
  if (tasks > f->Ho) tasks = f->Ho;
  if (tasks > TFC_MAX_TASKS) tasks = TFC_MAX_TASKS;
  for (int i = 0; i <= tasks; ++i) f->task_r[i] = (int)((int64_t)f->Ho * i / tasks);
  f->n_tasks = tasks;

  /* Phased split (tfc_fused_phase_*) for stride-1 blocks whose row ranges would have fewer than
   * 4 output rows: such ranges recompute a large share of expanded halo rows (7x7 map, 2 tasks:
   * 9 expanded rows for 7) and split unevenly (4 / 3 rows).  Phased: expand + depthwise by
   * channel parts, one barrier, project by pixels (one-tile 1x1s by channel parts); no halo,
   * balanced to a depthwise group; costs the expanded / depthwise tensors in memory (<= 1 MiB
   * together, in L2 instead of strips in L1) and needs a 1x1 kernel that takes channel parts
   * (x86: int8 quads, float32 CSR).  Measured on int8 MobileNetV2 at 2 threads (tflite_export/README.md
   * "Threads"):
   * the 7x7 blocks 9-21 % faster than row ranges; the 14x14 blocks (7 rows per range) 5-7 %
   * slower, the stride-2 14 -> 7 block 12 % slower, so those keep row ranges.
   * TFCOMPRESS_FUSED_PHASED=0: row ranges always, =1: phased wherever a range would have < 8
   * rows (also at 1 thread with TFCOMPRESS_TEST_RANGES). */
  const uint64_t full_e = f->has_expand ? es * f->H * f->W * f->Ce : 0, full_d = es * f->Ho * f->Wo * f->Ce;
  const char* ph = getenv("TFCOMPRESS_FUSED_PHASED");
  f->ex.tile_parts = f->pr.tile_parts = 1;
  f->parts_c = 1;
  const int force = ph != NULL && ph[0] == '1' && ph[1] == 0;
  f->phased = !(ph != NULL && ph[0] == '0') && tasks > 1 && !f->stem &&
              (force ? f->Ho < 8 * tasks : f->stride == 1 && f->Ho < 4 * tasks) &&
              full_e + full_d <= ((uint64_t)1 << 20) && (!f->has_expand || tfc_plan_has_parts(&f->ex));
  if (f->phased) f->n_ab = tfc_fused_ab_parts(f, tasks);
  f->phased = f->phased && f->n_ab > 1;
  if (f->phased) {
    const size_t need = tfc_round64((size_t)full_e) + tfc_round64((size_t)full_d);
    if (need > f->full_bytes || f->full_d == NULL) {
      tfc_free64(f->full_e);
      tfc_free64(f->full_d);
      f->full_e = full_e ? (int8_t*)tfc_alloc64((size_t)full_e) : NULL;
      f->full_d = (int8_t*)tfc_alloc64((size_t)full_d);
      f->full_bytes = 0;
      if (f->full_d == NULL || (full_e && f->full_e == NULL)) FAIL("out of memory for the phased buffers");
      f->full_bytes = need;
    }
    /* project: pixel ranges, as many as tasks; a 1x1 of one row tile (7x7 maps: 49 rows): pixel
     * ranges would each run every stored weight for a part of the rows (the kernel's cost is per
     * weight and 16-row vector: 2 x 2 vectors cost about what 4 do); channel parts halve the
     * weights per task instead */
    const int pout = f->Ho * f->Wo;
    f->n_pc = tasks < pout ? tasks : pout;
    for (int i = 0; i <= f->n_pc; ++i) f->pc[i] = (int)((int64_t)pout * i / f->n_pc);
    if (pout <= TFC_I8_TILE && pout <= f->SH * f->Wo) f->parts_c = tfc_fused_channel_parts(&f->pr, tasks);
    if (f->parts_c > 1) f->n_pc = f->parts_c;
    for (int w = 0; w < workers; ++w) {
      f->wstates[2 * w] = f->ex;
      f->wstates[2 * w + 1] = f->pr;
    }
  } else {
    f->ex.tile_parts = f->pr.tile_parts = 1;
    f->parts_c = 0;
    for (int w = 0; w < workers; ++w) f->wstates[2 * w].tile_parts = f->wstates[2 * w + 1].tile_parts = 1;
    /* without expand a row range recomputes nothing (the depthwise reads the input): 8 ranges per
     * thread, claimed one at a time, so a worker that wakes late (MobileNetV2's first block
     * follows XNNPACK's stem: the worker slept, ~20 us to wake here) leaves its share to the
     * caller instead of a tail */
    if (!f->has_expand && f->workers > 1) {
      int more = 8 * f->workers;
      if (more > f->Ho) more = f->Ho;
      if (more > TFC_MAX_TASKS) more = TFC_MAX_TASKS;
      if (more > tasks) {
        for (int i = 0; i <= more; ++i) f->task_r[i] = (int)((int64_t)f->Ho * i / more);
        f->n_tasks = more;
      }
    }
  }

  int shape[4] = {1, f->Ho, f->Wo, f->Co};
  if (TFC_TENSOR_RESIZE(ctx, y, 4, shape) != kTfLiteOk) FAIL("could not resize the output");
  tfc_fused_note_plan(f);
  f->prepared = 1;
  return kTfLiteOk;
}

static TfLiteStatus tfc_fused_invoke(TfLiteContext* ctx, TfLiteNode* node) {
  TfcFused* f = (TfcFused*)node->user_data;
  if (f == NULL || !f->prepared) TFC_FAIL(ctx, "Invoke before a successful Prepare");
  if ((const int32_t*)TFC_TENSOR(ctx, node->inputs->data[f->has_expand ? 4 : 2])->data.raw_const != f->dw_bias_seen)
    FAIL("depthwise bias changed after Prepare");
  const int e7 = f->has_expand;
  const TfLiteTensor* x = TFC_TENSOR(ctx, node->inputs->data[0]);
  TfLiteTensor* y = TFC_TENSOR(ctx, node->outputs->data[0]);
  if (x->data.raw_const == NULL || y->data.data == NULL) FAIL("input or output has no buffer");
  if ((e7 && (const uint8_t*)TFC_TENSOR(ctx, node->inputs->data[1])->data.raw_const != f->ex.blob_seen) ||
      (const uint8_t*)TFC_TENSOR(ctx, node->inputs->data[e7 ? 5 : 3])->data.raw_const != f->pr.blob_seen)
    FAIL("packed weights changed after Prepare");
  if (f->stem_row_f32 != NULL && TFC_TENSOR(ctx, node->inputs->data[2])->data.raw_const != f->eb_seen)
    FAIL("expand bias changed after Prepare"); /* the float32 stem keeps a padded copy */
  TfcFusedIO io;
  io.x = x->data.raw_const;
  io.eb = e7 ? TFC_TENSOR(ctx, node->inputs->data[2])->data.raw_const : NULL;
  io.db = TFC_TENSOR(ctx, node->inputs->data[e7 ? 4 : 2])->data.raw_const;
  io.pb = TFC_TENSOR(ctx, node->inputs->data[e7 ? 6 : 4])->data.raw_const;
  io.y = y->data.data;
  if (f->phased) {
    TfcFusedJob job = {f, &io};
    TfcPool* pool = f->workers > 1 ? f->pool : NULL; /* NULL: the tasks run in turn on this thread */
    tfc_pool_run(pool, f->n_ab, f->workers, tfc_fused_phase_ab, &job);
    tfc_pool_run(pool, f->n_pc, f->workers, tfc_fused_phase_c, &job);
  } else if ((f->n_tasks > 1 && f->pool != NULL && f->workers > 1) || f->test_steal) {
    TfcFusedSpan spans[TFC_MAX_TASKS];
    for (int t = 0; t < f->n_tasks; ++t) {
      const unsigned strips = (unsigned)((f->task_r[t + 1] - f->task_r[t] + f->SH - 1) / f->SH);
      atomic_init(&spans[t].span, (unsigned long long)strips);
    }
    TfcFusedJob job = {f, &io, f->steal ? spans : NULL};
    if (f->test_steal) { /* tests, one thread: task 0 runs, then steals from every other range */
      for (int t = 0; t < f->n_tasks; ++t) tfc_fused_task(&job, t, 0);
    } else {
      tfc_pool_run(f->pool, f->n_tasks, f->workers, tfc_fused_task, &job);
    }
  } else {
    const long long t0 = tfc_trace_serial_on ? tfc_trace_now_ns() : 0;
    for (int t = 0; t < f->n_tasks; ++t) tfc_fused_rows(f, &io, f->task_r[t], f->task_r[t + 1], 0, NULL);
    if (tfc_trace_serial_on) tfc_trace_serial((const void*)tfc_fused_task, f, f->n_tasks, t0);
  }
  return kTfLiteOk;
}

TfLiteRegistration* TfcRegisterSparseInvertedResidual(void) {
  static TfLiteRegistration r;
  static int done = 0;
  if (!done) {
    memset(&r, 0, sizeof(r));
    r.init = tfc_fused_init;
    r.free = tfc_fused_free;
    r.prepare = tfc_fused_prepare;
    r.invoke = tfc_fused_invoke;
    r.builtin_code = kTfLiteBuiltinCustom;
    r.custom_name = TFC_SPARSE_INVERTED_RESIDUAL_NAME;
    r.version = 1;
    done = 1;
  }
  return &r;
}
