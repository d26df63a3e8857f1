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
// a file can block its closer, e.g. a lingering TCP socket).
//
// Getting the instance into its leaf: it writes 0 to files we opened (v1
// `tasks`, v2 cgroup.procs; a write is checked against the opener's
// credentials and cgroup namespace, and a pid written is resolved in the
// writer's PID namespace, so nothing outside the template's can be moved).
// We never look a pid up on its word. But the template may keep those
// files, and a process moved through them is not held to the destination's
// pids.max (only fork is), nor does its memory charge move with it; and
// any write of a pid takes the machine-wide lock that stalls every fork on
// the host. So the files it gets are a join leaf's, which lives for this
// fork only: the instance joins it, we move it on to its own leaf and
// remove the join leaf, after which every write to the kept files fails
// (ENODEV). On v1 the instance joins through `tasks`, which takes no lock
// (a thread moving itself), and our move, which does, waits until the
// gateway has the instance (settle()). A join leaf holding anything else
// at the fork, or refilling, is the template's doing: it is killed (its
// PID namespace, so everything that could write there dies) before the
// leaf goes. The template's family (family.hpp) bounds all of it.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/family.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

struct InstanceRequest {
  int fork_sock = -1;  // our end of the template's fork socket (send only)
  // The template's family (family.hpp): the instance's leaf and its join
  // leaf are made below it, and it grows by the instance's limits while
  // the instance lives.
  std::shared_ptr<TemplateFamily> family;
  std::string id;  // the leaf's name
  Limits limits;
  // A fork takes milliseconds; the spawner is single-threaded (every
  // sandbox waits with it), so it waits this long at most. Past it:
  // ETIMEDOUT, and the pool gives up on the template.
  int timeout_ms = 500;
  // Kills the template's PID 1, and so its whole PID namespace. Called on
  // every failure after the request was sent: the pool drops a template
  // that failed to fork anyway, and only this guarantees that nothing is
  // left to write into the join leaf when it is removed.
  std::function<void()> kill_template;
};

// When each step of ForkedInstance::fork ended, for `serve -v`.
struct InstanceTimings {
  uint64_t start_ns = 0;
  uint64_t leaves_ns = 0;    // its leaf and the join leaf made, files opened
  uint64_t sent_ns = 0;      // the fork request sent
  uint64_t answered_ns = 0;  // the template answered: the instance has joined
  uint64_t moved_ns = 0;     // moved on to its own leaf (v1: the join leaf checked)
  uint64_t done_ns = 0;      // the join leaf removed (v1: = moved_ns)
  uint64_t settled_ns = 0;   // v1: moved on and the join leaf removed (settle())
  bool v1 = false;           // the move and the removal are settle()'s
};

// One line, as format_timings() gives for a sandbox.
std::string format_instance_timings(const InstanceTimings& t);

class ForkedInstance {
 public:
  ForkedInstance() = default;
  ForkedInstance(ForkedInstance&& o) noexcept { *this = std::move(o); }
  ForkedInstance& operator=(ForkedInstance&& o) noexcept;
  ~ForkedInstance() { (void)destroy(); }

  // Makes the leaf, asks the template for an instance that joins it, and
  // adopts it. channel and log are the gateway's ends of the instance's
  // request channel and log pipe (log non-blocking).
  static Result<ForkedInstance> fork(const InstanceRequest& req, ChannelFds* channel,
                                     UniqueFd* log);

  // v1: moves the instance, and whatever it started meanwhile, from its
  // join leaf to its own leaf and removes the join leaf. fork() leaves that
  // to this on v1 because a move by pid takes a machine-wide lock that may
  // wait out an RCU grace period (~10 ms after a pause), and only a thread
  // moving itself skips it: called once the gateway has the instance, the
  // wait is not its request's. Until then the instance serves in its join
  // leaf (the same limits) and, on the hybrid layout, in its template's
  // cgroup2 leaf, so the template is frozen again only after this. A
  // failure kills the template, as in fork(). Idempotent; nothing to do
  // on v2.
  Status settle();
  // The processes in its leaf (the instance and what it started).
  std::vector<pid_t> procs() const { return leaf_.procs(); }
  CgroupEvents events() const { return leaf_.events(); }
  Status set_memory_limit(uint64_t bytes);
  Result<FreezeSwitch> freeze_switch() const { return leaf_.freeze_switch(); }
  // Kills everything in its leaf, removes it and gives its room in the
  // family back (which kills the family if what is left does not fit).
  // Idempotent.
  Status destroy();
  const InstanceTimings& timings() const { return timings_; }

 private:
  std::shared_ptr<TemplateFamily> family_;  // grown by limits_ while set
  Limits limits_;
  CgroupLeaf leaf_;
  InstanceTimings timings_;
  CgroupLeaf join_;                      // v1, until settle()
  std::function<void()> kill_template_;  // until settle()
  std::string v1_memory_;                // v1 memory mount, for settle()
};

}  // namespace nsbox
