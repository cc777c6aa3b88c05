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
  uint32_t* tptr = (uint32_t*)calloc((size_t)n + 1, sizeof(uint32_t));
  uint32_t* cursor = (uint32_t*)malloc(((size_t)n + 1) * sizeof(uint32_t));
  uint32_t* toff = NULL;
  float* tval = NULL;
  if (tptr == NULL || cursor == NULL) goto done;
  tfc_csr_pass(s, 0, tptr, NULL, NULL, NULL, T);
  for (int r = 0; r < n; ++r) tptr[r + 1] += tptr[r];
  memcpy(cursor, tptr, ((size_t)n + 1) * sizeof(uint32_t));
  toff = (uint32_t*)malloc(((size_t)tptr[n] + 1) * sizeof(uint32_t));
  tval = (float*)malloc(((size_t)tptr[n] + 1) * sizeof(float));
  if (toff == NULL || tval == NULL) goto done;
  tfc_csr_pass(s, 1, NULL, cursor, toff, tval, T); /* plain CSR in toff / tval */
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
    int32_t* mark = (int32_t*)malloc(((size_t)s->k_in + 1) * sizeof(int32_t));
    if (mark == NULL) goto done;
    for (int k = 0; k <= s->k_in; ++k) mark[k] = -1;
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
  free(cursor);
  free(toff);
  free(tval);
  return ok;
}
