// sandbox/proc_memory.cpp: RSS, PSS and USS from smaps_rollup, and a process
// tree's sum read from this test's own /proc.
#include "sandbox/proc_memory.hpp"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

using namespace nsbox;

TEST_CASE("proc memory: smaps_rollup fields in bytes; USS is the private pages") {
  const std::string text =
      "55d0c8a4e000-7ffd1b3f5000 ---p 00000000 00:00 0                          [rollup]\n"
      "Rss:                9000 kB\n"
      "Pss:                3100 kB\n"
      "Pss_Anon:           1000 kB\n"
      "Shared_Clean:       6000 kB\n"
      "Shared_Dirty:        900 kB\n"
      "Private_Clean:       100 kB\n"
      "Private_Dirty:      2000 kB\n"
      "Swap:                  0 kB\n";
  ProcessMemory m = parse_smaps_rollup(text);
  CHECK(m.rss == 9000ull << 10);
  CHECK(m.pss == 3100ull << 10);
  CHECK(m.uss == 2100ull << 10);
  CHECK(m.processes == 1);
  CHECK(parse_smaps_rollup("").rss == 0);
  CHECK(parse_smaps_rollup("Rss: lots\nPss: 7 kB\n").pss == 7ull << 10);
}

TEST_CASE("proc memory: a tree sums its descendants; a missing root is an error") {
  auto self = read_tree_memory(getpid());
  REQUIRE(self);
  CHECK(self.value().processes == 1);
  CHECK(self.value().rss > 0);
  CHECK(self.value().uss > 0);
  CHECK(self.value().pss <= self.value().rss);
  int go[2];
  REQUIRE(pipe(go) == 0);
  std::vector<pid_t> kids;
  for (int i = 0; i < 2; i++) {
    pid_t p = fork();
    if (p == 0) {
      close(go[1]);
      char c;
      (void)!read(go[0], &c, 1);  // until the parent closes its end
      _exit(0);
    }
    kids.push_back(p);
  }
  close(go[0]);
  auto tree = read_tree_memory(getpid());
  close(go[1]);
  for (pid_t p : kids) waitpid(p, nullptr, 0);
  REQUIRE(tree);
  CHECK(tree.value().processes == 3);
  CHECK(tree.value().rss > self.value().rss);
  CHECK_FALSE(read_tree_memory(999999999));
}
