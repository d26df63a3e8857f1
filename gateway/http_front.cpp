#include "gateway/http_front.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "base/log.hpp"
#include "gateway/http_status.hpp"

namespace nsbox {

using Clock = std::chrono::steady_clock;

namespace {

const std::string* find_header(const httplib::Request& req, const char* name) {
  auto it = req.headers.find(name);  // case-insensitive: httplib::Headers compares so
  return it == req.headers.end() ? nullptr : &it->second;
}

constexpr size_t kReadChunk = 16 << 10;
// No route's path is longer (a function name is at most 63 bytes), and no
// longer one is matched: std::regex recurses once per character, and a path
// of ~30,000 (a head of max_head_kb = 32 or more) overflows the stack.
constexpr size_t kMaxRoutePath = 256;
constexpr size_t kReadPerEvent = 64 << 10;  // then the next connection's turn
constexpr size_t kDrainBytes = 256 << 10;   // read and dropped after a refusal, at most
constexpr auto kDrainTime = std::chrono::seconds(1);
constexpr auto kSweepEvery = std::chrono::milliseconds(100);
// A connection counts against its address's cap once it has been sending
// its request this long: a load generator's connections send theirs in one
// packet right after connecting and never count, however many it opens.
constexpr auto kSendingGrace = std::chrono::milliseconds(200);
constexpr size_t kKeepHandlerThreads = 16;
// How long the thread that answered a keep-alive request waits for the next
// one on the same connection before handing it back to the epoll thread: a
// client in a closed loop sends it within tens of microseconds.
constexpr long kLingerNs = 1000 * 1000;
constexpr auto kHandlerThreadIdleExit = std::chrono::seconds(30);

std::string peer_address(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  return canonical_address(buf);
}

}  // namespace

enum class HttpFront::State { Reading, Body, Handling, Writing, Idle, Draining };

struct HttpFront::Conn {
  int fd = -1;
  std::string peer;    // the socket's peer
  std::string origin;  // peer, or the source a trusted proxy's PROXY line gave
  std::string client;  // origin, or what a trusted proxy's X-Forwarded-For said
  std::string key;     // address_key(client) while counted in sending_
  bool counted = false;
  bool trusted = false;         // peer is a trusted proxy
  bool origin_trusted = false;  // origin is (then not counted per address)
  bool proxy_checked = false;
  bool dead = false;
  bool refusing = false;  // the answer is the front's own; then drain and close
  State state = State::Reading;
  Clock::time_point deadline;
  Clock::time_point since;    // idle since (eviction order)
  Clock::time_point started;  // began sending its current request
  std::string in;             // bytes read and not used yet
  uint64_t held = 0;          // its request body's bytes counted in buffered_
  uint64_t answer_held = 0;   // its answer's bytes counted in unread_bytes_
  std::unique_ptr<httplib::Request> req;
  HeadResult head;
  HeadScan scan;  // of the head still arriving
  std::optional<ChunkedDecoder> chunked;
  const Route* route = nullptr;
  bool keep_alive = true;
  bool head_only = false;  // HEAD: the body is not sent
  bool linger = true;      // the last wait for its next request was not in vain
  // The response being written: head, then body.
  std::string out_head, out_body;
  size_t out_off = 0;
  size_t drained = 0;
};

thread_local HttpFront::Handling HttpFront::handling_;

HttpFront::HttpFront(FrontConfig config)
    : config_(std::move(config)),
      max_lingering_(4 * int(std::max(1u, std::thread::hardware_concurrency()))) {
  error_body_ = [](httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(message + "\n", "text/plain");
  };
  authorize_ = [](const httplib::Request&, Access, httplib::Response&) { return true; };
}

HttpFront::~HttpFront() {
  if (threads_) threads_->shutdown();
  for (Conn* c : conns_) {
    close(c->fd);
    delete c;
  }
  for (Conn* c : graveyard_) delete c;
  if (listen_fd_ >= 0) close(listen_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void HttpFront::route(const std::string& method, const std::string& pattern, Access access,
                      Handler h, bool head) {
  routes_.push_back({method, std::regex(pattern), access, std::move(h), head});
}

bool HttpFront::bind(std::string* error) {
  addrinfo hints{}, *ai = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  std::string port = std::to_string(config_.port);
  const char* host = config_.host.empty() ? nullptr : config_.host.c_str();
  if (int rc = getaddrinfo(host, port.c_str(), &hints, &ai); rc != 0) {
    *error = "cannot resolve " + config_.host + ": " + gai_strerror(rc);
    return false;
  }
  int fd = -1;
  for (addrinfo* p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, p->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, p->ai_addr, p->ai_addrlen) == 0 && listen(fd, 4096) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    *error = "cannot listen on " + config_.host + ":" + port +
             " (in use, or not an address of this machine?)";
    return false;
  }
  listen_fd_ = fd;
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    *error = std::string("epoll/eventfd: ") + strerror(errno);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the listener
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.ptr = &wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  threads_ = std::make_unique<ConnectionThreads>(size_t(config_.handler_threads),
                                                 kKeepHandlerThreads, kHandlerThreadIdleExit);
  busy_reply_ = canned_reply(503, "server busy: all max_connections (" +
                                      std::to_string(config_.max_connections) +
                                      ") connections are in use; retry later");
  over_cap_reply_ = canned_reply(
      429,
      "too many connections from your address are still sending a request "
      "(max_sending_per_address = " +
          std::to_string(config_.max_sending_per_address) + "); finish or close them, then retry");
  return true;
}

std::string HttpFront::canned_reply(int status, const std::string& message) {
  httplib::Response res;
  error_body_(res, status, message);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(http_reason(status)) +
                    "\r\nContent-Type: " + res.get_header_value("Content-Type") +
                    "\r\nContent-Length: " + std::to_string(res.body.size()) +
                    "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
  return out + res.body;
}

void HttpFront::stop() {
  stopping_ = true;
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
}

void HttpFront::serve() {
  epoll_event events[256];
  auto next_sweep = Clock::now() + kSweepEvery;
  while (!stopping_) {
    int n = epoll_wait(epoll_fd_, events, 256, int(kSweepEvery.count()));
    if (n < 0 && errno != EINTR) {
      LOG_ERROR("epoll_wait: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      void* p = events[i].data.ptr;
      if (p == nullptr) {
        accept_all();
      } else if (p == &wake_fd_) {
        uint64_t v;
        (void)!read(wake_fd_, &v, sizeof v);
        std::vector<Conn*> ready;
        {
          std::lock_guard<std::mutex> lock(mu_);
          ready.swap(ready_);
        }
        for (Conn* c : ready) {
          if (c->dead) continue;
          process(c);
          if (c->state == State::Handling)
            hand_off(c);
          else if (!c->dead && (c->state == State::Reading || c->state == State::Body))
            arm(c, EPOLLIN);
        }
      } else {
        Conn* c = static_cast<Conn*>(p);
        if (!c->dead) on_event(c, events[i].events);
      }
    }
    if (Clock::now() >= next_sweep) {
      sweep();
      next_sweep = Clock::now() + kSweepEvery;
    }
    free_closed();
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
  }
  // Requests in flight finish and are answered (with Connection: close).
  threads_->shutdown();
}

void HttpFront::free_closed() {
  std::vector<Conn*> dead;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dead.swap(graveyard_);
    // A pipelined connection waits in ready_ for the next turn; if the sweep
    // closed it meanwhile (the epoll thread stalled past its idle deadline),
    // that turn must not find it freed.
    if (!dead.empty() && !ready_.empty())
      std::erase_if(ready_, [&dead](Conn* c) {
        return std::find(dead.begin(), dead.end(), c) != dead.end();
      });
  }
  for (Conn* c : dead) delete c;
}

void HttpFront::accept_all() {
  for (int i = 0; i < 256; i++) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd =
        accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of fds: stop listening for a moment rather than spin on the
        // pending connection; the sweep re-arms the listener.
        LOG_WARN("accept: %s; pausing accepts for 100 ms", strerror(errno));
        epoll_event ev{};
        ev.data.ptr = nullptr;
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
        accept_paused_ = true;
        accept_paused_until_ = Clock::now() + kSweepEvery;
      }
      return;
    }
    size_t open;
    {
      std::lock_guard<std::mutex> lock(mu_);
      open = conns_.size();
    }
    if (open >= size_t(config_.max_connections) && !evict_idle()) {
      refused_busy_++;
      (void)!send(fd, busy_reply_.data(), busy_reply_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(fd);
      continue;
    }
    auto* c = new Conn;
    c->fd = fd;
    c->peer = peer_address(ss);
    c->origin = c->client = c->peer;
    c->trusted = c->origin_trusted = cidr_contains(config_.trusted_proxies, c->peer);
    c->req = std::make_unique<httplib::Request>();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    {
      std::lock_guard<std::mutex> lock(mu_);
      conns_.insert(c);
    }
    c->state = State::Idle;  // start_reading moves it on
    if (!start_reading(c)) continue;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT | EPOLLRDHUP;
    ev.data.ptr = c;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) close_conn(c);
  }
}

// A connection begins a request: it now counts as sending for its address
// (the sweep enforces the cap). False when it was refused (and closed).
bool HttpFront::start_reading(Conn* c) {
  c->state = State::Reading;
  c->started = Clock::now();
  c->deadline = c->started + std::chrono::milliseconds(config_.request_timeout_ms);
  c->scan = {};
  c->req = std::make_unique<httplib::Request>();
  c->chunked.reset();
  c->route = nullptr;
  // Until this request's head says HEAD: an answer the front makes before
  // then (a malformed head, a timeout) has its body, whatever came before.
  c->head_only = false;
  // A trusted proxy's connection is counted once it says whose it is.
  if (!c->origin_trusted) count_sending(c, true);
  return true;
}

void HttpFront::count_sending(Conn* c, bool on) {
  if (on == c->counted) return;
  if (on) {
    c->key = address_key(c->origin);
    sending_[c->key]++;
  } else {
    auto it = sending_.find(c->key);
    if (it != sending_.end() && --it->second <= 0) sending_.erase(it);
  }
  c->counted = on;
}

void HttpFront::arm(Conn* c, uint32_t events) {
  epoll_event ev{};
  // RDHUP only while reading: it stays raised once the peer half-closes, so
  // a connection waiting to write to a half-closed client that does not
  // read would come back at once, every time (the epoll thread spinning).
  // A write that cannot complete ends with EPOLLERR/EPOLLHUP or the deadline.
  ev.events = events | EPOLLONESHOT | ((events & EPOLLIN) ? EPOLLRDHUP : 0u);
  ev.data.ptr = c;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev) != 0)
    LOG_WARN("epoll_ctl: %s", strerror(errno));
}

void HttpFront::on_event(Conn* c, uint32_t events) {
  if (c->state == State::Writing) {
    if (events & (EPOLLERR | EPOLLHUP)) return close_conn(c);
    if (!flush(c)) return arm(c, EPOLLOUT);
    after_write(c, false);
    return;
  }
  read_some(c);
}

void HttpFront::read_some(Conn* c) {
  char buf[kReadChunk];
  size_t total = 0;
  bool eof = false;
  while (total < kReadPerEvent) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n > 0) {
      total += size_t(n);
      if (c->state == State::Draining) {
        c->drained += size_t(n);
        if (c->drained > kDrainBytes) return close_conn(c);
        continue;
      }
      c->in.append(buf, size_t(n));
      // The head must fit its limit: stop reading into a head that cannot.
      if (c->state == State::Reading && c->in.size() > config_.head.max_head_bytes + 4) break;
      // A short read emptied the socket: skip the recv that would only say
      // EAGAIN (the level-triggered event comes back if more arrives).
      if (size_t(n) < sizeof buf) break;
      continue;
    }
    if (n == 0)
      eof = true;
    else if (errno == EINTR)
      continue;
    else if (errno != EAGAIN && errno != EWOULDBLOCK)
      eof = true;
    break;
  }
  if (c->state == State::Draining) {
    if (eof) return close_conn(c);
    return arm(c, EPOLLIN);
  }
  if (c->state == State::Idle && !c->in.empty()) {
    // It came back soon enough after its answer to have been worth waiting for.
    c->linger = Clock::now() - c->since < std::chrono::nanoseconds(kLingerNs);
    if (!start_reading(c)) return;
  }
  process(c);
  if (c->state == State::Handling) return hand_off(c);
  if (c->dead || c->state == State::Writing) return;
  if (eof) {
    // A client that half-closes after a complete request still gets its
    // answer (handled above); one that leaves mid-request is just gone.
    return close_conn(c);
  }
  arm(c, EPOLLIN);
}

// Runs the parser over what has been read; hands a complete request on.
void HttpFront::process(Conn* c) {
  if (c->state == State::Idle) {
    if (c->in.empty()) return arm(c, EPOLLIN);
    if (!start_reading(c)) return;
  }
  if (c->state == State::Reading) {
    if (c->trusted && !c->proxy_checked) {
      // A trusted proxy may open with a PROXY v1 line; decide once enough
      // bytes tell "PROXY " from a method.
      const std::string_view sig = "PROXY ";
      size_t n = std::min(c->in.size(), sig.size());
      if (std::string_view(c->in).substr(0, n) == sig.substr(0, n)) {
        if (c->in.size() < sig.size()) return;
        std::string client;
        size_t len = 0;
        Parse p = parse_proxy_v1(c->in, &client, &len);
        if (p == Parse::NeedMore) return;
        if (p == Parse::Error) return refuse(c, 400, "malformed PROXY protocol line");
        c->in.erase(0, len);
        c->scan = {};
        if (!client.empty()) c->origin = c->client = client;
        c->origin_trusted = cidr_contains(config_.trusted_proxies, c->origin);
        if (!c->origin_trusted) count_sending(c, true);
      }
      c->proxy_checked = true;
    }
    HeadResult r = parse_head(c->in, config_.head, c->req.get(), &c->scan);
    if (r.state == Parse::NeedMore) return;
    if (r.state == Parse::Error) {
      if (r.status == 431)
        head_too_large_++;
      else
        bad_requests_++;
      return refuse(c, r.status, r.message);
    }
    c->head = r;
    c->in.erase(0, r.head_len);
    httplib::Request& req = *c->req;
    if (c->trusted) c->client = forwarded_client(c->origin, req, config_.trusted_proxies);
    req.remote_addr = c->client;
    c->keep_alive = r.keep_alive;
    c->head_only = req.method == "HEAD";
    if (const std::string* host = find_header(req, "Host"); !host_allowed(config_.hosts, host)) {
      misdirected_++;
      return refuse(c, 421, host_refusal(config_.hosts, *host));
    }
    if (req.path.size() > kMaxRoutePath) {
      bad_requests_++;
      return refuse(c, 414,
                    "request path of " + std::to_string(req.path.size()) +
                        " bytes: no route takes more than " + std::to_string(kMaxRoutePath) +
                        " (a function name is at most 63)");
    }
    std::string allow;
    c->route = find_route(req, &allow);
    if (!c->route) {
      bad_requests_++;
      if (allow.empty()) return refuse(c, 404, "no route for " + req.method + " " + req.path);
      httplib::Response res;
      error_body_(res, 405, "method not allowed for " + req.method + " " + req.path);
      res.set_header("Allow", allow);  // a 405 must say what is (RFC 9110 15.5.6)
      return refuse_with(c, res);
    }
    httplib::Response res;
    if (!authorize_(req, c->route->access, res)) {
      unauthorized_++;
      return refuse_with(c, res);
    }
    if (!r.chunked && r.content_length > config_.max_body_bytes) {
      too_large_++;
      return refuse(c, 413,
                    "request body too large (limit " +
                        std::to_string(config_.max_body_bytes >> 10) +
                        " KiB, [server] max_body_kb)");
    }
    bool has_body = r.chunked || r.content_length > 0;
    if (r.expect_continue && has_body) {
      static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      (void)!send(c->fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (r.chunked) c->chunked.emplace(config_.max_body_bytes, config_.head.max_head_bytes);
    c->state = State::Body;
  }
  if (c->state == State::Body) {
    httplib::Request& req = *c->req;
    if (c->chunked) {
      size_t used = 0;
      int status = 0;
      Parse p = c->chunked->feed(c->in, &used, &req.body, &status);
      c->in.erase(0, used);
      if (p == Parse::Error) {
        if (status == 413)
          too_large_++;
        else
          bad_requests_++;
        std::string why = "malformed chunked body";
        if (status == 413)
          why = "request body too large (limit " + std::to_string(config_.max_body_bytes >> 10) +
                " KiB, [server] max_body_kb)";
        else if (status == 431)
          why = "chunked trailer too large (limit " +
                std::to_string(config_.head.max_head_bytes >> 10) + " KiB, max_head_kb)";
        return refuse(c, status, why);
      }
      if (!hold_body(c, req.body.size())) return refuse_buffered(c);
      if (p == Parse::NeedMore) return;
    } else {
      size_t want = size_t(c->head.content_length) - req.body.size();
      size_t take = std::min(want, c->in.size());
      if (req.body.empty() && take == c->in.size()) {
        req.body.swap(c->in);  // the common case: the whole body came with the head
      } else {
        req.body.append(c->in, 0, take);
        c->in.erase(0, take);
      }
      if (!hold_body(c, req.body.size())) return refuse_buffered(c);
      if (req.body.size() < c->head.content_length) return;
    }
    dispatch(c);
  }
}

const HttpFront::Route* HttpFront::find_route(httplib::Request& req, std::string* allow) {
  if (req.path.size() > kMaxRoutePath) return nullptr;
  const bool head = req.method == "HEAD";
  const std::string method = head ? "GET" : req.method;
  for (const Route& r : routes_)
    if (r.method == method && (!head || r.head) && std::regex_match(req.path, req.matches, r.re))
      return &r;
  std::smatch m;
  std::vector<std::string> methods;
  auto add = [&](const std::string& one) {
    if (std::find(methods.begin(), methods.end(), one) == methods.end()) methods.push_back(one);
  };
  for (const Route& r : routes_) {
    if (!std::regex_match(req.path, m, r.re)) continue;
    add(r.method);
    if (r.method == "GET" && r.head) add("HEAD");
  }
  for (const std::string& one : methods) *allow += (allow->empty() ? "" : ", ") + one;
  return nullptr;
}

void HttpFront::dispatch(Conn* c) {
  count_sending(c, false);
  c->state = State::Handling;
}

void HttpFront::hand_off(Conn* c) {
  threads_->enqueue([this, c] { handle(c); });
}

// Handles the connection's request, and the next ones as long as they are
// taken inline (take_next_inline).
void HttpFront::handle(Conn* c) {
  // The connection whose handler runs on this thread: release_request_body's.
  struct Current {
    Current(const HttpFront* front, Conn* c) { handling_ = {front, c}; }
    ~Current() { handling_ = {}; }
  } current(this, c);
  for (;;) {
    httplib::Response res;
    try {
      c->route->handler(*c->req, res);
    } catch (const std::exception& e) {
      LOG_ERROR("internal error: %s", e.what());
      res = httplib::Response();
      error_body_(res, 500, std::string("internal error: ") + e.what());
    } catch (...) {
      res = httplib::Response();
      error_body_(res, 500, "internal error");
    }
    if (res.status < 100) res.status = 200;
    if (stopping_) c->keep_alive = false;
    bool next = false;
    try {
      next = send_response(c, res, true);
    } catch (const std::exception& e) {
      // Out of memory while answering, or taking the next request inline:
      // the connection goes, not the daemon, and its slot is freed.
      LOG_ERROR("answering a request: %s", e.what());
      c->keep_alive = false;
      close_conn(c);
      return;
    }
    if (!next) return;
  }
}

// The worker that answered a keep-alive request takes the connection's next
// one itself when it is there, or arrives within kLingerNs: no turn of the
// epoll thread and no hand-off between threads (a futex wake and a context
// switch each way, about a third of the front's CPU per warm request). Only a
// complete request of a known route, not chunked, within the body limit and
// with its token checked is taken; anything else stays in c->in for the epoll
// thread, which parses it from the start and refuses it as usual. The state
// stays Handling throughout, so the sweep and eviction leave it alone.
bool HttpFront::take_next_inline(Conn* c) {
  if (stopping_ || c->trusted) return false;
  if (c->in.empty()) {
    if (!c->linger) return false;
    // Waiting threads cost context switches once there are more of them
    // than the CPUs can serve: beyond a few per CPU, connections take the
    // epoll thread's path.
    if (lingering_.fetch_add(1) >= max_lingering_) {
      lingering_--;
      return false;
    }
    pollfd p{c->fd, POLLIN, 0};
    const timespec wait{0, kLingerNs};
    int rc = ppoll(&p, 1, &wait, nullptr);
    lingering_--;
    if (rc <= 0 || !(p.revents & POLLIN)) {
      c->linger = rc != 0;  // in vain: not again until one comes back soon
      return false;
    }
    char buf[kReadChunk];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return false;  // EOF or error: the epoll thread sees it too
    c->in.append(buf, size_t(n));
  }
  httplib::Request& req = *c->req;
  HeadResult r = parse_head(c->in, config_.head, &req);
  if (r.state != Parse::Done || r.chunked || r.expect_continue) return false;
  if (!host_allowed(config_.hosts, find_header(req, "Host"))) return false;
  if (r.content_length > config_.max_body_bytes ||
      c->in.size() - r.head_len < size_t(r.content_length))
    return false;
  std::string allow;
  const Route* route = find_route(req, &allow);
  if (!route) return false;
  httplib::Response refusal;
  if (!authorize_(req, route->access, refusal)) return false;
  // Counted as the epoll thread counts a body; past the budget, that
  // thread parses it again and refuses it.
  if (!hold_body(c, uint64_t(r.content_length))) return false;
  c->in.erase(0, r.head_len);
  req.body.assign(c->in, 0, size_t(r.content_length));
  c->in.erase(0, size_t(r.content_length));
  req.remote_addr = c->client;
  c->head = r;
  c->route = route;
  c->keep_alive = r.keep_alive;
  c->head_only = req.method == "HEAD";
  inline_requests_++;
  return true;
}

bool HttpFront::send_response(Conn* c, httplib::Response& res, bool from_worker) {
  // A client that does not read its answer keeps the connection for up to
  // request_timeout_ms: it holds the answer, not its request's body too.
  if (c->req) std::string().swap(c->req->body);
  release_body(c);
  std::string& h = c->out_head;
  h.clear();
  h += "HTTP/1.1 ";
  h += std::to_string(res.status);
  h += ' ';
  // A code the table lacks (a function may answer any 200-599) gets a
  // neutral phrase: clients ignore it (RFC 9112 §4), but some parsers
  // expect one.
  const std::string_view phrase = http_reason(res.status);
  h += phrase.empty() ? std::string_view("Status") : phrase;
  h += "\r\n";
  for (const auto& [k, v] : res.headers) {
    if (strcasecmp(k.c_str(), "Content-Length") == 0 || strcasecmp(k.c_str(), "Connection") == 0)
      continue;
    h += k;
    h += ": ";
    h += v;
    h += "\r\n";
  }
  // 204 and 304 answers end at their head (RFC 9110 15.3.5, 15.4.5): a body
  // a function returned with them would be read as the next response. A 205
  // may carry none either (15.3.6), but ends at its Content-Length of 0.
  const bool no_content = res.status == 204 || res.status == 304 || res.status == 205;
  if (res.status == 205) {
    h += "Content-Length: 0\r\n";
  } else if (!no_content) {
    h += "Content-Length: ";
    h += std::to_string(res.body.size());
    h += "\r\n";
  }
  if (!c->keep_alive)
    h += "Connection: close\r\n";
  else if (c->req && c->req->version == "HTTP/1.0")
    h += "Connection: keep-alive\r\n";
  h += "\r\n";
  c->out_body.clear();
  if (!c->head_only && !no_content) c->out_body.swap(res.body);
  c->out_off = 0;
  if (flush(c)) return after_write(c, from_worker);
  if (from_worker && stopping_) {
    // The epoll thread is gone or going: finish here, briefly (a client
    // that reads a byte at a time must not hold the daemon's exit).
    pollfd p{c->fd, POLLOUT, 0};
    const auto give_up = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < give_up && poll(&p, 1, 1000) > 0)
      if (flush(c)) break;
    close_conn(c);
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  c->answer_held = c->out_head.size() + c->out_body.size();
  unread_bytes_ += c->answer_held;
  c->state = State::Writing;
  c->deadline = Clock::now() + std::chrono::milliseconds(config_.request_timeout_ms);
  arm(c, EPOLLOUT);
  return false;
}

// Writes what it can; true once everything is sent (or the peer is gone:
// then the connection is marked not to be kept).
bool HttpFront::flush(Conn* c) {
  for (;;) {
    size_t hl = c->out_head.size(), bl = c->out_body.size();
    if (c->out_off >= hl + bl) return true;
    iovec iov[2];
    int n = 0;
    if (c->out_off < hl) iov[n++] = {c->out_head.data() + c->out_off, hl - c->out_off};
    size_t boff = c->out_off > hl ? c->out_off - hl : 0;
    if (bl > boff) iov[n++] = {c->out_body.data() + boff, bl - boff};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = size_t(n);
    ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      c->out_off += size_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    c->keep_alive = false;  // the peer is gone
    c->out_off = hl + bl;
    return true;
  }
}

bool HttpFront::after_write(Conn* c, bool from_worker) {
  // Swapped out, not assigned an empty string: libstdc++ keeps a string's
  // buffer when a short one is assigned to it, and an idle connection is
  // to hold none (the answer's body may be megabytes).
  std::string().swap(c->out_head);
  std::string().swap(c->out_body);
  release_answer(c);
  if (c->refusing) {
    begin_drain(c);
    return false;
  }
  if (!c->keep_alive) {
    close_conn(c);
    return false;
  }
  c->req = std::make_unique<httplib::Request>();
  if (from_worker && take_next_inline(c)) return true;
  std::lock_guard<std::mutex> lock(mu_);
  c->state = State::Idle;
  c->since = Clock::now();
  c->deadline = c->since + std::chrono::milliseconds(config_.idle_timeout_ms);
  if (!c->in.empty()) {
    // Pipelined: the next request is already here, and epoll will not say
    // so. The epoll thread takes it on its next turn.
    ready_.push_back(c);
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    return false;
  }
  // Empty, but a body that came in more than one read left the buffer it
  // was gathered in, up to the body's size.
  std::string().swap(c->in);
  arm(c, EPOLLIN);
  return false;
}

// An answer from the front itself (the request was not handled): sent, then
// the connection is half-closed and whatever the client still sends is read
// and dropped for a moment, so it sees the answer rather than a reset.
void HttpFront::refuse(Conn* c, int status, const std::string& message) {
  httplib::Response res;
  error_body_(res, status, message);
  refuse_with(c, res);
}

void HttpFront::refuse_with(Conn* c, httplib::Response& res) {
  count_sending(c, false);
  c->keep_alive = false;
  c->refusing = true;
  c->in.clear();
  c->in.shrink_to_fit();
  c->chunked.reset();
  c->req = std::make_unique<httplib::Request>();
  send_response(c, res, false);  // then after_write: begin_drain
}

// A connection over its address's cap is closed at once: unlike other
// refusals it is not drained, so however many an address opens, they hold
// no slot of max_connections and no fd past this call (drained connections
// could otherwise fill the table for a second and starve other addresses).
// What the client already sent is read first so that, when it sends
// nothing more, the close is a FIN after the 429 rather than a reset.
void HttpFront::refuse_over_cap(Conn* c) {
  refused_address_++;
  char buf[kReadChunk];
  for (size_t got = 0; got < kDrainBytes;) {
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    got += size_t(n);
  }
  (void)!send(c->fd, over_cap_reply_.data(), over_cap_reply_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  close_conn(c);
}

void HttpFront::release_request_body() {
  if (handling_.front == this && handling_.conn) release_body(handling_.conn);
}

bool HttpFront::hold_body(Conn* c, uint64_t total) {
  if (total <= c->held) return true;
  const uint64_t more = total - c->held;
  uint64_t now = buffered_.load();
  do {
    if (now + more > config_.max_buffered_bytes) return false;
  } while (!buffered_.compare_exchange_weak(now, now + more));
  c->held = total;
  return true;
}

void HttpFront::release_body(Conn* c) {
  buffered_ -= c->held;
  c->held = 0;
}

void HttpFront::release_answer(Conn* c) {
  unread_bytes_ -= c->answer_held;
  c->answer_held = 0;
}

// Counted as the bytes arrive, not reserved from a Content-Length: a client
// that announces a large body and trickles it holds no more of the budget
// than it has sent.
void HttpFront::refuse_buffered(Conn* c) {
  refused_buffered_++;
  httplib::Response res;
  error_body_(res, 503,
              "server busy: the request bodies held fill [server] max_buffered_mb (" +
                  std::to_string(config_.max_buffered_bytes >> 20) + " MiB); retry later");
  res.set_header("Retry-After", "1");
  refuse_with(c, res);
}

void HttpFront::begin_drain(Conn* c) {
  shutdown(c->fd, SHUT_WR);
  c->state = State::Draining;
  c->drained = 0;
  c->deadline = Clock::now() + kDrainTime;
  arm(c, EPOLLIN);
}

void HttpFront::close_conn(Conn* c) {
  if (c->dead) return;
  count_sending(c, false);
  release_body(c);
  release_answer(c);
  // Once c is in the graveyard the epoll thread may free it (and a new
  // connection get its memory): nothing of c is read after the lock.
  const int fd = c->fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns_.erase(c);
    c->dead = true;
    // The epoll thread may hold an event for c in this batch: it frees c
    // after the batch. A worker's connection is not in any batch.
    graveyard_.push_back(c);
  }
  close(fd);
}

// Makes room for a new connection: the newest request still being sent from
// the address sending the most (when that is more than its cap allows), else
// a connection draining after a refusal, else the oldest idle keep-alive one,
// else the longest sending one, else the answer waiting longest to be read.
bool HttpFront::evict_idle() {
  const auto now = Clock::now();
  Conn* oldest = nullptr;
  std::string heaviest;
  int most = 0;
  for (const auto& [key, n] : sending_)
    if (n > most) most = n, heaviest = key;
  Conn* newest = nullptr;
  Conn* drain = nullptr;
  Conn* slowest = nullptr;  // of the heaviest address, sending the longest
  Conn* unread = nullptr;   // of the address with the most unread answers, the oldest
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, int> writing;  // answers waiting to be read, per address
    for (Conn* c : conns_)
      if (c->state == State::Writing && !c->origin_trusted && !c->key.empty()) writing[c->key]++;
    std::string reader;  // the address with the most
    int most_writing = 0;
    for (const auto& [key, n] : writing)
      if (n > most_writing) most_writing = n, reader = key;
    for (Conn* c : conns_) {
      if (c->state == State::Writing && !c->origin_trusted && c->key == reader &&
          (!unread || c->deadline < unread->deadline))
        unread = c;
      // A connection draining after a refusal is worth least, then idle ones.
      if (c->state == State::Draining) {
        drain = c;
      } else if (c->state == State::Idle && c->in.empty() &&
                 (!oldest || c->since < oldest->since)) {
        oldest = c;
      }
      if (c->counted && c->key == heaviest && (!newest || c->started > newest->started)) newest = c;
      if (c->counted && c->key == heaviest && now - c->started >= kSendingGrace &&
          (!slowest || c->started < slowest->started))
        slowest = c;
    }
  }
  // An address over its cap pays first: evicting a well-behaved client's
  // idle keep-alive connection would let the attacker choose who is closed.
  if (newest && most > config_.max_sending_per_address) {
    refuse_over_cap(newest);
    return true;
  }
  if (drain || oldest) {
    close_conn(drain ? drain : oldest);
    return true;
  }
  // Every slot holds a request still being sent and no address is over its
  // cap: many addresses trickle at once. The one that has been sending the
  // longest, from the address sending the most, goes, so a new client still
  // gets in (the attackers' connections turn over instead of piling up).
  if (slowest) {
    refused_busy_++;
    close_conn(slowest);
    return true;
  }
  // Every slot holds a request being handled or an answer not yet read.
  // An answer its client does not read is held until the request's
  // deadline: without this, one address that never reads could keep the
  // table full (cap_unread bounds how many it may hold at all). Its oldest goes (a proxy in front
  // buffers answers, so its clients never look like this).
  if (unread) {
    refused_busy_++;
    close_conn(unread);
    return true;
  }
  return false;
}

// Each address may have max_sending_per_address connections that have been
// sending longer than the grace; the newest beyond that get 429.
void HttpFront::enforce_address_caps(Clock::time_point now) {
  std::unordered_map<std::string, std::vector<Conn*>> over;
  for (const auto& [key, n] : sending_)
    if (n > config_.max_sending_per_address) over[key];
  if (over.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Conn* c : conns_) {
      if (!c->counted || now - c->started < kSendingGrace) continue;
      auto it = over.find(c->key);
      if (it != over.end()) it->second.push_back(c);
    }
  }
  for (auto& [key, list] : over) {
    if (list.size() <= size_t(config_.max_sending_per_address)) continue;
    std::sort(list.begin(), list.end(),
              [](const Conn* a, const Conn* b) { return a->started < b->started; });
    for (size_t i = size_t(config_.max_sending_per_address); i < list.size(); i++)
      refuse_over_cap(list[i]);
  }
}

// An answer its client does not read holds up to the largest payload until
// the request's deadline: one address with max_connections of them would pin
// gigabytes. Each address may have max_sending_per_address answers unread
// after the grace; beyond that its newest are closed (a proxy in front is
// trusted and buffers answers, so its clients never look like this).
void HttpFront::cap_unread(Clock::time_point now) {
  const auto timeout = std::chrono::milliseconds(config_.request_timeout_ms);
  std::unordered_map<std::string, std::vector<Conn*>> writing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Conn* c : conns_)
      if (c->state == State::Writing && !c->origin_trusted && !c->key.empty() &&
          now - (c->deadline - timeout) >= kSendingGrace)
        writing[c->key].push_back(c);
  }
  // Oldest first. The newest go, as in enforce_address_caps: the address's
  // older answers (another user's behind the same NAT, say) are not the
  // attacker's to choose.
  for (auto& [key, list] : writing)
    std::sort(list.begin(), list.end(),
              [](const Conn* a, const Conn* b) { return a->deadline < b->deadline; });
  auto close_newest = [&](std::vector<Conn*>& list) {
    unread_closed_++;
    close_conn(list.back());
    list.pop_back();
  };
  const size_t cap = size_t(config_.max_sending_per_address);
  for (auto& [key, list] : writing)
    while (list.size() > cap) close_newest(list);
  // All answers together: many addresses each under its cap (a local user
  // has all of 127/8) could still hold max_connections answers of up to
  // 6 MiB each. Past max_buffered_bytes, the address holding the most
  // unread bytes loses its newest answer, until the rest fit. Only the
  // answers this may close count (past the grace, not a trusted proxy's):
  // others over the budget would have every slow reader closed at every
  // sweep, to no avail.
  uint64_t closable = 0;
  for (const auto& [key, list] : writing)
    for (const Conn* c : list) closable += c->answer_held;
  while (closable > config_.max_buffered_bytes) {
    std::vector<Conn*>* heaviest = nullptr;
    uint64_t most = 0;
    for (auto& [key, list] : writing) {
      uint64_t bytes = 0;
      for (const Conn* c : list) bytes += c->answer_held;
      if (bytes > most) most = bytes, heaviest = &list;
    }
    if (!heaviest) break;
    closable -= heaviest->back()->answer_held;
    close_newest(*heaviest);
  }
}

void HttpFront::sweep() {
  auto now = Clock::now();
  if (accept_paused_ && now >= accept_paused_until_) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
    accept_paused_ = false;
  }
  enforce_address_caps(now);
  cap_unread(now);
  std::vector<Conn*> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Conn* c : conns_)
      if (c->state != State::Handling && now >= c->deadline) expired.push_back(c);
  }
  for (Conn* c : expired) {
    if (c->state == State::Reading || c->state == State::Body) {
      timeouts_++;
      refuse(c, 408,
             "request not received within " + std::to_string(config_.request_timeout_ms) +
                 " ms ([server] request_timeout_ms)");
    } else {
      close_conn(c);
    }
  }
}

std::string HttpFront::render_metrics() {
  size_t open = 0, idle = 0, sending = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    open = conns_.size();
    for (Conn* c : conns_) {
      if (c->state == State::Idle) idle++;
      if (c->state == State::Reading || c->state == State::Body) sending++;
    }
  }
  std::string out =
      "# HELP nsbox_http_connections Open client connections by state.\n"
      "# TYPE nsbox_http_connections gauge\n";
  out += "nsbox_http_connections{state=\"sending\"} " + std::to_string(sending) + "\n";
  out += "nsbox_http_connections{state=\"idle\"} " + std::to_string(idle) + "\n";
  out += "nsbox_http_connections{state=\"other\"} " + std::to_string(open - idle - sending) + "\n";
  out +=
      "# HELP nsbox_http_refused_total Requests or connections the front refused, by reason.\n"
      "# TYPE nsbox_http_refused_total counter\n";
  auto line = [&](const char* why, uint64_t v) {
    out +=
        std::string("nsbox_http_refused_total{reason=\"") + why + "\"} " + std::to_string(v) + "\n";
  };
  line("busy", refused_busy_);
  line("buffered", refused_buffered_);
  line("per_address", refused_address_);
  line("timeout", timeouts_);
  line("body_too_large", too_large_);
  line("head_too_large", head_too_large_);
  line("unauthorized", unauthorized_);
  line("bad_request", bad_requests_);
  line("misdirected", misdirected_);
  line("unread", unread_closed_);
  out +=
      "# HELP nsbox_http_inline_requests_total Keep-alive requests taken by the thread that "
      "answered the previous one.\n"
      "# TYPE nsbox_http_inline_requests_total counter\n"
      "nsbox_http_inline_requests_total " +
      std::to_string(inline_requests_) + "\n";
  out +=
      "# HELP nsbox_http_buffered_body_bytes Request body bytes held by all connections "
      "([server] max_buffered_mb).\n"
      "# TYPE nsbox_http_buffered_body_bytes gauge\n"
      "nsbox_http_buffered_body_bytes " +
      std::to_string(buffered_.load()) +
      "\n"
      "# HELP nsbox_http_unread_answer_bytes Answer bytes waiting for their clients to read them "
      "(held to [server] max_buffered_mb as well).\n"
      "# TYPE nsbox_http_unread_answer_bytes gauge\n"
      "nsbox_http_unread_answer_bytes " +
      std::to_string(unread_bytes_.load()) + "\n";
  return out;
}

}  // namespace nsbox
