// The runner channel's frame decoder (sandbox/framing.cpp): the bytes come
// from the sandbox, so from the attacker. Input: one byte choosing how the
// bytes are cut into reads, then the channel's bytes. Checked: however the
// bytes arrive, the same frames come out (and the same error); every frame
// is within the envelope and payload limits and round-trips through encode_frame; nothing read is
// lost or invented.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "sandbox/framing.hpp"

using nsbox::FrameDecoder;

namespace {

#define FUZZ_CHECK(cond) \
  if (!(cond)) __builtin_trap()

struct Decoded {
  std::vector<std::pair<std::string, std::string>> frames;  // envelope, payload
  bool error = false;
  size_t left = 0;  // bytes still buffered at the end
};

// Takes out every whole frame; stops at the first error, as read_frame does.
bool drain(FrameDecoder& dec, Decoded& out) {
  for (;;) {
    auto f = dec.next();
    if (!f) {
      out.error = true;
      return false;
    }
    if (!f.value()) return true;
    FUZZ_CHECK(f.value()->envelope.size() <= nsbox::kMaxEnvelope);
    FUZZ_CHECK(f.value()->payload.size() <= nsbox::kMaxPayload);
    out.frames.emplace_back(std::move(f.value()->envelope), std::move(f.value()->payload));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint32_t cut = data[0];
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  size_t n = size - 1;

  Decoded whole;
  {
    FrameDecoder dec;
    dec.feed(bytes, n);
    drain(dec, whole);
    whole.left = dec.buffered();
  }

  Decoded pieces;
  {
    FrameDecoder dec;
    size_t off = 0;
    bool ok = true;
    while (off < n && ok) {
      cut = cut * 1103515245u + 12345u;  // read sizes 1..64, as a pipe may split them
      size_t len = std::min<size_t>(n - off, 1 + (cut >> 16) % 64);
      dec.feed(bytes + off, len);
      off += len;
      ok = drain(dec, pieces);
    }
    pieces.left = dec.buffered() + (n - off);
  }

  FUZZ_CHECK(whole.frames == pieces.frames);
  FUZZ_CHECK(whole.error == pieces.error);
  size_t used = 0;
  for (const auto& f : whole.frames) {
    used += nsbox::kFrameHeader + f.first.size() + f.second.size();
    FrameDecoder again;
    std::string enc = nsbox::encode_frame(f.first, f.second);
    again.feed(enc.data(), enc.size());
    auto r = again.next();
    FUZZ_CHECK(r && r.value() && r.value()->envelope == f.first && r.value()->payload == f.second &&
               again.buffered() == 0);
  }
  // After an error the decoder stops taking bytes: only then may some be
  // left unaccounted for.
  if (!whole.error) {
    FUZZ_CHECK(used + whole.left == n);
    FUZZ_CHECK(pieces.left == whole.left);
  }
  return 0;
}
