// The pool's accounting and decisions, with no threads, locks, clock or
// sandbox calls of its own: each call is one state change that returns what
// the caller must do (lease this sandbox, spawn one, wait, destroy these,
// wake those waiters). gateway/pool.cpp is the threaded shell that calls it
// under one mutex and does the slow work unlocked; the unit tests drive it
// directly and deterministically. Debug builds check every invariant after
// every change (check_invariants), as SQLite does.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "gateway/fd_parking.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/spawner.hpp"

namespace nsbox {

using Clock = std::chrono::steady_clock;

struct PoolLimits {
  int blank = 4;
  // The profile whose blanks are made ahead of demand: the default
  // policy's, which a reload may change.
  uint32_t blank_profile = 0;
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
// Pure: whether this reading calls for evicting idle sandboxes.
bool under_memory_pressure(const MemoryReading& m, const PoolLimits& limits);

// A worker's share of the fds the gateway holds for sandboxes it has not
// parked (Pool's count), given back when the worker goes.
class FdCharge {
 public:
  FdCharge() = default;
  FdCharge(std::atomic<int64_t>* counter, int64_t n) : counter_(counter), n_(n) {
    if (counter_) counter_->fetch_add(n_);
  }
  FdCharge(FdCharge&& o) noexcept { *this = std::move(o); }
  FdCharge& operator=(FdCharge&& o) noexcept {
    if (this != &o) {
      set(0);
      counter_ = std::exchange(o.counter_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~FdCharge() { set(0); }
  void set(int64_t n) {
    if (counter_) counter_->fetch_add(n - n_);
    n_ = n;
  }

 private:
  std::atomic<int64_t>* counter_ = nullptr;
  int64_t n_ = 0;
};

// One sandbox as the gateway holds it. A worker that has loaded a deploy of
// a function never serves anything else (no state crosses functions).
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
  uint64_t template_id = 0;  // an instance forked from this function template
  FreezeSwitch freeze;       // invalid: this sandbox is never frozen
  bool frozen = false;       // changed under the pool's lock while idle
  // While frozen, channel, log and freeze may wait in an fd keeper
  // (fd_parking.hpp): then they are invalid here until thawed.
  ParkedFds parked;
  FdCharge fds_held;  // 0 while parked
};

struct PoolStats {
  int blank = 0, idle = 0, busy = 0, waiting = 0;
  int frozen = 0;     // of idle
  int functions = 0;  // entries the pool keeps (functions with sandboxes, waiters or a redeploy)
  int templates = 0;  // function templates kept (or being made)
  uint64_t memory_bytes = 0;
  uint64_t evictions = 0, idle_expired = 0, spawned = 0, spawn_failures = 0;
  uint64_t pressure_evictions = 0;  // of evictions: made under memory pressure
  uint64_t found_dead = 0;          // blanks and idle sandboxes whose runner had exited
  uint64_t freezes = 0, thaws = 0;
  bool memory_pressure = false;      // at the last check
  std::vector<uint64_t> ids;         // every live sandbox the pool tracks (not busy ones)
  uint64_t template_evictions = 0;   // function templates evicted to make room
  int max_sandboxes = 0;             // the cap in force (lowered to what the host allows)
  uint64_t parked = 0, keepers = 0;  // frozen sandboxes whose fds fd keepers hold; keepers
};

// Whom the shell must wake after a change. Waiters of one function wait on
// that function's own condition variable, so a released sandbox wakes one
// waiter that can use it, not every waiter of every function.
struct Wakes {
  std::vector<std::string> one;  // notify_one on these functions' waiters
  std::vector<std::string> all;  // notify_all on these
  bool blank_waiters = false;    // acquire_blank's waiters (all)
  bool refill = false;
  bool janitor = false;  // something waits to be destroyed
  bool freezer = false;
  void add(const Wakes& w);
};

class PoolCore {
 public:
  PoolCore(PoolLimits limits, std::vector<uint64_t> profile_memory);

  const PoolLimits& limits() const { return limits_; }
  uint64_t profile_memory(uint32_t profile) const { return profile_memory_.at(profile); }

  // ---- leasing for a function: admit, then steps until one ends it -----
  // Admission control: false (Overloaded) when too many requests wait, in
  // total or for this function; true counts the caller as waiting until
  // unadmit().
  bool admit(const std::string& name);
  void unadmit(const std::string& name);

  struct Step {
    enum Kind {
      Warm,     // worker: an idle sandbox of this deploy
      Cold,     // worker: a blank now owned by the function; resize: set its memory first
      Spawn,    // a slot is counted for the function: spawn, then spawned() or spawn_failed()
      Retry,    // something was evicted or dropped: step again
      Wait,     // wait for a wake-up (or the deadline: then step with last_try)
      Stale,    // the request was planned for a deploy revoked since
      Timeout,  // last_try found nothing
    } kind = Wait;
    std::unique_ptr<Worker> worker;
    bool resize = false;
    Wakes wakes;
  };
  // blanks_fit = false: a resize failed for this request; spawn instead.
  Step acquire_step(const std::string& name, uint64_t deploy, uint32_t profile, uint64_t memory,
                    bool last_try, bool blanks_fit);
  // Spawn's answer. spawned() makes the worker the function's cold lease.
  std::unique_ptr<Worker> spawned(const std::string& name, uint64_t deploy,
                                  std::unique_ptr<Worker> w);
  Wakes spawn_failed(const std::string& name, uint64_t memory);
  // A Cold lease whose set_memory failed: it is destroyed, its slot freed.
  Wakes resize_failed(std::unique_ptr<Worker> w);

  // ---- function templates (sandbox/instance.hpp) -------------------------
  // A function deployed with a template has at most one, of its newest
  // deploy: a sandbox that loaded the function and only forks. It counts
  // against max_sandboxes and the memory budget like any sandbox, is never
  // leased, and goes least recently used first when room is needed (only
  // while none of its function's sandboxes is leased: its instances live in
  // its namespaces and die with it), on redeploy or delete, and at shutdown.
  struct TemplatePlan {
    enum Kind {
      None,  // no template: the ordinary path (a blank, load)
      Use,   // fork instances of template id (a Spawn step forks instead)
      Make,  // a slot is counted: spawn_template, load, then template_made()
    } kind = None;
    uint64_t id = 0;
    Wakes wakes;
  };
  // For an admitted request of a function deployed with a template.
  TemplatePlan template_step(const std::string& name, uint64_t deploy, uint32_t profile,
                             uint64_t memory, Clock::time_point now);
  // Make's answer: w is the loaded template, or null when it could not be
  // made; loaded = false: it was made but did not load, and goes. Either
  // way no template is tried again for that deploy.
  Wakes template_made(const std::string& name, uint64_t deploy, uint64_t memory,
                      std::unique_ptr<Worker> w, bool loaded);
  // A fork from template id failed: it is dead or broken, and goes. One that
  // never made an instance, or hung (did not answer: each such fork stalls
  // the spawner), or the third to die for that deploy, is not made again
  // for it.
  Wakes template_gone(const std::string& name, uint64_t id, bool hung = false);
  // A fork from template id worked and took fork_ms of the spawner's time.
  // The spawner is single-threaded and every function shares it, and how
  // long a fork takes is up to the template (it runs the function's code),
  // so a template may not make it wait much longer than a sandbox would:
  // what a fork takes over kForkAllowanceMs is debt, the debt drains at
  // kForkDebtDrainMsPerS, and past kForkDebtMaxMs the template is retired
  // for its deploy (no more forks; it goes with its last leased instance).
  // Three forks of 105 ms retire it, four of 99 ms do; a fork slowed now and
  // then by the host (an RCU grace period after a pause: 10-25 ms) never does.
  static constexpr double kForkAllowanceMs = 20;
  static constexpr double kForkDebtDrainMsPerS = 10;
  static constexpr double kForkDebtMaxMs = 250;
  Wakes template_forked(const std::string& name, uint64_t id, double fork_ms,
                        Clock::time_point now);
  // Whether template id is still the one to fork from (another request may
  // have seen it die, or its deploy revoked, since this one planned to).
  bool template_usable(const std::string& name, uint64_t id) const;

  // ---- a blank for a one-off job (the deploy-time syntax check) --------
  // Warm never; Cold (resize: set its memory first, and if that fails
  // release it unreused and step again with blanks_fit false), Spawn (then
  // spawned_blank or spawn_failed with an empty name), Retry, Wait,
  // Timeout. memory: the job's limit; blanks_fit false: only a blank
  // that already has it is taken, else one is spawned to measure.
  Step blank_step(uint32_t profile, uint64_t memory, bool last_try, bool blanks_fit = true);
  std::unique_ptr<Worker> spawned_blank(std::unique_ptr<Worker> w);

  // ---- giving back -------------------------------------------------------
  // reusable=false, or not running, or revoked since: destroyed.
  Wakes release(std::unique_ptr<Worker> w, bool reusable, Clock::time_point now, bool running);
  // A deploy (deleted=false) or delete returned, with the store's number
  // for it: earlier deploys' sandboxes go (idle now, busy on release) and
  // their requests are Stale. Revokes may come out of order: the highest
  // number wins.
  Wakes revoke(const std::string& name, uint64_t deploy, bool deleted);
  // Reload: new caps apply at once to what waits unleased: blanks past the
  // new count go, then blanks and idle sandboxes, least recently used
  // first, while the pool is past max_sandboxes or the memory budget (a
  // cap below what is leased leaves nothing idle). Nothing leased is
  // killed: released while the pool is still past a cap, it goes, as does
  // a blank that arrives past the count or a cap.
  Wakes set_limits(const PoolLimits& limits);
  // The sandboxes that wait unleased and not frozen (blanks, idle ones):
  // the janitor asks whether their runners still run.
  void each_waiting(const std::function<void(const Worker&)>& f) const;
  // Forgets those of them for which dead(w) holds: a runner that exited
  // while it waited (the OOM killer prefers sandboxes) would otherwise fail
  // the request that leases it, and a dead blank is never replaced. Counted
  // in PoolStats::found_dead.
  Wakes drop_dead(const std::function<bool(const Worker&)>& dead);
  // One found dead at lease (and released as not reusable): counted too.
  void note_found_dead();

  // ---- background work -----------------------------------------------------
  struct Refill {
    bool spawn = false;
    uint32_t profile = 0;
    uint64_t memory = 0;
  };
  // Whether to make a blank ahead of demand (counted when spawn is true:
  // answer with refilled() or refill_failed()).
  Refill refill_step();
  Wakes refilled(std::unique_ptr<Worker> w, bool running);
  Wakes refill_failed(uint64_t memory);

  Wakes expire_idle(Clock::time_point now);
  struct Doomed {
    uint64_t id;
    uint64_t memory;
  };
  std::vector<Doomed> take_doomed();
  // Only once destroyed do they leave the counts: the budget bounds what
  // really exists.
  Wakes destroyed(std::span<const Doomed> doomed);

  struct Pressure {
    bool changed = false;  // began or ended with this reading
    bool under = false;
    int evicted = 0;
    Wakes wakes;
  };
  Pressure relieve_pressure(const MemoryReading& m);

  // Freezes, through freeze(w), the idle sandboxes released at least
  // freeze_idle_ms before now and idle since. Returns how many froze.
  enum class Freeze { Done, Failed, Later };  // Later: not now, look again a grace from now
  int freeze_due(Clock::time_point now, const std::function<Freeze(Worker&)>& freeze);
  // How many entries such a pass would look at (at most `cap`): an upper
  // bound on the sandboxes it freezes.
  size_t freeze_due_count(Clock::time_point now, size_t cap) const;
  // When the freezer should next look (none: nothing queued or freezing off;
  // the queue is dropped when freezing is off). At most one pass per grace
  // after last_pass.
  std::optional<Clock::time_point> next_freeze(Clock::time_point last_pass);
  void count_thaw() { thaws_++; }

  // Shutdown: every sandbox not leased and every doomed one, to destroy
  // (then destroyed()).
  std::vector<Doomed> take_all();

  PoolStats stats() const;
  // Empty when every invariant holds, else the first that does not.
  std::string invariant_violation() const;

 private:
  struct FunctionState {
    int busy = 0;  // leased, counting a slot being spawned for a lease
    int waiting = 0;
    // The highest deploy number revoked to: requests and sandboxes of
    // earlier deploys are never served.
    uint64_t floor = 0;
    bool deleted = false;                     // the last revoke was a delete
    std::list<std::unique_ptr<Worker>> idle;  // most recently used first
    // The function template (never leased, not counted in held()), when it
    // was last forked from, and whether one is being made.
    std::unique_ptr<Worker> tmpl;
    Clock::time_point tmpl_used;
    bool making_template = false;
    uint64_t tmpl_forks = 0;         // instances it made
    int tmpl_busy = 0;               // of them, leased now
    double tmpl_debt_ms = 0;         // its forks' time over the allowance, drained
    Clock::time_point tmpl_debt_at;  // when tmpl_debt_ms was last drained
    bool tmpl_retired = false;       // no more forks; goes with its last leased instance
    int template_deaths = 0;         // templates of the current deploy that died
    uint64_t template_failed = 0;    // the deploy whose template would not load or fork
    int held() const { return busy + static_cast<int>(idle.size()); }
    // A template that forks no more (a revoked deploy's, or retired) and
    // goes once none of its instances is leased.
    bool tmpl_retiring() const { return tmpl && (tmpl->deploy < floor || tmpl_retired); }
    bool has_template() const { return tmpl != nullptr || making_template; }
    // Nothing refers to it and it remembers nothing a later request needs:
    // a floor or a template's failures matter only while the function exists.
    bool unused() const {
      return held() == 0 && waiting == 0 && !has_template() &&
             ((floor == 0 && template_failed == 0 && template_deaths == 0) || deleted);
    }
  };
  using Functions = std::map<std::string, FunctionState>;

  void check() const;  // aborts on a violation in debug builds
  // Drops the entry once FunctionState::unused().
  void prune(Functions::iterator it);
  void forget(std::unique_ptr<Worker> w, Wakes& wakes);  // to the doomed list
  // Forgets every sandbox of a blank queue or an idle list that doomed
  // picks, in the list's order; returns how many went.
  template <class List, class Pick>
  int forget_if(List& list, Pick doomed, Wakes& wakes);
  bool evict_lru(Wakes& wakes);
  // Forgets fn's template now (a dying sandbox like any other).
  void forget_template(FunctionState& fn, Wakes& wakes);
  bool evict_own_stale(FunctionState& fn, uint64_t deploy, Wakes& wakes);
  // Drops one blank not of except_profile (kNoProfile: of any).
  static constexpr uint32_t kNoProfile = UINT32_MAX;
  bool drop_blank(uint32_t except_profile, Wakes& wakes);
  // Whether the sandboxes already being destroyed will leave room for one
  // more of this size: then the caller waits rather than evicts another.
  bool room_once_dying_gone(uint64_t memory) const;
  // Whether evicting every idle sandbox, blank and template could leave
  // room for one more of this size: if not, the caller waits and evicts
  // nothing.
  bool eviction_can_make_room(uint64_t memory) const;
  bool fits(uint64_t memory) const;
  // Past max_sandboxes or the memory budget, blanks being made aside (a
  // reload lowered a cap): what waits unleased goes.
  bool over_caps() const;
  void wake_capacity(Wakes& wakes) const;  // a slot or blank: one waiter per function under its cap
  void wake_everyone(Wakes& wakes) const;

  PoolLimits limits_;
  std::vector<uint64_t> profile_memory_;
  std::map<uint32_t, std::deque<std::unique_ptr<Worker>>> blanks_;
  Functions functions_;
  std::vector<Doomed> doomed_;
  // Every sandbox: blanks + idle + busy + refilling + dying. A sandbox
  // leaves total_ (and memory_) only once destroyed.
  int total_ = 0;
  int busy_ = 0;       // leased, incl. one-off blanks and slots being spawned for leases
  int refilling_ = 0;  // blanks being spawned ahead of demand
  int dying_ = 0;      // forgotten, not yet destroyed
  int waiting_ = 0;
  uint64_t memory_ = 0;
  uint64_t busy_memory_ = 0, refilling_memory_ = 0, dying_memory_ = 0;
  uint64_t evictions_ = 0, idle_expired_ = 0, spawned_ = 0, spawn_failures_ = 0;
  uint64_t pressure_evictions_ = 0, freezes_ = 0, thaws_ = 0, found_dead_ = 0;
  // Function templates kept or being made, in total_ and memory_.
  int templates_ = 0;
  uint64_t templates_memory_ = 0;
  uint64_t template_evictions_ = 0;
  bool pressure_ = false;  // at the last check: the refill holds back
  // Released sandboxes in release order, each to be frozen at its time if
  // still idle since that release.
  struct FreezeDue {
    std::string function;
    uint64_t id;
    Clock::time_point released;    // when it is due from (the queue's order)
    Clock::time_point idle_since;  // the release it must still be idle since
  };
  std::deque<FreezeDue> freeze_queue_;
};

}  // namespace nsbox
