#include "sandbox/factory_group.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <limits>

namespace nsbox {

FactoryGroup::FactoryGroup(std::vector<SandboxFactory*> members) {
  for (SandboxFactory* f : members) {
    auto m = std::make_unique<Member>();
    m->factory = f;
    members_.push_back(std::move(m));
  }
}

int FactoryGroup::default_count() {
  // The CPUs this process may run on (a container's cpuset, taskset), not
  // the host's: spawners beyond them would only take turns.
  cpu_set_t set;
  long cpus =
      sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<int>(std::clamp(cpus, 1L, 4L));
}

size_t FactoryGroup::pick() {
  const size_t n = members_.size();
  const size_t start = turn_.fetch_add(1, std::memory_order_relaxed) % n;
  // A lost member fails at once and so always looks free: passed over
  // (the daemon stops meanwhile), unless every member is lost.
  auto worse = [&](size_t a, size_t b) {
    const bool lost_a = members_[a]->lost.load(), lost_b = members_[b]->lost.load();
    if (lost_a != lost_b) return lost_a;
    return members_[a]->in_flight.load() > members_[b]->in_flight.load();
  };
  size_t best = start;
  for (size_t i = 1; i < n; i++) {
    const size_t k = (start + i) % n;
    if (worse(best, k)) best = k;
  }
  return best;
}

template <typename F>
Result<SpawnedSandbox> FactoryGroup::made_by(size_t k, F&& f) {
  Member& m = *members_[k];
  // Given back however f returns: a throw (bad_alloc) that kept it would
  // steer pick() away from this spawner for good.
  struct InFlight {
    Member& m;
    explicit InFlight(Member& member) : m(member) { m.in_flight++; }
    ~InFlight() { m.in_flight--; }
  };
  Result<SpawnedSandbox> r = [&] {
    InFlight counted(m);
    return f(*m.factory);
  }();
  if (!r) {
    if (!m.factory->healthy()) m.lost = true;
    return r;
  }
  const uint64_t n = members_.size();
  if (r.value().id > (std::numeric_limits<uint64_t>::max() - k) / n) {
    // Never after 2^62 sandboxes; a wrapped id would name another's.
    (void)m.factory->destroy(r.value().id);
    return make_error("sandbox ids", "a spawner's ids ran out");
  }
  r.value().id = r.value().id * n + k;
  return r;
}

bool FactoryGroup::route(uint64_t id, size_t* k, uint64_t* inner) const {
  *k = static_cast<size_t>(id % members_.size());
  *inner = id / members_.size();
  return *inner != 0;
}

Result<SpawnedSandbox> FactoryGroup::spawn(uint32_t profile, uint64_t memory_bytes) {
  return made_by(pick(), [&](SandboxFactory& f) { return f.spawn(profile, memory_bytes); });
}

Result<SpawnedSandbox> FactoryGroup::spawn_template(uint32_t profile, uint64_t memory_bytes) {
  return made_by(pick(),
                 [&](SandboxFactory& f) { return f.spawn_template(profile, memory_bytes); });
}

Result<SpawnedSandbox> FactoryGroup::fork_instance(uint64_t template_id, uint32_t profile,
                                                   uint64_t memory_bytes) {
  size_t k;
  uint64_t inner;
  if (!route(template_id, &k, &inner))
    return make_error("function template", "no template " + std::to_string(template_id));
  return made_by(k,
                 [&](SandboxFactory& f) { return f.fork_instance(inner, profile, memory_bytes); });
}

template <typename F>
std::invoke_result_t<F, SandboxFactory&, uint64_t> FactoryGroup::routed(uint64_t id, F&& f) {
  size_t k;
  uint64_t inner;
  if (!route(id, &k, &inner)) return make_error("sandbox", "no sandbox " + std::to_string(id));
  return f(*members_[k]->factory, inner);
}

Status FactoryGroup::rest_template(uint64_t template_id) {
  return routed(template_id, [](SandboxFactory& f, uint64_t own) { return f.rest_template(own); });
}

Status FactoryGroup::set_memory(uint64_t id, uint64_t memory_bytes) {
  return routed(id,
                [&](SandboxFactory& f, uint64_t own) { return f.set_memory(own, memory_bytes); });
}

Result<CgroupEvents> FactoryGroup::events(uint64_t id) {
  return routed(id, [](SandboxFactory& f, uint64_t own) { return f.events(own); });
}

Status FactoryGroup::destroy(uint64_t id) {
  return routed(id, [](SandboxFactory& f, uint64_t own) { return f.destroy(own); });
}

Result<ProcessMemory> FactoryGroup::process_memory(uint64_t id) {
  return routed(id, [](SandboxFactory& f, uint64_t own) { return f.process_memory(own); });
}

Result<ProcessMemory> FactoryGroup::template_memory() {
  ProcessMemory sum;
  for (const auto& m : members_) {
    ProcessMemory one = TRY(m->factory->template_memory());
    sum.rss += one.rss;
    sum.pss += one.pss;
    sum.uss += one.uss;
    sum.processes += one.processes;
  }
  return sum;
}

bool FactoryGroup::healthy() {
  for (const auto& m : members_)
    if (!m->factory->healthy()) return false;
  return true;
}

}  // namespace nsbox
