/* tfcompress sparse kernels: portable C (GCC/Clang vector extensions; NEON / SSE /
 * AVX as the target has, or target_clones in the host build) and their picker. */
#include "tfc_internal.h"

/* ------------------------------------------------------------- float math */

/* One input row x[K] -> y[N]: per slice, 16 output channels at once. */
#define TFC_DEFINE_ROW_F32(NAME, IDX_T)                                                             \
  TFC_HOT static void NAME(const TfcState* s, const float* x, const float* bias, float* y, int s0, int s1) { \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const float* v = (const float*)s->values;                                                       \
    for (int sl = s0; sl < s1; ++sl) {                                                              \
      const uint32_t b0 = s->slice_ptr[sl], e = s->slice_ptr[sl + 1];                               \
      float acc[16];                                                                                \
      for (int l = 0; l < 16; ++l) acc[l] = 0.f;                                                    \
      if (s->block == 1) {                                                                          \
        for (uint32_t i = b0; i < e; i += 16u) {                                                    \
          const IDX_T* c = col + i;                                                                 \
          const float* w = v + i;                                                                   \
          for (int l = 0; l < 16; ++l) acc[l] += w[l] * x[c[l]];                                    \
        }                                                                                           \
      } else {                                                                                      \
        float a4[16][4];                                                                            \
        for (int l = 0; l < 16; ++l)                                                                \
          for (int q = 0; q < 4; ++q) a4[l][q] = 0.f;                                               \
        for (uint32_t i = b0; i < e; i += 16u) {                                                    \
          for (int l = 0; l < 16; ++l) {                                                            \
            const float* w = v + 4u * (i + (uint32_t)l);                                            \
            const float* xx = x + 4u * (uint32_t)col[i + (uint32_t)l];                              \
            for (int q = 0; q < 4; ++q) a4[l][q] += w[q] * xx[q];                                   \
          }                                                                                         \
        }                                                                                           \
        for (int l = 0; l < 16; ++l) acc[l] = (a4[l][0] + a4[l][1]) + (a4[l][2] + a4[l][3]);        \
      }                                                                                             \
      for (int l = 0; l < 16; ++l) {                                                                \
        const uint32_t r = s->perm[sl * 16 + l];                                                    \
        if (r == 0xFFFFFFFFu) continue;                                                             \
        y[r] = tfc_clampf(acc[l] + (bias ? bias[r] : 0.f), s->fmin, s->fmax);                       \
      }                                                                                             \
    }                                                                                               \
  }
TFC_DEFINE_ROW_F32(tfc_row_f32_u16, uint16_t)
TFC_DEFINE_ROW_F32(tfc_row_f32_u32, uint32_t)


/* xt[c][i] = x[i][c] for the t valid rows; zero for rows t.. and features k..kpad. */
TFC_HOT static void tfc_transpose_f32(const float* x, int t, int k, int kpad, float* xt) {
  for (int c = 0; c < kpad; ++c)
    for (int i = 0; i < TFC_TILE; ++i) xt[(size_t)c * TFC_TILE + i] = (i < t && c < k) ? x[(size_t)i * k + c] : 0.f;
}

TFC_HOT static void tfc_row_f32_win(const TfcState* s, const float* x, const float* bias, float* y, int s0, int s1) {
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows;
  float tail[32];
  for (int sl = s0; sl < s1; ++sl) {
    float acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = 0.f;
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const float* xw = tfc_window_f32(s, x, w, tail);
      for (int t = 0; t < st[w]; ++t, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += v[i + l] * xw[col[i + l]];
    }
    for (int l = 0; l < 16; ++l) {
      const uint32_t r = s->perm[sl * 16 + l];
      if (r == 0xFFFFFFFFu) continue;
      y[r] = tfc_clampf(acc[l] + (bias ? bias[r] : 0.f), s->fmin, s->fmax);
    }
  }
}

/* -------------------------------------------------------------- int8 math */

#define TFC_DEFINE_ROW_I8(NAME, IDX_T)                                                              \
  TFC_HOT static void NAME(const TfcState* s, const int8_t* x, const int32_t* bias, int8_t* y, int s0, int s1) { \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const int8_t* v = (const int8_t*)s->values;                                                     \
    const int B = s->block;                                                                         \
    for (int sl = s0; sl < s1; ++sl) {                                                              \
      const uint32_t b0 = s->slice_ptr[sl], e = s->slice_ptr[sl + 1];                               \
      int32_t acc[16];                                                                              \
      for (int l = 0; l < 16; ++l) acc[l] = 0;                                                      \
      if (B == 1) {                                                                                 \
        for (uint32_t i = b0; i < e; i += 16u)                                                      \
          for (int l = 0; l < 16; ++l) acc[l] += (int32_t)v[i + l] * (int32_t)x[col[i + l]];        \
      } else {                                                                                      \
        for (uint32_t i = b0; i < e; i += 16u)                                                      \
          for (int l = 0; l < 16; ++l) {                                                            \
            const int8_t* w = v + 4u * (i + (uint32_t)l);                                           \
            const int8_t* xx = x + 4u * (uint32_t)col[i + (uint32_t)l];                             \
            acc[l] += w[0] * xx[0] + w[1] * xx[1] + w[2] * xx[2] + w[3] * xx[3];                    \
          }                                                                                         \
      }                                                                                             \
      for (int l = 0; l < 16; ++l) {                                                                \
        const uint32_t r = s->perm[sl * 16 + l];                                                    \
        if (r == 0xFFFFFFFFu) continue;                                                             \
        y[r] = tfc_requant(s, r, (int64_t)acc[l] + (bias ? bias[r] : 0) - (int64_t)s->zp_in * s->row_sums[r]);        \
      }                                                                                             \
    }                                                                                               \
  }
TFC_DEFINE_ROW_I8(tfc_row_i8_u16, uint16_t)
TFC_DEFINE_ROW_I8(tfc_row_i8_u32, uint32_t)


TFC_HOT static void tfc_transpose_i8(const int8_t* x, int t, int k, int kpad, int32_t* xt) {
  for (int c = 0; c < kpad; ++c)
    for (int i = 0; i < TFC_TILE; ++i) xt[(size_t)c * TFC_TILE + i] = (i < t && c < k) ? x[(size_t)i * k + c] : 0;
}


TFC_HOT static void tfc_row_i8_win(const TfcState* s, const int8_t* x, const int32_t* bias, int8_t* y, int s0, int s1) {
  const uint8_t* col = (const uint8_t*)s->col;
  const int8_t* v = (const int8_t*)s->values;
  const int W = s->n_windows, k = s->k_in;
  int8_t tail[32];
  for (int sl = s0; sl < s1; ++sl) {
    int32_t acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = 0;
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const int8_t* xw = x + w * 32;
      if (w * 32 + 32 > k) {
        for (int q = 0; q < 32; ++q) tail[q] = w * 32 + q < k ? x[w * 32 + q] : 0;
        xw = tail;
      }
      for (int q = 0; q < st[w]; ++q, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += (int32_t)v[i + l] * (int32_t)xw[col[i + l]];
    }
    for (int l = 0; l < 16; ++l) {
      const uint32_t r = s->perm[sl * 16 + l];
      if (r == 0xFFFFFFFFu) continue;
      y[r] = tfc_requant(s, r, (int64_t)acc[l] + (bias ? bias[r] : 0) - (int64_t)s->zp_in * s->row_sums[r]);
    }
  }
}



/* ---------------------------------------------------------- tiled kernels
 * TFC_TILE input rows at once (1x1 convolutions, batched FC): the tile is
 * transposed to xt[K][TFC_TILE], so every stored weight multiplies one
 * contiguous vector of TFC_TILE inputs, and the 16 lanes of a slice keep 16
 * independent vector accumulators (no FMA latency chain).  GCC/Clang vector
 * extensions map the vectors to AVX-512 / AVX2 / NEON registers. */
typedef float tfc_vf __attribute__((vector_size(TFC_TILE * sizeof(float))));
typedef int32_t tfc_vi __attribute__((vector_size(TFC_TILE * sizeof(int32_t))));

static inline tfc_vf tfc_ldf(const float* p) {
  tfc_vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline tfc_vi tfc_ldi(const int32_t* p) {
  tfc_vi v;
  memcpy(&v, p, sizeof v);
  return v;
}

static void tfc_init_acc_f32(const TfcState* s, int sl, const float* bias, tfc_vf* acc) {
  for (int l = 0; l < 16; ++l) {
    const uint32_t r = s->perm[sl * 16 + l];
    const float b = (bias != NULL && r != 0xFFFFFFFFu) ? bias[r] : 0.f;
    acc[l] = (tfc_vf){0} + b;
  }
}

/* Clamped accumulators of one slice go straight to the output rows. */
static void tfc_store_tile_f32(const TfcState* s, int sl, const tfc_vf* acc, float* y, int t, int ystride) {
  for (int l = 0; l < 16; ++l) {
    const uint32_t r = s->perm[sl * 16 + l];
    if (r == 0xFFFFFFFFu) continue;
    for (int i = 0; i < t; ++i) y[(size_t)i * ystride + r] = tfc_clampf(acc[l][i], s->fmin, s->fmax);
  }
}

#define TFC_DEFINE_TILE_F32(NAME, IDX_T)                                                            \
  TFC_HOT static void NAME(const TfcState* s, const float* xt, const float* bias, float* y, int t, \
                           int ystride, int s0, int s1) {                                           \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const float* v = (const float*)s->values;                                                       \
    for (int sl = s0; sl < s1; ++sl) {                                                              \
      tfc_vf acc[16];                                                                               \
      tfc_init_acc_f32(s, sl, bias, acc);                                                           \
      const uint32_t e = s->slice_ptr[sl + 1];                                                      \
      if (s->block == 1) {                                                                          \
        for (uint32_t i = s->slice_ptr[sl]; i < e; i += 16u)                                        \
          for (int l = 0; l < 16; ++l)                                                              \
            acc[l] += v[i + l] * tfc_ldf(xt + (size_t)col[i + l] * TFC_TILE);                       \
      } else {                                                                                      \
        for (uint32_t i = s->slice_ptr[sl]; i < e; i += 16u)                                        \
          for (int l = 0; l < 16; ++l) {                                                            \
            const float* w = v + 4u * (i + (uint32_t)l);                                            \
            const float* xr = xt + (size_t)col[i + l] * 4u * TFC_TILE;                              \
            acc[l] += w[0] * tfc_ldf(xr) + w[1] * tfc_ldf(xr + TFC_TILE) +                          \
                      w[2] * tfc_ldf(xr + 2 * TFC_TILE) + w[3] * tfc_ldf(xr + 3 * TFC_TILE);        \
          }                                                                                         \
      }                                                                                             \
      tfc_store_tile_f32(s, sl, acc, y, t, ystride);                                                \
    }                                                                                               \
  }
TFC_DEFINE_TILE_F32(tfc_tile_f32_u16, uint16_t)
TFC_DEFINE_TILE_F32(tfc_tile_f32_u32, uint32_t)

TFC_HOT static void tfc_tile_f32_win(const TfcState* s, const float* xt, const float* bias, float* y, int t,
                                     int ystride, int s0, int s1) {
  const uint8_t* col = (const uint8_t*)s->col;
  const float* v = (const float*)s->values;
  const int W = s->n_windows;
  for (int sl = s0; sl < s1; ++sl) {
    tfc_vf acc[16];
    tfc_init_acc_f32(s, sl, bias, acc);
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const float* xw = xt + (size_t)w * 32 * TFC_TILE;
      for (int q = 0; q < st[w]; ++q, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += v[i + l] * tfc_ldf(xw + (size_t)col[i + l] * TFC_TILE);
    }
    tfc_store_tile_f32(s, sl, acc, y, t, ystride);
  }
}

static void tfc_store_tile_i8(const TfcState* s, int sl, const tfc_vi* acc, const int32_t* bias, int8_t* y,
                              int t, int ystride) {
  for (int l = 0; l < 16; ++l) {
    const uint32_t r = s->perm[sl * 16 + l];
    if (r == 0xFFFFFFFFu) continue;
    const int64_t off = (int64_t)(bias ? bias[r] : 0) - (int64_t)s->zp_in * s->row_sums[r];
    for (int i = 0; i < t; ++i) y[(size_t)i * ystride + r] = tfc_requant(s, r, acc[l][i] + off);
  }
}

#define TFC_DEFINE_TILE_I8(NAME, IDX_T)                                                             \
  TFC_HOT static void NAME(const TfcState* s, const int32_t* xt, const int32_t* bias, int8_t* y,   \
                           int t, int ystride, int s0, int s1) {                                    \
    const IDX_T* col = (const IDX_T*)s->col;                                                        \
    const int8_t* v = (const int8_t*)s->values;                                                     \
    const int B = s->block;                                                                         \
    for (int sl = s0; sl < s1; ++sl) {                                                              \
      tfc_vi acc[16];                                                                               \
      for (int l = 0; l < 16; ++l) acc[l] = (tfc_vi){0};                                            \
      const uint32_t e = s->slice_ptr[sl + 1];                                                      \
      for (uint32_t i = s->slice_ptr[sl]; i < e; i += 16u)                                          \
        for (int l = 0; l < 16; ++l)                                                                \
          for (int b = 0; b < B; ++b)                                                               \
            acc[l] += (int32_t)v[(size_t)(i + l) * B + b] *                                         \
                      tfc_ldi(xt + ((size_t)col[i + l] * B + b) * TFC_TILE);                        \
      tfc_store_tile_i8(s, sl, acc, bias, y, t, ystride);                                           \
    }                                                                                               \
  }
TFC_DEFINE_TILE_I8(tfc_tile_i8_u16, uint16_t)
TFC_DEFINE_TILE_I8(tfc_tile_i8_u32, uint32_t)

TFC_HOT static void tfc_tile_i8_win(const TfcState* s, const int32_t* xt, const int32_t* bias, int8_t* y, int t,
                                    int ystride, int s0, int s1) {
  const uint8_t* col = (const uint8_t*)s->col;
  const int8_t* v = (const int8_t*)s->values;
  const int W = s->n_windows;
  for (int sl = s0; sl < s1; ++sl) {
    tfc_vi acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = (tfc_vi){0};
    uint32_t i = s->slice_ptr[sl];
    const uint8_t* st = s->steps + (size_t)sl * W;
    for (int w = 0; w < W; ++w) {
      const int32_t* xw = xt + (size_t)w * 32 * TFC_TILE;
      for (int q = 0; q < st[w]; ++q, i += 16u)
        for (int l = 0; l < 16; ++l) acc[l] += (int32_t)v[i + l] * tfc_ldi(xw + (size_t)col[i + l] * TFC_TILE);
    }
    tfc_store_tile_i8(s, sl, acc, bias, y, t, ystride);
  }
}


/* ------------------------------------------------------------- runners */

void tfc_plan_rows(const TfcState* s, TfcPlan* plan, TfcRangeFn run, const char* name) {
  plan->run = run;
  plan->units = s->n_slices;
  plan->unit_kind = TFC_UNITS_SLICES;
  plan->unit_rows = 0;
  plan->scratch_bytes = 0;
  plan->needs = TFC_NEEDS_NONE;
  plan->name = name;
}

/* Every row, output slices [u0, u1), one row at a time. */
void tfc_run_rows_f32(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  (void)scratch;
  const int K = s->k_in, N = s->n_out;
  const float* x = (const float*)io->x;
  float* y = (float*)io->y;
  for (int p = 0; p < s->rows; ++p) s->row_f32(s, x + (size_t)p * K, (const float*)io->bias, y + (size_t)p * N, u0, u1);
}

void tfc_run_rows_i8(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  (void)scratch;
  const int K = s->k_in, N = s->n_out;
  const int8_t* x = (const int8_t*)io->x;
  int8_t* y = (int8_t*)io->y;
  for (int p = 0; p < s->rows; ++p)
    s->row_i8(s, x + (size_t)p * K, (const int32_t*)io->bias, y + (size_t)p * N, u0, u1);
}

/* Tiled kernels: units are TFC_TILE-row tiles (all slices) or, below TFC_CSR_MIN_ROWS
 * rows, output slices (the one tile is transposed by every range). */
static void tfc_run_tiled_f32(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  const int P = s->rows, K = s->k_in, N = s->n_out, win = s->index_bytes == 1, u16 = s->index_bytes == 2;
  const int by_rows = s->plan.unit_kind == TFC_UNITS_ROWS;
  const int t0 = by_rows ? u0 : 0, t1 = by_rows ? u1 : (P + TFC_TILE - 1) / TFC_TILE;
  const int s0 = by_rows ? 0 : u0, s1 = by_rows ? s->n_slices : u1;
  const float* x = (const float*)io->x;
  const float* bias = (const float*)io->bias;
  float* y = (float*)io->y;
  float* xt = (float*)scratch;
  for (int tile = t0; tile < t1; ++tile) {
    const int p0 = tile * TFC_TILE, t = P - p0 < TFC_TILE ? P - p0 : TFC_TILE;
    tfc_transpose_f32(x + (size_t)p0 * K, t, K, s->n_windows * 32, xt);
    if (win) tfc_tile_f32_win(s, xt, bias, y + (size_t)p0 * N, t, N, s0, s1);
    else if (u16) tfc_tile_f32_u16(s, xt, bias, y + (size_t)p0 * N, t, N, s0, s1);
    else tfc_tile_f32_u32(s, xt, bias, y + (size_t)p0 * N, t, N, s0, s1);
  }
}

static void tfc_run_tiled_i8(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  const int P = s->rows, K = s->k_in, N = s->n_out, win = s->index_bytes == 1, u16 = s->index_bytes == 2;
  const int by_rows = s->plan.unit_kind == TFC_UNITS_ROWS;
  const int t0 = by_rows ? u0 : 0, t1 = by_rows ? u1 : (P + TFC_TILE - 1) / TFC_TILE;
  const int s0 = by_rows ? 0 : u0, s1 = by_rows ? s->n_slices : u1;
  const int8_t* x = (const int8_t*)io->x;
  const int32_t* bias = (const int32_t*)io->bias;
  int8_t* y = (int8_t*)io->y;
  int32_t* xt = (int32_t*)scratch;
  for (int tile = t0; tile < t1; ++tile) {
    const int p0 = tile * TFC_TILE, t = P - p0 < TFC_TILE ? P - p0 : TFC_TILE;
    tfc_transpose_i8(x + (size_t)p0 * K, t, K, s->n_windows * 32, xt);
    if (win) tfc_tile_i8_win(s, xt, bias, y + (size_t)p0 * N, t, N, s0, s1);
    else if (u16) tfc_tile_i8_u16(s, xt, bias, y + (size_t)p0 * N, t, N, s0, s1);
    else tfc_tile_i8_u32(s, xt, bias, y + (size_t)p0 * N, t, N, s0, s1);
  }
}

/* Portable plans: per-row kernels below TFC_GATHER_MAX_ROWS rows, else the tiled kernels. */
int tfc_pick_portable(TfcState* s, int cap, TfcPlan* plan) {
  (void)cap;
  const int win = s->index_bytes == 1, u16 = s->index_bytes == 2, f32 = s->value_type == kTfLiteFloat32;
  s->row_f32 = win ? tfc_row_f32_win : (u16 ? tfc_row_f32_u16 : tfc_row_f32_u32);
  s->row_i8 = win ? tfc_row_i8_win : (u16 ? tfc_row_i8_u16 : tfc_row_i8_u32);
  if (s->rows < TFC_GATHER_MAX_ROWS) {
    tfc_plan_rows(s, plan, f32 ? tfc_run_rows_f32 : tfc_run_rows_i8, f32 ? "portable_rows_f32" : "portable_rows_i8");
    return 1;
  }
  const int tiles = (s->rows + TFC_TILE - 1) / TFC_TILE;
  plan->run = f32 ? tfc_run_tiled_f32 : tfc_run_tiled_i8;
  plan->unit_kind = s->rows < TFC_CSR_MIN_ROWS ? TFC_UNITS_SLICES : TFC_UNITS_ROWS;
  plan->units = plan->unit_kind == TFC_UNITS_ROWS ? tiles : s->n_slices;
  plan->unit_rows = plan->unit_kind == TFC_UNITS_ROWS ? TFC_TILE : 0;
  /* transposed input tile xt[W*32][TILE] (float or int32) */
  plan->scratch_bytes = (size_t)TFC_TILE * (size_t)s->n_windows * 32u * sizeof(float);
  plan->needs = TFC_NEEDS_NONE;
  plan->name = f32 ? "portable_tiled_f32" : "portable_tiled_i8";
  return 1;
}
