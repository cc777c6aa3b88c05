/* tfcompress sparse kernels: options and packed-weight format (TFCS), validation.
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
#include "tfc_internal.h"

/* ------------------------------------------------------- packed weights */

static uint32_t rd_u32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint16_t rd_u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint64_t pad16(uint64_t x) { return (x + 15u) & ~(uint64_t)15u; }

/* Validates the packed weights at `p` (16-byte aligned, `bytes` long) and
 * fills the pointers of `s`.  Returns NULL on success, else a message.
 * The channel bitmap lives in s->row_sums (tfc_seen_buffer). */
const char* tfc_parse_blob(TfcState* s, const uint8_t* p, size_t bytes) {
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
  uint8_t* seen = tfc_seen_buffer(s, n);
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

uint8_t* tfc_seen_buffer(TfcState* s, size_t n) {
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
