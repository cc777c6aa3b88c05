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
  const int parts = s->tile_parts > 1 ? s->tile_parts : 1;
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

/* ------------------------------------------------------------- int8, AVX-512 VNNI */
#define TFC_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* Byte transpose inside each 128-bit lane: a[r] byte c of lane L -> a[c] byte r of lane L. */
TFC_VNNI_TARGET __attribute__((always_inline)) static inline void tfc_transpose16_u8(__m512i* a) {
  __m512i b[16], c[16];
  for (int i = 0; i < 8; ++i) {
    b[i] = _mm512_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
    b[i + 8] = _mm512_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      c[h + i] = _mm512_unpacklo_epi16(b[h + 2 * i], b[h + 2 * i + 1]);
      c[h + i + 4] = _mm512_unpackhi_epi16(b[h + 2 * i], b[h + 2 * i + 1]);
    }
  for (int h = 0; h < 16; h += 4)
    for (int i = 0; i < 2; ++i) {
      b[h + i] = _mm512_unpacklo_epi32(c[h + 2 * i], c[h + 2 * i + 1]);
      b[h + i + 2] = _mm512_unpackhi_epi32(c[h + 2 * i], c[h + 2 * i + 1]);
    }
  for (int h = 0; h < 16; h += 2) {
    a[h] = _mm512_unpacklo_epi64(b[h], b[h + 1]);
    a[h + 1] = _mm512_unpackhi_epi64(b[h], b[h + 1]);
  }
}

/* Requantizes 4 vectors of 16 int32 accumulators (bias already in) of one output channel
 * (XNNPACK's fp32 path: scale, clamp above in float, round half to even; the saturating
 * packs clamp below): 64 int8 in "packed" order, where dword 4L + j holds the 4 results of
 * rows 16 j + 4 L .. 16 j + 4 L + 3 (undone by the stores, see tfc_i8q_row). */
TFC_VNNI_TARGET __attribute__((always_inline)) static inline __m512i tfc_requant64(
    __m512i a0, __m512i a1, __m512i a2, __m512i a3, __m512 m, __m512 hi, __m512i zp16, __m512i qmin8) {
  const __m512i q0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a0), m), hi));
  const __m512i q1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a1), m), hi));
  const __m512i q2 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a2), m), hi));
  const __m512i q3 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a3), m), hi));
  const __m512i p01 = _mm512_adds_epi16(_mm512_packs_epi32(q0, q1), zp16);
  const __m512i p23 = _mm512_adds_epi16(_mm512_packs_epi32(q2, q3), zp16);
  return _mm512_max_epi8(_mm512_packs_epi16(p01, p23), qmin8);
}

/* tfc_i8q_row: the row of the tile held by byte i of 128-bit lane L after tfc_requant64 +
 * tfc_transpose16_u8 is 16 (i / 4) + 4 L + i % 4 (the stores of tfc_rows_i8_vnni walk it). */

/* One output channel n over V*16 rows of the tile: every quad entry is one broadcast
 * dword of 4 int8 weights against V vectors of 16 rows x 4 uint8 inputs (vpdpbusd),
 * accumulators start at bias + zero-point correction; 64 int8 results to yrow. */
TFC_VNNI_TARGET __attribute__((always_inline)) static inline void tfc_i8q_channel(
    const TfcState* s, int n, const uint8_t* xt, int32_t add, __m512 hi, __m512i zp16, __m512i qmin8,
    int8_t* yrow, const int V) {
  __m512i a[4];
  for (int v = 0; v < 4; ++v) a[v] = _mm512_set1_epi32(add);
  const uint32_t b0 = s->i8q_ptr[n], e = s->i8q_ptr[n + 1];
  const uint32_t* off = s->i8q_off;
  const int32_t* w = s->i8q_w;
  for (uint32_t j = b0; j < e; ++j) {
    const __m512i wv = _mm512_set1_epi32(w[j]);
    const uint8_t* xr = xt + off[j];
    for (int v = 0; v < V; ++v) a[v] = _mm512_dpbusd_epi32(a[v], _mm512_load_si512((const void*)(xr + 64 * v)), wv);
  }
  const __m512 m = _mm512_set1_ps(s->multipliers[n]);
  _mm512_store_si512((void*)yrow, tfc_requant64(a[0], a[1], a[2], a[3], m, hi, zp16, qmin8));
}

/* tfc_i8q_channel for a full tile (V = 4) and a channel with exactly NE entries (NE known at
 * compile time: no branch that depends on the channel). */
TFC_VNNI_TARGET __attribute__((always_inline)) static inline void tfc_i8q_channel_ne(
    const TfcState* s, int n, const uint8_t* xt, int32_t add, __m512 hi, __m512i zp16, __m512i qmin8,
    int8_t* yrow, const int NE) {
  __m512i a[4];
  for (int v = 0; v < 4; ++v) a[v] = _mm512_set1_epi32(add);
  const uint32_t b0 = s->i8q_ptr[n];
  const uint32_t* off = s->i8q_off + b0;
  const int32_t* w = s->i8q_w + b0;
  for (int j = 0; j < NE; ++j) {
    const __m512i wv = _mm512_set1_epi32(w[j]);
    const uint8_t* xr = xt + off[j];
    for (int v = 0; v < 4; ++v) a[v] = _mm512_dpbusd_epi32(a[v], _mm512_load_si512((const void*)(xr + 64 * v)), wv);
  }
  const __m512 m = _mm512_set1_ps(s->multipliers[n]);
  _mm512_store_si512((void*)yrow, tfc_requant64(a[0], a[1], a[2], a[3], m, hi, zp16, qmin8));
}

/* The channels of group n0 / 16 of a full tile, run by run of equal entry count (i8c_*). */
TFC_VNNI_TARGET static void tfc_i8q_group_full(const TfcState* s, int n0, const uint8_t* xt, const int32_t* bias,
                                               __m512 hi, __m512i zp16, __m512i qmin8, int8_t* yt) {
  const int g = n0 / 16, T = TFC_I8_TILE;
  const uint8_t* ch = s->i8c_chan + 16 * g;
  const uint8_t* rn = s->i8c_runs + 32 * g;
  for (int r = 0, j = 0; r < s->i8c_nruns[g]; ++r) {
    const int cls = rn[2 * r], len = rn[2 * r + 1];
#define TFC_I8C_RUN(NE)                                                                                       \
  for (int i = 0; i < len; ++i) {                                                                             \
    const int c = ch[j + i], n = n0 + c;                                                                      \
    const int32_t add = (int32_t)((uint32_t)(bias ? bias[n] : 0) + (uint32_t)s->i8q_corr[n]);                 \
    if ((NE) < 0) tfc_i8q_channel(s, n, xt, add, hi, zp16, qmin8, yt + (size_t)c * T, 4);                    \
    else tfc_i8q_channel_ne(s, n, xt, add, hi, zp16, qmin8, yt + (size_t)c * T, (NE) < 0 ? 0 : (NE));        \
  }
    switch (cls) {
      case 0: TFC_I8C_RUN(0) break;
      case 1: TFC_I8C_RUN(1) break;
      case 2: TFC_I8C_RUN(2) break;
      case 3: TFC_I8C_RUN(3) break;
      case 4: TFC_I8C_RUN(4) break;
      case 5: TFC_I8C_RUN(5) break;
      case 6: TFC_I8C_RUN(6) break;
      case 7: TFC_I8C_RUN(7) break;
      case 8: TFC_I8C_RUN(8) break;
      default: TFC_I8C_RUN(-1) break;
    }
#undef TFC_I8C_RUN
    j += len;
  }
}

/* int8, many rows (1x1 convolutions, batched FC), AVX-512 VNNI: a tile of T = 64
 * rows is transposed to xt[ceil(K/4)][T][4] uint8 (x ^ 0x80 = x + 128; the +128
 * and the input zero point are folded into a per-channel constant) with 16 x 16
 * dword register transposes; each output channel runs its quad list
 * (tfc_build_i8_quads); 16 channels x 64 rows of int8 results are transposed
 * back (16 x 16 byte transposes) and stored as 16-byte row segments of NHWC. */
TFC_VNNI_TARGET static void tfc_rows_i8_vnni(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  const int K = s->k_in, N = s->n_out, T = TFC_I8_TILE, rows = s->rows, K4 = (K + 3) / 4;
  const int8_t* x = (const int8_t*)io->x;
  const int32_t* bias = (const int32_t*)io->bias;
  int8_t* y = (int8_t*)io->y;
  uint8_t* xt = (uint8_t*)scratch; /* [K4][T][4], then yt[16][T] */
  int8_t* yt = (int8_t*)((uint8_t*)scratch + tfc_round64((size_t)K4 * (size_t)T * 4u));
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  const __m512 hi = _mm512_set1_ps((float)(s->qmax - s->zp_out));
  const __m512i zp16 = _mm512_set1_epi16((short)s->zp_out), qmin8 = _mm512_set1_epi8((char)s->qmin);
  /* unit u = (tile u / parts, channel part u % parts); parts = 1: whole tiles */
  const int parts = s->tile_parts > 1 ? s->tile_parts : 1;
  int have_tile = -1; /* tile already transposed into xt */
  for (int u = u0; u < u1; ++u) {
    const int tile = u / parts, part = u % parts, p0 = tile * T;
    if (p0 >= rows) break;
    const int t = rows - p0 < T ? rows - p0 : T;
    const int V = (t + 15) / 16;
    const int n_begin = parts > 1 ? 16 * s->part_g[part] : 0;
    const int n_end = parts > 1 && 16 * s->part_g[part + 1] < N ? 16 * s->part_g[part + 1] : N;
    for (int c0 = 0; tile != have_tile && c0 < K; c0 += 64) { /* transpose the tile once */
      const int kc = K - c0 < 64 ? K - c0 : 64, nq = (kc + 3) / 4;
      const __mmask64 km = kc == 64 ? ~(__mmask64)0 : (((__mmask64)1 << kc) - 1u);
      for (int pb = 0; pb < 16 * V; pb += 16) {
        __m512i r[16];
        for (int q = 0; q < 16; ++q)
          r[q] = pb + q < t ? _mm512_xor_si512(_mm512_maskz_loadu_epi8(km, x + (size_t)(p0 + pb + q) * K + c0), flip)
                            : _mm512_setzero_si512();
        tfc_transpose16((__m512*)r);
        for (int i = 0; i < nq; ++i) _mm512_store_si512((void*)(xt + ((size_t)(c0 / 4 + i) * T + pb) * 4u), r[i]);
      }
    }
    have_tile = tile;
    for (int n0 = n_begin; n0 < n_end; n0 += 16) {
      const int nb = N - n0 < 16 ? N - n0 : 16;
      if (V == 4 && s->i8c_chan != NULL) {
        tfc_i8q_group_full(s, n0, xt, bias, hi, zp16, qmin8, yt);
      } else
      for (int c = 0; c < nb; ++c) {
        const int n = n0 + c;
        const int32_t add = (int32_t)((uint32_t)(bias ? bias[n] : 0) + (uint32_t)s->i8q_corr[n]);
        int8_t* yrow = yt + (size_t)c * T;
        switch (V) {
          case 1: tfc_i8q_channel(s, n, xt, add, hi, zp16, qmin8, yrow, 1); break;
          case 2: tfc_i8q_channel(s, n, xt, add, hi, zp16, qmin8, yrow, 2); break;
          case 3: tfc_i8q_channel(s, n, xt, add, hi, zp16, qmin8, yrow, 3); break;
          default: tfc_i8q_channel(s, n, xt, add, hi, zp16, qmin8, yrow, 4); break;
        }
      }
      __m512i r[16];
      for (int c = 0; c < 16; ++c) r[c] = c < nb ? _mm512_load_si512((const void*)(yt + (size_t)c * T)) : _mm512_setzero_si512();
      tfc_transpose16_u8(r); /* r[i] lane L = row 16 (i / 4) + 4 L + i % 4 (tfc_i8q_row), 16 channels */
      const __mmask16 nm = (__mmask16)((1u << nb) - 1u);
      /* rows in order: row 16 jb + 4 L + ii is lane L of r[4 jb + ii] (tfc_i8q_row) */
      int8_t* dst = y + (size_t)p0 * N + n0;
      if (t == T && nb == 16) { /* full tile: 64 stores, no per-row test */
        for (int jb = 0; jb < 4; ++jb) {
#define TFC_I8Q_ST4(L)                                                                        \
  for (int ii = 0; ii < 4; ++ii, dst += N)                                                    \
    _mm_storeu_si128((__m128i*)dst, _mm512_extracti32x4_epi32(r[4 * jb + ii], L));
          TFC_I8Q_ST4(0)
          TFC_I8Q_ST4(1)
          TFC_I8Q_ST4(2)
          TFC_I8Q_ST4(3)
#undef TFC_I8Q_ST4
        }
      } else { /* the first t rows, nb channels */
        int row = 0;
        for (int jb = 0; jb < 4; ++jb) {
#define TFC_I8Q_ST4(L)                                                                        \
  for (int ii = 0; ii < 4; ++ii, dst += N, ++row) {                                           \
    if (row >= t) goto stored;                                                                \
    _mm_mask_storeu_epi8(dst, nm, _mm512_extracti32x4_epi32(r[4 * jb + ii], L));              \
  }
          TFC_I8Q_ST4(0)
          TFC_I8Q_ST4(1)
          TFC_I8Q_ST4(2)
          TFC_I8Q_ST4(3)
#undef TFC_I8Q_ST4
        }
      stored:;
      }
    }
  }
}

/* int8, 1-15 rows (FC at small batch), AVX-512 VNNI: lanes are 16 consecutive output
 * channels; per 32-quad window of x (128 uint8 in two registers) one vpermt2d fetches each
 * lane's input dword, one vpdpbusd multiplies it by the lane's 4 weights; two rows per pass
 * share the index and weight loads.  Units: output slices [u0, u1). */
TFC_VNNI_TARGET static void tfc_rows_i8_win_vnni(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  (void)scratch;
  const int K = s->k_in, N = s->n_out, W4 = s->i8w_windows, rows = s->rows;
  const int8_t* x = (const int8_t*)io->x;
  const int32_t* bias = (const int32_t*)io->bias;
  int8_t* y = (int8_t*)io->y;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  const __m512 hi = _mm512_set1_ps((float)(s->qmax - s->zp_out));
  const __m512i zp = _mm512_set1_epi32(s->zp_out), qmin = _mm512_set1_epi32(s->qmin);
  for (int sl = u0; sl < u1; ++sl) {
    const int n0 = 16 * sl, nb = N - n0 < 16 ? N - n0 : 16;
    const __mmask16 nm = (__mmask16)((1u << nb) - 1u);
    __m512i add = _mm512_maskz_loadu_epi32(nm, s->i8q_corr + n0);
    if (bias) add = _mm512_add_epi32(add, _mm512_maskz_loadu_epi32(nm, bias + n0));
    const __m512 m = _mm512_maskz_loadu_ps(nm, s->multipliers + n0);
    for (int p = 0; p < rows; p += 2) {
      const int two = p + 1 < rows;
      const int8_t* xa = x + (size_t)p * K;
      const int8_t* xb = two ? xa + K : xa;
      __m512i a = add, b = add;
      for (int w = 0; w < W4; ++w) {
        const int steps = s->i8w_steps[(size_t)sl * W4 + w];
        if (steps == 0) continue;
        const int c0 = 128 * w, kc = K - c0;
        const __mmask64 m0 = kc >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << kc) - 1u);
        const __mmask64 m1 = kc >= 128 ? ~(__mmask64)0 : (kc <= 64 ? 0 : (((__mmask64)1 << (kc - 64)) - 1u));
        const __m512i xa0 = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m0, xa + c0), flip);
        const __m512i xa1 = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m1, xa + c0 + 64), flip);
        const __m512i xb0 = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m0, xb + c0), flip);
        const __m512i xb1 = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m1, xb + c0 + 64), flip);
        const size_t first = 16u * (size_t)s->i8w_first[(size_t)sl * W4 + w];
        const uint8_t* idx = s->i8w_idx + first;
        const int32_t* val = s->i8w_val + first;
        for (int t = 0; t < steps; ++t, idx += 16, val += 16) {
          const __m512i id = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)idx));
          const __m512i wv = _mm512_load_si512((const void*)val);
          a = _mm512_dpbusd_epi32(a, _mm512_permutex2var_epi32(xa0, id, xa1), wv);
          b = _mm512_dpbusd_epi32(b, _mm512_permutex2var_epi32(xb0, id, xb1), wv);
        }
      }
      __m512i qa = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), m), hi));
      qa = _mm512_max_epi32(_mm512_add_epi32(qa, zp), qmin);
      _mm_mask_storeu_epi8(y + (size_t)p * N + n0, nm, _mm512_cvtepi32_epi8(qa));
      if (two) {
        __m512i qb = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(b), m), hi));
        qb = _mm512_max_epi32(_mm512_add_epi32(qb, zp), qmin);
        _mm_mask_storeu_epi8(y + (size_t)(p + 1) * N + n0, nm, _mm512_cvtepi32_epi8(qb));
      }
    }
  }
}

/* Scratch of tfc_rows_i8_vnni: xt[ceil(K/4)][T][4] then yt[16][T]. */
static size_t tfc_i8q_scratch(const TfcState* s) {
  return tfc_round64((size_t)((s->k_in + 3) / 4) * TFC_I8_TILE * 4u) + 16u * TFC_I8_TILE;
}

/* Scratch of the CSR kernel: xt[K + 1][T] (row K stays zero), then ytile[16 * groups + 1][T]. */
static size_t tfc_csr_scratch(const TfcState* s, int T) {
  const size_t groups = ((size_t)s->n_out + 15u) / 16u;
  return tfc_round64((size_t)T * ((size_t)s->k_in + 1u) * sizeof(float)) + (16u * groups + 1u) * (size_t)T * sizeof(float);
}

/* x86 plans.  cap >= TFC_ISA_SIMD and AVX-512F: the permute kernels for the
 * windowed layout and the CSR kernel for float32 with >= TFC_CSR_MIN_ROWS rows, unless the
 * 8-channel-group kernel is predicted cheaper (tfc_f32_prefer_g8): then the 256-bit avx2_g8_f32,
 * which has no 512-bit twin (an 8x1 output block fills a ymm, not a zmm). */
int tfc_pick_x86(TfcState* s, int cap, TfcPlan* plan) {
  if (cap < TFC_ISA_SIMD || !__builtin_cpu_supports("avx512f") || tfc_x86_no_avx512()) return 0;
  const int win = s->index_bytes == 1, f32 = s->value_type == kTfLiteFloat32;
  const int vnni = cap >= TFC_ISA_DOT && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl");
  if (!f32 && vnni && s->rows >= TFC_CSR_MIN_ROWS) {
    plan->run = tfc_rows_i8_vnni;
    plan->unit_kind = TFC_UNITS_ROWS;
    plan->unit_rows = TFC_I8_TILE;
    plan->units = (s->rows + TFC_I8_TILE - 1) / TFC_I8_TILE;
    plan->scratch_bytes = tfc_i8q_scratch(s);
    plan->needs = TFC_NEEDS_I8_QUADS;
    plan->name = "avx512vnni_quads_i8";
    plan->channel_parts = 1;
    return 1;
  }
  if (!f32 && vnni) {
    tfc_plan_rows(s, plan, tfc_rows_i8_win_vnni, "avx512vnni_win_i8");
    plan->needs = TFC_NEEDS_I8_QUADS | TFC_NEEDS_I8_WIN;
    return 1;
  }
  if (f32 && s->rows >= TFC_CSR_MIN_ROWS) {
    if (tfc_f32_prefer_g8(s)) return tfc_plan_f32_g8(s, plan); /* AVX-512F implies AVX2 + FMA */
    plan->run = tfc_rows_f32_csr_avx512;
    plan->unit_kind = TFC_UNITS_ROWS;
    plan->unit_rows = TFC_CSR_TILE;
    plan->units = (s->rows + TFC_CSR_TILE - 1) / TFC_CSR_TILE;
    plan->scratch_bytes = tfc_csr_scratch(s, TFC_CSR_TILE);
    plan->needs = TFC_NEEDS_CSR_F32;
    plan->name = "avx512_csr_f32";
    plan->channel_parts = 1;
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
