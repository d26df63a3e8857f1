// A function template's instances (docs/architecture.md §15). A function
// template is an ordinary sandbox whose runner was given a fork socket
// (SandboxSpec::fork_fd): once its function is loaded it never serves a
// request, it only forks. Each fork is an instance: the loaded function in
// a process of its own, with a fresh channel and log pipe, in a cgroup leaf
// of its own (its own memory, pids and CPU limits and its own accounting),
// but inside its template's namespaces, as its template's host uid.
// Instances of one function are therefore isolated from every other
// function and from the host exactly as a sandbox is, but not from each
// other: the same trust boundary as a warm sandbox that serves the
// function's requests one after another.
//
// Nothing flows from the template to the spawner but bytes on a pipe. The
// fork socket is one-way (shut for reading on our side before the template
// exists, so no fd can ever be queued to us: closing the last reference to
// a file can block its closer, e.g. a lingering TCP socket). The instance
// joins its leaf itself, by writing 0 to the leaf's cgroup.procs files that
// we opened (the open file carries our credentials and cgroup namespace),
// so we never look a pid up, and nothing outside the template's PID
// namespace can be moved or killed through a leaf: a pid written there is
// resolved in the writer's namespace.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

struct InstanceRequest {
  int fork_sock = -1;  // our end of the template's fork socket (send only)
  std::string id;      // the leaf's name
  Limits limits;
  // A fork takes milliseconds; the spawner is single-threaded (every
  // sandbox waits with it), so it waits this long at most. Past it:
  // ETIMEDOUT, and the pool gives up on the template.
  int timeout_ms = 500;
};

class ForkedInstance {
 public:
  ForkedInstance() = default;
  ForkedInstance(ForkedInstance&& o) noexcept { *this = std::move(o); }
  ForkedInstance& operator=(ForkedInstance&& o) noexcept;
  ~ForkedInstance() { (void)destroy(); }

  // Makes the leaf, asks the template for an instance that joins it, and
  // adopts it. channel and log are the gateway's ends of the instance's
  // request channel and log pipe (log non-blocking).
  static Result<ForkedInstance> fork(const CgroupLayout& layout, const InstanceRequest& req,
                                     ChannelFds* channel, UniqueFd* log);

  // The processes in its leaf (the instance and what it started).
  std::vector<pid_t> procs() const { return leaf_.procs(); }
  CgroupEvents events() const { return leaf_.events(); }
  Status set_memory_limit(uint64_t bytes) { return leaf_.set_memory_limit(bytes); }
  Result<FreezeSwitch> freeze_switch() const { return leaf_.freeze_switch(); }
  // Kills everything in its leaf and removes it. Idempotent.
  Status destroy() { return leaf_.valid() ? leaf_.destroy() : Status{}; }

 private:
  CgroupLeaf leaf_;
};

}  // namespace nsbox
