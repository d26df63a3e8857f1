#include "gateway/logs.hpp"

#include <algorithm>

namespace nsbox {

namespace {
constexpr size_t kMaxLineBytes = 4096;
}

void LogStore::drop_oldest(Rings::iterator it) {
  Ring& ring = it->second;
  const size_t cost = ring.lines.front().size() + kLineOverhead;
  by_size_.erase({ring.bytes, it->first});
  ring.lines.pop_front();
  ring.bytes -= cost;
  total_ -= cost;
  if (ring.lines.empty()) {
    rings_.erase(it);
  } else {
    by_size_.insert({ring.bytes, it->first});
  }
}

void LogStore::append(const std::string& function, const std::string& prefix,
                      const std::string& text) {
  if (text.empty() || max_lines_ == 0 || max_bytes_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = prefix + text.substr(start, std::min(end - start, kMaxLineBytes));
    start = end + 1;
    const size_t cost = line.size() + kLineOverhead;
    if (cost > max_bytes_) continue;  // could never be kept
    auto it = rings_.try_emplace(function).first;
    Ring& ring = it->second;
    if (ring.bytes > 0) by_size_.erase({ring.bytes, function});
    ring.lines.push_back(std::move(line));
    ring.bytes += cost;
    total_ += cost;
    by_size_.insert({ring.bytes, function});
    while (ring.lines.size() > max_lines_) drop_oldest(it);
    while (total_ > max_bytes_) drop_oldest(rings_.find(by_size_.rbegin()->second));
  }
}

std::string LogStore::get(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto it = rings_.find(function);
  if (it == rings_.end()) return out;
  for (const auto& l : it->second.lines) out += l + "\n";
  return out;
}

void LogStore::clear(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rings_.find(function);
  if (it == rings_.end()) return;
  by_size_.erase({it->second.bytes, function});
  total_ -= it->second.bytes;
  rings_.erase(it);
}

size_t LogStore::bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

}  // namespace nsbox
