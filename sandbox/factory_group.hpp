// Several sandbox factories behind one: the daemon's spawners. A spawner is
// single-threaded and makes one sandbox at a time, so one spawner bounds
// the creation rate by its serial work while the machine's other cores
// wait; with one per core (up to four), spawns run side by side.
//
// A sandbox's id says which member made it (member id * count + index), so
// every later call about it (destroy, events, a function template's forks)
// goes to that member with the member's own id.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "sandbox/spawner.hpp"

namespace nsbox {

class FactoryGroup final : public SandboxFactory {
 public:
  // Members outlive the group; at least one.
  explicit FactoryGroup(std::vector<SandboxFactory*> members);

  // The member with the fewest calls in flight, the next in turn among
  // equals: a spawn waits behind no other while a member is free. Calls
  // about existing sandboxes (destroy, events) are not counted.
  Result<SpawnedSandbox> spawn(uint32_t profile, uint64_t memory_bytes) override;
  Result<SpawnedSandbox> spawn_template(uint32_t profile, uint64_t memory_bytes) override;
  // The template's member: an instance is its template's fork.
  Result<SpawnedSandbox> fork_instance(uint64_t template_id, uint32_t profile,
                                       uint64_t memory_bytes) override;
  Status rest_template(uint64_t template_id) override;
  Status set_memory(uint64_t id, uint64_t memory_bytes) override;
  Result<CgroupEvents> events(uint64_t id) override;
  Status destroy(uint64_t id) override;
  Result<ProcessMemory> process_memory(uint64_t id) override;
  // Summed over the members (each has its own runtime template).
  Result<ProcessMemory> template_memory() override;
  // Every member: the daemon is fail-stop on a lost spawner.
  bool healthy() override;
  int parallelism() const override { return static_cast<int>(members_.size()); }

  // How many spawners a daemon runs here: one per CPU it may run on, at
  // most four (each holds a runtime template of its own, ~10 MB).
  static int default_count();

 private:
  struct Member {
    SandboxFactory* factory;
    std::atomic<int> in_flight{0};
    std::atomic<bool> lost{false};  // a call failed and it was not healthy
  };
  size_t pick();
  // Runs f on member k, counting it in flight, and makes a returned
  // sandbox's id the group's.
  template <typename F>
  Result<SpawnedSandbox> made_by(size_t k, F&& f);
  // Which member owns a group id, and its id there. False for an id no
  // member could have made.
  bool route(uint64_t id, size_t* k, uint64_t* inner) const;
  // f(the owning member, its own id), or an error for an id no member made.
  template <typename F>
  std::invoke_result_t<F, SandboxFactory&, uint64_t> routed(uint64_t id, F&& f);

  std::vector<std::unique_ptr<Member>> members_;
  std::atomic<uint64_t> turn_{0};
};

}  // namespace nsbox
