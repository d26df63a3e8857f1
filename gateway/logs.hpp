// What each function printed: a bounded ring of lines per function, all of
// them within one byte budget.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "gateway/deletions.hpp"

namespace nsbox {

class LogStore {
 public:
  // max_bytes bounds every function's lines together: without it the
  // daemon's memory would grow with the number of deployed functions,
  // each holding max_lines of output its code chose.
  LogStore(size_t max_lines, size_t max_bytes) : max_lines_(max_lines), max_bytes_(max_bytes) {}
  // Splits text into lines, prefixing each with the version and request.
  // Past max_bytes, the function holding the most loses its oldest lines:
  // a function that prints much displaces its own lines, not others'.
  // deploy: the deploy (FunctionMeta::deploy) whose sandbox printed it;
  // text from a deploy that a clear() has since removed is dropped.
  void append(const std::string& function, uint64_t deploy, const std::string& prefix,
              const std::string& text);
  std::string get(const std::string& function);
  // The function was deleted by the deploy sequence's number removed_at:
  // its lines go, and so do lines that requests of its deploys, still in
  // flight, append later (or they would outlive the delete, and show under
  // a function later deployed with the same name).
  void clear(const std::string& function, uint64_t removed_at);
  size_t bytes();  // what the lines held count against max_bytes

  // What a line costs beyond its string's capacity, an upper bound: the
  // string and its deploy in the deque (40 bytes, 12 to a 512-byte block:
  // ~43), and for a string on the heap malloc's header and rounding (up to
  // 24); a short line inside the string is counted high. A function's ring beyond its
  // lines: the budget counts memory, so that many functions of one short
  // line each, or many empty lines, cannot exceed it unseen.
  // (The ring's: its map and set entries, each with a copy of the name of
  // at most 63 bytes, the deque and its first chunk: ~0.9 KiB with glibc.
  // The same for every function, so that equal rings tie and the one
  // appended to longest ago goes first.)
  static constexpr size_t kLineOverhead = 72;
  static constexpr size_t kRingOverhead = 1024;

 private:
  struct Line {
    std::string text;
    uint64_t deploy;  // for clear()
  };
  struct Ring {
    std::deque<Line> lines;
    size_t bytes = 0;    // its lines' costs and its own overhead
    uint64_t stamp = 0;  // when it was last appended to
  };
  using Rings = std::map<std::string, Ring>;
  static size_t line_cost(const Line& line);  // what it counts against max_bytes
  // Drops the ring's oldest line, and more while the store is over budget
  // and the ring holds more than floor bytes; an emptied ring goes.
  void drop_oldest(Rings::iterator it, size_t floor);

  size_t max_lines_;
  size_t max_bytes_;
  std::mutex mu_;
  Rings rings_;
  size_t total_ = 0;
  // (bytes, age, function) of every ring, to find the largest in log
  // time, and among equals the one appended to longest ago.
  using Key = std::tuple<size_t, uint64_t, std::string>;
  static Key key(const Ring& ring, const std::string& function) {
    return {ring.bytes, ~ring.stamp, function};
  }
  std::set<Key> by_size_;
  uint64_t appends_ = 0;
  // The latest clear() of each function (a request's lines forgotten with
  // it would still be bounded by max_bytes).
  Deletions deleted_;
};

}  // namespace nsbox
