// gateway/fd_parking.hpp against real nsbox-fdkeeper processes: parked fds
// come back as the same open files in the same order, dropped ones are
// closed by the keeper, and a dead keeper costs what it held, not the next
// park.
#include "gateway/fd_parking.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/unit/keeper_path.hpp"

using namespace nsbox;
using nsbox::test::keeper_path;

namespace {

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    r.reset(p[0]);
    w.reset(p[1]);
  }
};

// The write end sees POLLERR once every read end is closed.
bool readers_gone(int write_fd, int ms) {
  struct pollfd pfd = {write_fd, 0, 0};
  return poll(&pfd, 1, ms) == 1 && (pfd.revents & POLLERR);
}

// The keeper: our child, named so. 0 when there is none.
pid_t child_keeper() {
  pid_t keeper = 0;
  FILE* f = fopen(("/proc/self/task/" + std::to_string(gettid()) + "/children").c_str(), "r");
  if (!f) return 0;
  int pid;
  while (fscanf(f, "%d", &pid) == 1) {
    char comm[64] = {};
    FILE* c = fopen(("/proc/" + std::to_string(pid) + "/comm").c_str(), "r");
    if (c && fgets(comm, sizeof comm, c) && std::string(comm) == "nsbox-fdkeeper\n") keeper = pid;
    if (c) fclose(c);
  }
  fclose(f);
  return keeper;
}

// Parks a's read end under tag 1, stops the keeper (a stopped keeper reads
// nothing), then parks /dev/null under tags 2, 3, ... until a park finds its
// queue full (EAGAIN) and parking pauses. Returns the keeper's pid.
pid_t park_and_stop(FdParking& parking, Pipe& a, FdParking::Ticket* t) {
  REQUIRE(parking.prepare());
  auto first = parking.park(1, {&a.r});
  REQUIRE(first);
  *t = first.value();
  const pid_t keeper = child_keeper();
  REQUIRE(keeper > 0);
  REQUIRE(kill(keeper, SIGSTOP) == 0);
  for (uint64_t tag = 2; tag < 100000; tag++) {
    UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE(null.valid());
    auto more = parking.park(tag, {&null});
    if (more) continue;
    REQUIRE(more.error().err == EAGAIN);
    return keeper;
  }
  FAIL("the stopped keeper's queue never filled");
  return keeper;
}

}  // namespace

TEST_CASE("fd parking: parked fds come back as the same files in the same order") {
  FdParking parking(keeper_path());
  REQUIRE(parking.prepare());
  Pipe a, b;
  auto t = parking.park(7, {&a.r, &b.w});
  REQUIRE(t);
  CHECK(!a.r.valid());  // ours are closed
  CHECK(!b.w.valid());
  CHECK(parking.parked() == 1);
  CHECK(parking.keepers() == 1);
  CHECK(!readers_gone(a.w.get(), 0));  // the keeper holds a's read end open

  REQUIRE(write(a.w.get(), "x", 1) == 1);
  auto fds = parking.take(t.value());
  REQUIRE(fds);
  REQUIRE(fds.value().size() == 2);
  char c = 0;
  CHECK(read(fds.value()[0].get(), &c, 1) == 1);
  CHECK(c == 'x');
  REQUIRE(write(fds.value()[1].get(), "y", 1) == 1);
  CHECK(read(b.r.get(), &c, 1) == 1);
  CHECK(c == 'y');
  CHECK(parking.parked() == 0);
  // A ticket is good for one take.
  CHECK(!parking.take(t.value()));
}

TEST_CASE("fd parking: a dropped or destroyed parking closes what the keeper held") {
  Pipe a, b;
  {
    FdParking parking(keeper_path());
    REQUIRE(parking.prepare());
    auto t = parking.park(1, {&a.r});
    REQUIRE(t);
    {
      ParkedFds held(&parking, t.value());
      CHECK(held.valid());
    }  // dropped
    CHECK(readers_gone(a.w.get(), 2000));
    CHECK(parking.parked() == 0);
    REQUIRE(parking.park(2, {&b.r}));
  }  // the keeper goes with the parking, and b's read end with it
  CHECK(readers_gone(b.w.get(), 2000));
}

TEST_CASE("fd parking: a dead keeper loses its fds; the next prepare starts another") {
  FdParking parking(keeper_path());
  Pipe a, b;
  // park() runs under the pool's lock: it starts no keeper itself (a start
  // may take seconds), it says to try again once prepare() has.
  auto none = parking.park(1, {&a.r});
  REQUIRE_FALSE(none);
  CHECK(none.error().err == EAGAIN);
  CHECK(a.r.valid());
  CHECK(parking.keepers() == 0);
  REQUIRE(parking.prepare());
  auto t = parking.park(1, {&a.r});
  REQUIRE(t);
  pid_t keeper = child_keeper();
  REQUIRE(keeper > 0);
  REQUIRE(kill(keeper, SIGKILL) == 0);
  CHECK(readers_gone(a.w.get(), 2000));
  auto lost = parking.take(t.value());
  CHECK(!lost);
  CHECK(parking.keepers() == 0);
  CHECK_FALSE(parking.park(2, {&b.r}));
  REQUIRE(parking.prepare());
  auto t2 = parking.park(2, {&b.r});
  REQUIRE(t2);
  CHECK(t2.value().keeper != t.value().keeper);
  CHECK(parking.keepers() == 1);
  auto back = parking.take(t2.value());
  REQUIRE(back);
  CHECK(back.value().size() == 1);
}

TEST_CASE("fd parking: bad requests move nothing") {
  FdParking parking(keeper_path());
  Pipe a;
  UniqueFd closed;
  CHECK(!parking.park(1, {}));
  CHECK(!parking.park(1, {&a.r, &closed}));
  CHECK(a.r.valid());             // still ours
  CHECK(parking.keepers() == 0);  // none started for nothing
  FdParking nowhere("/nonexistent/nsbox-fdkeeper");
  auto t = nowhere.park(1, {&a.r});
  CHECK(!t);
  CHECK(a.r.valid());
}

TEST_CASE("fd parking: a drop that finds the keeper's queue full is sent once it has room") {
  FdParking parking(keeper_path());
  Pipe a;
  FdParking::Ticket t;
  const pid_t keeper = park_and_stop(parking, a, &t);
  CHECK(parking.paused());
  parking.drop(t);  // cannot reach the keeper now
  REQUIRE(kill(keeper, SIGCONT) == 0);
  CHECK(!readers_gone(a.w.get(), 300));  // the keeper still holds a's read end
  // Once the pause is over, the next park sends the drop first.
  for (int i = 0; i < 50 && parking.paused(); i++) usleep(10 * 1000);
  REQUIRE(!parking.paused());
  Pipe b;
  REQUIRE(parking.park(100001, {&b.r}));
  CHECK(readers_gone(a.w.get(), 2000));
}

TEST_CASE("fd parking: a keeper that takes nothing for 2 s is killed, and a new one goes on") {
  FdParking parking(keeper_path());
  Pipe a;
  FdParking::Ticket t;
  park_and_stop(parking, a, &t);
  CHECK(parking.keepers() == 1);  // full for a moment: kept
  usleep(2100 * 1000);
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  CHECK(!parking.park(100001, {&null}));  // full for 2 s: hung
  CHECK(parking.keepers() == 0);
  CHECK(readers_gone(a.w.get(), 2000));  // killed, though stopped: what it held is closed
  for (int i = 0; i < 50 && parking.paused(); i++) usleep(10 * 1000);
  REQUIRE(parking.prepare());
  Pipe b;
  auto t2 = parking.park(100002, {&b.r});
  REQUIRE(t2);
  CHECK(parking.keepers() == 1);
  auto back = parking.take(t2.value());
  REQUIRE(back);
  CHECK(back.value().size() == 1);
}

TEST_CASE("fd parking: prepare starts a keeper only when none has the room asked for") {
  FdParking parking(keeper_path());
  CHECK(parking.keepers() == 0);
  REQUIRE(parking.prepare());
  CHECK(parking.keepers() == 1);
  REQUIRE(parking.prepare(64));
  CHECK(parking.keepers() == 1);
  // Asking for more than a keeper holds asks for half of one: still room.
  REQUIRE(parking.prepare(UINT32_MAX));
  CHECK(parking.keepers() == 1);
}
