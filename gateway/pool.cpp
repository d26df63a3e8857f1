#include "gateway/pool.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "base/clock.hpp"
#include "base/log.hpp"

namespace nsbox {

namespace {
constexpr auto kSpawnRetryDelay = std::chrono::seconds(1);
// How often the janitor looks at the machine's memory: a hog grows by
// hundreds of MB in this time, well within the headroom a threshold leaves.
constexpr auto kPressureCheck = std::chrono::milliseconds(100);
// How often the janitor asks whether the sandboxes waiting unleased still
// run: a poll of each one's reply pipe, all in one call.
constexpr auto kDeadCheck = std::chrono::seconds(1);
// A sandbox's fds in the gateway (see gateway_fds).
constexpr int kSandboxFds = 4;
// The most sandboxes a freezer pass makes keeper room for before it
// takes the pool's lock.
constexpr size_t kParkRoomSandboxes = 256;

// A sandbox's fds in the gateway, in the order they are parked and taken
// back: the channel's two pipes, the log, the freeze switch.
std::vector<UniqueFd*> gateway_fds(Worker& w) {
  return {&w.channel.to_runner, &w.channel.from_runner, &w.log, &w.freeze.fd};
}
// How many sandboxes a lease passes over, found dead or not thawed, before
// it returns what it has: each one found is destroyed, so a pool of broken
// ones runs out well before this unless they are being killed as fast.
constexpr int kLeaseRetries = 16;

// The runner's end of the reply pipe is closed: it has exited.
bool runner_gone(const Worker& w) {
  struct pollfd p = {w.channel.from_runner.get(), 0, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}
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

Pool::Pool(SandboxFactory& spawner, PoolLimits limits, std::vector<uint64_t> profile_memory,
           std::function<MemoryReading()> read_memory)
    : spawner_(spawner),
      read_memory_(std::move(read_memory)),
      core_(limits, std::move(profile_memory)) {}

Pool::~Pool() {
  stop();
}

Pool::Pending Pool::pending_locked(const Wakes& w) {
  Pending p;
  p.flags.blank_waiters = w.blank_waiters;
  p.flags.refill = w.refill;
  p.flags.janitor = w.janitor;
  p.flags.freezer = w.freezer;
  auto add = [&](const std::string& name, bool all) {
    auto it = waiters_.find(name);
    if (it != waiters_.end()) p.functions.emplace_back(it->second.cv, all);
  };
  for (const auto& n : w.one) add(n, false);
  for (const auto& n : w.all) add(n, true);
  return p;
}

void Pool::fire(const Pending& p) {
  for (const auto& [cv, all] : p.functions) {
    if (all)
      cv->notify_all();
    else
      cv->notify_one();
  }
  if (p.flags.blank_waiters) cv_.notify_all();
  if (p.flags.refill) refill_cv_.notify_one();
  if (p.flags.janitor) janitor_cv_.notify_one();
  if (p.flags.freezer) freezer_cv_.notify_one();
}

void Pool::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_) return;
  running_ = true;
  // One refill thread per spawn the factory makes at once (one per
  // spawner), so that blanks are made side by side.
  for (int i = 0; i < std::max(1, spawner_.parallelism()); i++)
    refill_threads_.emplace_back([this] { refill_loop(); });
  janitor_thread_ = std::thread([this] { janitor_loop(); });
  freezer_thread_ = std::thread([this] { freezer_loop(); });
}

void Pool::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_ && refill_threads_.empty()) return;
    running_ = false;
    for (auto& [n, w] : waiters_) w.cv->notify_all();
  }
  cv_.notify_all();
  fork_done_cv_.notify_all();
  refill_cv_.notify_all();
  janitor_cv_.notify_all();
  freezer_cv_.notify_all();
  for (auto& t : refill_threads_) t.join();
  refill_threads_.clear();
  if (janitor_thread_.joinable()) janitor_thread_.join();
  if (freezer_thread_.joinable()) freezer_thread_.join();
  std::vector<PoolCore::Doomed> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all = core_.take_all();
  }
  for (const auto& d : all) (void)spawner_.destroy(d.id);
  std::lock_guard<std::mutex> lock(mu_);
  core_.destroyed(all);
}

nsbox::Status Pool::reserve_fds() {
  // kSandboxFds: a spawn reply's fds (the channel's two, the log, the freeze
  // switch). Reserved before the spawn, so that concurrent spawns cannot
  // all pass the same check; counted even without a budget, so that one
  // set later (a reload) starts from the true count.
  const int64_t budget = fd_budget_.load();
  int64_t held = held_fds_.load();
  do {
    if (budget > 0 && held + kSandboxFds > budget)
      return make_error("pool", "the gateway's open files hold " + std::to_string(held) +
                                    " fds of sandboxes it has not parked (of " +
                                    std::to_string(budget) +
                                    " it may use): no new sandbox until some go");
  } while (!held_fds_.compare_exchange_weak(held, held + kSandboxFds));
  return {};
}

namespace {

// A factory call that throws (bad_alloc) is a failed call like any other:
// the pool's reservations for it are then given back on the usual path.
// threw, when given, says it was a throw: the gateway's failure, not the
// factory's.
template <class F>
auto no_throw(const char* what, F&& f, bool* threw = nullptr) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    if (threw) *threw = true;
    return make_error(what, e.what());
  }
}

}  // namespace

std::unique_ptr<Worker> Pool::spawn(uint32_t profile, uint64_t memory) {
  if (nsbox::Status room = reserve_fds(); !room) return worker(room.error(), profile, memory);
  return worker(no_throw("spawn", [&] { return spawner_.spawn(profile, memory); }), profile, memory,
                true);
}

std::unique_ptr<Worker> Pool::worker(Result<SpawnedSandbox> s, uint32_t profile, uint64_t memory,
                                     bool reserved) {
  // The reservation becomes the worker's charge, or goes with the failure.
  if (reserved) held_fds_ -= kSandboxFds;
  if (!s) {
    // Not for a spawner that is no longer running: the daemon is stopping
    // (or the spawner was killed as stuck, which was logged).
    if (s.error().err != ESHUTDOWN)
      LOG_WARN("pool: spawning a sandbox failed: %s", s.error().message().c_str());
    return nullptr;
  }
  std::unique_ptr<Worker> w;
  try {
    w = std::make_unique<Worker>();
  } catch (const std::bad_alloc&) {
    // Nothing would own the sandbox: it goes now.
    (void)spawner_.destroy(s.value().id);
    LOG_WARN("pool: out of memory for sandbox %llu's record; destroyed it",
             (unsigned long long)s.value().id);
    return nullptr;
  }
  w->id = s.value().id;
  w->channel = std::move(s.value().channel);
  w->log = std::move(s.value().log);
  w->freeze = std::move(s.value().freeze);
  int open = 0;
  for (UniqueFd* fd : gateway_fds(*w)) open += fd->valid();
  w->fds_held = FdCharge(&held_fds_, open);
  w->profile = profile;
  w->memory_bytes = memory;
  w->last_used = Clock::now();
  return w;
}

Pool::Lease Pool::acquire(const std::string& name, uint64_t deploy, uint32_t profile,
                          uint64_t memory, Clock::time_point deadline,
                          const TemplateLoader* load_template) {
  for (int attempt = 1;; attempt++) {
    Lease lease = acquire_once(name, deploy, profile, memory, deadline, load_template);
    const bool warm = lease.worker && lease.worker->frozen;
    lease = thaw_leased(std::move(lease));
    // A blank or warm sandbox that died while it waited (killed: the OOM
    // killer prefers sandboxes; or its function template went, and its
    // instances with it), between the janitor's checks: nothing was sent to
    // it yet, so the request takes another rather than fail. (A new
    // instance of a template is not passed over: it did not wait.)
    if (lease.status == Status::Ok && !lease.forked && attempt < kLeaseRetries &&
        runner_gone(*lease.worker)) {
      release_dead(std::move(lease.worker));
      continue;
    }
    // A warm sandbox that cannot be thawed (its fds' keeper died, its cgroup
    // went) is destroyed, and the request takes another rather than
    // failing. Each failure destroys the sandbox it leased, so the
    // function's frozen ones run out: after a keeper's death, a function
    // with several parked sandboxes cold-starts rather than fail.
    if (!warm || lease.status == Status::Ok || attempt == kLeaseRetries || Clock::now() >= deadline)
      return lease;
  }
}

Pool::Lease Pool::acquire_once(const std::string& name, uint64_t deploy, uint32_t profile,
                               uint64_t memory, Clock::time_point deadline,
                               const TemplateLoader* load_template) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!running_) return {Status::Overloaded, nullptr, false, "shutting down"};
  if (memory > core_.limits().memory_budget_bytes)
    return {Status::NeverFits, nullptr, false,
            "needs " + std::to_string(memory >> 20) + " MiB, more than the whole [pool] " +
                "memory_budget_mb (" + std::to_string(core_.limits().memory_budget_bytes >> 20) +
                ")"};
  // Admission: refuse at once rather than queue what cannot be served.
  if (!core_.admit(name)) return {Status::Overloaded, nullptr, false, "too many requests waiting"};
  FunctionWaiters& fw = waiters_[name];
  if (!fw.cv) fw.cv = std::make_shared<std::condition_variable>();
  fw.users++;
  Waiters cv = fw.cv;
  // Undone however acquire_admitted ends, a throw (bad_alloc) included, and
  // it may end unlocked: the admission and waiter counts must not drift, or
  // the pool would refuse more and more until a restart.
  struct Unadmit {
    Pool& pool;
    std::unique_lock<std::mutex>& lock;
    const std::string& name;
    ~Unadmit() {
      if (!lock.owns_lock()) lock.lock();
      pool.core_.unadmit(name);
      if (auto it = pool.waiters_.find(name); it != pool.waiters_.end() && --it->second.users == 0)
        pool.waiters_.erase(it);
    }
  } unadmit{*this, lock, name};
  return acquire_admitted(lock, name, deploy, profile, memory, deadline, *cv, load_template);
}

uint64_t Pool::template_for(std::unique_lock<std::mutex>& lock, const std::string& name,
                            uint64_t deploy, uint32_t profile, uint64_t memory,
                            const TemplateLoader& load) {
  PoolCore::TemplatePlan plan = core_.template_step(name, deploy, profile, memory, Clock::now());
  wake_locked(plan.wakes);
  if (plan.kind != PoolCore::TemplatePlan::Make) return plan.id;
  // This request makes it: spawned with a fork socket and loaded (the
  // function's import, once), unlocked. Concurrent requests of the function
  // go the ordinary way meanwhile.
  lock.unlock();
  nsbox::Status room = reserve_fds();
  std::unique_ptr<Worker> w =
      room ? worker(no_throw("spawn template",
                             [&] { return spawner_.spawn_template(profile, memory); }),
                    profile, memory, true)
           : worker(room.error(), profile, memory);
  // A throw from the load (bad_alloc reading the version) must still reach
  // template_made below, or the function would never get a template again
  // and the pool's counts keep the one it planned.
  bool loaded = false;
  try {
    loaded = w && load(*w);
  } catch (const std::exception& e) {
    LOG_ERROR("pool: loading function template %llu: %s", w ? (unsigned long long)w->id : 0ULL,
              e.what());
  }
  if (loaded)
    if (nsbox::Status s = spawner_.rest_template(w->id); !s)
      LOG_WARN("pool: function template %llu not frozen: %s", (unsigned long long)w->id,
               s.error().message().c_str());
  lock.lock();
  wake_locked(core_.template_made(name, deploy, memory, std::move(w), loaded && running_));
  if (!running_) return 0;
  plan = core_.template_step(name, deploy, profile, memory, Clock::now());
  wake_locked(plan.wakes);
  return plan.kind == PoolCore::TemplatePlan::Use ? plan.id : 0;
}

Pool::Lease Pool::acquire_admitted(std::unique_lock<std::mutex>& lock, const std::string& name,
                                   uint64_t deploy, uint32_t profile, uint64_t memory,
                                   Clock::time_point deadline, std::condition_variable& cv,
                                   const TemplateLoader* load_template) {
  bool last_try = false;
  bool blanks_fit = true;  // false once re-limiting a blank failed for us
  uint64_t tmpl =
      load_template ? template_for(lock, name, deploy, profile, memory, *load_template) : 0;
  for (;;) {
    if (!running_) return {Status::Overloaded, nullptr, false, "shutting down"};
    // With a template, a new sandbox is its instance, not a blank.
    PoolCore::Step st =
        core_.acquire_step(name, deploy, profile, memory, last_try, blanks_fit && tmpl == 0);
    wake_locked(st.wakes);
    switch (st.kind) {
      case PoolCore::Step::Warm:
        return {Status::Ok, std::move(st.worker), false, {}};
      case PoolCore::Step::Cold:
        if (st.resize) {
          lock.unlock();
          const auto limited =
              no_throw("set memory", [&] { return spawner_.set_memory(st.worker->id, memory); });
          lock.lock();
          if (!limited) {
            wake_locked(core_.resize_failed(std::move(st.worker)));
            blanks_fit = false;
            continue;
          }
        }
        return {Status::Ok, std::move(st.worker), true, {}};
      case PoolCore::Step::Spawn: {
        // Another request's fork from the template first (forking_); out of
        // time for that, this one goes the ordinary way.
        while (tmpl && forking_.count(tmpl) && running_)
          if (fork_done_cv_.wait_until(lock, deadline) == std::cv_status::timeout) tmpl = 0;
        // Another request may have seen the template die since we planned.
        if (tmpl && !core_.template_usable(name, tmpl)) tmpl = 0;
        uint64_t forking = tmpl;
        // The counts acquire_step planned are given back only further down:
        // a throw here (bad_alloc) would have kept them for good. Without
        // its mark, the request goes the ordinary way.
        if (forking) {
          try {
            forking_.insert(forking);
          } catch (const std::exception&) {
            forking = tmpl = 0;
          }
        }
        lock.unlock();
        std::unique_ptr<Worker> w;
        bool hung = false;   // the template did not answer in time
        double fork_ms = 0;  // the spawner's time for it (not its queue's)
        // The gateway's fd budget or its own memory, not the template, failed:
        // the template stays.
        bool not_template = false;
        if (tmpl) {
          try {
            nsbox::Status room = reserve_fds();
            bool threw = false;  // a failure is then given back through worker()
            auto forked =
                room ? no_throw(
                           "fork instance",
                           [&] { return spawner_.fork_instance(tmpl, profile, memory); }, &threw)
                     : Result<SpawnedSandbox>(room.error());
            not_template = !room || threw;
            hung = !forked && forked.error().err == ETIMEDOUT;
            if (forked) fork_ms = forked.value().setup_ms;
            w = worker(std::move(forked), profile, memory, static_cast<bool>(room));
            if (w) w->template_id = tmpl;
          } catch (const std::exception& e) {
            LOG_ERROR("pool: forking from function template %llu: %s", (unsigned long long)tmpl,
                      e.what());
            w.reset();
            not_template = true;
          }
        }
        lock.lock();
        if (forking) {
          forking_.erase(forking);
          fork_done_cv_.notify_all();
        }
        if (w && !core_.template_usable(name, tmpl)) {
          // Its deploy was revoked, or the template dropped, while we forked:
          // the instance may run code no longer deployed, or die with it. It
          // goes, and the request steps again (Stale, or the ordinary way).
          std::unique_ptr<Worker> doomed = core_.spawned(name, deploy, std::move(w));
          wake_locked(core_.release(std::move(doomed), false, Clock::now(), running_));
          tmpl = 0;
          continue;
        }
        if (w) {
          Lease lease{Status::Ok, core_.spawned(name, deploy, std::move(w)), false, {}};
          lease.forked = true;
          wake_locked(core_.template_forked(name, tmpl, fork_ms, Clock::now()));
          return lease;
        }
        // A template that cannot fork is dead or broken: it goes, and this
        // request is served the ordinary way. One refused for the gateway's
        // fds stays: the ordinary spawn meets the same budget.
        if (tmpl && !not_template)
          wake_locked(core_.template_gone(name, std::exchange(tmpl, 0), hung));
        lock.unlock();
        w = spawn(profile, memory);
        lock.lock();
        if (!w) {
          wake_locked(core_.spawn_failed(name, memory));
          return {Status::SpawnFailed, nullptr, false, "could not create a sandbox"};
        }
        return {Status::Ok, core_.spawned(name, deploy, std::move(w)), true, {}};
      }
      case PoolCore::Step::Retry:
        continue;
      case PoolCore::Step::Stale:
        return {Status::Stale, nullptr, false, "the function changed"};
      case PoolCore::Step::Timeout:
        return {Status::QueueTimeout, nullptr, false, "no sandbox became free in time"};
      case PoolCore::Step::Wait:
        // At the deadline, look once more before giving up.
        if (cv.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline)
          last_try = true;
        continue;
    }
  }
}

Pool::Lease Pool::thaw_leased(Lease lease) {
  // Unlocked: the lease is ours alone, and the freezer only touches idle
  // sandboxes. The thaw must come before the request is written: a frozen
  // runner would not read it before the deadline.
  if (!lease.worker || !lease.worker->frozen) return lease;
  Worker& w = *lease.worker;
  w.frozen = false;
  if (w.parked.valid()) {
    auto fds = w.parked.take();
    if (!fds) {
      LOG_WARN("pool: sandbox %llu: %s", (unsigned long long)w.id, fds.error().message().c_str());
      release(std::move(lease.worker), false);
      return {Status::SpawnFailed, nullptr, false, "could not thaw a warm sandbox"};
    }
    // park()'s order (take() gave back as many as were parked).
    std::vector<UniqueFd*> slots = gateway_fds(w);
    for (size_t i = 0; i < slots.size(); i++) *slots[i] = std::move(fds.value()[i]);
    w.fds_held.set(static_cast<int>(slots.size()));
  }
  if (nsbox::Status s = w.freeze.set(false); !s) {
    LOG_WARN("pool: thawing sandbox %llu: %s", (unsigned long long)w.id,
             s.error().message().c_str());
    release(std::move(lease.worker), false);
    return {Status::SpawnFailed, nullptr, false, "could not thaw a warm sandbox"};
  }
  std::lock_guard<std::mutex> lock(mu_);
  core_.count_thaw();
  return lease;
}

Pool::Lease Pool::acquire_blank(uint32_t profile, uint64_t memory, Clock::time_point deadline) {
  for (int attempt = 1;; attempt++) {
    Lease lease = acquire_blank_once(profile, memory, deadline);
    // Dead while it waited, as in acquire(): whatever the caller was to
    // send it is not to blame.
    if (lease.status != Status::Ok || attempt == kLeaseRetries || !runner_gone(*lease.worker))
      return lease;
    release_dead(std::move(lease.worker));
  }
}

Pool::Lease Pool::acquire_blank_once(uint32_t profile, uint64_t memory,
                                     Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  bool last_try = false;
  bool blanks_fit = true;  // false once re-limiting a blank failed
  for (;;) {
    if (!running_) return {Status::Overloaded, nullptr, false, "shutting down"};
    PoolCore::Step st = core_.blank_step(profile, memory, last_try, blanks_fit);
    wake_locked(st.wakes);
    switch (st.kind) {
      case PoolCore::Step::Cold:
        if (st.resize) {
          lock.unlock();
          const auto limited =
              no_throw("set memory", [&] { return spawner_.set_memory(st.worker->id, memory); });
          if (!limited) {
            // e.g. no cgroup (rootless): this blank goes, and the next
            // step spawns one made to measure.
            release(std::move(st.worker), false);
            lock.lock();
            blanks_fit = false;
            continue;
          }
          lock.lock();
        }
        return {Status::Ok, std::move(st.worker), true, {}};
      case PoolCore::Step::Spawn: {
        lock.unlock();
        std::unique_ptr<Worker> w = spawn(profile, memory);
        lock.lock();
        if (!w) {
          wake_locked(core_.spawn_failed({}, memory));
          return {Status::SpawnFailed, nullptr, false, "could not create a sandbox"};
        }
        return {Status::Ok, core_.spawned_blank(std::move(w)), true, {}};
      }
      case PoolCore::Step::Retry:
        continue;
      case PoolCore::Step::Wait:
        if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline)
          last_try = true;
        continue;
      default:
        return {Status::QueueTimeout, nullptr, false, "no sandbox became free in time"};
    }
  }
}

void Pool::release(std::unique_ptr<Worker> w, bool reusable) {
  std::unique_lock<std::mutex> lock(mu_);
  Pending p = pending_locked(core_.release(std::move(w), reusable, Clock::now(), running_));
  lock.unlock();
  // Notified after unlocking: a waiter woken under the lock would only block
  // again on mu_ (two more futex calls and a context switch per hand-off).
  fire(p);
}

void Pool::release_dead(std::unique_ptr<Worker> w) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    core_.note_found_dead();
  }
  release(std::move(w), false);
}

void Pool::revoke(const std::string& name, uint64_t deploy, bool deleted) {
  std::lock_guard<std::mutex> lock(mu_);
  wake_locked(core_.revoke(name, deploy, deleted));
}

void Pool::set_limits(const PoolLimits& limits) {
  std::lock_guard<std::mutex> lock(mu_);
  wake_locked(core_.set_limits(limits));
}

PoolStats Pool::stats() {
  PoolStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = core_.stats();
  }
  if (parking_) {
    s.parked = parking_->parked();
    s.keepers = parking_->keepers();
  }
  return s;
}

void Pool::refill_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (running_) {
    PoolCore::Refill r = core_.refill_step();
    if (!r.spawn) {
      refill_cv_.wait_for(lock, std::chrono::milliseconds(500));
      continue;
    }
    // Another refill thread may make the next blank meanwhile.
    refill_cv_.notify_one();
    lock.unlock();
    std::unique_ptr<Worker> w = spawn(r.profile, r.memory);
    lock.lock();
    if (!w) {
      wake_locked(core_.refill_failed(r.memory));
      refill_cv_.wait_for(lock, kSpawnRetryDelay);
      continue;
    }
    wake_locked(core_.refilled(std::move(w), running_));
  }
}

int Pool::relieve_memory_pressure() {
  MemoryReading m = read_memory_();  // unlocked: /proc reads take tens of us
  std::lock_guard<std::mutex> lock(mu_);
  PoolCore::Pressure p = core_.relieve_pressure(m);
  if (p.changed)
    LOG_WARN("pool: memory pressure %s (MemAvailable %llu MiB, PSI some avg10 %.2f)",
             p.under ? "began: evicting idle sandboxes" : "ended",
             (unsigned long long)(m.available_bytes >> 20), m.psi_some_avg10);
  wake_locked(p.wakes);
  return p.evicted;
}

int Pool::freeze_due(Clock::time_point now) {
  // A keeper that has died or filled up is replaced here, not by a park
  // under the pool's lock (a keeper takes milliseconds to start): room for
  // the sandboxes now due. A park that finds no room is tried a pass later.
  if (parking_) {
    size_t due = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      due = core_.freeze_due_count(now, kParkRoomSandboxes);
    }
    if (due > 0) (void)parking_->prepare(static_cast<uint32_t>(due * kSandboxFds));
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Under the lock, so no acquire can lease a sandbox half-frozen; the write
  // is cheap on cgroup2 (docs/benchmarks.md, "Freezing idle sandboxes").
  using Freeze = PoolCore::Freeze;
  return core_.freeze_due(now, [this](Worker& w) {
    // While the keepers' queues are full, a sandbox is frozen (and parked)
    // on a later pass: frozen now, it would keep its fds here until leased.
    if (parking_ && parking_->paused()) return Freeze::Later;
    if (nsbox::Status s = w.freeze.set(true); !s) {
      LOG_WARN("pool: freezing sandbox %llu: %s", (unsigned long long)w.id,
               s.error().message().c_str());
      return Freeze::Failed;
    }
    // Frozen, it reads and writes nothing until thawed: its fds can wait
    // outside the gateway's table.
    if (!parking_) return Freeze::Done;
    auto t = parking_->park(w.id, gateway_fds(w));
    if (t) {
      w.parked = ParkedFds(parking_, t.value());
      w.fds_held.set(0);
      return Freeze::Done;
    }
    if (const uint64_t now_ms = monotonic_ms(); now_ms >= fd_warned_ms_ + 1000) {
      fd_warned_ms_ = now_ms;  // once a second at most: a pass may meet many
      LOG_WARN("pool: sandbox %llu keeps its fds: %s", (unsigned long long)w.id,
               t.error().message().c_str());
    }
    // A full queue passes: thawed, it is frozen and parked a grace later.
    // Any other failure lasts: it stays frozen here, its fds counted in the
    // gateway's budget, until leased.
    if (t.error().err == EAGAIN && w.freeze.set(false)) return Freeze::Later;
    return Freeze::Done;
  });
}

void Pool::freezer_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  Clock::time_point last_pass{};
  while (running_) {
    std::optional<Clock::time_point> due = core_.next_freeze(last_pass);
    if (!due) {
      freezer_cv_.wait(lock);
      continue;
    }
    if (Clock::now() < *due) {
      freezer_cv_.wait_until(lock, *due);
      continue;
    }
    lock.unlock();
    last_pass = Clock::now();
    freeze_due(last_pass);
    lock.lock();
  }
}

int Pool::drop_dead_locked() {
  std::vector<struct pollfd> fds;
  core_.each_waiting([&](const Worker& w) {
    if (w.channel.from_runner.valid()) fds.push_back({w.channel.from_runner.get(), 0, 0});
  });
  if (fds.empty() || poll(fds.data(), fds.size(), 0) <= 0) return 0;
  std::set<int> dead;
  for (const auto& p : fds)
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) dead.insert(p.fd);
  if (dead.empty()) return 0;
  wake_locked(core_.drop_dead([&](const Worker& w) {
    return w.channel.from_runner.valid() && dead.count(w.channel.from_runner.get()) > 0;
  }));
  LOG_WARN("pool: %zu waiting sandbox%s had exited (killed?); replaced as needed", dead.size(),
           dead.size() == 1 ? "" : "es");
  return static_cast<int>(dead.size());
}

int Pool::drop_dead() {
  std::lock_guard<std::mutex> lock(mu_);
  return drop_dead_locked();
}

void Pool::janitor_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  auto next_pressure_check = Clock::now();
  auto next_dead_check = Clock::now() + kDeadCheck;
  for (;;) {
    if (running_ && Clock::now() >= next_pressure_check) {
      lock.unlock();
      relieve_memory_pressure();
      lock.lock();
      next_pressure_check = Clock::now() + kPressureCheck;
    }
    if (running_ && Clock::now() >= next_dead_check) {
      drop_dead_locked();
      next_dead_check = Clock::now() + kDeadCheck;
    }
    wake_locked(core_.expire_idle(Clock::now()));
    std::vector<PoolCore::Doomed> doomed = core_.take_doomed();
    if (!doomed.empty()) {
      lock.unlock();
      // Each slot is given back as it frees: all at the end of the batch,
      // one slow destroy (a PID 1 freeing gigabytes) held the slots of those
      // before it, and a full pool's cold starts timed out waiting for room
      // that was there.
      for (const PoolCore::Doomed& d : doomed) {
        auto s = spawner_.destroy(d.id);
        // A spawner no longer running took its sandboxes with it (a drain
        // cut short shuts it down before the pool stops): nothing to say.
        if (!s && s.error().err != ESHUTDOWN)
          LOG_WARN("pool: destroying sandbox %llu: %s", (unsigned long long)d.id,
                   s.error().message().c_str());
        // Only now is the slot free. (A sandbox the spawner failed to
        // destroy is logged and no longer counted: the spawner keeps no
        // handle to retry.)
        lock.lock();
        wake_locked(core_.destroyed(std::span(&d, 1)));
        const bool running = running_;
        lock.unlock();
        // A hog does not wait for a long batch to end.
        if (running && Clock::now() >= next_pressure_check) {
          relieve_memory_pressure();
          next_pressure_check = Clock::now() + kPressureCheck;
        }
      }
      lock.lock();
      continue;
    }
    if (!running_) break;
    janitor_cv_.wait_until(lock, next_pressure_check);
  }
}

}  // namespace nsbox
