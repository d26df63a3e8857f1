// The host's process-wide limits that cap how many sandboxes one daemon can
// hold: open files (the gateway and the spawner keep a few fds per sandbox)
// and the kernel's pid space (each sandbox is at least two processes).
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <string>

namespace nsbox {

// Raises RLIMIT_NOFILE's soft limit to its hard limit and, when want is
// above that, the hard limit towards want (never past /proc/sys/fs/nr_open;
// only a process with CAP_SYS_RESOURCE may raise a hard limit). Returns the
// soft limit now in force.
rlim_t raise_open_files(rlim_t want);

// Room for the sandboxes' RLIMIT_CORE of 1 (sandbox/privileges.cpp): a hard
// limit of 0 cannot be raised from inside their user namespaces, and 0 lets
// a piped core_pattern start the host's handler for every crash. Raises a
// hard limit of 0 to 1 (root only); false when it stays 0.
bool raise_core_limit_to_one();
// Whether kernel.core_pattern hands dumps to a program ("|...") or a socket
// ("@..."), which ignore a core limit of 0.
bool core_pattern_pipes();
inline constexpr char kCoreLimitWarning[] =
    "the hard RLIMIT_CORE is 0 and could not be raised (no CAP_SYS_RESOURCE), and "
    "kernel.core_pattern pipes: a crash in a sandbox starts the host's core handler; start nsbox "
    "with a hard core limit of at least 1 (ulimit -Hc, LimitCORE=)";

// Whether this process holds CAP_SYS_RESOURCE (its effective set), which
// root lacks in some containers: without it the sandboxes' oom_score_adj
// of 1000 is no floor (sandbox/sandbox.cpp), and the core limit and the
// daemon's -900 cannot be set.
bool have_cap_sys_resource();
inline constexpr char kNoOomFloorWarning[] =
    "no CAP_SYS_RESOURCE (a container?): sandboxes start with oom_score_adj 1000 but may lower it "
    "back to 0, so under memory pressure the OOM killer may pick another process before them";

// /proc/sys/kernel/pid_max; 0 when unreadable.
uint64_t pid_max();

// The host setting that keeps a user without privileges from making a
// usable user namespace (rootless sandboxes need one), as one sentence
// naming the setting, its value and what lifts it; empty when none is set
// (the user may still have used up user.max_user_namespaces). AppArmor's
// restriction is named only while this process is unconfined: a profile of
// nsbox's own decides for it. sysctls: the root of the sysctl tree;
// self_attr: this process's LSM attributes (/proc/self/attr); both others
// for tests.
std::string userns_restriction(const std::string& sysctls = "/proc/sys",
                               const std::string& self_attr = "/proc/self/attr");

}  // namespace nsbox
