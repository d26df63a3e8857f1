// Issue 8, items 10 and 11, over real HTTP: a function's answer cannot blow
// up the daemon (results pass through unparsed; memory bounded and given
// back), and the body limit and the frame limit agree (an event the HTTP
// front accepts never costs a sandbox).
#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.hpp"

using nlohmann::json;
using nsbox::test::auth;
using nsbox::test::Daemon;
using nsbox::test::StateDir;

namespace {

// No blank sandboxes: every spawn is a request's, so the counter moves only
// when a request needed a new sandbox.
const char* kPool =
    "[pool]\nblank = 0\nmax_sandboxes = 16\nper_function = 4\nqueue_timeout_ms = 60000\n";
constexpr size_t kMaxBody = 6144 << 10;  // [server] max_body_kb's default

int deploy(const Daemon& d, const std::string& name, const std::string& source,
           const std::string& query = "") {
  auto r =
      d.client()->Put(("/functions/" + name + query).c_str(), auth(d), source, "text/x-python");
  if (r && r->status != 201) MESSAGE("deploy " << name << ": " << r->status << " " << r->body);
  return r ? r->status : 0;
}

long long metric(const Daemon& d, const std::string& line_prefix) {
  auto m = d.client()->Get("/metrics", auth(d));
  REQUIRE(m);
  auto at = m->body.find("\n" + line_prefix + " ");
  REQUIRE_MESSAGE(at != std::string::npos, line_prefix);
  return std::stoll(m->body.substr(at + line_prefix.size() + 2));
}

long long status_kib(pid_t pid, const std::string& key) {
  const std::string v = nsbox::test::proc_status(pid, key);
  return v.empty() ? -1 : std::stoll(v);
}

// A JSON string event of exactly n bytes.
std::string string_event(size_t n) {
  return "\"" + std::string(n - 2, 'e') + "\"";
}

}  // namespace

TEST_CASE("serve: an event just under the body limit is served, not a dead sandbox (item 11)") {
  StateDir sd("limit");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  auto c = d.client(120);
  for (const std::string policy : {"default", "strict"}) {
    CAPTURE(policy);
    std::string name = "len-" + policy;
    REQUIRE(deploy(d, name, "def handler(e, c):\n    return len(e)\n",
                   "?policy=" + policy + "&memory=256M&timeout=60s") == 201);
    auto warm = c->Post(("/fn/" + name).c_str(), "\"x\"", "application/json");
    REQUIRE(warm);
    REQUIRE(warm->status == 200);
    long long spawned = metric(d, "nsbox_pool_spawned_total");
    // max_body - 1 bytes: the invoke frame's envelope (context, id) comes on
    // top, and once overflowed the frame: 502 and a destroyed sandbox.
    for (size_t n : {kMaxBody - 1, kMaxBody}) {
      CAPTURE(n);
      auto r = c->Post(("/fn/" + name).c_str(), string_event(n), "application/json");
      REQUIRE(r);
      CHECK(r->status == 200);
      CHECK(r->body == std::to_string(n - 2) + "\n");
    }
    // The front answers 413 from the head (Content-Length) and closes
    // without reading the body, so a client still sending may see the
    // connection end before it reads the answer: either is a refusal.
    auto over = c->Post(("/fn/" + name).c_str(), string_event(kMaxBody + 1), "application/json");
    if (over) CHECK(over->status == 413);
    CHECK(metric(d, "nsbox_pool_spawned_total") == spawned);
  }
  // The deploy path: a 1 MiB source (the deploy limit) of bytes JSON would
  // escape six-fold, which once made the check and load frames overflow.
  std::string source = "def handler(e, c):\n    return 'loaded'\n# ";
  source += std::string((1 << 20) - source.size() - 1, '\x01');
  source += "\n";
  REQUIRE(source.size() == 1 << 20);
  CHECK(deploy(d, "controls", source) == 201);
  auto r = c->Get("/fn/controls");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "\"loaded\"\n");
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a sandbox that sent more than its reply is not given another request") {
  StateDir sd("more-than-reply");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  auto c = d.client(60);
  // Its own reply, forged on the reply pipe (fd 4) by the handler, followed
  // by empty frames: the runner's reply then comes after them.
  REQUIRE(deploy(d, "more", R"PY(import os
def handler(e, c):
    if e.get('forge'):
        env = b'{"type":"result","id":"' + c.aws_request_id.encode() + b'","ok":true}'
        body = b'"forged"'
        head = len(env).to_bytes(4, 'big') + len(body).to_bytes(4, 'big')
        os.write(4, head + env + body + bytes(8) * 200)
    return 'plain'
)PY") == 201);
  auto r = c->Post("/fn/more", R"({"forge": true})", "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.starts_with("\"forged\""));
  const long long spawned = metric(d, "nsbox_pool_spawned_total");
  for (int i = 0; i < 3; i++) {
    r = c->Post("/fn/more", "{}", "application/json");
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 200, r->body);
    CHECK(r->body.starts_with("\"plain\""));
  }
  // One new sandbox for the three: the forger's was destroyed, not reused.
  CHECK(metric(d, "nsbox_pool_spawned_total") == spawned + 1);
  CHECK(d.stop() == 0);
}

TEST_CASE("serve: a reply over the frame limit is a 502 naming it; a non-JSON result never a 200") {
  StateDir sd("forge");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  auto c = d.client(60);
  // Frames forged on the reply pipe (fd 4) by the function itself: the
  // runner refuses oversized results, so only such code can send one.
  REQUIRE(deploy(d, "over",
                 "import os, time\ndef handler(e, c):\n"
                 "    os.write(4, (2).to_bytes(4, 'big') + (6 * 1024 * 1024 + 1).to_bytes(4, "
                 "'big') + b'{}')\n    time.sleep(30)\n") == 201);
  auto r = c->Get("/fn/over");
  REQUIRE(r);
  CHECK(r->status == 502);
  CHECK(r->body.find("6291456") != std::string::npos);
  CHECK(r->body.find("limit") != std::string::npos);
  REQUIRE(deploy(d, "notjson",
                 "import os, time\ndef handler(e, c):\n"
                 "    env = b'{\"type\":\"result\",\"id\":\"' + c.aws_request_id.encode() + "
                 "b'\",\"ok\":true}'\n    body = b'{\"a\": \\xff}'\n"
                 "    os.write(4, len(env).to_bytes(4, 'big') + len(body).to_bytes(4, 'big') "
                 "+ env + body)\n    time.sleep(30)\n") == 201);
  r = c->Get("/fn/notjson");
  REQUIRE(r);
  CHECK(r->status == 502);
  CHECK(r->body.find("not valid JSON") != std::string::npos);
  // A proxy response's body is bytes typed by its own Content-Type: binary
  // through isBase64Encoded, passed as it is.
  REQUIRE(deploy(d, "binary",
                 "def handler(e, c):\n    return {'statusCode': 200, 'isBase64Encoded': True, "
                 "'headers': {'Content-Type': 'application/octet-stream', 'X-Ok': 'y'}, "
                 "'body': 'AP8Kgw=='}\n") == 201);
  r = c->Get("/fn/binary");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == std::string("\x00\xff\n\x83", 4));
  CHECK(r->get_header_value("Content-Type") == "application/octet-stream");
  CHECK(r->get_header_value("X-Ok") == "y");
  CHECK(c->Get("/healthz")->status == 200);
  CHECK(d.stop() == 0);
}

TEST_CASE(
    "serve: concurrent 5 MB replies pass through; the daemon's memory is bounded and given back") {
  StateDir sd("mem");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  constexpr size_t kSize = 5000000;
  constexpr int kClients = 8, kRounds = 2;
  REQUIRE(deploy(d, "big",
                 "R = 'x' * " + std::to_string(kSize - 2) + "\ndef handler(e, c):\n    return R\n",
                 "?timeout=60s") == 201);
  REQUIRE(d.client(120)->Get("/fn/big")->status == 200);
  const pid_t pid = d.pid();
  long long rss0 = status_kib(pid, "VmRSS"), hwm0 = status_kib(pid, "VmHWM");
  REQUIRE(rss0 > 0);
  int good = 0;
  for (int round = 0; round < kRounds; round++) {
    std::vector<std::thread> ts;
    std::vector<int> ok(kClients, 0);
    for (int i = 0; i < kClients; i++)
      ts.emplace_back([&, i] {
        auto r = d.client(120)->Get("/fn/big");
        ok[i] = r && r->status == 200 && r->body.size() == kSize + 1 && r->body[0] == '"' &&
                r->body[kSize - 1] == '"';
      });
    for (auto& t : ts) t.join();
    for (int v : ok) good += v;
  }
  CHECK(good == kClients * kRounds);
  long long hwm = status_kib(pid, "VmHWM"), rss = status_kib(pid, "VmRSS");
  MESSAGE("daemon VmRSS " << rss0 / 1024 << " MiB idle, peak VmHWM " << hwm / 1024 << " MiB under "
                          << kClients << " concurrent 5 MB replies, VmRSS after " << rss / 1024
                          << " MiB");
  // One copy per reply in flight (the payload buffer, moved into the
  // response) and slack; a parsed copy and its re-serialisation cost four.
  CHECK(hwm - std::max(hwm0, rss0) < (kClients * 6 + 24) * 1024);
  // Reply buffers are their own mappings, returned when freed. A client has
  // the whole body before the connection thread that sent it frees the
  // buffer: on a loaded machine that thread may not have run yet.
  CHECK(nsbox::test::wait_until(
      [&] { return (rss = status_kib(pid, "VmRSS")) - rss0 < 24 * 1024; }, 10000,
      "the daemon to give the reply buffers back (VmRSS within 24 MiB of idle)"));
  MESSAGE("VmRSS once given back: " << rss / 1024 << " MiB");
  CHECK(d.stop() == 0);
}
