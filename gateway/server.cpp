#include "gateway/server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>

#include "base/limits.hpp"
#include "base/log.hpp"
#include "base/python_name.hpp"
#include "base/random.hpp"
#include "gateway/http_parse.hpp"
#include "gateway/names.hpp"
#include "policies/units.hpp"
#include "sandbox/framing.hpp"

namespace nsbox {

using json = nlohmann::json;

namespace {

// The source travels to the sandbox as a frame's payload, unescaped.
static_assert(kMaxSourceBytes <= kMaxPayload);

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

void send_error(httplib::Response& res, int status, const std::string& message,
                json extra = json::object()) {
  extra["error"] = message;
  send_json(res, status, extra);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The one place an invocation's outcome becomes HTTP; returns the status.
// Results and errors are moved into the body, not copied (bounds in
// docs/architecture.md, "Replies").
int send_outcome(httplib::Response& res, InvokeResult& r) {
  using O = InvokeResult::Outcome;
  auto payload = [&](int status, const std::string& content_type) {
    res.status = status;
    res.body = std::move(r.payload);
    res.set_header("Content-Type", content_type);
    return status;
  };
  auto json_payload = [&](int status) {
    if (r.payload.empty() || r.payload.back() != '\n') r.payload += '\n';
    return payload(status, "application/json");
  };
  auto error = [&](int status) {
    send_error(res, status, r.message);
    return status;
  };
  switch (r.outcome) {
    case O::Ok:
      return json_payload(200);
    case O::Proxy:
      for (const auto& [name, value] : r.headers) res.set_header(name, value);
      return payload(r.status, r.content_type);
    case O::Raised:
    case O::LoadFailed:
    case O::BadResult:
      return json_payload(500);
    case O::BadEvent:
      return error(400);
    case O::NotFound:
      return error(404);
    case O::TooLarge:
      return error(413);
    case O::NoPolicy:
    case O::Unfit:
    case O::StoreError:
      return error(500);
    case O::BadProxy:
    case O::Died:
      return error(502);
    case O::Stale:
      // Nothing to wait for: the client asks again and sees what exists now.
      res.set_header("Retry-After", "0");
      return error(503);
    case O::Overloaded:
    case O::SpawnFailed:
    case O::Stopped:
      res.set_header("Retry-After", "1");
      return error(503);
    case O::Timeout:
      return error(504);
  }
  return error(500);
}

FrontConfig front_config(const ServeConfig& c) {
  FrontConfig f;
  f.host = c.listen_host;
  f.port = c.listen_port;
  f.head.max_head_bytes = c.max_head_bytes;
  f.head.max_headers = size_t(c.max_headers);
  f.max_body_bytes = c.max_body_bytes;
  f.max_buffered_bytes = c.max_buffered_bytes;
  f.request_timeout_ms = c.request_timeout_ms;
  f.idle_timeout_ms = c.keepalive_timeout_ms;
  f.max_connections = c.max_connections;
  f.max_sending_per_address = c.max_sending_per_address;
  f.handler_threads = c.max_connections;
  for (const auto& t : c.trusted_proxies) {
    Cidr cidr;
    if (parse_cidr(t, &cidr)) f.trusted_proxies.push_back(cidr);
  }
  f.hosts = make_host_policy(c.listen_host, c.public_url, c.allowed_hosts);
  return f;
}

// Names are echoed as JSON (escaped), shortened: a path may hold 256 bytes.
std::string bad_name_message(const std::string& name) {
  return "invalid function name \"" + name.substr(0, 80) +
         "\": use 1-63 of a-z 0-9 _ - starting with a letter or digit";
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
    if (!random_bytes(pool, sizeof pool, "request id")) abort();  // the kernel is broken
    used = 0;
  }
  std::string id = hex_of(pool + used, 8);
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
      token_(std::move(token)),
      read_token_(config_.read_token),
      sandbox_memory_(factory),
      logs_(static_cast<size_t>(config_.log_lines), static_cast<size_t>(config_.log_bytes)),
      invocations_(store, pool, factory, logs_, std::move(profiles)),
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
  if (invocations_.profile_index(next.default_policy) >= 0 &&
      next.default_policy != config_.default_policy) {
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

json Gateway::function_json(const FunctionMeta& meta) const {
  json j = meta_to_json(meta);
  if (!meta.damaged.empty()) j["damaged"] = meta.damaged;
  // Not mended by a deploy (409) as other damage is: an operator must act.
  if (meta.untrusted) j["untrusted"] = true;
  // Stored with template=1 by a daemon that could make one: served
  // without, which the operator should see rather than guess.
  if (meta.use_template && !invocations_.templates_unavailable().empty())
    j["template_unavailable"] = invocations_.templates_unavailable();
  return j;
}

std::string Gateway::base_url() const {
  if (!config_.public_url.empty()) return config_.public_url;
  std::string host = config_.listen_host == "0.0.0.0" ? "127.0.0.1" : config_.listen_host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(config_.listen_port);
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
    want = token_;
    if (access == Access::Read && !read_token_.empty()) want_read = read_token_;
  }
  const std::string header = req.get_header_value("Authorization");
  const std::optional<std::string_view> bearer = bearer_credentials(header);
  const std::string got = bearer ? std::string(*bearer) : std::string();
  bool ok = bearer && same_secret(got, want);
  if (bearer && !want_read.empty()) ok |= same_secret(got, want_read);
  if (ok) return true;
  if (access == Access::Admin && bearer) {
    std::string read;
    {
      std::lock_guard<std::mutex> lock(token_mu_);
      read = read_token_;
    }
    if (!read.empty() && same_secret(got, read)) {
      send_error(res, 403,
                 "this is the read-only token (read_token): deploying and deleting need the "
                 "admin token");
      return false;
    }
  }
  res.set_header("WWW-Authenticate", "Bearer");
  send_error(res, 401,
             header.empty() ? "missing Authorization: Bearer TOKEN (the token is in the state "
                              "directory's token file)"
             : !bearer      ? "Authorization must be Bearer TOKEN"
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
                 for (const auto& m : store_.list()) list.push_back(function_json(m));
                 send_json(res, 200, {{"functions", list}});
               });
  front_.route("GET", R"(/functions/([^/]+))", Access::Read,
               [this](const httplib::Request& req, httplib::Response& res) {
                 std::string name = req.matches[1];
                 if (!valid_function_name(name))
                   return send_error(res, 400, bad_name_message(name));
                 auto meta = store_.latest_meta(name);
                 if (!meta) return send_error(res, 404, "no function " + name);
                 json j = function_json(*meta);
                 j["versions"] = store_.versions(name);
                 j["url"] = base_url() + "/fn/" + name;
                 send_json(res, 200, j);
               });
  front_.route("GET", R"(/functions/([^/]+)/logs)", Access::Read,
               [this](const httplib::Request& req, httplib::Response& res) {
                 if (!authorized(req, res, Access::Read)) return;
                 std::string name = req.matches[1];
                 if (!valid_function_name(name))
                   return send_error(res, 400, bad_name_message(name));
                 if (!store_.latest_meta(name)) return send_error(res, 404, "no function " + name);
                 res.set_content(logs_.get(name), "text/plain; charset=utf-8");
               });
  front_.route(
      "PUT", R"(/functions/([^/]+))", Access::Admin,
      [this](const httplib::Request& req, httplib::Response& res) { handle_deploy(req, res); });
  front_.route(
      "DELETE", R"(/functions/([^/]+))", Access::Admin,
      [this](const httplib::Request& req, httplib::Response& res) { handle_delete(req, res); });
  front_.route("POST", R"(/fn/([^/]+))", Access::Public,
               [this](httplib::Request& req, httplib::Response& res) { handle_invoke(req, res); });
  // No HEAD: a GET runs the function, and a link checker or a cache probing
  // a URL with HEAD must not (405, Allow: POST, GET).
  front_.route(
      "GET", R"(/fn/([^/]+))", Access::Public,
      [this](httplib::Request& req, httplib::Response& res) { handle_invoke(req, res); }, false);
}

void Gateway::handle_deploy(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  std::string name = req.matches[1];
  if (!valid_function_name(name)) return send_error(res, 400, bad_name_message(name));
  if (req.body.size() > kMaxSourceBytes) return send_error(res, 413, "source larger than 1 MiB");
  if (req.body.empty()) return send_error(res, 400, "empty body: send the Python source");
  if (!valid_utf8(req.body)) return send_error(res, 400, "the source is not valid UTF-8");
  if (std::string why; !invocations_.deployable(name, &why)) return send_error(res, 409, why);
  // A misspelt option would otherwise deploy with the default it meant to
  // change, and a repeated one with whichever came first.
  static const char* const kOptions[] = {"handler", "memory", "policy", "template", "timeout"};
  for (const auto& [key, value] : req.params) {
    const std::string& option = key;  // clang 14 captures no structured binding
    if (std::find_if(std::begin(kOptions), std::end(kOptions),
                     [&](const char* o) { return option == o; }) == std::end(kOptions)) {
      std::string known;
      for (const char* o : kOptions) known += (known.empty() ? "" : ", ") + std::string(o);
      return send_error(res, 400, "unknown deploy option \"" + key + "\" (known: " + known + ")");
    }
    if (req.get_param_value_count(key) > 1)
      return send_error(res, 400, "deploy option \"" + key + "\" given more than once");
  }
  FunctionVersion fv;
  fv.source = req.body;
  fv.meta.handler = req.has_param("handler") ? req.get_param_value("handler") : "handler";
  if (!valid_python_identifier(fv.meta.handler))
    return send_error(res, 400,
                      "handler \"" + fv.meta.handler +
                          "\" is not a Python identifier (ASCII, at most 128, not a keyword)");
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
  int profile = invocations_.profile_index(fv.meta.policy);
  if (profile < 0)
    return send_error(
        res, 400,
        "unknown policy \"" + fv.meta.policy + "\" (known: " + invocations_.profile_names() + ")");
  if (req.has_param("memory")) {
    auto m = parse_size(req.get_param_value("memory"));
    if (!m) return send_error(res, 400, "memory: " + m.error().detail);
    // The bound that is lower names itself: the per-function maximum, or
    // the whole pool's budget when a reload lowered it below that.
    if (m.value() < (16ull << 20))
      return send_error(res, 400,
                        "memory must be at least 16M (Python does not start in less); at most " +
                            std::to_string(std::min(max_memory, memory_budget) >> 20) + "M here");
    if (m.value() > memory_budget && memory_budget < max_memory)
      return send_error(res, 400,
                        "memory " + std::to_string(m.value() >> 20) +
                            "M is above the pool's whole memory budget of " +
                            std::to_string(memory_budget >> 20) + "M ([pool] memory_budget_mb)");
    if (m.value() > max_memory)
      return send_error(res, 400,
                        "memory " + std::to_string(m.value() >> 20) +
                            "M is above the per-function maximum of " +
                            std::to_string(max_memory >> 20) +
                            "M ([functions] max_memory_mb in the daemon's config)");
    fv.meta.memory_mb = m.value() >> 20;
  }
  if (req.has_param("timeout")) {
    auto t = parse_duration_ms(req.get_param_value("timeout"), kMaxFunctionTimeoutMs, "15m");
    if (!t) return send_error(res, 400, "timeout " + t.error().detail);
    fv.meta.timeout_ms = t.value();
  }
  if (req.has_param("template")) {
    const std::string v = req.get_param_value("template");
    if (v == "1" || v == "true")
      fv.meta.use_template = true;
    else if (v != "0" && v != "false")
      return send_error(res, 400, "template must be 1, true, 0 or false, not \"" + v + "\"");
    if (fv.meta.use_template) {
      if (std::string why = invocations_.template_unsupported(static_cast<uint32_t>(profile));
          !why.empty())
        return send_error(res, 400, "template=1: " + why);
    }
  }

  CheckResult check =
      invocations_.check(name, fv.source, static_cast<uint32_t>(profile), fv.meta,
                         Clock::now() + std::chrono::milliseconds(queue_timeout_ms));
  if (check.outcome == CheckResult::Outcome::NoSandbox) {
    res.set_header("Retry-After", "1");
    return send_error(res, 503, check.message);
  }
  if (check.outcome == CheckResult::Outcome::SyntaxError) return send_json(res, 400, check.error);
  if (check.outcome != CheckResult::Outcome::Ok) return send_error(res, 400, check.message);

  auto put = invocations_.deploy(name, fv);
  if (!put) {
    LOG_ERROR("deploy %s: %s", name.c_str(), put.error().message().c_str());
    // A full disk or quota is the operator's to fix, and says so (RFC 4918's
    // 507); nothing of the version was kept, so deploying again is safe.
    const int err = put.error().err;
    if (err == ENOSPC || err == EDQUOT)
      return send_error(res, 507,
                        "could not store the function: the function store's filesystem is full "
                        "(" +
                            put.error().message() +
                            "); the function was not deployed: free space in the daemon's "
                            "state_dir, then deploy again");
    return send_error(res, 500,
                      "could not store the function: " + put.error().message() +
                          "; the function was not deployed (the daemon's log has the error)");
  }
  send_json(
      res, 201,
      {{"name", name}, {"version", put.value().version}, {"url", base_url() + "/fn/" + name}});
}

void Gateway::handle_delete(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  std::string name = req.matches[1];
  if (!valid_function_name(name)) return send_error(res, 400, bad_name_message(name));
  auto r = invocations_.remove(name);
  if (!r) return send_error(res, 500, "could not delete: " + r.error().message());
  if (!r.value()) return send_error(res, 404, "no function " + name);
  metrics_.forget(name, r.value());
  send_json(res, 200, {{"name", name}, {"deleted", true}});
}

void Gateway::handle_invoke(httplib::Request& req, httplib::Response& res) {
  const auto t0 = Clock::now();
  InvokeRequest in;
  in.request_id = next_request_id();
  res.set_header("X-Nsbox-Request-Id", in.request_id);
  in.name = req.matches[1];
  // metric_name: "-" where the name may name nothing (metrics keep no
  // per-name state for functions that do not exist); the access log keeps
  // what was asked for.
  static const std::string kNone = "-";
  uint64_t deploy = 0;  // the deploy the request was planned for, once known
  auto finish = [&](const std::string& name, const char* outcome, int status,
                    const std::string* metric_name = nullptr) {
    metrics_.request(metric_name ? *metric_name : name, status, seconds_since(t0), deploy);
    access_log_.line(in.request_id, name, outcome, status, seconds_since(t0) * 1000,
                     req.remote_addr);
  };
  if (!valid_function_name(in.name)) {
    send_error(res, 400, bad_name_message(in.name));
    return finish("-", "bad_name", 400);
  }
  if (req.has_header("Service-Worker")) {
    // A browser fetching a service worker's script says so. Every function
    // shares this origin, and a worker registered from /fn/NAME would
    // control the pages of every function under /fn/ in that browser.
    send_error(res, 403,
               "a function cannot be a service worker: all functions share this origin, so its "
               "scope would be every function's pages; serve it from an origin of its own");
    return finish(in.name, "service_worker", 403, &kNone);
  }
  if (req.method == "POST") {
    in.event = std::move(req.body);  // up to max_body_kb, held once
  } else {
    // A GET's body is no event: dropped, and no longer counted, at once.
    std::string().swap(req.body);
    front_.release_request_body();
  }
  if (req.method != "POST" && !req.params.empty()) {
    std::string why;
    std::optional<std::string> event = query_event(req.params, &why);
    if (!event) {
      send_error(res, 400, why);
      // Refused before the pool looked the name up: it may name nothing.
      return finish(in.name, "bad_query", 400, &kNone);
    }
    in.event = std::move(*event);
  }
  in.queue_deadline = t0 + std::chrono::milliseconds(queue_timeout_ms());
  // A function may run for minutes: its event, once in the sandbox, must
  // not hold the daemon's memory or the front's body budget meanwhile.
  in.event_sent = [this, &in] {
    std::string().swap(in.event);
    front_.release_request_body();
  };
  InvokeResult r = invocations_.invoke(in);
  if (r.leased) metrics_.start(in.name, r.cold, r.deploy);
  const int status = send_outcome(res, r);
  // Which of the daemon's outcomes the status is: a function's own proxy
  // response may carry any status, 404 and 502 included, and a client
  // (nsbox invoke) must not take it for the daemon's.
  res.set_header("X-Nsbox-Outcome",
                 r.outcome == InvokeResult::Outcome::Proxy ? "proxy" : outcome_name(r.outcome));
  // Metrics keep no per-name state for functions that do not exist; the
  // access log names what was asked for (valid), so that probing for
  // names shows there.
  deploy = r.deploy;
  finish(in.name, outcome_name(r.outcome), status,
         r.outcome == InvokeResult::Outcome::NotFound ? &kNone : nullptr);
  // Nor for one deleted while this request ran: a deploy's lines that came
  // after its delete's forget() are not counted, but one not found in the
  // store (damaged) has no deploy number to tell by.
  if (r.deploy == 0 && r.outcome != InvokeResult::Outcome::NotFound &&
      !invocations_.exists(in.name))
    metrics_.forget_all(in.name);
}

void Gateway::handle_metrics(httplib::Response& res) {
  PoolStats s = pool_.stats();
  res.set_content(metrics_.render() + render_pool_stats(s) + sandbox_memory_.render(s.ids) +
                      front_.render_metrics(),
                  "text/plain; version=0.0.4");
}

}  // namespace nsbox
