// The prefork pool (policy; the mechanism is sandbox/spawner): blank
// sandboxes made ahead of demand, warm sandboxes reused per function and
// version, per-function caps, a global count and memory budget with LRU
// eviction of idle sandboxes, idle timeouts, revocation on redeploy/delete,
// and bounded waiting (admission control).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/spawner.hpp"

namespace nsbox {

using Clock = std::chrono::steady_clock;

struct PoolLimits {
  int blank = 4;
  int max_sandboxes = 64;
  uint64_t memory_budget_bytes = 4ull << 30;
  int per_function = 4;
  int idle_timeout_ms = 60000;
  int queue_per_function = 64;
  int queue_total = 1024;
  // A warm sandbox idle this long is frozen (its threads use no CPU) until
  // the next request leases it; 0: never frozen.
  int freeze_idle_ms = 5;
  // Memory pressure: idle sandboxes are evicted, least recently used first,
  // while the machine's MemAvailable is below min_available_bytes or the
  // PSI "some avg10" of /proc/pressure/memory is above psi_some_avg10
  // (percent); 0 turns either off.
  uint64_t min_available_bytes = 0;
  double psi_some_avg10 = 0;
};

// One look at the machine's memory (gateway/pool.cpp reads /proc; the unit
// tests pass readings of their own).
struct MemoryReading {
  bool have_available = false;
  uint64_t available_bytes = 0;  // MemAvailable
  bool have_psi = false;
  double psi_some_avg10 = 0;  // /proc/pressure/memory, percent
};
MemoryReading read_memory_reading();
// Pure: whether this reading calls for evicting idle sandboxes.
bool under_memory_pressure(const MemoryReading& m, const PoolLimits& limits);

// One sandbox as the gateway holds it. A worker that has loaded function X
// version V never serves anything else (no state crosses functions).
struct Worker {
  uint64_t id = 0;
  ChannelFds channel;
  UniqueFd log;
  std::string pending_log;  // drained while waiting for a reply
  FrameDecoder decoder;
  uint32_t profile = 0;
  uint64_t memory_bytes = 0;
  std::string function;  // empty while blank
  uint64_t deploy = 0;   // the deploy it holds (FunctionMeta::deploy); 0 while blank
  Clock::time_point last_used;
  FreezeSwitch freeze;  // invalid: this sandbox is never frozen
  bool frozen = false;  // changed under the pool's lock while idle
};

struct PoolStats {
  int blank = 0, idle = 0, busy = 0, waiting = 0;
  int frozen = 0;  // of idle
  uint64_t memory_bytes = 0;
  uint64_t evictions = 0, idle_expired = 0, spawned = 0, spawn_failures = 0;
  uint64_t pressure_evictions = 0;  // of evictions: made under memory pressure
  uint64_t freezes = 0, thaws = 0;
  bool memory_pressure = false;  // at the last check
  std::vector<uint64_t> ids;     // every live sandbox the pool tracks (not busy ones)
};

class Pool {
 public:
  // profile_memory[i]: the memory limit a blank sandbox of profile i gets.
  // read_memory: the pressure source (tests pass a fake); checked by the
  // janitor every kPressureCheck.
  Pool(SandboxFactory& spawner, PoolLimits limits, std::vector<uint64_t> profile_memory,
       std::function<MemoryReading()> read_memory = read_memory_reading);
  ~Pool();
  void start();
  // Stops the background threads and destroys every sandbox not leased.
  void stop();

  enum class Status { Ok, Overloaded, QueueTimeout, SpawnFailed, Stale };
  struct Lease {
    Status status = Status::Ok;
    std::unique_ptr<Worker> worker;
    bool cold = false;  // a blank sandbox: the caller must load the function
    std::string message;
  };
  // deploy: FunctionMeta::deploy of the deploy the request was planned for.
  Lease acquire(const std::string& name, uint64_t deploy, uint32_t profile, uint64_t memory,
                Clock::time_point queue_deadline);
  // A blank sandbox for a one-off job (the deploy-time syntax check); give it
  // back with release(..., false).
  Lease acquire_blank(uint32_t profile, Clock::time_point deadline);
  // reusable=false: the sandbox timed out, died, failed to load or broke
  // protocol; it is destroyed.
  void release(std::unique_ptr<Worker> worker, bool reusable);
  // After a deploy or delete returns, no request is served by the old code:
  // with deploy the new deploy's number (or the delete's, from the store),
  // sandboxes of earlier deploys are destroyed (idle ones now, busy ones on
  // release) and acquire() refuses requests planned for them (Status::Stale)
  // — a request that read the old deploy must look again. Revokes may
  // arrive out of order: the highest number wins.
  void revoke(const std::string& name, uint64_t deploy);
  PoolStats stats();
  // SIGHUP: new caps apply to the next decision; nothing running is killed
  // (a lower cap is reached as sandboxes idle out or get evicted).
  void set_limits(const PoolLimits& limits);
  // One memory-pressure check (the janitor's, callable by tests): under
  // pressure, evicts a quarter of the idle sandboxes (at least one), least
  // recently used first, or else a blank, and holds back the refill.
  // Returns how many it evicted.
  int relieve_memory_pressure();
  // Freezes the idle sandboxes released at least freeze_idle_ms before now
  // (the freezer thread's step, callable by tests). Returns how many.
  int freeze_due(Clock::time_point now);

 private:
  struct FunctionState {
    int held = 0;  // idle + busy sandboxes of this function
    int waiting = 0;
    // The highest deploy number revoked to: requests and sandboxes of
    // earlier deploys are never served.
    uint64_t floor = 0;
    std::list<std::unique_ptr<Worker>> idle;  // most recently used first
    // Waiters of this function only: a sandbox going idle wakes exactly one
    // of them instead of every waiter of every function.
    std::condition_variable cv;
  };

  Lease acquire_unthawed(const std::string& name, uint64_t deploy, uint32_t profile,
                         uint64_t memory, Clock::time_point deadline);
  // A leased sandbox that was frozen while idle is thawed before use.
  Lease thaw_leased(Lease lease);
  bool evict_lru_locked();
  bool evict_own_stale_locked(FunctionState& fn, uint64_t deploy);
  bool drop_blank_locked(uint32_t except_profile);
  void forget_locked(std::unique_ptr<Worker> w);  // schedule destroy; the slot frees after it
  // Whether the sandboxes already being destroyed will leave room for one
  // more of this size: then the caller waits rather than evicts another.
  bool room_once_dying_gone_locked(uint64_t memory) const;
  // A slot or a blank appeared: one waiter per function under its cap.
  void notify_capacity_locked();
  // Sandboxes were destroyed (janitor) or the caps changed (reload): every
  // waiter, and the refill thread.
  void notify_every_waiter_locked();
  std::unique_ptr<Worker> spawn(uint32_t profile, uint64_t memory);
  // Lock held on entry and on return; capacity already checked by the caller.
  std::unique_ptr<Worker> spawn_counted(std::unique_lock<std::mutex>& lock, uint32_t profile,
                                        uint64_t memory);
  void refill_loop();
  void janitor_loop();
  void freezer_loop();

  SandboxFactory& spawner_;
  PoolLimits limits_;
  std::vector<uint64_t> profile_memory_;
  std::function<MemoryReading()> read_memory_;

  std::mutex mu_;
  std::condition_variable cv_;         // acquire_blank waiters
  std::condition_variable refill_cv_;  // a blank was taken or a slot freed
  std::condition_variable janitor_cv_;
  bool running_ = false;
  std::map<uint32_t, std::deque<std::unique_ptr<Worker>>> blanks_;
  std::map<std::string, FunctionState> functions_;
  struct Doomed {
    uint64_t id;
    uint64_t memory;
  };
  std::vector<Doomed> to_destroy_;
  // Every sandbox, including busy, being spawned and being destroyed: a
  // sandbox leaves the count (and memory_) only once the janitor has
  // destroyed it, so the budget bounds what really exists.
  int total_ = 0;
  int dying_ = 0;  // of total_: forgotten, not yet destroyed
  int busy_ = 0;
  int waiting_ = 0;
  uint64_t memory_ = 0;
  uint64_t dying_memory_ = 0;
  uint64_t evictions_ = 0, idle_expired_ = 0, spawned_ = 0, spawn_failures_ = 0;
  uint64_t pressure_evictions_ = 0, freezes_ = 0, thaws_ = 0;
  bool pressure_ = false;  // at the last check: the refill holds back
  // Released sandboxes in release order, each to be frozen at its time if
  // still idle since that release.
  struct FreezeDue {
    FunctionState* fn;  // functions_ never erases, and map nodes are stable
    uint64_t id;
    Clock::time_point released;
  };
  std::deque<FreezeDue> freeze_queue_;
  std::condition_variable freezer_cv_;
  std::thread refill_thread_, janitor_thread_, freezer_thread_;
};

}  // namespace nsbox
