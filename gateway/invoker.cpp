#include "gateway/invoker.hpp"

#include <sys/time.h>
#include <unistd.h>

#include "rootfs/json_check.hpp"
#include "rootfs/runner_reply.hpp"

namespace nsbox {

using json = nlohmann::json;

namespace {

std::string str(const json& j, const char* key, const std::string& def = "") {
  return reply_str(j, key, def);
}

json field(const json& j, const char* key, json def) {
  auto it = j.find(key);
  return it != j.end() ? *it : def;
}

// A JSON string literal of s. Names and request ids are ASCII already; any
// other byte >= 0x20 passes through (the caller hands us UTF-8).
void append_json_string(std::string& out, const std::string& s) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

constexpr int kMaxNesting = kMaxReplyNesting;

// The invoke envelope's variable parts are bounded (a function name is at
// most 63 of [a-z0-9_-], a request id at most kMaxRequestId bytes, each
// escaped to at most 6 bytes a byte, three integers of at most 20 digits),
// so every event the HTTP front accepts (<= kMaxPayload) fits a frame.
constexpr size_t kMaxInvokeEnvelope = 256 + 63 * 6 + 2 * kMaxRequestId * 6 + 3 * 20;
static_assert(kMaxInvokeEnvelope <= kMaxEnvelope);

uint64_t to_monotonic_ms(Clock::time_point t) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return monotonic_ms() + static_cast<uint64_t>(std::max<int64_t>(left, 0));
}

Outcome died(const std::string& why) {
  Outcome o;
  o.kind = Outcome::Died;
  o.message = why;
  return o;
}

// One request-reply exchange; anything but a well-formed frame whose
// envelope is a JSON object, in time, means the sandbox can no longer be
// trusted. The payload is left as it came.
Outcome exchange(Worker& w, const std::string& envelope, const std::string& payload,
                 Clock::time_point deadline, json* reply, std::string* reply_payload) {
  Outcome o;
  // A sandbox that stops reading must not hold a connection thread forever.
  if (auto s = write_frame(w.channel.to_runner.get(), envelope, payload, to_monotonic_ms(deadline));
      !s) {
    if (s.error().err == 0) {
      // Refused before a byte was written: the channel is still in step.
      o.kind = Outcome::TooLarge;
      o.message = s.error().detail;
      return o;
    }
    o.kind = s.error().err == ETIMEDOUT ? Outcome::Timeout : Outcome::Died;
    o.message = s.error().err == ETIMEDOUT ? "timed out" : "the sandbox closed its request channel";
    return o;
  }
  // The log pipe is drained while the reply is awaited, so a function that
  // prints more than the pipe holds still answers; drain_log keeps only the
  // tail, and the function's deadline bounds the draining.
  FrameRead fr = read_frame(w.channel.from_runner.get(), w.decoder, to_monotonic_ms(deadline),
                            w.log.get(), [&w] {
                              w.pending_log = drain_log(w);
                              return true;
                            });
  if (fr.status == ReadStatus::Timeout) {
    o.kind = Outcome::Timeout;
    o.message = "timed out";
    return o;
  }
  if (fr.status == ReadStatus::Error && fr.error.step == "frame")
    return died("the sandbox broke protocol: reply " + fr.error.detail);
  if (fr.status != ReadStatus::Ok) return died("the sandbox died");
  auto parsed = parse_envelope(fr.frame.envelope);
  if (!parsed)
    return died("the sandbox broke protocol: the envelope is not a JSON object (nested at most " +
                std::to_string(kMaxNesting) + " deep)");
  *reply = std::move(*parsed);
  *reply_payload = std::move(fr.frame.payload);
  o.kind = Outcome::Ok;
  return o;
}

// An error object as the runner sends it: forwarded to the client as it is,
// so it must be a valid JSON object.
bool valid_error_payload(const std::string& payload) {
  return json_first_byte(payload) == '{' && json_valid(payload, kMaxNesting);
}

}  // namespace

std::string function_path(const std::string& name) {
  return "/var/task/" + name + ".py";
}

Outcome load_function(Worker& w, const FunctionVersion& fv, Clock::time_point deadline) {
  json reply;
  std::string payload;
  // The source travels as the payload, as it is: no JSON escaping, so a
  // source of kMaxSourceBytes needs exactly that much of the frame.
  json env = {
      {"type", "load"}, {"function", function_path(fv.meta.name)}, {"handler", fv.meta.handler}};
  Outcome o = exchange(w, env.dump(), fv.source, deadline, &reply, &payload);
  if (o.kind != Outcome::Ok) return o;
  if (str(reply, "type") == "ready") return o;
  if (str(reply, "type") != "load_error" || !valid_error_payload(payload))
    return died("the sandbox broke protocol: a bad reply to load");
  o.kind = Outcome::LoadFailed;
  o.payload = std::move(payload);
  o.message = str(reply, "errorMessage", "loading the function failed");
  return o;
}

Outcome check_syntax(Worker& w, const std::string& name, const std::string& source,
                     Clock::time_point deadline) {
  json reply;
  std::string payload;
  Outcome o = exchange(w, json({{"type", "check"}, {"function", function_path(name)}}).dump(),
                       source, deadline, &reply, &payload);
  if (o.kind != Outcome::Ok) return o;
  if (str(reply, "type") == "checked") return o;
  o.kind = Outcome::SyntaxError;
  o.message = str(reply, "errorMessage", "syntax error");
  json line = field(reply, "line", json());
  o.result = {{"error", o.message}, {"line", line.is_number_integer() ? line : json()}};
  return o;
}

Outcome invoke(Worker& w, const FunctionMeta& meta, const std::string& event_json,
               const std::string& request_id, uint64_t memory_mb, Clock::time_point deadline) {
  if (request_id.size() > kMaxRequestId || meta.name.size() > 63) {
    Outcome o;
    o.kind = Outcome::TooLarge;
    o.message = "request id or function name beyond the protocol's bounds";
    return o;
  }
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  uint64_t deadline_ms =
      uint64_t(tv.tv_sec) * 1000 + tv.tv_usec / 1000 + std::max<int64_t>(left, 0);
  // Written out rather than built as a json document: this is on every
  // request, and a document costs an allocation per node. The event goes as
  // the payload, as the caller validated it. "http": a proxy-shaped result
  // comes back as statusCode and headers in the envelope, the body as the
  // payload.
  std::string env;
  env.reserve(kMaxInvokeEnvelope);
  env += "{\"type\":\"invoke\",\"http\":true,\"id\":";
  append_json_string(env, request_id);
  env += ",\"context\":{\"function_name\":";
  append_json_string(env, meta.name);
  env += ",\"function_version\":\"";
  env += std::to_string(meta.version);
  env += "\",\"memory_limit_mb\":";
  env += std::to_string(memory_mb);
  env += ",\"request_id\":";
  append_json_string(env, request_id);
  env += ",\"deadline_ms\":";
  env += std::to_string(deadline_ms);
  env += "}}";
  json reply;
  std::string payload;
  Outcome o = exchange(w, env, event_json, deadline, &reply, &payload);
  if (o.kind != Outcome::Ok) return o;
  if (str(reply, "type") == "error" && str(reply, "kind") == "bad_request") {
    // The runtime could not decode an event that is valid JSON (e.g. an
    // integer beyond Python's 4300-digit limit): the client's fault, and
    // the sandbox is unharmed.
    o.kind = Outcome::BadEvent;
    o.message = str(reply, "errorMessage", "the runtime could not decode the event");
    return o;
  }
  if (str(reply, "type") != "result" || str(reply, "id") != request_id)
    return died("the sandbox broke protocol: a reply to another request");
  auto ok = reply.find("ok");
  if (ok != reply.end() && ok->is_boolean() && ok->get<bool>()) {
    if (reply.contains("statusCode")) {
      // A proxy response's body is opaque bytes, typed by its own
      // Content-Type; server.cpp checks the status and headers.
      o.proxy = true;
    } else if (!json_valid(payload, kMaxNesting)) {
      // The gateway answers 200 application/json with this text: it must be
      // JSON, as it was when the daemon parsed every result.
      return died(
          "the sandbox broke protocol: the result is not valid JSON (or nested deeper than " +
          std::to_string(kMaxNesting) + ")");
    }
    o.envelope = std::move(reply);
    o.payload = std::move(payload);  // no copy of a large result
    return o;
  }
  if (!valid_error_payload(payload))
    return died("the sandbox broke protocol: the error is not a JSON object");
  o.kind = str(reply, "kind") == "bad_result" ? Outcome::BadResult : Outcome::Raised;
  o.message = str(reply, "errorType", "Runtime.Error");
  o.payload = std::move(payload);
  return o;
}

std::string drain_log(Worker& w) {
  std::string out = std::move(w.pending_log);
  w.pending_log.clear();
  char buf[16384];
  for (int i = 0; i < 16; i++) {  // bounded: a writer may never pause
    ssize_t n = read(w.log.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  // Keep the tail: the ring keeps only the last lines anyway, and a function
  // printing without end must not grow the gateway's memory.
  constexpr size_t kKeep = 256 << 10;
  if (out.size() > kKeep) out = "[... output truncated ...]\n" + out.substr(out.size() - kKeep);
  return out;
}

}  // namespace nsbox
