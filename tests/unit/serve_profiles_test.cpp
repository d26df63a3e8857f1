// The daemon's sandbox profiles (gateway/serve_profiles): one per built-in
// policy, the default first, setsid out of every allowlist where sandboxes
// share a cpu group, and a memory budget that must hold each.
#include "gateway/serve_profiles.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "policies/policy.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {
bool allows(const ProfileInfo& info, const char* call) {
  const auto& allow = info.policy.seccomp.allow;
  return std::find(allow.begin(), allow.end(), std::string(call)) != allow.end();
}
}  // namespace

TEST_CASE("serve profiles: the default policy first, each with its filter and limits") {
  nsbox::test::TempDir cache("profiles");
  ServeConfig c;
  c.default_policy = "strict";
  c.layers = 5;
  auto made = build_serve_profiles(c, "/rootfs", "/stage", cache.path, true);
  REQUIRE_MESSAGE(made, made.error().message());
  const ServeProfiles& p = made.value();
  REQUIRE(p.infos.size() == builtin_policy_names().size());
  CHECK(p.spawn.size() == p.infos.size());
  CHECK(p.memory.size() == p.infos.size());
  CHECK(p.infos[0].name == "strict");
  for (size_t i = 0; i < p.infos.size(); i++) {
    CAPTURE(p.infos[i].name);
    CHECK(p.memory[i] == p.infos[i].policy.limits.memory_bytes);
    CHECK(p.spawn[i].spec.layers == 5);
    CHECK(p.spawn[i].spec.rootfs == "/rootfs");
    CHECK_FALSE(p.spawn[i].bpf.insns.empty());
  }
  c.default_policy = "nonesuch";
  auto bad = build_serve_profiles(c, "/rootfs", "/stage", cache.path, true);
  REQUIRE(!bad);
  CHECK(bad.error().text() == "default_policy \"nonesuch\" is not a built-in policy");
}

TEST_CASE("serve profiles: setsid only where each sandbox has a cpu group of its own") {
  nsbox::test::TempDir cache("profiles");
  ServeConfig c;
  auto grouped = build_serve_profiles(c, "/rootfs", "/stage", cache.path, true);
  auto shared = build_serve_profiles(c, "/rootfs", "/stage", cache.path, false);
  REQUIRE(grouped);
  REQUIRE(shared);
  REQUIRE(grouped.value().infos[0].name == "default");
  CHECK(allows(grouped.value().infos[0], "setsid"));  // the default policy lists it
  for (const auto& info : shared.value().infos) {
    CAPTURE(info.name);
    CHECK_FALSE(allows(info, "setsid"));
  }
  // Only setsid goes: its neighbours in the list stay.
  CHECK(allows(shared.value().infos[0], "setpgid"));
  // Two policies, two filters.
  CHECK(grouped.value().spawn[0].bpf.insns.size() != shared.value().spawn[0].bpf.insns.size());
}

TEST_CASE("serve profiles: a memory budget that cannot hold one sandbox of a policy") {
  nsbox::test::TempDir cache("profiles");
  ServeConfig c;
  c.source = "/etc/nsbox/nsbox.toml";
  c.memory_budget_bytes = 16ull << 20;
  auto r = build_serve_profiles(c, "/rootfs", "/stage", cache.path, true);
  REQUIRE(!r);
  CHECK(r.error().text().starts_with("memory_budget_mb: 16 MiB cannot hold one sandbox of policy"));
  CHECK(r.error().text().find("raise [pool] memory_budget_mb in /etc/nsbox/nsbox.toml") !=
        std::string::npos);
  c.memory_budget_bytes = 0;  // auto
  CHECK(build_serve_profiles(c, "/rootfs", "/stage", cache.path, true));
}
