/* tfcompress sparse kernels for x86 CPUs without AVX-512 (VNNI), picked at run time
 * (function-level target attributes, no -march flags):
 *   int8, AVX-VNNI (VEX vpdpbusd on 256-bit registers: Intel Alder Lake and later client
 *             CPUs, Sierra Forest)                          "avxvnni_quads_i8", "avxvnni_win_i8"
 *   int8, AVX2 (Haswell .. Tiger Lake client, AMD Zen 1-3)  "avx2_quads_i8", "avx2_win_i8"
 *   float32 >= 16 rows, AVX2 + FMA (no AVX-512F)            "avx2_csr_f32"
 * Same Prepare-time re-layouts, same work units and the same requantization as the AVX-512
 * kernels of tfc_kernels_x86.c, so all int8 outputs are bit-identical to those and to the
 * portable C kernels, and the float32 CSR outputs to the AVX-512 CSR kernel's.
 *
 * Exactness of the plain-AVX2 products: vpmaddubsw (u8 x s8, pairs summed into int16) would
 * saturate on u8 inputs (255 * -128 * 2 = -65280), so
 *   - many rows: the tile is widened to int16 (x + 128 in 0..255) and multiplied by the int16
 *     weights with vpmaddwd (pairs summed into int32: exact);
 *   - 1-15 rows: u = x + 128 is split as u = 2 h + l, h = u >> 1 in 0..127, l = u & 1:
 *     vpmaddubsw(h, w) is within +-127 * 128 * 2 = 32512 (cannot saturate) and is widened by
 *     vpmaddwd with 2; vpmaddubsw(l, w) is within +-256 per step and is summed in int16 over
 *     the <= 8 steps of a window (|sum| <= 2048) before one vpmaddwd with 1.
 */
#include "tfc_internal.h"

#if TFC_HAVE_X86
#include <cpuid.h>
#include <immintrin.h>

/* AVX-VNNI needs GCC >= 11 / Clang >= 12 (the host build uses the system compiler): older ones
 * build the AVX2 kernels only (the picker then takes AVX2 on AVX-VNNI CPUs too). */
#if !defined(TFC_NO_AVXVNNI) && defined(__has_include)
#if __has_include(<avxvnniintrin.h>)
#define TFC_HAVE_AVXVNNI 1
#endif
#endif
#ifndef TFC_HAVE_AVXVNNI
#define TFC_HAVE_AVXVNNI 0
#endif

#define TFC_AVX2_TARGET __attribute__((target("avx2,fma")))
#define TFC_AVXVNNI_TARGET __attribute__((target("avx2,fma,avxvnni")))

/* TFCOMPRESS_NO_AVX512=1: the x86 pickers behave as on a CPU without AVX-512 (tests). */
int tfc_x86_no_avx512(void) {
  const char* e = getenv("TFCOMPRESS_NO_AVX512");
  return e != NULL && e[0] == '1' && e[1] == 0;
}

/* AVX-VNNI: CPUID.(EAX=7, ECX=1):EAX bit 4 (the OS saving YMM state is implied by avx2 in
 * __builtin_cpu_supports, which checks XGETBV). */
static int tfc_has_avxvnni(void) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, NULL) < 7) return 0;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return (a >> 4) & 1u;
}

/* The CPU has AVX-VNNI (and this build its kernels): tfc_fused_x86.c's depthwise asks too. */
int tfc_x86_has_avxvnni(void) { return TFC_HAVE_AVXVNNI && tfc_has_avxvnni(); }

/* ------------------------------------------------------------ shared pieces */

/* In-lane 16 x 16 byte transpose: a[r] byte c of 128-bit lane L -> a[c] byte r of lane L. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_transpose16_u8_avx2(__m256i* a) {
  __m256i b[16], c[16];
  for (int i = 0; i < 8; ++i) {
    b[i] = _mm256_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
    b[i + 8] = _mm256_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      c[h + i] = _mm256_unpacklo_epi16(b[h + 2 * i], b[h + 2 * i + 1]);
      c[h + i + 4] = _mm256_unpackhi_epi16(b[h + 2 * i], b[h + 2 * i + 1]);
    }
  for (int h = 0; h < 16; h += 4)
    for (int i = 0; i < 2; ++i) {
      b[h + i] = _mm256_unpacklo_epi32(c[h + 2 * i], c[h + 2 * i + 1]);
      b[h + i + 2] = _mm256_unpackhi_epi32(c[h + 2 * i], c[h + 2 * i + 1]);
    }
  for (int h = 0; h < 16; h += 2) {
    a[h] = _mm256_unpacklo_epi64(b[h], b[h + 1]);
    a[h + 1] = _mm256_unpackhi_epi64(b[h], b[h + 1]);
  }
}

/* 8 x 8 dword transpose: r[i] dword j -> r[j] dword i. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_transpose8_d(__m256i* r) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
  }
}

/* Requantizes 4 vectors of 8 int32 accumulators (bias already in) into 32 int8 in natural
 * order, as the AVX-512 kernels do (XNNPACK's fp32 path: scale, clamp above in float, round
 * half to even (MXCSR default), saturating packs for the zero point and the clamp below). */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline __m256i tfc_requant32_avx2(
    __m256i a0, __m256i a1, __m256i a2, __m256i a3, __m256 m, __m256 hi, __m256i zp16, __m256i qmin8) {
  const __m256i q0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a0), m), hi));
  const __m256i q1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a1), m), hi));
  const __m256i q2 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a2), m), hi));
  const __m256i q3 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a3), m), hi));
  const __m256i p01 = _mm256_adds_epi16(_mm256_packs_epi32(q0, q1), zp16);
  const __m256i p23 = _mm256_adds_epi16(_mm256_packs_epi32(q2, q3), zp16);
  const __m256i b = _mm256_max_epi8(_mm256_packs_epi16(p01, p23), qmin8);
  /* dwords after the in-lane packs: q0[0..3] q1[0..3] q2[0..3] q3[0..3] | q0[4..7] q1[4..7] ... */
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Same for two vectors of 8 (16 outputs, in the low 128 bits). */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline __m128i tfc_requant16_avx2(
    __m256i a0, __m256i a1, __m256 m0, __m256 m1, __m256 hi, __m256i zp16, __m256i qmin8) {
  const __m256i q0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a0), m0), hi));
  const __m256i q1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a1), m1), hi));
  const __m256i p = _mm256_adds_epi16(_mm256_packs_epi32(q0, q1), zp16);
  const __m256i b = _mm256_max_epi8(_mm256_packs_epi16(p, p), qmin8);
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5)));
}

/* The first kc < 32 bytes of p in a register, zero above (K % 4 == 0, the usual case: one masked
 * dword load, which reads nothing beyond p + kc). */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline __m256i tfc_load_tail(const int8_t* p, int kc) {
  if ((kc & 3) == 0) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_epi32((const int*)p, _mm256_cmpgt_epi32(_mm256_set1_epi32(kc / 4), lane));
  }
  int8_t buf[32] = {0};
  memcpy(buf, p, (size_t)kc);
  return _mm256_loadu_si256((const __m256i*)buf);
}

/* Rows [p0, p0 + t) of the tile: x (int8, NHWC) -> xt[ceil(K/4)][T][4] of uint8 x + 128 (wide = 0)
 * or of int16 x + 128 (wide = 1), 8 x 8 dword transposes, rows t .. 16 V - 1 zero. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_tile_avx2(const int8_t* x, int K, int p0, int t,
                                                                                int V16, uint8_t* xt, const int wide) {
  const int T = TFC_I8_TILE;
  const __m256i flip = _mm256_set1_epi8((char)0x80);
  for (int c0 = 0; c0 < K; c0 += 32) {
    const int kc = K - c0 < 32 ? K - c0 : 32, nq = (kc + 3) / 4;
    for (int pb = 0; pb < 16 * V16; pb += 8) {
      __m256i r[8];
      for (int q = 0; q < 8; ++q) {
        if (pb + q >= t) {
          r[q] = _mm256_setzero_si256();
        } else if (kc == 32) {
          r[q] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(x + (size_t)(p0 + pb + q) * K + c0)), flip);
        } else {
          r[q] = _mm256_xor_si256(tfc_load_tail(x + (size_t)(p0 + pb + q) * K + c0, kc), flip);
        }
      }
      tfc_transpose8_d(r); /* r[i]: quad c0 / 4 + i of rows pb .. pb + 7 */
      for (int i = 0; i < nq; ++i) {
        const size_t at = ((size_t)(c0 / 4 + i) * T + (size_t)pb) * 4u;
        if (wide) {
          int16_t* xw = (int16_t*)xt + at;
          _mm256_store_si256((__m256i*)xw, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(r[i])));
          _mm256_store_si256((__m256i*)(xw + 16), _mm256_cvtepu8_epi16(_mm256_extracti128_si256(r[i], 1)));
        } else {
          _mm256_store_si256((__m256i*)(xt + at), r[i]);
        }
      }
    }
  }
}

/* yt[16][T] (channel-major int8 results of channels n0 .. n0 + nb - 1) -> rows [p0, p0 + t) of y. */
TFC_AVX2_TARGET static void tfc_store16_avx2(const int8_t* yt, int nb, int t, int8_t* y, int N, int p0, int n0) {
  const int T = TFC_I8_TILE;
  for (int rb = 0; rb < t; rb += 32) {
    __m256i r[16];
    for (int c = 0; c < 16; ++c)
      r[c] = c < nb ? _mm256_load_si256((const __m256i*)(yt + (size_t)c * T + rb)) : _mm256_setzero_si256();
    tfc_transpose16_u8_avx2(r); /* r[i]: lane 0 = row rb + i, lane 1 = row rb + 16 + i */
    for (int i = 0; i < 16; ++i)
      for (int L = 0; L < 2; ++L) {
        const int row = rb + 16 * L + i;
        if (row >= t) continue;
        int8_t* dst = y + (size_t)(p0 + row) * N + n0;
        const __m128i v = L == 0 ? _mm256_castsi256_si128(r[i]) : _mm256_extracti128_si256(r[i], 1);
        if (nb == 16) {
          _mm_storeu_si128((__m128i*)dst, v);
        } else {
          int8_t tmp[16];
          _mm_storeu_si128((__m128i*)tmp, v);
          memcpy(dst, tmp, (size_t)nb);
        }
      }
  }
}

/* ------------------------------------------------- many rows: quad kernels */

#if TFC_HAVE_AVXVNNI
/* acc += u8 x by s8 w (VEX vpdpbusd).  GCC 12 copies the accumulator around every
 * _mm256_dpbusd_avx_epi32 (and spilled in the 8-accumulator loop): inline asm ties it. */
#if defined(__GNUC__) && !defined(__clang__)
#define TFC_DPBUSD256(acc, x, w) __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(x), "x"(w))
#else
#define TFC_DPBUSD256(acc, x, w) ((acc) = _mm256_dpbusd_avx_epi32((acc), (x), (w)))
#endif

/* AVX-VNNI: one output channel over 8 * V8 rows of the u8 tile: each quad is one broadcast
 * dword of 4 int8 weights against V8 vectors of 8 rows x 4 inputs (vpdpbusd). */
TFC_AVXVNNI_TARGET __attribute__((always_inline)) static inline void tfc_i8q_channel_avxvnni(
    const TfcState* s, int n, const uint8_t* xt, int32_t add, __m256 hi, __m256i zp16, __m256i qmin8, int8_t* yrow,
    const int V8) {
  __m256i a[8];
  for (int v = 0; v < 8; ++v) a[v] = _mm256_set1_epi32(add);
  const uint32_t b0 = s->i8q_ptr[n], e = s->i8q_ptr[n + 1];
  const uint32_t* off = s->i8q_off;
  const int32_t* w = s->i8q_w;
  for (uint32_t j = b0; j < e; ++j) {
    const __m256i wv = _mm256_set1_epi32(w[j]);
    const uint8_t* xr = xt + off[j];
    for (int v = 0; v < V8; ++v) TFC_DPBUSD256(a[v], _mm256_load_si256((const __m256i*)(xr + 32 * v)), wv);
  }
  const __m256 m = _mm256_set1_ps(s->multipliers[n]);
  _mm256_store_si256((__m256i*)yrow, tfc_requant32_avx2(a[0], a[1], a[2], a[3], m, hi, zp16, qmin8));
  if (V8 > 4) _mm256_store_si256((__m256i*)(yrow + 32), tfc_requant32_avx2(a[4], a[5], a[6], a[7], m, hi, zp16, qmin8));
}
#endif

/* AVX2: one output channel, rows [32 h, 32 h + 4 NA) of the int16 tile: each quad is the 4
 * weights widened to int16 and broadcast as a qword against NA vectors of 4 rows x 4 inputs
 * (vpmaddwd: per row two dwords, features 0-1 and 2-3, summed at the end). */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_i8q_half_avx2(
    const TfcState* s, int n, const int16_t* xt, int h, int32_t add, __m256 hi, __m256i zp16, __m256i qmin8,
    int8_t* yrow, const int NA) {
  __m256i a[8];
  for (int v = 0; v < 8; ++v) a[v] = _mm256_setzero_si256();
  const uint32_t b0 = s->i8q_ptr[n], e = s->i8q_ptr[n + 1];
  const uint32_t* off = s->i8q_off;
  const int32_t* w = s->i8q_w;
  const int16_t* xh = xt + 128 * h; /* 32 rows x 4 int16 */
  for (uint32_t j = b0; j < e; ++j) {
    const __m128i w16 = _mm_cvtepi8_epi16(_mm_cvtsi32_si128(w[j]));
    const __m256i wv = _mm256_broadcastq_epi64(w16);
    const int16_t* xr = xh + off[j];
    for (int v = 0; v < NA; ++v)
      a[v] = _mm256_add_epi32(a[v], _mm256_madd_epi16(_mm256_load_si256((const __m256i*)(xr + 16 * v)), wv));
  }
  const __m256i ad = _mm256_set1_epi32(add);
  __m256i r[4];
  for (int v = 0; v < 4; ++v)
    r[v] = v < NA / 2 ? _mm256_add_epi32(_mm256_permute4x64_epi64(_mm256_hadd_epi32(a[2 * v], a[2 * v + 1]), 0xD8), ad)
                      : ad;
  const __m256 m = _mm256_set1_ps(s->multipliers[n]);
  _mm256_store_si256((__m256i*)(yrow + 32 * h), tfc_requant32_avx2(r[0], r[1], r[2], r[3], m, hi, zp16, qmin8));
}

/* Many rows (1x1 convolutions, batched FC): tiles of T = 64 rows transposed to
 * xt[ceil(K/4)][T][4] (u8 for AVX-VNNI, int16 for AVX2), per output channel its quad list
 * (tfc_build_i8_quads), 16 channels x 64 rows transposed back; units as tfc_rows_i8_vnni:
 * (tile, channel part). */
#define TFC_DEFINE_ROWS_I8_QUADS(NAME, TARGET, WIDE, CHANNEL)                                                   \
  TARGET static void NAME(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {                  \
    const int K = s->k_in, N = s->n_out, T = TFC_I8_TILE, rows = s->rows, K4 = (K + 3) / 4;                    \
    const int8_t* x = (const int8_t*)io->x;                                                                    \
    const int32_t* bias = (const int32_t*)io->bias;                                                            \
    int8_t* y = (int8_t*)io->y;                                                                                \
    uint8_t* xt = (uint8_t*)scratch; /* [K4][T][4] u8 or int16, then yt[16][T] */                             \
    int8_t* yt = (int8_t*)((uint8_t*)scratch + tfc_round64((size_t)K4 * (size_t)T * 4u * (WIDE ? 2u : 1u)));  \
    const __m256 hi = _mm256_set1_ps((float)(s->qmax - s->zp_out));                                           \
    const __m256i zp16 = _mm256_set1_epi16((short)s->zp_out), qmin8 = _mm256_set1_epi8((char)s->qmin);        \
    const int parts = s->tile_parts > 1 ? s->tile_parts : 1;                                                   \
    int have_tile = -1;                                                                                        \
    for (int u = u0; u < u1; ++u) {                                                                            \
      const int tile = u / parts, part = u % parts, p0 = tile * T;                                             \
      if (p0 >= rows) break;                                                                                   \
      const int t = rows - p0 < T ? rows - p0 : T;                                                             \
      const int V = (t + 15) / 16; /* 16-row blocks */                                                         \
      const int n_begin = parts > 1 ? 16 * s->part_g[part] : 0;                                                \
      const int n_end = parts > 1 && 16 * s->part_g[part + 1] < N ? 16 * s->part_g[part + 1] : N;              \
      if (tile != have_tile) tfc_tile_avx2(x, K, p0, t, V, xt, WIDE);                                          \
      have_tile = tile;                                                                                        \
      for (int n0 = n_begin; n0 < n_end; n0 += 16) {                                                           \
        const int nb = N - n0 < 16 ? N - n0 : 16;                                                              \
        for (int c = 0; c < nb; ++c) {                                                                         \
          const int n = n0 + c;                                                                                \
          const int32_t add = (int32_t)((uint32_t)(bias ? bias[n] : 0) + (uint32_t)s->i8q_corr[n]);            \
          CHANNEL                                                                                              \
        }                                                                                                      \
        tfc_store16_avx2(yt, nb, t, y, N, p0, n0);                                                             \
      }                                                                                                        \
    }                                                                                                          \
  }

#if TFC_HAVE_AVXVNNI
TFC_DEFINE_ROWS_I8_QUADS(tfc_rows_i8_avxvnni, TFC_AVXVNNI_TARGET, 0, {
  int8_t* yrow = yt + (size_t)c * T;
  switch (V) {
    case 1: tfc_i8q_channel_avxvnni(s, n, xt, add, hi, zp16, qmin8, yrow, 2); break;
    case 2: tfc_i8q_channel_avxvnni(s, n, xt, add, hi, zp16, qmin8, yrow, 4); break;
    case 3: tfc_i8q_channel_avxvnni(s, n, xt, add, hi, zp16, qmin8, yrow, 6); break;
    default: tfc_i8q_channel_avxvnni(s, n, xt, add, hi, zp16, qmin8, yrow, 8); break;
  }
})
#endif

TFC_DEFINE_ROWS_I8_QUADS(tfc_rows_i8_avx2, TFC_AVX2_TARGET, 1, {
  int8_t* yrow = yt + (size_t)c * T;
  const int16_t* x16 = (const int16_t*)xt;
  /* halves of 32 rows (8 accumulators of 4 rows); the second one has 16 or 32 rows */
  if (V == 1) tfc_i8q_half_avx2(s, n, x16, 0, add, hi, zp16, qmin8, yrow, 4);
  else tfc_i8q_half_avx2(s, n, x16, 0, add, hi, zp16, qmin8, yrow, 8);
  if (V == 3) tfc_i8q_half_avx2(s, n, x16, 1, add, hi, zp16, qmin8, yrow, 4);
  else if (V == 4) tfc_i8q_half_avx2(s, n, x16, 1, add, hi, zp16, qmin8, yrow, 8);
})

/* ------------------------------------------------ 1-15 rows: windowed kernels */

/* Window w (32 inputs) of row x as uint8 x + 128, zero beyond K. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline __m256i tfc_window32_u8(const int8_t* x, int K, int w) {
  const int c0 = 32 * w;
  const __m256i v = c0 + 32 <= K ? _mm256_loadu_si256((const __m256i*)(x + c0)) : tfc_load_tail(x + c0, K - c0);
  return _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
}

/* 1-15 rows (FC at small batch): lanes are the 16 consecutive output channels of a slice,
 * two registers of 8; per 32-input window of x (one register of 8 quads) one vpermd fetches
 * each lane's input dword (windows of 8 quads: tfc_build_i8_windows(s, 8)); two rows per pass
 * share the index and weight loads.  DOT(acc, xq, w, lacc) adds one step.  Units: slices. */
#define TFC_DEFINE_ROWS_I8_WIN(NAME, TARGET, PREP_WINDOW, DOT, END_WINDOW)                                        \
  TARGET static void NAME(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {                  \
    (void)scratch;                                                                                             \
    const int K = s->k_in, N = s->n_out, W4 = s->i8w_windows, rows = s->rows;                                 \
    const int8_t* x = (const int8_t*)io->x;                                                                    \
    const int32_t* bias = (const int32_t*)io->bias;                                                            \
    int8_t* y = (int8_t*)io->y;                                                                                \
    const __m256 hi = _mm256_set1_ps((float)(s->qmax - s->zp_out));                                           \
    const __m256i zp16 = _mm256_set1_epi16((short)s->zp_out), qmin8 = _mm256_set1_epi8((char)s->qmin);        \
    for (int sl = u0; sl < u1; ++sl) {                                                                         \
      const int n0 = 16 * sl, nb = N - n0 < 16 ? N - n0 : 16;                                                  \
      int32_t addv[16];                                                                                        \
      float mv[16];                                                                                            \
      for (int l = 0; l < 16; ++l) {                                                                           \
        addv[l] = l < nb ? (int32_t)((uint32_t)s->i8q_corr[n0 + l] + (uint32_t)(bias ? bias[n0 + l] : 0)) : 0; \
        mv[l] = l < nb ? s->multipliers[n0 + l] : 0.f;                                                         \
      }                                                                                                        \
      const __m256i add0 = _mm256_loadu_si256((const __m256i*)addv);                                           \
      const __m256i add1 = _mm256_loadu_si256((const __m256i*)(addv + 8));                                     \
      const __m256 m0 = _mm256_loadu_ps(mv), m1 = _mm256_loadu_ps(mv + 8);                                     \
      for (int p = 0; p < rows; p += 2) {                                                                      \
        const int two = p + 1 < rows;                                                                          \
        const int8_t* xa = x + (size_t)p * K;                                                                  \
        const int8_t* xb = two ? xa + K : xa;                                                                  \
        __m256i a0 = add0, a1 = add1, b0 = add0, b1 = add1;                                                    \
        for (int w = 0; w < W4; ++w) {                                                                         \
          const int steps = s->i8w_steps[(size_t)sl * W4 + w];                                                 \
          if (steps == 0) continue;                                                                            \
          const __m256i uA = tfc_window32_u8(xa, K, w), uB = tfc_window32_u8(xb, K, w);                      \
          PREP_WINDOW                                                                                          \
          const size_t first = 16u * (size_t)s->i8w_first[(size_t)sl * W4 + w];                               \
          const uint8_t* idx = s->i8w_idx + first;                                                             \
          const int32_t* val = s->i8w_val + first;                                                             \
          if (two) {                                                                                           \
            for (int t = 0; t < steps; ++t, idx += 16, val += 16) {                                            \
              const __m256i i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)idx));                  \
              const __m256i i1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(idx + 8)));            \
              const __m256i w0 = _mm256_load_si256((const __m256i*)val);                                       \
              const __m256i w1 = _mm256_load_si256((const __m256i*)(val + 8));                                 \
              DOT(a0, la0, A, i0, w0);                                                                         \
              DOT(a1, la1, A, i1, w1);                                                                         \
              DOT(b0, lb0, B, i0, w0);                                                                         \
              DOT(b1, lb1, B, i1, w1);                                                                         \
            }                                                                                                  \
          } else { /* last (or only) row alone */                                                              \
            for (int t = 0; t < steps; ++t, idx += 16, val += 16) {                                            \
              const __m256i i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)idx));                  \
              const __m256i i1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(idx + 8)));            \
              const __m256i w0 = _mm256_load_si256((const __m256i*)val);                                       \
              const __m256i w1 = _mm256_load_si256((const __m256i*)(val + 8));                                 \
              DOT(a0, la0, A, i0, w0);                                                                         \
              DOT(a1, la1, A, i1, w1);                                                                         \
            }                                                                                                  \
          }                                                                                                    \
          END_WINDOW                                                                                           \
        }                                                                                                      \
        const __m128i qa = tfc_requant16_avx2(a0, a1, m0, m1, hi, zp16, qmin8);                                \
        const __m128i qb = tfc_requant16_avx2(b0, b1, m0, m1, hi, zp16, qmin8);                                \
        for (int r = 0; r <= two; ++r) {                                                                       \
          int8_t* dst = y + (size_t)(p + r) * N + n0;                                                          \
          const __m128i q = r ? qb : qa;                                                                       \
          if (nb == 16) {                                                                                      \
            _mm_storeu_si128((__m128i*)dst, q);                                                                \
          } else {                                                                                             \
            int8_t tmp[16];                                                                                    \
            _mm_storeu_si128((__m128i*)tmp, q);                                                                \
            memcpy(dst, tmp, (size_t)nb);                                                                      \
          }                                                                                                    \
        }                                                                                                      \
      }                                                                                                        \
    }                                                                                                          \
  }

/* AVX-VNNI step: vpermd + vpdpbusd. */
#define TFC_PREP_VNNI
#define TFC_DOT_VNNI(acc, lacc, X, id, wv) TFC_DPBUSD256(acc, _mm256_permutevar8x32_epi32(u##X, id), wv)
#define TFC_END_VNNI
#if TFC_HAVE_AVXVNNI
TFC_DEFINE_ROWS_I8_WIN(tfc_rows_i8_win_avxvnni, TFC_AVXVNNI_TARGET, TFC_PREP_VNNI, TFC_DOT_VNNI, TFC_END_VNNI)
#else
#define tfc_rows_i8_avxvnni tfc_rows_i8_avx2 /* never picked: vnni is 0 below */
#define tfc_rows_i8_win_avxvnni tfc_rows_i8_win_avx2
#endif

/* AVX2 step: u = 2 h + l (header comment); h part widened per step, l part summed in int16
 * over the window (<= 8 steps). */
#define TFC_PREP_AVX2                                                                 \
  const __m256i hA = _mm256_and_si256(_mm256_srli_epi16(uA, 1), _mm256_set1_epi8(0x7F)); \
  const __m256i lA = _mm256_and_si256(uA, _mm256_set1_epi8(1));                          \
  const __m256i hB = _mm256_and_si256(_mm256_srli_epi16(uB, 1), _mm256_set1_epi8(0x7F)); \
  const __m256i lB = _mm256_and_si256(uB, _mm256_set1_epi8(1));                          \
  __m256i la0 = _mm256_setzero_si256(), la1 = la0, lb0 = la0, lb1 = la0;
#define TFC_DOT_AVX2(acc, lacc, X, id, wv)                                                                     \
  do {                                                                                                         \
    acc = _mm256_add_epi32(                                                                                    \
        acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_permutevar8x32_epi32(h##X, id), wv),                \
                               _mm256_set1_epi16(2)));                                                         \
    lacc = _mm256_add_epi16(lacc, _mm256_maddubs_epi16(_mm256_permutevar8x32_epi32(l##X, id), wv));          \
  } while (0)
#define TFC_END_AVX2                                                 \
  {                                                                  \
    const __m256i one = _mm256_set1_epi16(1);                        \
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(la0, one));          \
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(la1, one));          \
    b0 = _mm256_add_epi32(b0, _mm256_madd_epi16(lb0, one));          \
    b1 = _mm256_add_epi32(b1, _mm256_madd_epi16(lb1, one));          \
  }
TFC_DEFINE_ROWS_I8_WIN(tfc_rows_i8_win_avx2, TFC_AVX2_TARGET, TFC_PREP_AVX2, TFC_DOT_AVX2, TFC_END_AVX2)

/* Scratch of the quad kernels: xt[ceil(K/4)][T][4] (u8, or int16 when wide), then yt[16][T]. */
static size_t tfc_i8q_scratch_avx2(const TfcState* s, int wide) {
  return tfc_round64((size_t)((s->k_in + 3) / 4) * TFC_I8_TILE * 4u * (wide ? 2u : 1u)) + 16u * TFC_I8_TILE;
}

/* ------------------------------------------------ float32, many rows: CSR kernel */

/* 8 x 8 float transpose: r[i] lane j -> r[j] lane i. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_transpose8_ps(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

/* Mask of the first n (0..8) lanes. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline __m256i tfc_mask8(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One channel pair, one chunk, NV * 8 rows from row rb of the tile (as tfc_csr_pair of
 * tfc_kernels_x86.c: the same entries in the same order, so the same float sums). */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_csr_pair_avx2(
    const TfcState* s, uint32_t b0, uint32_t e, const float* xt, int first, const float* bias2, __m256 lo,
    __m256 hi, float* ya, float* yb, const int NV) {
  __m256 a[4], c[4];
  for (int v = 0; v < NV; ++v) {
    a[v] = first ? _mm256_setzero_ps() : _mm256_load_ps(ya + 8 * v);
    c[v] = first ? _mm256_setzero_ps() : _mm256_load_ps(yb + 8 * v);
  }
  const uint32_t* off = s->csr_off + 2u * b0;
  const float* val = s->csr_val + 2u * b0;
  for (uint32_t j = 0; j < e - b0; ++j, off += 2, val += 2) {
    const __m256 wa = _mm256_broadcast_ss(val), wb = _mm256_broadcast_ss(val + 1);
    const float* xa = xt + off[0];
    const float* xb = xt + off[1];
    for (int v = 0; v < NV; ++v) {
      a[v] = _mm256_fmadd_ps(wa, _mm256_load_ps(xa + 8 * v), a[v]);
      c[v] = _mm256_fmadd_ps(wb, _mm256_load_ps(xb + 8 * v), c[v]);
    }
  }
  if (bias2 != NULL) {
    const __m256 va = _mm256_set1_ps(bias2[0]), vb = _mm256_set1_ps(bias2[1]);
    for (int v = 0; v < NV; ++v) {
      a[v] = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(a[v], va), lo), hi);
      c[v] = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(c[v], vb), lo), hi);
    }
  }
  for (int v = 0; v < NV; ++v) {
    _mm256_store_ps(ya + 8 * v, a[v]);
    _mm256_store_ps(yb + 8 * v, c[v]);
  }
}

/* One quad of channels (tile rows ya, ya + T, ya + 2T, ya + 3T), one chunk, NV * 8 rows. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_csr_quad_avx2(
    const TfcState* s, uint32_t b0, uint32_t e, const float* xt, int first, const float* bias4, __m256 lo,
    __m256 hi, float* ya, int T, const int NV) {
  __m256 a[4][2];
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < NV; ++v) a[i][v] = first ? _mm256_setzero_ps() : _mm256_load_ps(ya + (size_t)i * T + 8 * v);
  const uint32_t* off = s->csr_off + b0;
  const float* val = s->csr_val + 4u * b0;
  for (uint32_t j = 0; j < e - b0; ++j, val += 4) {
    const float* xr = xt + off[j];
    const __m256 w0 = _mm256_broadcast_ss(val), w1 = _mm256_broadcast_ss(val + 1);
    const __m256 w2 = _mm256_broadcast_ss(val + 2), w3 = _mm256_broadcast_ss(val + 3);
    for (int v = 0; v < NV; ++v) {
      const __m256 xv = _mm256_load_ps(xr + 8 * v);
      a[0][v] = _mm256_fmadd_ps(w0, xv, a[0][v]);
      a[1][v] = _mm256_fmadd_ps(w1, xv, a[1][v]);
      a[2][v] = _mm256_fmadd_ps(w2, xv, a[2][v]);
      a[3][v] = _mm256_fmadd_ps(w3, xv, a[3][v]);
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < NV; ++v) {
      __m256 r = a[i][v];
      if (bias4 != NULL) r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, _mm256_set1_ps(bias4[i])), lo), hi);
      _mm256_store_ps(ya + (size_t)i * T + 8 * v, r);
    }
}

/* All pairs (or quads) of group g for chunk c over the tile rows [0, R) (R multiple of 8):
 * passes of 32 rows (pairs) or 16 rows (quads), so the accumulators fit 16 registers. */
TFC_AVX2_TARGET static void tfc_csr_group_avx2(const TfcState* s, int g, int c, const float* xt, float* ytile,
                                               const float* bias, int R, int first, int last) {
  const int T = s->csr_tile, npairs = 8 * ((s->n_out + 15) / 16);
  const __m256 lo = _mm256_set1_ps(s->fmin), hi = _mm256_set1_ps(s->fmax);
  if (s->csr_quads) {
    const int nquads = npairs / 2;
    for (int q = 0; q < 4; ++q) {
      const int qd = 4 * g + q, r0 = 4 * qd;
      float b4[4];
      for (int i = 0; i < 4; ++i) b4[i] = (bias && r0 + i < s->n_out) ? bias[r0 + i] : 0.f;
      const float* fin = last ? b4 : NULL;
      const uint32_t b0 = s->csr_ptr[(size_t)c * nquads + qd], e = s->csr_ptr[(size_t)c * nquads + qd + 1];
      for (int rb = 0; rb < R; rb += 16) {
        float* ya = ytile + (size_t)r0 * T + rb;
        if (R - rb >= 16) tfc_csr_quad_avx2(s, b0, e, xt + rb, first, fin, lo, hi, ya, T, 2);
        else tfc_csr_quad_avx2(s, b0, e, xt + rb, first, fin, lo, hi, ya, T, 1);
      }
    }
    return;
  }
  for (int q = 0; q < 8; ++q) {
    const int pq = 8 * g + q, ra = s->pair_row[2 * pq], rb2 = s->pair_row[2 * pq + 1];
    const int ga = ra < 16 ? 16 * g + ra : 16 * (npairs / 8), gb = rb2 < 16 ? 16 * g + rb2 : 16 * (npairs / 8);
    float b2[2] = {(bias && ra < 16) ? bias[16 * g + ra] : 0.f, (bias && rb2 < 16) ? bias[16 * g + rb2] : 0.f};
    const float* fin = last ? b2 : NULL;
    const uint32_t b0 = s->csr_ptr[(size_t)c * npairs + pq], e = s->csr_ptr[(size_t)c * npairs + pq + 1];
    for (int rb = 0; rb < R; rb += 32) {
      float* ya = ytile + (size_t)ga * T + rb;
      float* yb = ytile + (size_t)gb * T + rb;
      switch ((R - rb) / 8) {
        case 1: tfc_csr_pair_avx2(s, b0, e, xt + rb, first, fin, lo, hi, ya, yb, 1); break;
        case 2: tfc_csr_pair_avx2(s, b0, e, xt + rb, first, fin, lo, hi, ya, yb, 2); break;
        case 3: tfc_csr_pair_avx2(s, b0, e, xt + rb, first, fin, lo, hi, ya, yb, 3); break;
        default: tfc_csr_pair_avx2(s, b0, e, xt + rb, first, fin, lo, hi, ya, yb, 4); break;
      }
    }
  }
}

/* Rows p0 .. p0 + t - 1, channels of group g: ytile (transposed) -> y (NHWC). */
TFC_AVX2_TARGET static void tfc_csr_store_avx2(const TfcState* s, const float* ytile, int g, int t, float* y) {
  const int T = s->csr_tile, N = s->n_out;
  for (int h = 0; h < 2; ++h) {
    const int o0 = 16 * g + 8 * h, nb = N - o0 < 8 ? N - o0 : 8;
    if (nb <= 0) break;
    const __m256i nm = tfc_mask8(nb);
    const float* yt = ytile + (size_t)o0 * T;
    for (int pb = 0; pb < t; pb += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = i < nb ? _mm256_load_ps(yt + (size_t)i * T + pb) : _mm256_setzero_ps();
      tfc_transpose8_ps(r);
      const int qn = t - pb < 8 ? t - pb : 8;
      for (int q = 0; q < qn; ++q) {
        float* dst = y + (size_t)(pb + q) * N + o0;
        if (nb == 8) _mm256_storeu_ps(dst, r[q]);
        else _mm256_maskstore_ps(dst, nm, r[q]);
      }
    }
  }
}

/* float32, many rows (1x1 convolutions, batched FC), AVX2 + FMA: tfc_rows_f32_csr_avx512 on
 * 256-bit registers, on the same re-layout (tfc_build_csr), units and scratch; the sums are the
 * same FMAs in the same order, so the outputs are bit-identical to the AVX-512 kernel. */
TFC_AVX2_TARGET static void tfc_rows_f32_csr_avx2(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  const int K = s->k_in, N = s->n_out, T = s->csr_tile, rows = s->rows;
  const float* x = (const float*)io->x;
  const float* bias = (const float*)io->bias;
  float* y = (float*)io->y;
  float* xt = (float*)scratch; /* xt[K + 1][T], then ytile */
  float* ytile = (float*)((uint8_t*)scratch + tfc_round64((size_t)T * ((size_t)K + 1u) * sizeof(float)));
  memset(xt + (size_t)K * T, 0, (size_t)T * sizeof(float)); /* the padding entries' row */
  const int parts = s->tile_parts > 1 ? s->tile_parts : 1;
  int have_tile = -1;
  for (int u = u0; u < u1; ++u) {
    const int tile = u / parts, part = u % parts, p0 = tile * T;
    if (p0 >= rows) break;
    const int t = rows - p0 < T ? rows - p0 : T;
    const int R = (t + 7) / 8 * 8;
    const int G = (N + 15) / 16;
    const int g0 = parts > 1 ? s->part_g[part] : 0, g1 = parts > 1 ? s->part_g[part + 1] : G;
    for (int c0 = 0; tile != have_tile && c0 < K; c0 += 8) { /* transpose the tile once */
      const int kc = K - c0 < 8 ? K - c0 : 8;
      const __m256i km = tfc_mask8(kc);
      for (int pb = 0; pb < R; pb += 8) {
        __m256 r[8];
        for (int q = 0; q < 8; ++q)
          r[q] = pb + q < t ? _mm256_maskload_ps(x + (size_t)(p0 + pb + q) * K + c0, km) : _mm256_setzero_ps();
        tfc_transpose8_ps(r);
        for (int i = 0; i < kc; ++i) _mm256_store_ps(xt + (size_t)(c0 + i) * T + pb, r[i]);
      }
    }
    have_tile = tile;
    for (int c = 0; c + 1 < s->csr_chunks; ++c)
      for (int g = g0; g < g1; ++g) tfc_csr_group_avx2(s, g, c, xt, ytile, bias, R, c == 0, 0);
    for (int g = g0; g < g1; ++g) {
      tfc_csr_group_avx2(s, g, s->csr_chunks - 1, xt, ytile, bias, R, s->csr_chunks == 1, 1);
      tfc_csr_store_avx2(s, ytile, g, t, y + (size_t)p0 * N);
    }
  }
}

/* Scratch of the CSR kernel (as tfc_csr_scratch of tfc_kernels_x86.c). */
static size_t tfc_csr_scratch_avx2(const TfcState* s, int T) {
  const size_t groups = ((size_t)s->n_out + 15u) / 16u;
  return tfc_round64((size_t)T * ((size_t)s->k_in + 1u) * sizeof(float)) + (16u * groups + 1u) * (size_t)T * sizeof(float);
}

/* ------------------------------------------------ float32, many rows: 8-channel groups, NHWC */

/* Rows x[0 .. MR) (K apart) -> y (N apart), channel groups [g0, g1) of tfc_build_g8: per group
 * MR accumulators of 8 channels start at the bias; each entry is one 8-weight load and MR
 * broadcast FMAs; clamp, store (masked past N).  Every sum adds the entries in feature order. */
TFC_AVX2_TARGET __attribute__((always_inline)) static inline void tfc_g8_rows_avx2(const TfcState* s, const float* x,
                                                                                 const float* bias, float* y, int g0,
                                                                                 int g1, const int MR) {
  const int K = s->k_in, N = s->n_out;
  const __m256 lo = _mm256_set1_ps(s->fmin), hi = _mm256_set1_ps(s->fmax);
  const float* xr[8];
  for (int m = 0; m < MR; ++m) xr[m] = x + (size_t)m * K;
  for (int g = g0; g < g1; ++g) {
    const int c0 = 8 * g, nb = N - c0 < 8 ? N - c0 : 8;
    const __m256i nm = tfc_mask8(nb);
    const __m256 b = bias == NULL ? _mm256_setzero_ps() : _mm256_maskload_ps(bias + c0, nm);
    __m256 acc[8];
    for (int m = 0; m < MR; ++m) acc[m] = b;
    const uint32_t e0 = s->g8_ptr[g], e1 = s->g8_ptr[g + 1];
    const uint32_t* kk = s->g8_k + e0;
    const float* w = s->g8_w + 8u * e0;
    for (uint32_t j = 0; j < e1 - e0; ++j) {
      const __m256 wv = _mm256_load_ps(w + 8u * j);
      const size_t k = kk[j];
      for (int m = 0; m < MR; ++m) acc[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(xr[m] + k), wv, acc[m]);
    }
    for (int m = 0; m < MR; ++m) {
      const __m256 r = _mm256_min_ps(_mm256_max_ps(acc[m], lo), hi);
      if (nb == 8) _mm256_storeu_ps(y + (size_t)m * N + c0, r);
      else _mm256_maskstore_ps(y + (size_t)m * N + c0, nm, r);
    }
  }
}

/* float32, many rows (1x1 convolutions, batched FC), AVX2 + FMA, NHWC in and out: units of
 * TFC_CSR_TILE rows, or (tile, channel part) pairs as the CSR kernel's (a part = 16-channel groups
 * [part_g[p], part_g[p + 1]), two 8-channel groups each); 8 rows at a time over the unit's
 * channel groups (the 8 input rows stay in L1). */
TFC_AVX2_TARGET static void tfc_rows_f32_g8_avx2(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  (void)scratch;
  const int K = s->k_in, N = s->n_out, G = (N + 7) / 8, parts = s->tile_parts > 1 ? s->tile_parts : 1;
  const float* bias = (const float*)io->bias;
  for (int u = u0; u < u1; ++u) {
    const int tile = u / parts, part = u % parts;
    const int g0 = parts > 1 ? 2 * s->part_g[part] : 0, g1 = parts > 1 && 2 * s->part_g[part + 1] < G ? 2 * s->part_g[part + 1] : G;
    const int p1 = (tile + 1) * TFC_CSR_TILE < s->rows ? (tile + 1) * TFC_CSR_TILE : s->rows;
    int p = tile * TFC_CSR_TILE;
    const float* x = (const float*)io->x + (size_t)p * K;
    float* y = (float*)io->y + (size_t)p * N;
    for (; p + 8 <= p1; p += 8, x += 8 * (size_t)K, y += 8 * (size_t)N) tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 8);
    switch (p1 - p) { /* the last 1-7 rows */
      case 7: tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 7); break;
      case 6: tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 6); break;
      case 5: tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 5); break;
      case 4: tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 4); break;
      case 3: tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 3); break;
      case 2: tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 2); break;
      case 1: tfc_g8_rows_avx2(s, x, bias, y, g0, g1, 1); break;
      default: break;
    }
  }
}

/* float32 >= 16 rows: the 8-channel-group NHWC kernel or the CSR kernel, by predicted cost per
 * 8 rows in FMA-equivalents.  g8: 8 FMAs per group entry.  CSR: 4 FMAs per quad entry (pairs
 * when it has no quads: 4 per channel non-zero), plus the transposes in and out (~3 per input
 * feature and per output channel).  TFCOMPRESS_F32_KERNEL=g8 / csr forces one (tests, A/B). */
int tfc_f32_prefer_g8(const TfcState* s) {
  const char* e = getenv("TFCOMPRESS_F32_KERNEL");
  if (e != NULL && strcmp(e, "g8") == 0) return 1;
  if (e != NULL && strcmp(e, "csr") == 0) return 0;
  uint64_t g8, quads;
  tfc_count_groups_f32(s, &g8, &quads);
  if (g8 == UINT64_MAX) return 0;
  return 8u * g8 <= 4u * quads + 3u * ((uint64_t)s->k_in + (uint64_t)s->n_out);
}

/* The plan of avx2_g8_f32 (float32 >= 16 rows, AVX2 + FMA); 1. */
int tfc_plan_f32_g8(const TfcState* s, TfcPlan* plan) {
  plan->run = tfc_rows_f32_g8_avx2;
  plan->unit_kind = TFC_UNITS_ROWS;
  plan->unit_rows = TFC_CSR_TILE;
  plan->units = (s->rows + TFC_CSR_TILE - 1) / TFC_CSR_TILE;
  plan->scratch_bytes = 0;
  plan->needs = TFC_NEEDS_G8_F32;
  plan->name = "avx2_g8_f32";
  plan->channel_parts = 1;
  return 1;
}

/* Plans on x86 without AVX-512 (VNNI) (or with TFCOMPRESS_NO_AVX512=1).  int8: cap >= TFC_ISA_DOT
 * and AVX-VNNI: the vpdpbusd kernels; cap >= TFC_ISA_SIMD and AVX2: the vpmaddwd / vpmaddubsw
 * kernels.  float32 (cap >= TFC_ISA_SIMD, AVX2 + FMA), >= 16 rows: the g8 kernel where
 * tfc_f32_prefer_g8 (tfc_pick_x86 plans it too: tfc_plan_f32_g8), else the CSR
 * kernel; 1-15 rows are left to the portable kernels (AVX2 + FMA clones, TFC_HOT). */
int tfc_pick_x86_avx2(TfcState* s, int cap, TfcPlan* plan) {
  if (cap < TFC_ISA_SIMD || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
  if (s->value_type == kTfLiteFloat32) {
    if (s->rows < TFC_CSR_MIN_ROWS) return 0; /* 1-15 rows: the portable kernels */
    if (tfc_f32_prefer_g8(s)) return tfc_plan_f32_g8(s, plan);
    plan->run = tfc_rows_f32_csr_avx2;
    plan->unit_kind = TFC_UNITS_ROWS;
    plan->unit_rows = TFC_CSR_TILE;
    plan->units = (s->rows + TFC_CSR_TILE - 1) / TFC_CSR_TILE;
    plan->scratch_bytes = tfc_csr_scratch_avx2(s, TFC_CSR_TILE);
    plan->needs = TFC_NEEDS_CSR_F32;
    plan->name = "avx2_csr_f32";
    plan->channel_parts = 1;
    return 1;
  }
  if (s->value_type != kTfLiteInt8) return 0;
  const int vnni = TFC_HAVE_AVXVNNI && cap >= TFC_ISA_DOT && tfc_has_avxvnni();
  if (s->rows >= TFC_CSR_MIN_ROWS) {
    plan->run = vnni ? tfc_rows_i8_avxvnni : tfc_rows_i8_avx2;
    plan->unit_kind = TFC_UNITS_ROWS;
    plan->unit_rows = TFC_I8_TILE;
    plan->units = (s->rows + TFC_I8_TILE - 1) / TFC_I8_TILE;
    plan->scratch_bytes = tfc_i8q_scratch_avx2(s, !vnni);
    plan->needs = TFC_NEEDS_I8_QUADS;
    plan->name = vnni ? "avxvnni_quads_i8" : "avx2_quads_i8";
    plan->channel_parts = 1;
    return 1;
  }
  tfc_plan_rows(s, plan, vnni ? tfc_rows_i8_win_avxvnni : tfc_rows_i8_win_avx2, vnni ? "avxvnni_win_i8" : "avx2_win_i8");
  plan->needs = TFC_NEEDS_I8_QUADS | TFC_NEEDS_I8_WIN | TFC_NEEDS_I8_WIN8;
  return 1;
}
#endif /* TFC_HAVE_X86 */
