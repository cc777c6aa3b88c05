/* TfLiteIntArrayCreate, for loading the app build of the kernels (-DTFC_USE_TFLITE_HEADERS) into
 * the Python LiteRT wheel, which does not export the symbol.  In an app, the TensorFlow Lite
 * library provides it; the runtime frees the array with TfLiteIntArrayFree, i.e. free(). */
#include <stdlib.h>

#include "tfc_tflite_abi.h"

TfLiteIntArray* TfLiteIntArrayCreate(int size) {
  if (size < 0) return NULL;
  TfLiteIntArray* a = (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)size);
  if (a != NULL) a->size = size;
  return a;
}
