// Connection threads: made on demand up to the cap, retired when idle, and
// every queued connection still served at shutdown.
#include "gateway/conn_threads.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

using namespace nsbox;
using namespace std::chrono_literals;

namespace {

// Jobs that hold their thread until released, like keep-alive connections.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> running{0}, done{0};

  std::function<void()> job() {
    return [this] {
      running++;
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [this] { return open; });
      done++;
    };
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

template <typename F>
bool eventually(F f, std::chrono::milliseconds limit = 5s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return f();
}

}  // namespace

TEST_CASE("connection threads: none at start, one per concurrent connection up to the cap") {
  ConnectionThreads q(4, 0, 10s);
  CHECK(q.stats().threads == 0);
  Gate g;
  for (int i = 0; i < 3; i++) q.enqueue(g.job());
  CHECK(eventually([&] { return g.running == 3; }));
  CHECK(q.stats().threads == 3);
  // Beyond the cap, connections wait in order instead of starting threads.
  // enqueue decides at once and the four are held, so no fifth can start
  // later: the two left are in the queue.
  for (int i = 0; i < 3; i++) q.enqueue(g.job());
  CHECK(eventually([&] { return g.running == 4; }));
  CHECK(q.stats().threads == 4);
  CHECK(q.stats().queued == 2);
  CHECK(g.running == 4);
  g.release();
  CHECK(eventually([&] { return g.done == 6; }));
  CHECK(q.stats().queued == 0);
  q.shutdown();
  CHECK(q.stats().threads == 0);
}

TEST_CASE("connection threads: an idle thread is reused, not joined by a new one") {
  ConnectionThreads q(8, 0, 10s);
  for (int i = 0; i < 20; i++) {
    std::atomic<bool> ran{false};
    q.enqueue([&ran] { ran = true; });
    REQUIRE(eventually([&] { return ran.load() && q.stats().idle == 1; }));
  }
  CHECK(q.stats().threads == 1);
}

TEST_CASE("connection threads: idle ones retire down to the floor") {
  ConnectionThreads q(8, 2, 100ms);
  Gate g;
  for (int i = 0; i < 6; i++) q.enqueue(g.job());
  REQUIRE(eventually([&] { return g.running == 6; }));
  CHECK(q.stats().threads == 6);
  g.release();
  CHECK(eventually([&] { return q.stats().threads == 2; }));
  // Three idle spells pass: what the floor must outlast, not a wait for
  // something to happen.
  std::this_thread::sleep_for(300ms);
  CHECK(q.stats().threads == 2);  // the floor stays
  // Retired threads were joined, and new work still gets a thread.
  std::atomic<bool> ran{false};
  q.enqueue([&ran] { ran = true; });
  CHECK(eventually([&] { return ran.load(); }));
}

TEST_CASE("connection threads: shutdown serves what is queued, then joins") {
  std::atomic<int> served{0};
  {
    ConnectionThreads q(2, 0, 10s);
    Gate g;
    for (int i = 0; i < 2; i++) q.enqueue(g.job());
    REQUIRE(eventually([&] { return g.running == 2; }));
    for (int i = 0; i < 5; i++) q.enqueue([&served] { served++; });
    // The gate opens only once shutdown() has begun, with both jobs still
    // held and five queued.
    std::atomic<bool> opened_during_shutdown{false};
    std::thread opener([&g, &q, &opened_during_shutdown] {
      opened_during_shutdown = eventually([&q] { return q.stats().stopping; });
      g.release();
    });
    q.shutdown();  // returns only after the gate opened and all ran
    CHECK(g.done == 2);
    CHECK(served == 5);
    opener.join();
    CHECK(opened_during_shutdown);
    q.shutdown();  // idempotent
  }
  CHECK(served == 5);
}

TEST_CASE("connection threads: a job that throws does not end the process or its thread") {
  ConnectionThreads q(1, 1, 10s);
  std::atomic<int> served{0};
  q.enqueue([] { throw std::bad_alloc(); });
  q.enqueue([] { throw 7; });
  q.enqueue([&served] { served++; });
  CHECK(eventually([&] { return served == 1; }));
  CHECK(q.stats().threads == 1);  // the same thread served all three
  q.shutdown();
}
