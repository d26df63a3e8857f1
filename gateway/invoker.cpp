#include "gateway/invoker.hpp"

#include <sys/time.h>
#include <unistd.h>

namespace nsbox {

using json = nlohmann::json;

namespace {

uint64_t to_monotonic_ms(Clock::time_point t) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return monotonic_ms() + static_cast<uint64_t>(std::max<int64_t>(left, 0));
}

// One request-reply exchange; anything but a well-formed JSON object reply
// in time means the sandbox can no longer be trusted.
Outcome exchange_text(Worker& w, const std::string& request, Clock::time_point deadline,
                      json* reply) {
  Outcome o;
  if (auto s = write_frame(w.channel.get(), request); !s) {
    o.kind = Outcome::Died;
    o.message = "the sandbox closed its request channel";
    return o;
  }
  FrameRead fr = read_frame(w.channel.get(), w.decoder, to_monotonic_ms(deadline), w.log.get(),
                            [&w] { w.pending_log += drain_log(w); });
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

std::string function_path(const std::string& name) { return "/var/task/" + name + ".py"; }

Outcome load_function(Worker& w, const FunctionVersion& fv, Clock::time_point deadline) {
  json reply;
  Outcome o = exchange(w,
                       {{"type", "load"},
                        {"function", function_path(fv.meta.name)},
                        {"handler", fv.meta.handler},
                        {"source", fv.source}},
                       deadline, &reply);
  if (o.kind != Outcome::Ok) return o;
  if (reply.value("type", "") == "ready") return o;
  o.kind = Outcome::LoadFailed;
  o.result = {{"errorType", reply.value("errorType", "Runtime.LoadError")},
              {"errorMessage", reply.value("errorMessage", "")},
              {"stackTrace", reply.value("stackTrace", json::array())}};
  o.message = reply.value("errorMessage", "loading the function failed");
  return o;
}

Outcome check_syntax(Worker& w, const std::string& name, const std::string& source,
                     Clock::time_point deadline) {
  json reply;
  Outcome o = exchange(w, {{"type", "check"}, {"function", function_path(name)}, {"source", source}},
                       deadline, &reply);
  if (o.kind != Outcome::Ok) return o;
  if (reply.value("type", "") == "checked") return o;
  o.kind = Outcome::SyntaxError;
  o.message = reply.value("errorMessage", "syntax error");
  o.result = {{"error", o.message}, {"line", reply.value("line", json())}};
  return o;
}

Outcome invoke(Worker& w, const FunctionMeta& meta, const std::string& event_json,
               const std::string& request_id, uint64_t memory_mb, Clock::time_point deadline) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  uint64_t deadline_ms = uint64_t(tv.tv_sec) * 1000 + tv.tv_usec / 1000 + std::max<int64_t>(left, 0);
  json head = {{"type", "invoke"},
               {"id", request_id},
               {"context",
                {{"function_name", meta.name},
                 {"function_version", std::to_string(meta.version)},
                 {"memory_limit_mb", memory_mb},
                 {"request_id", request_id},
                 {"deadline_ms", deadline_ms}}}};
  // {"context":...,"id":...,"type":"invoke"} + ,"event":EVENT}
  std::string frame = head.dump();
  frame.pop_back();
  frame += ",\"event\":";
  frame += event_json;
  frame += '}';
  json reply;
  Outcome o = exchange_text(w, frame, deadline, &reply);
  if (o.kind != Outcome::Ok) return o;
  if (reply.value("type", "") != "result" || reply.value("id", json()) != request_id) {
    o.kind = Outcome::Died;
    o.message = "the sandbox broke protocol";
    return o;
  }
  if (reply.value("ok", false)) {
    o.result = reply.value("result", json());
    return o;
  }
  o.kind = reply.value("kind", "") == "bad_result" ? Outcome::BadResult : Outcome::Raised;
  o.result = reply.value("error", json::object());
  o.message = o.result.value("errorMessage", "");
  return o;
}

std::string drain_log(Worker& w) {
  std::string out = std::move(w.pending_log);
  w.pending_log.clear();
  char buf[16384];
  for (int i = 0; i < 128; i++) {  // bounded: a writer may never pause
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
