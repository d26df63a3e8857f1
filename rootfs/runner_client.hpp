// The host side of the runner protocol (docs/runner-protocol.md): how the
// load, check and invoke requests are written and what each reply means.
// `nsbox run` and the daemon both talk to a runtime through this file, so a
// reply means the same to both. A reply is written by the process that runs
// the function, so nothing in it is trusted: whatever the protocol does not
// allow is a broken protocol (Died), a result or an error is passed on only
// as valid JSON, and nothing here throws. Callers map the Outcome onto exit
// codes or HTTP statuses; this file knows neither, nor the pool.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "sandbox/framing.hpp"

namespace nsbox {

struct Outcome {
  enum Kind {
    Ok,           // payload holds the result's JSON text, or a proxy response's body
    Raised,       // the function raised: payload holds {errorType, errorMessage, stackTrace}
    BadResult,    // the result was not JSON-serialisable (or too large): payload as for Raised
    LoadFailed,   // the module body raised or the handler is missing: payload as for Raised
    SyntaxError,  // check(): result holds {error, line}
    BadEvent,     // the runtime could not decode the event (400); the sandbox is fine
    TooLarge,     // the request did not fit a frame and was not sent (413); the sandbox is fine
    Timeout,      // the deadline passed; the sandbox must be destroyed
    Died,         // the channel closed or broke protocol (message says how); destroy
  };
  Kind kind = Died;
  // Ok: the reply's envelope; for a proxy response (proxy == true) it holds
  // statusCode and headers exactly as the function returned them, unchecked.
  nlohmann::json envelope;
  bool proxy = false;
  std::string payload;
  nlohmann::json result;  // SyntaxError only
  std::string message;
  // From an error reply's envelope, where the runtime clipped them:
  // LoadFailed and SyntaxError: the load_error's kind (import, syntax,
  // missing_handler, not_found, already_loaded); Raised and BadResult:
  // exception or bad_result.
  std::string error_kind;
  std::string error_type;       // errorType ("SyntaxError" when a syntax error names none)
  int64_t line = 0;             // a syntax error's line; 0 when the runtime gave none
  bool broke_protocol = false;  // Died: the runtime sent what the protocol forbids, not EOF
  bool reusable() const {
    return kind == Ok || kind == Raised || kind == BadResult || kind == BadEvent ||
           kind == TooLarge;
  }
};

// One runtime's channel as the host holds it; every fd is borrowed.
struct RunnerChannel {
  int to_runner = -1;    // requests: the pipe's write end, non-blocking (make_channel)
  int from_runner = -1;  // replies
  // The channel's own decoder, kept across calls: a reply may arrive in
  // pieces, and bytes after it belong to the next one.
  FrameDecoder* decoder = nullptr;
  // Optional: read whenever readable while a reply is awaited (the
  // sandbox's log pipe, which would otherwise fill and stall a function
  // that prints); on_side returns false to stop watching it.
  int side_fd = -1;
  std::function<bool()> on_side;
};

// What an invoke carries beside the event. Each string is bounded so that
// every envelope fits kMaxEnvelope; beyond a bound the request is TooLarge
// and not sent.
constexpr size_t kMaxFunctionName = 255;  // a file name (NAME_MAX); the daemon's are <= 63
constexpr size_t kMaxFunctionVersion = 32;
struct RunnerInvoke {
  std::string id;  // echoed by the reply, and the context's request_id; <= kMaxRequestId
  std::string function_name;
  std::string function_version;
  uint64_t memory_mb = 0;
  // A result in the API-gateway proxy shape comes back as statusCode and
  // headers in the envelope and the body as the payload (the daemon); else
  // every result is JSON text (nsbox run prints it whole).
  bool http = false;
};

// Deadlines are CLOCK_MONOTONIC ms (monotonic_ms()), 0 for none, and bound
// the write and the reply together.

// Loads the function into a blank runtime; source is the payload (empty:
// the runtime reads path from disk). Ok, LoadFailed, or a failed exchange.
Outcome runner_load(const RunnerChannel& ch, const std::string& path, const std::string& handler,
                    const std::string& source, uint64_t deadline_ms);
// The load reply a runtime started with --function sends unprompted: read
// and classified as runner_load's.
Outcome runner_await_load(const RunnerChannel& ch, uint64_t deadline_ms);
// Compiles source without running it. Ok, SyntaxError, or a failed exchange.
Outcome runner_check(const RunnerChannel& ch, const std::string& path, const std::string& source,
                     uint64_t deadline_ms);
// event_json: a complete JSON text, validated by the caller, sent as it is.
// Ok, Raised, BadResult, BadEvent, TooLarge, or a failed exchange. sent, if
// set, is called once the event is written and before the reply is awaited:
// event_json is not read after it, so its owner may free it there.
Outcome runner_invoke(const RunnerChannel& ch, const RunnerInvoke& req,
                      const std::string& event_json, uint64_t deadline_ms,
                      const std::function<void()>& sent = nullptr);

}  // namespace nsbox
