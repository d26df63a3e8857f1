// `nsbox serve` over real HTTP: the API and every error code, the pool's
// promises (no old code after a deploy returns, no state across functions),
// durability across restarts and kill -9, overload, and clean teardown.
#include <arpa/inet.h>
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "base/children.hpp"
#include "tests/integration/daemon.hpp"
#include "tests/integration/harness.hpp"

using nlohmann::json;
using nsbox::test::auth;
using nsbox::test::Daemon;
using nsbox::test::StateDir;

namespace {

const char* kPool =
    "[pool]\nblank = 2\nmax_sandboxes = 24\nper_function = 2\nidle_timeout_ms = 60000\n";

httplib::Result deploy(const Daemon& d, const std::string& name, const std::string& source,
                       const std::string& query = "") {
  return d.client()->Put(("/functions/" + name + query).c_str(), auth(d), source, "text/x-python");
}

json body(const httplib::Result& r) {
  return r ? json::parse(r->body, nullptr, false) : json();
}

std::string returns(const std::string& value) {
  return "def handler(event, context):\n    return " + value + "\n";
}

// A process's scheduling policy: field 41 of /proc/.../stat (0 = SCHED_OTHER,
// 3 = SCHED_BATCH), counted from after the command's closing parenthesis.
int stat_policy(const std::string& stat_path) {
  std::ifstream f(stat_path);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 0; i < 39 && rest >> field; i++) {
  }
  return rest ? std::stoi(field) : -1;
}

// A v1 cpu hierarchy, or a cgroup2 root offering cpu.
bool cpu_controller_present() {
  if (access("/sys/fs/cgroup/cpu", F_OK) == 0) return true;
  std::ifstream ctl("/sys/fs/cgroup/cgroup.controllers");
  std::string c;
  while (ctl >> c)
    if (c == "cpu") return true;
  return false;
}

// Sandbox cgroups of this daemon (srv-<spawner pid>-<n>) that are under the
// cpu controller: leaves in the v1 cpu hierarchy, or v2 leaves whose
// cgroup.controllers lists cpu.
int cpu_controlled_leaves(pid_t daemon) {
  std::ifstream children("/proc/" + std::to_string(daemon) + "/task/" + std::to_string(daemon) +
                         "/children");
  pid_t spawner = 0;
  children >> spawner;
  REQUIRE(spawner > 0);
  const std::string prefix = "srv-" + std::to_string(spawner) + "-";
  int n = 0;
  for (const std::string parent :
       {"/sys/fs/cgroup/cpu/nsbox", "/sys/fs/cgroup/nsbox", "/sys/fs/cgroup/unified/nsbox",
        "/sys/fs/cgroup/nsbox-nocpu", "/sys/fs/cgroup/unified/nsbox-nocpu"}) {
    DIR* d = opendir(parent.c_str());
    if (!d) continue;
    const bool v1 = parent == "/sys/fs/cgroup/cpu/nsbox";
    while (dirent* e = readdir(d)) {
      if (std::string(e->d_name).rfind(prefix, 0) != 0) continue;
      std::ifstream ctl(parent + "/" + e->d_name + "/cgroup.controllers");
      std::string c, all;
      while (ctl >> c) all += " " + c + " ";
      if (v1 || all.find(" cpu ") != std::string::npos) n++;
    }
    closedir(d);
  }
  return n;
}

// This spawner's leaves made ahead (srv-<spawner>-l<n>) in the memory
// hierarchy (v1) or the v2 tree: name -> the processes in it.
std::map<std::string, std::string> spare_named_leaves(pid_t spawner) {
  const std::string prefix = "srv-" + std::to_string(spawner) + "-l";
  std::map<std::string, std::string> out;
  for (const std::string parent :
       {"/sys/fs/cgroup/memory/nsbox", "/sys/fs/cgroup/nsbox", "/sys/fs/cgroup/nsbox-nocpu"}) {
    DIR* d = opendir(parent.c_str());
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      if (std::string(e->d_name).rfind(prefix, 0) != 0) continue;
      std::ifstream procs(parent + "/" + e->d_name + "/cgroup.procs");
      std::string all((std::istreambuf_iterator<char>(procs)), std::istreambuf_iterator<char>());
      out[e->d_name] = all;
    }
    closedir(d);
  }
  return out;
}

// The network namespaces a process holds open (made ahead, netns.hpp), by inode.
std::set<ino_t> netns_held(pid_t pid) {
  std::set<ino_t> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      char link[64] = {};
      if (readlink((dir + "/" + e->d_name).c_str(), link, sizeof link - 1) > 0 &&
          std::string(link).rfind("net:[", 0) == 0)
        out.insert(std::stoull(link + 5));
    }
    closedir(d);
  }
  return out;
}

// A process's children by name (/proc/PID/comm), zombies included.
std::vector<pid_t> children_named(pid_t parent, const std::string& name) {
  std::vector<pid_t> out;
  const std::string p = std::to_string(parent);
  std::ifstream children("/proc/" + p + "/task/" + p + "/children");
  pid_t child;
  while (children >> child) {
    std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
    std::string c;
    if (std::getline(comm, c) && c == name) out.push_back(child);
  }
  return out;
}

ino_t netns_of(pid_t pid) {
  struct stat st;
  return stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &st) == 0 ? st.st_ino : 0;
}

// Any leaf of this spawner left in any hierarchy.
std::vector<std::string> leaves_left(pid_t spawner) {
  const std::string prefix = "srv-" + std::to_string(spawner) + "-";
  std::vector<std::string> out;
  for (const std::string root :
       {"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/unified", "/sys/fs/cgroup/freezer"}) {
    for (const std::string group : {"/nsbox", "/nsbox-nocpu"}) {
      DIR* d = opendir((root + group).c_str());
      if (!d) continue;
      while (dirent* e = readdir(d))
        if (std::string(e->d_name).rfind(prefix, 0) == 0)
          out.push_back(root + group + "/" + e->d_name);
      closedir(d);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("serve: cgroup leaves made ahead are empty until a sandbox takes one, and go at stop") {
  StateDir sd("spare-leaves");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  const pid_t spawner = spawner_of(d);
  REQUIRE(spawner > 0);
  // Once the pool has its blanks and the spawner is idle: four spares, never used.
  std::map<std::string, std::string> leaves;
  REQUIRE(nsbox::test::wait_until(
      [&] {
        leaves = spare_named_leaves(spawner);
        int empty = 0;
        for (const auto& [name, procs] : leaves) empty += procs.empty();
        return empty == 4;
      },
      10000, "four spare leaves"));
  // The sandboxes made from now on (the function's, or the blank that
  // replaces the one the deploy's check or the function took) go into
  // leaves made ahead, not ones made on their path (which would be named by
  // their id, srv-<spawner>-<n>). The refill runs after the request that
  // emptied a blank, so it may still be on its way: waited for.
  REQUIRE(deploy_probe(d, "f", "echo.py")->status == 201);
  int status = 0;
  invoke(d, "f", {{"n", 1}}, &status);
  CHECK(status == 200);
  CHECK(nsbox::test::wait_until(
      [&] {
        int used = 0;
        for (const auto& [name, procs] : spare_named_leaves(spawner)) used += !procs.empty();
        return used >= 1;
      },
      5000, "a sandbox in a leaf made ahead"));
  CHECK(d.stop() == 0);
  const auto left = leaves_left(spawner);
  for (const auto& leaf : left) CHECK_MESSAGE(false, "left behind: ", leaf);
  CHECK(left.empty());
}

// A function's own network namespace: only a loopback, up, that carries a
// connection; and which namespace it is.
const char* kNetnsProbe = R"(import os, socket
def handler(event, context):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    c = socket.create_connection(s.getsockname(), timeout=2)
    a, _ = s.accept()
    c.sendall(b"x")
    devs = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])
    return {"ns": os.stat("/proc/self/ns/net").st_ino, "devs": devs, "lo": a.recv(1).decode()}
)";

TEST_CASE("serve: a network namespace made ahead goes to one sandbox, loopback up") {
  struct stat host_ns;
  REQUIRE(stat("/proc/self/ns/net", &host_ns) == 0);
  for (const char* factory : {"template", "exec"}) {
    CAPTURE(factory);
    StateDir sd(std::string("netns-") + factory);
    Daemon d(sd.path, std::string("[pool]\nfactory = \"") + factory +
                          "\"\nblank = 0\nmax_sandboxes = 16\nper_function = 1\n");
    d.spawners(1);  // the namespaces made ahead are one spawner's
    REQUIRE(d.start());
    const pid_t spawner = spawner_of(d);
    REQUIRE(spawner > 0);
    // Inode numbers name namespaces only while they live: these all do, each held by a
    // warm sandbox until the stop.
    std::set<uint64_t> seen;
    // Deploys and calls function n<i>: its own namespace, only lo, which carries a
    // connection. Returns the namespace's inode.
    auto call_new = [&](int i, std::function<void()> before_call) -> uint64_t {
      CAPTURE(i);
      const std::string name = "n" + std::to_string(i);
      REQUIRE(deploy(d, name, kNetnsProbe)->status == 201);
      before_call();
      auto r = d.client()->Post(("/fn/" + name).c_str(), "{}", "application/json");
      REQUIRE(r);
      REQUIRE(r->status == 200);
      const json j = body(r);
      CHECK(j["devs"] == json::array({"lo"}));
      CHECK(j["lo"] == "x");
      const uint64_t ns = j["ns"].get<uint64_t>();
      CHECK(ns != host_ns.st_ino);
      CHECK_MESSAGE(seen.insert(ns).second, "two sandboxes in one network namespace");
      return ns;
    };
    for (int i = 0; i < 4; i++) {
      CAPTURE(i);
      // The first sandbox makes its own; then the idle spawner holds four.
      std::set<ino_t> ahead;
      const uint64_t ns = call_new(i, [&] {
        if (i > 0)
          REQUIRE(nsbox::test::wait_until([&] { return (ahead = netns_held(spawner)).size() == 4; },
                                          10000, "four network namespaces made ahead"));
      });
      if (i > 0) {
        CHECK_MESSAGE(ahead.count(ns) == 1, "not a namespace made ahead");
        CHECK_MESSAGE(netns_held(spawner).count(ns) == 0, "the spawner kept a sandbox's namespace");
      }
      // Whoever cloned it went back home and kept nothing.
      CHECK(netns_of(spawner) == host_ns.st_ino);
      for (pid_t t : children_named(spawner, "nsbox-template")) {
        CHECK(netns_of(t) == host_ns.st_ino);
        CHECK(netns_held(t).empty());
      }
    }
    // The helper killed: sandboxes still get a network namespace of their own, made
    // inline, and the helper is reaped.
    const auto helpers = children_named(spawner, "nsbox-netns");
    REQUIRE(helpers.size() == 1);
    CHECK(netns_of(helpers[0]) == host_ns.st_ino);
    REQUIRE(kill(helpers[0], SIGKILL) == 0);
    CHECK(nsbox::test::wait_until([&] { return children_named(spawner, "nsbox-netns").empty(); },
                                  10000, "the spawner to reap its killed helper"));
    for (int i = 4; i < 6; i++) call_new(i, [] {});
    CHECK(d.stop() == 0);
  }
}

// serve -v shows each sandbox's setup as run -v does: every step the child ran, in
// order, with its share; without -v, none of it.
// serve -v logs a line of timed steps per sandbox (or instance) it makes:
// the first line holding marker must list steps in order and end "ready
// after N ms" with a plausible N. Without -v there is no such line.
static void check_step_line(const std::string& log, const char* marker,
                            const std::vector<std::string>& steps, bool verbose) {
  const size_t at = log.find(marker);
  if (!verbose) {
    CHECK_MESSAGE(at == std::string::npos, log);
    return;
  }
  REQUIRE_MESSAGE(at != std::string::npos, log);
  const std::string line = log.substr(at, log.find('\n', at) - at);
  CAPTURE(line);
  size_t prev = 0;
  for (const std::string& step : steps) {
    const size_t p = line.find("; " + step + " ");
    CHECK_MESSAGE(p != std::string::npos, step);
    CHECK_MESSAGE(p > prev, step, " out of order");
    prev = p;
  }
  const double ready = std::stod(line.substr(line.find("; ready after ") + 14));
  CHECK(ready > 0);
  CHECK(ready < 30000);
}

TEST_CASE("serve -v: each sandbox's setup steps, timed, in the log") {
  for (const char* factory : {"template", "exec"}) {
    for (bool verbose : {true, false}) {
      CAPTURE(factory);
      CAPTURE(verbose);
      StateDir sd(std::string("setup-log-") + factory);
      Daemon d(sd.path, std::string("[pool]\nfactory = \"") + factory + "\"\nblank = 0\n");
      if (verbose) d.verbose();
      REQUIRE(d.start());
      REQUIRE(deploy(d, "f", "def handler(event, context):\n    return 1\n")->status == 201);
      auto r = d.client()->Post("/fn/f", "{}", "application/json");
      REQUIRE(r);
      REQUIRE(r->status == 200);
      CHECK(d.stop() == 0);
      check_step_line(
          d.log(), " setup: parent: prepare ",
          {"clone3", "id maps", "mount", "pivot_root", "drop privileges", "ready after"}, verbose);
    }
  }
}

TEST_CASE("serve -v: a function template's instance logs its steps, timed") {
  for (bool verbose : {true, false}) {
    CAPTURE(verbose);
    StateDir sd("instance-log");
    Daemon d(sd.path, "[pool]\nblank = 0\n");
    if (verbose) d.verbose();
    REQUIRE(d.start());
    REQUIRE(deploy(d, "f", "def handler(event, context):\n    return 1\n", "?template=1")->status ==
            201);
    auto r = d.client()->Post("/fn/f", "{}", "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    CHECK(d.metric("nsbox_pool_function_templates") == 1);
    CHECK(d.stop() == 0);
    // On cgroup v1 the instance is moved on from its join leaf after the
    // reply (ForkedInstance::settle): the line names the check before it,
    // and says when the move came.
    const bool v1 = access("/sys/fs/cgroup/memory/nsbox", F_OK) == 0;
    check_step_line(
        d.log(), " setup: leaves ",
        v1 ? std::vector<std::string>{"send", "fork and join", "check join leaf", "ready after"}
           : std::vector<std::string>{"send", "fork and join", "move", "remove join leaf",
                                      "ready after"},
        verbose);
    if (verbose && v1)
      CHECK_MESSAGE(d.log().find("; after the reply: moved to its own leaf ") != std::string::npos,
                    d.log());
  }
}

TEST_CASE("serve: the API and its error codes") {
  StateDir sd("api");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  auto c = d.client();

  CHECK(c->Get("/healthz")->status == 200);

  // Deploy, redeploy, list, show.
  auto r = deploy(d, "hello", returns("{'hi': event.get('name', 'x')}"));
  REQUIRE(r);
  CHECK(r->status == 201);
  CHECK(body(r)["version"] == 1);
  CHECK(body(r)["url"] == "http://127.0.0.1:" + std::to_string(d.port()) + "/fn/hello");
  r = deploy(d, "hello", returns("{'hi': event.get('name', 'y'), 'v': 2}"));
  CHECK(body(r)["version"] == 2);
  auto list = body(c->Get("/functions", auth(d)));
  REQUIRE(list["functions"].size() == 1);
  CHECK(list["functions"][0]["name"] == "hello");
  CHECK(list["functions"][0]["version"] == 2);
  auto show = body(c->Get("/functions/hello", auth(d)));
  CHECK(show["versions"] == json::array({1, 2}));

  // Invoke by POST (JSON event) and by GET (query parameters as the event).
  r = c->Post("/fn/hello", R"({"name": "ada"})", "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(body(r) == json({{"hi", "ada"}, {"v", 2}}));
  r = c->Get("/fn/hello?name=bob");
  CHECK(body(r)["hi"] == "bob");
  // A parameter that is not UTF-8 is refused, not dropped from the event.
  r = c->Get("/fn/hello?name=%ff");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK_MESSAGE(
      r->body.find("query parameter \\\"name\\\" is not valid UTF-8") != std::string::npos,
      r->body);
  // Refused before the name is looked up, so it leaves no per-name metrics:
  // names that exist nowhere must not grow /metrics.
  r = c->Get("/fn/nosuchfn?name=%ff");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(c->Get("/metrics", auth(d))->body.find("nosuchfn") == std::string::npos);

  // A proxy-shaped result becomes the HTTP response.
  deploy(d, "proxy",
         "def handler(e, c):\n    return {'statusCode': 418, 'headers': {'X-Tea': 'yes', "
         "'Content-Type': 'text/plain'}, 'body': 'short and stout'}\n");
  r = c->Get("/fn/proxy");
  REQUIRE(r);
  CHECK(r->status == 418);
  CHECK(r->get_header_value("X-Tea") == "yes");
  CHECK(r->body == "short and stout");

  SUBCASE("400: bad names, syntax errors with the line, bad events, bad parameters") {
    CHECK(deploy(d, "Bad_Name", returns("1"))->status == 400);
    CHECK(deploy(d, "-x", returns("1"))->status == 400);
    CHECK(c->Get("/fn/UPPER")->status == 400);
    auto s = deploy(d, "broken", "def handler(e, c):\n    return (\n\n");
    CHECK(s->status == 400);
    CHECK(body(s)["line"] == 2);
    CHECK(body(s)["error"].get<std::string>().find("never closed") != std::string::npos);
    CHECK(c->Get("/functions/broken", auth(d))->status == 404);  // rejected, not stored
    CHECK(c->Post("/fn/hello", "{not json", "application/json")->status == 400);
    CHECK(deploy(d, "h2", returns("1"), "?handler=1bad")->status == 400);
    CHECK(deploy(d, "h2", returns("1"), "?policy=nope")->status == 400);
    CHECK(deploy(d, "h2", returns("1"), "?memory=lots")->status == 400);
    CHECK(deploy(d, "h2", returns("1"), "?timeout=-5")->status == 400);
  }
  SUBCASE("401: mutating endpoints need the token") {
    CHECK(c->Put("/functions/x", returns("1"), "text/x-python")->status == 401);
    httplib::Headers bad = {{"Authorization", "Bearer wrong-token-wrong-token"}};
    CHECK(c->Put("/functions/x", bad, returns("1"), "text/x-python")->status == 401);
    CHECK(c->Delete("/functions/hello")->status == 401);
    CHECK(c->Get("/functions/hello/logs")->status == 401);
    // The scheme is case-insensitive (RFC 9110 11.1); another scheme is
    // named as the problem, not the token.
    httplib::Headers lower = {{"Authorization", "bearer  " + d.token()}};
    CHECK(c->Put("/functions/lower", lower, returns("1"), "text/x-python")->status == 201);
    httplib::Headers basic = {{"Authorization", "Basic " + d.token()}};
    auto refused = c->Put("/functions/basic", basic, returns("1"), "text/x-python");
    REQUIRE(refused);
    CHECK(refused->status == 401);
    CHECK(refused->body.find("Authorization must be Bearer TOKEN") != std::string::npos);
    // The generated token file is private to root.
    struct stat st;
    REQUIRE(stat((sd.path + "/token").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
  SUBCASE("404: unknown functions and routes") {
    CHECK(c->Post("/fn/nope", "{}", "application/json")->status == 404);
    CHECK(c->Get("/functions/nope", auth(d))->status == 404);
    CHECK(c->Delete("/functions/nope", auth(d))->status == 404);
    CHECK(c->Get("/no/such/route")->status == 404);
  }
  SUBCASE("413: bodies over the limit") {
    std::string big(2 << 20, '#');
    CHECK(deploy(d, "big", big)->status == 413);
    // curl -d's default type: cpp-httplib's server capped it at 8 KiB; the
    // front applies one limit whatever the Content-Type.
    auto form = c->Put("/functions/formed", auth(d), std::string(20000, '#'),
                       "application/x-www-form-urlencoded");
    REQUIRE(form);
    CHECK(form->status == 201);
  }
  SUBCASE("500: the function raised; the handler's error comes back") {
    deploy(d, "raises", "def handler(e, c):\n    raise KeyError('gone')\n");
    auto x = c->Post("/fn/raises", "{}", "application/json");
    CHECK(x->status == 500);
    CHECK(body(x)["errorType"] == "KeyError");
    CHECK(body(x)["stackTrace"].dump().find("raises.py") != std::string::npos);
  }
  SUBCASE("a function printing far more than the log pipe holds still answers") {
    deploy(d, "chatty",
           "import sys\ndef handler(e, c):\n    for i in range(80000):\n        print('line', i, "
           "'x' * 60)\n    return 'done'\n");
    auto x = c->Get("/fn/chatty");
    REQUIRE(x);
    CHECK(x->status == 200);
    auto logs = c->Get("/functions/chatty/logs", auth(d));
    CHECK(logs->body.find("line 79999") != std::string::npos);
  }
  SUBCASE("hostile requests and hostile functions get their code; the daemon keeps serving") {
    // A decoded path that is not UTF-8.
    auto x = c->Get("/%FF");
    REQUIRE(x);
    CHECK(x->status == 404);
    // An integer Python's json refuses (over 4300 digits) is the client's fault.
    x = c->Post("/fn/hello", std::string(5000, '7'), "application/json");
    CHECK(x->status == 400);
    // A reply nested 100k deep, forged on the reply pipe (fd 4) by the function itself.
    deploy(d, "deep",
           "import os, json\ndef handler(e, c):\n    body = b'{\"type\":\"result\",\"id\":\"' + "
           "c.aws_request_id.encode() + b'\",\"ok\":true,\"result\":' + b'[' * 100000 + b']' * "
           "100000 + b'}'\n"
           "    os.write(4, len(body).to_bytes(4, 'big') + body)\n    import time\n    "
           "time.sleep(5)\n");
    x = c->Get("/fn/deep");
    REQUIRE(x);
    CHECK(x->status == 502);
    // Framing headers and out-of-range statuses from a proxy-shaped result.
    deploy(d, "forge",
           "def handler(e, c):\n    return {'statusCode': 200, 'headers': {'Content-Length': '0', "
           "'Transfer-Encoding': 'chunked', 'Bad Name': 'x', 'X-Ok': 'y'}, 'body': 'hello'}\n");
    x = c->Get("/fn/forge");
    REQUIRE(x);
    CHECK(x->status == 200);
    CHECK(x->body == "hello");
    CHECK(x->get_header_value("X-Ok") == "y");
    CHECK(x->get_header_value("Transfer-Encoding").empty());
    deploy(d, "wrap", "def handler(e, c):\n    return {'statusCode': 4294967496, 'body': 'x'}\n");
    CHECK(c->Get("/fn/wrap")->status == 502);
    CHECK(c->Get("/healthz")->status == 200);
  }
  SUBCASE("logs and delete") {
    deploy(d, "talker", "def handler(e, c):\n    print('said', e.get('n'))\n    return 1\n");
    c->Post("/fn/talker", R"({"n": 7})", "application/json");
    auto logs = c->Get("/functions/talker/logs", auth(d));
    REQUIRE(logs);
    CHECK(logs->body.find("said 7") != std::string::npos);
    const std::string series = "nsbox_requests_total{function=\"talker\",status=\"200\"}";
    CHECK(c->Get("/metrics", auth(d))->body.find(series) != std::string::npos);
    CHECK(c->Delete("/functions/talker", auth(d))->status == 200);
    CHECK(c->Post("/fn/talker", "{}", "application/json")->status == 404);
    // A deleted function's series go with it; a 404 makes none.
    const std::string m = c->Get("/metrics", auth(d))->body;
    CHECK(m.find("function=\"talker\"") == std::string::npos);
  }
  SUBCASE("metrics") {
    auto m = c->Get("/metrics", auth(d));
    REQUIRE(m);
    CHECK(m->body.find("nsbox_requests_total{function=\"hello\",status=\"200\"}") !=
          std::string::npos);
    CHECK(m->body.find("nsbox_request_duration_seconds_bucket{function=\"hello\"") !=
          std::string::npos);
    CHECK(m->body.find("nsbox_starts_total{function=\"hello\",kind=\"cold\"}") !=
          std::string::npos);
    CHECK(m->body.find("nsbox_pool_sandboxes{state=\"blank\"}") != std::string::npos);
    CHECK(m->body.find("nsbox_sandbox_memory_bytes{") != std::string::npos);
  }
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: failing functions get their code while others keep answering") {
  StateDir sd("fail");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  auto c = d.client();
  std::string host = nsbox::test::host_hostname();
  deploy(d, "steady", returns("'fine'"));
  deploy(d, "crash", "import os\ndef handler(e, c):\n    os._exit(3)\n");
  deploy(d, "hang", "def handler(e, c):\n    while True:\n        pass\n", "?timeout=500ms");
  // A memory hog that refuses to run outside a sandbox and caps itself.
  deploy(d, "hog",
         "import socket\ndef handler(e, c):\n    if socket.gethostname() == '" + host +
             "':\n        raise RuntimeError('not sandboxed')\n    x = []\n    for _ in "
             "range(1024):\n        x.append(bytearray(1 << 20))\n    return len(x)\n",
         "?memory=64M");
  std::atomic<bool> done{false};
  std::atomic<int> steady_ok{0}, steady_bad{0};
  std::thread t([&] {
    auto sc = d.client();
    while (!done) {
      auto r = sc->Get("/fn/steady");
      (r && r->status == 200 ? steady_ok : steady_bad)++;
    }
  });
  auto r = c->Post("/fn/crash", "{}", "application/json");
  CHECK(r->status == 502);
  r = c->Post("/fn/hang", "{}", "application/json");
  CHECK(r->status == 504);
  r = c->Post("/fn/hog", "{}", "application/json");
  CHECK(r->status == 502);
  CHECK(body(r)["error"].get<std::string>().find("memory limit of 64 MiB") != std::string::npos);
  // Each failure got a fresh sandbox next time: the same codes again.
  CHECK(c->Post("/fn/crash", "{}", "application/json")->status == 502);
  CHECK(c->Post("/fn/hang", "{}", "application/json")->status == 504);
  done = true;
  t.join();
  CHECK(steady_ok > 0);
  CHECK(steady_bad == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: with too few open files, max_sandboxes is lowered and the LRU makes room") {
  // 12 connections + 256 spare + 4 fds for each of 6 sandboxes: the daemon
  // holds no more than 6, and past them each new function evicts the least
  // recently used one. (The hazard the cap averts, spawns failing and the
  // listener pausing on EMFILE, would come only near 80 sandboxes here: the
  // reserve is for connections this test does not open.)
  StateDir sd("nofile");
  Daemon d(sd.path,
           "max_connections = 12\n[pool]\nblank = 0\nmax_sandboxes = 100\nper_function = 1\n"
           "idle_timeout_ms = 60000\n");
  d.limit_open_files(12 + 256 + 4 * 6);
  REQUIRE(d.start());
  CHECK(d.log().find("max_sandboxes lowered from 100 to 6: open files: the limit is 292") !=
        std::string::npos);
  // 12 connections are under half of what the spare fds leave: kept.
  CHECK(d.log().find("max_connections lowered") == std::string::npos);
  CHECK(d.metric("nsbox_pool_max_sandboxes") == 6);
  auto c = d.client();
  for (int i = 0; i < 10; i++) {
    const std::string name = "f" + std::to_string(i);
    REQUIRE(deploy(d, name, returns(std::to_string(i)))->status == 201);
    auto r = c->Post("/fn/" + name, "{}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(body(r) == i);
  }
  CHECK(d.metric("nsbox_pool_evictions_total") >= 4);
  CHECK(d.metric("nsbox_pool_spawn_failures_total") == 0);
  auto r = c->Post("/fn/f0", "{}", "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(d.stop() == 0);
}

// A frozen sandbox reads and writes nothing, so its four fds wait in an fd
// keeper process (gateway/fd_parking.hpp): the gateway's own open files then
// bound only the sandboxes in use. 1,324 open files hold 265 sandboxes
// without parking; here 300 stay warm, are answered again (their fds
// fetched back), and survive their keeper's death by being replaced.
// Connections past what the open files hold would fail in accept(), before
// the front's own room-making at max_connections could close an idle one.
TEST_CASE("serve: max_connections is lowered to half of what the open files leave") {
  StateDir sd("nofile-connections");
  Daemon d(sd.path, "[pool]\nblank = 0\n");
  d.limit_open_files(1024);
  REQUIRE(d.start());
  CHECK_MESSAGE(
      d.log().find("max_connections lowered from 1024 to 384: open files: the limit is "
                   "1024, 256 to spare and half the rest for sandboxes") != std::string::npos,
      d.log());
  CHECK(d.log().find("max_sandboxes lowered from 256 to 96") != std::string::npos);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: frozen sandboxes' fds wait in fd keepers, past the gateway's own open files") {
  StateDir sd("parked");
  Daemon d(sd.path,
           "max_connections = 8\n[pool]\nblank = 1\nmax_sandboxes = 400\nper_function = 1\n"
           "idle_timeout_ms = 600000\nfreeze_idle_ms = 5\n");
  d.limit_open_files(4 * (8 + 1 + 256) + 8 + 256);  // connections, the blank, 256 unparked
  REQUIRE(d.start());
  CHECK(d.log().find("max_sandboxes lowered") == std::string::npos);
  CHECK(d.metric("nsbox_pool_max_sandboxes") == 400);
  auto c = d.client();
  const int n = 300;
  int wrong = 0;
  for (int i = 0; i < n; i++) {
    const std::string name = "p" + std::to_string(i);
    REQUIRE(deploy(d, name, returns(std::to_string(i)))->status == 201);
    auto r = c->Post("/fn/" + name, "{}", "application/json");
    if (!r || r->status != 200 || body(r) != i) wrong++;
  }
  CHECK(wrong == 0);
  nsbox::test::wait_until([&] { return d.metric("nsbox_pool_parked_sandboxes") >= n; }, 5000,
                          "every warm sandbox parked");
  CHECK(d.metric("nsbox_pool_sandboxes{state=\"idle\"}") == n);
  CHECK(d.metric("nsbox_pool_evictions_total") == 0);
  CHECK(d.metric("nsbox_pool_spawn_failures_total") == 0);
  CHECK(d.metric("nsbox_fd_keepers") == 1);
  auto fds_of = [](pid_t pid) {
    size_t k = 0;
    if (DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
      while (struct dirent* e = readdir(dir)) k += e->d_name[0] != '.';
      closedir(dir);
    }
    return k;
  };
  CHECK(fds_of(d.pid()) < 200);  // 1,200 if the gateway held them

  // Each answered again: its fds come back from the keeper, and go back.
  const double spawned = d.metric("nsbox_pool_spawned_total");
  wrong = 0;
  for (int i = 0; i < n; i += 3) {
    auto r = c->Post("/fn/p" + std::to_string(i), "{}", "application/json");
    if (!r || r->status != 200 || body(r) != i) wrong++;
  }
  CHECK(wrong == 0);
  CHECK(d.metric("nsbox_pool_spawned_total") <= spawned + 2);  // none made again (a blank may be)

  // The keeper killed: the sandboxes whose fds it held are lost, and their
  // next requests get new ones, not errors.
  // (Started by the freezer thread: in that thread's children file.)
  std::vector<pid_t> keepers;
  if (DIR* tasks = opendir(("/proc/" + std::to_string(d.pid()) + "/task").c_str())) {
    while (struct dirent* t = readdir(tasks)) {
      if (t->d_name[0] == '.') continue;
      std::ifstream children("/proc/" + std::to_string(d.pid()) + "/task/" + t->d_name +
                             "/children");
      pid_t p;
      while (children >> p) {
        std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
        std::string name;
        comm >> name;
        if (name == "nsbox-fdkeeper") keepers.push_back(p);
      }
    }
    closedir(tasks);
  }
  REQUIRE(keepers.size() == 1);
  REQUIRE(kill(keepers[0], SIGKILL) == 0);
  wrong = 0;
  for (int i = 1; i < 40; i += 3) {
    auto r = c->Post("/fn/p" + std::to_string(i), "{}", "application/json");
    if (!r || r->status != 200 || body(r) != i) wrong++;
  }
  CHECK(wrong == 0);
  CHECK(d.metric("nsbox_pool_spawn_failures_total") == 0);
  CHECK(d.log().find("unpark") != std::string::npos);  // the lost ones were seen as lost
  CHECK(d.metric("nsbox_fd_keepers") == 1);            // a new keeper took the next parks
  CHECK(d.stop() == 0);
  // No keeper outlives the daemon (EOF on its socket ends it).
  int left = 0;
  if (DIR* proc = opendir("/proc")) {
    while (struct dirent* e = readdir(proc)) {
      std::ifstream comm(std::string("/proc/") + e->d_name + "/comm");
      std::string name;
      comm >> name;
      left += name == "nsbox-fdkeeper";
    }
    closedir(proc);
  }
  CHECK(left == 0);
}

// The daemon's processes each have an open-files limit (20,000 hard here,
// unraisable without CAP_SYS_RESOURCE), so what the spawner holds per
// sandbox bounds how many there can be: its uid slot's lock in root mode,
// nothing else (no pidfd, no cgroup fd) once the sandbox is made.
TEST_CASE("serve: the spawner holds at most one fd per warm sandbox, from either factory") {
  for (const char* factory : {"template", "exec"}) {
    CAPTURE(factory);
    StateDir sd(std::string("fds-") + factory);
    Daemon d(sd.path, std::string("[pool]\nfactory = \"") + factory +
                          "\"\nblank = 0\nmax_sandboxes = 64\nper_function = 1\n"
                          "idle_timeout_ms = 60000\n");
    d.spawners(1);  // every sandbox's fd in one spawner
    REQUIRE(d.start());
    const pid_t spawner = nsbox::test::spawner_of(d);
    REQUIRE(spawner > 0);
    // Not counting the network namespaces made ahead: at most four, however
    // many sandboxes there are, and refilled while the spawner idles.
    auto fds = [&] {
      size_t n = 0, ahead = 0;
      const std::string dir = "/proc/" + std::to_string(spawner) + "/fd";
      if (DIR* d = opendir(dir.c_str())) {
        while (struct dirent* e = readdir(d)) {
          if (e->d_name[0] == '.') continue;
          char link[64] = {};
          readlink((dir + "/" + e->d_name).c_str(), link, sizeof link - 1);
          (std::string(link).rfind("net:[", 0) == 0 ? ahead : n)++;
        }
        closedir(d);
      }
      CHECK(ahead <= 4);
      return n;
    };
    auto c = d.client();
    auto warm_up = [&](int from, int to) {
      for (int i = from; i < to; i++) {
        const std::string name = "f" + std::to_string(i);
        REQUIRE(deploy(d, name, returns(std::to_string(i)))->status == 201);
        auto r = c->Post("/fn/" + name, "{}", "application/json");
        REQUIRE(r);
        REQUIRE(r->status == 200);
      }
    };
    warm_up(0, 4);
    const size_t at_4 = fds();
    warm_up(4, 44);
    const size_t at_44 = fds();
    CHECK(d.metric("nsbox_pool_sandboxes{state=\"idle\"}") == 44);
    CHECK(at_44 <= at_4 + 40);
    CHECK(at_44 >= at_4 + 40);  // the slot locks: one per sandbox as root
    CHECK(d.stop() == 0);
  }
}

TEST_CASE("serve: after a deploy or delete returns, no request is served by old code") {
  StateDir sd("revoke");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  std::atomic<bool> done{false};
  // Keep warm sandboxes of the function busy and idle meanwhile.
  std::thread load([&] {
    auto c = d.client();
    while (!done) c->Get("/fn/ver");
  });
  auto c = d.client();
  int stale = 0;
  for (int v = 1; v <= 15; v++) {
    auto r = deploy(d, "ver", returns(std::to_string(v)));
    REQUIRE(r->status == 201);
    for (int k = 0; k < 3; k++) {
      auto x = c->Get("/fn/ver");
      if (!x || x->body != std::to_string(v) + "\n") stale++;
    }
  }
  CHECK(c->Delete("/functions/ver", auth(d))->status == 200);
  CHECK(c->Get("/fn/ver")->status == 404);
  done = true;
  load.join();
  CHECK(stale == 0);

  // No state crosses functions: a global set by one is invisible to another.
  deploy(d, "setter",
         "import builtins\ndef handler(e, c):\n    builtins.nsbox_secret = 42\n    return 1\n");
  deploy(
      d, "getter",
      "import builtins\ndef handler(e, c):\n    return getattr(builtins, 'nsbox_secret', None)\n");
  for (int i = 0; i < 5; i++) {
    c->Get("/fn/setter");
    CHECK(c->Get("/fn/getter")->body == "null\n");
  }
  CHECK(d.stop() == 0);
}

TEST_CASE(
    "serve: a request waiting when its function is deleted is refused as stale at once; the "
    "redeploy runs under its own policy") {
  // Versions restart at 1 after a delete, so the waiting request's "version
  // 1" would name another deploy by the time it got a sandbox: the pool
  // refuses it as stale (its deploy number is below the delete's) as soon
  // as the delete returns, and so it can never run the new code in a
  // sandbox made for the old deploy's policy. A request that read the
  // registry just before the delete but reached the pool after the
  // redeploy is refused the same way, and one that leased before the
  // delete is caught by the deploy number on the cold path (unit-tested:
  // those windows are too narrow to hit on purpose from outside).
  StateDir sd("redeploy-race");
  Daemon d(sd.path,
           "[pool]\nblank = 2\nmax_sandboxes = 8\nper_function = 1\nqueue_timeout_ms = 30000\n");
  REQUIRE(d.start());
  // The old code holds race's only sandbox until the test lets it go: it
  // names its process, so the host sees it running, and waits for SIGUSR1
  // (at most 20 s, within its deploy's timeout, should the test fail first).
  REQUIRE(deploy(d, "race",
                 "import signal\n"
                 "def handler(e, c):\n"
                 "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
                 "    with open('/proc/self/comm', 'w') as f:\n"
                 "        f.write('nsbox-race-old')\n"
                 "    released = signal.sigtimedwait({signal.SIGUSR1}, 20)\n"
                 "    return 'old' if released else 'never released'\n",
                 "?timeout=30s")
              ->status == 201);
  // Under strict no socket call is allowed; under default it is.
  const std::string probe =
      "import socket\ndef handler(e, c):\n    try:\n        socket.socket().close()\n"
      "        return 'socket allowed'\n    except OSError:\n        return 'socket denied'\n";
  auto c = d.client();
  auto waiting = [&] {
    auto m = c->Get("/metrics", auth(d));
    const std::string key = "\nnsbox_pool_waiting_requests ";
    size_t p = m ? m->body.find(key) : std::string::npos;
    return p == std::string::npos ? -1 : std::atoi(m->body.c_str() + p + key.size());
  };

  // What a request got: status 0 when no answer came.
  struct Reply {
    int status = 0;
    std::string body, retry_after;
    void take(const httplib::Result& r) {
      if (!r) return;
      status = r->status;
      body = r->body;
      retry_after = r->get_header_value("Retry-After");
    }
  } old_reply, waiter;
  std::atomic<bool> old_answered{false};
  // jthreads: a failed REQUIRE below still joins them (the old code gives
  // up within 20 s) before the daemon goes.
  std::jthread a([&] {
    old_reply.take(d.client(60)->Get("/fn/race"));
    old_answered = true;
  });
  std::vector<pid_t> holder;
  REQUIRE(nsbox::test::wait_until(
      [&] { return !(holder = nsbox::test::pids_named("nsbox-race-old")).empty(); }, 30000,
      "the old code to hold race's sandbox"));
  REQUIRE(holder.size() == 1);
  std::jthread b([&] { waiter.take(d.client(60)->Get("/fn/race")); });
  // Planned for version 1 under default, it waits in the pool for the
  // sandbox the old code holds.
  REQUIRE(nsbox::test::wait_until([&] { return waiting() == 1; }, 30000,
                                  "the second request to wait in the pool"));
  REQUIRE(c->Delete("/functions/race", auth(d))->status == 200);
  b.join();
  // Answered by the delete, not by the old code giving the sandbox back.
  CHECK_FALSE(old_answered);
  CHECK(waiter.status == 503);
  CHECK(waiter.retry_after == "0");
  CHECK(waiter.body.find("the function changed while this request waited") != std::string::npos);
  CHECK(waiting() == 0);

  auto r = deploy(d, "race", probe, "?policy=strict");
  REQUIRE(r->status == 201);
  REQUIRE(body(r)["version"] == 1);
  // The request that was already running ends with the code it started.
  CHECK(kill(holder[0], SIGUSR1) == 0);
  a.join();
  CHECK(old_reply.status == 200);
  CHECK(old_reply.body == "\"old\"\n");
  for (int i = 0; i < 3; i++) CHECK(c->Get("/fn/race")->body == "\"socket denied\"\n");
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a version file damaged after start is a 500 naming the store, not a retry loop") {
  StateDir sd("rot");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "rot", returns("1"))->status == 201);
  // After a restart the source is read from disk at the first cold start.
  REQUIRE(d.stop() == 0);
  REQUIRE(d.start());
  std::ofstream(sd.path + "/functions/rot/1.json", std::ios::trunc) << "{ not json";
  auto x = d.client()->Get("/fn/rot");
  REQUIRE(x);
  CHECK(x->status == 500);
  CHECK(x->body.find("function store") != std::string::npos);
  CHECK(x->get_header_value("Retry-After").empty());
  CHECK(d.client()->Get("/healthz")->status == 200);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a function whose only version file rotted while stopped is damaged, not 404") {
  StateDir sd("rot-only");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "rot", returns("1"))->status == 201);
  REQUIRE(d.stop() == 0);
  std::ofstream(sd.path + "/functions/rot/1.json", std::ios::trunc) << "{ not json";
  REQUIRE(d.start());
  auto x = d.client()->Get("/fn/rot");
  REQUIRE(x);
  CHECK(x->status == 500);
  CHECK_MESSAGE(
      x->body.find("version 1 of rot cannot be read from the function store") != std::string::npos,
      x->body);
  auto meta = d.client()->Get("/functions/rot", auth(d));
  REQUIRE(meta);
  CHECK(meta->status == 200);
  CHECK(nlohmann::json::parse(meta->body).contains("damaged"));
  auto list = d.client()->Get("/functions", auth(d));
  REQUIRE(list);
  CHECK(list->body.find("\"damaged\"") != std::string::npos);
  auto ls = nsbox::test::run(
      nsbox::test::client_spec({"ls"}, "http://127.0.0.1:" + std::to_string(d.port()), d.token()));
  CHECK(ls.exit_code == 0);
  CHECK_MESSAGE(ls.out.find("DAMAGED: deploy it again, or nsbox rm it") != std::string::npos,
                ls.out);
  // A deploy mends it.
  REQUIRE(deploy(d, "rot", returns("2"))->status == 201);
  auto y = d.client()->Get("/fn/rot");
  REQUIRE(y);
  CHECK(y->status == 200);
  CHECK(y->body == "2\n");
  CHECK(d.stop() == 0);
}

// The function store on a full filesystem: a tmpfs of one page over
// STATE/functions while the daemon runs (the store rebuilds its paths at
// every deploy), so the rootfs beside it needs no room of its own.
TEST_CASE("serve: a deploy to a full disk is a 507 that stores nothing; the daemon keeps serving") {
  StateDir sd("full");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "before", returns("1"))->status == 201);
  const std::string functions = sd.path + "/functions";
  // A second directory to mount on: the real one holds "before".
  const std::string small = sd.path + "/functions-small";
  REQUIRE(mkdir(small.c_str(), 0700) == 0);
  REQUIRE(mount("nsbox-test-full", small.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                "size=4k,mode=0700") == 0);
  {
    std::ofstream filler(small + "/filler");
    filler << std::string(4096, 'x');
  }
  REQUIRE(mount(small.c_str(), functions.c_str(), nullptr, MS_BIND, nullptr) == 0);
  auto r = deploy(d, "after", returns("2"));
  REQUIRE(r);
  CHECK(r->status == 507);
  CHECK_MESSAGE(r->body.find("filesystem is full") != std::string::npos, r->body);
  CHECK(r->body.find("the function was not deployed: free space in the daemon's state_dir") !=
        std::string::npos);
  // Nothing half-written was left on the full filesystem.
  CHECK_FALSE(std::filesystem::exists(functions + "/after"));
  CHECK(d.client()->Get("/healthz")->status == 200);
  REQUIRE(umount2(functions.c_str(), MNT_DETACH) == 0);
  REQUIRE(umount2(small.c_str(), MNT_DETACH) == 0);
  // Room again: the same deploy is stored, and the first function served.
  CHECK(deploy(d, "after", returns("2"))->status == 201);
  auto x = d.client()->Get("/fn/before");
  REQUIRE(x);
  CHECK(x->body == "1\n");
  CHECK(d.stop() == 0);
}

// Every runner of the daemon's sandboxes: the children of their PID 1s
// (nsbox-init), found by walking the daemon's descendants.
std::vector<pid_t> runners_of(const Daemon& d) {
  std::vector<pid_t> todo = {d.pid()}, runners;
  auto comm = [](pid_t p) {
    std::ifstream in("/proc/" + std::to_string(p) + "/comm");
    std::string name;
    std::getline(in, name);
    return name;
  };
  for (size_t i = 0; i < todo.size() && i < 10000; i++) {
    const bool init = comm(todo[i]) == "nsbox-init";
    for (pid_t c : nsbox::child_pids(todo[i])) {
      todo.push_back(c);
      if (init) runners.push_back(c);
    }
  }
  return runners;
}

// The OOM killer prefers sandboxes (oom_score_adj 1000), so under pressure
// it takes the ones waiting for work first: a request must not lease a dead
// one and fail, a deploy's check must not blame the source for it, and a
// dead blank must be replaced without waiting for a request.
TEST_CASE("serve: blanks and idle sandboxes killed while they wait cost no request") {
  StateDir sd("dead-waiting");
  Daemon d(sd.path,
           "[pool]\nblank = 2\nmax_sandboxes = 24\nper_function = 4\nidle_timeout_ms = 60000\n");
  REQUIRE(d.start());
  REQUIRE(deploy(d, "hello", returns("1"))->status == 201);
  auto blanks = [&] { return d.metric("nsbox_pool_sandboxes{state=\"blank\"}"); };
  // Killed and exited (a zombie has closed its fds), as when the OOM killer
  // struck a while before the request.
  auto kill_runners = [&] {
    std::vector<pid_t> runners = runners_of(d);
    for (pid_t r : runners) kill(r, SIGKILL);
    for (pid_t r : runners)
      nsbox::test::wait_until(
          [&] {
            std::ifstream stat("/proc/" + std::to_string(r) + "/stat");
            std::string pid, comm, state;
            return !(stat >> pid >> comm >> state) || state == "Z";
          },
          5000, "runner " + std::to_string(r) + " exited");
    return runners.size();
  };
  for (int round = 0; round < 3; round++) {
    CAPTURE(round);
    REQUIRE(nsbox::test::wait_until([&] { return blanks() == 2; }, 30000, "two blanks"));
    // Now one warm sandbox of hello and two blanks, all killed at once; the
    // requests right after lease them before the janitor looks.
    REQUIRE(d.client()->Post("/fn/hello", "{}", "application/json")->status == 200);
    REQUIRE(nsbox::test::wait_until([&] { return blanks() == 2; }, 30000, "two blanks again"));
    REQUIRE(kill_runners() >= 3);
    auto warm = d.client()->Post("/fn/hello", "{}", "application/json");
    REQUIRE(warm);
    CHECK_MESSAGE(warm->status == 200, warm->body);
    REQUIRE(kill_runners() >= 1);
    auto check = deploy(d, "other" + std::to_string(round), returns("2"));
    REQUIRE(check);
    CHECK_MESSAGE(check->status == 201, check->body);
  }
  // Left alone, dead blanks are found and replaced: no request needed.
  REQUIRE(nsbox::test::wait_until([&] { return blanks() == 2; }, 30000, "two blanks"));
  const double found = d.metric("nsbox_pool_found_dead_total");
  REQUIRE(kill_runners() >= 2);
  CHECK(
      nsbox::test::wait_until([&] { return d.metric("nsbox_pool_found_dead_total") >= found + 2; },
                              10000, "the janitor finds the dead blanks"));
  CHECK(nsbox::test::wait_until([&] { return blanks() == 2 && runners_of(d).size() >= 2; }, 30000,
                                "new blanks"));
  CHECK(d.log().find("had exited (killed?); replaced as needed") != std::string::npos);
  CHECK(d.stop() == 0);
}

// README: the [pool] sizes apply at once on SIGHUP.
TEST_CASE("serve: a reload that lowers blank or max_sandboxes frees the sandboxes past it") {
  StateDir sd("reload-trim");
  Daemon d(sd.path, "[pool]\nblank = 6\nmax_sandboxes = 24\nidle_timeout_ms = 60000\n");
  REQUIRE(d.start());
  auto blanks = [&] { return d.metric("nsbox_pool_sandboxes{state=\"blank\"}"); };
  REQUIRE(nsbox::test::wait_until([&] { return blanks() == 6; }, 30000, "six blanks"));
  for (int i = 0; i < 3; i++) {
    REQUIRE(deploy(d, "f" + std::to_string(i), returns("1"))->status == 201);
    REQUIRE(
        d.client()->Post(("/fn/f" + std::to_string(i)).c_str(), "{}", "application/json")->status ==
        200);
  }
  REQUIRE(nsbox::test::wait_until([&] { return blanks() == 6; }, 30000, "six blanks"));
  CHECK(d.metric("nsbox_pool_sandboxes{state=\"idle\"}") == 3);
  auto rewrite = [&](const std::string& pool) {
    std::ofstream(sd.path + ".toml") << pool;
    kill(d.pid(), SIGHUP);
  };
  rewrite("[pool]\nblank = 1\nmax_sandboxes = 24\nidle_timeout_ms = 60000\n");
  CHECK(nsbox::test::wait_until([&] { return blanks() == 1; }, 10000, "one blank"));
  CHECK(d.metric("nsbox_pool_sandboxes{state=\"idle\"}") == 3);
  // Below what waits: the blank goes, then the least recently used idle one.
  rewrite("[pool]\nblank = 0\nmax_sandboxes = 2\nidle_timeout_ms = 60000\n");
  CHECK(nsbox::test::wait_until(
      [&] { return blanks() == 0 && d.metric("nsbox_pool_sandboxes{state=\"idle\"}") == 2; }, 10000,
      "no blank, two idle"));
  CHECK(nsbox::test::wait_until([&] { return runners_of(d).size() == 2; }, 10000,
                                "two sandboxes' runners"));
  CHECK(d.client()->Post("/fn/f0", "{}", "application/json")->status == 200);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: 150 functions deployed, each invoked, kept across a restart") {
  StateDir sd("many");
  std::string dir = sd.path;
  {
    Daemon d(dir, kPool);
    REQUIRE(d.start());
    for (int i = 0; i < 150; i++)
      REQUIRE(deploy(d, "fn" + std::to_string(i), returns(std::to_string(i)))->status == 201);
    auto c = d.client();
    int wrong = 0;
    for (int i = 0; i < 150; i++) {
      auto r = c->Get(("/fn/fn" + std::to_string(i)).c_str());
      if (!r || r->status != 200 || r->body != std::to_string(i) + "\n") wrong++;
    }
    CHECK(wrong == 0);
    CHECK(d.stop() == 0);
  }
  Daemon d(dir, kPool);
  REQUIRE(d.start());
  auto c = d.client();
  CHECK(body(c->Get("/functions", auth(d)))["functions"].size() == 150);
  int wrong = 0;
  for (int i = 0; i < 150; i += 7) {
    auto r = c->Get(("/fn/fn" + std::to_string(i)).c_str());
    if (!r || r->body != std::to_string(i) + "\n") wrong++;
  }
  CHECK(wrong == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: kill -9 during a burst of deploys loses no acknowledged version") {
  StateDir sd("kill9");
  std::string dir = sd.path;
  std::vector<int> acked;
  pid_t killed_spawner = 0;
  // Every version kept, so that every acknowledged one can be looked for
  // (the extra config follows the [server] lines the Daemon writes).
  const std::string keep_all = std::string("keep_versions = 0\n") + kPool;
  {
    Daemon d(dir, keep_all);
    REQUIRE(d.start());
    killed_spawner = spawner_of(d);
    REQUIRE(killed_spawner > 0);
    std::atomic<bool> stop{false};
    std::atomic<int> acked_count{0};
    std::thread deployer([&] {
      auto c = d.client(5);
      // Sources of different sizes, so a torn file would show.
      for (int v = 1; v <= 400 && !stop; v++) {
        std::string src =
            returns(std::to_string(v)) + "# " + std::string(v * 97 % 5000, 'x') + "\n";
        auto r = c->Put("/functions/burst", auth(d), src, "text/x-python");
        if (r && r->status == 201) {
          acked.push_back(body(r)["version"].get<int>());
          acked_count++;
        }
      }
    });
    // Killed mid-burst: some versions acknowledged, the next already sent.
    // CHECK, not REQUIRE: the deployer must be joined.
    CHECK(nsbox::test::wait_until([&] { return acked_count >= 20; }, 60000,
                                  "20 deploys to be acknowledged"));
    CHECK(d.kill9());
    stop = true;
    deployer.join();
  }
  REQUIRE(!acked.empty());
  // What the killed daemon left: its sandboxes died with it (PDEATHSIG), and
  // the next spawner sweeps their cgroup leaves within a few seconds. Only its
  // own (srv-<spawner>-...): another daemon on the host (the bench suite runs
  // beside this one) keeps its live leaves, as it should.
  std::vector<std::string> orphans;
  const std::string mine = "/srv-" + std::to_string(killed_spawner) + "-";
  for (const auto& leaf : nsbox::test::host_residue().describe_leaves)
    if (leaf.find(mine) != std::string::npos) orphans.push_back(leaf);
  Daemon d(dir, keep_all);
  REQUIRE(d.start());
  auto orphans_left = [&] {
    size_t n = 0;
    for (const auto& l : orphans) n += access(l.c_str(), F_OK) == 0;
    return n;
  };
  CHECK(nsbox::test::wait_until([&] { return orphans_left() == 0; }, 10000,
                                "the new spawner to sweep the killed one's cgroup leaves"));
  auto c = d.client();
  auto show = body(c->Get("/functions/burst", auth(d)));
  std::set<int> versions;
  for (int v : show["versions"]) versions.insert(v);
  for (int v : acked)
    CHECK_MESSAGE(versions.count(v) == 1, "acknowledged version " << v << " lost");
  // The newest version serves its own, whole source.
  auto r = c->Get("/fn/burst");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == std::to_string(show["version"].get<int>()) + "\n");
  CHECK(d.stop() == 0);

  // Restarted with the default keep_versions (10): the newest ten stay,
  // the latest among them, and it still serves.
  Daemon kept(dir, kPool);
  REQUIRE(kept.start());
  auto after = body(kept.client()->Get("/functions/burst", auth(kept)));
  std::vector<int> left = after["versions"];
  REQUIRE(left.size() == 10);
  CHECK(left.back() == show["version"].get<int>());
  CHECK(left.front() == left.back() - 9);
  r = kept.client()->Get("/fn/burst");
  REQUIRE(r);
  CHECK(r->body == std::to_string(left.back()) + "\n");
  CHECK(kept.stop() == 0);
}

TEST_CASE("serve: overload gets fast 503s with Retry-After, not timeouts") {
  StateDir sd("overload");
  Daemon d(sd.path,
           "[pool]\nblank = 1\nmax_sandboxes = 4\nper_function = 1\nqueue_per_function = 2\n"
           "queue_timeout_ms = 300\n");
  REQUIRE(d.start());
  deploy(d, "slow", "import time\ndef handler(e, c):\n    time.sleep(1)\n    return 1\n");
  std::vector<std::thread> ts;
  std::atomic<int> ok{0}, refused{0}, other{0}, retry_after{0};
  std::atomic<long> slowest_refusal_ms{0};
  for (int i = 0; i < 8; i++) {
    ts.emplace_back([&] {
      auto c = d.client();
      auto t0 = std::chrono::steady_clock::now();
      auto r = c->Get("/fn/slow");
      long ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - t0)
                    .count();
      if (r && r->status == 200)
        ok++;
      else if (r && r->status == 503) {
        refused++;
        if (!r->get_header_value("Retry-After").empty()) retry_after++;
        long prev = slowest_refusal_ms;
        while (ms > prev && !slowest_refusal_ms.compare_exchange_weak(prev, ms)) {
        }
      } else
        other++;
    });
  }
  for (auto& t : ts) t.join();
  INFO("ok " << ok.load() << ", 503 " << refused.load() << ", other " << other.load());
  CHECK(ok >= 1);
  CHECK(refused >= 4);
  CHECK(retry_after == refused);
  CHECK(other == 0);
  // Refused within the queue timeout, never after the function's run time.
  CHECK_MESSAGE(slowest_refusal_ms < 900,
                "slowest 503 after " << slowest_refusal_ms.load() << " ms");
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: after SIGTERM no mount, cgroup or process is left") {
  auto before = nsbox::test::host_residue();
  StateDir sd("term");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  deploy(d, "a", returns("1"));
  // b runs until the test lets it go (at most 20 s, within its timeout),
  // named so the host sees it running.
  deploy(d, "b",
         "import signal\n"
         "def handler(e, c):\n"
         "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
         "    with open('/proc/self/comm', 'w') as f:\n"
         "        f.write('nsbox-inflight')\n"
         "    signal.sigtimedwait({signal.SIGUSR1}, 20)\n"
         "    return 2\n",
         "?timeout=30s");
  auto c = d.client();
  CHECK(c->Get("/fn/a")->status == 200);
  std::thread inflight([&] {
    auto c2 = d.client();
    auto r = c2->Get("/fn/b");
    CHECK(r);
    if (r) CHECK(r->status == 200);  // drained, not dropped
  });
  // SIGTERM while b runs; b ends only once the daemon is draining.
  std::vector<pid_t> running;
  CHECK(nsbox::test::wait_until(
      [&] { return !(running = nsbox::test::pids_named("nsbox-inflight")).empty(); }, 30000,
      "b's request to run"));
  kill(d.pid(), SIGTERM);
  CHECK(nsbox::test::wait_until(
      [&] { return d.log().find("SIGTERM: draining") != std::string::npos; }, 10000,
      "the daemon to begin draining"));
  for (pid_t p : running) kill(p, SIGUSR1);
  const std::vector<pid_t> templates = nsbox::test::pids_named("nsbox-template");
  CHECK_FALSE(templates.empty());
  int rc = d.stop();
  inflight.join();
  CHECK(rc == 0);
  // The runtime templates are killed and reaped before the daemon exits,
  // not left to die later of their death signal.
  for (pid_t t : templates) {
    CAPTURE(t);
    CHECK(kill(t, 0) != 0);
  }
  auto after = nsbox::test::host_residue();
  CHECK(after.sandbox_procs == 0);
  // <=: a daemon's spawner also sweeps leaves earlier, killed ones left.
  CHECK(after.cgroup_leaves <= before.cgroup_leaves);
  CHECK(after.mounts == before.mounts);
}

TEST_CASE("serve: SIGTERM ends requests still running after drain_timeout_ms, leaving nothing") {
  // A request that would run for ten minutes must not hold the daemon's
  // exit past its drain: a service manager's stop timeout would SIGKILL it
  // and leave the sandboxes' cgroups.
  auto before = nsbox::test::host_residue();
  StateDir sd("drain-cut");
  Daemon d(sd.path, std::string("drain_timeout_ms = 1000\n") + kPool);
  REQUIRE(d.start());
  deploy(d, "long",
         "import time\n"
         "def handler(e, c):\n"
         "    with open('/proc/self/comm', 'w') as f:\n"
         "        f.write('nsbox-long')\n"
         "    time.sleep(600)\n"
         "    return 1\n",
         "?timeout=15m");
  int status = 0;
  std::string retry_after, answer;
  std::thread inflight([&] {
    if (auto r = d.client(60)->Get("/fn/long")) {
      status = r->status;
      retry_after = r->get_header_value("Retry-After");
      answer = r->body;
    }
  });
  CHECK(nsbox::test::wait_until([&] { return !nsbox::test::pids_named("nsbox-long").empty(); },
                                30000, "the request to run"));
  kill(d.pid(), SIGTERM);
  const int rc = d.wait_exit(15000);
  if (rc < 0) (void)d.kill9();  // not stopped: the test has failed; clean up
  inflight.join();
  CHECK(rc == 0);
  CHECK(status == 503);
  CHECK(retry_after == "1");
  CHECK_MESSAGE(answer.find("drain_timeout_ms ran out") != std::string::npos, answer);
  CHECK(d.log().find("requests still running after drain_timeout_ms (1000 ms)") !=
        std::string::npos);
  auto after = nsbox::test::host_residue();
  CHECK(after.sandbox_procs == 0);
  CHECK(nsbox::test::pids_named("nsbox-long").empty());
  CHECK(after.cgroup_leaves <= before.cgroup_leaves);
  CHECK(after.mounts == before.mounts);
}

TEST_CASE("serve: SIGTERM while the rootfs builds leaves no builder and no half-built tree") {
  // The first start on an empty state dir builds the runtime tree; a stop
  // signal then must stop the builder (and the workers it started) too.
  nsbox::test::TempDir tmp("term-build");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  const std::string state = tmp.path + "/state", log = tmp.path + "/log";
  auto runner_files = [] {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator("/tmp"))
      if (e.path().filename().string().rfind("nsbox-runner-", 0) == 0)
        names.insert(e.path().string());
    return names;
  };
  const auto runners_before = runner_files();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(nsbox::test::nsbox_bin().c_str(), "nsbox", "serve", "--listen", "127.0.0.1:1",
          "--state-dir", state.c_str(), nullptr);
    _exit(127);
  }
  // Builder processes: every process whose command line names the tree.
  const std::string out_arg = state + "/rootfs";
  auto builders = [&] {
    std::vector<pid_t> found;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const pid_t p = static_cast<pid_t>(atoi(e.path().filename().c_str()));
      if (p <= 0) continue;
      std::ifstream in(e.path() / "cmdline");
      std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (cmdline.find(out_arg) != std::string::npos) found.push_back(p);
    }
    return found;
  };
  CHECK(nsbox::test::wait_until([&] { return !builders().empty(); }, 20000, "the builder"));
  usleep(300 * 1000);  // into the build: the tree half-written
  kill(pid, SIGTERM);
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(text);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK(text.find("stopped by SIGTERM") != std::string::npos);
  // Within a second: left alone, the builder would finish its tree in two.
  CHECK(nsbox::test::wait_until([&] { return builders().empty(); }, 1000, "no builder left"));
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(state))
    if (e.path().filename().string().rfind("rootfs", 0) == 0 && e.is_directory())
      left.push_back(e.path().filename().string());
  CHECK_MESSAGE(left.empty(), (left.empty() ? std::string() : left[0]));
  CHECK(runner_files() == runners_before);
}

// Invoking needs no token: the CLI must not send the admin's to /fn/,
// where a proxy in front or a redirect of the function's choosing would
// carry it on. Deploying still sends it (the control).
// A server of the test's own on a loopback port, standing in for the
// daemon (or for what answers in its place), served until stop().
struct Serving {
  httplib::Server& srv;
  std::string url;
  std::thread listener;
  explicit Serving(httplib::Server& s) : srv(s) {
    const int port = srv.bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
    url = "http://127.0.0.1:" + std::to_string(port);
    listener = std::thread([this] { srv.listen_after_bind(); });
  }
  void stop() {
    srv.stop();
    if (listener.joinable()) listener.join();
  }
  ~Serving() { stop(); }
};

TEST_CASE("nsbox invoke sends no token; nsbox deploy does") {
  httplib::Server srv;
  std::mutex mu;
  std::map<std::string, std::string> seen;  // path -> Authorization
  auto record = [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    seen[req.path] =
        req.has_header("Authorization") ? req.get_header_value("Authorization") : "(none)";
    res.status = req.path.starts_with("/fn/") ? 200 : 201;
    res.set_content(R"({"name": "x", "version": 1, "url": "http://127.0.0.1/fn/x"})",
                    "application/json");
  };
  srv.Post("/fn/x", record);
  srv.Put("/functions/x", record);
  Serving serving(srv);
  auto cli = [&](std::vector<std::string> args) {
    return nsbox::test::run(nsbox::test::client_spec(args, serving.url, "admin-secret-token"));
  };
  auto o = cli({"invoke", "x", "{}"});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  o = cli({"deploy", "x", nsbox::test::probe("echo.py")});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  serving.stop();
  std::lock_guard<std::mutex> lock(mu);
  CHECK(seen["/fn/x"] == "(none)");
  CHECK(seen["/functions/x"] == "Bearer admin-secret-token");
}

TEST_CASE("--token-file is read with sudo's invoker's rights, and only a small regular file") {
  httplib::Server srv;
  std::atomic<int> requests{0};
  srv.Get("/functions", [&](const httplib::Request&, httplib::Response& res) {
    requests++;
    res.set_content(R"({"functions": []})", "application/json");
  });
  Serving serving(srv);
  StateDir sd("token-file");
  std::filesystem::create_directories(sd.path);
  REQUIRE(chmod(sd.path.c_str(), 0755) == 0);
  const std::string secret = sd.path + "/root-only";
  std::ofstream(secret) << "root-only-secret-0123456789\n";
  REQUIRE(chmod(secret.c_str(), 0600) == 0);
  auto ls = [&](const std::string& file, std::vector<std::string> env) {
    auto spec = nsbox::test::client_spec({"ls", "--token-file", file}, serving.url, "");
    spec.env = std::move(env);
    return nsbox::test::run(spec);
  };
  // As root itself it is read (and goes where told).
  auto o = ls(secret, {});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(requests == 1);
  if (geteuid() == 0) {
    // Under sudo by nobody, who cannot read it: refused, nothing sent.
    o = ls(secret, {"SUDO_UID=65534", "SUDO_GID=65534", "SUDO_USER=nobody"});
    CHECK(o.exit_code != 0);
    CHECK_MESSAGE(o.err.find("cannot read token file") != std::string::npos, o.err);
    CHECK_MESSAGE(o.err.find("Permission denied") != std::string::npos, o.err);
    CHECK(requests == 1);
  }
  // Not a regular file, or far larger than a token: refused at once.
  o = ls("/dev/zero", {});
  CHECK(o.exit_code != 0);
  CHECK_MESSAGE(o.err.find("/dev/zero: not a regular file") != std::string::npos, o.err);
  const std::string big = sd.path + "/big";
  std::ofstream(big) << std::string(1u << 20, 'a');
  o = ls(big, {});
  CHECK(o.exit_code != 0);
  CHECK_MESSAGE(o.err.find("more than a token") != std::string::npos, o.err);
  CHECK(requests == 1);
  serving.stop();
}

// A squatter: another user (nobody) listening on a loopback port, as one
// may while the daemon restarts. Writes every request it gets to *seen.
pid_t squat_as_nobody(int* port, int* seen) {
  int ports[2], got[2];
  REQUIRE(pipe2(ports, O_CLOEXEC) == 0);
  REQUIRE(pipe2(got, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (setgroups(0, nullptr) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
      _exit(126);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(l, 8) ||
        getsockname(l, reinterpret_cast<sockaddr*>(&a), &len))
      _exit(125);
    const int p = ntohs(a.sin_port);
    (void)!write(ports[1], &p, sizeof p);
    for (;;) {
      int c = accept(l, nullptr, nullptr);
      if (c < 0) continue;
      char buf[8192];
      ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n > 0) (void)!write(got[1], buf, size_t(n));
      static const char kReply[] =
          "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 51\r\n"
          "Connection: close\r\n\r\n{\"name\":\"x\",\"version\":1,\"url\":\"http://127.0.0.1/\"}";
      (void)!send(c, kReply, sizeof kReply - 1, MSG_NOSIGNAL);
      close(c);
    }
  }
  close(ports[1]);
  close(got[1]);
  REQUIRE(read(ports[0], port, sizeof *port) == sizeof *port);
  close(ports[0]);
  *seen = got[0];
  return pid;
}

TEST_CASE("the client commands bound what a server that is not the daemon sends") {
  httplib::Server srv;
  const std::string huge(80u << 20, 'a');
  srv.Post("/fn/huge", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(huge, "text/plain");
  });
  srv.Post("/fn/deep", [](const httplib::Request&, httplib::Response& res) {
    res.status = 500;
    res.set_content("{\"error\": " + std::string(100000, '[') + std::string(100000, ']') + "}",
                    "application/json");
  });
  srv.Get("/functions", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"functions": [{"name": "a\nb  9  fake row", "version": 1}]})",
                    "application/json");
  });
  srv.Post("/fn/size", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(std::to_string(req.body.size()), "application/json");
  });
  Serving serving(srv);
  auto cli = [&](std::vector<std::string> args) {
    return nsbox::test::run(nsbox::test::client_spec(args, serving.url, "admin-secret-token"));
  };
  // An answer larger than any of the daemon's: refused, not held.
  auto o = cli({"invoke", "huge"});
  CHECK(o.exit_code == 3);
  CHECK_MESSAGE(o.err.find("larger than 64 MiB") != std::string::npos, o.err);
  CHECK(o.out.empty());
  // An error nested 100,000 deep: shown as text (printing it as JSON
  // recursed until the client's stack ran out).
  o = cli({"invoke", "deep"});
  CHECK_MESSAGE(o.exit_code == 1, o.err);
  CHECK(o.out.rfind("{\"error\": [[[", 0) == 0);  // as the function's error JSON
  // An event larger than a function is given is refused before sending,
  // whether it comes from stdin or the command line.
  auto spec = nsbox::test::client_spec({"invoke", "huge", "-"}, serving.url, "t");
  spec.stdin_text = "\"" + std::string(7u << 20, 'e') + "\"";
  o = nsbox::test::run(spec);
  CHECK(o.exit_code == 2);
  CHECK_MESSAGE(o.err.find("the event is larger than 6 MiB") != std::string::npos, o.err);
  // An event of many values (2.1 million zeros, 4.2 MB) is checked as the
  // daemon checks it, not refused for what an answer may hold.
  auto many = nsbox::test::client_spec({"invoke", "size", "-"}, serving.url, "t");
  many.stdin_text = "[0";
  for (int i = 0; i < 2'100'000; i++) many.stdin_text += ",0";
  many.stdin_text += "]";
  o = nsbox::test::run(many);
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.out == std::to_string(many.stdin_text.size()) + "\n");
  // A line break in a name makes no row of its own.
  o = cli({"ls"});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.out.find("a\\nb  9  fake row") != std::string::npos);
  CHECK(std::count(o.out.begin(), o.out.end(), '\n') == 2);
  serving.stop();
}

TEST_CASE("the client commands report a server that hangs up mid-request") {
  // A listener that reads the start of each request and hangs up with
  // the rest unread: the kernel resets the connection while the client is
  // still sending its body. The client must say which server failed it
  // and exit 3, not hang, crash or die of a signal. (httplib peeks at the
  // socket before each write, so the SIGPIPE the client also ignores needs
  // a reset to land inside that window: not something a test can time.)
  const int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(l >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(l, 8) == 0);
  REQUIRE(getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  std::atomic<int> hangups{0};
  std::thread closer([&] {
    for (;;) {
      const int c = accept(l, nullptr, nullptr);
      if (c < 0) return;  // the listener was shut down
      char buf[4096];
      (void)!recv(c, buf, sizeof buf, 0);
      linger lg{1, 0};
      setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(c);
      hangups++;
    }
  });
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  auto spec = nsbox::test::client_spec({"invoke", "x", "-"}, url, "t");
  spec.stdin_text = "\"" + std::string(5u << 20, 'e') + "\"";
  auto o = nsbox::test::run(spec);
  StateDir sd("hangup");
  std::filesystem::create_directories(sd.path);
  const std::string big = sd.path + "/big.py";
  std::ofstream(big) << "def handler(event, context):\n    return 1\n# "
                     << std::string(1000u << 10, 'x') << "\n";
  auto d =
      nsbox::test::run(nsbox::test::client_spec({"deploy", "x", big}, url, "admin-secret-token"));
  shutdown(l, SHUT_RDWR);
  closer.join();
  close(l);
  CHECK(hangups >= 2);
  for (const auto* r : {&o, &d}) {
    CHECK_MESSAGE(r->exit_code == 3, r->exit_code << ": " << r->err);
    CHECK_MESSAGE(r->err.find(url) != std::string::npos, r->err);
  }
}

TEST_CASE("NSBOX_TOKEN goes to no other user's socket on a loopback port") {
  if (geteuid() != 0) return;  // nobody's listener needs root to start
  int port = 0, seen = -1;
  const pid_t squatter = squat_as_nobody(&port, &seen);
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  auto o = nsbox::test::run(nsbox::test::client_spec({"deploy", "x", nsbox::test::probe("echo.py")},
                                                     url, "admin-secret-token"));
  CHECK(o.exit_code != 0);
  CHECK_MESSAGE(o.err.find("not sending NSBOX_TOKEN to " + url) != std::string::npos, o.err);
  CHECK_MESSAGE(o.err.find("belongs to uid 65534") != std::string::npos, o.err);
  // Other spellings of this host reach the squatter too: the check looks
  // at the address the connection uses, not the name.
  for (const std::string host : {"0.0.0.0", "127.1", "localhost", "[::ffff:127.0.0.1]"}) {
    const std::string other = "http://" + host + ":" + std::to_string(port);
    o = nsbox::test::run(nsbox::test::client_spec({"deploy", "x", nsbox::test::probe("echo.py")},
                                                  other, "admin-secret-token"));
    CHECK(o.exit_code != 0);
    CHECK_MESSAGE(o.err.find("not sending NSBOX_TOKEN") != std::string::npos,
                  host << ": " << o.err);
  }
  // Control: named on the command line, it goes where told (the squatter
  // gets it), so the refusal above was not a failed connection.
  StateDir sd("squat");
  std::filesystem::create_directories(sd.path);
  const std::string file = sd.path + "/token";
  std::ofstream(file) << "explicit-secret-token\n";
  o = nsbox::test::run(
      nsbox::test::client_spec({"deploy", "x", nsbox::test::probe("echo.py"), "--token-file", file},
                               url, "admin-secret-token"));
  kill(squatter, SIGKILL);
  waitpid(squatter, nullptr, 0);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = read(seen, buf, sizeof buf)) > 0;) got.append(buf, size_t(n));
  close(seen);
  CHECK(got.find("admin-secret-token") == std::string::npos);
  CHECK(got.find("Bearer explicit-secret-token") != std::string::npos);
}

TEST_CASE("serve: the CLI client against the real daemon") {
  StateDir sd("cli");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  std::string server = "http://127.0.0.1:" + std::to_string(d.port());
  auto cli = [&](std::vector<std::string> args, const std::string& input = "") {
    nsbox::test::RunSpec s = nsbox::test::client_spec(args, server, d.token());
    s.stdin_text = input;
    return nsbox::test::run(s);
  };
  auto o = cli({"deploy", "echo", nsbox::test::probe("echo.py")});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.out == "Deployed at " + server + "/fn/echo (version: 1)\n");
  o = cli({"invoke", "echo", R"({"k": 5})"});
  CHECK(o.exit_code == 0);
  CHECK(o.json()["event"]["k"] == 5);
  // --event, as `nsbox run` takes it; from stdin too; not twice.
  o = cli({"invoke", "echo", "--event", R"({"k": 7})"});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.json()["event"]["k"] == 7);
  o = cli({"invoke", "echo", "--event", "-"}, R"({"k": 8})");
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.json()["event"]["k"] == 8);
  o = cli({"invoke", "echo", "{}", "--event", "{}"});
  CHECK(o.exit_code == 2);
  CHECK(o.err.find("given twice") != std::string::npos);
  o = cli({"ls"});
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("echo") != std::string::npos);
  {
    INFO("NSBOX_SERVER names the daemon when --server is not given");
    nsbox::test::RunSpec env;
    env.argv = {nsbox::test::nsbox_bin(), "ls"};
    env.env = {"NSBOX_TOKEN=" + d.token(), "NSBOX_SERVER=" + server};
    auto e = nsbox::test::run(env);
    CHECK_MESSAGE(e.exit_code == 0, e.err);
    CHECK(e.out.find("echo") != std::string::npos);
  }
  o = cli({"logs", "echo"});
  CHECK(o.out.find("log line from echo") != std::string::npos);
  cli({"deploy", "raises", nsbox::test::probe("raises.py")});
  o = cli({"invoke", "raises"});
  CHECK(o.exit_code == 1);
  CHECK(o.json()["errorType"] == "ValueError");
  o = cli({"deploy", "bad", nsbox::test::probe("syntax_error.py")});
  CHECK(o.exit_code != 0);
  CHECK(o.err.find("line") != std::string::npos);
  // --template asks for a function template, as the metadata then says.
  o = cli({"deploy", "--template", "tpl", nsbox::test::probe("echo.py")});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  auto meta = d.client()->Get("/functions/tpl", nsbox::test::auth(d));
  REQUIRE(meta);
  CHECK(nlohmann::json::parse(meta->body, nullptr, false)["template"] == true);
  o = cli({"invoke", "tpl", R"({"k": 6})"});
  CHECK(o.exit_code == 0);
  CHECK(o.json()["event"]["k"] == 6);
  // A function's own 404 is what it returned, not "no such function".
  const std::string proxy = sd.path + ".proxy404.py";
  std::ofstream(proxy) << "def handler(e, c):\n    return {'statusCode': 404, 'body': 'gone'}\n";
  o = cli({"deploy", "p404", proxy});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  o = cli({"invoke", "p404"});
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.out.find("gone") != std::string::npos);
  auto raw = d.client()->Post("/fn/p404", "{}", "application/json");
  REQUIRE(raw);
  CHECK(raw->status == 404);
  CHECK(raw->get_header_value("X-Nsbox-Outcome") == "proxy");
  o = cli({"rm", "echo"});
  CHECK(o.exit_code == 0);
  o = cli({"invoke", "echo"});
  CHECK(o.exit_code == 3);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve --check says whether a start would take the config, and starts nothing") {
  StateDir sd("check");
  std::filesystem::create_directories(sd.path);
  const std::string conf = sd.path + "/nsbox.toml";
  const std::string state = sd.path + "/state";
  auto check = [&](const std::string& text, mode_t mode = 0644) {
    std::ofstream(conf) << text;
    REQUIRE(chmod(conf.c_str(), mode) == 0);
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "serve", "--check", "--config", conf};
    return nsbox::test::run(s);
  };
  auto o = check("[server]\nstate_dir = \"" + state + "\"\n[pool]\nblank = 9\nmax_sandboxes = 8\n");
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.out == "nsbox serve: " + conf + " is valid\n");
  CHECK_MESSAGE(o.err.find("warning: " + conf + ": [pool] blank = 9 is more than max_sandboxes") !=
                    std::string::npos,
                o.err);
  // Nothing was made: no state dir, no spawner left behind.
  CHECK_FALSE(std::filesystem::exists(state));
  o = check("[server]\nlisten = \"127.0.0.1:99999\"\n");
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.err.find(conf + ":2:") != std::string::npos, o.err);
  o = check("[pool]\nmemory_budget_mb = 64\n");
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.err.find("cannot hold one sandbox") != std::string::npos, o.err);
  o = check("", 0666);
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.err.find("may be changed by other users") != std::string::npos, o.err);
  // The token a start would take from STATE/token: a read_token equal to
  // it, or a token file a start would refuse, fails the check as well.
  std::filesystem::create_directories(state);
  REQUIRE(chmod(state.c_str(), 0711) == 0);
  std::ofstream(state + "/token") << "state-admin-token-0123456789\n";
  REQUIRE(chmod((state + "/token").c_str(), 0600) == 0);
  const std::string with_state = "[server]\nstate_dir = \"" + state + "\"\n";
  o = check(with_state + "read_token = \"state-admin-token-0123456789\"\n");
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.err.find("read_token is the admin token") != std::string::npos, o.err);
  o = check(with_state + "read_token = \"another-read-token-0123456789\"\n");
  CHECK_MESSAGE(o.exit_code == 0, o.err);
  REQUIRE(chmod((state + "/token").c_str(), 0644) == 0);
  o = check(with_state);
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.err.find(state + "/token") != std::string::npos, o.err);
  // Read, never written: the check leaves the token file as it found it.
  struct stat st;
  REQUIRE(stat((state + "/token").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
}

TEST_CASE("serve: refuses to run as non-root without --rootless; SIGHUP reloads the token") {
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(),  "serve", "--listen", "127.0.0.1:1", "--state-dir",
            "/tmp/nsbox-never-created"};
  s.as_uid = 65534;
  auto o = nsbox::test::run(s);
  CHECK(o.exit_code == 1);
  CHECK(o.err.find("must run as root") != std::string::npos);
  CHECK(o.err.find("--rootless") != std::string::npos);

  StateDir sd("hup");
  std::string dir = sd.path;
  Daemon d(dir, "token = \"first-token-0123456789\"\n");
  REQUIRE(d.start());
  auto c = d.client();
  httplib::Headers first = {{"Authorization", "Bearer first-token-0123456789"}};
  httplib::Headers second = {{"Authorization", "Bearer second-token-0123456789"}};
  CHECK(c->Put("/functions/t", first, returns("1"), "text/x-python")->status == 201);
  // Rewrite the config with a new token and reload.
  std::string conf;
  {
    std::ifstream in(dir + ".toml");
    std::stringstream ss;
    ss << in.rdbuf();
    conf = ss.str();
  }
  conf.replace(conf.find("first-token"), 11, "second-token");
  std::ofstream(dir + ".toml") << conf;
  kill(d.pid(), SIGHUP);
  int status = 0;
  CHECK(nsbox::test::wait_until(
      [&] {
        auto r = c->Put("/functions/t", second, returns("2"), "text/x-python");
        status = r ? r->status : 0;
        return status == 201;
      },
      5000, "the reloaded token to be accepted"));
  CHECK(status == 201);
  CHECK(c->Put("/functions/t", first, returns("3"), "text/x-python")->status == 401);
  CHECK(d.log().find("applied token") != std::string::npos);
  // The token line removed: the one in force falls back to STATE/token (as
  // at a start), and the config's old one stops working.
  conf.erase(conf.find("token = \"second-token"),
             conf.find('\n', conf.find("second-token")) + 1 - conf.find("token = \"second-token"));
  REQUIRE(conf.find("second-token") == std::string::npos);
  std::ofstream(dir + ".toml") << conf;
  kill(d.pid(), SIGHUP);
  std::string from_file;
  CHECK(nsbox::test::wait_until(
      [&] {
        std::ifstream in(dir + "/token");
        from_file.clear();
        std::getline(in, from_file);
        if (from_file.size() < 16) return false;
        auto r = c->Put("/functions/t", second, returns("4"), "text/x-python");
        return r && r->status == 401;
      },
      5000, "the removed token to be refused"));
  httplib::Headers file_token = {{"Authorization", "Bearer " + from_file}};
  CHECK(c->Put("/functions/t", file_token, returns("5"), "text/x-python")->status == 201);
  // A read_token equal to the admin token in STATE/token (which the
  // config parser never sees) is refused: it would make readers admins.
  std::string with_read = conf;
  REQUIRE(with_read.find("[server]\n") != std::string::npos);
  with_read.insert(with_read.find("[server]\n") + 9, "read_token = \"" + from_file + "\"\n");
  std::ofstream(dir + ".toml") << with_read;
  kill(d.pid(), SIGHUP);
  CHECK(nsbox::test::wait_until(
      [&] {
        return d.log().find("read_token is the admin token") != std::string::npos &&
               d.log().find("keeping the running configuration") != std::string::npos;
      },
      5000, "the reload refused"));
  CHECK(c->Put("/functions/t", file_token, returns("6"), "text/x-python")->status == 201);
  std::ofstream(dir + ".toml") << conf;
  // A reload names what it applied and what waits for a restart: a proxy
  // added to (or dropped from) trusted_proxies is not in force until then.
  std::ofstream(dir + ".toml") << conf << "trusted_proxies = [\"127.0.0.1\"]\n[pool]\nblank = 1\n";
  kill(d.pid(), SIGHUP);
  CHECK(nsbox::test::wait_until(
      [&] {
        return d.log().find(
                   "applied blank; changed but not in force until the next start: "
                   "trusted_proxies (restart the daemon to apply them)") != std::string::npos;
      },
      5000, "the reload to name what it applied and what waits"));
  std::ofstream(dir + ".toml") << conf;
  // The config gone: the reload is refused, naming the file and why, and
  // the daemon serves on with what it has.
  REQUIRE(rename((dir + ".toml").c_str(), (dir + ".toml.away").c_str()) == 0);
  kill(d.pid(), SIGHUP);
  CHECK(nsbox::test::wait_until(
      [&] {
        return d.log().find("reload: config(" + dir + ".toml): No such file or directory; " +
                            "keeping the running configuration") != std::string::npos;
      },
      5000, "the reload to be refused, and why"));
  CHECK(c->Put("/functions/t", file_token, returns("6"), "text/x-python")->status == 201);
  REQUIRE(rename((dir + ".toml.away").c_str(), (dir + ".toml").c_str()) == 0);
  // A config other users may write: its new token is not taken, at reload
  // nor at a start (they would choose the daemon's tokens and limits).
  std::ofstream(dir + ".toml") << conf << "token = \"third-token-0123456789\"\n";
  REQUIRE(chmod((dir + ".toml").c_str(), 0666) == 0);
  kill(d.pid(), SIGHUP);
  CHECK(nsbox::test::wait_until(
      [&] {
        return d.log().find("reload: " + dir + ".toml (mode 0666) may be changed by other users") !=
               std::string::npos;
      },
      5000, "the reload of a writable config to be refused"));
  httplib::Headers third = {{"Authorization", "Bearer third-token-0123456789"}};
  CHECK(c->Put("/functions/t", third, returns("7"), "text/x-python")->status == 401);
  CHECK(c->Put("/functions/t", file_token, returns("7"), "text/x-python")->status == 201);
  CHECK(d.stop() == 0);
  nsbox::test::RunSpec again;
  again.argv = {nsbox::test::nsbox_bin(), "serve", "--config", dir + ".toml"};
  o = nsbox::test::run(again);
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.err.find("nsbox serve: " + dir +
                           ".toml (mode 0666) may be changed by other users") != std::string::npos,
                o.err);
}

TEST_CASE("serve: refuses a state dir below a directory closed to other users, naming it") {
  // Every sandbox would fail to mount the rootfs beneath it (its uid is
  // unprivileged): the daemon says so at start instead.
  nsbox::test::TempDir tmp("closed-state");
  const std::string closed = tmp.path + "/closed";
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  REQUIRE(mkdir(closed.c_str(), 0700) == 0);
  REQUIRE(chmod(closed.c_str(), 0700) == 0);
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "serve", "--listen", "127.0.0.1:1", "--state-dir",
            closed + "/state"};
  auto o = nsbox::test::run(s);
  CHECK(o.exit_code == 1);
  CHECK_MESSAGE(o.err.find(closed + " (mode 0700)") != std::string::npos, o.err);
  CHECK(o.err.find("chmod o+x " + closed) != std::string::npos);
  CHECK(access((closed + "/state/rootfs").c_str(), F_OK) != 0);  // refused before building
}

// A chmod 777 on one function's directory (or another owner) stopped the
// whole daemon from starting. Now that function alone is not served: it
// shows damaged, cannot be deployed into, and can be deleted.
TEST_CASE("serve: one function directory another user may write costs only that function") {
  StateDir sd("untrusted-fn");
  {
    Daemon d(sd.path, kPool);
    REQUIRE(d.start());
    REQUIRE(deploy(d, "kept", returns("'kept'"))->status == 201);
    REQUIRE(deploy(d, "opened", returns("'theirs?'"))->status == 201);
    CHECK(d.stop() == 0);
  }
  const std::string dir = sd.path + "/functions/opened";
  REQUIRE(chmod(dir.c_str(), 0777) == 0);
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  auto c = d.client();
  auto r = c->Get("/fn/kept");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.find("kept") != std::string::npos);
  r = c->Get("/fn/opened");
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK_MESSAGE(r->body.find("another user may write its directory") != std::string::npos, r->body);
  CHECK(r->body.find(sd.path) == std::string::npos);  // no host path to an invoker
  CHECK(d.log().find(dir + " belongs to uid 0 with mode 0777") != std::string::npos);
  auto list = body(c->Get("/functions", auth(d)));
  bool listed = false;
  for (const auto& f : list["functions"])
    if (f.value("name", "") == "opened")
      listed = f.contains("damaged") && f.value("untrusted", false);
  CHECK_MESSAGE(listed, list.dump());
  // Not deployed into: 409, before any sandbox checks the source.
  r = deploy(d, "opened", returns("'mine'"));
  REQUIRE(r);
  CHECK(r->status == 409);
  CHECK(access((dir + "/2.json").c_str(), F_OK) != 0);
  // Deleted: moved aside for the operator, not walked by root (another user
  // may have put anything in it); then the name is free again.
  CHECK(c->Delete("/functions/opened", auth(d))->status == 200);
  CHECK(access(dir.c_str(), F_OK) != 0);
  CHECK(d.log().find("check what it holds, then delete it by hand") != std::string::npos);
  int aside = 0;
  for (const auto& e : std::filesystem::directory_iterator(sd.path + "/functions"))
    if (e.path().filename().string().rfind(".untrusted-opened-", 0) == 0)
      aside += std::filesystem::exists(e.path() / "1.json");
  CHECK(aside == 1);
  REQUIRE(deploy(d, "opened", returns("'mine'"))->status == 201);
  CHECK(c->Get("/fn/opened")->body.find("mine") != std::string::npos);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: refuses a state dir that is not its own, and leaves it as it was") {
  // Root chmod'ing whatever state_dir names would turn /tmp into 0711 or a
  // file into 0711 before the start fails.
  nsbox::test::TempDir tmp("foreign-state");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  const std::string shared = tmp.path + "/shared", file = tmp.path + "/file",
                    theirs = tmp.path + "/theirs";
  REQUIRE(mkdir(shared.c_str(), 0755) == 0);
  REQUIRE(chmod(shared.c_str(), 01777) == 0);
  std::ofstream(file) << "x";
  REQUIRE(chmod(file.c_str(), 0644) == 0);
  REQUIRE(mkdir(theirs.c_str(), 0755) == 0);
  REQUIRE(chown(theirs.c_str(), 65534, 65534) == 0);
  // Root's own and holding other things (state_dir = "/etc"): left as it
  // was, where an empty one or nsbox's own (below) is made 0711.
  const std::string etc_like = tmp.path + "/etc";
  REQUIRE(mkdir(etc_like.c_str(), 0755) == 0);
  REQUIRE(chmod(etc_like.c_str(), 0755) == 0);
  std::ofstream(etc_like + "/passwd") << "root:x:0:0::/root:/bin/sh\n";
  // A link another user owns, to a directory of root's: they chose where
  // root's daemon would chmod, write and later deploy (protected_symlinks
  // is off on some hosts, and says nothing outside sticky directories).
  const std::string root_dir = tmp.path + "/roots", their_link = tmp.path + "/link";
  REQUIRE(mkdir(root_dir.c_str(), 0755) == 0);
  REQUIRE(symlink(root_dir.c_str(), their_link.c_str()) == 0);
  REQUIRE(lchown(their_link.c_str(), 65534, 65534) == 0);
  // Under a directory anyone may write (not sticky): refused before the
  // token or the store is written there.
  const std::string open_parent = tmp.path + "/open";
  REQUIRE(mkdir(open_parent.c_str(), 0777) == 0);
  REQUIRE(chmod(open_parent.c_str(), 0777) == 0);
  auto mode_of = [](const std::string& p) {
    struct stat st {};
    REQUIRE(stat(p.c_str(), &st) == 0);
    return unsigned(st.st_mode & 07777);
  };
  struct Case {
    std::string dir, says;
    unsigned mode;
  };
  for (const Case& k :
       {Case{shared, "writable by other users (mode 1777)", 01777},
        Case{file, "is not a directory", 0644}, Case{theirs, "belongs to uid 65534", 0755},
        Case{etc_like, "already holds files that are not ours (passwd, ...) and is mode 0755",
             0755},
        Case{their_link, their_link + " is a symbolic link owned by uid 65534", 0755},
        Case{their_link + "/state", their_link + " is a symbolic link owned by uid 65534", 0},
        Case{"/", "/ is the root directory", 0}, Case{"//", "/ is the root directory", 0},
        Case{"/tmp/..", "/tmp/.. is the root directory", 0},
        Case{"/.", "/. is the root directory", 0},
        Case{open_parent + "/state", "lets another user rename or replace", 0},
        Case{"rel/state", "absolute", 0}}) {
    INFO("state dir ", k.dir);
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "serve", "--listen", "127.0.0.1:1", "--state-dir", k.dir};
    auto o = nsbox::test::run(s);
    CHECK(o.exit_code == 1);
    CHECK_MESSAGE(o.err.find(k.says) != std::string::npos, o.err);
    CHECK(access((open_parent + "/state/token").c_str(), F_OK) != 0);
    if (k.mode == 0) continue;
    CHECK(o.err.find("give nsbox a directory of its own") != std::string::npos);
    CHECK(mode_of(k.dir) == k.mode);
    CHECK(access((k.dir + "/functions").c_str(), F_OK) != 0);
  }
}

TEST_CASE("serve: a memory budget that cannot hold one sandbox is refused, at start and reload") {
  StateDir sd("small-budget");
  {
    Daemon d(sd.path, "[pool]\nmemory_budget_mb = 100\n");
    CHECK_FALSE(d.start());
    const std::string log = d.log();
    CHECK_MESSAGE(log.find("memory_budget_mb: 100 MiB cannot hold one sandbox of policy") !=
                      std::string::npos,
                  log);
    CHECK(log.find("or set it to 0 (auto)") != std::string::npos);
  }
  Daemon d(sd.path, "[pool]\nmemory_budget_mb = 2048\n");
  REQUIRE(d.start());
  std::string conf;
  {
    std::ifstream in(sd.path + ".toml");
    conf.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  conf.replace(conf.find("memory_budget_mb = 2048"), 23, "memory_budget_mb = 100");
  std::ofstream(sd.path + ".toml") << conf;
  kill(d.pid(), SIGHUP);
  CHECK(nsbox::test::wait_until(
      [&] {
        return d.log().find("reload: memory_budget_mb: 100 MiB cannot hold") != std::string::npos;
      },
      5000, "the reload to be refused"));
  deploy(d, "still", returns("7"));
  auto r = d.client()->Get("/fn/still");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: fail-stop when a spawner dies; the others sweep what it left") {
  const auto before = nsbox::test::host_residue();
  StateDir sd("spawnerdeath");
  Daemon d(sd.path, kPool);
  d.spawners(2);
  REQUIRE(d.start());
  // Sandboxes from both, so that the one killed leaves leaves behind.
  for (int i = 0; i < 4; i++) {
    const std::string name = "w" + std::to_string(i);
    REQUIRE(deploy(d, name, "def handler(event, context):\n    return 1\n")->status == 201);
    auto r = d.client()->Post("/fn/" + name, "{}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  const std::vector<pid_t> spawners = nsbox::test::spawners_of(d);
  REQUIRE(spawners.size() == 2);
  const pid_t spawner = spawners.back();
  REQUIRE(spawner > 0);
  kill(spawner, SIGKILL);
  // The daemon notices, stops, and exits non-zero for its service manager.
  int status = d.wait_exit(10000);
  CHECK(status == 1);
  CHECK(d.log().find("a spawner process exited") != std::string::npos);
  // Its sandboxes died with it (PID 1's death signal); their leaves were
  // the other spawner's to sweep as it stopped, not the next start's.
  const auto after = nsbox::test::host_residue();
  std::string left;
  for (const auto& leaf : after.describe_leaves) left += leaf + " ";
  CHECK_MESSAGE(after.cgroup_leaves == before.cgroup_leaves, left);
  CHECK(after.sandbox_procs == before.sandbox_procs);
}

TEST_CASE("serve: one spawner per CPU, at most four, each making sandboxes") {
  StateDir sd("spawners");
  Daemon d(sd.path, "[pool]\nblank = 0\n");
  d.verbose();
  REQUIRE(d.start());
  const long want = std::clamp(sysconf(_SC_NPROCESSORS_ONLN), 1L, 4L);
  const std::vector<pid_t> forked = nsbox::test::spawners_of(d);
  const std::set<pid_t> spawners(forked.begin(), forked.end());
  CHECK(long(spawners.size()) == want);
  constexpr int kFunctions = 8;
  for (int i = 0; i < kFunctions; i++)
    REQUIRE(deploy(d, "f" + std::to_string(i), "def handler(event, context):\n    return 7\n")
                ->status == 201);
  // Cold starts at once, each a sandbox made for it.
  std::vector<std::string> got(kFunctions);
  std::vector<std::thread> callers;
  for (int i = 0; i < kFunctions; i++)
    callers.emplace_back([&, i] {
      auto r = d.client()->Post("/fn/f" + std::to_string(i), "{}", "application/json");
      got[i] = r ? std::to_string(r->status) + " " + body(r).dump() : "no answer";
    });
  for (auto& t : callers) t.join();
  for (const std::string& g : got) CHECK(g == "200 7");
  CHECK(d.metric("nsbox_templates") == want);  // one runtime template each
  CHECK(d.stop() == 0);
  // Which spawner made each sandbox: serve -v names it srv-<spawner pid>-<n>.
  std::set<pid_t> makers;
  const std::string log = d.log(), marker = "sandbox srv-";
  for (size_t at = log.find(marker); at != std::string::npos; at = log.find(marker, at + 1))
    makers.insert(static_cast<pid_t>(std::stol(log.substr(at + marker.size()))));
  CHECK_MESSAGE(makers == spawners, log);
  // --spawners sets the count; nonsense is refused before anything starts.
  for (const char* bad : {"0", "65", "two", "2x", ""}) {
    CAPTURE(bad);
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(),
              "serve",
              "--spawners",
              bad,
              "--listen",
              "127.0.0.1:1",
              "--state-dir",
              "/tmp/nsbox-never-created"};
    auto o = nsbox::test::run(s);
    CHECK(o.exit_code == 2);
    CHECK(o.err.find("--spawners") != std::string::npos);
  }
  CHECK(access("/tmp/nsbox-never-created", F_OK) != 0);
}

TEST_CASE("serve: batch_scheduling puts the daemon's threads and its sandboxes in SCHED_BATCH") {
  const std::string fn =
      "def handler(event, context):\n    with open('/proc/self/stat') as f:\n"
      "        stat = f.read()\n    return int(stat.rsplit(')', 1)[1].split()[38])\n";
  // Off means "left as started": what this test process runs with.
  const int inherited = sched_getscheduler(0);
  for (bool on : {true, false}) {
    CAPTURE(on);
    const int want = on ? SCHED_BATCH : inherited;
    StateDir sd(on ? "batch" : "nobatch");
    Daemon d(sd.path, std::string(on ? "" : "batch_scheduling = false\n") + kPool);
    REQUIRE(d.start());
    REQUIRE(deploy(d, "policy", fn)->status == 201);
    auto r = d.client()->Post("/fn/policy", "{}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(body(r) == want);  // the function's own process, in its sandbox
    std::string task_dir = "/proc/" + std::to_string(d.pid()) + "/task";
    DIR* dir = opendir(task_dir.c_str());
    REQUIRE(dir != nullptr);
    int threads = 0;
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      threads++;
      CHECK(stat_policy(task_dir + "/" + e->d_name + "/stat") == want);
    }
    closedir(dir);
    CHECK(threads > 1);
    CHECK(d.stop() == 0);
  }
}

TEST_CASE("serve: sandboxes get a capped cpu cgroup only with cpu_limits = true") {
  for (bool caps : {true, false}) {
    CAPTURE(caps);
    StateDir sd(caps ? "cpucaps" : "nocpucaps");
    Daemon d(sd.path, std::string(kPool) + (caps ? "cpu_limits = true\n" : ""));
    REQUIRE(d.start());
    REQUIRE(deploy(d, "f", returns("1"))->status == 201);
    auto r = d.client()->Post("/fn/f", "{}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    // The blanks and f's sandbox exist now (kPool keeps 2 blanks).
    int leaves = cpu_controlled_leaves(d.pid());
    if (caps && cpu_controller_present())
      CHECK(leaves > 0);
    else if (caps)
      MESSAGE("no cpu controller on this host: the capped case has nothing to find");
    else
      CHECK(leaves == 0);
    CHECK(d.stop() == 0);
  }
}

TEST_CASE("serve: /healthz answers while a spawn hangs") {
  StateDir sd("healthhang");
  Daemon d(sd.path, "[pool]\nblank = 0\n");
  d.spawners(1);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "slow", "def handler(event, context):\n    return 3\n")->status == 201);
  const pid_t spawner = nsbox::test::spawner_of(d);
  REQUIRE(spawner > 0);
  // A stopped spawner stands for one that is slow or hung: the cold start
  // below waits on it, holding the daemon's end of its socket.
  REQUIRE(kill(spawner, SIGSTOP) == 0);
  std::string invoked = "no answer";
  std::thread caller([&] {
    auto r = d.client()->Post("/fn/slow", "{}", "application/json");
    if (r) invoked = std::to_string(r->status) + " " + body(r).dump();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // The spawner lives, so the daemon is healthy, and says so at once rather
  // than after the spawn (a health check that times out gets it restarted).
  auto h = d.client(5)->Get("/healthz");
  const bool answered = bool(h);
  kill(spawner, SIGCONT);
  caller.join();
  REQUIRE(answered);
  CHECK(h->status == 200);
  CHECK(invoked == "200 3");
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: deploy options that are unknown, repeated or out of range are refused by name") {
  StateDir sd("deployopts");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  const std::string src = "def handler(event, context):\n    return 1\n";
  const std::pair<const char*, const char*> bad[] = {
      {"?timout=5s", "unknown deploy option \\\"timout\\\""},
      {"?memory=32M&memory=64M", "deploy option \\\"memory\\\" given more than once"},
      {"?timeout=25h", "timeout \\\"25h\\\": out of range (1ms to 15m)"},
      {"?timeout=16m", "timeout \\\"16m\\\": out of range (1ms to 15m)"},
      {"?timeout=0", "timeout \\\"0\\\": out of range (1ms to 15m)"},
      // The bound that applies, not a larger one (it named the pool's budget).
      {"?memory=1", "memory must be at least 16M"},
      {"?memory=1000G", "above the per-function maximum"},
  };
  for (const auto& item : bad) {
    const auto& query = std::get<0>(item);
    const auto& why = std::get<1>(item);
    CAPTURE(query);
    auto r = deploy(d, "f", src, query);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK_MESSAGE(r->body.find(why) != std::string::npos, r->body);
  }
  CHECK(d.client()->Get("/functions/f", auth(d))->status == 404);  // none was deployed
  auto ok = deploy(d, "f", src, "?memory=32M&timeout=15m&template=0&handler=handler");
  REQUIRE(ok);
  CHECK(ok->status == 201);
  CHECK(d.stop() == 0);
}
