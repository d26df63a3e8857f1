// Child-side process hardening steps, each a short function with no
// allocation: hostname, loopback, rlimits, privilege drop.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <vector>

#include "sandbox/spec.hpp"

namespace nsbox {

struct RlimitSetting {
  int resource;
  rlim_t value;
};

// Signals a sandbox may have queued at once (RLIMIT_SIGPENDING): plenty for
// any program, a small share of a user's (tens of thousands). Rootless,
// where every sandbox is the user's own uid and all of them draw on one
// allowance, less: 256 sandboxes then hold at most 16,384.
constexpr rlim_t kSandboxSigpending = 1024;
constexpr rlim_t kRootlessSigpending = 64;

// Pure: the rlimits a sandbox gets. Without cgroups the memory, pids and cpu
// limits fall back to RLIMIT_AS, RLIMIT_NPROC and RLIMIT_CPU (weaker: per
// process, not per sandbox).
// rootless: every sandbox is the caller's own uid (a smaller share of its
// queued signals, kRootlessSigpending).
std::vector<RlimitSetting> plan_rlimits(const Limits& limits, bool have_cgroups, bool rootless);

int child_set_hostname(const char* name);
int child_loopback_up();
// Lowers each limit (soft and hard); never raises a hard limit, which needs
// the initial namespace.
int child_set_rlimits(const RlimitSetting* settings, size_t n, const RlimitSetting** failed);
// crun's order: bounding set, groups, setres[gu]id, capset to empty, ambient
// cleared, no_new_privs. On failure *step names what failed.
int child_drop_privileges(uid_t uid, gid_t gid, bool clear_groups, const char** step);
// Below kLayerPrivileges (nsbox bench layers): groups, gid and uid only.
int child_change_ids(uid_t uid, gid_t gid, bool clear_groups, const char** step);

}  // namespace nsbox
