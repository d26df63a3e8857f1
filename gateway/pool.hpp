// The prefork pool (policy; the mechanism is sandbox/spawner): blank
// sandboxes made ahead of demand, warm sandboxes reused per function and
// deploy, per-function caps, a global count and memory budget with LRU
// eviction of idle sandboxes, idle timeouts, revocation on redeploy/delete,
// and bounded waiting (admission control). Every decision is PoolCore's
// (gateway/pool_core.hpp); this is its threaded shell: one mutex, the
// waiting, the background threads, and the factory calls made unlocked.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gateway/pool_core.hpp"
#include "sandbox/spawner.hpp"

namespace nsbox {

MemoryReading read_memory_reading();

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

  // NeverFits: the sandbox asked for is larger than the whole memory budget
  // (lowered by a reload since the deploy): no wait would help.
  enum class Status { Ok, Overloaded, QueueTimeout, SpawnFailed, Stale, NeverFits };
  struct Lease {
    Status status = Status::Ok;
    std::unique_ptr<Worker> worker;
    bool cold = false;  // a blank sandbox: the caller must load the function
    std::string message;
    bool forked = false;  // a new instance of the function's template: loaded already
  };
  // Loads the function into a new function template; true when it loaded.
  using TemplateLoader = std::function<bool(Worker&)>;
  // deploy: FunctionMeta::deploy of the deploy the request was planned for.
  // A sandbox found dead or not thawed at lease is destroyed and passed
  // over (up to 16): nothing was sent to it yet. load_template: for a function deployed with a
  // template (PoolCore's template_step); new sandboxes are then its instances.
  Lease acquire(const std::string& name, uint64_t deploy, uint32_t profile, uint64_t memory,
                Clock::time_point queue_deadline, const TemplateLoader* load_template = nullptr);
  // A blank sandbox for a one-off job (the deploy-time syntax check), its
  // memory limited to memory; give it back with release(..., false).
  Lease acquire_blank(uint32_t profile, uint64_t memory, Clock::time_point deadline);
  // reusable=false: the sandbox timed out, died, failed to load or broke
  // protocol; it is destroyed.
  void release(std::unique_ptr<Worker> worker, bool reusable);
  // After a deploy or delete returns, no request is served by the old code:
  // with deploy the new deploy's number (or the delete's, from the store),
  // sandboxes of earlier deploys are destroyed (idle ones now, busy ones on
  // release) and acquire() refuses requests planned for them (Status::Stale)
  // — a request that read the old deploy must look again. Revokes may
  // arrive out of order: the highest number wins. A deleted function's
  // entry goes once nothing of it is left.
  void revoke(const std::string& name, uint64_t deploy, bool deleted);
  PoolStats stats();
  // SIGHUP: new caps apply at once: blanks past the new count, and what
  // waits unleased past a lower cap, go; nothing leased is killed.
  void set_limits(const PoolLimits& limits);
  // Destroys the blanks and idle sandboxes whose runner has exited (the
  // janitor's step every second, callable by tests). Returns how many.
  int drop_dead();
  // One memory-pressure check (the janitor's, callable by tests): under
  // pressure, evicts a quarter of the idle sandboxes (at least one), least
  // recently used first, or else a blank, and holds back the refill.
  // Returns how many it evicted.
  int relieve_memory_pressure();
  // Freezes the idle sandboxes released at least freeze_idle_ms before now
  // (the freezer thread's step, callable by tests). Returns how many.
  int freeze_due(Clock::time_point now);
  // From now on, a sandbox frozen while idle hands its fds to parking's
  // keepers until it is leased again. Before start(); parking outlives the
  // pool. fd_budget: what the fds of the sandboxes the gateway still holds
  // may reach; past it no sandbox is made (a spawn failure) until some go,
  // so that the gateway itself never runs out (0: no such check).
  void set_parking(FdParking* parking, int64_t fd_budget) {
    parking_ = parking;
    fd_budget_ = fd_budget;
  }
  // A new budget, e.g. after a reload raised the open-files limit.
  void set_fd_budget(int64_t fd_budget) { fd_budget_ = fd_budget; }

 private:
  // Condition variables by function, alive while someone waits on them;
  // shared so a notify after unlocking never outlives its target.
  using Waiters = std::shared_ptr<std::condition_variable>;
  struct Pending {
    std::vector<std::pair<Waiters, bool>> functions;  // (waiters, all)
    Wakes flags;
  };
  Pending pending_locked(const Wakes& w);
  void fire(const Pending& p);
  void wake_locked(const Wakes& w) { fire(pending_locked(w)); }
  Lease acquire_admitted(std::unique_lock<std::mutex>& lock, const std::string& name,
                         uint64_t deploy, uint32_t profile, uint64_t memory,
                         Clock::time_point deadline, std::condition_variable& cv,
                         const TemplateLoader* load_template);
  // The function's template (made now if this request is the one to make
  // it), or 0 to go without.
  uint64_t template_for(std::unique_lock<std::mutex>& lock, const std::string& name,
                        uint64_t deploy, uint32_t profile, uint64_t memory,
                        const TemplateLoader& load);
  // A leased sandbox that was frozen while idle is thawed before use.
  Lease thaw_leased(Lease lease);
  Lease acquire_once(const std::string& name, uint64_t deploy, uint32_t profile, uint64_t memory,
                     Clock::time_point deadline, const TemplateLoader* load_template);
  Lease acquire_blank_once(uint32_t profile, uint64_t memory, Clock::time_point deadline);
  // A sandbox found dead at lease, before anything was sent to it: released
  // as not reusable, and counted as the janitor's finds are.
  void release_dead(std::unique_ptr<Worker> worker);
  int drop_dead_locked();
  std::unique_ptr<Worker> spawn(uint32_t profile, uint64_t memory);
  std::unique_ptr<Worker> worker(Result<SpawnedSandbox> s, uint32_t profile, uint64_t memory,
                                 bool reserved = false);
  void refill_loop();
  void janitor_loop();
  void freezer_loop();

  SandboxFactory& spawner_;
  std::function<MemoryReading()> read_memory_;
  FdParking* parking_ = nullptr;
  std::atomic<int64_t> fd_budget_{0};
  std::atomic<int64_t> held_fds_{0};  // FdCharge: fds of sandboxes not parked
  std::atomic<uint64_t> fd_warned_ms_{0};
  // Counts a new sandbox's fds against fd_budget_ before it is made, or an
  // error when they would pass it. worker(..., reserved) takes it over.
  nsbox::Status reserve_fds();

  std::mutex mu_;
  PoolCore core_;  // under mu_
  bool running_ = false;
  struct FunctionWaiters {
    Waiters cv;
    int users = 0;
  };
  std::map<std::string, FunctionWaiters> waiters_;
  // Function templates with a fork under way: one at a time each (the
  // spawner serves every function, and a template's fork takes as long as
  // the function's code makes it), so that a fork's time is counted against
  // its template (PoolCore::template_forked) before the next one starts.
  std::set<uint64_t> forking_;
  // Requests waiting for another's fork from the same template: their own
  // condition, so that a release's notify_one for the function goes to a
  // request waiting for a sandbox, not to one of these.
  std::condition_variable fork_done_cv_;
  std::condition_variable cv_;         // acquire_blank waiters
  std::condition_variable refill_cv_;  // a blank was taken or a slot freed
  std::condition_variable janitor_cv_;
  std::condition_variable freezer_cv_;
  std::vector<std::thread> refill_threads_;  // one per spawn the factory makes at once
  std::thread janitor_thread_, freezer_thread_;
};

}  // namespace nsbox
