// Seccomp: compile a policy's allowlist to BPF in the parent (once, cached on
// disk by a hash of the resolved policy), load the ready program in the child
// as the very last step before exec (CONTRIBUTING.md §2).
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "base/result.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

struct SeccompProgram {
  std::vector<sock_filter> insns;
  sock_fprog fprog() const {
    return sock_fprog{static_cast<unsigned short>(insns.size()),
                      const_cast<sock_filter*>(insns.data())};
  }
};

// Whether name is spelt as a syscall's is: lowercase letters, digits and
// '_' only. libseccomp reads names as C strings, so "unshare\0x" compared
// whole with the lists here is another name, but resolves to unshare.
bool seccomp_name_spelt(const std::string& name);
// True when the name is spelt as a syscall's and libseccomp knows it on
// this architecture.
bool seccomp_syscall_known(const std::string& name);

// Why no policy may allow syscall `name`, or nullptr when one may: what it
// would give a function (new namespaces, mounts, other processes' memory,
// the kernel's attack surface of io_uring, bpf or keyrings, host-wide state).
// seccomp_compile refuses such a policy; the policy parser says where.
const char* seccomp_never_allowed(const std::string& name);

// The text the cache key is computed from: everything that changes the BPF.
std::string seccomp_canonical(const SeccompPolicy& policy);

// Compiles with libseccomp. Beyond the allowlist, argument rules that a
// list cannot express, added whatever the policy says: clone is allowed only
// without namespace flags; clone3 (whose flags live in memory seccomp cannot
// read) gets ENOSYS, so glibc falls back to clone; ioctl with TIOCSTI,
// TIOCLINUX, TIOCSETD or TIOCCONS gets EPERM; socket and socketpair with a
// family other than AF_UNIX, AF_INET, AF_INET6 get EAFNOSUPPORT. The last two
// compare only the low 32 bits of the argument, as the kernel reads it.
Result<SeccompProgram> seccomp_compile(const SeccompPolicy& policy);

// Compiled filters kept in a cache dir, the most recently used.
inline constexpr size_t kSeccompCacheFiles = 64;

// Compile or load from cache_dir (ignored when empty or not private to us).
Result<SeccompProgram> seccomp_get(const SeccompPolicy& policy, const std::string& cache_dir);

// Child side: no allocation. Requires no_new_privs to be set already.
int child_load_seccomp(const sock_fprog* prog);

}  // namespace nsbox
