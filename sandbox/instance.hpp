// A function template's instances (docs/architecture.md §15). A function
// template is an ordinary sandbox whose runner was given a fork socket
// (SandboxSpec::fork_fd): once its function is loaded it never serves a
// request, it only forks. Each fork is an instance: the loaded function in
// a process of its own, with a fresh channel and log pipe, moved into a
// cgroup leaf of its own (its own memory, pids and CPU limits and its own
// accounting), but inside its template's namespaces, as its template's
// host uid. Instances of one function are therefore isolated from every
// other function and from the host exactly as a sandbox is, but not from
// each other: the same trust boundary as a warm sandbox that serves the
// function's requests one after another.
//
// The instance is not our child: its template's runner forked it, and
// reaps it. We hold a pidfd and its leaf; killing the leaf kills it and
// whatever it started there.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

// What asking for an instance needs: the template's fork socket (our end,
// with SO_PASSCRED set), its PID 1 (whose PID namespace the instance must
// be in), and what the instance's own leaf is made of.
struct InstanceRequest {
  int fork_sock = -1;
  pid_t template_init = -1;
  std::string id;  // the leaf's name, as a sandbox id
  Limits limits;
  bool use_cgroups = true;
  // A fork takes milliseconds; the spawner waits this long at most (it is
  // single-threaded: every sandbox waits with it). Past it: ETIMEDOUT.
  int timeout_ms = 1000;
};

class ForkedInstance {
 public:
  ForkedInstance() = default;
  ForkedInstance(ForkedInstance&& o) noexcept { *this = std::move(o); }
  ForkedInstance& operator=(ForkedInstance&& o) noexcept;
  ~ForkedInstance() { (void)destroy(); }

  // Asks the template for an instance over its fork socket and adopts it.
  // channel and log are the gateway's ends of the instance's request
  // channel and log pipe (log non-blocking).
  static Result<ForkedInstance> fork(const CgroupLayout& layout, const InstanceRequest& req,
                                     ChannelFds* channel, UniqueFd* log);

  pid_t pid() const { return pid_; }
  bool has_cgroup() const { return leaf_.valid(); }
  CgroupEvents events() const { return leaf_.events(); }
  Status set_memory_limit(uint64_t bytes) { return leaf_.set_memory_limit(bytes); }
  Result<FreezeSwitch> freeze_switch() const { return leaf_.freeze_switch(); }
  // Kills it (the whole leaf) and removes the leaf. Idempotent.
  Status destroy();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  CgroupLeaf leaf_;
};

}  // namespace nsbox
