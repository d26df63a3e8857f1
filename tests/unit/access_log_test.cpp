#include "gateway/access_log.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

using nsbox::AccessLog;

TEST_CASE("access log: while stderr is not read, lines wait up to a bound, then are dropped") {
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  const int saved = dup(2);
  REQUIRE(saved >= 0);
  REQUIRE(dup2(p[1], 2) == 2);
  close(p[1]);
  std::string got;
  std::atomic<bool> go{false}, done{false};
  std::thread reader([&] {
    while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    char buf[65536];
    for (;;) {
      pollfd pfd{p[0], POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) {
        if (done) return;
        continue;
      }
      ssize_t n = read(p[0], buf, sizeof buf);
      if (n <= 0) return;
      got.append(buf, size_t(n));
    }
  });
  {
    AccessLog log;
    // ~30 MB of lines while nobody reads: the flush thread blocks in write.
    const std::string client = "198.51.100." + std::string(20, '7');
    for (int i = 0; i < 450000; i++)
      log.line("0123456789abcdef", "function", "ok", 200, 1.5, client);
    go = true;
  }  // the destructor flushes what waited
  done = true;
  reader.join();
  dup2(saved, 2);
  close(saved);
  close(p[0]);
  // Far less than the 30 MB logged: at most the bound waiting, what the
  // flush thread had taken out when it blocked (at most the bound too), and
  // the pipe.
  CHECK(got.size() < (8u << 20) + (1u << 20));
  CHECK(got.size() > (1u << 20));
  CHECK(got.find("lines dropped while stderr was not read") != std::string::npos);
}
