// The sandbox's filesystem: a pure planner turns the spec into a flat list of
// mount operations (unit-testable, built in the parent before clone); the
// child only executes the list, then pivots.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "sandbox/spec.hpp"

namespace nsbox {

struct MountOp {
  enum Kind {
    Tmpfs,
    Overlay,
    SharedRoot,  // bind of the template's read-only overlay (shared_root.hpp)
    Proc,
    Bind,
    AttachTree,
    RemountRo,
    Remount,
    Mkdir,
    Touch,
    Symlink
  };
  Kind kind;
  std::string src;               // Bind: host source; Symlink: link target
  std::string dst;               // absolute path in the parent's view (under stage/root)
  std::string data;              // fs options, e.g. "size=67108864,mode=1777"
  unsigned long flags = 0;       // MS_* for Tmpfs/Overlay/Proc; added by Remount(Ro)
  int tree_fd = -1;              // AttachTree: a detached mount from open_tree()
  bool optional = false;         // dst missing (ENOENT) is not an error: skipped
  mode_t mode = 0755;            // Mkdir
  dev_t dev = 0;                 // SharedRoot: the device the bind must show
  std::string describe() const;  // "mount tmpfs on /run/nsbox/root/tmp"
};

struct MountPlan {
  std::string stage;     // spec.stage_dir
  std::string new_root;  // stage + "/root"
  std::vector<MountOp> ops;
};

// Where the plan takes the rootfs and the code from: the spec's paths, and
// in root mode a detached mount of the code made by the parent with
// open_tree(OPEN_TREE_CLONE). The namespace root is an unprivileged host uid
// that may be unable to traverse the code's host path (a 0700 home or
// mkdtemp directory); the detached tree carries the parent's access. (A
// /proc/self/fd path would not do: bind and overlay refuse mounts of
// another mount namespace with EINVAL.)
struct MountSources {
  std::string rootfs;
  std::string code;
  std::string code_name;  // file name under code_mount when code is a file
  bool code_is_dir = false;
  int code_tree_fd = -1;  // >= 0: attach this tree instead of binding `code`
  // Not 0: `rootfs` is already a read-only overlay of the tree, this device,
  // mounted once by the template this sandbox is cloned from
  // (shared_root.hpp): bind it.
  dev_t shared_root_dev = 0;
};
MountSources sources_from_spec(const SandboxSpec& spec);

// /proc entries masked as Docker masks them (moby oci/defaults.go, plus
// /proc/interrupts and /proc/locks): files get /dev/null bound over them, directories an
// empty read-only directory. Then the entries made read-only. Each only where
// the kernel has it.
extern const char* const kProcMaskedFiles[8];
extern const char* const kProcMaskedDirs[3];
extern const char* const kProcReadOnly[6];

MountPlan plan_mounts(const SandboxSpec& spec, const MountSources& sources);
inline MountPlan plan_mounts(const SandboxSpec& spec) {
  return plan_mounts(spec, sources_from_spec(spec));
}

// Child side, no allocation. Runs ops in order; on failure returns the errno
// and sets *failed to the failing op.
int child_run_mounts(const MountPlan& plan, const MountOp** failed);
// pivot_root(".", ".") in new_root, then detach the old root (crun do_pivot).
int child_pivot_root(const char* new_root, const char** step);
// Remount the bind mount at path with flags added (MS_RDONLY, MS_NOEXEC...),
// keeping the flags the kernel locked on it.
int child_remount(const char* path, unsigned long flags);
int child_remount_ro(const char* path);

}  // namespace nsbox
