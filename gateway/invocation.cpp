#include "gateway/invocation.hpp"

#include <poll.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "gateway/invoker.hpp"
#include "gateway/proxy_response.hpp"
#include "rootfs/json_check.hpp"
#include "sandbox/framing.hpp"

namespace nsbox {

using json = nlohmann::json;
using O = InvokeResult::Outcome;

namespace {

// The deploy check's time: the function's timeout, within these. At most a
// minute: one of the four check turns is held meanwhile, and 1 MiB of
// source compiles in seconds.
constexpr auto kCheckTimeoutMin = std::chrono::seconds(5);
constexpr auto kCheckTimeoutMax = std::chrono::seconds(60);
constexpr const char* kStale = "the function changed while this request waited; retry";

InvokeResult refused(O outcome, std::string message) {
  InvokeResult r;
  r.outcome = outcome;
  r.message = std::move(message);
  return r;
}

// Whatever happens while a sandbox is leased, it goes back to the pool, and
// is destroyed unless the outcome showed it still sound: an exception or an
// early return must not leak it and its slot.
class LeaseGuard {
 public:
  LeaseGuard(Pool& pool, std::unique_ptr<Worker> worker)
      : pool_(pool), worker_(std::move(worker)) {}
  LeaseGuard(const LeaseGuard&) = delete;
  LeaseGuard& operator=(const LeaseGuard&) = delete;
  ~LeaseGuard() { release(false); }
  Worker& worker() { return *worker_; }
  void release(bool reusable) {
    if (worker_) pool_.release(std::move(worker_), reusable);
  }

 private:
  Pool& pool_;
  std::unique_ptr<Worker> worker_;
};

}  // namespace

const char* outcome_name(O o) {
  switch (o) {
    case O::Ok:
    case O::Proxy:
      return "ok";
    case O::BadProxy:
      return "bad_proxy";
    case O::Raised:
      return "raised";
    case O::LoadFailed:
      return "load_failed";
    case O::BadResult:
      return "bad_result";
    case O::BadEvent:
      return "bad_event";
    case O::TooLarge:
      return "too_large";
    case O::NotFound:
      return "not_found";
    case O::NoPolicy:
      return "no_policy";
    case O::Stale:
      return "stale";
    case O::Overloaded:
      return "overloaded";
    case O::SpawnFailed:
      return "spawn_failed";
    case O::StoreError:
      return "store_error";
    case O::Unfit:
      return "unfit";
    case O::Timeout:
      return "timeout";
    case O::Died:
      return "died";
    case O::Stopped:
      return "stopped";
  }
  return "unknown";
}

Invocations::Invocations(FunctionStore& store, Pool& pool, SandboxFactory& factory, LogStore& logs,
                         std::vector<ProfileInfo> profiles)
    : store_(store), pool_(pool), factory_(factory), logs_(logs), profiles_(std::move(profiles)) {}

int Invocations::profile_index(const std::string& policy) const {
  for (size_t i = 0; i < profiles_.size(); i++)
    if (profiles_[i].name == policy) return static_cast<int>(i);
  return -1;
}

std::string Invocations::profile_names() const {
  std::string known;
  for (const auto& p : profiles_) known += (known.empty() ? "" : ", ") + p.name;
  return known;
}

InvokeResult Invocations::invoke(const InvokeRequest& req) {
  auto meta = store_.latest_meta(req.name);
  if (!meta) return refused(O::NotFound, "no function " + req.name);
  InvokeResult r = invoke(req, *meta);
  r.deploy = meta->deploy;
  return r;
}

InvokeResult Invocations::invoke(const InvokeRequest& req, const FunctionMeta& meta) {
  if (!meta.damaged.empty()) return refused(O::StoreError, meta.damaged);
  // The event travels as text: validated (no document built) and spliced
  // into the invoke frame as it is.
  static const std::string kNoEvent = "{}";
  const std::string& event = req.event.empty() ? kNoEvent : req.event;
  if (std::string why = json_error(event); !why.empty())
    return refused(O::BadEvent, "the body is not valid JSON: " + why);
  // The event is the invoke frame's payload, as it is: one within the
  // payload limit always fits a frame (the envelope has its own bounded
  // allowance). Refused here, before a sandbox is leased, whatever
  // max_body_kb lets the HTTP front accept.
  if (event.size() > kMaxPayload)
    return refused(O::TooLarge, "the event is " + std::to_string(event.size()) +
                                    " bytes; the limit is " + std::to_string(kMaxPayload) +
                                    " (6 MiB)");
  int profile = profile_index(meta.policy);
  if (profile < 0)
    return refused(O::NoPolicy, "the function's policy \"" + meta.policy + "\" is not loaded");
  return run(req, meta, event, static_cast<uint32_t>(profile));
}

std::string Invocations::template_unsupported(uint32_t profile) const {
  if (!templates_unavailable_.empty()) return templates_unavailable_;
  const Policy& p = profiles_.at(profile).policy;
  const auto& allow = p.seccomp.allow;
  auto allowed = [&](const char* name) {
    return std::binary_search(allow.begin(), allow.end(), std::string(name));
  };
  if (!p.seccomp.allow_fork || !allowed("recvmsg") || !allowed("sendto"))
    return "policy \"" + profiles_.at(profile).name +
           "\" does not allow fork, recvmsg and sendto, which a function template needs "
           "(the default policy allows them)";
  return {};
}

InvokeResult Invocations::run(const InvokeRequest& req, const FunctionMeta& meta,
                              const std::string& event, uint32_t profile) {
  const Policy& policy = profiles_[profile].policy;
  const uint64_t memory = meta.memory_mb ? meta.memory_mb << 20 : policy.limits.memory_bytes;
  const uint64_t timeout_ms = meta.timeout_ms ? meta.timeout_ms : policy.limits.wall_ms;

  // A function deployed with a template: the request that makes it loads
  // the exact deploy planned for, as a cold sandbox would, and that import
  // counts against this request's timeout as a cold sandbox's does (one
  // that hangs is not then waited for again in the ordinary way).
  std::optional<Clock::time_point> template_loaded_from;
  const Pool::TemplateLoader load_template = [&](Worker& t) {
    auto fv = store_.get(req.name, meta.version);
    if (!fv || fv->meta.deploy != meta.deploy) return false;
    template_loaded_from = Clock::now();
    Outcome lo =
        load_function(t, *fv, *template_loaded_from + std::chrono::milliseconds(timeout_ms));
    if (!t.pending_log.empty()) {
      logs_.append(req.name, meta.deploy, "[v" + std::to_string(meta.version) + " template] ",
                   t.pending_log);
      t.pending_log.clear();
    }
    return lo.kind == Outcome::Ok;
  };
  Pool::Lease lease =
      pool_.acquire(req.name, meta.deploy, profile, memory, req.queue_deadline,
                    meta.use_template && templates_unavailable_.empty() ? &load_template : nullptr);
  // A deploy or delete returned while we waited: never serve the old code;
  // the client retries at once and sees what exists now.
  if (lease.status == Pool::Status::Stale) return refused(O::Stale, kStale);
  if (lease.status == Pool::Status::NeverFits)
    return refused(O::Unfit, req.name + " " + lease.message +
                                 ": deploy it again with a smaller ?memory=, or raise the budget");
  if (lease.status != Pool::Status::Ok)
    return refused(lease.status == Pool::Status::SpawnFailed ? O::SpawnFailed : O::Overloaded,
                   "overloaded: " + lease.message);
  InvokeResult r;
  r.leased = true;
  // A new instance of a template is a cold start that needs no load.
  const bool must_load = lease.cold;
  r.cold = lease.cold || lease.forked;
  LeaseGuard guard(pool_, std::move(lease.worker));
  Worker& w = guard.worker();
  // The function's timeout starts now, or when this request began loading
  // the function's template: queueing is not charged to it, importing is.
  const auto deadline =
      template_loaded_from.value_or(Clock::now()) + std::chrono::milliseconds(timeout_ms);
  Outcome o;
  if (must_load) {
    // Only a cold sandbox needs the code: fetched now, by the exact version
    // leased, and only if it is still the deploy this request was planned
    // for. Versions restart at 1 after a delete, so a delete and redeploy
    // while we waited would otherwise load the new code into a sandbox made
    // with the old deploy's policy and limits.
    auto fv = store_.get(req.name, meta.version);
    if (!fv) {
      auto now = store_.latest_meta(req.name);
      if (now && now->deploy == meta.deploy) {
        // Still the deploy we planned for, yet its file did not load: the
        // store is damaged (logged by the store), and retrying will not help.
        r.outcome = O::StoreError;
        r.message = "could not read version " + std::to_string(meta.version) + " of " + req.name +
                    " from the function store (see the daemon's log)";
        return r;
      }
    }
    if (!fv || fv->meta.deploy != meta.deploy) {  // deleted or replaced
      r.outcome = O::Stale;
      r.message = kStale;
      return r;
    }
    o = load_function(w, *fv, deadline);
  }
  if (!must_load || o.kind == Outcome::Ok)
    o = nsbox::invoke(w, meta, event, req.request_id, memory >> 20, deadline, req.event_sent);
  if (!w.pending_log.empty()) {
    logs_.append(req.name, meta.deploy,
                 "[v" + std::to_string(meta.version) + " " + req.request_id + "] ", w.pending_log);
    w.pending_log.clear();
  }
  // Asked before the release: a destroyed sandbox has no cgroup to ask.
  const std::string died_because =
      o.kind == Outcome::Died ? death_cause(w.id, memory, policy) : std::string();
  const std::string timeout_note =
      o.kind == Outcome::Timeout ? memory_note(w.id, memory) : std::string();
  guard.release(o.reusable() && sent_only_its_reply(w));

  // Results and errors are the runner's payload text, checked by the invoker
  // and moved on: no document is built from them and they are not copied
  // (bounds in docs/architecture.md, "Replies").
  switch (o.kind) {
    case Outcome::Ok:
      if (o.proxy) {
        auto head = proxy_head(o.envelope);
        if (!head) {
          r.outcome = O::BadProxy;
          r.message = "the function returned an invalid statusCode";
          return r;
        }
        r.outcome = O::Proxy;
        r.status = head->status;
        r.content_type = std::move(head->content_type);
        r.headers = std::move(head->headers);
      } else {
        r.outcome = O::Ok;
      }
      r.payload = std::move(o.payload);
      return r;
    case Outcome::Raised:
    case Outcome::LoadFailed:
    case Outcome::BadResult:
      r.outcome = o.kind == Outcome::Raised       ? O::Raised
                  : o.kind == Outcome::LoadFailed ? O::LoadFailed
                                                  : O::BadResult;
      r.payload = std::move(o.payload);
      return r;
    case Outcome::BadEvent:
      r.outcome = O::BadEvent;
      r.message = "the event could not be decoded by the runtime: " + o.message;
      return r;
    case Outcome::TooLarge:
      r.outcome = O::TooLarge;
      r.message = o.message;
      return r;
    case Outcome::Timeout:
      r.outcome = O::Timeout;
      r.message = "function timed out after " + std::to_string(timeout_ms) + " ms" + timeout_note;
      return r;
    case Outcome::SyntaxError:  // not a reply to invoke: the sandbox is out of step
    case Outcome::Died:
      if (cut_) {
        r.outcome = O::Stopped;
        r.message =
            "the daemon stopped before the function finished (its drain_timeout_ms ran out); "
            "retry";
        return r;
      }
      r.outcome = O::Died;
      // A limit event names the limit; a broken protocol names what broke
      // (e.g. a reply over the frame limit, which only a function writing
      // to the channel itself can send: the runner refuses such results).
      r.message = !died_because.empty() ? "the sandbox died: " + died_because
                  : o.message.empty()   ? std::string("the sandbox died")
                                        : o.message;
      return r;
  }
  return r;
}

// A sandbox that sent more than its reply (frames or part of one in the
// decoder, bytes waiting in the pipe) would meet its next request with
// them, and the decoder would hold them in the daemon meanwhile: it is not
// given another request.
bool Invocations::sent_only_its_reply(const Worker& w) {
  if (!w.decoder.empty()) return false;
  struct pollfd p = {w.channel.from_runner.get(), POLLIN, 0};
  return poll(&p, 1, 0) == 0;
}

std::string Invocations::death_cause(uint64_t id, uint64_t memory, const Policy& policy) {
  auto ev = factory_.events(id);
  if (!ev) return "";
  if (ev.value().oom_kills > 0)
    return "memory limit of " + std::to_string(memory >> 20) + " MiB exceeded";
  if (ev.value().pids_max > 0)
    return "pids limit of " + std::to_string(policy.limits.pids) + " reached";
  return "";
}

std::string Invocations::memory_note(uint64_t id, uint64_t memory) {
  auto ev = factory_.events(id);
  if (!ev || !ev.value().reached_memory_limit(memory)) return "";
  return " at its memory limit of " + std::to_string(memory >> 20) +
         " MiB, where it was likely thrashing: the kernel reclaimed its pages " +
         std::to_string(ev.value().memory_max) + " times rather than kill it (raise its memory)";
}

Result<FunctionMeta> Invocations::deploy(const std::string& name, const FunctionVersion& fv) {
  auto put = store_.put(name, fv);
  if (put) pool_.revoke(name, put.value().deploy, false);
  return put;
}

Result<uint64_t> Invocations::remove(const std::string& name) {
  auto r = store_.remove(name);
  if (!r) return std::move(r).error();
  if (r.value() == 0) return uint64_t{0};
  pool_.revoke(name, r.value(), true);
  logs_.clear(name, r.value());
  return r.value();
}

CheckResult Invocations::check(const std::string& name, const std::string& source, uint32_t profile,
                               const FunctionMeta& meta, Clock::time_point queue_deadline) {
  CheckResult r;
  if (profile >= profiles_.size()) {
    r.message = "no policy profile " + std::to_string(profile) + " is loaded";
    return r;
  }
  const auto queue_time = queue_deadline - Clock::now();
  {
    std::unique_lock<std::mutex> lock(checks_mu_);
    const auto turn_deadline =
        Clock::now() + std::max<Clock::duration>(queue_time, check_turn_wait_);
    if (!checks_cv_.wait_until(lock, turn_deadline,
                               [&] { return checks_running_ < kConcurrentChecks; })) {
      r.outcome = CheckResult::Outcome::NoSandbox;
      r.message = "other deploys' sources are being checked (at most " +
                  std::to_string(kConcurrentChecks) + " at once); retry";
      return r;
    }
    checks_running_++;
  }
  struct Turn {
    Invocations& self;
    ~Turn() {
      {
        std::lock_guard<std::mutex> lock(self.checks_mu_);
        self.checks_running_--;
      }
      self.checks_cv_.notify_one();
    }
  } turn{*this};
  // Compiling takes memory and time in proportion to the source (a 1 MiB
  // module of small functions: about 200 MiB and 4 s): checked at the
  // function's own limits, a source that would import under its ?memory=
  // and ?timeout= is not refused.
  const Policy& policy = profiles_[profile].policy;
  const uint64_t memory = meta.memory_mb ? meta.memory_mb << 20 : policy.limits.memory_bytes;
  const auto timeout = std::clamp<Clock::duration>(
      std::chrono::milliseconds(meta.timeout_ms ? meta.timeout_ms : policy.limits.wall_ms),
      kCheckTimeoutMin, kCheckTimeoutMax);
  Pool::Lease lease = pool_.acquire_blank(profile, memory, Clock::now() + queue_time);
  if (lease.status != Pool::Status::Ok) {
    r.outcome = CheckResult::Outcome::NoSandbox;
    r.message = "no sandbox free to check the source: " + lease.message;
    return r;
  }
  // A blank used once: the release destroys it, whatever the outcome.
  LeaseGuard guard(pool_, std::move(lease.worker));
  Outcome o = check_syntax(guard.worker(), name, source, Clock::now() + timeout);
  // Asked before the release: a destroyed sandbox has no cgroup to ask.
  const std::string died_because =
      o.kind == Outcome::Died ? death_cause(guard.worker().id, memory, policy) : std::string();
  guard.release(false);
  if (o.kind == Outcome::Ok) {
    r.outcome = CheckResult::Outcome::Ok;
  } else if (o.kind == Outcome::SyntaxError) {
    r.outcome = CheckResult::Outcome::SyntaxError;
    r.error = std::move(o.result);
    r.message = o.message;
  } else if (!died_because.empty()) {
    r.outcome = CheckResult::Outcome::Failed;
    r.message = "the source could not be compiled within the function's limits (" + died_because +
                (died_because.starts_with("memory")
                     ? "): deploy it with more memory (?memory=), or split the module"
                     : ")");
  } else if (o.kind == Outcome::Timeout) {
    r.outcome = CheckResult::Outcome::Failed;
    r.message = "the source did not compile within " +
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                " s (the function's timeout, from 5 s to 60 s here): deploy it with a longer "
                "?timeout=, or split the module";
  } else {
    r.outcome = CheckResult::Outcome::Failed;
    r.message = "the source could not be compiled within the sandbox's limits (" + o.message + ")";
  }
  return r;
}

}  // namespace nsbox
