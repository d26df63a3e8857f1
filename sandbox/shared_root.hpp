// One read-only overlay of the runtime tree, mounted once by a template and
// bound as the root of every sandbox cloned from it.
//
// Each sandbox's root is an overlay of the runtime tree, and its upper layer
// is read-only from setup's end (docs/architecture.md §4): nothing of it is
// the sandbox's own. A superblock per sandbox costs more than its own memory,
// though: every memory cgroup keeps a slot for every superblock's shrinker,
// so one more superblock per sandbox makes each sandbox's kernel memory grow
// with the number of sandboxes. A template (root, in a private mount
// namespace of its own) mounts the overlay over the tree's own path; its
// clones copy that namespace and bind it, without an overlay of their own.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.hpp"

namespace nsbox {

// In the caller's own (private) mount namespace: an empty read-only tmpfs
// over `rootfs`, then an overlay over it whose layers are the tree (reached
// through an fd opened before it was covered) and that empty tmpfs: overlay
// needs two lower layers when it has no upper one, and an empty directory of
// our own is the only one known not to change. Both read-only, nosuid,
// nodev. Returns the overlay's device number, for shared_root_in_place.
Result<dev_t> mount_shared_root(const std::string& rootfs);

// Whether `path` resolves to the overlay mounted by mount_shared_root
// (device `dev`): the template's check on the tree's path before each clone
// (a rebuild renames the old tree away and puts a new one at the path; the
// mount stays on the old one), and the clone's check on its bind (a rename
// between the two would give it the plain tree, writable where the host's
// filesystem is, or another overlay).
bool shared_root_in_place(const std::string& path, dev_t dev);

// Whether `path` is on an overlayfs.
bool is_overlay(const char* path);

}  // namespace nsbox
