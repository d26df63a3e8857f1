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

enum ChildStep : int32_t {
  kStepWaitRelease,
  kStepNewSession,
  kStepBecomeNsRoot,
  kStepCgroupNs,
  kStepMakePrivate,
  kStepMounts,
  kStepPivot,
  kStepRemountRoot,
  kStepHostname,
  kStepLoopback,
  kStepFds,
  kStepRlimits,
  kStepDropPrivileges,
  kStepSealInit,
  kStepForkInit,
  kStepSeccomp,
  kStepExec,
  kStepCount
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
  const sock_fprog* init_bpf = nullptr;  // PID 1's own filter (init_filter.hpp)
  const char* hostname = nullptr;
  int sync_fd = -1;         // child's end, close-on-exec
  int request_fd = -1;      // the runner reads requests here; becomes fd 3
  int reply_fd = -1;        // and writes replies here; becomes fd 4
  int stderr_fd = -1;       // >= 0: becomes fd 2 (and 1)
  int parent_sync_fd = -1;  // the parent's ends, closed first thing
  int parent_request_fd = -1;
  int parent_reply_fd = -1;
  bool root_mode = false;  // switch to the namespace's uid 0 for setup
  uid_t uid = 1000;
  gid_t gid = 1000;
};

[[noreturn]] void child_main(const ChildPlan& plan);

}  // namespace nsbox
