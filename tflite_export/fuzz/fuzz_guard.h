/* Output tensors for the fuzz targets and the test driver (test/tfc_test_driver.c), with 64
 * guard bytes after the data: poisoned under AddressSanitizer (an instrumented store past the end
 * stops at once) and checked after every Invoke (guard_check), so a store ASan does not
 * instrument (inline asm; NEON intrinsics under GCC), or any store in a build without ASan, past
 * the output stops the run in the input that made it, instead of corrupting a heap chunk that a
 * later input frees.  The kernels' own scratch has the same guards in ASan builds (tfc_alloc64,
 * tfc_op.c). */
#ifndef TFC_FUZZ_GUARD_H_
#define TFC_FUZZ_GUARD_H_

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GUARD = 64, GUARD_BYTE = 0x5A };
/* weak: present only in ASan builds */
void __asan_poison_memory_region(void const volatile* addr, size_t size) __attribute__((weak));
void __asan_unpoison_memory_region(void const volatile* addr, size_t size) __attribute__((weak));
static void guard_poison(const void* p, int on) {
  if (on && __asan_poison_memory_region) __asan_poison_memory_region(p, GUARD);
  if (!on && __asan_unpoison_memory_region) __asan_unpoison_memory_region(p, GUARD);
}

/* zeroed bytes, then the guard */
static void* guard_alloc(size_t bytes) {
  unsigned char* p = (unsigned char*)calloc(1, bytes + GUARD);
  if (p == NULL) return NULL;
  memset(p + bytes, GUARD_BYTE, GUARD);
  guard_poison(p + bytes, 1);
  return p;
}

/* aborts, naming the first overwritten byte, when a store went past bytes */
static void guard_check(const void* data, size_t bytes) {
  const unsigned char* g = (const unsigned char*)data + bytes;
  if (data == NULL) return;
  guard_poison(g, 0);
  for (int i = 0; i < GUARD; ++i)
    if (g[i] != GUARD_BYTE) {
      fprintf(stderr, "guard_check: byte %d after the %zu-byte output was overwritten (0x%02x)\n", i, bytes, g[i]);
      abort();
    }
  guard_poison(g, 1);
}

#endif
