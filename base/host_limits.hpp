// The host's process-wide limits that cap how many sandboxes one daemon can
// hold: open files (the gateway and the spawner keep a few fds per sandbox)
// and the kernel's pid space (each sandbox is at least two processes).
#pragma once

#include <sys/resource.h>

#include <cstdint>

namespace nsbox {

// Raises RLIMIT_NOFILE's soft limit to its hard limit and, when want is
// above that, the hard limit towards want (never past /proc/sys/fs/nr_open;
// only a process with CAP_SYS_RESOURCE may raise a hard limit). Returns the
// soft limit now in force.
rlim_t raise_open_files(rlim_t want);

// /proc/sys/kernel/pid_max; 0 when unreadable.
uint64_t pid_max();

}  // namespace nsbox
