/* libFuzzer target: malformed params, packed weights, biases and wiring thrown at the real
 * TFC_SPARSE_INVERTED_RESIDUAL Prepare and Invoke (tflite_export/tfc_fused.c).
 *
 * Build and run (see tflite_export/README.md, "Fused inverted residual"):
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Wno-psabi \
 *     -DTFC_X86_DISPATCH -I tflite_export tflite_export/fuzz/fuzz_fused_op.c tflite_export/tfc_*.c \
 *     -lm -pthread -o /tmp/fuzz_fused_op
 *   python tflite_export/fuzz/make_corpus.py --fused /tmp/corpus_fused && /tmp/fuzz_fused_op /tmp/corpus_fused
 *
 * Input layout: byte 0 flags (bit 0: 7 inputs (expand) else 5, bit 1 wrong-type depthwise bias,
 * bit 2 non-constant params, bit 3 bias lengths from the fuzz bytes instead of the header, bit 5
 * TFCOMPRESS_NO_AVX512=1 (the kernels for x86 without AVX-512), bits 6-7
 * the ISA cap 0 / 1 / 2 / none), byte 1 ranges (% 7 + 1: TFCOMPRESS_TEST_RANGES) and the split
 * (/ 7 % 3: TFCOMPRESS_FUSED_PHASED unset (automatic: phased for stride 1 below 4 rows per range),
 * 0, 1), / 21 % 2 strip stealing, / 42 % 3 the float32 1x1 kernel (TFCOMPRESS_F32_KERNEL by cost,
 * csr, g8), bytes 2-3
 * options (byte 2 = options length <= 9, byte 3 = its fill value: 1 then zeros when 0x00),
 * bytes 4-9: u16 lengths of the params, expand and project blobs, then the three blobs.
 * The input tensor takes H, W, Cin from the params header (sizes <= 80, channels <= 128; a stem
 * header, flag bit 2: Hi, Wi, Ci at offsets 76-84), so valid headers reach the kernels; every
 * buffer is an exact-size heap allocation (ASan sees any over-read).  Byte 1 / 21 % 2:
 * TFCOMPRESS_FUSED_STEAL=1 (the ranges steal strips from each other) or 0.
 * float32 blocks: when the params' flag bit 3 is set (byte 6 of the params blob), x, y and the
 * three biases are float32 tensors (4 bytes per value; bit 1 then makes the depthwise bias int32);
 * flags bit 4 swaps the tensor types (float32 tensors for an int8 block, int8 / int32 for a
 * float32 block: the type checks).  x and the biases hold fixed values (small floats for float32),
 * as for int8; the 1x1 blobs and the depthwise weights are fuzz bytes.
 */
#define _DEFAULT_SOURCE /* setenv, unsetenv under -std=c11 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_guard.h"
#include "tfc_sparse_ops.h"

static void report(TfLiteContext* ctx, const char* fmt, ...) {
  (void)ctx;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (getenv("TFC_FUZZ_VERBOSE") != NULL) fprintf(stderr, "%s\n", buf); /* seeds: why Prepare refused */
}

static TfLiteStatus resize(TfLiteContext* ctx, TfLiteTensor* t, TfLiteIntArray* dims) {
  (void)ctx;
  size_t n = t->type == kTfLiteFloat32 || t->type == kTfLiteInt32 ? 4 : 1; /* bytes per value */
  for (int i = 0; i < dims->size; ++i) n *= (size_t)dims->data[i];
  free(t->dims);
  t->dims = dims;
  free(t->data.data);
  t->bytes = n;
  t->data.data = guard_alloc(n);
  return t->data.data ? kTfLiteOk : kTfLiteError;
}

static TfLiteIntArray* make_dims(int n, const int* d) {
  TfLiteIntArray* a = (TfLiteIntArray*)malloc(sizeof(int) * (size_t)(n + 1));
  a->size = n;
  for (int i = 0; i < n; ++i) a->data[i] = d[i];
  return a;
}

static uint32_t u32le(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24); }
/* sizes from the header when 1..max (80 for heights / widths, 128 for channels: Ce = 96 seeds) */
static uint32_t small(uint32_t v, uint32_t dflt, uint32_t max) { return v >= 1 && v <= max ? v : dflt; }

static void blob_tensor(TfLiteTensor* t, const uint8_t* p, size_t n, int constant) {
  t->type = kTfLiteUInt8;
  int d[1] = {(int)n};
  t->dims = make_dims(1, d);
  t->bytes = n;
  t->data.data = malloc(n ? n : 1);
  memcpy(t->data.data, p, n);
  t->allocation_type = constant ? kTfLiteMmapRo : kTfLiteArenaRw;
}

static void bias_tensor(TfLiteTensor* t, int n, TfLiteType type) {
  t->type = type;
  int d[1] = {n};
  t->dims = make_dims(1, d);
  t->bytes = (size_t)n * 4u;
  t->data.data = malloc(t->bytes ? t->bytes : 1);
  if (type == kTfLiteFloat32) /* finite values in [-1, 1) */
    for (int i = 0; i < n; ++i) ((float*)t->data.data)[i] = (float)((int)((unsigned)i * 13u + 5u) % 256 - 128) / 128.f;
  else
    for (size_t i = 0; i < t->bytes; ++i) ((uint8_t*)t->data.data)[i] = (uint8_t)(i * 13u + 5u);
  t->allocation_type = kTfLiteMmapRo;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 10) return 0;
  const int flags = data[0], e7 = flags & 1;
  static const char* const caps[4] = {"0", "1", "2", "9"};
  setenv("TFCOMPRESS_ISA_CAP", caps[(flags >> 6) & 3], 1);
  setenv("TFCOMPRESS_NO_AVX512", (flags & 32) ? "1" : "0", 1); /* AVX2 / AVX-VNNI 1x1s and depthwise */
  static const char* const ranges[7] = {"1", "2", "3", "4", "5", "6", "7"};
  setenv("TFCOMPRESS_TEST_RANGES", ranges[data[1] % 7], 1);
  static const char* const phased[3] = {NULL, "0", "1"};
  if (phased[(data[1] / 7) % 3] == NULL) unsetenv("TFCOMPRESS_FUSED_PHASED");
  else setenv("TFCOMPRESS_FUSED_PHASED", phased[(data[1] / 7) % 3], 1);
  setenv("TFCOMPRESS_FUSED_STEAL", (data[1] / 21) % 2 ? "1" : "0", 1);
  static const char* const f32k[3] = {"", "csr", "g8"}; /* float32 1x1s: by cost, or forced */
  setenv("TFCOMPRESS_F32_KERNEL", f32k[(data[1] / 42) % 3], 1);
  uint8_t opts[9];
  const size_t optlen = data[2] % 10;
  memset(opts, 0, sizeof opts);
  if (data[3] == 0) opts[0] = 1;
  else memset(opts, data[3], sizeof opts);
  size_t lp = data[4] | (data[5] << 8), le = data[6] | (data[7] << 8), lj = data[8] | (data[9] << 8);
  const uint8_t* p = data + 10;
  size_t rest = size - 10;
  if (lp > rest) lp = rest;
  rest -= lp;
  if (le > rest) le = rest;
  rest -= le;
  lj = rest; /* the project blob takes the remaining bytes */
  const uint8_t* pp = p;
  const uint8_t* pe = p + lp;
  const uint8_t* pj = p + lp + le;
  uint32_t H = 4, W = 4, Cin = 8, Ce = 8, Co = 8;
  if (lp >= 28) {
    H = small(u32le(pp + 8), 4, 80);
    W = small(u32le(pp + 12), 4, 80);
    Cin = small(u32le(pp + 16), 8, 128);
    Ce = small(u32le(pp + 20), 8, 128);
    Co = small(u32le(pp + 24), 8, 128);
  }
  uint32_t xh = H, xw = W, xc = Cin; /* the input tensor: the stem's image, else the block input */
  if (lp >= 96 && (pp[6] & 4)) {
    xh = small(u32le(pp + 76), 4, 80);
    xw = small(u32le(pp + 80), 4, 80);
    xc = small(u32le(pp + 84), 3, 80);
  }
  if (flags & 8) {
    Ce = (uint32_t)data[1] % 70 + 1;
    Co = (uint32_t)data[2] % 70 + 1;
  }
  /* float32 tensors: the params' flag bit 3 (a float32 block), swapped by flags bit 4 */
  const int f32 = (lp >= 7 && (pp[6] & 8) != 0) != ((flags & 16) != 0);
  const TfLiteType bt = f32 ? kTfLiteFloat32 : kTfLiteInt32;

  /* tensors: 0 x, 1 expand w, 2 expand b, 3 params, 4 dw b, 5 project w, 6 project b, 7 y */
  TfLiteTensor t[8];
  memset(t, 0, sizeof t);
  int xd[4] = {1, (int)xh, (int)xw, (int)xc};
  const size_t nx = (size_t)xh * xw * xc;
  t[0].type = f32 ? kTfLiteFloat32 : kTfLiteInt8;
  t[0].dims = make_dims(4, xd);
  t[0].bytes = nx * (f32 ? 4u : 1u);
  t[0].data.data = malloc(t[0].bytes);
  if (f32) /* finite values in [-2, 2) */
    for (size_t i = 0; i < nx; ++i) ((float*)t[0].data.data)[i] = (float)((int)((i * 37u + 11u) % 256u) - 128) / 64.f;
  else
    for (size_t i = 0; i < nx; ++i) ((uint8_t*)t[0].data.data)[i] = (uint8_t)(i * 37u + 11u);
  t[0].params.scale = f32 ? 0.f : 0.05f;
  t[0].params.zero_point = f32 ? 0 : 3;
  t[0].allocation_type = kTfLiteArenaRw;
  blob_tensor(&t[1], pe, le, 1);
  bias_tensor(&t[2], (int)Ce, bt);
  blob_tensor(&t[3], pp, lp, !(flags & 4));
  bias_tensor(&t[4], (int)Ce, (flags & 2) ? (f32 ? kTfLiteInt32 : kTfLiteFloat32) : bt);
  blob_tensor(&t[5], pj, lj, 1);
  bias_tensor(&t[6], (int)Co, bt);
  t[7].type = f32 ? kTfLiteFloat32 : kTfLiteInt8;
  t[7].params.scale = f32 ? 0.f : 0.1f;
  t[7].params.zero_point = f32 ? 0 : -2;
  t[7].allocation_type = kTfLiteArenaRw;

  TfLiteContext ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.tensors = t;
  ctx.tensors_size = 8;
  ctx.ReportError = report;
  ctx.ResizeTensor = resize;
  ctx.recommended_num_threads = 1;

  int in7[8] = {7, 0, 1, 2, 3, 4, 5, 6};
  int in5[6] = {5, 0, 3, 4, 5, 6};
  int out_idx[2] = {1, 7};
  TfLiteNode node;
  memset(&node, 0, sizeof node);
  node.inputs = (TfLiteIntArray*)(e7 ? in7 : in5);
  node.outputs = (TfLiteIntArray*)out_idx;
  uint8_t* obuf = (uint8_t*)malloc(optlen ? optlen : 1);
  memcpy(obuf, opts, optlen);
  const TfLiteRegistration* reg = TfcRegisterSparseInvertedResidual();
  node.user_data = reg->init(&ctx, (const char*)obuf, optlen);
  if (reg->prepare(&ctx, &node) == kTfLiteOk) {
    if (getenv("TFC_FUZZ_VERBOSE") != NULL) fprintf(stderr, "prepared: %s\n", TfcFusedLastKernelNames());
    for (int k = 0; k < 2; ++k) {
      reg->invoke(&ctx, &node);
      guard_check(t[7].data.data, t[7].bytes);
    }
  }
  reg->free(&ctx, node.user_data);
  for (int i = 0; i < 8; ++i) {
    free(t[i].dims);
    free(t[i].data.data);
  }
  free(obuf);
  return 0;
}
