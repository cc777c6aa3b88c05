/* QEMU TCG plugin (API v1, QEMU 7.2): counts executed guest instructions.
 *
 * Debian ships no qemu-plugin.h, so the few API functions used are declared here.
 * Build:  gcc -O2 -shared -fPIC -o insn_count.so insn_count.c
 * Run:    qemu-aarch64 -plugin ./insn_count.so,out=/tmp/counts.txt PROGRAM ...
 *
 * Regions: the guest makes the (otherwise unused) system call TFC_MARK_SYSCALL with
 * a1 = an id of its choice; the plugin writes "mark <id> <instructions so far>" to the
 * output file, so the count of a region is the difference of two marks. At exit it writes
 * "total <instructions>". The count is added per executed translation block (inline, no
 * helper call); a block left early by an exception is counted whole (negligible here).
 * Guest threads share one counter (not atomic): measure single-threaded regions. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TFC_MARK_SYSCALL 0x7f1cLL

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
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, syscall_cb_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;
static FILE *out;

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                           qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8) {
  (void)id; (void)vcpu; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
  if (num != TFC_MARK_SYSCALL) return;
  fprintf(out, "mark %" PRIu64 " %" PRIu64 "\n", a1, executed);
  fflush(out);
}

static void on_exit_cb(qemu_plugin_id_t id, void *p) {
  (void)id; (void)p;
  fprintf(out, "total %" PRIu64 "\n", executed);
  if (out != stderr) fclose(out);
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
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
  qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
  qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
  return 0;
}
