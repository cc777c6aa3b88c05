/* tfcompress: kernels of TFC_SPARSE_INVERTED_RESIDUAL (tfc_fused.c) other than the 1x1s:
 * the int8 3x3 depthwise row (portable C here, AVX-512 / AVX-VNNI / AVX2 in tfc_fused_x86.c, NEON
 * in tfc_fused_aarch64.c), its pick, the float32 depthwise row (vector extensions: one source for
 * every ISA, the vector width picked by CPU), and the residual ADDs.
 *
 * Depthwise semantics (TFLite / XNNPACK int8, per-channel weights, symmetric):
 *   acc = bias[c] + sum over valid taps (x - zp_in) * w[kh][kw][c]   (padding taps add 0)
 *   q = clamp(round_half_even(acc * m[c]), qmin - zp, qmax - zp) + zp,  m[c] = s_in*s_w[c]/s_out
 * in float, in XNNPACK's order (the multiplier computed in float, the product rounded once).
 * ADD: XNNPACK's qs8 add (integer multipliers of <= 21 bits and an arithmetic shift), so
 * outputs equal the dense file's. */
#include <stdatomic.h>
#include <stdio.h>

#include "tfc_internal.h"

#if TFC_HAVE_AARCH64 /* tfc_fused_aarch64.c: NEON depthwise (-1 out of memory, 0 none, 1 set) */
int tfc_fused_dw_aarch64(TfcFused* f, int cap, const int32_t* bias);
void tfc_fused_free_dw_aarch64(TfcFused* f);
#endif

/* Portable depthwise row: per output pixel, channels innermost (vectorized by the compiler). */
TFC_HOT static void tfc_dw_row_portable(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias, int8_t* out,
                                        int32_t* acc, int g0, int g1) {
  const int C = f->Ce, W = f->W, st = f->stride, cp = f->dw_cpad;
  const int c0 = 16 * g0, c1 = 16 * g1 < C ? 16 * g1 : C;
  const int32_t zp = f->zp_e, zo = f->zp_d;
  const float lo = (float)(f->dw_qmin - zo), hi = (float)(f->dw_qmax - zo);
  for (int ow = 0; ow < f->Wo; ++ow) {
    for (int c = c0; c < c1; ++c) acc[c] = bias[c];
    for (int kh = 0; kh < 3; ++kh) {
      if (rows[kh] == NULL) continue;
      for (int kw = 0; kw < 3; ++kw) {
        const int iw = ow * st - f->pl + kw;
        if (iw < 0 || iw >= W) continue;
        const int8_t* xp = rows[kh] + (size_t)iw * C;
        const int32_t* wp = f->dw_w32 + (size_t)(kh * 3 + kw) * cp;
        for (int c = c0; c < c1; ++c) acc[c] += ((int32_t)xp[c] - zp) * wp[c];
      }
    }
    int8_t* o = out + (size_t)ow * C;
    for (int c = c0; c < c1; ++c) {
      const float q = nearbyintf(tfc_clampf((float)acc[c] * f->dw_mult[c], lo, hi));
      o[c] = (int8_t)((int32_t)q + zo);
    }
  }
}

/* float32 depthwise, channels [16 g0, 16 g1), one GCC / Clang vector of L floats at a time:
 * L = 16 (one zmm) on AVX-512, 8 (one ymm) on AVX2 + FMA, 4 on aarch64 (one NEON register) and
 * other x86, so that the 9 weight vectors, 4 accumulators and a kernel row's input columns fit
 * the register file (16 floats in two ymm would not: 2.4x slower on AVX2, Zen 3).  Per vector the
 * 9 weights stay in registers while the row's output pixels run: interior pixels 4 at a time (4
 * independent FMA chains; a kernel row's 3 ST + 3 input columns loaded once for the 4 pixels),
 * edge pixels (columns outside the map read as 0) one at a time; padding rows are f->dw_zrow_f.
 * A last group of < 16 channels runs lane by lane.  TFC_DWF_DEFINE(NAME, T, TARGET) makes the row
 * NAME for the vector type T. */
typedef float tfc_vdf4 __attribute__((vector_size(16)));
typedef float tfc_vdf8 __attribute__((vector_size(32)));
typedef float tfc_vdf16 __attribute__((vector_size(64)));

#define TFC_VDF_LOAD(T, p) __extension__({ T v_; memcpy(&v_, (p), sizeof v_); v_; })

/* clamp(a, lo, hi) as tfc_clampf (NaN passes), stored to p; aarch64: fmax / fmin (which pass
 * NaN too; max(-0, +0) = +0 where tfc_clampf keeps -0) */
#if defined(__aarch64__)
#include <arm_neon.h>
#define TFC_VDF_STORE(p, a, lo, hi) \
  vst1q_f32((p), vminq_f32(vmaxq_f32((float32x4_t)(a), (float32x4_t)(lo)), (float32x4_t)(hi)))
#else
#define TFC_VDF_STORE(p, a, lo, hi)                                  \
  do {                                                               \
    const __typeof__(a) a_ = (a);                                    \
    const __typeof__(a_ < a_) below_ = a_ < (lo), above_ = a_ > (hi); \
    __typeof__(a_ < a_) ai_ = (__typeof__(a_ < a_))a_;               \
    ai_ = (ai_ & ~below_) | ((__typeof__(a_ < a_))(lo) & below_);    \
    ai_ = (ai_ & ~above_) | ((__typeof__(a_ < a_))(hi) & above_);    \
    memcpy((p), &ai_, sizeof ai_);                                   \
  } while (0)
#endif

#define TFC_DWF_DEFINE(NAME, T, TARGET)                                                                             \
  /* Output pixels [ow0, ow1) of channels [c, c + L) (every tap inside the map), stride ST. */                  \
  TARGET static inline __attribute__((always_inline)) void NAME##_interior(                                     \
      const float* const r[3], const T w[9], T b, T lo, T hi, float* out, int C, int c, int pl, int ow0, int ow1, \
      const int ST) {                                                                                           \
    int ow = ow0;                                                                                               \
    for (; ow + 4 <= ow1; ow += 4) {                                                                            \
      T a0 = b, a1 = b, a2 = b, a3 = b;                                                                         \
      const size_t base = (size_t)(ow * ST - pl) * C + c;                                                       \
      for (int kh = 0; kh < 3; ++kh) {                                                                          \
        const float* xp = r[kh] + base;                                                                         \
        T x[3 * ST + 3];                                                                                        \
        for (int j = 0; j < 3 * ST + 3; ++j) x[j] = TFC_VDF_LOAD(T, xp + (size_t)j * C);                        \
        for (int kw = 0; kw < 3; ++kw) {                                                                        \
          const T wk = w[3 * kh + kw];                                                                          \
          a0 += x[kw] * wk;                                                                                     \
          a1 += x[ST + kw] * wk;                                                                                \
          a2 += x[2 * ST + kw] * wk;                                                                            \
          a3 += x[3 * ST + kw] * wk;                                                                            \
        }                                                                                                       \
      }                                                                                                         \
      float* o = out + (size_t)ow * C + c;                                                                      \
      TFC_VDF_STORE(o, a0, lo, hi);                                                                             \
      TFC_VDF_STORE(o + C, a1, lo, hi);                                                                         \
      TFC_VDF_STORE(o + 2 * (size_t)C, a2, lo, hi);                                                             \
      TFC_VDF_STORE(o + 3 * (size_t)C, a3, lo, hi);                                                             \
    }                                                                                                           \
    for (; ow < ow1; ++ow) {                                                                                    \
      T a = b;                                                                                                  \
      const size_t base = (size_t)(ow * ST - pl) * C + c;                                                       \
      for (int kh = 0; kh < 3; ++kh)                                                                            \
        for (int kw = 0; kw < 3; ++kw) a += TFC_VDF_LOAD(T, r[kh] + base + (size_t)kw * C) * w[3 * kh + kw];    \
      TFC_VDF_STORE(out + (size_t)ow * C + c, a, lo, hi);                                                       \
    }                                                                                                           \
  }                                                                                                             \
                                                                                                                \
  TARGET static void NAME(const TfcFused* f, const float* const r[3], const float* bias, float* out, int g0,      \
                          int g1) {                                                                             \
    enum { L = sizeof(T) / sizeof(float) };                                                                     \
    const int C = f->Ce, W = f->W, st = f->stride, cp = f->dw_cpad, Wo = f->Wo, pl = f->pl;                     \
    const float lo = f->dw_fmin, hi = f->dw_fmax;                                                               \
    (void)bias; /* f->dw_bf: the bias padded to whole vectors */                                                \
    /* interior output columns: every tap inside the map */                                                     \
    int in0 = (pl + st - 1) / st, in1 = (W - 3 + pl) / st + 1;                                                  \
    if (W - 3 + pl < 0) in1 = 0;                                                                                \
    if (in1 > Wo) in1 = Wo;                                                                                     \
    if (in0 > in1) in0 = in1;                                                                                   \
    T vlo, vhi;                                                                                                 \
    for (int i = 0; i < L; ++i) vlo[i] = lo, vhi[i] = hi;                                                       \
    for (int g = g0; g < g1; ++g) {                                                                             \
      const int c0 = 16 * g;                                                                                    \
      if (c0 + 16 > C) { /* the last, partial group: lane by lane */                                            \
        for (int c = c0; c < C; ++c)                                                                            \
          for (int ow = 0; ow < Wo; ++ow) {                                                                     \
            float a = f->dw_bf[c];                                                                              \
            for (int kw = 0; kw < 3; ++kw) {                                                                    \
              const int iw = ow * st - pl + kw;                                                                 \
              if (iw < 0 || iw >= W) continue;                                                                  \
              for (int kh = 0; kh < 3; ++kh)                                                                    \
                a += r[kh][(size_t)iw * C + c] * f->dw_wf[(size_t)(3 * kh + kw) * cp + c];                      \
            }                                                                                                   \
            out[(size_t)ow * C + c] = tfc_clampf(a, lo, hi);                                                    \
          }                                                                                                     \
        continue;                                                                                               \
      }                                                                                                         \
      for (int c = c0; c < c0 + 16; c += L) {                                                                   \
        T w[9];                                                                                                 \
        for (int t = 0; t < 9; ++t) w[t] = TFC_VDF_LOAD(T, f->dw_wf + (size_t)t * cp + c);                      \
        const T b = TFC_VDF_LOAD(T, f->dw_bf + c);                                                              \
        if (st == 1)                                                                                            \
          NAME##_interior(r, w, b, vlo, vhi, out, C, c, pl, in0, in1, 1);                                       \
        else                                                                                                    \
          NAME##_interior(r, w, b, vlo, vhi, out, C, c, pl, in0, in1, 2);                                       \
        for (int ow = 0; ow < Wo; ++ow) { /* edge pixels: [0, in0) and [in1, Wo) */                             \
          if (ow == in0 && in1 > in0) ow = in1;                                                                 \
          if (ow >= Wo) break;                                                                                  \
          T a = b;                                                                                              \
          for (int kw = 0; kw < 3; ++kw) {                                                                      \
            const int iw = ow * st - pl + kw;                                                                   \
            if (iw < 0 || iw >= W) continue;                                                                    \
            for (int kh = 0; kh < 3; ++kh) a += TFC_VDF_LOAD(T, r[kh] + (size_t)iw * C + c) * w[3 * kh + kw];  \
          }                                                                                                     \
          TFC_VDF_STORE(out + (size_t)ow * C + c, a, vlo, vhi);                                                 \
        }                                                                                                       \
      }                                                                                                         \
    }                                                                                                           \
  }

TFC_DWF_DEFINE(tfc_dw_row_f32_l4, tfc_vdf4, )
#if TFC_HAVE_X86
TFC_DWF_DEFINE(tfc_dw_row_f32_l8, tfc_vdf8, __attribute__((target("avx2,fma"))))
TFC_DWF_DEFINE(tfc_dw_row_f32_l16, tfc_vdf16, __attribute__((target("avx512f"))))
#endif

/* float32 stem (tfc_fused.c flag bits 2 and 3): expanded row h of the 3x3 conv over the image x
 * [Hi][Wi][Ci] -> out [W][Ce], no im2col: output pixel ow's kernel row kh is the 3 Ci floats of
 * image row h s - s_pt + kh from column ow s - s_pl on.  Interior pixels (every tap inside the
 * image, in whole groups of PX) read the image rows in place; the edge pixels and rows above /
 * below the image read u, 3 rows of f->stem_rowlen floats laid out as the image row with s_pl zero
 * columns in front and zeros after it, filled only where the edge pixels read.  Weights
 * f->stem_wf [3][3 Ci][cpe] (cpe = f->dw_cpad: Ce rounded up to 16, zero lanes past Ce), bias
 * f->stem_bf [cpe].  Channels run in chunks of up to 4 vectors of L floats, PX output pixels at a time
 * (PX = 4 for L = 16 and on aarch64, else 2: 4 x 2 zmm, 2 x 4 ymm or 4 x 4 NEON independent FMA
 * chains, the chunk's weight vectors loaded once per tap for the PX pixels, every input float
 * broadcast; ARM proxy, cortex-a76: the stem 7.47 M instructions with PX = 2, 6.34 M with 4);
 * the expand's activation clamp (f->ex.fmin / fmax); a last partial vector is stored lane by lane.
 * TFC_STEMF_DEFINE(NAME, T, TARGET) makes the row NAME for the vector type T. */
#if defined(__aarch64__)
#define TFC_STEMF_PX(L) 4 /* 32 NEON registers: 4 x 4 accumulators + 4 weight vectors */
#else
#define TFC_STEMF_PX(L) ((L) == 16 ? 4 : 2)
#endif
#define TFC_STEMF_DEFINE(NAME, T, TARGET)                                                                           \
  /* pixels [ow0, ow1) of channels [c, c + NV L), r[kh] = kernel row kh's window of pixel ow0 */                 \
  TARGET static inline __attribute__((always_inline)) void NAME##_chunk(                                         \
      const TfcFused* f, const float* const r[3], float* out, int c, int ow0, int ow1, const int NV) {           \
    enum { L = sizeof(T) / sizeof(float), PX = TFC_STEMF_PX(L) };                                                \
    const int Ce = f->Ce, cpe = f->dw_cpad, K3 = 3 * f->Ci, step = f->s_stride * f->Ci;                           \
    T vlo, vhi, b[4];                                                                                              \
    for (int i = 0; i < L; ++i) vlo[i] = f->ex.fmin, vhi[i] = f->ex.fmax;                                          \
    for (int v = 0; v < NV; ++v) b[v] = TFC_VDF_LOAD(T, f->stem_bf + c + v * L);                                   \
    for (int ow = ow0; ow < ow1; ow += PX) {                                                                       \
      const int np = ow1 - ow < PX ? ow1 - ow : PX;                                                                \
      T a[PX][4];                                                                                                  \
      for (int p = 0; p < PX; ++p)                                                                                 \
        for (int v = 0; v < NV; ++v) a[p][v] = b[v];                                                               \
      for (int kh = 0; kh < 3; ++kh) {                                                                             \
        const float* x = r[kh] + (size_t)(ow - ow0) * step;                                                        \
        const float* wk = f->stem_wf + (size_t)kh * K3 * cpe + c;                                                  \
        for (int j = 0; j < K3; ++j, wk += cpe) {                                                                  \
          T w[4];                                                                                                  \
          for (int v = 0; v < NV; ++v) w[v] = TFC_VDF_LOAD(T, wk + v * L);                                         \
          for (int p = 0; p < PX; ++p) {                                                                           \
            const float s = x[(size_t)p * step + j]; /* pixels past ow1: inside u / the image, not stored */      \
            for (int v = 0; v < NV; ++v) a[p][v] += w[v] * s;                                                      \
          }                                                                                                        \
        }                                                                                                          \
      }                                                                                                            \
      for (int p = 0; p < np; ++p)                                                                                 \
        for (int v = 0; v < NV; ++v) {                                                                             \
          float* o = out + (size_t)(ow + p) * Ce + c + v * L;                                                      \
          if (c + (v + 1) * L <= Ce) {                                                                             \
            TFC_VDF_STORE(o, a[p][v], vlo, vhi);                                                                   \
          } else {                                                                                                 \
            float t[L];                                                                                            \
            TFC_VDF_STORE(t, a[p][v], vlo, vhi);                                                                   \
            for (int i = 0; c + v * L + i < Ce; ++i) o[i] = t[i];                                                  \
          }                                                                                                        \
        }                                                                                                          \
    }                                                                                                              \
  }                                                                                                                \
                                                                                                                   \
  TARGET static void NAME##_range(const TfcFused* f, const float* const r[3], float* out, int ow0, int ow1) {     \
    enum { L = sizeof(T) / sizeof(float) };                                                                        \
    for (int c = 0; c < f->Ce; c += 4 * L) {                                                                       \
      const int nv = (f->Ce - c + L - 1) / L;                                                                      \
      if (nv >= 4) NAME##_chunk(f, r, out, c, ow0, ow1, 4);                                                        \
      else if (nv == 3) NAME##_chunk(f, r, out, c, ow0, ow1, 3);                                                   \
      else if (nv == 2) NAME##_chunk(f, r, out, c, ow0, ow1, 2);                                                   \
      else NAME##_chunk(f, r, out, c, ow0, ow1, 1);                                                                \
    }                                                                                                              \
  }                                                                                                                \
                                                                                                                   \
  TARGET static void NAME(const TfcFused* f, const float* x, int h, float* out, float* urows) {                    \
    enum { L = sizeof(T) / sizeof(float) };                                                                        \
    int in0, in1;                                                                                                  \
    const float* img[3];                                                                                           \
    tfc_stem_rows_f32(f, x, h, TFC_STEMF_PX(L), urows, img, &in0, &in1);                                           \
    const size_t step = (size_t)f->s_stride * f->Ci, L_ = (size_t)f->stem_rowlen;                                  \
    const float* r[3];                                                                                             \
    for (int kh = 0; kh < 3; ++kh) r[kh] = urows + (size_t)kh * L_;                                                \
    if (in0 > 0) NAME##_range(f, r, out, 0, in0);                                                                  \
    if (in1 > in0) {                                                                                               \
      const float* d[3];                                                                                           \
      for (int kh = 0; kh < 3; ++kh) d[kh] = img[kh] != NULL ? img[kh] : r[kh] + (size_t)in0 * step;               \
      NAME##_range(f, d, out, in0, in1);                                                                           \
    }                                                                                                              \
    if (in1 < f->W) {                                                                                              \
      for (int kh = 0; kh < 3; ++kh) r[kh] = urows + (size_t)kh * L_ + (size_t)in1 * step;                         \
      NAME##_range(f, r, out, in1, f->W);                                                                          \
    }                                                                                                              \
  }

/* u[i] for i in [i0, i1): row[i - lead] for i in [lead, lead + n) (the image row), else 0. */
static void tfc_stem_fill_f32(float* u, const float* row, size_t lead, size_t n, size_t i0, size_t i1) {
  const size_t a = lead < i0 ? i0 : lead > i1 ? i1 : lead; /* [i0, a) zeros */
  const size_t b = lead + n < a ? a : lead + n > i1 ? i1 : lead + n; /* [a, b) image, [b, i1) zeros */
  memset(u + i0, 0, sizeof(float) * (a - i0));
  if (b > a) memcpy(u + a, row + (a - lead), sizeof(float) * (b - a));
  memset(u + b, 0, sizeof(float) * (i1 - b));
}

/* The rows expanded row h reads: interior pixels [*in0, *in1) (every tap inside the image, a whole
 * number of groups of px) read img[kh], the window of pixel *in0 in image row kh (NULL above /
 * below the image: u's zero row); u (3 x stem_rowlen floats, the padded row) is filled where the
 * edge pixels [0, *in0) and [*in1, W) read, px - 1 pixels past them included. */
static void tfc_stem_rows_f32(const TfcFused* f, const float* x, int h, int px, float* urows, const float* img[3],
                              int* in0, int* in1) {
  const int ss = f->s_stride, Ci = f->Ci, W = f->W, Wi = f->Wi;
  const size_t L = (size_t)f->stem_rowlen, lead = (size_t)f->s_pl * Ci, n = (size_t)Wi * Ci, step = (size_t)ss * Ci;
  int a = (f->s_pl + ss - 1) / ss, b = Wi - 3 + f->s_pl >= 0 ? (Wi - 3 + f->s_pl) / ss + 1 : 0;
  if (b > W) b = W;
  if (a > b) a = b;
  b = a + (b - a) / px * px;
  *in0 = a;
  *in1 = b;
  /* u columns [0, e0) for the left edge, [e1, L) for the right edge */
  const size_t e0 = a > 0 ? (size_t)(a + px - 1) * step + 3u * Ci : 0, e1 = b < W ? (size_t)b * step : L;
  for (int kh = 0; kh < 3; ++kh) {
    float* u = urows + (size_t)kh * L;
    const int ih = h * ss - f->s_pt + kh;
    if (ih < 0 || ih >= f->Hi) {
      img[kh] = NULL;
      memset(u, 0, sizeof(float) * L);
      continue;
    }
    const float* row = x + (size_t)ih * n;
    img[kh] = row + (size_t)a * step - lead; /* a s >= s_pl: inside the row */
    tfc_stem_fill_f32(u, row, lead, n, 0, e0 < L ? e0 : L);
    tfc_stem_fill_f32(u, row, lead, n, e1, L);
  }
}

TFC_STEMF_DEFINE(tfc_stem_row_f32_l4, tfc_vdf4, )
#if TFC_HAVE_X86
TFC_STEMF_DEFINE(tfc_stem_row_f32_l8, tfc_vdf8, __attribute__((target("avx2,fma"))))
TFC_STEMF_DEFINE(tfc_stem_row_f32_l16, tfc_vdf16, __attribute__((target("avx512f"))))
#endif

/* Vector width of the float32 rows (depthwise, stem) on this CPU: 0 = 4 floats (aarch64, older
 * x86), 1 = 8 (AVX2 + FMA), 2 = 16 (AVX-512; TFCOMPRESS_NO_AVX512=1 hides it).  TFC_BY_WIDTH
 * lists a row's three builds in that order (4 floats for all three where x86 has none). */
static int tfc_f32_width(void) {
#if TFC_HAVE_X86
  if (__builtin_cpu_supports("avx512f") && !tfc_x86_no_avx512()) return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}
#if TFC_HAVE_X86
#define TFC_BY_WIDTH(l4, l8, l16) {l4, l8, l16}
#else
#define TFC_BY_WIDTH(l4, l8, l16) {l4, l4, l4}
#endif

/* Sets up the float32 stem (f->stem && f->f32; the expand state f->ex validated): weights
 * [3][3 Ci][cpe] and bias from the expand's packed weights and `bias` (float32 [Ce]), the copied
 * image row length (the last PX-pixel group's windows stay inside it), the row kernel for the CPU.
 * 0 when out of memory. */
int tfc_fused_stem_f32(TfcFused* f, const float* bias) {
  tfc_free64(f->stem_wf);
  tfc_free64(f->stem_bf);
  f->stem_wf = f->stem_bf = NULL;
  f->stem_row_f32 = NULL;
  const int Ce = f->Ce, Kp = f->Cin, K9 = 9 * f->Ci, cpe = f->dw_cpad; /* set by tfc_fused_setup_dw_f32 */
  float* dense = (float*)calloc((size_t)Ce * (size_t)Kp, sizeof(float));
  f->stem_wf = (float*)tfc_alloc64(sizeof(float) * (size_t)K9 * (size_t)cpe);
  f->stem_bf = (float*)tfc_alloc64(sizeof(float) * (size_t)cpe);
  if (dense == NULL || f->stem_wf == NULL || f->stem_bf == NULL || !tfc_dense_f32(&f->ex, dense)) {
    free(dense);
    return 0;
  }
  for (int t = 0; t < K9; ++t) /* tap t = (kh, kw, ci), the conv weights' order = the im2col column */
    for (int c = 0; c < cpe; ++c) f->stem_wf[(size_t)t * cpe + c] = c < Ce ? dense[(size_t)c * Kp + t] : 0.f;
  free(dense);
  for (int c = 0; c < cpe; ++c) f->stem_bf[c] = c < Ce ? bias[c] : 0.f;
  /* windows of the last group of 4 pixels (the widest PX) end at (W + 3) s Ci + 3 Ci */
  const size_t need = (size_t)(f->W + 3) * f->s_stride * f->Ci + 3u * f->Ci, have = (size_t)(f->s_pl + f->Wi) * f->Ci;
  f->stem_rowlen = (int)((need > have ? need : have) + 16u);
  static void (*const rows[3])(const TfcFused*, const float*, int, float*, float*) =
      TFC_BY_WIDTH(tfc_stem_row_f32_l4, tfc_stem_row_f32_l8, tfc_stem_row_f32_l16);
  static const char* const names[3] = {"stem_f32", "stem_f32_avx2", "stem_f32_avx512"};
  const int w = tfc_f32_width();
  f->stem_row_f32 = rows[w];
  f->stem_name = names[w];
  return 1;
}

int tfc_fused_setup_dw_f32(TfcFused* f, const float* bias) {
  tfc_fused_free_dw(f);
  const int cp = (f->Ce + 15) & ~15;
  f->dw_wf = (float*)tfc_alloc64(sizeof(float) * 9u * (size_t)cp);
  f->dw_bf = (float*)tfc_alloc64(sizeof(float) * (size_t)cp);
  f->dw_zrow_f = (float*)tfc_alloc64(sizeof(float) * ((size_t)f->W * (size_t)f->Ce + 16u));
  if (f->dw_wf == NULL || f->dw_bf == NULL || f->dw_zrow_f == NULL) return 0;
  const uint8_t* wb = (const uint8_t*)f->dw_w; /* float32 [9][Ce], validated length */
  for (int t = 0; t < 9; ++t)
    for (int c = 0; c < cp; ++c) {
      float v = 0.f;
      if (c < f->Ce) memcpy(&v, wb + 4u * ((size_t)t * f->Ce + c), 4);
      f->dw_wf[(size_t)t * cp + c] = v;
    }
  for (int c = 0; c < cp; ++c) f->dw_bf[c] = c < f->Ce ? bias[c] : 0.f;
  memset(f->dw_zrow_f, 0, sizeof(float) * ((size_t)f->W * (size_t)f->Ce + 16u));
  f->dw_cpad = cp;
  static const TfcDwRowF32Fn rows[3] = TFC_BY_WIDTH(tfc_dw_row_f32_l4, tfc_dw_row_f32_l8, tfc_dw_row_f32_l16);
  static const char* const names[3] = {"dw_f32", "dw_f32_avx2", "dw_f32_avx512"};
  const int w = tfc_f32_width();
  f->dw_row_f32 = rows[w];
  f->dw_name = names[w];
  f->dw_row = NULL;
  f->dw_gw = 16;
  f->dw_groups = (f->Ce + 15) / 16;
  return 1;
}

int tfc_fused_pick_dw(TfcFused* f, int cap, const int32_t* bias) {
  tfc_fused_free_dw(f);
  f->dw_row = tfc_dw_row_portable;
  f->dw_name = "dw_portable";
  f->dw_gw = 16;
#if TFC_HAVE_X86
  if (tfc_fused_dw_x86(f, cap, bias) < 0) return 0;
#elif TFC_HAVE_AARCH64
  if (tfc_fused_dw_aarch64(f, cap, bias) < 0) return 0;
#else
  (void)cap;
  (void)bias;
#endif
  f->dw_groups = (f->Ce + f->dw_gw - 1) / f->dw_gw;
  return 1;
}

void tfc_fused_free_dw(TfcFused* f) {
  tfc_free64(f->stem_wf);
  tfc_free64(f->stem_bf);
  f->stem_wf = f->stem_bf = NULL;
  f->stem_row_f32 = NULL;
  tfc_free64(f->dw_wf);
  tfc_free64(f->dw_bf);
  tfc_free64(f->dw_zrow_f);
  f->dw_wf = f->dw_bf = f->dw_zrow_f = NULL;
  f->dw_row_f32 = NULL;
#if TFC_HAVE_X86
  tfc_fused_free_dw_x86(f);
#elif TFC_HAVE_AARCH64
  tfc_fused_free_dw_aarch64(f);
#else
  (void)f;
#endif
}

/* XNNPACK's scalar qs8 add (xnn_qs8_vadd_minmax_ukernel__scalar): the SIMD versions compute the
 * same integers. p = project output (ADD input 0), x = block input. */
TFC_HOT void tfc_fused_add(const TfcFused* f, const int8_t* p, const int8_t* x, int8_t* y, size_t n) {
  const int32_t ma = f->add_ma, mb = f->add_mb, b = f->add_bias, lo = f->add_lo, hi = f->add_hi, zp = f->add_zp;
  const int sh = f->add_shift;
  for (size_t i = 0; i < n; ++i) {
    int32_t a = b + (int32_t)p[i] * ma + (int32_t)x[i] * mb;
    a = a >> sh; /* arithmetic shift (GCC / Clang on every target) */
    a = a < lo ? lo : (a > hi ? hi : a);
    y[i] = (int8_t)(a + zp);
  }
}

/* float32 residual ADD: y = p + x (TFLite's ADD without activation). */
TFC_HOT void tfc_fused_add_f32(const float* p, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = p[i] + x[i];
}

/* Stem: the im2col rows of expanded rows [h0, h1) (tfc_fused.c, flag bit 2): per pixel the 3x3
 * taps (kh, kw, c) of x [Hi][Wi][Ci] in the conv weights' order, then Kp - 9 Ci bytes; taps
 * outside the image and the filler bytes hold x's zero point (real value 0, as TFLite pads). */
TFC_HOT void tfc_fused_im2col(const TfcFused* f, const int8_t* x, int h0, int h1, int8_t* out) {
  const int Ci = f->Ci, Kp = f->Cin, W = f->W, Wi = f->Wi, ss = f->s_stride, pl = f->s_pl;
  const int8_t zp = (int8_t)f->zp_x;
  const size_t xrow = (size_t)Wi * (size_t)Ci, tap3 = 3u * (size_t)Ci;
  for (int h = h0; h < h1; ++h) {
    const int8_t* r[3]; /* the three input rows, NULL above / below the image */
    for (int kh = 0; kh < 3; ++kh) {
      const int ih = h * ss - f->s_pt + kh;
      r[kh] = (ih >= 0 && ih < f->Hi) ? x + (size_t)ih * xrow : NULL;
    }
    int8_t* o = out + (size_t)(h - h0) * (size_t)W * (size_t)Kp;
    for (int w = 0; w < W; ++w, o += Kp) {
      const int iw = w * ss - pl;
      const int inside = iw >= 0 && iw + 2 < Wi;
      for (int kh = 0; kh < 3; ++kh) {
        int8_t* t = o + (size_t)kh * tap3;
        if (r[kh] == NULL) {
          memset(t, zp, tap3);
        } else if (inside && Ci == 3) {
          memcpy(t, r[kh] + (size_t)iw * 3u, 8); /* 9 bytes, as fixed-size moves */
          t[8] = r[kh][(size_t)iw * 3u + 8u];
        } else if (inside) {
          memcpy(t, r[kh] + (size_t)iw * (size_t)Ci, tap3);
        } else {
          for (int kw = 0; kw < 3; ++kw) {
            const int c0 = iw + kw;
            if (c0 >= 0 && c0 < Wi) memcpy(t + (size_t)kw * Ci, r[kh] + (size_t)c0 * Ci, (size_t)Ci);
            else memset(t + (size_t)kw * Ci, zp, (size_t)Ci);
          }
        }
      }
      for (int k = 9 * Ci; k < Kp; ++k) o[k] = zp;
    }
  }
}

/* The direct stem rows' weights and row length (tfc_fused_x86.c, tfc_fused_aarch64.c: the same
 * bytes for vpdpbusd and sdot): int8 [3 kernel rows][Q dwords][Ce channels][4 taps], tap byte b
 * of kernel row kh = w[n][kh][b / Ci][b % Ci] for b < 3 Ci, else 0; read back from the expand's
 * quad relayout (tfc_build_i8_quads: per channel one entry {quad * T * 4, 4 weights} per stored
 * quad).  `window` = bytes each pixel's kernel-row load reads.  -1 out of memory, 0 the expand
 * has no quad relayout, 1 set (f->stem_w, f->stem_rowlen). */
int tfc_fused_stem_weights(TfcFused* f, int Q, int window) {
  const TfcState* e = &f->ex;
  if (e->i8q_ptr == NULL || e->i8q_tile <= 0) return 0;
  const int Ce = f->Ce, Kp = f->Cin, Ci = f->Ci;
  int8_t* dense = (int8_t*)calloc((size_t)Ce * (size_t)Kp, 1);
  int8_t* w8 = (int8_t*)tfc_alloc64(12u * (size_t)Q * (size_t)Ce);
  if (dense == NULL || w8 == NULL) {
    free(dense);
    tfc_free64(w8);
    return -1;
  }
  for (int n = 0; n < Ce; ++n)
    for (uint32_t j = e->i8q_ptr[n]; j < e->i8q_ptr[n + 1]; ++j) {
      const uint32_t q = e->i8q_off[j] / (4u * (uint32_t)e->i8q_tile);
      for (int i = 0; i < 4; ++i)
        if (4 * q + (uint32_t)i < (uint32_t)Kp) dense[(size_t)n * Kp + 4 * q + i] = (int8_t)(e->i8q_w[j] >> (8 * i));
    }
  for (int kh = 0; kh < 3; ++kh)
    for (int q = 0; q < Q; ++q)
      for (int n = 0; n < Ce; ++n)
        for (int i = 0; i < 4; ++i) {
          const int b = 4 * q + i;
          w8[(((size_t)kh * Q + q) * Ce + n) * 4u + (size_t)i] = b < 3 * Ci ? dense[(size_t)n * Kp + (size_t)kh * 3 * Ci + b] : 0;
        }
  free(dense);
  f->stem_w = (int32_t*)w8;
  /* an unsigned / signed image row: s_pl lead columns, the image, zero-point bytes to the last load */
  const int need = (f->W - 1) * f->s_stride * Ci + window, have = (f->s_pl + f->Wi) * Ci;
  f->stem_rowlen = (int)tfc_round64((size_t)(need > have ? need : have));
  return 1;
}

static _Atomic(const char*) tfc_fused_dw_last = "";
static _Atomic(const char*) tfc_fused_ex_last = "";
static _Atomic(const char*) tfc_fused_pr_last = "";
static char tfc_fused_names[160];

const char* tfc_fused_expand_name(const TfcFused* f) {
  if (f->stem_row != NULL || f->stem_row_f32 != NULL) return f->stem_name;
  return f->has_expand && f->ex.plan.name ? f->ex.plan.name : "none";
}

void tfc_fused_note_plan(const TfcFused* f) {
  atomic_store(&tfc_fused_dw_last, f->dw_name);
  atomic_store(&tfc_fused_ex_last, tfc_fused_expand_name(f));
  atomic_store(&tfc_fused_pr_last, f->pr.plan.name ? f->pr.plan.name : "");
}

/* Tests (one thread): "dw=<name> expand=<name> project=<name>" of the last Prepare. */
const char* TfcFusedLastKernelNames(void) {
  snprintf(tfc_fused_names, sizeof(tfc_fused_names), "dw=%s expand=%s project=%s", atomic_load(&tfc_fused_dw_last),
           atomic_load(&tfc_fused_ex_last), atomic_load(&tfc_fused_pr_last));
  return tfc_fused_names;
}
