#include "tools/output_relay.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "base/fd.hpp"
#include "base/terminal_escape.hpp"

namespace nsbox {

struct OutputRelay::State {
  UniqueFd read_end, write_end, stop;
  int to = -1;
  bool escape = false;
  bool utf8 = true;
  std::thread thread;
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
};

namespace {

constexpr size_t kPipeBytes = 1 << 20;

// Our stderr may be non-blocking (a flag of the open file, which we share
// with whoever made it): wait rather than drop.
void wait_writable(int fd) {
  struct pollfd p = {fd, POLLOUT, 0};
  poll(&p, 1, -1);
}

// false once the destination refuses bytes (closed, hung up): the rest is
// read and dropped, so that the function is never blocked by a dead reader.
bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      wait_writable(fd);
      continue;
    }
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Bytes go across with splice (no copy through user space) unless they must
// be escaped or the destination refuses splice (a file opened O_APPEND).
void copy(OutputRelay::State& s) {
  const int from = s.read_end.get();
  char buf[65536];
  std::string escaped;
  TerminalEscaper esc(s.utf8);
  bool stopping = false, sink_ok = true, try_splice = !s.escape;
  for (;;) {
    // Only ever read what poll saw, so that a stop request (with a stray
    // writer still holding the pipe) ends the copy once the pipe is empty.
    struct pollfd p[2] = {{from, POLLIN, 0}, {s.stop.get(), POLLIN, 0}};
    int rc = poll(p, stopping ? 1 : 2, stopping ? 0 : -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) break;
    if (!stopping && (p[1].revents & POLLIN)) stopping = true;
    if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (stopping) break;
      continue;
    }
    if (sink_ok && try_splice) {
      ssize_t n = splice(from, nullptr, s.to, nullptr, kPipeBytes, SPLICE_F_MOVE);
      if (n == 0) break;  // every writer is gone and the pipe is empty
      if (n > 0 || errno == EINTR) continue;
      if (errno == EAGAIN) {
        wait_writable(s.to);
        continue;
      }
      if (errno == EINVAL) {
        try_splice = false;
        continue;
      }
      sink_ok = false;  // the destination is gone: drain and drop below
      continue;
    }
    ssize_t n = read(from, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;
    }
    if (!sink_ok) continue;
    const char* out = buf;
    size_t len = static_cast<size_t>(n);
    if (s.escape) {
      escaped.clear();
      esc.feed(std::string_view(buf, len), &escaped);
      out = escaped.data();
      len = escaped.size();
    }
    sink_ok = write_all(s.to, out, len);
  }
  if (s.escape && sink_ok) {
    escaped.clear();
    esc.finish(&escaped);
    write_all(s.to, escaped.data(), escaped.size());
  }
  std::lock_guard<std::mutex> g(s.m);
  s.done = true;
  s.cv.notify_all();
}

}  // namespace

OutputRelay::~OutputRelay() {
  finish(0);
}

Status OutputRelay::open(int to_fd) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return sys_error("pipe2", "function output");
  s_ = std::make_shared<State>();
  s_->read_end.reset(p[0]);
  s_->write_end.reset(p[1]);
  // Fewer wake-ups for a chatty function; refused beyond the user's pipe
  // quota, when the default 64 KiB does.
  fcntl(p[0], F_SETPIPE_SZ, static_cast<int>(kPipeBytes));
  s_->stop.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s_->stop.valid()) return sys_error("eventfd", "function output");
  s_->to = to_fd;
  s_->escape = needs_terminal_escaping(to_fd);
  s_->utf8 = locale_is_utf8();
  return {};
}

int OutputRelay::write_fd() const {
  return s_ ? s_->write_end.get() : -1;
}

void OutputRelay::close_write_fd() {
  if (s_) s_->write_end.reset();
}

Status OutputRelay::start() {
  std::shared_ptr<State> s = s_;
  try {
    s->thread = std::thread([s] { copy(*s); });
  } catch (const std::system_error& e) {
    return make_error("thread", std::string("function output relay: ") + e.what());
  }
  return {};
}

void OutputRelay::finish(int grace_ms) {
  if (!s_ || !s_->thread.joinable()) return;
  s_->write_end.reset();
  uint64_t one = 1;
  if (write(s_->stop.get(), &one, sizeof one) < 0) {
    // Only EAGAIN at an absurd count; the thread is awake either way.
  }
  std::unique_lock<std::mutex> g(s_->m);
  bool done = s_->cv.wait_for(g, std::chrono::milliseconds(grace_ms), [&] { return s_->done; });
  g.unlock();
  if (done)
    s_->thread.join();
  else
    s_->thread.detach();  // it holds its own reference to the state
}

}  // namespace nsbox
