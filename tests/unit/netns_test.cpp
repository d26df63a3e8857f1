// Network namespaces made ahead (sandbox/netns.hpp), in a forked child that is
// root of a user namespace of its own: what the spawner does as host root.
#include "sandbox/netns.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

using namespace nsbox;

namespace {

ino_t netns_ino() {
  struct stat st;
  return stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}

bool loopback_is_up() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool up = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
  if (fd >= 0) close(fd);
  return up;
}

std::string devices() {
  std::ifstream f("/proc/thread-self/net/dev");
  std::string line, out;
  for (int i = 0; std::getline(f, line); i++)
    if (i >= 2) {
      std::string name = line.substr(0, line.find(':'));
      out += name.substr(name.find_first_not_of(' ')) + ";";
    }
  return out;
}

// Runs the checks in a child that is root of a user namespace of its own (and, with
// CLONE_NEWNET in `also`, of a network namespace it owns); what failed comes back as text.
std::string in_own_user_namespace(std::string (*checks)(), int also = 0) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    std::string out =
        unshare(CLONE_NEWUSER | also) != 0 ? std::string("unshare: ") + strerror(errno) : checks();
    (void)!write(p[1], out.data(), out.size());
    _exit(0);
  }
  close(p[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;) got.append(buf, n);
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  return got;
}

}  // namespace

TEST_CASE("a network namespace made ahead is new, has only its loopback, up; the maker stays") {
  std::string failed = in_own_user_namespace(
      []() -> std::string {
        const ino_t home = netns_ino();
        auto made = make_network_namespace();
        if (!made) return "make_network_namespace: " + made.error().message();
        if (netns_ino() != home) return "the maker did not go back to its own namespace";
        struct stat st;
        if (fstat(made.value().get(), &st) != 0 || st.st_ino == home) return "not a new namespace";
        {
          NetnsVisit visit;
          if (auto s = visit.enter(made.value().get()); !s) return "enter: " + s.error().message();
          if (netns_ino() != st.st_ino) return "NetnsVisit did not enter it";
          if (!loopback_is_up()) return "lo is not up";
          if (devices() != "lo;") return "devices: " + devices();
        }
        if (netns_ino() != home) return "NetnsVisit did not go back";
        // Each one is its own.
        auto second = make_network_namespace();
        struct stat st2;
        if (!second || fstat(second.value().get(), &st2) != 0 || st2.st_ino == st.st_ino)
          return "a second namespace is not a new one";
        return "";
      },
      CLONE_NEWNET);
  CHECK_MESSAGE(failed.empty(), failed);
}

TEST_CASE("NetnsVisit names what it could not enter, and stays where it was") {
  std::string failed = in_own_user_namespace(
      []() -> std::string {
        const ino_t home = netns_ino();
        NetnsVisit visit;
        UniqueFd null_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
        auto s = visit.enter(null_fd.get());
        if (s) return "entered /dev/null";
        if (s.error().message().find("setns") == std::string::npos)
          return "error does not name setns: " + s.error().message();
        if (netns_ino() != home) return "moved";
        return "";
      },
      CLONE_NEWNET);
  CHECK_MESSAGE(failed.empty(), failed);
}

// Root of a user namespace that does not own its network namespace (a container on the
// host's network) could make one but not come back: it is told so, and nothing moves.
TEST_CASE("nothing is made ahead where the maker could not come back") {
  std::string failed = in_own_user_namespace([]() -> std::string {
    const ino_t home = netns_ino();
    auto made = make_network_namespace();
    if (made) return "made one";
    if (made.error().message().find("come back") == std::string::npos)
      return "error does not say why: " + made.error().message();
    if (netns_ino() != home) return "moved";
    NetnsVisit visit;
    UniqueFd own(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (visit.enter(own.get())) return "entered";
    return netns_ino() == home ? "" : "moved";
  });
  CHECK_MESSAGE(failed.empty(), failed);
}

TEST_CASE("the maker process keeps namespaces made ahead and goes when stopped") {
  std::string failed = in_own_user_namespace(
      []() -> std::string {
        auto m = NetnsMaker::start(2);
        if (!m) return "start: " + m.error().message();
        NetnsMaker& maker = m.value();
        const pid_t helper = maker.pid();
        if (maker.ready() != 0) return "made some before the first top_up";
        maker.top_up();
        auto wait_ready = [&](size_t n) {
          for (int i = 0; i < 200 && maker.ready() < n; i++) {
            struct pollfd p = {maker.socket_fd(), POLLIN, 0};
            if (poll(&p, 1, 50) > 0) maker.collect();
          }
          return maker.ready() >= n;
        };
        if (!wait_ready(2)) return "two were not made";
        const ino_t home = netns_ino();
        UniqueFd a = maker.take();
        if (!a.valid()) return "take gave nothing";
        maker.top_up();
        if (!wait_ready(2)) return "the one taken was not made again";
        UniqueFd b = maker.take();
        struct stat sa, sb;
        if (!b.valid() || fstat(a.get(), &sa) != 0 || fstat(b.get(), &sb) != 0)
          return "second take";
        if (sa.st_ino == sb.st_ino || sa.st_ino == home || sb.st_ino == home)
          return "not new, distinct namespaces";
        {
          NetnsVisit visit;
          if (!visit.enter(a.get()) || !loopback_is_up() || devices() != "lo;")
            return "a made namespace without its loopback up";
        }
        maker.stop();
        if (maker.take().valid()) return "a stopped maker gave one";
        if (kill(helper, 0) == 0 || errno != ESRCH) return "the helper outlived stop()";
        return "";
      },
      CLONE_NEWNET);
  CHECK_MESSAGE(failed.empty(), failed);
}

namespace {

// Waits until the maker has `n` ready or its helper is gone (collect() saw it go).
bool settle(NetnsMaker& maker, size_t n) {
  for (int i = 0; i < 200 && maker.running() && maker.ready() < n; i++) {
    struct pollfd p = {maker.socket_fd(), POLLIN, 0};
    if (poll(&p, 1, 50) > 0) maker.collect();
  }
  return maker.ready() >= n;
}

}  // namespace

TEST_CASE("a helper that worked is started again once the interval passed, not before") {
  std::string failed = in_own_user_namespace(
      []() -> std::string {
        NetnsMaker maker;
        maker.ensure_running(1, 0);
        if (!maker.running()) return "not started";
        const pid_t first = maker.pid();
        maker.top_up();
        if (!settle(maker, 1)) return "the first helper made nothing";
        (void)maker.take();
        kill(first, SIGKILL);
        settle(maker, 1);  // sees the helper's end
        if (maker.running()) return "a killed helper still counts as running";
        maker.ensure_running(1, 60000);  // interval 0 since its start: due now
        if (!maker.running() || maker.pid() == first) return "a helper that worked not restarted";
        maker.top_up();
        if (!settle(maker, 1)) return "the restarted helper made nothing";
        kill(maker.pid(), SIGKILL);
        settle(maker, 2);
        if (maker.running()) return "the second killed helper still counts as running";
        maker.ensure_running(1, 60000);
        if (maker.running()) return "restarted within the minute after its start";
        return "";
      },
      CLONE_NEWNET);
  CHECK_MESSAGE(failed.empty(), failed);
}

// As above, a helper that cannot come back: it fails its first namespace, and
// starting another would only fail again.
TEST_CASE("a helper that never delivered a namespace is not started again") {
  std::string failed = in_own_user_namespace([]() -> std::string {
    NetnsMaker maker;
    maker.ensure_running(1, 0);
    if (!maker.running()) return "not started";
    maker.top_up();
    if (settle(maker, 1)) return "made one where it could not come back";
    if (maker.running()) return "a failed helper still counts as running";
    for (int i = 0; i < 3; i++) {
      maker.ensure_running(1, 0);
      if (maker.running()) return "a helper that never delivered was started again";
    }
    return maker.take().valid() ? "gave a namespace" : "";
  });
  CHECK_MESSAGE(failed.empty(), failed);
}
