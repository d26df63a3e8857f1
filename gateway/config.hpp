// The daemon's configuration: /etc/nsbox/nsbox.toml when present, else the
// embedded defaults below; parsed once into this plain struct (errors name
// file:line:col and the key).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "gateway/isolation.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

struct ServeConfig {
  // [server]
  std::string listen_host = "127.0.0.1";
  int listen_port = 8080;
  std::string state_dir = "/var/lib/nsbox";
  std::string token;  // empty: generated into state_dir/token (0600)
  // Versions kept per function (older ones are deleted); 0 keeps every one.
  // A bound, since every deploy otherwise stays on disk for good.
  uint64_t keep_versions = 10;
  // A separate token for the read-only API (GET /functions..., logs,
  // /metrics); empty: only the admin token reads them.
  std::string read_token;
  uint64_t max_body_bytes = 6ull << 20;
  // Request bodies held by all connections at once: without it,
  // max_connections clients, none authenticated, could make the daemon
  // hold max_connections x max_body_bytes (6 GiB by default).
  uint64_t max_buffered_bytes = 256ull << 20;
  int max_connections = 1024;  // open client connections (the oldest idle one makes room)
  // The HTTP front's bounds (gateway/http_front.hpp).
  int request_timeout_ms = 30000;    // one deadline for a request's whole head and body
  int keepalive_timeout_ms = 30000;  // an idle keep-alive connection is closed after this
  // How long SIGTERM waits for requests in flight before it destroys their
  // sandboxes: below the unit's TimeoutStopSec (30 s), after which systemd
  // would SIGKILL the daemon and leave its sandboxes' cgroups.
  int drain_timeout_ms = 20000;
  int max_sending_per_address = 32;    // connections still sending a request, per client address
  uint64_t max_head_bytes = 16 << 10;  // request line and headers
  int max_headers = 64;
  // Peers whose PROXY v1 line and X-Forwarded-For are believed (addresses or
  // CIDR blocks); nobody's by default.
  std::vector<std::string> trusted_proxies;
  // Host names answered besides loopback ones and public_url's host; empty:
  // those only when listening on loopback, any otherwise (gateway/host_check).
  std::vector<std::string> allowed_hosts;
  bool rootless = false;   // allow running as non-root (no cgroups)
  std::string public_url;  // base URL in deploy answers; default http://listen
  // SCHED_BATCH for the daemon, its spawner and so every sandbox (set at
  // start, inherited). A woken batch task does not preempt the running one.
  // A request hops client -> connection thread -> sandbox -> connection
  // thread -> client, and each hop's waker is about to sleep anyway; with
  // wake-up preemption it is switched out first and back in just to sleep
  // (the gain: docs/benchmarks.md, "SCHED_BATCH"). CPU shares and nice
  // values are unchanged.
  bool batch_scheduling = true;
  // [pool]
  int blank = 4;            // blank sandboxes kept ready ahead of demand
  int max_sandboxes = 256;  // warm + blank + busy, all functions
  // Sum of the sandboxes' memory limits. Limits are ceilings a sandbox rarely
  // reaches (an idle Python runner uses ~10 MiB), so the embedded default
  // (0 = auto) is twice the machine's RAM.
  uint64_t memory_budget_bytes = 0;
  int per_function = 4;         // sandboxes one function may hold at once
  int idle_timeout_ms = 60000;  // a warm sandbox idle this long is destroyed
  int queue_per_function = 64;  // requests waiting for one function's sandbox
  int queue_total = 1024;       // requests waiting, all functions
  int queue_timeout_ms = 1000;  // a request not started by then gets 503
  // true: each sandbox gets a cpu cgroup capped at its policy's
  // cpu_millicores. Off by default, as in Docker and nsjail: a cpu cgroup per
  // sandbox is group scheduling, which doubled the p99 of the paper's load
  // here, while fair scheduling of plain tasks already kept other functions
  // answering next to multithreaded CPU hogs (docs/benchmarks.md).
  bool cpu_limits = false;
  // A warm sandbox with no request in flight is frozen after this grace, so
  // a thread its function left running uses no CPU between requests; 0:
  // never (the sandbox runs until its idle timeout).
  int freeze_idle_ms = 5;
  // Memory pressure evicts idle sandboxes (LRU) before the kernel's OOM
  // killer has to act: while MemAvailable is below min_available_bytes (0 =
  // auto: 1/32 of RAM, at least 256 MiB)...
  uint64_t min_available_bytes = 0;
  // ...or while the PSI "some avg10" of /proc/pressure/memory exceeds this
  // percentage. Off (0) by default: PSI also counts stalls inside a
  // sandbox's own memory limit, so one tenant thrashing in its limit would
  // evict every other tenant's warm sandboxes.
  double psi_some_avg10 = 0;
  // How sandboxes are made: nsbox's own, or one of the mechanisms nsbox
  // bench compares it with (gateway/isolation.hpp), which the daemon refuses
  // unless allow_comparison_isolation is set too.
  Isolation isolation = Isolation::Nsbox;
  bool allow_comparison_isolation = false;
  // SandboxLayer (sandbox/spec.hpp): fewer than all only for nsbox bench
  // layers, with allow_comparison_isolation.
  int layers = kLayerAll;
  // How nsbox's sandboxes are made (isolation = "nsbox"): cloned from a
  // template with the interpreter started and template_modules imported
  // (sandbox/template.hpp), or by exec of a fresh interpreter. Rootless
  // mode always execs.
  bool template_factory = true;
  std::vector<std::string> template_modules;  // default_template_modules()
  // A template is replaced by a fresh one after this many clones, which
  // then share no address-space layout or hash seed with the earlier ones
  // (docs/security.md, "Known limits"); 0 = only when it dies.
  uint64_t template_rotate_after = 1000;
  // [functions]
  std::string default_policy = "default";
  int log_lines = 1000;  // lines kept per function for GET .../logs
  // Bytes of those lines kept across all functions: each function may print
  // log_lines of up to 4 KiB, and a deployer may add functions.
  uint64_t log_bytes = 64ull << 20;
  // The largest ?memory= a deploy may ask for (0 = auto: a quarter of RAM,
  // so that one function at the default per_function cap of 4 cannot be
  // granted more than the machine has).
  uint64_t max_memory_bytes = 0;
  std::string source;      // file the config came from, or kEmbeddedDefaults
  mode_t source_mode = 0;  // its permission bits as read (load_serve_config)
};

// Every key parse_serve_config accepts, by table ("server", "pool",
// "functions"): the README's config block is tested against this list
// (tests/unit/readme_config_test.cpp).
struct ConfigKey {
  std::string table;
  std::string key;
};
std::vector<ConfigKey> config_keys();

// The keys ("listen", "blank", ...) whose values differ between a and b,
// in config_keys() order: what a reload changed.
std::vector<std::string> changed_keys(const ServeConfig& a, const ServeConfig& b);
// Whether a reload (SIGHUP) applies key to the running daemon; any other
// key takes effect at the next start.
bool reloadable_key(const std::string& key);

inline constexpr const char* kEmbeddedDefaults = "<embedded defaults>";
Result<ServeConfig> parse_serve_config(const std::string& text, const std::string& source);
// path empty: default_path when there is anything at that path (a file
// that cannot be read is an error), else embedded defaults.
// The daemon's config chooses its tokens, limits and isolation: like sshd's
// StrictModes, one that anyone but root or the daemon's user owns, or that
// another user could change or replace (its mode, or a directory above it,
// symlinks resolved; a sticky parent passes), is refused, at start, at
// reload and by serve --check. The file is checked through the fd it is
// read from.
Result<ServeConfig> load_serve_config(const std::string& path,
                                      const std::string& default_path = "/etc/nsbox/nsbox.toml");
// A config that sets token or read_token holds secrets: like ssh with a key
// file, a warning (empty: none) when other users may read it.
std::string config_file_warning(const ServeConfig& c);
// Values each valid alone that together, or on this machine, do not do what
// their operator likely meant (one line each, naming the keys and the fix):
// logged at start and at each reload, not refused.
std::vector<std::string> config_value_warnings(const ServeConfig& c, uint64_t ram_bytes);
// This machine's memory (sysinfo), 0 when unknown: the base of the
// defaults that scale with it.
uint64_t machine_ram_bytes();
// Whether a token holds only printable ASCII without spaces: what an
// Authorization header's value can carry once its blanks are trimmed.
bool token_chars_ok(const std::string& token);
// "127.0.0.1:8080", "[::1]:8080", ":8080"
Status parse_listen(const std::string& text, std::string* host, int* port);

}  // namespace nsbox
