// The daemon's config parser (gateway/config.cpp): its defaults, every key
// it accepts with its type, and each refusal it makes (CONTRIBUTING.md §1:
// an unknown key, a wrong type or a value out of range is an error naming
// FILE:LINE:COL and the key; a typo never falls back to a default).
#include "gateway/config.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "rootfs/runner_spec.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

uint64_t ram_bytes() {
  struct sysinfo si;
  return sysinfo(&si) == 0 ? uint64_t(si.totalram) * si.mem_unit : 8ull << 30;
}

// The error text for a config that must be refused; "" when it parsed.
std::string refusal(const std::string& text) {
  auto c = parse_serve_config(text, "nsbox.toml");
  return c ? std::string() : c.error().detail;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Every integer key with its table and allowed range.
struct IntKey {
  const char* table;
  const char* key;
  int64_t lo, hi;
};
const IntKey kIntKeys[] = {
    {"server", "max_body_kb", 1, 65536},
    {"server", "max_connections", 8, 65536},
    {"server", "request_timeout_ms", 100, 3600000},
    {"server", "keepalive_timeout_ms", 100, 3600000},
    {"server", "drain_timeout_ms", 0, 3600000},
    {"server", "max_sending_per_address", 1, 65536},
    {"server", "max_head_kb", 1, 1024},
    {"server", "max_headers", 1, 10000},
    {"pool", "blank", 0, 4096},
    {"pool", "max_sandboxes", 1, 32768},
    {"pool", "memory_budget_mb", 0, 1 << 24},
    {"pool", "per_function", 1, 1024},
    {"pool", "idle_timeout_ms", 100, 86400000},
    {"pool", "queue_per_function", 1, 100000},
    {"pool", "queue_total", 1, 1000000},
    {"pool", "queue_timeout_ms", 1, 600000},
    {"pool", "freeze_idle_ms", 0, 600000},
    {"pool", "min_available_mb", 0, 1 << 24},
    {"functions", "log_lines", 0, 1000000},
    {"functions", "log_mb", 1, 1 << 16},
    {"functions", "max_memory_mb", 0, 1 << 24},
};

std::string one_key(const std::string& table, const std::string& key, const std::string& value) {
  return "[" + table + "]\n" + key + " = " + value + "\n";
}

// A config that sets every key to something other than its default.
const char* kEverything = R"([server]
listen = "[::1]:9090"
state_dir = "/srv/nsbox"
keep_versions = 3
token = "admin-token-0123456789"
read_token = "read-token-0123456789"
max_body_kb = 2048
max_buffered_mb = 32
max_connections = 100
rootless = true
public_url = "https://fn.example.com"
batch_scheduling = false
request_timeout_ms = 5000
keepalive_timeout_ms = 7000
drain_timeout_ms = 4000
max_sending_per_address = 3
max_head_kb = 8
max_headers = 20
trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]
allowed_hosts = ["fn.example.com", "10.0.0.5"]

[pool]
blank = 0
max_sandboxes = 16
memory_budget_mb = 4096
per_function = 2
idle_timeout_ms = 1000
queue_per_function = 5
queue_total = 50
queue_timeout_ms = 250
cpu_limits = true
freeze_idle_ms = 0
min_available_mb = 512
psi_some_avg10 = 12.5
isolation = "bwrap"
allow_comparison_isolation = true
layers = 8
factory = "exec"
template_modules = ["json", "urllib.parse"]
template_rotate_after = 50

[functions]
default_policy = "strict"
log_lines = 10
log_mb = 3
max_memory_mb = 256
)";

}  // namespace

TEST_CASE("config: no file at all gives the documented defaults") {
  auto c = parse_serve_config("", kEmbeddedDefaults);
  REQUIRE(c);
  const ServeConfig& d = c.value();
  const uint64_t ram = ram_bytes();
  CHECK(d.source == kEmbeddedDefaults);
  CHECK(d.listen_host == "127.0.0.1");
  CHECK(d.listen_port == 8080);
  CHECK(d.state_dir == "/var/lib/nsbox");
  CHECK(d.keep_versions == 10);
  CHECK(d.token.empty());
  CHECK(d.read_token.empty());
  CHECK(d.max_body_bytes == 6 * kMiB);
  CHECK(d.max_buffered_bytes == 256 * kMiB);
  CHECK(d.max_connections == 1024);
  CHECK(d.request_timeout_ms == 30000);
  CHECK(d.keepalive_timeout_ms == 30000);
  CHECK(d.max_sending_per_address == 32);
  CHECK(d.max_head_bytes == 16u << 10);
  CHECK(d.max_headers == 64);
  CHECK(d.trusted_proxies.empty());
  CHECK_FALSE(d.rootless);
  CHECK(d.public_url.empty());
  CHECK(d.batch_scheduling);
  CHECK(d.blank == 4);
  CHECK(d.max_sandboxes == 256);
  CHECK(d.memory_budget_bytes == 2 * ram);  // 0 = auto: twice the RAM
  CHECK(d.per_function == 4);
  CHECK(d.idle_timeout_ms == 60000);
  CHECK(d.queue_per_function == 64);
  CHECK(d.queue_total == 1024);
  CHECK(d.queue_timeout_ms == 1000);
  CHECK_FALSE(d.cpu_limits);
  CHECK(d.freeze_idle_ms == 5);
  CHECK(d.min_available_bytes == std::max<uint64_t>(ram / 32, 256 * kMiB));  // auto
  CHECK(d.psi_some_avg10 == 0);
  CHECK(d.default_policy == "default");
  CHECK(d.log_lines == 1000);
  CHECK(d.log_bytes == 64 * kMiB);
  CHECK(d.max_memory_bytes == ram / 4);  // auto: a quarter of the RAM
  // Empty tables are the same as none.
  auto e = parse_serve_config("[server]\n[pool]\n[functions]\n", "empty.toml");
  REQUIRE(e);
  CHECK(e.value().listen_port == 8080);
  CHECK(e.value().blank == 4);
  CHECK(e.value().log_lines == 1000);
}

TEST_CASE("config: every key is read, in its unit, into its member") {
  auto c = parse_serve_config(kEverything, "nsbox.toml");
  REQUIRE_MESSAGE(c, (c ? std::string() : c.error().message()));
  const ServeConfig& r = c.value();
  CHECK(r.source == "nsbox.toml");
  CHECK(r.listen_host == "::1");
  CHECK(r.listen_port == 9090);
  CHECK(r.state_dir == "/srv/nsbox");
  CHECK(r.keep_versions == 3);
  CHECK(r.token == "admin-token-0123456789");
  CHECK(r.read_token == "read-token-0123456789");
  CHECK(r.max_body_bytes == 2048u << 10);
  CHECK(r.max_buffered_bytes == 32 * kMiB);
  CHECK(r.max_connections == 100);
  CHECK(r.rootless);
  CHECK(r.public_url == "https://fn.example.com");
  CHECK_FALSE(r.batch_scheduling);
  CHECK(r.request_timeout_ms == 5000);
  CHECK(r.keepalive_timeout_ms == 7000);
  CHECK(r.drain_timeout_ms == 4000);
  CHECK(r.max_sending_per_address == 3);
  CHECK(r.max_head_bytes == 8u << 10);
  CHECK(r.max_headers == 20);
  CHECK(r.trusted_proxies ==
        std::vector<std::string>{"127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"});
  CHECK(r.allowed_hosts == std::vector<std::string>{"fn.example.com", "10.0.0.5"});
  CHECK(r.blank == 0);
  CHECK(r.max_sandboxes == 16);
  CHECK(r.memory_budget_bytes == 4096 * kMiB);
  CHECK(r.per_function == 2);
  CHECK(r.idle_timeout_ms == 1000);
  CHECK(r.queue_per_function == 5);
  CHECK(r.queue_total == 50);
  CHECK(r.queue_timeout_ms == 250);
  CHECK(r.cpu_limits);
  CHECK(r.freeze_idle_ms == 0);
  CHECK(r.min_available_bytes == 512 * kMiB);
  CHECK(r.psi_some_avg10 == 12.5);
  CHECK(r.isolation == Isolation::Bwrap);
  CHECK(r.allow_comparison_isolation);
  CHECK(r.layers == kLayerAll);
  CHECK_FALSE(r.template_factory);
  CHECK(r.template_modules == std::vector<std::string>{"json", "urllib.parse"});
  CHECK(r.template_rotate_after == 50);
  CHECK(r.default_policy == "strict");
  CHECK(r.log_lines == 10);
  CHECK(r.log_bytes == 3 * kMiB);
  CHECK(r.max_memory_bytes == 256 * kMiB);

  // The config above sets every key the parser accepts (config_keys()), so
  // a key added to the parser needs a line here too.
  std::set<std::string> set;
  std::string table, line;
  for (std::istringstream in(kEverything); std::getline(in, line);) {
    if (line.starts_with("["))
      table = line.substr(1, line.size() - 2);
    else if (!line.empty())
      set.insert(table + "." + line.substr(0, line.find(' ')));
  }
  for (const auto& k : config_keys()) CHECK_MESSAGE(set.count(k.table + "." + k.key), k.key);
  CHECK(set.size() == config_keys().size());
}

TEST_CASE("config: changed_keys names each key set alone, and only it") {
  auto defaults = parse_serve_config("", "a.toml");
  REQUIRE(defaults);
  // Each line of kEverything on its own, under its table: a key whose
  // change changed_keys misses, or that shows up as another, fails here.
  // Keys that cannot stand alone bring what they need, and it is expected
  // back too.
  std::string table, line;
  size_t tried = 0;
  for (std::istringstream in(kEverything); std::getline(in, line);) {
    if (line.starts_with("[")) {
      table = line;
      continue;
    }
    if (line.empty()) continue;
    const std::string key = line.substr(0, line.find(' '));
    std::string text = table + "\n" + line + "\n";
    std::vector<std::string> want{key};
    if (key == "isolation" || key == "allow_comparison_isolation") {
      text = "[pool]\nisolation = \"bwrap\"\nallow_comparison_isolation = true\n";
      want = {"isolation", "allow_comparison_isolation"};
    } else if (key == "layers") {
      text = "[pool]\nallow_comparison_isolation = true\nlayers = 3\n";
      want = {"allow_comparison_isolation", "layers"};
    }
    auto c = parse_serve_config(text, "b.toml");
    REQUIRE_MESSAGE(c, key, ": ", (c ? std::string() : c.error().message()));
    CHECK_MESSAGE(changed_keys(defaults.value(), c.value()) == want, key);
    CHECK(changed_keys(c.value(), c.value()).empty());
    tried++;
  }
  CHECK(tried == config_keys().size());
  // What a reload applies: the gateway's and the pool's keys, nothing of
  // the front, the spawners or the store.
  for (const char* k : {"token", "blank", "queue_timeout_ms", "default_policy", "max_memory_mb"})
    CHECK_MESSAGE(reloadable_key(k), k);
  for (const char* k : {"trusted_proxies", "allowed_hosts", "listen", "factory", "cpu_limits",
                        "request_timeout_ms", "log_lines", "nonsense"})
    CHECK_MESSAGE(!reloadable_key(k), k);
}

TEST_CASE("config: an unknown key or table is an error naming file:line:col and the key") {
  std::string e = refusal("[server]\nlisten = \"127.0.0.1:8080\"\nlistne = \"x\"\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:3:1: unknown key \"listne\" in [server]"), e);
  CHECK_MESSAGE(has(e, "expected one of: listen, state_dir"), e);
  e = refusal("[pool]\n  blanks = 2\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:2:3: unknown key \"blanks\" in [pool]"), e);
  e = refusal("[functions]\ndefault_policy = \"strict\"\nmax_memory = 64\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:3:1: unknown key \"max_memory\" in [functions]"), e);
  // A key of another table is unknown in this one.
  e = refusal("[server]\nblank = 1\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:2:1: unknown key \"blank\" in [server]"), e);
  e = refusal("[sever]\nlisten = \":1\"\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:1:2: unknown key \"sever\" in the top level"), e);
  e = refusal("listen = \":1\"\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:1:1: unknown key \"listen\" in the top level"), e);
  // A table that is not one.
  e = refusal("pool = 4\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:1:8: \"pool\" must be a table"), e);
  // Bad TOML: where toml++ stopped.
  e = refusal("[server]\nlisten = \n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:2:10: "), e);
  CHECK_MESSAGE(has(e, "expected value"), e);
  e = refusal("[server\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:1:8: "), e);
}

TEST_CASE("config: a value of the wrong type is refused, naming the key and its type") {
  std::string e = refusal("[server]\nmax_connections = \"100\"\n");
  CHECK_MESSAGE(
      e.starts_with("nsbox.toml:2:19: \"max_connections\" in [server] must be an integer"), e);
  e = refusal("[pool]\nblank = 1.5\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:2:9: \"blank\" in [pool] must be an integer"), e);
  e = refusal("[functions]\nlog_lines = true\n");
  CHECK_MESSAGE(has(e, "\"log_lines\" in [functions] must be an integer"), e);
  e = refusal("[server]\nrootless = 1\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:2:12: \"rootless\" in [server] must be true or false"),
                e);
  e = refusal("[server]\nbatch_scheduling = \"yes\"\n");
  CHECK_MESSAGE(has(e, "\"batch_scheduling\" in [server] must be true or false"), e);
  e = refusal("[pool]\ncpu_limits = 0\n");
  CHECK_MESSAGE(has(e, "\"cpu_limits\" in [pool] must be true or false"), e);
  for (const char* key : {"listen", "state_dir", "token", "read_token", "public_url"}) {
    CAPTURE(key);
    e = refusal(one_key("server", key, "8080"));
    CHECK_MESSAGE(has(e, "nsbox.toml:2:"), e);
    CHECK_MESSAGE(has(e, "\"" + std::string(key) + "\" in [server] must be a string"), e);
  }
  e = refusal("[functions]\ndefault_policy = [\"strict\"]\n");
  CHECK_MESSAGE(has(e, "\"default_policy\" in [functions] must be a string"), e);
  // Every integer key refuses a string, even one of digits.
  for (const auto& k : kIntKeys) {
    CAPTURE(k.key);
    e = refusal(one_key(k.table, k.key, "\"1\""));
    CHECK_MESSAGE(has(e, "\"" + std::string(k.key) + "\" in [" + k.table + "] must be an integer"),
                  e);
  }
}

TEST_CASE("config: each integer key accepts exactly its range") {
  for (const auto& k : kIntKeys) {
    CAPTURE(k.table);
    CAPTURE(k.key);
    for (int64_t good : {k.lo, k.hi}) {
      std::string e = refusal(one_key(k.table, k.key, std::to_string(good)));
      CHECK_MESSAGE(e.empty(), e);
    }
    for (int64_t bad : {k.lo - 1, k.hi + 1}) {
      std::string e = refusal(one_key(k.table, k.key, std::to_string(bad)));
      CHECK_MESSAGE(e.starts_with("nsbox.toml:2:"), e);
      CHECK_MESSAGE(
          has(e, "\"" + std::string(k.key) + "\" in [" + k.table + "] is " + std::to_string(bad) +
                     "; allowed range is " + std::to_string(k.lo) + ".." + std::to_string(k.hi)),
          e);
    }
  }
}

TEST_CASE("config: memory sizes are 0 (auto) or at least a floor") {
  const uint64_t ram = ram_bytes();
  SUBCASE("[pool] memory_budget_mb: 0 or at least 64") {
    auto c = parse_serve_config(one_key("pool", "memory_budget_mb", "0"), "nsbox.toml");
    REQUIRE(c);
    CHECK(c.value().memory_budget_bytes == 2 * ram);
    c = parse_serve_config(one_key("pool", "memory_budget_mb", "64"), "nsbox.toml");
    REQUIRE(c);
    CHECK(c.value().memory_budget_bytes == 64 * kMiB);
    for (const char* v : {"1", "63"}) {
      std::string e = refusal(one_key("pool", "memory_budget_mb", v));
      CHECK_MESSAGE(
          e.starts_with("nsbox.toml:2:20: \"memory_budget_mb\" must be 0 (auto) or at least 64"),
          e);
    }
  }
  SUBCASE("[functions] max_memory_mb: 0 or at least 16") {
    auto c = parse_serve_config(one_key("functions", "max_memory_mb", "0"), "nsbox.toml");
    REQUIRE(c);
    CHECK(c.value().max_memory_bytes == ram / 4);
    c = parse_serve_config(one_key("functions", "max_memory_mb", "16"), "nsbox.toml");
    REQUIRE(c);
    CHECK(c.value().max_memory_bytes == 16 * kMiB);
    for (const char* v : {"1", "15"}) {
      std::string e = refusal(one_key("functions", "max_memory_mb", v));
      CHECK_MESSAGE(
          e.starts_with("nsbox.toml:2:17: \"max_memory_mb\" must be 0 (auto) or at least 16"), e);
    }
  }
  SUBCASE("[pool] min_available_mb: 0 is 1/32 of the RAM, at least 256 MiB") {
    auto c = parse_serve_config(one_key("pool", "min_available_mb", "0"), "nsbox.toml");
    REQUIRE(c);
    CHECK(c.value().min_available_bytes == std::max<uint64_t>(ram / 32, 256 * kMiB));
    c = parse_serve_config(one_key("pool", "min_available_mb", "1"), "nsbox.toml");
    REQUIRE(c);
    CHECK(c.value().min_available_bytes == kMiB);
  }
}

TEST_CASE("config: [pool] psi_some_avg10 is a percentage") {
  for (const char* v : {"0", "0.5", "10", "100", "100.0"}) {
    CAPTURE(v);
    auto c = parse_serve_config(one_key("pool", "psi_some_avg10", v), "nsbox.toml");
    REQUIRE_MESSAGE(c, (c ? std::string() : c.error().message()));
    CHECK(c.value().psi_some_avg10 == std::stod(v));
  }
  for (const char* v : {"-0.1", "-1", "100.5", "101", "nan", "inf", "\"10\"", "true"}) {
    CAPTURE(v);
    std::string e = refusal(one_key("pool", "psi_some_avg10", v));
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:18: \"psi_some_avg10\" in [pool] must be a number "
                                "from 0 (off) to 100 (percent)"),
                  e);
  }
}

TEST_CASE("config: [pool] isolation other than nsbox needs allow_comparison_isolation") {
  auto c = parse_serve_config("", "nsbox.toml");
  REQUIRE(c);
  CHECK(c.value().isolation == Isolation::Nsbox);
  CHECK_FALSE(c.value().allow_comparison_isolation);
  for (const char* m : {"none", "bwrap", "crun", "runc", "docker"}) {
    std::string e = refusal(std::string("[pool]\nisolation = \"") + m + "\"\n");
    CHECK_MESSAGE(has(e, "nsbox.toml:2:"), e);
    CHECK_MESSAGE(has(e, "allow_comparison_isolation = true"), e);
    CHECK(refusal(std::string("[pool]\nisolation = \"") + m +
                  "\"\nallow_comparison_isolation = true\n") == "");
  }
  CHECK(refusal("[pool]\nisolation = \"nsbox\"\n") == "");
  // Fewer layers: nsbox's own sandboxes only, and only when allowed.
  CHECK(refusal("[pool]\nlayers = 3\nallow_comparison_isolation = true\n") == "");
  CHECK(parse_serve_config("[pool]\nlayers = 0\nallow_comparison_isolation = true\n", "x")
            .value()
            .layers == 0);
  std::string l = refusal("[pool]\nlayers = 3\n");
  CHECK_MESSAGE(has(l, "nsbox.toml:2:"), l);
  CHECK_MESSAGE(has(l, "allow_comparison_isolation = true"), l);
  CHECK(has(refusal("[pool]\nlayers = 3\nisolation = \"none\"\nallow_comparison_isolation = "
                    "true\n"),
            "isolation = \"nsbox\""));
  CHECK(has(refusal("[pool]\nlayers = 9\nallow_comparison_isolation = true\n"), "0..8"));
  std::string e = refusal("[pool]\nisolation = \"lxc\"\nallow_comparison_isolation = true\n");
  CHECK_MESSAGE(has(e, "nsbox, none, bwrap, crun, runc, docker"), e);
  CHECK_MESSAGE(has(e, "\"lxc\""), e);
}

TEST_CASE("config: [pool] factory and template_modules") {
  auto c = parse_serve_config("", "nsbox.toml");
  REQUIRE(c);
  CHECK(c.value().template_factory);
  CHECK(c.value().template_modules == default_template_modules());
  CHECK(c.value().template_rotate_after == 1000);
  CHECK_FALSE(parse_serve_config("[pool]\nfactory = \"exec\"\n", "x").value().template_factory);
  std::string f = refusal("[pool]\nfactory = \"zygote\"\n");
  CHECK_MESSAGE(has(f, "nsbox.toml:2:"), f);
  CHECK_MESSAGE(has(f, "\"zygote\""), f);
  CHECK(refusal("[pool]\ntemplate_modules = []\n") == "");
  CHECK(refusal("[pool]\ntemplate_modules = [\"xml.etree.ElementTree\", \"_json\"]\n") == "");
  // Names only: each reaches nsbox-template, joined, so nothing that could
  // be a path, an option or a separator.
  for (const char* bad : {"", "../os", "a,b", "-m", "1abc", "a..b", "a.", ".a", "os path",
                          "json\\n", "\u00e9t\u00e9"}) {
    std::string e = refusal(std::string("[pool]\ntemplate_modules = [\"") + bad + "\"]\n");
    CHECK_MESSAGE(has(e, "nsbox.toml:2:"), bad, " -> ", e);
    CHECK_MESSAGE((has(e, "not a Python module name") || has(e, "holds a control character")), bad,
                  " -> ", e);
  }
  CHECK(has(refusal("[pool]\ntemplate_modules = \"json\"\n"), "array of strings"));
  CHECK(has(refusal("[pool]\ntemplate_modules = [1]\n"), "only strings"));
  CHECK(has(refusal("[pool]\ntemplate_modules = [\"" + std::string(129, 'a') + "\"]\n"),
            "not a Python module name"));
  std::string many = "[pool]\ntemplate_modules = [";
  for (int i = 0; i < 257; i++) many += "\"m" + std::to_string(i) + "\",";
  CHECK(has(refusal(many + "]\n"), "at most 256"));
}

// A misspelt default policy is said where the file says it: at start it
// came only after the token and the rootfs, and a reload kept the old one
// while logging that it had reloaded.
TEST_CASE("config: [functions] default_policy names a built-in policy") {
  CHECK(parse_serve_config("[functions]\ndefault_policy = \"strict\"\n", "x")
            .value()
            .default_policy == "strict");
  const std::string e = refusal("[functions]\ndefault_policy = \"strcit\"\n");
  CHECK_MESSAGE(has(e, "nsbox.toml:2:18: \"default_policy\" \"strcit\" is not a built-in policy"),
                e);
  CHECK_MESSAGE(has(e, "default, strict"), e);
}

TEST_CASE("config: [server] listen is HOST:PORT") {
  SUBCASE("parse_listen") {
    struct Case {
      const char* text;
      const char* host;
      int port;
    };
    for (const Case& t :
         {Case{"127.0.0.1:8080", "127.0.0.1", 8080}, Case{"0.0.0.0:1", "0.0.0.0", 1},
          Case{"[::1]:8080", "::1", 8080}, Case{"[::]:65535", "::", 65535},
          Case{":9000", "127.0.0.1", 9000},  // no host: loopback
          Case{"localhost:80", "localhost", 80}}) {
      CAPTURE(t.text);
      std::string host = "unset";
      int port = -1;
      Status s = parse_listen(t.text, &host, &port);
      REQUIRE_MESSAGE(s, s.error().message());
      CHECK(host == t.host);
      CHECK(port == t.port);
    }
    for (const char* bad :
         {"8080", "", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
          "127.0.0.1:99999999999", "127.0.0.1:80a", "127.0.0.1:-1", "127.0.0.1: 80", "[::1]:",
          // Caught here rather than at bind; short or numeric IPv4 forms
          // would resolve to loopback unrecognised by the Host check.
          "exa mple:80", "[::1:8080", "0x7f.1:8080", "127.1:8080", "-x:80", "a..b:80"}) {
      CAPTURE(bad);
      std::string host = "unset";
      int port = -1;
      Status s = parse_listen(bad, &host, &port);
      REQUIRE_FALSE(s);
      CHECK(s.error().step == "listen");
      CHECK(has(s.error().detail, std::string("\"") + bad + "\""));
      // Nothing is written on failure.
      CHECK(host == "unset");
      CHECK(port == -1);
    }
    std::string host;
    int port = 0;
    CHECK(has(parse_listen("8080", &host, &port).error().detail, "is not HOST:PORT"));
    CHECK(has(parse_listen(":0", &host, &port).error().detail, "bad port"));
    CHECK(has(parse_listen("127.1:80", &host, &port).error().detail, "(e.g. 127.0.0.1)"));
    CHECK(has(parse_listen("[::1:8080", &host, &port).error().detail, "[::1]:8080"));
  }
  SUBCASE("in the config, an error names where the value is") {
    std::string e = refusal("[server]\nlisten = \"127.0.0.1:0\"\n");
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:10: bad port in \"127.0.0.1:0\""), e);
    e = refusal("[server]\nlisten = \"nope\"\n");
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:10: \"nope\" is not HOST:PORT"), e);
  }
}

TEST_CASE("config: [server] trusted_proxies holds addresses and CIDR blocks only") {
  for (const char* ok : {"127.0.0.1", "10.0.0.0/8", "0.0.0.0/0", "192.168.1.7/32", "::1",
                         "fd00::/8", "::/0", "2001:db8::/128"}) {
    CAPTURE(ok);
    auto c = parse_serve_config(std::string("[server]\ntrusted_proxies = [\"") + ok + "\"]\n",
                                "nsbox.toml");
    REQUIRE_MESSAGE(c, (c ? std::string() : c.error().message()));
    CHECK(c.value().trusted_proxies == std::vector<std::string>{ok});
  }
  const std::string want =
      "\"trusted_proxies\" entries must be addresses or CIDR blocks, e.g. \"127.0.0.1\" or "
      "\"10.0.0.0/8\"";
  for (const char* bad : {"\"10.0.0.0/33\"", "\"::1/129\"", "\"10.0.0.0/\"", "\"10.0.0.0/8/8\"",
                          "\"10.0.0.0/x\"", "\"10.0.0.0/0008\"", "\"999.1.1.1\"", "\"10.1\"",
                          "\"proxy.example.com\"", "\"\"", "\" 127.0.0.1\"", "8", "true"}) {
    CAPTURE(bad);
    // The second entry is the bad one: the error points at it.
    std::string e =
        refusal(std::string("[server]\ntrusted_proxies = [\"127.0.0.1\", ") + bad + "]\n");
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:33: " + want), e);
  }
  std::string e = refusal("[server]\ntrusted_proxies = \"127.0.0.1\"\n");
  CHECK_MESSAGE(
      e.starts_with("nsbox.toml:2:19: \"trusted_proxies\" in [server] must be an array of strings"),
      e);
  auto none = parse_serve_config("[server]\ntrusted_proxies = []\n", "nsbox.toml");
  REQUIRE(none);
  CHECK(none.value().trusted_proxies.empty());
}

TEST_CASE("config: [server] state_dir is absolute; tokens are long and distinct") {
  for (const char* bad : {"\"\"", "\"var/lib/nsbox\"", "\"./state\"", "\"~/nsbox\""}) {
    CAPTURE(bad);
    std::string e = refusal(one_key("server", "state_dir", bad));
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:13: \"state_dir\" must be an absolute path"), e);
  }
  for (const char* key : {"token", "read_token"}) {
    CAPTURE(key);
    const std::string k = key;
    // Empty: generated (token) or unused (read_token); 16 characters is enough.
    CHECK(refusal(one_key("server", k, "\"\"")).empty());
    CHECK(refusal(one_key("server", k, "\"0123456789abcdef\"")).empty());
    std::string e = refusal(one_key("server", k, "\"0123456789abcde\""));
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:" + std::to_string(k.size() + 4) + ": \"" + k +
                                "\" must be at least 16 characters"),
                  e);
    // Header values lose their blanks: such a token could never match.
    for (const char* bad : {"\" 0123456789abcdef\"", "\"0123456789abcdef\\r\"",
                            "\"0123456789 abcdef\"", "\"0123456789abcdéf\""}) {
      CAPTURE(bad);
      e = refusal(one_key("server", k, bad));
      CHECK_MESSAGE((has(e, "\"" + k + "\" may hold only printable ASCII characters, no spaces") ||
                     has(e, "\"" + k + "\" in [server] holds a control character (0x0d)")),
                    e);
    }
  }
  std::string e = refusal(
      "[server]\ntoken = \"same-token-0123456789\"\nread_token = \"same-token-0123456789\"\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:3:14: \"read_token\" must differ from \"token\""), e);
}

TEST_CASE("config: a max_body_kb above what can be served is lowered to 6144") {
  for (const char* v : {"6145", "65536"}) {
    CAPTURE(v);
    auto r = parse_serve_config(one_key("server", "max_body_kb", v), "nsbox.toml");
    REQUIRE(r);
    CHECK(r.value().max_body_bytes == 6144u << 10);
  }
  auto kept = parse_serve_config(one_key("server", "max_body_kb", "6144"), "nsbox.toml");
  REQUIRE(kept);
  CHECK(kept.value().max_body_bytes == 6144u << 10);
  auto small = parse_serve_config(one_key("server", "max_body_kb", "64"), "nsbox.toml");
  REQUIRE(small);
  CHECK(small.value().max_body_bytes == 64u << 10);
}

TEST_CASE("config: max_buffered_mb, and never below max_body_kb") {
  auto r = parse_serve_config(one_key("server", "max_buffered_mb", "64"), "nsbox.toml");
  REQUIRE(r);
  CHECK(r.value().max_buffered_bytes == 64 * kMiB);
  auto small =
      parse_serve_config("[server]\nmax_body_kb = 1024\nmax_buffered_mb = 1\n", "nsbox.toml");
  REQUIRE(small);
  CHECK(small.value().max_buffered_bytes == kMiB);
  std::string e = refusal("[server]\nmax_buffered_mb = 4\n");
  CHECK_MESSAGE(e.starts_with("nsbox.toml:2:19: max_buffered_mb (4 MiB) is below max_body_kb "
                              "(6144 KiB)"),
                e);
  CHECK_MESSAGE(e.find("raise max_buffered_mb or lower max_body_kb") != std::string::npos, e);
  e = refusal("[server]\nmax_buffered_mb = 0\n");
  CHECK_MESSAGE(e.find("max_buffered_mb") != std::string::npos, e);
}

TEST_CASE("config: load_serve_config reads the named file and names it in errors") {
  char path[] = "/tmp/nsbox-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "[server]\nlisten = \"127.0.0.1:9999\"\n[pool]\nblank = 5000\n";
  REQUIRE(write(fd, text.data(), text.size()) == ssize_t(text.size()));
  close(fd);
  auto c = load_serve_config(path);
  unlink(path);
  REQUIRE_FALSE(c);
  CHECK_MESSAGE(
      c.error().detail.starts_with(std::string(path) + ":4:9: \"blank\" in [pool] is 5000"),
      c.error().detail);

  auto missing = load_serve_config("/nonexistent/nsbox.toml");
  REQUIRE_FALSE(missing);
  CHECK_MESSAGE(has(missing.error().message(), "/nonexistent/nsbox.toml"),
                missing.error().message());
}

// A NUL cut state_dir short in every C call ("/var/lib/nsbox\0x" was
// /var/lib/nsbox); a CR LF in public_url went into every deploy's answer.
// Errors quote keys and values with their control characters escaped, so
// that a file cannot forge a log line.
TEST_CASE("config: no control characters in values; none printed raw in errors") {
  for (const char* text : {"[server]\nstate_dir = \"/var/lib/nsbox\\u0000x\"\n",
                           "[server]\npublic_url = \"http://x.org/\\r\\nSet-Cookie: a=b\"\n",
                           "[server]\nlisten = \"127.0.0.1:80\\u001b\"\n",
                           "[pool]\ntemplate_modules = [\"json\", \"a\\tb\"]\n",
                           "[server]\ntrusted_proxies = [\"10.0.0.1\\u0000junk\"]\n",
                           "[server]\nallowed_hosts = [\"fn.example.org\\u0000x\"]\n",
                           "[functions]\ndefault_policy = \"strict\\u007f\"\n"}) {
    CAPTURE(text);
    const std::string e = refusal(text);
    CHECK_MESSAGE(has(e, "holds a control character (0x"), e);
    CHECK(has(e, "nsbox.toml:"));
    for (unsigned char c : e) CHECK((c >= 0x20 && c != 0x7f));
  }
  const std::string e =
      refusal("[server]\n\"\\u001b[31mX\\nnsbox serve: listening on http://0.0.0.0:80\" = 1\n");
  CHECK_MESSAGE(has(e, "unknown key \"\\x1b[31mX\\x0ansbox serve"), e);
  for (unsigned char c : e) CHECK((c >= 0x20 && c != 0x7f));
}

// Above ASCII, what a terminal obeys or shows reordered: a C1 CSI (U+009B
// clears a screen in 8-bit mode) or a bidi override, in a value or a key.
TEST_CASE("config: no C1 control or bidi override in values; none printed raw in errors") {
  for (const char* text : {"[server]\npublic_url = \"http://x/\\u009b2J\"\n",
                           "[functions]\ndefault_policy = \"\\u202estrict\"\n",
                           "[server]\nallowed_hosts = [\"fn.example.org\\u2066\"]\n"}) {
    CAPTURE(text);
    const std::string e = refusal(text);
    CHECK_MESSAGE(has(e, "holds a C1 control, a bidi override or invalid UTF-8"),
                  (std::string(text) + " -> " + e));
    CHECK(e.find("\xc2\x9b") == std::string::npos);
    CHECK(e.find("\xe2\x80\xae") == std::string::npos);
    CHECK(e.find("\xe2\x81\xa6") == std::string::npos);
  }
  const std::string e = refusal("[server]\n\"\\u009b2J\\u202e\" = 1\n");
  CHECK_MESSAGE(has(e, "unknown key"), e);
  CHECK(e.find("\xc2\x9b") == std::string::npos);
  CHECK(e.find("\xe2\x80\xae") == std::string::npos);
  // Other UTF-8 is text: a description may be in any language.
  CHECK(refusal("[server]\npublic_url = \"http://caf\u00e9.example/\"\n").find("C1") ==
        std::string::npos);
}

// Without --config: the default path when nothing is there, else that
// file, and one that cannot be read is an error rather than the defaults
// (a reload of a daemon whose file went would have dropped its tokens).
TEST_CASE("config: without --config, only a missing default file means the defaults") {
  nsbox::test::TempDir t("config-test");
  const std::string file = t.path + "/nsbox.toml";
  auto absent = load_serve_config("", file);
  REQUIRE(absent);
  CHECK(absent.value().source == kEmbeddedDefaults);
  REQUIRE(symlink((t.path + "/gone.toml").c_str(), file.c_str()) == 0);  // dangling
  auto dangling = load_serve_config("", file);
  REQUIRE_FALSE(dangling);
  CHECK_MESSAGE(has(dangling.error().message(), file), dangling.error().message());
  CHECK(has(dangling.error().message(), "name another with --config FILE"));
  REQUIRE(unlink(file.c_str()) == 0);
  std::ofstream(file) << "[server]\nlisten = \"127.0.0.1:9999\"\n";
  auto present = load_serve_config("", file);
  REQUIRE(present);
  CHECK(present.value().source == file);
  CHECK(present.value().listen_port == 9999);
}

TEST_CASE("config: [server] allowed_hosts holds host names, addresses or \"*\"") {
  for (const char* ok :
       {"fn.example.org", "10.0.0.5", "[::1]", "fn.example.org:8443", "*", "FN.Example.org."}) {
    CAPTURE(ok);
    auto c = parse_serve_config(std::string("[server]\nallowed_hosts = [\"") + ok + "\"]\n",
                                "nsbox.toml");
    REQUIRE_MESSAGE(c, (c ? std::string() : c.error().message()));
    CHECK(c.value().allowed_hosts == std::vector<std::string>{ok});
  }
  const std::string want = "\"allowed_hosts\" entries must be host names or addresses";
  for (const char* bad : {"\"\"", "\"a b\"", "\"x/y\"", "\"::1\"", "\"[::1\"", "\"*.example.org\"",
                          "\"a@b\"", "8", "true"}) {
    CAPTURE(bad);
    std::string e =
        refusal(std::string("[server]\nallowed_hosts = [\"localhost\", ") + bad + "]\n");
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:31: " + want), e);
  }
  std::string e = refusal("[server]\nallowed_hosts = \"x\"\n");
  CHECK_MESSAGE(
      e.starts_with("nsbox.toml:2:17: \"allowed_hosts\" in [server] must be an array of strings"),
      e);
}

TEST_CASE("config: [server] public_url is an http or https URL with a host") {
  for (const char* ok :
       {"https://fn.example.com", "http://10.0.0.5:8080/base", "https://[::1]:8443"}) {
    auto c =
        parse_serve_config(std::string("[server]\npublic_url = \"") + ok + "\"\n", "nsbox.toml");
    CHECK_MESSAGE(c, ok);
  }
  for (const char* bad : {"fn.example.com", "ftp://fn.example.com", "https://", "https:///x",
                          "https://a b/", "http://[::1/"}) {
    CAPTURE(bad);
    std::string e = refusal(std::string("[server]\npublic_url = \"") + bad + "\"\n");
    CHECK_MESSAGE(e.starts_with("nsbox.toml:2:14: \"public_url\" must be http://HOST"), e);
  }
}

TEST_CASE("config: a config holding a token says so when others may read it") {
  char path[] = "/tmp/nsbox-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "[server]\ntoken = \"0123456789abcdef0123\"\n";
  REQUIRE(write(fd, text.data(), text.size()) == ssize_t(text.size()));
  close(fd);
  auto read = [&](mode_t mode) {
    REQUIRE(chmod(path, mode) == 0);
    auto c = load_serve_config(path);
    REQUIRE(c);
    return config_file_warning(c.value());
  };
  CHECK(read(0600).empty());
  std::string w = read(0644);
  CHECK_MESSAGE(
      has(w, "sets token and other users may read it (mode 0644): chmod 600 " + std::string(path)),
      w);
  CHECK(has(read(0640), "mode 0640"));
  // Without a secret, being readable is fine.
  REQUIRE(truncate(path, 0) == 0);
  CHECK(read(0644).empty());
  auto defaults = parse_serve_config("", "<embedded defaults>");
  REQUIRE(defaults);
  CHECK(config_file_warning(defaults.value()).empty());
  unlink(path);
}

TEST_CASE("config: a config another user could change or replace is refused") {
  nsbox::test::TempDir tmp("config-owner");
  const std::string dir = tmp.path + "/etc";
  REQUIRE(mkdir(dir.c_str(), 0755) == 0);
  const std::string path = dir + "/nsbox.toml";
  std::ofstream(path) << "[server]\nlisten = \"127.0.0.1:8080\"\n";
  auto check = [&](mode_t mode) {
    REQUIRE(chmod(path.c_str(), mode) == 0);
    auto c = load_serve_config(path);
    return c ? std::string() : c.error().text();
  };
  CHECK(check(0644).empty());
  CHECK(check(0600).empty());
  std::string e = check(0646);
  CHECK_MESSAGE(has(e, "(mode 0646) may be changed by other users"), e);
  CHECK_MESSAGE(has(e, "chmod go-w " + path), e);
  // Group write: another group's is other users', root's group is root,
  // and the caller's private group is the caller (umask 002), as for the
  // directories above (check_private_ancestors).
  if (geteuid() == 0) {
    REQUIRE(chown(path.c_str(), 0, 65534) == 0);
    CHECK(has(check(0664), "(mode 0664) may be changed by other users"));
    REQUIRE(chown(path.c_str(), 0, 0) == 0);
    CHECK(check(0664).empty());
  }
  // A directory above it that others may write: they could rename their
  // own file over it.
  REQUIRE(chmod(dir.c_str(), 0777) == 0);
  e = check(0644);
  CHECK_MESSAGE(has(e, dir + " (owner uid"), e);
  CHECK_MESSAGE(has(e, "lets another user rename or replace"), e);
  REQUIRE(chmod(dir.c_str(), 0755) == 0);
  // Owned by someone else.
  if (geteuid() == 0) {
    REQUIRE(chown(path.c_str(), 65534, 65534) == 0);
    e = check(0644);
    CHECK_MESSAGE(has(e, "belongs to uid 65534"), e);
    CHECK_MESSAGE(has(e, "chown root " + path), e);
    REQUIRE(chown(path.c_str(), 0, 0) == 0);
    // A link another user owns is not followed.
    const std::string link = dir + "/link.toml";
    REQUIRE(symlink(path.c_str(), link.c_str()) == 0);
    REQUIRE(lchown(link.c_str(), 65534, 65534) == 0);
    auto c = load_serve_config(link);
    REQUIRE_FALSE(c);
    CHECK_MESSAGE(has(c.error().text(), "symbolic link owned by uid 65534"), c.error().text());
  }
  // An ACL that lets nobody write: the mode alone (0664, root's group)
  // passes, the ACL entry does not; on the file, then on a directory above.
  if (geteuid() == 0) {
    auto acl_for_nobody = [](const std::string& p) {
      // version 2; USER_OBJ rw, USER 65534 rw, GROUP_OBJ r, MASK rw, OTHER r
      const uint32_t e[][2] = {{0x01 | 6u << 16, 0xffffffff},
                               {0x02 | 6u << 16, 65534},
                               {0x04 | 4u << 16, 0xffffffff},
                               {0x10 | 6u << 16, 0xffffffff},
                               {0x20 | 4u << 16, 0xffffffff}};
      std::string blob(4, '\0');
      blob[0] = 2;
      for (const auto& x : e)
        for (uint32_t v : x)
          for (int b = 0; b < 4; b++) blob.push_back(char((v >> (8 * b)) & 0xff));
      return setxattr(p.c_str(), "system.posix_acl_access", blob.data(), blob.size(), 0);
    };
    REQUIRE(chmod(path.c_str(), 0644) == 0);
    REQUIRE_MESSAGE(acl_for_nobody(path) == 0, strerror(errno));
    e = check(0664);
    CHECK_MESSAGE(has(e, "has an ACL entry that lets another user change it"), e);
    CHECK_MESSAGE(has(e, "setfacl -b " + path), e);
    REQUIRE(removexattr(path.c_str(), "system.posix_acl_access") == 0);
    CHECK(check(0644).empty());
    REQUIRE(chmod(dir.c_str(), 0755) == 0);
    REQUIRE(acl_for_nobody(dir) == 0);
    e = check(0644);
    CHECK_MESSAGE(has(e, "an ACL entry lets another user write"), e);
    REQUIRE(removexattr(dir.c_str(), "system.posix_acl_access") == 0);
    REQUIRE(chmod(dir.c_str(), 0755) == 0);
  }
  // A relative path is checked where it leads.
  char cwd[PATH_MAX];
  REQUIRE(getcwd(cwd, sizeof cwd));
  REQUIRE(chdir(dir.c_str()) == 0);
  auto rel = load_serve_config("nsbox.toml");
  REQUIRE(chdir(cwd) == 0);
  REQUIRE(rel);
  REQUIRE(chmod(path.c_str(), 0666) == 0);
  REQUIRE(chdir(dir.c_str()) == 0);
  auto rel_bad = load_serve_config("nsbox.toml");
  REQUIRE(chdir(cwd) == 0);
  REQUIRE_FALSE(rel_bad);
  CHECK_MESSAGE(has(rel_bad.error().text(), "(mode 0666) may be changed by other users"),
                rel_bad.error().text());
}

// Valid values that together, or on this machine, do not do what was meant:
// one line each, naming the keys; the defaults give none.
TEST_CASE("config: values that defeat each other are warned of, one line each") {
  const uint64_t ram = 4ull << 30;
  auto warnings = [&](const std::string& text) {
    auto c = parse_serve_config(text, "nsbox.toml");
    REQUIRE_MESSAGE(c, c.error().message());
    return config_value_warnings(c.value(), ram);
  };
  CHECK(warnings("").empty());
  CHECK(warnings("[pool]\nblank = 8\nmax_sandboxes = 8\nmin_available_mb = 4095\n"
                 "[server]\ndrain_timeout_ms = 25000\ntrusted_proxies = [\"10.0.0.0/8\"]\n")
            .empty());
  auto one = [&](const std::string& text, const std::string& part) {
    auto w = warnings(text);
    REQUIRE(w.size() == 1);
    CHECK_MESSAGE(has(w[0], part), w[0]);
    CHECK(w[0].rfind("nsbox.toml: ", 0) == 0);
  };
  one("[pool]\nblank = 9\nmax_sandboxes = 8\n", "[pool] blank = 9 is more than max_sandboxes = 8");
  one("[pool]\nmin_available_mb = 4096\n",
      "min_available_mb = 4096 is not below this machine's memory (4096 MB)");
  one("[server]\ntrusted_proxies = [\"127.0.0.1\", \"0.0.0.0/0\"]\n",
      "trusted_proxies holds \"0.0.0.0/0\", which every client matches");
  one("[server]\ntrusted_proxies = [\"::/0\"]\n", "\"::/0\", which every client matches");
  one("[server]\ndrain_timeout_ms = 60000\n", "raise TimeoutStopSec above it too");
  CHECK(machine_ram_bytes() > 0);
}
