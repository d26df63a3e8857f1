// The seccomp filter of a sandbox's PID 1, the reaper that stays behind when
// the runner starts: loaded by nsbox-init (tools/nsbox_init.cpp), or by
// child.cpp's init_loop where PID 1 cannot exec it and so keeps a copy of
// its creator's memory. The filter (with PR_SET_DUMPABLE 0) is what makes
// PID 1 useless to a function that would take it over.
#pragma once

#include <linux/filter.h>

namespace nsbox {

// A fixed allowlist in C++, not a policy file: it is part of the mechanism
// (what the reaping loop calls after loading it: wait4, exit_group),
// identical for every policy, and a policy must not be able to widen it.
// Everything else kills the process, and with it the sandbox. Static storage:
// built once at compile time, so the child only passes a pointer.
const sock_fprog* init_seccomp_program();

}  // namespace nsbox
