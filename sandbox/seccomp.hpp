// Seccomp: compile a policy's allowlist to BPF in the parent (once, cached on
// disk by a hash of the resolved policy), load the ready program in the child
// as the very last step before exec (STYLE.md habits 4 and 5).
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "sandbox/result.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

struct SeccompProgram {
  std::vector<sock_filter> insns;
  sock_fprog fprog() const {
    return sock_fprog{static_cast<unsigned short>(insns.size()),
                      const_cast<sock_filter*>(insns.data())};
  }
};

// True when libseccomp knows the name on this architecture.
bool seccomp_syscall_known(const std::string& name);

// The text the cache key is computed from: everything that changes the BPF.
std::string seccomp_canonical(const SeccompPolicy& policy);

// Compiles with libseccomp. Beyond the allowlist, two argument rules that a
// list cannot express: clone is allowed only without namespace flags, and
// clone3 (whose flags live in memory seccomp cannot read) gets ENOSYS, so
// glibc falls back to clone.
Result<SeccompProgram> seccomp_compile(const SeccompPolicy& policy);

// Compile or load from cache_dir (ignored when empty or not private to us).
Result<SeccompProgram> seccomp_get(const SeccompPolicy& policy, const std::string& cache_dir);

// Child side: no allocation. Requires no_new_privs to be set already.
int child_load_seccomp(const sock_fprog* prog);

}  // namespace nsbox
