// One sandbox, parent side: prepares the plan, clones the child into its
// namespaces, attaches cgroups, writes id maps, releases the child and owns
// everything it made until destroy() (kill via pidfd, reap, remove cgroup).
// It keeps no fd per sandbox but the uid slot's lock: the spawner holds
// thousands of Sandboxes, and its open files bound how many.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/child.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/seccomp.hpp"
#include "sandbox/spec.hpp"
#include "sandbox/template.hpp"
#include "sandbox/uid_slots.hpp"

namespace nsbox {

struct SetupTimings {
  uint64_t prepare_ns = 0;                         // parent: start() entered
  uint64_t clone_ns = 0;                           // parent: before clone3
  uint64_t cloned_ns = 0;                          // parent: clone3 returned
  uint64_t released_ns = 0;                        // parent: child released
  std::array<uint64_t, kStepCount> step_end_ns{};  // child: end of each step
  uint64_t ready_ns = 0;                           // parent: saw exec succeed
};

// One line, each step's share in ms in the order they ran, for `-v`: "parent:
// prepare 0.150 ms; clone3 0.500 ms; ...; ready after 3.100 ms".
std::string format_timings(const SetupTimings& t);

// Parts of a sandbox a spawner makes while no request waits, off the cold
// start's path. Each is empty and never used before one sandbox takes it.
struct MadeAhead {
  CgroupLeaf leaf;  // made with exactly spec.limits
  UniqueFd netns;   // make_network_namespace() (netns.hpp); uses_made_netns() only
};

// Whether a sandbox of `spec` takes a network namespace made ahead when one
// is there: root mode, from kLayerNet up. Rootless mode makes its own, in
// the sandbox's user namespace: an unprivileged spawner can make none outside.
inline bool uses_made_netns(const SandboxSpec& spec) {
  return !spec.ids.rootless && spec.layers >= kLayerNet;
}

class Sandbox {
 public:
  Sandbox() = default;
  Sandbox(Sandbox&& o) noexcept { *this = std::move(o); }
  Sandbox& operator=(Sandbox&& o) noexcept;
  ~Sandbox();

  // cgroups: the layout to create the leaf in; ignored when
  // spec.use_cgroups is false. from_template: cloned by that template
  // (template.hpp) rather than by this process; PID 1 is ours either way.
  // made: what a spawner made ahead for this sandbox (MadeAhead), each
  // taken instead of making one.
  static Result<Sandbox> start(const SandboxSpec& spec, const SeccompProgram& bpf,
                               const CgroupLayout& cgroups,
                               TemplateProcess* from_template = nullptr, MadeAhead made = {});

  pid_t pid() const { return pid_; }
  const ChannelFds& channel() const { return channel_; }
  // Hands the request channel to a new owner (the spawner passes it on to
  // the gateway and keeps no copy).
  ChannelFds take_channel() { return std::move(channel_); }
  const SetupTimings& timings() const { return timings_; }
  CgroupEvents events() const { return cgroup_.events(); }
  // Changes the memory limit of a running sandbox (a pool sandbox made with
  // the policy's limit and assigned to a function with its own).
  Status set_memory_limit(uint64_t bytes) { return cgroup_.set_memory_limit(bytes); }
  bool has_cgroup() const { return cgroup_.valid(); }
  // The processes in its cgroup leaf (a function template's: without the
  // instances it forked, which have leaves of their own).
  std::vector<pid_t> cgroup_procs() const { return cgroup_.procs(); }
  // Root mode: the host uid range of this sandbox (uid_slots.hpp).
  const UidSlot& slot() const { return slot_; }
  // An fd of the leaf's freeze switch for the pool (invalid without one).
  Result<FreezeSwitch> freeze_switch() const { return cgroup_.freeze_switch(); }
  bool can_freeze() const { return cgroup_.can_freeze(); }
  // Freezes or thaws the leaf (a function template between its forks).
  Status set_frozen(bool frozen) const { return cgroup_.set_frozen(frozen); }

  void kill();
  // Reaps PID 1 if it has exited (wait_ms = 0) or waits up to wait_ms;
  // returns true once reaped, with the wait status in *status.
  bool reap(int wait_ms, int* status);
  // Kills, reaps and removes the cgroup leaf. Idempotent.
  Status destroy();

 private:
  struct Launch;
  Status parent_prepare(const SandboxSpec& spec, const SeccompProgram& bpf, MadeAhead made,
                        const CgroupLayout& cgroups, Launch& l);
  Status parent_clone(Launch& l);
  Status parent_after_clone(const SandboxSpec& spec, Launch& l);
  Status parent_await_exec(Launch& l);
  // A pidfd of PID 1, opened now; invalid once reaped, or when none could
  // be opened (then *gone says whether PID 1 is no longer ours).
  UniqueFd open_pidfd(bool* gone) const;

  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  ChannelFds channel_;
  CgroupLeaf cgroup_;
  UidSlot slot_;  // released only once PID 1 is reaped
  SetupTimings timings_;
};

}  // namespace nsbox
