// The README's config reference (the ```toml block of its `nsbox serve`
// section) is checked against the real parser: it must parse, list every key
// the parser accepts, and give each one its default. A key the parser accepts
// without a line in the README, or a README value that drifts from the code,
// fails here.
#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gateway/config.hpp"
#include "policies/toml_reader.hpp"

using namespace nsbox;

namespace {

// meson runs the unit tests from the source root. Run by hand from
// elsewhere, __FILE__ leads there: meson gives the compiler this file's path
// relative to the build dir (the binary's ../..) or absolute.
std::string read_readme() {
  const std::string here = __FILE__;
  const std::string suffix = "tests/unit/readme_config_test.cpp";
  std::vector<std::string> candidates = {"README.md"};
  if (here.ends_with(suffix)) {
    const std::string root = here.substr(0, here.size() - suffix.size());
    if (root.starts_with("/")) {
      candidates.push_back(root + "README.md");
    } else {
      char exe[4096];
      ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
      if (n > 0) {
        std::string dir(exe, size_t(n));
        dir = dir.substr(0, dir.rfind('/'));  // <build>/tests/unit
        candidates.push_back(dir + "/../../" + root + "README.md");
      }
    }
  }
  for (const auto& path : candidates) {
    std::ifstream in(path);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    if (text.starts_with("# nsbox\n")) return text;
  }
  return "";
}

// The first ```toml block after the "## `nsbox serve`" heading and before the
// next "## " heading; "" when there is none.
std::string serve_config_block(const std::string& readme) {
  size_t section = readme.find("\n## `nsbox serve`\n");
  if (section == std::string::npos) return "";
  size_t section_end = readme.find("\n## ", section + 1);
  size_t open = readme.find("\n```toml\n", section);
  if (open == std::string::npos || open > section_end) return "";
  size_t body = open + 9;
  size_t close = readme.find("\n```\n", body);
  if (close == std::string::npos || close > section_end) return "";
  return readme.substr(body, close + 1 - body);
}

// "table.key" for every key the parser accepts that the block does not set.
std::vector<std::string> missing_keys(const std::string& block) {
  toml::table root = parse_toml(block, "README.md");
  std::vector<std::string> missing;
  for (const auto& k : config_keys()) {
    const toml::table* t = root[k.table].as_table();
    if (!t || !t->contains(k.key)) missing.push_back(k.table + "." + k.key);
  }
  return missing;
}

}  // namespace

TEST_CASE("README: the nsbox serve config block is what the parser reads") {
  const std::string readme = read_readme();
  REQUIRE_MESSAGE(!readme.empty(), "README.md not found (run from the source root)");
  const std::string block = serve_config_block(readme);
  REQUIRE_MESSAGE(!block.empty(), "no ```toml block in README.md's `nsbox serve` section");

  // (a) The real parser accepts it: no unknown key, type or range error.
  auto parsed = parse_serve_config(block, "README.md");
  REQUIRE_MESSAGE(parsed, (parsed ? std::string() : parsed.error().message()));

  // (b) Every key the parser accepts is listed.
  REQUIRE(!config_keys().empty());
  for (const auto& k : missing_keys(block))
    FAIL_CHECK("README.md's config block lacks " << k << " (gateway/config.cpp accepts it)");

  // (c) Each listed value is the default: the block parses to what no file
  // at all parses to.
  auto defaults = parse_serve_config("", "<embedded defaults>");
  REQUIRE(defaults);
  const ServeConfig& r = parsed.value();
  const ServeConfig& d = defaults.value();
  CHECK(r.listen_host == d.listen_host);
  CHECK(r.listen_port == d.listen_port);
  CHECK(r.state_dir == d.state_dir);
  CHECK(r.token == d.token);
  CHECK(r.read_token == d.read_token);
  CHECK(r.max_body_bytes == d.max_body_bytes);
  CHECK(r.max_connections == d.max_connections);
  CHECK(r.request_timeout_ms == d.request_timeout_ms);
  CHECK(r.keepalive_timeout_ms == d.keepalive_timeout_ms);
  CHECK(r.drain_timeout_ms == d.drain_timeout_ms);
  CHECK(r.max_sending_per_address == d.max_sending_per_address);
  CHECK(r.max_head_bytes == d.max_head_bytes);
  CHECK(r.max_headers == d.max_headers);
  CHECK(r.trusted_proxies == d.trusted_proxies);
  CHECK(r.rootless == d.rootless);
  CHECK(r.public_url == d.public_url);
  CHECK(r.batch_scheduling == d.batch_scheduling);
  CHECK(r.blank == d.blank);
  CHECK(r.max_sandboxes == d.max_sandboxes);
  CHECK(r.memory_budget_bytes == d.memory_budget_bytes);
  CHECK(r.per_function == d.per_function);
  CHECK(r.idle_timeout_ms == d.idle_timeout_ms);
  CHECK(r.queue_per_function == d.queue_per_function);
  CHECK(r.queue_total == d.queue_total);
  CHECK(r.queue_timeout_ms == d.queue_timeout_ms);
  CHECK(r.cpu_limits == d.cpu_limits);
  CHECK(r.freeze_idle_ms == d.freeze_idle_ms);
  CHECK(r.min_available_bytes == d.min_available_bytes);
  CHECK(r.psi_some_avg10 == d.psi_some_avg10);
  CHECK(r.default_policy == d.default_policy);
  CHECK(r.log_lines == d.log_lines);
  CHECK(r.log_bytes == d.log_bytes);
  CHECK(r.max_memory_bytes == d.max_memory_bytes);
}

TEST_CASE("README: the key check notices a key taken out of the block") {
  const std::string block = serve_config_block(read_readme());
  REQUIRE(!block.empty());
  CHECK(missing_keys(block).empty());
  for (const auto& k : config_keys()) {
    // Drop the line that sets k.key (keys are unique across the block's
    // tables today; the check below would say so if that changed).
    std::string cut;
    std::istringstream in(block);
    int dropped = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(k.key + " ") || line.starts_with(k.key + "=")) {
        dropped++;
        continue;
      }
      cut += line + "\n";
    }
    CAPTURE(k.key);
    REQUIRE(dropped == 1);
    CHECK(missing_keys(cut) == std::vector<std::string>{k.table + "." + k.key});
  }
}

TEST_CASE("README: the SIGHUP paragraph names exactly the keys a reload applies") {
  const std::string readme = read_readme();
  const size_t from = readme.find("reloads the config file:");
  REQUIRE(from != std::string::npos);
  const size_t to = readme.find("apply at once", from);
  REQUIRE(to != std::string::npos);
  const std::string said = readme.substr(from, to - from);
  for (const auto& k : config_keys()) {
    CAPTURE(k.key);
    CHECK((said.find("`" + k.key + "`") != std::string::npos) == reloadable_key(k.key));
  }
}
