// What the exec path (Sandbox::start, which clones from the caller) and the
// template path (a template process that clones on request) share: the
// child's plan, built from the spec and the fds the child gets, and the
// clone3 itself. Both sides build the same plan from the same spec (the
// template's binding its shared root, as its answer says), so the parent
// can name a child's failing mount while the template ran it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "sandbox/child.hpp"
#include "sandbox/mounts.hpp"
#include "sandbox/seccomp.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

// Borrowed fds the child is given, as numbers in the process that clones.
struct ChildFds {
  int sync = -1;          // the child's end of the sync socket
  int request = -1;       // becomes fd 3
  int reply = -1;         // becomes fd 4
  int stderr_fd = -1;     // becomes fd 2 and 1 (-1: the cloner's fd 2)
  int fork = -1;          // becomes fd 6: a function template's fork socket
  int init_program = -1;  // what PID 1 execs after its fork (init_program.hpp)
  // A network namespace made ahead (netns.hpp), loopback up: not the child's
  // fd but the namespace the cloner enters for the clone (CloneRequest).
  int netns = -1;
  int parent_sync = -1;
  int parent_request = -1;
  int parent_reply = -1;
  std::vector<int> cgroup_tasks;  // v1 `tasks` files the child moves itself in by
};

// The plan child_main runs. ids are the spec's with the uid slot's
// host_base; argv is storage the plan points into (rootfs-prefixed below
// kLayerMount); the spec, bpf and argv must outlive the clone.
void build_child_plan(const SandboxSpec& spec, const MountSources& sources, const IdMap& ids,
                      bool has_cgroup, const SeccompProgram& bpf, const ChildFds& fds,
                      std::vector<std::string>* argv, ChildPlan* plan);

// The namespaces a sandbox of that many layers is cloned into (without
// CLONE_NEWCGROUP, which the child unshares after release).
uint64_t sandbox_clone_flags(int layers);

struct CloneRequest {
  uint64_t flags = 0;     // sandbox_clone_flags, plus CLONE_PARENT from a template
  IdMap ids;              // root mode with a user namespace: clone as host_base
  int cgroup_dirfd = -1;  // >= 0: CLONE_INTO_CGROUP (the leaf's cgroup2 directory)
  // >= 0: the child's network namespace, made ahead (netns.hpp): entered by
  // the caller for the clone3, whose flags must then not have CLONE_NEWNET.
  int netns_fd = -1;
  // Non-null: the child borrows the caller's memory and stack, as vfork(2)
  // does (CLONE_VM | CLONE_VFORK), and the caller sleeps until the child has
  // exec'd or exited. The kernel stores the child's pid here before the child
  // runs, so the child can tell the pid to whoever waits for it (the caller
  // cannot until it wakes). Only where kCloneCanShareMemory; the plan must
  // say so too (ChildPlan::shares_memory).
  pid_t* shared_memory_pid = nullptr;
};

// Whether this architecture has the vfork-style clone3 (an assembly stub).
// Not with user shadow stacks (-fcf-protection=return): the child's returns
// and calls would rewrite the shadow stack it shares with the parent, which
// glibc's vfork handles and the stub does not.
#if defined(__x86_64__) && !(defined(__CET__) && (__CET__ & 2))
#define NSBOX_CLONE_SHARED_STACK 1
inline constexpr bool kCloneCanShareMemory = true;
#else
inline constexpr bool kCloneCanShareMemory = false;
#endif

// clone3 with CLONE_PIDFD; the child runs child_main(plan) and never returns.
// Returns the child's pid and sets *pidfd.
Result<pid_t> clone_sandbox_child(const ChildPlan& plan, const CloneRequest& req, int* pidfd);

}  // namespace nsbox
