// The HTTP API (cpp-httplib's Request/Response types): routes,
// authentication, request validation, and the mapping of an invocation's
// outcome (gateway/invocation.hpp) onto an HTTP status.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/access_log.hpp"
#include "gateway/config.hpp"
#include "gateway/http_front.hpp"
#include "gateway/invocation.hpp"
#include "gateway/logs.hpp"
#include "gateway/metrics.hpp"
#include "gateway/pool.hpp"
#include "gateway/registry.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

class Gateway {
 public:
  Gateway(ServeConfig config, FunctionStore& store, Pool& pool, SandboxFactory& factory,
          std::vector<ProfileInfo> profiles, std::string token);
  // Binds; false with *error set when the address cannot be used.
  bool bind(std::string* error);
  // Serves until stop(); returns when every connection thread has finished.
  void serve();
  void stop() { front_.stop(); }
  // The drain ran out: requests whose sandboxes are destroyed now answer 503.
  void cut_short() { invocations_.cut_short(); }
  // SIGHUP: applies what can change while serving (tokens, default policy,
  // queue timeout, memory budget for deploys); returns what it applied.
  std::string reload(const ServeConfig& next);
  // This daemon cannot make function templates (why): template=1 is
  // refused at deploy and ignored for functions stored with it.
  void set_templates_unavailable(std::string why) {
    invocations_.set_templates_unavailable(std::move(why));
  }

 private:
  void routes();
  // Admin routes take the admin token; Read routes either token.
  bool authorized(const httplib::Request& req, httplib::Response& res,
                  Access access = Access::Admin);
  void handle_invoke(httplib::Request& req, httplib::Response& res);
  void handle_deploy(const httplib::Request& req, httplib::Response& res);
  void handle_delete(const httplib::Request& req, httplib::Response& res);
  void handle_metrics(httplib::Response& res);
  // A function as GET /functions shows it: as stored, and what this daemon
  // does differently (a template it cannot make).
  nlohmann::json function_json(const FunctionMeta& meta) const;
  std::string base_url() const;
  std::string next_request_id();
  int queue_timeout_ms();

  ServeConfig config_;
  FunctionStore& store_;
  Pool& pool_;
  SandboxFactory& factory_;
  std::mutex token_mu_;  // guards token_, read_token_ and the reloadable config_ fields
  std::string token_;
  std::string read_token_;  // empty: none
  Metrics metrics_;
  SandboxMemory sandbox_memory_;
  AccessLog access_log_;
  LogStore logs_;
  Invocations invocations_;  // after logs_, which it writes to
  HttpFront front_;
};

}  // namespace nsbox
