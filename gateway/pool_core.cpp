#include "gateway/pool_core.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace nsbox {

bool under_memory_pressure(const MemoryReading& m, const PoolLimits& l) {
  if (l.min_available_bytes > 0 && m.have_available && m.available_bytes < l.min_available_bytes)
    return true;
  return l.psi_some_avg10 > 0 && m.have_psi && m.psi_some_avg10 > l.psi_some_avg10;
}

void Wakes::add(const Wakes& w) {
  one.insert(one.end(), w.one.begin(), w.one.end());
  all.insert(all.end(), w.all.begin(), w.all.end());
  blank_waiters |= w.blank_waiters;
  refill |= w.refill;
  janitor |= w.janitor;
  freezer |= w.freezer;
}

PoolCore::PoolCore(PoolLimits limits, std::vector<uint64_t> profile_memory)
    : limits_(limits), profile_memory_(std::move(profile_memory)) {}

void PoolCore::check() const {
#ifndef NDEBUG
  // O(sandboxes) per change: debug builds only, where a broken count is
  // caught at the change that broke it rather than as a leak much later.
  if (std::string v = invariant_violation(); !v.empty()) {
    std::fprintf(stderr, "nsbox: pool invariant broken: %s\n", v.c_str());
    std::abort();
  }
#endif
}

std::string PoolCore::invariant_violation() const {
  int blanks = 0, idle = 0, fn_busy = 0, fn_waiting = 0, templates = 0;
  uint64_t memory = 0, template_memory = 0;
  for (const auto& [profile, q] : blanks_) {
    for (const auto& w : q) {
      blanks++;
      memory += w->memory_bytes;
      if (!w->function.empty() || w->deploy != 0) return "a blank holds a function";
      if (w->profile != profile) return "a blank is queued under another profile";
    }
  }
  for (const auto& [name, fn] : functions_) {
    if (fn.busy < 0 || fn.waiting < 0) return name + ": a negative count";
    if (fn.unused()) return name + ": an entry nothing refers to was kept";
    templates += fn.has_template();
    if (fn.tmpl) {
      template_memory += fn.tmpl->memory_bytes;
      if (fn.tmpl->function != name) return name + ": a template of another function";
      if (fn.making_template) return name + ": a template kept while another is made";
      if (fn.tmpl_retiring() && fn.tmpl_busy == 0)
        return name + ": a retired or revoked template outlived its last lease";
      if (fn.tmpl_busy < 0 || fn.tmpl_busy > fn.busy)
        return name + ": its template's leased instances miscounted";
    }
    fn_busy += fn.busy;
    fn_waiting += fn.waiting;
    const Worker* prev = nullptr;
    for (const auto& w : fn.idle) {
      idle++;
      memory += w->memory_bytes;
      if (w->function != name) return name + ": an idle sandbox of another function";
      if (w->deploy == 0 || w->deploy < fn.floor)
        return name + ": an idle sandbox of a revoked deploy";
      if (prev && prev->last_used < w->last_used) return name + ": idle list not most recent first";
      prev = w.get();
    }
  }
  if (fn_busy > busy_) return "functions lease more sandboxes than are busy";
  if (fn_waiting != waiting_) return "waiting requests counted differently per function";
  if (busy_ < 0 || refilling_ < 0 || dying_ < 0 || waiting_ < 0) return "a negative count";
  if (templates != templates_) return "templates counted differently per function";
  if (template_memory > templates_memory_) return "kept templates exceed their counted memory";
  if (total_ != blanks + idle + busy_ + refilling_ + dying_ + templates_)
    return "total " + std::to_string(total_) +
           " is not blanks + idle + busy + refilling + dying + templates";
  if (memory_ != memory + busy_memory_ + refilling_memory_ + dying_memory_ + templates_memory_)
    return "memory is not the sum of every sandbox's";
  if (static_cast<int>(doomed_.size()) > dying_) return "more doomed than dying";
  for (size_t i = 1; i < freeze_queue_.size(); i++)
    if (freeze_queue_[i].released < freeze_queue_[i - 1].released)
      return "freeze queue out of release order";
  return {};
}

// ------------------------------------------------------------- helpers ---

void PoolCore::prune(Functions::iterator it) {
  const FunctionState& fn = it->second;
  if (fn.unused()) functions_.erase(it);
}

void PoolCore::forget(std::unique_ptr<Worker> w, Wakes& wakes) {
  if (!w->function.empty()) {
    // The function's own slot is free at once (the caller took it off the
    // idle list or the busy count): one of its waiters may take a blank
    // now. Nothing else changed until the janitor has destroyed it, and
    // everyone is woken then.
    auto it = functions_.find(w->function);
    if (it != functions_.end() && it->second.waiting > 0) wakes.one.push_back(w->function);
  }
  dying_++;
  dying_memory_ += w->memory_bytes;
  doomed_.push_back({w->id, w->memory_bytes});
  wakes.janitor = true;
}

template <class List, class Pick>
int PoolCore::forget_if(List& list, Pick doomed, Wakes& wakes) {
  int n = 0;
  for (auto w = list.begin(); w != list.end();) {
    if (!doomed(**w)) {
      ++w;
      continue;
    }
    std::unique_ptr<Worker> gone = std::move(*w);
    w = list.erase(w);
    forget(std::move(gone), wakes);
    n++;
  }
  return n;
}

bool PoolCore::over_caps() const {
  return total_ - dying_ - refilling_ > limits_.max_sandboxes ||
         memory_ - dying_memory_ - refilling_memory_ > limits_.memory_budget_bytes;
}

bool PoolCore::fits(uint64_t memory) const {
  return total_ < limits_.max_sandboxes && memory_ + memory <= limits_.memory_budget_bytes;
}

bool PoolCore::room_once_dying_gone(uint64_t memory) const {
  return total_ - dying_ < limits_.max_sandboxes &&
         memory_ - dying_memory_ + memory <= limits_.memory_budget_bytes;
}

bool PoolCore::eviction_can_make_room(uint64_t memory) const {
  // What no eviction frees: leased sandboxes (and slots being spawned for
  // leases) and those already dying. When they alone leave no room, every
  // eviction would cost its function a cold start and buy nothing: one
  // request for a large function could empty the pool of warm sandboxes
  // and still time out.
  return busy_ + dying_ < limits_.max_sandboxes &&
         busy_memory_ + dying_memory_ + memory <= limits_.memory_budget_bytes;
}

void PoolCore::wake_capacity(Wakes& wakes) const {
  // Only functions under their own cap: the waiters of a function at its cap
  // wait for one of its own sandboxes (release wakes them), and waking them
  // for every other function's release was a thundering herd (149 clients
  // on 8 functions: 7.3k req/s, against 20k for the same clients on one).
  for (const auto& [name, fn] : functions_)
    if (fn.waiting > 0 && fn.held() < limits_.per_function) wakes.one.push_back(name);
  wakes.blank_waiters = true;
}

void PoolCore::wake_everyone(Wakes& wakes) const {
  // Every waiter, not one per function: several may have waited on the
  // same dying sandboxes (room_once_dying_gone), and whoever finds no room
  // now evicts for itself.
  // Cheap when no one waits: the janitor calls this after every destroy.
  if (waiting_ > 0)
    for (const auto& [name, fn] : functions_)
      if (fn.waiting > 0) wakes.all.push_back(name);
  wakes.blank_waiters = true;
  wakes.refill = true;
}

void PoolCore::forget_template(FunctionState& fn, Wakes& wakes) {
  std::unique_ptr<Worker> t = std::move(fn.tmpl);
  fn.tmpl_busy = 0;  // those leased are orphans now: forgotten on release
  templates_--;
  templates_memory_ -= t->memory_bytes;
  // Its idle instances die with it (they live in its PID namespace): gone
  // now rather than found dead by the next request.
  for (auto w = fn.idle.begin(); w != fn.idle.end();) {
    if ((*w)->template_id != t->id) {
      ++w;
      continue;
    }
    std::unique_ptr<Worker> doomed = std::move(*w);
    w = fn.idle.erase(w);
    forget(std::move(doomed), wakes);
  }
  forget(std::move(t), wakes);
}

bool PoolCore::evict_lru(Wakes& wakes) {
  // The least recently used of: each function's oldest idle sandbox, and
  // each template that nothing of its function uses (no lease, no waiter,
  // no idle instance: those go first, as the older entries).
  auto victim = functions_.end();
  bool victim_is_template = false;
  Clock::time_point oldest;
  for (auto it = functions_.begin(); it != functions_.end(); ++it) {
    const FunctionState& fn = it->second;
    std::optional<Clock::time_point> t;
    bool is_template = false;
    if (!fn.idle.empty()) {
      t = fn.idle.back()->last_used;
    } else if (fn.tmpl && fn.tmpl_busy == 0 && fn.waiting == 0) {
      t = fn.tmpl_used;
      is_template = true;
    }
    if (t && (victim == functions_.end() || *t < oldest)) {
      victim = it;
      oldest = *t;
      victim_is_template = is_template;
    }
  }
  if (victim == functions_.end()) return false;
  if (victim_is_template) {
    template_evictions_++;
    forget_template(victim->second, wakes);
    prune(victim);
    return true;
  }
  std::unique_ptr<Worker> w = std::move(victim->second.idle.back());
  victim->second.idle.pop_back();
  evictions_++;
  forget(std::move(w), wakes);
  prune(victim);
  return true;
}

// An idle sandbox of this function that holds another deploy: it counts
// against the per-function cap but can never serve this request. (Not
// profile or memory: those follow from the deploy.)
bool PoolCore::evict_own_stale(FunctionState& fn, uint64_t deploy, Wakes& wakes) {
  for (auto it = fn.idle.begin(); it != fn.idle.end(); ++it) {
    if ((*it)->deploy != deploy) {
      std::unique_ptr<Worker> w = std::move(*it);
      fn.idle.erase(it);
      forget(std::move(w), wakes);
      return true;
    }
  }
  return false;
}

bool PoolCore::drop_blank(uint32_t except_profile, Wakes& wakes) {
  for (auto& [p, q] : blanks_) {
    if (p == except_profile || q.empty()) continue;
    std::unique_ptr<Worker> w = std::move(q.back());
    q.pop_back();
    forget(std::move(w), wakes);
    return true;
  }
  return false;
}

// ------------------------------------------------------------- leasing ---

bool PoolCore::admit(const std::string& name) {
  if (waiting_ >= limits_.queue_total) return false;
  auto it = functions_.try_emplace(name).first;
  if (it->second.waiting >= limits_.queue_per_function) {
    prune(it);
    return false;
  }
  waiting_++;
  it->second.waiting++;
  check();
  return true;
}

void PoolCore::unadmit(const std::string& name) {
  auto it = functions_.find(name);
  if (it == functions_.end()) return;  // unreachable: admitted entries are kept
  waiting_--;
  it->second.waiting--;
  prune(it);
  check();
}

PoolCore::Step PoolCore::acquire_step(const std::string& name, uint64_t deploy, uint32_t profile,
                                      uint64_t memory, bool last_try, bool blanks_fit) {
  Step st;
  FunctionState& fn = functions_.at(name);  // admitted: kept until unadmit
  auto done = [&](Step::Kind kind) {
    st.kind = kind;
    check();
    return std::move(st);
  };
  if (deploy < fn.floor) return done(Step::Stale);
  // Warm: the same deploy, most recently used first, made with the same
  // policy profile and memory limit (a sandbox is never trusted with a
  // request planned under other limits).
  for (auto it = fn.idle.begin(); it != fn.idle.end(); ++it) {
    Worker& w = **it;
    if (w.deploy == deploy && w.profile == profile && w.memory_bytes == memory) {
      st.worker = std::move(*it);
      fn.idle.erase(it);
      fn.busy++;
      if (fn.tmpl && st.worker->template_id == fn.tmpl->id) fn.tmpl_busy++;
      busy_++;
      busy_memory_ += st.worker->memory_bytes;
      return done(Step::Warm);
    }
  }
  if (fn.held() >= limits_.per_function && evict_own_stale(fn, deploy, st.wakes))
    return done(Step::Retry);
  if (fn.held() < limits_.per_function) {
    auto& blanks = blanks_[profile];
    uint64_t extra = blanks.empty() || memory <= blanks.front()->memory_bytes
                         ? 0
                         : memory - blanks.front()->memory_bytes;
    if (blanks_fit && !blanks.empty() && memory_ + extra <= limits_.memory_budget_bytes) {
      // A cold sandbox belongs to the function from the moment it is
      // leased, so a failed load still gives its slot back to this function.
      st.worker = std::move(blanks.front());
      blanks.pop_front();
      st.wakes.refill = true;
      fn.busy++;
      busy_++;
      if (st.worker->memory_bytes != memory) {
        memory_ = memory_ - st.worker->memory_bytes + memory;
        st.worker->memory_bytes = memory;
        st.resize = true;
      }
      busy_memory_ += memory;
      st.worker->function = name;
      st.worker->deploy = deploy;
      return done(Step::Cold);
    }
    if (fits(memory)) {
      // Counted before the spawn, which runs unlocked, so that concurrent
      // callers see the slot taken; uncounted by spawn_failed.
      fn.busy++;
      busy_++;
      total_++;
      memory_ += memory;
      busy_memory_ += memory;
      return done(Step::Spawn);
    }
    // Make room: the least recently used idle sandbox of any function, or
    // a blank of another profile; unless those already being destroyed
    // will make it, then wait for the janitor (it wakes every waiter).
    // Not on the last try: the room would come too late for us.
    if (!last_try && !room_once_dying_gone(memory) && eviction_can_make_room(memory) &&
        (evict_lru(st.wakes) || drop_blank(profile, st.wakes)))
      return done(Step::Retry);
  }
  if (last_try) {
    // A wake-up meant for us may have raced with the deadline: pass it on.
    st.wakes.one.push_back(name);
    return done(Step::Timeout);
  }
  return done(Step::Wait);
}

std::unique_ptr<Worker> PoolCore::spawned(const std::string& name, uint64_t deploy,
                                          std::unique_ptr<Worker> w) {
  spawned_++;
  w->function = name;
  w->deploy = deploy;
  if (w->template_id != 0) {
    FunctionState& fn = functions_.at(name);  // admitted
    if (fn.tmpl && fn.tmpl->id == w->template_id) {
      fn.tmpl_forks++;
      fn.tmpl_busy++;
    }
  }
  check();
  return w;
}

Wakes PoolCore::spawn_failed(const std::string& name, uint64_t memory) {
  Wakes wakes;
  total_--;
  memory_ -= memory;
  busy_--;
  busy_memory_ -= memory;
  spawn_failures_++;
  if (!name.empty()) functions_.at(name).busy--;  // admitted: still there
  // The slot is free again: a sibling waiting at the function's cap, or
  // anyone waiting on the budget, may try.
  wake_capacity(wakes);
  check();
  return wakes;
}

Wakes PoolCore::resize_failed(std::unique_ptr<Worker> w) {
  // e.g. the runner already uses more than the new limit, or no cgroup
  // (rootless): the blank goes, and the caller steps again for one made to
  // measure, within the budget like any other spawn.
  Wakes wakes;
  busy_--;
  busy_memory_ -= w->memory_bytes;
  functions_.at(w->function).busy--;  // admitted: still there
  w->function.clear();
  w->deploy = 0;
  forget(std::move(w), wakes);
  check();
  return wakes;
}

PoolCore::Step PoolCore::blank_step(uint32_t profile, uint64_t memory, bool last_try,
                                    bool blanks_fit) {
  Step st;
  auto& blanks = blanks_[profile];
  const uint64_t have = blanks.empty() ? 0 : blanks.front()->memory_bytes;
  const uint64_t extra = memory > have ? memory - have : 0;
  if (!blanks.empty() && (have == memory || blanks_fit) &&
      memory_ + extra <= limits_.memory_budget_bytes) {
    // Another memory than the profile's: the blank is re-limited, as a
    // cold start's is (a blank kept aside would hold the room a spawn
    // needs, and the refill would take back any room a dropped one left).
    st.worker = std::move(blanks.front());
    blanks.pop_front();
    busy_++;
    if (have != memory) {
      memory_ = memory_ - have + memory;
      st.worker->memory_bytes = memory;
      st.resize = true;
    }
    busy_memory_ += memory;
    st.wakes.refill = true;
    st.kind = Step::Cold;
  } else if (fits(memory)) {
    busy_++;
    total_++;
    memory_ += memory;
    busy_memory_ += memory;
    st.kind = Step::Spawn;
  } else if (!last_try && !room_once_dying_gone(memory) && eviction_can_make_room(memory) &&
             (evict_lru(st.wakes) || drop_blank(kNoProfile, st.wakes))) {
    // A blank too: of another profile, or of this one when it could not
    // be used (another memory that did not fit, or could not be set).
    st.kind = Step::Retry;
  } else {
    st.kind = last_try ? Step::Timeout : Step::Wait;
  }
  check();
  return st;
}

std::unique_ptr<Worker> PoolCore::spawned_blank(std::unique_ptr<Worker> w) {
  spawned_++;
  check();
  return w;
}

// ------------------------------------------------------ function templates ---

PoolCore::TemplatePlan PoolCore::template_step(const std::string& name, uint64_t deploy,
                                               uint32_t profile, uint64_t memory,
                                               Clock::time_point now) {
  TemplatePlan plan;
  FunctionState& fn = functions_.at(name);  // admitted: kept until unadmit
  if (deploy < fn.floor) return plan;
  if (fn.tmpl) {
    Worker& t = *fn.tmpl;
    if (!fn.tmpl_retired && t.deploy == deploy && t.profile == profile &&
        t.memory_bytes == memory) {
      fn.tmpl_used = now;
      plan.kind = TemplatePlan::Use;
      plan.id = t.id;
      return plan;
    }
    // Another deploy's: an older one's goes once nothing of it is leased.
    if (t.deploy > deploy || fn.tmpl_busy > 0) return plan;
    forget_template(fn, plan.wakes);
  }
  // Room for the template and the instance this request forks: a template
  // in the last slot would leave its own function nowhere to run.
  const bool room_for_two =
      total_ + 2 <= limits_.max_sandboxes && memory_ + 2 * memory <= limits_.memory_budget_bytes;
  if (fn.making_template || fn.template_failed == deploy || !room_for_two) {
    check();
    return plan;
  }
  fn.making_template = true;
  templates_++;
  templates_memory_ += memory;
  total_++;
  memory_ += memory;
  plan.kind = TemplatePlan::Make;
  check();
  return plan;
}

Wakes PoolCore::template_made(const std::string& name, uint64_t deploy, uint64_t memory,
                              std::unique_ptr<Worker> w, bool loaded) {
  Wakes wakes;
  auto it = functions_.find(name);  // kept while making_template
  FunctionState& fn = it->second;
  fn.making_template = false;
  templates_--;
  templates_memory_ -= memory;
  if (!w) {
    // Not made (a factory without templates, or no resources for now):
    // counted like a template that died, so that a passing shortage does
    // not cost every later cold start its import until the next deploy;
    // the third gives up on it for this deploy.
    total_--;
    memory_ -= memory;
    spawn_failures_++;
    if (++fn.template_deaths >= 3) fn.template_failed = deploy;
    wake_capacity(wakes);
  } else {
    spawned_++;
    w->function = name;
    w->deploy = deploy;
    if (!loaded) fn.template_failed = deploy;
    if (!loaded || deploy < fn.floor || fn.tmpl) {
      forget(std::move(w), wakes);
    } else {
      templates_++;
      templates_memory_ += w->memory_bytes;
      fn.tmpl_used = w->last_used;
      fn.tmpl_forks = 0;
      fn.tmpl_debt_ms = 0;
      fn.tmpl_debt_at = w->last_used;
      fn.tmpl_retired = false;
      fn.tmpl = std::move(w);
    }
  }
  prune(it);
  check();
  return wakes;
}

Wakes PoolCore::template_gone(const std::string& name, uint64_t id, bool hung) {
  Wakes wakes;
  auto it = functions_.find(name);
  if (it == functions_.end()) return wakes;
  FunctionState& fn = it->second;
  if (fn.tmpl && fn.tmpl->id == id) {
    if (fn.tmpl_forks == 0 || hung || ++fn.template_deaths >= 3)
      fn.template_failed = fn.tmpl->deploy;
    forget_template(fn, wakes);
  }
  prune(it);
  check();
  return wakes;
}

Wakes PoolCore::template_forked(const std::string& name, uint64_t id, double fork_ms,
                                Clock::time_point now) {
  Wakes wakes;
  auto it = functions_.find(name);
  if (it == functions_.end()) return wakes;
  FunctionState& fn = it->second;
  if (!fn.tmpl || fn.tmpl->id != id) return wakes;
  if (now > fn.tmpl_debt_at) {
    const double s = std::chrono::duration<double>(now - fn.tmpl_debt_at).count();
    fn.tmpl_debt_ms = std::max(0.0, fn.tmpl_debt_ms - s * kForkDebtDrainMsPerS);
    fn.tmpl_debt_at = now;
  }
  fn.tmpl_debt_ms += std::max(0.0, fork_ms - kForkAllowanceMs);
  if (fn.tmpl_debt_ms > kForkDebtMaxMs && !fn.tmpl_retired) {
    fn.tmpl_retired = true;
    fn.template_failed = fn.tmpl->deploy;
    if (fn.tmpl_busy == 0) forget_template(fn, wakes);
  }
  prune(it);
  check();
  return wakes;
}

bool PoolCore::template_usable(const std::string& name, uint64_t id) const {
  auto it = functions_.find(name);
  return it != functions_.end() && it->second.tmpl && it->second.tmpl->id == id &&
         !it->second.tmpl_retiring();
}

// ------------------------------------------------------------ giving back ---

Wakes PoolCore::release(std::unique_ptr<Worker> w, bool reusable, Clock::time_point now,
                        bool running) {
  Wakes wakes;
  busy_--;
  busy_memory_ -= w->memory_bytes;
  if (w->function.empty()) {
    // A blank used for a one-off job.
    forget(std::move(w), wakes);
    check();
    return wakes;
  }
  auto it = functions_.find(w->function);  // kept while it has a busy sandbox
  FunctionState& fn = it->second;
  fn.busy--;
  if (fn.tmpl && w->template_id == fn.tmpl->id) fn.tmpl_busy--;
  // A revoked deploy's or a retired template waited for its last leased instance.
  if (fn.tmpl_retiring() && fn.tmpl_busy == 0) forget_template(fn, wakes);
  // An instance whose template has gone died with it.
  const bool orphan = w->template_id != 0 && (!fn.tmpl || fn.tmpl->id != w->template_id);
  // Past a cap a reload lowered: it goes rather than wait idle.
  if (!reusable || !running || w->deploy < fn.floor || orphan || over_caps()) {
    forget(std::move(w), wakes);
    prune(it);
    check();
    return wakes;
  }
  w->last_used = now;
  const bool freeze = w->freeze.valid() && limits_.freeze_idle_ms > 0;
  // The freezer sleeps until its first entry is due: only a first entry
  // needs it awake (a later one is due later).
  if (freeze && freeze_queue_.empty()) wakes.freezer = true;
  if (freeze) freeze_queue_.push_back({w->function, w->id, now, now});
  fn.idle.push_front(std::move(w));
  // Waiters of other functions blocked on the global budget can now evict
  // this idle sandbox.
  if (waiting_ > fn.waiting) wake_capacity(wakes);
  if (fn.waiting > 0) wakes.one.push_back(it->first);
  check();
  return wakes;
}

Wakes PoolCore::revoke(const std::string& name, uint64_t deploy, bool deleted) {
  Wakes wakes;
  auto it = functions_.try_emplace(name).first;
  FunctionState& fn = it->second;
  if (deploy >= fn.floor) {
    fn.floor = deploy;
    fn.deleted = deleted;
    fn.template_deaths = 0;  // a new deploy's templates start afresh
  }
  for (auto w = fn.idle.begin(); w != fn.idle.end();) {
    if ((*w)->deploy >= fn.floor) {
      ++w;
      continue;
    }
    std::unique_ptr<Worker> doomed = std::move(*w);
    w = fn.idle.erase(w);
    forget(std::move(doomed), wakes);
  }
  if (fn.tmpl_retiring() && fn.tmpl_busy == 0) forget_template(fn, wakes);
  // Waiters planned for an older deploy learn it now (Stale), instead of
  // holding their queue places until the deadline.
  if (fn.waiting > 0) wakes.all.push_back(name);
  prune(it);
  check();
  return wakes;
}

Wakes PoolCore::set_limits(const PoolLimits& limits) {
  Wakes wakes;
  limits_ = limits;
  // Blanks past the count ahead of demand (only blank_profile's are made
  // ahead: those of a profile that no longer is all go), then whatever
  // waits unleased while past a cap.
  for (auto& [profile, list] : blanks_)
    forget_if(
        list,
        [kept = 0, keep = profile == limits_.blank_profile ? std::max(limits_.blank, 0) : 0](
            const Worker&) mutable { return kept++ >= keep; },
        wakes);
  // Blanks still being made are not counted: refilled() drops those that
  // arrive past the caps (never a warm sandbox evicted for a blank).
  constexpr uint32_t kAnyProfile = std::numeric_limits<uint32_t>::max();
  while (over_caps()) {
    if (!drop_blank(kAnyProfile, wakes) && !evict_lru(wakes)) break;
  }
  // Every waiter (a reload is rare): a raised per_function cap may free
  // several waiters of one function at once.
  wake_everyone(wakes);
  wakes.freezer = true;  // the freeze grace may have changed
  check();
  return wakes;
}

// ------------------------------------------------------------- background ---

PoolCore::Refill PoolCore::refill_step() {
  // Blanks of blank_profile (the default policy) are made ahead of demand,
  // only into spare capacity: never by evicting warm sandboxes, and nothing
  // under memory pressure.
  Refill r;
  const uint32_t profile = limits_.blank_profile;
  if (profile >= profile_memory_.size() || pressure_) return r;
  const uint64_t memory = profile_memory_[profile];
  auto it = blanks_.find(profile);
  const int blanks = it == blanks_.end() ? 0 : static_cast<int>(it->second.size());
  if (blanks + refilling_ >= limits_.blank || !fits(memory)) return r;
  refilling_++;
  refilling_memory_ += memory;
  total_++;
  memory_ += memory;
  r = {true, profile, memory};
  check();
  return r;
}

Wakes PoolCore::refilled(std::unique_ptr<Worker> w, bool running) {
  Wakes wakes;
  refilling_--;
  refilling_memory_ -= w->memory_bytes;
  spawned_++;
  auto& queue = blanks_[w->profile];
  // A reload may have lowered the count or a cap, or changed the default
  // policy, since this one was asked for.
  if (!running || w->profile != limits_.blank_profile ||
      static_cast<int>(queue.size()) >= limits_.blank || over_caps()) {
    forget(std::move(w), wakes);
  } else {
    queue.push_back(std::move(w));
    wake_capacity(wakes);
  }
  check();
  return wakes;
}

Wakes PoolCore::refill_failed(uint64_t memory) {
  Wakes wakes;
  refilling_--;
  refilling_memory_ -= memory;
  total_--;
  memory_ -= memory;
  spawn_failures_++;
  wake_capacity(wakes);
  check();
  return wakes;
}

void PoolCore::each_waiting(const std::function<void(const Worker&)>& f) const {
  for (const auto& [p, q] : blanks_)
    for (const auto& w : q) f(*w);
  for (const auto& [name, fn] : functions_)
    for (const auto& w : fn.idle)
      if (!w->frozen) f(*w);
}

Wakes PoolCore::drop_dead(const std::function<bool(const Worker&)>& dead) {
  Wakes wakes;
  for (auto& [p, q] : blanks_) found_dead_ += forget_if(q, dead, wakes);
  for (auto it = functions_.begin(); it != functions_.end();) {
    auto next = std::next(it);
    found_dead_ += forget_if(
        it->second.idle, [&](const Worker& w) { return !w.frozen && dead(w); }, wakes);
    prune(it);
    it = next;
  }
  if (wakes.janitor) wake_capacity(wakes);
  check();
  return wakes;
}

void PoolCore::note_found_dead() {
  found_dead_++;
}

Wakes PoolCore::expire_idle(Clock::time_point now) {
  Wakes wakes;
  const auto idle_limit = std::chrono::milliseconds(limits_.idle_timeout_ms);
  for (auto it = functions_.begin(); it != functions_.end();) {
    auto next = std::next(it);
    idle_expired_ += forget_if(
        it->second.idle, [&](const Worker& w) { return now - w.last_used > idle_limit; }, wakes);
    prune(it);
    it = next;
  }
  check();
  return wakes;
}

std::vector<PoolCore::Doomed> PoolCore::take_doomed() {
  std::vector<Doomed> out;
  out.swap(doomed_);
  return out;
}

Wakes PoolCore::destroyed(std::span<const Doomed> doomed) {
  Wakes wakes;
  for (const Doomed& d : doomed) {
    total_--;
    dying_--;
    memory_ -= d.memory;
    dying_memory_ -= d.memory;
  }
  wake_everyone(wakes);
  check();
  return wakes;
}

PoolCore::Pressure PoolCore::relieve_pressure(const MemoryReading& m) {
  Pressure p;
  const bool was = pressure_;
  pressure_ = under_memory_pressure(m, limits_);
  p.under = pressure_;
  p.changed = pressure_ != was;
  if (p.changed && !pressure_) p.wakes.refill = true;
  if (!pressure_) return p;
  // A quarter per check: memory returns only once the janitor has
  // destroyed them, so evicting one at a time would trail a fast hog, and
  // evicting all at once would cold-start every function for one spike.
  int idle = 0;
  for (const auto& [n, f] : functions_) idle += static_cast<int>(f.idle.size());
  for (int want = std::max(1, idle / 4); p.evicted < want && evict_lru(p.wakes); p.evicted++) {
  }
  if (p.evicted == 0 && drop_blank(UINT32_MAX, p.wakes)) p.evicted++;
  pressure_evictions_ += p.evicted;
  check();
  return p;
}

int PoolCore::freeze_due(Clock::time_point now, const std::function<Freeze(Worker&)>& freeze) {
  const auto grace = std::chrono::milliseconds(limits_.freeze_idle_ms);
  int frozen = 0;
  std::vector<FreezeDue> later;
  while (!freeze_queue_.empty() && freeze_queue_.front().released + grace <= now) {
    FreezeDue due = std::move(freeze_queue_.front());
    freeze_queue_.pop_front();
    auto it = functions_.find(due.function);
    if (it == functions_.end()) continue;
    // Still idle since that release? (Leased again since, it has a newer
    // entry; destroyed, it is gone from the list.) The idle list holds at
    // most per_function sandboxes.
    for (auto& w : it->second.idle) {
      if (w->id != due.id || w->last_used != due.idle_since || w->frozen) continue;
      switch (freeze(*w)) {
        case Freeze::Done:
          w->frozen = true;
          freezes_++;
          frozen++;
          break;
        case Freeze::Failed:
          break;
        case Freeze::Later:
          // Due again a grace from now: after every entry now queued, so
          // the queue stays in order.
          later.push_back({due.function, due.id, now, due.idle_since});
          if (!freeze_queue_.empty() && freeze_queue_.back().released > now)
            later.back().released = freeze_queue_.back().released;
          break;
      }
      break;
    }
  }
  for (auto& d : later) freeze_queue_.push_back(std::move(d));
  check();
  return frozen;
}

size_t PoolCore::freeze_due_count(Clock::time_point now, size_t cap) const {
  const auto grace = std::chrono::milliseconds(limits_.freeze_idle_ms);
  size_t n = 0;
  for (auto it = freeze_queue_.begin(); n < cap && it != freeze_queue_.end(); ++it, ++n)
    if (it->released + grace > now) break;
  return n;
}

std::optional<Clock::time_point> PoolCore::next_freeze(Clock::time_point last_pass) {
  if (limits_.freeze_idle_ms <= 0) {
    freeze_queue_.clear();
    return std::nullopt;
  }
  if (freeze_queue_.empty()) return std::nullopt;
  // Under load every release queues an entry, each due a grace after its
  // release: one pass per grace at most, so a sandbox is frozen between one
  // and two graces after its release.
  const auto grace = std::chrono::milliseconds(limits_.freeze_idle_ms);
  return std::max(freeze_queue_.front().released, last_pass) + grace;
}

std::vector<PoolCore::Doomed> PoolCore::take_all() {
  Wakes ignored;
  for (auto& [p, q] : blanks_)
    for (auto& w : q) forget(std::move(w), ignored);
  blanks_.clear();
  for (auto it = functions_.begin(); it != functions_.end();) {
    auto next = std::next(it);
    if (it->second.tmpl) forget_template(it->second, ignored);
    for (auto& w : it->second.idle) forget(std::move(w), ignored);
    it->second.idle.clear();
    prune(it);
    it = next;
  }
  freeze_queue_.clear();
  check();
  return take_doomed();
}

PoolStats PoolCore::stats() const {
  PoolStats s;
  for (const auto& [p, q] : blanks_) {
    s.blank += static_cast<int>(q.size());
    for (const auto& w : q) s.ids.push_back(w->id);
  }
  for (const auto& [n, f] : functions_) {
    s.idle += static_cast<int>(f.idle.size());
    for (const auto& w : f.idle) {
      s.ids.push_back(w->id);
      s.frozen += w->frozen;
    }
  }
  for (const auto& [n, f] : functions_)
    if (f.tmpl) s.ids.push_back(f.tmpl->id);
  s.functions = static_cast<int>(functions_.size());
  s.templates = templates_;
  s.template_evictions = template_evictions_;
  s.max_sandboxes = limits_.max_sandboxes;
  s.busy = busy_;
  s.waiting = waiting_;
  s.memory_bytes = memory_;
  s.evictions = evictions_;
  s.idle_expired = idle_expired_;
  s.spawned = spawned_;
  s.spawn_failures = spawn_failures_;
  s.pressure_evictions = pressure_evictions_;
  s.found_dead = found_dead_;
  s.freezes = freezes_;
  s.thaws = thaws_;
  s.memory_pressure = pressure_;
  return s;
}

}  // namespace nsbox
