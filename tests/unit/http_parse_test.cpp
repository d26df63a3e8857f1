#include "gateway/http_parse.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "gateway/config.hpp"

using namespace nsbox;

namespace {
HeadResult head(const std::string& text, httplib::Request* req = nullptr) {
  httplib::Request r;
  return parse_head(text, HeadLimits{}, req ? req : &r);
}
}  // namespace

TEST_CASE("http head: a request, its path, query and headers") {
  httplib::Request req;
  auto r = head("GET /fn/a%20b?x=1&y=two HTTP/1.1\r\nHost: h\r\nX-A:  v \r\n\r\nrest", &req);
  REQUIRE(r.state == Parse::Done);
  CHECK(r.head_len ==
        std::string("GET /fn/a%20b?x=1&y=two HTTP/1.1\r\nHost: h\r\nX-A:  v \r\n\r\n").size());
  CHECK(req.method == "GET");
  CHECK(req.path == "/fn/a b");
  CHECK(req.get_param_value("y") == "two");
  CHECK(req.get_header_value("x-a") == "v");
  CHECK(r.keep_alive);
  CHECK(head("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive == false);
  CHECK(head("GET / HTTP/1.0\r\n\r\n").keep_alive == false);
  CHECK(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive == true);
  CHECK(head("GET / HTTP/1.1\r\nHost: h\r\n").state == Parse::NeedMore);
}

TEST_CASE("http query: each pair split at its first '=', decoded") {
  auto params = [](std::string_view q) {
    httplib::Params p;
    parse_query(q, &p);
    return std::vector<std::pair<std::string, std::string>>(p.begin(), p.end());
  };
  using V = std::vector<std::pair<std::string, std::string>>;
  CHECK(params("sig=YWJj==") == V{{"sig", "YWJj=="}});
  CHECK(params("x=a=b&y=%3D%3D") == V{{"x", "a=b"}, {"y", "=="}});
  CHECK(params("z=1;w=2") == V{{"z", "1;w=2"}});
  CHECK(params("a+b=c+d%2B") == V{{"a b", "c d+"}});
  CHECK(params("flag&=lost&&k=") == V{{"flag", ""}, {"k", ""}});
  CHECK(params("") == V{});
  CHECK(params("k=1&k=2") == V{{"k", "1"}, {"k", "2"}});
  // Through the head parser, as the gateway sees it.
  httplib::Request req;
  REQUIRE(head("GET /fn/f?sig=YWJj==&x=a=b HTTP/1.1\r\nHost: h\r\n\r\n", &req).state ==
          Parse::Done);
  CHECK(req.get_param_value("sig") == "YWJj==");
  CHECK(req.get_param_value("x") == "a=b");
}

TEST_CASE("http auth: Bearer credentials, the scheme in any case (RFC 9110 11.1)") {
  CHECK(bearer_credentials("Bearer abc") == "abc");
  CHECK(bearer_credentials("bearer abc") == "abc");
  CHECK(bearer_credentials("BEARER   abc") == "abc");
  CHECK(bearer_credentials("Bearer a b") == "a b");  // compared whole, so refused later
  CHECK(!bearer_credentials("Bearer "));
  CHECK(!bearer_credentials("Bearer"));
  CHECK(!bearer_credentials("Bearerabc"));
  CHECK(!bearer_credentials("Basic YWJj"));
  CHECK(!bearer_credentials(""));
}

TEST_CASE("http head: limits and ambiguous framing") {
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 65; i++) many += "X: y\r\n";
  CHECK(head(many + "\r\n").status == 431);
  CHECK(head(many).status == 431);  // refused before the blank line arrives
  CHECK(head("GET / HTTP/1.1\r\nX: " + std::string(17000, 'a')).status == 431);
  // Query parameters are parsed into a map before auth: at most 256.
  auto query = [](int n) {
    std::string q;
    for (int i = 0; i < n; i++) q += (i ? "&k" : "k") + std::to_string(i);
    return "GET /fn/f?" + q + " HTTP/1.1\r\nHost: h\r\n\r\n";
  };
  httplib::Request many_params;
  CHECK(head(query(256), &many_params).state == Parse::Done);
  CHECK(many_params.params.size() == 256);
  const HeadResult over = head(query(257));
  CHECK(over.status == 414);
  CHECK(over.message == "more than 256 query parameters");
  CHECK(
      head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
          .message == "both Content-Length and Transfer-Encoding");
  CHECK(
      head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").status ==
      400);
  CHECK(head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n").status == 400);
  CHECK(head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").status == 501);
  // A compressed body is named as that, not later as invalid JSON or UTF-8.
  for (const char* coding : {"gzip", "br", "deflate, gzip", "GZIP"}) {
    auto r = head(std::string("PUT /functions/f HTTP/1.1\r\nHost: h\r\nContent-Encoding: ") +
                  coding + "\r\nContent-Length: 3\r\n\r\n");
    CHECK(r.status == 415);
    CHECK(r.message.find("send the body uncompressed") != std::string::npos);
  }
  CHECK(head("POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: Identity\r\n\r\n").state ==
        Parse::Done);
  HeadResult twice = head(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n");
  CHECK(twice.status == 400);
  CHECK(twice.message == "more than one Transfer-Encoding header");
  CHECK(head("GET / HTTP/1.1\r\nX : y\r\n\r\n").status == 400);
  CHECK(head("GET / HTTP/1.1\r\nX: y\r\n folded\r\n\r\n").status == 400);
  CHECK(head("GET / HTTP/2.0\r\n\r\n").status == 505);
  auto r = head(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n");
  CHECK(r.chunked);
  CHECK(r.expect_continue);
}

TEST_CASE("http head: Host, exactly once in HTTP/1.1 (RFC 9112 3.2)") {
  CHECK(head("GET / HTTP/1.1\r\nHost: h\r\n\r\n").state == Parse::Done);
  CHECK(head("GET / HTTP/1.1\r\nhost:\r\n\r\n").state == Parse::Done);  // empty is allowed
  HeadResult none = head("GET / HTTP/1.1\r\nX: y\r\n\r\n");
  CHECK(none.status == 400);
  CHECK(none.message == "an HTTP/1.1 request needs a Host header");
  HeadResult two = head("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\nHOST: b\r\n\r\n");
  CHECK(two.status == 400);
  CHECK(two.message == "more than one Host header");
  CHECK(head("GET / HTTP/1.0\r\n\r\n").state == Parse::Done);
  CHECK(head("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n").status == 400);
}

TEST_CASE("http head: an absolute-form target is routed by its path (RFC 9112 3.2.2)") {
  httplib::Request req;
  REQUIRE(head("POST http://127.0.0.1:8080/fn/a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", &req).state ==
          Parse::Done);
  CHECK(req.path == "/fn/a b");
  CHECK(req.target == "/fn/a%20b?x=1");
  CHECK(req.get_param_value("x") == "1");
  REQUIRE(head("GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n", &req).state == Parse::Done);
  CHECK(req.path == "/");
  REQUIRE(head("GET http://h?q=2 HTTP/1.1\r\nHost: h\r\n\r\n", &req).state == Parse::Done);
  CHECK(req.path == "/");
  CHECK(req.get_param_value("q") == "2");
  // Its authority stands for Host (the one sent is still required, once).
  REQUIRE(head("GET http://evil.example:80/fn/a HTTP/1.1\r\nHost: localhost\r\n\r\n", &req).state ==
          Parse::Done);
  CHECK(req.get_header_value("Host") == "evil.example:80");
  CHECK(req.get_header_value_count("Host") == 1);
  CHECK(head("GET http://u@h/fn/a HTTP/1.1\r\nHost: h\r\n\r\n").status == 400);
  CHECK(head("GET http://h/fn/a HTTP/1.1\r\n\r\n").status == 400);
  CHECK(head("GET http:///fn/a HTTP/1.1\r\nHost: h\r\n\r\n").status == 400);
  CHECK(head("GET ftp://h/fn/a HTTP/1.1\r\nHost: h\r\n\r\n").status == 400);
  CHECK(head("GET fn/a HTTP/1.1\r\nHost: h\r\n\r\n").status == 400);
  CHECK(head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").status == 400);
}

TEST_CASE("http head: bare LFs are refused before the head ends, not left to time out") {
  HeadResult r = head("GET /healthz HTTP/1.1\nHost: x\n\n");
  CHECK(r.state == Parse::Error);
  CHECK(r.status == 400);
  CHECK(r.message.find("bare LF") != std::string::npos);
  CHECK(head("GET / HTTP/1.1\r\nHost: x\r\n").state == Parse::NeedMore);
}

TEST_CASE("http head: scanned as it arrives, with the same result as all at once") {
  // Each call with a HeadScan looks only at what is new; the verdict at
  // every length must be the one a fresh parse of those bytes gives.
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 70; i++) many += "X: y\r\n";  // more than max_headers
  many += "\r\n";
  const std::string heads[] = {
      "GET /fn/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
      "\r\n\r\nPOST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
      many,
      std::string(20000, '\r'),
      "GET / HTTP/1.1\r\n" + std::string(17000, 'a') + "\r\n\r\n",
      "GET / HTTP/1.1\r\r\n\n\r\n\r\n",
      "GET /healthz HTTP/1.1\nHost: x\n\n",
  };
  for (const std::string& text : heads) {
    for (size_t step : {size_t(1), size_t(2), size_t(3), size_t(7), size_t(1000)}) {
      CAPTURE(text.substr(0, 40));
      CAPTURE(step);
      HeadScan scan;
      for (size_t n = std::min(step, text.size());; n = std::min(n + step, text.size())) {
        httplib::Request a, b;
        HeadResult inc = parse_head(std::string_view(text).substr(0, n), HeadLimits{}, &a, &scan);
        HeadResult once = parse_head(std::string_view(text).substr(0, n), HeadLimits{}, &b);
        REQUIRE(inc.state == once.state);
        REQUIRE(inc.status == once.status);
        REQUIRE(inc.message == once.message);
        if (inc.state == Parse::Done) {
          CHECK(inc.head_len == once.head_len);
          CHECK(a.path == b.path);
          CHECK(a.headers == b.headers);
        }
        if (inc.state != Parse::NeedMore || n == text.size()) break;
      }
    }
  }
}

TEST_CASE("chunked bodies: decoded across any split, bounded") {
  const std::string wire = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (size_t split = 0; split <= wire.size(); split++) {
    ChunkedDecoder d(100, 1024);
    std::string body;
    size_t used = 0;
    int status = 0;
    Parse p = d.feed(std::string_view(wire).substr(0, split), &used, &body, &status);
    size_t total = used;
    if (p == Parse::NeedMore) {
      p = d.feed(std::string_view(wire).substr(split), &used, &body, &status);
      total += used;
    }
    REQUIRE(p == Parse::Done);
    CHECK(body == "hello world");
    CHECK(wire.substr(total) == "NEXT");
  }
  ChunkedDecoder small(8, 1024);
  std::string body;
  size_t used;
  int status = 0;
  CHECK(small.feed("5\r\nhello\r\n5\r\n", &used, &body, &status) == Parse::Error);
  CHECK(status == 413);
  ChunkedDecoder huge(1 << 20, 1024);
  CHECK(huge.feed("ffffffffffffffffffff\r\n", &used, &body, &status) == Parse::Error);
  CHECK(status == 413);
  ChunkedDecoder bad(100, 1024);
  CHECK(bad.feed("zz\r\n", &used, &body, &status) == Parse::Error);
  CHECK(status == 400);
}

TEST_CASE("chunked bodies: extensions and trailers are well-formed text, or 400") {
  // A bare CR in an extension (a parser in front might end the line
  // there), a trailer that is not a field line, a folded one, controls.
  for (const std::string& wire : std::vector<std::string>{
           "2;ext=\"a\rb\"\r\n{}\r\n0\r\n\r\n", "2;e\x01\r\n{}\r\n0\r\n\r\n",
           "2\r\n{}\r\n0\r\nno colon here\r\n\r\n", "2\r\n{}\r\n0\r\nX: a\r\n folded\r\n\r\n",
           "2\r\n{}\r\n0\r\n: empty name\r\n\r\n", "2\r\n{}\r\n0\r\nX: a\x7f\r\n\r\n",
           std::string("2\r\n{}\r\n0\r\nX\0Y: a\r\n\r\n", 20)}) {
    CAPTURE(wire);
    ChunkedDecoder d(100, 1024);
    std::string body;
    size_t used = 0;
    int status = 0;
    CHECK(d.feed(wire, &used, &body, &status) == Parse::Error);
    CHECK(status == 400);
  }
  ChunkedDecoder ok(100, 1024);
  std::string body;
  size_t used = 0;
  int status = 0;
  CHECK(ok.feed("2;a=b;c=\"d e\"\r\n{}\r\n0\r\nX-T: v\tw\r\n\r\n", &used, &body, &status) ==
        Parse::Done);
  CHECK(body == "{}");
}

TEST_CASE("http head: a NUL in a header name is refused") {
  CHECK(head(std::string("GET / HTTP/1.1\r\nHost: h\r\nX\0A: v\r\n\r\n", 35)).state ==
        Parse::Error);
}

// RFC 9110 5.5: a field value holds no control but the tab, as trailers
// are checked; obs-text (bytes from 0x80) passes.
TEST_CASE("http head: a control character in a header value is refused; tab and obs-text pass") {
  for (const char* bad : {"\x1b[2J", "a\x0b", "\x7f", "a\x01b"}) {
    CAPTURE(bad);
    auto r = head(std::string("GET / HTTP/1.1\r\nHost: h\r\nX: ") + bad + "\r\n\r\n");
    CHECK(r.state == Parse::Error);
    CHECK(r.status == 400);
  }
  httplib::Request req;
  REQUIRE(head("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb \xc3\xa9\r\n\r\n", &req).state == Parse::Done);
  CHECK(req.get_header_value("X") == "a\tb \xc3\xa9");
}

TEST_CASE("PROXY v1, trusted proxies and X-Forwarded-For") {
  std::string client;
  size_t len = 0;
  CHECK(parse_proxy_v1("PROXY TCP4 203.0.113.7 10.0.0.1 4000 80\r\nGET", &client, &len) ==
        Parse::Done);
  CHECK(client == "203.0.113.7");
  CHECK(len == 41);
  CHECK(parse_proxy_v1("PROXY TCP6 2001:db8::1 ::1 4000 80\r\n", &client, &len) == Parse::Done);
  CHECK(client == "2001:db8::1");
  CHECK(parse_proxy_v1("PROXY TCP4 203.0.113.7", &client, &len) == Parse::NeedMore);
  CHECK(parse_proxy_v1("PROXY TCP4 nope 10.0.0.1 1 2\r\n", &client, &len) == Parse::Error);
  CHECK(parse_proxy_v1("PROXY " + std::string(120, '1'), &client, &len) == Parse::Error);

  std::vector<Cidr> trusted(2);
  REQUIRE(parse_cidr("10.0.0.0/8", &trusted[0]));
  REQUIRE(parse_cidr("::1", &trusted[1]));
  Cidr junk;
  CHECK_FALSE(parse_cidr("10.0.0.0/33", &junk));
  CHECK_FALSE(parse_cidr("example.org", &junk));
  CHECK(cidr_contains(trusted, "10.9.8.7"));
  CHECK(cidr_contains(trusted, "::ffff:10.9.8.7"));
  CHECK_FALSE(cidr_contains(trusted, "11.0.0.1"));
  // A block written as IPv4-mapped IPv6 is that IPv4 block: client
  // addresses are compared as IPv4, so it matched nothing.
  std::vector<Cidr> mapped(2);
  REQUIRE(parse_cidr("::ffff:10.0.0.1", &mapped[0]));
  REQUIRE(parse_cidr("::ffff:192.168.0.0/112", &mapped[1]));
  CHECK(mapped[0].family == AF_INET);
  CHECK(mapped[1].bits == 16);
  CHECK(cidr_contains(mapped, "10.0.0.1"));
  CHECK(cidr_contains(mapped, "::ffff:10.0.0.1"));
  CHECK(cidr_contains(mapped, "192.168.44.1"));
  CHECK_FALSE(cidr_contains(mapped, "10.0.0.2"));
  CHECK_FALSE(cidr_contains(mapped, "192.169.0.1"));
  httplib::Request req;
  req.headers.emplace("X-Forwarded-For", "6.6.6.6, 198.51.100.9, 10.1.1.1");
  CHECK(forwarded_client("10.0.0.2", req, trusted) == "198.51.100.9");
  CHECK(forwarded_client("192.0.2.1", req, trusted) == "192.0.2.1");  // untrusted peer
  CHECK(address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64");
}

TEST_CASE("config: the front's [server] keys, with file:line:col errors") {
  auto c = parse_serve_config(
      "[server]\nread_token = \"0123456789abcdef0\"\ntrusted_proxies = [\"127.0.0.1\", "
      "\"10.0.0.0/8\"]\nmax_sending_per_address = 4\nrequest_timeout_ms = 5000\n",
      "t.toml");
  REQUIRE(c);
  CHECK(c.value().trusted_proxies.size() == 2);
  CHECK(c.value().max_sending_per_address == 4);
  auto bad =
      parse_serve_config("[server]\ntrusted_proxies = [\"127.0.0.1\", \"nope\"]\n", "t.toml");
  REQUIRE(!bad);
  CHECK(bad.error().detail.find("t.toml:2:") == 0);
  auto short_token = parse_serve_config("[server]\nread_token = \"short\"\n", "t.toml");
  REQUIRE(!short_token);
  CHECK(short_token.error().detail.find("t.toml:2:") == 0);
}
