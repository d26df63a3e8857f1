// The sandbox's filesystem: a pure planner turns the spec into a flat list of
// mount operations (unit-testable, built in the parent before clone); the
// child only executes the list, then pivots.
#pragma once

#include <string>
#include <vector>

#include "sandbox/spec.hpp"

namespace nsbox {

struct MountOp {
  enum Kind { Tmpfs, Overlay, Proc, Bind, RemountRo, Mkdir, Touch, Symlink };
  Kind kind;
  std::string src;   // Bind: host source; Symlink: link target
  std::string dst;   // absolute path in the parent's view (under stage/root)
  std::string data;  // fs options, e.g. "size=67108864,mode=1777"
  unsigned long flags = 0;  // MS_* for Tmpfs/Overlay/Proc/RemountRo
  std::string describe() const;  // "mount tmpfs on /run/nsbox/root/tmp"
};

struct MountPlan {
  std::string stage;     // spec.stage_dir
  std::string new_root;  // stage + "/root"
  std::vector<MountOp> ops;
};

MountPlan plan_mounts(const SandboxSpec& spec);

// Child side, no allocation. Runs ops in order; on failure returns the errno
// and sets *failed to the failing op.
int child_run_mounts(const MountPlan& plan, const MountOp** failed);
// pivot_root(".", ".") in new_root, then detach the old root (crun do_pivot).
int child_pivot_root(const char* new_root, const char** step);
// Remount path read-only, keeping the flags the kernel locked on it.
int child_remount_ro(const char* path);

}  // namespace nsbox
