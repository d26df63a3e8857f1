// FactoryGroup (sandbox/factory_group.hpp): spawns spread over the
// members, every later call about a sandbox routed to the member that made
// it, with that member's own id.
#include "sandbox/factory_group.hpp"

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

using namespace nsbox;

namespace {

// Hands out its own ids from 1, as a spawner does, and records the calls.
struct FakeMember final : SandboxFactory {
  uint64_t next = 1;
  std::vector<uint64_t> destroyed, forked_from, memory_set;
  bool alive = true;
  uint64_t template_rss = 0;
  // While held, spawn() waits: a spawn in progress.
  std::mutex mu;
  std::condition_variable cv;
  bool hold = false;
  int spawning = 0;

  Result<SpawnedSandbox> spawn(uint32_t, uint64_t) override {
    std::unique_lock<std::mutex> lock(mu);
    if (!alive) return make_error("spawner", "not running");
    spawning++;
    cv.notify_all();
    cv.wait(lock, [&] { return !hold; });
    SpawnedSandbox s;
    s.id = next++;
    return s;
  }
  Result<SpawnedSandbox> spawn_template(uint32_t p, uint64_t m) override { return spawn(p, m); }
  Result<SpawnedSandbox> fork_instance(uint64_t t, uint32_t p, uint64_t m) override {
    forked_from.push_back(t);
    return spawn(p, m);
  }
  Status set_memory(uint64_t id, uint64_t) override {
    memory_set.push_back(id);
    return {};
  }
  Result<CgroupEvents> events(uint64_t id) override {
    CgroupEvents e;
    e.oom_kills = id;  // echoes the id it was asked about
    return e;
  }
  Status destroy(uint64_t id) override {
    destroyed.push_back(id);
    return {};
  }
  bool healthy() override { return alive; }
  Result<ProcessMemory> template_memory() override {
    ProcessMemory m;
    m.rss = template_rss;
    m.processes = 1;
    return m;
  }
};

}  // namespace

TEST_CASE("FactoryGroup: each sandbox's calls go to the member that made it, by its own id") {
  FakeMember a, b;
  FactoryGroup g({&a, &b});
  CHECK(g.parallelism() == 2);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 6; i++) {
    auto s = g.spawn(0, 1 << 20);
    REQUIRE(s);
    ids.push_back(s.value().id);
  }
  // One at a time, the members take turns; no two sandboxes share an id.
  CHECK(a.next == 4);
  CHECK(b.next == 4);
  for (size_t i = 0; i < ids.size(); i++)
    for (size_t j = i + 1; j < ids.size(); j++) CHECK(ids[i] != ids[j]);
  for (uint64_t id : ids) REQUIRE(g.destroy(id));
  CHECK(a.destroyed == std::vector<uint64_t>{1, 2, 3});
  CHECK(b.destroyed == std::vector<uint64_t>{1, 2, 3});
  // Events, limits and a template's forks are the owner's too.
  auto ev = g.events(ids[0]);
  REQUIRE(ev);
  const bool first_is_a = ids[0] % 2 == 0;
  CHECK(ev.value().oom_kills == 1);
  REQUIRE(g.set_memory(ids[1], 1));
  CHECK((first_is_a ? b : a).memory_set == std::vector<uint64_t>{1});
  auto t = g.spawn_template(0, 1);
  REQUIRE(t);
  auto inst = g.fork_instance(t.value().id, 0, 1);
  REQUIRE(inst);
  FakeMember& owner = t.value().id % 2 == 0 ? a : b;
  CHECK(owner.forked_from == std::vector<uint64_t>{4});
  CHECK(inst.value().id % 2 == t.value().id % 2);
  // An id no member made is refused, not sent to one as 0.
  CHECK_FALSE(g.destroy(0));
  CHECK_FALSE(g.destroy(1));
  CHECK_FALSE(g.fork_instance(1, 0, 1));
}

TEST_CASE("FactoryGroup: a spawn goes to a free member while another is busy") {
  FakeMember a, b;
  FactoryGroup g({&a, &b});
  a.hold = b.hold = true;
  uint64_t first = 0;
  std::thread t([&] { first = g.spawn(0, 1).value().id; });
  // Whichever member took the first spawn is busy with it; the next
  // spawn, while it waits, must go to the other.
  FakeMember* busy = nullptr;
  for (FakeMember* m : {&a, &b}) {
    std::unique_lock<std::mutex> lock(m->mu);
    if (m->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return m->spawning > 0; }))
      busy = m;
  }
  REQUIRE(busy != nullptr);
  FakeMember* other = busy == &a ? &b : &a;
  {
    std::lock_guard<std::mutex> lock(other->mu);
    other->hold = false;
  }
  for (int i = 0; i < 3; i++) REQUIRE(g.spawn(0, 1));
  CHECK(other->next == 4);  // all three, none queued behind the busy one
  {
    std::lock_guard<std::mutex> lock(busy->mu);
    busy->hold = false;
    busy->cv.notify_all();
  }
  t.join();
  CHECK(busy->next == 2);
  CHECK(first % 2 == (busy == &a ? 0u : 1u));
}

TEST_CASE("FactoryGroup: healthy only with every member; template memory summed") {
  FakeMember a, b;
  a.template_rss = 10;
  b.template_rss = 32;
  FactoryGroup g({&a, &b});
  auto m = g.template_memory();
  REQUIRE(m);
  CHECK(m.value().rss == 42);
  CHECK(m.value().processes == 2);
  CHECK(g.healthy());
  b.alive = false;
  CHECK_FALSE(g.healthy());
  CHECK(FactoryGroup::default_count() >= 1);
  CHECK(FactoryGroup::default_count() <= 4);
}

TEST_CASE("FactoryGroup: a lost member, which fails at once, is passed over") {
  FakeMember a, b;
  FactoryGroup g({&a, &b});
  b.alive = false;
  // It looks the least busy, and takes a spawn only until one fails there.
  int failed = 0;
  for (int i = 0; i < 10; i++) failed += !g.spawn(0, 1);
  CHECK(failed == 1);
  CHECK(a.next == 10);
  // With every member lost, a spawn still fails rather than hang.
  a.alive = false;
  CHECK_FALSE(g.spawn(0, 1));
}
