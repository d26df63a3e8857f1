#include "sandbox/init_reaper.hpp"

#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cerrno>

#include "sandbox/raw_syscall.hpp"

namespace nsbox {

namespace {

#if defined(__x86_64__)
constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#else
#error "init_reaper: add this architecture's AUDIT_ARCH"
#endif

// x32 syscalls share the x86_64 arch value and are told apart by this bit.
constexpr unsigned kX32Bit = 0x40000000;

constexpr unsigned kNr = offsetof(struct seccomp_data, nr);
constexpr unsigned kArchOff = offsetof(struct seccomp_data, arch);

#define ALLOW_NR(nr) \
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

sock_filter kProgram[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArchOff),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    // waitpid() is wait4 on both architectures; _exit() is exit_group.
    ALLOW_NR(SYS_wait4),
    ALLOW_NR(SYS_exit_group),
    ALLOW_NR(SYS_exit),
    // A stop/continue from the host may interrupt wait4; the kernel restarts
    // it through these.
    ALLOW_NR(SYS_restart_syscall),
    ALLOW_NR(SYS_rt_sigreturn),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
};

#undef ALLOW_NR

const sock_fprog kFprog = {sizeof kProgram / sizeof kProgram[0], kProgram};

}  // namespace

const sock_fprog* init_seccomp_program() {
  return &kFprog;
}

void init_reap(pid_t runner, bool load_filter) {
  raw_syscall(SYS_close_range, 0, ~0U, 0);
  if (load_filter &&
      raw_syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, reinterpret_cast<long>(&kFprog)) != 0)
    raw_exit(126);
  for (;;) {
    int st = 0;
    long w = raw_syscall(SYS_wait4, -1, reinterpret_cast<long>(&st), 0, 0);
    if (w == runner) raw_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    if (w == -ECHILD) raw_exit(127);
  }
}

}  // namespace nsbox
