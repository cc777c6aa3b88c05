/* tfcompress: the TFLite C ABI the sparse kernels need.
 *
 * Two ways to compile the kernels:
 *   - App build (Bazel, Android/iOS, any build that has TensorFlow Lite):
 *     define TFC_USE_TFLITE_HEADERS and the real "tensorflow/lite/c/common.h"
 *     is used.  This is what //:tfc_sparse_ops in BUILD does.  CI builds the library
 *     this way for x86-64 and aarch64 against TFLite's own headers and checks that
 *     every member offset below equals theirs (tests/native/test_tflite_headers.py).
 *   - Host build (pip install ., no TFLite headers exist in any wheel): the
 *     minimal declarations below, written for this project, describe only the
 *     leading members of the runtime's structs that the kernels and the host
 *     delegate touch.  TFLite keeps these structs "semi-ABI stable": members
 *     are only ever appended, never reordered, so a prefix declaration stays
 *     valid across runtime versions.  Structs the kernels never allocate are
 *     declared as prefixes; TfLiteRegistration, which is passed BY VALUE to
 *     ReplaceNodeSubsetsWithDelegateKernels, is declared complete plus
 *     zeroed reserved tail space (harmless on x86-64 SysV and AArch64,
 *     where a struct this large is passed in memory / by reference and the
 *     callee reads only the members it knows).
 */
#ifndef TFC_TFLITE_ABI_H_
#define TFC_TFLITE_ABI_H_

#ifdef TFC_USE_TFLITE_HEADERS
#include "tensorflow/lite/builtin_ops.h"
#if defined(__has_include) && !__has_include("tensorflow/lite/c/common.h")
/* Header sets that carry only the implementation copy (the C API forwards to it since TF 2.13). */
#include "tensorflow/lite/core/c/common.h"
#else
#include "tensorflow/lite/c/common.h"
#endif
/* The real runtime: a TfLiteIntArrayCreate'd shape, owned by ResizeTensor. */
static inline TfLiteStatus tfc_resize_tensor(TfLiteContext* ctx, TfLiteTensor* t, int n, const int* shape) {
  TfLiteIntArray* a = TfLiteIntArrayCreate(n);
  if (a == NULL) return kTfLiteError;
  for (int i = 0; i < n; ++i) a->data[i] = shape[i];
  return ctx->ResizeTensor(ctx, t, a);
}
#define TFC_TENSOR_RESIZE(ctx, t, n, shape) tfc_resize_tensor((ctx), (t), (n), (shape))
#define TFC_TENSOR(ctx, i) (&(ctx)->tensors[(i)])
#else

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

/* Only the element types the kernels accept (values as in TFLite). */
typedef enum {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt8 = 9
} TfLiteType;

/* Allocation kinds used to check that weights are constant. */
typedef enum {
  kTfLiteMemNone = 0,
  kTfLiteMmapRo = 1,
  kTfLiteArenaRw = 2,
  kTfLiteArenaRwPersistent = 3,
  kTfLiteDynamic = 4,
  kTfLitePersistentRo = 5
} TfLiteAllocationType;

typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;

typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

/* TfLiteTensor.  The kernels read the first six members; the rest is declared
 * so that sizeof matches the runtime (the host delegate checks this at run
 * time against context->GetTensor and refuses to run on a mismatch). */
typedef struct TfLiteTensor {
  TfLiteType type;
  union {
    void* data;
    float* f;
    int8_t* int8;
    int32_t* i32;
    uint8_t* uint8;
    const char* raw_const;
  } data;
  TfLiteIntArray* dims;
  TfLiteQuantizationParams params;
  TfLiteAllocationType allocation_type;
  size_t bytes;
  const void* allocation;
  const char* name;
  struct TfLiteDelegate* delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  struct {
    int type;
    void* params;
  } quantization;
  void* sparsity;
  const TfLiteIntArray* dims_signature;
} TfLiteTensor;

/* Prefix of TfLiteNode (members up to custom_initial_data_size). */
typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
} TfLiteNode;

struct TfLiteContext;
struct TfLiteDelegate;

typedef struct TfLiteRegistration {
  void* (*init)(struct TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(struct TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(struct TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(struct TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const struct TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external; /* must stay NULL: use the function pointers above */
  void* async_kernel;
  uint64_t inplace_operator;
  uint64_t tfc_reserved_tail[8]; /* zero; room for members appended by newer runtimes */
} TfLiteRegistration;

/* Builtin code of a custom op and of a delegate kernel node. */
enum { kTfLiteBuiltinCustom = 32, kTfLiteBuiltinDelegate = 51 };

typedef struct TfLiteDelegateParams {
  struct TfLiteDelegate* delegate;
  TfLiteIntArray* nodes_to_replace;
  TfLiteIntArray* input_tensors;
  TfLiteIntArray* output_tensors;
} TfLiteDelegateParams;

/* Prefix of TfLiteContext up to ResizeTensorExplicit. */
typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext* context, TfLiteIntArray** execution_plan);
  TfLiteTensor* tensors;
  void* impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext*, TfLiteTensor* tensor, TfLiteIntArray* new_size);
  void (*ReportError)(struct TfLiteContext*, const char* msg, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext*, int tensors_to_add, int* first_new_tensor_index);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext*, int node_index, TfLiteNode** node,
                                         TfLiteRegistration** registration);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext*,
                                                        TfLiteRegistration registration,
                                                        const TfLiteIntArray* nodes_to_replace,
                                                        struct TfLiteDelegate* delegate);
  int recommended_num_threads;
  void* (*GetExternalContext)(struct TfLiteContext*, int);
  void (*SetExternalContext)(struct TfLiteContext*, int, void*);
  bool allow_fp32_relax_to_fp16;
  void* profiler;
  void* (*AllocatePersistentBuffer)(struct TfLiteContext* ctx, size_t bytes);
  TfLiteStatus (*AllocateBufferForEval)(struct TfLiteContext* ctx, size_t bytes, void** ptr);
  TfLiteStatus (*RequestScratchBufferInArena)(struct TfLiteContext* ctx, size_t bytes, int* buffer_idx);
  void* (*GetScratchBuffer)(struct TfLiteContext* ctx, int buffer_idx);
  TfLiteStatus (*ResizeTensorExplicit)(struct TfLiteContext* ctx, TfLiteTensor* tensor, int dims,
                                       const int* shape);
  TfLiteStatus (*PreviewDelegatePartitioning)(struct TfLiteContext* context, const TfLiteIntArray* nodes,
                                              TfLiteDelegateParams** partition_params_array,
                                              int* num_partitions);
  TfLiteTensor* (*GetTensor)(const struct TfLiteContext* context, int tensor_idx);
  /* further members exist in the runtime; never touched here */
} TfLiteContext;

/* Complete TfLiteDelegate: the host delegate allocates it. */
typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext* context, struct TfLiteDelegate* delegate);
  TfLiteStatus (*CopyFromBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, TfLiteTensor*);
  TfLiteStatus (*CopyToBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, TfLiteTensor*);
  void (*FreeBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder; /* NULL: use Prepare above */
} TfLiteDelegate;

/* ResizeTensor takes ownership of a malloc'ed TfLiteIntArray (TfLiteIntArrayFree is free()). */
static inline TfLiteStatus tfc_resize_tensor(TfLiteContext* ctx, TfLiteTensor* t, int n, const int* shape) {
  if (ctx->ResizeTensorExplicit != NULL) return ctx->ResizeTensorExplicit(ctx, t, n, shape);
  TfLiteIntArray* a = (TfLiteIntArray*)malloc(sizeof(int) * (size_t)(n + 1));
  if (a == NULL) return kTfLiteError;
  a->size = n;
  for (int i = 0; i < n; ++i) a->data[i] = shape[i];
  return ctx->ResizeTensor(ctx, t, a);
}
#define TFC_TENSOR_RESIZE(ctx, t, n, shape) tfc_resize_tensor((ctx), (t), (n), (shape))
#define TFC_TENSOR(ctx, i) ((ctx)->GetTensor ? (ctx)->GetTensor((ctx), (i)) : &(ctx)->tensors[(i)])

#ifdef __cplusplus
}
#endif
#endif /* TFC_USE_TFLITE_HEADERS */
#endif /* TFC_TFLITE_ABI_H_ */
