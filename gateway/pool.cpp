#include "gateway/pool.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/log.hpp"

namespace nsbox {

namespace {
constexpr auto kSpawnRetryDelay = std::chrono::seconds(1);
// How often the janitor looks at the machine's memory: a hog grows by
// hundreds of MB in this time, well within the headroom a threshold leaves.
constexpr auto kPressureCheck = std::chrono::milliseconds(100);
}  // namespace

MemoryReading read_memory_reading() {
  MemoryReading m;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kb;
  std::string unit;
  while (meminfo >> key >> kb) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") {
      m.have_available = true;
      m.available_bytes = kb << 10;
      break;
    }
  }
  // "some avg10=1.23 avg60=... total=..." (absent without CONFIG_PSI or
  // with psi=0 on the command line).
  std::ifstream psi("/proc/pressure/memory");
  std::string line;
  while (std::getline(psi, line)) {
    std::istringstream ls(line);
    std::string kind, avg10;
    ls >> kind >> avg10;
    if (kind == "some" && avg10.rfind("avg10=", 0) == 0) {
      m.have_psi = true;
      m.psi_some_avg10 = std::strtod(avg10.c_str() + 6, nullptr);
    }
  }
  return m;
}

bool under_memory_pressure(const MemoryReading& m, const PoolLimits& l) {
  if (l.min_available_bytes > 0 && m.have_available && m.available_bytes < l.min_available_bytes)
    return true;
  return l.psi_some_avg10 > 0 && m.have_psi && m.psi_some_avg10 > l.psi_some_avg10;
}

Pool::Pool(SandboxFactory& spawner, PoolLimits limits, std::vector<uint64_t> profile_memory,
           std::function<MemoryReading()> read_memory)
    : spawner_(spawner),
      limits_(limits),
      profile_memory_(std::move(profile_memory)),
      read_memory_(std::move(read_memory)) {}

Pool::~Pool() {
  stop();
}

void Pool::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_) return;
  running_ = true;
  refill_thread_ = std::thread([this] { refill_loop(); });
  janitor_thread_ = std::thread([this] { janitor_loop(); });
  freezer_thread_ = std::thread([this] { freezer_loop(); });
}

void Pool::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_ && !refill_thread_.joinable()) return;
    running_ = false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [n, f] : functions_) f.cv.notify_all();
  }
  cv_.notify_all();
  refill_cv_.notify_all();
  janitor_cv_.notify_all();
  freezer_cv_.notify_all();
  if (refill_thread_.joinable()) refill_thread_.join();
  if (janitor_thread_.joinable()) janitor_thread_.join();
  if (freezer_thread_.joinable()) freezer_thread_.join();
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [p, q] : blanks_)
      for (auto& w : q) ids.push_back(w->id);
    for (auto& [n, f] : functions_)
      for (auto& w : f.idle) ids.push_back(w->id);
    blanks_.clear();
    for (auto& [n, f] : functions_) f.idle.clear();
    for (const Doomed& d : to_destroy_) ids.push_back(d.id);
    to_destroy_.clear();
  }
  for (uint64_t id : ids) (void)spawner_.destroy(id);
}

std::unique_ptr<Worker> Pool::spawn(uint32_t profile, uint64_t memory) {
  auto s = spawner_.spawn(profile, memory);
  if (!s) {
    LOG_WARN("pool: spawning a sandbox failed: %s", s.error().message().c_str());
    return nullptr;
  }
  auto w = std::make_unique<Worker>();
  w->id = s.value().id;
  w->channel = std::move(s.value().channel);
  w->log = std::move(s.value().log);
  w->freeze = std::move(s.value().freeze);
  w->profile = profile;
  w->memory_bytes = memory;
  w->last_used = Clock::now();
  return w;
}

std::unique_ptr<Worker> Pool::spawn_counted(std::unique_lock<std::mutex>& lock, uint32_t profile,
                                            uint64_t memory) {
  // Counted before the spawn, which runs unlocked, so that concurrent
  // callers see the slot taken; uncounted again if it fails.
  total_++;
  memory_ += memory;
  lock.unlock();
  std::unique_ptr<Worker> w = spawn(profile, memory);
  lock.lock();
  if (!w) {
    total_--;
    memory_ -= memory;
    spawn_failures_++;
    notify_capacity_locked();
    return nullptr;
  }
  spawned_++;
  return w;
}

void Pool::forget_locked(std::unique_ptr<Worker> w) {
  if (!w->function.empty()) {
    auto it = functions_.find(w->function);
    if (it != functions_.end()) {
      // The function's own slot (held) is free at once: one of its waiters
      // may take a blank now. Nothing else changed until the janitor has
      // destroyed the sandbox, and it wakes everyone then.
      it->second.held--;
      if (it->second.waiting > 0) it->second.cv.notify_one();
    }
  }
  dying_++;
  dying_memory_ += w->memory_bytes;
  to_destroy_.push_back({w->id, w->memory_bytes});
  janitor_cv_.notify_one();
}

void Pool::notify_every_waiter_locked() {
  // Every waiter, not one per function: several may have waited on the
  // same dying sandboxes (room_once_dying_gone_locked), and whoever finds
  // no room now evicts for itself.
  for (auto& [name, f] : functions_)
    if (f.waiting > 0) f.cv.notify_all();
  cv_.notify_all();
  refill_cv_.notify_one();
}

bool Pool::room_once_dying_gone_locked(uint64_t memory) const {
  return total_ - dying_ < limits_.max_sandboxes &&
         memory_ - dying_memory_ + memory <= limits_.memory_budget_bytes;
}

void Pool::notify_capacity_locked() {
  // Only functions under their own cap: the waiters of a function at its cap
  // wait for one of its own sandboxes (release wakes them), and waking them
  // for every other function's release was a thundering herd (149 clients
  // on 8 functions: 7.3k req/s, against 20k for the same clients on one).
  for (auto& [name, f] : functions_)
    if (f.waiting > 0 && f.held < limits_.per_function) f.cv.notify_one();
  cv_.notify_all();
}

bool Pool::evict_lru_locked() {
  FunctionState* victim_fn = nullptr;
  for (auto& [name, f] : functions_) {
    if (f.idle.empty()) continue;
    if (!victim_fn || f.idle.back()->last_used < victim_fn->idle.back()->last_used) victim_fn = &f;
  }
  if (!victim_fn) return false;
  std::unique_ptr<Worker> w = std::move(victim_fn->idle.back());
  victim_fn->idle.pop_back();
  evictions_++;
  forget_locked(std::move(w));
  return true;
}

// An idle sandbox of this function that holds another deploy: it counts
// against the per-function cap but can never serve this request. (Not
// profile or memory: those follow from the deploy.)
bool Pool::evict_own_stale_locked(FunctionState& fn, uint64_t deploy) {
  for (auto it = fn.idle.begin(); it != fn.idle.end(); ++it) {
    if ((*it)->deploy != deploy) {
      std::unique_ptr<Worker> w = std::move(*it);
      fn.idle.erase(it);
      forget_locked(std::move(w));
      return true;
    }
  }
  return false;
}

bool Pool::drop_blank_locked(uint32_t except_profile) {
  for (auto& [p, q] : blanks_) {
    if (p == except_profile || q.empty()) continue;
    std::unique_ptr<Worker> w = std::move(q.back());
    q.pop_back();
    forget_locked(std::move(w));
    return true;
  }
  return false;
}

Pool::Lease Pool::acquire(const std::string& name, uint64_t deploy, uint32_t profile,
                          uint64_t memory, Clock::time_point deadline) {
  return thaw_leased(acquire_unthawed(name, deploy, profile, memory, deadline));
}

Pool::Lease Pool::thaw_leased(Lease lease) {
  // Unlocked: the lease is ours alone, and the freezer only touches idle
  // sandboxes. The thaw must come before the request is written: a frozen
  // runner would not read it before the deadline.
  if (!lease.worker || !lease.worker->frozen) return lease;
  Worker& w = *lease.worker;
  w.frozen = false;
  if (nsbox::Status s = w.freeze.set(false); !s) {
    LOG_WARN("pool: thawing sandbox %llu: %s", (unsigned long long)w.id,
             s.error().message().c_str());
    release(std::move(lease.worker), false);
    return {Status::SpawnFailed, nullptr, false, "could not thaw a warm sandbox"};
  }
  std::lock_guard<std::mutex> lock(mu_);
  thaws_++;
  return lease;
}

Pool::Lease Pool::acquire_unthawed(const std::string& name, uint64_t deploy, uint32_t profile,
                                   uint64_t memory, Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  FunctionState& fn = functions_[name];
  // Admission: refuse at once rather than queue what cannot be served.
  if (waiting_ >= limits_.queue_total || fn.waiting >= limits_.queue_per_function)
    return {Status::Overloaded, nullptr, false, "too many requests waiting"};
  waiting_++;
  fn.waiting++;
  struct Unwait {
    Pool* p;
    FunctionState* f;
    ~Unwait() {
      p->waiting_--;
      f->waiting--;
    }
  } unwait{this, &fn};

  // A cold sandbox belongs to the function from the moment it is leased,
  // so a failed load still gives its slot back to this function's count.
  auto cold = [&](std::unique_ptr<Worker> w) {
    w->function = name;
    w->deploy = deploy;
    return Lease{Status::Ok, std::move(w), true, {}};
  };
  bool last_try = false;
  bool blanks_fit = true;  // false once re-limiting a blank failed for us
  for (;;) {
    if (!running_) return {Status::Overloaded, nullptr, false, "shutting down"};
    if (deploy < fn.floor) return {Status::Stale, nullptr, false, "the function changed"};
    // Warm: the same deploy, most recently used first, made with the same
    // policy profile and memory limit (a sandbox is never trusted with a
    // request planned under other limits).
    for (auto it = fn.idle.begin(); it != fn.idle.end(); ++it) {
      if ((*it)->deploy == deploy && (*it)->profile == profile && (*it)->memory_bytes == memory) {
        std::unique_ptr<Worker> w = std::move(*it);
        fn.idle.erase(it);
        busy_++;
        return {Status::Ok, std::move(w), false, {}};
      }
    }
    if (fn.held >= limits_.per_function && evict_own_stale_locked(fn, deploy)) continue;
    if (fn.held < limits_.per_function) {
      auto& blanks = blanks_[profile];
      uint64_t extra = blanks.empty() || memory <= blanks.front()->memory_bytes
                           ? 0
                           : memory - blanks.front()->memory_bytes;
      if (blanks_fit && !blanks.empty() && memory_ + extra <= limits_.memory_budget_bytes) {
        std::unique_ptr<Worker> w = std::move(blanks.front());
        blanks.pop_front();
        refill_cv_.notify_one();
        fn.held++;
        busy_++;
        if (w->memory_bytes == memory) return cold(std::move(w));
        memory_ = memory_ - w->memory_bytes + memory;
        w->memory_bytes = memory;
        lock.unlock();
        Result<void> limited = spawner_.set_memory(w->id, memory);
        lock.lock();
        if (limited) return cold(std::move(w));
        // e.g. the runner already uses more than the new limit, or no
        // cgroup (rootless): discard the blank and go round again for one
        // made to measure, within the budget like any other spawn.
        forget_locked(std::move(w));
        fn.held--;
        busy_--;
        blanks_fit = false;
        continue;
      }
      if (total_ < limits_.max_sandboxes && memory_ + memory <= limits_.memory_budget_bytes) {
        fn.held++;
        busy_++;
        std::unique_ptr<Worker> w = spawn_counted(lock, profile, memory);
        if (w) return cold(std::move(w));
        fn.held--;
        busy_--;
        // The slot this spawn held is free again: a sibling waiting at the
        // cap may try (spawn_counted's notify skipped it while we held it).
        if (fn.waiting > 1) fn.cv.notify_one();
        return {Status::SpawnFailed, nullptr, false, "could not create a sandbox"};
      }
      // Make room: the least recently used idle sandbox of any function, or
      // a blank of another profile; unless those already being destroyed
      // will make it, then wait for the janitor (it wakes every waiter).
      // Not on the last try: the room would come too late for us.
      if (!last_try && !room_once_dying_gone_locked(memory) &&
          (evict_lru_locked() || drop_blank_locked(profile)))
        continue;
    }
    if (last_try) {
      // A wake-up meant for us may have raced with the deadline: pass it on.
      fn.cv.notify_one();
      return {Status::QueueTimeout, nullptr, false, "no sandbox became free in time"};
    }
    // At the deadline, look once more before giving up.
    if (fn.cv.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline)
      last_try = true;
  }
}

Pool::Lease Pool::acquire_blank(uint32_t profile, Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!running_) return {Status::Overloaded, nullptr, false, "shutting down"};
    auto& blanks = blanks_[profile];
    if (!blanks.empty()) {
      std::unique_ptr<Worker> w = std::move(blanks.front());
      blanks.pop_front();
      busy_++;
      refill_cv_.notify_one();
      return {Status::Ok, std::move(w), true, {}};
    }
    uint64_t memory = profile_memory_.at(profile);
    if (total_ < limits_.max_sandboxes && memory_ + memory <= limits_.memory_budget_bytes) {
      busy_++;
      std::unique_ptr<Worker> w = spawn_counted(lock, profile, memory);
      if (w) return {Status::Ok, std::move(w), true, {}};
      busy_--;
      return {Status::SpawnFailed, nullptr, false, "could not create a sandbox"};
    }
    if (!room_once_dying_gone_locked(memory) && evict_lru_locked()) continue;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline)
      return {Status::QueueTimeout, nullptr, false, "no sandbox became free in time"};
  }
}

void Pool::release(std::unique_ptr<Worker> w, bool reusable) {
  std::unique_lock<std::mutex> lock(mu_);
  busy_--;
  if (w->function.empty()) {
    // A blank used for a one-off job, or one whose load failed.
    forget_locked(std::move(w));
    return;
  }
  FunctionState& fn = functions_[w->function];
  if (!reusable || !running_ || w->deploy < fn.floor) {
    forget_locked(std::move(w));
    return;
  }
  w->last_used = Clock::now();
  const bool freeze = w->freeze.valid() && limits_.freeze_idle_ms > 0;
  const bool first_due = freeze && freeze_queue_.empty();
  if (freeze) freeze_queue_.push_back({&fn, w->id, w->last_used});
  fn.idle.push_front(std::move(w));
  // Waiters of other functions blocked on the global budget can now evict
  // this idle sandbox.
  if (waiting_ > fn.waiting) notify_capacity_locked();
  const bool wake = fn.waiting > 0;
  lock.unlock();
  // The freezer sleeps until its first entry is due: only a first entry
  // needs it awake (a later one is due later).
  if (first_due) freezer_cv_.notify_one();
  // Notified after unlocking: a waiter woken under the lock would only block
  // again on mu_ (two more futex calls and a context switch per hand-off).
  // fn outlives the lock: functions_ never erases, and map nodes are stable.
  if (wake) fn.cv.notify_one();
}

void Pool::revoke(const std::string& name, uint64_t deploy) {
  std::lock_guard<std::mutex> lock(mu_);
  FunctionState& fn = functions_[name];
  fn.floor = std::max(fn.floor, deploy);
  for (auto it = fn.idle.begin(); it != fn.idle.end();) {
    if ((*it)->deploy >= fn.floor) {
      ++it;
      continue;
    }
    std::unique_ptr<Worker> w = std::move(*it);
    it = fn.idle.erase(it);
    forget_locked(std::move(w));
  }
  // Waiters planned for an older version learn it now (Stale), instead of
  // holding their queue places until the deadline.
  fn.cv.notify_all();
}

void Pool::set_limits(const PoolLimits& limits) {
  std::lock_guard<std::mutex> lock(mu_);
  limits_ = limits;
  // Every waiter (a reload is rare): a raised per_function cap may free
  // several waiters of one function at once.
  notify_every_waiter_locked();
  freezer_cv_.notify_one();  // the freeze grace may have changed
}

PoolStats Pool::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  PoolStats s;
  for (auto& [p, q] : blanks_) {
    s.blank += static_cast<int>(q.size());
    for (auto& w : q) s.ids.push_back(w->id);
  }
  for (auto& [n, f] : functions_) {
    s.idle += static_cast<int>(f.idle.size());
    for (auto& w : f.idle) s.ids.push_back(w->id);
  }
  for (auto& [n, f] : functions_)
    for (auto& w : f.idle) s.frozen += w->frozen;
  s.busy = busy_;
  s.waiting = waiting_;
  s.pressure_evictions = pressure_evictions_;
  s.freezes = freezes_;
  s.thaws = thaws_;
  s.memory_pressure = pressure_;
  s.memory_bytes = memory_;
  s.evictions = evictions_;
  s.idle_expired = idle_expired_;
  s.spawned = spawned_;
  s.spawn_failures = spawn_failures_;
  return s;
}

void Pool::refill_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (running_) {
    // Blanks of the first profile (the default policy) are made ahead of
    // demand, only into spare capacity: never by evicting warm sandboxes.
    const uint32_t profile = 0;
    uint64_t memory = profile_memory_.empty() ? 0 : profile_memory_[0];
    // Under memory pressure nothing is made ahead of demand.
    bool room = !pressure_ && total_ < limits_.max_sandboxes &&
                memory_ + memory <= limits_.memory_budget_bytes;
    if (!profile_memory_.empty() && static_cast<int>(blanks_[profile].size()) < limits_.blank &&
        room) {
      std::unique_ptr<Worker> w = spawn_counted(lock, profile, memory);
      if (!w) {
        refill_cv_.wait_for(lock, kSpawnRetryDelay);
        continue;
      }
      if (!running_) {
        forget_locked(std::move(w));
        break;
      }
      blanks_[profile].push_back(std::move(w));
      notify_capacity_locked();
      continue;
    }
    refill_cv_.wait_for(lock, std::chrono::milliseconds(500));
  }
}

int Pool::relieve_memory_pressure() {
  MemoryReading m = read_memory_();  // unlocked: /proc reads take tens of us
  std::lock_guard<std::mutex> lock(mu_);
  bool was = pressure_;
  pressure_ = under_memory_pressure(m, limits_);
  if (pressure_ != was) {
    LOG_WARN("pool: memory pressure %s (MemAvailable %llu MiB, PSI some avg10 %.2f)",
             pressure_ ? "began: evicting idle sandboxes" : "ended",
             (unsigned long long)(m.available_bytes >> 20), m.psi_some_avg10);
    if (!pressure_) refill_cv_.notify_one();
  }
  if (!pressure_) return 0;
  // A quarter per check: memory returns only once the janitor has
  // destroyed them, so evicting one at a time would trail a fast hog, and
  // evicting all at once would cold-start every function for one spike.
  int idle = 0;
  for (auto& [n, f] : functions_) idle += static_cast<int>(f.idle.size());
  int evicted = 0;
  for (int want = std::max(1, idle / 4); evicted < want && evict_lru_locked(); evicted++) {
  }
  if (evicted == 0 && drop_blank_locked(UINT32_MAX)) evicted++;
  pressure_evictions_ += evicted;
  return evicted;
}

int Pool::freeze_due(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto grace = std::chrono::milliseconds(limits_.freeze_idle_ms);
  int frozen = 0;
  while (!freeze_queue_.empty() && freeze_queue_.front().released + grace <= now) {
    FreezeDue due = freeze_queue_.front();
    freeze_queue_.pop_front();
    // Still idle since that release? (Leased again since, it has a newer
    // entry; destroyed, it is gone from the list.) The idle list holds at
    // most per_function sandboxes.
    for (auto& w : due.fn->idle) {
      if (w->id != due.id || w->last_used != due.released || w->frozen) continue;
      // Under the lock, so no acquire can lease it half-frozen; the write is
      // cheap on cgroup2 (docs/benchmarks.md, "Freezing idle sandboxes").
      if (nsbox::Status s = w->freeze.set(true); !s) {
        LOG_WARN("pool: freezing sandbox %llu: %s", (unsigned long long)w->id,
                 s.error().message().c_str());
      } else {
        w->frozen = true;
        freezes_++;
        frozen++;
      }
      break;
    }
  }
  return frozen;
}

void Pool::freezer_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  // Under load every release queues an entry, each due a grace after its
  // release: waking for each would cost a wake-up (and a turn on mu_) per
  // request. One pass per grace at most: a sandbox is frozen between one and
  // two graces after its release.
  Clock::time_point last_pass{};
  while (running_) {
    if (freeze_queue_.empty() || limits_.freeze_idle_ms <= 0) {
      if (limits_.freeze_idle_ms <= 0) freeze_queue_.clear();
      freezer_cv_.wait(lock);
      continue;
    }
    const auto grace = std::chrono::milliseconds(limits_.freeze_idle_ms);
    auto due = std::max(freeze_queue_.front().released, last_pass) + grace;
    if (Clock::now() < due) {
      freezer_cv_.wait_until(lock, due);
      continue;
    }
    lock.unlock();
    last_pass = Clock::now();
    freeze_due(last_pass);
    lock.lock();
  }
}

void Pool::janitor_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  auto next_pressure_check = Clock::now();
  while (running_ || !to_destroy_.empty()) {
    if (running_ && Clock::now() >= next_pressure_check) {
      lock.unlock();
      relieve_memory_pressure();
      lock.lock();
      next_pressure_check = Clock::now() + kPressureCheck;
    }
    auto now = Clock::now();
    auto idle_limit = std::chrono::milliseconds(limits_.idle_timeout_ms);
    for (auto& [name, fn] : functions_) {
      while (!fn.idle.empty() && now - fn.idle.back()->last_used > idle_limit) {
        std::unique_ptr<Worker> w = std::move(fn.idle.back());
        fn.idle.pop_back();
        idle_expired_++;
        forget_locked(std::move(w));
      }
    }
    std::vector<Doomed> doomed;
    doomed.swap(to_destroy_);
    if (!doomed.empty()) {
      lock.unlock();
      for (const Doomed& d : doomed) {
        auto s = spawner_.destroy(d.id);
        if (!s)
          LOG_WARN("pool: destroying sandbox %llu: %s", (unsigned long long)d.id,
                   s.error().message().c_str());
      }
      lock.lock();
      // Only now is the slot free. (A sandbox the spawner failed to destroy
      // is logged and no longer counted: the spawner keeps no handle to retry.)
      for (const Doomed& d : doomed) {
        total_--;
        dying_--;
        memory_ -= d.memory;
        dying_memory_ -= d.memory;
      }
      notify_every_waiter_locked();
      continue;
    }
    if (!running_) break;
    janitor_cv_.wait_until(lock, next_pressure_check);
  }
}

}  // namespace nsbox
