// What the HTTP front parses of a client's bytes before anything else
// (gateway/http_parse.cpp): the PROXY v1 line, the request head, a chunked
// body, X-Forwarded-For behind trusted proxies. Input: the bytes a client
// sends; its first byte chooses the size of the reads the head arrives in.
// Checked: the head parsed as it arrives agrees with one parse of the same
// bytes at every length; a parsed head's headers hold no control character
// but the tab and its framing is one of Content-Length or chunked; a
// decoded body stays within its bound whatever the reads; PROXY and
// X-Forwarded-For yield an address or the peer.
#include <httplib.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/http_parse.hpp"

#define FUZZ_CHECK(cond) \
  if (!(cond)) __builtin_trap()

using namespace nsbox;

namespace {

bool clean_field(const std::string& s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

void check_head(std::string_view bytes, size_t step) {
  HeadLimits limits;
  limits.max_head_bytes = 4096;  // reached by the fuzzer's inputs
  limits.max_headers = 16;
  HeadScan scan;
  for (size_t n = std::min(step, bytes.size());; n = std::min(n + step, bytes.size())) {
    httplib::Request a, b;
    const HeadResult inc = parse_head(bytes.substr(0, n), limits, &a, &scan);
    const HeadResult once = parse_head(bytes.substr(0, n), limits, &b);
    FUZZ_CHECK(inc.state == once.state && inc.status == once.status && inc.message == once.message);
    if (once.state == Parse::Error) {
      FUZZ_CHECK(once.status >= 400 && once.status <= 505 && !once.message.empty());
      return;
    }
    if (once.state == Parse::Done) {
      FUZZ_CHECK(inc.head_len == once.head_len && a.path == b.path && a.headers == b.headers);
      FUZZ_CHECK(once.head_len <= n && once.head_len <= limits.max_head_bytes);
      // An absolute-form target of an HTTP/1.0 request without Host adds
      // the target's host as one.
      FUZZ_CHECK(!b.method.empty() && b.headers.size() <= limits.max_headers + 1);
      FUZZ_CHECK(b.params.size() <= limits.max_query_params);
      for (const auto& [k, v] : b.headers) FUZZ_CHECK(!k.empty() && clean_field(v));
      FUZZ_CHECK(!(once.chunked && once.content_length != 0));
      // The body, in reads of step bytes: bounded, and never past the input.
      if (once.chunked) {
        const uint64_t max_body = 1024;
        ChunkedDecoder dec(max_body, 256);
        std::string body;
        std::string pending;
        std::string_view rest = bytes.substr(once.head_len);
        Parse p = Parse::NeedMore;
        for (size_t at = 0; at < rest.size() && p == Parse::NeedMore; at += step) {
          pending.append(rest.substr(at, step));
          size_t used = 0;
          int status = 0;
          p = dec.feed(pending, &used, &body, &status);
          FUZZ_CHECK(used <= pending.size());
          pending.erase(0, used);
          if (p == Parse::Error) FUZZ_CHECK(status == 400 || status == 413 || status == 431);
          FUZZ_CHECK(body.size() <= max_body);
        }
      }
      return;
    }
    if (n == bytes.size()) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = 1 + data[0] % 17;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  // A PROXY line first, as a trusted proxy sends it.
  std::string client;
  size_t len = 0;
  if (parse_proxy_v1(bytes, &client, &len) == Parse::Done) {
    FUZZ_CHECK(len > 0 && len <= 107 && len <= bytes.size());
    FUZZ_CHECK(client.empty() || canonical_address(client) == client);
    bytes.remove_prefix(len);
  }
  check_head(bytes, step);

  // X-Forwarded-For from the head, behind a trusted loopback and 10/8.
  httplib::Request req;
  HeadLimits limits;
  if (parse_head(bytes, limits, &req).state == Parse::Done) {
    std::vector<Cidr> trusted(2);
    FUZZ_CHECK(parse_cidr("127.0.0.1", &trusted[0]) && parse_cidr("10.0.0.0/8", &trusted[1]));
    const std::string who = forwarded_client("127.0.0.1", req, trusted);
    FUZZ_CHECK(who == "127.0.0.1" || canonical_address(who) == who);
    FUZZ_CHECK(forwarded_client("192.0.2.1", req, trusted) == "192.0.2.1");
  }
  return 0;
}
