// Talks to one leased sandbox over its request channel: loads a function
// into a blank sandbox, checks syntax, invokes. The protocol itself (the
// requests, what each reply means, the Outcome) is the shared client's,
// rootfs/runner_client.hpp, which nsbox run uses too; this file binds it to
// a pool Worker (its channel, decoder and log pipe) and the daemon's names.
// gateway/invocation.cpp turns outcomes into results; server.cpp into statuses.
#pragma once

#include <functional>
#include <string>

#include "gateway/pool.hpp"
#include "gateway/registry.hpp"
#include "rootfs/runner_client.hpp"

namespace nsbox {

// Path the code appears under in tracebacks.
std::string function_path(const std::string& name);

Outcome load_function(Worker& w, const FunctionVersion& fv, Clock::time_point deadline);
Outcome check_syntax(Worker& w, const std::string& name, const std::string& source,
                     Clock::time_point deadline);
// event_json: a complete, already validated JSON text of at most
// kMaxPayload bytes (the caller answers 413 beyond, before leasing).
// sent: as runner_invoke's.
Outcome invoke(Worker& w, const FunctionMeta& meta, const std::string& event_json,
               const std::string& request_id, uint64_t memory_mb, Clock::time_point deadline,
               const std::function<void()>& sent = nullptr);

// Non-blocking: whatever the sandbox has written to stderr so far, in at
// most max_reads reads of 16 KiB (a writer may never pause), behind what
// pending_log held; only the last 256 KiB are kept.
std::string drain_log(Worker& w, int max_reads = 16);

}  // namespace nsbox
