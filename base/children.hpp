// A process's children, from /proc (CONFIG_PROC_CHILDREN, on in every
// distribution kernel): the subreapers and the memory report walk them.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nsbox {

// What the owners, the uid slots and the subreapers read of
// /proc/PID/stat: comm is in parentheses and may hold spaces and ')', so
// the fields after it are counted from its last ')'.
struct ProcStat {
  std::string comm;
  char state = 0;  // R, S, D, Z, X, ...
  pid_t ppid = 0;
  unsigned long long start_time = 0;  // field 22, clock ticks after boot
};
std::optional<ProcStat> parse_proc_stat(std::string_view text);
// nullopt when pid is gone or its stat cannot be read.
std::optional<ProcStat> read_proc_stat(pid_t pid);

// SIGKILLs every child of this process, by pidfd and only while its parent
// is still this process (another thread may reap one, and its pid be
// reused), in rounds: as a subreaper, this process inherits what each
// killed one had started. reap: this thread waits for each (the subreaper's
// own thread); otherwise another thread reaps, and the rounds wait 5 ms
// for it, at most 20 of them.
void kill_our_children(bool reap);

// The processes whose parent is pid (0: this process), from every thread's
// children list: a child is listed under the thread that forked it, and an
// orphan reparented to a subreaper under whichever thread took it. Empty
// when pid is gone. A child that exits meanwhile may still be listed.
std::vector<pid_t> child_pids(pid_t pid = 0);

}  // namespace nsbox
