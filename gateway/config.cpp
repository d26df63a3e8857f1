#include "gateway/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <fstream>
#include <sstream>

#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "gateway/host_check.hpp"
#include "gateway/http_parse.hpp"
#include "policies/policy.hpp"
#include "policies/toml_reader.hpp"
#include "policies/units.hpp"
#include "rootfs/runner_spec.hpp"
#include "sandbox/framing.hpp"

namespace nsbox {

bool token_chars_ok(const std::string& t) {
  for (unsigned char ch : t)
    if (ch <= 0x20 || ch >= 0x7f) return false;
  return true;
}

namespace {

// A module a template imports: dotted identifiers of at most 128 characters
// (no path, no option: the list reaches nsbox-template's command line).
bool valid_module_name(const std::string& m) {
  if (m.empty() || m.size() > 128) return false;
  bool start = true;
  for (char c : m) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (c == '.') {
      if (start) return false;
      start = true;
    } else if (alpha || (digit && !start)) {
      start = false;
    } else {
      return false;
    }
  }
  return !start;
}

// The keys each table accepts; check_keys refuses any other.
const std::vector<std::string> kServerKeys = {"listen",
                                              "state_dir",
                                              "keep_versions",
                                              "token",
                                              "read_token",
                                              "max_body_kb",
                                              "max_buffered_mb",
                                              "max_connections",
                                              "rootless",
                                              "public_url",
                                              "batch_scheduling",
                                              "request_timeout_ms",
                                              "keepalive_timeout_ms",
                                              "drain_timeout_ms",
                                              "max_sending_per_address",
                                              "max_head_kb",
                                              "max_headers",
                                              "trusted_proxies",
                                              "allowed_hosts"};
const std::vector<std::string> kPoolKeys = {"blank",
                                            "max_sandboxes",
                                            "memory_budget_mb",
                                            "per_function",
                                            "idle_timeout_ms",
                                            "queue_per_function",
                                            "queue_total",
                                            "queue_timeout_ms",
                                            "cpu_limits",
                                            "freeze_idle_ms",
                                            "min_available_mb",
                                            "psi_some_avg10",
                                            "isolation",
                                            "allow_comparison_isolation",
                                            "layers",
                                            "factory",
                                            "template_modules",
                                            "template_rotate_after"};
const std::vector<std::string> kFunctionsKeys = {"default_policy", "log_lines", "log_mb",
                                                 "max_memory_mb"};

}  // namespace

std::vector<ConfigKey> config_keys() {
  std::vector<ConfigKey> keys;
  for (const auto& [table, list] :
       {std::pair{"server", &kServerKeys}, std::pair{"pool", &kPoolKeys},
        std::pair{"functions", &kFunctionsKeys}})
    for (const auto& k : *list) keys.push_back({table, k});
  return keys;
}

std::vector<std::string> changed_keys(const ServeConfig& a, const ServeConfig& b) {
  // One line per key: config_test sets each key alone and expects exactly
  // that key back, so a key added to the parser and not here fails there.
  const std::pair<const char*, bool> keys[] = {
      {"listen", a.listen_host != b.listen_host || a.listen_port != b.listen_port},
      {"state_dir", a.state_dir != b.state_dir},
      {"keep_versions", a.keep_versions != b.keep_versions},
      {"token", a.token != b.token},
      {"read_token", a.read_token != b.read_token},
      {"max_body_kb", a.max_body_bytes != b.max_body_bytes},
      {"max_buffered_mb", a.max_buffered_bytes != b.max_buffered_bytes},
      {"max_connections", a.max_connections != b.max_connections},
      {"rootless", a.rootless != b.rootless},
      {"public_url", a.public_url != b.public_url},
      {"batch_scheduling", a.batch_scheduling != b.batch_scheduling},
      {"request_timeout_ms", a.request_timeout_ms != b.request_timeout_ms},
      {"keepalive_timeout_ms", a.keepalive_timeout_ms != b.keepalive_timeout_ms},
      {"drain_timeout_ms", a.drain_timeout_ms != b.drain_timeout_ms},
      {"max_sending_per_address", a.max_sending_per_address != b.max_sending_per_address},
      {"max_head_kb", a.max_head_bytes != b.max_head_bytes},
      {"max_headers", a.max_headers != b.max_headers},
      {"trusted_proxies", a.trusted_proxies != b.trusted_proxies},
      {"allowed_hosts", a.allowed_hosts != b.allowed_hosts},
      {"blank", a.blank != b.blank},
      {"max_sandboxes", a.max_sandboxes != b.max_sandboxes},
      {"memory_budget_mb", a.memory_budget_bytes != b.memory_budget_bytes},
      {"per_function", a.per_function != b.per_function},
      {"idle_timeout_ms", a.idle_timeout_ms != b.idle_timeout_ms},
      {"queue_per_function", a.queue_per_function != b.queue_per_function},
      {"queue_total", a.queue_total != b.queue_total},
      {"queue_timeout_ms", a.queue_timeout_ms != b.queue_timeout_ms},
      {"cpu_limits", a.cpu_limits != b.cpu_limits},
      {"freeze_idle_ms", a.freeze_idle_ms != b.freeze_idle_ms},
      {"min_available_mb", a.min_available_bytes != b.min_available_bytes},
      {"psi_some_avg10", a.psi_some_avg10 != b.psi_some_avg10},
      {"isolation", a.isolation != b.isolation},
      {"allow_comparison_isolation", a.allow_comparison_isolation != b.allow_comparison_isolation},
      {"layers", a.layers != b.layers},
      {"factory", a.template_factory != b.template_factory},
      {"template_modules", a.template_modules != b.template_modules},
      {"template_rotate_after", a.template_rotate_after != b.template_rotate_after},
      {"default_policy", a.default_policy != b.default_policy},
      {"log_lines", a.log_lines != b.log_lines},
      {"log_mb", a.log_bytes != b.log_bytes},
      {"max_memory_mb", a.max_memory_bytes != b.max_memory_bytes},
  };
  std::vector<std::string> out;
  for (const auto& [key, changed] : keys)
    if (changed) out.push_back(key);
  return out;
}

bool reloadable_key(const std::string& key) {
  // What SIGHUP hands to the gateway (Gateway::reload) and the pool
  // (PoolLimits); the README's reload paragraph names the same keys.
  static const char* const kReloadable[] = {"token",
                                            "read_token",
                                            "default_policy",
                                            "queue_timeout_ms",
                                            "memory_budget_mb",
                                            "max_memory_mb",
                                            "blank",
                                            "max_sandboxes",
                                            "per_function",
                                            "idle_timeout_ms",
                                            "queue_per_function",
                                            "queue_total",
                                            "freeze_idle_ms",
                                            "min_available_mb",
                                            "psi_some_avg10"};
  for (const char* k : kReloadable)
    if (key == k) return true;
  return false;
}

Status parse_listen(const std::string& text, std::string* host, int* port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos)
    return make_error("listen", "\"" + text + "\" is not HOST:PORT (e.g. 127.0.0.1:8080)");
  std::string h = text.substr(0, colon), p = text.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) h = "127.0.0.1";
  // An address as inet_pton writes it, or a host name: caught here, with
  // the file's line, rather than at bind after the rootfs is built; and no
  // 127.1 or 0x7f.0.0.1, which resolve to loopback but would not be taken
  // for it by the loopback-only Host check.
  in_addr a4;
  in6_addr a6;
  const bool v4 = inet_pton(AF_INET, h.c_str(), &a4) == 1,
             v6 = inet_pton(AF_INET6, h.c_str(), &a6) == 1;
  if (!v4 && !v6) {
    if (inet_aton(h.c_str(), &a4) != 0)
      return make_error("listen", "\"" + h + "\" in \"" + text +
                                      "\" is an IPv4 address in a short or numeric form: write "
                                      "it as four decimal numbers (e.g. 127.0.0.1)");
    const bool name_chars = h.find_first_not_of(
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789.-") == std::string::npos;
    if (!name_chars || h.front() == '.' || h.front() == '-' || h.find("..") != std::string::npos ||
        h.size() > 253)
      return make_error("listen", "\"" + h + "\" in \"" + text +
                                      "\" is neither an address nor a host name (IPv6 goes in "
                                      "brackets: [::1]:8080)");
  }
  int v = 0;
  for (char c : p) {
    if (c < '0' || c > '9' || v > 65535)
      return make_error("listen", "bad port in \"" + text + "\"");
    v = v * 10 + (c - '0');
  }
  if (p.empty() || v < 1 || v > 65535) return make_error("listen", "bad port in \"" + text + "\"");
  *host = h;
  *port = v;
  return {};
}

Result<ServeConfig> parse_serve_config(const std::string& text, const std::string& source) {
  ServeConfig c;
  c.source = source;
  TomlReader r(source);
  try {
    toml::table root = parse_toml(text, source);
    r.check_keys(root, "the top level", {"server", "pool", "functions"});
    const toml::table& s = r.table(root, "server", "server", false);
    const std::string S = "[server]";
    r.check_keys(s, S, kServerKeys);
    std::string listen = r.string(s, "listen", S, "127.0.0.1:8080");
    if (Status st = parse_listen(listen, &c.listen_host, &c.listen_port); !st)
      r.fail(s.get("listen")->source(), st.error().detail);
    c.state_dir = r.string(s, "state_dir", S, c.state_dir);
    if (c.state_dir.empty() || c.state_dir[0] != '/')
      r.fail(s.get("state_dir")->source(), "\"state_dir\" must be an absolute path");
    // A token is compared with a header value, which loses its surrounding
    // blanks: one with blanks or control characters could never match.
    for (const char* key : {"token", "read_token"}) {
      std::string t = r.string(s, key, S, "");
      if (!t.empty() && t.size() < 16)
        r.fail(s.get(key)->source(), "\"" + std::string(key) + "\" must be at least 16 characters");
      if (!token_chars_ok(t))
        r.fail(s.get(key)->source(),
               "\"" + std::string(key) + "\" may hold only printable ASCII characters, no spaces");
      (std::string(key) == "token" ? c.token : c.read_token) = t;
    }
    if (!c.read_token.empty() && c.read_token == c.token)
      r.fail(s.get("read_token")->source(), "\"read_token\" must differ from \"token\"");
    int64_t body_kb = int64_t(c.max_body_bytes >> 10), conns = c.max_connections;
    // No body beyond the runner protocol's payload (an event) can be served;
    // a larger limit would only buffer more for clients not yet refused. A
    // larger value (accepted before) is lowered, said, not refused: a config
    // that worked keeps working.
    c.max_body_bytes = uint64_t(r.integer(s, "max_body_kb", S, 1, 65536, &body_kb)) << 10;
    if (c.max_body_bytes > kMaxPayload) {
      LOG_WARN(
          "%s: max_body_kb = %llu lowered to %u: no larger body can be served (an event "
          "is at most %u KiB)",
          source.c_str(), static_cast<unsigned long long>(c.max_body_bytes >> 10),
          kMaxPayload >> 10, kMaxPayload >> 10);
      c.max_body_bytes = kMaxPayload;
    }
    c.max_connections = int(r.integer(s, "max_connections", S, 8, 65536, &conns));
    int64_t buffered_mb = int64_t(c.max_buffered_bytes >> 20);
    c.max_buffered_bytes = uint64_t(r.integer(s, "max_buffered_mb", S, 1, 1 << 20, &buffered_mb))
                           << 20;
    if (c.max_buffered_bytes < c.max_body_bytes)
      r.fail(s.get("max_buffered_mb") ? s.get("max_buffered_mb")->source() : s.source(),
             "max_buffered_mb (" + std::to_string(c.max_buffered_bytes >> 20) +
                 " MiB) is below max_body_kb (" + std::to_string(c.max_body_bytes >> 10) +
                 " KiB): no body of the largest size could ever be received; raise "
                 "max_buffered_mb or lower max_body_kb");
    int64_t v0 = c.request_timeout_ms;
    c.request_timeout_ms = int(r.integer(s, "request_timeout_ms", S, 100, 3600000, &v0));
    v0 = c.keepalive_timeout_ms;
    c.keepalive_timeout_ms = int(r.integer(s, "keepalive_timeout_ms", S, 100, 3600000, &v0));
    v0 = c.drain_timeout_ms;
    c.drain_timeout_ms = int(r.integer(s, "drain_timeout_ms", S, 0, 3600000, &v0));
    int64_t keep = int64_t(c.keep_versions);
    c.keep_versions = uint64_t(r.integer(s, "keep_versions", S, 0, 1000000, &keep));
    v0 = c.max_sending_per_address;
    c.max_sending_per_address = int(r.integer(s, "max_sending_per_address", S, 1, 65536, &v0));
    v0 = int64_t(c.max_head_bytes >> 10);
    c.max_head_bytes = uint64_t(r.integer(s, "max_head_kb", S, 1, 1024, &v0)) << 10;
    v0 = c.max_headers;
    c.max_headers = int(r.integer(s, "max_headers", S, 1, 10000, &v0));
    if (const toml::node* tp = s.get("trusted_proxies")) {
      if (!tp->is_array())
        r.fail(tp->source(), "\"trusted_proxies\" in [server] must be an array of strings");
      for (const toml::node& e : *tp->as_array()) {
        Cidr cidr;
        // inet_pton stops at a NUL: "10.0.0.1\u0000junk" was a trusted proxy.
        if (e.is_string())
          r.no_controls(e, "an entry of \"trusted_proxies\"", *e.value<std::string>());
        if (!e.is_string() || !parse_cidr(*e.value<std::string>(), &cidr))
          r.fail(e.source(),
                 "\"trusted_proxies\" entries must be addresses or CIDR blocks, e.g. "
                 "\"127.0.0.1\" or \"10.0.0.0/8\"");
        c.trusted_proxies.push_back(*e.value<std::string>());
      }
    }
    if (const toml::node* ah = s.get("allowed_hosts")) {
      if (!ah->is_array())
        r.fail(ah->source(), "\"allowed_hosts\" in [server] must be an array of strings");
      for (const toml::node& e : *ah->as_array()) {
        if (e.is_string())
          r.no_controls(e, "an entry of \"allowed_hosts\"", *e.value<std::string>());
        if (!e.is_string() || !valid_allowed_host(*e.value<std::string>()))
          r.fail(e.source(),
                 "\"allowed_hosts\" entries must be host names or addresses clients put in "
                 "Host, e.g. \"nsbox.example.org\" or \"10.0.0.5\" (\"*\" alone: any)");
        c.allowed_hosts.push_back(*e.value<std::string>());
      }
    }
    c.rootless = r.boolean(s, "rootless", S, false);
    c.public_url = r.string(s, "public_url", S, "");
    if (!c.public_url.empty() &&
        ((!c.public_url.starts_with("http://") && !c.public_url.starts_with("https://")) ||
         url_host(c.public_url).empty()))
      r.fail(s.get("public_url")->source(),
             "\"public_url\" must be http://HOST[:PORT][/PATH] or https://..., the base clients "
             "use (e.g. \"https://nsbox.example.org\")");
    c.batch_scheduling = r.boolean(s, "batch_scheduling", S, true);

    const toml::table& p = r.table(root, "pool", "pool", false);
    const std::string P = "[pool]";
    r.check_keys(p, P, kPoolKeys);
    ServeConfig d;
    int64_t v;
    const uint64_t ram = machine_ram_bytes() ? machine_ram_bytes() : 8ull << 30;
    v = d.blank, c.blank = int(r.integer(p, "blank", P, 0, 4096, &v));
    v = d.max_sandboxes, c.max_sandboxes = int(r.integer(p, "max_sandboxes", P, 1, 32768, &v));
    v = 0;
    c.memory_budget_bytes = uint64_t(r.integer(p, "memory_budget_mb", P, 0, 1 << 24, &v)) << 20;
    if (c.memory_budget_bytes == 0) {
      c.memory_budget_bytes = 2 * ram;
    } else if (c.memory_budget_bytes < (64ull << 20)) {
      r.fail(p.get("memory_budget_mb")->source(),
             "\"memory_budget_mb\" must be 0 (auto) or at least 64");
    }
    v = d.per_function, c.per_function = int(r.integer(p, "per_function", P, 1, 1024, &v));
    v = d.idle_timeout_ms,
    c.idle_timeout_ms = int(r.integer(p, "idle_timeout_ms", P, 100, 86400000, &v));
    v = d.queue_per_function,
    c.queue_per_function = int(r.integer(p, "queue_per_function", P, 1, 100000, &v));
    v = d.queue_total, c.queue_total = int(r.integer(p, "queue_total", P, 1, 1000000, &v));
    v = d.queue_timeout_ms,
    c.queue_timeout_ms = int(r.integer(p, "queue_timeout_ms", P, 1, 600000, &v));
    c.cpu_limits = r.boolean(p, "cpu_limits", P, false);
    v = d.freeze_idle_ms, c.freeze_idle_ms = int(r.integer(p, "freeze_idle_ms", P, 0, 600000, &v));
    v = 0;
    c.min_available_bytes = uint64_t(r.integer(p, "min_available_mb", P, 0, 1 << 24, &v)) << 20;
    if (c.min_available_bytes == 0)
      c.min_available_bytes = std::max<uint64_t>(ram / 32, 256ull << 20);
    if (const toml::node* n = p.get("psi_some_avg10")) {
      auto f = n->value<double>();
      if (!f || !(*f >= 0 && *f <= 100))
        r.fail(n->source(),
               "\"psi_some_avg10\" in [pool] must be a number from 0 (off) to 100 (percent)");
      c.psi_some_avg10 = *f;
    }
    std::string iso = r.string(p, "isolation", P, "nsbox");
    auto parsed_iso = parse_isolation(iso);
    if (!parsed_iso)
      r.fail(p.get("isolation")->source(),
             "\"isolation\" must be one of " + isolation_names() + ", not \"" + iso + "\"");
    c.isolation = *parsed_iso;
    c.allow_comparison_isolation = r.boolean(p, "allow_comparison_isolation", P, false);
    if (c.isolation != Isolation::Nsbox && !c.allow_comparison_isolation)
      r.fail(p.get("isolation")->source(),
             "isolation = \"" + iso +
                 "\" exists to measure nsbox against it (nsbox bench), not to serve: it lacks "
                 "nsbox's seccomp, uid and limit guarantees. Remove the key, or set "
                 "allow_comparison_isolation = true in [pool] to run it anyway");
    v = kLayerAll;
    c.layers = int(r.integer(p, "layers", P, kLayerNone, kLayerAll, &v));
    if (c.layers != kLayerAll && (c.isolation != Isolation::Nsbox || !c.allow_comparison_isolation))
      r.fail(p.get("layers")->source(),
             "\"layers\" below " + std::to_string(int(kLayerAll)) +
                 " builds sandboxes without some of their isolation, to measure what each layer "
                 "costs (nsbox bench layers); it needs isolation = \"nsbox\" and "
                 "allow_comparison_isolation = true in [pool]");

    std::string factory = r.string(p, "factory", P, "template");
    if (factory != "template" && factory != "exec")
      r.fail(p.get("factory")->source(),
             "\"factory\" must be \"template\" (clone sandboxes from a started interpreter) or "
             "\"exec\" (start one per sandbox), not \"" +
                 factory + "\"");
    c.template_factory = factory == "template";
    c.template_modules = r.strings(p, "template_modules", P, default_template_modules(), 256);
    v = int64_t(d.template_rotate_after);
    c.template_rotate_after = uint64_t(r.integer(p, "template_rotate_after", P, 0, 1 << 30, &v));
    for (const auto& m : c.template_modules)
      if (!valid_module_name(m))
        r.fail(p.get("template_modules")->source(),
               "\"template_modules\" entry \"" + m +
                   "\" is not a Python module name (dotted identifiers, e.g. \"urllib.parse\")");

    const toml::table& f = r.table(root, "functions", "functions", false);
    const std::string F = "[functions]";
    r.check_keys(f, F, kFunctionsKeys);
    c.default_policy = r.string(f, "default_policy", F, c.default_policy);
    // Said here, where the file says it: at start this would come only
    // after the token and rootfs, and a reload would quietly keep the old.
    if (const auto names = builtin_policy_names();
        std::find(names.begin(), names.end(), c.default_policy) == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      r.fail(f.get("default_policy")->source(), "\"default_policy\" \"" + c.default_policy +
                                                    "\" is not a built-in policy (" + known + ")");
    }
    v = d.log_lines, c.log_lines = int(r.integer(f, "log_lines", F, 0, 1000000, &v));
    v = int64_t(d.log_bytes >> 20);
    c.log_bytes = uint64_t(r.integer(f, "log_mb", F, 1, 1 << 16, &v)) << 20;
    v = 0;
    c.max_memory_bytes = uint64_t(r.integer(f, "max_memory_mb", F, 0, int64_t(kMaxMemoryMb), &v))
                         << 20;
    if (c.max_memory_bytes == 0) {
      c.max_memory_bytes = ram / 4;
    } else if (c.max_memory_bytes < (16ull << 20)) {
      r.fail(f.get("max_memory_mb")->source(), "\"max_memory_mb\" must be 0 (auto) or at least 16");
    }
  } catch (const toml::parse_error& e) {
    return make_error("config", toml_parse_message(e, source, text));
  } catch (const TomlError& e) {
    return make_error("config", e.msg);
  }
  return c;
}

namespace {

// The config file, checked and read through one fd: its directories by
// path (only root and the caller may rename anything in them, so the name
// cannot be swapped after), then the file itself by fstat on the fd that is
// read, so that what is checked is what is read.
Result<std::string> read_config_file(const std::string& file, mode_t* mode) {
  std::string path = file;
  if (path[0] != '/') {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return sys_error("getcwd", file);
    path = std::string(cwd) + "/" + path;
  }
  const std::string fix =
      ": the daemon runs as root what this file names (tokens, limits, "
      "policies); keep it, and every directory above it, writable by root "
      "alone";
  auto resolved = resolve_trusted(path);
  // A file that is not there, or that this user may not look at, is said
  // as an open would say it.
  if (!resolved && resolved.error().err != 0)
    return sys_error_n(resolved.error().err, "config", file);
  if (!resolved) return make_error("config", file + ": " + resolved.error().message() + fix);
  // Said first, as the fd's check below would: "/" is no config whoever
  // may write above it.
  if (struct stat st; stat(resolved.value().c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return make_error("config", file + ": not a regular file; give the path of a TOML file");
  auto checked = check_private_ancestors(resolved.value(), /*sticky_last_ok=*/true);
  if (!checked) return make_error("config", file + ": " + checked.error().message() + fix);
  // O_NONBLOCK: a FIFO would wait in open() for a writer (read_toml_fd
  // then refuses anything but a regular file).
  UniqueFd fd(open(checked.value().c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW));
  if (fd.get() < 0) return sys_error("config", file);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("config", "fstat " + file);
  if (S_ISREG(st.st_mode)) {
    char shown[8];
    snprintf(shown, sizeof shown, "%04o", unsigned(st.st_mode & 07777));
    if (st.st_uid != 0 && st.st_uid != geteuid())
      return make_error("config", file + " belongs to uid " + std::to_string(st.st_uid) +
                                      ", who would choose the daemon's tokens, limits and "
                                      "policies: chown root " +
                                      file);
    if (writable_by_others(st))
      return make_error("config", file + " (mode " + shown +
                                      ") may be changed by other users, who would choose the "
                                      "daemon's tokens, limits and policies: chmod go-w " +
                                      file);
    if (acl_lets_others_write(fd.get(), file, st))
      return make_error("config", file +
                                      " has an ACL entry that lets another user change it, "
                                      "who would choose the daemon's tokens, limits and "
                                      "policies: setfacl -b " +
                                      file);
  }
  *mode = st.st_mode & 07777;
  return read_toml_fd(fd.get(), file, "config");
}

}  // namespace

std::string config_file_warning(const ServeConfig& c) {
  if (c.source.empty() || c.source[0] == '<') return "";
  char mode[8];
  snprintf(mode, sizeof mode, "%04o", unsigned(c.source_mode));
  if ((!c.token.empty() || !c.read_token.empty()) && (c.source_mode & 044))
    return c.source + " sets token" + (c.read_token.empty() ? "" : " or read_token") +
           " and other users may read it (mode " + mode + "): chmod 600 " + c.source;
  return "";
}

uint64_t machine_ram_bytes() {
  struct sysinfo si;
  return sysinfo(&si) == 0 ? uint64_t(si.totalram) * si.mem_unit : 0;
}

std::vector<std::string> config_value_warnings(const ServeConfig& c, uint64_t ram_bytes) {
  std::vector<std::string> out;
  const std::string& src = c.source;
  if (c.blank > c.max_sandboxes)
    out.push_back(src + ": [pool] blank = " + std::to_string(c.blank) + " is more than " +
                  "max_sandboxes = " + std::to_string(c.max_sandboxes) +
                  ", which counts blank sandboxes too: lower blank, or raise max_sandboxes");
  if (ram_bytes > 0 && c.min_available_bytes >= ram_bytes)
    out.push_back(src +
                  ": [pool] min_available_mb = " + std::to_string(c.min_available_bytes >> 20) +
                  " is not below this machine's memory (" + std::to_string(ram_bytes >> 20) +
                  " MB): every idle sandbox is evicted and no blank one is made; lower it, or "
                  "remove it for the default (1/32 of memory)");
  for (const std::string& t : c.trusted_proxies) {
    Cidr cidr;
    if (parse_cidr(t, &cidr) && cidr.bits == 0)
      out.push_back(src + ": [server] trusted_proxies holds \"" + t +
                    "\", which every client matches: any client may then say which address it "
                    "has (PROXY, X-Forwarded-For), for the access log and max_sending_per_address; "
                    "list only the proxies' own addresses");
  }
  // The unit's TimeoutStopSec (30 s) ends a drain that lasts longer with
  // SIGKILL, before the daemon destroys its sandboxes itself.
  if (c.drain_timeout_ms > 25000)
    out.push_back(src + ": [server] drain_timeout_ms = " + std::to_string(c.drain_timeout_ms) +
                  ": under tools/nsbox.service (TimeoutStopSec=30) systemd may kill the daemon "
                  "before such a drain ends; raise TimeoutStopSec above it too");
  return out;
}

Result<ServeConfig> load_serve_config(const std::string& path, const std::string& default_path) {
  std::string file = path;
  if (file.empty()) {
    // Only a file that is not there means the defaults: one that cannot be
    // read (a dangling link, no permission) is an error, or a daemon would
    // start, or reload, with other tokens and limits than its operator's.
    // A user who may not even look into root's /etc/nsbox (a rootless
    // daemon) has no default file either.
    struct stat st;
    if (lstat(default_path.c_str(), &st) != 0) {
      if (errno == ENOENT) return parse_serve_config("", kEmbeddedDefaults);
      if (errno == EACCES && geteuid() != 0) {
        LOG_WARN(
            "%s: not readable by this user (uid %u): starting on the embedded defaults; "
            "name a config with --config FILE",
            default_path.c_str(), unsigned(geteuid()));
        return parse_serve_config("", kEmbeddedDefaults);
      }
    }
    file = default_path;
  }
  mode_t mode = 0;
  auto text = read_config_file(file, &mode);
  if (!text && path.empty())
    return make_error("config", text.error().text() +
                                    " (the default config file: fix it, or name another with "
                                    "--config FILE)");
  if (!text) return std::move(text).error();
  auto c = parse_serve_config(text.value(), file);
  if (c) c.value().source_mode = mode;
  return c;
}

}  // namespace nsbox
