#include "gateway/http_parse.hpp"

#include <arpa/inet.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace nsbox {

namespace {

// What a 431 says: the limit, and the key that sets it.
std::string head_too_large(const HeadLimits& l) {
  return "request head too large (limit " + std::to_string(l.max_head_bytes >> 10) +
         " KiB, [server] max_head_kb)";
}
std::string too_many_headers(const HeadLimits& l) {
  return "too many request headers (limit " + std::to_string(l.max_headers) +
         ", [server] max_headers)";
}

bool tchar(unsigned char c) {
  // Not NUL: strchr finds the terminator for it.
  return c != 0 && (std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

// A control character field text may not hold: anything below a space but
// the tab, and DEL.
bool control_char(unsigned char c) {
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

bool ieq(std::string_view a, const char* b) {
  return a.size() == std::strlen(b) && strncasecmp(a.data(), b, a.size()) == 0;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Does a comma-separated header value hold token tok?
bool has_token(std::string_view v, const char* tok) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    if (ieq(trim_ows(v.substr(0, comma)), tok)) return true;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return false;
}

HeadResult fail(int status, std::string message) {
  HeadResult r;
  r.state = Parse::Error;
  r.status = status;
  r.message = std::move(message);
  return r;
}

}  // namespace

std::optional<std::string_view> bearer_credentials(std::string_view authorization) {
  constexpr size_t kScheme = 6;  // "Bearer"
  if (authorization.size() <= kScheme || !ieq(authorization.substr(0, kScheme), "bearer") ||
      authorization[kScheme] != ' ')
    return std::nullopt;
  std::string_view rest = authorization.substr(kScheme);
  rest.remove_prefix(std::min(rest.find_first_not_of(' '), rest.size()));
  if (rest.empty()) return std::nullopt;
  return rest;
}

void parse_query(std::string_view query, httplib::Params* params) {
  // Not httplib's parse_query_text: it keeps what follows a value's last
  // '=', so "sig=YWJj==" reached a function as "YWJj".
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    const std::string_view name = pair.substr(0, eq);
    if (name.empty()) continue;
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    params->emplace(httplib::detail::decode_url(std::string(name), true),
                    httplib::detail::decode_url(std::string(value), true));
  }
}

HeadResult parse_head(std::string_view buf, const HeadLimits& limits, httplib::Request* req,
                      HeadScan* scan) {
  HeadScan fresh;
  HeadScan& s = scan ? *scan : fresh;
  // Blank lines before the request line are allowed (RFC 9112 2.2) but
  // bounded like the rest of the head.
  size_t start = s.start;
  while (start + 1 < buf.size() && buf[start] == '\r' && buf[start + 1] == '\n') start += 2;
  s.start = start;
  size_t end = buf.find("\r\n\r\n", std::max(start, s.searched));
  if (end == std::string_view::npos) {
    s.searched = buf.size() >= 3 ? buf.size() - 3 : 0;
    if (buf.size() > limits.max_head_bytes) return fail(431, head_too_large(limits));
    // Count lines as they arrive, so a head of many tiny headers is refused
    // before it reaches the byte limit; a bare LF is refused at once (else
    // a head of them would wait for its deadline: it never ends).
    for (size_t p = buf.find('\n', std::max(start, s.counted)); p != std::string_view::npos;
         p = buf.find('\n', p + 1)) {
      if (p == 0 || buf[p - 1] != '\r')
        return fail(400, "bare LF in the request head (lines end in CRLF)");
      s.lines++;
    }
    s.counted = buf.size();
    if (s.lines > limits.max_headers + 1) return fail(431, too_many_headers(limits));
    return {};
  }
  size_t head_len = end + 4;
  if (head_len > limits.max_head_bytes) return fail(431, head_too_large(limits));
  std::string_view head = buf.substr(start, end + 2 - start);

  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return fail(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  bool absolute = false;
  std::string_view authority;  // of an absolute-form target
  if (method.empty()) return fail(400, "malformed request line");
  for (unsigned char c : method)
    if (!tchar(c)) return fail(400, "malformed method");
  if (version != "HTTP/1.1" && version != "HTTP/1.0")
    return fail(version.rfind("HTTP/", 0) == 0 ? 505 : 400, "HTTP/1.1 or HTTP/1.0 only");
  for (unsigned char c : target)
    if (c <= ' ' || c == 0x7f) return fail(400, "malformed target");
  // The absolute form, which a server must accept (RFC 9112 3.2.2): routed
  // by its path, and its authority stands for Host, which the server must
  // then ignore; a proxy in front routing by the URI must not see another
  // host than the Host check here.
  for (const char* scheme : {"http://", "https://"}) {
    const size_t n = std::strlen(scheme);
    if (target.size() < n || strncasecmp(target.data(), scheme, n) != 0) continue;
    const size_t end = std::min(target.find_first_of("/?", n), target.size());
    if (end == n) return fail(400, "the target's authority is empty");
    authority = target.substr(n, end - n);
    // RFC 9110 4.2.4: userinfo in an http URI is an error to treat as one.
    if (authority.find('@') != std::string_view::npos)
      return fail(400, "the target's authority holds userinfo (user@host)");
    target.remove_prefix(end);
    absolute = true;
    break;
  }
  if (!absolute && (target.empty() || target[0] != '/'))
    return fail(400, "the target must be a path or an absolute http URI");

  std::string t(target);
  if (absolute && (t.empty() || t[0] == '?')) t.insert(0, "/");
  req->method = std::string(method);
  req->target = t;
  req->version = std::string(version);
  size_t q = t.find('?');
  req->path = httplib::detail::decode_url(t.substr(0, q), false);
  req->params.clear();
  if (q != std::string::npos) {
    const std::string_view query = std::string_view(t).substr(q + 1);
    if (size_t(std::count(query.begin(), query.end(), '&')) >= limits.max_query_params)
      return fail(414,
                  "more than " + std::to_string(limits.max_query_params) + " query parameters");
    parse_query(query, &req->params);
  }
  req->headers.clear();

  HeadResult r;
  bool have_length = false, have_te = false, close = version == "HTTP/1.0";
  size_t count = 0, hosts = 0;
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    std::string_view h = head.substr(pos, e - pos);
    pos = e + 2;
    if (++count > limits.max_headers) return fail(431, too_many_headers(limits));
    if (h.empty() || h[0] == ' ' || h[0] == '\t') return fail(400, "folded header line");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(400, "malformed header");
    std::string_view name = h.substr(0, colon);
    for (unsigned char c : name)
      if (!tchar(c)) return fail(400, "malformed header name");
    std::string_view value = trim_ows(h.substr(colon + 1));
    // As in trailers (RFC 9110 5.5): no control but the tab. What a value
    // holds may reach a log or a function's context one day; none of it
    // may carry an escape sequence there.
    for (unsigned char c : value)
      if (control_char(c)) return fail(400, "malformed header value");
    if (ieq(name, "Content-Length")) {
      if (value.empty() || value.size() > 18) return fail(400, "bad Content-Length");
      uint64_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return fail(400, "bad Content-Length");
        n = n * 10 + uint64_t(c - '0');
      }
      if (have_length && n != r.content_length) return fail(400, "conflicting Content-Length");
      have_length = true;
      r.content_length = n;
    } else if (ieq(name, "Transfer-Encoding")) {
      if (have_te) return fail(400, "more than one Transfer-Encoding header");
      if (!ieq(value, "chunked")) return fail(501, "only Transfer-Encoding: chunked is supported");
      have_te = true;
    } else if (ieq(name, "Content-Encoding")) {
      // Every body here is text nsbox reads (a JSON event, Python source):
      // a compressed one would be refused later as invalid, without why.
      if (!ieq(value, "identity"))
        return fail(415,
                    "Content-Encoding is not supported (bodies are read as they are): send "
                    "the body uncompressed");
    } else if (ieq(name, "Connection")) {
      if (has_token(value, "close")) close = true;
      if (version == "HTTP/1.0" && has_token(value, "keep-alive")) close = false;
    } else if (ieq(name, "Host")) {
      hosts++;
    } else if (ieq(name, "Expect")) {
      if (!ieq(value, "100-continue")) return fail(417, "only Expect: 100-continue");
      r.expect_continue = version == "HTTP/1.1";
    }
    req->headers.emplace(std::string(name), std::string(value));
  }
  // RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0; a
  // proxy in front that read another Host than ours would route otherwise.
  if (hosts > 1) return fail(400, "more than one Host header");
  if (hosts == 0 && version == "HTTP/1.1")
    return fail(400, "an HTTP/1.1 request needs a Host header");
  if (absolute) {
    req->headers.erase("Host");
    req->headers.emplace("Host", std::string(authority));
  }
  if (have_te && have_length) return fail(400, "both Content-Length and Transfer-Encoding");
  if (have_te && version == "HTTP/1.0") return fail(400, "chunked body in HTTP/1.0");
  r.state = Parse::Done;
  r.head_len = head_len;
  r.chunked = have_te;
  r.keep_alive = !close;
  return r;
}

Parse ChunkedDecoder::feed(std::string_view in, size_t* used, std::string* body, int* status) {
  size_t i = 0;
  auto error = [&](int s) {
    *used = i;
    *status = s;
    return Parse::Error;
  };
  while (i < in.size()) {
    if (state_ == Data) {
      size_t n = std::min<uint64_t>(left_, in.size() - i);
      body->append(in.data() + i, n);
      i += n;
      left_ -= n;
      if (left_ == 0) state_ = DataEnd;
      continue;
    }
    // Size, DataEnd and Trailer states read a line.
    size_t nl = in.find('\n', i);
    size_t take = (nl == std::string_view::npos ? in.size() : nl + 1) - i;
    size_t limit = state_ == Trailer ? max_trailer_ : 1024;
    if (line_.size() + take > limit + 2) return error(state_ == Trailer ? 431 : 400);
    line_.append(in.data() + i, take);
    i += take;
    if (nl == std::string_view::npos) break;
    if (line_.size() < 2 || line_[line_.size() - 2] != '\r') return error(400);
    line_.resize(line_.size() - 2);
    if (state_ == DataEnd) {
      if (!line_.empty()) return error(400);
      state_ = Size;
    } else if (state_ == Size) {
      // chunk-size [; extensions]
      size_t k = 0;
      uint64_t n = 0;
      while (k < line_.size() && std::isxdigit(static_cast<unsigned char>(line_[k]))) {
        if (n >> 56) return error(413);
        int d = std::isdigit(static_cast<unsigned char>(line_[k]))
                    ? line_[k] - '0'
                    : (std::tolower(static_cast<unsigned char>(line_[k])) - 'a' + 10);
        n = n * 16 + uint64_t(d);
        k++;
      }
      if (k == 0) return error(400);
      while (k < line_.size() && (line_[k] == ' ' || line_[k] == '\t')) k++;
      if (k < line_.size() && line_[k] != ';') return error(400);
      // Extensions are ignored, but only well-formed text is: no control
      // character (a bare CR, which another parser in front may take for
      // the line's end) but the tab.
      for (; k < line_.size(); k++)
        if (control_char(static_cast<unsigned char>(line_[k]))) return error(400);
      if (n > max_body_ - std::min<uint64_t>(max_body_, body->size())) return error(413);
      left_ = n;
      state_ = n == 0 ? Trailer : Data;
    } else {  // Trailer
      trailer_bytes_ += line_.size() + 2;
      if (trailer_bytes_ > max_trailer_) return error(431);
      if (line_.empty()) {
        line_.clear();
        *used = i;
        return Parse::Done;
      }
      // Ignored too, but each must be a field line as a header is (RFC 9112
      // 7.1.2): a token, a colon, text without controls. Not a folded
      // continuation (a leading blank), which RFC 9112 5.2 has refused
      // since obs-fold was deprecated.
      const size_t colon = line_.find(':');
      if (colon == 0 || colon == std::string::npos) return error(400);
      for (size_t c = 0; c < colon; c++)
        if (!tchar(static_cast<unsigned char>(line_[c]))) return error(400);
      for (size_t c = colon + 1; c < line_.size(); c++)
        if (control_char(static_cast<unsigned char>(line_[c]))) return error(400);
    }
    line_.clear();
  }
  *used = i;
  return Parse::NeedMore;
}

Parse parse_proxy_v1(std::string_view buf, std::string* client, size_t* len) {
  constexpr size_t kMax = 107;
  std::string_view sig = "PROXY ";
  if (buf.size() < sig.size())
    return sig.substr(0, buf.size()) == buf ? Parse::NeedMore : Parse::Error;
  if (buf.substr(0, sig.size()) != sig) return Parse::Error;
  size_t e = buf.find("\r\n");
  if (e == std::string_view::npos) return buf.size() >= kMax ? Parse::Error : Parse::NeedMore;
  if (e + 2 > kMax) return Parse::Error;
  std::string line(buf.substr(sig.size(), e - sig.size()));
  *len = e + 2;
  if (line.rfind("UNKNOWN", 0) == 0) {
    client->clear();
    return Parse::Done;
  }
  char proto[8], src[64], dst[64];
  unsigned sport, dport;
  char extra;
  if (std::sscanf(line.c_str(), "%7s %63s %63s %u %u%c", proto, src, dst, &sport, &dport, &extra) !=
          5 ||
      sport > 65535 || dport > 65535)
    return Parse::Error;
  int family = std::strcmp(proto, "TCP4") == 0   ? AF_INET
               : std::strcmp(proto, "TCP6") == 0 ? AF_INET6
                                                 : 0;
  unsigned char a[16];
  if (!family || inet_pton(family, src, a) != 1 || inet_pton(family, dst, a) != 1)
    return Parse::Error;
  *client = canonical_address(src);
  return Parse::Done;
}

bool parse_cidr(const std::string& text, Cidr* out) {
  std::string addr = text;
  int bits = -1;
  size_t slash = text.find('/');
  if (slash != std::string::npos) {
    addr = text.substr(0, slash);
    std::string b = text.substr(slash + 1);
    if (b.empty() || b.size() > 3) return false;
    bits = 0;
    for (char c : b) {
      if (c < '0' || c > '9') return false;
      bits = bits * 10 + (c - '0');
    }
  }
  Cidr c;
  if (inet_pton(AF_INET, addr.c_str(), c.addr) == 1) {
    c.family = AF_INET;
    c.bits = bits < 0 ? 32 : bits;
    if (c.bits > 32) return false;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.addr) == 1) {
    c.family = AF_INET6;
    c.bits = bits < 0 ? 128 : bits;
    if (c.bits > 128) return false;
    // "::ffff:10.0.0.1" is how an IPv4 peer looks on a dual-stack socket,
    // and cidr_contains reads client addresses so, as IPv4: a block written
    // that way is the IPv4 block, or it would never match.
    static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c.bits >= 96 && std::memcmp(c.addr, kMapped, sizeof kMapped) == 0) {
      std::memmove(c.addr, c.addr + 12, 4);
      std::memset(c.addr + 4, 0, 12);
      c.family = AF_INET;
      c.bits -= 96;
    }
  } else {
    return false;
  }
  *out = c;
  return true;
}

std::string canonical_address(const std::string& text) {
  unsigned char a[16];
  char buf[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, text.c_str(), a) == 1)
    return inet_ntop(AF_INET, a, buf, sizeof buf) ? buf : "";
  if (inet_pton(AF_INET6, text.c_str(), a) != 1) return "";
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, kMapped, 12) == 0)
    return inet_ntop(AF_INET, a + 12, buf, sizeof buf) ? buf : "";
  return inet_ntop(AF_INET6, a, buf, sizeof buf) ? buf : "";
}

std::string address_key(const std::string& address) {
  unsigned char a[16];
  if (inet_pton(AF_INET6, address.c_str(), a) != 1) return address;
  std::memset(a + 8, 0, 8);
  char buf[INET6_ADDRSTRLEN];
  return std::string(inet_ntop(AF_INET6, a, buf, sizeof buf) ? buf : address.c_str()) + "/64";
}

bool cidr_contains(const std::vector<Cidr>& set, const std::string& address) {
  if (set.empty()) return false;
  std::string canon = canonical_address(address);
  unsigned char a[16];
  int family = inet_pton(AF_INET, canon.c_str(), a) == 1    ? AF_INET
               : inet_pton(AF_INET6, canon.c_str(), a) == 1 ? AF_INET6
                                                            : 0;
  if (!family) return false;
  for (const Cidr& c : set) {
    if (c.family != family) continue;
    int full = c.bits / 8, rest = c.bits % 8;
    if (std::memcmp(a, c.addr, size_t(full)) != 0) continue;
    if (rest && ((a[full] ^ c.addr[full]) & (0xff << (8 - rest)) & 0xff)) continue;
    return true;
  }
  return false;
}

std::string forwarded_client(const std::string& peer, const httplib::Request& req,
                             const std::vector<Cidr>& trusted) {
  std::string client = peer;
  if (!cidr_contains(trusted, client)) return client;
  // Every X-Forwarded-For line, in order, as one list.
  std::vector<std::string> hops;
  size_t n = req.get_header_value_count("X-Forwarded-For");
  for (size_t i = 0; i < n; i++) {
    std::string line = req.get_header_value("X-Forwarded-For", i);
    std::string_view v = line;
    while (true) {
      size_t comma = v.find(',');
      hops.emplace_back(trim_ows(v.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    std::string hop = canonical_address(*it);
    if (hop.empty()) break;  // garbage from an untrusted hop: stop at the last good one
    client = hop;
    if (!cidr_contains(trusted, client)) break;
  }
  return client;
}

}  // namespace nsbox
