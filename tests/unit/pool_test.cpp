// The pool's budget and wake-ups, against a fake sandbox factory whose
// destroys take time like the real spawner's (kill, reap, cgroup rmdir).
#include "gateway/pool.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/keeper_path.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace nsbox;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kMemory = 64ull << 20;

class FakeFactory final : public SandboxFactory {
 public:
  explicit FakeFactory(std::chrono::milliseconds destroy_time) : destroy_time_(destroy_time) {}
  Result<SpawnedSandbox> spawn(uint32_t, uint64_t) override {
    std::this_thread::sleep_for(spawn_time);
    if (throw_spawns > 0) {
      throw_spawns--;
      throw std::bad_alloc();
    }
    if (fail_spawns > 0) {
      fail_spawns--;
      return make_error("spawn", "failing as the test asked");
    }
    SpawnedSandbox s;
    s.id = next_++;
    if (with_pipes) {
      // Pipes stand in for the channel and the log; the runner's ends are
      // kept, so that a test can see the gateway's ends are the same.
      int a[2], b[2], c[2];
      REQUIRE(pipe2(a, O_CLOEXEC) == 0);
      REQUIRE(pipe2(b, O_CLOEXEC) == 0);
      REQUIRE(pipe2(c, O_CLOEXEC) == 0);
      s.channel.to_runner.reset(a[1]);
      s.channel.from_runner.reset(b[0]);
      s.log.reset(c[0]);
      std::lock_guard<std::mutex> lock(mu_);
      runner_ends_[s.id] = {UniqueFd(a[0]), UniqueFd(b[1]), UniqueFd(c[1])};
    }
    if (!freeze_dir.empty()) {
      // A plain file stands in for the leaf's cgroup.freeze.
      std::string path = freeze_dir + "/" + std::to_string(s.id);
      s.freeze.fd.reset(open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    }
    int now = ++live_;
    int seen = most_.load();
    while (now > seen && !most_.compare_exchange_weak(seen, now)) {
    }
    return s;
  }
  // Function templates: made and forked as any sandbox here.
  Result<SpawnedSandbox> spawn_template(uint32_t profile, uint64_t memory) override {
    templates_made++;
    return spawn(profile, memory);
  }
  Result<SpawnedSandbox> fork_instance(uint64_t, uint32_t profile, uint64_t memory) override {
    forks++;
    const int now = ++forking_;
    int seen = most_forking.load();
    while (now > seen && !most_forking.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(fork_time);
    --forking_;
    auto s = spawn(profile, memory);
    if (s) s.value().setup_ms = fork_ms;  // the spawner's own time for the fork
    return s;
  }
  std::atomic<int> forks{0}, templates_made{0}, most_forking{0};
  std::chrono::milliseconds fork_time{0};
  double fork_ms = 1;
  Status set_memory(uint64_t, uint64_t) override {
    memory_sets++;
    if (refuse_memory) return make_error("set memory", "refused as the test asked");
    return {};
  }
  std::atomic<int> memory_sets{0};
  std::atomic<bool> refuse_memory{false};  // as a rootless factory, without cgroups
  Result<CgroupEvents> events(uint64_t) override { return CgroupEvents{}; }
  bool healthy() override { return true; }
  Status destroy(uint64_t id) override {
    destroys_started++;
    std::chrono::milliseconds t = destroy_time_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = destroy_time_of.find(id); it != destroy_time_of.end()) t = it->second;
    }
    std::this_thread::sleep_for(t);
    --live_;
    return {};
  }
  int most_alive() const { return most_.load(); }
  std::chrono::milliseconds spawn_time{1};
  std::map<uint64_t, std::chrono::milliseconds> destroy_time_of;  // by id, set before spawns
  std::atomic<int> destroys_started{0};
  std::atomic<int> fail_spawns{0};
  std::atomic<int> throw_spawns{0};  // as an allocation failure inside the factory
  std::string freeze_dir;            // set: each sandbox gets a freeze switch there
  bool with_pipes = false;           // each sandbox gets a channel and a log
  int alive() const { return live_.load(); }
  // Writes as sandbox id's runner would: a reply, then its log.
  void runner_says(uint64_t id, const std::string& reply, const std::string& log) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& e = runner_ends_.at(id);
    REQUIRE(write(e[1].get(), reply.data(), reply.size()) == ssize_t(reply.size()));
    REQUIRE(write(e[2].get(), log.data(), log.size()) == ssize_t(log.size()));
  }
  // As sandbox id's runner exiting: its ends of the pipes close.
  void runner_exits(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    runner_ends_.erase(id);
  }

 private:
  std::chrono::milliseconds destroy_time_;
  std::atomic<uint64_t> next_{1};
  std::atomic<int> live_{0}, most_{0}, forking_{0};
  std::mutex mu_;
  std::map<uint64_t, std::array<UniqueFd, 3>> runner_ends_;  // in, out, log (write)
};

PoolLimits limits(int max_sandboxes, int blank) {
  PoolLimits l;
  l.blank = blank;
  l.max_sandboxes = max_sandboxes;
  l.per_function = 4;
  l.memory_budget_bytes = 1ull << 40;
  l.idle_timeout_ms = 600000;
  return l;
}

// Waits on the pool's observable state, bounded: the tests never sleep to
// let another thread get somewhere.
void wait_for(Pool& pool, const std::function<bool(const PoolStats&)>& ready) {
  auto deadline = Clock::now() + 5s;
  while (!ready(pool.stats()) && Clock::now() < deadline) std::this_thread::yield();
  REQUIRE(ready(pool.stats()));
}

// Leases a cold sandbox for name and gives it back warm.
void warm_up(Pool& pool, const std::string& name) {
  auto l = pool.acquire(name, 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(l.status == Pool::Status::Ok);
  pool.release(std::move(l.worker), true);
}

// Acquires each name at once, one thread a name, each waiting at most
// wait; returns how many were served and gives every sandbox back warm.
int acquire_at_once(Pool& pool, const std::vector<std::string>& names, Clock::duration wait) {
  std::atomic<int> served{0};
  std::mutex mu;
  std::vector<Pool::Lease> leases;
  std::vector<std::thread> ts;
  for (const auto& name : names)
    ts.emplace_back([&, name] {
      auto l = pool.acquire(name, 1, 0, kMemory, Clock::now() + wait);
      if (l.status == Pool::Status::Ok) served++;
      std::lock_guard<std::mutex> lock(mu);
      leases.push_back(std::move(l));
    });
  for (auto& t : ts) t.join();
  for (auto& l : leases)
    if (l.worker) pool.release(std::move(l.worker), true);
  return served;
}

}  // namespace

TEST_CASE("pool: never more sandboxes alive than max_sandboxes, even while destroys are slow") {
  FakeFactory factory(5ms);
  Pool pool(factory, limits(8, 2), {kMemory});
  pool.start();
  // Each new function evicts the least recently used idle one.
  for (int i = 0; i < 60; i++) warm_up(pool, "f" + std::to_string(i));
  CHECK(factory.most_alive() <= 8);
  CHECK(pool.stats().evictions >= 50);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: requests waiting on the same dying sandboxes are all served") {
  FakeFactory factory(20ms);
  Pool pool(factory, limits(4, 0), {kMemory});
  pool.start();
  for (int i = 0; i < 4; i++) warm_up(pool, "other" + std::to_string(i));
  // The pool is full of idle sandboxes of other functions; three cold
  // requests for one function arrive at once.
  CHECK(acquire_at_once(pool, {"f", "f", "f"}, 2s) == 3);
  CHECK(factory.most_alive() <= 4);
  pool.stop();
  CHECK(factory.alive() == 0);
}

// A batch of destroys gives back each slot as it frees: at the end of the
// batch, one slow destroy (a PID 1 freeing gigabytes) held the slots of the
// fast ones before it, and a full pool's cold starts timed out.
TEST_CASE("pool: a slow destroy does not hold the slots of those destroyed before it") {
  FakeFactory factory(1ms);
  factory.destroy_time_of[1] = 300ms;   // keeps the janitor busy while 2 and 3 queue
  factory.destroy_time_of[3] = 2500ms;  // the slow one, after 2 in the same batch
  Pool pool(factory, limits(3, 0), {kMemory});
  pool.start();
  auto c = pool.acquire("c", 1, 0, kMemory, Clock::now() + 2s);
  auto b = pool.acquire("b", 1, 0, kMemory, Clock::now() + 2s);
  auto a = pool.acquire("a", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(c.worker->id == 1);
  REQUIRE(b.worker->id == 2);
  REQUIRE(a.worker->id == 3);
  pool.release(std::move(c.worker), false);
  for (auto until = Clock::now() + 5s; factory.destroys_started == 0 && Clock::now() < until;)
    std::this_thread::yield();
  REQUIRE(factory.destroys_started == 1);
  pool.release(std::move(b.worker), false);
  pool.release(std::move(a.worker), false);
  // Two new functions wait for room: one gets 1's slot, the other 2's,
  // both long before 3 is gone.
  CHECK(acquire_at_once(pool, {"f", "g"}, 1500ms) == 2);
  CHECK(factory.most_alive() <= 3);
  pool.stop();
  CHECK(factory.alive() == 0);
}

// A one-off job (the deploy check) at another memory than its profile's, in
// a pool whose blanks hold all the room: a blank is re-limited for it; where
// that cannot be done, a blank goes and one is made to measure.
TEST_CASE("pool: a one-off job of another memory gets a sandbox though blanks fill the pool") {
  for (bool refuse : {false, true}) {
    CAPTURE(refuse);
    FakeFactory factory(1ms);
    factory.refuse_memory = refuse;
    Pool pool(factory, limits(2, 2), {kMemory});
    pool.start();
    wait_for(pool, [](const PoolStats& s) { return s.blank == 2; });
    auto job = pool.acquire_blank(0, 2 * kMemory, Clock::now() + 2s);
    REQUIRE(job.status == Pool::Status::Ok);
    CHECK(job.worker->memory_bytes == 2 * kMemory);
    CHECK(factory.memory_sets == 1);
    // The first blank re-limited; or one made to measure (after the refill
    // may have replaced the blank that went).
    if (refuse)
      CHECK(job.worker->id >= 3);
    else
      CHECK(job.worker->id == 1);
    pool.release(std::move(job.worker), false);
    pool.stop();
    CHECK(factory.alive() == 0);
  }
}

TEST_CASE("pool: a revoked function's waiting request is refused as stale, its sandboxes go") {
  FakeFactory factory(1ms);
  Pool pool(factory, limits(4, 0), {kMemory});
  pool.start();
  warm_up(pool, "f");
  pool.revoke("f", 2, false);  // a deploy of version 2 returned
  auto stale = pool.acquire("f", 1, 0, kMemory, Clock::now() + 1s);
  CHECK(stale.status == Pool::Status::Stale);
  auto fresh = pool.acquire("f", 2, 0, kMemory, Clock::now() + 1s);
  REQUIRE(fresh.status == Pool::Status::Ok);
  CHECK(fresh.cold);  // the old version's warm sandbox was not reused
  pool.release(std::move(fresh.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: a deploy wakes requests waiting for the old version at once") {
  FakeFactory factory(1ms);
  PoolLimits l = limits(4, 0);
  l.per_function = 1;
  Pool pool(factory, l, {kMemory});
  pool.start();
  auto busy = pool.acquire("f", 1, 0, kMemory, Clock::now() + 1s);  // holds f's only slot
  REQUIRE(busy.status == Pool::Status::Ok);
  Pool::Status status = Pool::Status::Ok;
  auto t0 = Clock::now();
  std::thread waiter([&] { status = pool.acquire("f", 1, 0, kMemory, t0 + 5s).status; });
  wait_for(pool, [](const PoolStats& s) { return s.waiting == 1; });
  pool.revoke("f", 2, false);
  waiter.join();
  CHECK(status == Pool::Status::Stale);
  CHECK(Clock::now() - t0 < 2s);  // not at its 5 s deadline
  pool.release(std::move(busy.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

// Releases wake only the waiters that can use what was released; these two
// are the ones that must still be woken.
TEST_CASE("pool: a request waiting on the global budget is woken when another function goes idle") {
  FakeFactory factory(1ms);
  Pool pool(factory, limits(1, 0), {kMemory});
  pool.start();
  auto busy = pool.acquire("a", 1, 0, kMemory, Clock::now() + 1s);  // the only slot
  REQUIRE(busy.status == Pool::Status::Ok);
  Pool::Status status = Pool::Status::Overloaded;
  auto t0 = Clock::now();
  std::thread waiter([&] {
    auto l = pool.acquire("b", 1, 0, kMemory, t0 + 5s);  // under its own cap, no room
    status = l.status;
    if (l.worker) pool.release(std::move(l.worker), true);
  });
  wait_for(pool, [](const PoolStats& s) { return s.waiting == 1; });
  pool.release(std::move(busy.worker), true);  // idle now: b may evict it
  waiter.join();
  CHECK(status == Pool::Status::Ok);
  CHECK(Clock::now() - t0 < 2s);
  CHECK(factory.most_alive() <= 1);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: a failed spawn wakes a request waiting at the function's cap") {
  FakeFactory factory(1ms);
  factory.spawn_time = 200ms;  // the second request arrives while the first spawns
  factory.fail_spawns = 1;
  PoolLimits l = limits(8, 0);
  l.per_function = 1;
  Pool pool(factory, l, {kMemory});
  pool.start();
  Pool::Status first = Pool::Status::Ok, second = Pool::Status::Overloaded;
  auto t0 = Clock::now();
  std::thread a([&] { first = pool.acquire("f", 1, 0, kMemory, t0 + 5s).status; });
  // a's slot is counted while its spawn runs (200 ms): b arrives at the cap.
  wait_for(pool, [](const PoolStats& s) { return s.busy == 1; });
  std::thread b([&] {
    auto w = pool.acquire("f", 1, 0, kMemory, t0 + 5s);  // at the cap: waits
    second = w.status;
    if (w.worker) pool.release(std::move(w.worker), true);
  });
  a.join();
  b.join();
  CHECK(first == Pool::Status::SpawnFailed);
  CHECK(second == Pool::Status::Ok);
  CHECK(Clock::now() - t0 < 2s);  // not at its 5 s deadline
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: raising per_function on reload wakes every request waiting at the old cap") {
  FakeFactory factory(1ms);
  PoolLimits l = limits(8, 0);
  l.per_function = 1;
  Pool pool(factory, l, {kMemory});
  pool.start();
  auto busy = pool.acquire("f", 1, 0, kMemory, Clock::now() + 1s);
  REQUIRE(busy.status == Pool::Status::Ok);
  std::atomic<int> served{0};
  auto t0 = Clock::now();
  std::vector<Pool::Lease> leases(3);
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; i++)
    ts.emplace_back([&, i] {
      leases[i] = pool.acquire("f", 1, 0, kMemory, t0 + 5s);
      if (leases[i].status == Pool::Status::Ok) served++;
    });
  wait_for(pool, [](const PoolStats& s) { return s.waiting == 3; });
  l.per_function = 4;
  pool.set_limits(l);
  for (auto& t : ts) t.join();
  CHECK(served == 3);
  CHECK(Clock::now() - t0 < 2s);
  for (auto& le : leases)
    if (le.worker) pool.release(std::move(le.worker), true);
  pool.release(std::move(busy.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

namespace {

std::string freeze_state(const std::string& dir, uint64_t id) {
  std::ifstream f(dir + "/" + std::to_string(id));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("pool: an idle warm sandbox is frozen after the grace and thawed when leased") {
  nsbox::test::TempDir dir("pool-freeze");
  FakeFactory factory(1ms);
  factory.freeze_dir = dir.path;
  PoolLimits l = limits(8, 0);
  l.freeze_idle_ms = 600000;  // the freezer thread stays out; the test calls its step
  Pool pool(factory, l, {kMemory});
  pool.start();
  auto lease = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(lease.status == Pool::Status::Ok);
  const uint64_t id = lease.worker->id;
  pool.release(std::move(lease.worker), true);
  // Within the grace: nothing is frozen.
  CHECK(pool.freeze_due(Clock::now()) == 0);
  CHECK(freeze_state(dir.path, id).empty());
  // After it: frozen, once.
  CHECK(pool.freeze_due(Clock::now() + 700s) == 1);
  CHECK(freeze_state(dir.path, id) == "1");
  CHECK(pool.stats().frozen == 1);
  CHECK(pool.freeze_due(Clock::now() + 700s) == 0);
  // The next request gets it thawed before it can write anything.
  auto again = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(again.status == Pool::Status::Ok);
  CHECK_FALSE(again.cold);
  CHECK(again.worker->id == id);
  CHECK_FALSE(again.worker->frozen);
  CHECK(freeze_state(dir.path, id) == "0");
  // Busy, it is never frozen, whatever time it is.
  CHECK(pool.freeze_due(Clock::now() + 700s) == 0);
  CHECK(freeze_state(dir.path, id) == "0");
  PoolStats s = pool.stats();
  CHECK(s.freezes == 1);
  CHECK(s.thaws == 1);
  pool.release(std::move(again.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: the freezer thread freezes an idle sandbox a few ms after release") {
  nsbox::test::TempDir dir("pool-freeze");
  FakeFactory factory(1ms);
  factory.freeze_dir = dir.path;
  PoolLimits l = limits(8, 0);
  l.freeze_idle_ms = 5;
  Pool pool(factory, l, {kMemory});
  pool.start();
  auto lease = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(lease.status == Pool::Status::Ok);
  const uint64_t id = lease.worker->id;
  pool.release(std::move(lease.worker), true);
  // Waits on the observable state (the switch written), bounded.
  auto deadline = Clock::now() + 5s;
  while (freeze_state(dir.path, id) != "1" && Clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  CHECK(freeze_state(dir.path, id) == "1");
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("under_memory_pressure: MemAvailable and PSI thresholds, each optional") {
  PoolLimits l;
  MemoryReading m;
  m.have_available = true;
  m.available_bytes = 2ull << 30;
  m.have_psi = true;
  m.psi_some_avg10 = 50;
  CHECK_FALSE(under_memory_pressure(m, l));  // both thresholds off
  l.min_available_bytes = 1ull << 30;
  CHECK_FALSE(under_memory_pressure(m, l));
  m.available_bytes = (1ull << 30) - 1;
  CHECK(under_memory_pressure(m, l));
  m.have_available = false;  // no MemAvailable (pre-3.14 kernel): that rule is silent
  CHECK_FALSE(under_memory_pressure(m, l));
  l.psi_some_avg10 = 60;
  CHECK_FALSE(under_memory_pressure(m, l));
  m.psi_some_avg10 = 60.5;
  CHECK(under_memory_pressure(m, l));
  m.have_psi = false;  // no /proc/pressure: that rule is silent
  CHECK_FALSE(under_memory_pressure(m, l));
}

TEST_CASE("pool: memory pressure evicts idle sandboxes least recently used first, then stops") {
  FakeFactory factory(1ms);
  std::mutex mu;
  MemoryReading reading;
  reading.have_available = true;
  reading.available_bytes = 8ull << 30;
  auto source = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return reading;
  };
  PoolLimits l = limits(16, 0);
  l.min_available_bytes = 1ull << 30;
  Pool pool(factory, l, {kMemory}, source);
  pool.start();
  std::vector<uint64_t> ids;  // f0 is the least recently used
  for (int i = 0; i < 8; i++) {
    auto lease = pool.acquire("f" + std::to_string(i), 1, 0, kMemory, Clock::now() + 2s);
    REQUIRE(lease.status == Pool::Status::Ok);
    ids.push_back(lease.worker->id);
    pool.release(std::move(lease.worker), true);
  }
  auto alive = [&](uint64_t id) {
    auto s = pool.stats().ids;
    return std::find(s.begin(), s.end(), id) != s.end();
  };
  CHECK(pool.relieve_memory_pressure() == 0);
  CHECK(pool.stats().idle == 8);

  {
    std::lock_guard<std::mutex> lock(mu);
    reading.available_bytes = 512ull << 20;
  }
  // A quarter of the 8 idle ones: the two least recently used. (The
  // janitor's own checks may have evicted more by now, never the newest.)
  int evicted = pool.relieve_memory_pressure();
  CHECK(evicted >= 1);
  CHECK_FALSE(alive(ids[0]));
  CHECK_FALSE(alive(ids[1]));
  CHECK(alive(ids[7]));
  PoolStats s = pool.stats();
  CHECK(s.memory_pressure);
  CHECK(s.pressure_evictions >= 2);
  CHECK(s.evictions == s.pressure_evictions);

  {
    std::lock_guard<std::mutex> lock(mu);
    reading.available_bytes = 8ull << 30;
  }
  CHECK(pool.relieve_memory_pressure() == 0);
  const int idle_after = pool.stats().idle;
  CHECK(pool.relieve_memory_pressure() == 0);
  CHECK(pool.stats().idle == idle_after);
  CHECK_FALSE(pool.stats().memory_pressure);
  CHECK(alive(ids[7]));
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: under memory pressure with nothing idle, blanks go and are not refilled") {
  FakeFactory factory(1ms);
  std::atomic<bool> low{false};
  auto source = [&] {
    MemoryReading m;
    m.have_available = true;
    m.available_bytes = low ? 1ull << 20 : 8ull << 30;
    return m;
  };
  PoolLimits l = limits(16, 2);
  l.min_available_bytes = 1ull << 30;
  Pool pool(factory, l, {kMemory}, source);
  pool.start();
  auto deadline = Clock::now() + 5s;
  while (pool.stats().blank < 2 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  REQUIRE(pool.stats().blank == 2);
  low = true;
  pool.relieve_memory_pressure();
  pool.relieve_memory_pressure();
  CHECK(pool.stats().blank == 0);
  CHECK(pool.stats().memory_pressure);
  // The refill holds back while the pressure lasts.
  CHECK(pool.relieve_memory_pressure() == 0);
  CHECK(pool.stats().blank == 0);
  pool.stop();
  CHECK(factory.alive() == 0);
}

namespace {

std::string read_some(int fd) {
  char buf[64];
  ssize_t n = read(fd, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

TEST_CASE("pool: a function template's fork refused for fds keeps the template") {
  FakeFactory factory(1ms);
  factory.with_pipes = true;  // three fds a sandbox: the channel's two and the log
  Pool pool(factory, limits(8, 0), {kMemory});
  FdParking parking(nsbox::test::keeper_path());
  pool.set_parking(&parking, 8);
  pool.start();
  const Pool::TemplateLoader loads = [](Worker&) { return true; };

  // The template (3 fds) and its first instance (3), leased.
  auto a = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s, &loads);
  REQUIRE(a.status == Pool::Status::Ok);
  CHECK(a.forked);
  CHECK(factory.forks == 1);
  CHECK(pool.stats().templates == 1);
  // A second instance would pass the budget: the request fails, and the
  // template, which did nothing wrong, stays (it was dropped as broken).
  auto b = pool.acquire("f", 1, 0, kMemory, Clock::now() + 200ms, &loads);
  CHECK(b.status == Pool::Status::SpawnFailed);
  CHECK(factory.forks == 1);
  CHECK(pool.stats().templates == 1);
  // With room again, it forks the next instance.
  pool.set_fd_budget(20);
  auto c = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s, &loads);
  REQUIRE(c.status == Pool::Status::Ok);
  CHECK(c.forked);
  CHECK(factory.forks == 2);
  CHECK(factory.templates_made == 1);  // the same template
  pool.release(std::move(a.worker), true);
  pool.release(std::move(c.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: frozen sandboxes' fds wait in a keeper; past the fd budget none is made") {
  nsbox::test::TempDir dir("pool-park");
  FakeFactory factory(1ms);
  factory.freeze_dir = dir.path;
  factory.with_pipes = true;
  FdParking parking(nsbox::test::keeper_path());
  PoolLimits l = limits(8, 0);
  l.freeze_idle_ms = 600000;  // the test calls the freezer's step
  Pool pool(factory, l, {kMemory});
  pool.set_parking(&parking, 8);  // two sandboxes' fds
  pool.start();

  auto f = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(f.status == Pool::Status::Ok);
  const uint64_t id = f.worker->id;
  pool.release(std::move(f.worker), true);
  CHECK(pool.freeze_due(Clock::now() + 700s) == 1);
  CHECK(pool.stats().parked == 1);
  CHECK(pool.stats().keepers == 1);

  // Two more held by the gateway fill the budget: a fourth is refused as
  // a spawn failure, not made.
  auto g = pool.acquire("g", 1, 0, kMemory, Clock::now() + 2s);
  auto h = pool.acquire("h", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(g.status == Pool::Status::Ok);
  REQUIRE(h.status == Pool::Status::Ok);
  auto i = pool.acquire("i", 1, 0, kMemory, Clock::now() + 200ms);
  CHECK(i.status != Pool::Status::Ok);
  CHECK(pool.stats().spawn_failures >= 1);
  // One of them parked, there is room again.
  pool.release(std::move(g.worker), true);
  CHECK(pool.freeze_due(Clock::now() + 700s) == 1);
  i = pool.acquire("i", 1, 0, kMemory, Clock::now() + 2s);
  CHECK(i.status == Pool::Status::Ok);

  // f again: thawed with its own fds back, in their places.
  factory.runner_says(id, "reply", "log");
  auto again = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(again.status == Pool::Status::Ok);
  CHECK(again.worker->id == id);
  CHECK_FALSE(again.worker->parked.valid());
  CHECK(read_some(again.worker->channel.from_runner.get()) == "reply");
  CHECK(read_some(again.worker->log.get()) == "log");
  CHECK(freeze_state(dir.path, id) == "0");  // thawed through the fetched switch
  CHECK(pool.stats().parked == 1);           // g's
  pool.release(std::move(again.worker), true);
  pool.release(std::move(h.worker), true);
  pool.release(std::move(i.worker), true);
  pool.stop();
  CHECK(parking.parked() == 0);  // the stop dropped g's
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: a lease passes over blanks and warm sandboxes whose runner has exited") {
  FakeFactory factory(1ms);
  factory.with_pipes = true;
  Pool pool(factory, limits(8, 3), {kMemory});
  pool.start();
  wait_for(pool, [](const PoolStats& s) { return s.blank == 3; });
  std::vector<uint64_t> blanks = pool.stats().ids;
  REQUIRE(blanks.size() == 3);
  // Two of the three die while they wait: the one-off lease (the deploy
  // check's) gets the third, and the refill replaces the dead ones.
  factory.runner_exits(blanks[0]);
  factory.runner_exits(blanks[2]);
  auto one_off = pool.acquire_blank(0, kMemory, Clock::now() + 2s);
  REQUIRE(one_off.status == Pool::Status::Ok);
  CHECK(one_off.worker->id == blanks[1]);
  // The lease passed over the dead ones it met; the janitor's step finds
  // the rest.
  pool.drop_dead();
  CHECK(pool.stats().found_dead == 2);
  pool.release(std::move(one_off.worker), false);

  // A warm sandbox whose runner exits: the next request gets a new one.
  auto f = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(f.status == Pool::Status::Ok);
  const uint64_t warm = f.worker->id;
  pool.release(std::move(f.worker), true);
  factory.runner_exits(warm);
  f = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(f.status == Pool::Status::Ok);
  CHECK(f.worker->id != warm);
  CHECK(f.cold);
  CHECK(pool.stats().found_dead == 3);
  pool.release(std::move(f.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: a function template forks one instance at a time; slow forks stop the queue") {
  FakeFactory factory(1ms);
  factory.fork_time = 30ms;
  Pool pool(factory, limits(16, 0), {kMemory});
  pool.start();
  const Pool::TemplateLoader loads = [](Worker&) { return true; };
  auto first = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s, &loads);
  REQUIRE(first.status == Pool::Status::Ok);
  REQUIRE(first.forked);
  auto burst = [&](int n) {
    std::vector<Pool::Lease> leases(static_cast<size_t>(n));
    std::vector<std::thread> ts;
    for (int i = 0; i < n; i++)
      ts.emplace_back([&, i] {
        leases[static_cast<size_t>(i)] =
            pool.acquire("f", 1, 0, kMemory, Clock::now() + 5s, &loads);
      });
    for (auto& t : ts) t.join();
    return leases;
  };
  SUBCASE("honest forks: all served by forks, never two at once in the spawner") {
    auto leases = burst(3);
    for (auto& l : leases) {
      CHECK(l.status == Pool::Status::Ok);
      CHECK(l.forked);
      pool.release(std::move(l.worker), true);
    }
    CHECK(factory.forks == 4);
    CHECK(factory.most_forking == 1);
  }
  SUBCASE("a fork of 450 ms retires the template before the queued ones start") {
    factory.fork_ms = 450;  // over the debt limit at once
    auto leases = burst(3);
    for (auto& l : leases) {
      CHECK(l.status == Pool::Status::Ok);
      pool.release(std::move(l.worker), true);
    }
    // One more fork (the first of the burst), then the ordinary way.
    CHECK(factory.forks == 2);
    CHECK(factory.most_forking == 1);
  }
  pool.release(std::move(first.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

// Requests waiting for another's fork from the template wait on a
// condition of their own: a release's wake-up for the function went to one
// of them, which went back to sleep, and a request waiting for a sandbox
// slept on until the fork ended.
TEST_CASE("pool: a released sandbox wakes a request waiting for one, not one waiting on a fork") {
  FakeFactory factory(1ms);
  Pool pool(factory, limits(16, 0), {kMemory});
  pool.start();
  const Pool::TemplateLoader loads = [](Worker&) { return true; };
  auto first = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s, &loads);
  REQUIRE(first.status == Pool::Status::Ok);
  factory.fork_time = 1500ms;
  // Three more: one forks, two wait for its fork; per_function (4) is
  // then reached.
  std::vector<Pool::Lease> leases(4);
  std::vector<std::thread> ts;
  for (size_t i = 0; i < 3; i++)
    ts.emplace_back(
        [&, i] { leases[i] = pool.acquire("f", 1, 0, kMemory, Clock::now() + 5s, &loads); });
  wait_for(pool, [](const PoolStats& s) { return s.busy == 4; });
  // A fifth waits for a sandbox (every request in acquire counts as
  // waiting: three, then four); the first is given back.
  std::atomic<int64_t> waited_ms{-1};
  std::atomic<int64_t> released_at{0};
  ts.emplace_back([&] {
    leases[3] = pool.acquire("f", 1, 0, kMemory, Clock::now() + 5s, &loads);
    waited_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count() -
        released_at;
  });
  wait_for(pool, [](const PoolStats& s) { return s.waiting == 4; });
  std::this_thread::sleep_for(50ms);  // to its wait (were it not there, it would find the sandbox)
  released_at =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
          .count();
  pool.release(std::move(first.worker), true);
  for (auto until = Clock::now() + 5s; waited_ms < 0 && Clock::now() < until;)
    std::this_thread::yield();
  // Served by the release, long before the fork's 1.5 s end.
  CHECK(waited_ms >= 0);
  CHECK_MESSAGE(waited_ms < 1000, waited_ms.load());
  for (auto& t : ts) t.join();
  CHECK(leases[3].status == Pool::Status::Ok);
  for (auto& l : leases)
    if (l.worker) pool.release(std::move(l.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: a spawn or a template load that throws leaves no count behind") {
  FakeFactory factory(1ms);
  Pool pool(factory, limits(2, 0), {kMemory});
  pool.start();
  // Twice as many throwing spawns as the cap: had each kept its slot, the
  // pool would now refuse every request.
  for (int i = 0; i < 4; i++) {
    factory.throw_spawns = 1;
    auto r = pool.acquire("f", 1, 0, kMemory, Clock::now() + 500ms);
    CHECK(r.status == Pool::Status::SpawnFailed);
  }
  PoolStats st = pool.stats();
  CHECK(st.waiting == 0);
  CHECK(st.busy == 0);
  auto ok = pool.acquire("f", 1, 0, kMemory, Clock::now() + 2s);
  REQUIRE(ok.status == Pool::Status::Ok);
  pool.release(std::move(ok.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: a function template whose load throws leaves no count behind") {
  FakeFactory factory(1ms);
  Pool pool(factory, limits(8, 0), {kMemory});
  pool.start();
  // That request is served the ordinary way, and the template it planned
  // is not counted.
  int loads = 0;
  const Pool::TemplateLoader throws = [&](Worker&) -> bool {
    loads++;
    throw std::bad_alloc();
  };
  auto t = pool.acquire("g", 1, 0, kMemory, Clock::now() + 2s, &throws);
  REQUIRE(t.status == Pool::Status::Ok);
  CHECK_FALSE(t.forked);
  CHECK(loads == 1);
  CHECK(pool.stats().templates == 0);
  pool.release(std::move(t.worker), true);
  pool.stop();
  CHECK(factory.alive() == 0);
}

TEST_CASE("pool: a sandbox larger than the whole memory budget is refused at once, not queued") {
  FakeFactory factory(1ms);
  PoolLimits l = limits(8, 0);
  l.memory_budget_bytes = 4 * kMemory;
  Pool pool(factory, l, {kMemory});
  pool.start();
  const auto t0 = Clock::now();
  auto r = pool.acquire("big", 1, 0, 5 * kMemory, Clock::now() + 2s);
  CHECK(r.status == Pool::Status::NeverFits);
  CHECK(r.message == "needs 320 MiB, more than the whole [pool] memory_budget_mb (256)");
  CHECK(Clock::now() - t0 < 1s);  // the queue's 2 s deadline was not waited out
  CHECK(pool.stats().waiting == 0);
  auto ok = pool.acquire("small", 1, 0, 4 * kMemory, Clock::now() + 2s);
  CHECK(ok.status == Pool::Status::Ok);
  pool.release(std::move(ok.worker), true);
  pool.stop();
}
