// System calls without libc: for nsbox-init (tools/nsbox_init.cpp), which
// is linked with no C library at all. A static glibc's start-up asks the CPU
// for its cache sizes with dozens of CPUID instructions, and in a virtual
// machine each one traps to the hypervisor: ~0.5 ms of a sandbox's setup on
// the cloud hosts nsbox runs on, against ~0.08 ms for the bare exec
// (docs/benchmarks.md, part 22). Returns the kernel's value: -errno on
// failure, as the syscall instruction leaves it; errno is never touched.
#pragma once

#include <sys/syscall.h>

namespace nsbox {

inline long raw_syscall(long nr, long a = 0, long b = 0, long c = 0, long d = 0) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
  return x0;
#else
#error "raw_syscall: add this architecture's system call instruction"
#endif
}

[[noreturn]] inline void raw_exit(int status) {
  for (;;) raw_syscall(SYS_exit_group, status);
}

}  // namespace nsbox
