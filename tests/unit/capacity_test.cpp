// gateway/capacity.hpp: max_sandboxes lowered to what the host's limits allow.
#include "gateway/capacity.hpp"

#include <doctest/doctest.h>

using namespace nsbox;

TEST_CASE("capacity: a wish that fits is kept, and nothing is said") {
  HostLimits h{1 << 20, 4 << 20, 65536};
  Capacity c = fit_max_sandboxes(256, 1024, h);
  CHECK(c.max_sandboxes == 256);
  CHECK(c.why.empty());
  CHECK(open_files_wanted(256, 1024) == 4 * 256 + 1024 + 256);  // = 2 * 1024 + 256
}

TEST_CASE("capacity: open files cap it, with connections and spare fds reserved") {
  // This machine: a hard limit of 20,000 that only CAP_SYS_RESOURCE raises.
  HostLimits h{20000, 32768, 65536};
  Capacity c = fit_max_sandboxes(10000, 2048, h);
  CHECK(c.max_sandboxes == (20000 - 2048 - 256) / 4);
  CHECK(c.why.find("open files: the limit is 20000") == 0);
  CHECK(c.why.find("LimitNOFILE") != std::string::npos);
  // Exactly enough: kept.
  CHECK(fit_max_sandboxes(100, 64, HostLimits{open_files_wanted(100, 64), 0, 0}).max_sandboxes ==
        100);
  CHECK(
      fit_max_sandboxes(100, 64, HostLimits{open_files_wanted(100, 64) - 1, 0, 0}).max_sandboxes ==
      99);
}

TEST_CASE("capacity: pid_max and the uid slots cap it too; the lowest limit is named") {
  Capacity c = fit_max_sandboxes(30000, 64, HostLimits{1 << 20, 32768, 65536});
  CHECK(c.max_sandboxes == (32768 - 64 - 1024) / 2);
  CHECK(c.why.find("kernel.pid_max is 32768") == 0);
  c = fit_max_sandboxes(30000, 64, HostLimits{1 << 20, 0, 4096});  // pid_max unknown
  CHECK(c.max_sandboxes == 4096);
  CHECK(c.why.find("uid slots") != std::string::npos);
}

TEST_CASE("capacity: rootless, the user's process limit caps it too") {
  HostLimits h{1 << 20, 32768, 0};
  h.user_processes = 4096;
  Capacity c = fit_max_sandboxes(30000, 64, h);
  CHECK(c.max_sandboxes == (4096 - 64 - 1024) / 2);
  CHECK(c.why.find("RLIMIT_NPROC is 4096") != std::string::npos);
  h.user_processes = 0;  // unlimited
  CHECK(fit_max_sandboxes(30000, 64, h).why.find("kernel.pid_max is 32768") == 0);
}

TEST_CASE("capacity: never below one sandbox, however small the limits") {
  Capacity c = fit_max_sandboxes(64, 1024, HostLimits{512, 100, 0});
  CHECK(c.max_sandboxes == 1);
  CHECK(!c.why.empty());
}

TEST_CASE("capacity: a limit that could not be read caps nothing") {
  Capacity c = fit_max_sandboxes(300, 1024, HostLimits{0, 0, 0});
  CHECK(c.max_sandboxes == 300);
  CHECK(c.why.empty());
}

TEST_CASE("capacity: with frozen sandboxes' fds parked, the spawner's one fd each is the bound") {
  // This machine with parking: 10,000 fit; pid_max is the next limit.
  HostLimits h{20000, 32768, 65536, true};
  Capacity c = fit_max_sandboxes(10000, 1024, h);
  CHECK(c.max_sandboxes == 10000);
  CHECK(c.why.empty());
  c = fit_max_sandboxes(30000, 1024, HostLimits{20000, 0, 65536, true});
  CHECK(c.max_sandboxes == 20000 - 256);
  CHECK(c.why.find("one per sandbox in the spawner") != std::string::npos);
  // Too few for even the sandboxes the gateway keeps unparked (four fds for
  // each connection's and the reserve's): as without parking.
  const uint64_t need = 4 * (64 + 256) + 64 + 256;
  CHECK(fit_max_sandboxes(100, 64, HostLimits{need, 0, 0, true}).max_sandboxes == 100);
  CHECK(fit_max_sandboxes(1000, 64, HostLimits{need - 1, 0, 0, true}).max_sandboxes ==
        (need - 1 - 64 - 256) / 4);
  // Blanks are never frozen: they count among the unparked.
  CHECK(fit_max_sandboxes(1000, 64, HostLimits{need, 0, 0, true}, 10).max_sandboxes ==
        (need - 64 - 256) / 4);
  CHECK(fit_max_sandboxes(1000, 64, HostLimits{need + 40, 0, 0, true}, 10).max_sandboxes == 1000);
}

TEST_CASE("capacity: max_connections takes at most half the open files the spare ones leave") {
  std::string why;
  // The review's host: a limit of 1,024 and the default 1,024 connections.
  CHECK(fit_max_connections(1024, HostLimits{1024, 0, 0}, &why) == (1024 - 256) / 2);
  CHECK(why.find("open files: the limit is 1024") == 0);
  CHECK(why.find("LimitNOFILE") != std::string::npos);
  // What fits is kept, and nothing said.
  why.clear();
  CHECK(fit_max_connections(1024, HostLimits{1 << 20, 0, 0}, &why) == 1024);
  CHECK(why.empty());
  CHECK(fit_max_connections(384, HostLimits{1024, 0, 0}, &why) == 384);
  CHECK(why.empty());
  // Unknown limit: nothing capped; a tiny one: still one connection.
  CHECK(fit_max_connections(1024, HostLimits{0, 0, 0}, &why) == 1024);
  CHECK(fit_max_connections(1024, HostLimits{100, 0, 0}, &why) == 1);
  // The sandboxes then get the other half.
  HostLimits h{1024, 0, 0};
  int connections = fit_max_connections(1024, h, &why);
  CHECK(fit_max_sandboxes(1000, connections, h).max_sandboxes == (1024 - 384 - 256) / 4);
}

TEST_CASE("capacity: the open files asked for keep max_connections too") {
  // 64 sandboxes, 1,024 connections: 4*64 + 1024 + 256 would leave the
  // connections more than half of what the spare fds leave.
  const uint64_t wanted = open_files_wanted(64, 1024);
  CHECK(wanted == 2 * 1024 + 256);
  std::string why;
  CHECK(fit_max_connections(1024, HostLimits{wanted, 0, 0}, &why) == 1024);
  CHECK(why.empty());
  CHECK(fit_max_sandboxes(64, 1024, HostLimits{wanted, 0, 0}).max_sandboxes == 64);
}
