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

// Also knows its sandboxes' processes and a template.
class MemoryFactory final : public SandboxFactory {
 public:
  Result<SpawnedSandbox> spawn(uint32_t, uint64_t) override {
    return make_error("spawn", "not in this test");
  }
  Status set_memory(uint64_t, uint64_t) override { return {}; }
  Result<CgroupEvents> events(uint64_t id) override {
    CgroupEvents ev;
    ev.memory_current = id * 1000;
    return ev;
  }
  Result<ProcessMemory> process_memory(uint64_t id) override {
    return ProcessMemory{id * 300, id * 200, id * 100, 2};
  }
  Result<ProcessMemory> template_memory() override {
    return ProcessMemory{1234567890123, 23456789012, 3456789012, 1};
  }
  Status destroy(uint64_t) override { return {}; }
  bool healthy() override { return true; }
};

// A clock the test moves, and a factory whose every call takes 10 ms of it:
// a slow spawner, as with thousands of sandboxes.
SandboxMemory::Clock::time_point g_now{};
SandboxMemory::Clock::time_point fake_now() {
  return g_now;
}

class SlowFactory final : public SandboxFactory {
 public:
  Result<SpawnedSandbox> spawn(uint32_t, uint64_t) override {
    return make_error("spawn", "not in this test");
  }
  Status set_memory(uint64_t, uint64_t) override { return {}; }
  Result<CgroupEvents> events(uint64_t) override {
    calls++;
    g_now += std::chrono::milliseconds(10);
    return CgroupEvents{};
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

TEST_CASE("metrics: per sandbox its cgroup charge, USS and PSS; the templates' own memory") {
  MemoryFactory factory;
  SandboxMemory memory(factory);
  std::string text = memory.render({5});
  CHECK(has(text, "nsbox_sandbox_memory_bytes{sandbox=\"5\"} 5000\n"));
  CHECK(has(text,
            "# TYPE nsbox_sandbox_uss_bytes gauge\nnsbox_sandbox_uss_bytes{sandbox=\"5\"} 500\n"));
  CHECK(has(text,
            "# TYPE nsbox_sandbox_pss_bytes gauge\nnsbox_sandbox_pss_bytes{sandbox=\"5\"} 1000\n"));
  CHECK(has(text, "nsbox_templates 1\n"));
  CHECK(has(text, "nsbox_template_rss_bytes 1234567890123\n"));
  CHECK(has(text, "nsbox_template_pss_bytes 23456789012\n"));
  CHECK(has(text, "nsbox_template_uss_bytes 3456789012\n"));
  // A factory without processes or templates (CountingFactory) adds no such line.
  CountingFactory plain;
  SandboxMemory other(plain);
  std::string p = other.render({1});
  CHECK_FALSE(has(p, "uss_bytes{"));
  CHECK_FALSE(has(p, "nsbox_templates"));
}

TEST_CASE("metrics: a slow refresh waits 19 times as long before the next") {
  using std::chrono::milliseconds;
  SlowFactory factory;
  SandboxMemory memory(factory, fake_now);
  // Each call takes 10 ms: 5 sandboxes refresh in 50 ms, and the second's
  // floor holds; 200 take 2 s, and then 38 s pass without a refresh; 1000
  // take 10 s, and 190 s would be due, but 60 s is the most it waits.
  struct Case {
    size_t sandboxes;
    int quiet_ms;  // how long after a refresh the next one is refused
  };
  // 1000 take 10 s: 190 s would be due, 60 s is the most it waits.
  for (Case c : {Case{5, 999}, Case{200, 37999}, Case{1000, 59999}}) {
    CAPTURE(c.sandboxes);
    std::vector<uint64_t> ids(c.sandboxes);
    g_now += milliseconds(100000);  // long after any earlier refresh
    const int before = factory.calls;
    memory.render(ids);
    CHECK(factory.calls == before + int(c.sandboxes));
    g_now += milliseconds(c.quiet_ms);
    memory.render(ids);
    CHECK(factory.calls == before + int(c.sandboxes));
    g_now += milliseconds(1);
    memory.render(ids);
    CHECK(factory.calls == before + 2 * int(c.sandboxes));
  }
}

TEST_CASE("metrics: a deleted function's series go; the others' stay") {
  nsbox::Metrics m;
  for (int status : {200, 201, 418, 599}) m.request("gone", status, 0.01, 3);
  m.start("gone", true, 3);
  m.request("kept", 200, 0.02, 4);
  m.start("kept", false, 4);
  CHECK(m.render().find("function=\"gone\"") != std::string::npos);
  m.forget("gone", 5);
  const std::string out = m.render();
  CHECK(out.find("function=\"gone\"") == std::string::npos);
  CHECK(out.find("nsbox_requests_total{function=\"kept\",status=\"200\"} 1") != std::string::npos);
  CHECK(out.find("nsbox_request_duration_seconds_count{function=\"kept\"} 1") != std::string::npos);
  CHECK(out.find("function=\"kept\",kind=\"warm\"") != std::string::npos);
}

// Deploy numbers tell a request of a deleted function, still running, from
// the function deployed under its name since.
TEST_CASE("metrics: a deleted deploy's late request is not counted; a newer deploy's are kept") {
  nsbox::Metrics m;
  m.request("api", 200, 0.01, 1);
  m.forget("api", 2);              // deleted by deploy number 2
  m.request("api", 500, 0.01, 1);  // the old deploy's request, finishing late
  m.start("api", false, 1);
  CHECK(m.render().find("function=\"api\"") == std::string::npos);
  m.request("api", 201, 0.01, 4);  // deployed again (3: another function's)
  m.start("api", true, 4);
  CHECK(m.render().find("nsbox_requests_total{function=\"api\",status=\"201\"} 1") !=
        std::string::npos);
  // A delete whose forget() comes after a later deploy counted requests
  // (a slow delete of many versions, numbered 3) leaves that deploy's series.
  m.forget("api", 3);
  CHECK(m.render().find("nsbox_requests_total{function=\"api\",status=\"201\"} 1") !=
        std::string::npos);
  m.forget("api", 5);
  CHECK(m.render().find("function=\"api\"") == std::string::npos);
  // forget_all: whatever counted them (no deploy number to tell by).
  m.request("broken", 502, 0.01);
  m.forget_all("broken");
  CHECK(m.render().find("function=\"broken\"") == std::string::npos);
}
