#include "sandbox/framing.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace nsbox {

namespace {

void put_u32(char* p, uint32_t n) {
  p[0] = static_cast<char>(n >> 24);
  p[1] = static_cast<char>(n >> 16);
  p[2] = static_cast<char>(n >> 8);
  p[3] = static_cast<char>(n);
}

uint32_t get_u32(const unsigned char* b) {
  return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
}

std::string too_large(const char* part, uint64_t n, uint32_t limit) {
  return std::string(part) + " of " + std::to_string(n) + " bytes exceeds the " +
         std::to_string(limit) + "-byte limit";
}

// Appends up to `want - dst.size()` bytes; returns how many it took.
size_t fill(std::string& dst, size_t want, const char* data, size_t n) {
  size_t take = std::min(want - dst.size(), n);
  dst.append(data, take);
  return take;
}

}  // namespace

Result<ChannelEnds> make_channel() {
  int req[2], rep[2];
  if (pipe2(req, O_CLOEXEC) != 0) return sys_error("pipe2", "request channel");
  ChannelEnds e;
  e.runner_in.reset(req[0]);
  e.host.to_runner.reset(req[1]);
  if (pipe2(rep, O_CLOEXEC) != 0) return sys_error("pipe2", "reply channel");
  e.host.from_runner.reset(rep[0]);
  e.runner_out.reset(rep[1]);
  // Only the host's write end: the runner's ends are separate open files
  // and stay blocking, so the runner sleeps in read() without a poll().
  if (fcntl(e.host.to_runner.get(), F_SETFL, O_NONBLOCK) != 0)
    return sys_error("fcntl", "O_NONBLOCK on the request channel");
  return e;
}

std::string encode_frame(const std::string& envelope, const std::string& payload) {
  std::string out(kFrameHeader, '\0');
  put_u32(out.data(), static_cast<uint32_t>(envelope.size()));
  put_u32(out.data() + 4, static_cast<uint32_t>(payload.size()));
  out.reserve(kFrameHeader + envelope.size() + payload.size());
  out += envelope;
  out += payload;
  return out;
}

void FrameDecoder::feed(const char* data, size_t n) {
  while (n > 0 && !error_) {
    size_t took;
    if (!have_header_) {
      took = std::min(kFrameHeader - header_len_, n);
      memcpy(header_ + header_len_, data, took);
      header_len_ += took;
      if (header_len_ == kFrameHeader) {
        envelope_len_ = get_u32(header_);
        payload_len_ = get_u32(header_ + 4);
        // Checked before anything is allocated: the lengths are the peer's word.
        if (envelope_len_ > kMaxEnvelope) {
          error_ = make_error("frame", too_large("envelope", envelope_len_, kMaxEnvelope));
          return;
        }
        if (payload_len_ > kMaxPayload) {
          error_ = make_error("frame", too_large("payload", payload_len_, kMaxPayload));
          return;
        }
        have_header_ = true;
        cur_.envelope.reserve(envelope_len_);
        cur_.payload.reserve(payload_len_);
      }
    } else if (cur_.envelope.size() < envelope_len_) {
      took = fill(cur_.envelope, envelope_len_, data, n);
    } else {
      took = fill(cur_.payload, payload_len_, data, n);
    }
    data += took;
    n -= took;
    if (have_header_ && cur_.envelope.size() == envelope_len_ &&
        cur_.payload.size() == payload_len_) {
      ready_.push_back(std::move(cur_));
      cur_ = Frame();
      have_header_ = false;
      header_len_ = 0;
    }
  }
}

Result<std::optional<Frame>> FrameDecoder::next() {
  if (!ready_.empty()) {
    Frame f = std::move(ready_.front());
    ready_.pop_front();
    return std::optional<Frame>(std::move(f));
  }
  if (error_) return *error_;
  return std::optional<Frame>();
}

FrameRead read_frame(int fd, FrameDecoder& dec, uint64_t deadline_ms, int side_fd,
                     const std::function<bool()>& on_side) {
  char buf[65536];
  for (;;) {
    auto f = dec.next();
    if (!f) return {ReadStatus::Error, {}, f.error()};
    if (f.value()) return {ReadStatus::Ok, std::move(*f.value()), {}};
    int timeout = -1;
    if (deadline_ms) {
      uint64_t now = monotonic_ms();
      if (now >= deadline_ms) return {ReadStatus::Timeout, {}, {}};
      timeout = static_cast<int>(deadline_ms - now);
    }
    struct pollfd pfd[2] = {{fd, POLLIN, 0}, {side_fd, POLLIN, 0}};
    int rc = poll(pfd, side_fd >= 0 ? 2 : 1, timeout);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return {ReadStatus::Error, {}, sys_error("poll", "channel")};
    if (rc == 0) return {ReadStatus::Timeout, {}, {}};
    if (side_fd >= 0 && (pfd[1].revents & POLLIN) && on_side && !on_side()) side_fd = -1;
    if (side_fd >= 0 && (pfd[1].revents & (POLLHUP | POLLERR)) && !(pfd[1].revents & POLLIN))
      side_fd = -1;  // the writer is gone; keep waiting on the channel alone
    if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {ReadStatus::Error, {}, sys_error("read", "channel")};
    if (n == 0) return {ReadStatus::Eof, {}, {}};
    dec.feed(buf, static_cast<size_t>(n));
  }
}

Status write_frame(int fd, const std::string& envelope, const std::string& payload,
                   uint64_t deadline_ms) {
  if (envelope.size() > kMaxEnvelope)
    return make_error("frame", too_large("envelope", envelope.size(), kMaxEnvelope));
  if (payload.size() > kMaxPayload)
    return make_error("frame", too_large("payload", payload.size(), kMaxPayload));
  // Header and envelope in one small buffer; the payload (an event of up to
  // 6 MiB) is written from the caller's string, not copied.
  std::string head(kFrameHeader, '\0');
  put_u32(head.data(), static_cast<uint32_t>(envelope.size()));
  put_u32(head.data() + 4, static_cast<uint32_t>(payload.size()));
  head += envelope;
  struct iovec iov[2] = {{head.data(), head.size()},
                         {const_cast<char*>(payload.data()), payload.size()}};
  int first = 0;
  while (first < 2) {
    ssize_t n = writev(fd, iov + first, 2 - first);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      int timeout = -1;
      if (deadline_ms) {
        uint64_t now = monotonic_ms();
        if (now >= deadline_ms) return sys_error_n(ETIMEDOUT, "write", "channel");
        timeout = static_cast<int>(deadline_ms - now);
      }
      struct pollfd pfd = {fd, POLLOUT, 0};
      poll(&pfd, 1, timeout);
      continue;
    }
    if (n < 0) return sys_error("write", "channel");
    size_t done = static_cast<size_t>(n);
    while (first < 2 && done >= iov[first].iov_len) {
      done -= iov[first].iov_len;
      first++;
    }
    if (first < 2) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
      iov[first].iov_len -= done;
    }
  }
  return {};
}

}  // namespace nsbox
