#include "sandbox/instance.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "base/clock.hpp"
#include "sandbox/fd_passing.hpp"

namespace nsbox {

namespace {

constexpr int kLogPipeSize = 1 << 20;  // as a sandbox's: drained after each request

struct Answer {
  std::string text;
  bool have_creds = false;
  struct ucred creds {};
};

// One message, with the sender's credentials (SO_PASSCRED: the kernel
// attaches them, with the pid translated into our PID namespace, and nobody
// without CAP_SYS_ADMIN can claim another process's pid). Any fds sent along
// are closed: we never ask for any. Returns what recvmsg returns.
ssize_t receive_one(int sock, int flags, Answer* a) {
  char buf[256];
  alignas(struct cmsghdr) char
      control[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  struct iovec iov = {buf, sizeof buf};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        close(fd);
      }
    } else if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
      memcpy(&a->creds, CMSG_DATA(c), sizeof a->creds);
      a->have_creds = true;
    }
  }
  a->text.assign(buf, static_cast<size_t>(n));
  return n;
}

// Messages still queued on the fork socket: only the template's own code
// (a thread its function left running, say) could have sent them, and an
// answer must belong to the request we are about to make.
void drain(int sock) {
  for (int i = 0; i < 64; i++) {
    Answer ignored;
    if (receive_one(sock, MSG_DONTWAIT, &ignored) <= 0) return;
  }
}

Result<Answer> receive_answer(int sock, int timeout_ms) {
  const uint64_t deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    struct pollfd pfd = {sock, POLLIN, 0};
    uint64_t now = monotonic_ms();
    int rc = poll(&pfd, 1, now >= deadline ? 0 : static_cast<int>(deadline - now));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return sys_error("poll", "fork socket");
    if (rc == 0)
      return Error(ETIMEDOUT, "fork", "the function template",
                   "no answer within " + std::to_string(timeout_ms) + " ms");
    break;
  }
  Answer a;
  ssize_t n = receive_one(sock, MSG_DONTWAIT, &a);
  if (n < 0) return sys_error("recvmsg", "fork socket");
  if (n == 0) return make_error("fork", "the template exited");
  return a;
}

bool same_pid_namespace(pid_t a, pid_t b) {
  struct stat sa, sb;
  if (stat(("/proc/" + std::to_string(a) + "/ns/pid").c_str(), &sa) != 0) return false;
  if (stat(("/proc/" + std::to_string(b) + "/ns/pid").c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

ForkedInstance& ForkedInstance::operator=(ForkedInstance&& o) noexcept {
  if (this != &o) {
    (void)destroy();
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
    leaf_ = std::move(o.leaf_);
  }
  return *this;
}

Result<ForkedInstance> ForkedInstance::fork(const CgroupLayout& layout, const InstanceRequest& req,
                                            ChannelFds* channel, UniqueFd* log) {
  drain(req.fork_sock);
  ChannelEnds ch = TRY(make_channel());
  int lp[2];
  if (pipe2(lp, O_CLOEXEC) != 0) return sys_error("pipe2", "instance log");
  UniqueFd log_read(lp[0]), log_write(lp[1]);
  fcntl(lp[0], F_SETPIPE_SZ, kLogPipeSize);
  fcntl(lp[0], F_SETFL, O_NONBLOCK);
  const int fds[3] = {ch.runner_in.get(), ch.runner_out.get(), log_write.get()};
  if (send_with_fds(req.fork_sock, "f", 1, fds, 3) != 1)
    return sys_error("send", "the template's fork socket");
  // Only the instance holds its ends from now on: EOF tells either side
  // that the other is gone.
  ch.runner_in.reset();
  ch.runner_out.reset();
  log_write.reset();

  Answer a = TRY(receive_answer(req.fork_sock, req.timeout_ms));
  if (!a.text.empty() && a.text[0] == 'e')
    return make_error("fork", "the template could not fork: " +
                                  a.text.substr(std::min<size_t>(2, a.text.size())));
  if (a.text != "k" || !a.have_creds || a.creds.pid <= 0)
    return make_error("fork", "malformed answer from the template");

  ForkedInstance inst;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, a.creds.pid, 0));
  if (pidfd < 0) return sys_error("pidfd_open", "instance " + std::to_string(a.creds.pid));
  inst.pidfd_.reset(pidfd);
  // Whoever answered must live in the template's sandbox: then whatever we
  // do to it (a leaf of its own, a kill) reaches nothing outside it. Still
  // alive after the check, the pid still names the process the pidfd holds.
  if (!same_pid_namespace(a.creds.pid, req.template_init) ||
      syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0)
    return make_error("fork", "the answer did not come from inside the template");
  inst.pid_ = a.creds.pid;
  if (req.use_cgroups) {
    inst.leaf_ = TRY(CgroupLeaf::create(layout, req.id, req.limits));
    TRY_WITHIN(inst.leaf_.attach(inst.pid_), "moving instance " + req.id + " into its cgroup");
  }
  *channel = std::move(ch.host);
  *log = std::move(log_read);
  return inst;
}

Status ForkedInstance::destroy() {
  Status s;
  // The instance itself first (it may not have reached its leaf: a move
  // that failed), then everything in its leaf, waiting until it is empty.
  if (pidfd_.valid()) syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  if (leaf_.valid()) {
    s = leaf_.destroy();
  } else if (pidfd_.valid()) {
    struct pollfd pfd = {pidfd_.get(), POLLIN, 0};
    while (poll(&pfd, 1, 1000) < 0 && errno == EINTR) {
    }
  }
  pidfd_.reset();
  pid_ = -1;
  return s;
}

}  // namespace nsbox
