#include "gateway/invoker.hpp"

#include <unistd.h>

#include <algorithm>

namespace nsbox {

namespace {

uint64_t to_monotonic_ms(Clock::time_point t) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return monotonic_ms() + static_cast<uint64_t>(std::max<int64_t>(left, 0));
}

// The log pipe is drained while the reply is awaited, so a function that
// prints more than the pipe holds still answers; drain_log keeps only the
// tail, and the function's deadline bounds the draining.
RunnerChannel channel_of(Worker& w) {
  RunnerChannel ch;
  ch.to_runner = w.channel.to_runner.get();
  ch.from_runner = w.channel.from_runner.get();
  ch.decoder = &w.decoder;
  ch.side_fd = w.log.get();
  ch.on_side = [&w] {
    w.pending_log = drain_log(w);
    return true;
  };
  return ch;
}

// The runner flushes its output before replying, and the wait for the reply
// drained the pipe as it filled; what it still holds (up to the pipe's 1 MiB,
// rootless 64 KiB)
// belongs to this exchange, not to the next one's log line.
Outcome finish(Worker& w, Outcome o) {
  w.pending_log = drain_log(w, 64);
  return o;
}

}  // namespace

std::string function_path(const std::string& name) {
  return "/var/task/" + name + ".py";
}

Outcome load_function(Worker& w, const FunctionVersion& fv, Clock::time_point deadline) {
  return finish(w, runner_load(channel_of(w), function_path(fv.meta.name), fv.meta.handler,
                               fv.source, to_monotonic_ms(deadline)));
}

Outcome check_syntax(Worker& w, const std::string& name, const std::string& source,
                     Clock::time_point deadline) {
  return runner_check(channel_of(w), function_path(name), source, to_monotonic_ms(deadline));
}

Outcome invoke(Worker& w, const FunctionMeta& meta, const std::string& event_json,
               const std::string& request_id, uint64_t memory_mb, Clock::time_point deadline,
               const std::function<void()>& sent) {
  RunnerInvoke req;
  req.id = request_id;
  req.function_name = meta.name;
  req.function_version = std::to_string(meta.version);
  req.memory_mb = memory_mb;
  req.http = true;
  return finish(w, runner_invoke(channel_of(w), req, event_json, to_monotonic_ms(deadline), sent));
}

std::string drain_log(Worker& w, int max_reads) {
  std::string out = std::move(w.pending_log);
  w.pending_log.clear();
  char buf[16384];
  for (int i = 0; i < max_reads; i++) {  // bounded: a writer may never pause
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
