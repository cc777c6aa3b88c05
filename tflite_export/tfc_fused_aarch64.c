/* tfcompress: NEON int8 3x3 depthwise row of TFC_SPARSE_INVERTED_RESIDUAL (aarch64 only; the
 * same integers as tfc_dw_row_portable in tfc_fused_kernels.c and tfc_dw_row_avx512 on x86).
 *
 * 16 channels per step.  Each tap is one 16-byte load of int8 inputs multiplied by the tap's 16
 * int8 weights with `smull` / `smull2` (int16 products, |x * w| <= 2^14); when no depthwise weight
 * is -128 (TFLite's symmetric int8 weights are in [-127, 127]; checked in Prepare) two taps'
 * products are summed in int16 with `smlal` / `smlal2` (|sum| <= 2 * 128 * 127 = 32512: exact)
 * before `saddw` / `saddw2` widen them into the four int32 accumulators; with a -128 every tap is
 * widened alone.  The input zero point is folded into the bias in Prepare (acc = bias - zp *
 * sum w + sum x * w) and padding taps read a row of zero-point bytes, so every tap is a plain
 * load.  Channel groups are the outer loop: a group's 9 weight registers, bias and multipliers
 * stay in registers for the whole output row; interior columns (all taps inside the row) run
 * a loop of plain strided loads, the border columns pick each tap's address (input or the
 * zero-point row).  Requantization as XNNPACK's fp32 path (and tfc_dw_row_portable):
 * float32(acc) * m[c] rounded to nearest even (`fcvtns`), saturating narrows, + zero point,
 * clamped to the activation's range (integer bounds: the same as clamping first).  A last group
 * of fewer than 16 channels goes through 16-byte copies (no read or write past a row).
 * Intrinsics only (arm_neon.h): GCC and Clang both emit the vector code
 * (tests/native/test_aarch64.py checks the disassembly).
 */
#include "tfc_internal.h"

#if TFC_HAVE_AARCH64
#include <arm_neon.h>

/* dw_wp holds the weights as int8 [G][9][16] here (the x86 file keeps its int16 pair layout in
 * the same field); dw_bp the folded bias [G * 16], dw_mp the multipliers [G * 16], dw_zrow
 * G * 16 bytes of the input zero point.  dw_name says which: "dw_neon" (pairs) / "dw_neon_w128". */

static inline __attribute__((always_inline)) int8x16_t tfc_dw_ld(const int8_t* p, int n) {
  if (n == 16) return vld1q_s8(p);
  int8_t t[16] = {0};
  memcpy(t, p, (size_t)n);
  return vld1q_s8(t);
}

static inline __attribute__((always_inline)) void tfc_dw_pair(int32x4_t* a, int8x16_t x0, int8x16_t w0, int8x16_t x1,
                                                               int8x16_t w1) {
  int16x8_t lo = vmull_s8(vget_low_s8(x0), vget_low_s8(w0));
  int16x8_t hi = vmull_high_s8(x0, w0);
  lo = vmlal_s8(lo, vget_low_s8(x1), vget_low_s8(w1));
  hi = vmlal_high_s8(hi, x1, w1);
  a[0] = vaddw_s16(a[0], vget_low_s16(lo));
  a[1] = vaddw_high_s16(a[1], lo);
  a[2] = vaddw_s16(a[2], vget_low_s16(hi));
  a[3] = vaddw_high_s16(a[3], hi);
}

static inline __attribute__((always_inline)) void tfc_dw_one(int32x4_t* a, int8x16_t x0, int8x16_t w0) {
  const int16x8_t lo = vmull_s8(vget_low_s8(x0), vget_low_s8(w0));
  const int16x8_t hi = vmull_high_s8(x0, w0);
  a[0] = vaddw_s16(a[0], vget_low_s16(lo));
  a[1] = vaddw_high_s16(a[1], lo);
  a[2] = vaddw_s16(a[2], vget_low_s16(hi));
  a[3] = vaddw_high_s16(a[3], hi);
}

/* Per-group constants of the pixel loop: weights, zero point and clamp in registers for the
 * whole row; bias and multipliers re-read per pixel (2 x 64 bytes: fewer live registers, no
 * spills with GCC 12). */
typedef struct {
  int8x16_t w[9];
  const int32_t* b;
  const float* m;
  int16x8_t zo;
  int8x16_t lo, hi;
} TfcDwGroup;

/* One output pixel of a group from its 9 tap inputs: MACs, requantization (float32(acc) * m,
 * round to nearest even, saturating narrows, + zero point, clamp to the activation's range: the
 * same integers as clamping in float first, the bounds being integers), 16 int8 outputs. */
static inline __attribute__((always_inline)) int8x16_t tfc_dw_px(const TfcDwGroup* g, const int8x16_t* x,
                                                                  const int pair) {
  int32x4_t a[4] = {vld1q_s32(g->b), vld1q_s32(g->b + 4), vld1q_s32(g->b + 8), vld1q_s32(g->b + 12)};
  if (pair) {
    tfc_dw_pair(a, x[0], g->w[0], x[1], g->w[1]);
    tfc_dw_pair(a, x[2], g->w[2], x[3], g->w[3]);
    tfc_dw_pair(a, x[4], g->w[4], x[5], g->w[5]);
    tfc_dw_pair(a, x[6], g->w[6], x[7], g->w[7]);
    tfc_dw_one(a, x[8], g->w[8]);
  } else {
    tfc_dw_one(a, x[0], g->w[0]); /* written out: Clang 14 kept a loop over a stack array */
    tfc_dw_one(a, x[1], g->w[1]);
    tfc_dw_one(a, x[2], g->w[2]);
    tfc_dw_one(a, x[3], g->w[3]);
    tfc_dw_one(a, x[4], g->w[4]);
    tfc_dw_one(a, x[5], g->w[5]);
    tfc_dw_one(a, x[6], g->w[6]);
    tfc_dw_one(a, x[7], g->w[7]);
    tfc_dw_one(a, x[8], g->w[8]);
  }
  const int32x4_t q0 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[0]), vld1q_f32(g->m + 0)));
  const int32x4_t q1 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[1]), vld1q_f32(g->m + 4)));
  const int32x4_t q2 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[2]), vld1q_f32(g->m + 8)));
  const int32x4_t q3 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[3]), vld1q_f32(g->m + 12)));
  const int16x8_t h0 = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q0), q1), g->zo);
  const int16x8_t h1 = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q2), q3), g->zo);
  const int8x16_t r = vqmovn_high_s16(vqmovn_s16(h0), h1);
  return vminq_s8(vmaxq_s8(r, g->lo), g->hi);
}

/* One 16-channel group of one output row; n = channels of the group (16, or the tail). */
static inline __attribute__((always_inline)) void tfc_dw_group(const TfcFused* f, const int8_t* const base[3],
                                                                const size_t cs[3], int c0, int n, int8_t* out,
                                                                const int pair) {
  const int C = f->Ce, W = f->W, st = f->stride, pl = f->pl, Wo = f->Wo;
  const int8_t* wg = (const int8_t*)f->dw_wp + (size_t)(c0 / 16) * 144u;
  TfcDwGroup g;
  for (int t = 0; t < 9; ++t) g.w[t] = vld1q_s8(wg + 16 * t);
  g.b = f->dw_bp + c0;
  g.m = f->dw_mp + c0;
  g.zo = vdupq_n_s16((int16_t)f->zp_d);
  g.lo = vdupq_n_s8((int8_t)f->dw_qmin);
  g.hi = vdupq_n_s8((int8_t)f->dw_qmax);
  const int8_t* z = f->dw_zrow + c0;
  /* interior columns [ow_lo, ow_hi): all three taps of a row inside it (plain strided loads) */
  int ow_lo = (pl + st - 1) / st, ow_hi = W - 3 + pl >= 0 ? (W - 3 + pl) / st + 1 : 0;
  if (ow_hi > Wo) ow_hi = Wo;
  if (ow_lo > ow_hi) ow_lo = ow_hi;
  if (n < 16) ow_lo = ow_hi = 0; /* tail group: every load through a copy */
  for (int ow = 0; ow < Wo; ++ow) {
    if (ow == ow_lo && ow_lo < ow_hi) { /* interior: pointers advance by stride columns */
      const int8_t* p0 = base[0] + (size_t)(ow * st - pl) * cs[0] + c0;
      const int8_t* p1 = base[1] + (size_t)(ow * st - pl) * cs[1] + c0;
      const int8_t* p2 = base[2] + (size_t)(ow * st - pl) * cs[2] + c0;
      const size_t c0s = cs[0], c1s = cs[1], c2s = cs[2];
      int8_t* o = out + (size_t)ow * C + c0;
      for (; ow < ow_hi; ++ow) {
        int8x16_t x[9];
        x[0] = vld1q_s8(p0);
        x[1] = vld1q_s8(p0 + c0s);
        x[2] = vld1q_s8(p0 + 2 * c0s);
        x[3] = vld1q_s8(p1);
        x[4] = vld1q_s8(p1 + c1s);
        x[5] = vld1q_s8(p1 + 2 * c1s);
        x[6] = vld1q_s8(p2);
        x[7] = vld1q_s8(p2 + c2s);
        x[8] = vld1q_s8(p2 + 2 * c2s);
        vst1q_s8(o, tfc_dw_px(&g, x, pair));
        p0 += (size_t)st * c0s;
        p1 += (size_t)st * c1s;
        p2 += (size_t)st * c2s;
        o += C;
      }
      if (ow >= Wo) break;
    }
    const int iw0 = ow * st - pl;
    int8x16_t x[9];
    for (int kh = 0; kh < 3; ++kh)
      for (int kw = 0; kw < 3; ++kw) {
        const int iw = iw0 + kw;
        const int8_t* p = (unsigned)iw < (unsigned)W ? base[kh] + (size_t)iw * cs[kh] + c0 : z;
        x[kh * 3 + kw] = tfc_dw_ld(p, n);
      }
    const int8x16_t r = tfc_dw_px(&g, x, pair);
    int8_t* o = out + (size_t)ow * C + c0;
    if (n == 16) {
      vst1q_s8(o, r);
    } else {
      int8_t t[16];
      vst1q_s8(t, r);
      memcpy(o, t, (size_t)n);
    }
  }
}

static inline __attribute__((always_inline)) void tfc_dw_row_neon_impl(const TfcFused* f, const int8_t* const rows[3],
                                                                        int8_t* out, int g0, int g1, const int pair) {
  const int C = f->Ce;
  const int8_t* base[3];
  size_t cs[3];
  tfc_dw_row_bases(f, rows, base, cs);
  const int c1 = 16 * g1 < C ? 16 * g1 : C;
  int c0 = 16 * g0;
  for (; c0 + 16 <= c1; c0 += 16) tfc_dw_group(f, base, cs, c0, 16, out, pair); /* n = 16: the specialized code */
  if (c0 < c1) tfc_dw_group(f, base, cs, c0, c1 - c0, out, pair);
}

static void tfc_dw_row_neon(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias, int8_t* out,
                            int32_t* acc, int g0, int g1) {
  (void)bias; /* folded into f->dw_bp in Prepare */
  (void)acc;
  tfc_dw_row_neon_impl(f, rows, out, g0, g1, 1);
}

static void tfc_dw_row_neon_w128(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias, int8_t* out,
                                 int32_t* acc, int g0, int g1) {
  (void)bias;
  (void)acc;
  tfc_dw_row_neon_impl(f, rows, out, g0, g1, 0);
}

/* ------------------------------------------------------------ sdot (ARMv8.2 dotprod)
 * The taps of one kernel column are summed by one `sdot`: an input column (the 3 input rows at
 * one column, 16 channels) is interleaved once into 4 registers of 4 channels x {row 0, row 1,
 * row 2, any} bytes (`zip1` / `zip2` of bytes, then of halfwords: 8 permutes), and each output
 * pixel adds sdot(column kw, weights of kernel column kw) for kw = 0..2 to its 4 accumulators
 * (12 `sdot` per pixel x 16 channels instead of 9 x 8 widening multiply-adds).  The weights are
 * re-laid out in Prepare as [G][3 kw][4 channel quads][4 channels][{kh 0, 1, 2, 0}]: the 4th
 * byte's weight is 0, so the 4th input byte never counts; a group's 320 bytes are its 16 folded
 * biases, its 192 weight bytes and its 16 multipliers.  Each column is interleaved once and kept
 * in registers for the next pixels: stride 1 (full groups) in the asm loop tfc_dw_s1_asm, 2 of 3
 * columns reused, the first two and the last 1-3 pixels' columns built in C (padding = a column of
 * zero points); stride 2 reuses 1 of 3 in its interior, and its border pixels (and every pixel of
 * a partial group) build their 3 columns from the input or the zero-point row.  Same integers as the
 * widening path (exact int32 sums, the same requantization). */
#if defined(__clang__)
#define TFC_DW_DOT_FN __attribute__((target("dotprod")))
#else
#define TFC_DW_DOT_FN __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

typedef struct {
  int8x16_t q[4]; /* channels 4j..4j+3 of one input column, bytes {row 0, row 1, row 2, row 2} */
} TfcDwCol;

static inline __attribute__((always_inline)) int32x4_t tfc_dw_sdot(int32x4_t a, int8x16_t x, int8x16_t w) {
  __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(a) : "w"(x), "w"(w));
  return a;
}

static inline __attribute__((always_inline)) TfcDwCol tfc_dw_col(int8x16_t r0, int8x16_t r1, int8x16_t r2) {
  const int16x8_t a0 = vreinterpretq_s16_s8(vzip1q_s8(r0, r1)), a1 = vreinterpretq_s16_s8(vzip2q_s8(r0, r1));
  const int16x8_t b0 = vreinterpretq_s16_s8(vzip1q_s8(r2, r2)), b1 = vreinterpretq_s16_s8(vzip2q_s8(r2, r2));
  TfcDwCol c;
  c.q[0] = vreinterpretq_s8_s16(vzip1q_s16(a0, b0));
  c.q[1] = vreinterpretq_s8_s16(vzip2q_s16(a0, b0));
  c.q[2] = vreinterpretq_s8_s16(vzip1q_s16(a1, b1));
  c.q[3] = vreinterpretq_s8_s16(vzip2q_s16(a1, b1));
  return c;
}

/* One output pixel of 16 channels from its 3 interleaved columns; wg = the group's 320 bytes
 * (the 16 folded biases, 192 of weights, the 16 multipliers), read per pixel: the weights in 3
 * four-register `ld1`, the biases (the accumulators' start) in 2 `ldp`, the multipliers in one
 * `ld1`.  `clamp` 0: the activation's range is the whole int8 range (ReLU / ReLU6 outputs with
 * zero point -128, linear outputs), where the saturating narrow already is the clamp. */
static inline __attribute__((always_inline)) int8x16_t tfc_dw_px_dot(const TfcDwGroup* g, const int8_t* wg,
                                                                      const TfcDwCol* c0, const TfcDwCol* c1,
                                                                      const TfcDwCol* c2, const int clamp) {
  /* the empty asm hides that the pointers are loop-invariant: hoisting the 20 vectors out of the
   * pixel loop would not leave registers for the columns (GCC 12 then spills) */
  const int8_t* wp = wg;
  __asm__("" : "+r"(wp));
  const int32_t* bp = (const int32_t*)(const void*)wp;
  const float* mp = (const float*)(const void*)(wp + 256);
  const int8x16x4_t w0 = vld1q_s8_x4(wp + 64), w1 = vld1q_s8_x4(wp + 128), w2 = vld1q_s8_x4(wp + 192);
  int32x4_t a[4];
  for (int j = 0; j < 4; ++j) {
    a[j] = vld1q_s32(bp + 4 * j);
    a[j] = tfc_dw_sdot(a[j], c0->q[j], w0.val[j]);
    a[j] = tfc_dw_sdot(a[j], c1->q[j], w1.val[j]);
    a[j] = tfc_dw_sdot(a[j], c2->q[j], w2.val[j]);
  }
  const float32x4x4_t m = vld1q_f32_x4(mp);
  const int32x4_t q0 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[0]), m.val[0]));
  const int32x4_t q1 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[1]), m.val[1]));
  const int32x4_t q2 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[2]), m.val[2]));
  const int32x4_t q3 = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[3]), m.val[3]));
  const int16x8_t h0 = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q0), q1), g->zo);
  const int16x8_t h1 = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q2), q3), g->zo);
  const int8x16_t r = vqmovn_high_s16(vqmovn_s16(h0), h1);
  return clamp ? vminq_s8(vmaxq_s8(r, g->lo), g->hi) : r;
}

/* The stride-1 interior of one 16-channel group, n3 x 3 output pixels, in one asm block (the
 * same integers as tfc_dw_px_dot; with intrinsics GCC 12 spilled columns to the stack): columns
 * in v0-v3 / v4-v7 / v8-v11 rotate over the 3 pixels of an iteration, each pixel builds one new
 * column (3 loads, 8 zips), starts its accumulators v12-v15 at the biases and reads its weights
 * and multipliers with four-register `ld1` (the group's 320 bytes in order), 12 `sdot`, then the
 * requantization and one 16-byte store: 50 instructions per pixel, 52 with the clamp.  cst = the
 * first two columns (2 x 64 bytes, built by the caller: the left padding is a column of zero
 * points), overwritten with the last two on return; p0..p2 = the 3 input rows at the next column
 * (stride s0..s2 bytes per column, 0 for a padding row), o = the first output pixel (os = C bytes
 * apart). */
#define TFC_DWA_COL(Q0, Q1, Q2, Q3)                                                                            \
  "ld1 {v20.16b}, [%[p0]], %[s0]\n\t" "ld1 {v21.16b}, [%[p1]], %[s1]\n\t" "ld1 {v22.16b}, [%[p2]], %[s2]\n\t" \
  "zip1 v23.16b, v20.16b, v21.16b\n\t" "zip2 v24.16b, v20.16b, v21.16b\n\t"                                  \
  "zip1 v25.16b, v22.16b, v22.16b\n\t" "zip2 v26.16b, v22.16b, v22.16b\n\t"                                  \
  "zip1 v" #Q0 ".8h, v23.8h, v25.8h\n\t" "zip2 v" #Q1 ".8h, v23.8h, v25.8h\n\t"                              \
  "zip1 v" #Q2 ".8h, v24.8h, v26.8h\n\t" "zip2 v" #Q3 ".8h, v24.8h, v26.8h\n\t"
#define TFC_DWA_KW(Q0, Q1, Q2, Q3)                                                                             \
  "ld1 {v16.16b-v19.16b}, [x9], #64\n\t"                                                                       \
  "sdot v12.4s, v" #Q0 ".16b, v16.16b\n\t" "sdot v13.4s, v" #Q1 ".16b, v17.16b\n\t"                           \
  "sdot v14.4s, v" #Q2 ".16b, v18.16b\n\t" "sdot v15.4s, v" #Q3 ".16b, v19.16b\n\t"
#define TFC_DWA_RQ                                                                                            \
  "ld1 {v16.4s-v19.4s}, [x9]\n\t"                                                                              \
  "scvtf v12.4s, v12.4s\n\t" "scvtf v13.4s, v13.4s\n\t" "scvtf v14.4s, v14.4s\n\t" "scvtf v15.4s, v15.4s\n\t"  \
  "fmul v12.4s, v12.4s, v16.4s\n\t" "fmul v13.4s, v13.4s, v17.4s\n\t"                                        \
  "fmul v14.4s, v14.4s, v18.4s\n\t" "fmul v15.4s, v15.4s, v19.4s\n\t"                                        \
  "fcvtns v12.4s, v12.4s\n\t" "fcvtns v13.4s, v13.4s\n\t" "fcvtns v14.4s, v14.4s\n\t" "fcvtns v15.4s, v15.4s\n\t" \
  "sqxtn v20.4h, v12.4s\n\t" "sqxtn2 v20.8h, v13.4s\n\t" "sqxtn v21.4h, v14.4s\n\t" "sqxtn2 v21.8h, v15.4s\n\t" \
  "sqadd v20.8h, v20.8h, %[zo].8h\n\t" "sqadd v21.8h, v21.8h, %[zo].8h\n\t"                                  \
  "sqxtn v22.8b, v20.8h\n\t" "sqxtn2 v22.16b, v21.8h\n\t"
#define TFC_DWA_CLAMP "smax v22.16b, v22.16b, %[lo].16b\n\t" "smin v22.16b, v22.16b, %[hi].16b\n\t"
#define TFC_DWA_PX(A, B, C, CL)                                                                               \
  "mov x9, %[wg]\n\t" "ld1 {v12.4s-v15.4s}, [x9], #64\n\t" TFC_DWA_KW A TFC_DWA_KW B TFC_DWA_KW C TFC_DWA_RQ CL \
  "st1 {v22.16b}, [%[o]], %[os]\n\t"
#define TFC_DWA_A (0, 1, 2, 3)
#define TFC_DWA_B (4, 5, 6, 7)
#define TFC_DWA_C (8, 9, 10, 11)
#define TFC_DWA_S1(NAME, CL)                                                                                  \
  static inline __attribute__((always_inline)) void NAME(                                                       \
      TfcDwCol* cst, const int8_t* wg, const int8_t* p0, const int8_t* p1, const int8_t* p2, size_t s0,           \
      size_t s1, size_t s2,                                                                                     \
      int8_t* o, size_t os, int n3, int16x8_t zo, int8x16_t lo, int8x16_t hi) {                                  \
    __asm__ volatile(                                                                                           \
        "ld1 {v0.16b-v3.16b}, [%[cst]]\n\t" "add x9, %[cst], #64\n\t" "ld1 {v4.16b-v7.16b}, [x9]\n\t"               \
        "1:\n\t"                                                                                                \
        TFC_DWA_COL(8, 9, 10, 11) TFC_DWA_PX(TFC_DWA_A, TFC_DWA_B, TFC_DWA_C, CL)                               \
        TFC_DWA_COL(0, 1, 2, 3) TFC_DWA_PX(TFC_DWA_B, TFC_DWA_C, TFC_DWA_A, CL)                                 \
        TFC_DWA_COL(4, 5, 6, 7) TFC_DWA_PX(TFC_DWA_C, TFC_DWA_A, TFC_DWA_B, CL)                                 \
        "subs %w[n3], %w[n3], #1\n\t"                                                                           \
        "b.ne 1b\n\t"                                                                                           \
        "st1 {v0.16b-v3.16b}, [%[cst]]\n\t" "add x9, %[cst], #64\n\t" "st1 {v4.16b-v7.16b}, [x9]\n\t"               \
        : [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2), [o] "+r"(o), [n3] "+r"(n3)                                \
        : [cst] "r"(cst), [wg] "r"(wg), [s0] "r"(s0), [s1] "r"(s1), [s2] "r"(s2), [os] "r"(os), [zo] "w"(zo), [lo] "w"(lo),      \
          [hi] "w"(hi)                                                                                          \
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15",  \
          "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "x9", "cc", "memory");   \
  }
TFC_DWA_S1(tfc_dw_s1_asm, )
TFC_DWA_S1(tfc_dw_s1_asm_clamp, TFC_DWA_CLAMP)

/* The interleaved input column iw (the zero-point row outside [0, W)); n = channels (tail: copies). */
static inline __attribute__((always_inline)) TfcDwCol tfc_dw_col_at(const int8_t* const base[3], const size_t cs[3],
                                                                     const int8_t* z, int iw, int W, int c0, int n) {
  int8x16_t r[3];
  for (int kh = 0; kh < 3; ++kh)
    r[kh] = tfc_dw_ld((unsigned)iw < (unsigned)W ? base[kh] + (size_t)iw * cs[kh] + c0 : z, n);
  return tfc_dw_col(r[0], r[1], r[2]);
}

static inline __attribute__((always_inline)) void tfc_dw_group_dot(const TfcFused* f, const int8_t* const base[3],
                                                                    const size_t cs[3], int c0, int n, int8_t* out,
                                                                    const int clamp) {
  const int C = f->Ce, W = f->W, st = f->stride, pl = f->pl, Wo = f->Wo;
  const int8_t* wg = (const int8_t*)f->dw_wp + (size_t)(c0 / 16) * 320u;
  TfcDwGroup g;
  g.zo = vdupq_n_s16((int16_t)f->zp_d);
  g.lo = vdupq_n_s8((int8_t)f->dw_qmin);
  g.hi = vdupq_n_s8((int8_t)f->dw_qmax);
  const int8_t* z = f->dw_zrow + c0;
  int ow_lo = (pl + st - 1) / st, ow_hi = W - 3 + pl >= 0 ? (W - 3 + pl) / st + 1 : 0;
  if (ow_hi > Wo) ow_hi = Wo;
  if (ow_lo > ow_hi) ow_lo = ow_hi;
  if (n < 16) ow_lo = ow_hi = 0;
  if (st == 1 && n == 16) { /* every pixel builds one new column: the asm loop, then the last 1-3 */
    TfcDwCol c2[2];
    c2[0] = tfc_dw_col_at(base, cs, z, -pl, W, c0, 16); /* the left padding: zero points */
    c2[1] = tfc_dw_col_at(base, cs, z, 1 - pl, W, c0, 16);
    int8_t* o = out + c0;
    int ow = 0;
    /* pixels [0, inner) read no column right of the row, and are output pixels (Wo may stop
     * short of the row: a VALID or cropped output) */
    const int inner = W + pl - 2 < Wo ? W + pl - 2 : Wo;
    if (inner >= 3) {
      const int n3 = inner / 3, iw = 2 - pl;
      const int8_t* p0 = base[0] + (size_t)iw * cs[0] + c0;
      const int8_t* p1 = base[1] + (size_t)iw * cs[1] + c0;
      const int8_t* p2 = base[2] + (size_t)iw * cs[2] + c0;
      if (clamp)
        tfc_dw_s1_asm_clamp(c2, wg, p0, p1, p2, cs[0], cs[1], cs[2], o, (size_t)C, n3, g.zo, g.lo, g.hi);
      else
        tfc_dw_s1_asm(c2, wg, p0, p1, p2, cs[0], cs[1], cs[2], o, (size_t)C, n3, g.zo, g.lo, g.hi);
      ow = 3 * n3;
      o += (size_t)ow * C;
    }
    for (; ow < Wo; ++ow, o += C) {
      const TfcDwCol cc = tfc_dw_col_at(base, cs, z, ow - pl + 2, W, c0, 16);
      vst1q_s8(o, tfc_dw_px_dot(&g, wg, &c2[0], &c2[1], &cc, clamp));
      c2[0] = c2[1];
      c2[1] = cc;
    }
    return;
  }
  for (int ow = 0; ow < Wo; ++ow) {
    if (ow == ow_lo && ow_lo < ow_hi) { /* stride-2 interior: the last column of a pixel is the next one's first */
      const size_t c0s = cs[0], c1s = cs[1], c2s = cs[2];
      const int8_t* p0 = base[0] + (size_t)(ow * st - pl) * c0s + c0;
      const int8_t* p1 = base[1] + (size_t)(ow * st - pl) * c1s + c0;
      const int8_t* p2 = base[2] + (size_t)(ow * st - pl) * c2s + c0;
      int8_t* o = out + (size_t)ow * C + c0;
      TfcDwCol ca = tfc_dw_col(vld1q_s8(p0), vld1q_s8(p1), vld1q_s8(p2));
      p0 += c0s;
      p1 += c1s;
      p2 += c2s;
      for (; ow < ow_hi; ++ow) {
        const TfcDwCol cb = tfc_dw_col(vld1q_s8(p0), vld1q_s8(p1), vld1q_s8(p2));
        const TfcDwCol cc = tfc_dw_col(vld1q_s8(p0 + c0s), vld1q_s8(p1 + c1s), vld1q_s8(p2 + c2s));
        vst1q_s8(o, tfc_dw_px_dot(&g, wg, &ca, &cb, &cc, clamp));
        ca = cc;
        p0 += 2 * c0s;
        p1 += 2 * c1s;
        p2 += 2 * c2s;
        o += C;
      }
      if (ow >= Wo) break;
    }
    const int iw0 = ow * st - pl;
    const TfcDwCol ca = tfc_dw_col_at(base, cs, z, iw0, W, c0, n);
    const TfcDwCol cb = tfc_dw_col_at(base, cs, z, iw0 + 1, W, c0, n);
    const TfcDwCol cc = tfc_dw_col_at(base, cs, z, iw0 + 2, W, c0, n);
    const int8x16_t r = tfc_dw_px_dot(&g, wg, &ca, &cb, &cc, clamp);
    int8_t* o = out + (size_t)ow * C + c0;
    if (n == 16) {
      vst1q_s8(o, r);
    } else {
      int8_t t[16];
      vst1q_s8(t, r);
      memcpy(o, t, (size_t)n);
    }
  }
}

/* The sdot row for groups [g0, g1); the specialized code for full groups without a clamp (the
 * usual MobileNetV2 case: ReLU6 outputs with zero point -128, linear outputs) and with one. */
TFC_DW_DOT_FN static inline __attribute__((always_inline)) void tfc_dw_row_sdot_t(
    const TfcFused* f, const int8_t* const rows[3], int8_t* out, int g0, int g1, const int clamp) {
  const int C = f->Ce;
  const int8_t* base[3];
  size_t cs[3];
  tfc_dw_row_bases(f, rows, base, cs);
  const int c1 = 16 * g1 < C ? 16 * g1 : C;
  int c0 = 16 * g0;
  for (; c0 + 16 <= c1; c0 += 16) tfc_dw_group_dot(f, base, cs, c0, 16, out, clamp); /* n = 16: the specialized code */
  if (c0 < c1) tfc_dw_group_dot(f, base, cs, c0, c1 - c0, out, clamp);
}

TFC_DW_DOT_FN static void tfc_dw_row_sdot(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias,
                                          int8_t* out, int32_t* acc, int g0, int g1) {
  (void)bias; /* folded into f->dw_bp in Prepare */
  (void)acc;
  if (f->dw_qmin > -128 || f->dw_qmax < 127)
    tfc_dw_row_sdot_t(f, rows, out, g0, g1, 1);
  else
    tfc_dw_row_sdot_t(f, rows, out, g0, g1, 0);
}

void tfc_fused_free_dw_aarch64(TfcFused* f) {
  tfc_free64(f->stem_w);
  f->stem_w = NULL;
  f->stem_row = NULL;
  tfc_free64(f->dw_wp);
  tfc_free64(f->dw_bp);
  tfc_free64(f->dw_mp);
  tfc_free64(f->dw_zrow);
  f->dw_wp = NULL;
  f->dw_bp = NULL;
  f->dw_mp = NULL;
  f->dw_zrow = NULL;
}

/* Prepare (after tfc_fused.c validated the params and set dw_mult / dw_cpad / dw_qmin / dw_qmax):
 * -1 out of memory, 0 not used (cap < NEON), 1 set. */
/* ------------------------------------------------------------------ stem */

/* The stem (a 3x3 conv over the image as the block's expand, tfc_fused.c flag bit 2) with `sdot`,
 * one expanded row at a time, no im2col: the row's three image rows copied with zero-point
 * columns around them; per output pixel each kernel row is one 16-byte load whose first Q dwords
 * are the row's 3 Ci taps (+ up to 3 bytes of the next pixel, whose weights are 0), each dword
 * multiplied (`sdot` by element) against the 4G weight vectors of 4 channels x 4 taps; two pixels
 * per step share the weight loads.  Accumulators start at bias - zp_x * sum w (signed products:
 * padding bytes hold zp_x, real 0).  Requantization as the 1x1 kernels (XNNPACK's fp32 path):
 * fcvtns(float32(acc) * m), saturating narrows, + zero point, clamp. */
/* a += w (4 channels x 4 taps) . dword L of x, in every lane (sdot by element; inline asm as
 * tfc_dw_sdot: Clang 14's arm_neon.h has no dotprod intrinsics without -march) */
#define TFC_STEM_SDOT_LANE(L)                                                                             \
  static inline __attribute__((always_inline)) int32x4_t tfc_stem_sdot##L(int32x4_t a, int8x16_t w, int8x16_t x) { \
    __asm__("sdot %0.4s, %1.16b, %2.4b[" #L "]" : "+w"(a) : "w"(w), "w"(x));                        \
    return a;                                                                                           \
  }
TFC_STEM_SDOT_LANE(0)
TFC_STEM_SDOT_LANE(1)
TFC_STEM_SDOT_LANE(2)

TFC_DW_DOT_FN __attribute__((always_inline)) static inline void tfc_stem_px_store(
    const int32x4_t* a, const float32x4_t* m, int16x8_t zp, int8x16_t lo, int8x16_t hi, int8_t* o, const int G) {
  for (int k = 0; k < G; ++k) {
    int32x4_t q[4];
    for (int j = 0; j < 4; ++j) q[j] = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a[4 * k + j]), m[4 * k + j]));
    const int16x8_t s01 = vqaddq_s16(vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1])), zp);
    const int16x8_t s23 = vqaddq_s16(vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3])), zp);
    vst1q_s8(o + 16 * k, vminq_s8(vmaxq_s8(vcombine_s8(vqmovn_s16(s01), vqmovn_s16(s23)), lo), hi));
  }
}

TFC_DW_DOT_FN __attribute__((always_inline)) static inline void tfc_stem_row_sdot_t(
    const TfcFused* f, const int8_t* x, const int32_t* bias, int h, int8_t* out, uint8_t* ur, const int Q,
    const int G) {
  const int Ci = f->Ci, Wi = f->Wi, W = f->W, ss = f->s_stride, L = f->stem_rowlen, lead = f->s_pl * f->Ci;
  const int Ce = f->Ce;
  const int8_t* r[3];
  for (int kh = 0; kh < 3; ++kh) {
    const int ih = h * ss - f->s_pt + kh;
    int8_t* u = (int8_t*)ur + (size_t)kh * L;
    r[kh] = u;
    if (ih < 0 || ih >= f->Hi) {
      memset(u, (int)(int8_t)f->zp_x, (size_t)L);
      continue;
    }
    const int n = Wi * Ci;
    memset(u, (int)(int8_t)f->zp_x, (size_t)lead);
    memcpy(u + lead, x + (size_t)ih * n, (size_t)n);
    memset(u + lead + n, (int)(int8_t)f->zp_x, (size_t)(L - lead - n));
  }
  const int8_t* wv = (const int8_t*)f->stem_w; /* [3][Q][4G][16] */
  int32x4_t init[8];
  float32x4_t m[8];
  for (int v = 0; v < 4 * G; ++v) {
    init[v] = vmlsq_n_s32(vld1q_s32(bias + 4 * v), vld1q_s32(f->ex.row_sums + 4 * v), f->zp_x);
    m[v] = vld1q_f32(f->ex.multipliers + 4 * v);
  }
  const int16x8_t zp = vdupq_n_s16((int16_t)f->ex.zp_out);
  const int8x16_t lo = vdupq_n_s8((int8_t)f->ex.qmin), hi = vdupq_n_s8((int8_t)f->ex.qmax);
  int ow = 0;
  for (; ow + 2 <= W; ow += 2) {
    const size_t o0 = (size_t)ow * ss * Ci, o1 = o0 + (size_t)ss * Ci;
    int32x4_t a[8], b[8];
    for (int v = 0; v < 4 * G; ++v) a[v] = b[v] = init[v];
    for (int kh = 0; kh < 3; ++kh) {
      const int8x16_t x0 = vld1q_s8(r[kh] + o0), x1 = vld1q_s8(r[kh] + o1);
      const int8_t* wk = wv + (size_t)kh * Q * 4 * G * 16;
      for (int v = 0; v < 4 * G; ++v) { /* dword 0: one weight load for both pixels */
        const int8x16_t w = vld1q_s8(wk + 16 * v);
        a[v] = tfc_stem_sdot0(a[v], w, x0);
        b[v] = tfc_stem_sdot0(b[v], w, x1);
      }
      if (Q > 1)
        for (int v = 0; v < 4 * G; ++v) {
          const int8x16_t w = vld1q_s8(wk + 16 * (4 * G + v));
          a[v] = tfc_stem_sdot1(a[v], w, x0);
          b[v] = tfc_stem_sdot1(b[v], w, x1);
        }
      if (Q > 2)
        for (int v = 0; v < 4 * G; ++v) {
          const int8x16_t w = vld1q_s8(wk + 16 * (8 * G + v));
          a[v] = tfc_stem_sdot2(a[v], w, x0);
          b[v] = tfc_stem_sdot2(b[v], w, x1);
        }
    }
    tfc_stem_px_store(a, m, zp, lo, hi, out + (size_t)ow * Ce, G);
    tfc_stem_px_store(b, m, zp, lo, hi, out + (size_t)(ow + 1) * Ce, G);
  }
  for (; ow < W; ++ow) {
    const size_t o0 = (size_t)ow * ss * Ci;
    int32x4_t a[8];
    for (int v = 0; v < 4 * G; ++v) a[v] = init[v];
    for (int kh = 0; kh < 3; ++kh) {
      const int8x16_t x0 = vld1q_s8(r[kh] + o0);
      const int8_t* wk = wv + (size_t)kh * Q * 4 * G * 16;
      for (int v = 0; v < 4 * G; ++v) {
        a[v] = tfc_stem_sdot0(a[v], vld1q_s8(wk + 16 * v), x0);
        if (Q > 1) a[v] = tfc_stem_sdot1(a[v], vld1q_s8(wk + 16 * (4 * G + v)), x0);
        if (Q > 2) a[v] = tfc_stem_sdot2(a[v], vld1q_s8(wk + 16 * (8 * G + v)), x0);
      }
    }
    tfc_stem_px_store(a, m, zp, lo, hi, out + (size_t)ow * Ce, G);
  }
}

#define TFC_STEM_SDOT_ROW(Q, G)                                                                      \
  TFC_DW_DOT_FN static void tfc_stem_row_sdot_##Q##_##G(const TfcFused* f, const int8_t* x,            \
                                                        const int32_t* bias, int h, int8_t* out, uint8_t* ur) { \
    tfc_stem_row_sdot_t(f, x, bias, h, out, ur, Q, G);                                              \
  }
TFC_STEM_SDOT_ROW(1, 1)
TFC_STEM_SDOT_ROW(1, 2)
TFC_STEM_SDOT_ROW(2, 1)
TFC_STEM_SDOT_ROW(2, 2)
TFC_STEM_SDOT_ROW(3, 1)
TFC_STEM_SDOT_ROW(3, 2)

/* The sdot stem row for Ci <= 4 and Ce of 16 or 32 on a CPU with dotprod (cap >= 2), when the
 * expand's plan is the quad kernel (its relayout gives the dense weights back); else im2col. */
int tfc_fused_stem_aarch64(TfcFused* f, int cap) {
  tfc_free64(f->stem_w);
  f->stem_w = NULL;
  f->stem_row = NULL;
  const int Ci = f->Ci, Ce = f->Ce, Q = (3 * Ci + 3) / 4, G = Ce / 16;
  if (!f->stem || cap < TFC_ISA_DOT || !tfc_aarch64_has_dotprod() || Ci > 4 || (Ce != 16 && Ce != 32) ||
      f->ex.row_sums == NULL || f->ex.multipliers == NULL)
    return 0;
  const int got = tfc_fused_stem_weights(f, Q, 16); /* each kernel row: one 16-byte load */
  if (got <= 0) return got;
  static void (*const rows[3][2])(const TfcFused*, const int8_t*, const int32_t*, int, int8_t*, uint8_t*) = {
      {tfc_stem_row_sdot_1_1, tfc_stem_row_sdot_1_2},
      {tfc_stem_row_sdot_2_1, tfc_stem_row_sdot_2_2},
      {tfc_stem_row_sdot_3_1, tfc_stem_row_sdot_3_2}};
  f->stem_row = rows[Q - 1][G - 1];
  f->stem_name = "stem_sdot";
  return 1;
}

int tfc_fused_dw_aarch64(TfcFused* f, int cap, const int32_t* bias) {
  if (cap < TFC_ISA_SIMD) return 0;
  const int C = f->Ce, G = (C + 15) / 16;
  const int dot = cap >= TFC_ISA_DOT && tfc_aarch64_has_dotprod();
  f->dw_wp = (int16_t*)tfc_alloc64((size_t)G * (dot ? 320u : 144u));
  f->dw_bp = (int32_t*)tfc_alloc64(sizeof(int32_t) * (size_t)G * 16u);
  f->dw_mp = (float*)tfc_alloc64(sizeof(float) * (size_t)G * 16u);
  f->dw_zrow = (int8_t*)tfc_alloc64((size_t)G * 16u);
  if (f->dw_wp == NULL || f->dw_bp == NULL || f->dw_mp == NULL || f->dw_zrow == NULL) {
    tfc_fused_free_dw_aarch64(f);
    return -1;
  }
  int8_t* w8 = (int8_t*)f->dw_wp;
  memset(w8, 0, (size_t)G * (dot ? 320u : 144u));
  int has_min = 0;
  memset(f->dw_zrow, (int)(int8_t)f->zp_e, (size_t)G * 16u);
  for (int c = 0; c < G * 16; ++c) {
    int32_t sw = 0;
    for (int t = 0; t < 9; ++t) {
      const int8_t v = c < C ? f->dw_w[t * C + c] : 0;
      if (dot) /* [G][bias | kw][quad][channel][kh] | multipliers], the 4th kh byte stays 0 */
        w8[(size_t)(c / 16) * 320u + 64u + 64u * (size_t)(t % 3) + 4u * (size_t)(c % 16) + (size_t)(t / 3)] = v;
      else
        w8[(size_t)(c / 16) * 144u + 16u * (size_t)t + (size_t)(c % 16)] = v;
      sw += v;
      has_min |= v == -128;
    }
    f->dw_bp[c] = c < C ? (int32_t)((uint32_t)bias[c] - (uint32_t)f->zp_e * (uint32_t)sw) : 0;
    f->dw_mp[c] = c < C ? f->dw_mult[c] : 0.f;
    if (dot) {
      memcpy(w8 + (size_t)(c / 16) * 320u + 4u * (size_t)(c % 16), &f->dw_bp[c], 4);
      memcpy(w8 + (size_t)(c / 16) * 320u + 256u + 4u * (size_t)(c % 16), &f->dw_mp[c], 4);
    }
  }
  if (dot) { /* sdot sums in int32: a -128 weight needs no other path */
    f->dw_row = tfc_dw_row_sdot;
    f->dw_name = "dw_sdot";
    return 1;
  }
  f->dw_row = has_min ? tfc_dw_row_neon_w128 : tfc_dw_row_neon;
  f->dw_name = has_min ? "dw_neon_w128" : "dw_neon";
  return 1;
}
#endif /* TFC_HAVE_AARCH64 */
