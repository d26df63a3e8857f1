// Talks to one leased sandbox over its request channel: loads a function
// into a blank sandbox, checks syntax, invokes. Outcomes map onto HTTP
// statuses in server.cpp.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "gateway/pool.hpp"
#include "gateway/registry.hpp"

namespace nsbox {

struct Outcome {
  enum Kind {
    Ok,           // result holds the handler's result
    Raised,       // the function raised: result holds errorType/errorMessage/stackTrace
    BadResult,    // the result was not JSON-serialisable
    LoadFailed,   // the module body raised or the handler is missing
    SyntaxError,  // check(): result holds errorMessage and line
    BadEvent,     // the runtime could not decode the event (400); the sandbox is fine
    Timeout,      // the deadline passed; the sandbox must be destroyed
    Died,         // the channel closed or broke protocol; destroy
  };
  Kind kind = Died;
  nlohmann::json result;
  std::string message;
  bool reusable() const {
    return kind == Ok || kind == Raised || kind == BadResult || kind == BadEvent;
  }
};

// Path the code appears under in tracebacks.
std::string function_path(const std::string& name);

Outcome load_function(Worker& w, const FunctionVersion& fv, Clock::time_point deadline);
Outcome check_syntax(Worker& w, const std::string& name, const std::string& source,
                     Clock::time_point deadline);
// event_json: a complete, already validated JSON text.
Outcome invoke(Worker& w, const FunctionMeta& meta, const std::string& event_json,
               const std::string& request_id, uint64_t memory_mb, Clock::time_point deadline);

// Non-blocking: whatever the sandbox has written to stderr so far.
std::string drain_log(Worker& w);

}  // namespace nsbox
