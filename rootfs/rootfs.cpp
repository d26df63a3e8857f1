#include "rootfs/rootfs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/hash.hpp"
#include "policies/embedded.hpp"

namespace nsbox {

namespace {

// HOME, or without one the caller may write a private directory: a shared
// path such as /tmp would let another user plant the tree that sandboxes
// run.
Result<std::string> home_dir() {
  if (auto h = writable_home()) return *h;
  return private_tmp_dir();
}

std::string read_stamp(const std::string& dir) {
  std::ifstream in(dir + "/.nsbox-stamp");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool dir_nonempty(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n > 2;
}

}  // namespace

Result<std::string> default_rootfs_dir() {
  if (geteuid() == 0) return std::string("/var/lib/nsbox/rootfs");
  const char* xdg = getenv("XDG_DATA_HOME");
  std::string base = xdg && *xdg == '/' ? xdg : TRY(home_dir()) + "/.local/share";
  return base + "/nsbox/rootfs";
}

std::string rootfs_stamp(const std::string& python) {
  uint64_t h = kFnv1aOffset;
  for (const char* name : {"rootfs/build_rootfs.py", "rootfs/runner.py"}) {
    const EmbeddedFile* f = find_embedded(name);
    if (f) h = fnv1a64(f->content, h);
  }
  struct stat st;
  char real[4096];
  if (realpath(python.c_str(), real) && stat(real, &st) == 0) {
    h = fnv1a64(real, h);
    h = fnv1a64(std::to_string(st.st_size) + ":" + std::to_string(st.st_mtime), h);
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

namespace {

// DIR/.nsbox-sources: "SIZE MTIME_NS PATH" for every shared library the
// builder copied. A security update of one (libssl, libexpat, libc) must
// reach the sandboxes, which run the tree's copies; the stamp covers only
// the interpreter. A tree without the list (or with a line that does not
// parse) is stale.
bool sources_unchanged(const std::string& dir) {
  std::ifstream in(dir + "/.nsbox-sources");
  if (!in) return false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    unsigned long long size = 0, mtime_ns = 0;
    std::string path;
    if (!(fields >> size >> mtime_ns) || !std::getline(fields >> std::ws, path) || path.empty())
      return false;
    struct stat st;
    // Whole seconds, as the stamp does: some file systems (hostfs in the
    // UML guest) report none of the nanoseconds the builder saw.
    if (stat(path.c_str(), &st) != 0 || static_cast<unsigned long long>(st.st_size) != size ||
        static_cast<unsigned long long>(st.st_mtim.tv_sec) != mtime_ns / 1000000000ull)
      return false;
  }
  return true;
}

}  // namespace

bool rootfs_fresh(const std::string& dir, const std::string& python) {
  return read_stamp(dir) == rootfs_stamp(python) && sources_unchanged(dir);
}

std::string rootfs_identity(const std::string& dir) {
  std::string id;
  for (const char* name : {"/.nsbox-stamp", "/.nsbox-sources"}) {
    std::ifstream in(dir + name);
    if (!in) continue;
    id.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    id.push_back('\0');
  }
  return id;
}

namespace {

// Builds DIR.tmp-PID and has it renamed into place, the previous tree to
// DIR.old-PID, which the caller removes once nothing uses it. SIGINT or
// SIGTERM stop the build: the builder and every process it started (one
// process group) are killed and their half-built tree removed, so nothing
// is left running or on disk (the error's errno is EINTR). The builder
// inherits the build lock, so a builder that outlived its parent would
// still keep a second one from starting.
Result<std::string> run_builder(const std::string& dir, const std::string& python, int lock_fd) {
  const EmbeddedFile* builder = find_embedded("rootfs/build_rootfs.py");
  const EmbeddedFile* runner = find_embedded("rootfs/runner.py");
  if (!builder || !runner) return make_error("rootfs", "builder or runner not embedded");
  char tmpl[] = "/tmp/nsbox-runner-XXXXXX";
  int tfd = mkstemp(tmpl);
  if (tfd < 0) return sys_error("mkstemp", tmpl);
  UniqueFd tmp(tfd);
  struct Unlink {
    const char* path;
    ~Unlink() { unlink(path); }
  } unlink_runner{tmpl};
  if (write(tfd, runner->content.data(), runner->content.size()) !=
      static_cast<ssize_t>(runner->content.size()))
    return sys_error("write", tmpl);
  std::string script(builder->content);
  std::string stamp = rootfs_stamp(python);
  std::vector<const char*> argv = {python.c_str(), "-I",          "-c",       script.c_str(),
                                   "--out",        dir.c_str(),   "--runner", tmpl,
                                   "--stamp",      stamp.c_str(), "--python", python.c_str(),
                                   nullptr};

  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, &old);
  struct Restore {
    sigset_t mask;
    ~Restore() { pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{old};
  UniqueFd sig(signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sig.valid()) return sys_error("signalfd", "rootfs builder");
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return sys_error("pipe2");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork", "rootfs builder");
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    fcntl(lock_fd, F_SETFD, 0);
    dup2(wr.get(), 1);
    execv(argv[0], const_cast<char* const*>(argv.data()));
    perror(python.c_str());
    _exit(127);
  }
  setpgid(pid, pid);  // either side may run first; both set it
  wr.reset();
  std::string out;
  int stopped_by = 0;
  for (bool open = true; open && stopped_by == 0;) {
    struct pollfd p[2] = {{rd.get(), POLLIN, 0}, {sig.get(), POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      stopped_by = -1;
      break;
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (read(sig.get(), &si, sizeof si) == sizeof si) stopped_by = int(si.ssi_signo);
    }
    if (p[0].revents & (POLLIN | POLLHUP)) {
      char buf[4096];
      ssize_t n = read(rd.get(), buf, sizeof buf);
      if (n > 0)
        out.append(buf, size_t(n));
      else if (n == 0 || errno != EINTR)
        open = false;
    }
  }
  if (stopped_by != 0) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (stopped_by != 0) {
    // Whatever of the group outlived its leader dies with the signal above;
    // the tree it was writing goes here.
    // Workers of the group may still be dying and writing a file or two:
    // retried for a moment.
    std::error_code ec;
    const std::string half = dir + ".tmp-" + std::to_string(pid);
    for (int i = 0; i < 30; i++) {
      std::filesystem::remove_all(half, ec);
      if (!ec) break;
      usleep(100 * 1000);
    }
    if (stopped_by < 0) return sys_error("poll", "rootfs builder");
    return Error{EINTR, "rootfs", dir,
                 std::string("the build was stopped by SIG") + sigabbrev_np(stopped_by) +
                     " before it finished; nothing of it is left"};
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return make_error("rootfs",
                      "building " + dir + " with " + python + " failed (see the messages above)");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Whether name is BASE.<kind>-PID, as build_rootfs.py names the trees it
// builds (tmp) and replaces (old): nothing else beside DIR is touched.
bool leftover_name(const std::string& name, const std::string& base, const std::string& kind) {
  const std::string prefix = base + "." + kind + "-";
  return name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
         std::all_of(name.begin() + long(prefix.size()), name.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// Leftovers of earlier builds, beside DIR: half-built trees of builders
// that were killed (safe to remove under the build lock, which every
// builder holds) and, when nothing uses the rootfs any more, the trees that
// rebuilds replaced (each an nsbox rootfs, with its stamp).
void remove_leftovers(const std::string& dir, bool replaced_too) {
  const size_t slash = dir.find_last_of('/');
  const std::string parent = slash == 0 ? "/" : dir.substr(0, slash);
  const std::string base = dir.substr(slash + 1);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    const bool tmp = leftover_name(name, base, "tmp");
    const bool old =
        replaced_too && leftover_name(name, base, "old") && !read_stamp(e.path().string()).empty();
    if (!tmp && !old) continue;
    std::error_code rm;
    std::filesystem::remove_all(e.path(), rm);
    if (rm)
      std::fprintf(stderr, "nsbox: rootfs: could not remove %s: %s\n", e.path().c_str(),
                   rm.message().c_str());
  }
}

// DIR.users, for a shared lock; read-only where the caller may not write
// beside the tree (another user's tree). Invalid when it neither exists nor
// can be made.
UniqueFd open_users(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd.valid()) fd.reset(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  return fd;
}

// A tree's users hold two shared locks on DIR.users. An open-file-
// description lock: flock grants an exclusive lock through a read-only fd, so
// any user who may read the file could hold one and stall every daemon and
// `nsbox run` in a shared wait, whereas an OFD write lock needs a writable
// fd, so others can only share. And, never waited for, an flock: an nsbox
// from before the OFD locks takes and tests only that, and the two kinds do
// not see each other, so each must see the other's users.
bool mark_in_use(int fd) {
  struct flock fl {};
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  while (fcntl(fd, F_OFD_SETLKW, &fl) != 0)
    if (errno != EINTR) return false;
  (void)flock(fd, LOCK_SH | LOCK_NB);
  return true;
}

// True when no one uses the tree: both exclusive locks taken, without
// waiting (a reader may hold an flock to look busy, which only keeps
// leftovers a while). mark_in_use turns them back into shared ones.
bool claim_unused(int fd) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  return fcntl(fd, F_OFD_SETLK, &fl) == 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;
}

// DIR.lock: only its owner may open it at all (0600), since flock lets a
// reader hold it exclusively. One an older nsbox left 0644 is made anew, not
// chmod'ed: an fd someone opened while it was readable would still lock it.
UniqueFd open_build_lock(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
      (st.st_mode & 077))
    unlink(path.c_str());
  return UniqueFd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
}

// Whether this caller may rebuild the tree: it can write beside it.
// Every entry of an existing tree belongs to the caller (or root) and is
// writable by no one else. Root's template runs the tree's Python as root
// (tools/nsbox_template.cpp), and a rebuild renames the tree aside and
// deletes it: a tree another user could change would run their code as
// root, and a tree of theirs would be deleted by root. Symlinks' own modes
// mean nothing; whoever could write their directory is what counts.
thread_local std::string* g_tree_problem;
Status check_tree_private(const std::string& dir) {
  std::string problem;
  g_tree_problem = &problem;
  int rc = nftw(
      dir.c_str(),
      [](const char* path, const struct stat* st, int type, FTW*) -> int {
        const uid_t me = geteuid();
        if (type == FTW_NS || type == FTW_DNR) {
          // Gone since its directory was read: a rebuild elsewhere swapped
          // the tree (what replaced it is what the lock and stamp decide on).
          struct stat now;
          if (lstat(path, &now) != 0 && errno == ENOENT) return 0;
          *g_tree_problem = std::string(path) + " cannot be read";
          return 1;
        }
        if (st->st_uid != me && st->st_uid != 0) {
          *g_tree_problem = std::string(path) + " belongs to uid " + std::to_string(st->st_uid);
          return 1;
        }
        if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_IWGRP | S_IWOTH))) {
          *g_tree_problem = std::string(path) + " is writable by its group or others (mode " +
                            mode_octal(st->st_mode) + ")";
          return 1;
        }
        return 0;
      },
      64, FTW_PHYS);
  g_tree_problem = nullptr;
  if (rc < 0) return sys_error("nftw", dir);
  if (rc == 0) return {};
  const std::string who = geteuid() == 0 ? "root" : "you (or root)";
  return make_error("rootfs", problem + ": nsbox uses only a tree that " + who +
                                  " alone can change (its Python runs with nsbox's rights); "
                                  "make one with " +
                                  (geteuid() == 0 ? "sudo " : "") +
                                  "nsbox rootfs build --out NEWDIR and pass that, or fix "
                                  "the owner and mode");
}

bool may_rebuild(const std::string& dir) {
  const std::string parent = dir.substr(0, dir.find_last_of('/'));
  return access(parent.empty() ? "/" : parent.c_str(), W_OK) == 0;
}

// The build lock, waiting for another build to finish; a SIGINT or SIGTERM
// pending meanwhile (the daemon blocks them) ends the wait.
Status lock_build(int fd, const std::string& path) {
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return {};
    if (errno != EWOULDBLOCK && errno != EINTR) return sys_error("flock", path);
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM))
      return Error{EINTR, "rootfs", path,
                   "stopped by a signal while another process was building the rootfs"};
    usleep(100 * 1000);
  }
}

}  // namespace

Result<RootfsBuild> ensure_rootfs(const std::string& dir_arg, bool force, const std::string& python,
                                  bool use_only) {
  std::string dir = dir_arg;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty() || dir[0] != '/' || dir == "/")
    return make_error("rootfs", "\"" + dir_arg + "\" must be an absolute path other than /");
  if (dir.find_first_of(",:\\") != std::string::npos)
    return make_error(
        "rootfs",
        "\"" + dir + "\" contains ',', ':' or '\\', which overlayfs options cannot carry");
  // The builder runs what it copied into DIR.tmp-PID to check it, and
  // sandboxes mount DIR: neither may be somewhere another user can swap.
  // Checked through the symlinks above it resolved, so used that way too:
  // a symlink on the way that a user owns could otherwise point at root's
  // tree for the checks and at theirs for the mount and the template's
  // Python. The resolved directories are root's or the caller's (checked),
  // so what this names stays put.
  dir = TRY(check_private_ancestors(dir));
  if (dir.find_first_of(",:\\") != std::string::npos)
    return make_error("rootfs", "\"" + dir_arg + "\" resolves to \"" + dir +
                                    "\", which contains ',', ':' or '\\', which overlayfs "
                                    "options cannot carry");
  // A FUSE filesystem answers stat() as its mounting user's program likes:
  // every owner and mode checked here could be made up, and the contents
  // changed after. Root uses no tree on one.
  {
    struct statfs sf;
    const std::string parent = dir.substr(0, std::max<size_t>(1, dir.find_last_of('/')));
    for (const std::string& p : {parent, dir})
      if (geteuid() == 0 && statfs(p.c_str(), &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC)
        return make_error("rootfs", p + " is on a FUSE filesystem, whose owners and modes its "
                                        "mounting user decides: as root nsbox uses no rootfs "
                                        "there; pick a directory on a local filesystem");
  }
  RootfsBuild result;
  result.path = dir;
  // Two locks beside the tree: DIR.lock, held by whoever builds, so that
  // concurrent callers build once; DIR.users, shared by every process that
  // uses the tree (a daemon, for its lifetime), so that a rebuild knows
  // whether the tree it replaced may go yet: a running sandbox's overlay
  // still reads it.
  const std::string lock_path = dir + ".lock", users_path = dir + ".users";
  // The builder renames what is there aside, and sandboxes mount what is
  // there: only a directory may be (a mistyped --out /etc/passwd must move
  // nothing, and a symlink would leave the tree's own ancestors unchecked).
  struct stat st;
  if (lstat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    return make_error("rootfs", dir +
                                    " exists and is not a directory; remove it or pick "
                                    "another --rootfs");
  if (lstat(dir.c_str(), &st) == 0) TRY(check_tree_private(dir));
  bool fresh = !force && rootfs_fresh(dir, python);
  if (!force && !fresh && read_stamp(dir) == rootfs_stamp(python) && !may_rebuild(dir)) {
    // Another user's tree (root's, say) whose libraries were updated since
    // it was built: only its owner can rebuild it, and a tree that is old
    // beats no sandbox at all.
    std::fprintf(stderr,
                 "nsbox: rootfs: %s was built from shared libraries that have been updated "
                 "since; using it as it is: its owner can rebuild it (nsbox rootfs build --out "
                 "%s, or by restarting nsbox serve)\n",
                 dir.c_str(), dir.c_str());
    fresh = true;
  }
  if (!fresh && use_only)
    return make_error("rootfs", "no fresh nsbox rootfs at " + dir +
                                    ", and under sudo nsbox run makes none (sudo nsbox rootfs "
                                    "build --out " +
                                    dir + " does, or leave out --rootfs)");
  if (fresh) {
    // Fresh: used at once, without the build lock, which a build elsewhere
    // may hold for a while. Leftovers go when no one uses the tree and no
    // build runs.
    result.in_use = open_users(users_path);
    if (result.in_use.valid()) {
      if (claim_unused(result.in_use.get())) {
        UniqueFd lock = open_build_lock(lock_path);
        if (lock.valid() && flock(lock.get(), LOCK_EX | LOCK_NB) == 0) remove_leftovers(dir, true);
      }
      // Waits only while a build that found the tree unused swaps it.
      if (!mark_in_use(result.in_use.get())) return sys_error("fcntl", users_path);
    }
    return result;
  }

  // Someone else's directory is refused before DIR.lock and DIR.users are
  // made beside it (checked again under the lock: a build may start).
  auto foreign = [&]() -> Status {
    if (read_stamp(dir).empty() && dir_nonempty(dir))
      return make_error("rootfs", dir +
                                      " exists but is not an nsbox rootfs (no .nsbox-stamp); "
                                      "remove it or pick another --rootfs");
    return {};
  };
  TRY(foreign());
  std::string parent = dir.substr(0, dir.find_last_of('/'));
  TRY(mkdir_p(parent.empty() ? "/" : parent, 0755));
  UniqueFd lock = open_build_lock(lock_path);
  if (!lock.valid()) return sys_error("open", lock_path);
  TRY(lock_build(lock.get(), lock_path));
  result.in_use = open_users(users_path);
  if (!result.in_use.valid()) return sys_error("open", users_path);
  const bool unused = claim_unused(result.in_use.get());
  remove_leftovers(dir, unused);
  if (force || !rootfs_fresh(dir, python)) {  // else built while we waited
    TRY(foreign());
    result.summary = TRY(run_builder(dir, python, lock.get()));
    result.built = true;
    if (unused) remove_leftovers(dir, true);
  }
  if (!mark_in_use(result.in_use.get())) return sys_error("fcntl", users_path);
  return result;
}

}  // namespace nsbox
