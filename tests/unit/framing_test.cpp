// The host <-> runner framing: 4-byte big-endian length, then the payload.
#include "sandbox/framing.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

using namespace nsbox;

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) close(f);
  }
  void close_end(int i) {
    close(fd[i]);
    fd[i] = -1;
  }
};

// next() that must succeed; returns the frame or nullopt.
std::optional<std::string> next_ok(FrameDecoder& d) {
  auto r = d.next();
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  return r.value();
}

}  // namespace

TEST_CASE("encode_frame: big-endian 4-byte length prefix") {
  CHECK(encode_frame("") == bytes({0, 0, 0, 0}));
  CHECK(encode_frame("hi") == bytes({0, 0, 0, 2}) + "hi");
  std::string big(0x01020304 & 0xffffff, 'x');  // 0x020304 bytes
  std::string f = encode_frame(big);
  CHECK(f.size() == 4 + big.size());
  CHECK(f.substr(0, 4) == bytes({0, 0x02, 0x03, 0x04}));
  std::string b300(300, 'y');
  CHECK(encode_frame(b300).substr(0, 4) == bytes({0, 0, 1, 44}));
}

TEST_CASE("FrameDecoder: byte-by-byte feeding yields the frame only when complete") {
  std::string payload = "{\"type\": \"ready\"}";
  std::string wire = encode_frame(payload);
  FrameDecoder d;
  for (size_t i = 0; i + 1 < wire.size(); i++) {
    d.feed(&wire[i], 1);
    CHECK_FALSE(next_ok(d).has_value());
    CHECK(d.buffered() == i + 1);
  }
  d.feed(&wire.back(), 1);
  auto f = next_ok(d);
  REQUIRE(f.has_value());
  CHECK(*f == payload);
  CHECK(d.buffered() == 0);
  CHECK_FALSE(next_ok(d).has_value());
}

TEST_CASE("FrameDecoder: two frames and a partial third in one feed") {
  std::string wire =
      encode_frame("first") + encode_frame("second") + encode_frame("third").substr(0, 6);
  FrameDecoder d;
  d.feed(wire.data(), wire.size());
  auto a = next_ok(d);
  auto b = next_ok(d);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(*a == "first");
  CHECK(*b == "second");
  CHECK_FALSE(next_ok(d).has_value());
  CHECK(d.buffered() == 6);
  std::string rest = encode_frame("third").substr(6);
  d.feed(rest.data(), rest.size());
  auto c = next_ok(d);
  REQUIRE(c.has_value());
  CHECK(*c == "third");
}

TEST_CASE("FrameDecoder: an empty payload is a frame, distinct from no frame") {
  std::string wire = encode_frame("") + encode_frame("x");
  FrameDecoder d;
  d.feed(wire.data(), wire.size());
  auto e = next_ok(d);
  REQUIRE(e.has_value());
  CHECK(e->empty());
  auto x = next_ok(d);
  REQUIRE(x.has_value());
  CHECK(*x == "x");
}

TEST_CASE("FrameDecoder: binary payloads with NUL and high bytes survive") {
  std::string payload = bytes({0, 0xff, 0x80, 0, 'a'});
  std::string wire = encode_frame(payload);
  FrameDecoder d;
  d.feed(wire.data(), wire.size());
  auto f = next_ok(d);
  REQUIRE(f.has_value());
  CHECK(*f == payload);
}

TEST_CASE("FrameDecoder: a length above kMaxFrame is an error, kMaxFrame itself is not") {
  uint32_t over = kMaxFrame + 1;
  std::string hdr =
      bytes({int(over >> 24), int((over >> 16) & 0xff), int((over >> 8) & 0xff), int(over & 0xff)});
  FrameDecoder d;
  d.feed(hdr.data(), hdr.size());
  auto r = d.next();
  REQUIRE_FALSE(r);
  CHECK(r.error().detail.find(std::to_string(over)) != std::string::npos);

  FrameDecoder huge;
  std::string ff = bytes({0xff, 0xff, 0xff, 0xff});
  huge.feed(ff.data(), ff.size());
  CHECK_FALSE(huge.next());

  uint32_t at = kMaxFrame;
  std::string ok_hdr =
      bytes({int(at >> 24), int((at >> 16) & 0xff), int((at >> 8) & 0xff), int(at & 0xff)});
  FrameDecoder exact;
  exact.feed(ok_hdr.data(), ok_hdr.size());
  auto w = exact.next();
  REQUIRE(w);  // waiting for the payload, not an error
  CHECK_FALSE(w.value().has_value());
}

TEST_CASE("write_frame / read_frame over a socketpair") {
  SocketPair sp;
  REQUIRE(write_frame(sp.fd[0], "hello"));
  REQUIRE(write_frame(sp.fd[0], ""));
  std::string big(200000, 'z');  // larger than one read() and the socket buffer
  big[123456] = 'A';

  FrameDecoder d;
  FrameRead a = read_frame(sp.fd[1], d, monotonic_ms() + 2000);
  REQUIRE(a.status == ReadStatus::Ok);
  CHECK(a.payload == "hello");
  FrameRead b = read_frame(sp.fd[1], d, monotonic_ms() + 2000);
  REQUIRE(b.status == ReadStatus::Ok);
  CHECK(b.payload.empty());
  CHECK(d.buffered() == 0);

  // The other direction, from a child since the frame exceeds the buffer.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(write_frame(sp.fd[1], big) ? 0 : 1);
  FrameDecoder d0;
  FrameRead back = read_frame(sp.fd[0], d0, monotonic_ms() + 5000);
  REQUIRE(back.status == ReadStatus::Ok);
  CHECK(back.payload.size() == big.size());
  CHECK(back.payload == big);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("write_frame refuses a payload above kMaxFrame") {
  SocketPair sp;
  std::string big(kMaxFrame + 1, 'x');
  auto r = write_frame(sp.fd[0], big);
  CHECK_FALSE(r);
  // Nothing was sent.
  FrameDecoder d;
  CHECK(read_frame(sp.fd[1], d, monotonic_ms() + 30).status == ReadStatus::Timeout);
  CHECK(d.buffered() == 0);
}

TEST_CASE("read_frame: deadline expires with Timeout, keeping partial input") {
  SocketPair sp;
  std::string partial = encode_frame("abcdef").substr(0, 7);
  REQUIRE(write(sp.fd[0], partial.data(), partial.size()) == ssize_t(partial.size()));
  FrameDecoder d;
  uint64_t start = monotonic_ms();
  FrameRead r = read_frame(sp.fd[1], d, start + 50);
  uint64_t took = monotonic_ms() - start;
  CHECK(r.status == ReadStatus::Timeout);
  CHECK(took >= 49);
  CHECK(took < 1000);
  CHECK(d.buffered() == 7);
  // The rest arrives: the same decoder completes the frame.
  std::string rest = encode_frame("abcdef").substr(7);
  REQUIRE(write(sp.fd[0], rest.data(), rest.size()) == ssize_t(rest.size()));
  FrameRead ok = read_frame(sp.fd[1], d, monotonic_ms() + 1000);
  REQUIRE(ok.status == ReadStatus::Ok);
  CHECK(ok.payload == "abcdef");
}

TEST_CASE("read_frame: a deadline already past is an immediate Timeout") {
  SocketPair sp;
  FrameDecoder d;
  CHECK(read_frame(sp.fd[1], d, monotonic_ms() - 1).status == ReadStatus::Timeout);
}

TEST_CASE("read_frame: a frame already buffered is returned even after the deadline") {
  SocketPair sp;
  FrameDecoder d;
  std::string wire = encode_frame("ready");
  d.feed(wire.data(), wire.size());
  FrameRead r = read_frame(sp.fd[1], d, 1);
  REQUIRE(r.status == ReadStatus::Ok);
  CHECK(r.payload == "ready");
}

TEST_CASE("read_frame: peer closed is Eof, also mid-frame") {
  SocketPair sp;
  sp.close_end(0);
  FrameDecoder d;
  CHECK(read_frame(sp.fd[1], d, monotonic_ms() + 1000).status == ReadStatus::Eof);

  SocketPair sp2;
  std::string partial = encode_frame("abc").substr(0, 5);
  REQUIRE(write(sp2.fd[0], partial.data(), partial.size()) == ssize_t(partial.size()));
  sp2.close_end(0);
  FrameDecoder d2;
  CHECK(read_frame(sp2.fd[1], d2, 0).status == ReadStatus::Eof);
}

TEST_CASE("read_frame: an oversized length on the wire is an Error") {
  SocketPair sp;
  std::string hdr = bytes({0x7f, 0, 0, 0});
  REQUIRE(write(sp.fd[0], hdr.data(), hdr.size()) == 4);
  FrameDecoder d;
  FrameRead r = read_frame(sp.fd[1], d, monotonic_ms() + 1000);
  CHECK(r.status == ReadStatus::Error);
  CHECK(r.error.step == "frame");
}

// Processes that write frames ignore SIGPIPE (make_channel says so).
struct IgnoreSigpipe {
  void (*old)(int) = signal(SIGPIPE, SIG_IGN);
  ~IgnoreSigpipe() { signal(SIGPIPE, old); }
};

TEST_CASE("make_channel: close-on-exec ends; only the host's write end is non-blocking") {
  auto c = make_channel();
  REQUIRE_MESSAGE(bool(c), (c ? std::string() : c.error().message()));
  ChannelEnds& e = c.value();
  for (int fd :
       {e.host.to_runner.get(), e.host.from_runner.get(), e.runner_in.get(), e.runner_out.get()})
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  CHECK((fcntl(e.host.to_runner.get(), F_GETFL) & O_NONBLOCK) != 0);
  CHECK((fcntl(e.host.from_runner.get(), F_GETFL) & O_NONBLOCK) == 0);
  CHECK((fcntl(e.runner_in.get(), F_GETFL) & O_NONBLOCK) == 0);
  CHECK((fcntl(e.runner_out.get(), F_GETFL) & O_NONBLOCK) == 0);
}

TEST_CASE("make_channel: a frame larger than the pipe goes down and comes back") {
  IgnoreSigpipe ignore;  // an echo child that died must fail the test, not kill the binary
  auto c = make_channel();
  REQUIRE(c);
  ChannelEnds& e = c.value();
  std::string big(300000, 'q');  // beyond a pipe's 64 KiB: the host's write must wait in poll
  big[200001] = 'B';
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // an echoing runner on the blocking ends
    FrameDecoder d;
    FrameRead r = read_frame(e.runner_in.get(), d, 0);
    _exit(r.status == ReadStatus::Ok && write_frame(e.runner_out.get(), r.payload) ? 0 : 1);
  }
  e.runner_in.reset();
  e.runner_out.reset();
  REQUIRE(write_frame(e.host.to_runner.get(), big, monotonic_ms() + 5000));
  FrameDecoder d;
  FrameRead back = read_frame(e.host.from_runner.get(), d, monotonic_ms() + 5000);
  REQUIRE(back.status == ReadStatus::Ok);
  CHECK(back.payload == big);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The runner is gone and held the only write end: EOF, not a hang.
  CHECK(read_frame(e.host.from_runner.get(), d, monotonic_ms() + 1000).status == ReadStatus::Eof);
}

TEST_CASE("write_frame: a runner that never reads makes it time out, not block") {
  auto c = make_channel();
  REQUIRE(c);
  uint64_t t0 = monotonic_ms();
  auto r = write_frame(c.value().host.to_runner.get(), std::string(1 << 20, 'x'), t0 + 200);
  REQUIRE_FALSE(r);
  CHECK(r.error().err == ETIMEDOUT);
  CHECK(monotonic_ms() - t0 < 3000);
}

TEST_CASE("write_frame to a pipe whose reader is gone fails with EPIPE") {
  IgnoreSigpipe ignore;
  auto c = make_channel();
  REQUIRE(c);
  c.value().runner_in.reset();
  auto r = write_frame(c.value().host.to_runner.get(), "x", monotonic_ms() + 1000);
  REQUIRE_FALSE(r);
  CHECK(r.error().err == EPIPE);
}

TEST_CASE("monotonic_ms advances") {
  uint64_t a = monotonic_ms();
  usleep(20000);
  uint64_t b = monotonic_ms();
  CHECK(b >= a + 19);
  CHECK(b < a + 2000);
}
