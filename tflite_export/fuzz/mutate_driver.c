/* A small stand-in for libFuzzer's driver where its runtime does not exist (aarch64 under
 * qemu-aarch64 here): runs every seed of a corpus directory, then, until the time is up, a random
 * seed with 1-8 random byte mutations (set, flip a bit, +-1) or a truncation, through the
 * target's LLVMFuzzerTestOneInput.  No coverage feedback: it only finds what mutations of the
 * seeds reach.  The input that fails (an ASan report; an abort, e.g. a guard check of tfc_free64)
 * is written to ./crash-input first.
 *
 *   aarch64-linux-gnu-gcc -O1 -g -std=c11 -ffp-contract=fast -fsanitize=address,undefined \
 *     -fno-sanitize-recover=undefined -Wno-psabi -I tflite_export tflite_export/fuzz/mutate_driver.c \
 *     tflite_export/fuzz/fuzz_fused_op.c tflite_export/tfc_*.c -lm -pthread -o /tmp/fuzz_a64
 *   python tflite_export/fuzz/make_corpus.py --fused /tmp/corpus_fused
 *   ASAN_OPTIONS=detect_leaks=0 qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a53 \
 *     /tmp/fuzz_a64 /tmp/corpus_fused 600 1
 *
 * Arguments: corpus directory, seconds, random seed.  Prints the executions and exits 0. */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
void __asan_set_death_callback(void (*callback)(void)) __attribute__((weak));

enum { MAX_SEEDS = 4096, MAX_LEN = 16384 };
static uint8_t* seeds[MAX_SEEDS];
static size_t lens[MAX_SEEDS];
static uint8_t current[MAX_LEN];
static size_t current_len;

static void dump_current(void) {
  FILE* f = fopen("crash-input", "wb");
  if (f == NULL) return;
  fwrite(current, 1, current_len, f);
  fclose(f);
  fprintf(stderr, "mutate_driver: the failing input (%zu bytes) is in ./crash-input\n", current_len);
}

/* abort() (a guard check of tfc_free64 or of the fuzz target's output) */
static void on_abort(int sig) {
  dump_current();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* The corpus files in name order (not the directory's order), so that a corpus and a random
 * seed give the same run on any machine. */
static int load_corpus(const char* dir) {
  struct dirent** names;
  const int m = scandir(dir, &names, NULL, alphasort);
  if (m < 0) return -1;
  int n = 0;
  char path[4096];
  for (int i = 0; i < m; ++i) {
    const struct dirent* e = names[i];
    if (e->d_name[0] != '.' && n < MAX_SEEDS) {
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      FILE* f = fopen(path, "rb");
      uint8_t* buf = f != NULL ? malloc(MAX_LEN) : NULL;
      if (buf != NULL) {
        lens[n] = fread(buf, 1, MAX_LEN, f);
        if (lens[n] == MAX_LEN && fgetc(f) != EOF)
          fprintf(stderr, "mutate_driver: %s is longer than %d bytes: only its start runs\n", path, MAX_LEN);
        seeds[n++] = buf;
      }
      if (f != NULL) fclose(f);
    }
    free(names[i]);
  }
  free(names);
  return n;
}

static void run(const uint8_t* data, size_t len) {
  memcpy(current, data, len);
  current_len = len;
  /* the target gets an exact-size copy, so AddressSanitizer sees reads past its end */
  uint8_t* copy = malloc(len ? len : 1);
  if (copy == NULL) return;
  memcpy(copy, data, len);
  LLVMFuzzerTestOneInput(copy, len);
  free(copy);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s CORPUS_DIR SECONDS SEED\n", argv[0]);
    return 2;
  }
  const int n = load_corpus(argv[1]);
  if (n <= 0) {
    fprintf(stderr, "mutate_driver: no seeds in %s\n", argv[1]);
    return 2;
  }
  const double seconds = atof(argv[2]);
  srand((unsigned)strtoul(argv[3], NULL, 10));
  if (__asan_set_death_callback) __asan_set_death_callback(dump_current);
  signal(SIGABRT, on_abort);
  for (int i = 0; i < n; ++i) run(seeds[i], lens[i]);
  const time_t start = time(NULL);
  unsigned long execs = (unsigned long)n;
  static uint8_t buf[MAX_LEN];
  while (difftime(time(NULL), start) < seconds) {
    const int s = rand() % n;
    size_t len = lens[s];
    memcpy(buf, seeds[s], len);
    if (len > 0 && rand() % 16 == 0) {
      len = (size_t)rand() % len; /* truncation */
    } else {
      const int k = 1 + rand() % 8;
      for (int m = 0; m < k && len > 0; ++m) {
        const size_t at = (size_t)rand() % len;
        switch (rand() % 3) {
          case 0: buf[at] = (uint8_t)rand(); break;
          case 1: buf[at] ^= (uint8_t)(1u << (rand() % 8)); break;
          default: buf[at] = (uint8_t)(buf[at] + (rand() % 2 ? 1 : -1)); break;
        }
      }
    }
    run(buf, len);
    ++execs;
  }
  printf("mutate_driver: %lu executions in %.0f s, no failure\n", execs, seconds);
  return 0;
}
