// The pool's decisions, driven step by step without threads, clocks or
// sandboxes: every test states what PoolCore must answer and whom it must
// wake, and checks its invariants after each change (invariant_violation,
// also checked inside every call in debug builds).
#include "gateway/pool_core.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

using namespace nsbox;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMem = 64 * kMiB;
const Clock::time_point kT0{};

PoolLimits limits(int max_sandboxes, int per_function = 4) {
  PoolLimits l;
  l.blank = 0;
  l.max_sandboxes = max_sandboxes;
  l.per_function = per_function;
  l.memory_budget_bytes = 1ull << 40;
  l.idle_timeout_ms = 60000;
  l.queue_per_function = 8;
  l.queue_total = 16;
  l.freeze_idle_ms = 0;
  return l;
}

// What the shell does: fill in a spawned sandbox.
std::unique_ptr<Worker> made(uint64_t id, uint64_t memory = kMem, uint32_t profile = 0) {
  auto w = std::make_unique<Worker>();
  w->id = id;
  w->memory_bytes = memory;
  w->profile = profile;
  return w;
}

bool has(const std::vector<std::string>& v, const std::string& name) {
  return std::find(v.begin(), v.end(), name) != v.end();
}

void holds(const PoolCore& core) {
  std::string v = core.invariant_violation();
  CHECK_MESSAGE(v.empty(), v);
}

// One request for name at deploy: admit, step, spawn if told. Returns the
// lease (cold or warm) and leaves the request admitted only if it must wait.
struct Request {
  PoolCore& core;
  std::string name;
  uint64_t deploy;
  uint64_t memory = kMem;
  PoolCore::Step last;
  std::unique_ptr<Worker> lease;
  bool cold = false;
  bool admitted = false;

  Request(PoolCore& c, std::string n, uint64_t d, uint64_t m = kMem)
      : core(c), name(std::move(n)), deploy(d), memory(m) {}
  // Steps until a lease, a wait or a refusal; next_id: the id a spawn gets.
  PoolCore::Step::Kind run(uint64_t next_id, bool last_try = false) {
    if (!admitted) {
      REQUIRE(core.admit(name));
      admitted = true;
    }
    for (int i = 0; i < 100; i++) {
      last = core.acquire_step(name, deploy, 0, memory, last_try, true);
      holds(core);
      switch (last.kind) {
        case PoolCore::Step::Retry:
          continue;
        case PoolCore::Step::Spawn:
          lease = core.spawned(name, deploy, made(next_id, memory));
          cold = true;
          break;
        case PoolCore::Step::Warm:
        case PoolCore::Step::Cold:
          lease = std::move(last.worker);
          cold = last.kind == PoolCore::Step::Cold;
          break;
        case PoolCore::Step::Wait:
          return last.kind;  // still admitted
        default:
          break;
      }
      core.unadmit(name);
      admitted = false;
      holds(core);
      return last.kind;
    }
    FAIL("acquire_step retried 100 times");
    return last.kind;
  }
};

// Leases name's sandbox (spawned as id) and gives it back idle at t.
void warm(PoolCore& core, const std::string& name, uint64_t deploy, uint64_t id,
          Clock::time_point t = kT0) {
  Request r(core, name, deploy);
  REQUIRE(r.run(id) == PoolCore::Step::Spawn);
  core.release(std::move(r.lease), true, t, true);
  holds(core);
}

uint64_t destroy_all(PoolCore& core) {
  auto doomed = core.take_doomed();
  core.destroyed(doomed);
  holds(core);
  return doomed.size();
}

}  // namespace

TEST_CASE("pool core: a warm sandbox of the same deploy is leased before anything is spawned") {
  PoolCore core(limits(8), {kMem});
  warm(core, "f", 1, 10);
  Request r(core, "f", 1);
  CHECK(r.run(11) == PoolCore::Step::Warm);
  CHECK(r.lease->id == 10);
  CHECK(core.stats().busy == 1);
  CHECK(core.stats().idle == 0);
  // Another memory limit is another sandbox: never trusted with it.
  Request other(core, "f", 1, 2 * kMem);
  core.release(std::move(r.lease), true, kT0, true);
  CHECK(other.run(12) == PoolCore::Step::Spawn);
  CHECK(other.lease->id == 12);
}

TEST_CASE("pool core: a blank is taken cold, resized to the function's memory, and refill woken") {
  PoolLimits l = limits(8);
  l.blank = 1;
  PoolCore core(l, {kMem});
  PoolCore::Refill r = core.refill_step();
  REQUIRE(r.spawn);
  CHECK(r.memory == kMem);
  CHECK_FALSE(core.refill_step().spawn);  // one is on its way: blank = 1
  core.refilled(made(1), true);
  CHECK(core.stats().blank == 1);
  REQUIRE(core.admit("f"));
  auto st = core.acquire_step("f", 7, 0, 2 * kMem, false, true);
  REQUIRE(st.kind == PoolCore::Step::Cold);
  CHECK(st.resize);
  CHECK(st.wakes.refill);
  CHECK(st.worker->function == "f");
  CHECK(st.worker->deploy == 7);
  CHECK(core.stats().memory_bytes == 2 * kMem);
  // The resize failed (the runner already uses more): the blank goes and
  // the next step spawns one made to measure.
  Wakes w = core.resize_failed(std::move(st.worker));
  CHECK(w.janitor);
  st = core.acquire_step("f", 7, 0, 2 * kMem, false, false);
  CHECK(st.kind == PoolCore::Step::Spawn);
  core.spawn_failed("f", 2 * kMem);
  core.unadmit("f");
  holds(core);
  CHECK(destroy_all(core) == 1);
  CHECK(core.stats().memory_bytes == 0);
  CHECK(core.stats().spawn_failures == 1);
}

TEST_CASE("pool core: the memory budget is never exceeded; idle sandboxes are evicted LRU") {
  PoolLimits l = limits(100);
  l.memory_budget_bytes = 3 * kMem;
  PoolCore core(l, {kMem});
  warm(core, "a", 1, 1, kT0 + 1s);
  warm(core, "b", 2, 2, kT0 + 3s);
  warm(core, "c", 3, 3, kT0 + 2s);
  CHECK(core.stats().memory_bytes == 3 * kMem);
  // A fourth function: the least recently used idle one (a) goes first.
  Request d(core, "d", 4);
  REQUIRE(d.run(4) == PoolCore::Step::Wait);  // evicted a; waits for its destroy
  PoolStats s = core.stats();
  CHECK(s.evictions == 1);
  CHECK(std::find(s.ids.begin(), s.ids.end(), 1) == s.ids.end());
  CHECK(std::find(s.ids.begin(), s.ids.end(), 3) != s.ids.end());
  // Still counted until destroyed: a second step waits rather than evicts c too.
  CHECK(d.run(4) == PoolCore::Step::Wait);
  CHECK(core.stats().evictions == 1);
  auto doomed = core.take_doomed();
  REQUIRE(doomed.size() == 1);
  Wakes w = core.destroyed(doomed);
  CHECK(has(w.all, "d"));  // the janitor wakes every waiter
  CHECK(d.run(4) == PoolCore::Step::Spawn);
  CHECK(core.stats().memory_bytes == 3 * kMem);
  // A budget too small for one more, with nothing idle: wait, then time out.
  Request e(core, "e", 5);
  CHECK(e.run(5) == PoolCore::Step::Wait);  // evicted c; waits for its destroy
  CHECK(e.run(5, true) == PoolCore::Step::Timeout);
  CHECK(has(e.last.wakes.one, "e"));  // a wake-up that raced the deadline is passed on
}

TEST_CASE("pool core: no eviction when leased sandboxes alone leave no room for the request") {
  PoolLimits l = limits(100);
  l.memory_budget_bytes = 10 * kMem;
  PoolCore core(l, {kMem});
  warm(core, "a", 1, 1);
  warm(core, "b", 2, 2);
  warm(core, "c", 3, 3);
  Request held(core, "a", 1);
  REQUIRE(held.run(9) == PoolCore::Step::Warm);  // a is busy: 2 of the budget's 10 leased
  // 9 more can never fit beside the busy one: evicting b and c would only
  // make them cold, and the request would time out all the same.
  Request big(core, "big", 4, 9 * kMem + 1);
  CHECK(big.run(4) == PoolCore::Step::Wait);
  CHECK(big.run(4, true) == PoolCore::Step::Timeout);
  PoolStats s = core.stats();
  CHECK(s.evictions == 0);
  CHECK(s.idle == 2);
  CHECK(core.take_doomed().empty());
  // The same for a blank lease of a profile that large.
  PoolCore blanks(l, {kMem, 9 * kMem + 1});
  warm(blanks, "a", 1, 1);
  warm(blanks, "b", 2, 2);
  Request busy(blanks, "a", 1);
  REQUIRE(busy.run(9) == PoolCore::Step::Warm);
  CHECK(blanks.blank_step(1, 9 * kMem + 1, false).kind == PoolCore::Step::Wait);
  CHECK(blanks.stats().evictions == 0);
  // Once the leased one is back, evicting makes room: then it evicts.
  core.release(std::move(held.lease), true, kT0, true);
  Request again(core, "big", 4, 9 * kMem);
  CHECK(again.run(4) == PoolCore::Step::Wait);
  CHECK(core.stats().evictions >= 1);
}

TEST_CASE("pool core: admission refuses past the queue caps, per function and in total") {
  PoolLimits l = limits(8);
  l.queue_per_function = 2;
  l.queue_total = 3;
  PoolCore core(l, {kMem});
  CHECK(core.admit("f"));
  CHECK(core.admit("f"));
  CHECK_FALSE(core.admit("f"));
  CHECK(core.admit("g"));
  CHECK_FALSE(core.admit("h"));  // total
  CHECK(core.stats().waiting == 3);
  CHECK(core.stats().functions == 2);  // h's refusal left no entry
  core.unadmit("f");
  CHECK(core.admit("h"));
  holds(core);
}

TEST_CASE("pool core: a function at its cap waits for its own release, which wakes one of it") {
  PoolCore core(limits(8, 1), {kMem});
  Request a(core, "f", 1);
  REQUIRE(a.run(1) == PoolCore::Step::Spawn);
  Request b(core, "f", 1);
  CHECK(b.run(2) == PoolCore::Step::Wait);
  Wakes w = core.release(std::move(a.lease), true, kT0, true);
  CHECK(w.one == std::vector<std::string>{"f"});
  CHECK(b.run(2) == PoolCore::Step::Warm);
  CHECK(b.lease->id == 1);
}

TEST_CASE(
    "pool core: a release wakes waiters of other functions only when they wait on the budget") {
  PoolCore core(limits(1), {kMem});
  Request a(core, "a", 1);
  REQUIRE(a.run(1) == PoolCore::Step::Spawn);
  Request b(core, "b", 1);
  CHECK(b.run(2) == PoolCore::Step::Wait);  // the only slot is a's
  Wakes w = core.release(std::move(a.lease), true, kT0, true);
  CHECK(has(w.one, "b"));                   // b may now evict a's idle sandbox
  CHECK(b.run(2) == PoolCore::Step::Wait);  // evicted; waits for the destroy
  core.destroyed(core.take_doomed());
  CHECK(b.run(2) == PoolCore::Step::Spawn);
  // Nobody else waits: a release wakes no one.
  Wakes quiet = core.release(std::move(b.lease), true, kT0, true);
  CHECK(quiet.one.empty());
  CHECK(quiet.all.empty());
}

TEST_CASE("pool core: a failed spawn frees the slot and wakes a sibling waiting at the cap") {
  PoolCore core(limits(8, 1), {kMem});
  REQUIRE(core.admit("f"));
  auto st = core.acquire_step("f", 1, 0, kMem, false, true);
  REQUIRE(st.kind == PoolCore::Step::Spawn);
  Request sibling(core, "f", 1);
  CHECK(sibling.run(2) == PoolCore::Step::Wait);  // at the cap while the spawn runs
  Wakes w = core.spawn_failed("f", kMem);
  core.unadmit("f");
  CHECK(has(w.one, "f"));
  CHECK(sibling.run(2) == PoolCore::Step::Spawn);
  CHECK(core.stats().spawn_failures == 1);
}

TEST_CASE("pool core: idle sandboxes expire after idle_timeout_ms, oldest first") {
  PoolCore core(limits(8), {kMem});
  warm(core, "f", 1, 1, kT0);
  warm(core, "g", 1, 2, kT0 + 30s);
  core.expire_idle(kT0 + 60s);
  CHECK(core.stats().idle == 2);  // not yet beyond 60 s
  Wakes w = core.expire_idle(kT0 + 61s);
  CHECK(w.janitor);
  PoolStats s = core.stats();
  CHECK(s.idle == 1);
  CHECK(s.idle_expired == 1);
  CHECK(s.ids == std::vector<uint64_t>{2});
  CHECK(s.functions == 1);  // f's entry went with its last sandbox
  CHECK(destroy_all(core) == 1);
}

TEST_CASE(
    "pool core: a revoke makes older requests stale, destroys older sandboxes, wakes waiters") {
  PoolCore core(limits(8, 1), {kMem});
  warm(core, "f", 5, 1);
  Request busy(core, "f", 5);
  REQUIRE(busy.run(2) == PoolCore::Step::Warm);
  Request waiter(core, "f", 5);
  REQUIRE(waiter.run(3) == PoolCore::Step::Wait);
  Wakes w = core.revoke("f", 9, false);
  CHECK(has(w.all, "f"));
  CHECK(waiter.run(3) == PoolCore::Step::Stale);
  // The busy one of the old deploy is destroyed on release, not kept.
  core.release(std::move(busy.lease), true, kT0, true);
  CHECK(core.stats().idle == 0);
  CHECK(destroy_all(core) == 1);
  // A late revoke of an older deploy (out of order) does not lower the floor.
  core.revoke("f", 7, false);
  Request old(core, "f", 7);
  CHECK(old.run(4) == PoolCore::Step::Stale);
  Request fresh(core, "f", 9);
  CHECK(fresh.run(4) == PoolCore::Step::Spawn);
  // A sandbox loaded for the new deploy before its revoke arrived is kept.
  core.release(std::move(fresh.lease), true, kT0, true);
  core.revoke("f", 9, false);
  CHECK(core.stats().idle == 1);
}

TEST_CASE("pool core: a deleted function's entry goes once nothing of it is left") {
  PoolCore core(limits(8), {kMem});
  warm(core, "f", 1, 1);
  Request busy(core, "f", 1);
  REQUIRE(busy.run(2) == PoolCore::Step::Warm);
  warm(core, "g", 2, 3);
  core.revoke("g", 4, false);  // a redeploy: remembered while g exists
  CHECK(core.stats().functions == 2);
  core.revoke("f", 5, true);
  CHECK(core.stats().functions == 2);  // f's busy sandbox still refers to it
  core.release(std::move(busy.lease), true, kT0, true);
  PoolStats s = core.stats();
  CHECK(s.functions == 1);
  CHECK(s.idle == 0);  // g's deploy-2 sandbox went with its revoke
  // A thousand functions deployed, used and deleted leave nothing behind.
  for (uint64_t i = 0; i < 1000; i++) {
    std::string name = "fn" + std::to_string(i);
    warm(core, name, 100 + i, 100 + i);
    core.revoke(name, 5000 + i, true);
    destroy_all(core);
  }
  CHECK(core.stats().functions == 1);
  destroy_all(core);
  CHECK(core.stats().memory_bytes == 0);
}

TEST_CASE(
    "pool core: an idle sandbox of another deploy at the function's cap is evicted for this one") {
  PoolCore core(limits(8, 1), {kMem});
  warm(core, "f", 1, 1);
  Request next(core, "f", 2);  // planned for a deploy whose revoke has not arrived yet
  CHECK(next.run(2) == PoolCore::Step::Spawn);  // deploy 1's sandbox went to free the slot
  CHECK(core.stats().idle == 0);
  CHECK(core.take_doomed().size() == 1);
}

namespace {
// A core of one profile (kMem) that keeps one blank, and has made it.
struct OneBlank {
  static PoolLimits with_a_blank(int max_sandboxes) {
    PoolLimits l = limits(max_sandboxes);
    l.blank = 1;
    return l;
  }
  PoolCore core;
  explicit OneBlank(int max_sandboxes) : core(with_a_blank(max_sandboxes), {kMem}) {
    REQUIRE(core.refill_step().spawn);
    core.refilled(made(1), true);
  }
};
}  // namespace

TEST_CASE("pool core: blank leases for one-off jobs come from the blanks, else a spawn") {
  OneBlank one(2);
  PoolCore& core = one.core;
  auto st = core.blank_step(0, kMem, false);
  REQUIRE(st.kind == PoolCore::Step::Cold);
  CHECK(st.worker->function.empty());
  CHECK(st.wakes.refill);
  auto spawn = core.blank_step(0, kMem, false);
  REQUIRE(spawn.kind == PoolCore::Step::Spawn);
  auto second = core.spawned_blank(made(2));
  CHECK(core.blank_step(0, kMem, false).kind == PoolCore::Step::Wait);  // max_sandboxes = 2
  CHECK(core.blank_step(0, kMem, true).kind == PoolCore::Step::Timeout);
  // Given back, they are destroyed: a one-off job's sandbox is never reused.
  core.release(std::move(st.worker), true, kT0, true);
  core.release(std::move(second), true, kT0, true);
  CHECK(core.stats().blank == 0);
  CHECK(destroy_all(core) == 2);
}

// The deploy check runs at the function's own memory. A blank made at the
// profile's is re-limited for it, as a cold start's is: skipping blanks left
// a full pool of them waiting for room that nothing would free.
TEST_CASE("pool core: a one-off job of another memory re-limits a blank, else spawns to measure") {
  OneBlank one(1);  // the blank is the pool's one sandbox
  PoolCore& core = one.core;
  auto st = core.blank_step(0, 4 * kMem, false);
  REQUIRE(st.kind == PoolCore::Step::Cold);
  CHECK(st.resize);
  CHECK(st.worker->memory_bytes == 4 * kMem);
  CHECK(core.stats().memory_bytes == 4 * kMem);
  // Its re-limiting failed (rootless has no cgroup): released unreused;
  // the next step may not take a blank of another memory, and spawns.
  core.release(std::move(st.worker), false, kT0, true);
  CHECK(destroy_all(core) == 1);
  CHECK(core.stats().memory_bytes == 0);
  REQUIRE(core.refill_step().spawn);
  core.refilled(made(2), true);
  // Then the blank that holds the room goes, and the step spawns once it
  // is destroyed.
  CHECK(core.blank_step(0, 4 * kMem, false, false).kind == PoolCore::Step::Retry);
  CHECK(core.stats().blank == 0);
  CHECK(core.blank_step(0, 4 * kMem, false, false).kind == PoolCore::Step::Wait);
  CHECK(destroy_all(core) == 1);
  REQUIRE(core.refill_step().spawn);
  core.refilled(made(3), true);
  auto same = core.blank_step(0, kMem, false, false);  // its own memory: taken
  REQUIRE(same.kind == PoolCore::Step::Cold);
  CHECK_FALSE(same.resize);
  core.release(std::move(same.worker), true, kT0, true);
  CHECK(destroy_all(core) == 1);
  auto spawn = core.blank_step(0, 4 * kMem, false, false);
  REQUIRE(spawn.kind == PoolCore::Step::Spawn);
  CHECK(core.stats().memory_bytes == 4 * kMem);
  core.spawn_failed({}, 4 * kMem);
  CHECK(core.stats().memory_bytes == 0);
}

TEST_CASE("pool core: the refill makes blanks only into spare room and not under pressure") {
  PoolLimits l = limits(2);
  l.blank = 4;
  l.min_available_bytes = 1ull << 30;
  PoolCore core(l, {kMem});
  REQUIRE(core.refill_step().spawn);
  REQUIRE(core.refill_step().spawn);
  CHECK_FALSE(core.refill_step().spawn);  // max_sandboxes
  core.refilled(made(1), true);
  core.refill_failed(kMem);
  CHECK(core.stats().spawn_failures == 1);
  MemoryReading low;
  low.have_available = true;
  low.available_bytes = 1;
  PoolCore::Pressure p = core.relieve_pressure(low);
  CHECK(p.changed);
  CHECK(p.under);
  CHECK(p.evicted == 1);  // nothing idle: the blank goes
  CHECK_FALSE(core.refill_step().spawn);
  MemoryReading fine = low;
  fine.available_bytes = 8ull << 30;
  p = core.relieve_pressure(fine);
  CHECK(p.changed);
  CHECK(p.wakes.refill);
  destroy_all(core);
  CHECK(core.refill_step().spawn);
}

TEST_CASE("pool core: dead blanks and idle sandboxes are dropped; frozen and leased ones kept") {
  PoolLimits l = limits(8);
  l.blank = 2;
  PoolCore core(l, {kMem});
  warm(core, "f", 1, 3, kT0);
  warm(core, "g", 1, 4, kT0);
  for (uint64_t id : {1, 2}) {
    REQUIRE(core.refill_step().spawn);
    core.refilled(made(id), true);
  }
  std::vector<uint64_t> seen;
  core.each_waiting([&](const Worker& w) { seen.push_back(w.id); });
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<uint64_t>{1, 2, 3, 4});
  // 2 (a blank) and 3 (f's idle one) have died.
  Wakes w = core.drop_dead([](const Worker& x) { return x.id == 2 || x.id == 3; });
  holds(core);
  CHECK(w.janitor);
  PoolStats s = core.stats();
  CHECK(s.found_dead == 2);
  CHECK(s.blank == 1);
  CHECK(s.idle == 1);
  CHECK(core.refill_step().spawn);
  // Nothing dead: nothing changes.
  w = core.drop_dead([](const Worker&) { return false; });
  CHECK_FALSE(w.janitor);
  CHECK(core.stats().found_dead == 2);
  destroy_all(core);
}

TEST_CASE("pool core: a reload that lowers blank or max_sandboxes frees what waits past it") {
  PoolLimits l = limits(8);
  l.blank = 3;
  PoolCore core(l, {kMem});
  warm(core, "f", 1, 4, kT0);
  warm(core, "g", 1, 5, kT0 + 1s);
  for (uint64_t id : {1, 2, 3}) {
    REQUIRE(core.refill_step().spawn);
    core.refilled(made(id), true);
  }
  REQUIRE(core.stats().blank == 3);
  l.blank = 1;
  Wakes w = core.set_limits(l);
  holds(core);
  CHECK(w.janitor);
  CHECK(core.stats().blank == 1);
  CHECK(core.stats().idle == 2);
  CHECK(destroy_all(core) == 2);
  // A cap below what waits: the blank first, then the least recently used.
  l.blank = 0;
  l.max_sandboxes = 1;
  core.set_limits(l);
  holds(core);
  PoolStats s = core.stats();
  CHECK(s.blank == 0);
  CHECK(s.idle == 1);
  CHECK(s.ids == std::vector<uint64_t>{5});
  CHECK(s.evictions == 1);
  CHECK(destroy_all(core) == 2);
}

TEST_CASE("pool core: after a reload, blanks in flight and releases past the caps go") {
  PoolLimits l = limits(4);
  l.blank = 2;
  PoolCore core(l, {kMem});
  // Two blanks asked for, then a reload to none: they go when they arrive,
  // and no warm sandbox is evicted in their place.
  warm(core, "f", 1, 1, kT0);
  REQUIRE(core.refill_step().spawn);
  REQUIRE(core.refill_step().spawn);
  l.blank = 0;
  l.max_sandboxes = 2;
  core.set_limits(l);
  holds(core);
  CHECK(core.stats().idle == 1);
  CHECK(core.stats().evictions == 0);
  core.refilled(made(2), true);
  core.refilled(made(3), true);
  holds(core);
  CHECK(core.stats().blank == 0);
  CHECK(destroy_all(core) == 2);
  // Leased past a lowered cap: the release does not keep it idle.
  Request a(core, "g", 1), b(core, "h", 1);
  REQUIRE(a.run(4) == PoolCore::Step::Spawn);  // f's idle one and this one: the cap
  REQUIRE(b.run(5) != PoolCore::Step::Spawn);  // past it: f's idle one is evicted first
  destroy_all(core);
  if (!b.lease) REQUIRE(b.run(5) == PoolCore::Step::Spawn);
  l.max_sandboxes = 1;
  core.set_limits(l);
  core.release(std::move(a.lease), true, kT0, true);
  holds(core);
  CHECK(core.stats().idle == 0);  // g's went: h's lease alone fills the cap
  core.release(std::move(b.lease), true, kT0, true);
  holds(core);
  CHECK(core.stats().idle == 1);  // within the cap again: kept
  destroy_all(core);
}

// A reload that changes default_policy: blanks ahead of demand are the new
// default's from then on (they stayed the first profile's until a restart,
// taking budget while the new default's functions found none).
TEST_CASE("pool core: a reload's blank_profile is the profile whose blanks are made ahead") {
  PoolLimits l = limits(8);
  l.blank = 2;
  PoolCore core(l, {kMem, 2 * kMem});
  for (int i = 0; i < 2; i++) {
    PoolCore::Refill r = core.refill_step();
    REQUIRE(r.spawn);
    CHECK(r.profile == 0);
  }
  core.refilled(made(1), true);  // the second is in flight across the reload
  REQUIRE(core.stats().blank == 1);
  l.blank_profile = 1;
  core.set_limits(l);
  holds(core);
  CHECK(core.stats().blank == 0);  // the old default's: not made ahead any more
  CHECK(destroy_all(core) == 1);
  core.refilled(made(2), true);  // the old default's, arriving late: dropped
  CHECK(core.stats().blank == 0);
  CHECK(destroy_all(core) == 1);
  for (uint64_t id : {4, 5}) {
    PoolCore::Refill r = core.refill_step();
    REQUIRE(r.spawn);
    CHECK(r.profile == 1);
    CHECK(r.memory == 2 * kMem);
    core.refilled(made(id, 2 * kMem, 1), true);
  }
  CHECK_FALSE(core.refill_step().spawn);
  CHECK(core.stats().blank == 2);
  holds(core);
}

TEST_CASE("pool core: memory pressure evicts a quarter of the idle sandboxes, LRU first") {
  PoolLimits l = limits(16);
  l.min_available_bytes = 1ull << 30;
  PoolCore core(l, {kMem});
  for (int i = 0; i < 8; i++) warm(core, "f" + std::to_string(i), 1, 1 + i, kT0 + i * 1s);
  MemoryReading low;
  low.have_available = true;
  low.available_bytes = 1;
  PoolCore::Pressure p = core.relieve_pressure(low);
  CHECK(p.evicted == 2);
  PoolStats s = core.stats();
  CHECK(std::find(s.ids.begin(), s.ids.end(), 1) == s.ids.end());
  CHECK(std::find(s.ids.begin(), s.ids.end(), 2) == s.ids.end());
  CHECK(std::find(s.ids.begin(), s.ids.end(), 3) != s.ids.end());
  CHECK(s.pressure_evictions == 2);
  CHECK(s.evictions == 2);
  CHECK_FALSE(core.relieve_pressure(low).changed);  // still under: no new log line
}

TEST_CASE("pool core: reload wakes every waiter; a raised cap lets several through") {
  PoolCore core(limits(8, 1), {kMem});
  Request a(core, "f", 1);
  REQUIRE(a.run(1) == PoolCore::Step::Spawn);
  Request b(core, "f", 1), c(core, "f", 1);
  REQUIRE(b.run(2) == PoolCore::Step::Wait);
  REQUIRE(c.run(3) == PoolCore::Step::Wait);
  PoolLimits raised = limits(8, 4);
  Wakes w = core.set_limits(raised);
  CHECK(has(w.all, "f"));
  CHECK(w.freezer);
  CHECK(b.run(2) == PoolCore::Step::Spawn);
  CHECK(c.run(3) == PoolCore::Step::Spawn);
}

TEST_CASE("pool core: idle sandboxes freeze a grace after release, only if idle since") {
  PoolLimits l = limits(8);
  l.freeze_idle_ms = 5;
  PoolCore core(l, {kMem});
  int frozen_calls = 0;
  auto freeze = [&](Worker&) {
    frozen_calls++;
    return PoolCore::Freeze::Done;
  };
  auto with_switch = [](uint64_t id) {
    auto w = made(id);
    w->freeze.fd.reset(::dup(0));  // any valid fd: the core never writes it
    return w;
  };
  REQUIRE(core.admit("f"));
  REQUIRE(core.acquire_step("f", 1, 0, kMem, false, true).kind == PoolCore::Step::Spawn);
  auto w = core.spawned("f", 1, with_switch(1));
  core.unadmit("f");
  Wakes first = core.release(std::move(w), true, kT0, true);
  CHECK(first.freezer);  // the first entry wakes the freezer
  CHECK(core.next_freeze(Clock::time_point{}) == kT0 + 5ms);
  CHECK(core.freeze_due(kT0 + 4ms, freeze) == 0);
  // Leased and released again before its time: the old entry is void.
  Request again(core, "f", 1);
  REQUIRE(again.run(2) == PoolCore::Step::Warm);
  Wakes second = core.release(std::move(again.lease), true, kT0 + 3ms, true);
  CHECK_FALSE(second.freezer);  // a later entry is due later
  // What a pass would look at: both entries once due (one is void), capped.
  CHECK(core.freeze_due_count(kT0 + 4ms, 10) == 0);
  CHECK(core.freeze_due_count(kT0 + 5ms, 10) == 1);
  CHECK(core.freeze_due_count(kT0 + 8ms, 10) == 2);
  CHECK(core.freeze_due_count(kT0 + 8ms, 1) == 1);
  CHECK(core.freeze_due(kT0 + 5ms, freeze) == 0);
  CHECK(core.freeze_due(kT0 + 8ms, freeze) == 1);
  CHECK(frozen_calls == 1);
  CHECK(core.stats().frozen == 1);
  CHECK(core.freeze_due(kT0 + 100ms, freeze) == 0);  // once
  // One pass per grace at most.
  CHECK_FALSE(core.next_freeze(kT0 + 8ms).has_value());
}

TEST_CASE("pool core: a sandbox whose freeze must wait is looked at again a grace later") {
  PoolLimits l = limits(8);
  l.freeze_idle_ms = 5;
  PoolCore core(l, {kMem});
  auto w = made(1);
  w->freeze.fd.reset(::dup(0));
  REQUIRE(core.admit("f"));
  REQUIRE(core.acquire_step("f", 1, 0, kMem, false, true).kind == PoolCore::Step::Spawn);
  auto spawned = core.spawned("f", 1, std::move(w));
  core.unadmit("f");
  core.release(std::move(spawned), true, kT0, true);
  int calls = 0;
  auto later = [&](Worker&) {
    calls++;
    return PoolCore::Freeze::Later;
  };
  auto done = [&](Worker&) {
    calls++;
    return PoolCore::Freeze::Done;
  };
  CHECK(core.freeze_due(kT0 + 5ms, later) == 0);
  CHECK(calls == 1);
  CHECK(core.stats().frozen == 0);
  // Due again a grace after that pass, still matched to the same release.
  CHECK(core.next_freeze(Clock::time_point{}) == kT0 + 10ms);
  CHECK(core.freeze_due(kT0 + 9ms, done) == 0);
  CHECK(core.freeze_due(kT0 + 10ms, done) == 1);
  CHECK(calls == 2);
  CHECK(core.stats().frozen == 1);
}

TEST_CASE("pool core: shutdown hands over every sandbox not leased") {
  PoolLimits l = limits(8);
  l.blank = 1;
  PoolCore core(l, {kMem});
  warm(core, "f", 1, 2);
  Request busy(core, "g", 1);
  busy.memory = 2 * kMem;
  REQUIRE(busy.run(3) == PoolCore::Step::Spawn);
  REQUIRE(core.refill_step().spawn);
  core.refilled(made(1), true);
  auto all = core.take_all();
  std::vector<uint64_t> ids;
  for (const auto& d : all) ids.push_back(d.id);
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<uint64_t>{1, 2});
  core.destroyed(all);
  holds(core);
  CHECK(core.stats().memory_bytes == 2 * kMem);  // the busy one, until released
  core.release(std::move(busy.lease), true, kT0, false);
  CHECK(destroy_all(core) == 1);
  CHECK(core.stats().memory_bytes == 0);
}

// ---------------------------------------------------------- function templates

namespace {

// A request of a function deployed with a template, as the shell runs it:
// template_step (making the template when told), then acquire_step with
// blanks not fitting, a Spawn answered by a fork of the template.
struct TemplatedRequest {
  PoolCore& core;
  std::string name;
  uint64_t deploy;
  PoolCore::TemplatePlan plan;
  std::unique_ptr<Worker> lease;
  PoolCore::Step::Kind kind = PoolCore::Step::Wait;

  TemplatedRequest(PoolCore& c, std::string n, uint64_t d)
      : core(c), name(std::move(n)), deploy(d) {}
  // template_id: the id a made template gets; instance_id: a fork's.
  void run(uint64_t template_id, uint64_t instance_id, bool loads = true,
           Clock::time_point now = kT0) {
    REQUIRE(core.admit(name));
    plan = core.template_step(name, deploy, 0, kMem, now);
    holds(core);
    if (plan.kind == PoolCore::TemplatePlan::Make) {
      core.template_made(name, deploy, kMem, made(template_id), loads);
      holds(core);
      plan = core.template_step(name, deploy, 0, kMem, now);
      holds(core);
    }
    const bool have = plan.kind == PoolCore::TemplatePlan::Use;
    for (int i = 0; i < 100; i++) {
      PoolCore::Step st = core.acquire_step(name, deploy, 0, kMem, false, !have);
      holds(core);
      kind = st.kind;
      if (kind == PoolCore::Step::Retry) continue;
      if (kind == PoolCore::Step::Spawn) {
        auto w = made(instance_id);
        if (have) w->template_id = plan.id;
        lease = core.spawned(name, deploy, std::move(w));
      } else if (kind == PoolCore::Step::Warm || kind == PoolCore::Step::Cold) {
        lease = std::move(st.worker);
      }
      break;
    }
    core.unadmit(name);
    holds(core);
  }
};

}  // namespace

TEST_CASE("pool core: a function template is made once, then every new sandbox is its instance") {
  PoolLimits l = limits(8);
  l.blank = 1;
  PoolCore core(l, {kMem});
  REQUIRE(core.refill_step().spawn);
  core.refilled(made(1), true);
  TemplatedRequest a(core, "f", 1);
  a.run(10, 11);
  CHECK(a.plan.kind == PoolCore::TemplatePlan::Use);
  CHECK(a.plan.id == 10);
  // A spawn, forked from the template: the blank stays for other functions.
  REQUIRE(a.kind == PoolCore::Step::Spawn);
  CHECK(a.lease->template_id == 10);
  CHECK(core.stats().blank == 1);
  PoolStats s = core.stats();
  CHECK(s.templates == 1);
  CHECK(s.memory_bytes == 3 * kMem);  // blank + template + instance
  CHECK(std::find(s.ids.begin(), s.ids.end(), 10) != s.ids.end());
  // A second request while the first is busy: another instance, no second
  // template.
  TemplatedRequest b(core, "f", 1);
  b.run(20, 12);
  CHECK(b.plan.id == 10);
  REQUIRE(b.kind == PoolCore::Step::Spawn);
  CHECK(core.stats().templates == 1);
  // Released instances are reused warm like any sandbox.
  core.release(std::move(a.lease), true, kT0, true);
  TemplatedRequest c(core, "f", 1);
  c.run(30, 13);
  CHECK(c.kind == PoolCore::Step::Warm);
  CHECK(c.lease->id == 11);
  core.release(std::move(b.lease), true, kT0, true);
  core.release(std::move(c.lease), true, kT0, true);
  // Shutdown hands over the template with everything else.
  auto all = core.take_all();
  CHECK(all.size() == 4);
  core.destroyed(all);
  holds(core);
  CHECK(core.stats().templates == 0);
  CHECK(core.stats().memory_bytes == 0);
}

TEST_CASE("pool core: a template that does not load is not tried again for that deploy") {
  PoolCore core(limits(8), {kMem});
  TemplatedRequest a(core, "f", 1);
  a.run(10, 11, /*loads=*/false);
  CHECK(a.plan.kind == PoolCore::TemplatePlan::None);
  // The ordinary path: a spawn that is not an instance (its load reports
  // the function's error).
  REQUIRE(a.kind == PoolCore::Step::Spawn);
  CHECK(a.lease->template_id == 0);
  CHECK(destroy_all(core) == 1);  // the template that did not load
  core.release(std::move(a.lease), false, kT0, true);
  TemplatedRequest b(core, "f", 1);
  b.run(20, 21);
  CHECK(b.plan.kind == PoolCore::TemplatePlan::None);
  CHECK(core.stats().templates == 0);
  core.release(std::move(b.lease), false, kT0, true);
  // The next deploy gets its chance.
  core.revoke("f", 2, false);
  TemplatedRequest c(core, "f", 2);
  c.run(30, 31);
  CHECK(c.plan.kind == PoolCore::TemplatePlan::Use);
  CHECK(c.plan.id == 30);
}

TEST_CASE("pool core: a dead template goes with its idle instances; its busy ones on release") {
  PoolCore core(limits(8), {kMem});
  TemplatedRequest a(core, "f", 1);
  a.run(10, 11);
  TemplatedRequest b(core, "f", 1);
  b.run(10, 12);
  core.release(std::move(a.lease), true, kT0, true);
  CHECK(core.stats().idle == 1);
  // A fork failed: the template is dead, and so is every instance of it.
  REQUIRE(core.admit("f"));
  Wakes w = core.template_gone("f", 10);
  core.unadmit("f");
  CHECK(w.janitor);
  holds(core);
  CHECK(core.stats().templates == 0);
  CHECK(core.stats().idle == 0);
  CHECK(destroy_all(core) == 2);  // the template and the idle instance
  // The busy instance, released as if fine, is not kept: it died too.
  core.release(std::move(b.lease), true, kT0, true);
  CHECK(core.stats().idle == 0);
  CHECK(destroy_all(core) == 1);
  CHECK(core.stats().memory_bytes == 0);
}

TEST_CASE("pool core: a redeploy retires the template once its last instance is released") {
  PoolCore core(limits(8), {kMem});
  TemplatedRequest a(core, "f", 1);
  a.run(10, 11);
  core.revoke("f", 2, false);
  holds(core);
  CHECK(core.stats().templates == 1);  // an instance of it is still leased
  // The new deploy's request does not fork from the old template.
  TemplatedRequest b(core, "f", 2);
  b.run(20, 21);
  CHECK(b.plan.kind == PoolCore::TemplatePlan::None);
  core.release(std::move(b.lease), true, kT0, true);
  core.release(std::move(a.lease), true, kT0, true);
  CHECK(core.stats().templates == 0);
  CHECK(destroy_all(core) == 2);  // the old template and its instance
  // A delete with nothing leased retires it at once.
  TemplatedRequest c(core, "f", 2);
  c.run(30, 31);
  CHECK(c.plan.kind == PoolCore::TemplatePlan::Use);
  core.release(std::move(c.lease), true, kT0, true);
  core.revoke("f", 3, true);
  holds(core);
  CHECK(core.stats().templates == 0);
  CHECK(core.stats().functions == 0);
}

TEST_CASE("pool core: templates count in the budget and are evicted LRU after their instances") {
  PoolLimits l = limits(100);
  l.memory_budget_bytes = 4 * kMem;
  PoolCore core(l, {kMem});
  TemplatedRequest a(core, "a", 1);
  a.run(10, 11, true, kT0 + 1s);
  core.release(std::move(a.lease), true, kT0 + 5s, true);
  TemplatedRequest b(core, "b", 2);
  b.run(20, 21, true, kT0 + 2s);
  core.release(std::move(b.lease), true, kT0 + 6s, true);
  CHECK(core.stats().memory_bytes == 4 * kMem);
  // Room for c: the LRU entry is a's idle instance (released at 5 s, older
  // than b's at 6 s; templates wait behind their own instances).
  Request c(core, "c", 3);
  REQUIRE(c.run(30) == PoolCore::Step::Wait);
  CHECK(destroy_all(core) == 1);
  CHECK(core.stats().templates == 2);
  REQUIRE(c.run(30) == PoolCore::Step::Spawn);
  core.release(std::move(c.lease), true, kT0 + 7s, true);
  // Next: a's template (last forked at 1 s), not b's instance (6 s).
  Request d(core, "d", 4);
  REQUIRE(d.run(40) == PoolCore::Step::Wait);
  PoolStats s = core.stats();
  CHECK(s.templates == 1);
  CHECK(s.template_evictions == 1);
  CHECK(std::find(s.ids.begin(), s.ids.end(), 10) == s.ids.end());
  CHECK(std::find(s.ids.begin(), s.ids.end(), 21) != s.ids.end());
  CHECK(destroy_all(core) == 1);
  REQUIRE(d.run(40) == PoolCore::Step::Spawn);
  core.release(std::move(d.lease), true, kT0 + 8s, true);
  // A template whose function has a lease is never the victim: b's
  // instance is leased, so the LRU is c's idle sandbox.
  TemplatedRequest b2(core, "b", 2);
  b2.run(20, 22, true, kT0 + 9s);
  REQUIRE(b2.kind == PoolCore::Step::Warm);
  Request e(core, "e", 5);
  REQUIRE(e.run(50) == PoolCore::Step::Wait);
  s = core.stats();
  CHECK(s.templates == 1);
  CHECK(std::find(s.ids.begin(), s.ids.end(), 30) == s.ids.end());
  core.release(std::move(b2.lease), true, kT0 + 10s, true);
}

TEST_CASE("pool core: no template is made when it does not fit; the request goes on without") {
  PoolLimits l = limits(1);
  PoolCore core(l, {kMem});
  TemplatedRequest a(core, "f", 1);
  REQUIRE(core.admit("other"));
  REQUIRE(core.acquire_step("other", 9, 0, kMem, false, true).kind == PoolCore::Step::Spawn);
  auto other = core.spawned("other", 9, made(1));
  core.unadmit("other");
  // max_sandboxes = 1 is used up: no template, and the request waits.
  a.run(10, 11);
  CHECK(a.plan.kind == PoolCore::TemplatePlan::None);
  CHECK(a.kind == PoolCore::Step::Wait);
  CHECK(core.stats().templates == 0);
  core.release(std::move(other), false, kT0, true);
}

TEST_CASE("pool core: a template that cannot fork even once is not made again for that deploy") {
  PoolCore core(limits(8), {kMem});
  REQUIRE(core.admit("f"));
  auto plan = core.template_step("f", 1, 0, kMem, kT0);
  REQUIRE(plan.kind == PoolCore::TemplatePlan::Make);
  core.template_made("f", 1, kMem, made(10), true);
  plan = core.template_step("f", 1, 0, kMem, kT0);
  REQUIRE(plan.kind == PoolCore::TemplatePlan::Use);
  core.template_gone("f", 10);  // its first fork failed (e.g. its pids limit)
  CHECK(core.template_step("f", 1, 0, kMem, kT0).kind == PoolCore::TemplatePlan::None);
  core.unadmit("f");
  holds(core);
  CHECK(destroy_all(core) == 1);
}

TEST_CASE("pool core: the third template of a deploy to die is the last") {
  PoolCore core(limits(8), {kMem});
  for (int i = 0; i < 3; i++) {
    CAPTURE(i);
    TemplatedRequest a(core, "f", 1);
    a.run(10 + i, 20 + i);
    REQUIRE(a.plan.kind == PoolCore::TemplatePlan::Use);
    REQUIRE(a.kind == PoolCore::Step::Spawn);
    core.release(std::move(a.lease), false, kT0, true);
    REQUIRE(core.admit("f"));
    core.template_gone("f", 10 + i);
    core.unadmit("f");
    holds(core);
  }
  REQUIRE(core.admit("f"));
  CHECK(core.template_step("f", 1, 0, kMem, kT0).kind == PoolCore::TemplatePlan::None);
  core.unadmit("f");
  // A redeploy starts afresh.
  core.revoke("f", 2, false);
  REQUIRE(core.admit("f"));
  // A template that could not be made (no resources for now) is tried
  // again, up to the third time.
  for (int i = 0; i < 3; i++) {
    CHECK(core.template_step("f", 2, 0, kMem, kT0).kind == PoolCore::TemplatePlan::Make);
    core.template_made("f", 2, kMem, nullptr, false);
    holds(core);
  }
  CHECK(core.template_step("f", 2, 0, kMem, kT0).kind == PoolCore::TemplatePlan::None);
  core.unadmit("f");
  holds(core);
}

TEST_CASE("pool core: an old deploy's template goes with its last instance, not the function's") {
  PoolCore core(limits(8), {kMem});
  TemplatedRequest old_a(core, "f", 1);
  old_a.run(10, 11);
  core.revoke("f", 2, false);
  // The new deploy is busy all along (steady traffic): that must not keep
  // the old template alive.
  TemplatedRequest new_a(core, "f", 2);
  new_a.run(20, 21);
  REQUIRE(new_a.lease);
  CHECK(core.stats().templates == 1);
  core.release(std::move(old_a.lease), true, kT0, true);
  CHECK(core.stats().templates == 0);
  holds(core);
  // Now the new deploy gets its own.
  TemplatedRequest new_b(core, "f", 2);
  new_b.run(30, 31);
  CHECK(new_b.plan.kind == PoolCore::TemplatePlan::Use);
  CHECK(new_b.plan.id == 30);
  // A template another request saw die is not forked from.
  REQUIRE(core.admit("f"));
  CHECK(core.template_usable("f", 30));
  core.template_gone("f", 30);
  CHECK_FALSE(core.template_usable("f", 30));
  core.unadmit("f");
  core.release(std::move(new_a.lease), true, kT0, true);
  core.release(std::move(new_b.lease), true, kT0, true);
  CHECK(core.stats().idle == 1);  // new_a's sandbox; new_b's died with its template
  holds(core);
}

TEST_CASE("pool core: a template that dies is made again, one that hangs is not") {
  for (bool hung : {false, true}) {
    CAPTURE(hung);
    PoolCore core(limits(8), {kMem});
    TemplatedRequest a(core, "f", 1);
    a.run(10, 11);
    REQUIRE(a.kind == PoolCore::Step::Spawn);
    core.release(std::move(a.lease), false, kT0, true);
    REQUIRE(core.admit("f"));
    core.template_gone("f", 10, hung);
    // After an instance: a death is a fault to recover from; a fork that
    // did not answer stalled the spawner, and would again.
    CHECK(core.template_step("f", 1, 0, kMem, kT0).kind ==
          (hung ? PoolCore::TemplatePlan::None : PoolCore::TemplatePlan::Make));
    if (!hung) core.template_made("f", 1, kMem, made(20), true);
    core.unadmit("f");
    holds(core);
  }
}

TEST_CASE("pool core: a template is made only with room for it and the instance it forks") {
  // max_sandboxes = 2 with another function's sandbox leased: a template in
  // the last slot would leave this request nowhere to run.
  PoolCore core(limits(2), {kMem});
  REQUIRE(core.admit("other"));
  REQUIRE(core.acquire_step("other", 9, 0, kMem, false, true).kind == PoolCore::Step::Spawn);
  auto other = core.spawned("other", 9, made(1));
  core.unadmit("other");
  TemplatedRequest a(core, "f", 1);
  a.run(10, 11);
  CHECK(a.plan.kind == PoolCore::TemplatePlan::None);
  CHECK(a.kind == PoolCore::Step::Spawn);  // the ordinary way, in the last slot
  CHECK(core.stats().templates == 0);
  core.release(std::move(a.lease), false, kT0, true);
  core.release(std::move(other), false, kT0, true);
  holds(core);
  // With the room (an empty pool of two), it is made and forked from.
  PoolCore empty(limits(2), {kMem});
  TemplatedRequest b(empty, "f", 1);
  b.run(20, 21);
  CHECK(b.plan.kind == PoolCore::TemplatePlan::Use);
  REQUIRE(b.kind == PoolCore::Step::Spawn);
  CHECK(empty.stats().templates == 1);
  empty.release(std::move(b.lease), false, kT0, true);
  holds(empty);
}

TEST_CASE("pool core: a template's fork time over the allowance is debt, and the debt drains") {
  // doctest runs this body once per SUBCASE: each starts from a fresh core.
  PoolCore core(limits(8), {kMem});
  TemplatedRequest a(core, "f", 1);
  a.run(10, 11);
  REQUIRE(a.plan.kind == PoolCore::TemplatePlan::Use);
  REQUIRE(a.kind == PoolCore::Step::Spawn);
  SUBCASE("forks just under 100 ms, back to back: the fourth retires it") {
    for (int i = 0; i < 3; i++) core.template_forked("f", 10, 99, kT0);
    CHECK(core.template_usable("f", 10));
    core.template_forked("f", 10, 99, kT0);
    CHECK_FALSE(core.template_usable("f", 10));
  }
  SUBCASE("the same forks 10 s apart: drained faster than they add") {
    for (int i = 0; i < 50; i++)
      core.template_forked("f", 10, 99, kT0 + std::chrono::seconds(10 * i));
    CHECK(core.template_usable("f", 10));
  }
  SUBCASE("forks within the allowance, back to back, never; a little over it adds up") {
    for (int i = 0; i < 1000; i++) core.template_forked("f", 10, 20, kT0);
    CHECK(core.template_usable("f", 10));
    for (int i = 0; i < 60; i++) core.template_forked("f", 10, 25, kT0);
    CHECK_FALSE(core.template_usable("f", 10));
  }
  SUBCASE("...but not a second apart (a host's grace period after a pause)") {
    for (int i = 0; i < 1000; i++) core.template_forked("f", 10, 25, kT0 + std::chrono::seconds(i));
    CHECK(core.template_usable("f", 10));
  }
  SUBCASE("another template's id is ignored") {
    for (int i = 0; i < 10; i++) core.template_forked("f", 99, 400, kT0);
    CHECK(core.template_usable("f", 10));
  }
  core.release(std::move(a.lease), true, kT0, true);
  holds(core);
}

TEST_CASE("pool core: slow forks retire a template; it goes with its last instance") {
  PoolCore core(limits(8), {kMem});
  TemplatedRequest a(core, "f", 1);
  a.run(10, 11);
  REQUIRE(a.plan.kind == PoolCore::TemplatePlan::Use);
  REQUIRE(a.kind == PoolCore::Step::Spawn);
  core.template_forked("f", 10, 105, kT0);
  core.template_forked("f", 10, 105, kT0);
  CHECK(core.template_usable("f", 10));
  core.template_forked("f", 10, 105, kT0);  // the third
  holds(core);
  // No more forks, but its leased instance lives on (it dies with it).
  CHECK_FALSE(core.template_usable("f", 10));
  CHECK(core.stats().templates == 1);
  REQUIRE(core.admit("f"));
  CHECK(core.template_step("f", 1, 0, kMem, kT0).kind == PoolCore::TemplatePlan::None);
  core.unadmit("f");
  core.release(std::move(a.lease), true, kT0, true);
  holds(core);
  CHECK(core.stats().templates == 0);
  // Not made again for that deploy; a new deploy may have one.
  REQUIRE(core.admit("f"));
  CHECK(core.template_step("f", 1, 0, kMem, kT0).kind == PoolCore::TemplatePlan::None);
  core.unadmit("f");
  core.revoke("f", 2, false);
  REQUIRE(core.admit("f"));
  CHECK(core.template_step("f", 2, 0, kMem, kT0).kind == PoolCore::TemplatePlan::Make);
  core.template_made("f", 2, kMem, made(30), true);
  core.unadmit("f");
  holds(core);
}
