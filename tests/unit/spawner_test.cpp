// SpawnerClient's deadlines: a spawner that never answers (stopped, or
// stuck in the kernel) must not hold its callers, or the daemon's exit,
// for good. A freshly forked spawner answers before it is configured, which
// is all these tests need of it.
#include "sandbox/spawner.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.hpp"

using namespace nsbox;

namespace {

// Whether pid is gone or a zombie (killed, not reaped yet).
bool dead(pid_t pid) {
  siginfo_t si{};
  return waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         si.si_pid == pid;
}

}  // namespace

TEST_CASE("spawner: a call it does not answer ends at the deadline and kills it") {
  auto made = SpawnerClient::fork_early();
  REQUIRE(made);
  SpawnerClient& c = *made.value();
  c.set_call_timeout_ms(300);
  // Control: an unconfigured spawner answers at once, with an error.
  auto answered = c.events(1);
  REQUIRE_FALSE(answered);
  CHECK(answered.error().message().find("not configured yet") != std::string::npos);

  const pid_t pid = c.pid();
  REQUIRE(kill(pid, SIGSTOP) == 0);
  const uint64_t t0 = monotonic_ms();
  auto r = c.events(1);
  const uint64_t took = monotonic_ms() - t0;
  REQUIRE_FALSE(r);
  CHECK_MESSAGE(r.error().message().find("gave no answer within 300 ms") != std::string::npos,
                r.error().message());
  CHECK(took >= 300);
  CHECK(took < 5000);
  for (int i = 0; i < 500 && !dead(pid); i++) usleep(10 * 1000);
  CHECK(dead(pid));
  CHECK_FALSE(c.alive());
  // Later calls fail at once; shutdown reaps it.
  CHECK_FALSE(c.events(1));
  CHECK(c.shutdown());
  CHECK(c.pid() == -1);
  CHECK(kill(pid, 0) != 0);
}

TEST_CASE("spawner: shutdown of a stopped spawner ends at the deadline") {
  auto made = SpawnerClient::fork_early();
  REQUIRE(made);
  SpawnerClient& c = *made.value();
  c.set_call_timeout_ms(300);
  const pid_t pid = c.pid();
  REQUIRE(kill(pid, SIGSTOP) == 0);
  const uint64_t t0 = monotonic_ms();
  CHECK(c.shutdown());
  CHECK(monotonic_ms() - t0 < 5000);
  CHECK(c.pid() == -1);
  CHECK(kill(pid, 0) != 0);  // killed and reaped
}
