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
// The text of /proc/PID/stat; empty when pid is gone or hidden from us.
// Callers that must tell "gone" from "unparsable" keep the text.
std::string read_proc_stat_text(pid_t pid);
// nullopt when pid is gone or its stat cannot be read.
std::optional<ProcStat> read_proc_stat(pid_t pid);

// Both SIGKILL every child of this process in rounds: as a subreaper, this
// process inherits what each killed one had started, and the next round
// kills those.
//
// For the thread that is this process's only reaper: each round kills a
// whole generation, then waits for it.
void kill_and_reap_our_children();
// For a thread while another one reaps: kills by pidfd and only while the
// child's parent is still this process (the reaper may have reaped it and
// its pid been reused), and waits 5 ms between rounds, at most 20 of them.
void kill_our_children_reaped_elsewhere();

// The processes whose parent is pid (0: this process), from every thread's
// children list: a child is listed under the thread that forked it, and an
// orphan reparented to a subreaper under whichever thread took it. Empty
// when pid is gone. A child that exits meanwhile may still be listed.
std::vector<pid_t> child_pids(pid_t pid = 0);

}  // namespace nsbox
