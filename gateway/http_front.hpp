// The daemon's HTTP/1.1 front: one epoll thread accepts connections and
// reads each request's head and body under one deadline and the limits
// below, checks the route's access level from the head alone (a request
// that needs the token is refused before its body is read), and only then
// hands the complete request to a handler thread. Handlers keep cpp-httplib's
// Request/Response types. Slow or idle clients therefore hold a few KiB of
// buffer and no thread (docs/architecture.md, "HTTP front").
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gateway/conn_threads.hpp"
#include "gateway/host_check.hpp"
#include "gateway/http_parse.hpp"

namespace nsbox {

struct FrontConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  HeadLimits head;
  uint64_t max_body_bytes = 6ull << 20;
  // Request bodies held by all connections together, counted as they
  // arrive; the request that would pass it gets 503 (Retry-After).
  uint64_t max_buffered_bytes = 256ull << 20;
  int request_timeout_ms = 30000;  // the whole head and body, from the first byte
  int idle_timeout_ms = 30000;     // a keep-alive connection waiting for its next request
  int max_connections = 1024;      // open connections; the oldest idle one makes room
  int max_sending_per_address =
      32;                      // still sending a request, or not reading an answer, per client
  int handler_threads = 1024;  // requests being handled at once
  std::vector<Cidr> trusted_proxies;  // may send PROXY v1 and X-Forwarded-For
  HostPolicy hosts;                   // the Host names answered; others get 421
};

// Who may use a route; the front asks the authorizer before reading a body.
enum class Access { Public, Read, Admin };

class HttpFront {
 public:
  // The request is the handler's to take from (its body may be moved out):
  // the front only reads its version afterwards.
  using Handler = std::function<void(httplib::Request&, httplib::Response&)>;
  // From the head alone: true to go on; false with res filled to refuse
  // (the body is not read and the connection is closed).
  using Authorizer = std::function<bool(const httplib::Request&, Access, httplib::Response&)>;
  // Fills res with the daemon's error format.
  using ErrorBody = std::function<void(httplib::Response&, int status, const std::string& message)>;

  explicit HttpFront(FrontConfig config);
  ~HttpFront();

  // head: a GET route also answers HEAD (without the body); false where a
  // GET has side effects.
  void route(const std::string& method, const std::string& pattern, Access access, Handler h,
             bool head = true);
  void set_authorizer(Authorizer a) { authorize_ = std::move(a); }
  void set_error_body(ErrorBody e) { error_body_ = std::move(e); }
  // Called for every request a handler answered, with the client address.
  bool bind(std::string* error);
  // Serves until stop(); returns once every handler has finished.
  void serve();
  void stop();  // async-signal-unsafe but thread-safe; before serve() makes it return at once
  std::string render_metrics();
  // From a handler, once it holds its request's body no more (an
  // invocation, once the event is in the sandbox): the body stops counting
  // against max_buffered_bytes while the handler runs on. Elsewhere a no-op.
  void release_request_body();

 private:
  struct Route {
    std::string method;
    std::regex re;
    Access access;
    Handler handler;
    bool head = true;
  };
  struct Conn;
  enum class State;

  void accept_all();
  void on_event(Conn* c, uint32_t events);
  void read_some(Conn* c);
  // Epoll thread only. Parses what c has read; a complete request leaves c
  // Handling, and the caller hands it off once done with it: from then on
  // a handler thread owns c, and may close it and let it be freed.
  void process(Conn* c);
  bool start_reading(Conn* c);
  void enforce_address_caps(std::chrono::steady_clock::time_point now);
  void cap_unread(std::chrono::steady_clock::time_point now);
  void begin_drain(Conn* c);
  void refuse_over_cap(Conn* c);
  // A whole answer sent by a bare send() where no Conn reads on: the
  // daemon's error body, so even these say why and what to change.
  std::string canned_reply(int status, const std::string& message);
  void free_closed();
  void dispatch(Conn* c);  // marks c Handling
  void hand_off(Conn* c);  // to a handler thread; the caller touches c no more
  void handle(Conn* c);
  // True when the worker took the connection's next request (take_next_inline).
  bool send_response(Conn* c, httplib::Response& res, bool from_worker);
  bool take_next_inline(Conn* c);
  bool flush(Conn* c);
  bool after_write(Conn* c, bool from_worker);
  void refuse(Conn* c, int status, const std::string& message);
  void refuse_with(Conn* c, httplib::Response& res);
  void close_conn(Conn* c);
  // Counts c's body, now total bytes, in buffered_; false when that would
  // pass max_buffered_bytes.
  bool hold_body(Conn* c, uint64_t total);
  void release_body(Conn* c);  // any thread that owns c; idempotent
  // Set by handle() around its handler: the connection, and its front.
  struct Handling {
    const HttpFront* front = nullptr;
    Conn* conn = nullptr;
  };
  static thread_local Handling handling_;
  void release_answer(Conn* c);  // likewise, for unread_bytes_
  void refuse_buffered(Conn* c);
  void count_sending(Conn* c, bool on);
  void arm(Conn* c, uint32_t events);
  void sweep();
  bool evict_idle();
  // allow: where no route takes the method, the methods that the path's
  // routes take ("" = none: the path is unknown).
  const Route* find_route(httplib::Request& req, std::string* allow);

  FrontConfig config_;
  std::vector<Route> routes_;
  Authorizer authorize_;
  ErrorBody error_body_;
  std::string busy_reply_;      // 503 at accept: the connection table is full
  std::string over_cap_reply_;  // 429: an address over max_sending_per_address
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop, and connections handed back with bytes already read
  std::atomic<bool> stopping_{false};
  std::atomic<int> lingering_{0};  // handler threads waiting for a next request
  const int max_lingering_;
  std::unique_ptr<ConnectionThreads> threads_;

  // Guards the connection set, each connection's state while it changes
  // hands between the epoll thread and handler threads, and ready_.
  std::mutex mu_;
  std::unordered_set<Conn*> conns_;
  std::vector<Conn*> ready_;      // pipelined requests handed back by workers
  std::vector<Conn*> graveyard_;  // closed by the epoll thread, freed after the event batch
  // Epoll thread only: connections still sending, per address_key.
  std::unordered_map<std::string, int> sending_;
  std::chrono::steady_clock::time_point accept_paused_until_{};
  bool accept_paused_ = false;

  std::atomic<uint64_t> buffered_{0};  // request body bytes held (hold_body)
  // Bytes of answers waiting for their client to read them (Writing).
  std::atomic<uint64_t> unread_bytes_{0};
  std::atomic<uint64_t> refused_busy_{0}, refused_buffered_{0}, refused_address_{0}, timeouts_{0},
      too_large_{0}, head_too_large_{0}, unauthorized_{0}, bad_requests_{0}, inline_requests_{0},
      misdirected_{0}, unread_closed_{0};
};

}  // namespace nsbox
