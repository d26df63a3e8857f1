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

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NSBOX_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NSBOX_TEST_ASAN 1
#endif

#if !defined(NSBOX_TEST_ASAN)
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
    if (filled < long(freed / 64)) _exit(3);  // 32-byte chunks: ~freed / 32
    size_t after = malloc_free_below_top();
    if (after > before || before - after < freed / 2) _exit(4);
    // Each hole's size again: past the per-thread cache (at most 7 chunks
    // of a size, not free space to mallinfo2), it comes from the top,
    // above every live chunk.
    for (int k = 0; k < 9; k++) {
      char* p = nullptr;
      for (int j = 0; j < 8; j++) p = static_cast<char*>(malloc(40 + k * 64));
      for (int i = 1; i < 4000; i += 2)
        if (p < static_cast<char*>(live[i])) _exit(5);
    }
    _exit(0);
  }
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}
#endif
