// Request channel framing between host and runner: a 4-byte big-endian
// length, then that many bytes of UTF-8 JSON. One frame per message, so a
// runner can stay alive and serve many requests on one channel.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "sandbox/result.hpp"

namespace nsbox {

constexpr uint32_t kMaxFrame = 6u << 20;  // AWS Lambda's payload limit

std::string encode_frame(const std::string& payload);

// Incremental decoder: feed bytes as they arrive, take whole frames out.
class FrameDecoder {
 public:
  void feed(const char* data, size_t n) { buf_.append(data, n); }
  // A frame, nothing yet, or an error for an oversized length.
  Result<std::optional<std::string>> next();
  size_t buffered() const { return buf_.size(); }

 private:
  std::string buf_;
};

// Blocking helpers with a deadline (CLOCK_MONOTONIC ms; 0 = none).
enum class ReadStatus { Ok, Eof, Timeout, Error };
struct FrameRead {
  ReadStatus status;
  std::string payload;
  Error error;
};
// side_fd (optional): another fd to keep serviced while waiting, e.g. the
// sandbox's log pipe, which would otherwise fill and block a chatty function
// until its timeout; on_side is called whenever it is readable and returns
// false to stop watching it.
FrameRead read_frame(int fd, FrameDecoder& dec, uint64_t deadline_ms, int side_fd = -1,
                     const std::function<bool()>& on_side = {});
// With a deadline, a peer that stops reading makes this fail with ETIMEDOUT
// rather than block.
Status write_frame(int fd, const std::string& payload, uint64_t deadline_ms = 0);
uint64_t monotonic_ms();

}  // namespace nsbox
