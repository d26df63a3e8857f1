#include "tests/integration/daemon.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "tests/integration/harness.hpp"

namespace nsbox::test {

namespace {
int pick_port() {
  static int next = 0;
  if (!next) next = 20000 + (getpid() * 7) % 20000;
  return next++;
}
}  // namespace

Daemon::Daemon(std::string state_dir, std::string extra_config)
    : state_dir_(std::move(state_dir)), extra_(std::move(extra_config)) {
  config_path_ = state_dir_ + ".toml";
  log_path_ = state_dir_ + ".log";
}

Daemon::~Daemon() {
  if (pid_ > 0) stop();
}

bool Daemon::start() {
  for (int attempt = 0; attempt < 5; attempt++) {
    port_ = pick_port();
    std::ofstream(config_path_) << "[server]\nlisten = \"127.0.0.1:" << port_
                                << "\"\nstate_dir = \"" << state_dir_ << "\"\n"
                                << extra_;
    std::string bin = as_uid_ ? unprivileged_nsbox_bin() : nsbox_bin();
    if (as_uid_) {
      mkdir(state_dir_.c_str(), 0700);
      if (chown(state_dir_.c_str(), as_uid_, as_uid_) != 0) return false;
    }
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      dup2(fd, 2);
      dup2(fd, 1);
      signal(SIGPIPE, SIG_DFL);  // as systemd starts it: the daemon must ignore it itself
      if (open_files_) {
        // Gone from every set an exec as root could take it back from.
        __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct caps[2]{};
        rlimit r{open_files_, open_files_};
        bool ok = syscall(SYS_capget, &h, caps) == 0;
        caps[CAP_SYS_RESOURCE / 32].inheritable &= ~(1u << (CAP_SYS_RESOURCE % 32));
        if (!ok || syscall(SYS_capset, &h, caps) != 0 ||
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 ||
            prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0) != 0 ||
            setrlimit(RLIMIT_NOFILE, &r) != 0) {
          fprintf(stderr, "test harness: cannot limit open files: %s\n", strerror(errno));
          _exit(125);
        }
      }
      if (rlimit z{0, 0}; zero_core_ && setrlimit(RLIMIT_CORE, &z) != 0) _exit(125);
      if (as_uid_ && (setgroups(0, nullptr) || setresgid(as_uid_, as_uid_, as_uid_) ||
                      setresuid(as_uid_, as_uid_, as_uid_)))
        _exit(126);
      const char* argv[] = {bin.c_str(), "serve", "--config", config_path_.c_str(),
                            nullptr,     nullptr, nullptr,    nullptr,
                            nullptr};
      int argc = 4;
      if (as_uid_) argv[argc++] = "--rootless";
      if (verbose_) argv[argc++] = "-v";
      if (!spawners_.empty()) {
        argv[argc++] = "--spawners";
        argv[argc++] = spawners_.c_str();
      }
      execv(bin.c_str(), const_cast<char* const*>(argv));
      _exit(127);
    }
    bool exited = false;
    bool answered = wait_until(
        [&] {
          int st;
          if (waitpid(pid_, &st, WNOHANG) == pid_) {
            exited = true;
            return true;
          }
          httplib::Client c("127.0.0.1", port_);
          c.set_connection_timeout(1);
          auto r = c.Get("/healthz");
          return r && r->status == 200;
        },
        30000, "nsbox serve on port " + std::to_string(port_) + " to answer /healthz");
    if (!exited) return answered;
    pid_ = -1;  // maybe the port was taken; try another
  }
  return false;
}

int Daemon::stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int st = 0;
  waitpid(pid_, &st, 0);
  pid_ = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int Daemon::wait_exit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  int status = -1;
  wait_until(
      [&] {
        int st;
        if (waitpid(pid_, &st, WNOHANG) != pid_) return false;
        pid_ = -1;
        status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return true;
      },
      timeout_ms, "nsbox serve to exit");
  return status;
}

bool Daemon::kill9() {
  if (pid_ <= 0) return true;
  const std::vector<pid_t> started = descendants(pid_);
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  // The spawner and the sandboxes die with it (PDEATHSIG), a moment later:
  // the next daemon, or a residue check, must not see them still there.
  return wait_until([&] { return std::none_of(started.begin(), started.end(), running); }, 10000,
                    "the killed daemon's spawner and sandboxes to die");
}

std::unique_ptr<httplib::Client> Daemon::client(int timeout_s) const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  c->set_connection_timeout(5);
  c->set_read_timeout(timeout_s);
  c->set_write_timeout(timeout_s);
  return c;
}

std::string Daemon::token() const {
  std::ifstream in(state_dir_ + "/token");
  std::string t;
  std::getline(in, t);
  return t;
}

std::string Daemon::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

httplib::Headers auth(const Daemon& d) {
  return {{"Authorization", "Bearer " + d.token()}};
}

double Daemon::metric(const std::string& key) const {
  auto r = client()->Get("/metrics", auth(*this));
  if (!r || r->status != 200) return -1;
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + " ", 0) == 0) return std::stod(line.substr(key.size() + 1));
  return -1;
}

std::string Daemon::access_line(const std::string& rid) const {
  std::string found;
  if (rid.empty()) return found;
  wait_until(
      [&] {
        std::istringstream text(log());
        std::string line;
        while (std::getline(text, line))
          if (line.rfind(rid + " ", 0) == 0) {
            found = line;
            return true;
          }
        return false;
      },
      3000, "the access-log line of request " + rid);
  return found;
}

httplib::Result deploy_probe(const Daemon& d, const std::string& name, const std::string& probe,
                             const std::string& query) {
  std::ifstream f(nsbox::test::probe(probe));
  std::stringstream code;
  code << f.rdbuf();
  return d.client()->Put(("/functions/" + name + query).c_str(), auth(d), code.str(),
                         "text/x-python");
}

nlohmann::json invoke(const Daemon& d, const std::string& name, const nlohmann::json& event,
                      int* status) {
  auto r = d.client()->Post(("/fn/" + name).c_str(), event.dump(), "application/json");
  if (status) *status = r ? r->status : 0;
  return r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
}

std::vector<pid_t> spawners_of(const Daemon& d) {
  std::vector<pid_t> out;
  std::ifstream children("/proc/" + std::to_string(d.pid()) + "/task/" + std::to_string(d.pid()) +
                         "/children");
  for (pid_t pid; children >> pid;) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name == "nsbox-spawner") out.push_back(pid);
  }
  return out;
}

pid_t spawner_of(const Daemon& d) {
  std::ifstream children("/proc/" + std::to_string(d.pid()) + "/task/" + std::to_string(d.pid()) +
                         "/children");
  pid_t spawner = 0;
  children >> spawner;
  return spawner;
}

}  // namespace nsbox::test
