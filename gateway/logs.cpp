#include "gateway/logs.hpp"

#include <algorithm>
#include <vector>

namespace nsbox {

namespace {
constexpr size_t kMaxLineBytes = 4096;
}

size_t LogStore::line_cost(const Line& line) {
  return line.text.capacity() + kLineOverhead;
}

void LogStore::drop_oldest(Rings::iterator it, size_t floor) {
  Ring& ring = it->second;
  by_size_.erase(key(ring, it->first));
  // At least one line, then more until the budget is met or the ring is
  // no longer above floor (the next largest): one set update for the lot.
  do {
    const size_t cost = line_cost(ring.lines.front());
    ring.lines.pop_front();
    ring.bytes -= cost;
    total_ -= cost;
  } while (!ring.lines.empty() && total_ > max_bytes_ && ring.bytes > floor);
  if (ring.lines.empty()) {
    total_ -= ring.bytes;  // the ring's own overhead
    rings_.erase(it);
  } else {
    by_size_.insert(key(ring, it->first));
  }
}

void LogStore::append(const std::string& function, uint64_t deploy, const std::string& prefix,
                      const std::string& text) {
  if (text.empty() || max_lines_ == 0 || max_bytes_ == 0) return;
  // Only the last max_lines_ lines can stay: they alone are built, newest
  // first and before the lock is taken, so that a function printing 256
  // KiB of newlines per request costs every other function's append a
  // bounded wait, not hundreds of thousands of allocations under mu_. The
  // lines are text split at '\n', a final '\n' ending the last one.
  std::vector<Line> fresh;
  size_t stop = text.size() - (text.back() == '\n' ? 1 : 0);
  for (;;) {
    const size_t nl = stop == 0 ? std::string::npos : text.rfind('\n', stop - 1);
    const size_t begin = nl == std::string::npos ? 0 : nl + 1;
    const size_t len = std::min(stop - begin, kMaxLineBytes);
    std::string line;
    line.reserve(prefix.size() + len);  // exactly: capacity() is what it costs
    line.append(prefix).append(text, begin, len);
    Line entry{std::move(line), deploy};
    if (line_cost(entry) + kRingOverhead <= max_bytes_)  // else it could never be kept
      fresh.push_back(std::move(entry));
    if (fresh.size() == max_lines_ || nl == std::string::npos) break;
    stop = nl;
  }
  if (fresh.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (deleted_.deleted(function, deploy)) return;
  auto [it, made] = rings_.try_emplace(function);
  Ring& ring = it->second;
  if (made) {
    ring.bytes = kRingOverhead;
    total_ += ring.bytes;
  } else {
    by_size_.erase(key(ring, function));
  }
  ring.stamp = ++appends_;
  for (auto line = fresh.rbegin(); line != fresh.rend(); ++line) {
    const size_t cost = line_cost(*line);
    ring.lines.push_back(std::move(*line));
    ring.bytes += cost;
    total_ += cost;
    if (ring.lines.size() > max_lines_) {
      const size_t old = line_cost(ring.lines.front());
      ring.lines.pop_front();
      ring.bytes -= old;
      total_ -= old;
    }
  }
  if (ring.lines.empty()) {  // new, and no line could be kept
    total_ -= ring.bytes;
    rings_.erase(it);
    return;
  }
  by_size_.insert(key(ring, function));
  // Past the budget, the largest rings lose their oldest lines, down to
  // the next largest at a time.
  while (total_ > max_bytes_ && !by_size_.empty()) {
    auto largest = std::prev(by_size_.end());
    const size_t floor = by_size_.size() > 1 ? std::get<0>(*std::prev(largest)) : 0;
    drop_oldest(rings_.find(std::get<2>(*largest)), floor);
  }
}

std::string LogStore::get(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto it = rings_.find(function);
  if (it == rings_.end()) return out;
  size_t size = 0;
  for (const auto& l : it->second.lines) size += l.text.size() + 1;
  out.reserve(size);
  for (const auto& l : it->second.lines) out.append(l.text).push_back('\n');
  return out;
}

void LogStore::clear(const std::string& function, uint64_t removed_at) {
  std::lock_guard<std::mutex> lock(mu_);
  deleted_.note(function, removed_at);
  auto it = rings_.find(function);
  if (it == rings_.end()) return;
  Ring& ring = it->second;
  by_size_.erase(key(ring, function));
  // Only the removed deploys' lines: a deploy made since (the delete's
  // store work is slow with many versions) keeps what it printed.
  std::deque<Line> kept;
  for (Line& l : ring.lines) {
    if (l.deploy < removed_at) {
      const size_t cost = line_cost(l);
      ring.bytes -= cost;
      total_ -= cost;
    } else {
      kept.push_back(std::move(l));
    }
  }
  if (kept.empty()) {
    total_ -= ring.bytes;  // the ring's own overhead
    rings_.erase(it);
    return;
  }
  ring.lines = std::move(kept);
  by_size_.insert(key(ring, function));
}

size_t LogStore::bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

}  // namespace nsbox
