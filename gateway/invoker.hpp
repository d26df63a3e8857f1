// Talks to one leased sandbox over its request channel: loads a function
// into a blank sandbox, checks syntax, invokes. Outcomes map onto HTTP
// statuses in server.cpp. Replies are parsed only as far as their envelope
// (at most kMaxEnvelope bytes); a result or error travels as the payload
// text, checked for validity but never built into a document.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "gateway/pool.hpp"
#include "gateway/registry.hpp"

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
  bool reusable() const {
    return kind == Ok || kind == Raised || kind == BadResult || kind == BadEvent ||
           kind == TooLarge;
  }
};

// Path the code appears under in tracebacks.
std::string function_path(const std::string& name);

Outcome load_function(Worker& w, const FunctionVersion& fv, Clock::time_point deadline);
Outcome check_syntax(Worker& w, const std::string& name, const std::string& source,
                     Clock::time_point deadline);
// event_json: a complete, already validated JSON text of at most
// kMaxPayload bytes (the caller answers 413 beyond, before leasing).
Outcome invoke(Worker& w, const FunctionMeta& meta, const std::string& event_json,
               const std::string& request_id, uint64_t memory_mb, Clock::time_point deadline);

// Non-blocking: whatever the sandbox has written to stderr so far.
std::string drain_log(Worker& w);

}  // namespace nsbox
