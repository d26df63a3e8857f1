// Preloaded into Debian 12's UML kernel (tools/uml/run.sh) so that it runs on
// hosts whose XSAVE area is larger than the one it was built for.
//
// UML 6.1 saves and restores its processes' extended registers with
// PTRACE_GETREGSET/SETREGSET(NT_X86_XSTATE) and a buffer sized when it was
// built (2,696 bytes: x87, SSE, AVX, AVX-512 and PKRU). Reading with a short
// buffer is allowed (the kernel truncates), but writing must pass the host's
// whole area, which AMX makes ~11 KiB: the host answers EFAULT and the guest's
// first process dies. Upstream UML sizes the buffer at run time since late
// 2024; no Debian 12 package does.
//
// For a short write, this reads the process's whole area, lays UML's bytes
// over its start and writes the whole. The components past UML's buffer keep
// the values the process has, which is exact for the state they hold (AMX
// tiles: a guest process cannot ask the host for them, so they stay in their
// initial state, and UML's header says so). Every other call passes through.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(enum __ptrace_request, pid_t, void*, void*);

// UML calls ptrace from one host thread only (its kernel threads are
// coroutines on it), and its kernel stacks are too small for the area: a
// static buffer.
static unsigned char whole[64 << 10] __attribute__((aligned(64)));

long ptrace(enum __ptrace_request req, ...) {
  static ptrace_fn real;
  if (!real) real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
  va_list ap;
  va_start(ap, req);
  pid_t pid = va_arg(ap, pid_t);
  void* addr = va_arg(ap, void*);
  void* data = va_arg(ap, void*);
  va_end(ap);
  if (req != PTRACE_SETREGSET || (long)addr != NT_X86_XSTATE || !data)
    return real(req, pid, addr, data);
  struct iovec* given = data;
  struct iovec all = {whole, sizeof whole};
  if (real(PTRACE_GETREGSET, pid, addr, &all) != 0) return -1;
  if (given->iov_len >= all.iov_len) return real(req, pid, addr, data);
  memcpy(whole, given->iov_base, given->iov_len);
  return real(req, pid, addr, &all);
}
