// A sandbox's PID 1 once the runner has started: its seccomp filter and its
// reaping loop, shared by nsbox-init (tools/nsbox_init.cpp) and child.cpp's
// init_loop, which runs them in-process where PID 1 cannot exec nsbox-init
// and so keeps a copy of its creator's memory. The filter (with
// PR_SET_DUMPABLE 0) is what makes PID 1 useless to a function that would
// take it over. Calls nothing in libc (raw_syscall.hpp): nsbox-init is
// linked without one.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

namespace nsbox {

// A fixed allowlist in C++, not a policy file: it is part of the mechanism
// (what init_reap calls after loading it: wait4, exit_group), identical for
// every policy, and a policy must not be able to widen it. Everything else
// kills the process, and with it the sandbox. Static storage: built once at
// compile time, so the child only passes a pointer.
const sock_fprog* init_seccomp_program();

// Closes every fd, loads the filter above when load_filter (no_new_privs
// must be set already), then reaps orphans until the runner ends and exits
// with its status (128 + signal if it was killed): PID 1's exit kills the
// rest of the namespace. Exits 126 if the filter cannot be loaded. Allocates
// nothing: safe in a child of clone().
[[noreturn]] void init_reap(pid_t runner, bool load_filter);

}  // namespace nsbox
