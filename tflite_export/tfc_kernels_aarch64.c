/* tfcompress sparse kernels: aarch64 NEON kernels (ARMv8.0 NEON; int8 with ARMv8.2 `sdot`
 * when the CPU has it, detected at run time with getauxval(AT_HWCAP) & HWCAP_ASIMDDP).
 * arm_neon.h intrinsics only, so GCC and Clang (the Android NDK compiler) both emit the
 * vector code; no -march flag is needed (sdot functions carry a target attribute).
 *
 * Paths (picked in Prepare by tfc_pick_aarch64, before the portable picker; plan names):
 *   - neon_tbl_f32 (float32, 1-15 rows, B = 1): groups of 8 output channels, each with its own
 *     16-float windows of x chosen by dynamic programming in Prepare, 16 unrolled tbl + fmla
 *     steps entered by a computed jump per window (tfc_arm_build_f32j, tfc_arm_f32j_r1 / _r2).
 *   - neon_tbl_i8 / sdot_tbl_i8 (int8, 1-15 rows): a
 *     Prepare-time re-layout (the file format is unchanged) of the validated TFCS weights into
 *     groups of consecutive output channels (8 float32 / 4 int8) x windows of 64 bytes of x
 *     (16 float32 / 64 int8 inputs = one 4-register `tbl` table).  Per 4 lanes a step holds 16
 *     `tbl` byte indices + 16 bytes of weights.  float32: each lane takes one weight per step
 *     (indices 4o..4o+3 select float o of the window); int8: each lane takes 4 weights per step
 *     (4 independent byte indices), so one `tbl` + one `sdot` serve 16 stored weights.
 *     Padding slots have index 0xFF (tbl gives 0) and weight 0.  No scalar gathers.  2 input
 *     rows per pass share the step loads.
 *   - neon_block4_f32 (float32, 1-15 rows, 1x4 blocks): the TFCS slices as they are, one
 *     `ldr q` of 4 consecutive inputs per stored block (column as register offset) + `fmla`.
 *   - neon_csr_f32 (float32, >= 16 rows: 1x1 convolutions, batched FC): the sparse x dense
 *     product of Elsen et al. 2020 with lanes = rows, on a per-channel CSR copy of the validated
 *     weights built by the picker (tfc_arm_build_csr; natural channel order, features in chunks):
 *     64-row tiles transposed to xt[K][64], one channel x 64 rows per asm block (16
 *     accumulators), each stored weight = 4 `ld1` of 4 registers of its tile row + 16 `fmla`.
 *   - sdot_quads_i8 (int8, >= 16 rows, dotprod) / neon_quads_i8 (ARMv8.0): the int8 quad
 *     re-layout of tfc_relayout.c (shared with the VNNI kernel) on 64-row tiles transposed as
 *     dwords; one channel x 64 rows per asm block: 16 `sdot` per quad (ARMv8.0: 32 rows per pass,
 *     smull / smlal + sadalp), requantized in registers, 16x16 byte transposes to NHWC.
 * No spills in any compute loop for GCC 12 and Clang 14 (tests/native/test_aarch64.py checks
 * the disassembly).  All step loops are inline asm (see below why).
 */
#include "tfc_internal.h"

#if TFC_HAVE_AARCH64
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif


int tfc_aarch64_has_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD)
  return 1;
#elif defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
  return 0;
#endif
}

/* ------------------------------------------------------- tbl re-layout */

typedef struct TfcArmTbl {
  const uint8_t* blob; /* packed weights it was built from */
  int value_type;
  int esz; /* bytes per x element: 1 (int8; float32 batch 1-15 uses f32j below) */
  int lanes; /* output channels per group: 4 */
  int groups; /* ceil(N / lanes) */
  int W; /* windows of 64 bytes of x: ceil(K * esz / 64) */
  uint8_t* steps; /* [groups][W] steps of each window (<= 16) */
  uint32_t* gptr; /* [groups + 1] first step of each group */
  uint8_t* data; /* 16-byte aligned, 8 * lanes bytes per step: {idx[16], weights[16]} per 4 lanes */
  uint8_t* data_raw;
  /* float32, >= 16 rows (tfc_arm_build_csr): per (chunk c, output channel n) in natural order,
   * entries csr_ptr[c * N + n] .. csr_ptr[c * N + n + 1] - 1 of the stored non-zero weights with
   * input features in [c * KC, (c + 1) * KC): csr_off = feature * T * 4 (byte offset of its row
   * in the transposed tile), csr_val = the weight */
  const uint8_t* csr_blob; /* packed weights the CSR copy was built from; NULL = not built */
  int csr_chunks;
  int csr_kc;
  uint32_t* csr_ptr; /* [chunks * N + 1] */
  uint32_t* csr_off;
  float* csr_val;
  void* f32j; /* float32, 1-15 rows, B = 1: TfcArmF32J (tfc_arm_build_f32j) */
} TfcArmTbl;

static void tfc_arm_free_tbl(TfcArmTbl* a) {
  free(a->steps);
  free(a->gptr);
  free(a->data_raw);
  a->steps = NULL;
  a->gptr = NULL;
  a->data_raw = a->data = NULL;
  a->blob = NULL;
}

static void tfc_arm_free_f32j(void* f32j);

static void tfc_arm_free_csr(TfcArmTbl* a) {
  free(a->csr_ptr);
  free(a->csr_off);
  free(a->csr_val);
  a->csr_ptr = a->csr_off = NULL;
  a->csr_val = NULL;
  a->csr_blob = NULL;
}

void tfc_free_aarch64(TfcState* s) {
  TfcArmTbl* a = (TfcArmTbl*)s->arm_tbl;
  if (a == NULL) return;
  tfc_arm_free_tbl(a);
  tfc_arm_free_csr(a);
  tfc_arm_free_f32j(a->f32j);
  free(a);
  s->arm_tbl = NULL;
}

/* The re-layout state of s (allocated on first use, in Prepare); NULL when out of memory. */
static TfcArmTbl* tfc_arm_state(TfcState* s) {
  if (s->arm_tbl == NULL) s->arm_tbl = calloc(1, sizeof(TfcArmTbl));
  return (TfcArmTbl*)s->arm_tbl;
}

typedef struct {
  uint32_t k;
  uint32_t v; /* value bits: float32 or int8 (low byte) */
} TfcArmEntry;

static int tfc_arm_entry_cmp(const void* a, const void* b) {
  const uint32_t x = ((const TfcArmEntry*)a)->k, y = ((const TfcArmEntry*)b)->k;
  return x < y ? -1 : (x > y);
}

/* Visits every stored non-zero weight of the validated TFCS blob: pass 0 counts per output
 * channel into cnt[r + 1], pass 1 writes {feature, value bits} at e[cursor[r]++]. */
static void tfc_arm_visit(const TfcState* s, int pass, uint32_t* cnt, uint32_t* cursor, TfcArmEntry* e) {
  const int B = s->block, W = s->n_windows, f32 = s->value_type == kTfLiteFloat32;
  for (int sl = 0; sl < s->n_slices; ++sl) {
    const uint32_t* lane_ch = s->perm + sl * 16;
    uint32_t i = s->slice_ptr[sl];
    for (int w = 0; i < s->slice_ptr[sl + 1]; ++w) {
      const uint32_t end = s->steps ? i + 16u * s->steps[(size_t)sl * W + w] : s->slice_ptr[sl + 1];
      for (; i < end; ++i) {
        const uint32_t r = lane_ch[(i - s->slice_ptr[sl]) % 16u];
        if (r == 0xFFFFFFFFu) continue;
        const uint32_t k0 = s->steps ? (uint32_t)w * 32u + ((const uint8_t*)s->col)[i]
                          : (uint32_t)B * (s->index_bytes == 2 ? ((const uint16_t*)s->col)[i]
                                                              : ((const uint32_t*)s->col)[i]);
        for (int b = 0; b < B; ++b) {
          uint32_t bits;
          if (f32) {
            const float fv = ((const float*)s->values)[(size_t)i * B + b];
            if (fv == 0.f) continue;
            memcpy(&bits, &fv, 4);
          } else {
            const int8_t q = ((const int8_t*)s->values)[(size_t)i * B + b];
            if (q == 0) continue;
            bits = (uint8_t)q;
          }
          if (pass == 0) {
            cnt[r + 1]++;
          } else {
            e[cursor[r]].k = k0 + (uint32_t)b;
            e[cursor[r]++].v = bits;
          }
        }
      }
    }
  }
}

/* Every stored non-zero weight grouped by output channel (CSR: channel r's entries are
 * e[ptr[r]] .. e[ptr[r + 1] - 1]), sorted by input feature.  1 with *ptr_out / *e_out set (the
 * caller frees both), 0 when out of memory. */
static int tfc_arm_entries(const TfcState* s, uint32_t** ptr_out, TfcArmEntry** e_out) {
  const int n = s->n_out;
  uint32_t* ptr = (uint32_t*)calloc((size_t)n + 1, sizeof(uint32_t));
  uint32_t* cursor = (uint32_t*)malloc(((size_t)n + 1) * sizeof(uint32_t));
  TfcArmEntry* e = NULL;
  if (ptr != NULL && cursor != NULL) {
    tfc_arm_visit(s, 0, ptr, NULL, NULL);
    for (int r = 0; r < n; ++r) ptr[r + 1] += ptr[r];
    memcpy(cursor, ptr, ((size_t)n + 1) * sizeof(uint32_t));
    e = (TfcArmEntry*)malloc(((size_t)ptr[n] + 1) * sizeof(TfcArmEntry));
  }
  if (e == NULL) {
    free(ptr);
    free(cursor);
    return 0;
  }
  tfc_arm_visit(s, 1, NULL, cursor, e);
  free(cursor);
  for (int r = 0; r < n; ++r) qsort(e + ptr[r], ptr[r + 1] - ptr[r], sizeof(TfcArmEntry), tfc_arm_entry_cmp);
  *ptr_out = ptr;
  *e_out = e;
  return 1;
}

/* Builds s->arm_tbl (int8, 1-15 rows) from the validated weights; 0 when out of memory. */
static int tfc_arm_build_tbl(TfcState* s) {
  const int n = s->n_out, esz = 1, per = 4, F = 64; /* slots per lane and step; features per window */
  const int LG = 4; /* lanes per group */
  const uint32_t SB = 8u * (uint32_t)LG; /* bytes per step */
  int ok = 0;
  TfcArmTbl* a = tfc_arm_state(s);
  uint32_t* ptr = NULL;
  TfcArmEntry* e = NULL;
  if (a == NULL) return 0;
  tfc_arm_free_tbl(a);
  a->value_type = s->value_type;
  a->esz = esz;
  a->lanes = LG;
  a->groups = (n + LG - 1) / LG;
  a->W = (int)(((uint64_t)s->k_in * (uint64_t)esz + 63u) / 64u);
  if (!tfc_arm_entries(s, &ptr, &e)) goto done;
  a->steps = (uint8_t*)malloc((size_t)a->groups * (size_t)a->W + 1u);
  a->gptr = (uint32_t*)malloc(((size_t)a->groups + 1u) * sizeof(uint32_t));
  if (a->steps == NULL || a->gptr == NULL) goto done;
  /* pass 0: steps of every (group, window); pass 1: the data */
  for (int pass = 0; pass < 2; ++pass) {
    uint64_t total = 0;
    for (int g = 0; g < a->groups; ++g) {
      uint32_t p[8], pe[8];
      for (int l = 0; l < LG; ++l) {
        const int r = LG * g + l;
        p[l] = r < n ? ptr[r] : 0;
        pe[l] = r < n ? ptr[r + 1] : 0;
      }
      if (pass == 0) a->gptr[g] = (uint32_t)total;
      for (int w = 0; w < a->W; ++w) {
        const uint64_t lim = (uint64_t)(w + 1) * (uint64_t)F;
        uint32_t q[8], mx = 0;
        for (int l = 0; l < LG; ++l) {
          q[l] = p[l];
          while (q[l] < pe[l] && e[q[l]].k < lim) q[l]++;
          const uint32_t st = (q[l] - p[l] + (uint32_t)per - 1u) / (uint32_t)per;
          if (st > mx) mx = st;
        }
        if (mx > 255u) goto done; /* cannot happen: Prepare refuses a feature stored twice in a lane */
        if (pass == 0) {
          a->steps[(size_t)g * a->W + w] = (uint8_t)mx;
        } else {
          uint8_t* d = a->data + (uint64_t)SB * total;
          memset(d, 0, (size_t)SB * mx);
          for (uint32_t j = 0; j < mx * (uint32_t)LG / 4u; ++j)
            for (int b = 0; b < 16; ++b) d[32u * j + (uint32_t)b] = 0xFF; /* padding: tbl gives 0 */
          for (int l = 0; l < LG; ++l)
            for (uint32_t t = 0; p[l] + t < q[l]; ++t) {
              const TfcArmEntry* en = e + p[l] + t;
              const uint32_t o = en->k - (uint32_t)w * (uint32_t)F; /* < F */
              uint8_t* st = d + SB * (t / (uint32_t)per); /* {idx[16], w[16]} of the 4 lanes */
              const int slot = 4 * l + (int)(t % 4u);
              st[slot] = (uint8_t)o;
              st[16 + slot] = (uint8_t)en->v;
            }
        }
        total += mx;
        for (int l = 0; l < LG; ++l) p[l] = q[l];
      }
      if (total > 0x3FFFFFFu) goto done;
    }
    if (pass == 0) {
      a->gptr[a->groups] = (uint32_t)total;
      a->data_raw = (uint8_t*)malloc((size_t)SB * (size_t)total + 16u);
      if (a->data_raw == NULL) goto done;
      a->data = (uint8_t*)(((uintptr_t)a->data_raw + 15u) & ~(uintptr_t)15u);
    }
  }
  ok = 1;
done:
  free(ptr);
  free(e);
  if (ok) a->blob = s->blob_seen;
  else tfc_arm_free_tbl(a);
  return ok;
}

/* Builds the float32 CSR copy (see TfcArmTbl) for tiles of T rows, features in chunks of KC;
 * 0 when out of memory. */
static int tfc_arm_build_csr(TfcState* s, int T, int KC) {
  TfcArmTbl* a = tfc_arm_state(s);
  uint32_t* ptr = NULL;
  TfcArmEntry* e = NULL;
  if (a == NULL) return 0;
  tfc_arm_free_csr(a);
  const int n = s->n_out, C = (s->k_in + KC - 1) / KC;
  int ok = 0;
  if (!tfc_arm_entries(s, &ptr, &e)) return 0;
  const uint32_t total = ptr[n];
  a->csr_ptr = (uint32_t*)malloc(((size_t)C * (size_t)n + 1u) * sizeof(uint32_t));
  a->csr_off = (uint32_t*)malloc(((size_t)total + 1u) * sizeof(uint32_t));
  a->csr_val = (float*)malloc(((size_t)total + 1u) * sizeof(float));
  if (a->csr_ptr == NULL || a->csr_off == NULL || a->csr_val == NULL) goto done;
  if ((uint64_t)s->k_in * (uint64_t)T * 4u > 0xFFFFFFFFu) goto done;
  uint32_t j = 0;
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < n; ++r) {
      a->csr_ptr[(size_t)c * n + r] = j;
      for (uint32_t i = ptr[r]; i < ptr[r + 1]; ++i)
        if (e[i].k / (uint32_t)KC == (uint32_t)c) {
          a->csr_off[j] = e[i].k * (uint32_t)T * 4u;
          memcpy(&a->csr_val[j], &e[i].v, 4);
          ++j;
        }
    }
  a->csr_ptr[(size_t)C * n] = j;
  a->csr_chunks = C;
  a->csr_kc = KC;
  ok = 1;
done:
  free(ptr);
  free(e);
  if (ok) a->csr_blob = s->blob_seen;
  else tfc_arm_free_csr(a);
  return ok;
}

/* Rows [p, p + R) of x as 64-byte windows: x itself when K * esz is a multiple of 64, else
 * copies padded with zeros in the scratch (W * 64 bytes per row). */
static inline const uint8_t* tfc_arm_row(const TfcState* s, const TfcArmTbl* a, const uint8_t* x, int p,
                                         int r, uint8_t* scratch) {
  const size_t kb = (size_t)s->k_in * (size_t)a->esz, wb = (size_t)a->W * 64u;
  const uint8_t* src = x + (size_t)(p + r) * kb;
  if (kb == wb) return src;
  uint8_t* dst = scratch + (size_t)r * wb;
  memcpy(dst, src, kb);
  memset(dst + kb, 0, wb - kb);
  return dst;
}

/* ------------------------------------------------- tbl step loops (asm)
 * One group of 4 output channels, R = 1 or 2 input rows, all windows: per window, load the
 * 64-byte x window of each row into a 4-register tbl table (v16-v19, v20-v23), then per
 * step: load {16 byte indices, 16 weight bytes} per 4 lanes; tbl; sdot (int8, ARMv8.2) /
 * smull + smull2 + 2 sadalp (int8, ARMv8.0).  sdot does two steps per iteration (one `ld1` of
 * 64 bytes each) into two accumulator sets.  The R x lanes accumulators are stored to `out`.
 * (float32 1-15 rows: the jump-in kernel further down.)
 * Written in inline asm because GCC 12 keeps neither the 4-register tbl table nor the
 * accumulators of the intrinsics version in registers (it reloaded the table every step and
 * stored the accumulators every step, 7-32 instructions per step vs 5 for Clang); the asm
 * gives both compilers the same loop.  sdot is emitted with .inst (the assemblers accept the
 * mnemonic only with +dotprod); these functions run only when HWCAP_ASIMDDP is set.
 * Registers: v16-v23 tables (row 0, row 1); v4-v7 indices and weights; v6-v15 lookups and
 * products; accumulators v0-v1 + v24-v25 (sdot), v0-v1 low + v12-v13 high halves (ARMv8.0). */
#define TFC_ARM_VREGS                                                                                      \
  "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", "v16", \
      "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31"

/* One template per kernel for R = 1 and 2 rows: TFC_ARM_IF2_R(text) keeps `text` only for 2 rows
 * (the second row's table, lookups, accumulators and operand), TFC_ARM_SEL_R(one, two) picks. */
#define TFC_ARM_IF2_1(...)
#define TFC_ARM_IF2_2(...) __VA_ARGS__
#define TFC_ARM_SEL_1(one, two) one
#define TFC_ARM_SEL_2(one, two) two

#define TFC_ARM_ASM_DOT(R)                                                                                 \
  static inline __attribute__((always_inline)) void tfc_arm_asm_dot_##R(                                   \
      const uint8_t* st, int wc, const uint8_t* d, const uint8_t* x0 TFC_ARM_IF2_##R(, const uint8_t* x1), \
      void* out) {                                                                                         \
    uint32_t n;                                                                                            \
    __asm__ volatile(                                                                                      \
        "movi v0.16b, #0\n\t"                                                                              \
        TFC_ARM_IF2_##R("movi v1.16b, #0\n\t")                                                             \
        "movi v24.16b, #0\n\t"                                                                             \
        TFC_ARM_IF2_##R("movi v25.16b, #0\n\t")                                                            \
        "1:\n\t"                                                                                           \
        "ld1 {v16.16b-v19.16b}, [%[x0]], #64\n\t"                                                          \
        TFC_ARM_IF2_##R("ld1 {v20.16b-v23.16b}, [%[x1]], #64\n\t")                                         \
        "ldrb %w[n], [%[st]], #1\n\t"                                                                      \
        "cbz %w[n], 4f\n\t"                                                                                \
        "tbz %w[n], #0, 2f\n\t"                                                                            \
        "ldp q4, q5, [%[d]], #32\n\t"                                                                      \
        "tbl v8.16b, {v16.16b-v19.16b}, v4.16b\n\t"                                                        \
        TFC_ARM_IF2_##R("tbl v9.16b, {v20.16b-v23.16b}, v4.16b\n\t")                                       \
        ".inst 0x4e859500  /* sdot v0.4s, v8.16b, v5.16b */\n\t"                                           \
        TFC_ARM_IF2_##R(".inst 0x4e859521  /* sdot v1.4s, v9.16b, v5.16b */\n\t")                          \
        "subs %w[n], %w[n], #1\n\t"                                                                        \
        "b.eq 4f\n\t"                                                                                      \
        "2:\n\t"                                                                                           \
        "ld1 {v4.16b-v7.16b}, [%[d]], #64\n\t"                                                             \
        "tbl v8.16b, {v16.16b-v19.16b}, v4.16b\n\t"                                                        \
        TFC_ARM_IF2_##R("tbl v9.16b, {v20.16b-v23.16b}, v4.16b\n\t")                                       \
        ".inst 0x4e859500  /* sdot v0.4s, v8.16b, v5.16b */\n\t"                                           \
        TFC_ARM_IF2_##R(".inst 0x4e859521  /* sdot v1.4s, v9.16b, v5.16b */\n\t")                          \
        "tbl v12.16b, {v16.16b-v19.16b}, v6.16b\n\t"                                                       \
        TFC_ARM_IF2_##R("tbl v13.16b, {v20.16b-v23.16b}, v6.16b\n\t")                                      \
        ".inst 0x4e879598  /* sdot v24.4s, v12.16b, v7.16b */\n\t"                                         \
        TFC_ARM_IF2_##R(".inst 0x4e8795b9  /* sdot v25.4s, v13.16b, v7.16b */\n\t")                        \
        "subs %w[n], %w[n], #2\n\t"                                                                        \
        "b.ne 2b\n\t"                                                                                      \
        "4:\n\t"                                                                                           \
        "subs %w[wc], %w[wc], #1\n\t"                                                                      \
        "b.ne 1b\n\t"                                                                                      \
        "add v0.4s, v0.4s, v24.4s\n\t"                                                                     \
        TFC_ARM_IF2_##R("add v1.4s, v1.4s, v25.4s\n\t")                                                    \
        TFC_ARM_SEL_##R("st1 {v0.4s}, [%[out]]\n\t", "st1 {v0.4s-v1.4s}, [%[out]]\n\t")                    \
        : [n] "=&r"(n), [st] "+r"(st), [wc] "+r"(wc), [d] "+r"(d),                                         \
          [x0] "+r"(x0) TFC_ARM_IF2_##R(, [x1] "+r"(x1))                                                   \
        : [out] "r"(out)                                                                                   \
        : TFC_ARM_VREGS, "cc", "memory");                                                                  \
  }
TFC_ARM_ASM_DOT(1)
TFC_ARM_ASM_DOT(2)

#define TFC_ARM_ASM_NEON(R)                                                                                \
  static inline __attribute__((always_inline)) void tfc_arm_asm_neon_##R(                                  \
      const uint8_t* st, int wc, const uint8_t* d, const uint8_t* x0 TFC_ARM_IF2_##R(, const uint8_t* x1), \
      void* out) {                                                                                         \
    uint32_t n;                                                                                            \
    __asm__ volatile(                                                                                      \
        "movi v0.16b, #0\n\t"                                                                              \
        TFC_ARM_IF2_##R("movi v1.16b, #0\n\t")                                                             \
        "movi v12.16b, #0\n\t"                                                                             \
        TFC_ARM_IF2_##R("movi v13.16b, #0\n\t")                                                            \
        "1:\n\t"                                                                                           \
        "ld1 {v16.16b-v19.16b}, [%[x0]], #64\n\t"                                                          \
        TFC_ARM_IF2_##R("ld1 {v20.16b-v23.16b}, [%[x1]], #64\n\t")                                         \
        "ldrb %w[n], [%[st]], #1\n\t"                                                                      \
        "cbz %w[n], 4f\n\t"                                                                                \
        "2:\n\t"                                                                                           \
        "ldp q4, q5, [%[d]], #32\n\t"                                                                      \
        "tbl v8.16b, {v16.16b-v19.16b}, v4.16b\n\t"                                                        \
        "smull v9.8h, v8.8b, v5.8b\n\t"                                                                    \
        "smull2 v10.8h, v8.16b, v5.16b\n\t"                                                                \
        "sadalp v0.4s, v9.8h\n\t"                                                                          \
        "sadalp v12.4s, v10.8h\n\t"                                                                        \
        TFC_ARM_IF2_##R("tbl v6.16b, {v20.16b-v23.16b}, v4.16b\n\t"                                        \
                        "smull v7.8h, v6.8b, v5.8b\n\t"                                                    \
                        "smull2 v11.8h, v6.16b, v5.16b\n\t"                                                \
                        "sadalp v1.4s, v7.8h\n\t"                                                          \
                        "sadalp v13.4s, v11.8h\n\t")                                                       \
        "subs %w[n], %w[n], #1\n\t"                                                                        \
        "b.ne 2b\n\t"                                                                                      \
        "4:\n\t"                                                                                           \
        "subs %w[wc], %w[wc], #1\n\t"                                                                      \
        "b.ne 1b\n\t"                                                                                      \
        "addp v0.4s, v0.4s, v12.4s\n\t"                                                                    \
        TFC_ARM_IF2_##R("addp v1.4s, v1.4s, v13.4s\n\t")                                                   \
        TFC_ARM_SEL_##R("st1 {v0.4s}, [%[out]]\n\t", "st1 {v0.4s-v1.4s}, [%[out]]\n\t")                    \
        : [n] "=&r"(n), [st] "+r"(st), [wc] "+r"(wc), [d] "+r"(d),                                         \
          [x0] "+r"(x0) TFC_ARM_IF2_##R(, [x1] "+r"(x1))                                                   \
        : [out] "r"(out)                                                                                   \
        : TFC_ARM_VREGS, "cc", "memory");                                                                  \
  }
TFC_ARM_ASM_NEON(1)
TFC_ARM_ASM_NEON(2)


/* ----------------------------------------------- float32, tbl, 1-2 rows */

/* int8: requantizes 4 accumulators of group g: the rule of tfc_requant (float multiply, round
 * to nearest even, saturate, + zero point, clamp), 4 lanes at once (accumulators, bias and the
 * zero-point term added in int32 with wrap-around, as the many-row kernels). */
static void tfc_arm_i8_store(const TfcState* s, const int32_t* acc, const int32_t* bias, int8_t* y, int g) {
  const int r0 = 4 * g, nb = s->n_out - r0 < 4 ? s->n_out - r0 : 4;
  int32_t b[4] = {0, 0, 0, 0}, rs[4] = {0, 0, 0, 0};
  float m[4] = {0.f, 0.f, 0.f, 0.f};
  for (int l = 0; l < nb; ++l) {
    b[l] = bias ? bias[r0 + l] : 0;
    rs[l] = s->row_sums[r0 + l];
    m[l] = s->multipliers[r0 + l];
  }
  const int32x4_t a = vaddq_s32(vaddq_s32(vld1q_s32(acc), vld1q_s32(b)),
                                vreinterpretq_s32_u32(vmulq_u32(vreinterpretq_u32_s32(vld1q_s32(rs)),
                                                                vdupq_n_u32(0u - (uint32_t)s->zp_in))));
  int32x4_t q = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(a), vld1q_f32(m)));
  q = vqaddq_s32(q, vdupq_n_s32(s->zp_out));
  q = vminq_s32(vmaxq_s32(q, vdupq_n_s32(s->qmin)), vdupq_n_s32(s->qmax));
  int32_t out[4];
  vst1q_s32(out, q);
  for (int l = 0; l < nb; ++l) y[r0 + l] = (int8_t)out[l];
}

enum { TFC_ARM_DOT = 1, TFC_ARM_NEON = 2 };

/* Units: slices of 16 output channels (2 float32 / 4 int8 groups), every row, 2 rows per pass. */
static inline __attribute__((always_inline)) void tfc_arm_rows(const TfcState* s, const TfcIO* io, int u0, int u1,
                                                               void* scratch, const int kind) {
  const TfcArmTbl* a = (const TfcArmTbl*)s->arm_tbl;
  const int gpu = 16 / a->lanes, W = a->W;
  const int g0 = gpu * u0, g1 = gpu * u1 < a->groups ? gpu * u1 : a->groups;
  const size_t sb = 8u * (size_t)a->lanes;
  for (int p = 0; p < s->rows; p += 2) {
    const int R = s->rows - p < 2 ? s->rows - p : 2;
    const uint8_t* x0 = tfc_arm_row(s, a, (const uint8_t*)io->x, p, 0, (uint8_t*)scratch);
    const uint8_t* x1 = R == 2 ? tfc_arm_row(s, a, (const uint8_t*)io->x, p, 1, (uint8_t*)scratch) : x0;
    uint8_t* y0 = (uint8_t*)io->y + (size_t)p * (size_t)s->n_out;
    uint8_t* y1 = y0 + (size_t)s->n_out;
    for (int g = g0; g < g1; ++g) {
      union {
        float f[16];
        int32_t i[16];
      } acc; /* rows x lanes accumulators written by the asm */
      const uint8_t* st = a->steps + (size_t)g * W;
      const uint8_t* d = a->data + sb * (size_t)a->gptr[g];
      {
        if (kind == TFC_ARM_DOT) {
          if (R == 2) tfc_arm_asm_dot_2(st, W, d, x0, x1, acc.i);
          else tfc_arm_asm_dot_1(st, W, d, x0, acc.i);
        } else {
          if (R == 2) tfc_arm_asm_neon_2(st, W, d, x0, x1, acc.i);
          else tfc_arm_asm_neon_1(st, W, d, x0, acc.i);
        }
        tfc_arm_i8_store(s, acc.i, (const int32_t*)io->bias, (int8_t*)y0, g);
        if (R == 2) tfc_arm_i8_store(s, acc.i + 4, (const int32_t*)io->bias, (int8_t*)y1, g);
      }
    }
  }
}

static void tfc_arm_rows_i8_dot(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  tfc_arm_rows(s, io, u0, u1, scratch, TFC_ARM_DOT);
}
static void tfc_arm_rows_i8_neon(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  tfc_arm_rows(s, io, u0, u1, scratch, TFC_ARM_NEON);
}

/* --------------------------- float32, 1-15 rows, B = 1: windows chosen per group, jump in
 * Layout (built in Prepare by tfc_arm_build_f32j from the validated weights; the file is
 * unchanged): groups of 8 consecutive output channels (two 4-lane quads).  Each group covers
 * the input features with its own list of windows: a window is any 16 consecutive floats of x
 * (one 4-register `tbl` table, loaded at any float offset) and holds n <= 16 steps; a step is
 * 64 bytes {16 tbl byte indices, 4 weights} x 2 quads, lane l taking one stored weight of
 * channel 8g + l per step (index bytes 4o..4o+3 select float o of the window; padding slots
 * index 0xFF, so `tbl` gives 0, with weight 0).  Windows are chosen per group by dynamic
 * programming over its non-zero columns (cost 3 + 5 * steps instructions per window: a window
 * ends where the lanes' counts are balanced, columns empty in all 8 lanes are skipped), which
 * on FC 2048 x 2048 at 90 % random zeros fills 55 % of the slots instead of 47 % with fixed
 * aligned windows.  Per window the kernel reads one entry {x byte delta to the next window,
 * code address}: the code holds 16 steps unrolled (no loop counter) and a window jumps to the
 * step that leaves exactly n to run, then falls into the head: `ldp` of the entry, `ld1` of
 * the window's table (post-incremented by the delta), `br`.  So a window costs 3 instructions
 * and a step 5 (1 row: `ld1` 64 bytes, 2 `tbl`, 2 `fmla`) or 9 (2 rows: 4 `tbl`, 4 `fmla`).
 * A per-group sentinel entry {0, exit} ends the group.  Steps alternate between two
 * accumulator sets (fmla latency), summed at the exit.  The code addresses are those of this
 * library's own functions (computed in Prepare, one entry array per row count it runs); the
 * asm is one block of top-level asm, so GCC and Clang emit the same code.  With
 * -mbranch-protection=bti every step and the exit begin with `bti j`. */
#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
#define TFC_F32J_BTI_J "hint #36\n\t" /* bti j: an indirect branch lands here */
#define TFC_F32J_BTI_C "hint #34\n\t"
#define TFC_F32J_STEP_EXTRA 4
#else
#define TFC_F32J_BTI_J ""
#define TFC_F32J_BTI_C ""
#define TFC_F32J_STEP_EXTRA 0
#endif
#define TFC_F32J_STEP1_BYTES (20 + TFC_F32J_STEP_EXTRA)
#define TFC_F32J_STEP2_BYTES (36 + TFC_F32J_STEP_EXTRA)
#define TFC_F32J_MAX_STEPS 16

/* Calls run a range of consecutive full groups (the entries and steps of one group follow the
 * previous group's; each group's sentinel moves x to the next group's first window).
 * R = 1: x0 = entries, x1 = step data, x2 = x at the first group's first window, x3 = out (8
 * floats per group), x4 = bias (8 per group: the accumulators start there), x5 = TfcF32JArgs. */
#define TFC_F32J_S1(A, B)                                                                          \
  TFC_F32J_BTI_J                                                                                   \
  "ld1 {v24.16b-v27.16b}, [x1], #64\n\t"                                                           \
  "tbl v28.16b, {v16.16b-v19.16b}, v24.16b\n\t"                                                    \
  "tbl v29.16b, {v16.16b-v19.16b}, v26.16b\n\t"                                                    \
  "fmla " A ".4s, v28.4s, v25.4s\n\t"                                                              \
  "fmla " B ".4s, v29.4s, v27.4s\n\t"
#define TFC_F32J_S1x2 TFC_F32J_S1("v0", "v1") TFC_F32J_S1("v2", "v3")
/* R = 2: x0 entries, x1 step data, x2 / x3 = the two rows of x, x4 = out of row 0 (row 1 at
 * + out_row_bytes), x5 = bias, x6 = TfcF32JArgs */
#define TFC_F32J_S2(A, B, C, D)                                                                    \
  TFC_F32J_BTI_J                                                                                   \
  "ld1 {v24.16b-v27.16b}, [x1], #64\n\t"                                                           \
  "tbl v28.16b, {v16.16b-v19.16b}, v24.16b\n\t"                                                    \
  "tbl v29.16b, {v16.16b-v19.16b}, v26.16b\n\t"                                                    \
  "tbl v30.16b, {v20.16b-v23.16b}, v24.16b\n\t"                                                    \
  "tbl v31.16b, {v20.16b-v23.16b}, v26.16b\n\t"                                                    \
  "fmla " A ".4s, v28.4s, v25.4s\n\t"                                                              \
  "fmla " B ".4s, v29.4s, v27.4s\n\t"                                                              \
  "fmla " C ".4s, v30.4s, v25.4s\n\t"                                                              \
  "fmla " D ".4s, v31.4s, v27.4s\n\t"
#define TFC_F32J_S2x2 TFC_F32J_S2("v0", "v1", "v2", "v3") TFC_F32J_S2("v4", "v5", "v6", "v7")
#define TFC_F32J_X8(S) S S S S S S S S /* 8 pairs = 16 steps */

typedef struct {
  float lo, hi; /* the activation's clamp */
  int64_t groups; /* >= 1 */
  int64_t bias_stride; /* 32 (a bias vector) or 0 (no bias: 8 zeros) */
  int64_t out_row_bytes; /* 2 rows: row 1's outputs at out + this */
} TfcF32JArgs;

/* Only caller-saved registers (v0-v7, v16-v31, x0-x12): no frame, no spills. */
__asm__(
    ".text\n\t"
    ".balign 16\n\t"
    ".globl tfc_arm_f32j_r1\n\t.hidden tfc_arm_f32j_r1\n\t.type tfc_arm_f32j_r1, %function\n"
    "tfc_arm_f32j_r1:\n\t"
    TFC_F32J_BTI_C
    "ldp s30, s31, [x5]\n\t"
    "dup v30.4s, v30.s[0]\n\t"
    "dup v31.4s, v31.s[0]\n\t"
    "ldp x6, x7, [x5, #8]\n\t"
    "ldp q0, q1, [x4]\n\t"
    "add x4, x4, x7\n\t"
    "movi v2.16b, #0\n\tmovi v3.16b, #0\n\t"
    "b tfc_arm_f32j_r1_head\n\t"
    TFC_F32J_X8(TFC_F32J_S1x2)
    ".globl tfc_arm_f32j_r1_head\n\t.hidden tfc_arm_f32j_r1_head\n"
    "tfc_arm_f32j_r1_head:\n\t"
    "ldp x8, x9, [x0], #16\n\t"
    "ld1 {v16.16b-v19.16b}, [x2], x8\n\t"
    "br x9\n\t"
    ".globl tfc_arm_f32j_r1_exit\n\t.hidden tfc_arm_f32j_r1_exit\n"
    "tfc_arm_f32j_r1_exit:\n\t"
    TFC_F32J_BTI_J
    "fadd v0.4s, v0.4s, v2.4s\n\t"
    "fadd v1.4s, v1.4s, v3.4s\n\t"
    "fmax v0.4s, v0.4s, v30.4s\n\t"
    "fmax v1.4s, v1.4s, v30.4s\n\t"
    "fmin v0.4s, v0.4s, v31.4s\n\t"
    "fmin v1.4s, v1.4s, v31.4s\n\t"
    "stp q0, q1, [x3], #32\n\t"
    "subs x6, x6, #1\n\t"
    "b.eq 1f\n\t"
    "ldp q0, q1, [x4]\n\t"
    "add x4, x4, x7\n\t"
    "movi v2.16b, #0\n\tmovi v3.16b, #0\n\t"
    "b tfc_arm_f32j_r1_head\n"
    "1:\n\t"
    "ret\n\t"
    ".size tfc_arm_f32j_r1, .-tfc_arm_f32j_r1\n\t"
    ".balign 16\n\t"
    ".globl tfc_arm_f32j_r2\n\t.hidden tfc_arm_f32j_r2\n\t.type tfc_arm_f32j_r2, %function\n"
    "tfc_arm_f32j_r2:\n\t"
    TFC_F32J_BTI_C
    "add x10, x6, #4\n\t"
    "ldp x7, x11, [x6, #8]\n\t"
    "ldr x12, [x6, #24]\n\t"
    "ldp q0, q1, [x5]\n\t"
    "ldp q2, q3, [x5]\n\t"
    "add x5, x5, x11\n\t"
    "movi v4.16b, #0\n\tmovi v5.16b, #0\n\tmovi v6.16b, #0\n\tmovi v7.16b, #0\n\t"
    "b tfc_arm_f32j_r2_head\n\t"
    TFC_F32J_X8(TFC_F32J_S2x2)
    ".globl tfc_arm_f32j_r2_head\n\t.hidden tfc_arm_f32j_r2_head\n"
    "tfc_arm_f32j_r2_head:\n\t"
    "ldp x8, x9, [x0], #16\n\t"
    "ld1 {v16.16b-v19.16b}, [x2], x8\n\t"
    "ld1 {v20.16b-v23.16b}, [x3], x8\n\t"
    "br x9\n\t"
    ".globl tfc_arm_f32j_r2_exit\n\t.hidden tfc_arm_f32j_r2_exit\n"
    "tfc_arm_f32j_r2_exit:\n\t"
    TFC_F32J_BTI_J
    "ld1r {v24.4s}, [x6]\n\t"
    "ld1r {v25.4s}, [x10]\n\t"
    "fadd v0.4s, v0.4s, v4.4s\n\t"
    "fadd v1.4s, v1.4s, v5.4s\n\t"
    "fadd v2.4s, v2.4s, v6.4s\n\t"
    "fadd v3.4s, v3.4s, v7.4s\n\t"
    "fmax v0.4s, v0.4s, v24.4s\n\t"
    "fmax v1.4s, v1.4s, v24.4s\n\t"
    "fmax v2.4s, v2.4s, v24.4s\n\t"
    "fmax v3.4s, v3.4s, v24.4s\n\t"
    "fmin v0.4s, v0.4s, v25.4s\n\t"
    "fmin v1.4s, v1.4s, v25.4s\n\t"
    "fmin v2.4s, v2.4s, v25.4s\n\t"
    "fmin v3.4s, v3.4s, v25.4s\n\t"
    "add x9, x4, x12\n\t"
    "stp q2, q3, [x9]\n\t"
    "stp q0, q1, [x4], #32\n\t"
    "subs x7, x7, #1\n\t"
    "b.eq 1f\n\t"
    "ldp q0, q1, [x5]\n\t"
    "ldp q2, q3, [x5]\n\t"
    "add x5, x5, x11\n\t"
    "movi v4.16b, #0\n\tmovi v5.16b, #0\n\tmovi v6.16b, #0\n\tmovi v7.16b, #0\n\t"
    "b tfc_arm_f32j_r2_head\n"
    "1:\n\t"
    "ret\n\t"
    ".size tfc_arm_f32j_r2, .-tfc_arm_f32j_r2\n\t");

#define TFC_HIDDEN __attribute__((visibility("hidden")))
TFC_HIDDEN void tfc_arm_f32j_r1(const uint64_t* ent, const uint8_t* d, const float* x, float* out, const float* bias,
                                const TfcF32JArgs* args);
TFC_HIDDEN void tfc_arm_f32j_r2(const uint64_t* ent, const uint8_t* d, const float* x0, const float* x1, float* out,
                                const float* bias, const TfcF32JArgs* args);
extern TFC_HIDDEN const char tfc_arm_f32j_r1_head[], tfc_arm_f32j_r1_exit[];
extern TFC_HIDDEN const char tfc_arm_f32j_r2_head[], tfc_arm_f32j_r2_exit[];

typedef struct TfcArmF32J {
  const uint8_t* blob; /* packed weights it was built from */
  int groups; /* ceil(N / 8) */
  int kp; /* floats per x row as the kernel reads it: K rounded up to 16 (zero-padded copy) */
  uint32_t* eptr; /* [groups + 1] first entry of each group (its windows, then its sentinel) */
  uint32_t* xstart; /* [groups] float offset of the group's first window */
  uint64_t* dptr; /* [groups + 1] first step of each group */
  uint64_t* ent[2]; /* entries for 1 and 2 rows: {x byte delta to the next window, code address} */
  uint64_t steps; /* steps of all groups (64 bytes each) */
  uint64_t slots_used; /* stored weights (for the utilization figure) */
  uint8_t* data; /* 16-byte aligned steps, group after group */
  uint8_t* data_raw;
} TfcArmF32J;

static void tfc_arm_free_f32j(void* f32j) {
  TfcArmF32J* j = (TfcArmF32J*)f32j;
  if (j == NULL) return;
  free(j->eptr);
  free(j->xstart);
  free(j->dptr);
  free(j->ent[0]);
  free(j->ent[1]);
  free(j->data_raw);
  free(j);
}

/* DP cost model of one window (instructions, 1 row): head 3, step 5. */
#define TFC_F32J_WIN_COST 3u
#define TFC_F32J_STEP_COST 5u

/* Builds s->arm_tbl->f32j (8-channel groups, windows by DP), entries for 1 and 2 rows, so the
 * plan runs on any row count (the fused op calls it on strips of other sizes); 0 when out of
 * memory. */
static int tfc_arm_build_f32j(TfcState* s) {
  TfcArmTbl* a = tfc_arm_state(s);
  if (a == NULL) return 0;
  tfc_arm_free_f32j(a->f32j);
  a->f32j = NULL;
  TfcArmF32J* j = (TfcArmF32J*)calloc(1, sizeof(TfcArmF32J));
  uint32_t* ptr = NULL;
  TfcArmEntry* e = NULL;
  /* per group: union of the lanes' columns (sorted), lane masks, DP arrays, chosen windows */
  uint32_t *col = NULL, *best = NULL, *from = NULL, *wlo_all = NULL, *whi_all = NULL, *gwin = NULL;
  uint64_t spread[256]; /* byte l = bit l of the index: a lane mask as 8 byte increments */
  uint8_t *mask = NULL, *kmap = NULL;
  int ok = 0;
  if (j == NULL) return 0;
  const int n = s->n_out, K = s->k_in;
  j->groups = (n + 7) / 8;
  j->kp = (K + 15) / 16 * 16;
  if (!tfc_arm_entries(s, &ptr, &e)) goto done;
  uint32_t maxu = 0; /* largest union of columns of a group (<= 8 * max per channel, <= K) */
  for (int g = 0; g < j->groups; ++g) {
    uint64_t u = 0;
    for (int l = 0; l < 8 && 8 * g + l < n; ++l) u += ptr[8 * g + l + 1] - ptr[8 * g + l];
    if (u > (uint64_t)K) u = (uint64_t)K;
    if (u > maxu) maxu = (uint32_t)u;
  }
  const size_t mu = (size_t)maxu + 1u;
  col = (uint32_t*)malloc(mu * sizeof(uint32_t));
  mask = (uint8_t*)malloc(mu);
  kmap = (uint8_t*)calloc((size_t)K + 1u, 1); /* lanes per column; all zero between groups */
  best = (uint32_t*)malloc(mu * sizeof(uint32_t));
  from = (uint32_t*)malloc(mu * sizeof(uint32_t));
  /* windows of all groups (at most one per stored weight) */
  wlo_all = (uint32_t*)malloc(((size_t)ptr[n] + 1u) * sizeof(uint32_t));
  whi_all = (uint32_t*)malloc(((size_t)ptr[n] + 1u) * sizeof(uint32_t));
  gwin = (uint32_t*)malloc(((size_t)j->groups + 1u) * sizeof(uint32_t));
  for (int m = 0; m < 256; ++m) {
    spread[m] = 0;
    for (int l = 0; l < 8; ++l) spread[m] |= (uint64_t)(m >> l & 1) << (8 * l);
  }
  j->eptr = (uint32_t*)malloc(((size_t)j->groups + 1u) * sizeof(uint32_t));
  j->xstart = (uint32_t*)malloc(((size_t)j->groups + 1u) * sizeof(uint32_t));
  j->dptr = (uint64_t*)malloc(((size_t)j->groups + 1u) * sizeof(uint64_t));
  if (!col || !mask || !kmap || !best || !from || !wlo_all || !whi_all || !gwin || !j->eptr || !j->xstart || !j->dptr) goto done;
  /* pass 0 sizes everything, pass 1 writes the steps and the entries */
  for (int pass = 0; pass < 2; ++pass) {
    uint64_t steps = 0, nent = 0;
    uint32_t nwin = 0;
    for (int g = 0; g < j->groups; ++g) {
      uint32_t p[8], pe[8];
      for (int l = 0; l < 8; ++l) {
        const int r = 8 * g + l;
        p[l] = r < n ? ptr[r] : 0;
        pe[l] = r < n ? ptr[r + 1] : 0;
      }
      /* the group's distinct columns in order (col[0..nu)) and the lanes holding each (mask):
       * marked in a K-byte map, collected by one scan of the range they span */
      uint32_t nu = 0, lo = 0xFFFFFFFFu, hi = 0;
      for (int l = 0; l < 8; ++l)
        for (uint32_t t = p[l]; t < pe[l]; ++t) {
          const uint32_t k = e[t].k;
          kmap[k] |= (uint8_t)(1u << l);
          lo = k < lo ? k : lo;
          hi = k > hi ? k : hi;
        }
      for (uint32_t k = lo; k <= hi && lo <= hi; ++k)
        if (kmap[k]) {
          col[nu] = k;
          mask[nu++] = kmap[k];
          kmap[k] = 0;
        }
      /* DP (pass 0 only; pass 1 reuses its windows): best[i] = cheapest cover of the first
       * i columns; a window covers columns [f, i) with col[i - 1] - col[f] < 16 and costs
       * 3 + 5 * the largest lane count (8 byte counters in one NEON register: umaxv) */
      uint32_t nw = 0;
      if (pass == 0) {
        best[0] = 0;
        for (uint32_t i = 1; i <= nu; ++i) {
          uint8x8_t cnt = vdup_n_u8(0);
          uint32_t bc = 0xFFFFFFFFu, bf = i - 1;
          for (uint32_t f = i; f-- > 0;) {
            if (col[i - 1] - col[f] >= 16u) break;
            cnt = vadd_u8(cnt, vcreate_u8(spread[mask[f]]));
            const uint32_t c = best[f] + TFC_F32J_WIN_COST + TFC_F32J_STEP_COST * (uint32_t)vmaxv_u8(cnt);
            if (c < bc) {
              bc = c;
              bf = f;
            }
          }
          best[i] = bc;
          from[i] = bf;
        }
        for (uint32_t i = nu; i > 0; i = from[i]) nw++;
        uint32_t t = nw;
        for (uint32_t i = nu; i > 0; i = from[i]) { /* in increasing order */
          --t;
          wlo_all[nwin + t] = from[i];
          whi_all[nwin + t] = i;
        }
        gwin[g] = nwin;
        nwin += nw;
      } else {
        nw = gwin[g + 1] - gwin[g];
      }
      const uint32_t* wlo = wlo_all + gwin[g];
      const uint32_t* whi = whi_all + gwin[g];
      /* window w: table start, step count */
      uint32_t lanes_at[8];
      memcpy(lanes_at, p, sizeof(lanes_at));
      if (pass == 0) {
        j->eptr[g] = (uint32_t)nent;
        j->dptr[g] = steps;
        j->xstart[g] = nw ? (col[wlo[0]] < (uint32_t)j->kp - 16u ? col[wlo[0]] : (uint32_t)j->kp - 16u) : 0u;
      }
      for (uint32_t w = 0; w < nw; ++w) {
        uint32_t cnt[8] = {0, 0, 0, 0, 0, 0, 0, 0}, mx = 0;
        for (uint32_t f = wlo[w]; f < whi[w]; ++f)
          for (uint32_t m = mask[f]; m != 0; m &= m - 1u) {
            const int l = __builtin_ctz(m);
            if (++cnt[l] > mx) mx = cnt[l];
          }
        /* mx <= 16: the columns span < 16 and a lane holds a feature once (Prepare refuses
         * repeats); checked anyway, since the jump target is computed from it */
        if (mx > TFC_F32J_MAX_STEPS) goto done;
        if (pass == 1) {
          const uint32_t t0 = col[wlo[w]] < (uint32_t)j->kp - 16u ? col[wlo[w]] : (uint32_t)j->kp - 16u;
          uint8_t* d = j->data + 64u * steps;
          for (uint32_t t = 0; t < mx; ++t)
            for (int q = 0; q < 2; ++q) {
              memset(d + 64u * t + 32u * (uint32_t)q, 0xFF, 16);
              memset(d + 64u * t + 32u * (uint32_t)q + 16u, 0, 16);
            }
          for (int l = 0; l < 8; ++l)
            for (uint32_t t = 0; t < cnt[l]; ++t) {
              const TfcArmEntry* en = e + lanes_at[l] + t;
              const uint32_t o = en->k - t0; /* < 16: the window's columns span < 16 */
              uint8_t* st = d + 64u * t + 32u * (uint32_t)(l / 4);
              for (int b = 0; b < 4; ++b) st[4 * (l % 4) + b] = (uint8_t)(4u * o + (uint32_t)b);
              memcpy(st + 16 + 4 * (l % 4), &en->v, 4);
            }
          for (int l = 0; l < 8; ++l) lanes_at[l] += cnt[l];
          /* entry: delta to the next window's table start, code address per row count */
          uint32_t t1 = t0;
          if (w + 1 < nw) t1 = col[wlo[w + 1]] < (uint32_t)j->kp - 16u ? col[wlo[w + 1]] : (uint32_t)j->kp - 16u;
          const uint64_t delta = 4u * (uint64_t)(t1 - t0);
          const size_t ei = 2u * (size_t)(nent + w);
          j->ent[0][ei] = j->ent[1][ei] = delta;
          j->ent[0][ei + 1] = (uint64_t)(uintptr_t)tfc_arm_f32j_r1_head - (uint64_t)TFC_F32J_STEP1_BYTES * mx;
          j->ent[1][ei + 1] = (uint64_t)(uintptr_t)tfc_arm_f32j_r2_head - (uint64_t)TFC_F32J_STEP2_BYTES * mx;
        }
        steps += mx;
      }
      if (pass == 1) { /* sentinel: reload the last table, move x to the next group's first window, exit */
        const size_t ei = 2u * (size_t)(nent + nw);
        const uint32_t tl = nw ? (col[wlo[nw - 1]] < (uint32_t)j->kp - 16u ? col[wlo[nw - 1]] : (uint32_t)j->kp - 16u)
                               : j->xstart[g];
        const uint64_t sdelta = g + 1 < j->groups ? (uint64_t)(4 * ((int64_t)j->xstart[g + 1] - (int64_t)tl)) : 0u;
        j->ent[0][ei] = j->ent[1][ei] = sdelta;
        j->ent[0][ei + 1] = (uint64_t)(uintptr_t)tfc_arm_f32j_r1_exit;
        j->ent[1][ei + 1] = (uint64_t)(uintptr_t)tfc_arm_f32j_r2_exit;
      }
      nent += nw + 1u;
    }
    if (pass == 0) {
      gwin[j->groups] = nwin;
      j->eptr[j->groups] = (uint32_t)nent;
      j->dptr[j->groups] = steps;
      j->steps = steps;
      j->slots_used = ptr[n];
      if (nent > 0x7FFFFFFFu || steps > ((uint64_t)SIZE_MAX - 16u) / 64u) goto done;
      j->data_raw = (uint8_t*)malloc((size_t)(64u * steps) + 16u);
      if (j->data_raw == NULL) goto done;
      j->data = (uint8_t*)(((uintptr_t)j->data_raw + 15u) & ~(uintptr_t)15u);
      for (int r = 0; r < 2; ++r) {
        j->ent[r] = (uint64_t*)malloc((size_t)nent * 2u * sizeof(uint64_t));
        if (j->ent[r] == NULL) goto done;
      }
    }
  }
  ok = 1;
done:
  free(ptr);
  free(e);
  free(col);
  free(mask);
  free(kmap);
  free(best);
  free(from);
  free(wlo_all);
  free(whi_all);
  free(gwin);
  if (!ok) {
    tfc_arm_free_f32j(j);
    return 0;
  }
  j->blob = s->blob_seen;
  a->f32j = j;
  return 1;
}

/* Units: slices of 16 output channels (groups 2u, 2u + 1), every row, 2 rows per pass.
 * Scratch: 2 zero-padded rows of kp floats (used only when K is not a multiple of 16). */
static void tfc_arm_rows_f32j(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  const TfcArmF32J* j = (const TfcArmF32J*)((const TfcArmTbl*)s->arm_tbl)->f32j;
  const int K = s->k_in, N = s->n_out;
  const int g0 = 2 * u0, g1 = 2 * u1 < j->groups ? 2 * u1 : j->groups;
  const float* bias = (const float*)io->bias;
  static const float kZeros8[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int p = 0; p < s->rows; p += 2) {
    const int R = s->rows - p < 2 ? s->rows - p : 2;
    const float* xr[2];
    for (int r = 0; r < R; ++r) {
      const float* src = (const float*)io->x + (size_t)(p + r) * (size_t)K;
      if (K == j->kp) {
        xr[r] = src;
      } else {
        float* dst = (float*)scratch + (size_t)r * (size_t)j->kp;
        memcpy(dst, src, (size_t)K * sizeof(float));
        memset(dst + K, 0, (size_t)(j->kp - K) * sizeof(float));
        xr[r] = dst;
      }
    }
    float* y0 = (float*)io->y + (size_t)p * (size_t)N;
    const int gf = g1 < N / 8 ? g1 : N / 8; /* groups [g0, gf) are full: bias and outputs in place */
    if (gf > g0) {
      const TfcF32JArgs args = {s->fmin, s->fmax, gf - g0, bias != NULL ? 32 : 0, (int64_t)N * 4};
      const uint8_t* d = j->data + 64u * (size_t)j->dptr[g0];
      const uint64_t* en = j->ent[R - 1] + 2u * (size_t)j->eptr[g0];
      const float* b8 = bias != NULL ? bias + 8 * g0 : kZeros8;
      if (R == 2) tfc_arm_f32j_r2(en, d, xr[0] + j->xstart[g0], xr[1] + j->xstart[g0], y0 + 8 * g0, b8, &args);
      else tfc_arm_f32j_r1(en, d, xr[0] + j->xstart[g0], y0 + 8 * g0, b8, &args);
    }
    for (int g = gf > g0 ? gf : g0; g < g1; ++g) { /* the last, partial group: through padded copies */
      const TfcF32JArgs args = {s->fmin, s->fmax, 1, 0, 32};
      const uint8_t* d = j->data + 64u * (size_t)j->dptr[g];
      const uint64_t* en = j->ent[R - 1] + 2u * (size_t)j->eptr[g];
      float b8[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, out[16];
      const int c0 = 8 * g, nb = N - c0;
      if (bias != NULL) memcpy(b8, bias + c0, (size_t)nb * sizeof(float));
      if (R == 2) tfc_arm_f32j_r2(en, d, xr[0] + j->xstart[g], xr[1] + j->xstart[g], out, b8, &args);
      else tfc_arm_f32j_r1(en, d, xr[0] + j->xstart[g], out, b8, &args);
      for (int r = 0; r < R; ++r) memcpy(y0 + (size_t)r * N + c0, out + 8 * r, (size_t)nb * sizeof(float));
    }
  }
}

/* ------------------------------- float32, 1x4 blocks, 1-15 rows: TFCS as is
 * Every stored 1x4 block is one vector load of its 4 consecutive inputs (ldr q with the block
 * column as a register offset, `uxtw #4`) and one fmla into its lane's accumulator: one slice
 * step (16 lanes) = 4 ld1 (64 weights) + 16 index loads + 16 ldr q + 16 fmla, v0-v15 hold the
 * 16 accumulators for the whole slice; reduced by pairwise adds after it.  Inline asm for the
 * same reason as the tbl loops: both compilers computed the 16 addresses with separate add /
 * lsl and spilled accumulators (92-118 instructions per step instead of 54).  Units: slices. */
/* 4 blocks of one slice step into accumulators vA..vA+3: one ld1 of their 16 weights, their 4
 * block columns (LDI: ldrh / ldr, SZ: 2 / 4 bytes per index), 4 ldr q of x, 4 fmla. */
#define TFC_ARM_B4_QUARTER(LDI, SZ, A0, A1, A2, A3) \
  "ld1 {v16.4s-v19.4s}, [%[w]], #64\n\t"            \
  LDI " w9, [%[c]], #" SZ "\n\t"                    \
  LDI " w10, [%[c]], #" SZ "\n\t"                   \
  LDI " w11, [%[c]], #" SZ "\n\t"                   \
  LDI " w12, [%[c]], #" SZ "\n\t"                   \
  "ldr q20, [%[x], w9, uxtw #4]\n\t"                \
  "ldr q21, [%[x], w10, uxtw #4]\n\t"               \
  "ldr q22, [%[x], w11, uxtw #4]\n\t"               \
  "ldr q23, [%[x], w12, uxtw #4]\n\t"               \
  "fmla v" A0 ".4s, v16.4s, v20.4s\n\t"             \
  "fmla v" A1 ".4s, v17.4s, v21.4s\n\t"             \
  "fmla v" A2 ".4s, v18.4s, v22.4s\n\t"             \
  "fmla v" A3 ".4s, v19.4s, v23.4s\n\t"

/* The step loop of one slice (n steps of 16 blocks) with u16 (LDI ldrh, SZ 2) or u32 block
 * columns; the 16 lane accumulators v0-v15 are stored to out[64]. */
#define TFC_ARM_ASM_BLOCK4(NAME, LDI, SZ)                                                                   \
  static inline __attribute__((always_inline)) void NAME(const void* c, const float* w, const float* x,    \
                                                         uint32_t n, float* out) {                         \
    __asm__ volatile(                                                                                      \
        "movi v0.16b, #0\n\t"                                                                              \
        "movi v1.16b, #0\n\t"                                                                              \
        "movi v2.16b, #0\n\t"                                                                              \
        "movi v3.16b, #0\n\t"                                                                              \
        "movi v4.16b, #0\n\t"                                                                              \
        "movi v5.16b, #0\n\t"                                                                              \
        "movi v6.16b, #0\n\t"                                                                              \
        "movi v7.16b, #0\n\t"                                                                              \
        "movi v8.16b, #0\n\t"                                                                              \
        "movi v9.16b, #0\n\t"                                                                              \
        "movi v10.16b, #0\n\t"                                                                             \
        "movi v11.16b, #0\n\t"                                                                             \
        "movi v12.16b, #0\n\t"                                                                             \
        "movi v13.16b, #0\n\t"                                                                             \
        "movi v14.16b, #0\n\t"                                                                             \
        "movi v15.16b, #0\n\t"                                                                             \
        "cbz %w[n], 2f\n\t"                                                                                \
        "1:\n\t"                                                                                           \
        TFC_ARM_B4_QUARTER(LDI, SZ, "0", "1", "2", "3")                                                    \
        TFC_ARM_B4_QUARTER(LDI, SZ, "4", "5", "6", "7")                                                    \
        TFC_ARM_B4_QUARTER(LDI, SZ, "8", "9", "10", "11")                                                  \
        TFC_ARM_B4_QUARTER(LDI, SZ, "12", "13", "14", "15")                                                \
        "subs %w[n], %w[n], #1\n\t"                                                                        \
        "b.ne 1b\n\t"                                                                                      \
        "2:\n\t"                                                                                           \
        "st1 {v0.4s-v3.4s}, [%[out]], #64\n\t"                                                             \
        "st1 {v4.4s-v7.4s}, [%[out]], #64\n\t"                                                             \
        "st1 {v8.4s-v11.4s}, [%[out]], #64\n\t"                                                            \
        "st1 {v12.4s-v15.4s}, [%[out]], #64\n\t"                                                           \
        : [n] "+r"(n), [c] "+r"(c), [w] "+r"(w), [out] "+r"(out)                                           \
        : [x] "r"(x)                                                                                       \
        : TFC_ARM_VREGS, "x9", "x10", "x11", "x12", "cc", "memory");                                       \
  }
TFC_ARM_ASM_BLOCK4(tfc_arm_asm_block4_u16, "ldrh", "2")
TFC_ARM_ASM_BLOCK4(tfc_arm_asm_block4_u32, "ldr", "4")


#define TFC_DEFINE_ARM_BLOCK4(NAME, STEP)                                                           \
  static void NAME(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {             \
    (void)scratch;                                                                                  \
    const int ib = s->index_bytes;                                                                  \
    const float* bias = (const float*)io->bias;                                                     \
    const float32x4_t lo = vdupq_n_f32(s->fmin), hi = vdupq_n_f32(s->fmax);                        \
    for (int p = 0; p < s->rows; ++p) {                                                             \
      const float* x = (const float*)io->x + (size_t)p * s->k_in;                                   \
      float* y = (float*)io->y + (size_t)p * s->n_out;                                              \
      for (int sl = u0; sl < u1; ++sl) {                                                            \
        float acc[64];                                                                              \
        const uint32_t i0 = s->slice_ptr[sl];                                                       \
        STEP((const uint8_t*)s->col + (size_t)ib * i0, (const float*)s->values + 4u * i0, x,       \
             (s->slice_ptr[sl + 1] - i0) / 16u, acc);                                               \
        const uint32_t* pr = s->perm + sl * 16;                                                     \
        for (int q = 0; q < 16; q += 4) {                                                           \
          const float* a = acc + 4 * q;                                                             \
          const float32x4_t sum = vpaddq_f32(vpaddq_f32(vld1q_f32(a), vld1q_f32(a + 4)),            \
                                             vpaddq_f32(vld1q_f32(a + 8), vld1q_f32(a + 12)));      \
          float out[4], b[4];                                                                       \
          for (int l = 0; l < 4; ++l) b[l] = (bias != NULL && pr[q + l] != 0xFFFFFFFFu) ? bias[pr[q + l]] : 0.f; \
          vst1q_f32(out, vminq_f32(vmaxq_f32(vaddq_f32(sum, vld1q_f32(b)), lo), hi));               \
          for (int l = 0; l < 4; ++l)                                                               \
            if (pr[q + l] != 0xFFFFFFFFu) y[pr[q + l]] = out[l];                                    \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
  }
TFC_DEFINE_ARM_BLOCK4(tfc_arm_block4_f32_u16, tfc_arm_asm_block4_u16)
TFC_DEFINE_ARM_BLOCK4(tfc_arm_block4_f32_u32, tfc_arm_asm_block4_u32)

/* --------------------------------------- float32, many rows: CSR x tile */

/* 4x4 transpose: r[i] lane j -> r[j] lane i (4 trn of 32-bit lanes, 4 of 64-bit halves; the
 * vcombine / vget_low form made GCC 12 emit 10 extra lane moves). */
static inline __attribute__((always_inline)) void tfc_arm_tr4(float32x4_t* r) {
  const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
  const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
  r[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
  r[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
  r[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
  r[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

/* Accumulator groups of 4 registers: M(first, ..., fourth) for v0-v3, v4-v7, ... */
#define TFC_ARM_QG_4(M) M(0, 1, 2, 3)
#define TFC_ARM_QG_8(M) TFC_ARM_QG_4(M) M(4, 5, 6, 7)
#define TFC_ARM_QG_12(M) TFC_ARM_QG_8(M) M(8, 9, 10, 11)
#define TFC_ARM_QG_16(M) TFC_ARM_QG_12(M) M(12, 13, 14, 15)

/* One output channel, one feature chunk, V = 4, 8, 12 or 16 accumulators (4 rows each) in
 * v0..v(V-1), one asm block: start them at the bias b (first chunk) or load them from acc (the
 * channel's row of ytile: the previous chunks' sums); per stored weight one `ldr` of its tile offset, one `ld1r` of the weight into
 * every lane, V / 4 `ld1` of 4 registers (16 rows of its tile row) and V `fmla` (3 + 5V/4 + 2
 * instructions per weight: 25 for a 64-row tile); then, when `clamp` is set (last chunk), the
 * activation's fmax / fmin; stored back to acc.  Inline asm for the same reason as the tbl loops
 * (GCC 12 hoists the tile loads of the intrinsics version and runs out of registers). */
#define TFC_ARM_F4(R0, R1, R2, R3, X, M, A0, A1, A2, A3)                                       \
  "ld1 {v" #R0 ".4s-v" #R3 ".4s}, [" X "], #64\n\t" "fmla v" #A0 ".4s, v" #R0 ".4s, " M "\n\t"  \
  "fmla v" #A1 ".4s, v" #R1 ".4s, " M "\n\t" "fmla v" #A2 ".4s, v" #R2 ".4s, " M "\n\t"          \
  "fmla v" #A3 ".4s, v" #R3 ".4s, " M "\n\t"
/* V accumulators += tile rows at X (16 rows per 4 registers, alternating v16-v19 / v20-v23) * M */
#define TFC_ARM_FBODY_4(X, M) TFC_ARM_F4(16, 17, 18, 19, X, M, 0, 1, 2, 3)
#define TFC_ARM_FBODY_8(X, M) TFC_ARM_FBODY_4(X, M) TFC_ARM_F4(20, 21, 22, 23, X, M, 4, 5, 6, 7)
#define TFC_ARM_FBODY_12(X, M) TFC_ARM_FBODY_8(X, M) TFC_ARM_F4(16, 17, 18, 19, X, M, 8, 9, 10, 11)
#define TFC_ARM_FBODY_16(X, M) TFC_ARM_FBODY_12(X, M) TFC_ARM_F4(20, 21, 22, 23, X, M, 12, 13, 14, 15)
#define TFC_ARM_FLD4(A0, A1, A2, A3) "ld1 {v" #A0 ".4s-v" #A3 ".4s}, [x10], #64\n\t"
#define TFC_ARM_FINIT4(A0, A1, A2, A3)                                                            \
  "mov v" #A0 ".16b, %[b].16b\n\t" "mov v" #A1 ".16b, %[b].16b\n\t" "mov v" #A2 ".16b, %[b].16b\n\t" \
  "mov v" #A3 ".16b, %[b].16b\n\t"
#define TFC_ARM_FST4(A0, A1, A2, A3) "st1 {v" #A0 ".4s-v" #A3 ".4s}, [%[acc]], #64\n\t"
#define TFC_ARM_FCL4(A0, A1, A2, A3)                                                               \
  "fmax v" #A0 ".4s, v" #A0 ".4s, %[lo].4s\n\t" "fmax v" #A1 ".4s, v" #A1 ".4s, %[lo].4s\n\t"     \
  "fmax v" #A2 ".4s, v" #A2 ".4s, %[lo].4s\n\t" "fmax v" #A3 ".4s, v" #A3 ".4s, %[lo].4s\n\t"     \
  "fmin v" #A0 ".4s, v" #A0 ".4s, %[hi].4s\n\t" "fmin v" #A1 ".4s, v" #A1 ".4s, %[hi].4s\n\t"     \
  "fmin v" #A2 ".4s, v" #A2 ".4s, %[hi].4s\n\t" "fmin v" #A3 ".4s, v" #A3 ".4s, %[hi].4s\n\t"
#define TFC_ARM_ASM_CSR(V)                                                                                  \
  static inline __attribute__((always_inline)) void tfc_arm_csr_channel_##V(                                \
      const uint32_t* off, const float* w, uint32_t n, const float* xt, float* acc, int clamp, float32x4_t lo, \
      float32x4_t hi, int first, float32x4_t b) {                                                           \
    __asm__ volatile(                                                                                       \
        "cbz %w[first], 4f\n\t"                                                                              \
        TFC_ARM_QG_##V(TFC_ARM_FINIT4)                                                                      \
        "b 5f\n\t"                                                                                          \
        "4:\n\t"                                                                                            \
        "mov x10, %[acc]\n\t"                                                                               \
        TFC_ARM_QG_##V(TFC_ARM_FLD4)                                                                        \
        "5:\n\t"                                                                                            \
        "lsr w11, %w[n], #1\n\t"                                                                            \
        "cbz w11, 6f\n\t"                                                                                   \
        "1:\n\t"                                                                                            \
        "ldp w9, w10, [%[off]], #8\n\t"                                                                     \
        "ld1 {v24.2s}, [%[w]], #8\n\t"                                                                      \
        "add x9, %[xt], x9\n\t"                                                                             \
        "add x10, %[xt], x10\n\t"                                                                           \
        TFC_ARM_FBODY_##V("x9", "v24.s[0]")                                                                 \
        TFC_ARM_FBODY_##V("x10", "v24.s[1]")                                                                \
        "subs w11, w11, #1\n\t"                                                                             \
        "b.ne 1b\n\t"                                                                                       \
        "6:\n\t"                                                                                            \
        "tbz %w[n], #0, 2f\n\t"                                                                             \
        "ldr w9, [%[off]]\n\t"                                                                              \
        "ldr s24, [%[w]]\n\t"                                                                               \
        "add x9, %[xt], x9\n\t"                                                                             \
        TFC_ARM_FBODY_##V("x9", "v24.s[0]")                                                                 \
        "2:\n\t"                                                                                            \
        "cbz %w[clamp], 3f\n\t"                                                                             \
        TFC_ARM_QG_##V(TFC_ARM_FCL4)                                                                        \
        "3:\n\t"                                                                                            \
        TFC_ARM_QG_##V(TFC_ARM_FST4)                                                                        \
        : [off] "+r"(off), [w] "+r"(w), [n] "+r"(n), [acc] "+r"(acc)                                        \
        : [xt] "r"(xt), [clamp] "r"(clamp), [lo] "w"(lo), [hi] "w"(hi), [first] "r"(first), [b] "w"(b)      \
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14",       \
          "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "x9", "x10", "x11", "cc",       \
          "memory");                                                                                        \
  }
TFC_ARM_ASM_CSR(4)
TFC_ARM_ASM_CSR(8)
TFC_ARM_ASM_CSR(12)
TFC_ARM_ASM_CSR(16)

/* ytile[n][T] (outputs of channel n for the tile's rows) -> y[i][n] (NHWC), rows [0, t): 4 x 4
 * transposes, channel remainders lane by lane. */
static void tfc_arm_f32_untile(const float* ytile, int T, int N, int t, float* y) {
  int c0 = 0;
  for (; c0 + 4 <= N; c0 += 4) {
    const float* yt = ytile + (size_t)c0 * T;
    int i = 0;
    for (; i + 16 <= t; i += 16) { /* 4 channels x 16 rows: 4 ld1 of 4 registers, 4 transposes */
      float32x4x4_t v[4];
      for (int l = 0; l < 4; ++l) v[l] = vld1q_f32_x4(yt + (size_t)l * T + i);
      float* dst = y + (size_t)i * N + c0;
      for (int q = 0; q < 4; ++q) {
        float32x4_t r[4] = {v[0].val[q], v[1].val[q], v[2].val[q], v[3].val[q]};
        tfc_arm_tr4(r);
        for (int j = 0; j < 4; ++j) vst1q_f32(dst + (size_t)(4 * q + j) * N, r[j]);
      }
    }
    for (; i + 4 <= t; i += 4) {
      float32x4_t r[4] = {vld1q_f32(yt + i), vld1q_f32(yt + T + i), vld1q_f32(yt + 2 * T + i),
                          vld1q_f32(yt + 3 * T + i)};
      tfc_arm_tr4(r);
      float* dst = y + (size_t)i * N + c0;
      vst1q_f32(dst, r[0]);
      vst1q_f32(dst + N, r[1]);
      vst1q_f32(dst + 2 * N, r[2]);
      vst1q_f32(dst + 3 * N, r[3]);
    }
    for (; i < t; ++i)
      for (int l = 0; l < 4; ++l) y[(size_t)i * N + c0 + l] = yt[(size_t)l * T + i];
  }
  for (; c0 < N; ++c0)
    for (int i = 0; i < t; ++i) y[(size_t)i * N + c0] = ytile[(size_t)c0 * T + i];
}

/* x rows [p0, p0 + t) -> xt[k][T] (row i of the tile at xt[k * T + i]), rows [t, rows16) zero. */
static void tfc_arm_f32_tile(const float* x, int K, int T, int t, int rows16, float* xt) {
  int c0 = 0;
  for (; c0 + 16 <= K; c0 += 16) { /* 4 rows x 16 features: 4 ld1 of 4 registers, 4 transposes */
    int i = 0;
    for (; i + 4 <= t; i += 4) {
      float32x4x4_t v[4];
      for (int l = 0; l < 4; ++l) v[l] = vld1q_f32_x4(x + (size_t)(i + l) * K + c0);
      float* dst = xt + (size_t)c0 * T + i;
      for (int q = 0; q < 4; ++q) {
        float32x4_t r[4] = {v[0].val[q], v[1].val[q], v[2].val[q], v[3].val[q]};
        tfc_arm_tr4(r);
        for (int j = 0; j < 4; ++j) vst1q_f32(dst + (size_t)(4 * q + j) * T, r[j]);
      }
    }
    for (; i < rows16; ++i)
      for (int l = 0; l < 16; ++l) xt[(size_t)(c0 + l) * T + i] = i < t ? x[(size_t)i * K + c0 + l] : 0.f;
  }
  for (; c0 + 4 <= K; c0 += 4) {
    int i = 0;
    for (; i + 4 <= t; i += 4) {
      const float* src = x + (size_t)i * K + c0;
      float32x4_t r[4] = {vld1q_f32(src), vld1q_f32(src + K), vld1q_f32(src + 2 * K), vld1q_f32(src + 3 * K)};
      tfc_arm_tr4(r);
      float* dst = xt + (size_t)c0 * T + i;
      vst1q_f32(dst, r[0]);
      vst1q_f32(dst + T, r[1]);
      vst1q_f32(dst + 2 * T, r[2]);
      vst1q_f32(dst + 3 * T, r[3]);
    }
    for (; i < rows16; ++i)
      for (int l = 0; l < 4; ++l) xt[(size_t)(c0 + l) * T + i] = i < t ? x[(size_t)i * K + c0 + l] : 0.f;
  }
  for (; c0 < K; ++c0)
    for (int i = 0; i < rows16; ++i) xt[(size_t)c0 * T + i] = i < t ? x[(size_t)i * K + c0] : 0.f;
}

/* Units: 64-row tiles.  Scratch: xt[K][T], then ytile[N][T].  Per tile: transpose x into xt;
 * per feature chunk (the chunk's tile rows stay in L1) and channel
 * the asm loop above (clamped at the last chunk); ytile -> y. */
static void tfc_arm_rows_f32_csr(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  const TfcArmTbl* a = (const TfcArmTbl*)s->arm_tbl;
  const int K = s->k_in, N = s->n_out, T = TFC_CSR_TILE, rows = s->rows, C = a->csr_chunks;
  const float* x = (const float*)io->x;
  const float* bias = (const float*)io->bias;
  float* y = (float*)io->y;
  float* xt = (float*)scratch;
  float* ytile = (float*)((uint8_t*)scratch + tfc_round64((size_t)T * (size_t)K * sizeof(float)));
  const float32x4_t lo = vdupq_n_f32(s->fmin), hi = vdupq_n_f32(s->fmax);
  const int act = s->fmin > -INFINITY || s->fmax < INFINITY; /* no clamp without an activation */
  for (int p0 = u0 * T; p0 < rows && p0 < u1 * T; p0 += T) {
    const int t = rows - p0 < T ? rows - p0 : T;
    const int rows16 = (t + 15) / 16 * 16, V = rows16 / 4;
    tfc_arm_f32_tile(x + (size_t)p0 * K, K, T, t, rows16, xt);
    for (int c = 0; c < C; ++c) {
      const int last = c + 1 == C && act;
      const uint32_t* cp = a->csr_ptr + (size_t)c * N;
      for (int n = 0; n < N; ++n) {
        const uint32_t j0 = cp[n], ne = cp[n + 1] - j0;
        const uint32_t* off = a->csr_off + j0;
        const float* w = a->csr_val + j0;
        float* acc = ytile + (size_t)n * T;
        const float32x4_t b = vdupq_n_f32(bias ? bias[n] : 0.f);
        switch (V) {
          case 4: tfc_arm_csr_channel_4(off, w, ne, xt, acc, last, lo, hi, c == 0, b); break;
          case 8: tfc_arm_csr_channel_8(off, w, ne, xt, acc, last, lo, hi, c == 0, b); break;
          case 12: tfc_arm_csr_channel_12(off, w, ne, xt, acc, last, lo, hi, c == 0, b); break;
          default: tfc_arm_csr_channel_16(off, w, ne, xt, acc, last, lo, hi, c == 0, b); break;
        }
      }
    }
    tfc_arm_f32_untile(ytile, T, N, t, y + (size_t)p0 * N);
  }
}

/* ------------------------------ int8, >= 16 rows, sdot: quads x row tiles
 * The int8 many-row kernel of Elsen et al. 2020 with `sdot`: the quad re-layout of
 * tfc_relayout.c (tfc_build_i8_quads, shared with the VNNI kernel: per output channel, one
 * entry per 4-input quad it uses, {quad * T * 4, 4 weights}); a tile of T = 64 rows is
 * transposed as dwords to xt[K/4][T][4] (4 consecutive inputs of a row = one sdot operand),
 * and every entry adds sdot(16 contiguous bytes of xt, the entry's 4 weights in every lane)
 * to 16 accumulators (4 rows each).  1x4-block weights give one entry per stored block. */
#if defined(__clang__)
#define TFC_DOTPROD_FN __attribute__((target("dotprod")))
#else
#define TFC_DOTPROD_FN __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

/* Every output channel of a tile in one asm block, V = 4, 8, 12 or 16 accumulators (4 rows each)
 * in v0..v(V-1) (they never leave the registers).  Per channel: the start value bias - zp_in *
 * sum w (`msub`, bias stepped by bs = 4, or 0 without a bias) written 4 times to i4 and loaded
 * into the accumulators by one `ld4r` per 4 of them; its entry count from qp (entries are stored
 * channel after channel, so the entry pointers just run on); per entry one `ldr` of its tile
 * offset, one `ld1r` of its 4 weights into every lane, V / 4 `ld1` of 4 registers (64 bytes = 16
 * rows x 4 inputs) of the tile and V `sdot` (3 + 5V/4 + 2 instructions per entry: 25 for a 64-row
 * tile); then the multiplier by `ld1r` and the requantization of tfc_arm_requant16 (float
 * multiply, round to nearest even, saturating narrows, + zero point, clamp), 16 int8 outputs per
 * 4 accumulators stored contiguously (4V bytes), and the output pointer stepped to the next
 * channel's row (ostep = T - 4V).  In an expand layer (a few entries per channel) the per-channel
 * work is most of the work, hence the loop over channels in the asm (the C loop around a
 * per-channel block cost ~30 instructions per channel and tile) and the `_nc` variants without
 * the clamp for an activation range that is the whole int8 range (ReLU / ReLU6 outputs with zero
 * point -128, linear outputs), where the saturating narrow already clamps.  sdot is emitted with
 * .inst (see the tbl loops). */
#define TFC_ARM_SDOT(D, N, M) \
  ".inst 0x4e809400|(" #M "<<16)|(" #N "<<5)|" #D " /* sdot v" #D ".4s, v" #N ".16b, v" #M ".16b */\n\t"
/* 4 accumulators += sdot(tile registers vR0..vR3 loaded from X, weights in every lane of vW) */
#define TFC_ARM_Q4(R0, R1, R2, R3, X, W, A0, A1, A2, A3)                                     \
  "ld1 {v" #R0 ".16b-v" #R3 ".16b}, [" X "], #64\n\t" TFC_ARM_SDOT(A0, R0, W) TFC_ARM_SDOT(A1, R1, W) \
      TFC_ARM_SDOT(A2, R2, W) TFC_ARM_SDOT(A3, R3, W)
#define TFC_ARM_QBODY_4(X, W) TFC_ARM_Q4(16, 17, 18, 19, X, W, 0, 1, 2, 3)
#define TFC_ARM_QBODY_8(X, W) TFC_ARM_QBODY_4(X, W) TFC_ARM_Q4(20, 21, 22, 23, X, W, 4, 5, 6, 7)
#define TFC_ARM_QBODY_12(X, W) TFC_ARM_QBODY_8(X, W) TFC_ARM_Q4(16, 17, 18, 19, X, W, 8, 9, 10, 11)
#define TFC_ARM_QBODY_16(X, W) TFC_ARM_QBODY_12(X, W) TFC_ARM_Q4(20, 21, 22, 23, X, W, 12, 13, 14, 15)
#define TFC_ARM_INIT4(A0, A1, A2, A3) "ld4r {v" #A0 ".4s-v" #A3 ".4s}, [%[i4]]\n\t"
/* requantize accumulators A0..A3 (16 rows) into v18: float multiply by M, round to nearest even,
 * saturating narrows, + zero point ZP (int16, saturating) */
#define TFC_ARM_RQ4NARROW(M, ZP, A0, A1, A2, A3)                                                   \
  "scvtf v" #A0 ".4s, v" #A0 ".4s\n\t" "scvtf v" #A1 ".4s, v" #A1 ".4s\n\t"                              \
  "scvtf v" #A2 ".4s, v" #A2 ".4s\n\t" "scvtf v" #A3 ".4s, v" #A3 ".4s\n\t"                              \
  "fmul v" #A0 ".4s, v" #A0 ".4s, " M ".4s\n\t" "fmul v" #A1 ".4s, v" #A1 ".4s, " M ".4s\n\t"              \
  "fmul v" #A2 ".4s, v" #A2 ".4s, " M ".4s\n\t" "fmul v" #A3 ".4s, v" #A3 ".4s, " M ".4s\n\t"              \
  "fcvtns v" #A0 ".4s, v" #A0 ".4s\n\t" "fcvtns v" #A1 ".4s, v" #A1 ".4s\n\t"                            \
  "fcvtns v" #A2 ".4s, v" #A2 ".4s\n\t" "fcvtns v" #A3 ".4s, v" #A3 ".4s\n\t"                            \
  "sqxtn v16.4h, v" #A0 ".4s\n\t" "sqxtn2 v16.8h, v" #A1 ".4s\n\t"                                       \
  "sqxtn v17.4h, v" #A2 ".4s\n\t" "sqxtn2 v17.8h, v" #A3 ".4s\n\t"                                       \
  "sqadd v16.8h, v16.8h, " ZP ".8h\n\t" "sqadd v17.8h, v17.8h, " ZP ".8h\n\t"                              \
  "sqxtn v18.8b, v16.8h\n\t" "sqxtn2 v18.16b, v17.8h\n\t"
/* ... then clamp to [LO, HI] and store 16 int8 at out */
#define TFC_ARM_RQ4G(M, ZP, LO, HI, A0, A1, A2, A3)                                                \
  TFC_ARM_RQ4NARROW(M, ZP, A0, A1, A2, A3)                                                         \
  "smax v18.16b, v18.16b, " LO ".16b\n\t" "smin v18.16b, v18.16b, " HI ".16b\n\t"                          \
  "st1 {v18.16b}, [%[out]], #16\n\t"
#define TFC_ARM_RQ4(A0, A1, A2, A3) TFC_ARM_RQ4G("v26", "%[zp]", "%[lo]", "%[hi]", A0, A1, A2, A3)
/* without the clamp (the activation's range is the whole int8 range) */
#define TFC_ARM_RQ4N(A0, A1, A2, A3) \
  TFC_ARM_RQ4NARROW("v26", "%[zp]", A0, A1, A2, A3) "st1 {v18.16b}, [%[out]], #16\n\t"
/* the head of a two-entry step: both tile offsets, both entries' weights in every lane (v24, v25) */
#define TFC_ARM_ENTRY_PAIR                                                                              \
  "ldp w9, w10, [%[off]], #8\n\t" "ld1r {v24.4s}, [%[w]], #4\n\t" "ld1r {v25.4s}, [%[w]], #4\n\t"       \
  "add x9, %[xt], x9\n\t" "add x10, %[xt], x10\n\t"
#define TFC_ARM_ASM_QUADS(V, NAME, RQ)                                                                        \
  static inline __attribute__((always_inline)) void NAME(                                                     \
      const uint32_t* qp, const uint32_t* off, const int32_t* w, const int8_t* xt, const int32_t* b, size_t bs,\
      const int32_t* rs, uint32_t zin, const float* m, int16x8_t zp, int8x16_t lo, int8x16_t hi, int8_t* out, \
      size_t ostep, uint32_t nch, int32_t* i4) {                                                              \
    __asm__ volatile(                                                                                         \
        "ldr w15, [%[qp]]\n\t"                                                                                \
        "2:\n\t"                                                                                              \
        "ldr w12, [%[b]]\n\t"                                                                                 \
        "add %[b], %[b], %[bs]\n\t"                                                                           \
        "ldr w13, [%[rs]], #4\n\t"                                                                            \
        "msub w12, w13, %w[zin], w12\n\t"                                                                     \
        "dup v26.4s, w12\n\t"                                                                                 \
        "str q26, [%[i4]]\n\t"                                                                                \
        TFC_ARM_QG_##V(TFC_ARM_INIT4)                                                                         \
        "ldr w14, [%[qp], #4]!\n\t"                                                                           \
        "sub w13, w14, w15\n\t"                                                                               \
        "mov w15, w14\n\t"                                                                                    \
        "lsr w11, w13, #1\n\t"                                                                                \
        "cbz w11, 6f\n\t"                                                                                     \
        "1:\n\t"                                                                                              \
        TFC_ARM_ENTRY_PAIR                                                                                    \
        TFC_ARM_QBODY_##V("x9", 24)                                                                           \
        TFC_ARM_QBODY_##V("x10", 25)                                                                          \
        "subs w11, w11, #1\n\t"                                                                               \
        "b.ne 1b\n\t"                                                                                         \
        "6:\n\t"                                                                                              \
        "tbz w13, #0, 3f\n\t"                                                                                 \
        "ldr w9, [%[off]], #4\n\t"                                                                            \
        "ld1r {v24.4s}, [%[w]], #4\n\t"                                                                       \
        "add x9, %[xt], x9\n\t"                                                                               \
        TFC_ARM_QBODY_##V("x9", 24)                                                                           \
        "3:\n\t"                                                                                              \
        "ld1r {v26.4s}, [%[m]], #4\n\t"                                                                       \
        TFC_ARM_QG_##V(RQ)                                                                                    \
        "add %[out], %[out], %[ostep]\n\t"                                                                    \
        "subs %w[nch], %w[nch], #1\n\t"                                                                       \
        "b.ne 2b\n\t"                                                                                         \
        : [qp] "+r"(qp), [off] "+r"(off), [w] "+r"(w), [b] "+r"(b), [rs] "+r"(rs), [m] "+r"(m), [out] "+r"(out),\
          [nch] "+r"(nch)                                                                                     \
        : [xt] "r"(xt), [bs] "r"(bs), [zin] "r"(zin), [zp] "w"(zp), [lo] "w"(lo), [hi] "w"(hi), [ostep] "r"(ostep),\
          [i4] "r"(i4)                                                                                        \
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14",      \
          "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "x9", "x10", "x11",\
          "x12", "x13", "x14", "x15", "cc", "memory");                                                        \
  }
TFC_ARM_ASM_QUADS(4, tfc_arm_quads_4, TFC_ARM_RQ4)
TFC_ARM_ASM_QUADS(4, tfc_arm_quads_4_nc, TFC_ARM_RQ4N)
TFC_ARM_ASM_QUADS(8, tfc_arm_quads_8, TFC_ARM_RQ4)
TFC_ARM_ASM_QUADS(8, tfc_arm_quads_8_nc, TFC_ARM_RQ4N)
TFC_ARM_ASM_QUADS(12, tfc_arm_quads_12, TFC_ARM_RQ4)
TFC_ARM_ASM_QUADS(12, tfc_arm_quads_12_nc, TFC_ARM_RQ4N)
TFC_ARM_ASM_QUADS(16, tfc_arm_quads_16, TFC_ARM_RQ4)
TFC_ARM_ASM_QUADS(16, tfc_arm_quads_16_nc, TFC_ARM_RQ4N)

/* ARMv8.0 (no sdot): the same quads and tile, 32 rows per pass.  Per 16 rows (one ld1 of 4
 * registers, 4 rows x 4 inputs each): `smull` / `smull2` by the entry's 4 weights (in every lane)
 * give 8 int16 products per half register (|product| <= 2^14: no overflow), `sadalp` adds their
 * pairs into int32 accumulators: row quad q (rows 4q..4q+3) in v(2q) (rows 4q, 4q+1: two pair
 * sums each) and v(2q+1) (rows 4q+2, 4q+3); after the loop one `addp` per row quad gives the 4 row
 * sums, `init` is added and the rows are requantized as in the sdot kernel.  R = 16 or 32 rows:
 * 2R/4 accumulators (16 for 32 rows), 4R + 2 + ... instructions per entry (about 37 for 32 rows). */
#define TFC_ARM_MAL4(X, W, Q0, Q1, Q2, Q3)                                                                  \
  "ld1 {v16.16b-v19.16b}, [" X "], #64\n\t"                                                                \
  "smull v20.8h, v16.8b, v" #W ".8b\n\t" "smull2 v21.8h, v16.16b, v" #W ".16b\n\t"                         \
  "smull v22.8h, v17.8b, v" #W ".8b\n\t" "smull2 v23.8h, v17.16b, v" #W ".16b\n\t"                         \
  "sadalp v" #Q0 ".4s, v20.8h\n\t" "sadalp v" #Q1 ".4s, v21.8h\n\t"                                        \
  "sadalp v" #Q2 ".4s, v22.8h\n\t" "sadalp v" #Q3 ".4s, v23.8h\n\t"                                        \
  "smull v20.8h, v18.8b, v" #W ".8b\n\t" "smull2 v21.8h, v18.16b, v" #W ".16b\n\t"                         \
  "smull v22.8h, v19.8b, v" #W ".8b\n\t" "smull2 v23.8h, v19.16b, v" #W ".16b\n\t"
#define TFC_ARM_MAL4B(Q4, Q5, Q6, Q7) \
  "sadalp v" #Q4 ".4s, v20.8h\n\t" "sadalp v" #Q5 ".4s, v21.8h\n\t" "sadalp v" #Q6 ".4s, v22.8h\n\t" "sadalp v" #Q7 ".4s, v23.8h\n\t"
/* Two entries at once (X1 / W1, X2 / W2), 4 rows (tile register I of each) into vA / vB: the
 * second product is added in int16 (`smlal`): two products of weights in [-127, 127] and inputs
 * in [-128, 127] stay within +-32512, so this is used only when Prepare saw no weight -128. */
#define TFC_ARM_MAL2(I, J, T0, T1, A, B)                                                               \
  "smull v" #T0 ".8h, v" #I ".8b, v24.8b\n\t" "smull2 v" #T1 ".8h, v" #I ".16b, v24.16b\n\t"          \
  "smlal v" #T0 ".8h, v" #J ".8b, v25.8b\n\t" "smlal2 v" #T1 ".8h, v" #J ".16b, v25.16b\n\t"          \
  "sadalp v" #A ".4s, v" #T0 ".8h\n\t" "sadalp v" #B ".4s, v" #T1 ".8h\n\t"
#define TFC_ARM_MAL2X4(Q0, Q1, Q2, Q3, Q4, Q5, Q6, Q7)                                                \
  "ld1 {v16.16b-v19.16b}, [x9], #64\n\t" "ld1 {v26.16b-v29.16b}, [x10], #64\n\t"                    \
  TFC_ARM_MAL2(16, 26, 20, 21, Q0, Q1) TFC_ARM_MAL2(17, 27, 22, 23, Q2, Q3)                          \
  TFC_ARM_MAL2(18, 28, 20, 21, Q4, Q5) TFC_ARM_MAL2(19, 29, 22, 23, Q6, Q7)
#define TFC_ARM_M2BODY_16 TFC_ARM_MAL2X4(0, 1, 2, 3, 4, 5, 6, 7)
#define TFC_ARM_M2BODY_32 TFC_ARM_M2BODY_16 TFC_ARM_MAL2X4(8, 9, 10, 11, 12, 13, 14, 15)
#define TFC_ARM_MBODY_16(X, W) TFC_ARM_MAL4(X, W, 0, 1, 2, 3) TFC_ARM_MAL4B(4, 5, 6, 7)
#define TFC_ARM_MBODY_32(X, W) TFC_ARM_MBODY_16(X, W) TFC_ARM_MAL4(X, W, 8, 9, 10, 11) TFC_ARM_MAL4B(12, 13, 14, 15)
#define TFC_ARM_ZERO8(A0, A1, A2, A3, A4, A5, A6, A7)                                                       \
  "movi v" #A0 ".16b, #0\n\t" "movi v" #A1 ".16b, #0\n\t" "movi v" #A2 ".16b, #0\n\t" "movi v" #A3 ".16b, #0\n\t" \
  "movi v" #A4 ".16b, #0\n\t" "movi v" #A5 ".16b, #0\n\t" "movi v" #A6 ".16b, #0\n\t" "movi v" #A7 ".16b, #0\n\t"
#define TFC_ARM_FOLD4(A0, B0, A1, B1, A2, B2, A3, B3)                                                       \
  "addp v" #A0 ".4s, v" #A0 ".4s, v" #B0 ".4s\n\t" "addp v" #A1 ".4s, v" #A1 ".4s, v" #B1 ".4s\n\t"        \
  "addp v" #A2 ".4s, v" #A2 ".4s, v" #B2 ".4s\n\t" "addp v" #A3 ".4s, v" #A3 ".4s, v" #B3 ".4s\n\t"        \
  "add v" #A0 ".4s, v" #A0 ".4s, v24.4s\n\t" "add v" #A1 ".4s, v" #A1 ".4s, v24.4s\n\t"            \
  "add v" #A2 ".4s, v" #A2 ".4s, v24.4s\n\t" "add v" #A3 ".4s, v" #A3 ".4s, v24.4s\n\t"
#define TFC_ARM_MZERO_16 TFC_ARM_ZERO8(0, 1, 2, 3, 4, 5, 6, 7)
#define TFC_ARM_MZERO_32 TFC_ARM_MZERO_16 TFC_ARM_ZERO8(8, 9, 10, 11, 12, 13, 14, 15)
/* epilogue of the ARMv8.0 kernels: init, m, zp, lo, hi from memory (v24-v28; the loop used
 * up to 30 registers, so they are not asm register operands) */
#define TFC_ARM_RQ4P(A0, A1, A2, A3) TFC_ARM_RQ4G("v25", "v26", "v27", "v28", A0, A1, A2, A3)
#define TFC_ARM_MEPI_16 TFC_ARM_FOLD4(0, 1, 2, 3, 4, 5, 6, 7) TFC_ARM_RQ4P(0, 2, 4, 6)
#define TFC_ARM_MEPI_32 TFC_ARM_MEPI_16 TFC_ARM_FOLD4(8, 9, 10, 11, 12, 13, 14, 15) TFC_ARM_RQ4P(8, 10, 12, 14)
#define TFC_ARM_ASM_QUADS_NEON(R, NAME, PAIR)                                                               \
  static inline __attribute__((always_inline)) void NAME(                                                   \
      const uint32_t* off, const int32_t* w, uint32_t n, const int8_t* xt, const int32_t* prm, int8_t* out) { \
    __asm__ volatile(                                                                                       \
        TFC_ARM_MZERO_##R                                                                                   \
        "lsr w11, %w[n], #1\n\t"                                                                            \
        "cbz w11, 6f\n\t"                                                                                   \
        "1:\n\t"                                                                                            \
        TFC_ARM_ENTRY_PAIR                                                                                    \
        PAIR                                                                                                \
        "subs w11, w11, #1\n\t"                                                                             \
        "b.ne 1b\n\t"                                                                                       \
        "6:\n\t"                                                                                            \
        "tbz %w[n], #0, 2f\n\t"                                                                             \
        "ldr w9, [%[off]]\n\t"                                                                              \
        "ld1r {v24.4s}, [%[w]]\n\t"                                                                         \
        "add x9, %[xt], x9\n\t"                                                                             \
        TFC_ARM_MBODY_##R("x9", 24)                                                                         \
        "2:\n\t"                                                                                            \
        "ld1 {v24.4s-v27.4s}, [%[prm]]\n\t"                                                                 \
        "ldr q28, [%[prm], #64]\n\t"                                                                        \
        TFC_ARM_MEPI_##R                                                                                    \
        : [off] "+r"(off), [w] "+r"(w), [n] "+r"(n), [out] "+r"(out)                                        \
        : [xt] "r"(xt), [prm] "r"(prm)                                                                      \
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14",       \
          "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28",     \
          "v29", "x9", "x10", "x11", "cc", "memory");                                                       \
  }
TFC_ARM_ASM_QUADS_NEON(16, tfc_arm_quads_neon_16, TFC_ARM_MBODY_16("x9", 24) TFC_ARM_MBODY_16("x10", 25))
TFC_ARM_ASM_QUADS_NEON(32, tfc_arm_quads_neon_32, TFC_ARM_MBODY_32("x9", 24) TFC_ARM_MBODY_32("x10", 25))
TFC_ARM_ASM_QUADS_NEON(16, tfc_arm_quads_neon2_16, TFC_ARM_M2BODY_16)
TFC_ARM_ASM_QUADS_NEON(32, tfc_arm_quads_neon2_32, TFC_ARM_M2BODY_32)

/* 16 x 16 byte transpose: r[i] byte j -> r[j] byte i. */
static inline __attribute__((always_inline)) void tfc_arm_tr16_u8(uint8x16_t* r) {
  uint8x16_t t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = vtrn1q_u8(r[i], r[i + 1]);
    t[i + 1] = vtrn2q_u8(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4)
    for (int j = 0; j < 2; ++j) {
      r[i + j] = vreinterpretq_u8_u16(vtrn1q_u16(vreinterpretq_u16_u8(t[i + j]), vreinterpretq_u16_u8(t[i + j + 2])));
      r[i + j + 2] =
          vreinterpretq_u8_u16(vtrn2q_u16(vreinterpretq_u16_u8(t[i + j]), vreinterpretq_u16_u8(t[i + j + 2])));
    }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = vreinterpretq_u8_u32(vtrn1q_u32(vreinterpretq_u32_u8(r[i + j]), vreinterpretq_u32_u8(r[i + j + 4])));
      t[i + j + 4] =
          vreinterpretq_u8_u32(vtrn2q_u32(vreinterpretq_u32_u8(r[i + j]), vreinterpretq_u32_u8(r[i + j + 4])));
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = vreinterpretq_u8_u64(vtrn1q_u64(vreinterpretq_u64_u8(t[j]), vreinterpretq_u64_u8(t[j + 8])));
    r[j + 8] = vreinterpretq_u8_u64(vtrn2q_u64(vreinterpretq_u64_u8(t[j]), vreinterpretq_u64_u8(t[j + 8])));
  }
}

/* one 16-byte store at *o, then *o += step (post-indexed: one instruction) */
static inline __attribute__((always_inline)) void tfc_arm_st1_step(uint8_t** o, uint8x16_t v, size_t step) {
  __asm__ volatile("st1 {%1.16b}, [%0], %2" : "+r"(*o) : "w"(v), "r"(step) : "memory");
}

/* ytile[n][T] (int8 outputs of channel n for the tile's rows) -> y[i][n] (NHWC), rows [0, t):
 * 16 x 16 byte transposes.  The last rows (t % 16) are transposed as a whole block too (the
 * kernels wrote ytile up to the next multiple of 16 rows <= T, from zeroed tile rows) and only
 * the real rows stored; the last channels (N % 16) load zeros for the missing channels and store
 * N % 16 bytes per row.  (Byte-by-byte copies of those remainders cost ~20 % of the untile in
 * the fused op, whose strips of 56 rows leave 8.)
 * T a constant (the 64-row tile): the 16 loads of a block are offsets from one register, and
 * the 16 stores step one pointer (st1 post-indexed by N). */
static inline __attribute__((always_inline)) void tfc_arm_i8_untile_t(const int8_t* ytile, const int T, int N, int t,
                                                                       int8_t* y) {
  int c0 = 0;
  for (; c0 + 16 <= N; c0 += 16) {
    const uint8_t* src = (const uint8_t*)ytile + (size_t)c0 * T;
    for (int r0 = 0; r0 < t; r0 += 16) {
      uint8x16_t r[16];
      for (int i = 0; i < 16; ++i) r[i] = vld1q_u8(src + (size_t)i * T + r0);
      tfc_arm_tr16_u8(r);
      uint8_t* o = (uint8_t*)y + (size_t)r0 * N + c0;
      const int nr = t - r0 < 16 ? t - r0 : 16;
      if (nr == 16) {
        for (int k = 0; k < 16; ++k) tfc_arm_st1_step(&o, r[k], (size_t)N);
      } else {
        for (int k = 0; k < nr; ++k) tfc_arm_st1_step(&o, r[k], (size_t)N);
      }
    }
  }
  if (c0 < N) { /* last N % 16 channels: zeros for the missing ones */
    const int nc = N - c0;
    for (int r0 = 0; r0 < t; r0 += 16) {
      uint8x16_t r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < nc ? vld1q_u8((const uint8_t*)ytile + (size_t)(c0 + i) * T + r0) : vdupq_n_u8(0);
      tfc_arm_tr16_u8(r);
      uint8_t* o = (uint8_t*)y + (size_t)r0 * N + c0;
      const int nr = t - r0 < 16 ? t - r0 : 16;
      for (int j = 0; j < nr; ++j) {
        if (nc == 8) {
          vst1_u8(o + (size_t)j * N, vget_low_u8(r[j]));
        } else {
          uint8_t tmp[16];
          vst1q_u8(tmp, r[j]);
          memcpy(o + (size_t)j * N, tmp, (size_t)nc);
        }
      }
    }
  }
}

static void tfc_arm_i8_untile(const int8_t* ytile, int T, int N, int t, int8_t* y) {
  if (T == TFC_I8_TILE)
    tfc_arm_i8_untile_t(ytile, TFC_I8_TILE, N, t, y);
  else
    tfc_arm_i8_untile_t(ytile, T, N, t, y);
}

/* Units: 64-row tiles.  Scratch: xt[K4][T] dwords, then ytile[N][T] int8.  Per tile: transpose
 * x to xt (4 x 4 dword transposes), per channel its entries (asm loop, accumulators start at
 * bias - zp_in * sum w), requantize 4V values into ytile, then ytile -> y (byte transposes). */
static inline __attribute__((always_inline)) void tfc_arm_rows_i8_quads(const TfcState* s, const TfcIO* io, int u0,
                                                                         int u1, void* scratch, const int dot,
                                                                         const int pair16) {
  const int K = s->k_in, N = s->n_out, T = s->i8q_tile, rows = s->rows, K4 = (K + 3) / 4;
  const int8_t* x = (const int8_t*)io->x;
  const int32_t* bias = (const int32_t*)io->bias;
  int8_t* y = (int8_t*)io->y;
  uint32_t* xt = (uint32_t*)scratch; /* [K4][T] dwords */
  int8_t* ytile = (int8_t*)scratch + tfc_round64((size_t)K4 * (size_t)T * 4u);
  const int16x8_t zp = vdupq_n_s16((int16_t)s->zp_out);
  const int8x16_t lo = vdupq_n_s8((int8_t)s->qmin), hi = vdupq_n_s8((int8_t)s->qmax);
  int32_t prm[20] __attribute__((aligned(16))); /* ARMv8.0 epilogue: init, m, zp, lo, hi */
  int32_t init4[4] __attribute__((aligned(16))); /* sdot: the channel's start value, 4 times */
  /* the state's arrays in locals: the asm blocks' memory clobber would reload them per channel */
  const uint32_t* qptr = s->i8q_ptr;
  const uint32_t* qoff = s->i8q_off;
  const int32_t* qw = s->i8q_w;
  const int32_t* rsum = s->row_sums;
  const float* mult = s->multipliers;
  const uint32_t zin = (uint32_t)s->zp_in;
  const int clamp = s->qmin > -128 || s->qmax < 127;
  vst1q_s16((int16_t*)(prm + 8), zp);
  vst1q_s8((int8_t*)(prm + 12), lo);
  vst1q_s8((int8_t*)(prm + 16), hi);
  for (int p0 = u0 * T; p0 < rows && p0 < u1 * T; p0 += T) {
    const int t = rows - p0 < T ? rows - p0 : T;
    const int rows16 = (t + 15) / 16 * 16;
    for (int q0 = 0; q0 < K4; q0 += 4) { /* 4 x 4 dword transposes */
      const int qn = K4 - q0 < 4 ? K4 - q0 : 4;
      const int nb = K - 4 * q0 < 16 ? K - 4 * q0 : 16;
      int i = 0;
      if (nb == 16) { /* whole row quads: 4 loads, the 4 x 4 transpose, 4 stores, pointers stepped */
        const int8_t* xr = x + (size_t)p0 * K + 4 * q0;
        uint32_t* d = xt + (size_t)q0 * T;
        for (; i + 4 <= t; i += 4, xr += 4 * (size_t)K, d += 4) {
          float32x4_t r[4];
          for (int j = 0; j < 4; ++j) r[j] = vreinterpretq_f32_s8(vld1q_s8(xr + (size_t)j * K));
          tfc_arm_tr4(r);
          for (int l = 0; l < 4; ++l) vst1q_u32(d + (size_t)l * T, vreinterpretq_u32_f32(r[l]));
        }
      }
      for (; i < rows16; i += 4) { /* the rest: partial quads, the last rows, zeros to rows16 */
        float32x4_t r[4];
        if (nb == 8 && i + 4 <= t) { /* K % 16 == 8 (e.g. 24 channels): 8-byte loads */
          for (int j = 0; j < 4; ++j)
            r[j] = vreinterpretq_f32_s8(vcombine_s8(vld1_s8(x + (size_t)(p0 + i + j) * K + 4 * q0), vdup_n_s8(0)));
        } else {
          for (int j = 0; j < 4; ++j) {
            uint32_t tmp[4] = {0, 0, 0, 0};
            if (i + j < t) memcpy(tmp, x + (size_t)(p0 + i + j) * K + 4 * q0, (size_t)nb);
            r[j] = vreinterpretq_f32_u32(vld1q_u32(tmp));
          }
        }
        tfc_arm_tr4(r);
        for (int l = 0; l < qn; ++l) vst1q_u32(xt + (size_t)(q0 + l) * T + i, vreinterpretq_u32_f32(r[l]));
      }
    }
    const int V = rows16 / 4;
    if (dot) { /* every channel in one asm block (the loop over channels included) */
      static const int32_t no_bias = 0;
      const int32_t* b = bias ? bias : &no_bias;
      const size_t bs = bias ? 4u : 0u, ostep = (size_t)T - 4u * (size_t)V;
      const int8_t* xtb = (const int8_t*)xt;
      const uint32_t* o = qoff + qptr[0];
      const int32_t* wq = qw + qptr[0];
#define TFC_ARM_QCALL(F) F(qptr, o, wq, xtb, b, bs, rsum, zin, mult, zp, lo, hi, ytile, ostep, (uint32_t)N, init4)
      if (clamp) {
        switch (V) {
          case 4: TFC_ARM_QCALL(tfc_arm_quads_4); break;
          case 8: TFC_ARM_QCALL(tfc_arm_quads_8); break;
          case 12: TFC_ARM_QCALL(tfc_arm_quads_12); break;
          default: TFC_ARM_QCALL(tfc_arm_quads_16); break;
        }
      } else {
        switch (V) {
          case 4: TFC_ARM_QCALL(tfc_arm_quads_4_nc); break;
          case 8: TFC_ARM_QCALL(tfc_arm_quads_8_nc); break;
          case 12: TFC_ARM_QCALL(tfc_arm_quads_12_nc); break;
          default: TFC_ARM_QCALL(tfc_arm_quads_16_nc); break;
        }
      }
#undef TFC_ARM_QCALL
    } else { /* ARMv8.0: 32 + 32, 32 + 16, 32 or 16 rows per channel */
      for (int n = 0; n < N; ++n) {
        const int32_t init = (int32_t)((uint32_t)(bias ? bias[n] : 0) - zin * (uint32_t)rsum[n]);
        const uint32_t j0 = qptr[n], ne = qptr[n + 1] - j0;
        const int8_t* xtb = (const int8_t*)xt;
        int8_t* out = ytile + (size_t)n * T;
        for (int h = 0; h < rows16; h += 32) {
          const uint32_t* o = s->i8q_off + j0;
          const int32_t* wq = s->i8q_w + j0;
          const int8_t* xh = xtb + 4 * h;
          vst1q_s32(prm, vdupq_n_s32(init));
          vst1q_f32((float*)prm + 4, vdupq_n_f32(mult[n]));
          if (pair16) {
            if (rows16 - h >= 32) tfc_arm_quads_neon2_32(o, wq, ne, xh, prm, out + h);
            else tfc_arm_quads_neon2_16(o, wq, ne, xh, prm, out + h);
          } else {
            if (rows16 - h >= 32) tfc_arm_quads_neon_32(o, wq, ne, xh, prm, out + h);
            else tfc_arm_quads_neon_16(o, wq, ne, xh, prm, out + h);
          }
        }
      }
    }
    tfc_arm_i8_untile(ytile, T, N, t, y + (size_t)p0 * N);
  }
}

TFC_DOTPROD_FN static void tfc_arm_rows_i8_quads_dot(const TfcState* s, const TfcIO* io, int u0, int u1,
                                                     void* scratch) {
  tfc_arm_rows_i8_quads(s, io, u0, u1, scratch, 1, 0);
}
/* ARMv8.0, two entries summed in int16 before widening (no weight -128 in the layer) */
static void tfc_arm_rows_i8_quads_neon2(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  tfc_arm_rows_i8_quads(s, io, u0, u1, scratch, 0, 1);
}
/* ARMv8.0, any int8 weights */
static void tfc_arm_rows_i8_quads_neon(const TfcState* s, const TfcIO* io, int u0, int u1, void* scratch) {
  tfc_arm_rows_i8_quads(s, io, u0, u1, scratch, 0, 0);
}

/* 1 when a stored int8 weight is -128 (validated blob; scanned in Prepare). */
static int tfc_arm_has_i8_min(const TfcState* s) {
  const int8_t* v = (const int8_t*)s->values;
  const size_t n = (size_t)s->nslots * (size_t)s->block;
  for (size_t i = 0; i < n; ++i)
    if (v[i] == -128) return 1;
  return 0;
}

/* ----------------------------------------------------------------- pick */

/* aarch64 plans (cap >= TFC_ISA_SIMD): float32 >= 16 rows -> CSR tiles; float32 1x4 blocks,
 * 1-15 rows -> the block kernel on the TFCS layout; other float32 1-15 rows and
 * int8 -> the tbl row kernels (int8 with sdot when cap >= TFC_ISA_DOT and the CPU has it). */
int tfc_pick_aarch64(TfcState* s, int cap, TfcPlan* plan) {
  if (cap < TFC_ISA_SIMD) return 0;
  const int f32 = s->value_type == kTfLiteFloat32;
  if (f32 && s->rows >= TFC_CSR_MIN_ROWS) {
    const int T = TFC_CSR_TILE, KC = s->k_in > 128 ? 96 : s->k_in;
    TfcArmTbl* a = (TfcArmTbl*)s->arm_tbl;
    if ((a == NULL || a->csr_blob != s->blob_seen || a->csr_kc != KC) && !tfc_arm_build_csr(s, T, KC))
      return 0; /* out of memory: the portable kernels */
    plan->run = tfc_arm_rows_f32_csr;
    plan->unit_kind = TFC_UNITS_ROWS;
    plan->unit_rows = T;
    plan->units = (s->rows + T - 1) / T;
    plan->scratch_bytes = tfc_round64((size_t)T * (size_t)s->k_in * sizeof(float)) +
                          (size_t)s->n_out * (size_t)T * sizeof(float);
    plan->needs = TFC_NEEDS_NONE;
    plan->name = "neon_csr_f32";
    return 1;
  }
  if (f32 && s->block == 4) {
    tfc_plan_rows(s, plan, s->index_bytes == 2 ? tfc_arm_block4_f32_u16 : tfc_arm_block4_f32_u32, "neon_block4_f32");
    return 1;
  }
  if (!f32 && s->rows >= TFC_CSR_MIN_ROWS) {
    const int dot = cap >= TFC_ISA_DOT && tfc_aarch64_has_dotprod();
    plan->run = dot ? tfc_arm_rows_i8_quads_dot
                    : (tfc_arm_has_i8_min(s) ? tfc_arm_rows_i8_quads_neon : tfc_arm_rows_i8_quads_neon2);
    plan->unit_kind = TFC_UNITS_ROWS;
    plan->unit_rows = TFC_I8_TILE;
    plan->units = (s->rows + TFC_I8_TILE - 1) / TFC_I8_TILE;
    plan->scratch_bytes = tfc_round64((size_t)((s->k_in + 3) / 4) * TFC_I8_TILE * 4u) +
                          (size_t)s->n_out * TFC_I8_TILE;
    plan->needs = TFC_NEEDS_I8_QUADS;
    plan->name = dot ? "sdot_quads_i8" : "neon_quads_i8";
    return 1;
  }
  TfcArmTbl* a = (TfcArmTbl*)s->arm_tbl;
  if (f32) {
    const TfcArmF32J* j = a ? (const TfcArmF32J*)a->f32j : NULL;
    if ((j == NULL || j->blob != s->blob_seen) && !tfc_arm_build_f32j(s))
      return 0; /* out of memory: the portable kernels */
    j = (const TfcArmF32J*)((TfcArmTbl*)s->arm_tbl)->f32j;
    plan->run = tfc_arm_rows_f32j;
    plan->unit_kind = TFC_UNITS_SLICES;
    plan->unit_rows = 0;
    plan->units = s->n_slices; /* unit u: output channels 16u .. 16u + 15 (groups 2u, 2u + 1) */
    plan->scratch_bytes = 2u * (size_t)j->kp * sizeof(float);
    plan->needs = TFC_NEEDS_NONE;
    plan->name = "neon_tbl_f32";
    return 1;
  }
  if ((a == NULL || a->blob == NULL || a->blob != s->blob_seen || a->value_type != s->value_type) &&
      !tfc_arm_build_tbl(s))
    return 0; /* out of memory: the portable kernels */
  a = (TfcArmTbl*)s->arm_tbl;
  plan->run = (cap >= TFC_ISA_DOT && tfc_aarch64_has_dotprod()) ? tfc_arm_rows_i8_dot : tfc_arm_rows_i8_neon;
  plan->unit_kind = TFC_UNITS_SLICES;
  plan->unit_rows = 0;
  plan->units = s->n_slices; /* unit u: output channels 16u .. 16u + 15 (groups 4u .. 4u + 3) */
  plan->scratch_bytes = 2u * (size_t)a->W * 64u;
  plan->needs = TFC_NEEDS_NONE;
  plan->name = plan->run == tfc_arm_rows_i8_dot ? "sdot_tbl_i8" : "neon_tbl_i8";
  return 1;
}
#endif /* TFC_HAVE_AARCH64 */
