/* QEMU TCG plugin (API v1, QEMU 7.2): counts executed guest instructions.
 *
 * Debian ships no qemu-plugin.h, so the few API functions used are declared here.
 * Build:  gcc -O2 -shared -fPIC -o insn_count.so insn_count.c
 * Run:    qemu-aarch64 -plugin ./insn_count.so,out=/tmp/counts.txt PROGRAM ...
 *
 * Regions: the guest makes the (otherwise unused) system call TFC_MARK_SYSCALL with
 * a1 = an id of its choice; the plugin writes "mark <id> <instructions so far>" to the
 * output file, so the count of a region is the difference of two marks. At exit it writes
 * "total <instructions>". Code ranges: the system call TFC_RANGE_SYSCALL with a1 = category
 * (< 32), a2 = first guest address, a3 = end address registers a range; instructions of
 * translation blocks that START in a range are also added to its category's counter, and
 * marks then print "mark <id> <total> <category 0> ... <category 31>". Register ranges
 * before the code in them first runs (blocks already translated are not re-classified).
 * Option tbprof=PATH: at exit, writes "vaddr n_insns executions" of every block executed
 * between an even mark and the next odd mark (the regions; a profile to find which functions
 * ran; map addresses to symbols with the load bases). The count is added per executed translation block (inline, no
 * helper call); a block left early by an exception is counted whole (negligible here).
 * Guest threads share one counter (not atomic): measure single-threaded regions. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TFC_MARK_SYSCALL 0x7f1cLL
#define TFC_RANGE_SYSCALL 0x7f1dLL
#define NCAT 32
#define MAXR 65536

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t; /* only passed through */
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*syscall_cb_t)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t, uint64_t,
                             uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, syscall_cb_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed, per_cat[NCAT];
static struct { uint64_t lo, hi; unsigned cat; } ranges[MAXR]; /* sorted by lo */
static int nranges;
static FILE *out;
struct tbrec { uint64_t vaddr, n, execs, start, region; struct tbrec *next; };
static struct tbrec *tbrecs;
static char *tbprof_path;

static int find_cat(uint64_t pc) {
  int a = 0, b = nranges; /* last range with lo <= pc */
  while (b - a > 1) { int m = (a + b) / 2; if (ranges[m].lo <= pc) a = m; else b = m; }
  if (nranges && ranges[a].lo <= pc && pc < ranges[a].hi) return (int)ranges[a].cat;
  return -1;
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  uint64_t n = qemu_plugin_tb_n_insns(tb);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
  if (tbprof_path) {
    struct tbrec *r = calloc(1, sizeof *r);
    if (r) {
      r->vaddr = qemu_plugin_tb_vaddr(tb); r->n = n; r->next = tbrecs; tbrecs = r;
      qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &r->execs, 1);
    }
  }
  if (nranges) {
    int c = find_cat(qemu_plugin_tb_vaddr(tb));
    if (c >= 0) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                                         &per_cat[c], n);
  }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8) {
  (void)id; (void)vcpu; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
  if (num == TFC_RANGE_SYSCALL && a1 < NCAT && a2 < a3 && nranges < MAXR) {
    int i = nranges++; /* insertion keeps the array sorted */
    while (i > 0 && ranges[i - 1].lo > a2) { ranges[i] = ranges[i - 1]; i--; }
    ranges[i].lo = a2; ranges[i].hi = a3; ranges[i].cat = (unsigned)a1;
    return;
  }
  if (num != TFC_MARK_SYSCALL) return;
  for (struct tbrec *r = tbrecs; r; r = r->next) {
    if (a1 % 2 == 0) r->start = r->execs;
    else r->region += r->execs - r->start;
  }
  fprintf(out, "mark %" PRIu64 " %" PRIu64, a1, executed);
  for (int c = 0; c < NCAT; c++) fprintf(out, " %" PRIu64, per_cat[c]);
  fputc('\n', out);
  fflush(out);
}

static void on_exit_cb(qemu_plugin_id_t id, void *p) {
  (void)id; (void)p;
  fprintf(out, "total %" PRIu64 "\n", executed);
  if (out != stderr) fclose(out);
  FILE *f = tbprof_path ? fopen(tbprof_path, "w") : NULL;
  for (struct tbrec *r = tbrecs; f && r; r = r->next)
    if (r->region) fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", r->vaddr, r->n, r->region);
  if (f) fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv) {
  (void)info;
  out = stderr;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "arg=", 4) == 0) a += 4;
    if (strncmp(a, "out=", 4) == 0 && !(out = fopen(a + 4, "w"))) return -1;
    if (strncmp(a, "tbprof=", 7) == 0) tbprof_path = strdup(a + 7);
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
  qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
  qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
  return 0;
}
