// Request channel framing between host and runner. A frame is an 8-byte
// header (two big-endian u32: the envelope's length, the payload's length),
// the envelope (a small UTF-8 JSON object: type, id, status...) and the
// payload (raw bytes: an event, a source file, a result, a response body).
// Only the envelope is ever parsed into a document; the payload is copied
// through, so a 6 MiB result costs the daemon one buffer of 6 MiB. The
// message shapes are in docs/runner-protocol.md.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>

#include "base/clock.hpp"  // deadlines are monotonic_ms() values
#include "base/fd.hpp"
#include "base/result.hpp"

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

// The limits, in both directions. The payload limit is the one users see
// (AWS Lambda's 6 MB for events and results); every HTTP body that becomes
// a payload is checked against it before a sandbox is leased, so a request
// the HTTP front accepted always fits a frame. The envelope's variable parts
// are bounded (names <= 63, request ids <= kMaxRequestId, numbers, a
// proxy result's headers), and it needs no share of the payload's limit.
constexpr uint32_t kFrameHeader = 8;
constexpr uint32_t kMaxEnvelope = 16u << 10;
constexpr uint32_t kMaxPayload = 6u << 20;
constexpr uint32_t kMaxFrame = kFrameHeader + kMaxEnvelope + kMaxPayload;
constexpr size_t kMaxRequestId = 128;

struct Frame {
  std::string envelope;
  std::string payload;
};

std::string encode_frame(const std::string& envelope, const std::string& payload = {});

// Incremental decoder: feed bytes as they arrive, take whole frames out.
// Each part is allocated once, at its announced size, and filled in place:
// no buffer doubling and no copy out of a shared buffer.
class FrameDecoder {
 public:
  void feed(const char* data, size_t n);
  // A frame, nothing yet, or an error for an oversized length (then every
  // later call fails too: the stream cannot be resynchronised).
  Result<std::optional<Frame>> next();
  // Nothing held: no complete frame waiting, no part of one.
  bool empty() const { return ready_.empty() && buffered() == 0; }
  // Bytes of frames not yet complete.
  size_t buffered() const {
    return have_header_ ? kFrameHeader + cur_.envelope.size() + cur_.payload.size() : header_len_;
  }

 private:
  std::deque<Frame> ready_;
  Frame cur_;
  unsigned char header_[kFrameHeader];
  size_t header_len_ = 0;
  bool have_header_ = false;
  uint32_t envelope_len_ = 0, payload_len_ = 0;
  std::optional<Error> error_;
};

// Blocking helpers with a deadline (CLOCK_MONOTONIC ms; 0 = none).
enum class ReadStatus { Ok, Eof, Timeout, Error };
struct FrameRead {
  ReadStatus status;
  Frame frame;
  Error error;
};
// side_fd (optional): another fd to keep serviced while waiting, e.g. the
// sandbox's log pipe, which would otherwise fill and block a chatty function
// until its timeout; on_side is called whenever it is readable and returns
// false to stop watching it.
FrameRead read_frame(int fd, FrameDecoder& dec, uint64_t deadline_ms, int side_fd = -1,
                     const std::function<bool()>& on_side = {});
// The header and envelope are copied, the payload is written from where it
// is (writev). With a deadline, a peer that stops reading makes this fail
// with ETIMEDOUT rather than block. fd may be non-blocking (it waits in
// poll); see make_channel about SIGPIPE.
Status write_frame(int fd, const std::string& envelope, const std::string& payload = {},
                   uint64_t deadline_ms = 0);

}  // namespace nsbox
