// nsbox-init: a sandbox's PID 1 once setup is done (docs/architecture.md §3,
// step 14). PID 1 forks the runner and then execs this, from a sealed memfd
// the sandbox may execute but not read (sandbox/init_program.hpp), so that it
// stops holding a copy of its parent's address space: the spawner's, or the
// template's whole interpreter. It reaps orphans and exits with the runner's
// status; its exit kills the rest of the namespace.
//
// Static and without a C library: the exec loads nothing from the sandbox's
// root, and no libc start-up runs (sandbox/raw_syscall.hpp: glibc's costs
// ~0.5 ms of CPUID traps per sandbox in a virtual machine). The entry point
// below is the program's whole start-up. An unreadable program leaves the
// process non-dumpable where fs.suid_dumpable is 0 or 2 (0 or root-only);
// this says so again first, for hosts where it is 1, and only then closes
// every fd, the sync socket included: that EOF is what lets the daemon send
// the sandbox its first request.

#include <sys/prctl.h>
#include <sys/syscall.h>

#include "sandbox/init_reaper.hpp"
#include "sandbox/raw_syscall.hpp"

namespace {

// A pid in decimal, as init_loop (sandbox/child.cpp) writes it; 0 for
// anything else, a value above the kernel's largest pid included (none is
// cut down to a pid it does not name).
long parse_pid(const char* s) {
  constexpr long kPidMaxLimit = 4194304;  // PID_MAX_LIMIT on 64-bit
  long v = 0;
  if (*s == '\0') return 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return 0;
    v = v * 10 + (*s - '0');
    if (v > kPidMaxLimit) return 0;
  }
  return v;
}

}  // namespace

// sp points at argc, then argv[0..argc-1] and a null (the ELF entry state).
extern "C" [[noreturn]] __attribute__((used)) void nsbox_init_main(long* sp) {
  using nsbox::raw_syscall;
  raw_syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0);
  // An exec from an fd names the process after the fd's number.
  raw_syscall(SYS_prctl, PR_SET_NAME, reinterpret_cast<long>("nsbox-init"), 0, 0);
  // argv: the runner's pid, and whether to load PID 1's filter.
  long argc = sp[0];
  char** argv = reinterpret_cast<char**>(sp + 1);
  if (argc != 3) nsbox::raw_exit(127);
  long runner = parse_pid(argv[1]);
  const char* filter = argv[2];
  if (runner <= 0 || (filter[0] != '0' && filter[0] != '1') || filter[1] != '\0')
    nsbox::raw_exit(127);
  nsbox::init_reap(static_cast<pid_t>(runner), filter[0] == '1');
}

// The kernel enters with the stack pointer at argc; the ABI wants it
// 16-byte aligned at a call.
#if defined(__x86_64__)
asm(R"(
  .text
  .globl _start
  .type _start, @function
_start:
  xorl %ebp, %ebp
  movq %rsp, %rdi
  andq $-16, %rsp
  call nsbox_init_main
  hlt
)");
#elif defined(__aarch64__)
asm(R"(
  .text
  .globl _start
  .type _start, @function
_start:
  mov x29, #0
  mov x30, #0
  mov x0, sp
  bl nsbox_init_main
  brk #0
)");
#else
#error "nsbox-init: add this architecture's entry point"
#endif
