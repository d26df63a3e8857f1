// The shared runtime rootfs: where it lives by default, whether it is stale,
// and (re)building it with the builder script embedded in the binary.
#pragma once

#include <string>

#include "base/fd.hpp"
#include "base/result.hpp"

namespace nsbox {

constexpr const char* kHostPython = "/usr/bin/python3";
constexpr const char* kRunnerPath = "/opt/nsbox/runner.py";  // inside the rootfs

// root: /var/lib/nsbox/rootfs; others: $XDG_DATA_HOME/nsbox/rootfs.
Result<std::string> default_rootfs_dir();
// Changes whenever the builder, the runner or the host's python changes.
std::string rootfs_stamp(const std::string& python = kHostPython);
bool rootfs_fresh(const std::string& dir, const std::string& python = kHostPython);
// What names one build of the tree at DIR, whatever its path: its stamp and
// its list of copied libraries (a rebuild for a library update keeps the
// stamp). Empty when DIR holds neither.
std::string rootfs_identity(const std::string& dir);

struct RootfsBuild {
  // The tree's path with the symlinks above it resolved: what was checked,
  // and so the only path to use it by.
  std::string path;
  bool built = false;   // false: it was fresh already
  std::string summary;  // "rootfs: built DIR: N files, X MiB"
  // A shared lock on DIR.users: keep it while the tree is in use, so that a
  // rebuild meanwhile leaves the tree it replaces on disk (removed by the
  // first call that finds no user).
  UniqueFd in_use;
};
// Builds when missing or stale (or always with force), under a lock so that
// concurrent callers build once. Refuses a non-empty dir that is not ours,
// and an existing tree that anyone but the caller and root could change.
// use_only: never builds (root acting for a user under sudo, on a --rootfs
// the user named): a missing or stale tree is an error. SIGINT and SIGTERM
// stop a build, leaving nothing of it: the error's errno is then EINTR.
Result<RootfsBuild> ensure_rootfs(const std::string& dir, bool force,
                                  const std::string& python = kHostPython, bool use_only = false);

}  // namespace nsbox
