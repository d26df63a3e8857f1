#include "rootfs/rootfs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/hash.hpp"
#include "policies/embedded.hpp"

namespace nsbox {

namespace {

std::string home_dir() {
  const char* h = getenv("HOME");
  return h && *h ? h : "/tmp";
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

std::string default_rootfs_dir() {
  if (geteuid() == 0) return "/var/lib/nsbox/rootfs";
  const char* xdg = getenv("XDG_DATA_HOME");
  std::string base = xdg && *xdg == '/' ? xdg : home_dir() + "/.local/share";
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

bool rootfs_fresh(const std::string& dir, const std::string& python) {
  return read_stamp(dir) == rootfs_stamp(python);
}

Result<RootfsBuild> ensure_rootfs(const std::string& dir, bool force, const std::string& python) {
  if (dir.empty() || dir[0] != '/')
    return make_error("rootfs", "\"" + dir + "\" must be an absolute path");
  if (dir.find_first_of(",:\\") != std::string::npos)
    return make_error(
        "rootfs",
        "\"" + dir + "\" contains ',', ':' or '\\', which overlayfs options cannot carry");
  RootfsBuild result;
  if (!force && rootfs_fresh(dir, python)) return result;

  std::string parent = dir.substr(0, dir.find_last_of('/'));
  TRY(mkdir_p(parent.empty() ? "/" : parent, 0755));
  std::string lock_path = dir + ".lock";
  UniqueFd lock(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock.valid()) return sys_error("open", lock_path);
  if (flock(lock.get(), LOCK_EX) != 0) return sys_error("flock", lock_path);
  if (!force && rootfs_fresh(dir, python)) return result;  // built while we waited
  if (read_stamp(dir).empty() && dir_nonempty(dir))
    return make_error("rootfs", dir +
                                    " exists but is not an nsbox rootfs (no .nsbox-stamp); "
                                    "remove it or pick another --rootfs");

  const EmbeddedFile* builder = find_embedded("rootfs/build_rootfs.py");
  const EmbeddedFile* runner = find_embedded("rootfs/runner.py");
  if (!builder || !runner) return make_error("rootfs", "builder or runner not embedded");
  char tmpl[] = "/tmp/nsbox-runner-XXXXXX";
  int tfd = mkstemp(tmpl);
  if (tfd < 0) return sys_error("mkstemp", tmpl);
  UniqueFd tmp(tfd);
  if (write(tfd, runner->content.data(), runner->content.size()) !=
      static_cast<ssize_t>(runner->content.size())) {
    unlink(tmpl);
    return sys_error("write", tmpl);
  }
  std::string script(builder->content);
  std::string stamp = rootfs_stamp(python);
  std::vector<const char*> argv = {python.c_str(), "-I",          "-c",       script.c_str(),
                                   "--out",        dir.c_str(),   "--runner", tmpl,
                                   "--stamp",      stamp.c_str(), "--python", python.c_str(),
                                   nullptr};
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return sys_error("pipe2");
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork", "rootfs builder");
  if (pid == 0) {
    dup2(pipefd[1], 1);
    execv(argv[0], const_cast<char* const*>(argv.data()));
    perror(python.c_str());
    _exit(127);
  }
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, n);
  close(pipefd[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  unlink(tmpl);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return make_error("rootfs",
                      "building " + dir + " with " + python + " failed (see the messages above)");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  result.built = true;
  result.summary = out;
  return result;
}

}  // namespace nsbox
