// nsbox-fdkeeper: holds the fds of frozen idle sandboxes for the gateway,
// whose own open-files limit would otherwise bound how many sandboxes it
// can keep (gateway/fd_parking.hpp). It only stores and returns fds: it
// reads no fd it holds, and talks to nobody but the gateway, on fd 3.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <unordered_map>
#include <vector>

#include "gateway/fd_keeper_wire.hpp"
#include "sandbox/fd_passing.hpp"

using nsbox::KeeperMsg;

namespace {

void close_all(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

}  // namespace

int main() {
  // Nothing but the gateway may look in: its fds are sandboxes' channels.
  // (No death signal: it would follow the gateway thread that started us,
  // not the gateway. The gateway's death closes our socket.)
  prctl(PR_SET_DUMPABLE, 0);
  prctl(PR_SET_NAME, "nsbox-fdkeeper");
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN);   // a terminal's ^C: the gateway decides when we go
  signal(SIGTERM, SIG_IGN);  // EOF on the socket says so
  signal(SIGHUP, SIG_IGN);
  const int sock = nsbox::kKeeperSockFd;
  struct rlimit rl {};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  KeeperMsg hello;
  hello.op = KeeperMsg::kHello;
  hello.value = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
  if (nsbox::send_with_fds(sock, &hello, sizeof hello, nullptr, 0) != sizeof hello) return 1;

  std::unordered_map<uint64_t, std::vector<int>> held;
  for (;;) {
    KeeperMsg m;
    int fds[nsbox::kKeeperMaxFds] = {-1, -1, -1, -1};
    ssize_t n = nsbox::recv_with_fds(sock, &m, sizeof m, fds, nsbox::kKeeperMaxFds);
    if (n <= 0) break;  // the gateway is gone (or closed us)
    std::vector<int> got;
    for (int fd : fds)
      if (fd >= 0) got.push_back(fd);
    if (n != sizeof m) {
      close_all(got);
      continue;
    }
    switch (m.op) {
      case KeeperMsg::kPark: {
        auto& slot = held[m.tag];
        close_all(slot);  // a tag parked twice keeps the newer fds
        slot = std::move(got);
        break;
      }
      case KeeperMsg::kTake: {
        close_all(got);
        KeeperMsg reply;
        reply.op = KeeperMsg::kTake;
        reply.tag = m.tag;
        auto it = held.find(m.tag);
        std::vector<int> out = it == held.end() ? std::vector<int>{} : std::move(it->second);
        if (it != held.end()) held.erase(it);
        reply.nfds = static_cast<uint32_t>(out.size());
        ssize_t s = nsbox::send_with_fds(sock, &reply, sizeof reply, out.data(),
                                         static_cast<int>(out.size()));
        close_all(out);
        if (s != sizeof reply) return 1;
        break;
      }
      case KeeperMsg::kDrop: {
        close_all(got);
        if (auto it = held.find(m.tag); it != held.end()) {
          close_all(it->second);
          held.erase(it);
        }
        break;
      }
      default:
        close_all(got);
        break;
    }
  }
  return 0;
}
