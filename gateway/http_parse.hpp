// Strict, bounded parsing of what an HTTP/1.1 client sends: the request
// head, a chunked body, a PROXY protocol v1 line, and the client address
// behind trusted proxies. Pure functions over bytes already read, so the
// front (gateway/http_front) can call them on every read and the unit tests
// and fuzzers can drive them without sockets.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nsbox {

struct HeadLimits {
  size_t max_head_bytes = 16 << 10;  // request line + headers + blank line
  size_t max_headers = 64;
  // Parsed into a map before auth and routing: each parameter costs a map
  // node and two strings (~110 bytes), so a head full of "a&b&c..." would
  // hold ~40 times its size and take ~100 times a normal head's parse on
  // the epoll thread. Deploy options and GET events need a handful.
  size_t max_query_params = 256;
};

enum class Parse { NeedMore, Done, Error };

struct HeadResult {
  Parse state = Parse::NeedMore;
  int status = 0;        // on Error: 400, 414, 431, 501, 505
  std::string message;   // on Error
  size_t head_len = 0;   // on Done: bytes of the head, blank line included
  bool chunked = false;  // on Done: Transfer-Encoding: chunked
  uint64_t content_length = 0;
  bool keep_alive = true;  // HTTP/1.1 unless Connection: close; 1.0 only with keep-alive
  bool expect_continue = false;
};

// How far parse_head has looked into a head still arriving, so that each
// read scans only what is new: rescanning from the start made a head sent a
// few bytes at a time cost time quadratic in its size (max_head_kb may be
// 1024), and a few slow clients could keep the epoll thread busy.
struct HeadScan {
  size_t start = 0;     // past the blank lines before the request line
  size_t searched = 0;  // no blank line (the head's end) starts before this
  size_t counted = 0;   // the line breaks starting before this are in lines
  size_t lines = 0;
};

// Parses the head at the start of buf into req (method, target, path
// decoded, params, version, headers). NeedMore while the blank line has not
// arrived and the limits still allow it. Rejects what proxies could read
// differently (obs-fold, space before the colon, both Content-Length and
// Transfer-Encoding, differing Content-Lengths, codings other than chunked).
// With scan, a later call for the same head (buf grown, its start
// unchanged) picks up where this one stopped.
HeadResult parse_head(std::string_view buf, const HeadLimits& limits, httplib::Request* req,
                      HeadScan* scan = nullptr);

// A query string's parameters ("a=1&b=x%3Dy", no '?') into *params: pairs
// split at '&', each at its first '=' only, since a value may hold more
// (base64 padding, a signature). A pair without '=' has an empty value; a
// pair with an empty name is dropped. Names and values are percent-decoded,
// '+' as a space (HTML forms).
void parse_query(std::string_view query, httplib::Params* params);

// The credentials of an "Authorization: Bearer TOKEN" value: the scheme is
// case-insensitive (RFC 9110 11.1) and followed by one or more spaces;
// nullopt for another scheme or no credentials.
std::optional<std::string_view> bearer_credentials(std::string_view authorization);

// Decodes a chunked body as it arrives; trailers are read and dropped.
class ChunkedDecoder {
 public:
  ChunkedDecoder(uint64_t max_body, size_t max_trailer)
      : max_body_(max_body), max_trailer_(max_trailer) {}
  // Consumes what it can of in (*used bytes), appending data to *body.
  // Error statuses: 400 malformed, 413 body larger than max_body.
  Parse feed(std::string_view in, size_t* used, std::string* body, int* status);

 private:
  enum State { Size, Data, DataEnd, Trailer } state_ = Size;
  uint64_t max_body_;
  size_t max_trailer_;
  uint64_t left_ = 0;  // data bytes left in this chunk
  std::string line_;   // a size or trailer line in progress
  size_t trailer_bytes_ = 0;
};

// "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n" at the start of buf. NeedMore
// until the line ends (at most 107 bytes, as the spec says); Done with
// *client set (empty for PROXY UNKNOWN) and *len the line's length.
Parse parse_proxy_v1(std::string_view buf, std::string* client, size_t* len);

// An address or CIDR block ("10.0.0.0/8", "::1", "fd00::/8").
struct Cidr {
  int family = 0;  // AF_INET or AF_INET6
  unsigned char addr[16] = {};
  int bits = 0;
};
bool parse_cidr(const std::string& text, Cidr* out);
bool cidr_contains(const std::vector<Cidr>& set, const std::string& address);

// The canonical text of an address (IPv4-mapped IPv6 as IPv4); empty when
// text is not an address.
std::string canonical_address(const std::string& text);
// The key the per-address cap counts by: the address itself for IPv4, its
// /64 for IPv6 (one host usually holds a whole /64).
std::string address_key(const std::string& address);

// The client behind trusted proxies: walks X-Forwarded-For from the right
// while the hop is trusted; the first untrusted hop is the client. peer is
// returned when peer itself is not trusted, whatever the header says.
std::string forwarded_client(const std::string& peer, const httplib::Request& req,
                             const std::vector<Cidr>& trusted);

}  // namespace nsbox
