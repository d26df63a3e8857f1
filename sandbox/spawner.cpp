#include "sandbox/spawner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "sandbox/log.hpp"
#include "sandbox/sandbox.hpp"

namespace nsbox {

namespace {

enum Op : uint32_t { kSpawn = 1, kSetMemory, kEvents, kDestroy, kShutdown };

struct Request {
  uint32_t op;
  uint32_t profile;
  uint64_t id;
  uint64_t value;
};

struct ReplyMsg {
  int32_t ok;
  int32_t err;
  uint64_t id;
  CgroupEvents events;
  double setup_ms;
  int32_t freeze;  // 0: no freeze switch; 1: cgroup.freeze; 2: v1 freezer.state
  char message[512];
};

constexpr size_t kPipeSize = 1 << 20;  // logs are drained after each request
constexpr int kMaxFds = 4;  // a spawn's reply: two channel pipes, the log, the freeze switch

ssize_t send_with_fds(int sock, const void* data, size_t len, const int* fds, int nfds) {
  struct iovec iov = {const_cast<void*>(data), len};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(struct cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (nfds > 0) {
    msg.msg_control = ctrl;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t recv_with_fds(int sock, void* data, size_t len, int* fds, int max_fds) {
  struct iovec iov = {data, len};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(struct cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;  // msg_controllen is not updated on failure: no cmsg to walk
  int got = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int count = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    const int* in = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (int i = 0; i < count; i++) {
      if (got < max_fds)
        fds[got++] = in[i];
      else
        close(in[i]);
    }
  }
  return n;
}

void fill_error(ReplyMsg* r, const Error& e) {
  r->ok = 0;
  r->err = e.err;
  snprintf(r->message, sizeof r->message, "%s", e.message().c_str());
}

// The spawner's main loop: one request at a time, in order.
[[noreturn]] void spawner_main(int sock, std::vector<SpawnProfile> profiles,
                               const CgroupLayout& layout, bool use_cgroups) {
  // Die with the gateway; let the gateway decide when we stop otherwise (a
  // terminal's ^C reaches the whole process group).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_NAME, "nsbox-spawner");
  // One pidfd per sandbox: the soft limit of 1024 would cap the pool.
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  if (use_cgroups) cgroup_sweep_stale(layout);

  std::map<uint64_t, Sandbox> sandboxes;
  uint64_t next_id = 1;
  const std::string prefix = "srv-" + std::to_string(getpid()) + "-";
  for (;;) {
    // Every few idle seconds, sweep leaves that an earlier, killed spawner
    // could not remove while its sandboxes were still dying.
    struct pollfd pfd = {sock, POLLIN, 0};
    if (poll(&pfd, 1, 5000) == 0) {
      if (use_cgroups) cgroup_sweep_stale(layout);
      continue;
    }
    Request req;
    int none[2];
    ssize_t n = recv_with_fds(sock, &req, sizeof req, none, 0);
    if (n <= 0) break;  // the gateway is gone
    if (n != sizeof req) continue;
    ReplyMsg reply = {};
    reply.ok = 1;
    reply.id = req.id;
    int fds[kMaxFds] = {-1, -1, -1, -1};
    int nfds = 0;
    UniqueFd log_read;
    FreezeSwitch freeze;
    ChannelFds channel;
    switch (req.op) {
      case kSpawn: {
        if (req.profile >= profiles.size()) {
          fill_error(&reply, make_error("spawn", "no such profile"));
          break;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
          fill_error(&reply, sys_error("pipe2", "sandbox log"));
          break;
        }
        log_read.reset(p[0]);
        UniqueFd log_write(p[1]);
        fcntl(p[0], F_SETPIPE_SZ, static_cast<int>(kPipeSize));
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        SandboxSpec spec = profiles[req.profile].spec;
        uint64_t id = next_id++;
        spec.id = prefix + std::to_string(id);
        if (req.value) spec.limits.memory_bytes = req.value;
        spec.stderr_fd = log_write.get();
        spec.use_cgroups = use_cgroups;
        auto sb = Sandbox::start(spec, profiles[req.profile].bpf, layout);
        if (!sb) {
          fill_error(&reply, sb.error());
          break;
        }
        const SetupTimings& t = sb.value().timings();
        reply.setup_ms = (t.ready_ns - t.prepare_ns) / 1e6;
        channel = sb.value().take_channel();
        reply.id = id;
        sandboxes.emplace(id, std::move(sb.value()));
        fds[0] = channel.to_runner.get();
        fds[1] = channel.from_runner.get();
        fds[2] = log_read.get();
        nfds = 3;
        // The pool freezes the sandbox while idle; without the switch it
        // only stops at its idle timeout (logged, not fatal).
        auto fz = sandboxes.at(id).freeze_switch();
        if (!fz)
          LOG_WARN("sandbox %s: no freeze switch: %s", spec.id.c_str(),
                   fz.error().message().c_str());
        if (fz && fz.value().valid()) {
          freeze = std::move(fz.value());
          fds[3] = freeze.fd.get();
          nfds = 4;
          reply.freeze = freeze.v1 ? 2 : 1;
        }
        break;
      }
      case kSetMemory: {
        auto it = sandboxes.find(req.id);
        if (it == sandboxes.end()) {
          fill_error(&reply, make_error("set_memory", "no such sandbox"));
          break;
        }
        Status s = it->second.set_memory_limit(req.value);
        if (!s) fill_error(&reply, s.error());
        break;
      }
      case kEvents: {
        auto it = sandboxes.find(req.id);
        if (it == sandboxes.end()) {
          fill_error(&reply, make_error("events", "no such sandbox"));
          break;
        }
        reply.events = it->second.events();
        break;
      }
      case kDestroy: {
        auto it = sandboxes.find(req.id);
        if (it != sandboxes.end()) {
          Status s = it->second.destroy();
          if (!s) fill_error(&reply, s.error());
          sandboxes.erase(it);
        }
        break;
      }
      case kShutdown:
        sandboxes.clear();  // each destructor kills, reaps and removes its cgroup
        send_with_fds(sock, &reply, sizeof reply, nullptr, 0);
        _exit(0);
      default:
        fill_error(&reply, make_error("spawner", "unknown request"));
    }
    send_with_fds(sock, &reply, sizeof reply, fds, nfds);
  }
  sandboxes.clear();
  _exit(0);
}

}  // namespace

struct SpawnerClient::Reply {
  ReplyMsg msg;
  UniqueFd fds[kMaxFds];
};

SpawnerClient::~SpawnerClient() {
  (void)shutdown();
}

Result<std::unique_ptr<SpawnerClient>> SpawnerClient::start(std::vector<SpawnProfile> profiles,
                                                            const CgroupLayout& cgroups,
                                                            bool use_cgroups) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return sys_error("socketpair", "spawner");
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork", "spawner");
  if (pid == 0) {
    close(sv[0]);
    spawner_main(sv[1], std::move(profiles), cgroups, use_cgroups);
  }
  close(sv[1]);
  std::unique_ptr<SpawnerClient> c(new SpawnerClient());
  c->sock_.reset(sv[0]);
  c->pid_ = pid;
  return c;
}

Result<SpawnerClient::Reply> SpawnerClient::call(uint32_t op, uint32_t profile, uint64_t id,
                                                 uint64_t value, int* /*unused*/) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sock_.valid()) return make_error("spawner", "not running");
  Request req = {op, profile, id, value};
  if (send_with_fds(sock_.get(), &req, sizeof req, nullptr, 0) != sizeof req)
    return sys_error("send", "spawner socket");
  Reply r;
  int fds[kMaxFds] = {-1, -1, -1, -1};
  ssize_t n = recv_with_fds(sock_.get(), &r.msg, sizeof r.msg, fds, kMaxFds);
  for (int i = 0; i < kMaxFds; i++) r.fds[i].reset(fds[i]);
  if (n < 0) return sys_error("recv", "spawner socket");
  if (n != sizeof r.msg) return make_error("spawner", "exited or sent a short reply");
  if (!r.msg.ok) return Error{r.msg.err, r.msg.message, {}, {}};
  return r;
}

Result<SpawnedSandbox> SpawnerClient::spawn(uint32_t profile, uint64_t memory_bytes) {
  Reply r = TRY(call(kSpawn, profile, 0, memory_bytes, nullptr));
  if (!r.fds[0].valid() || !r.fds[1].valid() || !r.fds[2].valid()) {
    // The fds were lost on the way (e.g. EMFILE here): the sandbox exists
    // but nobody can reach it, so it must not live on in the spawner.
    (void)destroy(r.msg.id);
    return make_error("spawner", "reply carried no fds (out of file descriptors?)");
  }
  SpawnedSandbox s;
  s.id = r.msg.id;
  s.channel.to_runner = std::move(r.fds[0]);
  s.channel.from_runner = std::move(r.fds[1]);
  s.log = std::move(r.fds[2]);
  if (r.msg.freeze && r.fds[3].valid()) {
    s.freeze.fd = std::move(r.fds[3]);
    s.freeze.v1 = r.msg.freeze == 2;
  }
  s.setup_ms = r.msg.setup_ms;
  return s;
}

Status SpawnerClient::set_memory(uint64_t id, uint64_t bytes) {
  TRY(call(kSetMemory, 0, id, bytes, nullptr));
  return {};
}

Result<CgroupEvents> SpawnerClient::events(uint64_t id) {
  Reply r = TRY(call(kEvents, 0, id, 0, nullptr));
  return r.msg.events;
}

Status SpawnerClient::destroy(uint64_t id) {
  TRY(call(kDestroy, 0, id, 0, nullptr));
  return {};
}

bool SpawnerClient::alive() {
  std::lock_guard<std::mutex> lock(mu_);
  if (pid_ <= 0) return false;
  int st;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    pid_ = -1;
    sock_.reset();
    return false;
  }
  return true;
}

Status SpawnerClient::shutdown() {
  if (pid_ <= 0) return {};
  (void)call(kShutdown, 0, 0, 0, nullptr);
  {
    std::lock_guard<std::mutex> lock(mu_);
    sock_.reset();
  }
  int st;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return {};
}

}  // namespace nsbox
