/* Output tensors for the fuzz targets, with 64 guard bytes after the data: poisoned for
 * AddressSanitizer (an instrumented store past the end stops at once) and checked after every
 * Invoke (guard_check), so a store ASan does not instrument (inline asm; NEON intrinsics under
 * GCC) past the output stops the run in the input that made it, instead of corrupting a heap
 * chunk that a later input frees.  The kernels' own scratch has the same guards in ASan builds
 * (tfc_alloc64, tfc_op.c). */
#ifndef TFC_FUZZ_GUARD_H_
#define TFC_FUZZ_GUARD_H_

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GUARD = 64, GUARD_BYTE = 0x5A };
void __asan_poison_memory_region(void const volatile* addr, size_t size);
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);

/* zeroed bytes, then the guard */
static void* guard_alloc(size_t bytes) {
  unsigned char* p = (unsigned char*)calloc(1, bytes + GUARD);
  if (p == NULL) return NULL;
  memset(p + bytes, GUARD_BYTE, GUARD);
  __asan_poison_memory_region(p + bytes, GUARD);
  return p;
}

/* aborts, naming the first overwritten byte, when a store went past bytes */
static void guard_check(const void* data, size_t bytes) {
  const unsigned char* g = (const unsigned char*)data + bytes;
  if (data == NULL) return;
  __asan_unpoison_memory_region(g, GUARD);
  for (int i = 0; i < GUARD; ++i)
    if (g[i] != GUARD_BYTE) {
      fprintf(stderr, "fuzz: byte %d after the %zu-byte output was overwritten (0x%02x)\n", i, bytes, g[i]);
      abort();
    }
  __asan_poison_memory_region(g, GUARD);
}

#endif
