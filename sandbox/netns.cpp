#include "sandbox/netns.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "sandbox/fd_passing.hpp"
#include "sandbox/privileges.hpp"

namespace nsbox {

namespace {

constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";

[[noreturn]] void cannot_go_home(int err) {
  fprintf(stderr, "nsbox: setns back into this process's network namespace: %s\n", strerror(err));
  abort();
}

// Whether this thread may come back to `home` once it has left: setns into
// the namespace it is in makes the same check (CAP_SYS_ADMIN over the
// namespace's owner) and changes nothing. It fails where a process is root
// of a user namespace that does not own its network namespace (a container
// sharing the host's network): there, nothing is made ahead.
Status check_can_return(int home) {
  if (setns(home, CLONE_NEWNET) != 0)
    return sys_error("setns", "this thread's own network namespace (to come back to it)");
  return {};
}

}  // namespace

Result<UniqueFd> make_network_namespace() {
  UniqueFd home(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  if (!home.valid()) return sys_error("open", kThreadNetns);
  TRY(check_can_return(home.get()));
  if (unshare(CLONE_NEWNET) != 0) return sys_error("unshare", "CLONE_NEWNET");
  UniqueFd made(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  const int open_err = errno;
  const int lo_err = made.valid() ? child_loopback_up() : 0;
  if (setns(home.get(), CLONE_NEWNET) != 0) cannot_go_home(errno);
  if (!made.valid()) return sys_error_n(open_err, "open", "the new network namespace");
  if (lo_err) return sys_error_n(lo_err, "loopback up", "a network namespace made ahead");
  return made;
}

Status NetnsVisit::enter(int fd) {
  home_.reset(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  if (!home_.valid()) return sys_error("open", kThreadNetns);
  if (Status s = check_can_return(home_.get()); !s) {
    home_.reset();
    return s;
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    const int err = errno;
    home_.reset();
    return sys_error_n(err, "setns", "a network namespace made ahead");
  }
  return {};
}

NetnsVisit::~NetnsVisit() {
  if (home_.valid() && setns(home_.get(), CLONE_NEWNET) != 0) cannot_go_home(errno);
}

namespace {

// The helper: one namespace per byte asked, sent back with SCM_RIGHTS; on a
// failure its text, once, then gone. EOF (the parent closed or died) ends it.
[[noreturn]] void maker_main(int sock, pid_t parent) {
  prctl(PR_SET_NAME, "nsbox-netns");
  // A copy of the spawner's memory: no core dump, no ptrace by anyone else.
  prctl(PR_SET_DUMPABLE, 0);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(0);
  for (;;) {
    char c;
    ssize_t n = recv(sock, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) _exit(0);  // the spawner closed its end: stopping
    if (n < 0) {
      fprintf(stderr, "nsbox-netns: recv: %s\n", strerror(errno));
      _exit(1);
    }
    auto made = make_network_namespace();
    if (!made) {
      const std::string why = made.error().message();
      send_with_fds(sock, why.data(), why.size(), nullptr, 0);
      _exit(1);
    }
    int fd = made.value().get();
    if (send_with_fds(sock, "n", 1, &fd, 1) != 1) {
      fprintf(stderr, "nsbox-netns: send: %s\n", strerror(errno));
      _exit(1);
    }
  }
}

}  // namespace

NetnsMaker& NetnsMaker::operator=(NetnsMaker&& o) noexcept {
  if (this != &o) {
    stop();
    pid_ = std::exchange(o.pid_, -1);
    sock_ = std::move(o.sock_);
    ready_ = std::move(o.ready_);
    keep_ = o.keep_;
    asked_ = o.asked_;
    delivered_ = o.delivered_;
    retry_at_ms_ = o.retry_at_ms_;
    refused_ = o.refused_;
  }
  return *this;
}

Result<NetnsMaker> NetnsMaker::start(size_t keep) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return sys_error("socketpair", "network namespace maker");
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(sv[0]);
    close(sv[1]);
    return sys_error_n(err, "fork", "network namespace maker");
  }
  if (pid == 0) {
    // Nothing of the parent's but this socket and 0-2.
    const unsigned keep_fd = static_cast<unsigned>(sv[1]);
    if (keep_fd > 3) syscall(SYS_close_range, 3u, keep_fd - 1, 0u);
    syscall(SYS_close_range, keep_fd + 1, ~0u, 0u);
    maker_main(sv[1], parent);
  }
  close(sv[1]);
  NetnsMaker m;
  m.pid_ = pid;
  m.sock_.reset(sv[0]);
  if (fcntl(m.sock_.get(), F_SETFL, O_NONBLOCK) != 0) return sys_error("fcntl", "O_NONBLOCK");
  m.keep_ = keep;  // asked for at the first top_up(), not during the sandbox being made now
  return m;
}

void NetnsMaker::ensure_running(size_t keep, uint64_t retry_ms) {
  const uint64_t now = monotonic_ms();
  if (running() || refused_ || now < retry_at_ms_) return;
  if (retry_at_ms_ > 0 && delivered_ == 0) {
    refused_ = true;  // the last helper never made one: neither would the next
    LOG_WARN("network namespaces made ahead: the helper never delivered one; not restarted");
    return;
  }
  auto m = start(keep);
  if (m)
    *this = std::move(m.value());
  else
    LOG_WARN("no network namespaces made ahead: %s", m.error().message().c_str());
  retry_at_ms_ = now + retry_ms;
}

void NetnsMaker::top_up() {
  while (sock_.valid() && ready_.size() + asked_ < keep_) {
    if (send_with_fds(sock_.get(), "+", 1, nullptr, 0) != 1) {
      LOG_WARN("network namespaces made ahead: send to the helper: %s; making them inline",
               strerror(errno));
      return stop();
    }
    asked_++;
  }
}

void NetnsMaker::collect() {
  while (sock_.valid()) {
    char buf[512];
    int fd = -1;
    ssize_t n = recv_with_fds(sock_.get(), buf, sizeof buf - 1, &fd, 1);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n == 1 && buf[0] == 'n') {
      if (asked_ > 0) asked_--;
      // Without its fd the namespace was lost on the way (our fd table full):
      // the next top_up asks again.
      if (fd >= 0) {
        ready_.emplace_back(fd);
        delivered_++;
      }
      continue;
    }
    if (fd >= 0) close(fd);
    if (n > 0) {
      buf[n] = 0;
      LOG_WARN("network namespaces made ahead: the helper failed: %s; making them inline", buf);
    } else if (n == 0) {
      LOG_WARN("network namespaces made ahead: the helper exited; making them inline");
    } else {
      LOG_WARN("network namespaces made ahead: recv from the helper: %s; making them inline",
               strerror(errno));
    }
    stop();
  }
}

UniqueFd NetnsMaker::take() {
  collect();
  if (ready_.empty()) return UniqueFd();
  UniqueFd fd = std::move(ready_.back());
  ready_.pop_back();
  return fd;
}

void NetnsMaker::stop() {
  sock_.reset();
  ready_.clear();
  asked_ = 0;
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
}

}  // namespace nsbox
