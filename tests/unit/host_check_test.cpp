#include "gateway/host_check.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <ifaddrs.h>
#include <netinet/in.h>

using namespace nsbox;

TEST_CASE("host_check: the name a Host header gives") {
  CHECK(host_name_of("localhost") == "localhost");
  CHECK(host_name_of("LocalHost:8080") == "localhost");
  CHECK(host_name_of("example.org.") == "example.org");
  CHECK(host_name_of("[::1]:80") == "::1");
  CHECK(host_name_of("[::1]") == "::1");
  CHECK(host_name_of("127.0.0.1:1") == "127.0.0.1");
  CHECK(host_name_of("web_1:8080") == "web_1");  // a container service name
  // One spelling per IPv6 address.
  CHECK(host_name_of("[FD00:0::1]") == "fd00::1");
  CHECK(host_name_of("[0:0:0:0:0:0:0:1]:80") == "::1");
  for (const char* bad : {"", ":80", "::1", "[::1", "[::1]x", "[nope]", "a b", "a/b", "a@b", "a\tb",
                          "[::1]:80]", "a:b", "a:", "a:123456", "a:1:2"}) {
    CAPTURE(bad);
    CHECK(host_name_of(bad).empty());
  }
  CHECK(host_name_of(std::string(254, 'a')).empty());
}

TEST_CASE("host_check: loopback names") {
  for (const char* yes : {"localhost", "a.localhost", "127.0.0.1", "127.255.0.9", "::1"})
    CHECK_MESSAGE(is_loopback_name(yes), yes);
  for (const char* no : {"localhost.example.org", "xlocalhost", ".localhost", "128.0.0.1",
                         "0.0.0.0", "::", "::ffff:127.0.0.1", "127.0.0.1.example.org", "127.1"})
    CHECK_MESSAGE(!is_loopback_name(no), no);
}

TEST_CASE("host_check: who is answered, by where the daemon listens") {
  const std::string evil = "attacker.example", local = "localhost:8080";
  const std::string pub = "nsbox.example.org", pub_port = "nsbox.example.org:443";
  // On loopback: loopback names and public_url's host.
  HostPolicy p = make_host_policy("127.0.0.1", "https://nsbox.example.org/base", {});
  CHECK(host_allowed(p, &local));
  CHECK(host_allowed(p, &pub));
  CHECK(host_allowed(p, &pub_port));
  CHECK_FALSE(host_allowed(p, &evil));
  CHECK(host_allowed(p, nullptr));  // HTTP/1.0 without Host: not a browser
  CHECK(host_refusal(p, evil).find("nsbox.example.org") != std::string::npos);
  CHECK(host_refusal(p, evil).find("allowed_hosts") != std::string::npos);
  p = make_host_policy("::1", "", {});
  CHECK_FALSE(host_allowed(p, &evil));
  p = make_host_policy("localhost", "", {});
  CHECK_FALSE(host_allowed(p, &evil));
  // On every address: any name, unless the operator lists them.
  p = make_host_policy("0.0.0.0", "", {});
  CHECK(host_allowed(p, &evil));
  p = make_host_policy("0.0.0.0", "", {"nsbox.example.org"});
  CHECK(host_allowed(p, &pub));
  CHECK(host_allowed(p, &local));
  CHECK_FALSE(host_allowed(p, &evil));
  p = make_host_policy("127.0.0.1", "", {"*"});
  CHECK(host_allowed(p, &evil));
  p = make_host_policy("0.0.0.0", "", {"[fd00::1]"});
  const std::string v6 = "[fd00:0:0::1]:8080";
  CHECK(host_allowed(p, &v6));
  CHECK(url_host("https://[FD00::1]:8443/x") == "fd00::1");
  CHECK(url_host("nsbox.example.org").empty());
  // public_url with userinfo and a port: its host, not the user's.
  p = make_host_policy("127.0.0.1", "http://attacker.example@nsbox.example.org:8443", {});
  CHECK(host_allowed(p, &pub));
  CHECK_FALSE(host_allowed(p, &evil));
}

TEST_CASE("host_check: which listen addresses are loopback ones") {
  for (const char* yes : {"127.0.0.1", "::1", "localhost", "LOCALHOST", "127.0.0.53"})
    CHECK_MESSAGE(listens_on_loopback(yes), yes);
  for (const char* no : {"0.0.0.0", "::", "10.0.0.5", "fd00::1", "nsbox.example.org"})
    CHECK_MESSAGE(!listens_on_loopback(no), no);
}

TEST_CASE("host_check: where on this host a connection to a name lands") {
  // Loopback names as they are; the unspecified addresses, which Linux
  // connects to loopback, as loopback.
  CHECK(on_this_host("localhost") == "localhost");
  CHECK(on_this_host("127.0.0.1") == "127.0.0.1");
  CHECK(on_this_host("::1") == "::1");
  CHECK(on_this_host("0.0.0.0") == "127.0.0.1");
  CHECK(on_this_host("::") == "::1");
  // IPv4 as the resolver reads it.
  CHECK(on_this_host("127.1") == "127.0.0.1");
  CHECK(on_this_host("0") == "127.0.0.1");
  CHECK(on_this_host("0x7f000001") == "127.0.0.1");
  // Another host, or a name that would need a lookup.
  CHECK(on_this_host("192.0.2.1").empty());  // TEST-NET-1: nobody's interface
  CHECK(on_this_host("2001:db8::1").empty());
  CHECK(on_this_host("example.com").empty());
  CHECK(on_this_host("").empty());
  // An address of one of this host's own interfaces.
  ifaddrs* all = nullptr;
  REQUIRE(getifaddrs(&all) == 0);
  int checked = 0;
  for (ifaddrs* i = all; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    CAPTURE(text);
    CHECK(on_this_host(text) == text);
    checked++;
  }
  // A link-local IPv6 address of ours, with its scope as a URL gives it:
  // this host all the same (it was "another host", so the token went).
  for (ifaddrs* i = all; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6) continue;
    const auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
    if (!IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) continue;
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof text);
    const std::string scoped = std::string(text) + "%" + std::to_string(a6->sin6_scope_id);
    CAPTURE(scoped);
    CHECK(on_this_host(scoped) == text);
  }
  freeifaddrs(all);
  CHECK(checked > 0);
}
