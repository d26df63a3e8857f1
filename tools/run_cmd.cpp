#include "tools/run_cmd.hpp"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "base/children.hpp"
#include "base/files.hpp"
#include "base/host_limits.hpp"
#include "base/limits.hpp"
#include "base/log.hpp"
#include "base/python_name.hpp"
#include "base/terminal_escape.hpp"
#include "policies/policy.hpp"
#include "policies/units.hpp"
#include "rootfs/json_check.hpp"
#include "rootfs/rootfs.hpp"
#include "rootfs/runner_client.hpp"
#include "rootfs/runner_reply.hpp"
#include "rootfs/runner_spec.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/privileges.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/template.hpp"
#include "tools/args.hpp"
#include "tools/invoker.hpp"
#include "tools/output_relay.hpp"
#include "tools/stop_signals.hpp"

namespace nsbox {

using json = nlohmann::json;

namespace {

// The options of `nsbox run`, writing into o: one table for parsing and --help.
std::vector<Option> run_options(RunOptions& o, bool* event_given) {
  auto to = [](auto& field) { return [&field](const std::string& v) { field = v; }; };
  return {
      {"event", 0, "JSON|-", "the event (default {}); - reads it from stdin; or EVENT after FN.py",
       [&o, event_given](const std::string& v) {
         o.event = v;
         *event_given = true;
       }},
      {"handler", 0, "NAME", "function to call (default handler; OpenLambda uses f)",
       to(o.handler)},
      {"policy", 0, "NAME|FILE", "built-in policy (default, strict) or a policy .toml file",
       to(o.policy)},
      {"memory", 0, "SIZE", "memory limit, e.g. 64M, 1G (a bare number is MiB)", to(o.memory)},
      {"timeout", 0, "DUR",
       "wall-clock timeout, e.g. 500ms, 3s (a bare number is seconds; at most 15m)", to(o.timeout)},
      {"rootfs", 0, "DIR",
       "runtime rootfs (default: /var/lib/nsbox/rootfs as root,\n"
       "~/.local/share/nsbox/rootfs otherwise; built when missing or stale)",
       to(o.rootfs)},
      {"no-isolation", 0, "",
       "run the same runner as a plain subprocess (the unisolated baseline;\n"
       "as root it runs as nobody, 65534; under sudo as the user who ran sudo;\n"
       "what it leaves running is killed when the run ends)",
       [&o](const std::string&) { o.no_isolation = true; }},
      {"factory", 0, "exec|template",
       "how the sandbox is made: exec a fresh interpreter (default), or clone\n"
       "it from a template with the interpreter already started (root only)",
       to(o.factory)},
      {"verbose", 'v', "", "log setup steps and their timings to stderr",
       [&o](const std::string&) { o.verbose = true; }},
  };
}

}  // namespace

std::string run_usage() {
  RunOptions unused;
  bool unused_given = false;
  return R"(usage: nsbox run FN.py [EVENT] [options]

Runs handler(event, context) of FN.py once in a fresh sandbox and prints the
result as JSON on stdout. What the function prints goes to stderr.

options:
)" + options_help(run_options(unused, &unused_given)) +
         R"(
exit codes:
  0    the function returned; its result is on stdout
  1    the function raised (error JSON with errorType, errorMessage, stackTrace on
       stdout) or its process exited
  2    bad usage or input: missing file, source over 1 MiB, syntax error, non-JSON
       event (or one the runtime cannot decode), result not JSON-serialisable,
       missing handler, bad policy or option
  3    the sandbox could not be set up, the function broke the runner's protocol,
       or the result could not be written to stdout
  124  the function timed out
  137  the function was killed by a limit (memory or pids; named on stderr)
)";
}

Result<RunOptions> parse_run_args(const std::vector<std::string>& args) {
  RunOptions o;
  auto bad = [](const std::string& m) { return make_error("usage", m); };
  bool event_given = false;
  ParsedArgs parsed = TRY(parse_options(run_options(o, &event_given), args));
  o.help = parsed.help;
  if (o.help) return o;
  if (parsed.positional.empty()) return bad("missing the function file (nsbox run FN.py)");
  // `nsbox run FN.py EVENT`, as `nsbox invoke NAME EVENT` takes it; a second
  // argument that is not JSON is more likely a second function file.
  if (parsed.positional.size() >= 2) {
    const std::string& second = parsed.positional[1];
    const bool event = second == "-" || json::accept(second);
    // Shaped like JSON but not valid: a broken event, not a second file.
    const size_t first = second.find_first_not_of(" \t\r\n");
    if (!event && first != std::string::npos &&
        std::string("{[\"").find(second[first]) != std::string::npos)
      return bad("the event is not valid JSON (" + json_error(second) + "): " + second);
    if (!event || parsed.positional.size() > 2)
      return bad("unexpected argument " + (event ? parsed.positional[2] : second) +
                 " (one function file per run, then at most an EVENT in JSON)");
  }
  if (parsed.positional.size() == 2) {
    if (event_given) return bad("the event is given twice: as EVENT and as --event");
    o.event = parsed.positional[1];
  }
  o.function = parsed.positional[0];
  if (!valid_python_identifier(o.handler))
    return bad("--handler \"" + o.handler +
               "\" is not a Python identifier (ASCII, at most 128, not a keyword)");
  if (o.factory != "exec" && o.factory != "template")
    return bad("--factory \"" + o.factory + "\": use exec or template");
  if (o.factory == "template" && o.no_isolation)
    return bad("--factory template makes sandboxes; it does not go with --no-isolation");
  return o;
}

namespace {

// Messages may quote what a function sent (an exception's message): shown
// escaped on a terminal like everything else the function prints.
int fail(int code, const std::string& msg) {
  write_for_display(STDERR_FILENO, "nsbox: " + msg + "\n");
  return code;
}

// How a run ended, printed only once the function is gone and its output
// relayed, so that its last prints come before the verdict.
struct RunEnd {
  int code = 0;
  std::string out;  // a JSON line for stdout, or empty
  std::string err;  // a message for stderr, or empty
};

RunEnd ended(int code, const std::string& err, const std::string& out = "") {
  return {code, out, err};
}

// How long a destination that takes no bytes (a terminal stopped with ^S)
// may hold up the end of a run once the function is gone.
constexpr int kRelayGraceMs = 2000;

// The seccomp cache: "" (no cache) when there is no private place for it.
std::string cache_dir() {
  std::string dir = "/var/cache/nsbox";
  if (geteuid() != 0) {
    const char* xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg == '/') {
      dir = std::string(xdg) + "/nsbox";
    } else if (auto home = writable_home()) {
      dir = *home + "/.cache/nsbox";
    } else {
      auto tmp = private_tmp_dir();
      if (!tmp) return "";
      dir = tmp.value() + "/cache";
    }
  }
  std::string parent = dir.substr(0, dir.find_last_of('/'));
  mkdir(parent.c_str(), 0755);
  mkdir(dir.c_str(), 0700);
  return dir;
}

// Where sandboxes' stages are mounted: never a path in /tmp another user
// could have made first (private_tmp_dir).
Result<std::string> stage_dir() {
  if (geteuid() == 0) return std::string("/run/nsbox/stage");
  const char* rt = getenv("XDG_RUNTIME_DIR");
  if (rt && *rt == '/') return std::string(rt) + "/nsbox/stage";
  return TRY(private_tmp_dir()) + "/stage";
}

std::string base_name(const std::string& p) {
  auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

// The unisolated baseline: same runner, same framing, a plain child. With
// no sandbox to end, what the function started (a daemonised child, a new
// session) would outlive the run: nsbox run is their subreaper while the
// child runs, and stop() kills whatever it has become the parent of.
struct PlainChild {
  pid_t pid = -1;
  bool started = false;  // then every child of ours is the function's
  ChannelFds channel;
  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    pid = -1;
    if (started) kill_and_reap_our_children();
  }
  ~PlainChild() { stop(); }
};

// Who an unisolated runner started by root runs as.
constexpr unsigned kNobody = 65534;

// as: the user behind sudo, whom the runner becomes (groups included); as
// root without one, it becomes nobody.
Result<PlainChild*> start_plain(PlainChild* c, const std::string& runner, const std::string& fn,
                                const std::string& handler, int output_fd,
                                const std::optional<Invoker>& as) {
  ChannelEnds chan = TRY(make_channel());
  std::vector<std::string> args = runner_argv(runner, fn, handler);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = runner_env();
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork", "runner");
  if (pid == 0) {
    // The sandbox's fd layout. Copied high first, since an end may already
    // sit on 1 to 4, and dup2 onto itself would keep close-on-exec. fds 1
    // and 2 are the relay's pipe, as in a sandbox, so that the output looks
    // the same (escaped on a terminal) in both modes.
    int in = fcntl(chan.runner_in.get(), F_DUPFD_CLOEXEC, 10);
    int out = fcntl(chan.runner_out.get(), F_DUPFD_CLOEXEC, 10);
    int log = fcntl(output_fd, F_DUPFD_CLOEXEC, 10);
    if (in < 0 || out < 0 || log < 0 || dup2(in, 3) < 0 || dup2(out, 4) < 0 || dup2(log, 1) < 0 ||
        dup2(log, 2) < 0)
      _exit(127);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    dup2(devnull, 0);
    signal(SIGPIPE, SIG_DFL);  // ignored dispositions survive exec
    sigset_t none;             // and so do blocked ones (the stop signals)
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Unisolated is not privileged: `sudo nsbox run --no-isolation` would
    // otherwise run the function as host root, which no sandbox ever is.
    // Under sudo it runs as the user who ran sudo: as nobody, it would let
    // them act as another user (nobody's files, nobody's daemons).
    const char* step = nullptr;
    if (geteuid() == 0 && as) {
      if (setgroups(as->groups.size(), as->groups.data()) != 0 ||
          setresgid(as->gid, as->gid, as->gid) != 0 || setresuid(as->uid, as->uid, as->uid) != 0) {
        dprintf(2, "nsbox: --no-isolation: could not become %s (uid %u): %s\n", as->name.c_str(),
                as->uid, strerror(errno));
        _exit(127);
      }
    } else if (geteuid() == 0) {
      if (int err = child_change_ids(kNobody, kNobody, true, &step)) {
        dprintf(2, "nsbox: --no-isolation: could not drop root to uid %u: %s: %s\n", kNobody, step,
                strerror(err));
        _exit(127);
      }
    }
    // A SIGKILLed nsbox run cannot stop() it: the runner dies with us, as
    // bwrap's --die-with-parent. Set after the uid change, which clears it;
    // a parent already gone is checked for once it is set.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  c->pid = pid;
  c->started = true;
  c->channel = std::move(chan.host);
  return c;
}

std::string format_limit_bytes(uint64_t b) {
  return std::to_string(b >> 20) + " MiB";
}

}  // namespace

int cmd_run(const std::vector<std::string>& args) {
  auto parsed = parse_run_args(args);
  if (!parsed) return fail(kExitUsage, parsed.error().text() + "\n" + run_usage());
  RunOptions o = parsed.value();
  // A runner that dies makes our next write fail with EPIPE, reported as
  // its death, rather than kill us with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  if (o.help) {
    std::fputs(run_usage().c_str(), stdout);
    return kExitOk;
  }
  if (o.verbose) set_log_level(LogLevel::Debug);

  // Inputs first: every bad input is exit 2 before anything is built.
  // Under sudo, the files named here are the invoking user's to open
  // (tools/invoker.hpp): the function is opened as them, and the sandbox
  // mounts that very file.
  auto invoker_r = sudo_invoker();
  if (!invoker_r) return fail(kExitUsage, invoker_r.error().text());
  const std::optional<Invoker> invoker = invoker_r.value();
  struct stat st;
  if (invoker) {
    auto fd = open_as(invoker, o.function, O_RDONLY | O_NONBLOCK);
    if (!fd) return fail(kExitUsage, fd.error().text());
    if (fstat(fd.value().get(), &st) != 0)
      return fail(kExitUsage, o.function + ": " + std::strerror(errno));
  } else {
    if (stat(o.function.c_str(), &st) != 0)
      return fail(kExitUsage, o.function + ": " + std::strerror(errno));
    if (S_ISREG(st.st_mode) && access(o.function.c_str(), R_OK) != 0)
      return fail(kExitUsage, o.function + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return fail(kExitUsage, o.function + ": not a regular file");
  // What a deploy takes: a file that runs here must deploy too.
  if (static_cast<uint64_t>(st.st_size) > uint64_t(kMaxSourceBytes))
    return fail(kExitUsage, o.function + ": " + std::to_string(st.st_size) +
                                " bytes, more than the 1 MiB a function's source may have (as "
                                "nsbox deploy refuses it)");
  char real[PATH_MAX];
  if (!realpath(o.function.c_str(), real))
    return fail(kExitUsage, o.function + ": " + std::strerror(errno));
  std::string fn_path = real;

  // The event is validated, not parsed: it goes to the runtime as the text
  // the user gave, as the daemon sends a request's body (a document would
  // turn a 5000-digit integer into null, and serialising a deeply nested
  // one recurses once per level).
  std::string event_text = o.event;
  if (o.event == "-") {
    // Read up to one byte past the limit: an endless stdin is refused, not
    // held in memory.
    event_text.clear();
    char buf[65536];
    while (event_text.size() <= kMaxPayload + 3) {  // + a byte order mark
      ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return fail(kExitUsage, std::string("--event -: reading stdin: ") + strerror(errno));
      if (n == 0) break;
      event_text.append(buf, size_t(n));
    }
    if (event_text.size() > kMaxPayload + 3)
      return fail(kExitUsage, "--event -: stdin holds more than the limit of " +
                                  std::to_string(kMaxPayload) + " bytes");
  }
  if (std::string why = json_error(event_text); !why.empty())
    return fail(kExitUsage,
                "--event is not valid JSON (" + why + "): " +
                    (event_text.size() > 80 ? event_text.substr(0, 80) + "..." : event_text));
  // Accepted above but not by the runtime's decoder: a file saved with a
  // byte order mark is still the event the user meant.
  if (event_text.rfind("\xEF\xBB\xBF", 0) == 0) event_text.erase(0, 3);
  if (event_text.size() > kMaxPayload)
    return fail(kExitUsage, "the event is " + std::to_string(event_text.size()) +
                                " bytes; the limit is " + std::to_string(kMaxPayload));

  Result<Policy> policy_r = make_error("policy", "not loaded");
  if (invoker && policy_is_path(o.policy)) {
    auto fd = open_as(invoker, o.policy, O_RDONLY | O_NONBLOCK);
    if (!fd) return fail(kExitUsage, "policy: " + fd.error().text());
    policy_r = load_policy_fd(fd.value().get(), o.policy);
  } else {
    policy_r = load_policy(o.policy);
  }
  if (!policy_r) return fail(kExitUsage, policy_r.error().text());
  Policy policy = policy_r.value();
  for (const std::string& w : policy_warnings(policy)) LOG_WARN("%s", w.c_str());
  if (o.memory) {
    auto m = parse_size(*o.memory);
    if (!m) return fail(kExitUsage, "--memory " + m.error().text());
    if (m.value() < (16ull << 20))
      return fail(kExitUsage, "--memory " + *o.memory + ": at least 16M is needed to start Python");
    if (m.value() > (65536ull << 20))
      return fail(kExitUsage, "--memory " + *o.memory + ": at most 64G (as a policy's memory_mb)");
    policy.limits.memory_bytes = m.value();
  }
  if (o.timeout) {
    // The daemon's bound too (?timeout= up to 15m): said, not silently cut.
    auto t = parse_duration_ms(*o.timeout, kMaxFunctionTimeoutMs, "15m");
    if (!t) return fail(kExitUsage, "--timeout " + t.error().text());
    policy.limits.wall_ms = static_cast<uint32_t>(t.value());
  }

  std::string rootfs;
  if (o.rootfs) {
    rootfs = *o.rootfs;
    // Root would make a tree (and its lock files) wherever the user says:
    // under sudo only an existing tree is used; `sudo nsbox rootfs build
    // --out DIR` is the command that makes one.
    // lstat, not a read: ensure_rootfs checks who owns the tree before it
    // reads anything in it (a FIFO there would hold root's read).
    struct stat stamp;
    if (invoker &&
        (lstat((rootfs + "/.nsbox-stamp").c_str(), &stamp) != 0 || !S_ISREG(stamp.st_mode)))
      return fail(kExitUsage, "--rootfs " + rootfs +
                                  ": no nsbox rootfs there, and under sudo nsbox run makes none "
                                  "(sudo nsbox rootfs build --out " +
                                  rootfs + " does, or leave out --rootfs)");
  } else {
    auto dir = default_rootfs_dir();
    if (!dir) return fail(kExitSetup, dir.error().message());
    rootfs = dir.value();
  }
  if (rootfs[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd)) rootfs = std::string(cwd) + "/" + rootfs;
  }
  // Under sudo, a --rootfs the user named is used, never built: root
  // would make a tree (and its lock files) where the user says.
  auto built = ensure_rootfs(rootfs, false, kHostPython, invoker && o.rootfs);
  if (!built) return fail(kExitSetup, built.error().message());
  if (built.value().built)
    print_for_display(STDERR_FILENO, "nsbox: %s\n", built.value().summary.c_str());
  rootfs = built.value().path;  // as checked: symlinks above it resolved
  // Held until the function ends: a rebuild meanwhile keeps the tree that
  // its overlay reads.
  const UniqueFd rootfs_in_use = std::move(built.value().in_use);
  // From here on something is made that must be removed: a stop signal
  // kills the sandbox and the run ends the ordinary way (the rootfs build
  // above stops on its own). Held pending until the sandbox exists.
  block_stop_signals();

  // The function's fds 1 and 2: a pipe we copy to our stderr, never the
  // terminal itself.
  OutputRelay relay;
  if (auto r = relay.open(STDERR_FILENO); !r) return fail(kExitSetup, r.error().message());

  const uint64_t t_start = monotonic_us();
  uint64_t deadline = monotonic_ms() + policy.limits.wall_ms;
  PlainChild plain;
  Sandbox sandbox;
  int to_runner, from_runner;
  std::string fn_inside;  // the function's path in the sandbox
  if (o.no_isolation) {
    // Said before it starts, not as the runner's failure to load: a sandbox
    // reads the file through a bind mount, nobody by its path.
    if (geteuid() == 0 && !invoker) {
      // No supplementary groups: the runner has none (start_plain).
      auto r = open_as(Invoker{kNobody, kNobody, "nobody", {}}, fn_path, O_RDONLY | O_NONBLOCK);
      if (!r)
        return fail(kExitUsage, "--no-isolation as root runs the function as nobody (uid " +
                                    std::to_string(kNobody) + "), who cannot read " + fn_path +
                                    " (" + std::strerror(r.error().err) +
                                    "): make it and the directories above it readable by "
                                    "others, or run without sudo");
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
      return fail(kExitSetup, std::string("prctl(PR_SET_CHILD_SUBREAPER): ") + strerror(errno));
    auto r =
        start_plain(&plain, rootfs + kRunnerPath, fn_path, o.handler, relay.write_fd(), invoker);
    if (!r) return fail(kExitSetup, r.error().message());
    to_runner = plain.channel.to_runner.get();
    from_runner = plain.channel.from_runner.get();
  } else {
    auto bpf = seccomp_get(policy.seccomp, cache_dir());
    if (!bpf) return fail(kExitSetup, "seccomp: " + bpf.error().message());
    auto stage = stage_dir();
    if (!stage) return fail(kExitSetup, stage.error().message());
    SandboxSpec spec = runner_spec(policy, rootfs, stage.value(), caller_ids(), fn_path);
    spec.id = "run-" + std::to_string(getpid());
    if (invoker) {
      spec.code_dev = st.st_dev;
      spec.code_ino = st.st_ino;
    }
    fn_inside = function_path_inside(spec);
    // As root the function runs as a sandbox uid that is neither the file's
    // owner nor in its group: said now, not as the runtime's EACCES on a
    // path inside the sandbox.
    if (!spec.ids.rootless && (st.st_mode & S_IROTH) == 0)
      return fail(kExitUsage, o.function + " is readable only by its owner or group (mode " +
                                  mode_octal(st.st_mode) +
                                  "), and the function runs as an unprivileged user of its "
                                  "sandbox that must read it: chmod o+r " +
                                  o.function);
    CgroupLayout layout;
    if (spec.ids.rootless) {
      spec.use_cgroups = false;
      LOG_WARN(
          "rootless without delegated cgroups: memory, pids and cpu limits fall back to "
          "per-process rlimits");
    } else {
      layout = cgroup_detect();
      spec.use_cgroups = layout.version != CgroupVersion::None;
      if (int n = cgroup_sweep_stale(layout, getpid()))
        LOG_INFO("removed %d stale cgroup leaves", n);
      if (!spec.use_cgroups)
        LOG_WARN(
            "no usable cgroups (%s): memory, pids and cpu limits fall back to per-process "
            "rlimits",
            layout.why_none.c_str());
      else
        LOG_DEBUG("cgroups: %s", layout.version == CgroupVersion::V2 ? "v2" : "v1");
    }
    spec.stderr_fd = relay.write_fd();
    // Before the template and the sandbox, which inherit it.
    if (!raise_core_limit_to_one() && !spec.ids.rootless && core_pattern_pipes())
      LOG_WARN("%s", kCoreLimitWarning);
    // -v only: a run is short, and its stderr is the function's.
    if (!spec.ids.rootless && !have_cap_sys_resource()) LOG_INFO("%s", kNoOomFloorWarning);
    TemplateProcess tmpl;
    if (o.factory == "template") {
      if (spec.ids.rootless)  // a usage error: the user chose it, and can choose otherwise
        return fail(kExitUsage,
                    "--factory template needs root (the template clones each sandbox as its "
                    "own host uid); use --factory exec");
      auto bin = sibling_program("nsbox-template");
      if (!bin) return fail(kExitSetup, bin.error().message());
      const uint64_t t0 = monotonic_us();
      auto t = TemplateProcess::start(
          TemplateOptions{bin.value(), rootfs, default_template_modules(), !o.verbose});
      if (!t) return fail(kExitSetup, t.error().message());
      tmpl = std::move(t.value());
      LOG_DEBUG("template started in %.1f ms (pid %d)", (monotonic_us() - t0) / 1e3, tmpl.pid());
    }
    auto sb = Sandbox::start(spec, bpf.value(), layout, tmpl.pid() > 0 ? &tmpl : nullptr);
    if (!sb) {
      const Error& e = sb.error();
      // What bwrap says here: rootless needs unprivileged user namespaces,
      // which a host may turn off or restrict (named when a setting says
      // so; AppArmor's restriction fails the first mount, not the clone),
      // or which this user may have used up.
      // user.max_user_namespaces = 0 fails the clone with ENOSPC.
      const bool denied = e.err == EPERM || e.err == EACCES || e.err == ENOSPC;
      const std::string restriction = spec.ids.rootless && denied ? userns_restriction() : "";
      if (!restriction.empty())
        return fail(kExitSetup, "sandbox: " + e.message() + ": " + restriction +
                                    "; or run with sudo, or --no-isolation to run the function "
                                    "unisolated");
      if (spec.ids.rootless && e.step == "clone3" && (denied || e.err == EUSERS))
        return fail(kExitSetup,
                    "sandbox: " + e.message() +
                        ": this user may not make a user namespace here (the host turns them off "
                        "for unprivileged users, or this user has used up "
                        "user.max_user_namespaces); run with sudo, or --no-isolation to run the "
                        "function unisolated");
      return fail(kExitSetup, "sandbox: " + e.message());
    }
    sandbox = std::move(sb.value());
    to_runner = sandbox.channel().to_runner.get();
    from_runner = sandbox.channel().from_runner.get();
    if (o.verbose) LOG_INFO("setup: %s", format_timings(sandbox.timings()).c_str());
  }
  UniqueFd plain_pidfd;
  if (o.no_isolation) {
    // By pidfd: the main thread may reap it first, and its pid be reused.
    plain_pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, plain.pid, 0)));
    on_stop_signal([fd = plain_pidfd.get()] {
      if (fd >= 0) syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
      // What the function started holds the channel too: killing the
      // runner alone left the run waiting for its deadline. The main
      // thread reaps.
      kill_our_children_reaped_elsewhere();
    });
  } else {
    on_stop_signal([&sandbox] { sandbox.kill(); });
  }
  // Whatever way this function returns, the action goes before what it
  // acts on (declared after them, destroyed first).
  struct ClearStopAction {
    ~ClearStopAction() { on_stop_signal(nullptr); }
  } clear_stop_action;
  watch_stop_signals();
  relay.close_write_fd();
  if (auto r = relay.start(); !r) return fail(kExitSetup, r.error().message());

  // Decides what a non-result ending means: a limit event beats everything,
  // because a fork bomb or a memory hog usually shows up as an exception or
  // a hang rather than as a kill.
  auto limit_exit = [&](bool memory_error) -> std::optional<RunEnd> {
    CgroupEvents ev = o.no_isolation ? CgroupEvents{} : sandbox.events();
    if (ev.oom_kills > 0 || memory_error)
      return ended(kExitKilled, "killed: memory limit of " +
                                    format_limit_bytes(policy.limits.memory_bytes) +
                                    " exceeded (raise it with --memory)");
    if (ev.pids_max > 0)
      return ended(kExitKilled, "killed: pids limit of " + std::to_string(policy.limits.pids) +
                                    " processes/threads reached");
    return std::nullopt;
  };
  auto timed_out = [&]() -> RunEnd {
    if (auto e = limit_exit(false)) return *e;
    std::string why = "function timed out after " + std::to_string(policy.limits.wall_ms) + " ms";
    CgroupEvents ev = o.no_isolation ? CgroupEvents{} : sandbox.events();
    if (ev.reached_memory_limit(policy.limits.memory_bytes))
      return ended(kExitTimeout, why + " at its memory limit of " +
                                     format_limit_bytes(policy.limits.memory_bytes) +
                                     ", where it was likely thrashing: the kernel reclaimed its "
                                     "pages " +
                                     std::to_string(ev.memory_max) +
                                     " times rather than kill it (raise it with --memory)");
    return ended(kExitTimeout, why + " (raise it with --timeout)");
  };
  auto died = [&]() -> RunEnd {
    // Reap before killing: the runner usually ended by itself and its status
    // is the function's (os._exit(5) must read 5, not a SIGKILL of ours).
    int status = 0;
    // A runner that closed its channel and lives on (its code closed fds 3
    // and 4) is stopped after the same 200 ms either way: unisolated, an
    // unbounded waitpid held the run until the function chose to exit.
    bool stopped_by_us = false;
    if (o.no_isolation) {
      // Only this thread reaps the runner, so its pid is its own until the
      // waitpid below: a kill by pid is safe where no pidfd could be had.
      bool exited = false;
      for (int waited = 0; waited < 200 && !exited; waited += 5) {
        exited = waitpid(plain.pid, &status, WNOHANG) == plain.pid;
        if (!exited) usleep(5000);
      }
      if (!exited) {
        kill(plain.pid, SIGKILL);
        stopped_by_us = true;
        waitpid(plain.pid, &status, 0);
      }
      plain.pid = -1;
    } else if (!sandbox.reap(200, &status)) {
      sandbox.kill();
      stopped_by_us = true;
      sandbox.reap(-1, &status);
    }
    // It may have exited by itself just before our kill landed.
    stopped_by_us &= WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (auto e = limit_exit(false)) return *e;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    json err = {{"errorType", "Runtime.ExitError"},
                {"errorMessage", "function process exited with status " + std::to_string(code)}};
    // Not the function's exit status, nor a limit's kill: ours.
    if (stopped_by_us)
      err["errorMessage"] =
          "the function's process closed its channel without an answer and did not exit; "
          "nsbox stopped it";
    // A filter whose default_action kills (or traps, unhandled) ends the
    // process with SIGSYS: said, or it reads as the function's own exit. PID
    // 1 passes a signal on as 128 + its number, as an exit(159) would be:
    // hence "most likely". Unisolated, there is no filter.
    if (code == 128 + SIGSYS && !o.no_isolation)
      err["errorMessage"] =
          "function process ended with status " + std::to_string(code) +
          " (128 + SIGSYS): most likely killed by its seccomp filter for a system call the "
          "policy does not allow, with a default_action that kills; default_action = "
          "\"errno\" gives EPERM instead, or add the call";
    return RunEnd{kExitFunctionError, err.dump() + "\n", ""};
  };

  // What the runtime's outcome means here, for its load reply and its
  // result alike (rootfs/runner_client.hpp classifies the replies, for the
  // daemon too).
  auto verdict = [&](Outcome& r) -> RunEnd {
    // Error objects and results are printed as the runtime wrote them.
    if (r.payload.empty() || r.payload.back() != '\n') r.payload += '\n';
    switch (r.kind) {
      case Outcome::Ok:
        return RunEnd{kExitOk, std::move(r.payload), ""};
      case Outcome::Raised:
        if (auto e = limit_exit(r.error_type == "MemoryError")) return *e;
        return RunEnd{kExitFunctionError, std::move(r.payload), ""};
      case Outcome::BadResult: {
        const auto err = parse_envelope(r.payload);
        return ended(kExitUsage, "the function's result cannot be passed on: " +
                                     (err ? reply_str(*err, "errorMessage") : std::string()));
      }
      case Outcome::LoadFailed:
        if (r.error_kind == "import") {
          if (auto e = limit_exit(r.error_type == "MemoryError")) return *e;
          return ended(
              kExitFunctionError,
              o.function + ": loading the module raised " + r.error_type + ": " + r.message,
              std::move(r.payload));
        }
        if (r.error_kind != "syntax") return ended(kExitUsage, o.function + ": " + r.message);
        [[fallthrough]];
      case Outcome::SyntaxError:
        return ended(kExitUsage, o.function + ":" + std::to_string(r.line) + ": " + r.error_type +
                                     ": " + r.message);
      case Outcome::BadEvent:
        return ended(kExitUsage, "the event could not be decoded by the runtime: " + r.message);
      case Outcome::TooLarge:
        return ended(kExitUsage, r.message);
      case Outcome::Timeout:
        return timed_out();
      case Outcome::Died:
        // A reply the protocol forbids can only come from the function's
        // own code writing to the channel: no exit status to report.
        if (r.broke_protocol) return ended(kExitSetup, r.message);
        return died();
    }
    return ended(kExitSetup, r.message);  // not reached: every kind is handled above
  };

  // The conversation with the runner; its verdict is printed below, once the
  // function's output is all out.
  auto converse = [&]() -> RunEnd {
    const uint64_t t_started = monotonic_us();
    FrameDecoder decoder;
    RunnerChannel chan;
    chan.to_runner = to_runner;
    chan.from_runner = from_runner;
    chan.decoder = &decoder;
    // A sandbox is told its function only now that it is set up
    // (runner_spec); the plain runner, which has no setup to wait for, was
    // started with --function and says how loading it went.
    Outcome hello = o.no_isolation ? runner_await_load(chan, deadline)
                                   : runner_load(chan, fn_inside, o.handler, "", deadline);
    const uint64_t t_ready = monotonic_us();
    if (hello.kind == Outcome::Died && !hello.broke_protocol && !o.no_isolation &&
        policy_is_path(o.policy)) {
      // A policy file that leaves out what the interpreter needs to start
      // (write, read, mmap...) kills it before it says a word. So does a
      // module that exits while it is imported: both are reported as the
      // process's exit (1), with the policy named as a likely cause.
      RunEnd end = died();
      if (end.code == kExitFunctionError)
        end.err = "the runtime ended before it loaded " + o.function +
                  ": unless its module exits while it is imported, the policy " + o.policy +
                  " likely refuses a system call the interpreter needs to start; compare its "
                  "[seccomp.allow] with the default policy's (policies/default.toml), or run "
                  "with default_action = \"log\" to find it";
      return end;
    }
    if (hello.kind != Outcome::Ok) return verdict(hello);
    // No "http": a proxy-shaped result is printed whole, as the function
    // returned it.
    RunnerInvoke req;
    req.id = "run-" + std::to_string(getpid());
    req.function_name = base_name(fn_path);
    req.function_version = "$LATEST";
    req.memory_mb = policy.limits.memory_bytes >> 20;
    Outcome res = runner_invoke(chan, req, event_text, deadline);
    if (res.kind == Outcome::Ok)
      LOG_DEBUG("timing: start %.3f ms, runner ready %.3f ms, invoke %.3f ms",
                (t_started - t_start) / 1e3, (t_ready - t_started) / 1e3,
                (monotonic_us() - t_ready) / 1e3);
    return verdict(res);
  };
  // A signal that came during setup found nothing to kill yet.
  if (stop_signal()) on_stop_signal(nullptr);
  RunEnd end = stop_signal() ? RunEnd{} : converse();
  on_stop_signal(nullptr);  // before the sandbox it acts on goes

  // The function goes first (a sandbox's last process gone closes the
  // pipe), then what is left in the pipe, then the verdict.
  if (o.no_isolation)
    plain.stop();
  else if (auto d = sandbox.destroy(); !d)
    LOG_WARN("%s", d.error().message().c_str());
  relay.finish(kRelayGraceMs);
  if (int sig = stop_signal()) {
    std::fprintf(
        stderr, "nsbox: stopped by %s; %s\n", strsignal(sig),
        o.no_isolation ? "the function and what it started are gone" : "the sandbox is gone");
    return die_of(sig);
  }
  if (!end.out.empty()) write_for_display(STDOUT_FILENO, end.out);
  if (!end.err.empty()) fail(end.code, end.err);
  return end.code;
}

}  // namespace nsbox
