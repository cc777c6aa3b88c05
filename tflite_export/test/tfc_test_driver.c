/* tfcompress kernel test driver: runs TFC_SPARSE_FC / TFC_SPARSE_CONV_1X1 (and
 * TFC_SPARSE_INVERTED_RESIDUAL, "TFCF" records) through
 * Init / Prepare / Invoke / Free with a minimal fake TfLiteContext (the same
 * prefix ABI the delegate uses) and compares the outputs with references that
 * Python computed with numpy, independently of this C code.
 *
 * Built for aarch64 and run under qemu-aarch64 by tests/native/test_aarch64.py
 * (any target works: it is plain C11 + libc):
 *   aarch64-linux-gnu-gcc -O3 -std=c11 -ffp-contract=fast -static -I tflite_export \
 *     tflite_export/test/tfc_test_driver.c tflite_export/tfc_*.c -lm -o /tmp/tfc_test
 *   qemu-aarch64 -cpu cortex-a53 /tmp/tfc_test cases.bin
 *
 * Case file: a sequence of records, little-endian ("blob" = u32 length + bytes):
 *   u32 'TFCC'  blob name
 *   u8 op (1 FC, 2 CONV_1X1)  u8 expect_fail  u8 x_type (1 float32, 9 int8)
 *   u8 misalign (weights at an odd address)  u8 runs (Prepare+Invoke rounds)
 *   u8 weights_alloc (TfLiteAllocationType)  u8 bias_type (0 none, else TfLiteType)  u8 0
 *   u32 x_rank, u32 x_dims[x_rank]
 *   f32 x_scale, i32 x_zero_point, f32 y_scale, i32 y_zero_point
 *   blob options, blob packed weights, blob bias, blob x
 *   u32 y_rank, u32 y_dims[y_rank], blob y_expected
 *   f32 tolerance (float32: max |got - want|; int8: max quantization steps)
 *   blob error substring (expect_fail: Prepare must fail with a message containing it)
 * Fused records (TFC_SPARSE_INVERTED_RESIDUAL, tfc_fused.c), little-endian:
 *   u32 'TFCF'  blob name
 *   u8 expect_fail  u8 has_expand  u8 runs  u8 params_misalign (params at an odd address)
 *   u8 x_type (9 int8: int8 x / y, int32 biases; 1 float32: float32 x / y / biases)  u8 0, 0, 0
 *   u32 H, W, Cin (input [1, H, W, Cin])  f32 x_scale, i32 x_zero_point, f32 y_scale, i32 y_zero_point
 *   blob options, blob x, blob expand TFCS, blob expand bias (both empty without expand),
 *   blob params "TFCI", blob depthwise bias, blob project TFCS, blob project bias
 *   u32 Ho, Wo, Co, blob y_expected, f32 tolerance (int8: must be 0, compared EXACTLY; float32:
 *   max |got - want|), blob error substring
 *   Tensors 0 x, 1 expand TFCS, 2 expand bias, 3 params, 4 dw bias, 5 project TFCS, 6 project
 *   bias, 7 y; inputs [0..6], or [0, 3, 4, 5, 6] without expand.
 * Output: one line per case ("PASS name max_err=E kernel=K" / "FAIL name: why"; K is the
 * kernel Prepare picked, TFCOMPRESS_ISA_CAP=0/1 caps it at portable / NEON) and a closing
 * "N passed, M failed" line; exit status 0 only if every case passed.
 */
#define _GNU_SOURCE /* syscall() */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <unistd.h>
#include <sys/syscall.h>
#endif

#include "fuzz/fuzz_guard.h"
#include "tfc_internal.h" /* white-box: the name of the kernel Prepare picked */

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static char g_err[1024];
static int g_case = 0; /* index of the current case */

/* Instruction-count regions: with TFC_MARK set, the first Invoke of case i is bracketed by the
 * (otherwise unused) system call 0x7f1c with ids 2i / 2i + 1, which the QEMU counting plugin of
 * benchmarks/arm/insn_count.c turns into "mark <id> <instructions>" lines. */
static void mark(int id) {
#if defined(__linux__)
  static int on = -1;
  if (on < 0) on = getenv("TFC_MARK") != NULL;
  if (on) syscall(0x7f1c, (long)id);
#else
  (void)id;
#endif
}

static void report(TfLiteContext* ctx, const char* fmt, ...) {
  (void)ctx;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
}

static size_t type_size(int t) { return (t == kTfLiteFloat32 || t == kTfLiteInt32) ? 4u : 1u; }

static TfLiteStatus resize(TfLiteContext* ctx, TfLiteTensor* t, TfLiteIntArray* dims) {
  (void)ctx;
  size_t n = 1;
  for (int i = 0; i < dims->size; ++i) n *= (size_t)dims->data[i];
  free(t->dims);
  t->dims = dims;
  free(t->data.data);
  t->bytes = n * type_size(t->type);
  t->data.data = guard_alloc(t->bytes); /* + checked guard bytes (fuzz/fuzz_guard.h) */
  if (t->data.data != NULL) memset(t->data.data, 0x5A, t->bytes); /* garbage: every output must be written */
  return t->data.data ? kTfLiteOk : kTfLiteError;
}

/* ------------------------------------------------------------ case reader */

typedef struct {
  const uint8_t* p;
  const uint8_t* end;
  int bad;
} Reader;

static const uint8_t* rd_bytes(Reader* r, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t* q = r->p;
  r->p += n;
  return q;
}
static uint32_t rd_u32(Reader* r) {
  const uint8_t* q = rd_bytes(r, 4);
  return q ? (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24) : 0;
}
static uint8_t rd_u8(Reader* r) {
  const uint8_t* q = rd_bytes(r, 1);
  return q ? q[0] : 0;
}
static float rd_f32(Reader* r) {
  uint32_t u = rd_u32(r);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
typedef struct {
  const uint8_t* data;
  uint32_t len;
} Blob;
static Blob rd_blob(Reader* r) {
  Blob b;
  b.len = rd_u32(r);
  b.data = rd_bytes(r, b.len);
  if (b.data == NULL) b.len = 0;
  return b;
}

static TfLiteIntArray* make_dims(int n, const uint32_t* d) {
  TfLiteIntArray* a = (TfLiteIntArray*)malloc(sizeof(int) * (size_t)(n + 1));
  a->size = n;
  for (int i = 0; i < n; ++i) a->data[i] = (int)d[i];
  return a;
}

/* Runs one case; returns 1 on pass, prints its line. */
/* Prepare's status against the case: 1 = Prepare succeeded as expected, go on to Invoke; 0 = the
 * case ends here (*ok = 0 with the reason in why, or a malformed case rejected with the message). */
static int prepare_as_expected(TfLiteStatus st, int expect_fail, Blob errsub, int* ok, char* why, size_t why_len) {
  if (expect_fail) {
    char sub[512];
    snprintf(sub, sizeof sub, "%.*s", (int)(errsub.len < 500 ? errsub.len : 500), errsub.data ? (const char*)errsub.data : "");
    if (st == kTfLiteOk) {
      *ok = 0;
      snprintf(why, why_len, "Prepare accepted a malformed case (expected an error containing '%s')", sub);
    } else if (strstr(g_err, sub) == NULL) {
      *ok = 0;
      snprintf(why, why_len, "Prepare failed with '%s', expected '%s'", g_err, sub);
    }
    return 0;
  }
  if (st != kTfLiteOk) {
    *ok = 0;
    snprintf(why, why_len, "Prepare failed: %s", g_err);
    return 0;
  }
  return 1;
}

static int run_case(Reader* r) {
  Blob name = rd_blob(r);
  char nm[256];
  snprintf(nm, sizeof nm, "%.*s", (int)(name.len < 200 ? name.len : 200), name.data ? (const char*)name.data : "");
  const int op = rd_u8(r), expect_fail = rd_u8(r), x_type = rd_u8(r), misalign = rd_u8(r);
  const int runs = rd_u8(r), walloc = rd_u8(r), bias_type = rd_u8(r);
  rd_u8(r);
  uint32_t x_rank = rd_u32(r), xd[8] = {0};
  if (x_rank > 8) r->bad = 1;
  for (uint32_t i = 0; i < x_rank && !r->bad; ++i) xd[i] = rd_u32(r);
  const float xs = rd_f32(r);
  const int32_t xz = (int32_t)rd_u32(r);
  const float ys = rd_f32(r);
  const int32_t yz = (int32_t)rd_u32(r);
  Blob opts = rd_blob(r), wts = rd_blob(r), bias = rd_blob(r), x = rd_blob(r);
  uint32_t y_rank = rd_u32(r), yd[8] = {0};
  if (y_rank > 8) r->bad = 1;
  for (uint32_t i = 0; i < y_rank && !r->bad; ++i) yd[i] = rd_u32(r);
  Blob want = rd_blob(r);
  const float tol = rd_f32(r);
  Blob errsub = rd_blob(r);
  if (r->bad) {
    printf("FAIL <case file>: truncated record after '%s'\n", nm);
    return 0;
  }

  /* tensors: 0 x, 1 weights, 2 bias, 3 y */
  TfLiteTensor t[4];
  memset(t, 0, sizeof t);
  t[0].type = (TfLiteType)x_type;
  t[0].dims = make_dims((int)x_rank, xd);
  t[0].bytes = x.len;
  t[0].data.data = malloc(x.len ? x.len : 1);
  memcpy(t[0].data.data, x.data, x.len);
  t[0].params.scale = xs;
  t[0].params.zero_point = xz;
  t[0].allocation_type = kTfLiteArenaRw;
  uint8_t* wraw = (uint8_t*)malloc(wts.len + 17u);
  uint8_t* wp = (uint8_t*)(((uintptr_t)wraw + 15u) & ~(uintptr_t)15u) + (misalign ? 1 : 0);
  memcpy(wp, wts.data, wts.len);
  uint32_t wlen = wts.len;
  t[1].type = kTfLiteUInt8;
  t[1].dims = make_dims(1, &wlen);
  t[1].bytes = wts.len;
  t[1].data.data = wp;
  t[1].allocation_type = (TfLiteAllocationType)walloc;
  uint32_t blen = bias.len / 4u;
  t[2].type = (TfLiteType)(bias_type ? bias_type : kTfLiteFloat32);
  t[2].dims = make_dims(1, &blen);
  t[2].bytes = bias.len;
  t[2].data.data = malloc(bias.len ? bias.len : 1);
  memcpy(t[2].data.data, bias.data, bias.len);
  t[2].allocation_type = kTfLiteMmapRo;
  t[3].type = (TfLiteType)x_type;
  t[3].params.scale = ys;
  t[3].params.zero_point = yz;
  t[3].allocation_type = kTfLiteArenaRw;

  TfLiteContext ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.tensors = t;
  ctx.tensors_size = 4;
  ctx.ReportError = report;
  ctx.ResizeTensor = resize;
  /* TFC_TEST_THREADS=n: the interpreter's thread count (the pool and the work split of tfc_op.c) */
  ctx.recommended_num_threads = getenv("TFC_TEST_THREADS") ? atoi(getenv("TFC_TEST_THREADS")) : 1;

  int in_idx[4] = {bias_type ? 3 : 2, 0, 1, 2};
  int out_idx[2] = {1, 3};
  TfLiteNode node;
  memset(&node, 0, sizeof node);
  node.inputs = (TfLiteIntArray*)in_idx;
  node.outputs = (TfLiteIntArray*)out_idx;
  const TfLiteRegistration* reg = op == 2 ? TfcRegisterSparseConv1x1() : TfcRegisterSparseFullyConnected();
  node.user_data = reg->init(&ctx, (const char*)opts.data, opts.len);
  node.custom_initial_data = opts.data;
  node.custom_initial_data_size = (int)opts.len;

  int ok = 1;
  char why[1400] = "";
  double worst = 0.0;
  const char* kernel = "-";
  for (int round = 0; round < (runs ? runs : 1) && ok; ++round) {
    g_err[0] = 0;
    if (!prepare_as_expected(reg->prepare(&ctx, &node), expect_fail, errsub, &ok, why, sizeof why)) break;
    if (((const TfcState*)node.user_data)->plan.name != NULL) kernel = ((const TfcState*)node.user_data)->plan.name;
    if (t[3].dims == NULL || (uint32_t)t[3].dims->size != y_rank) {
      ok = 0;
      snprintf(why, sizeof why, "output rank %d, expected %u", t[3].dims ? t[3].dims->size : -1, y_rank);
      break;
    }
    for (uint32_t i = 0; i < y_rank; ++i)
      if ((uint32_t)t[3].dims->data[i] != yd[i]) {
        ok = 0;
        snprintf(why, sizeof why, "output dim %u is %d, expected %u", i, t[3].dims->data[i], yd[i]);
      }
    if (!ok) break;
    if (t[3].bytes != want.len) {
      ok = 0;
      snprintf(why, sizeof why, "output bytes %zu, expected %u", t[3].bytes, want.len);
      break;
    }
    memset(t[3].data.data, 0x5A, t[3].bytes);
    if (round == 0) mark(2 * g_case);
    const TfLiteStatus ist = reg->invoke(&ctx, &node);
    if (round == 0) mark(2 * g_case + 1);
    guard_check(t[3].data.data, t[3].bytes);
    if (ist != kTfLiteOk) {
      ok = 0;
      snprintf(why, sizeof why, "Invoke failed: %s", g_err);
      break;
    }
    const size_t n = x_type == kTfLiteFloat32 ? want.len / 4u : want.len;
    for (size_t i = 0; i < n; ++i) {
      double got, ref;
      if (x_type == kTfLiteFloat32) {
        float g, w;
        memcpy(&g, (const uint8_t*)t[3].data.data + 4 * i, 4);
        memcpy(&w, want.data + 4 * i, 4);
        got = g;
        ref = w;
      } else {
        got = ((const int8_t*)t[3].data.data)[i];
        ref = (int8_t)want.data[i];
      }
      const double d = isnan(got) ? INFINITY : fabs(got - ref);
      if (d > worst) worst = d;
      if (d > tol && ok) {
        ok = 0;
        snprintf(why, sizeof why, "round %d: output[%zu] = %.9g, expected %.9g (tolerance %g)", round, i, got, ref,
                 (double)tol);
      }
    }
  }
  reg->free(&ctx, node.user_data);
  for (int i = 0; i < 4; ++i) {
    free(t[i].dims);
    if (i != 1) free(t[i].data.data);
  }
  free(wraw);
  if (ok)
    printf("PASS %s max_err=%.3g kernel=%s\n", nm, worst, kernel);
  else
    printf("FAIL %s: %s\n", nm, why);
  return ok;
}

/* 16-byte aligned copy of a blob (+1 byte: at an odd address); *raw is what to free. */
static uint8_t* aligned_copy(Blob b, int odd, uint8_t** raw) {
  *raw = (uint8_t*)malloc(b.len + 17u);
  uint8_t* p = (uint8_t*)(((uintptr_t)*raw + 15u) & ~(uintptr_t)15u) + (odd ? 1 : 0);
  if (b.len) memcpy(p, b.data, b.len);
  return p;
}

/* Runs one fused record (format at the top); returns 1 on pass, prints its line. */
static int run_fused_case(Reader* r) {
  Blob name = rd_blob(r);
  char nm[256];
  snprintf(nm, sizeof nm, "%.*s", (int)(name.len < 200 ? name.len : 200), name.data ? (const char*)name.data : "");
  const int expect_fail = rd_u8(r), has_expand = rd_u8(r), runs = rd_u8(r), pmis = rd_u8(r);
  const int x_type = rd_u8(r);
  for (int i = 0; i < 3; ++i) rd_u8(r);
  const int f32 = x_type == kTfLiteFloat32;
  if (!f32 && x_type != kTfLiteInt8) r->bad = 1;
  uint32_t xd[4] = {1, 0, 0, 0};
  for (int i = 1; i < 4; ++i) xd[i] = rd_u32(r);
  const float xs = rd_f32(r);
  const int32_t xz = (int32_t)rd_u32(r);
  const float ys = rd_f32(r);
  const int32_t yz = (int32_t)rd_u32(r);
  Blob opts = rd_blob(r), x = rd_blob(r);
  Blob b[6]; /* expand TFCS, expand bias, params, dw bias, project TFCS, project bias */
  for (int i = 0; i < 6; ++i) b[i] = rd_blob(r);
  uint32_t yd[4] = {1, 0, 0, 0};
  for (int i = 1; i < 4; ++i) yd[i] = rd_u32(r);
  Blob want = rd_blob(r);
  const float tol = rd_f32(r);
  Blob errsub = rd_blob(r);
  if (!f32 && tol != 0.f) r->bad = 1; /* int8 blocks are compared exactly */
  if (r->bad) {
    printf("FAIL <case file>: truncated or bad fused record after '%s'\n", nm);
    return 0;
  }
  TfLiteTensor t[8];
  memset(t, 0, sizeof t);
  uint8_t* raw[8] = {0};
  t[0].type = (TfLiteType)x_type;
  t[0].dims = make_dims(4, xd);
  t[0].bytes = x.len;
  t[0].data.data = aligned_copy(x, 0, &raw[0]);
  t[0].params.scale = xs;
  t[0].params.zero_point = xz;
  t[0].allocation_type = kTfLiteArenaRw;
  for (int i = 0; i < 6; ++i) {
    TfLiteTensor* ti = &t[1 + i];
    const int is_blob = i == 0 || i == 2 || i == 4;
    uint32_t n = is_blob ? b[i].len : b[i].len / 4u;
    ti->type = is_blob ? kTfLiteUInt8 : f32 ? kTfLiteFloat32 : kTfLiteInt32;
    ti->dims = make_dims(1, &n);
    ti->bytes = b[i].len;
    ti->data.data = aligned_copy(b[i], i == 2 && pmis, &raw[1 + i]);
    ti->allocation_type = kTfLiteMmapRo;
  }
  t[7].type = (TfLiteType)x_type;
  t[7].params.scale = ys;
  t[7].params.zero_point = yz;
  t[7].allocation_type = kTfLiteArenaRw;

  TfLiteContext ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.tensors = t;
  ctx.tensors_size = 8;
  ctx.ReportError = report;
  ctx.ResizeTensor = resize;
  ctx.recommended_num_threads = getenv("TFC_TEST_THREADS") ? atoi(getenv("TFC_TEST_THREADS")) : 1;
  int in7[8] = {7, 0, 1, 2, 3, 4, 5, 6}, in5[6] = {5, 0, 3, 4, 5, 6};
  int out_idx[2] = {1, 7};
  TfLiteNode node;
  memset(&node, 0, sizeof node);
  node.inputs = (TfLiteIntArray*)(has_expand ? in7 : in5);
  node.outputs = (TfLiteIntArray*)out_idx;
  const TfLiteRegistration* reg = TfcRegisterSparseInvertedResidual();
  node.user_data = reg->init(&ctx, (const char*)opts.data, opts.len);

  int ok = 1;
  char why[1400] = "";
  char kernel[200] = "-";
  double worst = 0.0;
  for (int round = 0; round < (runs ? runs : 1) && ok; ++round) {
    g_err[0] = 0;
    if (!prepare_as_expected(reg->prepare(&ctx, &node), expect_fail, errsub, &ok, why, sizeof why)) break;
    const TfcFused* f = (const TfcFused*)node.user_data;
    snprintf(kernel, sizeof kernel, "dw=%s,expand=%s,project=%s", f->dw_name ? f->dw_name : "?",
             tfc_fused_expand_name(f), f->pr.plan.name ? f->pr.plan.name : "?");
    if (t[7].dims == NULL || t[7].dims->size != 4 || t[7].bytes != want.len) {
      ok = 0;
      snprintf(why, sizeof why, "output shape / bytes differ (%zu bytes, expected %u)", t[7].bytes, want.len);
      break;
    }
    for (int i = 0; i < 4; ++i)
      if ((uint32_t)t[7].dims->data[i] != yd[i]) {
        ok = 0;
        snprintf(why, sizeof why, "output dim %d is %d, expected %u", i, t[7].dims->data[i], yd[i]);
      }
    if (!ok) break;
    memset(t[7].data.data, 0x5A, t[7].bytes);
    if (round == 0) mark(2 * g_case);
    const TfLiteStatus ist = reg->invoke(&ctx, &node);
    if (round == 0) mark(2 * g_case + 1);
    guard_check(t[7].data.data, t[7].bytes);
    if (ist != kTfLiteOk) {
      ok = 0;
      snprintf(why, sizeof why, "Invoke failed: %s", g_err);
      break;
    }
    for (size_t i = 0; i < (f32 ? want.len / 4u : want.len); ++i) {
      if (f32) {
        float g, w;
        memcpy(&g, (const uint8_t*)t[7].data.data + 4 * i, 4);
        memcpy(&w, want.data + 4 * i, 4);
        const double d = isnan(g) ? INFINITY : fabs((double)g - (double)w);
        if (d > worst) worst = d;
        if (d > tol && ok) {
          ok = 0;
          snprintf(why, sizeof why, "round %d: output[%zu] = %.9g, expected %.9g (tolerance %g)", round, i, (double)g,
                   (double)w, (double)tol);
        }
        continue;
      }
      const int got = ((const int8_t*)t[7].data.data)[i], ref = (int8_t)want.data[i];
      const double d = fabs((double)(got - ref));
      if (d > worst) worst = d;
      if (d != 0.0 && ok) {
        ok = 0;
        snprintf(why, sizeof why, "round %d: output[%zu] = %d, expected %d (exact)", round, i, got, ref);
      }
    }
  }
  reg->free(&ctx, node.user_data);
  free(t[0].dims);
  for (int i = 1; i < 8; ++i) free(t[i].dims);
  free(t[7].data.data);
  for (int i = 0; i < 8; ++i) free(raw[i]);
  if (ok)
    printf("PASS %s max_err=%.3g kernel=%s\n", nm, worst, kernel);
  else
    printf("FAIL %s: %s\n", nm, why);
  return ok;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CASES.bin\n", argv[0]);
    return 2;
  }
  FILE* f = fopen(argv[1], "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t* buf = (uint8_t*)malloc(sz > 0 ? (size_t)sz : 1);
  if (buf == NULL || fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
    fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  fclose(f);
#if defined(__aarch64__) && defined(__linux__)
  printf("cpu: aarch64, dotprod %s\n", (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) ? "yes" : "no");
#endif
  Reader r = {buf, buf + sz, 0};
  int passed = 0, failed = 0;
  while (r.p < r.end) {
    const uint32_t magic = rd_u32(&r);
    if (magic != 0x43434654u && magic != 0x46434654u) { /* "TFCC", "TFCF" */
      printf("FAIL <case file>: bad record magic\n");
      failed++;
      break;
    }
    if (magic == 0x46434654u ? run_fused_case(&r) : run_case(&r))
      passed++;
    else
      failed++;
    g_case++;
    if (r.bad) break;
  }
  free(buf);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
