#include "tools/serve_cmd.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "base/clock.hpp"
#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/host_limits.hpp"
#include "base/log.hpp"
#include "base/terminal_escape.hpp"
#include "gateway/admin_token.hpp"
#include "gateway/capacity.hpp"
#include "gateway/config.hpp"
#include "gateway/external_factory.hpp"
#include "gateway/fd_parking.hpp"
#include "gateway/host_check.hpp"
#include "gateway/pool.hpp"
#include "gateway/registry.hpp"
#include "gateway/serve_profiles.hpp"
#include "gateway/server.hpp"
#include "policies/policy.hpp"
#include "rootfs/rootfs.hpp"
#include "rootfs/runner_spec.hpp"
#include "sandbox/factory_group.hpp"
#include "sandbox/family.hpp"
#include "sandbox/spawner.hpp"
#include "sandbox/uid_slots.hpp"
#include "tools/args.hpp"

namespace nsbox {

namespace {

// Lowers max_sandboxes to what the host allows (gateway/capacity.hpp),
// saying so in one line: at start, and on every reload.
void fit_capacity(ServeConfig& c, const HostLimits& host) {
  Capacity fit = fit_max_sandboxes(c.max_sandboxes, c.max_connections, host, c.blank);
  if (fit.max_sandboxes < c.max_sandboxes) {
    LOG_WARN("max_sandboxes lowered from %d to %d: %s", c.max_sandboxes, fit.max_sandboxes,
             fit.why.c_str());
    c.max_sandboxes = fit.max_sandboxes;
  }
}

struct ServeOptions {
  std::string config_path, listen, state_dir, spawners;
  bool rootless = false;
  bool verbose = false;
  bool check = false;
};

std::vector<Option> serve_options(ServeOptions& o) {
  auto to = [](std::string& field) { return [&field](const std::string& v) { field = v; }; };
  auto on = [](bool& field) { return [&field](const std::string&) { field = true; }; };
  return {
      {"config", 0, "FILE",
       "configuration (default /etc/nsbox/nsbox.toml when present,\n"
       "else embedded defaults: listen 127.0.0.1:8080, state /var/lib/nsbox)",
       to(o.config_path), false},
      {"listen", 0, "ADDR:PORT", "override [server] listen", to(o.listen), false},
      {"state-dir", 0, "DIR", "override [server] state_dir (functions, token)", to(o.state_dir),
       false},
      {"rootless", 0, "", "allow running as an ordinary user (no cgroups: rlimits only)",
       on(o.rootless)},
      {"foreground", 0, "", "accepted for service managers; nsbox always stays in the foreground",
       [](const std::string&) {}},
      {"spawners", 0, "N",
       "spawner processes, each making one sandbox at a time\n"
       "(default: one per CPU, at most 4; 1..64)",
       to(o.spawners), false},
      {"verbose", 'v', "", "debug logging", on(o.verbose)},
      {"check", 0, "",
       "check the config as a start would (file owner and mode, values,\n"
       "memory budget, the admin token and read_token), print its warnings,\n"
       "and exit: 0 valid, 1 not",
       on(o.check)},
  };
}

std::string serve_usage() {
  ServeOptions unused;
  return R"(usage: nsbox serve [options]

The HTTP daemon: deploy functions with PUT /functions/NAME, invoke them with
POST /fn/NAME. Runs in the foreground and logs to stderr (one access-log line
per request: request-id function outcome status latency-ms client).

options:
)" + options_help(serve_options(unused)) +
         R"(signals: SIGTERM/SIGINT drain in-flight requests, destroy every sandbox, exit 0;
         SIGHUP reloads the config file: token, read_token, default_policy, max_memory_mb and
         the [pool] sizes, queue bounds and memory thresholds apply at once, every other key at
         the next start (README.md lists them; the reload's log line names each changed key).
)";
}

// What the gateway may hold for sandboxes it has not parked: its open-files
// limit less the connections' and its own. 0 (no check) without parking.
int64_t unparked_fd_budget(bool parking, const HostLimits& host, const ServeConfig& config) {
  const uint64_t own = static_cast<uint64_t>(config.max_connections) + kSpareFds;
  return parking && host.open_files > own ? static_cast<int64_t>(host.open_files - own) : 0;
}

int fail(const std::string& msg) {
  print_for_display(STDERR_FILENO, "nsbox serve: %s\n", msg.c_str());
  return 1;
}

Result<std::string> prepare_state_dir(const std::string& given) {
  // Its own entries: a directory of another mode is made 0711 only when it
  // is empty or nsbox's already (state_dir = "/etc" would have left /etc
  // unlistable, and /root's files open to anyone who knows their names).
  // Names only nsbox makes there (functions/ and rootfs/ alone are too
  // common: RHEL's /etc/init.d has a functions): the store's lock is made
  // at its first open, the rootfs's lock and users files at the first
  // build (alone where `sudo nsbox run` made the directory and that build
  // was cut short). stage and cache only rootless: root's are under /run
  // and /var/cache, and /var has a cache of its own.
  std::vector<std::string> marks = {"token", "functions.lock", "rootfs.lock", "rootfs.users"};
  if (geteuid() != 0) marks.insert(marks.end(), {"stage", "cache"});
  auto dir = make_private_dir(given, 0711, marks);
  if (!dir)
    return make_error("state_dir", dir.error().text() +
                                       "; give nsbox a directory of its own (state_dir, "
                                       "--state-dir)");
  return dir;
}

// RLIMIT_NPROC's soft limit, 0 when unlimited.
uint64_t user_process_limit() {
  struct rlimit r;
  if (getrlimit(RLIMIT_NPROC, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 0;
  return r.rlim_cur;
}

PoolLimits pool_limits(const ServeConfig& c, const std::vector<ProfileInfo>& infos) {
  PoolLimits l;
  l.blank = c.blank;
  // Blanks ahead of demand are the default policy's, also after a reload
  // changes it (the config's check keeps it among the profiles).
  for (size_t i = 0; i < infos.size(); i++)
    if (infos[i].name == c.default_policy) l.blank_profile = static_cast<uint32_t>(i);
  l.max_sandboxes = c.max_sandboxes;
  l.memory_budget_bytes = c.memory_budget_bytes;
  l.per_function = c.per_function;
  l.idle_timeout_ms = c.idle_timeout_ms;
  l.queue_per_function = c.queue_per_function;
  l.queue_total = c.queue_total;
  l.freeze_idle_ms = c.freeze_idle_ms;
  l.min_available_bytes = c.min_available_bytes;
  l.psi_some_avg10 = c.psi_some_avg10;
  return l;
}

// serve --check: what a start refuses, without starting; a service
// manager's reload runs it first, so that `systemctl reload` fails on a
// config the daemon would keep running without.
int check_only(const ServeOptions& o) {
  auto cfg = load_serve_config(o.config_path);
  if (!cfg) return fail(cfg.error().text());
  const ServeConfig& c = cfg.value();
  if (!o.state_dir.empty() && o.state_dir[0] != '/')
    return fail("--state-dir " + o.state_dir + ": must be an absolute path");
  if (!o.listen.empty()) {
    std::string host;
    int port = 0;
    if (Status s = parse_listen(o.listen, &host, &port); !s) return fail(s.error().detail);
  }
  std::vector<ProfileInfo> infos;
  for (const std::string& n : builtin_policy_names()) {
    auto p = load_policy(n);
    if (!p) return fail(p.error().text());
    infos.push_back({n, p.value()});
  }
  if (Status s = check_memory_budget(c, infos); !s) return fail(s.error().message());
  // The token a start would use (STATE/token unless the config has one):
  // broken, or equal to read_token, a start or reload refuses it.
  // A reload keeps the state_dir the daemon started with: one changed in
  // the file is checked here as the next start will use it.
  std::vector<std::string> warnings = config_value_warnings(c, machine_ram_bytes());
  auto token = peek_admin_token(c.token, o.state_dir.empty() ? c.state_dir : o.state_dir);
  if (!token && token.error().err == EACCES && geteuid() != 0) {
    // A user checking a draft: the daemon's token is root's to read.
    warnings.push_back("the admin token in " + (o.state_dir.empty() ? c.state_dir : o.state_dir) +
                       " was not checked against read_token (only root may read it)");
  } else if (!token) {
    return fail(token.error().text());
  } else if (Status s = check_read_token(c.read_token, token.value(), c.source); !s) {
    return fail(s.error().text());
  }
  if (std::string why = config_file_warning(c); !why.empty())
    warnings.insert(warnings.begin(), why);
  for (const std::string& w : warnings)
    print_for_display(STDERR_FILENO, "nsbox serve: warning: %s\n", w.c_str());
  print_for_display(STDOUT_FILENO, "nsbox serve: %s is valid\n", c.source.c_str());
  return 0;
}

}  // namespace

int cmd_serve(const std::vector<std::string>& args) {
  ServeOptions o;
  auto parsed = parse_options(serve_options(o), args);
  if (!parsed || !parsed.value().positional.empty()) {
    std::string why =
        parsed ? "unexpected argument " + parsed.value().positional[0] : parsed.error().detail;
    print_for_display(STDERR_FILENO, "nsbox serve: %s\n%s", why.c_str(), serve_usage().c_str());
    return 2;
  }
  if (parsed.value().help) {
    std::fputs(serve_usage().c_str(), stdout);
    return 0;
  }
  if (o.check) return check_only(o);
  // Read before the config: the spawners are forked before it (below).
  int spawner_count = FactoryGroup::default_count();
  if (!o.spawners.empty()) {
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(o.spawners.c_str(), &end, 10);
    if (errno || end == o.spawners.c_str() || *end || n < 1 || n > 64) {
      print_for_display(STDERR_FILENO,
                        "nsbox serve: --spawners \"%s\" must be a whole number from 1 to 64\n%s",
                        o.spawners.c_str(), serve_usage().c_str());
      return 2;
    }
    spawner_count = static_cast<int>(n);
  }
  if (o.verbose) set_log_level(LogLevel::Debug);
  const std::string &config_path = o.config_path, &listen = o.listen, &state_dir = o.state_dir;
  const bool rootless = o.rootless;
  // First, before the config (which may hold the admin token) is read: the
  // spawner and every sandbox's PID 1, a copy of it that never execs, hold
  // only what this process held here. They get their profiles below. One
  // spawner makes one sandbox at a time; one per CPU (FactoryGroup) lets
  // sandboxes be made side by side.
  std::vector<std::unique_ptr<SpawnerClient>> spawners;
  for (std::vector<int> earlier; int(spawners.size()) < spawner_count;) {
    auto s = SpawnerClient::fork_early(earlier);
    if (!s) return fail(s.error().message());
    earlier.push_back(s.value()->socket_fd());
    spawners.push_back(std::move(s.value()));
  }
  // Side by side: each may take up to its shutdown bound (20 s), and one
  // after another they could outlast a service manager's stop timeout.
  auto shutdown_spawners = [&spawners] {
    std::vector<std::thread> stopping;
    for (auto& s : spawners) stopping.emplace_back([&s] { (void)s->shutdown(); });
    for (auto& t : stopping) t.join();
  };
  // Blocked from here, after the spawners' fork and before any thread:
  // every thread inherits the mask and the main loop takes them from a
  // signalfd. A SIGTERM before then (say, while the rootfs builds) waits
  // for it or stops the build (ensure_rootfs), instead of killing the
  // daemon with a builder still running; a SIGHUP waits for the main loop.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  auto cfg = load_serve_config(config_path);
  if (!cfg) return fail(cfg.error().text());
  ServeConfig config = cfg.value();
  // A daemon started from /etc/nsbox/nsbox.toml reloads that file: one it
  // can no longer read keeps the running configuration rather than
  // falling back to the embedded defaults (other tokens, other limits).
  const std::string reload_path =
      config_path.empty() && config.source != kEmbeddedDefaults ? config.source : config_path;
  if (std::string why = config_file_warning(config); !why.empty()) LOG_WARN("%s", why.c_str());
  for (const std::string& why : config_value_warnings(config, machine_ram_bytes()))
    LOG_WARN("%s", why.c_str());
  if (!listen.empty()) {
    if (Status s = parse_listen(listen, &config.listen_host, &config.listen_port); !s)
      return fail(s.error().detail);
  }
  if (!state_dir.empty() && state_dir[0] != '/')
    return fail("--state-dir " + state_dir + ": must be an absolute path");
  // The command line's keys win over the file's, at start and at every
  // reload (checked above, so they cannot fail here).
  auto command_line_wins = [&](ServeConfig* c) {
    if (!listen.empty()) (void)parse_listen(listen, &c->listen_host, &c->listen_port);
    if (!state_dir.empty()) c->state_dir = state_dir;
    if (rootless) c->rootless = true;
  };
  command_line_wins(&config);
  // What a reload compares the file with, to say which keys it applied and
  // which wait for a restart: as read, with the command line's keys.
  const ServeConfig file_at_start = config;
  ServeConfig file_applied = file_at_start;
  if (geteuid() != 0 && !config.rootless)
    return fail("must run as root (sudo nsbox serve), or ask for rootless mode with --rootless");
  // Before any thread exists: all of them inherit it, and the spawner, so
  // every sandbox, adopts it at configure() (ServeConfig::batch_scheduling
  // says why).
  if (config.batch_scheduling) {
    struct sched_param none {};
    if (sched_setscheduler(0, SCHED_BATCH, &none) != 0)
      LOG_WARN(
          "batch_scheduling: sched_setscheduler(SCHED_BATCH): %s; keeping the policy it was "
          "started with",
          strerror(errno));
  }

  // Protected from the OOM killer (it prefers the sandboxes, which their
  // parent gives oom_score_adj 1000), but not exempt (-1000): a leaking
  // daemon must still be killable. Before the spawner is forked, which
  // inherits it. tools/nsbox.service sets the same with OOMScoreAdjust=.
  {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "-900", 4) != 4)
      LOG_WARN(
          "oom_score_adj -900: %s (needs CAP_SYS_RESOURCE); the OOM killer may pick the daemon",
          strerror(errno));
    if (fd >= 0) close(fd);
    if (!config.rootless && !have_cap_sys_resource()) LOG_WARN("%s", kNoOomFloorWarning);
  }
  // Said once here, not in every failed cold start's log line.
  if (config.rootless)
    if (const std::string r = userns_restriction(); !r.empty())
      LOG_WARN("rootless sandboxes need a user namespace, and %s; or run nsbox serve as root",
               r.c_str());

  HostLimits host;
  host.open_files =
      raise_open_files(open_files_wanted(config.max_sandboxes, config.max_connections));
  host.pid_max = pid_max();
  host.uid_slots = config.rootless ? 0 : kSlotCount;
  host.user_processes = config.rootless ? user_process_limit() : 0;
  auto state_dir_used = prepare_state_dir(config.state_dir);
  if (!state_dir_used) return fail(state_dir_used.error().message());
  config.state_dir = state_dir_used.value();
  // The sandboxes' unprivileged uid mounts the rootfs beneath it: a closed
  // directory above the state dir would fail every sandbox; refuse to start.
  if (geteuid() == 0 && !config.rootless)
    if (Status s = check_reachable_by_others(config.state_dir); !s)
      return fail("state_dir " + config.state_dir + ": " + s.error().message());
  auto token = load_admin_token(config.token, config.state_dir);
  if (!token) return fail(token.error().message());
  if (Status s = check_read_token(config.read_token, token.value(), config.source); !s)
    return fail(s.error().text());
  auto store = open_file_store(config.state_dir, kSourceCacheBytes, config.keep_versions);
  if (!store) return fail(store.error().message());

  std::string rootfs = config.state_dir + "/rootfs";
  auto built = ensure_rootfs(rootfs, false);
  if (!built && built.error().err == EINTR) {
    LOG_WARN("%s; stopping", built.error().message().c_str());
    shutdown_spawners();
    return 0;
  }
  if (!built) return fail(built.error().message());
  if (built.value().built) LOG_WARN("%s", built.value().summary.c_str());
  rootfs = built.value().path;  // as checked: symlinks above it resolved
  // Held while the daemon runs: a rebuild meanwhile keeps the tree that its
  // sandboxes' overlays read.
  const UniqueFd rootfs_in_use = std::move(built.value().in_use);

  std::string cache = geteuid() == 0 ? "/var/cache/nsbox" : config.state_dir + "/cache";
  mkdir(cache.c_str(), 0700);
  CgroupLayout layout = cgroup_detect();
  layout.cpu_limits = config.cpu_limits;
  // Every leaf gets a freeze switch, so that a reload can turn
  // freeze_idle_ms on.
  layout.freeze = true;
  bool use_cgroups = !config.rootless && layout.version != CgroupVersion::None;
  if (config.allowed_hosts.empty() && !listens_on_loopback(config.listen_host))
    LOG_WARN(
        "listening on %s with no [server] allowed_hosts: any Host is answered, so "
        "a web page can reach this daemon from a browser that can (DNS rebinding); list the "
        "names clients use in allowed_hosts",
        config.listen_host.c_str());
  if (use_cgroups && !config.cpu_limits)
    LOG_INFO(
        "cpu_limits = false: sandboxes get no CPU cap (the policies' cpu_millicores apply "
        "to nsbox run; [pool] cpu_limits = true applies them here)");
  if (!use_cgroups)
    LOG_WARN(
        "no usable cgroups (%s): memory, pids and cpu limits fall back to per-process "
        "rlimits",
        config.rootless ? "rootless" : layout.why_none.c_str());
  // setsid is refused where sandboxes share a cpu group (serve_profiles.cpp).
  const bool cpu_grouped = use_cgroups && cgroup_cpu_per_sandbox(layout);
  if (use_cgroups && config.cpu_limits && !cpu_grouped)
    LOG_WARN(
        "cpu_limits = true, but this host's cgroups have no cpu controller for the sandboxes: "
        "no CPU cap applies, and setsid is refused in sandboxes");
  auto made = build_serve_profiles(
      config, rootfs, geteuid() == 0 ? "/run/nsbox/stage" : config.state_dir + "/stage", cache,
      cpu_grouped);
  if (!made) return fail(made.error().text());
  std::vector<ProfileInfo>& infos = made.value().infos;
  std::vector<SpawnProfile>& profiles = made.value().spawn;
  const std::vector<uint64_t>& profile_memory = made.value().memory;

  // The spawner was forked before any thread existed (never fork a
  // multi-threaded process) and before any secret was read.
  FactoryOptions how;
  how.use_template = config.template_factory && config.isolation == Isolation::Nsbox;
  if (how.use_template && (config.rootless || geteuid() != 0)) {
    LOG_WARN(
        "factory = \"template\" needs root (the template clones each sandbox as its own host "
        "uid); rootless sandboxes are exec'd");
    how.use_template = false;
  }
  if (how.use_template) {
    auto bin = sibling_program("nsbox-template");
    if (!bin) return fail("factory = \"template\": " + bin.error().message());
    how.template_binary = bin.value();
    how.template_modules = config.template_modules;
    how.template_rotate_after = config.template_rotate_after;
  }
  for (auto& spawner : spawners)
    if (Status s = spawner->configure(profiles, layout, use_cgroups, how); !s)
      return fail(s.error().message() +
                  (how.use_template ? " (set [pool] factory = \"exec\" to run without it)" : ""));
  std::vector<SandboxFactory*> members;
  for (auto& spawner : spawners) members.push_back(spawner.get());
  FactoryGroup spawner_group(members);
  LOG_DEBUG("%zu spawners", spawners.size());

  // Replies of up to 6 MiB pass through connection threads (bounds in
  // docs/architecture.md, "Replies"). glibc raises its mmap threshold to the
  // largest block freed (up to 32 MiB), after which such buffers come from
  // the threads' arenas and stay with the process after a burst; a fixed
  // 1 MiB threshold keeps each in its own mapping, returned when freed.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);

  // A comparison mechanism (nsbox bench) replaces the spawner's sandboxes;
  // the spawner stays, idle, so that every mechanism's daemon is the same.
  std::unique_ptr<ExternalFactory> external;
  SandboxFactory* factory = &spawner_group;
  if (config.layers != kLayerAll)
    LOG_WARN("layers = %d: sandboxes are built only up to \"%s\", for comparison only",
             config.layers, layer_name(config.layers));
  if (config.isolation != Isolation::Nsbox) {
    if (geteuid() != 0) return fail("isolation other than nsbox needs root");
    std::vector<ExternalProfile> eps;
    for (const auto& info : infos)
      eps.push_back({info.policy.limits.pids, info.policy.limits.tmpfs_bytes});
    auto made =
        ExternalFactory::start(config.isolation, rootfs,
                               "/run/nsbox/compare-" + std::to_string(getpid()), runner_env(), eps);
    if (!made) return fail(made.error().message());
    external = std::move(made.value());
    factory = external.get();
    LOG_WARN("isolation = \"%s\": sandboxes are made by %s, for comparison only",
             isolation_name(config.isolation), find_tool(config.isolation).c_str());
  }

  // Frozen idle sandboxes' fds wait in fd keepers, so that the gateway's
  // open files bound only the sandboxes in use (gateway/fd_parking.hpp).
  // Only nsbox's own sandboxes are frozen, and only with a freeze switch.
  std::unique_ptr<FdParking> parking;
  const bool freezable = use_cgroups && (layout.version == CgroupVersion::V2 ||
                                         !layout.v1_unified.empty() || !layout.v1_freezer.empty());
  if (config.isolation == Isolation::Nsbox && freezable) {
    auto keeper = sibling_program("nsbox-fdkeeper");
    if (keeper) parking = std::make_unique<FdParking>(keeper.value());
    // The first keeper now, so that one that cannot start is known before
    // the capacity counts on it (and is not started under the pool's lock).
    Status ready = keeper ? parking->prepare() : Status(keeper.error());
    if (!ready) {
      LOG_WARN("%s: frozen sandboxes keep their fds in the gateway",
               ready.error().message().c_str());
      parking.reset();
    }
  }
  host.park_idle = parking && config.freeze_idle_ms > 0;
  // Before the sandboxes' share is worked out from it; fixed until the
  // next start, as the front is sized once.
  std::string connections_why;
  if (int fit = fit_max_connections(config.max_connections, host, &connections_why);
      fit < config.max_connections) {
    LOG_WARN("max_connections lowered from %d to %d: %s", config.max_connections, fit,
             connections_why.c_str());
    config.max_connections = fit;
  }
  fit_capacity(config, host);
  Pool pool(*factory, pool_limits(config, infos), profile_memory);
  pool.set_parking(parking.get(), unparked_fd_budget(parking != nullptr, host, config));
  Gateway gateway(config, *store.value(), pool, *factory, infos, token.value());
  // A function template's instances move into cgroup leaves of their own
  // and are made by nsbox's own sandbox, whole (the spawner refuses
  // otherwise): said at deploy rather than failed at every request.
  if (config.rootless)
    gateway.set_templates_unavailable(
        "needs cgroups, which nsbox serve --rootless does not use: deploy without it, or run "
        "the daemon as root");
  else if (!use_cgroups)
    gateway.set_templates_unavailable(
        "needs cgroups, and this daemon found none it can use (see its start-up log)");
  else if (config.layers != kLayerAll || config.isolation != Isolation::Nsbox)
    gateway.set_templates_unavailable(
        "needs nsbox's own isolation with every layer ([pool] layers and isolation are for "
        "nsbox bench only)");
  else if (std::string why = TemplateFamily::unsupported(layout); !why.empty()) {
    // A host setting, unlike the cases above: said once in the log too.
    LOG_WARN("function templates (deploy's template=1) %s", why.c_str());
    gateway.set_templates_unavailable(why);
  }
  std::string err;
  if (!gateway.bind(&err)) {
    shutdown_spawners();
    return fail(err);
  }
  pool.start();

  std::atomic<bool> served{false};
  // spawner_lost: the watchdog saw a spawner exit; stopping: the spawners'
  // exit from here on is ours, not a loss.
  std::atomic<bool> spawner_lost{false}, stopping{false};
  std::thread signals([&] {
    for (;;) {
      int sig = 0;
      if (sigwait(&sigs, &sig) != 0) continue;
      if (sig == SIGHUP) {
        auto again = load_serve_config(reload_path);
        if (!again) {
          LOG_ERROR("reload: %s; keeping the running configuration", again.error().text().c_str());
          continue;
        }
        ServeConfig file_next = again.value();
        command_line_wins(&file_next);
        ServeConfig next = std::move(again.value());
        if (std::string why = config_file_warning(next); !why.empty())
          LOG_WARN("reload: %s", why.c_str());
        for (const std::string& why : config_value_warnings(next, machine_ram_bytes()))
          LOG_WARN("reload: %s", why.c_str());
        next.max_connections = config.max_connections;  // fixed until the next start
        next.state_dir = config.state_dir;
        // A token removed from the config falls back to STATE/token, as at
        // a start: the old one must stop working, not stay in force.
        if (next.token.empty()) {
          auto from_file = load_admin_token(next.token, next.state_dir);
          if (!from_file) {
            LOG_ERROR("reload: %s; keeping the running configuration",
                      from_file.error().message().c_str());
            continue;
          }
          next.token = from_file.value();
        }
        if (Status s = check_read_token(next.read_token, next.token, next.source); !s) {
          LOG_ERROR("reload: %s; keeping the running configuration", s.error().text().c_str());
          continue;
        }
        // The host again: a larger max_sandboxes may need (and get) more
        // open files, and pid_max may have been raised since.
        host.open_files =
            raise_open_files(open_files_wanted(next.max_sandboxes, next.max_connections));
        host.pid_max = pid_max();
        host.park_idle = parking && next.freeze_idle_ms > 0;
        if (Status s = check_memory_budget(next, infos); !s) {
          LOG_ERROR("reload: %s; keeping the running configuration", s.error().message().c_str());
          continue;
        }
        fit_capacity(next, host);
        const std::string by_gateway = gateway.reload(next);
        pool.set_limits(pool_limits(next, infos));
        pool.set_fd_budget(unparked_fd_budget(parking != nullptr, host, next));
        // Named key by key: an operator who drops a trusted proxy must learn
        // that it is still trusted until the restart.
        std::vector<std::string> applied, waiting;
        for (const auto& k : changed_keys(file_applied, file_next))
          if (reloadable_key(k)) applied.push_back(k);
        for (const auto& k : changed_keys(file_at_start, file_next))
          if (!reloadable_key(k)) waiting.push_back(k);
        // STATE/token may have changed with the file's token unset.
        if (by_gateway.find(" token") != std::string::npos &&
            std::find(applied.begin(), applied.end(), "token") == applied.end())
          applied.push_back("token");
        file_applied = file_next;
        auto list = [](const std::vector<std::string>& keys) {
          std::string out;
          for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
          return out;
        };
        LOG_WARN("reloaded %s: %s%s", next.source.c_str(),
                 applied.empty() ? "no key the running daemon takes changed"
                                 : ("applied " + list(applied)).c_str(),
                 waiting.empty() ? ""
                                 : ("; changed but not in force until the next start: " +
                                    list(waiting) + " (restart the daemon to apply them)")
                                       .c_str());
        continue;
      }
      // The watchdog stops us by the same signal when a spawner died.
      LOG_WARN("%s: draining in-flight requests", spawner_lost     ? "stopping"
                                                  : sig == SIGTERM ? "SIGTERM"
                                                                   : "SIGINT");
      // cpp-httplib's stop() does nothing until its accept loop has begun:
      // a signal just after start would be lost and the daemon would serve
      // on, so repeat it until serving has ended.
      gateway.stop();
      // Requests in flight finish, for at most drain_timeout_ms; then their
      // sandboxes are destroyed with every other (the spawners' shutdown),
      // so that the daemon exits, cleanly, before a service manager's stop
      // timeout kills it and leaves their cgroups behind.
      const uint64_t cut_at = monotonic_ms() + uint64_t(config.drain_timeout_ms);
      bool cut = false;
      while (!served) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        gateway.stop();
        if (!cut && !served && monotonic_ms() >= cut_at) {
          cut = true;
          LOG_WARN(
              "requests still running after drain_timeout_ms (%d ms); destroying their "
              "sandboxes",
              config.drain_timeout_ms);
          stopping = true;
          gateway.cut_short();
          shutdown_spawners();
        }
      }
      return;
    }
  });
  // Fail-stop: without its spawner the daemon can make no sandbox, so it
  // exits non-zero and lets the service manager restart it.
  std::thread watchdog([&] {
    while (!stopping) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      // healthy() first: a spawner gone because the drain was cut sets
      // stopping before its shutdown, so it is read after.
      if (!spawner_group.healthy() && !stopping) {
        LOG_ERROR("a spawner process exited; stopping so that the service manager restarts us");
        spawner_lost = true;
        pthread_kill(signals.native_handle(), SIGTERM);
        return;
      }
    }
  });
  print_for_display(STDERR_FILENO, "nsbox serve: listening on http://%s:%d (state %s, config %s)\n",
                    config.listen_host.c_str(), config.listen_port, config.state_dir.c_str(),
                    config.source.c_str());
  gateway.serve();  // returns after stop(), once connection threads finished
  served = true;
  stopping = true;
  watchdog.join();
  // If serving ended by itself, wake the signal thread so it can finish.
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  pool.stop();
  external.reset();
  shutdown_spawners();
  print_for_display(STDERR_FILENO, "nsbox serve: stopped\n");
  return spawner_lost ? 1 : 0;
}

}  // namespace nsbox
