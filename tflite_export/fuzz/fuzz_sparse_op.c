/* libFuzzer target: malformed packed weights, options and shapes thrown at
 * the real TFC_SPARSE_FC / TFC_SPARSE_CONV_1X1 Prepare and Invoke.
 *
 * Build and run (see tflite_export/README.md):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I tflite_export \
 *     tflite_export/fuzz/fuzz_sparse_op.c tflite_export/tfc_op.c tflite_export/tfc_format.c \
 *     tflite_export/tfc_relayout.c tflite_export/tfc_kernels_portable.c tflite_export/tfc_kernels_x86.c \
 *     tflite_export/tfc_kernels_x86_avx2.c tflite_export/tfc_threads.c -lm -pthread -o /tmp/fuzz_sparse_op
 *   python tflite_export/fuzz/make_corpus.py /tmp/corpus && /tmp/fuzz_sparse_op /tmp/corpus
 *
 * Input layout: byte 0 flags (bit0 conv, bit1 int8, bit2 bias, bit3 shape
 * from the blob header, bit4 wrong-type bias, bit5 non-constant weights),
 * bits 6-7 the ISA cap (TFCOMPRESS_ISA_CAP 0..2, 3 = none: every dispatch level is reached),
 * byte 1 rows (% 40; / 40 + 1 = the number of ranges Invoke splits the work units into),
 * byte 2 K (when bit3 is clear), byte 3 options length (% 17; bit 0 of byte 3 / 17:
 * TFCOMPRESS_NO_AVX512=1, so caps 1 / 2 reach the AVX2 / AVX-VNNI int8 kernels; byte 3 / 34 % 3:
 * the float32 >= 16-row kernel, TFCOMPRESS_F32_KERNEL by cost, csr or g8),
 * then the options, then the packed-weights bytes.
 */
#define _DEFAULT_SOURCE /* setenv under -std=c11 */
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
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
}

static size_t type_size(TfLiteType t) { return t == kTfLiteFloat32 || t == kTfLiteInt32 ? 4 : 1; }

static TfLiteStatus resize(TfLiteContext* ctx, TfLiteTensor* t, TfLiteIntArray* dims) {
  (void)ctx;
  size_t n = 1;
  for (int i = 0; i < dims->size; ++i) n *= (size_t)dims->data[i];
  free(t->dims);
  t->dims = dims;
  free(t->data.data);
  t->bytes = n * type_size(t->type);
  t->data.data = guard_alloc(t->bytes);
  return t->data.data ? kTfLiteOk : kTfLiteError;
}

static TfLiteIntArray* make_dims(int n, const int* d) {
  TfLiteIntArray* a = (TfLiteIntArray*)malloc(sizeof(int) * (size_t)(n + 1));
  a->size = n;
  for (int i = 0; i < n; ++i) a->data[i] = d[i];
  return a;
}

static uint32_t u32le(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24); }

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const int flags = data[0], conv = flags & 1, int8 = (flags >> 1) & 1, has_bias = (flags >> 2) & 1;
  int rows = data[1] % 40, k = data[2];
  static const char* const caps[4] = {"0", "1", "2", "9"};
  setenv("TFCOMPRESS_ISA_CAP", caps[(flags >> 6) & 3], 1);
  static const char* const ranges[7] = {"1", "2", "3", "4", "5", "6", "7"};
  setenv("TFCOMPRESS_TEST_RANGES", ranges[data[1] / 40], 1);
  size_t optlen = data[3] % 17;
  setenv("TFCOMPRESS_NO_AVX512", ((data[3] / 17) & 1) ? "1" : "0", 1);
  static const char* const f32k[3] = {"", "csr", "g8"}; /* float32 >= 16 rows: by cost, or forced */
  setenv("TFCOMPRESS_F32_KERNEL", f32k[(data[3] / 34) % 3], 1);
  if (size < 4 + optlen) return 0;
  const uint8_t* opts = data + 4;
  const uint8_t* blob = data + 4 + optlen;
  size_t blob_len = size - 4 - optlen;
  int n = 8;
  if ((flags & 8) && blob_len >= 32) {
    uint32_t bn = u32le(blob + 8), bk = u32le(blob + 12);
    if (bn > 0 && bn < 4096 && bk > 0 && bk < 4096) {
      n = (int)bn;
      k = (int)bk;
    }
  }
  /* the weights buffer: an exact-size heap copy so ASan sees any over-read */
  uint8_t* wbuf = (uint8_t*)malloc(blob_len ? blob_len : 1);
  memcpy(wbuf, blob, blob_len);
  uint8_t* obuf = (uint8_t*)malloc(optlen ? optlen : 1);
  memcpy(obuf, opts, optlen);

  TfLiteTensor t[4];
  memset(t, 0, sizeof t);
  const TfLiteType at = int8 ? kTfLiteInt8 : kTfLiteFloat32;
  int xd[4] = {1, rows > 0 ? rows : 1, 1, k};
  if (!conv) {
    xd[0] = rows;
    xd[1] = k;
  }
  t[0].type = at;
  t[0].dims = conv ? make_dims(4, xd) : make_dims(2, xd);
  size_t xe = (size_t)(conv ? (rows > 0 ? rows : 1) : rows) * (size_t)k;
  t[0].bytes = xe * type_size(at);
  t[0].data.data = calloc(1, t[0].bytes ? t[0].bytes : 1);
  for (size_t i = 0; i < t[0].bytes; ++i) ((uint8_t*)t[0].data.data)[i] = (uint8_t)(i * 37u + 11u);
  if (!int8)
    for (size_t i = 0; i < xe; ++i) t[0].data.f[i] = (float)((int)(i % 13) - 6) * 0.25f;
  t[0].params.scale = 0.05f;
  t[0].params.zero_point = 3;
  t[0].allocation_type = kTfLiteArenaRw;
  t[1].type = kTfLiteUInt8;
  int wd[1] = {(int)blob_len};
  t[1].dims = make_dims(1, wd);
  t[1].bytes = blob_len;
  t[1].data.data = wbuf;
  t[1].allocation_type = (flags & 32) ? kTfLiteArenaRw : kTfLiteMmapRo;
  t[2].type = (flags & 16) ? kTfLiteInt8 : (int8 ? kTfLiteInt32 : kTfLiteFloat32);
  int bd[1] = {n};
  t[2].dims = make_dims(1, bd);
  t[2].bytes = (size_t)n * 4;
  t[2].data.data = calloc((size_t)n, 4);
  t[2].allocation_type = kTfLiteMmapRo;
  t[3].type = at;
  t[3].params.scale = 0.1f;
  t[3].params.zero_point = -2;
  t[3].allocation_type = kTfLiteArenaRw;

  TfLiteContext ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.tensors = t;
  ctx.tensors_size = 4;
  ctx.ReportError = report;
  ctx.ResizeTensor = resize;

  int in_idx[4] = {3, 0, 1, 2};
  if (!has_bias) in_idx[3] = -1;
  int out_idx[2] = {1, 3};
  TfLiteNode node;
  memset(&node, 0, sizeof node);
  node.inputs = (TfLiteIntArray*)in_idx;
  node.outputs = (TfLiteIntArray*)out_idx;
  const TfLiteRegistration* reg = conv ? TfcRegisterSparseConv1x1() : TfcRegisterSparseFullyConnected();
  node.user_data = reg->init(&ctx, (const char*)obuf, optlen);
  node.custom_initial_data = obuf;
  node.custom_initial_data_size = (int)optlen;
  if (reg->prepare(&ctx, &node) == kTfLiteOk) {
    for (int k = 0; k < 2; ++k) {
      reg->invoke(&ctx, &node);
      guard_check(t[3].data.data, t[3].bytes);
    }
  }
  reg->free(&ctx, node.user_data);
  for (int i = 0; i < 4; ++i) {
    free(t[i].dims);
    if (i != 1) free(t[i].data.data);
  }
  free(wbuf);
  free(obuf);
  return 0;
}
