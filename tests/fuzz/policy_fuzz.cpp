// The policy reader (policies/policy.cpp on toml++): `nsbox run --policy
// FILE` reads any file it is given, and a damaged or truncated policy must
// give an error, never a crash. Checked: no crash, no exception escapes,
// every error names the file, and an accepted policy respects the
// documented ranges. Also checks parse_toml's depth pass against toml++:
// whatever it lets through is no deeper than kMaxTomlDepth.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "policies/policy.hpp"
#include "policies/toml_reader.hpp"

#define FUZZ_CHECK(cond) \
  if (!(cond)) __builtin_trap()

namespace {

int depth(const toml::node& n) {
  int d = 0;
  if (auto t = n.as_table())
    for (auto&& [k, v] : *t) d = std::max(d, depth(v));
  if (auto a = n.as_array())
    for (auto&& v : *a) d = std::max(d, depth(v));
  return d + 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    toml::table t = nsbox::parse_toml(text, "fuzz.toml");
    // The root is level 0: the scan counts the levels below it.
    FUZZ_CHECK(depth(t) - 1 <= nsbox::kMaxTomlDepth);
  } catch (const nsbox::TomlError&) {
  } catch (const toml::parse_error&) {
  }

  auto p = nsbox::parse_policy(text, "fuzz.toml");
  if (!p) {
    FUZZ_CHECK(p.error().message().find("fuzz.toml") != std::string::npos);
    return 0;
  }
  const nsbox::Policy& pol = p.value();
  FUZZ_CHECK(!pol.seccomp.allow.empty());
  FUZZ_CHECK(pol.limits.memory_bytes >= (16ull << 20) && pol.limits.memory_bytes <= (64ull << 30));
  FUZZ_CHECK(pol.limits.pids >= 1 && pol.limits.pids <= 32768);
  FUZZ_CHECK(pol.limits.wall_ms >= 1 && pol.limits.wall_ms <= 900000);
  return 0;
}
