/* tfcompress sparse kernels: x86 kernels (AVX-512F; AVX-512 VNNI for int8), picked at
 * run time from the CPU features (no -march flags: GCC target attributes). */
#include "tfc_internal.h"

#if TFC_HAVE_X86
#include <immintrin.h>

/* AVX-512F body of tfc_row_f32_win: the window lives in two registers and one
 * vpermt2ps fetches x for all 16 lanes of a step. */
__attribute__((target("avx512f"))) static void tfc_row_f32_win_avx512(const TfcState* s, const float* x,
                                                                     const float* bias, float* y, int s0, int s1) {
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows;
  float tail[32];
  for (int sl = s0; sl < s1; ++sl) {
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
__attribute__((target("avx512f"))) static void tfc_rows_f32_win_avx512(const TfcState* s, const TfcIO* io, int u0, int u1,
                                                                      void* scratch) {
  (void)scratch;
  const float* x = (const float*)io->x;
  const float* bias = (const float*)io->bias;
  float* y = (float*)io->y;
  const int rows = s->rows;
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows, k = s->k_in, n = s->n_out;
  float tail0[32], tail1[32];
  const __m512 lo = _mm512_set1_ps(s->fmin), hi = _mm512_set1_ps(s->fmax);
  for (int sl = u0; sl < u1; ++sl) {
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
    const TfcState* s, int g, int c, const float* xt, float* ytile, const float* bias, int V, const int first,
    const int last) {
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
      float* ya = ytile + (size_t)r0 * T;
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
    float* ya = ytile + (size_t)ga * T;
    float* yb = ytile + (size_t)gb * T;
    switch (V) {
      case 1: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 1); break;
      case 2: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 2); break;
      case 3: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 3); break;
      default: tfc_csr_pair(s, b0, e, xt, first, fin, lo, hi, ya, yb, 4); break;
    }
  }
}

/* Rows p0..p0+t-1, channels of group g: ytile (transposed) -> y (NHWC). */
__attribute__((target("avx512f"))) static void tfc_csr_store(const TfcState* s, const float* ytile, int g, int t, float* y) {
  const int T = s->csr_tile, N = s->n_out, o0 = 16 * g, nb = N - o0 < 16 ? N - o0 : 16;
  const __mmask16 nm = (__mmask16)((1u << nb) - 1u);
  const float* yt = ytile + (size_t)o0 * T;
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
__attribute__((target("avx512f"))) static void tfc_rows_f32_csr_avx512(const TfcState* s, const TfcIO* io, int u0, int u1,
                                                                      void* scratch) {
  const int K = s->k_in, N = s->n_out, T = s->csr_tile, rows = s->rows;
  const float* x = (const float*)io->x;
  const float* bias = (const float*)io->bias;
  float* y = (float*)io->y;
  float* xt = (float*)scratch; /* xt[K + 1][T], then ytile (tfc_csr_scratch) */
  float* ytile = (float*)((uint8_t*)scratch + tfc_round64((size_t)T * ((size_t)K + 1u) * sizeof(float)));
  memset(xt + (size_t)K * T, 0, (size_t)T * sizeof(float)); /* the padding entries' row */
  /* unit u = (tile u / parts, channel part u % parts); parts = 1: whole tiles */
  const int parts = s->csr_parts > 1 ? s->csr_parts : 1;
  int have_tile = -1; /* tile already transposed into xt */
  for (int u = u0; u < u1; ++u) {
    const int tile = u / parts, part = u % parts, p0 = tile * T;
    if (p0 >= rows) break;
    const int t = rows - p0 < T ? rows - p0 : T;
    const int V = (t + 15) / 16;
    const int G = (N + 15) / 16;
    const int g0 = parts > 1 ? s->part_g[part] : 0, g1 = parts > 1 ? s->part_g[part + 1] : G;
    for (int c0 = 0; tile != have_tile && c0 < K; c0 += 16) { /* transpose the tile once */
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
    have_tile = tile;
    if (s->csr_chunks == 1) {
      for (int g = g0; g < g1; ++g) {
        tfc_csr_group(s, g, 0, xt, ytile, bias, V, 1, 1);
        tfc_csr_store(s, ytile, g, t, y + (size_t)p0 * N);
      }
    } else {
      for (int c = 0; c + 1 < s->csr_chunks; ++c)
        for (int g = g0; g < g1; ++g) tfc_csr_group(s, g, c, xt, ytile, bias, V, c == 0, 0);
      for (int g = g0; g < g1; ++g) {
        tfc_csr_group(s, g, s->csr_chunks - 1, xt, ytile, bias, V, 0, 1);
        tfc_csr_store(s, ytile, g, t, y + (size_t)p0 * N);
      }
    }
  }
}

/* AVX-512F body of tfc_row_i8_win: the int8 window is widened to 32 int32 in
 * two registers; one vpermt2d fetches x for 16 lanes, weights are widened from
 * 16 bytes; 32-bit multiply-add (exact: |acc| < 2^31 for K < 2^17). */
__attribute__((target("avx512f"))) static void tfc_row_i8_win_avx512(const TfcState* s, const int8_t* x,
                                                                    const int32_t* bias, int8_t* y, int s0, int s1) {
  const uint8_t* col = (const uint8_t*)s->col;
  const int8_t* v = (const int8_t*)s->values;
  const int W = s->n_windows, k = s->k_in;
  int8_t tail[32];
  for (int sl = s0; sl < s1; ++sl) {
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

/* Scratch of the CSR kernel: xt[K + 1][T] (row K stays zero), then ytile[16 * groups + 1][T]. */
static size_t tfc_csr_scratch(const TfcState* s, int T) {
  const size_t groups = ((size_t)s->n_out + 15u) / 16u;
  return tfc_round64((size_t)T * ((size_t)s->k_in + 1u) * sizeof(float)) + (16u * groups + 1u) * (size_t)T * sizeof(float);
}

/* x86 plans.  cap >= TFC_ISA_SIMD and AVX-512F: the permute kernels for the
 * windowed layout and the CSR kernel for float32 with >= TFC_CSR_MIN_ROWS rows. */
int tfc_pick_x86(TfcState* s, int cap, TfcPlan* plan) {
  if (cap < TFC_ISA_SIMD || !__builtin_cpu_supports("avx512f")) return 0;
  const int win = s->index_bytes == 1, f32 = s->value_type == kTfLiteFloat32;
  if (f32 && s->rows >= TFC_CSR_MIN_ROWS) {
    plan->run = tfc_rows_f32_csr_avx512;
    plan->unit_kind = TFC_UNITS_ROWS;
    plan->unit_rows = TFC_CSR_TILE;
    plan->units = (s->rows + TFC_CSR_TILE - 1) / TFC_CSR_TILE;
    plan->scratch_bytes = tfc_csr_scratch(s, TFC_CSR_TILE);
    plan->needs = TFC_NEEDS_CSR_F32;
    plan->name = "avx512_csr_f32";
    return 1;
  }
  if (!win) return 0;
  if (s->rows < TFC_GATHER_MAX_ROWS) {
    if (f32) {
      s->row_f32 = tfc_row_f32_win_avx512;
      tfc_plan_rows(s, plan, tfc_run_rows_f32, "avx512_rows_f32_win");
    } else {
      s->row_i8 = tfc_row_i8_win_avx512;
      tfc_plan_rows(s, plan, tfc_run_rows_i8, "avx512_rows_i8_win");
    }
    return 1;
  }
  if (f32) { /* 4..15 rows: two rows per pass, slices as units */
    tfc_plan_rows(s, plan, tfc_rows_f32_win_avx512, "avx512_rows2_f32_win");
    return 1;
  }
  return 0;
}
#endif /* TFC_HAVE_X86 */
