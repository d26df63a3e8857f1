#include "tests/integration/harness.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace nsbox::test {

nlohmann::json Outcome::json() const {
  return nlohmann::json::parse(out, nullptr, false);
}

std::string nsbox_bin() {
  const char* b = getenv("NSBOX_BIN");
  return b ? b : "build/tools/nsbox";
}

std::string probe(const std::string& name) {
  const char* d = getenv("NSBOX_PROBES");
  return std::string(d ? d : "tests/probes") + "/" + name;
}

std::string host_hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

nlohmann::json in_sandbox(nlohmann::json event) {
  event["host_hostname"] = host_hostname();
  return event;
}

std::string proc_status(pid_t pid, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 1);
  return "";
}

long cpu_ticks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(f)), {});
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream rest(stat.substr(paren + 2));  // from field 3, the state
  std::string field;
  long ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; i++)
    if (i == 14 || i == 15) ticks += std::stol(field);  // utime, stime
  return ticks;
}

namespace {

// This run's scratch directory, /tmp/nsbox-test-XXXXXX: named by mkdtemp,
// so no other user can have made it or planted links in it (the tests run
// as root and write where they point), and 0755, so that a sandbox's
// unprivileged uid can reach what is beneath. Removed when the test binary
// exits (not when a forked child does).
const std::string& run_dir() {
  // The path for the exit handler, in storage that outlives every
  // std::string destroyed at exit.
  static char made[32] = "/tmp/nsbox-test-XXXXXX";
  static const std::string dir = [] {
    if (mkdtemp(made) == nullptr || chmod(made, 0755) != 0) {
      std::perror("mkdtemp /tmp/nsbox-test-XXXXXX");
      std::abort();
    }
    static const pid_t owner = getpid();
    std::atexit([] {
      if (getpid() != owner) return;
      std::string cmd = std::string("rm -rf '") + made + "'";
      if (system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", made);
    });
    return std::string(made);
  }();
  return dir;
}

// An unprivileged user may not be able to reach the build tree (CI may clone
// under a 0700 home): give it copies in a world-readable temp dir.
std::string unprivileged_copy(const std::string& path, mode_t mode) {
  static const std::string dir = [] {
    std::string d = run_dir() + "/unpriv";
    mkdir(d.c_str(), 0755);
    chmod(d.c_str(), 0755);
    return d;
  }();
  std::string base = path.substr(path.find_last_of('/') + 1);
  std::string copy = dir + "/" + base;
  std::ifstream in(path, std::ios::binary);
  std::ofstream out(copy, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  out.close();
  chmod(copy.c_str(), mode);
  return copy;
}

// nsbox and the programs it finds beside itself, as an install puts them.
std::string unprivileged_nsbox_copy(const std::string& bin) {
  for (const char* sibling : {"nsbox-http", "nsbox-init"})
    unprivileged_copy(bin.substr(0, bin.find_last_of('/') + 1) + sibling, 0755);
  return unprivileged_copy(bin, 0755);
}

RunSpec for_unprivileged(RunSpec spec) {
  std::string bin = nsbox_bin();
  std::string probes = probe("");
  for (auto& a : spec.argv) {
    if (a == bin) {
      a = unprivileged_nsbox_copy(bin);
    } else if (a.rfind(probes, 0) == 0) {
      a = unprivileged_copy(a, 0644);
    }
  }
  return spec;
}

}  // namespace

std::string unprivileged_nsbox_bin() {
  return unprivileged_nsbox_copy(nsbox_bin());
}

std::string unprivileged_probes_dir() {
  std::string dir = probe("");
  std::string copy;
  DIR* d = opendir(dir.c_str());
  if (!d) return "";
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 3 && name.ends_with(".py")) copy = unprivileged_copy(dir + name, 0644);
  }
  closedir(d);
  return copy.substr(0, copy.find_last_of('/'));
}

bool rootless_as(uid_t uid, RunSpec* spec) {
  const std::string dir = "/tmp/nsbox-rootless-test-" + std::to_string(uid);
  mkdir(dir.c_str(), 0755);
  // /tmp is anyone's: never follow a link someone put there.
  struct stat st;
  if (geteuid() == 0 && lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0)
    (void)!lchown(dir.c_str(), uid, uid);
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != uid) {
    std::fprintf(stderr, "%s is not a directory of uid %u\n", dir.c_str(), unsigned(uid));
    return false;
  }
  spec->env.insert(spec->env.end(),
                   {"HOME=/nonexistent", "XDG_DATA_HOME=" + dir + "/data",
                    "XDG_CACHE_HOME=" + dir + "/cache", "XDG_RUNTIME_DIR=" + dir + "/run"});
  if (uid != geteuid()) spec->as_uid = uid;
  spec->timeout_s = std::max(spec->timeout_s, 120);  // the first run builds the rootfs
  return true;
}

RunSpec client_spec(const std::vector<std::string>& args, const std::string& server,
                    const std::string& token) {
  RunSpec s;
  s.argv = {nsbox_bin()};
  s.argv.insert(s.argv.end(), args.begin(), args.end());
  s.argv.insert(s.argv.end(), {"--server", server});
  s.env = {"NSBOX_TOKEN=" + token};
  return s;
}

Outcome run(const RunSpec& original) {
  const RunSpec spec = original.as_uid ? for_unprivileged(original) : original;
  int out[2], err[2], in[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(in, O_CLOEXEC)) abort();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    // As a shell starts a command: this suite ignores SIGPIPE, and an
    // ignored disposition survives exec, which would hide a command that
    // dies of one.
    signal(SIGPIPE, SIG_DFL);
    for (const auto& e : spec.env) putenv(strdup(e.c_str()));
    if (spec.as_uid) {
      if (setgroups(0, nullptr) || setresgid(spec.as_uid, spec.as_uid, spec.as_uid) ||
          setresuid(spec.as_uid, spec.as_uid, spec.as_uid))
        _exit(126);
    }
    std::vector<char*> argv;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (!spec.stdin_text.empty()) (void)!write(in[1], spec.stdin_text.data(), spec.stdin_text.size());
  close(in[1]);
  Outcome o;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(spec.timeout_s);
  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, left) <= 0) continue;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[65536];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      } else {
        (i == 0 ? o.out : o.err).append(buf, n);
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int st = 0;
  waitpid(pid, &st, 0);
  o.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return o;
}

PtyOutcome run_on_pty(const RunSpec& original) {
  const RunSpec spec = original.as_uid ? for_unprivileged(original) : original;
  PtyOutcome o;
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) abort();
  char name[128];
  if (ptsname_r(master, name, sizeof name) != 0) abort();
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) abort();
  pid_t shell = fork();
  if (shell == 0) {
    // The "shell". Opening the slave as a session leader without a
    // controlling terminal makes it ours; TIOCSCTTY says so explicitly.
    if (setsid() < 0) _exit(120);
    int slave = open(name, O_RDWR | O_CLOEXEC);
    if (slave < 0 || ioctl(slave, TIOCSCTTY, 0) != 0) _exit(121);
    pid_t cmd = fork();
    if (cmd == 0) {
      dup2(slave, 0);
      dup2(slave, 1);
      dup2(slave, 2);
      signal(SIGPIPE, SIG_DFL);  // as in run()
      for (const auto& e : spec.env) putenv(strdup(e.c_str()));
      if (spec.as_uid) {
        if (setgroups(0, nullptr) || setresgid(spec.as_uid, spec.as_uid, spec.as_uid) ||
            setresuid(spec.as_uid, spec.as_uid, spec.as_uid))
          _exit(126);
      }
      std::vector<char*> argv;
      for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    int st = 0;
    waitpid(cmd, &st, 0);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    // Input typed (or pushed) without a newline waits in the canonical
    // line buffer, invisible to read(); raw mode hands it over.
    struct termios t;
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    tcsetattr(slave, TCSANOW, &t);
    std::string typed;
    char buf[4096];
    ssize_t n;
    while ((n = read(slave, buf, sizeof buf)) > 0) typed.append(buf, n);
    (void)!write(report[1], &code, sizeof code);
    (void)!write(report[1], typed.data(), typed.size());
    _exit(0);
  }
  close(report[1]);
  std::string rep;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(spec.timeout_s);
  struct pollfd fds[2] = {{master, POLLIN, 0}, {report[0], POLLIN, 0}};
  while (fds[1].fd >= 0) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) {
      kill(shell, SIGKILL);
      break;
    }
    if (poll(fds, 2, left) <= 0) continue;
    char buf[65536];
    if (fds[0].fd >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n > 0)
        o.screen.append(buf, n);
      else
        fds[0].fd = -1;  // EIO: no slave open any more
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(report[0], buf, sizeof buf);
      if (n > 0)
        rep.append(buf, n);
      else
        fds[1].fd = -1;
    }
  }
  // What the command wrote just before it ended may still be in the pty.
  fcntl(master, F_SETFL, O_NONBLOCK);
  char buf[65536];
  ssize_t n;
  while ((n = read(master, buf, sizeof buf)) > 0) o.screen.append(buf, n);
  close(master);
  close(report[0]);
  waitpid(shell, nullptr, 0);
  if (rep.size() >= sizeof(int)) {
    std::memcpy(&o.exit_code, rep.data(), sizeof(int));
    o.typed = rep.substr(sizeof(int));
  }
  return o;
}

bool wait_until(const std::function<bool()>& pred, int timeout_ms, const std::string& what) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) {
      std::fprintf(stderr, "timed out after %d ms waiting for %s\n", timeout_ms, what.c_str());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

TempDir::TempDir(const std::string& tag) : path(run_dir() + "/" + tag) {
  remove();
}

TempDir::~TempDir() {
  remove();
}

void TempDir::remove() const {
  std::string cmd = "rm -rf '" + path + "' '" + path + ".toml' '" + path + ".log' '" + path +
                    ".lock' '" + path + ".users'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", path.c_str());
}

Outcome nsbox_run(const std::string& p, const std::vector<std::string>& args) {
  RunSpec s;
  s.argv = {nsbox_bin(), "run", probe(p)};
  s.argv.insert(s.argv.end(), args.begin(), args.end());
  return run(s);
}

namespace {

std::vector<std::string> list_dirs(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = opendir(path.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_type == DT_DIR && e->d_name[0] != '.') out.push_back(path + "/" + e->d_name);
  }
  closedir(d);
  return out;
}

}  // namespace

std::vector<pid_t> pids_named(const std::string& comm) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/comm");
    std::string c;
    if (std::getline(f, c) && c == comm) out.push_back(pid);
  }
  if (d) closedir(d);
  return out;
}

namespace {

// Field 3 (state) and 4 (ppid) of /proc/PID/stat; false when pid is gone.
bool stat_of(pid_t pid, char* state, pid_t* ppid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  // comm may hold spaces and parentheses: the fields resume after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  return bool(rest >> *state >> *ppid);
}

}  // namespace

std::vector<pid_t> descendants(pid_t pid) {
  std::vector<std::pair<pid_t, pid_t>> parent_of;  // (pid, ppid) of every process
  for (const auto& dir : list_dirs("/proc")) {
    pid_t p = static_cast<pid_t>(atoi(dir.c_str() + 6));
    char state;
    pid_t ppid;
    if (p > 0 && stat_of(p, &state, &ppid)) parent_of.emplace_back(p, ppid);
  }
  std::vector<pid_t> out;
  std::vector<pid_t> next = {pid};
  while (!next.empty()) {
    pid_t parent = next.back();
    next.pop_back();
    for (const auto& [p, pp] : parent_of) {
      if (pp != parent) continue;
      out.push_back(p);
      next.push_back(p);
    }
  }
  return out;
}

bool running(pid_t pid) {
  char state = 0;
  pid_t ppid;
  return stat_of(pid, &state, &ppid) && state != 'Z' && state != 'X';
}

HostResidue host_residue() {
  HostResidue r;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) r.mounts++;
  for (const std::string root :
       {"/sys/fs/cgroup/memory/nsbox", "/sys/fs/cgroup/pids/nsbox", "/sys/fs/cgroup/cpu/nsbox",
        "/sys/fs/cgroup/nsbox", "/sys/fs/cgroup/unified/nsbox", "/sys/fs/cgroup/nsbox-nocpu",
        "/sys/fs/cgroup/unified/nsbox-nocpu", "/sys/fs/cgroup/freezer/nsbox"}) {
    for (const auto& leaf : list_dirs(root)) {
      r.cgroup_leaves++;
      r.describe_leaves.push_back(leaf);
    }
  }
  // Sandbox processes run as host uids from 0x70000000 up (root mode). The
  // real uid from status, not the owner of /proc/PID: a non-dumpable
  // process (a sandbox's PID 1) shows as root's there.
  for (const auto& dir : list_dirs("/proc")) {
    std::ifstream status(dir + "/status");
    std::string line, state;
    long long uid = -1;
    while (std::getline(status, line)) {
      if (line.rfind("State:", 0) == 0) state = line.substr(7);
      if (line.rfind("Uid:", 0) == 0) uid = std::stoll(line.substr(4));
    }
    if (uid < 0x70000000ll || uid == 0xffffffffll) continue;
    // A zombie holds no memory, mount or cgroup: it is a sandbox PID 1
    // orphaned by a killed daemon and waiting for the host's init to reap
    // it (this VM's init reaps lazily). Only live processes count.
    if (state.rfind("Z", 0) == 0) continue;
    r.sandbox_procs++;
    std::ifstream cmd(dir + "/cmdline");
    std::string c;
    std::getline(cmd, c, '\0');
    r.describe_procs += dir + " " + c + " [" + state + "]; ";
  }
  for (const char* dev :
       {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}) {
    struct stat st;
    if (stat(dev, &st) != 0 || st.st_uid != 0 || st.st_gid != 0 || (st.st_mode & 07777) != 0666)
      r.devices_changed += std::string(dev) + " ";
  }
  return r;
}

}  // namespace nsbox::test
