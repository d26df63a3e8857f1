// http_baseline: the HTTP ceiling of this machine. A bare cpp-httplib server
// whose GET/POST /fn/<anything> return a constant {"ok":true}, configured like
// a gateway would be (keep-alive, a thread pool big enough for 200 clients),
// so that loadgen against it measures what HTTP alone costs here.
//
// usage: http_baseline [--listen 127.0.0.1:PORT] [--backlog N] [--no-nodelay]
//
// The listen backlog: Debian's compiled cpp-httplib 0.11.4 listens with a
// backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG is baked into the .so, defining it
// in our code changes nothing). When more clients than that connect at once,
// the kernel drops their SYNs and they retry after 1 s, which shows up as a
// 1 s max latency (or a drop with a 1.5 s timeout). We re-listen() on the
// bound socket with a larger backlog (Linux updates it in place).
// TCP_NODELAY is set too (see below); --no-nodelay/--backlog 0 show what a
// server with cpp-httplib's defaults would measure.

#include <httplib.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

const char* kUsage =
    "usage: http_baseline [--listen HOST:PORT] [--backlog N] [--no-nodelay]\n"
    "  --listen HOST:PORT  default 127.0.0.1:8099 (port 0: any free port, printed)\n"
    "  --backlog N         listen backlog (default 1024; 0 keeps cpp-httplib's 5)\n"
    "  --no-nodelay        leave Nagle on (cpp-httplib's default): ~44 ms per keep-alive request\n"
    "Serves GET/POST /fn/<anything> -> {\"ok\":true}; stops on SIGTERM/SIGINT.\n";

bool parse_listen(const std::string& s, std::string& host, int& port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return false;
  host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  long p = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535) return false;
  port = static_cast<int>(p);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:8099";
  long backlog = 1024;
  bool nodelay = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (a.rfind("--listen=", 0) == 0) {
      listen = a.substr(9);
    } else if (a == "--no-nodelay") {
      nodelay = false;
    } else if (a == "--backlog" && i + 1 < argc) {
      char* end = nullptr;
      backlog = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || backlog < 0 || backlog > 65535) {
        std::fprintf(stderr, "http_baseline: bad --backlog\n%s", kUsage);
        return 2;
      }
    } else {
      std::fprintf(stderr, "http_baseline: bad argument \"%s\"\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  std::string host;
  int port = 0;
  if (!parse_listen(listen, host, port)) {
    std::fprintf(stderr, "http_baseline: bad --listen \"%s\" (want HOST:PORT)\n%s", listen.c_str(),
                 kUsage);
    return 2;
  }

  // Block the stop signals in every thread (the pool inherits the mask) and
  // wait for them on a dedicated thread, which calls stop(): no async-signal
  // safety issues.
  sigset_t stop_sigs;
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGTERM);
  sigaddset(&stop_sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  httplib::Server svr;
  svr.new_task_queue = [] { return new httplib::ThreadPool(256); };
  svr.set_keep_alive_max_count(100000);
  svr.set_keep_alive_timeout(30);
  // Without TCP_NODELAY, cpp-httplib 0.11.4 writes a response's headers and
  // body separately and Nagle holds the body until the client's delayed ACK
  // on every keep-alive request.
  svr.set_tcp_nodelay(nodelay);

  static const std::string kBody = "{\"ok\":true}";
  auto handler = [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kBody, "application/json");
  };
  svr.Get(R"(/fn/.+)", handler);
  svr.Post(R"(/fn/.+)", handler);

  // Replaces httplib's default_socket_options (SO_REUSEADDR) and remembers
  // the listening socket so its backlog can be raised after bind.
  int listen_fd = -1;
  svr.set_socket_options([&listen_fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = sock;
  });

  int bound = port;
  if (port == 0) {
    bound = svr.bind_to_any_port(host.c_str());
    if (bound < 0) {
      std::fprintf(stderr, "http_baseline: cannot bind %s\n", listen.c_str());
      return 1;
    }
  } else if (!svr.bind_to_port(host.c_str(), port)) {
    std::fprintf(stderr, "http_baseline: cannot bind %s: %s\n", listen.c_str(),
                 std::strerror(errno));
    return 1;
  }

  if (backlog > 0 && listen_fd >= 0 && ::listen(listen_fd, static_cast<int>(backlog)) != 0)
    std::fprintf(stderr, "http_baseline: cannot raise the listen backlog: %s\n",
                 std::strerror(errno));

  std::atomic<bool> done{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_sigs, &sig);
    if (!done) svr.stop();
  });

  std::fprintf(stderr, "http_baseline: listening on %s:%d (backlog %ld)\n", host.c_str(), bound,
               backlog > 0 ? backlog : 5L);
  std::fflush(stderr);
  bool ok = svr.listen_after_bind();
  // Wake the waiter if listen ended on its own (a pending SIGTERM is fine too).
  done = true;
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  std::fprintf(stderr, "http_baseline: stopped\n");
  return ok ? 0 : 1;
}
