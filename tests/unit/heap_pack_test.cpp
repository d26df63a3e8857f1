// sandbox/heap_pack.cpp: pymalloc's size-class table, and glibc's holes
// filled (in a forked child, so that this test process keeps its own heap).
#include "sandbox/heap_pack.hpp"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

using namespace nsbox;

TEST_CASE("heap pack: the size classes of _PyObject_DebugMallocStats, nothing else") {
  const char* text =
      "Small block threshold = 512, in 32 size classes.\n"
      "\n"
      "class   size   num pools   blocks in use  avail blocks\n"
      "-----   ----   ---------   -------------  ------------\n"
      "    0     16           1              18          1003\n"
      "    3     64          14            3541            29\n"
      "   31    512           2              30             0\n"
      "\n"
      "# arenas allocated total           =                   23\n"
      "    1     32           1             382  128 7\n"         // six fields: not the table
      "   40   4096           1               1             9\n"  // beyond pymalloc's blocks
      "    2     48           1              -4             9\n";
  auto classes = parse_pymalloc_classes(text);
  REQUIRE(classes.size() == 3);
  CHECK(classes[0].block_size == 16);
  CHECK(classes[0].avail == 1003);
  CHECK(classes[1].block_size == 64);
  CHECK(classes[1].avail == 29);
  CHECK(classes[2].block_size == 512);
  CHECK(classes[2].avail == 0);
  CHECK(parse_pymalloc_classes("").empty());
  CHECK(parse_pymalloc_classes("no table here\n1 2 3\n").empty());
}

#if !defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer malloc is not glibc's, whose statistics these are.
TEST_CASE("heap pack: every hole below glibc's top is filled, and stays filled") {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Holes of several sizes between live chunks.
    void* live[4000];
    for (int i = 0; i < 4000; i++) live[i] = malloc(40 + (i % 9) * 64);
    size_t freed = 0;
    for (int i = 0; i < 4000; i += 2) {
      freed += 40 + (i % 9) * 64;
      free(live[i]);
    }
    // mallinfo2 sums every arena, and threads of earlier tests may have
    // left free space in theirs: only this thread's (the main arena) can
    // be filled from here, so the test counts what it freed itself.
    size_t before = malloc_free_below_top();
    if (before < freed / 2) _exit(2);  // less what the per-thread cache holds
    long filled = fill_malloc_holes();
    if (filled < long(freed / 1024)) _exit(3);
    if (before - malloc_free_below_top() < freed / 2) _exit(4);
    // A new allocation now comes from the top, above every live chunk
    // (one too large for the per-thread cache, which earlier tests filled).
    char* fresh = static_cast<char*>(malloc(2048));
    for (int i = 1; i < 4000; i += 2)
      if (fresh < static_cast<char*>(live[i])) _exit(5);
    _exit(0);
  }
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}
#endif
