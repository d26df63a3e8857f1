// `nsbox run` as root: every isolation claim checked from inside a sandbox
// by a probe, then from the host that nothing was left behind.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

using nsbox::test::host_hostname;
using nsbox::test::host_residue;
using nsbox::test::nsbox_run;
using nsbox::test::Outcome;

namespace {

std::string sandbox_event() {
  return R"({"host_hostname": ")" + host_hostname() + R"("})";
}

// The isolation claims hold for both ways a sandbox is made: exec'd, or
// cloned from a template (sandbox/template.hpp). The cases below run their
// checks once per factory, `factory` being the --factory argument.
const char* const kFactories[] = {"exec", "template"};

std::vector<std::string> with(std::vector<std::string> args, const std::string& factory) {
  args.insert(args.end(), {"--factory", factory});
  return args;
}

// The shipped default policy's text, for a test to change one line of.
std::string default_policy_text() {
  std::ifstream in(nsbox::test::probe("../../policies/default.toml"));
  REQUIRE(in);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("a probe sees only its own sandbox") {
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    // A file only the host has: the sandbox must not reach it.
    std::string secret = "/var/tmp/nsbox-host-secret-" + std::to_string(getpid());
    std::ofstream(secret) << "host only";
    Outcome o = nsbox_run("isolation.py",
                          with({"--event", R"({"host_secret": ")" + secret + R"("})"}, factory));
    unlink(secret.c_str());
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    auto r = o.json();
    REQUIRE(r.is_object());

    CHECK(r["hostname"] != host_hostname());
    CHECK(r["hostname"] == "nsbox");
    // The function is a descendant of the sandbox's PID 1 and sees no host process.
    CHECK(r["ppid"] == 1);
    CHECK(r["pid"].get<int>() > 1);
    for (int pid : r["pids"]) CHECK(pid <= 2);
    CHECK(r["ifaces"] == nlohmann::json::array({"lo"}));
    CHECK(r["write_root"] == "Read-only file system");
    CHECK(r["write_code"] != "ok");
    CHECK(r["write_tmp"] == "ok");
    CHECK(r["write_shm"] == "ok");
    CHECK(r["write_dev"] == "Read-only file system");
    CHECK(r["dev_null_utime"] == "Read-only file system");
    CHECK(r["dev_null_write"] == "ok");
    CHECK(r["proc_mask_utime"] == "Read-only file system");
    CHECK(r["sticky"]["/tmp"] == "0o1777");
    CHECK(r["sticky"]["/dev/shm"] == "0o1777");
    CHECK(r["tmpfs_superblocks"] == 1);
    CHECK(r["code_dir"] == nlohmann::json::array({"isolation.py"}));
    CHECK(r["host_secret_visible"] == false);
    CHECK(r["host_etc_shadow"] == false);
    CHECK(r["CapEff"] == "0000000000000000");
    CHECK(r["CapBnd"] == "0000000000000000");
    CHECK(r["CapPrm"] == "0000000000000000");
    CHECK(r["CapAmb"] == "0000000000000000");
    CHECK(r["Seccomp"] == "2");
    CHECK(r["NoNewPrivs"] == "1");
    CHECK(r["Groups"] == "");
    CHECK(r["uid"] == 1000);
    REQUIRE(r["host_uid"].is_number());
    CHECK(r["host_uid"].get<long>() != 0);
  }
}

TEST_CASE("denied syscalls fail inside the sandbox") {
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    Outcome o = nsbox_run("syscalls.py", with({"--event", sandbox_event()}, factory));
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    auto r = o.json();
    for (const char* name : {"mount", "ptrace", "unshare", "bpf", "keyctl", "setns", "pivot_root",
                             "init_module", "clone_newuser"}) {
      INFO(name);
      CHECK(r[name] == "EPERM");
    }
    CHECK(r["clone3"] == "ENOSYS");
  }
}

// What only strict does, so that a --policy strict that were ignored (and
// default used) fails here: default allows sockets (hardening.py's
// allowed_families are "ok" under it), runs children until the pids limit
// ends fork_bomb.py with 137 (the "pids" case below), and kills at 128 MiB.
TEST_CASE("the strict policy denies sockets and child processes, and has its own limits") {
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    const std::vector<std::string> strict =
        with({"--event", sandbox_event(), "--policy", "strict"}, factory);
    {  // "what default denies, strict denies too"
      Outcome o = nsbox_run("syscalls.py", strict);
      REQUIRE_MESSAGE(o.exit_code == 0, o.err);
      auto r = o.json();
      for (const char* name : {"mount", "ptrace", "unshare", "bpf", "keyctl"})
        CHECK(r[name] == "EPERM");
    }
    {  // "no socket, not even of a family default allows"
      Outcome o = nsbox_run("hardening.py", strict);
      REQUIRE_MESSAGE(o.exit_code == 0, o.err);
      auto allowed = o.json()["allowed_families"];
      REQUIRE(allowed.size() >= 5);
      for (auto& e : allowed.items()) CHECK_MESSAGE(e.value() == "EPERM", e.key());
    }
    {  // "no child process: the first fork fails, long before any pids limit"
      Outcome o = nsbox_run("fork_bomb.py", strict);
      CHECK_MESSAGE(o.exit_code == 1, o.err);
      auto r = o.json();
      CHECK(r["errorType"] == "PermissionError");
      CHECK(r["errorMessage"] == "[Errno 1] Operation not permitted");
    }
    {  // "memory limit of 64 MiB"
      Outcome o = nsbox_run("memory_hog.py", strict);
      CHECK_MESSAGE(o.exit_code == 137, o.err);
      CHECK(o.err.find("memory limit of 64 MiB") != std::string::npos);
    }
  }
}

TEST_CASE("limits end a function with 137 and name the limit") {
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    auto before = host_residue();
    {  // "memory"
      Outcome o = nsbox_run("memory_hog.py",
                            with({"--event", sandbox_event(), "--memory", "64M"}, factory));
      CHECK_MESSAGE(o.exit_code == 137, o.err);
      CHECK(o.err.find("memory limit of 64 MiB") != std::string::npos);
    }
    {  // "pids"
      Outcome o = nsbox_run("fork_bomb.py", with({"--event", sandbox_event()}, factory));
      CHECK_MESSAGE(o.exit_code == 137, o.err);
      CHECK(o.err.find("pids limit of 64") != std::string::npos);
    }
    // The host is unharmed: no sandbox process, cgroup or mount survives.
    auto after = host_residue();
    CHECK_MESSAGE(after.sandbox_procs == 0, after.describe_procs);
    CHECK(after.cgroup_leaves <= before.cgroup_leaves);  // runs also sweep stale leaves
    CHECK(after.mounts == before.mounts);
  }
}

TEST_CASE("/tmp and /dev/shm share one tmpfs of tmpfs_mb") {
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    // strict: tmpfs_mb = 16, memory_mb above it (tmpfs pages are charged there).
    Outcome o = nsbox_run("tmpfs_fill.py",
                          with({"--event", sandbox_event(), "--policy", "strict"}, factory));
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    auto r = o.json();
    CHECK(r["tmp_error"] == "ENOSPC");
    // 16 MiB less what the stage already holds (directories, the overlay's work dir).
    CHECK(r["tmp_mb"].get<int>() >= 14);
    CHECK(r["tmp_mb"].get<int>() <= 16);
    CHECK(r["shm_while_tmp_full"] == "ENOSPC");
    CHECK(r["shm_after"] == "ok");
    // Files too: one inode per page of tmpfs_mb (4096 at 16 MiB), less what
    // the stage holds.
    CHECK(r["files_error"] == "ENOSPC");
    CHECK(r["files"].get<int>() > 4000);
    CHECK(r["files"].get<int>() < 4096);
  }
}

TEST_CASE("unread socket data counts against the sandbox's memory limit") {
  // On cgroup v1 the kernel charges TCP buffers to a leaf only once the
  // leaf's TCP limit is written: without it 256 MiB queued here, in 32.
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    Outcome o = nsbox_run(
        "socket_buffers.py",
        with({"--event", sandbox_event(), "--memory", "32M", "--timeout", "20s"}, factory));
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    auto r = o.json();
    CHECK(r["queued_mb"].get<int>() <= 40);
    CHECK(r["queued_mb"].get<int>() >= 1);  // loopback worked at all
  }
}

TEST_CASE("unread unix socket data counts against the sandbox's memory limit") {
  // 100 socket pairs hold ~44 MiB unread on this kernel, outside any limit
  // if the kernel did not charge unix socket buffers to the sandbox: here
  // the sandbox stalls or is killed at its 32 MiB instead.
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    std::string event = sandbox_event();
    event.insert(event.rfind('}'), ", \"family\": \"unix\"");
    Outcome o = nsbox_run("socket_buffers.py",
                          with({"--event", event, "--memory", "32M", "--timeout", "20s"}, factory));
    if (o.exit_code == 0) {
      CHECK(o.json()["queued_mb"].get<int>() <= 40);
    } else {
      CHECK_MESSAGE(o.exit_code == 137, o.err);
      CHECK_MESSAGE(o.err.find("memory limit of 32 MiB exceeded") != std::string::npos, o.err);
    }
  }
}

TEST_CASE("an endless loop ends with 124 at the timeout") {
  for (const std::string factory : kFactories) {
    CAPTURE(factory);
    Outcome o = nsbox_run("spin.py", with({"--timeout", "300ms"}, factory));
    CHECK(o.exit_code == 124);
    CHECK(o.err.find("timed out after 300 ms") != std::string::npos);
    auto residue = host_residue();
    CHECK_MESSAGE(residue.sandbox_procs == 0, residue.describe_procs);
  }
}

TEST_CASE("a runner cloned from a template cannot tell it was not exec'd") {
  // What a function can see of its interpreter and process: flags,
  // encodings, paths, signal dispositions and mask, limits, fds, argv and
  // environment. Only the values of one process (pid-free here) may differ.
  Outcome exec = nsbox_run("interpreter.py", with({}, "exec"));
  Outcome tmpl = nsbox_run("interpreter.py", with({}, "template"));
  REQUIRE_MESSAGE(exec.exit_code == 0, exec.err);
  REQUIRE_MESSAGE(tmpl.exit_code == 0, tmpl.err);
  auto a = exec.json(), b = tmpl.json();
  REQUIRE(a.is_object());
  REQUIRE(a.size() > 15);
  for (auto& e : a.items())
    CHECK_MESSAGE(b[e.key()] == e.value(), e.key(), ": exec ", e.value().dump(), ", template ",
                  b[e.key()].dump());
  CHECK(a.size() == b.size());
  // Nothing but the runner's own fds, from either factory: no cgroup file,
  // socket or template fd that made the sandbox reaches the function.
  CHECK(b["fds"] == nlohmann::json::array({"0", "1", "2", "3", "4", "5"}));
  CHECK(b["exe"] == "/usr/bin/python3");
  CHECK(b["prefix"] == "/usr");
}

// The runtime tree below the overlay is the host's own files, shared by
// every sandbox: a function's DONTNEED would drop them from the host's page
// cache (and a sync of them make the disk flush its cache). The call
// returns as if done, and the host's cached pages stay.
TEST_CASE("a function cannot drop the shared runtime tree from the host's page cache") {
  // The runtime's own Python, whichever 3.x the host built it from.
  glob_t g{};
  REQUIRE(glob("/var/lib/nsbox/rootfs/usr/lib/python3.*/json/decoder.py", 0, nullptr, &g) == 0);
  const std::string file = g.gl_pathv[0];
  globfree(&g);
  const std::string inside = file.substr(std::string("/var/lib/nsbox/rootfs").size());
  for (const char* factory : {"exec", "template"}) {
    CAPTURE(factory);
    // Cached in whole on the host, counted through a mapping of our own.
    const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    std::string all(size_t(st.st_size), '\0');
    REQUIRE(pread(fd, all.data(), all.size(), 0) == ssize_t(all.size()));
    const size_t pages = (size_t(st.st_size) + 4095) / 4096;
    auto resident = [&] {
      void* m = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
      REQUIRE(m != MAP_FAILED);
      std::vector<unsigned char> vec(pages);
      REQUIRE(mincore(m, size_t(st.st_size), vec.data()) == 0);
      munmap(m, size_t(st.st_size));
      size_t n = 0;
      for (unsigned char v : vec) n += v & 1;
      return n;
    };
    REQUIRE(resident() == pages);
    nlohmann::json ev = {{"host_hostname", host_hostname()}, {"path", inside}};
    Outcome o = nsbox_run("page_cache.py", {"--factory", factory, "--event", ev.dump()});
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    CHECK(o.json()["synced"] == true);
    CHECK(resident() == pages);
    close(fd);
  }
}

TEST_CASE("--factory is exec or template, and a template makes sandboxes only") {
  CHECK(nsbox_run("echo.py", {"--factory", "zygote"}).exit_code == 2);
  CHECK(nsbox_run("echo.py", {"--factory", "template", "--no-isolation"}).exit_code == 2);
}

TEST_CASE("results, logs, handlers and exceptions") {
  SUBCASE("result on stdout, prints on stderr") {
    Outcome o = nsbox_run("echo.py", {"--event", R"({"k": [1, 2]})"});
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    auto r = o.json();
    CHECK(r["event"]["k"] == nlohmann::json::array({1, 2}));
    CHECK(r["function"] == "echo.py");
    CHECK(o.out.find("log line") == std::string::npos);
    CHECK(o.err.find("log line from echo") != std::string::npos);
  }
  SUBCASE("event from stdin") {
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", nsbox::test::probe("echo.py"), "--event", "-"};
    s.stdin_text = R"({"from": "stdin"})";
    Outcome o = nsbox::test::run(s);
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    CHECK(o.json()["event"]["from"] == "stdin");
  }
  SUBCASE("--handler picks another function") {
    Outcome o = nsbox_run("echo.py", {"--handler", "f"});
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    CHECK(o.json()["handler"] == "f");
  }
  SUBCASE("an exception is exit 1 with errorType, errorMessage, stackTrace") {
    Outcome o = nsbox_run("raises.py");
    CHECK(o.exit_code == 1);
    auto r = o.json();
    CHECK(r["errorType"] == "ValueError");
    CHECK(r["errorMessage"] == "boom from probe");
    REQUIRE(r["stackTrace"].is_array());
    CHECK(r["stackTrace"].dump().find("raises.py") != std::string::npos);
  }
  SUBCASE("--no-isolation runs the same runner unisolated") {
    Outcome o = nsbox_run("echo.py", {"--no-isolation", "--event", "[3]"});
    REQUIRE_MESSAGE(o.exit_code == 0, o.err);
    CHECK(o.json()["event"] == nlohmann::json::array({3}));
    // Never as root: as root it runs as nobody, with no groups.
    nsbox::test::TempDir tmp("no-isolation-uid");
    REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
    const std::string fn = tmp.path + "/ids.py";
    std::ofstream(fn) << "import os\ndef handler(event, context):\n"
                         "    return [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()]\n";
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", fn, "--no-isolation"};
    Outcome ids = nsbox::test::run(s);
    REQUIRE_MESSAGE(ids.exit_code == 0, ids.err);
    const unsigned me = geteuid() == 0 ? 65534 : geteuid();
    CHECK(ids.json()[0] == me);
    CHECK(ids.json()[1] == me);
    if (geteuid() == 0) {
      CHECK(ids.json()[2] == 65534);
      CHECK(ids.json()[3] == nlohmann::json::array());
      // One nobody cannot read is refused up front, saying why.
      REQUIRE(chmod(tmp.path.c_str(), 0700) == 0);
      Outcome closed = nsbox::test::run(s);
      CHECK(closed.exit_code == 2);
      CHECK_MESSAGE(
          closed.err.find("who cannot read " + fn + " (Permission denied)") != std::string::npos,
          closed.err);
      REQUIRE(chmod(tmp.path.c_str(), 0755) == 0);
      // Under sudo, as the user who ran it, with their groups: as nobody
      // it would let them act as another user.
      s.env = {"SUDO_UID=12345", "SUDO_GID=12346"};
      Outcome as_user = nsbox::test::run(s);
      REQUIRE_MESSAGE(as_user.exit_code == 0, as_user.err);
      CHECK(as_user.json() == nlohmann::json::array({12345, 12345, 12346, {12346}}));
      s.env.clear();
    }
    // What the function started outlives nothing: not a child in a session
    // of its own, nor one whose parent has gone.
    const std::string bg = tmp.path + "/bg.py";
    std::ofstream(bg)
        << "import subprocess\n"
           "def handler(event, context):\n"
           "    a = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
           "    b = subprocess.Popen(['sh', '-c', 'sleep 60 >/dev/null 2>&1 & echo $!'],\n"
           "                         stdout=subprocess.PIPE, text=True)\n"
           "    return [a.pid, int(b.stdout.readline())]\n";
    s.argv = {nsbox::test::nsbox_bin(), "run", bg, "--no-isolation"};
    Outcome started = nsbox::test::run(s);
    REQUIRE_MESSAGE(started.exit_code == 0, started.err);
    for (const auto& pid : started.json()) {
      CAPTURE(pid);
      CHECK((kill(pid.get<pid_t>(), 0) != 0 && errno == ESRCH));
    }
  }
}

TEST_CASE("bad input gets exit 2 and says what is wrong") {
  SUBCASE("missing file") {
    Outcome o = nsbox_run("does_not_exist.py");
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("does_not_exist.py: No such file or directory") != std::string::npos);
  }
  SUBCASE("syntax error names the line") {
    Outcome o = nsbox_run("syntax_error.py");
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("syntax_error.py:2: SyntaxError") != std::string::npos);
  }
  SUBCASE("a function file only its owner may read, as root") {
    // The function runs as a sandbox uid: said before a sandbox is made.
    nsbox::test::TempDir dir("private-fn");
    REQUIRE(mkdir(dir.path.c_str(), 0755) == 0);
    const std::string fn = dir.path + "/priv.py";
    std::ofstream(fn) << "def handler(event, context):\n    return 1\n";
    REQUIRE(chmod(fn.c_str(), 0600) == 0);
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", fn};
    Outcome o = nsbox::test::run(s);
    CHECK(o.exit_code == 2);
    CHECK_MESSAGE(o.err.find("(mode 0600)") != std::string::npos, o.err);
    CHECK_MESSAGE(o.err.find("chmod o+r " + fn) != std::string::npos, o.err);
  }
  SUBCASE("a result nested deeper than the daemon passes on is the function's error") {
    // Not the sandbox's: it broke no protocol (it was exit 3, and a 502).
    nsbox::test::TempDir dir("deep-result");
    REQUIRE(mkdir(dir.path.c_str(), 0755) == 0);
    const std::string fn = dir.path + "/deep.py";
    std::ofstream(fn) << "def handler(event, context):\n    x = []\n    for _ in range(300):\n"
                         "        x = [x]\n    return x\n";
    REQUIRE(chmod(fn.c_str(), 0644) == 0);
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", fn};
    Outcome o = nsbox::test::run(s);
    CHECK(o.exit_code == 2);
    CHECK_MESSAGE(o.err.find("nested deeper than 256") != std::string::npos, o.err);
  }
  SUBCASE("non-JSON event") {
    Outcome o = nsbox_run("echo.py", {"--event", "{not json"});
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("not valid JSON") != std::string::npos);
  }
  SUBCASE("an event the runtime cannot decode is bad input, as the daemon's 400") {
    // Valid JSON, nested deeper than Python's decoder recurses: the runner
    // answers bad_request, which nsbox run once called an unexpected reply
    // (exit 3).
    std::string deep = std::string(5000, '[') + std::string(5000, ']');
    Outcome o = nsbox_run("echo.py", {"--event", deep});
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("could not be decoded by the runtime") != std::string::npos);
  }
  SUBCASE("non-serialisable result") {
    Outcome o = nsbox_run("bad_result.py");
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("not JSON") != std::string::npos);
    CHECK(o.err.find("set") != std::string::npos);
  }
  SUBCASE("missing handler") {
    Outcome o = nsbox_run("no_handler.py");
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("handler") != std::string::npos);
  }
  SUBCASE("a forged first frame with fields of the wrong types is a usage error, not a crash") {
    // The module writes its own "load_error" frame before the runner's:
    // before one reader served both clients, nsbox run threw on it and
    // exited 3 "internal error".
    Outcome o = nsbox_run("forged_hello.py");
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("forged_hello.py:0: SyntaxError") != std::string::npos);
    CHECK(o.err.find("internal error") == std::string::npos);
  }
  SUBCASE("unknown policy") {
    Outcome o = nsbox_run("echo.py", {"--policy", "nope"});
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("no built-in policy \"nope\"") != std::string::npos);
  }
  SUBCASE("bad policy file names file, line and key") {
    nsbox::test::TempDir tmp("bad-policy");
    const std::string path = tmp.path + ".toml";
    std::ofstream(path) << "[limits]\nmemroy_mb = 5\n[seccomp]\n[seccomp.allow]\na = [\"read\"]\n";
    Outcome o = nsbox_run("echo.py", {"--policy", path});
    CHECK(o.exit_code == 2);
    CHECK(o.err.find(path + ":2:1: unknown key \"memroy_mb\"") != std::string::npos);
  }
  SUBCASE("bad --memory and --timeout") {
    CHECK(nsbox_run("echo.py", {"--memory", "lots"}).exit_code == 2);
    CHECK(nsbox_run("echo.py", {"--timeout", "-1"}).exit_code == 2);
    // Over the daemon's bound: refused by name, not cut to it in silence.
    Outcome o = nsbox_run("echo.py", {"--timeout", "16m"});
    CHECK(o.exit_code == 2);
    CHECK_MESSAGE(o.err.find("--timeout \"16m\": out of range (1ms to 15m)") != std::string::npos,
                  o.err);
  }
  SUBCASE("an event on stdin past the limit is refused without reading it all") {
    // An endless stdin: read whole, it would never end (the address-space
    // cap turns such a regression into a quick failure, not a host's
    // memory gone).
    nsbox::test::RunSpec s;
    s.argv = {"/bin/sh", "-c", "ulimit -v 2000000; yes ' ' | exec \"$0\" run \"$1\" --event -",
              nsbox::test::nsbox_bin(), nsbox::test::probe("echo.py")};
    s.timeout_s = 30;
    Outcome o = nsbox::test::run(s);
    CHECK(o.exit_code == 2);
    CHECK_MESSAGE(o.err.find("stdin holds more than the limit") != std::string::npos, o.err);
    s.argv = {nsbox::test::nsbox_bin(), "run", nsbox::test::probe("echo.py"), "--event", "-"};
    s.stdin_text = "[1, 2]";
    o = nsbox::test::run(s);
    CHECK_MESSAGE(o.exit_code == 0, o.err);
    CHECK(o.json()["event"] == nlohmann::json::array({1, 2}));
  }
  SUBCASE("unknown option") {
    Outcome o = nsbox_run("echo.py", {"--frobnicate"});
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("unknown option --frobnicate") != std::string::npos);
  }
}

TEST_CASE("a reply the protocol forbids is exit 3 naming what broke, as the daemon's 502") {
  // Frames the function's own code writes on the reply pipe before the
  // runner's answer. nsbox run once printed the first two as results (exit
  // 0) and took the third for the runner's death (exit 1).
  struct Forgery {
    const char* forge;
    const char* named;
  };
  for (Forgery f : {Forgery{"other_id", "a reply to another request"},
                    Forgery{"not_json", "not valid JSON"}, Forgery{"oversized", "6291456"}}) {
    for (bool isolated : {true, false}) {
      CAPTURE(f.forge);
      CAPTURE(isolated);
      std::vector<std::string> args = {"--event", R"({"forge": ")" + std::string(f.forge) + "\"}"};
      if (!isolated) args.push_back("--no-isolation");
      Outcome o = nsbox_run("forged_reply.py", args);
      CHECK(o.exit_code == 3);
      CHECK(o.err.find("broke protocol") != std::string::npos);
      CHECK(o.err.find(f.named) != std::string::npos);
      CHECK(o.out.empty());
    }
  }
}

TEST_CASE("started with stdout and stderr closed, nsbox writes into none of its own files") {
  // The next open would get 1 and 2: the rootfs's users lock file, which
  // then received the result and the function's prints (a file anyone may
  // read, under /var/lib/nsbox).
  const std::string users = "/var/lib/nsbox/rootfs.users";
  nsbox::test::RunSpec s;
  s.argv = {"/bin/sh", "-c", "exec \"$0\" run \"$1\" >&- 2>&-", nsbox::test::nsbox_bin(),
            nsbox::test::probe("echo.py")};
  Outcome o = nsbox::test::run(s);
  CHECK(o.exit_code == 0);
  struct stat st;
  REQUIRE(stat(users.c_str(), &st) == 0);  // the default rootfs was used
  CHECK(st.st_size == 0);
}

TEST_CASE("a result that cannot be written to stdout is not a success") {
  // A script reading `nsbox run ... > out` must not take an empty file
  // for the answer.
  nsbox::test::RunSpec s;
  s.argv = {"/bin/sh", "-c", "exec \"$0\" run \"$1\" > /dev/full", nsbox::test::nsbox_bin(),
            nsbox::test::probe("echo.py")};
  Outcome o = nsbox::test::run(s);
  CHECK(o.exit_code == 3);
  CHECK_MESSAGE(
      o.err.find("nsbox: writing to stdout: No space left on device") != std::string::npos, o.err);
}

TEST_CASE("a function file whose name is not UTF-8 runs; the context gets U+FFFD for it") {
  // The name goes into the invoke envelope, which must be JSON: nsbox run
  // once threw on it ("internal error", exit 3).
  nsbox::test::TempDir tmp("latin1-name");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  std::string fn = tmp.path + "/caf\xe9.py";
  {
    std::ifstream in(nsbox::test::probe("echo.py"));
    std::ofstream out(fn);
    out << in.rdbuf();
  }
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "run", fn};
  Outcome o = nsbox::test::run(s);
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.json()["function"] == "caf\xef\xbf\xbd.py");
}

TEST_CASE("a rootfs that is not ours is refused with exit 3") {
  nsbox::test::TempDir tmp("not-a-rootfs");
  const std::string& dir = tmp.path;
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/precious") << "x";
  Outcome o = nsbox_run("echo.py", {"--rootfs", dir});
  CHECK(o.exit_code == 3);
  CHECK(o.err.find("not an nsbox rootfs") != std::string::npos);
  // Nothing made beside it either.
  CHECK(access((dir + ".lock").c_str(), F_OK) != 0);
  CHECK(access((dir + ".users").c_str(), F_OK) != 0);
  // Refused, not emptied or built over.
  std::ifstream precious(dir + "/precious");
  std::string kept;
  precious >> kept;
  CHECK(kept == "x");
}

TEST_CASE("a filter that kills is named as the cause, not read as the function's exit") {
  nsbox::test::TempDir tmp("kill-policy");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  std::string policy = default_policy_text();
  const std::string errno_line = "default_action = \"errno\"";
  REQUIRE(policy.find(errno_line) != std::string::npos);
  policy.replace(policy.find(errno_line), errno_line.size(), "default_action = \"kill_process\"");
  const std::string path = tmp.path + "/kill.toml";
  std::ofstream(path) << policy;
  // The handler makes a call no policy lists (swapoff needs more than the
  // sandbox has anyway).
  const std::string fn = tmp.path + "/swap.py";
  std::ofstream(fn) << "import ctypes\n"
                       "def handler(event, context):\n"
                       "    ctypes.CDLL(None, use_errno=True).swapoff(b'/nonexistent')\n"
                       "    return 'not reached'\n";
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "run", fn, "--policy", path};
  Outcome o = nsbox::test::run(s);
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.out.find("status 159 (128 + SIGSYS): most likely killed by its seccomp filter") !=
                    std::string::npos,
                o.out);
}

TEST_CASE("a runtime that cannot exec is a setup error naming execve, under every policy") {
  // The exec runs after seccomp, so its failure must be reported with a
  // syscall every policy allows (strict allows no socket call).
  nsbox::test::TempDir tmp("noexec-rootfs");
  const std::string& dir = tmp.path;
  nsbox::test::RunSpec build;
  build.argv = {nsbox::test::nsbox_bin(), "rootfs", "build", "--out", dir};
  Outcome b = nsbox::test::run(build);
  REQUIRE_MESSAGE(b.exit_code == 0, b.err);
  REQUIRE(unlink((dir + "/usr/bin/python3").c_str()) == 0);
  for (const char* policy : {"default", "strict"}) {
    INFO("policy ", std::string(policy));
    Outcome o = nsbox_run("echo.py", {"--rootfs", dir, "--policy", policy});
    CHECK(o.exit_code == 3);
    CHECK(o.err.find("execve") != std::string::npos);
    CHECK(o.err.find("/usr/bin/python3") != std::string::npos);
    // A missing program is not blamed on the policy.
    CHECK(o.err.find("must list execve") == std::string::npos);
  }
}

TEST_CASE("a policy that leaves out execve is named as the cause of the failed exec") {
  nsbox::test::TempDir tmp("noexecve-policy");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  std::string policy = default_policy_text();
  const std::string entry = "\"execve\",";
  REQUIRE(policy.find(entry) != std::string::npos);
  policy.erase(policy.find(entry), entry.size());
  const std::string path = tmp.path + "/noexec.toml";
  std::ofstream(path) << policy;
  Outcome o = nsbox_run("echo.py", {"--factory", "exec", "--policy", path});
  CHECK(o.exit_code == 3);
  CHECK_MESSAGE(o.err.find("execve(/usr/bin/python3): Operation not permitted: the seccomp filter "
                           "applies from the step before: a policy's [seccomp.allow] must list "
                           "execve") != std::string::npos,
                o.err);
}

TEST_CASE("a policy file that leaves out what the interpreter needs is named as the likely cause") {
  nsbox::test::TempDir tmp("nowrite-policy");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  const std::string hint = "likely refuses a system call the interpreter needs to start";
  for (const std::string call : {"write", "read"}) {
    CAPTURE(call);
    std::string policy = default_policy_text();
    const std::string entry = "\"" + call + "\",";
    REQUIRE(policy.find(entry) != std::string::npos);
    policy.erase(policy.find(entry), entry.size());
    const std::string path = tmp.path + "/no" + call + ".toml";
    std::ofstream(path) << policy;
    for (const std::string factory : {"exec", "template"}) {
      CAPTURE(factory);
      Outcome o = nsbox_run("echo.py", {"--factory", factory, "--policy", path});
      // The process exited (1, as the README has it), and the policy file
      // is named as the likely cause, with how to find the call.
      CHECK_MESSAGE(o.exit_code == 1, o.err);
      CHECK_MESSAGE(o.err.find("the policy " + path + " " + hint) != std::string::npos, o.err);
      CHECK_MESSAGE(o.err.find("default_action = \"log\"") != std::string::npos, o.err);
    }
  }
  // A module that exits while it is imported: its own status, exit 1 under
  // a built-in policy and under a copy of it alike (nothing says the policy
  // refused anything under the built-in one).
  const std::string fn = tmp.path + "/exits.py";
  std::ofstream(fn) << "import os\nos._exit(5)\ndef handler(event, context):\n    return 1\n";
  const std::string copy = tmp.path + "/copy.toml";
  std::ofstream(copy) << default_policy_text();
  for (const std::string& policy : {std::string("default"), copy}) {
    CAPTURE(policy);
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", fn, "--policy", policy};
    Outcome own = nsbox::test::run(s);
    CHECK_MESSAGE(own.exit_code == 1, own.err);
    CHECK(own.out.find("exited with status 5") != std::string::npos);
    CHECK((own.err.find(hint) != std::string::npos) == (policy == copy));
  }
}

TEST_CASE("a rootfs behind a directory closed to other users is refused by name, not by EACCES") {
  // The overlay is mounted by the sandbox's unprivileged uid: a state or
  // cache directory under a 0700 parent used to fail every sandbox with
  // "mount(overlay ...): Permission denied".
  nsbox::test::TempDir tmp("closed-rootfs");
  const std::string closed = tmp.path + "/closed";
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  REQUIRE(mkdir(closed.c_str(), 0700) == 0);
  REQUIRE(chmod(closed.c_str(), 0700) == 0);  // whatever the umask
  nsbox::test::RunSpec build;
  build.argv = {nsbox::test::nsbox_bin(), "rootfs", "build", "--out", closed + "/rootfs"};
  Outcome b = nsbox::test::run(build);
  REQUIRE_MESSAGE(b.exit_code == 0, b.err);
  Outcome o = nsbox_run("echo.py", {"--rootfs", closed + "/rootfs"});
  CHECK(o.exit_code == 3);
  CHECK_MESSAGE(o.err.find(closed + " (mode 0700)") != std::string::npos, o.err);
  CHECK(o.err.find("chmod o+x " + closed) != std::string::npos);
  REQUIRE(chmod(closed.c_str(), 0711) == 0);
  Outcome fixed = nsbox_run("echo.py", {"--rootfs", closed + "/rootfs"});
  CHECK_MESSAGE(fixed.exit_code == 0, fixed.err);
}

TEST_CASE("200 runs in a row leave no mount, cgroup or process behind") {
  auto before = host_residue();
  int failures = 0;
  for (int i = 0; i < 200; i++) {
    // Every fourth from a template (and its template gone with the run).
    Outcome o = nsbox_run(i % 10 == 9 ? "raises.py" : "echo.py",
                          with({}, i % 4 == 3 ? "template" : "exec"));
    if (o.exit_code != (i % 10 == 9 ? 1 : 0)) failures++;
  }
  CHECK(failures == 0);
  auto after = host_residue();
  CHECK(after.mounts == before.mounts);
  CHECK(after.cgroup_leaves <= before.cgroup_leaves);  // runs also sweep stale leaves
  CHECK(after.sandbox_procs == 0);
}

namespace {

// Starts `nsbox run ARGS` with stderr on a pipe, waits for the function to
// print "started PID" (the process it left running), sends sig, and
// returns the run's exit code (128+N when it died of N) and that pid.
struct Stopped {
  int exit_code = -1;
  bool core_dumped = false;
  double seconds = 0;
  pid_t left = -1;
  std::string err;
};

Stopped stop_run_with(const std::vector<std::string>& args, int sig, const std::string& cwd) {
  Stopped s;
  int err[2];
  REQUIRE(pipe2(err, O_CLOEXEC) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(err[1], 2);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    dup2(devnull, 0);
    dup2(devnull, 1);
    signal(SIGPIPE, SIG_DFL);
    // Where a core would go, and a limit that would let one be written:
    // the run must not dump one of its own for a stop signal (SIGQUIT).
    struct rlimit core = {RLIM_INFINITY, RLIM_INFINITY};
    if (chdir(cwd.c_str()) != 0 || setrlimit(RLIMIT_CORE, &core) != 0) _exit(126);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(err[1]);
  char buf[4096];
  while (s.err.find("started ") == std::string::npos ||
         s.err.find('\n', s.err.find("started ")) == std::string::npos) {
    pollfd p{err[0], POLLIN, 0};
    if (poll(&p, 1, 60000) <= 0) break;
    const ssize_t n = read(err[0], buf, sizeof buf);
    if (n <= 0) break;
    s.err.append(buf, size_t(n));
  }
  if (size_t at = s.err.find("started "); at != std::string::npos)
    s.left = std::atoi(s.err.c_str() + at + 8);
  const auto sent = std::chrono::steady_clock::now();
  kill(pid, sig);
  for (ssize_t n; (n = read(err[0], buf, sizeof buf)) > 0;) s.err.append(buf, size_t(n));
  close(err[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  s.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  s.core_dumped = WIFSIGNALED(st) && WCOREDUMP(st);
  return s;
}

}  // namespace

TEST_CASE("a stop signal ends nsbox run at once, leaving nothing, isolated or not") {
  nsbox::test::TempDir tmp("stop-run");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  // Leaves a process running (in a session of its own where allowed) that
  // holds the runner's channel, then waits far past the test: the run must
  // end on the signal, not at its 60 s timeout.
  const std::string fn = tmp.path + "/linger.py";
  std::ofstream(fn) << "import os, sys, time\n"
                       "def handler(event, context):\n"
                       "    pid = os.fork()  # keeps the runner's fds, its channel too\n"
                       "    if pid == 0:\n"
                       "        try:\n"
                       "            os.setsid()\n"
                       "        except OSError:  # a sandbox refuses a session\n"
                       "            pass\n"
                       "        time.sleep(300)\n"
                       "        os._exit(0)\n"
                       "    print('started', pid, file=sys.stderr, flush=True)\n"
                       "    time.sleep(300)\n";
  const auto before = nsbox::test::host_residue();
  for (const bool isolated : {false, true}) {
    for (const int sig : {SIGINT, SIGQUIT}) {
      CAPTURE(isolated);
      CAPTURE(sig);
      std::vector<std::string> args = {nsbox::test::nsbox_bin(), "run", fn, "--timeout", "60s"};
      if (!isolated) args.push_back("--no-isolation");
      Stopped s = stop_run_with(args, sig, tmp.path);
      CHECK_MESSAGE(s.left > 0, s.err);
      CHECK_MESSAGE(s.exit_code == 128 + sig, s.err);
      CHECK_FALSE(s.core_dumped);
      CHECK_MESSAGE(s.seconds < 10, s.seconds);
      CHECK_MESSAGE(s.err.find("nsbox: stopped by ") != std::string::npos, s.err);
      // Its pid is the sandbox's own when isolated: there, no sandbox
      // process at all may be left.
      if (!isolated && s.left > 0)
        CHECK(nsbox::test::wait_until([&] { return !nsbox::test::running(s.left); }, 5000,
                                      "what the function started to be gone"));
      const auto after = nsbox::test::host_residue();
      CHECK(after.sandbox_procs <= before.sandbox_procs);
      CHECK(after.cgroup_leaves <= before.cgroup_leaves);
      CHECK(after.mounts <= before.mounts);
    }
  }
}

TEST_CASE("nsbox run refuses a source larger than a deploy takes, before anything starts") {
  nsbox::test::TempDir tmp("big-source");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  const std::string fn = tmp.path + "/big.py";
  std::ofstream(fn) << "def handler(event, context):\n    return 1\n# "
                    << std::string((1u << 20) - 40, 'x') << "\n";
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "run", fn};
  Outcome o = nsbox::test::run(s);
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("more than the 1 MiB a function's source may have") != std::string::npos,
                o.err);
  // Exactly the limit runs.
  REQUIRE(truncate(fn.c_str(), 1 << 20) == 0);
  o = nsbox::test::run(s);
  CHECK_MESSAGE(o.exit_code == 0, o.err);
}

TEST_CASE("nsbox rootfs build parses its options as every command does, echoing nothing raw") {
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "rootfs", "build", "--help"};
  Outcome o = nsbox::test::run(s);
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("--python PATH") != std::string::npos);
  s.argv = {nsbox::test::nsbox_bin(), "rootfs", "build", "--out"};
  o = nsbox::test::run(s);
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("--out needs a value") != std::string::npos, o.err);
  s.argv = {nsbox::test::nsbox_bin(), "rootfs", "build", "--x\x1b[2J"};
  o = nsbox::test::run(s);
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("unknown option --x\\x1b[2J") != std::string::npos, o.err);
  // An unknown command is named as typed on a pipe (byte-exact), escaped
  // on a terminal (terminal_test.cpp "words a command echoes back...").
  s.argv = {nsbox::test::nsbox_bin(), "\x1b[2J"};
  o = nsbox::test::run(s);
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("unknown command \"\x1b[2J\"") != std::string::npos, o.err);
}

TEST_CASE(
    "a function that closes its channel and lives on is stopped, and said to be, in both modes") {
  nsbox::test::TempDir tmp("closes-channel");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  const std::string fn = tmp.path + "/closer.py";
  std::ofstream(fn) << "import os, time\ndef handler(event, context):\n"
                       "    os.close(3)\n    os.close(4)\n    time.sleep(300)\n";
  const std::string exits = tmp.path + "/exits.py";
  std::ofstream(exits) << "import os\ndef handler(event, context):\n    os._exit(5)\n";
  for (const bool isolated : {false, true}) {
    CAPTURE(isolated);
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", fn, "--timeout", "60s"};
    if (!isolated) s.argv.push_back("--no-isolation");
    s.timeout_s = 30;  // unisolated, the run waited for the function to exit
    const auto t0 = std::chrono::steady_clock::now();
    Outcome o = nsbox::test::run(s);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
    CHECK_MESSAGE(o.exit_code == 1, o.err);
    CHECK_MESSAGE(o.out.find("closed its channel without an answer and did not exit; nsbox "
                             "stopped it") != std::string::npos,
                  o.out);
    // A process that exits by itself keeps its own status.
    s.argv[2] = exits;
    o = nsbox::test::run(s);
    CHECK(o.exit_code == 1);
    CHECK_MESSAGE(o.out.find("exited with status 5") != std::string::npos, o.out);
  }
}
