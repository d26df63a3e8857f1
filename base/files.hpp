// Directories and whole files, with errors as values.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace nsbox {

// mkdir -p: creates each missing component of path with mode (existing ones
// keep theirs). A component that exists but is not a directory is ENOTDIR.
// Returns whether the last component was created here (its parent's entry
// then needs an fsync to be durable).
Result<bool> mkdir_p(const std::string& path, mode_t mode);

// One directory: created with mode, or already there as a directory.
Status ensure_dir(const std::string& path, mode_t mode);

// Whether a user who is neither the owner nor in the group of any directory
// on the way (a sandbox's unprivileged uid) can reach path: every directory
// from / down to path must grant others search (o+x). The error names the
// first that does not, its mode, and the fix. path must be absolute.
Status check_reachable_by_others(const std::string& path);

// Set-uid or set-gid (AT_SECURE): nsbox reads policy files, rootfs trees
// and tokens with the rights it runs with and runs what a caller names, so
// a caller who gets those rights that way gets root. Prints why to stderr
// and returns true: the caller exits.
bool refuse_setuid(const char* program);

// $HOME when it names a directory the caller may write, else nullopt: a
// system user's HOME is often /nonexistent, or root's.
std::optional<std::string> writable_home();

// Puts /dev/null on whichever of fds 0, 1 and 2 is closed; false (errno
// set) when it cannot. A program started with one closed gets that number
// from its next open: `nsbox run >&-` wrote the function's result into a
// state file it opened. As glibc does for set-id programs, for everyone.
bool fill_std_fds();

// Whether only root and the caller can change what path names: every
// directory above it, symlinks resolved, must belong to root or the caller
// and be writable by no one else (group root and the caller's private
// group aside). A sticky directory
// (/tmp) passes above the last: others cannot rename what is not theirs in
// it, but they can plant names beside it. Where path's parent does not
// exist yet, its nearest existing ancestor counts as the last. A root
// process building or mounting a tree under a directory another user can
// write would run or serve whatever that user swaps in. Returns path as
// checked: its existing ancestors resolved (resolve_trusted), then the
// missing components as given (plain names only). Use that string from
// then on: the path as given may go through a symlink another user can
// re-point, which resolving it again would follow anew.
// sticky_last_ok: path's own parent may be sticky too, for a directory that
// is itself checked to be the caller's once made (the daemon's state_dir,
// in /tmp): others cannot rename or replace it there. Not a sticky nearest
// ancestor further up: the missing levels between could be anyone's.
Result<std::string> check_private_ancestors(const std::string& path, bool sticky_last_ok = false);

// Whether someone besides root and the caller may write what st describes:
// others, or a group other than root's and the caller's own private group
// (user private groups, where umask 002 makes ~/.config 0775).
bool writable_by_others(const struct stat& st);

// Whether a POSIX access ACL on what st describes (read through fd, or
// path when fd is -1, without following a link) lets a user other than
// root and the caller, or a group other than root's and the caller's
// private one, write it. The mode's bits alone miss it: with an ACL, a
// 0664 root:root file may be writable by nobody.
bool acl_lets_others_write(int fd, const std::string& path, const struct stat& st);

// realpath(3) that follows only symbolic links of root's or the caller's:
// a link in a directory others may write (/tmp, without the kernel's
// protected_symlinks) lets its owner choose where a root process goes, so
// one of another user's is an error that names it. Every component must
// exist (ENOENT otherwise, as realpath); at most 40 links.
Result<std::string> resolve_trusted(const std::string& path);

// A directory of the caller's own that no one else may write, made with
// mode if missing, else checked and set to mode. Its ancestors pass
// check_private_ancestors (a sticky parent allowed: the directory itself
// is checked to be the caller's), so one another user could swap, or a
// /tmp or a file, is refused before anything is made or chmod'ed. "/"
// (also as "//", "/tmp/..") is refused. Returns the path resolved once
// (resolve_trusted): use it from then on, as a link another user could
// re-point would otherwise move what is made there later. An existing
// directory of another mode that holds anything, but no entry named as
// one of `marks` (names its user makes there), is refused rather than
// chmod'ed: it is someone else's.
Result<std::string> make_private_dir(std::string path, mode_t mode,
                                     const std::vector<std::string>& marks = {});

// Reads fd to its end. More than limit bytes is an error with err EFBIG;
// never reads more than limit plus one buffer, as the file may grow while it
// is read. A read error keeps its errno (step "read").
Result<std::string> read_up_to(int fd, size_t limit);

// Makes a rename or a new entry in dir survive power loss (fsync(2): syncing
// a file does not sync the directory entry naming it).
Status fsync_dir(const std::string& dir);

// Deletes path and, if it is a directory, everything in it, following no
// symlink below path's parent: each directory is opened O_NOFOLLOW relative
// to its parent's fd and its entries unlinked there, so one that another
// user swaps for a link while the walk runs is unlinked as a link, never
// walked (std::filesystem::remove_all in GCC 12 walks by path and would
// delete what such a link names). At most kMaxTreeDepth levels; the first
// failure is returned, after as much as could be deleted was. A path that
// is not there is no error; its parent must be, and path must end in a
// name (not "/", "." or ".."). The walk does not stop at mount points, and
// whoever may write a directory of the tree can keep adding to it: a tree
// another user still writes is moved aside for its owner, not walked.
inline constexpr int kMaxTreeDepth = 128;
Status remove_tree(const std::string& path);

// A mode's permission bits as chmod takes them: "0711", "1777".
std::string mode_octal(mode_t mode);

// /tmp/nsbox-EUID, a directory only the caller can enter: where a user
// without HOME or XDG_RUNTIME_DIR keeps what nsbox makes. Made 0700 when
// missing; one already there must be a real directory (not a symlink) of
// the caller's that no one else can enter, or another local user could
// have made it to watch or change what the caller's sandboxes run.
Result<std::string> private_tmp_dir();

// A program installed beside the running binary (/proc/self/exe's
// directory): nsbox finds nsbox-http, nsbox-bench and nsbox-template so.
Result<std::string> sibling_program(const std::string& name);

}  // namespace nsbox
