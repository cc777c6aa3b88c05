/* tfcompress sparse kernels: Prepare-time re-layouts of the validated TFCS weights.
 * Nothing in the file changes; the copies live next to the packed tensor. */
#include "tfc_internal.h"

void tfc_free_csr(TfcState* s) {
  free(s->csr_ptr);
  free(s->csr_off);
  free(s->csr_val);
  free(s->pair_row);
  s->csr_ptr = NULL;
  s->csr_off = NULL;
  s->csr_val = NULL;
  s->pair_row = NULL;
  s->csr_tile = 0;
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

/* Plain CSR of the stored weights: per output channel r, its (input feature * T, weight) pairs at
 * (*off)[(*ptr)[r] .. (*ptr)[r + 1]) / *val, in the order the blob stores them.  Returns 0 when
 * out of memory (nothing left allocated). */
static int tfc_channel_lists(const TfcState* s, int T, uint32_t** ptr, uint32_t** off, float** val) {
  const int n = s->n_out;
  uint32_t* p = (uint32_t*)calloc((size_t)n + 1, sizeof(uint32_t));
  uint32_t* cursor = (uint32_t*)malloc(((size_t)n + 1) * sizeof(uint32_t));
  uint32_t* o = NULL;
  float* v = NULL;
  if (p != NULL && cursor != NULL) {
    tfc_csr_pass(s, 0, p, NULL, NULL, NULL, T);
    for (int r = 0; r < n; ++r) p[r + 1] += p[r];
    memcpy(cursor, p, ((size_t)n + 1) * sizeof(uint32_t));
    o = (uint32_t*)malloc(((size_t)p[n] + 1) * sizeof(uint32_t));
    v = (float*)malloc(((size_t)p[n] + 1) * sizeof(float));
    if (o != NULL && v != NULL) {
      tfc_csr_pass(s, 1, NULL, cursor, o, v, T);
      free(cursor);
      *ptr = p;
      *off = o;
      *val = v;
      return 1;
    }
  }
  free(p);
  free(cursor);
  free(o);
  free(v);
  return 0;
}

/* The stored float32 weights as a dense matrix w [N][K] (zeros where nothing is stored; w
 * zeroed by the caller).  0 when out of memory. */
int tfc_dense_f32(const TfcState* s, float* w) {
  uint32_t *ptr, *off;
  float* val;
  if (!tfc_channel_lists(s, 1, &ptr, &off, &val)) return 0;
  for (int r = 0; r < s->n_out; ++r)
    for (uint32_t j = ptr[r]; j < ptr[r + 1]; ++j)
      if (off[j] < (uint32_t)s->k_in) w[(size_t)r * s->k_in + off[j]] = val[j];
  free(ptr);
  free(off);
  free(val);
  return 1;
}

/* K + 1 entries of -1 (NULL when out of memory). */
static int32_t* tfc_idx_array(int k) {
  int32_t* a = (int32_t*)malloc(((size_t)k + 1) * sizeof(int32_t));
  for (int i = 0; a != NULL && i <= k; ++i) a[i] = -1;
  return a;
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
int tfc_build_csr(TfcState* s, int T, int KC) {
  const int n = s->n_out, groups = (n + 15) / 16, npairs = 8 * groups;
  const int chunks = (s->k_in + KC - 1) / KC;
  tfc_free_csr(s);
  int ok = 0;
  uint32_t *tptr = NULL, *toff = NULL;
  float* tval = NULL;
  if (!tfc_channel_lists(s, T, &tptr, &toff, &tval)) goto done; /* plain CSR in toff / tval */
  s->csr_ptr = (uint32_t*)malloc(((size_t)chunks * (size_t)npairs + 1) * sizeof(uint32_t));
  s->pair_row = (uint8_t*)malloc(2u * (size_t)npairs);
  if (s->csr_ptr == NULL || s->pair_row == NULL) goto done;
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
    int32_t* mark = tfc_idx_array(s->k_in);
    if (mark == NULL) goto done;
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
  free(toff);
  free(tval);
  return ok;
}

void tfc_free_i8_quads(TfcState* s) {
  free(s->i8w_steps);
  free(s->i8w_first);
  free(s->i8w_idx);
  tfc_free64(s->i8w_val);
  s->i8w_steps = NULL;
  s->i8w_first = NULL;
  s->i8w_idx = NULL;
  s->i8w_val = NULL;
  s->i8w_built = 0;
  free(s->i8q_ptr);
  free(s->i8q_off);
  free(s->i8q_w);
  free(s->i8q_corr);
  free(s->i8c_chan);
  free(s->i8c_runs);
  free(s->i8c_nruns);
  s->i8c_chan = NULL;
  s->i8c_runs = NULL;
  s->i8c_nruns = NULL;
  s->i8q_ptr = NULL;
  s->i8q_off = NULL;
  s->i8q_w = NULL;
  s->i8q_corr = NULL;
  s->i8q_tile = 0;
}

/* Channel order by entry-count class per 16-channel group (i8c_* in tfc_internal.h), from
 * i8q_ptr.  Returns 0 when out of memory. */
static int tfc_build_i8_classes(TfcState* s) {
  const int n = s->n_out, G = (n + 15) / 16;
  s->i8c_chan = (uint8_t*)calloc((size_t)G * 16u + 1u, 1);
  s->i8c_runs = (uint8_t*)calloc((size_t)G * 32u + 1u, 1);
  s->i8c_nruns = (uint8_t*)calloc((size_t)G + 1u, 1);
  if (s->i8c_chan == NULL || s->i8c_runs == NULL || s->i8c_nruns == NULL) return 0;
  for (int g = 0; g < G; ++g) {
    const int n0 = 16 * g, nb = n - n0 < 16 ? n - n0 : 16;
    int j = 0, runs = 0;
    for (int k = 0; k <= TFC_I8C_GENERIC; ++k) {
      int len = 0;
      for (int c = 0; c < nb; ++c) {
        const uint32_t cnt = s->i8q_ptr[n0 + c + 1] - s->i8q_ptr[n0 + c];
        const int cls = cnt > TFC_I8C_MAX ? TFC_I8C_GENERIC : (int)cnt;
        if (cls != k) continue;
        s->i8c_chan[16 * g + j++] = (uint8_t)c;
        ++len;
      }
      if (len > 0) {
        s->i8c_runs[32 * g + 2 * runs] = (uint8_t)k;
        s->i8c_runs[32 * g + 2 * runs + 1] = (uint8_t)len;
        ++runs;
      }
    }
    s->i8c_nruns[g] = (uint8_t)runs;
  }
  return 1;
}

/* int8 weights re-laid for the many-row dot-product kernels: per output channel
 * (natural order) one entry per 4-feature quad q (features 4q..4q+3, the last
 * one zero-padded beyond K) holding any non-zero weight: the byte offset q*T*4 of
 * the quad in the transposed tile xt[ceil(K/4)][T][4] and the 4 int8 weights as
 * one little-endian dword (one vpdpbusd broadcast operand).  1x4-block weights
 * (pruning.Block((1, 4))) give exactly one entry per stored block; unstructured
 * weights give one per quad with any non-zero.  Returns 0 when out of memory. */
int tfc_build_i8_quads(TfcState* s, int T) {
  const int n = s->n_out, K4 = (s->k_in + 3) / 4, B = s->block, W = s->n_windows;
  const int8_t* v = (const int8_t*)s->values;
  tfc_free_i8_quads(s);
  int ok = 0;
  int32_t* mark = (int32_t*)malloc((size_t)K4 * sizeof(int32_t));
  uint32_t* cnt = (uint32_t*)calloc((size_t)n + 1, sizeof(uint32_t));
  s->i8q_ptr = (uint32_t*)calloc((size_t)n + 1, sizeof(uint32_t));
  s->i8q_corr = (int32_t*)calloc((size_t)n + 1, sizeof(int32_t));
  if (mark == NULL || cnt == NULL || s->i8q_ptr == NULL || s->i8q_corr == NULL) goto done;
  for (int q = 0; q < K4; ++q) mark[q] = -1;
  /* pass 0 counts the entries of each channel (quads are marked per slice lane, so
   * one channel = one lane: its slots are visited consecutively per lane below) */
  for (int pass = 0; pass < 2; ++pass) {
    for (int sl = 0; sl < s->n_slices; ++sl) {
      const uint32_t b0 = s->slice_ptr[sl], e = s->slice_ptr[sl + 1];
      for (int l = 0; l < 16; ++l) {
        const uint32_t r = s->perm[sl * 16 + l];
        if (r == 0xFFFFFFFFu) continue;
        uint32_t* base = pass == 1 ? &cnt[r] : NULL; /* pass 1: cursor */
        for (int clear = 0; clear < 2; ++clear) {
          uint32_t i = b0 + (uint32_t)l;
          int w = 0;
          uint32_t wend = s->steps ? b0 + 16u * s->steps[(size_t)sl * W] : e;
          for (; i < e; i += 16u) {
            while (s->steps && i >= wend && w + 1 < W) { /* windowed: advance to the slot's window */
              ++w;
              wend += 16u * s->steps[(size_t)sl * W + w];
            }
            const uint32_t k0 = s->steps ? (uint32_t)w * 32u + ((const uint8_t*)s->col)[i]
                              : (uint32_t)B * (s->index_bytes == 2 ? ((const uint16_t*)s->col)[i] : ((const uint32_t*)s->col)[i]);
            for (int b = 0; b < B; ++b) {
              const int8_t wv = v[(size_t)i * B + b];
              if (wv == 0) continue;
              const uint32_t k = k0 + (uint32_t)b, q = k / 4u;
              if (clear) {
                mark[q] = -1;
                continue;
              }
              if (mark[q] < 0) {
                if (pass == 0) {
                  mark[q] = 0;
                  cnt[r + 1]++;
                } else {
                  mark[q] = (int32_t)(*base)++;
                  s->i8q_off[mark[q]] = q * (uint32_t)T * 4u;
                  s->i8q_w[mark[q]] = 0;
                }
              }
              if (pass == 1) {
                uint32_t word = (uint32_t)s->i8q_w[mark[q]];
                word |= (uint32_t)(uint8_t)wv << (8u * (k % 4u));
                s->i8q_w[mark[q]] = (int32_t)word;
              }
            }
          }
        }
      }
    }
    if (pass == 0) {
      for (int r = 0; r < n; ++r) cnt[r + 1] += cnt[r];
      memcpy(s->i8q_ptr, cnt, ((size_t)n + 1) * sizeof(uint32_t));
      const uint32_t total = cnt[n];
      s->i8q_off = (uint32_t*)malloc(((size_t)total + 1) * sizeof(uint32_t));
      s->i8q_w = (int32_t*)malloc(((size_t)total + 1) * sizeof(int32_t));
      if (s->i8q_off == NULL || s->i8q_w == NULL) goto done;
    }
  }
  if (!tfc_build_i8_classes(s)) goto done;
  s->i8q_tile = T;
  ok = 1;
done:
  free(mark);
  free(cnt);
  if (!ok) tfc_free_i8_quads(s);
  return ok;
}

/* Windowed copy of the quads (built from tfc_build_i8_quads' lists) for the 1-15-row
 * kernels, windows of wq quads (32: AVX-512, 128 inputs in two registers; 8: AVX2 /
 * AVX-VNNI, 32 inputs in one register): see i8w_* in tfc_internal.h.  Returns 0 when out
 * of memory or wq is not 8 or 32. */
int tfc_build_i8_windows(TfcState* s, int wq) {
  const int S = s->n_slices, T = s->i8q_tile;
  if (wq != 8 && wq != 32) return 0;
  const int W4 = (s->k_in + 4 * wq - 1) / (4 * wq);
  const uint32_t WQ = (uint32_t)wq;
  free(s->i8w_steps); /* a copy for the other window size (another picker) */
  free(s->i8w_first);
  free(s->i8w_idx);
  tfc_free64(s->i8w_val);
  s->i8w_steps = NULL;
  s->i8w_first = NULL;
  s->i8w_idx = NULL;
  s->i8w_val = NULL;
  s->i8w_built = 0;
  int ok = 0;
  uint32_t* cnt = (uint32_t*)malloc((size_t)W4 * sizeof(uint32_t));
  s->i8w_steps = (uint8_t*)calloc((size_t)S * W4 + 1, 1);
  s->i8w_first = (uint32_t*)calloc((size_t)S * W4 + 1, sizeof(uint32_t));
  if (cnt == NULL || s->i8w_steps == NULL || s->i8w_first == NULL || T <= 0) goto done;
  uint64_t steps = 0;
  for (int sl = 0; sl < S; ++sl) {
    for (int l = 0; l < 16; ++l) {
      const int n = 16 * sl + l;
      if (n >= s->n_out) break;
      for (int w = 0; w < W4; ++w) cnt[w] = 0;
      for (uint32_t j = s->i8q_ptr[n]; j < s->i8q_ptr[n + 1]; ++j) cnt[s->i8q_off[j] / (4u * (uint32_t)T) / WQ]++;
      for (int w = 0; w < W4; ++w)
        if (cnt[w] > s->i8w_steps[(size_t)sl * W4 + w]) s->i8w_steps[(size_t)sl * W4 + w] = (uint8_t)cnt[w];
    }
    for (int w = 0; w < W4; ++w) {
      s->i8w_first[(size_t)sl * W4 + w] = (uint32_t)steps;
      steps += s->i8w_steps[(size_t)sl * W4 + w];
    }
  }
  if (steps > 0x7FFFFFFu) goto done;
  s->i8w_idx = (uint8_t*)calloc(16u * steps + 16u, 1);
  s->i8w_val = (int32_t*)tfc_alloc64((16u * steps + 16u) * sizeof(int32_t));
  if (s->i8w_idx == NULL || s->i8w_val == NULL) goto done;
  memset(s->i8w_val, 0, (16u * steps + 16u) * sizeof(int32_t));
  for (int sl = 0; sl < S; ++sl)
    for (int l = 0; l < 16; ++l) {
      const int n = 16 * sl + l;
      if (n >= s->n_out) break;
      for (int w = 0; w < W4; ++w) cnt[w] = 0;
      for (uint32_t j = s->i8q_ptr[n]; j < s->i8q_ptr[n + 1]; ++j) {
        const uint32_t q = s->i8q_off[j] / (4u * (uint32_t)T), w = q / WQ;
        const size_t slot = 16u * ((size_t)s->i8w_first[(size_t)sl * W4 + w] + cnt[w]++) + (size_t)l;
        s->i8w_idx[slot] = (uint8_t)(q % WQ);
        s->i8w_val[slot] = s->i8q_w[j];
      }
    }
  s->i8w_windows = W4;
  s->i8w_quads = wq;
  s->i8w_built = 1;
  ok = 1;
done:
  free(cnt);
  if (!ok) {
    free(s->i8w_steps);
    free(s->i8w_first);
    free(s->i8w_idx);
    tfc_free64(s->i8w_val);
    s->i8w_steps = NULL;
    s->i8w_first = NULL;
    s->i8w_idx = NULL;
    s->i8w_val = NULL;
  }
  return ok;
}

/* Input features used by channels [c0, c0 + w) (w = 4 or 8) of the lists: their count, and with
 * gk / gw (not NULL) the group's entries from `first` on, in feature order: features in gk, 8
 * weights each in gw.  idx[K] is -1 on entry and on return. */
static uint32_t tfc_group_union(const TfcState* s, const uint32_t* ptr, const uint32_t* off, const float* val,
                                int c0, int w, int32_t* idx, uint32_t* gk, float* gw, uint32_t first) {
  const int c1 = c0 + w < s->n_out ? c0 + w : s->n_out;
  uint32_t count = 0;
  for (int r = c0; r < c1; ++r)
    for (uint32_t j = ptr[r]; j < ptr[r + 1]; ++j)
      if (idx[off[j]] == -1) {
        idx[off[j]] = -2;
        count++;
      }
  if (gk != NULL) {
    uint32_t e = first;
    for (int k = 0; k < s->k_in; ++k)
      if (idx[k] == -2) {
        idx[k] = (int32_t)e;
        gk[e] = (uint32_t)k;
        for (int h = 0; h < 8; ++h) gw[8u * e + (uint32_t)h] = 0.f;
        e++;
      }
    for (int r = c0; r < c1; ++r)
      for (uint32_t j = ptr[r]; j < ptr[r + 1]; ++j) gw[8u * (uint32_t)idx[off[j]] + (uint32_t)(r - c0)] += val[j];
  }
  for (int r = c0; r < c1; ++r)
    for (uint32_t j = ptr[r]; j < ptr[r + 1]; ++j) idx[off[j]] = -1;
  return count;
}

void tfc_count_groups_f32(const TfcState* s, uint64_t* g8, uint64_t* quads) {
  uint32_t *ptr = NULL, *off = NULL;
  float* val = NULL;
  int32_t* mark = tfc_idx_array(s->k_in);
  *g8 = *quads = UINT64_MAX;
  if (mark != NULL && tfc_channel_lists(s, 1, &ptr, &off, &val)) {
    *g8 = *quads = 0;
    for (int c = 0; c < s->n_out; c += 8) *g8 += tfc_group_union(s, ptr, off, val, c, 8, mark, NULL, NULL, 0);
    for (int c = 0; c < s->n_out; c += 4) *quads += tfc_group_union(s, ptr, off, val, c, 4, mark, NULL, NULL, 0);
  }
  free(mark);
  free(ptr);
  free(off);
  free(val);
}

void tfc_free_g8(TfcState* s) {
  free(s->g8_ptr);
  free(s->g8_k);
  tfc_free64(s->g8_w);
  s->g8_ptr = NULL;
  s->g8_k = NULL;
  s->g8_w = NULL;
}

/* Float32 weights in groups of 8 output channels for the NHWC many-rows kernels: per group the
 * union of its channels' input features, in increasing order, each with the group's 8 weights
 * (zeros where a channel does not use it).  No transposed tile: one entry is one broadcast of
 * x[p][k] times 8 weights per row p.  Returns 0 when out of memory. */
int tfc_build_g8(TfcState* s) {
  tfc_free_g8(s);
  const int G = (s->n_out + 7) / 8;
  uint32_t *ptr = NULL, *off = NULL;
  float* val = NULL;
  int32_t* mark = tfc_idx_array(s->k_in);
  int ok = 0;
  if (mark == NULL || !tfc_channel_lists(s, 1, &ptr, &off, &val)) goto done;
  s->g8_ptr = (uint32_t*)malloc(((size_t)G + 1) * sizeof(uint32_t));
  if (s->g8_ptr == NULL) goto done;
  uint64_t total = 0;
  for (int g = 0; g < G; ++g) {
    s->g8_ptr[g] = (uint32_t)total;
    total += tfc_group_union(s, ptr, off, val, 8 * g, 8, mark, NULL, NULL, 0);
    if (total > 0x0FFFFFFFu) goto done;
  }
  s->g8_ptr[G] = (uint32_t)total;
  s->g8_k = (uint32_t*)malloc(((size_t)total + 1) * sizeof(uint32_t));
  s->g8_w = (float*)tfc_alloc64(((size_t)total + 1) * 8u * sizeof(float));
  if (s->g8_k == NULL || s->g8_w == NULL) goto done;
  for (int g = 0; g < G; ++g) tfc_group_union(s, ptr, off, val, 8 * g, 8, mark, s->g8_k, s->g8_w, s->g8_ptr[g]);
  ok = 1;
done:
  if (!ok) tfc_free_g8(s);
  free(mark);
  free(ptr);
  free(off);
  free(val);
  return ok;
}
