// Request channel framing between host and runner: a 4-byte big-endian
// length, then that many bytes of UTF-8 JSON. One frame per message, so a
// runner can stay alive and serve many requests on one channel.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "sandbox/fd.hpp"
#include "sandbox/result.hpp"

namespace nsbox {

// The channel is two pipes: requests down one, replies up the other. Not a
// unix socket pair: reading from one wakes every task asleep on the sending
// end (to say "writable"), so a runner waiting for its next request woke
// twice per request; a pipe wakes its writer only when it was full. A pipe
// round trip also costs less than a socket's (no skb per message).
struct ChannelFds {
  UniqueFd to_runner;    // write end, non-blocking: write_frame waits in poll
  UniqueFd from_runner;  // read end
};
struct ChannelEnds {
  ChannelFds host;
  UniqueFd runner_in;   // the runner reads requests here (its fd 3)
  UniqueFd runner_out;  // and writes replies here (its fd 4)
};
// Every end close-on-exec. Writing to a pipe whose reader is gone raises
// SIGPIPE: processes that write frames must ignore it (write_frame then
// fails with EPIPE).
Result<ChannelEnds> make_channel();

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
// rather than block. fd may be non-blocking (it waits in poll); see
// make_channel about SIGPIPE.
Status write_frame(int fd, const std::string& payload, uint64_t deadline_ms = 0);
uint64_t monotonic_ms();

}  // namespace nsbox
