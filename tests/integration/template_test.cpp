// The template factory (sandbox/template.hpp) behind the daemon: sandboxes
// cloned from one template are as isolated as exec'd ones and share nothing
// writable with each other or with the template; a template that dies is
// replaced and costs no request.
#include <dirent.h>
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.hpp"
#include "tests/integration/harness.hpp"

using nlohmann::json;
using nsbox::test::Daemon;
using nsbox::test::deploy_probe;
using nsbox::test::in_sandbox;
using nsbox::test::invoke;
using nsbox::test::proc_status;
using nsbox::test::spawner_of;
using nsbox::test::StateDir;

namespace {

// The spawner's template: its child named nsbox-template in the host's user
// namespace (the sandboxes it clones are the spawner's children too, with
// its name until they exec, but each in a user namespace of its own from
// birth), with real uid 0 (its effective uid is a slot's while it clones,
// which a scan may catch). 0 when there is none. From a scan of /proc: a
// children file may miss entries while other children come and go (proc(5)).
ino_t user_ns(pid_t pid) {
  struct stat st {};
  if (stat(("/proc/" + std::to_string(pid) + "/ns/user").c_str(), &st) != 0) return 0;
  return st.st_ino;
}

pid_t template_of(pid_t spawner) {
  DIR* proc = opendir("/proc");
  if (!proc) return 0;
  const ino_t host_ns = user_ns(getpid());
  pid_t found = 0;
  while (struct dirent* e = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    comm >> name;
    if (name != "nsbox-template") continue;
    if (atoi(proc_status(pid, "PPid").c_str()) != spawner) continue;
    if (user_ns(pid) != host_ns) continue;
    if (atol(proc_status(pid, "Uid").c_str()) == 0) found = pid;  // the real uid
  }
  closedir(proc);
  return found;
}

std::string process_list() {
  nsbox::test::RunSpec s;
  s.argv = {"/bin/ps", "-eo", "pid,ppid,uid,comm"};
  return nsbox::test::run(s).out;
}

// The daemon's template once it shows (it is started before the daemon
// answers /healthz, so at once but for a scan racing its start).
pid_t wait_template(const Daemon& d) {
  const pid_t spawner = spawner_of(d);
  pid_t t = 0;
  nsbox::test::wait_until([&] { return (t = template_of(spawner)) > 0; }, 5000, "the template");
  return t;
}

// The processes of this spawner's sandboxes: its children named nsbox-init
// (each sandbox's PID 1, cloned with CLONE_PARENT) and their children.
std::vector<pid_t> sandbox_processes(pid_t spawner) {
  std::vector<pid_t> inits, all;
  auto scan = [](auto&& keep) {
    DIR* proc = opendir("/proc");
    if (!proc) return;
    while (struct dirent* e = readdir(proc)) {
      pid_t pid = static_cast<pid_t>(atoi(e->d_name));
      if (pid > 0) keep(pid);
    }
    closedir(proc);
  };
  scan([&](pid_t pid) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    comm >> name;
    if (name == "nsbox-init" && atoi(proc_status(pid, "PPid").c_str()) == spawner)
      inits.push_back(pid);
  });
  all = inits;
  scan([&](pid_t pid) {
    if (std::find(inits.begin(), inits.end(), atoi(proc_status(pid, "PPid").c_str())) !=
        inits.end())
      all.push_back(pid);
  });
  return all;
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool alive(pid_t pid) {
  const std::string state = proc_status(pid, "State");
  return !state.empty() && state.find('Z') == std::string::npos &&
         state.find('X') == std::string::npos;
}

// Checks that pid is in one srv-<spawner>-<n> leaf in every hierarchy that
// has that leaf (v1: memory, pids, cpu when capped; the cgroup2 line on v2
// or where the hybrid layout freezes there). False, checking nothing, for a
// process that is exiting: the pool may be replacing a sandbox meanwhile,
// and a zombie's /proc/<pid>/cgroup shows "/" for a leaf already removed.
bool check_in_leaf(pid_t pid, pid_t spawner) {
  CAPTURE(pid);
  if (!alive(pid)) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::vector<std::pair<std::string, std::string>> lines;  // controllers, path
  std::string line, leaf;
  const std::string tag = "/srv-" + std::to_string(spawner) + "-";
  while (std::getline(in, line)) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    lines.emplace_back(line.substr(a + 1, b - a - 1), line.substr(b + 1));
    if (lines.back().second.find(tag) != std::string::npos) leaf = lines.back().second;
  }
  if (!alive(pid)) return false;
  REQUIRE_MESSAGE(!leaf.empty(), "in no leaf of the spawner");
  int checked = 0;
  for (const auto& item : lines) {
    const auto& controllers = std::get<0>(item);
    const auto& path = std::get<1>(item);
    CAPTURE(controllers);
    const bool has_leaf = controllers.empty() ? is_dir("/sys/fs/cgroup/unified" + leaf) ||
                                                    is_dir("/sys/fs/cgroup" + leaf)
                                              : is_dir("/sys/fs/cgroup/" + controllers + leaf);
    if (!has_leaf) continue;
    CHECK(path == leaf);
    checked++;
  }
  CHECK(checked >= 1);
  return true;
}

}  // namespace

TEST_CASE("serve: a sandbox is the same sandbox from either factory") {
  for (const std::string factory : {"template", "exec"}) {
    CAPTURE(factory);
    StateDir sd("factory-" + factory);
    Daemon d(sd.path, "[pool]\nfactory = \"" + factory + "\"\n");
    d.spawners(1);  // its sandboxes, and one template, are the spawner's
    REQUIRE(d.start());
    const pid_t spawner = spawner_of(d);
    REQUIRE(spawner > 0);
    if (factory == "template")
      CHECK(wait_template(d) > 0);
    else
      CHECK(template_of(spawner) == 0);
    REQUIRE(deploy_probe(d, "iso", "isolation.py")->status == 201);
    int status = 0;
    json r = invoke(d, "iso", {{"host_secret", "/etc/shadow"}}, &status);
    REQUIRE_MESSAGE(status == 200, r.dump());
    CHECK(r["hostname"] == "nsbox");
    CHECK(r["ppid"] == 1);
    for (int pid : r["pids"]) CHECK(pid <= 2);
    CHECK(r["ifaces"] == json::array({"lo"}));
    CHECK(r["write_root"] == "Read-only file system");
    CHECK(r["write_tmp"] == "ok");
    CHECK(r["write_shm"] == "ok");
    CHECK(r["write_dev"] == "Read-only file system");
    CHECK(r["dev_null_utime"] == "Read-only file system");
    CHECK(r["dev_null_write"] == "ok");
    CHECK(r["proc_mask_utime"] == "Read-only file system");
    CHECK(r["tmpfs_superblocks"] == 1);
    CHECK(r["root_fs"] == "overlay");
    for (const char* opt : {"ro", "nosuid", "nodev"})
      CHECK_MESSAGE(std::find(r["root_options"].begin(), r["root_options"].end(), opt) !=
                        r["root_options"].end(),
                    opt, " in ", r["root_options"].dump());
    CHECK(r["host_secret_visible"] == false);
    CHECK(r["CapEff"] == "0000000000000000");
    CHECK(r["CapBnd"] == "0000000000000000");
    CHECK(r["Seccomp"] == "2");
    CHECK(r["NoNewPrivs"] == "1");
    CHECK(r["uid"] == 1000);
    REQUIRE(r["host_uid"].is_number());
    CHECK(r["host_uid"].get<long>() != 0);
    // PID 1 enters its leaf itself, or is cloned into it (sandbox/cgroup.hpp):
    // it and the runner are there in every hierarchy the leaf was made in.
    int live = 0;
    for (pid_t pid : sandbox_processes(spawner)) live += check_in_leaf(pid, spawner);
    CHECK(live >= 2);
    // /metrics: per sandbox its cgroup charge, USS and PSS; the templates'
    // own memory only from the template factory. A clone maps most of its
    // heap with the template, so its USS is well below its RSS-based PSS.
    auto m = d.client()->Get("/metrics", nsbox::test::auth(d));
    REQUIRE(m);
    const std::string text = m->body;
    CHECK(text.find("nsbox_sandbox_uss_bytes{sandbox=") != std::string::npos);
    CHECK(text.find("nsbox_sandbox_pss_bytes{sandbox=") != std::string::npos);
    CHECK((text.find("\nnsbox_templates 1\n") != std::string::npos) == (factory == "template"));
    if (factory == "template") {
      CHECK(d.metric("nsbox_template_pss_bytes") > 1e6);
      CHECK(d.metric("nsbox_template_uss_bytes") > 0);
    }
    CHECK(d.stop() == 0);
  }
}

// The template mounts one read-only overlay of the runtime tree in its own
// mount namespace, and its clones bind it (sandbox/shared_root.hpp): no
// overlay superblock per sandbox, and nothing mounted on the host.
TEST_CASE("serve: a template's sandboxes share one read-only overlay root, the host none") {
  StateDir sd("template-root");
  Daemon d(sd.path);
  d.spawners(1);  // one template: every sandbox below is its clone
  REQUIRE(d.start());
  const pid_t tmpl = wait_template(d);
  REQUIRE_MESSAGE(tmpl > 0, process_list());
  REQUIRE(deploy_probe(d, "a", "isolation.py")->status == 201);
  REQUIRE(deploy_probe(d, "b", "isolation.py")->status == 201);
  int status = 0;
  json a = invoke(d, "a", json::object(), &status);
  REQUIRE_MESSAGE(status == 200, a.dump());
  json b = invoke(d, "b", json::object(), &status);
  REQUIRE_MESSAGE(status == 200, b.dump());
  CHECK(a["root_fs"] == "overlay");
  CHECK(b["root_fs"] == "overlay");
  CHECK_MESSAGE(a["root_dev"] == b["root_dev"], a.dump(), "\n", b.dump());
  CHECK(a["write_root"] == "Read-only file system");
  const std::string tree = sd.path + "/rootfs";
  auto mounted_on = [&](const std::string& mountinfo) {
    std::ifstream f(mountinfo);
    std::string line;
    int n = 0;
    while (std::getline(f, line)) n += line.find(" " + tree + " ") != std::string::npos;
    return n;
  };
  CHECK(mounted_on("/proc/self/mountinfo") == 0);
  // The empty tmpfs and the overlay above it, in the template's namespace.
  CHECK(mounted_on("/proc/" + std::to_string(tmpl) + "/mountinfo") == 2);
}

TEST_CASE("serve: sandboxes cloned from one template share no memory, file or random state") {
  StateDir sd("template-share");
  Daemon d(sd.path);
  REQUIRE(d.start());
  REQUIRE_MESSAGE(wait_template(d) > 0, process_list());
  REQUIRE(deploy_probe(d, "a", "template_share.py")->status == 201);
  REQUIRE(deploy_probe(d, "b", "template_share.py")->status == 201);
  int status = 0;
  json planted = invoke(d, "a", in_sandbox({{"op", "plant"}}), &status);
  REQUIRE_MESSAGE(status == 200, planted.dump());
  const std::string secret = planted["secret"];
  // Its own sandbox finds the secret everywhere it put it: a look that could
  // not find it would prove nothing about the sibling.
  json self = invoke(d, "a", in_sandbox({{"op", "look"}, {"secret", secret}}), &status);
  REQUIRE_MESSAGE(status == 200, self.dump());
  CHECK(self["pid"] == planted["pid"]);  // the same warm sandbox
  for (const char* where : {"json module", "builtins", "environ", "/tmp/nsbox-secret"})
    CHECK_MESSAGE(
        std::find(self["found"].begin(), self["found"].end(), where) != self["found"].end(), where,
        " in ", self.dump());
  json sibling = invoke(d, "b", in_sandbox({{"op", "look"}, {"secret", secret}}), &status);
  REQUIRE_MESSAGE(status == 200, sibling.dump());
  CHECK_MESSAGE(sibling["found"] == json::array(), sibling.dump());
  // Each clone re-seeds random after the fork: the first draw of a sibling
  // is not its template's (nor the other sibling's).
  CHECK(sibling["random"] != planted["random"]);
  CHECK(sibling["urandom"] != planted["urandom"]);
}

TEST_CASE("serve: a sandbox that corrupts its memory harms no sibling and not the template") {
  StateDir sd("template-corrupt");
  Daemon d(sd.path);
  REQUIRE(d.start());
  const pid_t spawner = spawner_of(d);
  const pid_t tmpl = wait_template(d);
  REQUIRE_MESSAGE(tmpl > 0, "spawner ", spawner, "\n", process_list());
  REQUIRE(deploy_probe(d, "bystander", "echo.py")->status == 201);
  REQUIRE(deploy_probe(d, "vandal", "template_share.py")->status == 201);
  int status = 0;
  json before = invoke(d, "bystander", {{"n", 1}}, &status);
  REQUIRE(status == 200);
  // Zeroes pages it shares copy-on-write with the template, then uses them:
  // its own process dies.
  json vandal = invoke(d, "vandal", in_sandbox({{"op", "corrupt"}}), &status);
  CHECK_MESSAGE(status != 200, vandal.dump());
  json after = invoke(d, "bystander", {{"n", 2}}, &status);
  CHECK(status == 200);
  CHECK(after["event"]["n"] == 2);
  // A sandbox cloned after the damage is whole, from the same template.
  REQUIRE(deploy_probe(d, "fresh", "echo.py")->status == 201);
  json fresh = invoke(d, "fresh", {{"n", 3}}, &status);
  CHECK(status == 200);
  CHECK(fresh["event"]["n"] == 3);
  CHECK_MESSAGE(template_of(spawner) == tmpl, d.log());
  // And the vandal's function still works in a new sandbox.
  json again = invoke(d, "vandal", in_sandbox({{"op", "look"}, {"secret", "x"}}), &status);
  CHECK_MESSAGE(status == 200, again.dump());
}

TEST_CASE("serve: killing the template loses no request that had not started") {
  StateDir sd("template-kill");
  // No blank sandboxes: every first request of a function is a clone.
  Daemon d(sd.path, "[pool]\nblank = 0\n");
  REQUIRE(d.start());
  const pid_t spawner = spawner_of(d);
  const pid_t tmpl = wait_template(d);
  REQUIRE_MESSAGE(tmpl > 0, "spawner ", spawner, "\n", process_list());
  constexpr int kFunctions = 16;
  for (int i = 0; i < kFunctions; i++)
    REQUIRE(deploy_probe(d, "f" + std::to_string(i), "echo.py")->status == 201);
  std::vector<int> statuses(kFunctions, 0);
  {
    std::vector<std::jthread> clients;
    for (int i = 0; i < kFunctions; i++)
      clients.emplace_back([&, i] {
        invoke(d, "f" + std::to_string(i), {{"i", i}}, &statuses[i]);
      });
    REQUIRE(kill(tmpl, SIGKILL) == 0);
  }
  for (int i = 0; i < kFunctions; i++) CHECK_MESSAGE(statuses[i] == 200, "f", i);
  // A new template takes its place (at the next clone, or within the
  // spawner's idle check), and the next function is cloned from it.
  REQUIRE(nsbox::test::wait_until(
      [&] {
        pid_t now = template_of(spawner);
        return now > 0 && now != tmpl;
      },
      15000, "a new template"));
  REQUIRE(deploy_probe(d, "late", "echo.py")->status == 201);
  int status = 0;
  invoke(d, "late", {{"i", -1}}, &status);
  CHECK(status == 200);
  const std::string log = d.log();
  CHECK_MESSAGE((log.find("it exited; starting a new one") != std::string::npos ||
                 log.find("template died while cloning") != std::string::npos),
                log);
}

TEST_CASE("serve: a rebuilt runtime tree gets a new template") {
  StateDir sd("template-rebuild");
  Daemon d(sd.path);
  REQUIRE(d.start());
  const pid_t spawner = spawner_of(d);
  const pid_t tmpl = wait_template(d);
  REQUIRE_MESSAGE(tmpl > 0, "spawner ", spawner, "\n", process_list());
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "rootfs", "build", "--out", sd.path + "/rootfs"};
  // A function made warm before the rebuild: its overlay reads the tree
  // the rebuild replaces, which must stay until nothing uses it.
  auto c = d.client();
  REQUIRE(c->Put("/functions/before", nsbox::test::auth(d),
                 "import importlib, os\n"
                 "BORN = os.urandom(8).hex()\n"
                 "def handler(e, c):\n"
                 "    m = importlib.import_module(e['module']) if e else None\n"
                 "    return {'born': BORN, 'module': m and m.__name__}\n",
                 "text/x-python")
              ->status == 201);
  int status = 0;
  const json first = invoke(d, "before", nullptr, &status);
  REQUIRE(status == 200);
  auto built = nsbox::test::run(s);
  REQUIRE_MESSAGE(built.exit_code == 0, built.err);
  auto replaced = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(sd.path))
      n += e.path().filename().string().rfind("rootfs.old-", 0) == 0;
    return n;
  };
  CHECK(replaced() == 1);
  // The same warm sandbox imports a module no one has imported yet.
  const json later = invoke(d, "before", {{"module", "colorsys"}}, &status);
  CHECK_MESSAGE(status == 200, later.dump());
  CHECK(later.value("born", "") == first.value("born", "?"));
  CHECK(later.value("module", "") == "colorsys");
  REQUIRE(deploy_probe(d, "after", "echo.py")->status == 201);
  invoke(d, "after", {{"n", 1}}, &status);
  CHECK(status == 200);
  const pid_t now = template_of(spawner);
  CHECK(now > 0);
  CHECK(now != tmpl);
  CHECK(d.log().find("the runtime tree was rebuilt") != std::string::npos);
  // Stopped, the daemon no longer uses the replaced tree: the next start
  // removes it.
  REQUIRE(d.stop() == 0);
  REQUIRE(d.start());
  CHECK(replaced() == 0);
}

TEST_CASE("serve: a template is replaced after template_rotate_after clones") {
  StateDir sd("template-rotate");
  Daemon d(sd.path, "[pool]\nblank = 0\ntemplate_rotate_after = 2\n");
  REQUIRE(d.start());
  const pid_t spawner = spawner_of(d);
  std::vector<pid_t> seen = {wait_template(d)};
  REQUIRE_MESSAGE(seen[0] > 0, "spawner ", spawner, "\n", process_list());
  for (int i = 0; i < 5; i++) {
    const std::string name = "r" + std::to_string(i);
    REQUIRE(deploy_probe(d, name, "echo.py")->status == 201);
    int status = 0;
    invoke(d, name, {{"i", i}}, &status);
    CHECK(status == 200);
    pid_t now = template_of(spawner);
    REQUIRE(now > 0);
    if (now != seen.back()) seen.push_back(now);
  }
  // Five clones, two per template: at least two replacements.
  CHECK(seen.size() >= 3);
  CHECK(d.log().find("it made template_rotate_after sandboxes") != std::string::npos);
}
