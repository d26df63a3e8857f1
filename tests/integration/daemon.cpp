#include "tests/integration/daemon.hpp"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

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
      if (as_uid_ && (setgroups(0, nullptr) || setresgid(as_uid_, as_uid_, as_uid_) ||
                      setresuid(as_uid_, as_uid_, as_uid_)))
        _exit(126);
      if (as_uid_)
        execl(bin.c_str(), bin.c_str(), "serve", "--rootless", "--config", config_path_.c_str(),
              nullptr);
      else
        execl(bin.c_str(), bin.c_str(), "serve", "--config", config_path_.c_str(), nullptr);
      _exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;  // exited: maybe the port was taken; try another
      }
      httplib::Client c("127.0.0.1", port_);
      c.set_connection_timeout(1);
      if (auto r = c.Get("/healthz"); r && r->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (pid_ > 0) return false;
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
  for (int waited = 0; pid_ > 0 && waited <= timeout_ms; waited += 50) {
    int st;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

void Daemon::kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  // The spawner and the sandboxes die with it (PDEATHSIG); give the kernel a
  // moment to finish tearing the namespaces down.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
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

}  // namespace nsbox::test
