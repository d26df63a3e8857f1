// The request path of POST/GET /fn/NAME, from a validated name and the
// event's text to an outcome: the function's latest deploy, its limits, a
// leased sandbox (warm, or cold and loaded with the exact deploy the request
// was planned for), the invoke, its printed lines, why a sandbox died, and
// the sandbox's return to the pool. No HTTP here: gateway/server.cpp maps
// each outcome onto a status, and the unit tests drive this with a fake
// store and fake sandboxes (tests/unit/invocation_test.cpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "gateway/logs.hpp"
#include "gateway/pool.hpp"
#include "gateway/registry.hpp"
#include "sandbox/spawner.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

// One loaded policy; its index is the pool's profile number.
struct ProfileInfo {
  std::string name;  // policy name as deploys give it
  Policy policy;
};

struct InvokeRequest {
  std::string name;        // valid_function_name() already
  std::string event;       // the event's JSON text as the client sent it; empty: {}
  std::string request_id;  // the runner's aws_request_id and the log lines' prefix
  // Called once the event is in the sandbox, where event is read no more:
  // the caller may free it, and the HTTP front stop counting its bytes.
  std::function<void()> event_sent;
  // The wait for a sandbox ends here; the function's own timeout starts
  // once it has one.
  Clock::time_point queue_deadline;
};

struct InvokeResult {
  enum class Outcome {
    Ok,           // payload: the result's JSON text
    Proxy,        // status, content_type, headers and payload (the body) of a proxy response
    BadProxy,     // a proxy response with an invalid statusCode
    Raised,       // payload: the function's error object
    LoadFailed,   // payload: the error object of the module body or a missing handler
    BadResult,    // payload: the error object for a result that could not be sent
    BadEvent,     // not JSON, or JSON the runtime could not decode
    TooLarge,     // the event does not fit a frame
    NotFound,     // no such function
    NoPolicy,     // the function's policy is not loaded in this daemon
    Unfit,        // its memory is more than the pool's whole budget
    Stale,        // a deploy or delete came while the request waited: retry at once
    Overloaded,   // no sandbox in time (queue full or queue timeout)
    SpawnFailed,  // no sandbox could be made
    StoreError,   // the deploy's source could not be read from the store
    Timeout,      // the function ran out of time; the sandbox was destroyed
    Died,         // the sandbox died or broke protocol; it was destroyed
    Stopped,      // the daemon stopped before it finished (drain_timeout_ms ran out)
  };
  Outcome outcome = Outcome::Died;
  std::string payload;  // Ok, Proxy, Raised, LoadFailed, BadResult: sent as it is
  int status = 0;       // Proxy
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;  // Proxy, filtered
  std::string message;  // every other outcome: what went wrong, for the client
  bool leased = false;  // a sandbox was leased (the metrics count a start)
  bool cold = false;    // it was blank and the function had to be loaded
  uint64_t deploy = 0;  // the deploy planned for (FunctionMeta::deploy); 0: none was found
};

// The access log's name of an outcome ("ok", "raised", "stale", ...).
const char* outcome_name(InvokeResult::Outcome o);

struct CheckResult {
  enum class Outcome {
    Ok,
    SyntaxError,  // error holds {error, line}
    NoSandbox,    // none free before the deadline; message says why
    Failed,       // the check timed out or the sandbox died; message says how
  };
  Outcome outcome = Outcome::Failed;
  nlohmann::json error;
  std::string message;
};

class Invocations {
 public:
  Invocations(FunctionStore& store, Pool& pool, SandboxFactory& factory, LogStore& logs,
              std::vector<ProfileInfo> profiles);

  InvokeResult invoke(const InvokeRequest& req);
  // Compiles source in a blank sandbox of the profile, which is destroyed
  // afterwards: hostile source can make the compiler itself exhaust memory
  // or time. Limited as the function will be (meta's memory_mb and
  // timeout_ms, 0: the profile's), and given from 5 s to a minute. At most kConcurrentChecks at
  // once; the rest wait their turn (up to check_turn_wait, at least the queue's time), and then
  // have the queue's time (queue_deadline - now) for a sandbox.
  static constexpr int kConcurrentChecks = 4;
  void set_check_turn_wait(std::chrono::milliseconds wait) { check_turn_wait_ = wait; }
  CheckResult check(const std::string& name, const std::string& source, uint32_t profile,
                    const FunctionMeta& meta, Clock::time_point queue_deadline);

  // A deploy and a delete are stored, then revoked in the pool with the
  // store's number for them (FunctionMeta::deploy), before the caller
  // answers: once it has, no request is served by the older code. The one
  // place where the store's writes and the pool's view of them meet.
  Result<FunctionMeta> deploy(const std::string& name, const FunctionVersion& fv);
  // The delete's number in the deploy sequence (FunctionMeta::deploy), by
  // which later lines of the deleted deploys are told apart; 0: no such
  // function.
  Result<uint64_t> remove(const std::string& name);
  // Whether the function is deployed now.
  bool exists(const std::string& name) { return store_.latest_meta(name).has_value(); }
  // Whether it can be deployed now; if not, why (its directory in the store
  // is another user's to write).
  bool deployable(const std::string& name, std::string* why) {
    auto meta = store_.latest_meta(name);
    if (meta && meta->untrusted) *why = meta->damaged;
    return !(meta && meta->untrusted);
  }

  // -1 when no such policy is loaded.
  int profile_index(const std::string& policy) const;
  // "default, strict": for an error naming what a deploy may ask for.
  std::string profile_names() const;
  // Why a function of this profile cannot be deployed with a function
  // template, or "" when it can: the template's runner forks its instances
  // and receives their fds over a unix socket, so the policy must allow both.
  std::string template_unsupported(uint32_t profile) const;
  // Whether this daemon can make function templates at all ("" when it
  // can; else why, for the deploy's 400). Set once, before serving.
  // Functions stored with template=1 are then served without one.
  void set_templates_unavailable(std::string why) { templates_unavailable_ = std::move(why); }
  const std::string& templates_unavailable() const { return templates_unavailable_; }

  // The daemon's drain ran out: the sandboxes still serving requests are
  // being destroyed, and those requests end as Stopped, not Died (the
  // function did nothing wrong).
  void cut_short() { cut_ = true; }

 private:
  // invoke() once the function's latest deploy is known.
  InvokeResult invoke(const InvokeRequest& req, const FunctionMeta& meta);
  InvokeResult run(const InvokeRequest& req, const FunctionMeta& meta, const std::string& event,
                   uint32_t profile);
  // Whether the sandbox sent nothing after its reply (then it may serve again).
  static bool sent_only_its_reply(const Worker& w);
  // What the sandbox's cgroup says killed it; empty when it says nothing.
  std::string death_cause(uint64_t id, uint64_t memory, const Policy& policy);
  // Why a timeout may really be the memory limit (CgroupEvents::reached_memory_limit), or "".
  std::string memory_note(uint64_t id, uint64_t memory);

  FunctionStore& store_;
  Pool& pool_;
  SandboxFactory& factory_;
  LogStore& logs_;
  const std::vector<ProfileInfo> profiles_;
  std::string templates_unavailable_;  // set_templates_unavailable
  std::atomic<bool> cut_{false};
  // A check takes a blank, and a full pool evicts an idle sandbox for it:
  // many slow checks at once would evict every tenant's warm sandboxes.
  // (Not std::counting_semaphore: GCC 12's try_acquire_until can sleep to
  // its deadline with a slot free, GCC bug 104928.)
  std::mutex checks_mu_;
  std::condition_variable checks_cv_;
  int checks_running_ = 0;
  // A deploy is an operator's, and a slow mechanism's checks (a container
  // each, in the comparison modes) take seconds: waiting beats a 503.
  std::chrono::milliseconds check_turn_wait_{60000};
};

}  // namespace nsbox
