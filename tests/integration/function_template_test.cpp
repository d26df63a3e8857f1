// Function templates (sandbox/instance.hpp, docs/architecture.md §15): a
// function deployed with template=1 is imported once, in a sandbox that then
// only forks; its instances skip the import, each in a cgroup of its own,
// and the template's death costs no request.
#include <dirent.h>
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.hpp"
#include "tests/integration/harness.hpp"

using nlohmann::json;
using nsbox::test::cpu_ticks;
using nsbox::test::Daemon;
using nsbox::test::deploy_probe;
using nsbox::test::in_sandbox;
using nsbox::test::invoke;
using nsbox::test::proc_status;
using nsbox::test::StateDir;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Host pids of every runner of a function template: the template's own
// (pid 2 in its namespace) and its instances.
struct TemplateProcs {
  pid_t runner = 0;
  std::vector<pid_t> instances;
};

TemplateProcs template_procs() {
  TemplateProcs out;
  DIR* proc = opendir("/proc");
  if (!proc) return out;
  while (struct dirent* e = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0) continue;
    std::string cmd = read_text("/proc/" + std::to_string(pid) + "/cmdline");
    if (cmd.find("--fork-fd") == std::string::npos) continue;
    std::string nspid = proc_status(pid, "NSpid");
    const std::string inner = nspid.substr(nspid.find_last_of(" \t") + 1);
    if (inner == "2")
      out.runner = pid;
    else if (inner != "1")
      out.instances.push_back(pid);
  }
  closedir(proc);
  return out;
}

// Whether a process's cgroup2 leaf is frozen (cgroup.events), on v2 or in
// the hybrid layout's cgroup2 mount, where the spawner freezes templates.
bool cgroup2_frozen(pid_t pid) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    for (const std::string mount : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
      const std::string events = read_text(mount + line.substr(3) + "/cgroup.events");
      if (!events.empty()) return events.find("frozen 1") != std::string::npos;
    }
  }
  return false;
}

// Deploys a probe (query: template=1 and any more) and makes its first
// request, the one that makes its function template: it must answer 200.
void deploy_ok(const Daemon& d, const std::string& name, const std::string& probe,
               const std::string& query) {
  auto deployed = deploy_probe(d, name, probe, query);
  REQUIRE(deployed);
  REQUIRE_MESSAGE(deployed->status == 201, deployed->body);
}

json first_templated(const Daemon& d, const std::string& name, const std::string& probe,
                     const std::string& query = "?template=1", const json& event = in_sandbox({})) {
  deploy_ok(d, name, probe, query);
  int status = 0;
  json r = invoke(d, name, event, &status);
  REQUIRE_MESSAGE(status == 200, r.dump(), d.log());
  return r;
}

}  // namespace

TEST_CASE("serve: a function deployed with template=1 is imported once; instances are its forks") {
  StateDir sd("fn-template");
  Daemon d(sd.path);
  REQUIRE(d.start());
  json first = first_templated(d, "slow", "slow_import.py");
  int status = 0;
  CHECK(first["imports"] == 1);
  CHECK(first["hostname"] == "nsbox");
  CHECK(first["uid"] == 1000);
  CHECK(d.metric("nsbox_pool_function_templates") == 1);

  // Three at once: three instances, none of which ran the module body again.
  constexpr int kClients = 3;
  std::vector<json> got(kClients);
  std::vector<int> statuses(kClients, 0);
  {
    std::vector<std::jthread> clients;
    for (int i = 0; i < kClients; i++)
      clients.emplace_back([&, i] {
        got[i] = invoke(d, "slow", in_sandbox({{"sleep_ms", 700}}), &statuses[i]);
      });
    // While they run: every runner of the template is a sandbox process
    // (no host root), and each instance is in a cgroup of its own (once it
    // has joined it: a child just forked is still in the template's).
    auto cgroup_of = [](pid_t pid) {
      return read_text("/proc/" + std::to_string(pid) + "/cgroup");
    };
    TemplateProcs p;
    std::set<std::string> cgroups;
    REQUIRE(nsbox::test::wait_until(
        [&] {
          p = template_procs();
          if (p.runner <= 0) return false;
          const std::string own = cgroup_of(p.runner);
          cgroups = {own};
          for (pid_t pid : p.instances)
            if (std::string c = cgroup_of(pid); !c.empty() && c != own) cgroups.insert(c);
          return cgroups.size() >= kClients + 1;
        },
        5000, "three instances, each in a leaf of its own"));
    for (pid_t pid : p.instances) {
      CHECK(proc_status(pid, "Uid").find_first_not_of("\t 0") != std::string::npos);
      CHECK(proc_status(pid, "CapEff").find_first_not_of("\t 0") == std::string::npos);
      CHECK(proc_status(pid, "Seccomp").find('2') != std::string::npos);
    }
  }
  std::set<long> pids;
  std::set<std::string> draws;
  for (int i = 0; i < kClients; i++) {
    REQUIRE_MESSAGE(statuses[i] == 200, got[i].dump());
    CHECK(got[i]["imports"] == 1);
    pids.insert(got[i]["pid"].get<long>());
    draws.insert(got[i]["random"].dump());
  }
  CHECK(pids.size() == kClients);   // separate processes
  CHECK(draws.size() == kClients);  // random re-seeded in each
  CHECK(d.metric("nsbox_pool_function_templates") == 1);

  // The isolation probe, deployed with a template, sees a whole sandbox.
  REQUIRE(deploy_probe(d, "iso", "isolation.py", "?template=1")->status == 201);
  json r = invoke(d, "iso", {{"host_secret", "/etc/shadow"}}, &status);
  REQUIRE_MESSAGE(status == 200, r.dump());
  CHECK(r["hostname"] == "nsbox");
  CHECK(r["ifaces"] == json::array({"lo"}));
  CHECK(r["write_root"] == "Read-only file system");
  CHECK(r["host_secret_visible"] == false);
  CHECK(r["CapEff"] == "0000000000000000");
  CHECK(r["Seccomp"] == "2");
  CHECK(r["NoNewPrivs"] == "1");
  REQUIRE(r["host_uid"].is_number());
  CHECK(r["host_uid"].get<long>() != 0);
  CHECK(d.metric("nsbox_pool_function_templates") == 2);

  // A redeploy retires the template; nothing of it outlives the daemon.
  REQUIRE(deploy_probe(d, "slow", "slow_import.py")->status == 201);
  json plain = invoke(d, "slow", in_sandbox({}), &status);
  CHECK(status == 200);
  CHECK(d.stop() == 0);
  TemplateProcs left = template_procs();
  CHECK(left.runner == 0);
  CHECK(left.instances.empty());
}

TEST_CASE("serve: template=1 is refused where it cannot work, with the reason") {
  StateDir sd("fn-template-refused");
  Daemon d(sd.path);
  REQUIRE(d.start());
  auto strict = deploy_probe(d, "s", "echo.py", "?template=1&policy=strict");
  REQUIRE(strict);
  CHECK(strict->status == 400);
  CHECK(strict->body.find("function template") != std::string::npos);
  auto bad = deploy_probe(d, "s", "echo.py", "?template=maybe");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(bad->body.find("template must be") != std::string::npos);
  // A module that fails to import: the template is not kept, and the error
  // is the function's, as without a template.
  REQUIRE(deploy_probe(d, "r", "no_handler.py", "?template=1")->status == 201);
  int status = 0;
  json r = invoke(d, "r", {}, &status);
  CHECK(status != 200);
  CHECK(d.metric("nsbox_pool_function_templates") == 0);
}

TEST_CASE("serve --rootless: template=1 is refused at deploy, saying it needs cgroups") {
  // It was accepted, and every request tried to make a template and fell
  // back, with a warning each time.
  StateDir sd("fn-template-rootless");
  Daemon d(sd.path, "[pool]\nblank = 1\nmax_sandboxes = 4\n");
  d.run_as(nsbox::test::kNobody);
  REQUIRE_MESSAGE(d.start(), d.log());
  auto r = deploy_probe(d, "t", "echo.py", "?template=1");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK_MESSAGE(
      r->body.find("template=1: needs cgroups, which nsbox serve --rootless") != std::string::npos,
      r->body);
  REQUIRE(deploy_probe(d, "t", "echo.py", "")->status == 201);  // without it, served
  CHECK(d.stop() == 0);
}

// A function stored with template=1 and a daemon that cannot make
// templates (here one serving with fewer layers; also --rootless, or v1
// with swap and no swap accounting): served without one, and the listing
// says so rather than showing "template": true alone.
TEST_CASE("serve: a function stored with template=1 is served without one where none can be made") {
  StateDir sd("fn-template-unavailable");
  {
    Daemon d(sd.path, "[pool]\nblank = 1\nmax_sandboxes = 4\n");
    REQUIRE_MESSAGE(d.start(), d.log());
    first_templated(d, "t", "echo.py");
    CHECK(d.metric("nsbox_pool_function_templates") == 1);
    auto shown = d.client()->Get("/functions/t", auth(d));
    REQUIRE(shown);
    CHECK_FALSE(json::parse(shown->body).contains("template_unavailable"));
    CHECK(d.stop() == 0);
  }
  Daemon d(sd.path,
           "[pool]\nblank = 1\nmax_sandboxes = 4\nlayers = 7\nallow_comparison_isolation = true\n");
  REQUIRE_MESSAGE(d.start(), d.log());
  int status = 0;
  json r = invoke(d, "t", in_sandbox({}), &status);
  CHECK_MESSAGE(status == 200, r.dump(), d.log());
  CHECK(d.metric("nsbox_pool_function_templates") == 0);
  for (const std::string path : {"/functions/t", "/functions"}) {
    CAPTURE(path);
    auto got = d.client()->Get(path, auth(d));
    REQUIRE(got);
    json j = json::parse(got->body);
    json f = path == "/functions" ? j["functions"][0] : j;
    CHECK(f["template"] == true);
    CHECK(f.value("template_unavailable", "").find("every layer") != std::string::npos);
  }
  CHECK(d.stop() == 0);
}

// The request that makes a function's template waits for its import, as a
// cold sandbox's request does, and within the same timeout: an import that
// hangs is answered 504 once, at the function's timeout, not waited for a
// second time in a blank sandbox.
TEST_CASE("serve: a function template's import counts against its first request's timeout") {
  StateDir sd("fn-template-hang");
  Daemon d(sd.path);
  REQUIRE(d.start());
  REQUIRE(deploy_probe(d, "hang", "hang_import.py", "?template=1&timeout=1s")->status == 201);
  for (int i = 0; i < 2; i++) {
    CAPTURE(i);
    int status = 0;
    const auto t0 = std::chrono::steady_clock::now();
    invoke(d, "hang", {}, &status);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    CHECK(status == 504);
    CHECK(ms >= 1000);
    CHECK_MESSAGE(ms < 1800, "waited ", ms, " ms for a 1 s timeout");
  }
  CHECK(d.metric("nsbox_pool_function_templates") == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function template whose forks keep the spawner waiting is retired") {
  StateDir sd("fn-template-slow");
  // Idle instances expire at once: every request below forks a new one.
  Daemon d(sd.path, "[pool]\nidle_timeout_ms = 100\n");
  REQUIRE(d.start());
  json r = first_templated(d, "sf", "slow_fork.py");
  int status = 0;
  REQUIRE(d.metric("nsbox_pool_function_templates") == 1);
  CHECK(r["pid"] > 2);  // an instance
  // 90 ms a fork, 70 over the allowance: the fourth fork passes 250 ms of
  // debt, and the template goes once its instance is given back.
  for (int i = 0; i < 5; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    r = invoke(d, "sf", in_sandbox({}), &status);
    CHECK_MESSAGE(status == 200, i, " ", r.dump(), d.log());
  }
  REQUIRE(nsbox::test::wait_until([&] { return d.metric("nsbox_pool_function_templates") == 0; },
                                  5000, "the template gone"));
  // The function is served the ordinary way from then on, each request in a
  // sandbox of its own, and no template is made again for this deploy.
  for (int i = 0; i < 2; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    r = invoke(d, "sf", in_sandbox({}), &status);
    CHECK_MESSAGE(status == 200, r.dump(), d.log());
    CHECK(r["pid"] == 2);
  }
  CHECK(d.metric("nsbox_pool_function_templates") == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function template's fork error cannot forge a line of the daemon's log") {
  StateDir sd("fn-template-forged");
  Daemon d(sd.path);
  REQUIRE(d.start());
  first_templated(d, "ff", "forged_fork_error.py");
  // Each fork fails: served without the template, and the failure logged.
  int status = 0;
  for (int i = 0; i < 2; i++) {
    json r = invoke(d, "ff", in_sandbox({}), &status);
    CHECK_MESSAGE(status == 200, r.dump(), d.log());
  }
  REQUIRE(nsbox::test::wait_until([&] { return d.log().find("FORGED") != std::string::npos; }, 5000,
                                  "the failure logged"));
  const std::string log = d.log();
  CHECK(log.find("\nFORGED") == std::string::npos);
  CHECK(log.find("\\nFORGED") != std::string::npos);  // the newline, escaped
  CHECK(log.find('\x1b') == std::string::npos);
  CHECK(log.find("\xc2\x9b") == std::string::npos);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function template is frozen between its forks") {
  StateDir sd("fn-template-frozen");
  Daemon d(sd.path);
  REQUIRE(d.start());
  json r = first_templated(d, "spin", "template_spin.py");
  int status = 0;
  const TemplateProcs p = template_procs();
  REQUIRE(p.runner > 0);
  // Its module body's thread spins in the template, not in the instance
  // (a fork copies only the forking thread): left running, it would take a
  // CPU until the template goes, whoever asks for the function.
  const long before = cpu_ticks(p.runner);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const long used = cpu_ticks(p.runner) - before;
  CHECK_MESSAGE(used < 20, used, " ticks in 2 s");
  // Thawed for each fork: the next instance comes as before.
  auto second = std::async(std::launch::async, [&] {
    int st = 0;
    json got = invoke(d, "spin", in_sandbox({{"sleep_ms", 500}}), &st);
    return st;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // it holds the idle instance
  json again = invoke(d, "spin", in_sandbox({}), &status);
  CHECK_MESSAGE(status == 200, again.dump(), d.log());
  CHECK(second.get() == 200);
  CHECK(template_procs().instances.size() == 2);
  CHECK(d.metric("nsbox_pool_function_templates") == 1);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function template is frozen once loaded, though no request forks it") {
  StateDir sd("fn-template-rest");
  Daemon d(sd.path);
  REQUIRE(d.start());
  deploy_ok(d, "idle", "template_unfrozen.py", "?template=1&timeout=10s");
  // The first request makes the template (a 3 s import there); the second,
  // sent meanwhile, is served the ordinary way, and its sandbox, idle by
  // the time the template is loaded, serves the first too: no fork.
  auto first = std::async(std::launch::async, [&] {
    int st = 0;
    json r = invoke(d, "idle", in_sandbox({}), &st);
    return st;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int status = 0;
  json second = invoke(d, "idle", in_sandbox({}), &status);
  CHECK_MESSAGE(status == 200, second.dump(), d.log());
  CHECK(first.get() == 200);
  const TemplateProcs p = template_procs();
  REQUIRE(p.runner > 0);
  CHECK(p.instances.empty());
  // Its module body's thread spins unless the template is frozen.
  const long before = cpu_ticks(p.runner);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const long used = cpu_ticks(p.runner) - before;
  CHECK_MESSAGE(used < 20, used, " ticks in 2 s");
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function template that hangs up its fork socket is killed, not thawed") {
  StateDir sd("fn-template-hangup");
  Daemon d(sd.path);
  REQUIRE(d.start());
  deploy_ok(d, "hangup", "template_unfrozen.py", "?template=1&timeout=10s");
  // Loaded, frozen, thawed for its one fork, at which it shuts its end
  // of the socket and sleeps, its spinning thread running on. Its instance
  // dies with it, maybe before it answers: the status is not the point.
  int status = 0;
  (void)invoke(d, "hangup", in_sandbox({}), &status);
  CHECK(nsbox::test::wait_until([] { return template_procs().runner == 0; }, 5000,
                                "the template killed"));
  // Killed for its hang-up, not gone for another reason.
  CHECK_MESSAGE(d.log().find("hung up its fork socket") != std::string::npos, d.log());
  // The daemon serves on.
  auto echo = deploy_probe(d, "echo", "echo.py");
  REQUIRE(echo);
  json r = invoke(d, "echo", {{"x", 1}}, &status);
  CHECK_MESSAGE(status == 200, r.dump(), d.log());
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function template that dies costs no request and is made again") {
  StateDir sd("fn-template-kill");
  Daemon d(sd.path);
  REQUIRE(d.start());
  first_templated(d, "slow", "slow_import.py");
  int status = 0;
  TemplateProcs p = template_procs();
  REQUIRE(p.runner > 0);
  REQUIRE(p.instances.size() == 1);
  // Frozen again once its instance is settled, a moment after the reply:
  // its PID 1 cannot see the runner die, the spawner's watch must.
  REQUIRE(nsbox::test::wait_until([&] { return cgroup2_frozen(p.runner); }, 5000,
                                  "the template frozen"));
  // Its PID 1 and the template's cgroup2 leaf, to see them go.
  const pid_t pid1 = std::stoi(proc_status(p.runner, "PPid"));
  std::string leaf;
  {
    std::istringstream in(read_text("/proc/" + std::to_string(pid1) + "/cgroup"));
    for (std::string line; std::getline(in, line);)
      if (line.rfind("0::", 0) == 0) leaf = line.substr(3);
  }
  REQUIRE(!leaf.empty());
  auto leaf_exists = [&] {
    for (const std::string mount : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"})
      if (access((mount + leaf + "/cgroup.procs").c_str(), F_OK) == 0) return true;
    return false;
  };
  REQUIRE(leaf_exists());
  // Its runner killed: its sandbox ends, and the idle instance with it.
  REQUIRE(kill(p.runner, SIGKILL) == 0);
  REQUIRE(nsbox::test::wait_until([] { return template_procs().instances.empty(); }, 5000,
                                  "the instances gone"));
  // Cleaned up by the spawner at once, not at the function's next request
  // (which may never come): no zombie PID 1 holding its uid slot, no leaf.
  CHECK(nsbox::test::wait_until([&] { return kill(pid1, 0) != 0; }, 5000,
                                "the template's PID 1 reaped"));
  CHECK(
      nsbox::test::wait_until([&] { return !leaf_exists(); }, 5000, "the template's leaf removed"));
  for (int i = 0; i < 3; i++) {
    json r = invoke(d, "slow", in_sandbox({}), &status);
    CHECK_MESSAGE(status == 200, i, " ", r.dump(), d.log());
  }
  // A new template was made (a new sandbox: its import count starts again).
  REQUIRE(
      nsbox::test::wait_until([] { return template_procs().runner > 0; }, 5000, "a new template"));
  CHECK(template_procs().runner != p.runner);
  CHECK(d.metric("nsbox_pool_function_templates") == 1);
}

TEST_CASE(
    "serve: a function template cannot send anything back to the daemon, nor keep its leaves") {
  StateDir sd("fn-template-attack");
  Daemon d(sd.path);
  REQUIRE(d.start());
  // The handler writes 300 ms into its request: on v1 the join leaf lives
  // until the spawner has moved the instance on, after the reply.
  json r = first_templated(d, "talk", "template_attack.py", "?template=1",
                           in_sandbox({{"sleep_ms", 300}}));
  int status = 0;
  // Its module body ran in the template, where fd 6 is the fork socket,
  // and the daemon's side takes nothing: not a message, not an fd.
  CHECK(r["fork_fd"] == "socket");
  CHECK(r["message"] == "Broken pipe");
  CHECK(r["fd"] == "Broken pipe");
  // It kept the cgroup.procs files its fork requests lent it (every
  // instance's join leaf): each write fails, as the leaf is gone, and the
  // instance stays in its own leaf. Were the files live, a write would
  // move the writer past its leaf's pids.max and away from its memory.
  REQUIRE(r["kept_writes"].is_array());
  CHECK(r["kept_writes"].size() >= 1);
  for (const auto& w : r["kept_writes"]) CHECK(w == "No such device");
  CHECK(r["cgroup_changed"] == false);
  // Nor can a request write into its template's memory, which every later
  // instance would start from.
  CHECK(r["template_mem"] == "Permission denied");
  // Its template still forks, and the daemon still serves everyone.
  json again = invoke(d, "talk", in_sandbox({{"sleep_ms", 300}}), &status);
  CHECK(status == 200);
  for (const auto& w : again["kept_writes"]) CHECK(w == "No such device");
  CHECK(again["cgroup_changed"] == false);
  REQUIRE(deploy_probe(d, "echo", "echo.py")->status == 201);
  invoke(d, "echo", {{"n", 1}}, &status);
  CHECK(status == 200);
  CHECK(d.metric("nsbox_pool_function_templates") == 1);
}

namespace {

uint64_t shmem_kb() {
  std::ifstream in("/proc/meminfo");
  std::string k, unit;
  uint64_t kb = 0;
  while (in >> k >> kb >> unit)
    if (k == "Shmem:") return kb;
  return 0;
}

// The memory hierarchy's path of a process, as the host sees it (v1: the
// memory line; v2: the one line).
std::string memory_cgroup(pid_t pid) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line, v2;
  while (std::getline(in, line)) {
    auto second = line.find(':', line.find(':') + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(line.find(':') + 1, second - line.find(':') - 1);
    if (controllers.find("memory") != std::string::npos) return line.substr(second + 1);
    if (line.rfind("0::", 0) == 0) v2 = line.substr(second + 1);
  }
  return v2;
}

std::string parent_dir(const std::string& path) {
  return path.substr(0, path.rfind('/'));
}

}  // namespace

TEST_CASE("serve: memory an instance hands to its function template stays within the function's") {
  StateDir sd("fn-template-hoard");
  Daemon d(sd.path, "[pool]\nidle_timeout_ms = 300\n");
  REQUIRE(d.start());
  first_templated(d, "hoard", "template_hoard.py", "?template=1&memory=64M");
  int status = 0;
  const TemplateProcs p = template_procs();
  REQUIRE(p.runner > 0);
  REQUIRE(p.instances.size() == 1);
  // The template's leaf and its instances' are below one group of their own.
  const std::string family = parent_dir(memory_cgroup(p.runner));
  CHECK(family.find("/nsbox") == 0);
  CHECK(family.find("-f") != std::string::npos);
  CHECK(parent_dir(memory_cgroup(p.instances[0])) == family);
  CHECK(memory_cgroup(p.instances[0]) != memory_cgroup(p.runner));
  const pid_t pid1 = std::stoi(proc_status(p.runner, "PPid"));
  const std::string template_leaf =
      (access("/sys/fs/cgroup/memory/nsbox", F_OK) == 0 ? "/sys/fs/cgroup/memory"
                                                        : "/sys/fs/cgroup") +
      memory_cgroup(p.runner);
  REQUIRE_MESSAGE(access(template_leaf.c_str(), F_OK) == 0, template_leaf);

  // Four instances at once, each handing its template 40 MiB (within its
  // own 64 MiB) and then going idle, and so away.
  const uint64_t before = shmem_kb();
  constexpr int kClients = 4;
  std::vector<json> got(kClients);
  std::vector<int> statuses(kClients, 0);
  {
    std::vector<std::jthread> clients;
    for (int i = 0; i < kClients; i++)
      clients.emplace_back([&, i] {
        got[i] =
            invoke(d, "hoard", in_sandbox({{"hoard_mb", 40}, {"sleep_ms", 800}}), &statuses[i]);
      });
  }
  for (int i = 0; i < kClients; i++) {
    REQUIRE_MESSAGE(statuses[i] == 200, got[i].dump(), d.log());
    CHECK(got[i]["sent"] == "sent");
  }
  // 160 MiB went to the template, more than its own 64 MiB: once the
  // instances are gone, the function's group no longer has room for it,
  // and the template goes with what it held. Before the group, the memory
  // stayed, charged to the removed leaves under no limit, until the
  // template went for some other reason.
  CHECK_MESSAGE(nsbox::test::wait_until([&] { return shmem_kb() < before + (48 << 10); }, 15000,
                                        "the hoarded memory freed"),
                "Shmem grew by ", (shmem_kb() - before) >> 10, " MiB; ", d.log());
  CHECK(d.log().find("holds more than its sandboxes may") != std::string::npos);
  CHECK(template_procs().runner != p.runner);
  // Destroyed by the spawner at once, not at the function's next request
  // (which may never come): no zombie PID 1 holding its uid slot, no leaf.
  CHECK(nsbox::test::wait_until([&] { return kill(pid1, 0) != 0; }, 3000,
                                "the overdrawn template's PID 1 reaped"));
  CHECK(nsbox::test::wait_until([&] { return access(template_leaf.c_str(), F_OK) != 0; }, 3000,
                                "the overdrawn template's leaf removed"));
  // The daemon and the function still serve.
  json again = invoke(d, "hoard", in_sandbox({}), &status);
  CHECK_MESSAGE(status == 200, again.dump(), d.log());

  // A daemon killed with its template's family in place: the next one
  // sweeps the family, and the leaves below it first.
  TemplateProcs now;
  for (int i = 0; i < 3 && now.runner <= 0; i++) {
    invoke(d, "hoard", in_sandbox({}), &status);  // the fork that finds it dead drops it
    CHECK(status == 200);
    now = template_procs();
  }
  REQUIRE(now.runner > 0);
  const std::string group = parent_dir(memory_cgroup(now.runner));
  REQUIRE(group.find("-f") != std::string::npos);
  const std::string host_dir =
      (access("/sys/fs/cgroup/memory/nsbox", F_OK) == 0 ? "/sys/fs/cgroup/memory"
                                                        : "/sys/fs/cgroup") +
      group;
  REQUIRE_MESSAGE(access(host_dir.c_str(), F_OK) == 0, host_dir);
  REQUIRE(d.kill9());
  Daemon next(sd.path);
  REQUIRE(next.start());
  CHECK_MESSAGE(nsbox::test::wait_until([&] { return access(host_dir.c_str(), F_OK) != 0; }, 15000,
                                        "the killed daemon's family swept"),
                host_dir);
  CHECK(next.stop() == 0);
  CHECK(template_procs().runner == 0);
}

TEST_CASE("serve: what an instance starts at once follows it into its own leaf") {
  StateDir sd("fn-template-children");
  Daemon d(sd.path, "[pool]\nidle_timeout_ms = 100\n");
  REQUIRE(d.start());
  json first = first_templated(d, "kids", "template_children.py");
  const TemplateProcs p = template_procs();
  REQUIRE(p.runner > 0);
  // Each a cold start (the last instance gone after 100 ms idle): on v1 the
  // instance is moved on after its request began, children and all.
  CHECK_MESSAGE(first["same"] == json::array({true, true, true}), first.dump());
  for (int i = 0; i < 3; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    int status = 0;
    json r = invoke(d, "kids", in_sandbox({}), &status);
    REQUIRE_MESSAGE(status == 200, r.dump(), d.log());
    CHECK_MESSAGE(r["same"] == json::array({true, true, true}), i, " ", r.dump());
  }
  // The same template throughout: nothing was taken for the template's doing.
  CHECK(template_procs().runner == p.runner);
  CHECK(d.log().find("join leaf") == std::string::npos);
  CHECK(d.stop() == 0);
}

// What an instance leaves behind is its template's PID 1's to reap once the
// instance is destroyed; the template is frozen by then, and its zombies
// stayed until the next fork thawed it, holding the function's pids (that
// fork then failed on them).
TEST_CASE("serve: what a destroyed instance left is reaped though its template is frozen") {
  StateDir sd("fn-template-orphans");
  Daemon d(sd.path, "[pool]\nidle_timeout_ms = 100\n");
  REQUIRE(d.start());
  json first = first_templated(d, "orphans", "template_orphans.py");
  REQUIRE_MESSAGE(first.contains("left"), first.dump());
  const TemplateProcs p = template_procs();
  REQUIRE(p.runner > 0);
  const pid_t pid1 = static_cast<pid_t>(std::stol(proc_status(p.runner, "PPid")));
  auto zombies = [&] {
    int n = 0;
    std::istringstream kids(
        read_text("/proc/" + std::to_string(pid1) + "/task/" + std::to_string(pid1) + "/children"));
    for (pid_t k; kids >> k;)
      if (proc_status(k, "State").find("Z (zombie)") != std::string::npos) n++;
    return n;
  };
  // Each a cold start: the last instance went after 100 ms idle, and with it
  // the process it left.
  for (int i = 0; i < 3; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    int status = 0;
    json r = invoke(d, "orphans", in_sandbox({}), &status);
    REQUIRE_MESSAGE(status == 200, r.dump(), d.log());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the last one destroyed
  CHECK(template_procs().instances.empty());
  CHECK(zombies() == 0);
  CHECK(cgroup2_frozen(p.runner));  // frozen again once they were reaped
  CHECK(template_procs().runner == p.runner);
  CHECK(d.stop() == 0);
}
