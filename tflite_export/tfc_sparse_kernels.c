/* tfcompress sparse kernels for TFLite: TFC_SPARSE_FC and TFC_SPARSE_CONV_1X1.
 *
 * Portable C99.  No allocation in Invoke: every buffer is sized in Prepare.
 * Every byte read from the model (options, packed weights, tensor shapes and
 * types) is validated in Prepare; Invoke only runs on validated state.
 *
 * ---------------------------------------------------------------------------
 * Custom options (node custom_initial_data), exactly 8 bytes:
 *   byte 0  version      = 1
 *   byte 1  activation   0 none, 1 RELU, 2 RELU6, 3 RELU_N1_TO_1
 *   byte 2  layout       0 output = input shape with last dim N
 *                        1 output = [P, N], P = product of leading input dims
 *                        (TFC_SPARSE_CONV_1X1 requires 0)
 *   bytes 3..7           0
 *
 * Packed weights (input 1, a constant uint8 tensor), little-endian, "TFCS" v1.
 * W is [N][K] (output channel n, input feature k).  Only non-zero 1 x B
 * blocks (B consecutive input features of one output channel; B = 1 for
 * unstructured and N:M sparsity) are stored, in a sliced-ELLPACK layout
 * ("SELL-16"): output channels are sorted by their block count and grouped in
 * slices of 16 lanes; a slice stores len_s "slots" per lane, lane-minor, so
 * one step of the kernel handles 16 output channels with contiguous loads
 * (B = 1: one 16-wide gather of x; B = 4: 16 contiguous 4-float dots).
 * Lanes shorter than len_s are padded with zero-valued slots.
 *   off  0  char[4] magic "TFCS"
 *   off  4  u16 version = 1
 *   off  6  u8  value_type   1 float32, 9 int8 (TfLiteType codes)
 *   off  7  u8  block B      1 or 4 (K % B == 0)
 *   off  8  u32 N            output channels
 *   off 12  u32 K            input features (must equal the input's last dim)
 *   off 16  u32 nslots       total slots = 16 * sum_s len_s
 *   off 20  u8  index_bytes  1 = windowed (B must be 1), 2 (u16 absolute block
 *                            columns, needs K/B <= 65536) or 4 (u32)
 *   off 21  u8[11] zero
 *   then sections, each starting at a multiple of 16 bytes (zero padding):
 *     slice_ptr u32[S+1], S = ceil(N/16): first slot of slice s; slice_ptr[0] = 0,
 *               (slice_ptr[s+1] - slice_ptr[s]) % 16 == 0, slice_ptr[S] = nslots
 *     perm      u32[16*S]: output channel of lane l of slice s at [16*s + l];
 *               every channel 0..N-1 exactly once, 0xFFFFFFFF = empty lane
 *     steps     u8[S][W] (windowed only, W = ceil(K/32)): the slots of slice s
 *               are grouped by 32-feature window w; window w has steps[s][w]
 *               (<= 32) consecutive steps of 16 slots
 *     col       u16/u32[nslots]: block column c of slot i (covers features
 *               c*B .. c*B+B-1), c < K/B; slot i of slice s, step j, lane l is
 *               i = slice_ptr[s] + 16*j + l.
 *               Windowed: u8[nslots], offset o < 32 inside the step's window,
 *               feature w*32 + o < K.  (A 32-float window of x fits two SIMD
 *               registers, so one permute fetches x for 16 lanes.)
 *     values    float32 or int8 [nslots][B]
 *     scales    float32[N], int8 only: w_real = scale[n] * q (symmetric)
 *   The tensor is exactly as long as the end of the last padded section.
 *
 * int8 semantics (full-integer model, like TFLite's int8 FULLY_CONNECTED):
 *   acc = bias[n] + sum_k q_w[n,k] * (q_x[k] - zp_x)
 *   q_y = clamp(round(acc * s_x * scale[n] / s_y) + zp_y)
 * ---------------------------------------------------------------------------
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfc_sparse_ops.h"

#if defined(TFC_MULTIVERSION) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* Host build only: one binary with AVX-512, AVX2+FMA and baseline x86-64
 * bodies of the hot loops (x86-64-v4 = AVX-512, v3 = AVX2+FMA), chosen at load time
 * from the CPU features (GCC ifunc); "arch=<cpu name>" clones would test the CPU model. */
#define TFC_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TFC_HOT
#endif

#define TFC_TILE 16 /* rows of the input processed together in the tiled path */
#define TFC_GATHER_MAX_ROWS 4 /* fewer input rows than this: per-row gather path */
#define TFC_CSR_MIN_ROWS 16 /* from this many rows: the CSR kernel (float32, AVX-512) */
#define TFC_CSR_TILE 64 /* rows per tile of the CSR kernel */

enum { TFC_OP_FC = 1, TFC_OP_CONV1X1 = 2 };

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
  void* scratch; /* TFC_TILE * K transposed input tile */
  size_t scratch_bytes;
  int32_t* row_sums; /* int8: sum of q_w per row */
  float* multipliers; /* int8: s_x * scale[n] / s_y */
  int row_state_n; /* N the two arrays above were sized for */
  int32_t zp_in, zp_out, qmin, qmax;
  float fmin, fmax;
  void (*row_f32_win)(const struct TfcStateTag* s, const float* x, const float* bias, float* y);
  void (*row_i8_win)(const struct TfcStateTag* s, const int8_t* x, const int32_t* bias, int8_t* y);
  /* many rows, windowed float layout; NULL: use the tiled kernel */
  void (*rows_f32_win)(const struct TfcStateTag* s, const float* x, int rows, const float* bias, float* y);
  /* float32, many rows, AVX-512: the weights re-laid in channel pairs or quads
   * (tfc_build_csr), built in Prepare; csr_tile 0 = that kernel is not used */
  int csr_tile; /* rows per tile T */
  int csr_chunks; /* input features are taken in this many chunks */
  int csr_quads; /* 1: entries serve 4 consecutive channels (4x1 output blocks), 0: channel pairs */
  uint32_t* csr_ptr; /* [chunks * 8 * ceil(N/16) + 1] first entry of each channel pair and chunk */
  uint32_t* csr_off; /* [2 * entries] (quads: [entries]) input feature * T: its row in the tile */
  float* csr_val; /* [2 * entries] (quads: [4 * entries]) */
  uint8_t* pair_row; /* [2 * pairs] tile row (channel - 16 * group) of each half, 16 = none */
  float* ytile; /* [16 * ceil(N/16) + 1][T] outputs (transposed) before the store to NHWC */
  const uint8_t* csr_blob; /* packed weights the CSR copy was built from */
  void (*rows_f32_csr)(const struct TfcStateTag* s, const float* x, int rows, const float* bias, float* y);
} TfcState;

/* ------------------------------------------------------------------ errors */

#define TFC_FAIL(ctx, ...)                                     \
  do {                                                         \
    (ctx)->ReportError((ctx), "tfcompress sparse op: " __VA_ARGS__); \
    return kTfLiteError;                                       \
  } while (0)

static int tfc_tensor_index_ok(const TfLiteContext* ctx, int idx) {
  return idx >= 0 && (size_t)idx < ctx->tensors_size;
}

/* 64-byte aligned (one cache line: vector loads of the tiles never split lines), released with
 * tfc_free64.  By hand rather than aligned_alloc, which Android has only from API 28. */
static void* tfc_alloc64(size_t bytes) {
  uint8_t* raw = (uint8_t*)malloc(bytes + 64u + sizeof(void*));
  if (raw == NULL) return NULL;
  uintptr_t a = ((uintptr_t)(raw + sizeof(void*)) + 63u) & ~(uintptr_t)63u;
  ((void**)a)[-1] = raw;
  return (void*)a;
}
static void tfc_free64(void* p) {
  if (p != NULL) free(((void**)p)[-1]);
}

/* Releases the CSR kernel's weights and output tile; the kernel is off until rebuilt. */
static void tfc_free_csr(TfcState* s) {
  free(s->csr_ptr);
  free(s->csr_off);
  free(s->csr_val);
  tfc_free64(s->ytile);
  free(s->pair_row);
  s->csr_ptr = NULL;
  s->csr_off = NULL;
  s->csr_val = NULL;
  s->ytile = NULL;
  s->pair_row = NULL;
  s->csr_tile = 0;
}

/* --------------------------------------------------------------- lifecycle */

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
  free(s->aligned_copy);
  tfc_free64(s->scratch);
  free(s->row_sums);
  free(s->multipliers);
  tfc_free_csr(s);
  free(s);
}

/* ------------------------------------------------------- packed weights */

static uint32_t rd_u32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint16_t rd_u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint64_t pad16(uint64_t x) { return (x + 15u) & ~(uint64_t)15u; }

/* Validates the packed weights at `p` (16-byte aligned, `bytes` long) and
 * fills the pointers of `s`.  Returns NULL on success, else a message.
 * `seen` is caller-provided scratch of at least N bytes (NULL: out of memory). */
static const char* tfc_parse_blob(TfcState* s, const uint8_t* p, size_t bytes, uint8_t* (*get_seen)(TfcState*, size_t)) {
  if (bytes < 32) return "packed weights: shorter than the 32-byte header";
  if (memcmp(p, "TFCS", 4) != 0) return "packed weights: bad magic (expected \"TFCS\")";
  if (rd_u16(p + 4) != 1) return "packed weights: unsupported version (expected 1)";
  int vt = p[6], block = p[7], ib = p[20];
  uint32_t n = rd_u32(p + 8), k = rd_u32(p + 12), nslots = rd_u32(p + 16);
  for (int i = 21; i < 32; ++i)
    if (p[i] != 0) return "packed weights: reserved header bytes must be 0";
  if (vt != kTfLiteFloat32 && vt != kTfLiteInt8) return "packed weights: value_type must be 1 (float32) or 9 (int8)";
  if (block != 1 && block != 4) return "packed weights: block must be 1 or 4";
  if (ib != 1 && ib != 2 && ib != 4) return "packed weights: index_bytes must be 1, 2 or 4";
  if (ib == 1 && block != 1) return "packed weights: the windowed layout (index_bytes 1) needs block 1";
  if (n == 0 || k == 0 || n > (1u << 24) || k > (1u << 24)) return "packed weights: N and K must be in 1..2^24";
  if (k % (uint32_t)block != 0) return "packed weights: K must be a multiple of the block";
  uint64_t kb = k / (uint32_t)block;
  if (ib == 2 && kb > 65536u) return "packed weights: u16 indices need K/block <= 65536";
  uint64_t n_slices = ((uint64_t)n + 15u) / 16u;
  if ((uint64_t)nslots > n_slices * 16u * kb * 2u) return "packed weights: too many slots";
  uint64_t esz = (vt == kTfLiteFloat32) ? 4u : 1u;
  uint64_t off_sp = 32;
  uint64_t off_perm = pad16(off_sp + 4u * (n_slices + 1));
  uint64_t n_windows = ((uint64_t)k + 31u) / 32u;
  uint64_t off_steps = pad16(off_perm + 4u * 16u * n_slices);
  uint64_t off_col = (ib == 1) ? pad16(off_steps + n_slices * n_windows) : off_steps;
  uint64_t off_val = pad16(off_col + (uint64_t)ib * nslots);
  uint64_t off_sc = pad16(off_val + esz * (uint64_t)block * nslots);
  uint64_t end = (vt == kTfLiteInt8) ? pad16(off_sc + 4ull * n) : off_sc;
  if (end != (uint64_t)bytes) return "packed weights: byte length does not match the header";
  const uint32_t* sp = (const uint32_t*)(p + off_sp);
  if (sp[0] != 0) return "packed weights: slice_ptr[0] must be 0";
  for (uint64_t i = 0; i < n_slices; ++i) {
    if (sp[i + 1] < sp[i]) return "packed weights: slice_ptr must be non-decreasing";
    if ((sp[i + 1] - sp[i]) % 16u != 0) return "packed weights: slice lengths must be multiples of 16 slots";
    if ((uint64_t)(sp[i + 1] - sp[i]) > 16u * kb * 2u) return "packed weights: a slice is longer than 2*K/block steps";
  }
  if (sp[n_slices] != nslots) return "packed weights: slice_ptr[S] must equal nslots";
  const uint32_t* perm = (const uint32_t*)(p + off_perm);
  uint8_t* seen = get_seen(s, n);
  if (seen == NULL) return "out of memory validating packed weights";
  memset(seen, 0, n);
  for (uint64_t i = 0; i < 16u * n_slices; ++i) {
    uint32_t r = perm[i];
    if (r == 0xFFFFFFFFu) continue;
    if (r >= n) return "packed weights: perm entry out of range";
    if (seen[r]) return "packed weights: perm lists an output channel twice";
    seen[r] = 1;
  }
  for (uint32_t r = 0; r < n; ++r)
    if (!seen[r]) return "packed weights: perm misses an output channel";
  if (ib == 1) {
    const uint8_t* st = p + off_steps;
    const uint8_t* oc = p + off_col;
    for (uint64_t sl = 0; sl < n_slices; ++sl) {
      uint64_t i = sp[sl];
      for (uint64_t w = 0; w < n_windows; ++w) {
        uint32_t t = st[sl * n_windows + w];
        if (t > 32u) return "packed weights: more than 32 steps in a window";
        uint64_t e = i + 16u * t;
        if (e > sp[sl + 1]) return "packed weights: window steps exceed the slice";
        for (; i < e; ++i)
          if (oc[i] >= 32u || w * 32u + oc[i] >= k) return "packed weights: window offset out of range";
      }
      if (i != sp[sl + 1]) return "packed weights: window steps do not fill the slice";
    }
  } else {
    for (uint32_t i = 0; i < nslots; ++i) {
      uint32_t c = (ib == 2) ? ((const uint16_t*)(p + off_col))[i] : ((const uint32_t*)(p + off_col))[i];
      if ((uint64_t)c >= kb) return "packed weights: column index out of range";
    }
  }
  if (vt == kTfLiteFloat32) {
    const float* v = (const float*)(p + off_val);
    for (uint64_t i = 0; i < (uint64_t)block * nslots; ++i)
      if (!isfinite(v[i])) return "packed weights: non-finite float value";
  } else {
    const float* sc = (const float*)(p + off_sc);
    for (uint32_t r = 0; r < n; ++r)
      if (!(isfinite(sc[r]) && sc[r] > 0.f)) return "packed weights: per-channel scales must be finite and > 0";
  }
  /* empty lanes must hold only zero values (they are computed, never stored) */
  for (uint64_t sl = 0; sl < n_slices; ++sl) {
    for (int l = 0; l < 16; ++l) {
      if (perm[sl * 16u + (uint64_t)l] != 0xFFFFFFFFu) continue;
      for (uint32_t i = sp[sl] + (uint32_t)l; i < sp[sl + 1]; i += 16u)
        for (int b = 0; b < block; ++b) {
          uint64_t e = (uint64_t)i * (uint64_t)block + (uint64_t)b;
          if (vt == kTfLiteFloat32 ? ((const float*)(p + off_val))[e] != 0.f : ((const int8_t*)(p + off_val))[e] != 0)
            return "packed weights: an empty lane holds non-zero values";
        }
    }
  }
  s->value_type = vt;
  s->block = block;
  s->index_bytes = ib;
  s->n_out = (int)n;
  s->k_in = (int)k;
  s->nslots = nslots;
  s->n_slices = (int)n_slices;
  s->slice_ptr = sp;
  s->perm = perm;
  s->steps = (ib == 1) ? p + off_steps : NULL;
  s->n_windows = (int)n_windows;
  s->col = p + off_col;
  s->values = p + off_val;
  s->scales = (vt == kTfLiteInt8) ? (const float*)(p + off_sc) : NULL;
  return NULL;
}

static uint8_t* tfc_seen_buffer(TfcState* s, size_t n) {
  /* row_sums doubles as the validation bitmap: sized for N int32 >= N bytes */
  if (s->row_state_n < (int)n) {
    free(s->row_sums);
    free(s->multipliers);
    s->row_state_n = 0;
    s->row_sums = (int32_t*)malloc(sizeof(int32_t) * n);
    s->multipliers = (float*)malloc(sizeof(float) * n);
    if (s->row_sums == NULL || s->multipliers == NULL) return NULL;
    s->row_state_n = (int)n;
  }
  return (uint8_t*)s->row_sums;
}

/* Visits every stored weight: pass 0 counts non-zeros per output channel into
 * cnt[n + 1], pass 1 writes each as {feature * T, weight} at off / val [cursor[n]++]
 * (padding slots hold zeros and are dropped). */
static void tfc_csr_pass(const TfcState* s, int pass, uint32_t* cnt, uint32_t* cursor, uint32_t* off, float* val,
                         int T) {
  const float* v = (const float*)s->values;
  const int B = s->block, W = s->n_windows;
  for (int sl = 0; sl < s->n_slices; ++sl) {
    const uint32_t* lane_ch = s->perm + sl * 16;
    uint32_t i = s->slice_ptr[sl];
    for (int w = 0; i < s->slice_ptr[sl + 1]; ++w) {
      const uint32_t e = s->steps ? i + 16u * s->steps[(size_t)sl * W + w] : s->slice_ptr[sl + 1];
      for (; i < e; ++i) {
        const uint32_t r = lane_ch[(i - s->slice_ptr[sl]) % 16u];
        const uint32_t k0 = s->steps ? (uint32_t)w * 32u + ((const uint8_t*)s->col)[i]
                          : (uint32_t)B * (s->index_bytes == 2 ? ((const uint16_t*)s->col)[i] : ((const uint32_t*)s->col)[i]);
        for (int b = 0; b < B; ++b) {
          const float wv = v[(size_t)i * B + b];
          if (wv == 0.f || r == 0xFFFFFFFFu) continue;
          if (pass == 0) {
            cnt[r + 1]++;
          } else {
            off[cursor[r]] = (k0 + (uint32_t)b) * (uint32_t)T;
            val[cursor[r]++] = wv;
          }
        }
      }
    }
  }
}

/* Quad layout (weights pruned in 4x1 blocks: 4 consecutive output channels
 * share their input features): per chunk and quad of channels 4q..4q+3, one
 * entry per input feature any of them uses: its offset in csr_off and the 4
 * weights in csr_val (0 for a channel without it).  Counts entries (fill = 0)
 * or writes them; mark[K] is -1 on entry and on return. */
static uint64_t tfc_quad_pass(TfcState* s, const uint32_t* tptr, const uint32_t* toff, const float* tval,
                              uint32_t T, int chunks, uint32_t chunk_span, int32_t* mark, int fill) {
  const int n = s->n_out, nquads = 4 * ((n + 15) / 16);
  uint64_t total = 0;
  for (int c = 0; c < chunks; ++c)
    for (int qd = 0; qd < nquads; ++qd) {
      if (fill) s->csr_ptr[(size_t)c * nquads + qd] = (uint32_t)total;
      for (int pass = 0; pass < 2; ++pass) /* 0: gather, 1: clear the marks */
        for (int i = 0; i < 4 && 4 * qd + i < n; ++i)
          for (uint32_t j = tptr[4 * qd + i]; j < tptr[4 * qd + i + 1]; ++j) {
            if (toff[j] / chunk_span != (uint32_t)c) continue;
            const uint32_t k = toff[j] / T;
            if (pass == 1) {
              mark[k] = -1;
              continue;
            }
            if (mark[k] < 0) {
              mark[k] = (int32_t)total++;
              if (fill) {
                s->csr_off[mark[k]] = toff[j];
                for (int h = 0; h < 4; ++h) s->csr_val[4u * (uint32_t)mark[k] + (uint32_t)h] = 0.f;
              }
            }
            if (fill) s->csr_val[4u * (uint32_t)mark[k] + (uint32_t)i] += tval[j];
          }
      if (total > 0x3FFFFFFFu) return UINT64_MAX; /* too many: not used */
    }
  if (fill) s->csr_ptr[(size_t)chunks * nquads] = (uint32_t)total;
  return total;
}

/* Float32 weights re-laid for the many-rows AVX-512 kernel (tiles of T rows,
 * input features in chunks of KC so a chunk of the transposed tile stays in L1).
 * Output channels go in groups of 16 (one transposed store each); inside a
 * group they are sorted by their number of non-zeros and paired, and per chunk
 * the two lists of a pair are interleaved and padded to the longer one with
 * zero weights that read row K of the tile (always zero), so one loop with no
 * tail serves two channels.  Pair pq of chunk c: entries
 * csr_ptr[c * pairs + pq] .. csr_ptr[c * pairs + pq + 1], each {offset A,
 * offset B} in csr_off and {weight A, weight B} in csr_val (offset = input
 * feature * T); tile rows of its channels pair_row[2pq], pair_row[2pq + 1]
 * (channel - 16 * group; 16 = no channel).  Returns 0 when out of memory. */
static int tfc_build_csr(TfcState* s, int T, int KC) {
  const int n = s->n_out, groups = (n + 15) / 16, npairs = 8 * groups;
  const int chunks = (s->k_in + KC - 1) / KC;
  tfc_free_csr(s);
  int ok = 0;
  uint32_t* tptr = (uint32_t*)calloc((size_t)n + 1, sizeof(uint32_t));
  uint32_t* cursor = (uint32_t*)malloc(((size_t)n + 1) * sizeof(uint32_t));
  uint32_t* toff = NULL;
  float* tval = NULL;
  if (tptr == NULL || cursor == NULL) goto done;
  tfc_csr_pass(s, 0, tptr, NULL, NULL, NULL, T);
  for (int r = 0; r < n; ++r) tptr[r + 1] += tptr[r];
  memcpy(cursor, tptr, ((size_t)n + 1) * sizeof(uint32_t));
  toff = (uint32_t*)malloc(((size_t)tptr[n] + 1) * sizeof(uint32_t));
  tval = (float*)malloc(((size_t)tptr[n] + 1) * sizeof(float));
  if (toff == NULL || tval == NULL) goto done;
  tfc_csr_pass(s, 1, NULL, cursor, toff, tval, T); /* plain CSR in toff / tval */
  s->csr_ptr = (uint32_t*)malloc(((size_t)chunks * (size_t)npairs + 1) * sizeof(uint32_t));
  s->pair_row = (uint8_t*)malloc(2u * (size_t)npairs);
  s->ytile = (float*)tfc_alloc64((16u * (size_t)groups + 1u) * (size_t)T * sizeof(float));
  if (s->csr_ptr == NULL || s->pair_row == NULL || s->ytile == NULL) goto done;
  for (int g = 0; g < groups; ++g) {
    int ch[16], len[16]; /* tile rows sorted by non-zero count; 16 = none */
    for (int i = 0; i < 16; ++i) {
      const int r = 16 * g + i;
      int j = i;
      const int c = r < n ? (int)(tptr[r + 1] - tptr[r]) : 0;
      for (; j > 0 && len[j - 1] > c; --j) {
        ch[j] = ch[j - 1];
        len[j] = len[j - 1];
      }
      ch[j] = r < n ? i : 16;
      len[j] = c;
    }
    for (int h = 0; h < 16; ++h) s->pair_row[16 * g + h] = (uint8_t)ch[h];
  }
  /* entries of channel row `row` of group g in chunk c: counted, then written */
  const uint32_t zero_row = (uint32_t)s->k_in * (uint32_t)T, chunk_span = (uint32_t)KC * (uint32_t)T;
  for (int pass = 0; pass < 2; ++pass) {
    uint64_t total = 0;
    for (int c = 0; c < chunks; ++c)
      for (int pq = 0; pq < npairs; ++pq) {
        uint32_t cnt[2] = {0, 0};
        for (int h = 0; h < 2; ++h) {
          const int row = s->pair_row[2 * pq + h], r = 16 * (pq / 8) + row;
          if (row == 16) continue;
          for (uint32_t j = tptr[r]; j < tptr[r + 1]; ++j) {
            if (toff[j] / chunk_span != (uint32_t)c) continue;
            if (pass == 1) {
              s->csr_off[2u * (total + cnt[h]) + (uint32_t)h] = toff[j];
              s->csr_val[2u * (total + cnt[h]) + (uint32_t)h] = tval[j];
            }
            cnt[h]++;
          }
        }
        const uint32_t L = cnt[0] > cnt[1] ? cnt[0] : cnt[1];
        if (pass == 1)
          for (int h = 0; h < 2; ++h)
            for (uint32_t j = cnt[h]; j < L; ++j) {
              s->csr_off[2u * (total + j) + (uint32_t)h] = zero_row;
              s->csr_val[2u * (total + j) + (uint32_t)h] = 0.f;
            }
        if (pass == 0) s->csr_ptr[(size_t)c * npairs + pq] = (uint32_t)total;
        total += L;
        if (total > 0x7FFFFFFFu) goto done;
      }
    if (pass == 0) {
      s->csr_ptr[(size_t)chunks * npairs] = (uint32_t)total;
      s->csr_off = (uint32_t*)malloc((2u * total + 1) * sizeof(uint32_t));
      s->csr_val = (float*)malloc((2u * total + 1) * sizeof(float));
      if (s->csr_off == NULL || s->csr_val == NULL) goto done;
    }
  }
  /* 4x1 blocks: one x row feeds 4 channels.  Cost model (per 64-row tile, AVX-512):
   * a quad entry is 16 FMAs, a pair entry 8 FMAs + 8 loads; quads when cheaper. */
  s->csr_quads = 0;
  {
    const uint64_t pair_entries = s->csr_ptr[(size_t)chunks * npairs];
    int32_t* mark = (int32_t*)malloc(((size_t)s->k_in + 1) * sizeof(int32_t));
    if (mark == NULL) goto done;
    for (int k = 0; k <= s->k_in; ++k) mark[k] = -1;
    const uint64_t quads = tfc_quad_pass(s, tptr, toff, tval, (uint32_t)T, chunks, chunk_span, mark, 0);
    if (quads <= 0x3FFFFFFFu && quads * 16u < pair_entries * 9u) {
      free(s->csr_ptr);
      free(s->csr_off);
      free(s->csr_val);
      s->csr_ptr = (uint32_t*)malloc(((size_t)chunks * (size_t)(4 * groups) + 1) * sizeof(uint32_t));
      s->csr_off = (uint32_t*)malloc((quads + 1) * sizeof(uint32_t));
      s->csr_val = (float*)malloc((4u * quads + 1) * sizeof(float));
      if (s->csr_ptr == NULL || s->csr_off == NULL || s->csr_val == NULL) {
        free(mark);
        goto done;
      }
      tfc_quad_pass(s, tptr, toff, tval, (uint32_t)T, chunks, chunk_span, mark, 1);
      s->csr_quads = 1;
    }
    free(mark);
  }
  s->csr_tile = T;
  s->csr_chunks = chunks;
  ok = 1;
done:
  free(tptr);
  free(cursor);
  free(toff);
  free(tval);
  return ok;
}

static void tfc_pick_kernels(TfcState* s); /* below the kernels */

/* ------------------------------------------------------------------ prepare */

static TfLiteStatus tfc_prepare(TfLiteContext* ctx, TfLiteNode* node) {
  TfcState* s = (TfcState*)node->user_data;
  if (s == NULL) TFC_FAIL(ctx, "kernel state missing (out of memory in init)");
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
  const uint8_t* wp = (const uint8_t*)w->data.raw_const;
  if (wp != s->blob_seen || w->bytes != s->blob_bytes_seen) {
    const uint8_t* src = wp;
    free(s->aligned_copy);
    s->aligned_copy = NULL;
    s->blob_seen = NULL;
    if (((uintptr_t)wp & 15u) != 0) {
      s->aligned_copy = (uint8_t*)malloc(w->bytes + 16);
      if (s->aligned_copy == NULL) TFC_FAIL(ctx, "out of memory copying packed weights");
      uint8_t* a = (uint8_t*)(((uintptr_t)s->aligned_copy + 15u) & ~(uintptr_t)15u);
      memcpy(a, wp, w->bytes);
      src = a;
    }
    const char* err = tfc_parse_blob(s, src, w->bytes, tfc_seen_buffer);
    if (err != NULL) TFC_FAIL(ctx, "%s", err);
    s->blob_seen = wp;
    s->blob_bytes_seen = w->bytes;
  }

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
  float fmin = -INFINITY, fmax = INFINITY;
  if (s->activation == 1) fmin = 0.f;
  if (s->activation == 2) { fmin = 0.f; fmax = 6.f; }
  if (s->activation == 3) { fmin = -1.f; fmax = 1.f; }
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
    if (tfc_seen_buffer(s, (size_t)s->n_out) == NULL) TFC_FAIL(ctx, "out of memory");
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
    for (int r = 0; r < s->n_out; ++r)
      s->multipliers[r] = (float)((double)sx * (double)s->scales[r] / (double)sy);
  }

  tfc_pick_kernels(s);

  /* scratch for the tiled paths */
  if (s->rows >= TFC_GATHER_MAX_ROWS) {
    /* transposed input tile xt[W*32][TILE] (float or int32), or xt[K][T] for the CSR kernel */
    size_t need = (size_t)TFC_TILE * (size_t)s->n_windows * 32u * sizeof(float);
    if (x->type == kTfLiteFloat32 && s->rows_f32_csr != NULL && s->rows >= TFC_CSR_MIN_ROWS) {
      /* 64 rows per tile (4 vectors per weight); the features in chunks of 96 rows of
       * the tile (24 KiB, fits L1) unless all K fit in 32 KiB */
      const int T = TFC_CSR_TILE, KC = s->k_in <= 128 ? 128 : 96;
      /* T and KC follow from the packed weights: rebuild only for new weights */
      if ((s->csr_tile == 0 || s->csr_blob != s->blob_seen) && !tfc_build_csr(s, T, KC))
        TFC_FAIL(ctx, "out of memory for the CSR weights");
      s->csr_blob = s->blob_seen;
      if ((size_t)T * ((size_t)s->k_in + 1u) * sizeof(float) > need) need = (size_t)T * ((size_t)s->k_in + 1u) * sizeof(float);
    }
    if (need > s->scratch_bytes) {
      tfc_free64(s->scratch);
      s->scratch_bytes = 0;
      s->scratch = tfc_alloc64(need);
      if (s->scratch == NULL) TFC_FAIL(ctx, "out of memory for the %zu-byte input tile", need);
      s->scratch_bytes = need;
    }
  }

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
  return kTfLiteOk;
}

/* ------------------------------------------------------------- float math */

static inline float tfc_clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* One input row x[K] -> y[N]: per slice, 16 output channels at once. */
#define TFC_DEFINE_ROW_F32(NAME, IDX_T)                                                             \
  TFC_HOT static void NAME(const TfcState* s, const float* x, const float* bias, float* y) {        \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const float* v = (const float*)s->values;                                                       \
    for (int sl = 0; sl < s->n_slices; ++sl) {                                                      \
      const uint32_t b0 = s->slice_ptr[sl], e = s->slice_ptr[sl + 1];                               \
      float acc[16];                                                                                \
      for (int l = 0; l < 16; ++l) acc[l] = 0.f;                                                    \
      if (s->block == 1) {                                                                          \
        for (uint32_t i = b0; i < e; i += 16u) {                                                    \
          const IDX_T* c = col + i;                                                                 \
          const float* w = v + i;                                                                   \
          for (int l = 0; l < 16; ++l) acc[l] += w[l] * x[c[l]];                                    \
        }                                                                                           \
      } else {                                                                                      \
        float a4[16][4];                                                                            \
        for (int l = 0; l < 16; ++l)                                                                \
          for (int q = 0; q < 4; ++q) a4[l][q] = 0.f;                                               \
        for (uint32_t i = b0; i < e; i += 16u) {                                                    \
          for (int l = 0; l < 16; ++l) {                                                            \
            const float* w = v + 4u * (i + (uint32_t)l);                                            \
            const float* xx = x + 4u * (uint32_t)col[i + (uint32_t)l];                              \
            for (int q = 0; q < 4; ++q) a4[l][q] += w[q] * xx[q];                                   \
          }                                                                                         \
        }                                                                                           \
        for (int l = 0; l < 16; ++l) acc[l] = (a4[l][0] + a4[l][1]) + (a4[l][2] + a4[l][3]);        \
      }                                                                                             \
      for (int l = 0; l < 16; ++l) {                                                                \
        const uint32_t r = s->perm[sl * 16 + l];                                                    \
        if (r == 0xFFFFFFFFu) continue;                                                             \
        y[r] = tfc_clampf(acc[l] + (bias ? bias[r] : 0.f), s->fmin, s->fmax);                       \
      }                                                                                             \
    }                                                                                               \
  }
TFC_DEFINE_ROW_F32(tfc_row_f32_u16, uint16_t)
TFC_DEFINE_ROW_F32(tfc_row_f32_u32, uint32_t)


/* xt[c][i] = x[i][c] for the t valid rows; zero for rows t.. and features k..kpad. */
TFC_HOT static void tfc_transpose_f32(const float* x, int t, int k, int kpad, float* xt) {
  for (int c = 0; c < kpad; ++c)
    for (int i = 0; i < TFC_TILE; ++i) xt[(size_t)c * TFC_TILE + i] = (i < t && c < k) ? x[(size_t)i * k + c] : 0.f;
}

/* Windowed layout (B = 1): x is read through 32-feature windows. */
static const float* tfc_window_f32(const TfcState* s, const float* x, int w, float* tail) {
  const int k = s->k_in, start = w * 32;
  if (start + 32 <= k) return x + start;
  for (int i = 0; i < 32; ++i) tail[i] = start + i < k ? x[start + i] : 0.f;
  return tail;
}

TFC_HOT static void tfc_row_f32_win(const TfcState* s, const float* x, const float* bias, float* y) {
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows;
  float tail[32];
  for (int sl = 0; sl < s->n_slices; ++sl) {
    float acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = 0.f;
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const float* xw = tfc_window_f32(s, x, w, tail);
      for (int t = 0; t < st[w]; ++t, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += v[i + l] * xw[col[i + l]];
    }
    for (int l = 0; l < 16; ++l) {
      const uint32_t r = s->perm[sl * 16 + l];
      if (r == 0xFFFFFFFFu) continue;
      y[r] = tfc_clampf(acc[l] + (bias ? bias[r] : 0.f), s->fmin, s->fmax);
    }
  }
}

#if defined(TFC_X86_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* AVX-512F body of tfc_row_f32_win: the window lives in two registers and one
 * vpermt2ps fetches x for all 16 lanes of a step. */
__attribute__((target("avx512f"))) static void tfc_row_f32_win_avx512(const TfcState* s, const float* x,
                                                                     const float* bias, float* y) {
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows;
  float tail[32];
  for (int sl = 0; sl < s->n_slices; ++sl) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const int T = st[w];
      if (T == 0) continue;
      const float* xw = tfc_window_f32(s, x, w, tail);
      const __m512 x0 = _mm512_loadu_ps(xw), x1 = _mm512_loadu_ps(xw + 16);
      int t = 0;
      for (; t + 2 <= T; t += 2, i += 32u) {
        __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + i)));
        __m512i i1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + i + 16)));
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + i), _mm512_permutex2var_ps(x0, i0, x1), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + i + 16), _mm512_permutex2var_ps(x0, i1, x1), a1);
      }
      if (t < T) {
        __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + i)));
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + i), _mm512_permutex2var_ps(x0, i0, x1), a0);
        i += 16u;
      }
    }
    float acc[16];
    _mm512_storeu_ps(acc, _mm512_add_ps(a0, a1));
    for (int l = 0; l < 16; ++l) {
      const uint32_t r = s->perm[sl * 16 + l];
      if (r == 0xFFFFFFFFu) continue;
      y[r] = tfc_clampf(acc[l] + (bias ? bias[r] : 0.f), s->fmin, s->fmax);
    }
  }
}

/* AVX-512F, windowed layout, many input rows (1x1 convolutions): row by row
 * like tfc_row_f32_win_avx512, two rows per pass so each index / weight load
 * serves two permutes.  No transposes; a slice of 16 consecutive output
 * channels (unsorted packing) is written with one masked vector store. */
__attribute__((target("avx512f"))) static void tfc_rows_f32_win_avx512(const TfcState* s, const float* x, int rows,
                                                                      const float* bias, float* y) {
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows, k = s->k_in, n = s->n_out;
  float tail0[32], tail1[32];
  const __m512 lo = _mm512_set1_ps(s->fmin), hi = _mm512_set1_ps(s->fmax);
  for (int sl = 0; sl < s->n_slices; ++sl) {
    const uint32_t* pr = s->perm + sl * 16;
    /* contiguous: lanes 0..cnt-1 are channels r0..r0+cnt-1 and the rest are empty */
    int contiguous = pr[0] < (uint32_t)n;
    const uint32_t r0 = contiguous ? pr[0] : 0;
    const int cnt = contiguous ? (int)((uint32_t)n - r0 < 16u ? (uint32_t)n - r0 : 16u) : 0;
    for (int l = 0; l < 16 && contiguous; ++l)
      contiguous = pr[l] == (l < cnt ? r0 + (uint32_t)l : 0xFFFFFFFFu);
    const __mmask16 m = (__mmask16)((1u << cnt) - 1u);
    const __m512 bb = (contiguous && bias) ? _mm512_maskz_loadu_ps(m, bias + r0) : _mm512_setzero_ps();
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int p = 0; p < rows; p += 2) {
      const int two = p + 1 < rows;
      const float* xa = x + (size_t)p * k;
      const float* xb = two ? xa + k : xa;
      float* ya = y + (size_t)p * n;
      float* yb = ya + n;
      __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
      uint32_t i = s->slice_ptr[sl];
      for (int w = 0; w < W; ++w) {
        const int T = st[w];
        if (T == 0) continue;
        const float* wa = tfc_window_f32(s, xa, w, tail0);
        const float* wb = tfc_window_f32(s, xb, w, tail1);
        const __m512 a0 = _mm512_loadu_ps(wa), a1 = _mm512_loadu_ps(wa + 16);
        const __m512 b0 = _mm512_loadu_ps(wb), b1 = _mm512_loadu_ps(wb + 16);
        for (int t = 0; t < T; ++t, i += 16u) {
          const __m512i id = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + i)));
          const __m512 wv = _mm512_loadu_ps(v + i);
          a = _mm512_fmadd_ps(wv, _mm512_permutex2var_ps(a0, id, a1), a);
          b = _mm512_fmadd_ps(wv, _mm512_permutex2var_ps(b0, id, b1), b);
        }
      }
      if (contiguous) {
        a = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(a, bb), lo), hi);
        _mm512_mask_storeu_ps(ya + r0, m, a);
        if (two) {
          b = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(b, bb), lo), hi);
          _mm512_mask_storeu_ps(yb + r0, m, b);
        }
      } else {
        float accs[2][16];
        _mm512_storeu_ps(accs[0], a);
        _mm512_storeu_ps(accs[1], b);
        for (int l = 0; l < 16; ++l) {
          const uint32_t r = pr[l];
          if (r == 0xFFFFFFFFu) continue;
          const float bv = bias ? bias[r] : 0.f;
          ya[r] = tfc_clampf(accs[0][l] + bv, s->fmin, s->fmax);
          if (two) yb[r] = tfc_clampf(accs[1][l] + bv, s->fmin, s->fmax);
        }
      }
    }
  }
}

/* In-register transpose of a 16 x 16 float block: r[i] lane j -> r[j] lane i. */
__attribute__((target("avx512f"), always_inline)) static inline void tfc_transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xDD);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
  }
}

/* One channel pair, one chunk of features, V*16 rows of the transposed tile:
 * every stored weight is broadcast and multiplies V contiguous vectors of xt
 * (2V independent FMA chains).  The first chunk starts from zero, later ones
 * from the partial sums in ya / yb; the last adds the bias and clamps. */
__attribute__((target("avx512f"), always_inline)) static inline void tfc_csr_pair(
    const TfcState* s, uint32_t b0, uint32_t e, const float* xt, int first, const float* bias2, __m512 lo,
    __m512 hi, float* ya, float* yb, const int V) {
  __m512 a[4], c[4];
  for (int v = 0; v < V; ++v) {
    a[v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(ya + 16 * v);
    c[v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(yb + 16 * v);
  }
  const uint32_t* off = s->csr_off + 2u * b0;
  const float* val = s->csr_val + 2u * b0;
  for (uint32_t j = 0; j < e - b0; ++j, off += 2, val += 2) {
    const __m512 wa = _mm512_set1_ps(val[0]), wb = _mm512_set1_ps(val[1]);
    const float* xa = xt + off[0];
    const float* xb = xt + off[1];
    for (int v = 0; v < V; ++v) {
      a[v] = _mm512_fmadd_ps(wa, _mm512_loadu_ps(xa + 16 * v), a[v]);
      c[v] = _mm512_fmadd_ps(wb, _mm512_loadu_ps(xb + 16 * v), c[v]);
    }
  }
  if (bias2 != NULL) {
    const __m512 va = _mm512_set1_ps(bias2[0]), vb = _mm512_set1_ps(bias2[1]);
    for (int v = 0; v < V; ++v) {
      a[v] = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(a[v], va), lo), hi);
      c[v] = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(c[v], vb), lo), hi);
    }
  }
  for (int v = 0; v < V; ++v) {
    _mm512_storeu_ps(ya + 16 * v, a[v]);
    _mm512_storeu_ps(yb + 16 * v, c[v]);
  }
}

/* One quad of channels (rows ya, ya + T, ya + 2T, ya + 3T of the tile), one
 * chunk: each entry loads V vectors of xt once for 4 broadcast weights. */
__attribute__((target("avx512f"), always_inline)) static inline void tfc_csr_quad(
    const TfcState* s, uint32_t b0, uint32_t e, const float* xt, int first, const float* bias4, __m512 lo,
    __m512 hi, float* ya, int T, const int V) {
  __m512 a[4][4];
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < V; ++v) a[i][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(ya + (size_t)i * T + 16 * v);
  const uint32_t* off = s->csr_off + b0;
  const float* val = s->csr_val + 4u * b0;
  for (uint32_t j = 0; j < e - b0; ++j, val += 4) {
    const float* xr = xt + off[j];
    const __m512 w0 = _mm512_set1_ps(val[0]), w1 = _mm512_set1_ps(val[1]);
    const __m512 w2 = _mm512_set1_ps(val[2]), w3 = _mm512_set1_ps(val[3]);
    for (int v = 0; v < V; ++v) {
      const __m512 xv = _mm512_load_ps(xr + 16 * v);
      a[0][v] = _mm512_fmadd_ps(w0, xv, a[0][v]);
      a[1][v] = _mm512_fmadd_ps(w1, xv, a[1][v]);
      a[2][v] = _mm512_fmadd_ps(w2, xv, a[2][v]);
      a[3][v] = _mm512_fmadd_ps(w3, xv, a[3][v]);
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < V; ++v) {
      __m512 r = a[i][v];
      if (bias4 != NULL) r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, _mm512_set1_ps(bias4[i])), lo), hi);
      _mm512_store_ps(ya + (size_t)i * T + 16 * v, r);
    }
}

/* All pairs (or quads) of group g for chunk c (V = rows of the tile / 16, rounded up). */
__attribute__((target("avx512f"), always_inline)) static inline void tfc_csr_group(
    const TfcState* s, int g, int c, const float* xt, const float* bias, int V, const int first, const int last) {
  const int T = s->csr_tile, npairs = 8 * ((s->n_out + 15) / 16);
  const __m512 lo = _mm512_set1_ps(s->fmin), hi = _mm512_set1_ps(s->fmax);
  if (s->csr_quads) {
    const int nquads = npairs / 2;
    for (int q = 0; q < 4; ++q) {
      const int qd = 4 * g + q, r0 = 4 * qd;
      float b4[4];
      for (int i = 0; i < 4; ++i) b4[i] = (bias && r0 + i < s->n_out) ? bias[r0 + i] : 0.f;
      const float* fin = last ? b4 : NULL;
      const uint32_t b0 = s->csr_ptr[(size_t)c * nquads + qd], e = s->csr_ptr[(size_t)c * nquads + qd + 1];
      float* ya = s->ytile + (size_t)r0 * T;
      switch (V) {
        case 1: tfc_csr_quad(s, b0, e, xt, first, fin, lo, hi, ya, T, 1); break;
        case 2: tfc_csr_quad(s, b0, e, xt, first, fin, lo, hi, ya, T, 2); break;
        case 3: tfc_csr_quad(s, b0, e, xt, first, fin, lo, hi, ya, T, 3); break;
        default: tfc_csr_quad(s, b0, e, xt, first, fin, lo, hi, ya, T, 4); break;
      }
    }
    return;
  }
  for (int q = 0; q < 8; ++q) {
    const int pq = 8 * g + q, ra = s->pair_row[2 * pq], rb = s->pair_row[2 * pq + 1];
    const int ga = ra < 16 ? 16 * g + ra : 16 * (npairs / 8), gb = rb < 16 ? 16 * g + rb : 16 * (npairs / 8);
    float b2[2] = {(bias && ra < 16) ? bias[16 * g + ra] : 0.f, (bias && rb < 16) ? bias[16 * g + rb] : 0.f};
    const float* fin = last ? b2 : NULL;
    const uint32_t b0 = s->csr_ptr[(size_t)c * npairs + pq], e = s->csr_ptr[(size_t)c * npairs + pq + 1];
    float* ya = s->ytile + (size_t)ga * T;
    float* yb = s->ytile + (size_t)gb * T;
    switch (V) {
      case 1: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 1); break;
      case 2: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 2); break;
      case 3: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 3); break;
      default: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 4); break;
    }
  }
}

/* Rows p0..p0+t-1, channels of group g: ytile (transposed) -> y (NHWC). */
__attribute__((target("avx512f"))) static void tfc_csr_store(const TfcState* s, int g, int t, float* y) {
  const int T = s->csr_tile, N = s->n_out, o0 = 16 * g, nb = N - o0 < 16 ? N - o0 : 16;
  const __mmask16 nm = (__mmask16)((1u << nb) - 1u);
  const float* yt = s->ytile + (size_t)o0 * T;
  for (int pb = 0; pb < t; pb += 16) {
    __m512 r[16];
    for (int i = 0; i < 16; ++i) r[i] = i < nb ? _mm512_load_ps(yt + (size_t)i * T + pb) : _mm512_setzero_ps();
    tfc_transpose16(r);
    const int qn = t - pb < 16 ? t - pb : 16;
    if (nb == 16)
      for (int q = 0; q < qn; ++q) _mm512_storeu_ps(y + (size_t)(pb + q) * N + o0, r[q]);
    else
      for (int q = 0; q < qn; ++q) _mm512_mask_storeu_ps(y + (size_t)(pb + q) * N + o0, nm, r[q]);
  }
}

/* AVX-512F, float32, many input rows (1x1 convolutions, batched FC), CSR
 * weights (sparse x dense product of Elsen et al. 2020 on NHWC data): a tile of
 * T rows is transposed to xt[K][T] in 16 x 16 register blocks, each output
 * channel accumulates T contiguous outputs, and every 16 channels are
 * transposed back and stored as 16-channel row segments. */
__attribute__((target("avx512f"))) static void tfc_rows_f32_csr_avx512(const TfcState* s, const float* x, int rows,
                                                                      const float* bias, float* y) {
  const int K = s->k_in, N = s->n_out, T = s->csr_tile;
  float* xt = (float*)s->scratch;
  memset(xt + (size_t)K * T, 0, (size_t)T * sizeof(float)); /* the padding entries' row */
  for (int p0 = 0; p0 < rows; p0 += T) {
    const int t = rows - p0 < T ? rows - p0 : T;
    const int V = (t + 15) / 16;
    for (int c0 = 0; c0 < K; c0 += 16) {
      const int kc = K - c0 < 16 ? K - c0 : 16;
      const __mmask16 km = (__mmask16)((1u << kc) - 1u);
      for (int pb = 0; pb < 16 * V; pb += 16) {
        __m512 r[16];
        for (int q = 0; q < 16; ++q)
          r[q] = pb + q < t ? _mm512_maskz_loadu_ps(km, x + (size_t)(p0 + pb + q) * K + c0) : _mm512_setzero_ps();
        tfc_transpose16(r);
        for (int i = 0; i < kc; ++i) _mm512_storeu_ps(xt + (size_t)(c0 + i) * T + pb, r[i]);
      }
    }
    const int G = (N + 15) / 16;
    if (s->csr_chunks == 1) {
      for (int g = 0; g < G; ++g) {
        tfc_csr_group(s, g, 0, xt, bias, V, 1, 1);
        tfc_csr_store(s, g, t, y + (size_t)p0 * N);
      }
    } else {
      for (int c = 0; c + 1 < s->csr_chunks; ++c)
        for (int g = 0; g < G; ++g) tfc_csr_group(s, g, c, xt, bias, V, c == 0, 0);
      for (int g = 0; g < G; ++g) {
        tfc_csr_group(s, g, s->csr_chunks - 1, xt, bias, V, 0, 1);
        tfc_csr_store(s, g, t, y + (size_t)p0 * N);
      }
    }
  }
}
#endif


/* -------------------------------------------------------------- int8 math */

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

#define TFC_DEFINE_ROW_I8(NAME, IDX_T)                                                              \
  TFC_HOT static void NAME(const TfcState* s, const int8_t* x, const int32_t* bias, int8_t* y) {    \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const int8_t* v = (const int8_t*)s->values;                                                     \
    const int B = s->block;                                                                         \
    for (int sl = 0; sl < s->n_slices; ++sl) {                                                      \
      const uint32_t b0 = s->slice_ptr[sl], e = s->slice_ptr[sl + 1];                               \
      int32_t acc[16];                                                                              \
      for (int l = 0; l < 16; ++l) acc[l] = 0;                                                      \
      if (B == 1) {                                                                                 \
        for (uint32_t i = b0; i < e; i += 16u)                                                      \
          for (int l = 0; l < 16; ++l) acc[l] += (int32_t)v[i + l] * (int32_t)x[col[i + l]];        \
      } else {                                                                                      \
        for (uint32_t i = b0; i < e; i += 16u)                                                      \
          for (int l = 0; l < 16; ++l) {                                                            \
            const int8_t* w = v + 4u * (i + (uint32_t)l);                                           \
            const int8_t* xx = x + 4u * (uint32_t)col[i + (uint32_t)l];                             \
            acc[l] += w[0] * xx[0] + w[1] * xx[1] + w[2] * xx[2] + w[3] * xx[3];                    \
          }                                                                                         \
      }                                                                                             \
      for (int l = 0; l < 16; ++l) {                                                                \
        const uint32_t r = s->perm[sl * 16 + l];                                                    \
        if (r == 0xFFFFFFFFu) continue;                                                             \
        y[r] = tfc_requant(s, r, (int64_t)acc[l] + (bias ? bias[r] : 0) - (int64_t)s->zp_in * s->row_sums[r]);        \
      }                                                                                             \
    }                                                                                               \
  }
TFC_DEFINE_ROW_I8(tfc_row_i8_u16, uint16_t)
TFC_DEFINE_ROW_I8(tfc_row_i8_u32, uint32_t)


TFC_HOT static void tfc_transpose_i8(const int8_t* x, int t, int k, int kpad, int32_t* xt) {
  for (int c = 0; c < kpad; ++c)
    for (int i = 0; i < TFC_TILE; ++i) xt[(size_t)c * TFC_TILE + i] = (i < t && c < k) ? x[(size_t)i * k + c] : 0;
}


TFC_HOT static void tfc_row_i8_win(const TfcState* s, const int8_t* x, const int32_t* bias, int8_t* y) {
  const uint8_t* col = (const uint8_t*)s->col;
  const int8_t* v = (const int8_t*)s->values;
  const int W = s->n_windows, k = s->k_in;
  int8_t tail[32];
  for (int sl = 0; sl < s->n_slices; ++sl) {
    int32_t acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = 0;
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const int8_t* xw = x + w * 32;
      if (w * 32 + 32 > k) {
        for (int q = 0; q < 32; ++q) tail[q] = w * 32 + q < k ? x[w * 32 + q] : 0;
        xw = tail;
      }
      for (int q = 0; q < st[w]; ++q, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += (int32_t)v[i + l] * (int32_t)xw[col[i + l]];
    }
    for (int l = 0; l < 16; ++l) {
      const uint32_t r = s->perm[sl * 16 + l];
      if (r == 0xFFFFFFFFu) continue;
      y[r] = tfc_requant(s, r, (int64_t)acc[l] + (bias ? bias[r] : 0) - (int64_t)s->zp_in * s->row_sums[r]);
    }
  }
}



#if defined(TFC_X86_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
/* AVX-512F body of tfc_row_i8_win: the int8 window is widened to 32 int32 in
 * two registers; one vpermt2d fetches x for 16 lanes, weights are widened from
 * 16 bytes; 32-bit multiply-add (exact: |acc| < 2^31 for K < 2^17). */
__attribute__((target("avx512f"))) static void tfc_row_i8_win_avx512(const TfcState* s, const int8_t* x,
                                                                    const int32_t* bias, int8_t* y) {
  const uint8_t* col = (const uint8_t*)s->col;
  const int8_t* v = (const int8_t*)s->values;
  const int W = s->n_windows, k = s->k_in;
  int8_t tail[32];
  for (int sl = 0; sl < s->n_slices; ++sl) {
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const int T = st[w];
      if (T == 0) continue;
      const int8_t* xw = x + w * 32;
      if (w * 32 + 32 > k) {
        for (int q = 0; q < 32; ++q) tail[q] = w * 32 + q < k ? x[w * 32 + q] : 0;
        xw = tail;
      }
      const __m512i x0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)xw));
      const __m512i x1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(xw + 16)));
      int t = 0;
      for (; t + 2 <= T; t += 2, i += 32u) {
        __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + i)));
        __m512i i1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + i + 16)));
        __m512i w0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(v + i)));
        __m512i w1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(v + i + 16)));
        a0 = _mm512_add_epi32(a0, _mm512_mullo_epi32(w0, _mm512_permutex2var_epi32(x0, i0, x1)));
        a1 = _mm512_add_epi32(a1, _mm512_mullo_epi32(w1, _mm512_permutex2var_epi32(x0, i1, x1)));
      }
      if (t < T) {
        __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + i)));
        __m512i w0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(v + i)));
        a0 = _mm512_add_epi32(a0, _mm512_mullo_epi32(w0, _mm512_permutex2var_epi32(x0, i0, x1)));
        i += 16u;
      }
    }
    int32_t acc[16];
    _mm512_storeu_si512((void*)acc, _mm512_add_epi32(a0, a1));
    for (int l = 0; l < 16; ++l) {
      const uint32_t r = s->perm[sl * 16 + l];
      if (r == 0xFFFFFFFFu) continue;
      y[r] = tfc_requant(s, r, (int64_t)acc[l] + (bias ? bias[r] : 0) - (int64_t)s->zp_in * s->row_sums[r]);
    }
  }
}
#endif

/* ---------------------------------------------------------- tiled kernels
 * TFC_TILE input rows at once (1x1 convolutions, batched FC): the tile is
 * transposed to xt[K][TFC_TILE], so every stored weight multiplies one
 * contiguous vector of TFC_TILE inputs, and the 16 lanes of a slice keep 16
 * independent vector accumulators (no FMA latency chain).  GCC/Clang vector
 * extensions map the vectors to AVX-512 / AVX2 / NEON registers. */
#if !defined(__GNUC__) && !defined(__clang__)
#error "tfcompress sparse kernels need GCC or Clang (vector extensions)"
#endif
typedef float tfc_vf __attribute__((vector_size(TFC_TILE * sizeof(float))));
typedef int32_t tfc_vi __attribute__((vector_size(TFC_TILE * sizeof(int32_t))));

static inline tfc_vf tfc_ldf(const float* p) {
  tfc_vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline tfc_vi tfc_ldi(const int32_t* p) {
  tfc_vi v;
  memcpy(&v, p, sizeof v);
  return v;
}

static void tfc_init_acc_f32(const TfcState* s, int sl, const float* bias, tfc_vf* acc) {
  for (int l = 0; l < 16; ++l) {
    const uint32_t r = s->perm[sl * 16 + l];
    const float b = (bias != NULL && r != 0xFFFFFFFFu) ? bias[r] : 0.f;
    acc[l] = (tfc_vf){0} + b;
  }
}

/* Clamped accumulators of one slice go straight to the output rows. */
static void tfc_store_tile_f32(const TfcState* s, int sl, const tfc_vf* acc, float* y, int t, int ystride) {
  for (int l = 0; l < 16; ++l) {
    const uint32_t r = s->perm[sl * 16 + l];
    if (r == 0xFFFFFFFFu) continue;
    for (int i = 0; i < t; ++i) y[(size_t)i * ystride + r] = tfc_clampf(acc[l][i], s->fmin, s->fmax);
  }
}

#define TFC_DEFINE_TILE_F32(NAME, IDX_T)                                                            \
  TFC_HOT static void NAME(const TfcState* s, const float* xt, const float* bias, float* y, int t, \
                           int ystride) {                                                           \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const float* v = (const float*)s->values;                                                       \
    for (int sl = 0; sl < s->n_slices; ++sl) {                                                      \
      tfc_vf acc[16];                                                                               \
      tfc_init_acc_f32(s, sl, bias, acc);                                                           \
      const uint32_t e = s->slice_ptr[sl + 1];                                                      \
      if (s->block == 1) {                                                                          \
        for (uint32_t i = s->slice_ptr[sl]; i < e; i += 16u)                                        \
          for (int l = 0; l < 16; ++l)                                                              \
            acc[l] += v[i + l] * tfc_ldf(xt + (size_t)col[i + l] * TFC_TILE);                       \
      } else {                                                                                      \
        for (uint32_t i = s->slice_ptr[sl]; i < e; i += 16u)                                        \
          for (int l = 0; l < 16; ++l) {                                                            \
            const float* w = v + 4u * (i + (uint32_t)l);                                            \
            const float* xr = xt + (size_t)col[i + l] * 4u * TFC_TILE;                              \
            acc[l] += w[0] * tfc_ldf(xr) + w[1] * tfc_ldf(xr + TFC_TILE) +                          \
                      w[2] * tfc_ldf(xr + 2 * TFC_TILE) + w[3] * tfc_ldf(xr + 3 * TFC_TILE);        \
          }                                                                                         \
      }                                                                                             \
      tfc_store_tile_f32(s, sl, acc, y, t, ystride);                                                \
    }                                                                                               \
  }
TFC_DEFINE_TILE_F32(tfc_tile_f32_u16, uint16_t)
TFC_DEFINE_TILE_F32(tfc_tile_f32_u32, uint32_t)

TFC_HOT static void tfc_tile_f32_win(const TfcState* s, const float* xt, const float* bias, float* y, int t,
                                     int ystride) {
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows;
  for (int sl = 0; sl < s->n_slices; ++sl) {
    tfc_vf acc[16];
    tfc_init_acc_f32(s, sl, bias, acc);
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const float* xw = xt + (size_t)w * 32 * TFC_TILE;
      for (int q = 0; q < st[w]; ++q, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += v[i + l] * tfc_ldf(xw + (size_t)col[i + l] * TFC_TILE);
    }
    tfc_store_tile_f32(s, sl, acc, y, t, ystride);
  }
}

static void tfc_store_tile_i8(const TfcState* s, int sl, const tfc_vi* acc, const int32_t* bias, int8_t* y,
                              int t, int ystride) {
  for (int l = 0; l < 16; ++l) {
    const uint32_t r = s->perm[sl * 16 + l];
    if (r == 0xFFFFFFFFu) continue;
    const int64_t off = (int64_t)(bias ? bias[r] : 0) - (int64_t)s->zp_in * s->row_sums[r];
    for (int i = 0; i < t; ++i) y[(size_t)i * ystride + r] = tfc_requant(s, r, acc[l][i] + off);
  }
}

#define TFC_DEFINE_TILE_I8(NAME, IDX_T)                                                             \
  TFC_HOT static void NAME(const TfcState* s, const int32_t* xt, const int32_t* bias, int8_t* y,   \
                           int t, int ystride) {                                                    \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const int8_t* v = (const int8_t*)s->values;                                                     \
    const int B = s->block;                                                                         \
    for (int sl = 0; sl < s->n_slices; ++sl) {                                                      \
      tfc_vi acc[16];                                                                               \
      for (int l = 0; l < 16; ++l) acc[l] = (tfc_vi){0};                                            \
      const uint32_t e = s->slice_ptr[sl + 1];                                                      \
      for (uint32_t i = s->slice_ptr[sl]; i < e; i += 16u)                                          \
        for (int l = 0; l < 16; ++l)                                                                \
          for (int b = 0; b < B; ++b)                                                               \
            acc[l] += (int32_t)v[(size_t)(i + l) * B + b] *                                         \
                      tfc_ldi(xt + ((size_t)col[i + l] * B + b) * TFC_TILE);                        \
      tfc_store_tile_i8(s, sl, acc, bias, y, t, ystride);                                           \
    }                                                                                               \
  }
TFC_DEFINE_TILE_I8(tfc_tile_i8_u16, uint16_t)
TFC_DEFINE_TILE_I8(tfc_tile_i8_u32, uint32_t)

TFC_HOT static void tfc_tile_i8_win(const TfcState* s, const int32_t* xt, const int32_t* bias, int8_t* y, int t,
                                    int ystride) {
  const uint8_t* col = (const uint8_t*)s->col;
  const int8_t* v = (const int8_t*)s->values;
  const int W = s->n_windows;
  for (int sl = 0; sl < s->n_slices; ++sl) {
    tfc_vi acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = (tfc_vi){0};
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const int32_t* xw = xt + (size_t)w * 32 * TFC_TILE;
      for (int q = 0; q < st[w]; ++q, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += (int32_t)v[i + l] * tfc_ldi(xw + (size_t)col[i + l] * TFC_TILE);
    }
    tfc_store_tile_i8(s, sl, acc, bias, y, t, ystride);
  }
}

static void tfc_pick_kernels(TfcState* s) {
  s->row_f32_win = tfc_row_f32_win;
  s->row_i8_win = tfc_row_i8_win;
  s->rows_f32_win = NULL;
  s->rows_f32_csr = NULL;
#if defined(TFC_X86_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f")) {
    s->rows_f32_win = tfc_rows_f32_win_avx512;
    s->rows_f32_csr = tfc_rows_f32_csr_avx512;
    s->row_f32_win = tfc_row_f32_win_avx512;
    s->row_i8_win = tfc_row_i8_win_avx512;
  }
#endif
}

/* ------------------------------------------------------------------- invoke */

static TfLiteStatus tfc_invoke(TfLiteContext* ctx, TfLiteNode* node) {
  TfcState* s = (TfcState*)node->user_data;
  if (s == NULL || s->blob_seen == NULL) TFC_FAIL(ctx, "Invoke before a successful Prepare");
  const TfLiteTensor* x = TFC_TENSOR(ctx, node->inputs->data[0]);
  const TfLiteTensor* w = TFC_TENSOR(ctx, node->inputs->data[1]);
  const int ib = node->inputs->size == 3 ? node->inputs->data[2] : -1;
  TfLiteTensor* y = TFC_TENSOR(ctx, node->outputs->data[0]);
  if ((const uint8_t*)w->data.raw_const != s->blob_seen || w->bytes != s->blob_bytes_seen)
    TFC_FAIL(ctx, "packed weights changed after Prepare");
  if (x->data.raw_const == NULL || y->data.data == NULL) TFC_FAIL(ctx, "input or output has no buffer");
  const int P = s->rows, K = s->k_in, N = s->n_out;
  const int u16 = s->index_bytes == 2, win = s->index_bytes == 1;
  if (x->type == kTfLiteFloat32) {
    const float* xp = x->data.f;
    const float* bias = ib >= 0 ? TFC_TENSOR(ctx, ib)->data.f : NULL;
    float* yp = y->data.f;
    if (P < TFC_GATHER_MAX_ROWS) {
      for (int p = 0; p < P; ++p) {
        if (win) s->row_f32_win(s, xp + (size_t)p * K, bias, yp + (size_t)p * N);
        else if (u16) tfc_row_f32_u16(s, xp + (size_t)p * K, bias, yp + (size_t)p * N);
        else tfc_row_f32_u32(s, xp + (size_t)p * K, bias, yp + (size_t)p * N);
      }
    } else if (P >= TFC_CSR_MIN_ROWS && s->csr_tile != 0) {
      s->rows_f32_csr(s, xp, P, bias, yp);
    } else if (win && s->rows_f32_win != NULL) {
      s->rows_f32_win(s, xp, P, bias, yp);
    } else {
      float* xt = (float*)s->scratch;
      for (int p0 = 0; p0 < P; p0 += TFC_TILE) {
        const int t = P - p0 < TFC_TILE ? P - p0 : TFC_TILE;
        tfc_transpose_f32(xp + (size_t)p0 * K, t, K, s->n_windows * 32, xt);
        if (win) tfc_tile_f32_win(s, xt, bias, yp + (size_t)p0 * N, t, N);
        else if (u16) tfc_tile_f32_u16(s, xt, bias, yp + (size_t)p0 * N, t, N);
        else tfc_tile_f32_u32(s, xt, bias, yp + (size_t)p0 * N, t, N);
      }
    }
  } else {
    const int8_t* xp = x->data.int8;
    const int32_t* bias = ib >= 0 ? TFC_TENSOR(ctx, ib)->data.i32 : NULL;
    int8_t* yp = y->data.int8;
    if (P < TFC_GATHER_MAX_ROWS) {
      for (int p = 0; p < P; ++p) {
        if (win) s->row_i8_win(s, xp + (size_t)p * K, bias, yp + (size_t)p * N);
        else if (u16) tfc_row_i8_u16(s, xp + (size_t)p * K, bias, yp + (size_t)p * N);
        else tfc_row_i8_u32(s, xp + (size_t)p * K, bias, yp + (size_t)p * N);
      }
    } else {
      int32_t* xt = (int32_t*)s->scratch;
      for (int p0 = 0; p0 < P; p0 += TFC_TILE) {
        const int t = P - p0 < TFC_TILE ? P - p0 : TFC_TILE;
        tfc_transpose_i8(xp + (size_t)p0 * K, t, K, s->n_windows * 32, xt);
        if (win) tfc_tile_i8_win(s, xt, bias, yp + (size_t)p0 * N, t, N);
        else if (u16) tfc_tile_i8_u16(s, xt, bias, yp + (size_t)p0 * N, t, N);
        else tfc_tile_i8_u32(s, xt, bias, yp + (size_t)p0 * N, t, N);
      }
    }
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
