// The daemon's HTTP front under hostile clients, over real sockets: the
// token is checked before a body is read, every body and head is bounded,
// one deadline covers a whole request, slow connections from one address do
// not starve another, the client address comes from trusted proxies only,
// and metadata needs a token.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/daemon.hpp"
#include "tests/integration/harness.hpp"

using nlohmann::json;
using nsbox::test::auth;
using nsbox::test::cpu_ticks;
using nsbox::test::Daemon;
using nsbox::test::StateDir;
using nsbox::test::wait_until;
using Clock = std::chrono::steady_clock;

namespace {

const char* kPool = "[pool]\nblank = 1\nmax_sandboxes = 8\nper_function = 2\n";
// Answers as many bytes as {"n": N} asks, up to 8 MB.
const char* kBigAnswer =
    "def handler(event, context):\n    return 'a' * min(int(event['n']), 8000000)\n";

// A TCP connection to the daemon from source address src (any 127/8
// address is this host's). rcvbuf: a small receive buffer, so that a large
// answer cannot all be sent while the client does not read.
int connect_from(const char* src, int port, bool nonblocking = false, int rcvbuf = 0) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  REQUIRE(fd >= 0);
  if (rcvbuf > 0) REQUIRE(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, src, &a.sin_addr);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(uint16_t(port));
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to);
  REQUIRE((rc == 0 || (nonblocking && errno == EINPROGRESS)));
  return fd;
}

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += size_t(n);
  }
}

// Reads until the peer closes or timeout_ms passes; *eof says which.
std::string read_until_close(int fd, int timeout_ms, bool* eof = nullptr) {
  std::string out;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (eof) *eof = false;
  for (;;) {
    int left =
        int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return out;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return out;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (eof) *eof = true;
      return out;
    }
    out.append(buf, size_t(n));
  }
}

// One request on a connection of its own from 127.0.0.1; what came back
// until the close.
std::string ask_once(const Daemon& d, const std::string& request) {
  int fd = connect_from("127.0.0.1", d.port());
  send_all(fd, request);
  std::string reply = read_until_close(fd, 10000);
  close(fd);
  return reply;
}

int status_of(const std::string& reply) {
  if (reply.rfind("HTTP/1.", 0) != 0 || reply.size() < 12) return 0;
  return std::atoi(reply.c_str() + 9);
}

long vm_hwm_kb(pid_t pid) {
  const std::string v = nsbox::test::proc_status(pid, "VmHWM");
  return v.empty() ? -1 : std::atol(v.c_str());
}

void raise_nofile() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

httplib::Result deploy(const Daemon& d, const std::string& name, const std::string& source) {
  return d.client()->Put(("/functions/" + name).c_str(), auth(d), source, "text/x-python");
}

std::string last_field(const std::string& line) {
  return line.substr(line.rfind(' ') + 1);
}

std::string request_id(const std::string& reply) {
  auto p = reply.find("X-Nsbox-Request-Id: ");
  if (p == std::string::npos) return "";
  p += 20;
  return reply.substr(p, reply.find("\r\n", p) - p);
}

}  // namespace

TEST_CASE("front: a route that needs the token refuses before reading the body") {
  StateDir sd("auth");
  Daemon d(sd.path, std::string("max_body_kb = 64\n") + kPool);
  REQUIRE(d.start());

  {
    INFO("a PUT's head is enough for a 401; the body is never waited for");
    for (const std::string& authz :
         {std::string(), std::string("Authorization: Bearer wrong\r\n")}) {
      int fd = connect_from("127.0.0.1", d.port());
      send_all(fd, "PUT /functions/f HTTP/1.1\r\nHost: localhost\r\n" + authz +
                       "Content-Type: text/x-python\r\nContent-Length: 32768\r\n\r\n");
      bool eof = false;
      std::string reply = read_until_close(fd, 3000, &eof);
      CHECK(status_of(reply) == 401);
      CHECK(eof);  // and the connection is closed, its body unread
      close(fd);
    }
  }
  {
    INFO("a chunked PUT without the token: 401 while it is still sending");
    int fd = connect_from("127.0.0.1", d.port());
    send_all(fd,
             "PUT /functions/f HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
             "100000\r\n" +
                 std::string(4096, 'x'));
    std::string reply = read_until_close(fd, 3000);
    CHECK(status_of(reply) == 401);
    close(fd);
  }
  {
    INFO("GET /metrics and the function list need a token too (the head is checked alike)");
    for (const char* path : {"/metrics", "/functions", "/functions/f", "/functions/f/logs"}) {
      int fd = connect_from("127.0.0.1", d.port());
      send_all(fd, std::string("GET ") + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
      CHECK_MESSAGE(status_of(read_until_close(fd, 3000)) == 401, path);
      close(fd);
    }
  }
  {
    INFO("a chunked body over the limit is 413, with the token");
    int fd = connect_from("127.0.0.1", d.port());
    std::string chunk(8192, 'x');
    std::string req = "PUT /functions/big HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
                      d.token() + "\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 10; i++) req += "2000\r\n" + chunk + "\r\n";  // 80 KiB > 64 KiB
    req += "0\r\n\r\n";
    send_all(fd, req);
    CHECK(status_of(read_until_close(fd, 3000)) == 413);
    close(fd);
    CHECK(d.client()->Get("/functions/big", auth(d))->status == 404);
  }
  {
    INFO("a Content-Length over the limit is 413 before any body byte");
    int fd = connect_from("127.0.0.1", d.port());
    send_all(fd, "PUT /functions/big HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
                     d.token() + "\r\nContent-Length: 81920\r\n\r\n");
    std::string reply = read_until_close(fd, 3000);
    CHECK(status_of(reply) == 413);
    CHECK_MESSAGE(reply.find("(limit 64 KiB, [server] max_body_kb)") != std::string::npos, reply);
    close(fd);
  }
  {
    INFO("too many headers, or too large a head: 431");
    std::string many = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
    for (int i = 0; i < 200; i++) many += "X-H" + std::to_string(i) + ": v\r\n";
    std::string big =
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(20000, 'a') +
        "\r\n\r\n";
    for (const std::string& req : {many + "\r\n", big}) {
      int fd = connect_from("127.0.0.1", d.port());
      send_all(fd, req);
      std::string reply = read_until_close(fd, 3000);
      CHECK(status_of(reply) == 431);
      // What the limit is, and the key that sets it.
      CHECK_MESSAGE((reply.find("(limit 64, [server] max_headers)") != std::string::npos ||
                     reply.find("(limit 16 KiB, [server] max_head_kb)") != std::string::npos),
                    reply);
      close(fd);
    }
  }
  // Nothing above broke the daemon.
  CHECK(d.client()->Get("/healthz")->status == 200);
}

TEST_CASE("front: unauthenticated chunked uploads do not grow the daemon's memory") {
  StateDir sd("memory");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  long before = vm_hwm_kb(d.pid());
  REQUIRE(before > 0);
  // 200 clients each push up to 64 MiB of chunked body at once, no token.
  std::vector<std::thread> clients;
  std::atomic<int> refused{0};
  for (int i = 0; i < 200; i++) {
    clients.emplace_back([&] {
      int fd = connect_from("127.0.0.1", d.port());
      std::string head =
          "PUT /functions/f HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
      send_all(fd, head);
      std::string chunk = "100000\r\n" + std::string(1 << 20, 'x') + "\r\n";
      for (int k = 0; k < 64; k++) {
        ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n < 0) break;  // refused and closed
      }
      if (status_of(read_until_close(fd, 5000)) == 401) refused++;
      close(fd);
    });
  }
  for (auto& t : clients) t.join();
  long after = vm_hwm_kb(d.pid());
  MESSAGE("daemon VmHWM " << before << " kB before, " << after << " kB after");
  CHECK(after - before < 64 * 1024);
  CHECK(refused > 0);
  CHECK(d.client()->Get("/healthz")->status == 200);
}

TEST_CASE("front: all connections together hold at most max_buffered_mb of bodies") {
  StateDir sd("buffered");
  Daemon d(sd.path, std::string("max_body_kb = 1024\nmax_buffered_mb = 2\n") + kPool);
  REQUIRE(d.start());
  // Unauthenticated invocations (of no function: the body is read before
  // the name is looked up), each announcing 1 MiB and sending all but its
  // last byte, from addresses of their own (the per-address cap is not it).
  auto start_body = [&](const char* src, size_t bytes) {
    int fd = connect_from(src, d.port());
    send_all(fd, "POST /fn/none HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n" +
                     std::string(bytes, 'x'));
    return fd;
  };
  const size_t most = (1 << 20) - 1;
  int a = start_body("127.0.0.2", most);
  int b = start_body("127.0.0.3", most);
  REQUIRE(wait_until([&] { return d.metric("nsbox_http_buffered_body_bytes") == double(2 * most); },
                     5000, "both bodies held"));
  // The third passes 2 MiB with its third byte: 503, and it is told why.
  int c = start_body("127.0.0.4", 3);
  std::string reply = read_until_close(c, 5000);
  close(c);
  CHECK(status_of(reply) == 503);
  CHECK_MESSAGE(reply.find("max_buffered_mb (2 MiB)") != std::string::npos, reply);
  CHECK(reply.find("Retry-After: 1") != std::string::npos);
  CHECK(d.metric("nsbox_http_refused_total{reason=\"buffered\"}") == 1);
  // What the first two hold goes with them; a whole 1 MiB body is then read
  // (404: no such function, not 503).
  close(a);
  close(b);
  CHECK(wait_until([&] { return d.metric("nsbox_http_buffered_body_bytes") == 0; }, 5000,
                   "the bodies released"));
  int e = start_body("127.0.0.5", 1 << 20);
  CHECK(status_of(read_until_close(e, 5000)) == 404);
  close(e);
  CHECK(d.metric("nsbox_http_buffered_body_bytes") == 0);
  CHECK(d.client()->Get("/healthz")->status == 200);
  // A keep-alive connection's next request, taken by the worker that
  // answered the first (no turn of the epoll thread), counts its body too:
  // with the budget held by others, that body is the 503's.
  a = start_body("127.0.0.2", most);
  b = start_body("127.0.0.3", most);
  REQUIRE(wait_until([&] { return d.metric("nsbox_http_buffered_body_bytes") == double(2 * most); },
                     5000, "both bodies held again"));
  const double inline_before = d.metric("nsbox_http_inline_requests_total");
  int k = connect_from("127.0.0.6", d.port());
  send_all(k,
           "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
           "POST /fn/none HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc");
  const std::string both = read_until_close(k, 5000);
  close(k);
  CHECK_MESSAGE(both.find("HTTP/1.1 200") == 0, both.substr(0, 200));
  CHECK_MESSAGE(both.find("HTTP/1.1 503") != std::string::npos, both);
  CHECK(both.find("HTTP/1.1 404") == std::string::npos);
  CHECK(d.metric("nsbox_http_inline_requests_total") == inline_before);
  close(a);
  close(b);
}

TEST_CASE("front: one deadline for a whole request, however it trickles") {
  StateDir sd("deadline");
  Daemon d(sd.path, std::string("request_timeout_ms = 1000\n") + kPool);
  REQUIRE(d.start());
  int fd = connect_from("127.0.0.1", d.port());
  const std::string req =
      "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + std::string(100, 'a');
  auto t0 = Clock::now();
  std::string reply;
  bool eof = false;
  // One byte every 100 ms: every single read is prompt, the request is not.
  for (size_t i = 0; i < req.size() && !eof; i++) {
    if (send(fd, &req[i], 1, MSG_NOSIGNAL) != 1) break;
    reply += read_until_close(fd, 100, &eof);
  }
  reply += read_until_close(fd, 2000, &eof);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  CHECK(status_of(reply) == 408);
  CHECK(eof);
  CHECK(secs >= 0.9);
  CHECK(secs < 2.5);
  close(fd);
}

TEST_CASE("front: a thousand slow connections from one address do not starve another") {
  raise_nofile();
  StateDir sd("slow");
  // The default config: max_connections 1024, max_sending_per_address 32.
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "echo", "def handler(event, context):\n    return event\n")->status == 201);
  REQUIRE(d.client()->Post("/fn/echo", "{}", "application/json")->status == 200);

  // The attacker: 1100 connections from 127.0.0.2, each sending its head a
  // byte at a time.
  const int kSlow = 1100;
  std::vector<int> slow;
  for (int i = 0; i < kSlow; i++) {
    int fd = connect_from("127.0.0.2", d.port(), true);
    slow.push_back(fd);
  }
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    const std::string head = "POST /fn/echo HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    size_t i = 0;
    while (!done) {
      for (int fd : slow) (void)!send(fd, &head[i % head.size()], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      i++;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the attacker's pace
    }
  });
  // The victim, from 127.0.0.1, while that goes on: from when the front
  // has begun refusing the attacker's connections over its cap. CHECK, not
  // REQUIRE: the trickle thread must be joined below.
  CHECK(
      wait_until([&] { return d.metric("nsbox_http_refused_total{reason=\"per_address\"}") >= 1; },
                 10000, "the front to refuse the attacker's connections over its cap"));
  double worst = 0;
  int ok = 0;
  for (int i = 0; i < 10; i++) {
    auto c = d.client(2);
    auto t0 = Clock::now();
    auto h = c->Get("/healthz");
    auto f = c->Post("/fn/echo", R"({"i":1})", "application/json");
    double secs = std::chrono::duration<double>(Clock::now() - t0).count() / 2;
    worst = std::max(worst, secs);
    if (h && h->status == 200 && f && f->status == 200) ok++;
    // Pacing, not a wait: the samples span the attack, not just its start.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The daemon closed all but a few of the attacker's connections.
  int still_open = 0;
  for (int fd : slow) {
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) still_open++;
  }
  // A refused connection was told why and what to change, not just 429.
  std::string refusal;
  for (int fd : slow) {
    char b[1024];
    ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT | MSG_PEEK);
    if (n > 0 && refusal.empty()) refusal.assign(b, size_t(n));
  }
  done = true;
  trickle.join();
  for (int fd : slow) close(fd);
  MESSAGE("worst answer " << worst << " s; attacker connections still open: " << still_open
                          << "; daemon VmHWM " << vm_hwm_kb(d.pid()) << " kB");
  CHECK(ok == 10);
  CHECK(worst < 1.0);
  CHECK(still_open <= 32 + 50);  // the cap, plus those younger than the grace
  CHECK(refusal.rfind("HTTP/1.1 429 Too Many Requests\r\n", 0) == 0);
  CHECK(refusal.find("Retry-After: 1\r\n") != std::string::npos);
  CHECK(refusal.find("max_sending_per_address = 32") != std::string::npos);

  {
    INFO("keep-alive load from one address is not capped");
    std::atomic<int> good{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 48; t++)
      ts.emplace_back([&] {
        auto c = d.client(10);
        c->set_keep_alive(true);
        for (int k = 0; k < 20; k++)
          if (auto r = c->Get("/healthz"); r && r->status == 200) good++;
      });
    for (auto& t : ts) t.join();
    CHECK(good == 48 * 20);
  }
}

TEST_CASE("front: the client address comes from trusted proxies only") {
  StateDir sd("proxy");
  Daemon d(sd.path, std::string("trusted_proxies = [\"127.0.0.1\"]\n") + kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "who", "def handler(event, context):\n    return 1\n")->status == 201);
  auto ask = [&](const char* src, const std::string& prefix, const std::string& headers) {
    int fd = connect_from(src, d.port());
    send_all(fd, prefix + "GET /fn/who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" +
                     headers + "\r\n");
    std::string reply = read_until_close(fd, 10000);
    close(fd);
    return reply;
  };
  auto seen = [&](const std::string& reply) {
    REQUIRE(status_of(reply) == 200);
    std::string line = d.access_line(request_id(reply));
    REQUIRE(!line.empty());
    return last_field(line);
  };
  CHECK(seen(ask("127.0.0.1", "PROXY TCP4 203.0.113.7 127.0.0.1 4000 80\r\n", "")) ==
        "203.0.113.7");
  CHECK(seen(ask("127.0.0.1", "", "X-Forwarded-For: 198.51.100.9\r\n")) == "198.51.100.9");
  // Hops the client added before the trusted proxy's own are not believed.
  CHECK(seen(ask("127.0.0.1", "", "X-Forwarded-For: 6.6.6.6, 198.51.100.9\r\n")) == "198.51.100.9");
  // An untrusted peer's header and PROXY line are ignored or refused.
  CHECK(seen(ask("127.0.0.5", "", "X-Forwarded-For: 198.51.100.9\r\n")) == "127.0.0.5");
  CHECK(status_of(ask("127.0.0.5", "PROXY TCP4 203.0.113.7 127.0.0.1 4000 80\r\n", "")) == 400);
}

TEST_CASE("front: metadata needs a token, the read-only token reads only; ids are random") {
  StateDir sd("read-token");
  const std::string read_token = "read-only-token-0123456789";
  Daemon d(sd.path, "read_token = \"" + read_token + "\"\n" + kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "f", "def handler(event, context):\n    print('hi')\n    return 1\n")->status ==
          201);
  auto c = d.client();
  httplib::Headers ro = {{"Authorization", "Bearer " + read_token}};
  for (const char* path : {"/functions", "/functions/f", "/functions/f/logs", "/metrics"}) {
    CHECK_MESSAGE(c->Get(path)->status == 401, path);
    CHECK_MESSAGE(c->Get(path, ro)->status == 200, path);
    CHECK_MESSAGE(c->Get(path, auth(d))->status == 200, path);
  }
  // Refused as read-only (403, saying so), not as a bad token.
  auto put = c->Put("/functions/g", ro, "def handler(e, c):\n    return 1\n", "text/x-python");
  REQUIRE(put);
  CHECK(put->status == 403);
  CHECK_MESSAGE(put->body.find("read-only token") != std::string::npos, put->body);
  CHECK(c->Delete("/functions/f", ro)->status == 403);
  CHECK(c->Delete("/functions/f", {{"Authorization", "Bearer wrong"}})->status == 401);
  CHECK(c->Get("/healthz")->status == 200);  // stays public

  std::set<std::string> ids;
  for (int i = 0; i < 20; i++) {
    auto r = c->Post("/fn/f", "{}", "application/json");
    REQUIRE(r);
    std::string id = r->get_header_value("X-Nsbox-Request-Id");
    CHECK(id.size() == 16);
    CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    ids.insert(id);
  }
  CHECK(ids.size() == 20);
}

namespace {

// Reads one HTTP response (head and Content-Length body) from fd; bytes of
// the next response stay in *buf. "" when none came within timeout_ms.
std::string read_response(int fd, std::string* buf, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    size_t end = buf->find("\r\n\r\n");
    if (end != std::string::npos) {
      size_t len = 0;
      auto p = buf->find("Content-Length: ");
      if (p != std::string::npos && p < end) len = std::stoul(buf->substr(p + 16));
      if (buf->size() >= end + 4 + len) {
        std::string r = buf->substr(0, end + 4 + len);
        buf->erase(0, end + 4 + len);
        return r;
      }
    }
    int left =
        int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) return "";
    char chunk[4096];
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return "";
    buf->append(chunk, size_t(n));
  }
}

std::string post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

uint64_t inline_requests(const Daemon& d) {
  auto r = d.client()->Get("/metrics", auth(d));
  REQUIRE(r);
  const std::string key = "\nnsbox_http_inline_requests_total ";
  auto p = r->body.find(key);
  REQUIRE(p != std::string::npos);
  return std::stoull(r->body.substr(p + key.size()));
}

}  // namespace

// A keep-alive connection's next request may be taken by the thread that
// answered the previous one (no turn of the epoll thread): pipelined
// requests make that deterministic. It must be answered exactly as the
// epoll thread would answer it, and whatever the shortcut does not take
// (a bad token, a head still arriving, a chunked body) still gets the
// front's usual answer.
TEST_CASE("front: requests taken by the answering thread get the same checks") {
  StateDir sd("inline");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "echo", "def handler(event, context):\n    return event\n")->status == 201);
  REQUIRE(deploy(d, "empty",
                 "def handler(event, context):\n"
                 "    return {'statusCode': 204, 'body': 'not sent'}\n")
              ->status == 201);
  const uint64_t before = inline_requests(d);

  // Four requests in one write: the second and third are taken inline from
  // the bytes already read; the fourth has no token and is refused.
  int fd = connect_from("127.0.0.1", d.port());
  send_all(fd, post("/fn/echo", "{\"n\": 1}") + post("/fn/empty", "{}") +
                   post("/fn/echo", "{\"n\": 2}") +
                   "DELETE /functions/echo HTTP/1.1\r\nHost: localhost\r\n\r\n");
  std::string buf;
  std::string r1 = read_response(fd, &buf, 10000);
  std::string r2 = read_response(fd, &buf, 10000);
  std::string r3 = read_response(fd, &buf, 10000);
  std::string r4 = read_response(fd, &buf, 10000);
  CHECK(status_of(r1) == 200);
  CHECK(r1.find("{\"n\":1}") != std::string::npos);
  CHECK(status_of(r2) == 204);  // its body is not sent: r3 parses as the next answer
  CHECK(r2.find("not sent") == std::string::npos);
  CHECK(status_of(r3) == 200);
  CHECK(r3.find("{\"n\":2}") != std::string::npos);
  CHECK(status_of(r4) == 401);
  close(fd);
  CHECK(d.client()->Get("/functions/echo", auth(d))->status == 200);  // not deleted
  CHECK(inline_requests(d) >= before + 2);

  // A head split across two writes, after an answer: still served.
  fd = connect_from("127.0.0.1", d.port());
  buf.clear();
  std::string second = post("/fn/echo", "{\"n\": 4}");
  send_all(fd, post("/fn/echo", "{\"n\": 3}") + second.substr(0, 20));
  r1 = read_response(fd, &buf, 10000);
  CHECK(status_of(r1) == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a client pausing mid-head
  send_all(fd, second.substr(20));
  r2 = read_response(fd, &buf, 10000);
  CHECK(status_of(r2) == 200);
  CHECK(r2.find("{\"n\":4}") != std::string::npos);

  // A chunked body and an oversized head after an answer: the front's
  // own parser answers them.
  send_all(fd,
           "POST /fn/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
           "7\r\n{\"n\":5}\r\n0\r\n\r\n" +
               post("/fn/echo", "{}", "X-Big: " + std::string(20 << 10, 'a') + "\r\n"));
  r1 = read_response(fd, &buf, 10000);
  r2 = read_response(fd, &buf, 10000);
  CHECK(status_of(r1) == 200);
  CHECK(r1.find("{\"n\":5}") != std::string::npos);
  CHECK(status_of(r2) == 431);
  close(fd);
}

// A function picks its status; the ones that carry no content (RFC 9110
// 15.3.5, 15.3.6, 15.4.5) are sent without the body it returned, so that the
// body cannot be read as the next response on a kept-alive connection.
TEST_CASE("front: 204, 205 and 304 answers send no body a function gave them") {
  StateDir sd("nocontent");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "st",
                 "def handler(event, context):\n"
                 "    return {'statusCode': event['s'], 'body': 'HTTP/1.1 200 OK\\r\\n"
                 "Content-Length: 6\\r\\n\\r\\nforged'}\n")
              ->status == 201);
  int fd = connect_from("127.0.0.1", d.port());
  send_all(fd, post("/fn/st", "{\"s\": 204}") + post("/fn/st", "{\"s\": 205}") +
                   post("/fn/st", "{\"s\": 304}") + post("/fn/st", "{\"s\": 200}"));
  std::string buf;
  const std::string r204 = read_response(fd, &buf, 10000);
  const std::string r205 = read_response(fd, &buf, 10000);
  const std::string r304 = read_response(fd, &buf, 10000);
  const std::string r200 = read_response(fd, &buf, 10000);
  close(fd);
  CHECK(status_of(r204) == 204);
  CHECK(status_of(r205) == 205);
  CHECK(r205.find("Content-Length: 0\r\n") != std::string::npos);
  CHECK(status_of(r304) == 304);
  for (const std::string* r : {&r204, &r205, &r304}) CHECK(r->find("forged") == std::string::npos);
  CHECK(status_of(r200) == 200);
  CHECK(r200.find("forged") != std::string::npos);  // a 200 sends it, as its body
  CHECK(buf.empty());
  CHECK(d.stop() == 0);
}

// A route is matched with std::regex, which recurses per character: a long
// path (allowed by a large max_head_kb) once overflowed the epoll thread's
// stack before any token check. Refused with 414 instead, first request or
// taken inline, and the daemon goes on.
TEST_CASE("front: a very long path is refused with 414, not matched") {
  StateDir sd("longpath");
  Daemon d(sd.path, std::string("max_head_kb = 1024\n") + kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "echo", "def handler(event, context):\n    return event\n")->status == 201);
  for (size_t len : {size_t(257), size_t(30000), size_t(900000)}) {
    CAPTURE(len);
    const std::string path = "/fn/" + std::string(len - 4, 'a');
    int fd = connect_from("127.0.0.1", d.port());
    send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    std::string reply = read_until_close(fd, 10000);
    close(fd);
    CHECK(status_of(reply) == 414);
    CHECK(reply.find("no route takes more than 256") != std::string::npos);
    // After an answer on the same connection: taken by the answering thread.
    fd = connect_from("127.0.0.1", d.port());
    std::string buf;
    send_all(fd, post("/fn/echo", "{\"n\": 1}") + "GET " + path +
                     " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    CHECK(status_of(read_response(fd, &buf, 10000)) == 200);
    CHECK(status_of(read_response(fd, &buf, 10000)) == 414);
    close(fd);
    REQUIRE(d.client()->Get("/healthz")->status == 200);
  }
  // The longest a route takes is still routed: a 63-byte name's logs.
  const std::string name(63, 'x');
  CHECK(d.client()->Get(("/functions/" + name + "/logs").c_str(), auth(d))->status == 404);
  CHECK(d.stop() == 0);
}

TEST_CASE("front: connections closed by the thread that answered them each get their own answer") {
  // The answering thread closes a Connection: close connection; the epoll
  // thread frees it and may give its memory to the next connection at once.
  // Reading the fd from the freed object closed another client's socket:
  // answers went to the wrong client, and sockets were left open.
  StateDir sd("closers");
  Daemon d(sd.path, std::string("max_connections = 64\n") + kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "echo", "def handler(event, context):\n    return event\n")->status == 201);
  const auto fds = [&] {
    int n = 0;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(d.pid()) + "/fd")) {
      (void)e;
      n++;
    }
    return n;
  };
  std::string buf;
  int warm = connect_from("127.0.0.1", d.port());
  send_all(warm, post("/fn/echo", "{}", "Connection: close\r\n"));
  REQUIRE(status_of(read_response(warm, &buf, 10000)) == 200);
  close(warm);
  const int before = fds();
  constexpr int kClients = 8, kEach = 400;
  std::atomic<int> ok{0}, wrong{0}, lost{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; t++)
    clients.emplace_back([&, t] {
      for (int i = 0; i < kEach; i++) {
        const std::string id = "c" + std::to_string(t) + "x" + std::to_string(i);
        int fd = connect_from("127.0.0.1", d.port());
        send_all(fd, post("/fn/echo", "{\"id\": \"" + id + "\"}", "Connection: close\r\n"));
        bool eof = false;
        std::string reply = read_until_close(fd, 5000, &eof);
        close(fd);
        if (!eof || status_of(reply) != 200)
          lost++;
        else if (reply.find("\"" + id + "\"") == std::string::npos)
          wrong++;
        else
          ok++;
      }
    });
  for (auto& c : clients) c.join();
  CHECK(wrong == 0);
  CHECK(lost == 0);
  CHECK(ok == kClients * kEach);
  // Every connection's socket was closed: the daemon holds what it held.
  CHECK(wait_until([&] { return fds() <= before + 2; }, 5000, "the daemon's fds back"));
  CHECK(d.stop() == 0);
}

TEST_CASE("front: a client that half-closes and never reads its answer does not spin the front") {
  StateDir sd("halfclose");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "big", kBigAnswer)->status == 201);
  int fd = connect_from("127.0.0.1", d.port(), false, 4096);
  send_all(fd, post("/fn/big", "{\"n\": 5000000}"));
  REQUIRE(shutdown(fd, SHUT_WR) == 0);
  // Its answer is made and waits to be written.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const long before = cpu_ticks(d.pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const long used = cpu_ticks(d.pid()) - before;
  // Spinning, the epoll thread took a whole CPU: 200 ticks in these 2 s.
  CHECK_MESSAGE(used < 40, used, " ticks in 2 s");
  REQUIRE(d.client()->Get("/healthz")->status == 200);
  close(fd);
  CHECK(d.stop() == 0);
}

// A function may run for minutes: the bodies of requests it is running
// must not hold max_buffered_mb meanwhile, or a few slow functions given
// large events would turn every other client's body away.
TEST_CASE("front: a body stops counting against max_buffered_mb once its event is delivered") {
  StateDir sd("delivered");
  Daemon d(sd.path,
           "max_body_kb = 1024\nmax_buffered_mb = 2\n[pool]\nblank = 1\n"
           "max_sandboxes = 8\nper_function = 4\n");
  REQUIRE(d.start());
  REQUIRE(d.client()
              ->Put("/functions/slow?timeout=20s", auth(d),
                    "import time\ndef handler(event, context):\n    time.sleep(float(event['s']))\n"
                    "    return len(event.get('pad', ''))\n",
                    "text/x-python")
              ->status == 201);
  // Three events of 900 KiB each: more than the 2 MiB budget together.
  const std::string pad(900 * 1024, 'x');
  std::vector<int> running;
  for (const char* src : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    int fd = connect_from(src, d.port());
    send_all(fd, post("/fn/slow", "{\"s\": 6, \"pad\": \"" + pad + "\"}", "Connection: close\r\n"));
    running.push_back(fd);
    // Each is read and delivered before the next would pass the budget.
    REQUIRE(wait_until([&] { return d.metric("nsbox_http_buffered_body_bytes") == 0; }, 5000,
                       "the body released once delivered"));
  }
  // A GET's body is no event: it stops counting as soon as it is read.
  int get = connect_from("127.0.0.7", d.port());
  send_all(get,
           "GET /fn/slow?s=6 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
           "Content-Length: 921600\r\n\r\n" +
               pad);
  running.push_back(get);
  REQUIRE(wait_until([&] { return d.metric("nsbox_http_buffered_body_bytes") == 0; }, 5000,
                     "the GET's body released"));
  // While all four run, another 1 MiB body is read whole (404, not 503).
  int other = connect_from("127.0.0.5", d.port());
  send_all(other, post("/fn/none", std::string(1 << 20, 'x'), "Connection: close\r\n"));
  CHECK(status_of(read_until_close(other, 5000)) == 404);
  close(other);
  CHECK(d.metric("nsbox_http_refused_total{reason=\"buffered\"}") == 0);
  // And each is answered as sent (the GET's event had no pad).
  for (size_t i = 0; i < running.size(); i++) {
    const std::string reply = read_until_close(running[i], 15000);
    CHECK_MESSAGE(status_of(reply) == 200, reply.substr(0, 300));
    const size_t expected = i < 3 ? pad.size() : 0;
    CHECK(reply.find("\r\n\r\n" + std::to_string(expected)) != std::string::npos);
    close(running[i]);
  }
}

// n connections from an address (127.0.0.2) with a small receive buffer,
// each asking the "big" function for 5 MB that it never reads.
static std::vector<int> ask_never_read(const Daemon& d, int n,
                                       const std::string& from = "127.0.0.2") {
  std::vector<int> fds;
  for (int i = 0; i < n; i++) {
    int fd = connect_from(from.c_str(), d.port(), false, 4096);
    send_all(fd, post("/fn/big", "{\"n\": 5000000}"));
    fds.push_back(fd);
  }
  return fds;
}

TEST_CASE("front: answers one address never reads cannot keep the connection table full") {
  StateDir sd("unread");
  Daemon d(sd.path,
           "max_connections = 8\n[pool]\nblank = 1\nmax_sandboxes = 12\nper_function = 8\n");
  REQUIRE(d.start());
  REQUIRE(deploy(d, "big", kBigAnswer)->status == 201);
  // Eight connections from 127.0.0.2, each asking for 5 MB it never reads.
  std::vector<int> stuck = ask_never_read(d, 8);
  // Each answer has begun to arrive (and stalls, unread).
  for (int fd : stuck) {
    pollfd p{fd, POLLIN, 0};
    REQUIRE(poll(&p, 1, 20000) == 1);
  }
  // Another client still gets in, three times over.
  for (int i = 0; i < 3; i++) {
    int fd = connect_from("127.0.0.1", d.port());
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    CHECK(status_of(read_until_close(fd, 5000)) == 200);
    close(fd);
  }
  for (int fd : stuck) close(fd);
  CHECK(d.stop() == 0);
}

TEST_CASE("front: one address holds at most max_sending_per_address unread answers") {
  StateDir sd("unread-cap");
  Daemon d(sd.path,
           "max_sending_per_address = 3\n[pool]\nblank = 1\nmax_sandboxes = 12\n"
           "per_function = 10\n");
  REQUIRE(d.start());
  REQUIRE(deploy(d, "big", kBigAnswer)->status == 201);
  // Ten connections from 127.0.0.2, each asking for 5 MB it never reads:
  // without the cap the daemon would hold 50 MB for request_timeout_ms.
  std::vector<int> stuck = ask_never_read(d, 10);
  const std::string key = "nsbox_http_refused_total{reason=\"unread\"}";
  CHECK(wait_until([&] { return d.metric(key) >= 7; }, 30000, "seven unread answers closed"));
  CHECK(d.metric(key) == 7);  // the three newest stay
  // Their clients see the close once they read: part of the answer, then EOF.
  int closed = 0;
  for (int fd : stuck) {
    bool eof = false;
    std::string got = read_until_close(fd, 2000, &eof);
    if (eof && got.size() < 5000000) closed++;
    close(fd);
  }
  CHECK(closed == 7);
  // Another address is not touched by the cap.
  int fd = connect_from("127.0.0.1", d.port());
  send_all(fd, post("/fn/big", "{\"n\": 10}"));
  std::string buf;
  CHECK(status_of(read_response(fd, &buf, 10000)) == 200);
  close(fd);
  CHECK(d.stop() == 0);
}

TEST_CASE("front: unread answers of many addresses together stay within max_buffered_mb") {
  StateDir sd("unread-total");
  Daemon d(sd.path,
           "max_buffered_mb = 12\n[pool]\nblank = 1\nmax_sandboxes = 12\nper_function = 8\n");
  REQUIRE(d.start());
  REQUIRE(deploy(d, "big", kBigAnswer)->status == 201);
  // Three addresses, each well under max_sending_per_address, ask for six
  // answers of 5 MB that none reads: 30 MB against a budget of 12.
  std::vector<int> stuck;
  for (const char* from : {"127.0.0.2", "127.0.0.3", "127.0.0.4"})
    for (int fd : ask_never_read(d, 2, from)) stuck.push_back(fd);
  const std::string closed_key = "nsbox_http_refused_total{reason=\"unread\"}";
  CHECK(wait_until([&] { return d.metric(closed_key) >= 4; }, 30000, "four unread answers closed"));
  CHECK(d.metric(closed_key) == 4);  // the two that fit stay
  CHECK(d.metric("nsbox_http_unread_answer_bytes") <= 12 << 20);
  CHECK(d.metric("nsbox_http_unread_answer_bytes") > 0);
  // Another client is answered, its answer read.
  int fd = connect_from("127.0.0.1", d.port());
  send_all(fd, post("/fn/big", "{\"n\": 10}"));
  std::string buf;
  CHECK(status_of(read_response(fd, &buf, 10000)) == 200);
  close(fd);
  for (int s : stuck) close(s);
  CHECK(wait_until([&] { return d.metric("nsbox_http_unread_answer_bytes") == 0; }, 10000,
                   "nothing held once the clients are gone"));
  CHECK(d.stop() == 0);
}

TEST_CASE("front: a chunked trailer over the limit is 431, and says so") {
  StateDir sd("trailer");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "echo", "def handler(event, context):\n    return event\n")->status == 201);
  int fd = connect_from("127.0.0.1", d.port());
  send_all(fd,
           "POST /fn/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: "
           "chunked\r\n\r\n2\r\n{}\r\n0\r\n"
           "X: " +
               std::string(20000, 'a') + "\r\n\r\n");
  const std::string reply = read_until_close(fd, 5000);
  close(fd);
  CHECK(status_of(reply) == 431);
  CHECK_MESSAGE(reply.find("chunked trailer too large (limit 16 KiB") != std::string::npos, reply);
  CHECK(d.stop() == 0);
}

// What the front answers itself after a HEAD on the same connection keeps
// its body (the HEAD's "no body" was once carried over: a Content-Length
// with no body behind it); a 405 says which methods the path takes; the
// head's Host and absolute-form rules of RFC 9112.
TEST_CASE("front: refusals after a HEAD have their body; 405 has Allow; Host and absolute form") {
  StateDir sd("headthen");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  for (const std::string& bad :
       {std::string("GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Name: y\r\n\r\n"),
        std::string("GET /healthz HTTP/1.1\r\n\r\n")}) {
    CAPTURE(bad);
    int fd = connect_from("127.0.0.1", d.port());
    send_all(fd, "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // The HEAD's answer: a head with a Content-Length, and no body.
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && recv(fd, &c, 1, 0) == 1) head += c;
    REQUIRE(status_of(head) == 200);
    send_all(fd, bad);
    std::string buf = read_until_close(fd, 10000);
    close(fd);
    CHECK(status_of(buf) == 400);
    const size_t end = buf.find("\r\n\r\n");
    REQUIRE(end != std::string::npos);
    const auto p = buf.find("Content-Length: ");
    REQUIRE(p != std::string::npos);
    CHECK(buf.size() - end - 4 == std::stoul(buf.substr(p + 16)));
    CHECK(buf.find("\"error\"", end) != std::string::npos);
  }
  auto ask = [&](const std::string& request) { return ask_once(d, request); };
  std::string reply = ask("OPTIONS /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
  CHECK(status_of(reply) == 405);
  CHECK(reply.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
  reply = ask("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  CHECK(status_of(reply) == 400);
  CHECK(reply.find("more than one Host header") != std::string::npos);
  reply =
      ask("GET http://127.0.0.1/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  CHECK(status_of(reply) == 200);
  // The target's authority is the host checked, not the Host sent beside it.
  reply = ask(
      "GET http://evil.example/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  CHECK(status_of(reply) == 421);
  CHECK(d.stop() == 0);
}

// DNS rebinding: a web page re-points its own name at 127.0.0.1 and calls
// the daemon as a same-origin site. Its requests carry the page's name as
// Host, which a daemon on loopback does not answer to.
TEST_CASE("front: a daemon on loopback answers only to loopback names and the listed hosts") {
  StateDir sd("hosts");
  Daemon d(sd.path, std::string("allowed_hosts = [\"fn.example.org\"]\n") + kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "who", "def handler(event, context):\n    return 'ran'\n")->status == 201);
  auto ask = [&](const std::string& host) {
    return ask_once(d, "GET /fn/who HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
  };
  const std::string port = std::to_string(d.port());
  for (const std::string& ok :
       {std::string("localhost"), "localhost:" + port, "127.0.0.1:" + port,
        std::string("127.0.0.2"), "[::1]:" + port, std::string("LocalHost."),
        std::string("app.localhost"), "fn.example.org:" + port, std::string("FN.example.org")}) {
    CAPTURE(ok);
    std::string reply = ask(ok);
    CHECK(status_of(reply) == 200);
    CHECK(reply.find("ran") != std::string::npos);
  }
  for (const std::string& bad :
       {std::string("attacker.example"), "attacker.example:" + port,
        std::string("localhost.evil.org"), std::string("127.0.0.1.evil.org"), std::string("[::1"),
        std::string("::1"), std::string("fn.example.org.evil.org"), std::string("")}) {
    CAPTURE(bad);
    std::string reply = ask(bad);
    CHECK(status_of(reply) == 421);
    CHECK(reply.find("ran") == std::string::npos);
    CHECK(reply.find("allowed_hosts") != std::string::npos);
  }
  CHECK(d.metric("nsbox_http_refused_total{reason=\"misdirected\"}") >= 8);
  // The answering thread's inline path refuses it too: the request after an
  // allowed one on the same connection.
  int fd = connect_from("127.0.0.1", d.port());
  send_all(fd,
           "GET /fn/who HTTP/1.1\r\nHost: localhost\r\n\r\n"
           "GET /fn/who HTTP/1.1\r\nHost: attacker.example\r\n\r\n");
  std::string buf;
  std::string r1 = read_response(fd, &buf, 10000);
  std::string r2 = read_response(fd, &buf, 10000);
  close(fd);
  CHECK(status_of(r1) == 200);
  CHECK(status_of(r2) == 421);
  CHECK(r2.find("ran") == std::string::npos);
  CHECK(d.stop() == 0);

  // "*": any name, as a daemon that listens on every address does unasked.
  StateDir sd2("hosts-any");
  Daemon any(sd2.path, std::string("allowed_hosts = [\"*\"]\n") + kPool);
  REQUIRE(any.start());
  REQUIRE(deploy(any, "who", "def handler(event, context):\n    return 'ran'\n")->status == 201);
  fd = connect_from("127.0.0.1", any.port());
  send_all(fd, "GET /fn/who HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n");
  std::string reply = read_until_close(fd, 10000);
  close(fd);
  CHECK(status_of(reply) == 200);
  CHECK(any.stop() == 0);
}

// Every function shares the daemon's origin (/fn/NAME): what acts on a whole
// origin in a browser must not be one tenant's to use. And HEAD, which
// clients send without expecting side effects, does not run a function.
TEST_CASE("front: no function is a service worker, and HEAD runs none") {
  StateDir sd("origin");
  Daemon d(sd.path, kPool);
  REQUIRE(d.start());
  REQUIRE(deploy(d, "sw",
                 "def handler(event, context):\n"
                 "    return {'statusCode': 200, 'body': 'self.onfetch = 0',\n"
                 "            'headers': {'Content-Type': 'text/javascript',\n"
                 "                        'Service-Worker-Allowed': '/',\n"
                 "                        'Clear-Site-Data': '\"*\"', 'X-Kept': '1'}}\n")
              ->status == 201);
  auto ask = [&](const std::string& request) { return ask_once(d, request); };
  std::string r = ask("GET /fn/sw HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  CHECK(status_of(r) == 200);
  CHECK(r.find("\r\nX-Kept: 1\r\n") != std::string::npos);
  CHECK(r.find("Service-Worker-Allowed") == std::string::npos);
  CHECK(r.find("Clear-Site-Data") == std::string::npos);
  // What a browser sends when it fetches a script to register as a worker.
  r =
      ask("GET /fn/sw HTTP/1.1\r\nHost: localhost\r\nService-Worker: script\r\n"
          "Connection: close\r\n\r\n");
  CHECK(status_of(r) == 403);
  CHECK(r.find("self.onfetch") == std::string::npos);
  CHECK(r.find("origin of its own") != std::string::npos);
  r = ask("HEAD /fn/sw HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  CHECK(status_of(r) == 405);
  CHECK(r.find("\r\nAllow: POST, GET\r\n") != std::string::npos);
  CHECK(r.find("self.onfetch") == std::string::npos);
  CHECK(d.stop() == 0);
}
