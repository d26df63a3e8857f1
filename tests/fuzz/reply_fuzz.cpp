// The runner's reply to an invoke, as the daemon handles it: the reply is
// written by the function's sandbox, so by the attacker. The target drives
// the real nsbox::invoke() over a real channel (two pipes), with the fuzz
// input as the reply frame (envelope and payload), so it follows the reply protocol
// whatever it becomes. To retarget it at another envelope (e.g. status and
// headers sent outside the body), change only deliver_reply() (what the
// fake runner writes) and check_outcome() (what must hold afterwards).
//
// Checked: no crash, no exception escapes, the deadline is never reached
// (the reply is all there), a reply that is not this request's answer never
// counts as a success, and what the daemon will send back serialises.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "gateway/invoker.hpp"
#include "sandbox/framing.hpp"

#define FUZZ_CHECK(cond) \
  if (!(cond)) __builtin_trap()

using json = nlohmann::json;
using nsbox::Outcome;

namespace {

constexpr char kRequestId[] = "0f0f0f0f-000001";

// The input is split into the reply's two parts (docs/runner-protocol.md):
// its first byte says how many of the following bytes are the JSON envelope
// (scaled to the input), the rest is the raw payload.
struct Reply {
  std::string envelope, payload;
};
Reply split(const std::string& in) {
  if (in.empty()) return {};
  size_t n = in.size() - 1;
  size_t env = n * static_cast<unsigned char>(in[0]) / 255;
  return {in.substr(1, env), in.substr(1 + env)};
}

// What the runner side writes after reading the request: here one frame.
bool deliver_reply(int runner_out, const Reply& r) {
  std::string frame = nsbox::encode_frame(r.envelope, r.payload);
  return write(runner_out, frame.data(), frame.size()) == ssize_t(frame.size());
}

void check_outcome(const Outcome& o, const Reply& r) {
  FUZZ_CHECK(o.kind != Outcome::Timeout && o.kind != Outcome::LoadFailed &&
             o.kind != Outcome::SyntaxError);
  if (o.kind == Outcome::Ok) {
    // Only a well-formed answer to this very request...
    json e = json::parse(r.envelope, nullptr, false);
    FUZZ_CHECK(e.is_object() && e.value("type", "") == "result" && e.value("id", "") == kRequestId);
    // ... and a plain result that is valid JSON, since it goes out as
    // application/json without being parsed.
    if (!o.proxy) FUZZ_CHECK(json::accept(o.payload));
  }
  // As the HTTP layer does it: never throws, whatever the function sent.
  (void)o.envelope.dump(-1, ' ', false, json::error_handler_t::replace);
  (void)o.result.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool once = [] {
    signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)once;
  Reply reply = split(std::string(reinterpret_cast<const char*>(data), size));
  if (size > (900u << 10)) return 0;  // must fit in the pipe below

  auto ends = nsbox::make_channel();
  FUZZ_CHECK(ends);
  nsbox::ChannelEnds& e = ends.value();
  // Room for the whole reply: the fake runner writes it before invoke reads.
  fcntl(e.runner_out.get(), F_SETPIPE_SZ, 1 << 20);
  nsbox::Worker w;
  w.id = 1;
  w.channel = std::move(e.host);
  FUZZ_CHECK(deliver_reply(e.runner_out.get(), reply));

  nsbox::FunctionMeta meta;
  meta.name = "fuzz";
  meta.version = 1;
  Outcome o = nsbox::invoke(w, meta, R"({"k":"v"})", kRequestId, 128,
                            nsbox::Clock::now() + std::chrono::seconds(5));
  check_outcome(o, reply);
  return 0;
}
