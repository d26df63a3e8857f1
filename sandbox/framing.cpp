#include "sandbox/framing.hpp"

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

namespace nsbox {

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

std::string encode_frame(const std::string& payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  std::string out;
  out.reserve(4 + payload.size());
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out += payload;
  return out;
}

Result<std::optional<std::string>> FrameDecoder::next() {
  if (buf_.size() < 4) return std::optional<std::string>();
  auto b = reinterpret_cast<const unsigned char*>(buf_.data());
  uint32_t n = uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
  if (n > kMaxFrame)
    return make_error("frame", "length " + std::to_string(n) + " exceeds the " +
                                   std::to_string(kMaxFrame) + "-byte limit");
  if (buf_.size() < 4 + size_t{n}) return std::optional<std::string>();
  std::string payload = buf_.substr(4, n);
  buf_.erase(0, 4 + size_t{n});
  return std::optional<std::string>(std::move(payload));
}

uint64_t monotonic_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
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

Status write_frame(int fd, const std::string& payload, uint64_t deadline_ms) {
  if (payload.size() > kMaxFrame)
    return make_error("frame",
                      "payload of " + std::to_string(payload.size()) + " bytes exceeds the limit");
  std::string frame = encode_frame(payload);
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = write(fd, frame.data() + off, frame.size() - off);
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
    off += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace nsbox
