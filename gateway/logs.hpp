// What each function printed: a bounded ring of lines per function, all of
// them within one byte budget.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

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
  void append(const std::string& function, const std::string& prefix, const std::string& text);
  std::string get(const std::string& function);
  void clear(const std::string& function);
  size_t bytes();  // what the lines held count against max_bytes

  // A line's cost beyond its text, so that empty lines are not free.
  static constexpr size_t kLineOverhead = 64;

 private:
  struct Ring {
    std::deque<std::string> lines;
    size_t bytes = 0;
  };
  using Rings = std::map<std::string, Ring>;
  void drop_oldest(Rings::iterator it);

  size_t max_lines_;
  size_t max_bytes_;
  std::mutex mu_;
  Rings rings_;
  size_t total_ = 0;
  // (bytes, function) of every ring, to find the largest in log time.
  std::set<std::pair<size_t, std::string>> by_size_;
};

}  // namespace nsbox
