/* tfcompress sparse TFLite kernels: public C API.
 *
 * Two custom ops, one kernel family (a sparse weight matrix W[N][K] times the
 * rows of the input):
 *   TFC_SPARSE_FC        FULLY_CONNECTED replacement.  Input [..., K],
 *                        output [P, N] (layout 1) or [..., N] (layout 0).
 *   TFC_SPARSE_CONV_1X1  CONV_2D 1x1, stride 1, NHWC replacement.
 *                        Input [B, H, W, K], output [B, H, W, N].
 * Inputs: 0 activations (float32 or int8), 1 packed weights (uint8 constant
 * tensor, format in tfc_format.c and tflite_export/README.md),
 * 2 optional bias (float32[N], or int32[N] for int8).  Custom options: 8
 * bytes, see the top of tfc_op.c.
 *
 * Registering the kernels:
 *   C++ op resolver (app with TFLite):
 *     resolver.AddCustom("TFC_SPARSE_FC", TfcRegisterSparseFullyConnected());
 *     resolver.AddCustom("TFC_SPARSE_CONV_1X1", TfcRegisterSparseConv1x1());
 *   Any interpreter that takes a TfLiteDelegate* (Python LiteRT, Java/Kotlin
 *   through JNI, Swift/ObjC): TfcSparseDelegateCreate() returns a delegate
 *   that claims exactly the TFC_* custom nodes (tfc_sparse_delegate.c).
 */
#ifndef TFC_SPARSE_OPS_H_
#define TFC_SPARSE_OPS_H_

#include "tfc_tflite_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TFC_SPARSE_FC_NAME "TFC_SPARSE_FC"
#define TFC_SPARSE_CONV_1X1_NAME "TFC_SPARSE_CONV_1X1"
/* A whole int8 inverted-residual block (tfc_fused.c). */
#define TFC_SPARSE_INVERTED_RESIDUAL_NAME "TFC_SPARSE_INVERTED_RESIDUAL"

TfLiteRegistration* TfcRegisterSparseFullyConnected(void);
TfLiteRegistration* TfcRegisterSparseConv1x1(void);
TfLiteRegistration* TfcRegisterSparseInvertedResidual(void);
/* Kernels the most recent TFC_SPARSE_INVERTED_RESIDUAL Prepare picked: "dw=... expand=... project=...". */
const char* TfcFusedLastKernelNames(void);

/* Delegate claiming every TFC_* custom node (see tfc_sparse_delegate.c). */
TfLiteDelegate* TfcSparseDelegateCreate(void);
void TfcSparseDelegateDelete(TfLiteDelegate* delegate);

/* Name of the kernel the most recent Prepare picked (debugging and tests). */
const char* TfcLastKernelName(void);

/* ABI self-check for the host build: sizes the runtime must agree with. */
int TfcAbiVersion(void);

#ifdef __cplusplus
}
#endif
#endif /* TFC_SPARSE_OPS_H_ */
