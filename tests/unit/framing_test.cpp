// The host <-> runner framing: two big-endian lengths, the envelope, the payload.
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
std::optional<Frame> next_ok(FrameDecoder& d) {
  auto r = d.next();
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  return std::move(r.value());
}

std::string be32(uint32_t n) {
  return bytes({int(n >> 24), int((n >> 16) & 0xff), int((n >> 8) & 0xff), int(n & 0xff)});
}

}  // namespace

TEST_CASE("encode_frame: two big-endian lengths, the envelope, the payload") {
  CHECK(encode_frame("") == bytes({0, 0, 0, 0, 0, 0, 0, 0}));
  CHECK(encode_frame("hi") == bytes({0, 0, 0, 2, 0, 0, 0, 0}) + "hi");
  CHECK(encode_frame("{}", "abc") == bytes({0, 0, 0, 2, 0, 0, 0, 3}) + "{}abc");
  std::string big(0x020304, 'x');
  std::string f = encode_frame("{}", big);
  CHECK(f.size() == 8 + 2 + big.size());
  CHECK(f.substr(4, 4) == bytes({0, 0x02, 0x03, 0x04}));
  CHECK(encode_frame(std::string(300, 'y')).substr(0, 4) == bytes({0, 0, 1, 44}));
}

TEST_CASE("the limits agree: a full payload and a full envelope make a frame of kMaxFrame") {
  static_assert(kMaxFrame == kFrameHeader + kMaxEnvelope + kMaxPayload);
  // What the HTTP front lets through (AWS Lambda's 6 MB) is the payload
  // limit itself, not the frame's: the envelope has its own allowance.
  CHECK(kMaxPayload == 6u << 20);
  CHECK(kMaxEnvelope >= 4096);
}

TEST_CASE("FrameDecoder: byte-by-byte feeding yields the frame only when complete") {
  std::string env = "{\"type\": \"result\"}", payload = "[1,2,3]\n";
  std::string wire = encode_frame(env, payload);
  FrameDecoder d;
  for (size_t i = 0; i + 1 < wire.size(); i++) {
    d.feed(&wire[i], 1);
    CHECK_FALSE(next_ok(d).has_value());
    CHECK(d.buffered() == i + 1);
  }
  d.feed(&wire.back(), 1);
  auto f = next_ok(d);
  REQUIRE(f.has_value());
  CHECK(f->envelope == env);
  CHECK(f->payload == payload);
  CHECK(d.buffered() == 0);
  CHECK_FALSE(next_ok(d).has_value());
}

TEST_CASE("FrameDecoder: each part is allocated at its announced size, not grown") {
  std::string payload(3 << 20, 'p');
  std::string wire = encode_frame("{}", payload);
  FrameDecoder d;
  for (size_t off = 0; off < wire.size(); off += 65536)
    d.feed(wire.data() + off, std::min<size_t>(65536, wire.size() - off));
  auto f = next_ok(d);
  REQUIRE(f.has_value());
  CHECK(f->payload == payload);
  // Appending in 64 KiB reads would double a growing buffer to 4 MiB.
  CHECK(f->payload.capacity() < payload.size() + 64);
}

TEST_CASE("FrameDecoder: two frames and a partial third in one feed") {
  std::string wire = encode_frame("first", "1") + encode_frame("second") +
                     encode_frame("third", "333").substr(0, 10);
  FrameDecoder d;
  CHECK(d.empty());
  d.feed(wire.data(), wire.size());
  auto a = next_ok(d);
  CHECK_FALSE(d.empty());  // the second frame waits
  auto b = next_ok(d);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK_FALSE(d.empty());  // part of the third
  CHECK(a->envelope == "first");
  CHECK(a->payload == "1");
  CHECK(b->envelope == "second");
  CHECK(b->payload.empty());
  CHECK_FALSE(next_ok(d).has_value());
  CHECK(d.buffered() == 10);
  std::string rest = encode_frame("third", "333").substr(10);
  d.feed(rest.data(), rest.size());
  auto c = next_ok(d);
  REQUIRE(c.has_value());
  CHECK(c->envelope == "third");
  CHECK(c->payload == "333");
  CHECK(d.empty());
}

TEST_CASE("FrameDecoder: an empty frame is a frame, distinct from no frame") {
  std::string wire = encode_frame("") + encode_frame("x");
  FrameDecoder d;
  d.feed(wire.data(), wire.size());
  auto e = next_ok(d);
  REQUIRE(e.has_value());
  CHECK(e->envelope.empty());
  CHECK(e->payload.empty());
  auto x = next_ok(d);
  REQUIRE(x.has_value());
  CHECK(x->envelope == "x");
}

TEST_CASE("FrameDecoder: binary payloads with NUL and high bytes survive") {
  std::string payload = bytes({0, 0xff, 0x80, 0, 'a'});
  std::string wire = encode_frame("{}", payload);
  FrameDecoder d;
  d.feed(wire.data(), wire.size());
  auto f = next_ok(d);
  REQUIRE(f.has_value());
  CHECK(f->payload == payload);
}

TEST_CASE("FrameDecoder: lengths above the limits are errors naming them; the limits are not") {
  FrameDecoder d;
  std::string hdr = be32(kMaxEnvelope + 1) + be32(0);
  d.feed(hdr.data(), hdr.size());
  auto r = d.next();
  REQUIRE_FALSE(r);
  CHECK(r.error().step == "frame");
  CHECK(r.error().detail.find(std::to_string(kMaxEnvelope)) != std::string::npos);
  CHECK_FALSE(d.next());  // and it stays broken: the stream cannot resynchronise

  FrameDecoder p;
  hdr = be32(2) + be32(kMaxPayload + 1);
  p.feed(hdr.data(), hdr.size());
  r = p.next();
  REQUIRE_FALSE(r);
  CHECK(r.error().detail.find(std::to_string(kMaxPayload + 1)) != std::string::npos);
  CHECK(r.error().detail.find(std::to_string(kMaxPayload)) != std::string::npos);

  FrameDecoder huge;
  std::string ff = bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
  huge.feed(ff.data(), ff.size());
  CHECK_FALSE(huge.next());

  FrameDecoder exact;
  hdr = be32(kMaxEnvelope) + be32(kMaxPayload);
  exact.feed(hdr.data(), hdr.size());
  auto w = exact.next();
  REQUIRE(w);  // waiting for the parts, not an error
  CHECK_FALSE(w.value().has_value());
}

TEST_CASE("FrameDecoder: a frame before an oversized one still comes out") {
  std::string wire = encode_frame("ok", "1") + be32(0) + be32(0xffffffff);
  FrameDecoder d;
  d.feed(wire.data(), wire.size());
  auto f = next_ok(d);
  REQUIRE(f.has_value());
  CHECK(f->envelope == "ok");
  CHECK_FALSE(d.next());
}

TEST_CASE("write_frame / read_frame over a socketpair") {
  SocketPair sp;
  REQUIRE(write_frame(sp.fd[0], "hello", "world"));
  REQUIRE(write_frame(sp.fd[0], ""));
  std::string big(200000, 'z');  // larger than one read() and the socket buffer
  big[123456] = 'A';

  FrameDecoder d;
  FrameRead a = read_frame(sp.fd[1], d, monotonic_ms() + 2000);
  REQUIRE(a.status == ReadStatus::Ok);
  CHECK(a.frame.envelope == "hello");
  CHECK(a.frame.payload == "world");
  FrameRead b = read_frame(sp.fd[1], d, monotonic_ms() + 2000);
  REQUIRE(b.status == ReadStatus::Ok);
  CHECK(b.frame.envelope.empty());
  CHECK(b.frame.payload.empty());
  CHECK(d.buffered() == 0);

  // The other direction, from a child since the frame exceeds the buffer.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(write_frame(sp.fd[1], "{\"big\":1}", big) ? 0 : 1);
  FrameDecoder d0;
  FrameRead back = read_frame(sp.fd[0], d0, monotonic_ms() + 5000);
  REQUIRE(back.status == ReadStatus::Ok);
  CHECK(back.frame.envelope == "{\"big\":1}");
  CHECK(back.frame.payload.size() == big.size());
  CHECK(back.frame.payload == big);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("write_frame refuses parts above their limits, sending nothing, with err 0") {
  SocketPair sp;
  auto r = write_frame(sp.fd[0], "{}", std::string(kMaxPayload + 1, 'x'));
  REQUIRE_FALSE(r);
  CHECK(r.error().err == 0);  // refused before writing: the channel is still in step
  auto e = write_frame(sp.fd[0], std::string(kMaxEnvelope + 1, ' '));
  REQUIRE_FALSE(e);
  CHECK(e.error().err == 0);
  FrameDecoder d;
  CHECK(read_frame(sp.fd[1], d, monotonic_ms() + 30).status == ReadStatus::Timeout);
  CHECK(d.buffered() == 0);
}

TEST_CASE("read_frame: deadline expires with Timeout, keeping partial input") {
  SocketPair sp;
  std::string partial = encode_frame("abcdef").substr(0, 11);
  REQUIRE(write(sp.fd[0], partial.data(), partial.size()) == ssize_t(partial.size()));
  FrameDecoder d;
  uint64_t start = monotonic_ms();
  FrameRead r = read_frame(sp.fd[1], d, start + 50);
  uint64_t took = monotonic_ms() - start;
  CHECK(r.status == ReadStatus::Timeout);
  CHECK(took >= 49);
  CHECK(took < 1000);
  CHECK(d.buffered() == 11);
  // The rest arrives: the same decoder completes the frame.
  std::string rest = encode_frame("abcdef").substr(11);
  REQUIRE(write(sp.fd[0], rest.data(), rest.size()) == ssize_t(rest.size()));
  FrameRead ok = read_frame(sp.fd[1], d, monotonic_ms() + 1000);
  REQUIRE(ok.status == ReadStatus::Ok);
  CHECK(ok.frame.envelope == "abcdef");
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
  CHECK(r.frame.envelope == "ready");
}

TEST_CASE("read_frame: peer closed is Eof, also mid-frame") {
  SocketPair sp;
  sp.close_end(0);
  FrameDecoder d;
  CHECK(read_frame(sp.fd[1], d, monotonic_ms() + 1000).status == ReadStatus::Eof);

  SocketPair sp2;
  std::string partial = encode_frame("abc").substr(0, 9);
  REQUIRE(write(sp2.fd[0], partial.data(), partial.size()) == ssize_t(partial.size()));
  sp2.close_end(0);
  FrameDecoder d2;
  CHECK(read_frame(sp2.fd[1], d2, 0).status == ReadStatus::Eof);
}

TEST_CASE("read_frame: an oversized length on the wire is an Error") {
  SocketPair sp;
  std::string hdr = bytes({0x7f, 0, 0, 0, 0, 0, 0, 0});
  REQUIRE(write(sp.fd[0], hdr.data(), hdr.size()) == 8);
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
    _exit(r.status == ReadStatus::Ok &&
                  write_frame(e.runner_out.get(), r.frame.envelope, r.frame.payload)
              ? 0
              : 1);
  }
  e.runner_in.reset();
  e.runner_out.reset();
  REQUIRE(write_frame(e.host.to_runner.get(), "{}", big, monotonic_ms() + 5000));
  FrameDecoder d;
  FrameRead back = read_frame(e.host.from_runner.get(), d, monotonic_ms() + 5000);
  REQUIRE(back.status == ReadStatus::Ok);
  CHECK(back.frame.payload == big);
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
  auto r = write_frame(c.value().host.to_runner.get(), "{}", std::string(1 << 20, 'x'), t0 + 200);
  REQUIRE_FALSE(r);
  CHECK(r.error().err == ETIMEDOUT);
  CHECK(monotonic_ms() - t0 < 3000);
}

TEST_CASE("write_frame to a pipe whose reader is gone fails with EPIPE") {
  IgnoreSigpipe ignore;
  auto c = make_channel();
  REQUIRE(c);
  c.value().runner_in.reset();
  auto r = write_frame(c.value().host.to_runner.get(), "x", "", monotonic_ms() + 1000);
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
