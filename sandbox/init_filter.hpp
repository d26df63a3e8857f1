// The seccomp filter of a sandbox's PID 1, the reaper that stays behind when
// the runner execs. PID 1 never execs, so it keeps a copy of its creator's
// memory; the filter (with PR_SET_DUMPABLE 0) is what makes it useless to a
// function that would take it over.
#pragma once

#include <linux/filter.h>

namespace nsbox {

// A fixed allowlist in C++, not a policy file: it is part of the mechanism
// (what init_loop in child.cpp calls after loading it: wait4, exit_group),
// identical for every policy, and a policy must not be able to widen it.
// Everything else kills the process, and with it the sandbox. Static storage:
// built once at compile time, so the child only passes a pointer.
const sock_fprog* init_seccomp_program();

}  // namespace nsbox
