// What each function printed, a bounded ring of lines per function.
#pragma once

#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace nsbox {

class LogStore {
 public:
  explicit LogStore(size_t max_lines) : max_lines_(max_lines) {}
  // Splits text into lines, prefixing each with the version and request.
  void append(const std::string& function, const std::string& prefix, const std::string& text);
  std::string get(const std::string& function);
  void clear(const std::string& function);

 private:
  size_t max_lines_;
  std::mutex mu_;
  std::map<std::string, std::deque<std::string>> lines_;
};

}  // namespace nsbox
