#include "base/files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/fd.hpp"

namespace nsbox {

Status ensure_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) return {};
  if (errno != EEXIST) return sys_error("mkdir", path);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return sys_error("stat", path);
  if (!S_ISDIR(st.st_mode)) return sys_error_n(ENOTDIR, "mkdir", path);
  return {};
}

Result<bool> mkdir_p(const std::string& path, mode_t mode) {
  if (path.empty()) return make_error("mkdir", "empty path");
  bool created = false;
  for (size_t i = 1; i <= path.size(); i++) {
    if (i < path.size() && path[i] != '/') continue;
    if (path[i - 1] == '/') continue;  // "a//b" or a trailing slash
    std::string part = path.substr(0, i);
    created = ::mkdir(part.c_str(), mode) == 0;
    if (!created) TRY(ensure_dir(part, mode));
  }
  return created;
}

Status fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return sys_error("open", dir);
  if (::fsync(fd.get()) != 0) return sys_error("fsync", dir);
  return {};
}

namespace {

// name in the directory parent, and all below it; see remove_tree.
Status remove_tree_at(int parent, const std::string& name, const std::string& shown, int depth) {
  if (::unlinkat(parent, name.c_str(), 0) == 0 || errno == ENOENT) return {};
  if (errno != EISDIR) return sys_error("unlink", shown);
  if (depth >= kMaxTreeDepth)
    return make_error("remove", shown + ": deeper than " + std::to_string(kMaxTreeDepth) +
                                    " directories; delete it by hand");
  UniqueFd dir(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) {
    if (errno == ENOENT) return {};  // gone since the unlink
    // Swapped for a link or a file since the unlink: unlinked as what it is.
    if ((errno == ELOOP || errno == ENOTDIR) && ::unlinkat(parent, name.c_str(), 0) == 0) return {};
    return sys_error("open", shown);
  }
  // Names first, then the deletes: a directory changed while readdir runs
  // may skip entries.
  Status first;
  std::vector<std::string> names;
  {
    const int listed = ::dup(dir.get());
    DIR* d = listed >= 0 ? ::fdopendir(listed) : nullptr;
    if (!d) {
      if (listed >= 0) ::close(listed);
      return sys_error("opendir", shown);
    }
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
        names.emplace_back(e->d_name);
      errno = 0;
    }
    const int err = errno;
    ::closedir(d);
    // What was listed is still deleted; the error is the one returned.
    if (err != 0) first = sys_error_n(err, "readdir", shown);
  }
  for (const std::string& n : names)
    if (Status s = remove_tree_at(dir.get(), n, shown + "/" + n, depth + 1); !s && first)
      first = std::move(s);
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT && first)
    first = sys_error("rmdir", shown);
  return first;
}

}  // namespace

Status remove_tree(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : path.substr(0, slash);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..")
    return make_error("remove", path + ": not a name in a directory");
  UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return sys_error("open", parent);
  return remove_tree_at(dir.get(), name, path, 0);
}

std::string mode_octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", unsigned(mode & 07777));
  return text;
}

Result<std::string> private_tmp_dir() {
  const std::string dir = "/tmp/nsbox-" + std::to_string(geteuid());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir", dir);
  auto refuse = [&](const std::string& what) -> Error {
    return make_error("private dir", dir + " is not a directory of yours (" + what +
                                         "): another user may have made it. Remove it, or set "
                                         "HOME and XDG_RUNTIME_DIR to directories of your own");
  };
  // Opened without following a link, then checked and tightened through the
  // fd: what is checked is what gets chmod'ed.
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    // With O_DIRECTORY a symlink is ENOTDIR, not ELOOP: lstat tells them apart.
    struct stat lst;
    if ((errno == ELOOP || errno == ENOTDIR) && ::lstat(dir.c_str(), &lst) == 0)
      return refuse(S_ISLNK(lst.st_mode) ? "a symlink" : "not a directory");
    return sys_error("open", dir);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", dir);
  if (st.st_uid != geteuid())
    return refuse("owner uid " + std::to_string(st.st_uid) + ", mode " + mode_octal(st.st_mode));
  // Ours but open to others: an older nsbox made it 0755. Nobody else can
  // have put anything in it unless it was writable to them.
  if ((st.st_mode & 022) != 0)
    return refuse("mode " + mode_octal(st.st_mode) + ", writable by others");
  if ((st.st_mode & 077) != 0 && ::fchmod(fd.get(), 0700) != 0) return sys_error("chmod", dir);
  return dir;
}

namespace {

// "/", "/a", "/a/b" for "/a/b": each directory from the root down, and the
// path itself. path must be absolute.
std::vector<std::string> path_and_ancestors(const std::string& path) {
  std::vector<std::string> dirs = {"/"};
  for (size_t i = 1; i < path.size(); i++)
    if (path[i] == '/' && path[i - 1] != '/') dirs.push_back(path.substr(0, i));
  if (path.size() > 1 && path.back() != '/') dirs.push_back(path);
  return dirs;
}

}  // namespace

Status check_reachable_by_others(const std::string& path) {
  if (path.empty() || path[0] != '/') return make_error("reachable", path + " is not absolute");
  for (const std::string& dir : path_and_ancestors(path)) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) return sys_error("stat", dir);
    if (!S_ISDIR(st.st_mode)) continue;  // the last component may be a file
    if ((st.st_mode & S_IXOTH) == 0) {
      return make_error("reachable", dir + " (mode " + mode_octal(st.st_mode) +
                                         ") lets no other user through, so a sandbox's "
                                         "unprivileged user cannot reach " +
                                         path + ": chmod o+x " + dir +
                                         ", or use a directory elsewhere");
    }
  }
  return {};
}

bool refuse_setuid(const char* program) {
  if (::getauxval(AT_SECURE) == 0) return false;
  std::fprintf(stderr,
               "%s: refusing to run set-uid or set-gid: it would read and run what the caller "
               "names with the rights of its owner. Install it without the set-id bits "
               "(chmod u-s,g-s) and run it with sudo\n",
               program);
  return true;
}

std::optional<std::string> writable_home() {
  const char* h = getenv("HOME");
  struct stat st;
  if (!h || *h != '/' || stat(h, &st) != 0 || !S_ISDIR(st.st_mode) || access(h, W_OK) != 0)
    return std::nullopt;
  return std::string(h);
}

bool fill_std_fds() {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    // The lowest free number: fd itself, those below it being open.
    const int got = open("/dev/null", O_RDWR);
    if (got < 0) return false;
    if (got != fd) {
      close(got);
      errno = EBADF;
      return false;
    }
  }
  return true;
}

namespace {

// Whether gid is the caller's own group in the user-private-group scheme:
// the caller's primary group, named as the caller, listing no member. A
// shared primary group (users) is other users.
bool callers_private_group(gid_t gid) {
  if (gid != getegid()) return false;
  char buf[16384];
  struct passwd pw, *pwp = nullptr;
  struct group gr, *grp = nullptr;
  if (getpwuid_r(geteuid(), &pw, buf, sizeof buf / 2, &pwp) != 0 || !pwp) return false;
  if (getgrgid_r(gid, &gr, buf + sizeof buf / 2, sizeof buf / 2, &grp) != 0 || !grp) return false;
  if (std::strcmp(grp->gr_name, pwp->pw_name) != 0) return false;
  for (char** m = grp->gr_mem; *m; m++)
    if (std::strcmp(*m, pwp->pw_name) != 0) return false;
  return true;
}

}  // namespace

bool writable_by_others(const struct stat& st) {
  // Group root writing is root writing; the caller's private group (user
  // private groups: umask 002 makes ~/.local 0775) is the caller.
  const bool group_writes =
      (st.st_mode & S_IWGRP) != 0 && st.st_gid != 0 && !callers_private_group(st.st_gid);
  return group_writes || (st.st_mode & S_IWOTH) != 0;
}

bool acl_lets_others_write(int fd, const std::string& path, const struct stat& st) {
  // Where an access ACL exists, the mode's group bits are its mask: no
  // write there, and no named entry may write either.
  if ((st.st_mode & S_IWGRP) == 0) return false;
  unsigned char buf[4 + 8 * 64];
  const ssize_t n = fd >= 0 ? fgetxattr(fd, "system.posix_acl_access", buf, sizeof buf)
                            : lgetxattr(path.c_str(), "system.posix_acl_access", buf, sizeof buf);
  if (n < 0) return errno == ERANGE;  // more entries than fit: taken for a writer
  // The kernel's xattr form: a 32-bit version, then {u16 tag, u16 perm,
  // u32 id} entries, little-endian.
  auto u16 = [&](ssize_t at) { return unsigned(buf[at] | buf[at + 1] << 8); };
  auto u32 = [&](ssize_t at) { return uint32_t(u16(at) | u16(at + 2) << 16); };
  constexpr unsigned kUser = 0x02, kGroup = 0x08, kWrite = 0x02;
  for (ssize_t at = 4; at + 8 <= n; at += 8) {
    const unsigned tag = u16(at), perm = u16(at + 2);
    const uint32_t id = u32(at + 4);
    if (!(perm & kWrite)) continue;
    if (tag == kUser && id != 0 && id != geteuid()) return true;
    if (tag == kGroup && id != 0 && !callers_private_group(gid_t(id))) return true;
  }
  return false;
}

Result<std::string> resolve_trusted(const std::string& path) {
  if (path.empty() || path[0] != '/') return make_error("resolve", path + " is not absolute");
  // What is left to walk, last component first, so a link's target goes on
  // top; and what is resolved so far ("" is /).
  std::vector<std::string> todo;
  auto push_components = [&todo](const std::string& p) {
    std::vector<std::string> names;
    for (size_t at = 0; at <= p.size();) {
      size_t next = p.find('/', at);
      if (next == std::string::npos) next = p.size();
      if (next > at) names.push_back(p.substr(at, next - at));
      at = next + 1;
    }
    todo.insert(todo.end(), names.rbegin(), names.rend());
  };
  push_components(path);
  std::string done;
  int links = 0;
  while (!todo.empty()) {
    const std::string name = std::move(todo.back());
    todo.pop_back();
    if (name == ".") continue;
    if (name == "..") {
      done.erase(done.empty() ? 0 : done.find_last_of('/'));
      continue;
    }
    const std::string next = done + "/" + name;
    // The owner checked and the target read through one fd: by path, a link
    // in a directory others may write could be swapped between the two
    // (renameat2 RENAME_EXCHANGE leaves no gap).
    UniqueFd at(::open(next.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!at.valid()) return sys_error("open", next);
    struct stat st;
    if (::fstat(at.get(), &st) != 0) return sys_error("fstat", next);
    if (S_ISLNK(st.st_mode)) {
      if (st.st_uid != 0 && st.st_uid != geteuid())
        return make_error("resolve", next + " is a symbolic link owned by uid " +
                                         std::to_string(st.st_uid) +
                                         ", who could point it anywhere: name " + path +
                                         " by a path whose links are root's" +
                                         (geteuid() == 0 ? "" : " or yours"));
      if (++links > 40) return sys_error_n(ELOOP, "resolve", path);
      char target[PATH_MAX];
      const ssize_t n = ::readlinkat(at.get(), "", target, sizeof target - 1);
      if (n < 0) return sys_error("readlink", next);
      target[n] = 0;
      if (target[0] == '/') done.clear();
      push_components(target);
      continue;
    }
    if (!S_ISDIR(st.st_mode) && !todo.empty()) return sys_error_n(ENOTDIR, "resolve", next);
    done = next;
  }
  return done.empty() ? std::string("/") : done;
}

Result<std::string> check_private_ancestors(const std::string& path, bool sticky_last_ok) {
  if (path.empty() || path[0] != '/') return make_error("ancestors", path + " is not absolute");
  // The components below the nearest existing ancestor, which realpath
  // cannot resolve: plain names only, so that appending them to the
  // resolved ancestor names what they would have named.
  std::string parent = path.substr(0, path.find_last_of('/'));
  std::string tail = path.substr(path.find_last_of('/'));  // "/name"
  if (parent.empty()) parent = "/";
  std::string last;
  bool stepped_up = false;  // `last` is an ancestor above path's parent
  for (int made_meanwhile = 0;;) {
    auto resolved = resolve_trusted(parent);
    if (resolved) {
      last = resolved.value();
      break;
    }
    if (resolved.error().err != ENOENT || parent == "/") return resolved.error();
    // Only a name that is not there at all counts as missing: a link whose
    // target is missing would be followed by the mkdir that makes it, to
    // wherever its target comes to exist.
    struct stat st;
    if (::lstat(parent.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode))
        return make_error("ancestors", parent + " is a symbolic link to something that does " +
                                           "not exist; name the directory itself, or make its " +
                                           "target");
      if (++made_meanwhile < 3) continue;  // made since it was resolved: again
    }
    const size_t slash = parent.find_last_of('/');
    stepped_up = true;
    tail = parent.substr(slash) + tail;
    parent = slash == 0 ? "/" : parent.substr(0, slash);
  }
  for (size_t at = 0; at < tail.size();) {
    const size_t next = tail.find('/', at + 1);
    const std::string name =
        tail.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1);
    if (name.empty() || name == "." || name == "..")
      return make_error("ancestors", path +
                                         ": name the directory without '.', '..' or '//' "
                                         "below its nearest existing ancestor");
    at = next == std::string::npos ? tail.size() : next;
  }
  for (const std::string& dir : path_and_ancestors(last)) {
    struct stat st;
    // lstat: `last` holds no link once resolved, so one here is a directory
    // swapped for a link since (by its owner, whom the check would refuse).
    if (::lstat(dir.c_str(), &st) != 0) return sys_error("lstat", dir);
    if (S_ISLNK(st.st_mode))
      return make_error("ancestors", dir + " turned into a symbolic link while " + path +
                                         " was checked; try again, and see who changes it");
    const bool owner_ok = st.st_uid == 0 || st.st_uid == geteuid();
    // A sticky last passes only as path's own parent: one stepped up to
    // (a missing level, or one its owner removed meanwhile) has names below
    // it that anyone may make.
    const bool sticky_ok =
        (st.st_mode & S_ISVTX) != 0 && (dir != last || (sticky_last_ok && !stepped_up));
    const bool acl = acl_lets_others_write(-1, dir, st);
    if (owner_ok && ((!writable_by_others(st) && !acl) || sticky_ok)) continue;
    return make_error("ancestors", dir + " (owner uid " + std::to_string(st.st_uid) + ", gid " +
                                       std::to_string(st.st_gid) + ", mode " +
                                       mode_octal(st.st_mode) +
                                       (acl ? ", an ACL entry lets another user write" : "") +
                                       ") lets another user rename or replace " + path +
                                       ": use a directory that only root" +
                                       (geteuid() == 0 ? "" : " and you") + " can write");
  }
  return (last == "/" ? std::string() : last) + tail;
}

Result<std::string> sibling_program(const std::string& name) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return sys_error("readlink", "/proc/self/exe");
  self[n] = 0;
  std::string dir(self);
  std::string path = dir.substr(0, dir.find_last_of('/')) + "/" + name;
  if (access(path.c_str(), X_OK) != 0)
    return sys_error("access", path + " (install " + name + " next to " + dir + ")");
  return path;
}

Result<std::string> read_up_to(int fd, size_t limit) {
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read");
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > limit) return sys_error_n(EFBIG, "read");
  }
}

namespace {

// Whether the directory fd holds an entry named as one of marks, else its
// first entry in *first ("" when it is empty).
Result<bool> holds_mark(int fd, const std::vector<std::string>& marks, std::string* first) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return sys_error("fcntl", "F_DUPFD_CLOEXEC");
  DIR* d = fdopendir(copy);
  if (!d) {
    Error e = sys_error("fdopendir");
    close(copy);
    return e;
  }
  first->clear();
  bool marked = false;
  errno = 0;
  while (dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (first->empty()) *first = name;
    for (const std::string& m : marks) marked = marked || name == m;
    if (marked) break;
    errno = 0;
  }
  const int err = errno;
  closedir(d);
  if (!marked && err != 0) return sys_error_n(err, "readdir");
  return marked;
}

}  // namespace

Result<std::string> make_private_dir(std::string given, mode_t mode,
                                     const std::vector<std::string>& marks) {
  while (given.size() > 1 && given.back() == '/') given.pop_back();
  if (given.find_first_not_of('/') == std::string::npos)
    return make_error("directory", "/ is the root directory");
  std::string path;
  if (auto whole = resolve_trusted(given)) {
    path = whole.value();
  } else {
    const size_t slash = given.find_last_of('/');
    const std::string name = given.substr(slash + 1);
    if (whole.error().err != ENOENT || name == "." || name == "..")
      return make_error("directory", whole.error().message());
    struct stat dangling;
    if (lstat(given.c_str(), &dangling) == 0 && S_ISLNK(dangling.st_mode))
      return make_error("directory", given +
                                         " is a symbolic link to something that does not "
                                         "exist; make its target, or name the directory");
    // Not there yet: its parent resolved, the directory made below it.
    auto parent = resolve_trusted(slash == 0 ? "/" : given.substr(0, slash));
    if (!parent) return make_error("directory", parent.error().message());
    path = (parent.value() == "/" ? "" : parent.value()) + "/" + name;
  }
  if (path == "/") return make_error("directory", given + " is the root directory");
  // The directories above, before anything is made or changed there: root's
  // (or ours) and writable by no one else, a sticky parent aside (/tmp:
  // others cannot rename or replace what we make in it, and what is there
  // already is checked to be ours below).
  auto checked = check_private_ancestors(path, /*sticky_last_ok=*/true);
  if (!checked) return make_error("directory", checked.error().message());
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return sys_error("mkdir", path);
  // O_NOFOLLOW: a link made in its place since it was resolved is refused.
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    struct stat link;
    // O_DIRECTORY answers ENOTDIR for a link too.
    if ((err == ENOTDIR || err == ELOOP) && lstat(path.c_str(), &link) == 0 &&
        S_ISLNK(link.st_mode))
      return make_error("directory", path + " became a symbolic link while it was being made");
    if (err == ENOTDIR) return make_error("directory", path + " is not a directory");
    return sys_error_n(err, "open", path);
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("fstat", path);
  if (st.st_uid != geteuid())
    return make_error("directory", path + " belongs to uid " + std::to_string(st.st_uid) +
                                       ", not to this process's user (uid " +
                                       std::to_string(geteuid()) + ")");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return make_error("directory",
                      path + " is writable by other users (mode " + mode_octal(st.st_mode) + ")");
  if ((st.st_mode & 07777) != mode) {
    std::string first;
    auto marked = holds_mark(fd.get(), marks, &first);
    if (!marked) return make_error("directory", path + ": " + marked.error().message());
    if (!marked.value() && !first.empty())
      return make_error("directory", path + " already holds files that are not ours (" + first +
                                         ", ...) and is mode " + mode_octal(st.st_mode) +
                                         ", which would be changed to " + mode_octal(mode));
  }
  if (fchmod(fd.get(), mode) != 0) return sys_error("chmod", path);
  return path;
}

}  // namespace nsbox
