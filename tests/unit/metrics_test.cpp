// gateway/metrics.cpp: the pool's lines, and the per-sandbox memory lines,
// whose factory calls are rate-limited so that scrapes cannot keep the
// spawner busy.
#include "gateway/metrics.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace nsbox;

namespace {

// Answers events() with memory_current = id * 1000, except for sandbox 2,
// which is gone; counts the calls.
class CountingFactory final : public SandboxFactory {
 public:
  Result<SpawnedSandbox> spawn(uint32_t, uint64_t) override {
    return make_error("spawn", "not in this test");
  }
  Status set_memory(uint64_t, uint64_t) override { return {}; }
  Result<CgroupEvents> events(uint64_t id) override {
    calls++;
    if (id == 2) return make_error("events", "no such sandbox");
    CgroupEvents ev;
    ev.memory_current = id * 1000;
    return ev;
  }
  Status destroy(uint64_t) override { return {}; }
  bool healthy() override { return true; }
  int calls = 0;
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("metrics: the pool's state renders as Prometheus lines") {
  PoolStats s;
  s.blank = 2;
  s.idle = 3;
  s.busy = 1;
  s.spawned = 7;
  s.memory_pressure = true;
  std::string text = render_pool_stats(s);
  CHECK(has(text, "nsbox_pool_sandboxes{state=\"blank\"} 2\n"));
  CHECK(has(text, "nsbox_pool_sandboxes{state=\"idle\"} 3\n"));
  CHECK(has(text, "nsbox_pool_sandboxes{state=\"busy\"} 1\n"));
  CHECK(has(text, "nsbox_pool_spawned_total 7\n"));
  CHECK(has(text, "nsbox_memory_pressure 1\n"));
}

TEST_CASE("metrics: sandbox memory costs a factory call per sandbox at most once a second") {
  CountingFactory factory;
  SandboxMemory memory(factory);
  std::string first = memory.render({1, 2, 3});
  CHECK(has(first, "# TYPE nsbox_sandbox_memory_bytes gauge\n"));
  CHECK(has(first, "nsbox_sandbox_memory_bytes{sandbox=\"1\"} 1000\n"));
  CHECK(has(first, "nsbox_sandbox_memory_bytes{sandbox=\"3\"} 3000\n"));
  CHECK_FALSE(has(first, "sandbox=\"2\""));  // gone since the pool listed it
  CHECK(factory.calls == 3);
  // A scrape right after is served from the last refresh.
  CHECK(memory.render({1, 2, 3, 4}) == first);
  CHECK(factory.calls == 3);
}
