/* tfcompress: a TfLiteDelegate that runs the TFC_* custom nodes with the
 * tfcompress sparse kernels.
 *
 * Why a delegate: an interpreter whose op resolver cannot be extended from
 * the outside (the Python LiteRT wheel exports no MutableOpResolver::AddCustom,
 * Java/Kotlin and Swift expose only "add a delegate") still loads a model with
 * unknown custom ops; the nodes only fail when they are prepared.  A delegate
 * applied before AllocateTensors replaces each TFC_* node with a delegate
 * kernel node that forwards Init/Prepare/Invoke/Free to the real kernel, so
 * the nodes never reach the "unresolved custom op" stub.  The delegate only
 * uses function pointers of TfLiteContext, so it needs no symbol from the
 * runtime.  Every other node is left to the runtime (and its default XNNPACK
 * delegate).
 *
 * Each TFC_* node becomes its own delegate kernel node (one
 * ReplaceNodeSubsetsWithDelegateKernels call per node), so the forwarding
 * kernel always wraps exactly one original node.
 *
 * Also built as the external-delegate plugin for Python's
 * ai_edge_litert.interpreter.load_delegate (tflite_plugin_create_delegate /
 * tflite_plugin_destroy_delegate, plain C ABI).
 */
#include <stdlib.h>
#include <string.h>

#include "tfc_sparse_ops.h"

typedef struct {
  const TfLiteRegistration* kernel; /* the real kernel */
  void* kernel_state;               /* its user_data */
  TfLiteNode node;                  /* what the kernel sees: original inputs/outputs/options */
  TfLiteIntArray* inputs;           /* owned copies of the original index arrays */
  TfLiteIntArray* outputs;
} TfcForward;

static const TfLiteRegistration* tfc_kernel_for(const TfLiteRegistration* reg) {
  if (reg == NULL || reg->builtin_code != kTfLiteBuiltinCustom || reg->custom_name == NULL) return NULL;
  if (strcmp(reg->custom_name, TFC_SPARSE_FC_NAME) == 0) return TfcRegisterSparseFullyConnected();
  if (strcmp(reg->custom_name, TFC_SPARSE_CONV_1X1_NAME) == 0) return TfcRegisterSparseConv1x1();
  if (strcmp(reg->custom_name, TFC_SPARSE_INVERTED_RESIDUAL_NAME) == 0) return TfcRegisterSparseInvertedResidual();
  return NULL;
}

static TfLiteIntArray* tfc_copy_array(const TfLiteIntArray* a) {
  int n = a ? a->size : 0;
  TfLiteIntArray* c = (TfLiteIntArray*)malloc(sizeof(int) * (size_t)(n + 1));
  if (c == NULL) return NULL;
  c->size = n;
  for (int i = 0; i < n; ++i) c->data[i] = a->data[i];
  return c;
}

static void tfc_fwd_free(TfLiteContext* ctx, void* buffer) {
  TfcForward* f = (TfcForward*)buffer;
  if (f == NULL) return;
  if (f->kernel && f->kernel->free) f->kernel->free(ctx, f->kernel_state);
  free(f->inputs);
  free(f->outputs);
  free(f);
}

static void* tfc_fwd_init(TfLiteContext* ctx, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  if (params == NULL || params->nodes_to_replace == NULL || params->nodes_to_replace->size != 1) return NULL;
  TfLiteNode* orig = NULL;
  TfLiteRegistration* reg = NULL;
  if (ctx->GetNodeAndRegistration(ctx, params->nodes_to_replace->data[0], &orig, &reg) != kTfLiteOk) return NULL;
  const TfLiteRegistration* kernel = tfc_kernel_for(reg);
  if (kernel == NULL) return NULL;
  TfcForward* f = (TfcForward*)calloc(1, sizeof(TfcForward));
  if (f == NULL) return NULL;
  f->kernel = kernel;
  f->inputs = tfc_copy_array(orig->inputs);
  f->outputs = tfc_copy_array(orig->outputs);
  if (f->inputs == NULL || f->outputs == NULL) {
    tfc_fwd_free(ctx, f);
    return NULL;
  }
  f->node.inputs = f->inputs;
  f->node.outputs = f->outputs;
  f->node.custom_initial_data = orig->custom_initial_data; /* owned by the model */
  f->node.custom_initial_data_size = orig->custom_initial_data_size;
  f->kernel_state = kernel->init(ctx, (const char*)orig->custom_initial_data,
                                 orig->custom_initial_data_size > 0 ? (size_t)orig->custom_initial_data_size : 0);
  f->node.user_data = f->kernel_state;
  return f;
}

static TfLiteStatus tfc_fwd_prepare(TfLiteContext* ctx, TfLiteNode* node) {
  TfcForward* f = (TfcForward*)node->user_data;
  if (f == NULL) {
    ctx->ReportError(ctx, "tfcompress sparse delegate: kernel init failed (out of memory or not a TFC_* node)");
    return kTfLiteError;
  }
  return f->kernel->prepare(ctx, &f->node);
}

static TfLiteStatus tfc_fwd_invoke(TfLiteContext* ctx, TfLiteNode* node) {
  TfcForward* f = (TfcForward*)node->user_data;
  if (f == NULL) return kTfLiteError;
  return f->kernel->invoke(ctx, &f->node);
}

static TfLiteStatus tfc_delegate_prepare(TfLiteContext* ctx, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan = NULL;
#ifndef TFC_USE_TFLITE_HEADERS
  /* Host build: our own ABI declarations must match the runtime's layout. */
  if (ctx->tensors_size > 1 && ctx->GetTensor != NULL && ctx->GetTensor(ctx, 1) != &ctx->tensors[1]) {
    ctx->ReportError(ctx, "tfcompress sparse delegate: TfLiteTensor layout of this runtime differs from "
                          "tflite_export/tfc_tflite_abi.h; rebuild against the runtime's headers");
    return kTfLiteError;
  }
#endif
  if (ctx->GetExecutionPlan(ctx, &plan) != kTfLiteOk || plan == NULL) return kTfLiteError;
  /* Copy the node ids first: later context calls invalidate `plan`. */
  TfLiteIntArray* mine = (TfLiteIntArray*)malloc(sizeof(int) * (size_t)(plan->size + 1));
  if (mine == NULL) return kTfLiteError;
  mine->size = 0;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (ctx->GetNodeAndRegistration(ctx, plan->data[i], &node, &reg) != kTfLiteOk) continue;
    if (tfc_kernel_for(reg) != NULL) mine->data[mine->size++] = plan->data[i];
  }
  TfLiteRegistration fwd;
  memset(&fwd, 0, sizeof(fwd));
  fwd.init = tfc_fwd_init;
  fwd.free = tfc_fwd_free;
  fwd.prepare = tfc_fwd_prepare;
  fwd.invoke = tfc_fwd_invoke;
  fwd.builtin_code = kTfLiteBuiltinDelegate;
  fwd.custom_name = "TfcSparseDelegate";
  fwd.version = 1;
  TfLiteStatus st = kTfLiteOk;
  int one[2];
  TfLiteIntArray* single = (TfLiteIntArray*)one;
  for (int i = 0; i < mine->size && st == kTfLiteOk; ++i) {
    single->size = 1;
    single->data[0] = mine->data[i];
    st = ctx->ReplaceNodeSubsetsWithDelegateKernels(ctx, fwd, single, delegate);
  }
  free(mine);
  return st;
}

TfLiteDelegate* TfcSparseDelegateCreate(void) {
  TfLiteDelegate* d = (TfLiteDelegate*)calloc(1, sizeof(TfLiteDelegate));
  if (d == NULL) return NULL;
  d->Prepare = tfc_delegate_prepare;
  d->flags = 1; /* kTfLiteDelegateFlagsAllowDynamicTensors: the kernels re-prepare on resize */
  return d;
}

void TfcSparseDelegateDelete(TfLiteDelegate* delegate) { free(delegate); }

/* External delegate plugin ABI (ai_edge_litert load_delegate, TFLite tools). */
TfLiteDelegate* tflite_plugin_create_delegate(char** options_keys, char** options_values, size_t num_options,
                                              void (*report_error)(const char*)) {
  (void)options_keys;
  (void)options_values;
  if (num_options != 0) {
    if (report_error) report_error("tfcompress sparse delegate takes no options");
    return NULL;
  }
  return TfcSparseDelegateCreate();
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { TfcSparseDelegateDelete(delegate); }
