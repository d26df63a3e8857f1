#include "gateway/invoker.hpp"

#include <sys/time.h>
#include <unistd.h>

namespace nsbox {

using json = nlohmann::json;

namespace {

// Replies come from hostile code: read fields without ever throwing.
std::string str(const json& j, const char* key, const std::string& def = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

json field(const json& j, const char* key, json def) {
  auto it = j.find(key);
  return it != j.end() ? *it : def;
}

// nlohmann parses iteratively but copies and serialises recursively: a
// reply nested 100k deep would overflow the connection thread's stack.
bool nesting_within(const std::string& text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return true;
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

constexpr int kMaxNesting = 256;
constexpr size_t kMaxLogPerRequest = 1 << 20;  // drained per request; beyond, the pipe fills

uint64_t to_monotonic_ms(Clock::time_point t) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return monotonic_ms() + static_cast<uint64_t>(std::max<int64_t>(left, 0));
}

// One request-reply exchange; anything but a well-formed JSON object reply
// in time means the sandbox can no longer be trusted.
Outcome exchange_text(Worker& w, const std::string& request, Clock::time_point deadline,
                      json* reply) {
  Outcome o;
  // A sandbox that stops reading must not hold a connection thread forever.
  if (auto s = write_frame(w.channel.to_runner.get(), request, to_monotonic_ms(deadline)); !s) {
    o.kind = s.error().err == ETIMEDOUT ? Outcome::Timeout : Outcome::Died;
    o.message = s.error().err == ETIMEDOUT ? "timed out" : "the sandbox closed its request channel";
    return o;
  }
  // Past kMaxLogPerRequest the log pipe is left to fill: a function printing
  // without end then blocks itself, instead of costing the gateway a core.
  FrameRead fr = read_frame(w.channel.from_runner.get(), w.decoder, to_monotonic_ms(deadline),
                            w.log.get(), [&w] {
                              w.pending_log += drain_log(w);
                              return w.pending_log.size() < kMaxLogPerRequest;
                            });
  if (fr.status == ReadStatus::Timeout) {
    o.kind = Outcome::Timeout;
    o.message = "timed out";
    return o;
  }
  if (fr.status != ReadStatus::Ok) {
    o.kind = Outcome::Died;
    o.message = "the sandbox died";
    return o;
  }
  if (!nesting_within(fr.payload, kMaxNesting)) {
    o.kind = Outcome::Died;
    o.message = "the sandbox replied with JSON nested deeper than " + std::to_string(kMaxNesting);
    return o;
  }
  *reply = json::parse(fr.payload, nullptr, false);
  if (!reply->is_object()) {
    o.kind = Outcome::Died;
    o.message = "the sandbox broke protocol";
    return o;
  }
  o.kind = Outcome::Ok;
  return o;
}

Outcome exchange(Worker& w, const json& request, Clock::time_point deadline, json* reply) {
  return exchange_text(w, request.dump(), deadline, reply);
}

}  // namespace

std::string function_path(const std::string& name) {
  return "/var/task/" + name + ".py";
}

Outcome load_function(Worker& w, const FunctionVersion& fv, Clock::time_point deadline) {
  json reply;
  Outcome o = exchange(w,
                       {{"type", "load"},
                        {"function", function_path(fv.meta.name)},
                        {"handler", fv.meta.handler},
                        {"source", fv.source}},
                       deadline, &reply);
  if (o.kind != Outcome::Ok) return o;
  if (str(reply, "type") == "ready") return o;
  o.kind = Outcome::LoadFailed;
  o.result = {{"errorType", str(reply, "errorType", "Runtime.LoadError")},
              {"errorMessage", str(reply, "errorMessage")},
              {"stackTrace", field(reply, "stackTrace", json::array())}};
  o.message = str(reply, "errorMessage", "loading the function failed");
  return o;
}

Outcome check_syntax(Worker& w, const std::string& name, const std::string& source,
                     Clock::time_point deadline) {
  json reply;
  Outcome o =
      exchange(w, {{"type", "check"}, {"function", function_path(name)}, {"source", source}},
               deadline, &reply);
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
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  uint64_t deadline_ms =
      uint64_t(tv.tv_sec) * 1000 + tv.tv_usec / 1000 + std::max<int64_t>(left, 0);
  // Written out rather than built as a json document: this is on every
  // request, and a document costs an allocation per node. The event is
  // spliced in as the caller validated it.
  std::string frame;
  frame.reserve(192 + meta.name.size() + 2 * request_id.size() + event_json.size());
  frame += "{\"type\":\"invoke\",\"id\":";
  append_json_string(frame, request_id);
  frame += ",\"context\":{\"function_name\":";
  append_json_string(frame, meta.name);
  frame += ",\"function_version\":\"";
  frame += std::to_string(meta.version);
  frame += "\",\"memory_limit_mb\":";
  frame += std::to_string(memory_mb);
  frame += ",\"request_id\":";
  append_json_string(frame, request_id);
  frame += ",\"deadline_ms\":";
  frame += std::to_string(deadline_ms);
  frame += "},\"event\":";
  frame += event_json;
  frame += '}';
  json reply;
  Outcome o = exchange_text(w, frame, deadline, &reply);
  if (o.kind != Outcome::Ok) return o;
  if (str(reply, "type") == "error" && str(reply, "kind") == "bad_request") {
    // The runtime could not decode an event that is valid JSON (e.g. an
    // integer beyond Python's 4300-digit limit): the client's fault, and
    // the sandbox is unharmed.
    o.kind = Outcome::BadEvent;
    o.message = str(reply, "errorMessage", "the runtime could not decode the event");
    return o;
  }
  if (str(reply, "type") != "result" || str(reply, "id") != request_id) {
    o.kind = Outcome::Died;
    o.message = "the sandbox broke protocol";
    return o;
  }
  auto ok = reply.find("ok");
  if (ok != reply.end() && ok->is_boolean() && ok->get<bool>()) {
    auto result = reply.find("result");
    if (result != reply.end()) o.result = std::move(*result);  // no copy of a large result
    return o;
  }
  o.kind = str(reply, "kind") == "bad_result" ? Outcome::BadResult : Outcome::Raised;
  json error = field(reply, "error", json::object());
  if (!error.is_object()) error = json::object();
  o.result = {{"errorType", str(error, "errorType", "Runtime.Error")},
              {"errorMessage", str(error, "errorMessage")},
              {"stackTrace", field(error, "stackTrace", json::array())}};
  o.message = str(error, "errorMessage");
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
