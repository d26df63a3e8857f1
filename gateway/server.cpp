#include "gateway/server.hpp"

#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>

#include "base/limits.hpp"
#include "base/log.hpp"
#include "gateway/invoker.hpp"
#include "gateway/names.hpp"
#include "policies/units.hpp"
#include "sandbox/framing.hpp"

namespace nsbox {

using json = nlohmann::json;

namespace {

// The source travels to the sandbox as a frame's payload, unescaped.
static_assert(kMaxSourceBytes <= kMaxPayload);
constexpr auto kSandboxMemoryRefresh = std::chrono::seconds(1);
constexpr auto kSyntaxCheckTimeout = std::chrono::seconds(5);

// Everything sent may hold hostile text (a decoded path, a function's
// result): invalid UTF-8 is replaced rather than thrown on, since an
// exception in httplib's error handler would terminate the daemon.
std::string safe_dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(safe_dump(body) + "\n", "application/json");
}

// Response headers a function may not set: framing and hop-by-hop headers
// would let it desynchronise keep-alive clients and shared proxies.
bool forbidden_header(const std::string& name) {
  static const char* const kForbidden[] = {"content-length", "transfer-encoding",
                                           "connection",     "keep-alive",
                                           "upgrade",        "te",
                                           "trailer",        "host"};
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.rfind("proxy-", 0) == 0) return true;
  for (const char* f : kForbidden)
    if (lower == f) return true;
  return false;
}

// RFC 9110 token characters.
bool header_token(const std::string& name) {
  if (name.empty() || name.size() > 256) return false;
  for (unsigned char c : name)
    if (!(std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c))) return false;
  return true;
}

void send_error(httplib::Response& res, int status, const std::string& message,
                json extra = json::object()) {
  extra["error"] = message;
  send_json(res, status, extra);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

FrontConfig front_config(const ServeConfig& c) {
  FrontConfig f;
  f.host = c.listen_host;
  f.port = c.listen_port;
  f.head.max_head_bytes = c.max_head_bytes;
  f.head.max_headers = size_t(c.max_headers);
  f.max_body_bytes = c.max_body_bytes;
  f.request_timeout_ms = c.request_timeout_ms;
  f.idle_timeout_ms = c.keepalive_timeout_ms;
  f.max_connections = c.max_connections;
  f.max_sending_per_address = c.max_sending_per_address;
  f.handler_threads = c.max_connections;
  for (const auto& t : c.trusted_proxies) {
    Cidr cidr;
    if (parse_cidr(t, &cidr)) f.trusted_proxies.push_back(cidr);
  }
  return f;
}

// Constant time in the token's length, so timing does not leak a prefix.
bool same_secret(const std::string& got, const std::string& want) {
  unsigned diff = got.size() != want.size();
  for (size_t i = 0; i < want.size(); i++) diff |= want[i] ^ (i < got.size() ? got[i] : 0);
  return diff == 0;
}

// 16 hex digits from getrandom, drawn 64 ids at a time per thread: a
// request id names one request and predicts none.
std::string random_request_id() {
  thread_local unsigned char pool[512];
  thread_local size_t used = sizeof pool;
  if (used + 8 > sizeof pool) {
    size_t got = 0;
    while (got < sizeof pool) {
      ssize_t n = getrandom(pool + got, sizeof pool - got, 0);
      if (n > 0)
        got += size_t(n);
      else if (errno != EINTR)
        abort();  // no randomness: the kernel is broken
    }
    used = 0;
  }
  static const char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  for (int i = 0; i < 8; i++) {
    id[2 * i] = kHex[pool[used + i] >> 4];
    id[2 * i + 1] = kHex[pool[used + i] & 15];
  }
  std::memset(pool + used, 0, 8);
  used += 8;
  return id;
}

}  // namespace

Gateway::Gateway(ServeConfig config, FunctionStore& store, Pool& pool, SandboxFactory& factory,
                 std::vector<ProfileInfo> profiles, std::string token)
    : config_(std::move(config)),
      store_(store),
      pool_(pool),
      factory_(factory),
      profiles_(std::move(profiles)),
      token_(std::move(token)),
      read_token_(config_.read_token),
      logs_(static_cast<size_t>(config_.log_lines)),
      front_(front_config(config_)) {
  routes();
}

std::string Gateway::reload(const ServeConfig& next) {
  std::lock_guard<std::mutex> lock(token_mu_);
  std::string applied;
  if (!next.token.empty() && next.token != token_) {
    token_ = next.token;
    applied += " token";
  }
  if (next.read_token != read_token_) {
    read_token_ = next.read_token;
    applied += " read_token";
  }
  if (profile_index(next.default_policy) >= 0 && next.default_policy != config_.default_policy) {
    config_.default_policy = next.default_policy;
    applied += " default_policy";
  }
  if (next.queue_timeout_ms != config_.queue_timeout_ms) {
    config_.queue_timeout_ms = next.queue_timeout_ms;
    applied += " queue_timeout_ms";
  }
  if (next.memory_budget_bytes != config_.memory_budget_bytes) {
    config_.memory_budget_bytes = next.memory_budget_bytes;
    applied += " memory_budget_mb";
  }
  if (next.max_memory_bytes != config_.max_memory_bytes) {
    config_.max_memory_bytes = next.max_memory_bytes;
    applied += " max_memory_mb";
  }
  return applied;
}

int Gateway::queue_timeout_ms() {
  std::lock_guard<std::mutex> lock(token_mu_);
  return config_.queue_timeout_ms;
}

std::string Gateway::next_request_id() {
  return random_request_id();
}

std::string Gateway::base_url() const {
  if (!config_.public_url.empty()) return config_.public_url;
  std::string host = config_.listen_host == "0.0.0.0" ? "127.0.0.1" : config_.listen_host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(config_.listen_port);
}

int Gateway::profile_index(const std::string& policy) const {
  for (size_t i = 0; i < profiles_.size(); i++)
    if (profiles_[i].name == policy) return static_cast<int>(i);
  return -1;
}

bool Gateway::bind(std::string* error) {
  return front_.bind(error);
}

void Gateway::serve() {
  front_.serve();
}

bool Gateway::authorized(const httplib::Request& req, httplib::Response& res, Access access) {
  if (access == Access::Public) return true;
  std::string want, want_read;
  {
    std::lock_guard<std::mutex> lock(token_mu_);
    want = "Bearer " + token_;
    if (access == Access::Read && !read_token_.empty()) want_read = "Bearer " + read_token_;
  }
  std::string got = req.get_header_value("Authorization");
  bool ok = same_secret(got, want);
  if (!want_read.empty()) ok |= same_secret(got, want_read);
  if (ok) return true;
  res.set_header("WWW-Authenticate", "Bearer");
  send_error(res, 401,
             got.empty() ? "missing Authorization: Bearer TOKEN (the token is in the state "
                           "directory's token file)"
                         : "bad token");
  return false;
}

void Gateway::routes() {
  // The front refuses before reading a body: a route that needs a token is
  // checked on the head alone.
  front_.set_authorizer([this](const httplib::Request& req, Access access, httplib::Response& res) {
    return authorized(req, res, access);
  });
  front_.set_error_body([](httplib::Response& res, int status, const std::string& message) {
    send_error(res, status, message);
  });

  front_.route("GET", "/healthz", Access::Public,
               [this](const httplib::Request&, httplib::Response& res) {
                 if (!factory_.healthy())
                   return send_json(res, 503, {{"status", "the spawner has exited"}});
                 send_json(res, 200, {{"status", "ok"}});
               });
  front_.route("GET", "/metrics", Access::Read,
               [this](const httplib::Request&, httplib::Response& res) { handle_metrics(res); });
  front_.route("GET", "/functions", Access::Read,
               [this](const httplib::Request&, httplib::Response& res) {
                 json list = json::array();
                 for (const auto& m : store_.list()) list.push_back(meta_to_json(m));
                 send_json(res, 200, {{"functions", list}});
               });
  front_.route("GET", R"(/functions/([^/]+))", Access::Read,
               [this](const httplib::Request& req, httplib::Response& res) {
                 std::string name = req.matches[1];
                 if (!valid_function_name(name))
                   return send_error(res, 400, "invalid function name");
                 auto meta = store_.latest_meta(name);
                 if (!meta) return send_error(res, 404, "no function " + name);
                 json j = meta_to_json(*meta);
                 j["versions"] = store_.versions(name);
                 j["url"] = base_url() + "/fn/" + name;
                 send_json(res, 200, j);
               });
  front_.route("GET", R"(/functions/([^/]+)/logs)", Access::Read,
               [this](const httplib::Request& req, httplib::Response& res) {
                 if (!authorized(req, res, Access::Read)) return;
                 std::string name = req.matches[1];
                 if (!valid_function_name(name))
                   return send_error(res, 400, "invalid function name");
                 if (!store_.latest_meta(name)) return send_error(res, 404, "no function " + name);
                 res.set_content(logs_.get(name), "text/plain; charset=utf-8");
               });
  front_.route(
      "PUT", R"(/functions/([^/]+))", Access::Admin,
      [this](const httplib::Request& req, httplib::Response& res) { handle_deploy(req, res); });
  front_.route(
      "DELETE", R"(/functions/([^/]+))", Access::Admin,
      [this](const httplib::Request& req, httplib::Response& res) { handle_delete(req, res); });
  front_.route(
      "POST", R"(/fn/([^/]+))", Access::Public,
      [this](const httplib::Request& req, httplib::Response& res) { handle_invoke(req, res); });
  front_.route(
      "GET", R"(/fn/([^/]+))", Access::Public,
      [this](const httplib::Request& req, httplib::Response& res) { handle_invoke(req, res); });
}

void Gateway::handle_deploy(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  std::string name = req.matches[1];
  if (!valid_function_name(name))
    return send_error(res, 400,
                      "invalid function name \"" + name +
                          "\": use 1-63 of a-z 0-9 _ - starting with a letter or digit");
  if (req.body.size() > kMaxSourceBytes) return send_error(res, 413, "source larger than 1 MiB");
  if (req.body.empty()) return send_error(res, 400, "empty body: send the Python source");
  if (!valid_utf8(req.body)) return send_error(res, 400, "the source is not valid UTF-8");
  FunctionVersion fv;
  fv.source = req.body;
  fv.meta.handler = req.has_param("handler") ? req.get_param_value("handler") : "handler";
  if (!valid_identifier(fv.meta.handler))
    return send_error(res, 400, "handler \"" + fv.meta.handler + "\" is not a Python identifier");
  int queue_timeout_ms;
  uint64_t memory_budget, max_memory;
  {
    std::lock_guard<std::mutex> lock(token_mu_);
    fv.meta.policy =
        req.has_param("policy") ? req.get_param_value("policy") : config_.default_policy;
    queue_timeout_ms = config_.queue_timeout_ms;
    memory_budget = config_.memory_budget_bytes;
    max_memory = config_.max_memory_bytes;
  }
  int profile = profile_index(fv.meta.policy);
  if (profile < 0) {
    std::string known;
    for (const auto& p : profiles_) known += (known.empty() ? "" : ", ") + p.name;
    return send_error(res, 400, "unknown policy \"" + fv.meta.policy + "\" (known: " + known + ")");
  }
  if (req.has_param("memory")) {
    auto m = parse_size(req.get_param_value("memory"));
    if (!m) return send_error(res, 400, "memory: " + m.error().detail);
    if (m.value() < (16ull << 20) || m.value() > memory_budget)
      return send_error(res, 400, "memory must be between 16M and the pool's memory budget");
    if (m.value() > max_memory)
      return send_error(res, 400,
                        "memory " + std::to_string(m.value() >> 20) +
                            "M is above the per-function maximum of " +
                            std::to_string(max_memory >> 20) +
                            "M ([functions] max_memory_mb in the daemon's config)");
    fv.meta.memory_mb = m.value() >> 20;
  }
  if (req.has_param("timeout")) {
    auto t = parse_duration_ms(req.get_param_value("timeout"));
    if (!t) return send_error(res, 400, "timeout: " + t.error().detail);
    if (t.value() > 900000) return send_error(res, 400, "timeout must be at most 15m");
    fv.meta.timeout_ms = t.value();
  }

  // Compile inside a sandbox: hostile source can make the compiler itself
  // exhaust memory or time.
  Pool::Lease lease = pool_.acquire_blank(
      static_cast<uint32_t>(profile), Clock::now() + std::chrono::milliseconds(queue_timeout_ms));
  if (lease.status != Pool::Status::Ok) {
    res.set_header("Retry-After", "1");
    return send_error(res, 503, "no sandbox free to check the source: " + lease.message);
  }
  Outcome check = check_syntax(*lease.worker, name, fv.source, Clock::now() + kSyntaxCheckTimeout);
  pool_.release(std::move(lease.worker), false);
  if (check.kind == Outcome::SyntaxError) return send_json(res, 400, check.result);
  if (check.kind != Outcome::Ok)
    return send_error(
        res, 400,
        "the source could not be compiled within the sandbox's limits (" + check.message + ")");

  auto put = store_.put(name, fv);
  if (!put) {
    LOG_ERROR("deploy %s: %s", name.c_str(), put.error().message().c_str());
    return send_error(res, 500, "could not store the function: " + put.error().message());
  }
  // Once this response is sent, no request may be served by older code.
  pool_.revoke(name, put.value().deploy);
  send_json(
      res, 201,
      {{"name", name}, {"version", put.value().version}, {"url", base_url() + "/fn/" + name}});
}

void Gateway::handle_delete(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  std::string name = req.matches[1];
  if (!valid_function_name(name)) return send_error(res, 400, "invalid function name");
  auto r = store_.remove(name);
  if (!r) return send_error(res, 500, "could not delete: " + r.error().message());
  if (r.value() == 0) return send_error(res, 404, "no function " + name);
  pool_.revoke(name, r.value());
  logs_.clear(name);
  send_json(res, 200, {{"name", name}, {"deleted", true}});
}

void Gateway::handle_invoke(const httplib::Request& req, httplib::Response& res) {
  const auto t0 = Clock::now();
  const std::string rid = next_request_id();
  res.set_header("X-Nsbox-Request-Id", rid);
  std::string name = req.matches[1];
  std::string outcome = "ok";
  auto finish = [&](int status) {
    metrics_.request(name, status, seconds_since(t0));
    access_log_.line(rid, name, outcome, status, seconds_since(t0) * 1000, req.remote_addr);
  };
  if (!valid_function_name(name)) {
    name = "-";
    outcome = "bad_name";
    send_error(res, 400, "invalid function name");
    return finish(400);
  }
  auto meta = store_.latest_meta(name);
  if (!meta) {
    send_error(res, 404, "no function " + name);
    name = "-";  // metrics keep no per-name state for functions that do not exist
    outcome = "not_found";
    return finish(404);
  }
  // The event travels as text: a POST body is validated (no document built)
  // and spliced into the invoke frame as it is.
  std::string event = "{}";
  if (req.method == "POST") {
    if (!req.body.empty()) {
      if (!json::accept(req.body)) {
        outcome = "bad_event";
        send_error(res, 400, "the body is not valid JSON");
        return finish(400);
      }
      event = req.body;
    }
  } else if (!req.params.empty()) {
    event = query_event(req.params);
  }
  // The event is the invoke frame's payload, as it is: one within the
  // payload limit always fits a frame (the envelope has its own bounded
  // allowance). Refused here, before a sandbox is leased, whatever
  // max_body_kb lets the HTTP front accept.
  if (event.size() > kMaxPayload) {
    outcome = "too_large";
    send_error(res, 413,
               "the event is " + std::to_string(event.size()) + " bytes; the limit is " +
                   std::to_string(kMaxPayload) + " (6 MiB)");
    return finish(413);
  }
  int profile = profile_index(meta->policy);
  if (profile < 0) {
    outcome = "no_policy";
    send_error(res, 500, "the function's policy \"" + meta->policy + "\" is not loaded");
    return finish(500);
  }
  const Policy& policy = profiles_[profile].policy;
  uint64_t memory = meta->memory_mb ? meta->memory_mb << 20 : policy.limits.memory_bytes;
  uint64_t timeout_ms = meta->timeout_ms ? meta->timeout_ms : policy.limits.wall_ms;

  Pool::Lease lease = pool_.acquire(name, meta->deploy, static_cast<uint32_t>(profile), memory,
                                    t0 + std::chrono::milliseconds(queue_timeout_ms()));
  // A deploy or delete returned while we waited: never serve the old code;
  // the client retries at once and sees what exists now.
  auto refuse_stale = [&] {
    outcome = "stale";
    res.set_header("Retry-After", "0");
    send_error(res, 503, "the function changed while this request waited; retry");
    return finish(503);
  };
  if (lease.status == Pool::Status::Stale) return refuse_stale();
  if (lease.status != Pool::Status::Ok) {
    outcome = lease.status == Pool::Status::SpawnFailed ? "spawn_failed" : "overloaded";
    res.set_header("Retry-After", "1");
    send_error(res, 503, "overloaded: " + lease.message);
    return finish(503);
  }
  // Whatever happens below, the sandbox goes back to the pool (destroyed
  // unless the outcome says it is still sound): an exception must not leak
  // it and its slot.
  struct LeaseGuard {
    Pool& pool;
    std::unique_ptr<Worker>& worker;
    bool reusable = false;
    ~LeaseGuard() {
      if (worker) pool.release(std::move(worker), reusable);
    }
  } guard{pool_, lease.worker};
  Worker& w = *lease.worker;
  metrics_.start(name, lease.cold);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  Outcome o;
  if (lease.cold) {
    // Only a cold sandbox needs the code: fetched now, by the exact version
    // leased, and only if it is still the deploy this request was planned
    // for. Versions restart at 1 after a delete, so a delete and redeploy
    // while we waited would otherwise load the new code into a sandbox made
    // with the old deploy's policy and limits.
    auto fv = store_.get(name, meta->version);
    if (!fv) {
      auto now = store_.latest_meta(name);
      if (now && now->deploy == meta->deploy) {
        // Still the deploy we planned for, yet its file did not load: the
        // store is damaged (logged by the store), and retrying will not help.
        outcome = "store_error";
        send_error(res, 500,
                   "could not read version " + std::to_string(meta->version) + " of " + name +
                       " from the function store (see the daemon's log)");
        return finish(500);
      }
    }
    if (!fv || fv->meta.deploy != meta->deploy) return refuse_stale();  // deleted or replaced
    o = load_function(w, *fv, deadline);
  }
  if (!lease.cold || o.kind == Outcome::Ok)
    o = invoke(w, *meta, event, rid, memory >> 20, deadline);
  // The runner flushes its output before replying, and the wait for the
  // reply drained the pipe: what it printed is already in pending_log.
  if (!w.pending_log.empty()) {
    logs_.append(name, "[v" + std::to_string(meta->version) + " " + rid + "] ", w.pending_log);
    w.pending_log.clear();
  }

  std::string died_because;
  if (o.kind == Outcome::Died) {
    auto ev = factory_.events(w.id);
    if (ev && ev.value().oom_kills > 0)
      died_because = "memory limit of " + std::to_string(memory >> 20) + " MiB exceeded";
    else if (ev && ev.value().pids_max > 0)
      died_because = "pids limit of " + std::to_string(policy.limits.pids) + " reached";
  }
  guard.reusable = o.reusable();
  pool_.release(std::move(lease.worker), o.reusable());

  // Results and errors are the runner's payload text, checked by the invoker
  // and moved into the response: no document is built from them and they
  // are not copied (bounds in docs/architecture.md, "Replies").
  auto send_payload = [&res](int status, std::string&& text, const std::string& content_type) {
    res.status = status;
    res.body = std::move(text);
    res.set_header("Content-Type", content_type);
  };
  switch (o.kind) {
    case Outcome::Ok: {
      if (o.proxy) {
        // An API-gateway proxy response becomes the HTTP response itself.
        const json& env = o.envelope;
        auto sc = env.find("statusCode");
        int64_t status = sc != env.end() && sc->is_number_integer() ? sc->get<int64_t>() : 0;
        if (status < 200 || status > 599) {
          outcome = "bad_proxy";
          send_error(res, 502, "the function returned an invalid statusCode");
          return finish(502);
        }
        std::string content_type = "application/json";
        auto headers = env.find("headers");
        if (headers != env.end() && headers->is_object()) {
          for (const auto& [k, v] : headers->items()) {
            std::string value = v.is_string() ? v.get<std::string>() : safe_dump(v);
            if (!header_token(k) || forbidden_header(k) ||
                value.find_first_of("\r\n") != std::string::npos)
              continue;  // no header injection, no framing of our own
            if (strcasecmp(k.c_str(), "Content-Type") == 0)
              content_type = value;
            else
              res.set_header(k, value);
          }
        }
        send_payload(static_cast<int>(status), std::move(o.payload), content_type);
        return finish(static_cast<int>(status));
      }
      if (o.payload.empty() || o.payload.back() != '\n') o.payload += '\n';
      send_payload(200, std::move(o.payload), "application/json");
      return finish(200);
    }
    case Outcome::Raised:
    case Outcome::LoadFailed:
    case Outcome::BadResult:
      outcome = o.kind == Outcome::Raised       ? "raised"
                : o.kind == Outcome::LoadFailed ? "load_failed"
                                                : "bad_result";
      if (o.payload.empty() || o.payload.back() != '\n') o.payload += '\n';
      send_payload(500, std::move(o.payload), "application/json");
      return finish(500);
    case Outcome::BadEvent:
      outcome = "bad_event";
      send_error(res, 400, "the event could not be decoded by the runtime: " + o.message);
      return finish(400);
    case Outcome::TooLarge:
      outcome = "too_large";
      send_error(res, 413, o.message);
      return finish(413);
    case Outcome::Timeout:
      outcome = "timeout";
      send_error(res, 504, "function timed out after " + std::to_string(timeout_ms) + " ms");
      return finish(504);
    case Outcome::SyntaxError:
    case Outcome::Died:
      outcome = "died";
      // A limit event names the limit; a broken protocol names what broke
      // (e.g. a reply over the frame limit, which only a function writing
      // to the channel itself can send: the runner refuses such results).
      send_error(res, 502,
                 !died_because.empty() ? "the sandbox died: " + died_because
                 : o.message.empty()   ? std::string("the sandbox died")
                                       : o.message);
      return finish(502);
  }
}

void Gateway::handle_metrics(httplib::Response& res) {
  std::string out = metrics_.render();
  PoolStats s = pool_.stats();
  char buf[1024];
  snprintf(buf, sizeof buf,
           "# HELP nsbox_pool_sandboxes Sandboxes by state.\n"
           "# TYPE nsbox_pool_sandboxes gauge\n"
           "nsbox_pool_sandboxes{state=\"blank\"} %d\n"
           "nsbox_pool_sandboxes{state=\"idle\"} %d\n"
           "nsbox_pool_sandboxes{state=\"busy\"} %d\n"
           "# TYPE nsbox_pool_waiting_requests gauge\nnsbox_pool_waiting_requests %d\n"
           "# TYPE nsbox_pool_memory_limit_bytes gauge\nnsbox_pool_memory_limit_bytes %llu\n"
           "# TYPE nsbox_pool_evictions_total counter\nnsbox_pool_evictions_total %llu\n"
           "# TYPE nsbox_pool_idle_expired_total counter\nnsbox_pool_idle_expired_total %llu\n"
           "# TYPE nsbox_pool_spawned_total counter\nnsbox_pool_spawned_total %llu\n"
           "# TYPE nsbox_pool_spawn_failures_total counter\nnsbox_pool_spawn_failures_total %llu\n",
           s.blank, s.idle, s.busy, s.waiting, (unsigned long long)s.memory_bytes,
           (unsigned long long)s.evictions, (unsigned long long)s.idle_expired,
           (unsigned long long)s.spawned, (unsigned long long)s.spawn_failures);
  out += buf;
  snprintf(buf, sizeof buf,
           "# HELP nsbox_pool_frozen_sandboxes Idle sandboxes frozen (no CPU) until leased.\n"
           "# TYPE nsbox_pool_frozen_sandboxes gauge\nnsbox_pool_frozen_sandboxes %d\n"
           "# TYPE nsbox_pool_freezes_total counter\nnsbox_pool_freezes_total %llu\n"
           "# TYPE nsbox_pool_thaws_total counter\nnsbox_pool_thaws_total %llu\n"
           "# HELP nsbox_pool_pressure_evictions_total Idle sandboxes evicted under memory "
           "pressure (also in nsbox_pool_evictions_total).\n"
           "# TYPE nsbox_pool_pressure_evictions_total counter\n"
           "nsbox_pool_pressure_evictions_total %llu\n"
           "# TYPE nsbox_memory_pressure gauge\nnsbox_memory_pressure %d\n",
           s.frozen, (unsigned long long)s.freezes, (unsigned long long)s.thaws,
           (unsigned long long)s.pressure_evictions, s.memory_pressure ? 1 : 0);
  out += buf;
  out +=
      "# HELP nsbox_sandbox_memory_bytes Memory in use per idle or blank sandbox (cgroup), "
      "at most 1 s old.\n"
      "# TYPE nsbox_sandbox_memory_bytes gauge\n";
  {
    // Held across the refresh: concurrent scrapes wait for it and share it.
    std::lock_guard<std::mutex> lock(sandbox_memory_mu_);
    if (Clock::now() - sandbox_memory_at_ >= kSandboxMemoryRefresh) {
      std::string text;
      for (uint64_t id : s.ids) {
        auto ev = factory_.events(id);
        if (!ev) continue;
        snprintf(buf, sizeof buf, "nsbox_sandbox_memory_bytes{sandbox=\"%llu\"} %llu\n",
                 (unsigned long long)id, (unsigned long long)ev.value().memory_current);
        text += buf;
      }
      sandbox_memory_text_ = std::move(text);
      sandbox_memory_at_ = Clock::now();
    }
    out += sandbox_memory_text_;
  }
  out += front_.render_metrics();
  res.set_content(out, "text/plain; version=0.0.4");
}

}  // namespace nsbox
