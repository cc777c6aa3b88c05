/* Prints the layout of every TFLite struct member and constant the kernels use, one
 * "name value" line each.  Built twice: against tfc_tflite_abi.h's own declarations (the host
 * build) and with -DTFC_USE_TFLITE_HEADERS against the real TFLite headers (the app build); the
 * two outputs must be equal on every target (tests/native/test_tflite_headers.py). */
#include <stddef.h>
#include <stdio.h>

#include "tfc_tflite_abi.h"

#define OFF(T, m) printf("offsetof(" #T ", " #m ") %zu\n", offsetof(T, m))
#define SIZE(T) printf("sizeof(" #T ") %zu\n", sizeof(T))
#define VALUE(c) printf(#c " %d\n", (int)(c))

int main(void) {
  SIZE(TfLiteTensor);
  OFF(TfLiteTensor, type);
  OFF(TfLiteTensor, data);
  OFF(TfLiteTensor, dims);
  OFF(TfLiteTensor, params);
  OFF(TfLiteTensor, allocation_type);
  OFF(TfLiteTensor, bytes);
  OFF(TfLiteTensor, allocation);
  OFF(TfLiteTensor, name);
  OFF(TfLiteTensor, delegate);
  OFF(TfLiteTensor, buffer_handle);
  OFF(TfLiteTensor, data_is_stale);
  OFF(TfLiteTensor, is_variable);
  OFF(TfLiteTensor, quantization);
  OFF(TfLiteTensor, sparsity);
  OFF(TfLiteTensor, dims_signature);
  SIZE(TfLiteIntArray);
  OFF(TfLiteIntArray, data);
  SIZE(TfLiteQuantizationParams);
  OFF(TfLiteQuantizationParams, zero_point);
  OFF(TfLiteNode, inputs);
  OFF(TfLiteNode, outputs);
  OFF(TfLiteNode, intermediates);
  OFF(TfLiteNode, temporaries);
  OFF(TfLiteNode, user_data);
  OFF(TfLiteNode, builtin_data);
  OFF(TfLiteNode, custom_initial_data);
  OFF(TfLiteNode, custom_initial_data_size);
  OFF(TfLiteRegistration, init);
  OFF(TfLiteRegistration, free);
  OFF(TfLiteRegistration, prepare);
  OFF(TfLiteRegistration, invoke);
  OFF(TfLiteRegistration, profiling_string);
  OFF(TfLiteRegistration, builtin_code);
  OFF(TfLiteRegistration, custom_name);
  OFF(TfLiteRegistration, version);
  OFF(TfLiteRegistration, registration_external);
  OFF(TfLiteRegistration, async_kernel);
  OFF(TfLiteRegistration, inplace_operator);
  SIZE(TfLiteDelegateParams);
  OFF(TfLiteDelegateParams, nodes_to_replace);
  OFF(TfLiteDelegateParams, input_tensors);
  OFF(TfLiteDelegateParams, output_tensors);
  OFF(TfLiteContext, tensors_size);
  OFF(TfLiteContext, GetExecutionPlan);
  OFF(TfLiteContext, tensors);
  OFF(TfLiteContext, impl_);
  OFF(TfLiteContext, ResizeTensor);
  OFF(TfLiteContext, ReportError);
  OFF(TfLiteContext, AddTensors);
  OFF(TfLiteContext, GetNodeAndRegistration);
  OFF(TfLiteContext, ReplaceNodeSubsetsWithDelegateKernels);
  OFF(TfLiteContext, recommended_num_threads);
  OFF(TfLiteContext, GetExternalContext);
  OFF(TfLiteContext, SetExternalContext);
  OFF(TfLiteContext, allow_fp32_relax_to_fp16);
  OFF(TfLiteContext, profiler);
  OFF(TfLiteContext, AllocatePersistentBuffer);
  OFF(TfLiteContext, AllocateBufferForEval);
  OFF(TfLiteContext, RequestScratchBufferInArena);
  OFF(TfLiteContext, GetScratchBuffer);
  OFF(TfLiteContext, ResizeTensorExplicit);
  OFF(TfLiteContext, PreviewDelegatePartitioning);
  OFF(TfLiteContext, GetTensor);
  SIZE(TfLiteDelegate);
  OFF(TfLiteDelegate, Prepare);
  OFF(TfLiteDelegate, CopyFromBufferHandle);
  OFF(TfLiteDelegate, CopyToBufferHandle);
  OFF(TfLiteDelegate, FreeBufferHandle);
  OFF(TfLiteDelegate, flags);
  OFF(TfLiteDelegate, opaque_delegate_builder);
  VALUE(kTfLiteOk);
  VALUE(kTfLiteError);
  VALUE(kTfLiteNoType);
  VALUE(kTfLiteFloat32);
  VALUE(kTfLiteInt32);
  VALUE(kTfLiteUInt8);
  VALUE(kTfLiteInt8);
  VALUE(kTfLiteMemNone);
  VALUE(kTfLiteMmapRo);
  VALUE(kTfLiteArenaRw);
  VALUE(kTfLiteArenaRwPersistent);
  VALUE(kTfLiteDynamic);
  VALUE(kTfLitePersistentRo);
  VALUE(kTfLiteBuiltinCustom);
  VALUE(kTfLiteBuiltinDelegate);
  return 0;
}
