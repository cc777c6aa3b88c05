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
  f->dw_row_f32 = tfc_dw_row_f32_l4;
  f->dw_name = "dw_f32";
#if TFC_HAVE_X86
  if (__builtin_cpu_supports("avx512f") && !tfc_x86_no_avx512()) {
    f->dw_row_f32 = tfc_dw_row_f32_l16;
    f->dw_name = "dw_f32_avx512";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    f->dw_row_f32 = tfc_dw_row_f32_l8;
    f->dw_name = "dw_f32_avx2";
  }
#endif
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

void tfc_fused_note_plan(const TfcFused* f) {
  atomic_store(&tfc_fused_dw_last, f->dw_name);
  atomic_store(&tfc_fused_ex_last, f->stem_row != NULL ? f->stem_name
                                  : f->has_expand && f->ex.plan.name ? f->ex.plan.name : "none");
  atomic_store(&tfc_fused_pr_last, f->pr.plan.name ? f->pr.plan.name : "");
}

/* Tests (one thread): "dw=<name> expand=<name> project=<name>" of the last Prepare. */
const char* TfcFusedLastKernelNames(void) {
  snprintf(tfc_fused_names, sizeof(tfc_fused_names), "dw=%s expand=%s project=%s", atomic_load(&tfc_fused_dw_last),
           atomic_load(&tfc_fused_ex_last), atomic_load(&tfc_fused_pr_last));
  return tfc_fused_names;
}
