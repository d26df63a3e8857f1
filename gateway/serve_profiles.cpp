#include "gateway/serve_profiles.hpp"

#include <algorithm>

#include "policies/policy.hpp"
#include "rootfs/runner_spec.hpp"
#include "sandbox/seccomp.hpp"

namespace nsbox {

Result<ServeProfiles> build_serve_profiles(const ServeConfig& config, const std::string& rootfs,
                                           const std::string& stage_dir,
                                           const std::string& cache_dir, bool cpu_grouped) {
  std::vector<std::string> names = builtin_policy_names();
  std::stable_partition(names.begin(), names.end(),
                        [&](const std::string& n) { return n == config.default_policy; });
  if (names.empty() || names[0] != config.default_policy)
    return make_error("default_policy",
                      "default_policy \"" + config.default_policy + "\" is not a built-in policy");
  ServeProfiles out;
  for (const auto& n : names) {
    Policy p = TRY(load_policy(n));
    // Without a cpu cgroup of their own, sandboxes in the root cpu group
    // are scheduled by session (the kernel's autogroups): each setsid() is
    // a new group as heavy as a whole other tenant or the daemon, so a
    // function with 60 children in sessions of their own took ~10x its
    // share (a review: another function got 0.3 CPU-seconds of 4.8).
    // setsid is then refused (EPERM), whatever the policy allows; a
    // sandbox's own session is made before its filter. (Where the shared
    // group is not the root one, as nsbox-nocpu/ on a v2 host with cpu at
    // its root, setsid would be harmless; it is refused all the same, one
    // rule being easier to trust.)
    if (!cpu_grouped) std::erase(p.seccomp.allow, std::string("setsid"));
    auto bpf = seccomp_get(p.seccomp, cache_dir);
    if (!bpf) return make_error("seccomp", "policy " + n + ": seccomp: " + bpf.error().message());
    SpawnProfile sp;
    // Blank: no function; the spawner sets id, memory and stderr per spawn.
    sp.spec = runner_spec(p, rootfs, stage_dir, caller_ids());
    sp.spec.layers = config.layers;
    sp.bpf = bpf.value();
    out.spawn.push_back(sp);
    out.memory.push_back(p.limits.memory_bytes);
    out.infos.push_back({n, p});
  }
  if (Status s = check_memory_budget(config, out.infos); !s)
    return make_error("memory_budget_mb", s.error().message());
  return out;
}

Status check_memory_budget(const ServeConfig& c, const std::vector<ProfileInfo>& infos) {
  if (c.memory_budget_bytes == 0) return {};
  for (const auto& info : infos)
    if (info.policy.limits.memory_bytes > c.memory_budget_bytes)
      return make_error("memory_budget_mb",
                        std::to_string(c.memory_budget_bytes >> 20) +
                            " MiB cannot hold one sandbox of policy \"" + info.name + "\" (" +
                            std::to_string(info.policy.limits.memory_bytes >> 20) +
                            " MiB): raise [pool] memory_budget_mb in " + c.source +
                            " to at least that, or set it to 0 (auto)");
  return {};
}

}  // namespace nsbox
