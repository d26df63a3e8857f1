// plan_rlimits: which rlimits a sandbox gets, with and without cgroups.
#include "sandbox/privileges.hpp"

#include <doctest/doctest.h>
#include <sys/resource.h>

#include <vector>

using namespace nsbox;

namespace {

const RlimitSetting* find(const std::vector<RlimitSetting>& v, int resource) {
  for (const auto& s : v)
    if (s.resource == resource) return &s;
  return nullptr;
}

Limits test_limits() {
  Limits l;
  l.memory_bytes = 96ull << 20;
  l.pids = 40;
  l.wall_ms = 2500;
  l.nofile = 128;
  l.fsize_bytes = 8ull << 20;
  return l;
}

}  // namespace

TEST_CASE(
    "plan_rlimits with cgroups: core 1, nofile, fsize, no nice or realtime priority, a share of "
    "queued signals") {
  auto r = plan_rlimits(test_limits(), true, false);
  CHECK(r.size() == 6);
  for (bool cg : {true, false}) {
    auto p = plan_rlimits(test_limits(), cg, false);
    REQUIRE(find(p, RLIMIT_NICE));
    CHECK(find(p, RLIMIT_NICE)->value == 0);
    REQUIRE(find(p, RLIMIT_RTPRIO));
    CHECK(find(p, RLIMIT_RTPRIO)->value == 0);
    REQUIRE(find(p, RLIMIT_SIGPENDING));
    CHECK(find(p, RLIMIT_SIGPENDING)->value == kSandboxSigpending);  // root mode: a uid its own
    auto q = plan_rlimits(test_limits(), cg, /*rootless=*/true);
    REQUIRE(find(q, RLIMIT_SIGPENDING));
    CHECK(find(q, RLIMIT_SIGPENDING)->value == kRootlessSigpending);
  }
  REQUIRE(find(r, RLIMIT_CORE));
  CHECK(find(r, RLIMIT_CORE)->value == 1);
  REQUIRE(find(r, RLIMIT_NOFILE));
  CHECK(find(r, RLIMIT_NOFILE)->value == 128);
  REQUIRE(find(r, RLIMIT_FSIZE));
  CHECK(find(r, RLIMIT_FSIZE)->value == 8ull << 20);
  // cgroups enforce these per sandbox; per-process rlimits would only get in the way.
  CHECK(find(r, RLIMIT_AS) == nullptr);
  CHECK(find(r, RLIMIT_NPROC) == nullptr);
  CHECK(find(r, RLIMIT_CPU) == nullptr);
}

TEST_CASE("plan_rlimits without cgroups: AS, NPROC and CPU fall back to rlimits") {
  auto r = plan_rlimits(test_limits(), false, false);
  CHECK(r.size() == 9);
  REQUIRE(find(r, RLIMIT_CORE));
  CHECK(find(r, RLIMIT_CORE)->value == 1);
  REQUIRE(find(r, RLIMIT_NOFILE));
  CHECK(find(r, RLIMIT_NOFILE)->value == 128);
  REQUIRE(find(r, RLIMIT_FSIZE));
  CHECK(find(r, RLIMIT_FSIZE)->value == 8ull << 20);
  REQUIRE(find(r, RLIMIT_AS));
  // Address space, with headroom above the memory limit for shared mappings.
  CHECK(find(r, RLIMIT_AS)->value == (96ull << 20) + (256ull << 20));
  REQUIRE(find(r, RLIMIT_NPROC));
  CHECK(find(r, RLIMIT_NPROC)->value == 40);
  REQUIRE(find(r, RLIMIT_CPU));
  // CPU seconds: the wall limit rounded up, plus one.
  CHECK(find(r, RLIMIT_CPU)->value == 4);
}

TEST_CASE("plan_rlimits: RLIMIT_CPU is never below the wall-clock limit") {
  for (uint32_t wall : {1u, 999u, 1000u, 1001u, 3000u, 900000u}) {
    Limits l;
    l.wall_ms = wall;
    auto r = plan_rlimits(l, false, false);
    REQUIRE(find(r, RLIMIT_CPU));
    rlim_t cpu = find(r, RLIMIT_CPU)->value;
    INFO("wall_ms ", wall);
    CHECK(cpu * 1000 >= wall);
    CHECK(cpu * 1000 <= wall + 2000);
  }
}

TEST_CASE("plan_rlimits: each resource appears once") {
  for (bool cg : {true, false}) {
    auto r = plan_rlimits(Limits{}, cg, false);
    for (size_t i = 0; i < r.size(); i++)
      for (size_t j = i + 1; j < r.size(); j++) CHECK(r[i].resource != r[j].resource);
  }
}
