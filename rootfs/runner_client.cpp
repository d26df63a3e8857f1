#include "rootfs/runner_client.hpp"

#include <cerrno>

#include "rootfs/json_check.hpp"
#include "rootfs/runner_reply.hpp"

namespace nsbox {

using json = nlohmann::json;

namespace {

constexpr int kMaxNesting = kMaxReplyNesting;

// The invoke envelope's variable parts are bounded (each string escaped to
// at most 6 bytes a byte, three integers of at most 20 digits), so every
// event the caller accepted (<= kMaxPayload) fits a frame.
constexpr size_t kMaxInvokeEnvelope =
    256 + 6 * (kMaxFunctionName + kMaxFunctionVersion + 2 * kMaxRequestId) + 3 * 20;
static_assert(kMaxInvokeEnvelope <= kMaxEnvelope);

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t utf8_length(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp, min;
  if ((c & 0xe0) == 0xc0) {
    n = 2, cp = c & 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3, cp = c & 0x0f, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; k++) {
    unsigned char b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

// A JSON string literal of s, written out rather than built as a document
// (invoke is on every request; a document costs an allocation per node).
// Names and ids are ASCII in the daemon, but nsbox run's function name is a
// file name, which may be any bytes: what is not UTF-8 becomes U+FFFD, so
// the runtime always gets JSON it can parse. A path the runtime opens
// (os_path) keeps such a byte as Python's surrogateescape does (PEP 383:
// U+DC80..U+DCFF), so that open() finds the file's very bytes.
void append_json_string(std::string& out, const std::string& s, bool os_path = false) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      i++;
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      i++;
    } else if (size_t n = utf8_length(s, i)) {
      out.append(s, i, n);
      i += n;
    } else if (os_path && c >= 0x80) {
      out += "\\udc";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      i++;
    } else {
      out += "\\ufffd";
      i++;
    }
  }
  out += '"';
}

Outcome outcome(Outcome::Kind kind, std::string message = {}) {
  Outcome o;
  o.kind = kind;
  o.message = std::move(message);
  return o;
}

Outcome broke(const std::string& what) {
  Outcome o = outcome(Outcome::Died, "the sandbox broke protocol: " + what);
  o.broke_protocol = true;
  return o;
}

// An error object as the runtime sends it: passed on as it is (the daemon's
// 500 body, nsbox run's stdout), so it must be a valid JSON object.
bool valid_error_payload(const std::string& payload) {
  return json_first_byte(payload) == '{' && json_valid(payload, kMaxNesting);
}

// An error reply's summary fields; wrongly typed ones read as defaults.
void take_error_fields(Outcome& o, const json& env) {
  o.error_kind = reply_str(env, "kind");
  o.error_type = reply_str(env, "errorType", o.error_kind == "syntax" ? "SyntaxError" : "");
  o.line = reply_int(env, "line", 0);
}

// A runtime that stops reading must not hold its caller forever: the
// write waits only until the deadline.
Outcome send(const RunnerChannel& ch, const std::string& envelope, const std::string& payload,
             uint64_t deadline_ms) {
  Status s = write_frame(ch.to_runner, envelope, payload, deadline_ms);
  if (s) return outcome(Outcome::Ok);
  // Refused before a byte was written: the channel is still in step.
  if (s.error().err == 0) return outcome(Outcome::TooLarge, s.error().detail);
  if (s.error().err == ETIMEDOUT) return outcome(Outcome::Timeout, "timed out");
  return outcome(Outcome::Died, "the sandbox closed its request channel");
}

struct Reply {
  json envelope;  // a JSON object
  std::string payload;
};

// Anything but a well-formed frame whose envelope is a JSON object, in
// time, means the runtime can no longer be trusted. The payload is left as
// it came.
Outcome receive(const RunnerChannel& ch, uint64_t deadline_ms, Reply* reply) {
  FrameRead fr = read_frame(ch.from_runner, *ch.decoder, deadline_ms, ch.side_fd, ch.on_side);
  if (fr.status == ReadStatus::Timeout) return outcome(Outcome::Timeout, "timed out");
  if (fr.status == ReadStatus::Error && fr.error.step == "frame")
    return broke("reply " + fr.error.detail);
  if (fr.status != ReadStatus::Ok) return outcome(Outcome::Died, "the sandbox died");
  auto env = parse_envelope(fr.frame.envelope);
  if (!env)
    return broke("the envelope is not a JSON object (nested at most " +
                 std::to_string(kMaxNesting) + " deep)");
  reply->envelope = std::move(*env);
  reply->payload = std::move(fr.frame.payload);
  return outcome(Outcome::Ok);
}

Outcome classify_load(Reply& r) {
  std::string type = reply_str(r.envelope, "type");
  if (type == "ready") return outcome(Outcome::Ok);
  if (type != "load_error") return broke("a bad reply to load");
  if (!valid_error_payload(r.payload)) return broke("the load error is not a JSON object");
  Outcome o = outcome(Outcome::LoadFailed,
                      reply_str(r.envelope, "errorMessage", "loading the function failed"));
  take_error_fields(o, r.envelope);
  o.payload = std::move(r.payload);
  return o;
}

Outcome classify_check(Reply& r) {
  std::string type = reply_str(r.envelope, "type");
  if (type == "checked") return outcome(Outcome::Ok);
  if (type != "load_error" || reply_str(r.envelope, "kind") != "syntax")
    return broke("a bad reply to check");
  if (!valid_error_payload(r.payload)) return broke("the syntax error is not a JSON object");
  Outcome o = outcome(Outcome::SyntaxError, reply_str(r.envelope, "errorMessage", "syntax error"));
  take_error_fields(o, r.envelope);
  auto line = r.envelope.find("line");
  o.result = {{"error", o.message},
              {"line", line != r.envelope.end() && line->is_number_integer() ? *line : json()}};
  return o;
}

Outcome classify_invoke(Reply& r, const RunnerInvoke& req) {
  const json& env = r.envelope;
  // Checked first: whatever the reply says, it must answer this request.
  // Function code can write frames of its own before the runtime's answer.
  if (reply_str(env, "id") != req.id) return broke("a reply to another request");
  std::string type = reply_str(env, "type");
  if (type == "error" && reply_str(env, "kind") == "bad_request") {
    // The runtime could not decode an event that is valid JSON (e.g. an
    // integer beyond Python's 4300-digit limit): the caller's fault, and
    // the runtime is unharmed.
    return outcome(Outcome::BadEvent,
                   reply_str(env, "errorMessage", "the runtime could not decode the event"));
  }
  if (type != "result") return broke("an unexpected reply to invoke");
  if (reply_bool(env, "ok", false)) {
    Outcome o = outcome(Outcome::Ok);
    if (req.http && env.contains("statusCode")) {
      // A proxy response's body is opaque bytes, typed by its own
      // Content-Type; the caller checks the status and headers.
      o.proxy = true;
    } else if (!json_valid(r.payload, kMaxNesting)) {
      // Passed on as the result (200 application/json, or nsbox run's
      // stdout) without being parsed: it must be JSON. One the runtime
      // encoded but nested deeper than anything passes on is the
      // function's mistake, as a result it cannot encode is: its sandbox
      // is unharmed. Only if it is JSON but for its depth: a forged frame
      // of 300 '[' and garbage is a broken protocol like any other. Python
      // encodes up to its recursion limit (1000 unless raised), which the
      // validator's own bound covers with big integers and all; deeper,
      // the JSON library's iterative parser decides (it refuses integers
      // beyond a double's range).
      if (json_shape(r.payload, kMaxNesting).depth > kMaxNesting &&
          (json_valid(r.payload, kMaxValidatorDepth) || json_error(r.payload).empty())) {
        Outcome o = outcome(Outcome::BadResult, "ValueError");
        o.error_kind = "bad_result";
        o.error_type = "ValueError";
        const std::string why = "the result is nested deeper than " + std::to_string(kMaxNesting) +
                                " levels of arrays and objects, " + "the most nsbox passes on";
        o.payload =
            json{{"errorType", "ValueError"}, {"errorMessage", why}, {"stackTrace", json::array()}}
                .dump();
        return o;
      }
      return broke("the result is not valid JSON");
    }
    o.envelope = std::move(r.envelope);
    o.payload = std::move(r.payload);  // no copy of a large result
    return o;
  }
  if (!valid_error_payload(r.payload)) return broke("the error is not a JSON object");
  Outcome o;
  take_error_fields(o, env);
  o.kind = o.error_kind == "bad_result" ? Outcome::BadResult : Outcome::Raised;
  if (o.error_type.empty()) o.error_type = "Runtime.Error";
  o.message = o.error_type;
  o.payload = std::move(r.payload);
  return o;
}

// The wall-clock time of a monotonic deadline, for the context the
// function sees (get_remaining_time_in_millis).
uint64_t wall_deadline_ms(uint64_t deadline_ms) {
  uint64_t now = monotonic_ms();
  uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
  return static_cast<uint64_t>(wall_ms()) + left;
}

}  // namespace

Outcome runner_load(const RunnerChannel& ch, const std::string& path, const std::string& handler,
                    const std::string& source, uint64_t deadline_ms) {
  // The source travels as the payload, as it is: no JSON escaping, so a
  // source of N bytes needs exactly N bytes of the frame.
  std::string env = "{\"type\":\"load\",\"function\":";
  append_json_string(env, path, /*os_path=*/true);
  env += ",\"handler\":";
  append_json_string(env, handler);
  env += '}';
  Outcome o = send(ch, env, source, deadline_ms);
  if (o.kind != Outcome::Ok) return o;
  return runner_await_load(ch, deadline_ms);
}

Outcome runner_await_load(const RunnerChannel& ch, uint64_t deadline_ms) {
  Reply r;
  Outcome o = receive(ch, deadline_ms, &r);
  if (o.kind != Outcome::Ok) return o;
  return classify_load(r);
}

Outcome runner_check(const RunnerChannel& ch, const std::string& path, const std::string& source,
                     uint64_t deadline_ms) {
  std::string env = "{\"type\":\"check\",\"function\":";
  append_json_string(env, path);
  env += '}';
  Outcome o = send(ch, env, source, deadline_ms);
  if (o.kind != Outcome::Ok) return o;
  Reply r;
  o = receive(ch, deadline_ms, &r);
  if (o.kind != Outcome::Ok) return o;
  return classify_check(r);
}

Outcome runner_invoke(const RunnerChannel& ch, const RunnerInvoke& req,
                      const std::string& event_json, uint64_t deadline_ms,
                      const std::function<void()>& sent) {
  if (req.id.size() > kMaxRequestId || req.function_name.size() > kMaxFunctionName ||
      req.function_version.size() > kMaxFunctionVersion)
    return outcome(Outcome::TooLarge,
                   "request id, function name or version beyond the protocol's bounds");
  // The event goes as the payload, as the caller validated it.
  std::string env;
  env.reserve(kMaxInvokeEnvelope);
  env += "{\"type\":\"invoke\",";
  if (req.http) env += "\"http\":true,";
  env += "\"id\":";
  append_json_string(env, req.id);
  env += ",\"context\":{\"function_name\":";
  append_json_string(env, req.function_name);
  env += ",\"function_version\":";
  append_json_string(env, req.function_version);
  env += ",\"memory_limit_mb\":";
  env += std::to_string(req.memory_mb);
  env += ",\"request_id\":";
  append_json_string(env, req.id);
  if (deadline_ms) {
    env += ",\"deadline_ms\":";
    env += std::to_string(wall_deadline_ms(deadline_ms));
  }
  env += "}}";
  Outcome o = send(ch, env, event_json, deadline_ms);
  if (o.kind != Outcome::Ok) return o;
  if (sent) sent();
  Reply r;
  o = receive(ch, deadline_ms, &r);
  if (o.kind != Outcome::Ok) return o;
  return classify_invoke(r, req);
}

}  // namespace nsbox
