/* tfcompress: AVX-512 int8 3x3 depthwise row of TFC_SPARSE_INVERTED_RESIDUAL (x86 only; the
 * same results as tfc_dw_row_portable in tfc_fused_kernels.c).  16 channels per vector:
 * inputs widened to int32 minus the zero point, times the int32-widened weights (vpmulld),
 * requantized in float (multiply, clamp, round half to even by vcvtps2dq, + zero point). */
#include "tfc_internal.h"

#if TFC_HAVE_X86
#include <immintrin.h>

#define TFC_DW_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

TFC_DW_TARGET static void tfc_dw_row_avx512(const TfcFused* f, const int8_t* const rows[3], const int32_t* bias,
                                            int8_t* out, int32_t* acc) {
  (void)acc;
  const int C = f->Ce, W = f->W, st = f->stride, cp = f->dw_cpad;
  const __m512i zp = _mm512_set1_epi32(f->zp_e), zo = _mm512_set1_epi32(f->zp_d);
  const __m512 lo = _mm512_set1_ps((float)(f->dw_qmin - f->zp_d)), hi = _mm512_set1_ps((float)(f->dw_qmax - f->zp_d));
  for (int ow = 0; ow < f->Wo; ++ow) {
    const int8_t* tap[9];
    int nt = 0, ti[9];
    for (int kh = 0; kh < 3; ++kh) {
      if (rows[kh] == NULL) continue;
      for (int kw = 0; kw < 3; ++kw) {
        const int iw = ow * st - f->pl + kw;
        if (iw < 0 || iw >= W) continue;
        tap[nt] = rows[kh] + (size_t)iw * C;
        ti[nt++] = kh * 3 + kw;
      }
    }
    int8_t* o = out + (size_t)ow * C;
    for (int c0 = 0; c0 < C; c0 += 16) {
      const __mmask16 m = C - c0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - c0)) - 1u);
      __m512i a = _mm512_maskz_loadu_epi32(m, bias + c0);
      for (int t = 0; t < nt; ++t) {
        const __m512i xv = _mm512_sub_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, tap[t] + c0)), zp);
        a = _mm512_add_epi32(a, _mm512_mullo_epi32(xv, _mm512_load_si512((const void*)(f->dw_w32 + (size_t)ti[t] * cp + c0))));
      }
      __m512 q = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_loadu_ps(f->dw_mult + c0));
      q = _mm512_max_ps(_mm512_min_ps(q, hi), lo);
      const __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(q), zo);
      _mm_mask_storeu_epi8(o + c0, m, _mm512_cvtepi32_epi8(r));
    }
  }
}

TfcDwRowFn tfc_fused_dw_x86(const TfcFused* f, int cap, const char** name) {
  (void)f;
  if (cap < TFC_ISA_SIMD || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl"))
    return NULL;
  *name = "dw_avx512";
  return tfc_dw_row_avx512;
}
#endif /* TFC_HAVE_X86 */
