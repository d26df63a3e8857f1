// The per-function rings of printed lines (gateway/logs.hpp) and the byte
// budget they share.
#include "gateway/logs.hpp"

#include <doctest/doctest.h>

#include <string>

using nsbox::LogStore;

namespace {

size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("logs: a function keeps its last max_lines lines, prefixed") {
  LogStore logs(3, 1 << 20);
  logs.append("f", 1, "[v1 a] ", "one\ntwo\n");
  logs.append("f", 1, "[v1 b] ", "three\nfour\nfive");
  CHECK(logs.get("f") == "[v1 b] three\n[v1 b] four\n[v1 b] five\n");
  CHECK(logs.get("g").empty());
  logs.clear("f", 2);
  CHECK(logs.get("f").empty());
  CHECK(logs.bytes() == 0);
}

// Lines are the text split at '\n', a final '\n' ending the last line;
// only the last max_lines can stay, and only they are built.
TEST_CASE("logs: lines split at newlines; empty lines kept; the last max_lines of a flood") {
  LogStore logs(1000, 1 << 20);
  logs.append("f", 1, "> ", "\n");
  logs.append("f", 1, "> ", "a\n\nb");
  logs.append("f", 1, "> ", "c\n\n");
  CHECK(logs.get("f") == "> \n> a\n> \n> b\n> c\n> \n");
  LogStore flood(3, 1 << 20);
  flood.append("g", 1, "", std::string(300000, '\n') + "x\ny\nz");
  CHECK(flood.get("g") == "x\ny\nz\n");
  flood.append("g", 1, "", std::string(300000, '\n'));
  CHECK(flood.get("g") == "\n\n\n");
  CHECK(flood.bytes() == LogStore::kRingOverhead + 3 * (15 + LogStore::kLineOverhead));
}

TEST_CASE("logs: a line longer than 4 KiB is cut") {
  LogStore logs(10, 1 << 20);
  logs.append("f", 1, "", std::string(10000, 'x'));
  CHECK(logs.get("f") == std::string(4096, 'x') + "\n");
}

TEST_CASE("logs: all functions' lines stay within the byte budget") {
  const size_t budget = 64 * 1024;
  LogStore logs(1000, budget);
  const std::string line(1000, 'y');
  // Far more functions, each printing far more, than the budget holds.
  for (int f = 0; f < 200; ++f) {
    for (int i = 0; i < 20; ++i) logs.append("fn" + std::to_string(f), 1, "", line);
    CHECK(logs.bytes() <= budget);
  }
  size_t kept = 0;
  for (int f = 0; f < 200; ++f) kept += logs.get("fn" + std::to_string(f)).size();
  CHECK(kept <= budget);
  CHECK(kept > budget / 4);  // the budget is used (rings cost too), not emptied
  // Empty lines are not free either.
  for (int i = 0; i < 100000; ++i) logs.append("empty" + std::to_string(i % 500), 1, "", "\n\n");
  CHECK(logs.bytes() <= budget);
}

TEST_CASE("logs: the budget counts each function's ring, not only its text") {
  // 100,000 functions of one short line each: their rings, not their
  // text, are most of the memory, and must be what runs into the budget.
  const size_t budget = 1 << 20;
  LogStore logs(1000, budget);
  for (int f = 0; f < 100000; f++) logs.append("fn" + std::to_string(f), 1, "[v1 r] ", "x");
  CHECK(logs.bytes() <= budget);
  size_t kept = 0;
  for (int f = 0; f < 100000; f++) kept += !logs.get("fn" + std::to_string(f)).empty();
  CHECK(kept * LogStore::kRingOverhead <= budget);
  CHECK(kept > 0);
  // The newest are the ones kept.
  CHECK(logs.get("fn99999") == "[v1 r] x\n");
  CHECK(logs.get("fn0").empty());
}

TEST_CASE("logs: a function printing much displaces its own lines, not a quiet one's") {
  const size_t budget = 32 * 1024;
  LogStore logs(1000, budget);
  logs.append("quiet", 1, "", "started\nready");
  const std::string before = logs.get("quiet");
  for (int i = 0; i < 5000; ++i) logs.append("loud", 1, "", std::string(200, 'z'));
  CHECK(logs.get("quiet") == before);
  CHECK(logs.bytes() <= budget);
  const size_t loud = count_lines(logs.get("loud"));
  CHECK(loud > 0);
  CHECK(loud < 5000);
  // Its newest line is the one kept.
  logs.append("loud", 1, "", "last");
  CHECK(logs.get("loud").ends_with("\nlast\n"));
  // A line that alone exceeds the budget is not kept and evicts nothing.
  LogStore tiny(10, 2000);
  tiny.append("f", 1, "", "ok");
  const size_t with_ok = tiny.bytes();
  tiny.append("f", 1, "", std::string(3000, 'w'));
  tiny.append("g", 1, "", std::string(3000, 'w'));
  CHECK(tiny.get("f") == "ok\n");
  CHECK(tiny.get("g").empty());
  CHECK(tiny.bytes() == with_ok);
}

TEST_CASE("logs: after a delete, lines of the deleted deploys are dropped; later ones kept") {
  LogStore logs(100, 1 << 20);
  logs.append("f", 3, "", "before");
  logs.clear("f", 5);
  CHECK(logs.get("f").empty());
  logs.append("f", 3, "", "late");  // a request of the deleted deploy, still in flight
  CHECK(logs.get("f").empty());
  CHECK(logs.bytes() == 0);
  logs.append("f", 6, "", "new");  // deployed again
  logs.append("f", 4, "", "late");
  CHECK(logs.get("f") == "new\n");
  logs.append("g", 1, "", "other");  // other functions are not affected
  CHECK(logs.get("g") == "other\n");
  // A deploy made while the delete was under way printed before its clear:
  // only the deleted deploys' lines go (the ring was dropped whole).
  logs.append("h", 2, "", "old");
  logs.append("h", 9, "", "newer");
  logs.append("h", 3, "", "old too");
  const size_t with_h = logs.bytes();
  logs.clear("h", 9);
  CHECK(logs.get("h") == "newer\n");
  // Two short lines (the string's own 15 bytes, no heap) went.
  CHECK(logs.bytes() == with_h - 2 * (15 + LogStore::kLineOverhead));
  logs.clear("h", 10);
  CHECK(logs.get("h").empty());
  // Only the most recent deletes are remembered: memory stays bounded.
  for (int i = 0; i < 5000; i++) logs.clear("d" + std::to_string(i), 100 + i);
  logs.append("d0", 1, "", "forgotten");  // its delete was 5000 deletes ago
  logs.append("d4999", 1, "", "remembered");
  CHECK(logs.get("d0") == "forgotten\n");
  CHECK(logs.get("d4999").empty());
}
