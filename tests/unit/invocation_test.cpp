// The request path of POST /fn/NAME (gateway/invocation.cpp) without a
// kernel sandbox: an in-memory function store, the real Pool, and a fake
// SandboxFactory whose sandboxes are pipes served by a thread that speaks
// the runner protocol (docs/runner-protocol.md). What the fake runner does
// is chosen by the deployed "source" (a word, see FakeRunners::serve), so a
// warm sandbox keeps doing what its deploy says.
#include "gateway/invocation.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace nsbox;
using namespace std::chrono_literals;
using json = nlohmann::json;
using O = InvokeResult::Outcome;

namespace {

constexpr uint64_t kMemory = 64ull << 20;
const std::string kErrorObject =
    R"({"errorType":"ValueError","errorMessage":"no","stackTrace":["f.py:2"]})"
    "\n";

// Versions and deploy numbers as the file store assigns them: one deploy
// sequence for every put() and remove().
class MemoryStore final : public FunctionStore {
 public:
  Result<FunctionMeta> put(const std::string& name, const FunctionVersion& fv) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto& versions = functions_[name];
    FunctionVersion v = fv;
    v.meta.name = name;
    v.meta.version = versions.empty() ? 1 : versions.rbegin()->first + 1;
    v.meta.deploy = ++deploys_;
    v.meta.source_bytes = fv.source.size();
    versions[v.meta.version] = v;
    return v.meta;
  }
  std::optional<FunctionMeta> latest_meta(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end() || it->second.empty()) return std::nullopt;
    return it->second.rbegin()->second.meta;
  }
  std::optional<FunctionVersion> get(const std::string& name, uint64_t version) override {
    if (before_get) {
      auto hook = std::move(before_get);
      before_get = nullptr;
      hook();
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = functions_.find(name);
    if (unreadable || it == functions_.end()) return std::nullopt;
    auto v = it->second.find(version);
    if (v == it->second.end()) return std::nullopt;
    return v->second;
  }
  std::vector<FunctionMeta> list() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<FunctionMeta> out;
    for (const auto& [n, vs] : functions_) out.push_back(vs.rbegin()->second.meta);
    return out;
  }
  std::vector<uint64_t> versions(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint64_t> out;
    for (const auto& [v, fv] : functions_[name]) out.push_back(v);
    return out;
  }
  Result<uint64_t> remove(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (functions_.erase(name) == 0) return uint64_t(0);
    return ++deploys_;
  }

  // Runs once, at the next get(), before it reads: what happened in the
  // store while a request waited for its sandbox.
  std::function<void()> before_get;
  // Every version file fails to load, as a damaged store's would.
  bool unreadable = false;

 private:
  std::mutex mu_;
  std::map<std::string, std::map<uint64_t, FunctionVersion>> functions_;
  uint64_t deploys_ = 0;
};

// Each sandbox is two pipes and a log pipe, served by a thread; destroy()
// only records the id, as the sandbox's fds close when the pool drops its
// Worker, which ends the thread.
class FakeRunners final : public SandboxFactory {
 public:
  FakeRunners() { signal(SIGPIPE, SIG_IGN); }  // write_frame wants EPIPE, not a signal
  ~FakeRunners() override {
    for (auto& t : threads_) t.join();
  }
  Result<SpawnedSandbox> spawn(uint32_t, uint64_t memory) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      spawn_memory_.push_back(memory);
    }
    auto ends = make_channel();
    if (!ends) return ends.error();
    int log[2];
    if (pipe2(log, O_CLOEXEC) != 0) return sys_error("pipe2", "log");
    fcntl(log[0], F_SETFL, O_NONBLOCK);    // drain_log reads without waiting
    fcntl(log[0], F_SETPIPE_SZ, 1 << 20);  // as the spawner's
    SpawnedSandbox s;
    s.id = ++spawned_;
    s.channel = std::move(ends.value().host);
    s.log.reset(log[0]);
    std::lock_guard<std::mutex> lock(mu_);
    threads_.emplace_back([this, id = s.id, in = std::move(ends.value().runner_in),
                           out = std::move(ends.value().runner_out),
                           log = UniqueFd(log[1])] { serve(id, in.get(), out.get(), log.get()); });
    return s;
  }
  Status set_memory(uint64_t, uint64_t) override { return {}; }
  Result<CgroupEvents> events(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    CgroupEvents ev;
    ev.oom_kills = oom_killed_.count(id);
    return ev;
  }
  Status destroy(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    destroyed_.insert(id);
    cv_.notify_all();
    return {};
  }
  bool healthy() override { return true; }

  int spawned() const { return spawned_.load(); }
  // The memory limit each spawn asked for, in order.
  std::vector<uint64_t> spawn_memory() {
    std::lock_guard<std::mutex> lock(mu_);
    return spawn_memory_;
  }
  int loads() const { return loads_.load(); }
  // Waits (bounded) for the pool's janitor to destroy n sandboxes.
  bool wait_destroyed(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return destroyed_.size() >= n; });
  }
  size_t destroyed() {
    std::lock_guard<std::mutex> lock(mu_);
    return destroyed_.size();
  }
  // The "gated" script: waits (bounded) until n requests are held at the
  // gate, and lets them all answer.
  bool wait_gated(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return gated_ >= n; });
  }
  int gated() {
    std::lock_guard<std::mutex> lock(mu_);
    return gated_;
  }
  void open_gate() {
    std::lock_guard<std::mutex> lock(mu_);
    gate_open_ = true;
    cv_.notify_all();
  }

 private:
  // A write that fails ends nothing here: the host then sees no reply, and
  // the test its outcome. (No doctest assertion may throw on this thread.)
  static void reply(int out, const json& envelope, const std::string& payload = {}) {
    (void)write_frame(out, envelope.dump(), payload);
  }

  // The scripts, by the deployed source:
  //   "return X"  prints a line, then answers X (JSON text)
  //   "gated X"   prints a line, waits for open_gate(), then answers X
  //   "echo"      answers the event
  //   "raise"     answers an exception (kErrorObject)
  //   "proxy"     answers a proxy response with hostile headers
  //   "break"     answers another request's id (a protocol break)
  //   "oom"       dies at once, its cgroup showing an OOM kill
  //   "hang"      never answers
  // A check answers a syntax error when the source says "syntax error",
  // waits for open_gate() first when it says "gated check", and dies of its
  // memory limit when it says "oom check".
  void serve(uint64_t id, int in, int out, int log) {
    FrameDecoder dec;
    std::string source;
    int invokes = 0;
    for (;;) {
      FrameRead fr = read_frame(in, dec, 0);
      if (fr.status != ReadStatus::Ok) return;  // the pool dropped the sandbox
      json env = json::parse(fr.frame.envelope);
      const std::string type = env.value("type", "");
      if (type == "check") {
        if (fr.frame.payload.find("gated check") != std::string::npos) {
          std::unique_lock<std::mutex> lock(mu_);
          gated_++;
          cv_.notify_all();
          cv_.wait_for(lock, 10s, [&] { return gate_open_; });
        }
        if (fr.frame.payload.find("oom check") != std::string::npos) {
          std::lock_guard<std::mutex> lock(mu_);
          oom_killed_.insert(id);
          return;
        }
        if (fr.frame.payload.find("syntax error") != std::string::npos)
          // As the runner: the summary in the envelope, the error object
          // as the payload.
          reply(out,
                {{"type", "load_error"},
                 {"kind", "syntax"},
                 {"errorMessage", "invalid syntax"},
                 {"line", 3}},
                R"({"errorType":"SyntaxError","errorMessage":"invalid syntax","stackTrace":[]})");
        else
          reply(out, {{"type", "checked"}});
        continue;
      }
      if (type == "load") {
        source = fr.frame.payload;
        loads_++;
        reply(out, {{"type", "ready"}});
        continue;
      }
      const std::string rid = env.value("id", "");
      if (source == "flood once" && invokes++ == 0) {
        // More than a reply's wait drains at a time, and no newline: as
        // much as the pipe holds stays behind when the reply comes.
        const std::string flood(600 << 10, 'x');
        (void)!write(log, flood.data(), flood.size());
        reply(out, {{"type", "result"}, {"id", rid}, {"ok", true}}, "1");
      } else if (source == "flood once") {
        std::string line = "hello from " + rid + "\n";
        (void)!write(log, line.data(), line.size());
        reply(out, {{"type", "result"}, {"id", rid}, {"ok", true}}, "2");
      } else if (source.rfind("return ", 0) == 0) {
        std::string line = "hello from " + rid + "\n";
        (void)!write(log, line.data(), line.size());
        reply(out, {{"type", "result"}, {"id", rid}, {"ok", true}}, source.substr(7));
      } else if (source.rfind("gated ", 0) == 0) {
        std::string line = "gated " + rid + "\n";
        (void)!write(log, line.data(), line.size());
        {
          std::unique_lock<std::mutex> lock(mu_);
          gated_++;
          cv_.notify_all();
          cv_.wait_for(lock, 10s, [&] { return gate_open_; });
        }
        reply(out, {{"type", "result"}, {"id", rid}, {"ok", true}}, source.substr(6));
      } else if (source == "echo") {
        reply(out, {{"type", "result"}, {"id", rid}, {"ok", true}}, fr.frame.payload);
      } else if (source == "raise") {
        reply(out,
              {{"type", "result"},
               {"id", rid},
               {"ok", false},
               {"kind", "exception"},
               {"errorType", "ValueError"}},
              kErrorObject);
      } else if (source == "proxy") {
        json headers = {{"Content-Length", "1"},
                        {"transfer-encoding", "chunked"},
                        {"Connection", "close"},
                        {"Proxy-Authorization", "x"},
                        {"X-Split", "a\r\nSet-Cookie: evil=1"},
                        {"X-Bare-Newline", "a\nb"},
                        {"X-Nul-Value", std::string("a\0b", 3)},
                        {"X-Vertical-Tab", "\vz"},
                        {"X-Escape", "\x1b[2J"},
                        {"X-Del", "a\x7f"},
                        {"X-Tab-And-Obs-Text", "a\tb \xc3\xa9"},
                        {"Bad Name", "x"},
                        // A C-string reader in front of us would see Content-Length.
                        {std::string("Content-Length\0x", 16), "5"},
                        // Ours: a forged request id would mislead whoever correlates logs.
                        {"X-Nsbox-Request-Id", "0000000000000000"},
                        {"x-nsbox-anything", "1"},
                        // Obeyed by nginx in front (an internal redirect to
                        // another route, with the client's headers).
                        {"X-Accel-Redirect", "/functions/victim/logs"},
                        {"x-accel-buffering", "no"},
                        // Act on the origin every function shares.
                        {"Clear-Site-Data", "\"*\""},
                        {"service-worker-allowed", "/"},
                        {"NEL", "{\"report_to\":\"t\",\"max_age\":31536000}"},
                        {"Report-To", "{\"group\":\"t\"}"},
                        {"Reporting-Endpoints", "t=\"https://x.example/r\""},
                        {"Alt-Svc", "h3=\":443\""},
                        {"Strict-Transport-Security", "max-age=1; includeSubDomains"},
                        {"Accept-CH", "Sec-CH-UA-Full-Version-List"},
                        {"critical-ch", "Sec-CH-UA-Model"},
                        {"Origin-Agent-Cluster", "?0"},
                        {"Set-Login", "logged-in"},
                        {"Shared-Storage-Write", "clear"},
                        {"Observe-Browsing-Topics", "?1"},
                        {"Attribution-Reporting-Register-Source", "{}"},
                        {"X-Good", "yes"},
                        {"X-Number", 7},
                        {"Content-Type", "text/plain"}};
        reply(out,
              {{"type", "result"},
               {"id", rid},
               {"ok", true},
               {"statusCode", 201},
               {"headers", headers}},
              "made");
      } else if (source == "break") {
        reply(out, {{"type", "result"}, {"id", "not-" + rid}, {"ok", true}}, "1");
      } else if (source == "oom") {
        std::lock_guard<std::mutex> lock(mu_);
        oom_killed_.insert(id);
        return;  // the thread's end closes the runner's ends: EOF for the host
      } else if (source != "hang") {
        return;  // no such script: the sandbox "dies", and the test sees Died
      }
    }
  }

  std::atomic<int> spawned_{0}, loads_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<uint64_t> destroyed_, oom_killed_;
  std::vector<uint64_t> spawn_memory_;
  int gated_ = 0;
  bool gate_open_ = false;
  std::vector<std::thread> threads_;
};

PoolLimits pool_limits() {
  PoolLimits l;
  l.blank = 0;  // every sandbox is spawned by the request that needs it
  l.max_sandboxes = 8;
  l.per_function = 4;
  l.memory_budget_bytes = 1ull << 40;
  l.idle_timeout_ms = 600000;
  l.freeze_idle_ms = 0;
  return l;
}

std::vector<ProfileInfo> profiles() {
  ProfileInfo p;
  p.name = "default";
  p.policy.limits.memory_bytes = kMemory;
  p.policy.limits.wall_ms = 5000;
  return {p};
}

// Declared in teardown order: the pool drops its sandboxes (ending the fake
// runners) before the factory joins their threads.
struct Rig {
  FakeRunners factory;
  MemoryStore store;
  Pool pool{factory, pool_limits(), {kMemory}, [] { return MemoryReading{}; }};
  LogStore logs{100, 1 << 20};
  Invocations invocations{store, pool, factory, logs, profiles()};
  int requests = 0;

  Rig() { pool.start(); }
  ~Rig() { pool.stop(); }

  FunctionMeta deploy(const std::string& name, const std::string& source,
                      const std::string& policy = "default", uint64_t timeout_ms = 0) {
    FunctionVersion fv;
    fv.source = source;
    fv.meta.policy = policy;
    fv.meta.timeout_ms = timeout_ms;
    auto put = store.put(name, fv);
    REQUIRE(put);
    return put.value();
  }
  InvokeResult call(const std::string& name, const std::string& event = "") {
    InvokeRequest req;
    req.name = name;
    req.event = event;
    req.request_id = "req-" + std::to_string(++requests);
    req.queue_deadline = Clock::now() + 5s;
    return invocations.invoke(req);
  }
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("invocation: an unknown function is NotFound and leases nothing") {
  Rig rig;
  InvokeResult r = rig.call("nope");
  CHECK(r.outcome == O::NotFound);
  CHECK(r.message == "no function nope");
  CHECK_FALSE(r.leased);
  CHECK(rig.factory.spawned() == 0);
}

TEST_CASE("invocation: events that are not JSON or do not fit a frame are refused before a lease") {
  Rig rig;
  rig.deploy("f", "echo");
  InvokeResult bad = rig.call("f", "{not json");
  CHECK(bad.outcome == O::BadEvent);
  CHECK(
      bad.message ==
      "the body is not valid JSON: at line 1, column 3: invalid literal; expected string literal");
  // Valid JSON, but beyond what the runtime can take as a number: named as that.
  InvokeResult huge = rig.call("f", "[1e400]");
  CHECK(huge.outcome == O::BadEvent);
  CHECK(has(huge.message, "the number that ends at byte 6 is beyond a double's range"));
  InvokeResult big = rig.call("f", "\"" + std::string(kMaxPayload, 'x') + "\"");
  CHECK(big.outcome == O::TooLarge);
  CHECK(has(big.message, "the limit is 6291456"));
  CHECK(rig.factory.spawned() == 0);
}

TEST_CASE("invocation: a function whose policy is not loaded is NoPolicy") {
  Rig rig;
  rig.deploy("f", "echo", "gone");
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::NoPolicy);
  CHECK(has(r.message, "\"gone\""));
  CHECK(rig.factory.spawned() == 0);
}

TEST_CASE("invocation: a cold then a warm request answer Ok with the payload, loading once") {
  Rig rig;
  rig.deploy("f", "return {\"n\":1}");
  InvokeResult cold = rig.call("f");
  CHECK(cold.outcome == O::Ok);
  CHECK(cold.payload == "{\"n\":1}");
  CHECK(cold.leased);
  CHECK(cold.cold);
  InvokeResult warm = rig.call("f");
  CHECK(warm.outcome == O::Ok);
  CHECK(warm.payload == "{\"n\":1}");
  CHECK_FALSE(warm.cold);
  CHECK(rig.factory.spawned() == 1);
  CHECK(rig.factory.loads() == 1);
}

TEST_CASE("invocation: the event reaches the function as the client sent it; none is {}") {
  Rig rig;
  rig.deploy("f", "echo");
  CHECK(rig.call("f", "[1, \"two\"]").payload == "[1, \"two\"]");
  CHECK(rig.call("f").payload == "{}");
}

TEST_CASE("invocation: what the function printed goes to the log store under its request") {
  Rig rig;
  rig.deploy("f", "return 1");
  REQUIRE(rig.call("f").outcome == O::Ok);
  REQUIRE(rig.call("f").outcome == O::Ok);
  CHECK(rig.logs.get("f") == "[v1 req-1] hello from req-1\n[v1 req-2] hello from req-2\n");
}

TEST_CASE(
    "invocation: a request's output left in the pipe at its reply is its own, not the next's") {
  Rig rig;
  rig.deploy("f", "flood once");
  InvokeResult first = rig.call("f");
  REQUIRE_MESSAGE(first.outcome == O::Ok, first.message);
  REQUIRE(rig.call("f").outcome == O::Ok);
  REQUIRE(rig.factory.spawned() == 1);  // both in the same sandbox
  std::istringstream in(rig.logs.get("f"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() >= 2);
  CHECK(lines.back() == "[v1 req-2] hello from req-2");
  for (size_t i = 0; i + 1 < lines.size(); i++) CHECK(lines[i].rfind("[v1 req-1] ", 0) == 0);
}

TEST_CASE("invocation: what a request in flight prints after its function's delete is dropped") {
  Rig rig;
  FunctionVersion old;
  old.source = "gated 1";
  REQUIRE(rig.invocations.deploy("f", old));
  InvokeResult late;
  std::thread caller([&] { late = rig.call("f"); });
  REQUIRE(rig.factory.wait_gated(1));
  // Deleted, and deployed again under the same name (by anyone who may
  // deploy), while the old code still runs.
  REQUIRE(rig.invocations.remove("f"));
  FunctionVersion fresh;
  fresh.source = "return 2";
  REQUIRE(rig.invocations.deploy("f", fresh));
  rig.factory.open_gate();
  caller.join();
  CHECK(late.outcome == O::Ok);
  CHECK(rig.logs.get("f").empty());
  REQUIRE(rig.call("f").payload == "2");
  CHECK(rig.logs.get("f") == "[v1 req-2] hello from req-2\n");
}

TEST_CASE("invocation: a deploy between the lookup and the cold load is Stale; the sandbox goes") {
  Rig rig;
  rig.deploy("f", "return 1");
  // Delete and redeploy while the request waited: version 1 again, but
  // another deploy (new code, possibly new limits). The pool's revoke for it
  // has not arrived yet: only the deploy number tells them apart.
  rig.store.before_get = [&] {
    REQUIRE(rig.store.remove("f"));
    rig.deploy("f", "return 2");
  };
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::Stale);
  CHECK(r.message == "the function changed while this request waited; retry");
  CHECK(r.cold);
  CHECK(rig.factory.loads() == 0);  // the new code never went into the old deploy's sandbox
  CHECK(rig.pool.stats().idle == 0);
  CHECK(rig.factory.wait_destroyed(1));
  // The retry sees the new deploy.
  InvokeResult again = rig.call("f");
  CHECK(again.outcome == O::Ok);
  CHECK(again.payload == "2");
}

TEST_CASE("invocation: a request planned for a revoked deploy is Stale without a lease") {
  Rig rig;
  FunctionMeta m = rig.deploy("f", "return 1");
  rig.pool.revoke("f", m.deploy + 1, false);  // a newer deploy's revoke, its store write not seen
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::Stale);
  CHECK_FALSE(r.leased);
}

TEST_CASE("invocation: a version the store cannot read is StoreError, and no retry loop") {
  Rig rig;
  rig.deploy("f", "return 1");
  rig.store.unreadable = true;
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::StoreError);
  CHECK(has(r.message, "function store"));
  CHECK(rig.factory.wait_destroyed(1));
}

TEST_CASE("invocation: a function that raises is Raised with its error object; the sandbox stays") {
  Rig rig;
  rig.deploy("f", "raise");
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::Raised);
  CHECK(r.payload == kErrorObject);
  CHECK(rig.pool.stats().idle == 1);
  CHECK_FALSE(rig.call("f").cold);
}

TEST_CASE("invocation: a reply that breaks protocol is Died, and the sandbox is destroyed") {
  Rig rig;
  rig.deploy("f", "break");
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::Died);
  CHECK(r.message == "the sandbox broke protocol: a reply to another request");
  CHECK(rig.pool.stats().idle == 0);
  CHECK(rig.factory.wait_destroyed(1));
  CHECK(rig.call("f").cold);  // the next request gets a new sandbox
}

TEST_CASE("invocation: a sandbox killed by its memory limit says so") {
  Rig rig;
  rig.deploy("f", "oom");
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::Died);
  CHECK(r.message == "the sandbox died: memory limit of 64 MiB exceeded");
  CHECK(rig.factory.wait_destroyed(1));
}

TEST_CASE("invocation: a function past its timeout is Timeout, and the sandbox is destroyed") {
  Rig rig;
  rig.deploy("f", "hang", "default", 100);
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::Timeout);
  CHECK(r.message == "function timed out after 100 ms");
  CHECK(rig.factory.wait_destroyed(1));
}

TEST_CASE("invocation: a proxy response keeps its status and body, drops hostile headers") {
  Rig rig;
  rig.deploy("f", "proxy");
  InvokeResult r = rig.call("f");
  REQUIRE(r.outcome == O::Proxy);
  CHECK(r.status == 201);
  CHECK(r.payload == "made");
  CHECK(r.content_type == "text/plain");
  std::map<std::string, std::string> sent(r.headers.begin(), r.headers.end());
  CHECK(sent == std::map<std::string, std::string>{
                    {"X-Good", "yes"}, {"X-Number", "7"}, {"X-Tab-And-Obs-Text", "a\tb \xc3\xa9"}});
}

TEST_CASE("invocation: the sandbox goes back to the pool when the request path throws") {
  Rig rig;
  rig.deploy("f", "return 1");
  rig.store.before_get = [] { throw std::runtime_error("store exploded"); };
  CHECK_THROWS_AS(rig.call("f"), std::runtime_error);
  PoolStats s = rig.pool.stats();
  CHECK(s.busy == 0);
  CHECK(s.idle == 0);  // not known to be sound: destroyed
  CHECK(rig.factory.wait_destroyed(1));
}

TEST_CASE("invocation: the deploy check compiles in a blank that is destroyed afterwards") {
  Rig rig;
  CheckResult ok = rig.invocations.check("f", "return 1", 0, {}, Clock::now() + 5s);
  CHECK(ok.outcome == CheckResult::Outcome::Ok);
  CheckResult bad = rig.invocations.check("f", "a syntax error", 0, {}, Clock::now() + 5s);
  CHECK(bad.outcome == CheckResult::Outcome::SyntaxError);
  CHECK(bad.error == json{{"error", "invalid syntax"}, {"line", 3}});
  CHECK(rig.factory.wait_destroyed(2));
  CHECK(rig.pool.stats().blank == 0);
}

// Compiling a large module takes memory in proportion to it: checked at the
// profile's limit, a source that imports fine at its ?memory= was refused,
// and its 400 blamed the source rather than the limit.
TEST_CASE("invocation: the deploy check runs at the function's memory, and names a memory death") {
  Rig rig;
  FunctionMeta big;
  big.memory_mb = 512;
  CheckResult r = rig.invocations.check("f", "oom check", 0, big, Clock::now() + 5s);
  CHECK(r.outcome == CheckResult::Outcome::Failed);
  CHECK_MESSAGE(r.message.find("memory limit of 512 MiB exceeded") != std::string::npos, r.message);
  CHECK_MESSAGE(r.message.find("?memory=") != std::string::npos, r.message);
  const std::vector<uint64_t> spawns = rig.factory.spawn_memory();
  CHECK(std::count(spawns.begin(), spawns.end(), uint64_t{512} << 20) == 1);
  // Without ?memory=, the profile's own limit (64 MiB here), from a blank.
  CHECK(rig.invocations.check("f", "return 1", 0, {}, Clock::now() + 5s).outcome ==
        CheckResult::Outcome::Ok);
  CHECK(rig.factory.wait_destroyed(2));
  for (uint64_t m : rig.factory.spawn_memory()) CHECK((m == (64u << 20) || m == (512u << 20)));
}

TEST_CASE("invocation: at most four deploy checks at once; the others wait their turn") {
  Rig rig;
  constexpr int kChecks = Invocations::kConcurrentChecks + 2;
  std::vector<std::future<CheckResult>> checks;
  // Each with a queue time of 1 s, which those waiting their turn outlast:
  // the turn has a bound of its own, and the queue time starts after it.
  for (int i = 0; i < kChecks; i++)
    checks.push_back(std::async(std::launch::async, [&] {
      return rig.invocations.check("f", "gated check", 0, {}, Clock::now() + 1s);
    }));
  REQUIRE(rig.factory.wait_gated(Invocations::kConcurrentChecks));
  std::this_thread::sleep_for(1500ms);
  CHECK(rig.factory.gated() == Invocations::kConcurrentChecks);  // the others wait
  rig.factory.open_gate();
  for (auto& c : checks) CHECK(c.get().outcome == CheckResult::Outcome::Ok);
  CHECK(rig.factory.gated() == kChecks);
  // One that cannot get its turn by its deadline says so.
  Rig busy;
  std::vector<std::future<CheckResult>> held;
  for (int i = 0; i < Invocations::kConcurrentChecks; i++)
    held.push_back(std::async(std::launch::async, [&] {
      return busy.invocations.check("f", "gated check", 0, {}, Clock::now() + 5s);
    }));
  REQUIRE(busy.factory.wait_gated(Invocations::kConcurrentChecks));
  busy.invocations.set_check_turn_wait(100ms);
  CheckResult late = busy.invocations.check("f", "return 1", 0, {}, Clock::now() + 50ms);
  CHECK(late.outcome == CheckResult::Outcome::NoSandbox);
  CHECK(late.message.find("at most 4 at once") != std::string::npos);
  busy.factory.open_gate();
  for (auto& c : held) CHECK(c.get().outcome == CheckResult::Outcome::Ok);
}

TEST_CASE("invocation: a deploy or delete through the service revokes before it returns") {
  Rig rig;
  FunctionVersion v1;
  v1.source = "return {\"v\":1}";
  REQUIRE(rig.invocations.deploy("f", v1));
  REQUIRE(rig.call("f").payload == "{\"v\":1}");
  CHECK(rig.pool.stats().idle == 1);
  FunctionVersion v2;
  v2.source = "return {\"v\":2}";
  auto put = rig.invocations.deploy("f", v2);
  REQUIRE(put);
  CHECK(put.value().version == 2);
  // The old deploy's warm sandbox went with the revoke, before any request.
  CHECK(rig.pool.stats().idle == 0);
  InvokeResult r = rig.call("f");
  CHECK(r.payload == "{\"v\":2}");
  CHECK(r.cold);
  auto gone = rig.invocations.remove("f");
  REQUIRE(gone);
  CHECK(gone.value() > put.value().deploy);  // the delete's number, after the deploy's
  CHECK(rig.pool.stats().idle == 0);
  CHECK(rig.pool.stats().functions == 0);  // a deleted function leaves no pool entry
  CHECK(rig.logs.get("f").empty());
  CHECK(rig.call("f").outcome == O::NotFound);
  auto again = rig.invocations.remove("f");
  REQUIRE(again);
  CHECK(again.value() == 0);
}

TEST_CASE("invocation: a function whose latest version is damaged on disk is not served") {
  Rig rig;
  FunctionVersion fv;
  fv.source = "return 1";
  fv.meta.damaged = "version 3 of f cannot be read from the function store (...)";
  REQUIRE(rig.store.put("f", fv));
  InvokeResult r = rig.call("f");
  CHECK(r.outcome == O::StoreError);
  CHECK(r.message == fv.meta.damaged);
  CHECK(rig.factory.spawned() == 0);  // refused before any sandbox
}
