// The child's side of sandbox creation: one flat, ordered list of named
// steps (CONTRIBUTING.md §2), run between clone and exec. Everything it needs
// is prepared by the parent in a ChildPlan; the child only issues syscalls.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sandbox/mounts.hpp"
#include "sandbox/privileges.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

// The child's steps, in the order child_main runs them. The values index
// ChildMsg::step_end_ns and kStepNames, and are the step numbers used by the
// comments in child_main and by docs/architecture.md §3.
enum ChildStep : int32_t {
  kStepWaitRelease = 0,      // wait for the parent's release (id maps)
  kStepNewSession = 1,       // setsid: a session of its own
  kStepBecomeNsRoot = 2,     // root mode: switch to the namespace's uid 0
  kStepCgroupNs = 3,         // v1: move into the leaf; unshare(CLONE_NEWCGROUP) rooted there
  kStepMakePrivate = 4,      // make / private: no propagation to the host
  kStepMounts = 5,           // the mount plan: root, /tmp, /dev, code, /proc
  kStepPivot = 6,            // pivot_root and detach the old root
  kStepRemountRoot = 7,      // remount / read-only
  kStepHostname = 8,         // sethostname
  kStepLoopback = 9,         // bring lo up
  kStepFds = 10,             // fd layout 0-5, close the rest
  kStepRlimits = 11,         // lower the rlimits
  kStepDropPrivileges = 12,  // bounding set, groups, gid, uid, caps, no_new_privs
  kStepSealInit = 13,        // PID 1 non-dumpable, death signal re-armed
  kStepForkInit = 14,        // vfork: PID 1 stays as reaper, the runner goes on
  kStepSeccomp = 15,         // send the timings, then load the filter
  kStepExec = 16,            // execve the runner (or, from a template, go on in-process)
  kStepCount = 17
};

const char* child_step_name(int32_t step);

// Fixed-size message from child to parent on the sync socket (no allocation
// in the child). EOF without an error message means exec succeeded.
struct ChildMsg {
  enum Type : int32_t { kError = 1, kTimings = 2 };
  int32_t type = 0;
  int32_t step = 0;
  int32_t err = 0;
  int32_t index = -1;                     // kStepMounts: which op; kStepRlimits: which limit
  char context[192] = {};                 // static sub-step text or a path
  uint64_t step_end_ns[kStepCount] = {};  // CLOCK_MONOTONIC at the end of each step
};

struct ChildPlan {
  MountPlan mounts;
  std::vector<RlimitSetting> rlimits;
  std::vector<char*> argv;  // point into the spec, which outlives clone
  std::vector<char*> envp;
  sock_fprog bpf{};
  const char* hostname = nullptr;
  int sync_fd = -1;          // child's end, close-on-exec
  int request_fd = -1;       // the runner reads requests here; becomes fd 3
  int reply_fd = -1;         // and writes replies here; becomes fd 4
  int stderr_fd = -1;        // >= 0: becomes fd 2 (and 1)
  int fork_fd = -1;          // >= 0: becomes fd 6 (a function template's fork socket)
  int init_program_fd = -1;  // >= 0: PID 1 execs it after the fork (init_program.hpp)
  int parent_sync_fd = -1;   // the parent's ends, closed first thing
  int parent_request_fd = -1;
  int parent_reply_fd = -1;
  // cgroup v1: the leaf's `tasks` files, opened by the parent; step 3 writes
  // "0" to each (the process moves itself, which skips the lock a move by
  // pid takes; sandbox/cgroup.hpp) and closes it.
  std::vector<int> cgroup_tasks_fds;
  bool root_mode = false;  // switch to the namespace's uid 0 for setup
  // Step 9 brings lo up (from kLayerNet), but not in a network namespace
  // made ahead, whose owner (not this user namespace) brought it up.
  bool loopback_up = true;
  int layers = kLayerAll;  // SandboxLayer: the steps of the layers below it are skipped
  uid_t uid = 1000;
  gid_t gid = 1000;
  // Set by a template process (sandbox/template.hpp): instead of execve, the
  // runner goes on in this process's copy of the already initialised
  // interpreter, so step 14 forks PID 1 rather than vforking it, and step 16
  // calls this, after the sync socket is closed (its EOF then means "the
  // runner is running", as it means "exec succeeded" otherwise). It does not
  // return; if it did, the runner exits 127.
  void (*run_in_process)(const ChildPlan& plan) = nullptr;
  // Cloned vfork-style (CloneRequest::shared_memory_pid): PID 1 runs in its
  // cloner's memory, which sleeps until PID 1 execs nsbox-init, so PID 1
  // must exec it or exit (never reap in-process), and it owes its cloner's
  // asker the answer the sleeping cloner cannot give: announce() is called
  // first thing, before step 0 waits for the release that answer leads to.
  bool shares_memory = false;
  void (*announce)(const ChildPlan& plan) = nullptr;
};

[[noreturn]] void child_main(const ChildPlan& plan);

}  // namespace nsbox
