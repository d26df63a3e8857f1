// The host side of the runner protocol, shared by nsbox run and the daemon:
// driven over a real channel (make_channel's two pipes) against a fake
// runtime that writes hand-made reply frames and reads what the host sent.
#include "rootfs/runner_client.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <optional>
#include <string>

using namespace nsbox;
using nlohmann::json;

namespace {

// Processes that write frames ignore SIGPIPE (make_channel says so).
struct IgnoreSigpipe {
  void (*old)(int) = signal(SIGPIPE, SIG_IGN);
  ~IgnoreSigpipe() { signal(SIGPIPE, old); }
};

struct FakeRuntime {
  ChannelEnds ends;
  FrameDecoder host_decoder;  // the host's, kept across calls as a Worker keeps it

  FakeRuntime() {
    auto e = make_channel();
    REQUIRE(e);
    ends = std::move(e.value());
  }
  RunnerChannel channel() {
    RunnerChannel ch;
    ch.to_runner = ends.host.to_runner.get();
    ch.from_runner = ends.host.from_runner.get();
    ch.decoder = &host_decoder;
    return ch;
  }
  // A reply, written before the host asks: it fits the pipe.
  void reply(const std::string& envelope, const std::string& payload = "") {
    raw(encode_frame(envelope, payload));
  }
  void raw(const std::string& bytes) {
    REQUIRE(write(ends.runner_out.get(), bytes.data(), bytes.size()) == ssize_t(bytes.size()));
  }
  // The request the host wrote, or nullopt when it wrote none.
  std::optional<Frame> request() {
    FrameDecoder d;
    FrameRead fr = read_frame(ends.runner_in.get(), d, monotonic_ms() + 100);
    if (fr.status != ReadStatus::Ok) return std::nullopt;
    return fr.frame;
  }
};

uint64_t in(int ms) {
  return monotonic_ms() + ms;
}

RunnerInvoke request(const std::string& id = "req-1") {
  RunnerInvoke r;
  r.id = id;
  r.function_name = "fn.py";
  r.function_version = "$LATEST";
  r.memory_mb = 128;
  return r;
}

const std::string kError =
    R"({"errorType":"ValueError","errorMessage":"boom","stackTrace":["  File x"]})"
    "\n";

}  // namespace

TEST_CASE("runner client: invoke writes the event as it is and takes this request's result") {
  FakeRuntime rt;
  rt.reply(R"({"type":"result","id":"req-1","ok":true})", "[1,2]\n");
  uint64_t before = static_cast<uint64_t>(wall_ms());
  Outcome o = runner_invoke(rt.channel(), request(), R"({"k": 1})", in(5000));
  CHECK(o.kind == Outcome::Ok);
  CHECK(o.payload == "[1,2]\n");
  CHECK_FALSE(o.proxy);
  CHECK(o.reusable());

  auto sent = rt.request();
  REQUIRE(sent);
  CHECK(sent->payload == R"({"k": 1})");  // not re-serialised
  json env = json::parse(sent->envelope);
  CHECK(env["type"] == "invoke");
  CHECK(env["id"] == "req-1");
  CHECK_FALSE(env.contains("http"));  // nsbox run prints a proxy-shaped result whole
  CHECK(env["context"]["function_name"] == "fn.py");
  CHECK(env["context"]["function_version"] == "$LATEST");
  CHECK(env["context"]["memory_limit_mb"] == 128);
  CHECK(env["context"]["request_id"] == "req-1");
  // Wall-clock ms of the deadline, which is 5 s away.
  uint64_t deadline = env["context"]["deadline_ms"].get<uint64_t>();
  CHECK(deadline >= before + 4900);
  CHECK(deadline <= static_cast<uint64_t>(wall_ms()) + 5100);
}

TEST_CASE("runner client: a proxy response only when the request asked for one") {
  const std::string env = R"({"type":"result","id":"req-1","ok":true,"statusCode":201})";
  SUBCASE("http: statusCode in the envelope, the body as opaque bytes") {
    FakeRuntime rt;
    rt.reply(env, "not json \xff");
    RunnerInvoke req = request();
    req.http = true;
    Outcome o = runner_invoke(rt.channel(), req, "{}", in(5000));
    CHECK(o.kind == Outcome::Ok);
    CHECK(o.proxy);
    CHECK(o.payload == "not json \xff");
    CHECK(o.envelope["statusCode"] == 201);
    auto sent = rt.request();
    REQUIRE(sent);
    CHECK(json::parse(sent->envelope)["http"] == true);
  }
  SUBCASE("no http: the payload is the result, and it is not JSON") {
    FakeRuntime rt;
    rt.reply(env, "not json \xff");
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK(o.broke_protocol);
    CHECK(o.message.find("not valid JSON") != std::string::npos);
  }
}

TEST_CASE("runner client: a result with an integer beyond a double's range is passed on") {
  // math.factorial(200), 2**1100: Python encodes them, a client may want them.
  FakeRuntime rt;
  rt.reply(R"({"type":"result","id":"req-1","ok":true})", "[" + std::string(400, '7') + "]");
  Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
  CHECK(o.kind == Outcome::Ok);
  CHECK(o.payload.size() == 402);
}

TEST_CASE("runner client: a result nested deeper than 256 is the function's error, not a break") {
  const std::string env = R"({"type":"result","id":"req-1","ok":true})";
  // 257-1024 go through the validator (big integers and all), deeper
  // through the JSON library.
  for (int depth : {256, 257, 1024, 1025, 5000}) {
    CAPTURE(depth);
    FakeRuntime rt;
    rt.reply(env, std::string(size_t(depth), '[') + std::string(size_t(depth), ']'));
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    if (depth == 256) {
      CHECK(o.kind == Outcome::Ok);
      continue;
    }
    CHECK(o.kind == Outcome::BadResult);
    CHECK_FALSE(o.broke_protocol);
    json err = json::parse(o.payload);
    CHECK(err["errorType"] == "ValueError");
    CHECK(err["errorMessage"].get<std::string>().find("nested deeper than 256") !=
          std::string::npos);
  }
  // Deep with an integer beyond a double's range, as Python encodes 10**400.
  {
    FakeRuntime rt;
    rt.reply(env, std::string(300, '[') + "1" + std::string(400, '0') + std::string(300, ']'));
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::BadResult);
  }
  // Deep, but not JSON: a frame the function forged, not a result the
  // runtime encoded. Its sandbox is not given another request.
  for (const std::string& forged : {std::string(300, '[') + "garbage", std::string(300, '[')}) {
    FakeRuntime rt;
    rt.reply(env, forged);
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK(o.broke_protocol);
    CHECK(o.message.find("not valid JSON") != std::string::npos);
  }
}

TEST_CASE("runner client: errors the function raised, and results it could not serialise") {
  SUBCASE("exception") {
    FakeRuntime rt;
    rt.reply(
        R"({"type":"result","id":"req-1","ok":false,"kind":"exception","errorType":"ValueError"})",
        kError);
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::Raised);
    CHECK(o.error_kind == "exception");
    CHECK(o.error_type == "ValueError");
    CHECK(o.message == "ValueError");
    CHECK(o.payload == kError);
    CHECK(o.reusable());
  }
  SUBCASE("bad_result") {
    FakeRuntime rt;
    rt.reply(
        R"({"type":"result","id":"req-1","ok":false,"kind":"bad_result","errorType":"TypeError"})",
        kError);
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::BadResult);
    CHECK(o.error_type == "TypeError");
  }
  SUBCASE("an error payload that is not a JSON object is a broken protocol") {
    for (const char* payload : {"", "[1]", "{\"a\":", "\"text\""}) {
      CAPTURE(payload);
      FakeRuntime rt;
      rt.reply(R"({"type":"result","id":"req-1","ok":false,"kind":"exception"})", payload);
      Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
      CHECK(o.kind == Outcome::Died);
      CHECK(o.broke_protocol);
      CHECK_FALSE(o.reusable());
    }
  }
}

TEST_CASE("runner client: an event the runtime cannot decode is the caller's fault") {
  FakeRuntime rt;
  rt.reply(R"({"type":"error","kind":"bad_request","id":"req-1","errorMessage":"too deep"})");
  Outcome o = runner_invoke(rt.channel(), request(), "[[[]]]", in(5000));
  CHECK(o.kind == Outcome::BadEvent);
  CHECK(o.message == "too deep");
  CHECK(o.reusable());
}

TEST_CASE("runner client: a reply to another request is a broken protocol") {
  // Function code can write frames of its own on the reply pipe.
  for (const char* env : {R"({"type":"result","id":"req-0","ok":true})",
                          R"({"type":"result","ok":true})", R"({"type":"result","id":1,"ok":true})",
                          R"({"type":"error","kind":"bad_request","id":"req-0"})",
                          R"({"type":"error","kind":"bad_request"})"}) {
    CAPTURE(env);
    FakeRuntime rt;
    rt.reply(env, "1\n");
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK(o.broke_protocol);
    CHECK(o.message.find("another request") != std::string::npos);
  }
  FakeRuntime rt;
  rt.reply(R"({"type":"error","kind":"not_loaded","id":"req-1"})");
  Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
  CHECK(o.kind == Outcome::Died);
  CHECK(o.broke_protocol);
}

TEST_CASE("runner client: an envelope that is not a JSON object is a broken protocol") {
  for (const char* env : {"[1]", "{", "", "\"result\"", "{\"type\":\"result\",\"id\":\"req-1\""}) {
    CAPTURE(env);
    FakeRuntime rt;
    rt.reply(env, "1\n");
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK(o.broke_protocol);
    CHECK(o.message.find("not a JSON object") != std::string::npos);
  }
}

TEST_CASE("runner client: a reply over the frame limit is a broken protocol naming the limit") {
  FakeRuntime rt;
  std::string header = encode_frame("{}").substr(0, 4);  // envelope length 2
  header += std::string{0, char(0x60), 0, 1};            // payload length 6 MiB + 1
  rt.raw(header + "{}");
  Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
  CHECK(o.kind == Outcome::Died);
  CHECK(o.broke_protocol);
  CHECK(o.message.find(std::to_string(kMaxPayload)) != std::string::npos);
}

TEST_CASE("runner client: no reply by the deadline is a timeout") {
  FakeRuntime rt;
  uint64_t t0 = monotonic_ms();
  Outcome o = runner_invoke(rt.channel(), request(), "{}", in(50));
  CHECK(o.kind == Outcome::Timeout);
  CHECK(monotonic_ms() - t0 >= 50);
  CHECK_FALSE(o.reusable());
}

TEST_CASE("runner client: a closed channel is a death, not a broken protocol") {
  IgnoreSigpipe quiet;
  SUBCASE("the reply pipe closes") {
    FakeRuntime rt;
    rt.ends.runner_out.reset();
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK_FALSE(o.broke_protocol);
  }
  SUBCASE("the request pipe closes") {
    FakeRuntime rt;
    rt.ends.runner_in.reset();
    Outcome o = runner_invoke(rt.channel(), request(), "{}", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK_FALSE(o.broke_protocol);
    CHECK(o.message.find("request channel") != std::string::npos);
  }
}

TEST_CASE("runner client: a request beyond the protocol's bounds is not sent") {
  FakeRuntime rt;
  SUBCASE("request id") {
    Outcome o =
        runner_invoke(rt.channel(), request(std::string(kMaxRequestId + 1, 'r')), "{}", in(5000));
    CHECK(o.kind == Outcome::TooLarge);
  }
  SUBCASE("function name") {
    RunnerInvoke req = request();
    req.function_name = std::string(kMaxFunctionName + 1, 'n');
    CHECK(runner_invoke(rt.channel(), req, "{}", in(5000)).kind == Outcome::TooLarge);
  }
  SUBCASE("event") {
    Outcome o = runner_invoke(rt.channel(), request(), std::string(kMaxPayload + 1, ' '), in(5000));
    CHECK(o.kind == Outcome::TooLarge);
    CHECK(o.reusable());  // nothing was written: the channel is still in step
  }
  CHECK_FALSE(rt.request());
}

TEST_CASE("runner client: the longest names still make an envelope the runtime can parse") {
  // Every byte of the strings escaped (controls) or replaced (not UTF-8).
  FakeRuntime rt;
  RunnerInvoke req = request(std::string(kMaxRequestId, '\x01'));
  req.function_name = std::string(kMaxFunctionName, '\xff');
  req.function_version = std::string(kMaxFunctionVersion, '"');
  rt.reply(R"({"type":"result","id":"x","ok":true})", "1\n");
  Outcome o = runner_invoke(rt.channel(), req, "{}", in(5000));
  CHECK(o.kind == Outcome::Died);  // the fake replied to another id
  auto sent = rt.request();
  REQUIRE(sent);
  CHECK(sent->envelope.size() <= kMaxEnvelope);
  json env = json::parse(sent->envelope, nullptr, false);
  REQUIRE(env.is_object());
  CHECK(env["id"] == req.id);
  CHECK(env["context"]["function_version"] == req.function_version);
  // Not UTF-8: each byte becomes U+FFFD.
  std::string name = env["context"]["function_name"];
  CHECK(name.size() == kMaxFunctionName * 3);
  CHECK(name.substr(0, 3) == "\xef\xbf\xbd");
}

TEST_CASE("runner client: a non-UTF-8 file name keeps its UTF-8 parts") {
  FakeRuntime rt;
  RunnerInvoke req = request();
  req.function_name = "caf\xc3\xa9-\xe9.py";  // UTF-8 é, then a Latin-1 é
  rt.reply(R"({"type":"result","id":"req-1","ok":true})", "1\n");
  CHECK(runner_invoke(rt.channel(), req, "{}", in(5000)).kind == Outcome::Ok);
  auto sent = rt.request();
  REQUIRE(sent);
  CHECK(json::parse(sent->envelope)["context"]["function_name"] == "caf\xc3\xa9-\xef\xbf\xbd.py");
}

TEST_CASE("runner client: the channel's decoder keeps what arrived after a reply") {
  // Two replies in one write: the second is the next call's.
  FakeRuntime rt;
  rt.raw(encode_frame(R"({"type":"result","id":"a","ok":true})", "1\n") +
         encode_frame(R"({"type":"result","id":"b","ok":true})", "2\n"));
  Outcome a = runner_invoke(rt.channel(), request("a"), "{}", in(5000));
  Outcome b = runner_invoke(rt.channel(), request("b"), "{}", in(5000));
  CHECK(a.kind == Outcome::Ok);
  CHECK(a.payload == "1\n");
  CHECK(b.kind == Outcome::Ok);
  CHECK(b.payload == "2\n");
}

TEST_CASE("runner client: the side fd is serviced while a reply is awaited") {
  FakeRuntime rt;
  int log[2];
  REQUIRE(pipe(log) == 0);
  REQUIRE(write(log[1], "printed\n", 8) == 8);
  std::string drained;
  RunnerChannel ch = rt.channel();
  ch.side_fd = log[0];
  ch.on_side = [&] {
    char buf[64];
    ssize_t n = read(log[0], buf, sizeof buf);
    if (n > 0) drained.append(buf, size_t(n));
    return true;
  };
  // No reply: the wait runs to its deadline, reading the log meanwhile.
  CHECK(runner_invoke(ch, request(), "{}", in(100)).kind == Outcome::Timeout);
  CHECK(drained == "printed\n");
  close(log[0]);
  close(log[1]);
}

TEST_CASE("runner client: load sends the source and reads ready or a load error") {
  SUBCASE("ready") {
    FakeRuntime rt;
    rt.reply(R"({"type":"ready"})");
    Outcome o = runner_load(rt.channel(), "/var/task/f.py", "h", "def h(e, c): pass\n", in(5000));
    CHECK(o.kind == Outcome::Ok);
    auto sent = rt.request();
    REQUIRE(sent);
    json env = json::parse(sent->envelope);
    CHECK(env == json({{"type", "load"}, {"function", "/var/task/f.py"}, {"handler", "h"}}));
    CHECK(sent->payload == "def h(e, c): pass\n");
  }
  SUBCASE("the module raised") {
    FakeRuntime rt;
    rt.reply(
        R"({"type":"load_error","kind":"import","errorType":"MemoryError","errorMessage":"m"})",
        kError);
    Outcome o = runner_load(rt.channel(), "/var/task/f.py", "h", "x", in(5000));
    CHECK(o.kind == Outcome::LoadFailed);
    CHECK(o.error_kind == "import");
    CHECK(o.error_type == "MemoryError");
    CHECK(o.message == "m");
    CHECK(o.payload == kError);
    CHECK_FALSE(o.reusable());
  }
  SUBCASE("wrongly typed fields read as defaults") {
    FakeRuntime rt;
    rt.reply(R"({"type":"load_error","kind":"syntax","line":"seven","errorType":7})", kError);
    Outcome o = runner_load(rt.channel(), "/var/task/f.py", "h", "x", in(5000));
    CHECK(o.kind == Outcome::LoadFailed);
    CHECK(o.error_type == "SyntaxError");
    CHECK(o.line == 0);
  }
  SUBCASE("a load error without its error object is a broken protocol") {
    FakeRuntime rt;
    rt.reply(R"({"type":"load_error","kind":"syntax","line":3})");
    Outcome o = runner_load(rt.channel(), "/var/task/f.py", "h", "x", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK(o.broke_protocol);
  }
  SUBCASE("any other reply is a broken protocol") {
    FakeRuntime rt;
    rt.reply(R"({"type":"result","id":"1","ok":true})", "1\n");
    Outcome o = runner_load(rt.channel(), "/var/task/f.py", "h", "x", in(5000));
    CHECK(o.kind == Outcome::Died);
    CHECK(o.broke_protocol);
  }
}

TEST_CASE("runner client: the unprompted load reply of a runtime started with --function") {
  FakeRuntime rt;
  rt.reply(
      R"({"type":"load_error","kind":"syntax","errorType":"IndentationError","errorMessage":"e","line":4})",
      kError);
  Outcome o = runner_await_load(rt.channel(), in(5000));
  CHECK(o.kind == Outcome::LoadFailed);
  CHECK(o.error_kind == "syntax");
  CHECK(o.error_type == "IndentationError");
  CHECK(o.line == 4);
  CHECK_FALSE(rt.request());  // nothing asked
}

TEST_CASE("runner client: check reads checked or a syntax error, and nothing else") {
  SUBCASE("checked") {
    FakeRuntime rt;
    rt.reply(R"({"type":"checked"})");
    CHECK(runner_check(rt.channel(), "/var/task/f.py", "x = 1\n", in(5000)).kind == Outcome::Ok);
    auto sent = rt.request();
    REQUIRE(sent);
    CHECK(json::parse(sent->envelope) == json({{"type", "check"}, {"function", "/var/task/f.py"}}));
    CHECK(sent->payload == "x = 1\n");
  }
  SUBCASE("a syntax error names its line") {
    FakeRuntime rt;
    rt.reply(R"({"type":"load_error","kind":"syntax","errorMessage":"bad","line":3})", kError);
    Outcome o = runner_check(rt.channel(), "/var/task/f.py", "x = (\n", in(5000));
    CHECK(o.kind == Outcome::SyntaxError);
    CHECK(o.line == 3);
    CHECK(o.result == json({{"error", "bad"}, {"line", 3}}));
  }
  SUBCASE("anything else is a broken protocol, not a syntax error") {
    for (const char* env : {R"({"type":"ready"})", R"({"type":"load_error","kind":"import"})",
                            R"({"type":"error","kind":"bad_request"})"}) {
      CAPTURE(env);
      FakeRuntime rt;
      rt.reply(env, kError);
      Outcome o = runner_check(rt.channel(), "/var/task/f.py", "x", in(5000));
      CHECK(o.kind == Outcome::Died);
      CHECK(o.broke_protocol);
    }
  }
}
