// Hostile tenants against the sandbox core (issue 8, items 1, 5 and 12):
// PID 1 of a sandbox is filtered, non-dumpable and holds no secret of the
// daemon; each root-mode sandbox has host uids of its own, so per-user
// kernel counters are not shared; sandboxes die with `nsbox run` and with
// the daemon, even when killed with -9.
#include <dirent.h>
#include <doctest/doctest.h>
#include <elf.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/random.hpp"
#include "tests/integration/daemon.hpp"
#include "tests/integration/harness.hpp"

using nlohmann::json;
using nsbox::test::auth;
using nsbox::test::Daemon;
using nsbox::test::kNobody;
using nsbox::test::Outcome;
using nsbox::test::pids_named;
using nsbox::test::StateDir;
using nsbox::test::wait_until;

namespace {

uid_t proc_uid(pid_t pid) {
  const std::string v = nsbox::test::proc_status(pid, "Uid");
  return v.empty() ? static_cast<uid_t>(-1) : static_cast<uid_t>(std::stoul(v));
}

// The host uid that created the process's user namespace.
uid_t userns_owner(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/ns/user";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return static_cast<uid_t>(-1);
  uid_t owner = static_cast<uid_t>(-1);
  if (ioctl(fd, NS_GET_OWNER_UID, &owner) != 0) owner = static_cast<uid_t>(-1);
  close(fd);
  return owner;
}

std::string host_event(const json& extra = json::object()) {
  return nsbox::test::in_sandbox(extra).dump();
}

// `nsbox run` as an ordinary user.
Outcome run_rootless(const std::string& probe, std::vector<std::string> args) {
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "run", nsbox::test::probe(probe)};
  s.argv.insert(s.argv.end(), args.begin(), args.end());
  REQUIRE(nsbox::test::rootless_as(kNobody, &s));
  return nsbox::test::run(s);
}

const char* kPool =
    "[pool]\nblank = 1\nmax_sandboxes = 8\nper_function = 2\nidle_timeout_ms = 60000\n";

void check_pid1(const json& r) {
  CHECK(r["pid1_seccomp"] == "2");
  CHECK(r["pid1_no_new_privs"] == "1");
  CHECK(r["pid1_mem_rw"] != "ok");
  CHECK(r["pid1_mem_r"] != "ok");
  CHECK(r["pid1_environ"] != "ok");
  // PID 1 is nsbox-init, exec'd from a file the sandbox may not read: it
  // holds no copy of the spawner's or the template's memory.
  CHECK(r["pid1_program"] == "nsbox-init");
  CHECK(r["pid1_exe"] != "ok");
  // PID 1 leads a session of its own: no terminal of the caller's.
  CHECK(r["sid"] == 1);
}

}  // namespace

TEST_CASE("PID 1 is filtered, unreadable and in its own session: nsbox run, root and rootless") {
  for (const char* policy : {"default", "strict"}) {
    CAPTURE(policy);
    Outcome o = nsbox::test::nsbox_run("pid1.py", {"--policy", policy, "--event", host_event()});
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    check_pid1(o.json());
    Outcome u = run_rootless("pid1.py", {"--policy", policy, "--event", host_event()});
    REQUIRE_MESSAGE(u.exit_code == 0, u.err);
    check_pid1(u.json());
  }
}

namespace {

std::string init_path() {
  std::string bin = nsbox::test::nsbox_bin();
  return bin.substr(0, bin.find_last_of('/') + 1) + "nsbox-init";
}

// nsbox-init run as a sandbox's PID 1 runs it, on its own: a child of this
// process's forks `runner` first, then execs nsbox-init with the runner's
// pid (as pid_text writes it) before `args` (and no_new_privs set, as in a
// sandbox, so that the filter loads without privilege). The runner gets the read end of a pipe
// whose write end nsbox-init inherits, so it can tell when its PID 1 has
// closed its fds. Returns the exit code of PID 1's stand-in, 1000 + the
// signal that killed it, or -1 if it was still running after 10 s (killed).
int run_init(const std::vector<std::string>& args, const std::function<int(int)>& runner,
             const std::function<std::string(pid_t)>& pid_text = nullptr) {
  const std::string init = init_path();
  pid_t p = fork();
  REQUIRE(p >= 0);
  if (p == 0) {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    std::vector<std::string> argv = {"nsbox-init"};
    if (runner) {
      int fds[2];
      if (pipe(fds) != 0) _exit(98);
      pid_t r = fork();
      if (r < 0) _exit(98);
      if (r == 0) {
        close(fds[1]);
        _exit(runner(fds[0]));
      }
      close(fds[0]);
      argv.push_back(pid_text ? pid_text(r) : std::to_string(r));
    }
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> ptrs;
    for (auto& a : argv) ptrs.push_back(a.data());
    ptrs.push_back(nullptr);
    execv(init.c_str(), ptrs.data());
    _exit(99);
  }
  int st = 0;
  bool ended = wait_until([&] { return waitpid(p, &st, WNOHANG) == p; }, 10000, "nsbox-init ends");
  if (!ended) {
    kill(p, SIGKILL);
    waitpid(p, &st, 0);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

// The runner's view of its PID 1 once that is waiting for it: EOF on fd
// (nsbox-init has closed the fds it was given), then its Seccomp mode from
// /proc/PPID/status once it sleeps in wait4. Exits 10 + the mode; 30 if fd
// never reached EOF, 31 if the mode could not be read.
int report_pid1(int fd) {
  char c;
  if (read(fd, &c, 1) != 0) return 30;
  for (int i = 0; i < 400; i++) {
    std::ifstream stat("/proc/" + std::to_string(getppid()) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'S') {
      std::ifstream status("/proc/" + std::to_string(getppid()) + "/status");
      for (std::string l; std::getline(status, l);)
        if (l.rfind("Seccomp:", 0) == 0) return 10 + atoi(l.c_str() + 8);
      return 31;
    }
    usleep(5000);
  }
  return 31;
}

}  // namespace

// nsbox-init is linked without a C library, so nothing checks its start-up
// but the program itself: these are the sandbox's exit statuses.
TEST_CASE("nsbox-init exits with its runner's status and reaps orphans meanwhile") {
  // Statuses: the runner's own, 128 + the signal that killed it.
  CHECK(run_init({"1"}, [](int) { return 7; }) == 7);
  CHECK(run_init({"0"}, [](int) { return 0; }) == 0);
  CHECK(run_init({"1"}, [](int) {
          raise(SIGKILL);
          return 0;
        }) == 128 + SIGKILL);
  // It closes every fd it was given, then loads its filter (mode 2) if
  // asked, and only then.
  CHECK(run_init({"1"}, report_pid1) == 10 + SECCOMP_MODE_FILTER);
  CHECK(run_init({"0"}, report_pid1) == 10 + SECCOMP_MODE_DISABLED);
  // Arguments child.cpp does not write: 127, not the runner's 7, however
  // close to a real pid and flag they are.
  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{}, {"1", "extra"}, {"2"}, {"1x"}, {""}}) {
    CAPTURE(bad.size());
    CHECK(run_init(bad, [](int) { return 7; }) == 127);
  }
  CHECK(run_init({}, nullptr) == 127);
  // The runner's pid itself, written as child.cpp never writes it: a
  // lenient parser (strtol, say) would wait for the runner and return 7.
  for (const char* form : {"+%lld", " %lld", "%lld ", "0x%llx", "%lld.", "-%lld"}) {
    CAPTURE(form);
    CHECK(run_init(
              {"1"}, [](int) { return 7; },
              [form](pid_t r) {
                char text[64];
                snprintf(text, sizeof text, form, static_cast<long long>(r));
                return std::string(text);
              }) == 127);
  }
  // Past the largest pid, never cut down to the pid it would wrap to.
  CHECK(run_init(
            {"1"}, [](int) { return 7; },
            [](pid_t r) { return std::to_string((1LL << 32) + r); }) == 127);
  // An orphan (the runner's grandchild, whose parent exited) is reparented
  // to PID 1, which reaps it while the runner still runs: the runner sees
  // it gone (ESRCH), not a zombie, and says so with its status.
  int code = run_init({"1"}, [](int) {
    int fds[2];
    if (pipe(fds) != 0) return 20;
    pid_t g = fork();
    if (g == 0) {
      pid_t h = fork();
      if (h > 0 && write(fds[1], &h, sizeof h) != sizeof h) _exit(1);
      _exit(0);  // h, orphaned, exits at once too
    }
    pid_t h = 0;
    if (g < 0 || read(fds[0], &h, sizeof h) != sizeof h || waitpid(g, nullptr, 0) != g) return 21;
    for (int i = 0; i < 400; i++) {
      if (kill(h, 0) != 0 && errno == ESRCH) return 5;
      usleep(5000);
    }
    return 6;  // still a zombie after 2 s: nobody reaped it
  });
  CHECK(code == 5);
}
TEST_CASE("nsbox-init is static and has no C library start-up") {
  std::ifstream f(init_path(), std::ios::binary);
  REQUIRE(f);
  Elf64_Ehdr eh{};
  REQUIRE(f.read(reinterpret_cast<char*>(&eh), sizeof eh));
  REQUIRE(memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0);
  CHECK(eh.e_type == ET_EXEC);
  bool stack_seen = false;
  for (int i = 0; i < eh.e_phnum; i++) {
    // A program header starts with its type and flags (resolv.h, which a
    // header here includes, makes p_type a macro).
    uint32_t type_flags[2] = {0, 0};
    f.seekg(static_cast<std::streamoff>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize));
    REQUIRE(f.read(reinterpret_cast<char*>(type_flags), sizeof type_flags));
    // No loader, and no thread-local storage: a C library's start-up would
    // set both up (and a static glibc's probes the CPU's caches, which traps
    // to the hypervisor in a VM).
    CHECK(type_flags[0] != PT_INTERP);
    CHECK(type_flags[0] != PT_TLS);
    // Its own entry code must not have cost it a non-executable stack.
    if (type_flags[0] == PT_GNU_STACK) {
      stack_seen = true;
      CHECK((type_flags[1] & PF_X) == 0);
    }
  }
  CHECK(stack_seen);
}

// Uncapped sandboxes share the daemon's cpu group, where the kernel groups
// tasks by session: a new session would be a new share as large as another
// tenant's. nsbox run caps every sandbox in a cpu group of its own.
TEST_CASE("serve without cpu_limits refuses a new session; nsbox run allows it") {
  Outcome o = nsbox::test::nsbox_run("new_session.py", {"--event", host_event()});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.json()["setsid"] == "ok");
  StateDir sd("setsid");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  std::ifstream src(nsbox::test::probe("new_session.py"));
  std::string code((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  // The default policy allows setsid (strict allows no fork at all).
  auto put = d.client()->Put("/functions/session", auth(d), code, "text/x-python");
  REQUIRE(put);
  REQUIRE(put->status == 201);
  auto r = d.client()->Post("/fn/session", host_event(), "application/json");
  REQUIRE(r);
  REQUIRE_MESSAGE(r->status == 200, r->body);
  CHECK(json::parse(r->body)["setsid"] == "Operation not permitted");
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function finds no trace of the admin token, root and rootless") {
  for (bool rootless : {false, true}) {
    CAPTURE(rootless);
    StateDir sd(rootless ? "token-rootless" : "token-root");
    const std::string token = "nsbox-tenancy-secret-" + nsbox::random_hex(16, "test token").value();
    Daemon d(sd.path, "token = \"" + token + "\"\n" + kPool);
    if (rootless) d.run_as(kNobody);
    REQUIRE_MESSAGE(d.start(), d.log());
    auto c = d.client(60);
    httplib::Headers h = {{"Authorization", "Bearer " + token}};
    std::ifstream src(nsbox::test::probe("pid1.py"));
    std::string code((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
    for (const char* policy : {"default", "strict"}) {
      CAPTURE(policy);
      std::string name = std::string("pid1-") + policy;
      auto put = c->Put(("/functions/" + name + "?timeout=30s&policy=" + policy).c_str(), h, code,
                        "text/x-python");
      REQUIRE(put);
      REQUIRE_MESSAGE(put->status == 201, put->body);
      auto r =
          c->Post(("/fn/" + name).c_str(), host_event({{"needle", token}}), "application/json");
      REQUIRE(r);
      REQUIRE_MESSAGE(r->status == 200, r->body);
      json res = json::parse(r->body, nullptr, false);
      check_pid1(res);
      CHECK(res["found"] == json::array());
      CHECK(res["files_searched"].get<int>() > 100);  // the search did run
    }
    CHECK(d.stop() == 0);
  }
}

namespace {

// Two sandboxes at once: one holds all the pipe buffer pages its host uid
// may have, the other makes a pipe meanwhile. `start_hog` starts the first
// and returns once the hog holds them (its process renamed itself);
// `check` runs the second and returns its report.
void check_pipe_pages_not_shared(const std::function<void()>& start_hog,
                                 const std::function<json()>& check,
                                 const std::function<json()>& hog_result) {
  start_hog();
  std::vector<pid_t> hogs;
  REQUIRE(wait_until(
      [&] {
        hogs = pids_named("nsbox-pipehog");
        return !hogs.empty();
      },
      30000, "the hog to hold its pipes"));
  REQUIRE(hogs.size() == 1);
  const uid_t hog_uid = proc_uid(hogs[0]);
  // The hog runs as its slot's uid 1000, and that slot's uid 0 created its
  // user namespace, so the namespace's counters are charged to the slot.
  CHECK(hog_uid >= 0x70000000u);
  CHECK(userns_owner(hogs[0]) == hog_uid - 1000);
  json other = check();
  // Measured while the hog still held its pipes: it holds them until told.
  CHECK(!pids_named("nsbox-pipehog").empty());
  CHECK(kill(hogs[0], SIGUSR1) == 0);
  json hog = hog_result();
  INFO("hog: " << hog.dump() << " other: " << other.dump());
  CHECK(hog["released"] == true);
  // The hog really reached the limit: its own new pipes are shrunk.
  CHECK(hog["refused"] == "Operation not permitted");
  CHECK(hog["after"]["grow"] != "ok");
  // The neighbour is untouched: a full-size pipe that may grow.
  CHECK(other["size"] == 65536);
  CHECK(other["grow"] == "ok");
}

}  // namespace

TEST_CASE("one host uid range per sandbox: pipe pages exhausted by one run stay another's") {
  Outcome hog;
  std::thread t;
  check_pipe_pages_not_shared(
      [&] {
        t = std::thread([&] {
          hog = nsbox::test::nsbox_run(
              "pipes.py",
              {"--timeout", "20s", "--event", host_event({{"mode", "hog"}, {"hold_ms", 8000}})});
        });
      },
      [&] {
        Outcome o = nsbox::test::nsbox_run("pipes.py", {"--event", host_event()});
        CHECK_MESSAGE(o.exit_code == 0, o.err);
        return o.json();
      },
      [&] {
        t.join();
        CHECK_MESSAGE(hog.exit_code == 0, hog.err);
        return hog.json();
      });
  if (t.joinable()) t.join();
}

TEST_CASE("serve: one host uid range per sandbox: pipe pages exhausted by one function") {
  StateDir sd("pipes");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  std::ifstream src(nsbox::test::probe("pipes.py"));
  std::string code((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  for (const char* name : {"hog", "check"}) {
    auto put = d.client()->Put((std::string("/functions/") + name + "?timeout=20s").c_str(),
                               auth(d), code, "text/x-python");
    REQUIRE(put);
    REQUIRE(put->status == 201);
  }
  int hog_status = 0;
  std::string hog_body;
  std::thread t;
  check_pipe_pages_not_shared(
      [&] {
        t = std::thread([&] {
          auto r = d.client(60)->Post("/fn/hog", host_event({{"mode", "hog"}, {"hold_ms", 8000}}),
                                      "application/json");
          if (r) {
            hog_status = r->status;
            hog_body = r->body;
          }
        });
      },
      [&] {
        auto r = d.client()->Post("/fn/check", host_event(), "application/json");
        REQUIRE(r);
        CHECK_MESSAGE(r->status == 200, r->body);
        return json::parse(r->body, nullptr, false);
      },
      [&] {
        t.join();
        CHECK_MESSAGE(hog_status == 200, hog_body);
        return json::parse(hog_body, nullptr, false);
      });
  if (t.joinable()) t.join();
  CHECK(d.stop() == 0);
}

namespace {

// Waits until no sandbox process is left, then until a sweep (any later
// nsbox run) has removed the killed owner's cgroup leaves.
void check_no_residue(const nsbox::test::HostResidue& before) {
  bool gone = wait_until([] { return nsbox::test::host_residue().sandbox_procs == 0; }, 5000,
                         "no sandbox process to be left");
  CHECK_MESSAGE(gone, "left running: " << nsbox::test::host_residue().describe_procs);
  CHECK(nsbox::test::host_residue().mounts == before.mounts);
  // The killed owner could not remove its leaves; the next owner sweeps
  // leaves whose owner is gone and which hold no task.
  Outcome sweep = nsbox::test::nsbox_run("echo.py");
  CHECK_MESSAGE(sweep.exit_code == 0, sweep.err);
  auto after = nsbox::test::host_residue();
  CHECK(after.cgroup_leaves <= before.cgroup_leaves);
  CHECK(after.sandbox_procs == 0);
}

// `nsbox run spin.py`, its stdout to /dev/null and its stderr to err_path
// (or /dev/null); a runner that spins until the run is stopped.
pid_t start_spinning_run(const std::string& err_path = "/dev/null") {
  const std::string bin = nsbox::test::nsbox_bin(), probe = nsbox::test::probe("spin.py");
  pid_t run = fork();
  if (run == 0) {
    int null = open("/dev/null", O_WRONLY);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(null, 1);
    dup2(err, 2);
    execl(bin.c_str(), bin.c_str(), "run", probe.c_str(), "--timeout", "60s", nullptr);
    _exit(127);
  }
  return run;
}

}  // namespace

TEST_CASE("kill -9 of nsbox run ends its busy sandbox") {
  auto before = nsbox::test::host_residue();
  REQUIRE(before.sandbox_procs == 0);
  pid_t run = start_spinning_run();
  REQUIRE(run > 0);
  // Spinning: the runner (the sandbox's uid 1000) is on a CPU.
  bool spinning = wait_until(
      [] {
        auto r = nsbox::test::host_residue();
        return r.describe_procs.find("[R") != std::string::npos;
      },
      30000, "the sandbox's runner to spin");
  CHECK(spinning);
  kill(run, SIGKILL);
  waitpid(run, nullptr, 0);
  check_no_residue(before);
}

TEST_CASE("nsbox run stopped by SIGTERM, SIGINT or SIGHUP removes its sandbox itself") {
  auto before = nsbox::test::host_residue();
  REQUIRE(before.sandbox_procs == 0);
  nsbox::test::TempDir tmp("stop-signals");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    INFO(strsignal(sig));
    const std::string err_path = tmp.path + "/err-" + std::to_string(sig);
    pid_t run = start_spinning_run(err_path);
    REQUIRE(run > 0);
    const std::string leaf = "run-" + std::to_string(run);
    auto has_leaf = [&](const nsbox::test::HostResidue& r) {
      for (const auto& l : r.describe_leaves)
        if (l.find(leaf) != std::string::npos) return true;
      return false;
    };
    bool spinning = wait_until(
        [&] {
          auto r = nsbox::test::host_residue();
          return r.describe_procs.find("[R") != std::string::npos && has_leaf(r);
        },
        30000, "the sandbox's runner to spin");
    CHECK(spinning);
    kill(run, sig);
    int status = 0;
    REQUIRE(waitpid(run, &status, 0) == run);
    // Died of the signal, as a shell expects of an interrupted command...
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == sig);
    // ...once its sandbox was gone: leaves removed by the run itself, not
    // left for the next run's sweep.
    auto after = nsbox::test::host_residue();
    CHECK(after.sandbox_procs == 0);
    CHECK_FALSE(has_leaf(after));
    CHECK(after.mounts == before.mounts);
    std::ifstream err(err_path);
    std::string text((std::istreambuf_iterator<char>(err)), {});
    CHECK_MESSAGE(text.find("stopped by") != std::string::npos, text);
  }
}

TEST_CASE("serve: kill -9 of the daemon ends its sandboxes, busy or idle") {
  auto before = nsbox::test::host_residue();
  REQUIRE(before.sandbox_procs == 0);
  StateDir sd("kill9");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  auto put =
      d.client()->Put("/functions/spin?timeout=60s", auth(d),
                      "def handler(e, c):\n    while True:\n        pass\n", "text/x-python");
  REQUIRE(put);
  REQUIRE(put->status == 201);
  std::vector<std::thread> calls;
  for (int i = 0; i < 2; i++)
    calls.emplace_back([&] { d.client(60)->Post("/fn/spin", "{}", "application/json"); });
  bool spinning = wait_until(
      [] {
        auto r = nsbox::test::host_residue();
        size_t running = 0, pos = 0;
        while ((pos = r.describe_procs.find("[R", pos)) != std::string::npos) running++, pos++;
        return running >= 2;
      },
      30000, "both sandboxes' runners to spin");
  CHECK(spinning);
  CHECK(d.kill9());
  for (auto& t : calls) t.join();
  check_no_residue(before);
}

// Without HOME or XDG_RUNTIME_DIR a rootless run keeps its stage (and
// rootfs and seccomp cache) in /tmp/nsbox-UID: a directory another local
// user made there first, or a symlink to one, would let that user watch or
// change what the caller's sandboxes see. It is used only when it is a
// real directory of the caller's that no one else can enter.
TEST_CASE("nsbox run without HOME or XDG_RUNTIME_DIR refuses a /tmp/nsbox-UID not its own") {
  const std::string dir = "/tmp/nsbox-" + std::to_string(kNobody);
  const std::string aside = dir + ".aside-" + std::to_string(getpid());
  const bool had = ::rename(dir.c_str(), aside.c_str()) == 0;
  const std::string target = "/tmp/nsbox-test-target-" + std::to_string(getpid());
  auto run_it = [] {
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", nsbox::test::probe("echo.py"), "--event",
              R"({"x": 1})"};
    REQUIRE(nsbox::test::rootless_as(kNobody, &s));
    s.env.push_back("XDG_RUNTIME_DIR=");  // unset: the /tmp fallback
    return nsbox::test::run(s);
  };
  // Made by another user (root here), open to all.
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  Outcome o = run_it();
  CHECK(o.exit_code == 3);
  CHECK_MESSAGE(o.err.find(dir + " is not a directory of yours (owner uid 0") != std::string::npos,
                o.err);
  CHECK(::access((dir + "/stage").c_str(), F_OK) != 0);
  REQUIRE(::rmdir(dir.c_str()) == 0);
  // A symlink to a directory another user owns.
  REQUIRE(::mkdir(target.c_str(), 0777) == 0);
  REQUIRE(::symlink(target.c_str(), dir.c_str()) == 0);
  o = run_it();
  CHECK(o.exit_code == 3);
  CHECK_MESSAGE(o.err.find("a symlink") != std::string::npos, o.err);
  CHECK(::access((target + "/stage").c_str(), F_OK) != 0);
  REQUIRE(::unlink(dir.c_str()) == 0);
  REQUIRE(::rmdir(target.c_str()) == 0);
  // None there: made, private, and the run goes ahead.
  o = run_it();
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  struct stat st {};
  REQUIRE(::lstat(dir.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK(st.st_uid == kNobody);
  CHECK((st.st_mode & 0777) == 0700);
  // Its own, 0755 as an older nsbox made it: closed to others, and used.
  REQUIRE(::chmod(dir.c_str(), 0755) == 0);
  o = run_it();
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  REQUIRE(::lstat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  // Its own but writable by others: someone else may have put things in it.
  REQUIRE(::chmod(dir.c_str(), 0777) == 0);
  o = run_it();
  CHECK(o.exit_code == 3);
  CHECK_MESSAGE(o.err.find("writable by others") != std::string::npos, o.err);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (had) CHECK(::rename(aside.c_str(), dir.c_str()) == 0);
}

// A set-uid copy would read policy files, trees and tokens for its caller
// with root's rights (a policy file's error quotes its lines) and run what
// the caller names: both front-ends refuse to start that way.
TEST_CASE("a set-uid nsbox refuses to run") {
  nsbox::test::TempDir tmp("setuid");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  // Where /tmp is mounted nosuid (a tmpfs /tmp on many distributions) the
  // kernel ignores the bit, so there is nothing to refuse: said, not passed.
  struct statvfs vfs {};
  REQUIRE(statvfs(tmp.path.c_str(), &vfs) == 0);
  if (vfs.f_flag & ST_NOSUID) {
    MESSAGE(tmp.path << " is on a nosuid mount: the set-uid refusal cannot be tried here");
    return;
  }
  for (const std::string name : {"nsbox", "nsbox-http"}) {
    INFO(name);
    const std::string bin = nsbox::test::nsbox_bin();
    const std::string src = bin.substr(0, bin.find_last_of('/') + 1) + name;
    const std::string copy = tmp.path + "/" + name;
    REQUIRE(std::system(("cp '" + src + "' '" + copy + "'").c_str()) == 0);
    REQUIRE(chown(copy.c_str(), 0, 0) == 0);
    REQUIRE(chmod(copy.c_str(), 04755) == 0);
    nsbox::test::RunSpec s;
    s.argv = {copy, name == "nsbox" ? "run" : "ls", "--policy", "/etc/shadow"};
    s.as_uid = kNobody;
    Outcome o = nsbox::test::run(s);
    CHECK(o.exit_code == 2);
    CHECK_MESSAGE(o.err.find("refusing to run set-uid or set-gid") != std::string::npos, o.err);
    CHECK(o.err.find("root:") == std::string::npos);
    // The same binary without the bit runs for that user (and is refused
    // /etc/shadow as that user).
    REQUIRE(chmod(copy.c_str(), 0755) == 0);
    o = nsbox::test::run(s);
    CHECK(o.err.find("refusing to run set-uid") == std::string::npos);
  }
}

// `sudo nsbox run` reaches what root reaches; granted alone in sudoers it
// must not show the user a root-only file (tools/invoker.hpp): the files
// the user names are opened as the user.
TEST_CASE("under sudo, nsbox run and deploy open the files named with the invoking user's rights") {
  nsbox::test::TempDir tmp("sudo");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  const std::string ok = tmp.path + "/ok.py", priv = tmp.path + "/priv";
  std::ofstream(ok) << "def handler(event, context):\n    return {'ok': 1}\n";
  REQUIRE(chmod(ok.c_str(), 0644) == 0);
  // A file only root can reach, holding what a quoting error would show.
  REQUIRE(mkdir(priv.c_str(), 0700) == 0);
  const std::string secret = priv + "/secret.py";
  std::ofstream(secret) << "ok = root_only_secret_5be1\n";  // a NameError quotes it
  const std::string link = tmp.path + "/link.py";
  REQUIRE(symlink(secret.c_str(), link.c_str()) == 0);
  const std::vector<std::string> sudo_env = {"SUDO_UID=" + std::to_string(kNobody),
                                             "SUDO_GID=" + std::to_string(kNobody),
                                             "SUDO_USER=nobody"};
  auto run = [&](std::vector<std::string> args, bool sudo = true) {
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin()};
    s.argv.insert(s.argv.end(), args.begin(), args.end());
    if (sudo) s.env = sudo_env;
    return nsbox::test::run(s);
  };
  // What the user may read runs as before.
  Outcome o = run({"run", ok});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.json()["ok"] == 1);
  // A policy file they may not read: refused, and none of its lines quoted.
  o = run({"run", ok, "--policy", "/etc/shadow"});
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("opened as nobody, who ran sudo") != std::string::npos, o.err);
  CHECK(o.err.find("root:") == std::string::npos);
  // A function in a directory only root may enter, directly or through a
  // link: refused, and its source shown nowhere.
  for (const std::string& fn : {secret, link}) {
    CAPTURE(fn);
    o = run({"run", fn});
    CHECK(o.exit_code == 2);
    CHECK_MESSAGE(o.err.find("Permission denied (opened as nobody") != std::string::npos, o.err);
    CHECK(o.err.find("5be1") == std::string::npos);
    CHECK(o.out.find("5be1") == std::string::npos);
  }
  // Root itself, without sudo, still reads it (and Python's error shows it).
  o = run({"run", secret}, false);
  CHECK(o.exit_code != 0);
  CHECK_MESSAGE(o.err.find("5be1") != std::string::npos, o.err);
  // No tree made where the user says.
  const std::string elsewhere = tmp.path + "/newroot";
  o = run({"run", ok, "--rootfs", elsewhere});
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("under sudo nsbox run makes none") != std::string::npos, o.err);
  struct stat st;
  CHECK(lstat(elsewhere.c_str(), &st) != 0);
  CHECK(lstat((elsewhere + ".lock").c_str(), &st) != 0);
  // A tree the user owns: the template would run its Python as root, and a
  // rebuild would delete it. Refused, for either factory, and left as it is.
  const std::string theirs = tmp.path + "/theirs";
  nsbox::test::RunSpec copy;
  copy.argv = {"/bin/cp", "-a", "/var/lib/nsbox/rootfs", theirs};  // built by the root run above
  REQUIRE(nsbox::test::run(copy).exit_code == 0);
  copy.argv = {"/bin/chown", "-R", std::to_string(kNobody) + ":" + std::to_string(kNobody), theirs};
  REQUIRE(nsbox::test::run(copy).exit_code == 0);
  for (const char* factory : {"template", "exec"}) {
    CAPTURE(factory);
    o = run({"run", ok, "--rootfs", theirs, "--factory", factory});
    CHECK(o.exit_code == 3);
    CHECK_MESSAGE(
        o.err.find(theirs + " belongs to uid " + std::to_string(kNobody)) != std::string::npos,
        o.err);
    CHECK(o.out.empty());
  }
  CHECK(lstat((theirs + "/usr/bin").c_str(), &st) == 0);
  // A SUDO_UID that does not parse is not taken as root.
  nsbox::test::RunSpec bad;
  bad.argv = {nsbox::test::nsbox_bin(), "run", ok};
  bad.env = {"SUDO_UID=0x1", "SUDO_GID=0"};
  o = nsbox::test::run(bad);
  CHECK(o.exit_code == 2);
  CHECK(o.err.find("SUDO_UID=\"0x1\" is not a uid") != std::string::npos);
  bad.env = {"SUDO_UID=65534"};
  o = nsbox::test::run(bad);
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("SUDO_GID is not set, though SUDO_UID is") != std::string::npos, o.err);
  // deploy reads FILE before it needs a daemon: the same rule.
  o = run({"deploy", "s", secret, "--server", "http://127.0.0.1:9"});
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("Permission denied (opened as nobody") != std::string::npos, o.err);
}
