#include "gateway/logs.hpp"

namespace nsbox {

namespace {
constexpr size_t kMaxLineBytes = 4096;
}

void LogStore::append(const std::string& function, const std::string& prefix,
                      const std::string& text) {
  if (text.empty() || max_lines_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto& ring = lines_[function];
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, std::min(end - start, kMaxLineBytes));
    ring.push_back(prefix + line);
    while (ring.size() > max_lines_) ring.pop_front();
    start = end + 1;
  }
}

std::string LogStore::get(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto it = lines_.find(function);
  if (it == lines_.end()) return out;
  for (const auto& l : it->second) out += l + "\n";
  return out;
}

void LogStore::clear(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  lines_.erase(function);
}

}  // namespace nsbox
