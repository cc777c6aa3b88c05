/* tfcompress: x86 int8 3x3 depthwise rows of TFC_SPARSE_INVERTED_RESIDUAL (the same integers
 * as tfc_dw_row_portable in tfc_fused_kernels.c), picked in Prepare (tfc_fused_dw_x86):
 *   cap >= 2, AVX-512 VNNI           tfc_dw_row_avx512vnni  "dw_avx512vnni" (vpdpbusd by kernel column)
 *   cap >= 2, no AVX-512, AVX-VNNI   tfc_dw_row_avxvnni     "dw_avxvnni"    (the same, 256-bit)
 *   cap 1 (or no VNNI), AVX-512BW    tfc_dw_row_avx512      "dw_avx512"     (vpmaddwd, below)
 *   cap >= 1, AVX2 (no AVX-512, no   tfc_dw_row_avx2        "dw_avx2"       (the same, 256-bit:
 *     AVX-VNNI at cap 2: AMD Zen 1-3, Intel Haswell .. Tiger Lake client)   16 channels per step)
 *   otherwise the portable C row.  TFCOMPRESS_NO_AVX512=1 hides AVX-512 as for the 1x1s.
 *
 * tfc_dw_row_avx512: 32 channels per step, taps in pairs (0,1) (2,3) (4,5) (6,7) (8,-): the two taps' inputs,
 * sign-extended to int16, are interleaved (vpunpckl/hwd) and multiplied by the interleaved
 * weights with vpmaddwd, which adds the two products into one int32 lane (|x*w| <= 2^14, so
 * the pair sum is exact).  The interleave puts channels 8L+0..3 (low) and 8L+4..7 (high) of each
 * 128-bit lane L into the two accumulators; bias and multipliers are stored in that order
 * (Prepare) and two vpunpck*dq restore the channel order of the int8 results.  The AVX2 row does
 * the same on 16 channels (lanes 0, 1); there vpackssdw of the two accumulators restores the order.
 * The input zero point is folded into the bias (acc = bias - zp * sum w + sum x * w), and padding
 * taps read a row of zero-point bytes, so every tap is a plain load.  Channel groups are the
 * outer loop: a group's weights stay in registers for the whole output row.
 * Requantization as XNNPACK's fp32 path: acc * m[c] in float, clamped, rounded half to even. */
#include "tfc_internal.h"

#if TFC_HAVE_X86
#include <immintrin.h>

/* AVX-VNNI (VEX vpdpbusd) needs GCC >= 11 / Clang >= 12, as in tfc_kernels_x86_avx2.c */
#if !defined(TFC_NO_AVXVNNI) && defined(__has_include)
#if __has_include(<avxvnniintrin.h>)
#define TFC_HAVE_AVXVNNI_DW 1
#endif
#endif
#ifndef TFC_HAVE_AVXVNNI_DW
#define TFC_HAVE_AVXVNNI_DW 0
#endif

#define TFC_DW_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

TFC_DW_TARGET static void tfc_dw_row_avx512(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias,
                                            int8_t* out, int32_t* acc, int g0, int g1) {
  (void)bias; /* folded into f->dw_bp in Prepare */
  (void)acc;
  const int C = f->Ce, W = f->W, st = f->stride, pl = f->pl;
  const __m512i zo = _mm512_set1_epi32(f->zp_d);
  const __m512 lo = _mm512_set1_ps((float)(f->dw_qmin - f->zp_d)), hi = _mm512_set1_ps((float)(f->dw_qmax - f->zp_d));
  const int8_t* z = f->dw_zrow;
  const int8_t* base[3];
  size_t cs[3];
  tfc_dw_row_bases(f, rows, base, cs);
  /* channel groups outer: the group's weights, bias and multipliers stay in registers for the row */
  for (int g = g0; g < g1; ++g) {
    const int c0 = 32 * g;
    const __mmask32 m = C - c0 >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (C - c0)) - 1u);
    const int16_t* wp = f->dw_wp + (size_t)g * 5 * 64;
    __m512i wl[5], wh[5];
    for (int t = 0; t < 5; ++t) {
      wl[t] = _mm512_load_si512((const void*)(wp + 64 * t));
      wh[t] = _mm512_load_si512((const void*)(wp + 64 * t + 32));
    }
    const __m512i b0 = _mm512_load_si512((const void*)(f->dw_bp + (size_t)g * 32));
    const __m512i b1 = _mm512_load_si512((const void*)(f->dw_bp + (size_t)g * 32 + 16));
    const __m512 m0 = _mm512_load_ps(f->dw_mp + (size_t)g * 32), m1 = _mm512_load_ps(f->dw_mp + (size_t)g * 32 + 16);
    for (int ow = 0; ow < f->Wo; ++ow) {
      const int iw0 = ow * st - pl;
      const int8_t* p[10];
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw) {
          const int iw = iw0 + kw;
          p[kh * 3 + kw] = ((unsigned)iw < (unsigned)W ? base[kh] + (size_t)iw * cs[kh] : z) + c0;
        }
      p[9] = z + c0;
      __m512i a0 = b0, a1 = b1;
      for (int t = 0; t < 5; ++t) {
        const __m512i xa = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, p[2 * t]));
        const __m512i xb = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, p[2 * t + 1]));
        a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(_mm512_unpacklo_epi16(xa, xb), wl[t]));
        a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(_mm512_unpackhi_epi16(xa, xb), wh[t]));
      }
      __m512 q0 = _mm512_mul_ps(_mm512_cvtepi32_ps(a0), m0);
      __m512 q1 = _mm512_mul_ps(_mm512_cvtepi32_ps(a1), m1);
      q0 = _mm512_max_ps(_mm512_min_ps(q0, hi), lo);
      q1 = _mm512_max_ps(_mm512_min_ps(q1, hi), lo);
      const __m128i r0 = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(q0), zo));
      const __m128i r1 = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(q1), zo));
      const __m256i r = _mm256_set_m128i(_mm_unpackhi_epi32(r0, r1), _mm_unpacklo_epi32(r0, r1));
      _mm256_mask_storeu_epi8(out + (size_t)ow * C + c0, m, r);
    }
  }
}

#define TFC_DW2_TARGET __attribute__((target("avx2,fma")))

/* 16 bytes at p of which the first n (1..16) are channels: whole dwords through vpmaskmovd
 * (masked-off elements are not accessed), other widths through a copy.  dm: the dword mask of n. */
TFC_DW2_TARGET __attribute__((always_inline)) static inline __m128i tfc_dw2_load(const int8_t* p, int n, __m128i dm) {
  if (n >= 16) return _mm_loadu_si128((const __m128i*)(const void*)p);
  if ((n & 3) == 0) return _mm_maskload_epi32((const int*)(const void*)p, dm);
  int8_t t[16] = {0};
  memcpy(t, p, (size_t)n);
  return _mm_loadu_si128((const __m128i*)(const void*)t);
}
TFC_DW2_TARGET __attribute__((always_inline)) static inline void tfc_dw2_store(int8_t* p, __m128i r, int n, __m128i dm) {
  if (n >= 16) {
    _mm_storeu_si128((__m128i*)(void*)p, r);
  } else if ((n & 3) == 0) {
    _mm_maskstore_epi32((int*)(void*)p, dm, r);
  } else {
    int8_t t[16];
    _mm_storeu_si128((__m128i*)(void*)t, r);
    memcpy(p, t, (size_t)n);
  }
}

/* One output pixel of a 16-channel group of the AVX2 row: taps p[0..8] (p[9]: the zero weights
 * of pair 4), weights wl / wh, folded bias b0 / b1, multipliers m0 / m1.  Inlined with n = 16
 * (whole groups), the partial-load branches fold away. */
TFC_DW2_TARGET __attribute__((always_inline)) static inline void tfc_dw2_pixel(
    const int8_t* const p[10], const __m256i wl[5], const __m256i wh[5], __m256i b0, __m256i b1, __m256 m0,
    __m256 m1, __m256 lo, __m256 hi, __m256i zo, int8_t* out, int n, __m128i dm) {
  __m256i a0 = b0, a1 = b1;
  for (int t = 0; t < 5; ++t) {
    const __m256i xa = _mm256_cvtepi8_epi16(tfc_dw2_load(p[2 * t], n, dm));
    const __m256i xb = _mm256_cvtepi8_epi16(tfc_dw2_load(p[2 * t + 1], n, dm));
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb), wl[t]));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb), wh[t]));
  }
  __m256 q0 = _mm256_mul_ps(_mm256_cvtepi32_ps(a0), m0);
  __m256 q1 = _mm256_mul_ps(_mm256_cvtepi32_ps(a1), m1);
  q0 = _mm256_max_ps(_mm256_min_ps(q0, hi), lo);
  q1 = _mm256_max_ps(_mm256_min_ps(q1, hi), lo);
  /* in range after the clamp: the saturating packs are exact and put the channels in order */
  const __m256i r = _mm256_packs_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(q0), zo),
                                       _mm256_add_epi32(_mm256_cvtps_epi32(q1), zo));
  const __m128i b8 = _mm_packs_epi16(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  tfc_dw2_store(out, b8, n, dm);
}

/* The output pixels of one 16-channel group: the edge pixels (a tap column outside the map reads
 * the zero-point row) tap by tap, the interior ones with the 3 row pointers stepped by the
 * stride. */
TFC_DW2_TARGET __attribute__((always_inline)) static inline void tfc_dw2_group(const TfcFused* f,
                                                                             const int8_t* const base[3],
                                                                             const size_t cs[3], int g, int n,
                                                                             int8_t* out) {
  const int C = f->Ce, W = f->W, Wo = f->Wo, st = f->stride, pl = f->pl, c0 = 16 * g;
  const __m256i zo = _mm256_set1_epi32(f->zp_d);
  const __m256 lo = _mm256_set1_ps((float)(f->dw_qmin - f->zp_d)), hi = _mm256_set1_ps((float)(f->dw_qmax - f->zp_d));
  const int8_t* z = f->dw_zrow;
  const __m128i dm = _mm_cmpgt_epi32(_mm_set1_epi32(n / 4), _mm_setr_epi32(0, 1, 2, 3));
  const int16_t* wp = f->dw_wp + (size_t)g * 5 * 32;
  __m256i wl[5], wh[5];
  for (int t = 0; t < 5; ++t) {
    wl[t] = _mm256_load_si256((const __m256i*)(const void*)(wp + 32 * t));
    wh[t] = _mm256_load_si256((const __m256i*)(const void*)(wp + 32 * t + 16));
  }
  const __m256i b0 = _mm256_load_si256((const __m256i*)(const void*)(f->dw_bp + (size_t)g * 16));
  const __m256i b1 = _mm256_load_si256((const __m256i*)(const void*)(f->dw_bp + (size_t)g * 16 + 8));
  const __m256 m0 = _mm256_load_ps(f->dw_mp + (size_t)g * 16), m1 = _mm256_load_ps(f->dw_mp + (size_t)g * 16 + 8);
  /* interior: ow * st - pl >= 0 and ow * st - pl + 2 <= W - 1 */
  const int in0 = (pl + st - 1) / st;
  int in1 = W >= 3 ? (W - 3 + pl) / st + 1 : 0;
  if (in1 > Wo) in1 = Wo;
  if (in1 < in0) in1 = in0;
  const int8_t* p[10];
  p[9] = z + c0;
  for (int ow = 0; ow < Wo; ++ow) {
    if (ow == in0 && in1 > in0) {
      const int8_t* q[3];
      for (int kh = 0; kh < 3; ++kh) q[kh] = base[kh] + (size_t)(in0 * st - pl) * cs[kh] + c0;
      for (; ow < in1; ++ow) {
        for (int kh = 0; kh < 3; ++kh) {
          p[3 * kh] = q[kh];
          p[3 * kh + 1] = q[kh] + cs[kh];
          p[3 * kh + 2] = q[kh] + 2 * cs[kh];
          q[kh] += (size_t)st * cs[kh];
        }
        tfc_dw2_pixel(p, wl, wh, b0, b1, m0, m1, lo, hi, zo, out + (size_t)ow * C + c0, n, dm);
      }
      if (ow >= Wo) break;
    }
    const int iw0 = ow * st - pl;
    for (int kh = 0; kh < 3; ++kh)
      for (int kw = 0; kw < 3; ++kw) {
        const int iw = iw0 + kw;
        p[kh * 3 + kw] = ((unsigned)iw < (unsigned)W ? base[kh] + (size_t)iw * cs[kh] : z) + c0;
      }
    tfc_dw2_pixel(p, wl, wh, b0, b1, m0, m1, lo, hi, zo, out + (size_t)ow * C + c0, n, dm);
  }
}

/* The AVX2 row: tfc_dw_row_avx512 on 16-channel groups (weights, bias, multipliers from
 * tfc_fused_dw_pairs(f, bias, 16)); whole groups get their own inlined copy (n = 16). */
TFC_DW2_TARGET static void tfc_dw_row_avx2(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias,
                                          int8_t* out, int32_t* acc, int g0, int g1) {
  (void)bias; /* folded into f->dw_bp in Prepare */
  (void)acc;
  const int C = f->Ce;
  const int8_t* base[3];
  size_t cs[3];
  tfc_dw_row_bases(f, rows, base, cs);
  for (int g = g0; g < g1; ++g) {
    if (C - 16 * g >= 16)
      tfc_dw2_group(f, base, cs, g, 16, out);
    else
      tfc_dw2_group(f, base, cs, g, C - 16 * g, out);
  }
}

#define TFC_DWQ_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* VNNI depthwise rows (AVX-512 VNNI: 64 channels per step, the last <= 32 in 256-bit registers;
 * AVX-VNNI: 32 per step).  Taps are grouped by kernel column: for input column c the bytes of
 * kernel rows 0, 1, 2 (x ^ 0x80 = x + 128, u8) are interleaved into one dword per channel
 * [row 0, row 1, row 2, row 2] with two rounds of vpunpck{l,h}bw / wd (the 4th byte has weight 0),
 * and vpdpbusd adds the 3 products into the channel's int32 lane (exact: no saturation).  A
 * column's 4 interleaved registers serve every output pixel that reads it (3 at stride 1, 1-2 at
 * stride 2), so each output pixel builds 1 (stride 1) or 2 (stride 2) new columns: 3 loads and 8
 * shuffles per column instead of 9 loads and 20 shuffles per pixel.  Register k (0..3) holds
 * channels 16 L + 4 k + j in dword j of 128-bit lane L; the saturating packs of the
 * requantization (XNNPACK's fp32 path, as tfc_requant64) put the results back in channel order:
 * one store per step.  Padding columns / rows read the zero-point row; the input zero point and
 * the +128 are folded into the bias. */

/* Interleaved registers v[0..3] of input column `col` (padding outside 0..W-1), channels c0.. */
TFC_DWQ_TARGET __attribute__((always_inline)) static inline void tfc_dwq_col(const int8_t* const base[3],
                                                                            const size_t cs[3], const int8_t* z,
                                                                            int col, int W, int c0, __mmask64 m,
                                                                            __m512i flip, __m512i v[4]) {
  __m512i r[3];
  for (int kh = 0; kh < 3; ++kh) {
    const int8_t* p = ((unsigned)col < (unsigned)W ? base[kh] + (size_t)col * cs[kh] : z) + c0;
    r[kh] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p), flip);
  }
  const __m512i l01 = _mm512_unpacklo_epi8(r[0], r[1]), h01 = _mm512_unpackhi_epi8(r[0], r[1]);
  const __m512i l22 = _mm512_unpacklo_epi8(r[2], r[2]), h22 = _mm512_unpackhi_epi8(r[2], r[2]);
  v[0] = _mm512_unpacklo_epi16(l01, l22);
  v[1] = _mm512_unpackhi_epi16(l01, l22);
  v[2] = _mm512_unpacklo_epi16(h01, h22);
  v[3] = _mm512_unpackhi_epi16(h01, h22);
}

/* One group of n <= 32 channels (c0..c0+n-1) of a depthwise row in 256-bit registers: weights
 * [kernel column][4][32 bytes] at wq, bias / multipliers [4][8] at bq / mq.  LOAD(p) / STORE(p, r)
 * move the group's n bytes, DOT is the vpdpbusd of the ISA. */
#define TFC_DW256_GROUP(NAME, TARGET, LOAD, STORE, DOT)                                                          \
  TARGET static void NAME(const TfcFused* f, const int8_t* const base[3], const size_t cs[3], const int8_t* z,    \
                          int c0, int n, const int8_t* wq, const int32_t* bq, const float* mq, int8_t* out) {    \
    const int C = f->Ce, W = f->W, st = f->stride, pl = f->pl;                                                    \
    const __m256i flip = _mm256_set1_epi8((char)0x80);                                                            \
    const __m256 hi = _mm256_set1_ps((float)(f->dw_qmax - f->zp_d));                                              \
    const __m256i zp16 = _mm256_set1_epi16((short)f->zp_d), qmin8 = _mm256_set1_epi8((char)f->dw_qmin);           \
    const __m256i* wv = (const __m256i*)wq;                                                                       \
    const __m256i dm = _mm256_cmpgt_epi32(_mm256_set1_epi32(n / 4), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));   \
    (void)dm;                                                                                                     \
    const __m256 m0 = _mm256_load_ps(mq), m1 = _mm256_load_ps(mq + 8), m2 = _mm256_load_ps(mq + 16),              \
                 m3 = _mm256_load_ps(mq + 24);                                                                    \
    __m256i A[4], B[4], Cc[4]; /* interleaved registers of the kernel's columns 0, 1, 2 */                        \
    if (st == 1) {                                                                                                \
      TFC_DW256_COL(-pl, A, LOAD);                                                                                \
      TFC_DW256_COL(1 - pl, B, LOAD);                                                                             \
      for (int ow = 0; ow < f->Wo; ++ow) {                                                                        \
        TFC_DW256_COL(ow - pl + 2, Cc, LOAD);                                                                     \
        TFC_DW256_PIXEL(ow, DOT, STORE);                                                                          \
        for (int k = 0; k < 4; ++k) {                                                                             \
          A[k] = B[k];                                                                                            \
          B[k] = Cc[k];                                                                                           \
        }                                                                                                         \
      }                                                                                                           \
    } else {                                                                                                      \
      TFC_DW256_COL(-pl, A, LOAD);                                                                                \
      for (int ow = 0; ow < f->Wo; ++ow) {                                                                        \
        TFC_DW256_COL(2 * ow - pl + 1, B, LOAD);                                                                  \
        TFC_DW256_COL(2 * ow - pl + 2, Cc, LOAD);                                                                 \
        TFC_DW256_PIXEL(ow, DOT, STORE);                                                                          \
        for (int k = 0; k < 4; ++k) A[k] = Cc[k];                                                                 \
      }                                                                                                           \
    }                                                                                                             \
  }

/* Interleaved registers V[0..3] of input column `col` (256-bit, channels c0.., n of them). */
#define TFC_DW256_COL(col, V, LOAD)                                                                               \
  do {                                                                                                            \
    const int col_ = (col);                                                                                       \
    __m256i r_[3];                                                                                                \
    for (int kh = 0; kh < 3; ++kh) {                                                                              \
      const int8_t* p = ((unsigned)col_ < (unsigned)W ? base[kh] + (size_t)col_ * cs[kh] : z) + c0;               \
      r_[kh] = _mm256_xor_si256(LOAD(p), flip);                                                                   \
    }                                                                                                             \
    const __m256i l01 = _mm256_unpacklo_epi8(r_[0], r_[1]), h01 = _mm256_unpackhi_epi8(r_[0], r_[1]);             \
    const __m256i l22 = _mm256_unpacklo_epi8(r_[2], r_[2]), h22 = _mm256_unpackhi_epi8(r_[2], r_[2]);             \
    V[0] = _mm256_unpacklo_epi16(l01, l22);                                                                       \
    V[1] = _mm256_unpackhi_epi16(l01, l22);                                                                       \
    V[2] = _mm256_unpacklo_epi16(h01, h22);                                                                       \
    V[3] = _mm256_unpackhi_epi16(h01, h22);                                                                       \
  } while (0)

/* Output pixel ow from A, B, Cc (256-bit). */
#define TFC_DW256_PIXEL(ow, DOT, STORE)                                                                           \
  do {                                                                                                            \
    __m256i a_[4];                                                                                                \
    for (int k = 0; k < 4; ++k) {                                                                                 \
      a_[k] = DOT(_mm256_load_si256((const __m256i*)(bq + 8 * k)), A[k], _mm256_load_si256(wv + k));              \
      a_[k] = DOT(a_[k], B[k], _mm256_load_si256(wv + 4 + k));                                                    \
      a_[k] = DOT(a_[k], Cc[k], _mm256_load_si256(wv + 8 + k));                                                   \
    }                                                                                                             \
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a_[0]), m0), hi));       \
    const __m256i q1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a_[1]), m1), hi));       \
    const __m256i q2 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a_[2]), m2), hi));       \
    const __m256i q3 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a_[3]), m3), hi));       \
    const __m256i p01 = _mm256_adds_epi16(_mm256_packs_epi32(q0, q1), zp16);                                      \
    const __m256i p23 = _mm256_adds_epi16(_mm256_packs_epi32(q2, q3), zp16);                                      \
    STORE(out + (size_t)(ow) * C + c0, _mm256_max_epi8(_mm256_packs_epi16(p01, p23), qmin8));                     \
  } while (0)

#define TFC_DWQ_LOAD32(p) _mm256_maskz_loadu_epi8(m32, (p))
#define TFC_DWQ_STORE32(p, r) _mm256_mask_storeu_epi8((p), m32, (r))
#define TFC_DWQ_DOT32(a, x, w) _mm256_dpbusd_epi32((a), (x), (w))
#define m32 ((__mmask32)(n >= 32 ? 0xFFFFFFFFu : ((1u << n) - 1u)))
TFC_DW256_GROUP(tfc_dw_tail32, TFC_DWQ_TARGET, TFC_DWQ_LOAD32, TFC_DWQ_STORE32, TFC_DWQ_DOT32)
#undef m32

/* AVX-512 VNNI depthwise row: 64 channels per step (the last <= 32 channels: tfc_dw_tail32). */
TFC_DWQ_TARGET static void tfc_dw_row_avx512vnni(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias,
                                                 int8_t* out, int32_t* acc, int g0, int g1) {
  (void)bias; /* folded into f->dw_qb in Prepare */
  (void)acc;
  const int C = f->Ce, W = f->W, st = f->stride, pl = f->pl;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  const __m512 hi = _mm512_set1_ps((float)(f->dw_qmax - f->zp_d));
  const __m512i zp16 = _mm512_set1_epi16((short)f->zp_d), qmin8 = _mm512_set1_epi8((char)f->dw_qmin);
  const int8_t* z = f->dw_zrow;
  const int8_t* base[3];
  size_t cs[3];
  tfc_dw_row_bases(f, rows, base, cs);
  for (int g = g0; g < g1; ++g) {
    const int c0 = 64 * g;
    if (C - c0 <= 32) { /* last <= 32 channels: 256-bit steps */
      tfc_dw_tail32(f, base, cs, z, c0, C - c0, f->dw_qv + (size_t)g * 12 * 64, f->dw_qb + (size_t)g * 64,
                    f->dw_qm + (size_t)g * 64, out);
      break;
    }
    const __mmask64 m = C - c0 >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (C - c0)) - 1u);
    const __m512i* wv = (const __m512i*)(f->dw_qv + (size_t)g * 12 * 64);
    const __m512i* bv = (const __m512i*)(f->dw_qb + (size_t)g * 64);
    const float* mv = f->dw_qm + (size_t)g * 64;
    const __m512 m0 = _mm512_load_ps(mv), m1 = _mm512_load_ps(mv + 16), m2 = _mm512_load_ps(mv + 32),
                 m3 = _mm512_load_ps(mv + 48);
    /* one output pixel from the interleaved columns A, B, Cc (kernel columns 0, 1, 2) */
#define TFC_DWQ_PIXEL(ow, A, B, Cc)                                                                              \
  do {                                                                                                           \
    __m512i a_[4];                                                                                               \
    for (int k = 0; k < 4; ++k) {                                                                                \
      a_[k] = _mm512_dpbusd_epi32(_mm512_load_si512(bv + k), A[k], _mm512_load_si512(wv + k));                   \
      a_[k] = _mm512_dpbusd_epi32(a_[k], B[k], _mm512_load_si512(wv + 4 + k));                                   \
      a_[k] = _mm512_dpbusd_epi32(a_[k], Cc[k], _mm512_load_si512(wv + 8 + k));                                  \
    }                                                                                                            \
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a_[0]), m0), hi));     \
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a_[1]), m1), hi));     \
    const __m512i q2 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a_[2]), m2), hi));     \
    const __m512i q3 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a_[3]), m3), hi));     \
    const __m512i p01 = _mm512_adds_epi16(_mm512_packs_epi32(q0, q1), zp16);                                    \
    const __m512i p23 = _mm512_adds_epi16(_mm512_packs_epi32(q2, q3), zp16);                                    \
    _mm512_mask_storeu_epi8(out + (size_t)(ow) * C + c0, m, _mm512_max_epi8(_mm512_packs_epi16(p01, p23), qmin8)); \
  } while (0)
    __m512i A[4], B[4], Cc[4];
    if (st == 1) { /* pixel ow reads columns ow - pl .. ow - pl + 2: one new column per pixel */
      tfc_dwq_col(base, cs, z, -pl, W, c0, m, flip, A);
      tfc_dwq_col(base, cs, z, 1 - pl, W, c0, m, flip, B);
      for (int ow = 0; ow < f->Wo; ++ow) {
        tfc_dwq_col(base, cs, z, ow - pl + 2, W, c0, m, flip, Cc);
        TFC_DWQ_PIXEL(ow, A, B, Cc);
        for (int k = 0; k < 4; ++k) {
          A[k] = B[k];
          B[k] = Cc[k];
        }
      }
    } else { /* stride 2: columns 2 ow - pl .. 2 ow - pl + 2, the last one shared with ow + 1 */
      tfc_dwq_col(base, cs, z, -pl, W, c0, m, flip, A);
      for (int ow = 0; ow < f->Wo; ++ow) {
        tfc_dwq_col(base, cs, z, 2 * ow - pl + 1, W, c0, m, flip, B);
        tfc_dwq_col(base, cs, z, 2 * ow - pl + 2, W, c0, m, flip, Cc);
        TFC_DWQ_PIXEL(ow, A, B, Cc);
        for (int k = 0; k < 4; ++k) A[k] = Cc[k];
      }
    }
#undef TFC_DWQ_PIXEL
  }
}

/* Lane j (0..gw/2 - 1) of accumulator h (0 low, 1 high) of a gw-channel group (32: AVX-512, 16:
 * AVX2) holds channel 8 * (j / 4) + 4 * h + j % 4 (see the top of this file). */
static int tfc_dw_lane_channel(int h, int j) { return 8 * (j / 4) + 4 * h + j % 4; }

#if TFC_HAVE_AVXVNNI_DW
#define TFC_DWA_TARGET __attribute__((target("avx2,fma,avxvnni")))

/* 32 bytes at p of which the first n (1..32) are channels: a partial group of whole dwords
 * (n % 4 == 0, every MobileNet width) through the dword masks of vpmaskmovd (masked-off
 * elements are not accessed), else through a copy.  dm: the dword mask of n. */
TFC_DWA_TARGET __attribute__((always_inline)) static inline __m256i tfc_dwa_load(const int8_t* p, int n, __m256i dm) {
  if (n >= 32) return _mm256_loadu_si256((const __m256i*)p);
  if ((n & 3) == 0) return _mm256_maskload_epi32((const int*)(const void*)p, dm);
  int8_t t[32] = {0};
  memcpy(t, p, (size_t)n);
  return _mm256_loadu_si256((const __m256i*)t);
}
TFC_DWA_TARGET __attribute__((always_inline)) static inline void tfc_dwa_store(int8_t* p, __m256i r, int n, __m256i dm) {
  if (n >= 32) {
    _mm256_storeu_si256((__m256i*)p, r);
    return;
  }
  if ((n & 3) == 0) {
    _mm256_maskstore_epi32((int*)(void*)p, dm, r);
    return;
  }
  int8_t t[32];
  _mm256_storeu_si256((__m256i*)t, r);
  memcpy(p, t, (size_t)n);
}
#define TFC_DWA_LOAD(p) tfc_dwa_load((p), n, dm)
#define TFC_DWA_STORE(p, r) tfc_dwa_store((p), (r), n, dm)
#define TFC_DWA_DOT(a, x, w) _mm256_dpbusd_avx_epi32((a), (x), (w))
TFC_DW256_GROUP(tfc_dwa_group, TFC_DWA_TARGET, TFC_DWA_LOAD, TFC_DWA_STORE, TFC_DWA_DOT)

/* AVX-VNNI depthwise row (x86 without AVX-512, e.g. Intel client CPUs): 32-channel groups with
 * the VEX vpdpbusd (no byte masks: a partial last group goes through a copy); same integers as
 * every other depthwise kernel. */
TFC_DWA_TARGET static void tfc_dw_row_avxvnni(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias,
                                             int8_t* out, int32_t* acc, int g0, int g1) {
  (void)bias;
  (void)acc;
  const int C = f->Ce;
  const int8_t* z = f->dw_zrow;
  const int8_t* base[3];
  size_t cs[3];
  tfc_dw_row_bases(f, rows, base, cs);
  for (int g = g0; g < g1; ++g) {
    const int c0 = 32 * g;
    tfc_dwa_group(f, base, cs, z, c0, C - c0 < 32 ? C - c0 : 32, f->dw_qv + (size_t)g * 12 * 32,
                  f->dw_qb + (size_t)g * 32, f->dw_qm + (size_t)g * 32, out);
  }
}
#endif

/* Prepare of tfc_dw_row_avx512vnni (GW = 64) / tfc_dw_row_avxvnni (GW = 32): weights, bias and
 * multipliers in their lane order, groups of GW channels (GW = 64: the last <= 32 channels are a
 * group of 32 in 256-bit registers). */
static int tfc_fused_dw_vnni(TfcFused* f, const int32_t* bias, const int GW) {
  const int C = f->Ce, G = (C + GW - 1) / GW;
  f->dw_qv = (int8_t*)tfc_alloc64((size_t)G * 12u * (size_t)GW);
  f->dw_qb = (int32_t*)tfc_alloc64(sizeof(int32_t) * (size_t)G * (size_t)GW);
  f->dw_qm = (float*)tfc_alloc64(sizeof(float) * (size_t)G * (size_t)GW);
  f->dw_zrow = (int8_t*)tfc_alloc64((size_t)G * (size_t)GW);
  if (f->dw_qv == NULL || f->dw_qb == NULL || f->dw_qm == NULL || f->dw_zrow == NULL) return -1;
  memset(f->dw_zrow, (int)(int8_t)f->zp_e, (size_t)G * (size_t)GW);
  memset(f->dw_qv, 0, (size_t)G * 12u * (size_t)GW);
  memset(f->dw_qb, 0, sizeof(int32_t) * (size_t)G * (size_t)GW);
  memset(f->dw_qm, 0, sizeof(float) * (size_t)G * (size_t)GW);
  for (int g = 0; g < G; ++g) {
    /* group g: registers of D dwords (16; groups of <= 32 channels: 8), 128-bit lanes L < D / 4 */
    const int D = (GW == 32 || C - GW * g <= 32) ? 8 : 16;
    int8_t* wq = f->dw_qv + (size_t)g * 12 * (size_t)GW;
    for (int k = 0; k < 4; ++k)
      for (int L = 0; L < D / 4; ++L)
        for (int j = 0; j < 4; ++j) {
          const int c = GW * g + 16 * L + 4 * k + j, lane = GW * g + D * k + 4 * L + j; /* dword of register k */
          int32_t b = 0, sw = 0;
          if (c < C) {
            for (int t = 0; t < 9; ++t) sw += f->dw_w[t * C + c];
            /* sum (x + 128) w - (128 + zp) sum w = sum (x - zp) w */
            b = (int32_t)((uint32_t)bias[c] - (uint32_t)(128 + f->zp_e) * (uint32_t)sw);
            for (int t = 0; t < 9; ++t) /* tap (kh, kw) = t: register 4 kw + k, byte kh */
              wq[((size_t)(4 * (t % 3) + k) * D + 4 * L + j) * 4 + t / 3] = f->dw_w[t * C + c];
          }
          f->dw_qb[lane] = b;
          f->dw_qm[lane] = c < C ? f->dw_mult[c] : 0.f;
        }
  }
  return 1;
}

/* The pair layout of tfc_dw_row_avx512 (gw 32) and tfc_dw_row_avx2 (gw 16): per group, pair t
 * (taps 2t and 2t+1, tap 9 = none) holds for each accumulator half h the int16 elements 2j + k
 * (tap 2t + k of lane j's channel); the bias folded with the input zero point and the
 * multipliers in lane order; a zero-point row of the groups' width.  -1: out of memory. */
static int tfc_fused_dw_pairs(TfcFused* f, const int32_t* bias, int gw) {
  const int C = f->Ce, G = (C + gw - 1) / gw, hw = gw / 2;
  f->dw_wp = (int16_t*)tfc_alloc64(sizeof(int16_t) * (size_t)G * 5u * 2u * (size_t)gw);
  f->dw_bp = (int32_t*)tfc_alloc64(sizeof(int32_t) * (size_t)G * (size_t)gw);
  f->dw_mp = (float*)tfc_alloc64(sizeof(float) * (size_t)G * (size_t)gw);
  f->dw_zrow = (int8_t*)tfc_alloc64((size_t)G * (size_t)gw);
  if (f->dw_wp == NULL || f->dw_bp == NULL || f->dw_mp == NULL || f->dw_zrow == NULL) return -1;
  memset(f->dw_zrow, (int)(int8_t)f->zp_e, (size_t)G * (size_t)gw);
  for (int g = 0; g < G; ++g)
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < hw; ++j) {
        const int c = gw * g + tfc_dw_lane_channel(h, j);
        int32_t b = 0, sw = 0;
        if (c < C) {
          for (int t = 0; t < 9; ++t) sw += f->dw_w[t * C + c];
          b = (int32_t)((uint32_t)bias[c] - (uint32_t)f->zp_e * (uint32_t)sw);
        }
        f->dw_bp[g * gw + hw * h + j] = b;
        f->dw_mp[g * gw + hw * h + j] = c < C ? f->dw_mult[c] : 0.f;
        for (int t = 0; t < 5; ++t)
          for (int k = 0; k < 2; ++k) {
            const int tap = 2 * t + k;
            f->dw_wp[((size_t)g * 5 + t) * 2 * gw + gw * h + 2 * j + k] =
                (c < C && tap < 9) ? (int16_t)f->dw_w[tap * C + c] : 0;
          }
      }
  return 1;
}

/* The pick of tfc_fused_dw_x86: got is the Prepare step's result (-1 out of memory: what it
 * allocated is freed). */
static int tfc_fused_dw_use(TfcFused* f, int got, TfcDwRowFn row, const char* name, int gw) {
  if (got < 0) {
    tfc_fused_free_dw_x86(f);
    return -1;
  }
  f->dw_row = row;
  f->dw_name = name;
  f->dw_gw = gw;
  return 1;
}

int tfc_fused_dw_x86(TfcFused* f, int cap, const int32_t* bias) {
  if (cap < TFC_ISA_SIMD) return 0;
  const int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && !tfc_x86_no_avx512();
  if (!has512) { /* x86 without AVX-512: AVX-VNNI if the CPU has it (cap 2), else AVX2 */
#if TFC_HAVE_AVXVNNI_DW
    if (cap >= TFC_ISA_DOT && tfc_x86_has_avxvnni())
      return tfc_fused_dw_use(f, tfc_fused_dw_vnni(f, bias, 32), tfc_dw_row_avxvnni, "dw_avxvnni", 32);
#endif
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    return tfc_fused_dw_use(f, tfc_fused_dw_pairs(f, bias, 16), tfc_dw_row_avx2, "dw_avx2", 16);
  }
  if (cap >= TFC_ISA_DOT && __builtin_cpu_supports("avx512vnni"))
    return tfc_fused_dw_use(f, tfc_fused_dw_vnni(f, bias, 64), tfc_dw_row_avx512vnni, "dw_avx512vnni", 64);
  return tfc_fused_dw_use(f, tfc_fused_dw_pairs(f, bias, 32), tfc_dw_row_avx512, "dw_avx512", 32);
}

/* ------------------------------------------------------------------ stem */

/* The stem (a 3x3 conv over the image, tfc_fused.c flag bit 2) on AVX-512 VNNI, one expanded
 * row at a time, no im2col: the row's three image rows are copied as unsigned bytes (x ^ 0x80 =
 * x + 128) with zero-point columns around them; then per output pixel each kernel row is a
 * window of Q dwords (3 Ci bytes + up to 3 of the next pixel, whose weights are 0), every dword
 * broadcast against G registers of 16 channels' 4 weights (vpdpbusd): 3 Q G vpdpbusd per pixel,
 * weights in registers for the whole row.  Accumulators start at bias + the expand state's
 * i8q_corr (-(zp_x + 128) sum w: the +128 and the input zero point; padding bytes hold zp_x +
 * 128, real 0).
 * Requantization as XNNPACK's fp32 path (tfc_requant64): min(acc * m, qmax - zp) in float,
 * rounded half to even, + zp, clamped to [qmin, qmax]; Ce = 16 G channels written per pixel. */
#define TFC_STEM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

TFC_STEM_TARGET __attribute__((always_inline)) static inline void tfc_stem_row_t(
    const TfcFused* f, const int8_t* x, const int32_t* bias, int h, int8_t* out, uint8_t* ur, const int Q,
    const int G) {
  const int Ci = f->Ci, Wi = f->Wi, W = f->W, ss = f->s_stride, L = f->stem_rowlen, lead = f->s_pl * f->Ci;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  const uint8_t zu = (uint8_t)(f->zp_x + 128);
  const uint8_t* r[3];
  for (int kh = 0; kh < 3; ++kh) {
    const int ih = h * ss - f->s_pt + kh;
    uint8_t* u = ur + (size_t)kh * L;
    r[kh] = u;
    if (ih < 0 || ih >= f->Hi) {
      memset(u, zu, (size_t)L);
      continue;
    }
    const int8_t* src = x + (size_t)ih * Wi * Ci;
    const int n = Wi * Ci;
    memset(u, zu, (size_t)lead);
    int i = 0;
    for (; i + 64 <= n; i += 64)
      _mm512_storeu_si512((void*)(u + lead + i), _mm512_xor_si512(_mm512_loadu_si512((const void*)(src + i)), flip));
    if (i < n) {
      const __mmask64 k = ((__mmask64)1 << (n - i)) - 1u;
      _mm512_mask_storeu_epi8(u + lead + i, k, _mm512_xor_si512(_mm512_maskz_loadu_epi8(k, src + i), flip));
    }
    memset(u + lead + n, zu, (size_t)(L - lead - n));
  }
  __m512i w[3][3][2], init[2];
  __m512 m[2];
  for (int g = 0; g < G; ++g) {
    for (int kh = 0; kh < 3; ++kh)
      for (int q = 0; q < Q; ++q) w[kh][q][g] = _mm512_load_si512((const void*)(f->stem_w + ((kh * Q + q) * G + g) * 16));
    init[g] = _mm512_add_epi32(_mm512_loadu_si512((const void*)(bias + 16 * g)),
                               _mm512_loadu_si512((const void*)(f->ex.i8q_corr + 16 * g)));
    m[g] = _mm512_loadu_ps(f->ex.multipliers + 16 * g);
  }
  const __m512 hi = _mm512_set1_ps((float)(f->ex.qmax - f->ex.zp_out));
  const __m512i zp = _mm512_set1_epi32(f->ex.zp_out), floor16 = _mm512_set1_epi32(-32768);
  const __m128i qmin = _mm_set1_epi8((char)f->ex.qmin);
  const int Ce = f->Ce;
  for (int ow = 0; ow < W; ++ow) {
    const size_t off = (size_t)ow * ss * Ci;
    __m512i a[2];
    for (int g = 0; g < G; ++g) a[g] = init[g];
    for (int kh = 0; kh < 3; ++kh)
      for (int q = 0; q < Q; ++q) {
        int32_t d;
        memcpy(&d, r[kh] + off + 4 * q, 4);
        const __m512i b = _mm512_set1_epi32(d);
        for (int g = 0; g < G; ++g) a[g] = _mm512_dpbusd_epi32(a[g], b, w[kh][q][g]);
      }
    for (int g = 0; g < G; ++g) {
      const __m512i qv = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[g]), m[g]), hi));
      const __m128i b8 = _mm512_cvtsepi32_epi8(_mm512_add_epi32(_mm512_max_epi32(qv, floor16), zp));
      _mm_storeu_si128((__m128i*)(out + (size_t)ow * Ce + 16 * g), _mm_max_epi8(b8, qmin));
    }
  }
}

#define TFC_STEM_ROW(Q, G)                                                                                  \
  TFC_STEM_TARGET static void tfc_stem_row_##Q##_##G(const TfcFused* f, const int8_t* x, const int32_t* bias, \
                                                     int h, int8_t* out, uint8_t* ur) {                     \
    tfc_stem_row_t(f, x, bias, h, out, ur, Q, G);                                                         \
  }
TFC_STEM_ROW(1, 1)
TFC_STEM_ROW(1, 2)
TFC_STEM_ROW(2, 1)
TFC_STEM_ROW(2, 2)
TFC_STEM_ROW(3, 1)
TFC_STEM_ROW(3, 2)

/* Picks the VNNI stem row for Ci <= 4 (Q = ceil(3 Ci / 4) <= 3 dwords per kernel row) and Ce of
 * 16 or 32 (the weights fit 18 registers), when the expand's 1x1 plan is the quad kernel (its
 * relayout gives the dense [Ce][Kp] weights back); the im2col path otherwise. */
int tfc_fused_stem_x86(TfcFused* f, int cap) {
  tfc_free64(f->stem_w);
  f->stem_w = NULL;
  f->stem_row = NULL;
  if (!f->stem || cap < TFC_ISA_DOT || tfc_x86_no_avx512() || !__builtin_cpu_supports("avx512f") ||
      !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl") ||
      !__builtin_cpu_supports("avx512vnni"))
    return 0;
  const int Ci = f->Ci, Ce = f->Ce, Q = (3 * Ci + 3) / 4, G = Ce / 16;
  if (Ci > 4 || (Ce != 16 && Ce != 32) || f->ex.i8q_corr == NULL || f->ex.multipliers == NULL) return 0;
  const int got = tfc_fused_stem_weights(f, Q, 4 * Q);
  if (got <= 0) return got;
  static void (*const rows[3][2])(const TfcFused*, const int8_t*, const int32_t*, int, int8_t*, uint8_t*) = {
      {tfc_stem_row_1_1, tfc_stem_row_1_2}, {tfc_stem_row_2_1, tfc_stem_row_2_2}, {tfc_stem_row_3_1, tfc_stem_row_3_2}};
  f->stem_row = rows[Q - 1][G - 1];
  f->stem_name = "stem_avx512vnni";
  return 1;
}

void tfc_fused_free_dw_x86(TfcFused* f) {
  tfc_free64(f->stem_w);
  f->stem_w = NULL;
  f->stem_row = NULL;
  tfc_free64(f->dw_wp);
  tfc_free64(f->dw_bp);
  tfc_free64(f->dw_mp);
  tfc_free64(f->dw_zrow);
  tfc_free64(f->dw_qv);
  tfc_free64(f->dw_qb);
  tfc_free64(f->dw_qm);
  f->dw_qv = NULL;
  f->dw_qb = NULL;
  f->dw_qm = NULL;
  f->dw_wp = NULL;
  f->dw_bp = NULL;
  f->dw_mp = NULL;
  f->dw_zrow = NULL;
}
#endif /* TFC_HAVE_X86 */
