#include "gateway/access_log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace nsbox {

namespace {
constexpr size_t kFlushBytes = 64 << 10;  // flush early when this much is waiting
// stderr is a blocking pipe or file: while its reader stalls, the flush
// thread waits in write() and lines pile up here (besides the batch it
// holds, at most as large). Past this they are
// dropped (and counted in the next flush) rather than held without bound.
constexpr size_t kMaxWaitingBytes = 4 << 20;

void write_all(const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(2, s.data() + off, s.size() - off);
    if (n <= 0) return;  // stderr gone: drop the log rather than block serving
    off += static_cast<size_t>(n);
  }
}
}  // namespace

AccessLog::AccessLog() : thread_([this] { flush_loop(); }) {}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void AccessLog::line(const std::string& request_id, const std::string& function,
                     const std::string& outcome, int status, double latency_ms,
                     const std::string& client) {
  char buf[320];
  int n = snprintf(buf, sizeof buf, "%s %s %s %d %.1f %s\n", request_id.c_str(), function.c_str(),
                   outcome.c_str(), status, latency_ms, client.empty() ? "-" : client.c_str());
  std::lock_guard<std::mutex> lock(mu_);
  if (buffer_.size() >= kMaxWaitingBytes) {
    dropped_++;
    return;
  }
  buffer_.append(buf, n > 0 ? std::min<size_t>(n, sizeof buf - 1) : 0);
  if (buffer_.size() >= kFlushBytes) cv_.notify_one();
}

void AccessLog::flush_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(100),
                 [this] { return stopping_ || buffer_.size() >= kFlushBytes; });
    std::string out;
    if (dropped_) {
      out = "nsbox: access log: " + std::to_string(dropped_) +
            " lines dropped while stderr was not read\n";
      dropped_ = 0;
    }
    out += buffer_;
    buffer_.clear();
    bool stop = stopping_;
    lock.unlock();
    if (!out.empty()) write_all(out);
    lock.lock();
    if (stop && buffer_.empty()) return;
  }
}

}  // namespace nsbox
