// A process's children, from /proc (CONFIG_PROC_CHILDREN, on in every
// distribution kernel): the subreapers and the memory report walk them.
#pragma once

#include <sys/types.h>

#include <vector>

namespace nsbox {

// The processes whose parent is pid (0: this process), from every thread's
// children list: a child is listed under the thread that forked it, and an
// orphan reparented to a subreaper under whichever thread took it. Empty
// when pid is gone. A child that exits meanwhile may still be listed.
std::vector<pid_t> child_pids(pid_t pid = 0);

}  // namespace nsbox
