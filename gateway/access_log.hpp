// The access log: one line per request (request-id function outcome status
// latency-ms client) to stderr, buffered and written by a background thread every
// 100 ms, so that serving a request costs no write(2) of its own.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace nsbox {

class AccessLog {
 public:
  AccessLog();
  ~AccessLog();  // flushes what is buffered
  void line(const std::string& request_id, const std::string& function, const std::string& outcome,
            int status, double latency_ms, const std::string& client);

 private:
  void flush_loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::string buffer_;
  uint64_t dropped_ = 0;  // lines not kept: buffer_ was full (under mu_)
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nsbox
