// The daemon's sandbox profiles: one per built-in policy, loaded and
// compiled to its seccomp filter once at start, each the spawner's recipe
// for a blank sandbox of that policy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "gateway/config.hpp"
#include "gateway/invocation.hpp"
#include "sandbox/spawner.hpp"

namespace nsbox {

struct ServeProfiles {
  std::vector<ProfileInfo> infos;   // the policies, by profile number
  std::vector<SpawnProfile> spawn;  // the spawner's recipes, same order
  std::vector<uint64_t> memory;     // each profile's memory limit, same order
};

// config.default_policy's profile is number 0 (the pool prefills blanks of
// profile 0). cpu_grouped: each sandbox gets a cpu cgroup of its own; when
// not, setsid is taken out of every allowlist (why: serve_profiles.cpp).
// The filters are cached in cache_dir; stage_dir is where sandboxes' stage
// directories go.
Result<ServeProfiles> build_serve_profiles(const ServeConfig& config, const std::string& rootfs,
                                           const std::string& stage_dir,
                                           const std::string& cache_dir, bool cpu_grouped);

// Each profile's sandbox must fit the memory budget: one that cannot would
// leave every request of that policy waiting for room that never comes,
// while /healthz says ok. Refused instead, at start and at reload.
Status check_memory_budget(const ServeConfig& c, const std::vector<ProfileInfo>& infos);

}  // namespace nsbox
