// What a process's memory really costs, from /proc/PID/smaps_rollup: RSS
// counts every page it maps, shared or not; PSS divides each page by the
// number of processes mapping it; USS counts only the pages no other
// process maps. A sandbox cloned from a template shares most of its heap
// with the template copy-on-write: its USS is what it adds, its PSS its
// fair share, and the cgroup's charge only the pages it was charged for.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace nsbox {

struct ProcessMemory {
  uint64_t rss = 0;  // bytes
  uint64_t pss = 0;
  uint64_t uss = 0;  // Private_Clean + Private_Dirty
  uint32_t processes = 0;
};

// Pure: the fields of one smaps_rollup text (kB) in bytes; processes = 1.
ProcessMemory parse_smaps_rollup(const std::string& text);
// root and all its descendants, summed. An error when root is gone.
Result<ProcessMemory> read_tree_memory(pid_t root);
// These processes (a cgroup leaf's), summed; those gone meanwhile are left out.
ProcessMemory read_pids_memory(const std::vector<pid_t>& pids);

}  // namespace nsbox
