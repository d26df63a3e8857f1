// Starting a helper program from the daemon. The daemon has threads and a
// large address space, so it never forks: helpers are posix_spawn'd, and
// each starts with exactly the fds it is given.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.hpp"

namespace nsbox {

// One fd of the child's: `target` in the child is a copy of the parent's
// `source`, or /dev/null (write-only) when source is -1.
struct ChildFd {
  int target;
  int source;
};

// Spawns argv[0] (a path, not searched) with env. The child's fd 0 is
// /dev/null and `fds` are set up in order; every other fd above the highest
// target is closed (those below it, e.g. 2 when not given, are inherited).
// The signal mask is emptied and SIGPIPE is back to its default: the daemon
// ignores it, and exec would keep it ignored. own_group: a process group of
// its own, so that a kill of the group reaches its children too.
Result<pid_t> spawn_program(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env, const std::vector<ChildFd>& fds,
                            bool own_group = false);

}  // namespace nsbox
