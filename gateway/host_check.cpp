#include "gateway/host_check.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>

namespace nsbox {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

bool name_chars_ok(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':' ||
           c == '_';  // not in DNS host names, but in container service names
  });
}

}  // namespace

// A wildcard (0.0.0.0, ::) is not loopback: clients elsewhere may use any
// name for it, which only the operator knows.
bool listens_on_loopback(const std::string& host) {
  return is_loopback_name(lower(host));
}

std::string host_name_of(std::string_view a) {
  std::string name;
  std::string_view port;
  if (!a.empty() && a.front() == '[') {
    size_t end = a.find(']');
    if (end == std::string_view::npos) return "";
    name = lower(a.substr(1, end - 1));
    std::string_view rest = a.substr(end + 1);
    if (!rest.empty() && rest.front() != ':') return "";
    if (!rest.empty()) port = rest.substr(1);
    in6_addr v6;
    if (inet_pton(AF_INET6, name.c_str(), &v6) != 1) return "";
    char text[INET6_ADDRSTRLEN];  // one spelling per address: fd00:0::1 is fd00::1
    if (!inet_ntop(AF_INET6, &v6, text, sizeof text)) return "";
    name = text;
  } else {
    size_t colon = a.find(':');
    if (colon != std::string_view::npos) {
      port = a.substr(colon + 1);
      if (port.empty()) return "";
    }
    name = lower(a.substr(0, colon));
    if (!name.empty() && name.back() == '.') name.pop_back();
    if (name.find(':') != std::string::npos) return "";  // an IPv6 address needs brackets
  }
  if (port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return "";
  return name_chars_ok(name) ? name : "";
}

bool is_loopback_name(const std::string& name) {
  if (name == "localhost") return true;
  const std::string_view suffix = ".localhost";  // RFC 6761 6.3: never leaves the host
  if (name.size() > suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix.data()) == 0)
    return true;
  in_addr v4;
  if (inet_pton(AF_INET, name.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, name.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

HostPolicy make_host_policy(const std::string& listen_host, const std::string& public_url,
                            const std::vector<std::string>& allowed) {
  HostPolicy p;
  if (!allowed.empty()) {
    for (const std::string& a : allowed) {
      if (a == "*") return HostPolicy{};
      p.names.push_back(host_name_of(a));
    }
    p.any = false;
    p.loopback = true;  // the daemon's own host may always reach it
  } else if (listens_on_loopback(listen_host)) {
    p.any = false;
    p.loopback = true;
  }
  if (!p.any && !public_url.empty())
    if (std::string n = url_host(public_url); !n.empty()) p.names.push_back(n);
  return p;
}

std::string url_host(const std::string& url) {
  std::string_view u = url;
  size_t scheme = u.find("://");
  if (scheme == std::string_view::npos) return "";
  u.remove_prefix(scheme + 3);
  u = u.substr(0, u.find_first_of("/?#"));
  if (size_t at = u.rfind('@'); at != std::string_view::npos) u.remove_prefix(at + 1);
  return host_name_of(u);
}

bool host_allowed(const HostPolicy& p, const std::string* host_header) {
  if (p.any || !host_header) return true;
  const std::string name = host_name_of(*host_header);
  if (name.empty()) return false;
  if (p.loopback && is_loopback_name(name)) return true;
  return std::find(p.names.begin(), p.names.end(), name) != p.names.end();
}

std::string host_refusal(const HostPolicy& p, const std::string& host_header) {
  std::string shown = host_header.substr(0, 100);
  std::string msg = "this daemon does not answer to Host \"" + shown + "\": it answers to ";
  msg += "localhost and loopback addresses";
  for (const std::string& n : p.names) msg += ", " + n;
  msg +=
      " (a web page may point its own name at this address; list the names clients use "
      "in [server] allowed_hosts, or public_url)";
  return msg;
}

bool valid_allowed_host(const std::string& entry) {
  return entry == "*" || !host_name_of(entry).empty();
}

std::string on_this_host(const std::string& spelt) {
  // A link-local address may carry its scope ("fe80::1%eth0"): the address
  // is what an interface holds.
  const std::string name = spelt.substr(0, spelt.find('%'));
  if (is_loopback_name(name)) return name;
  in_addr v4;
  in6_addr v6;
  int family = 0;
  if (inet_aton(name.c_str(), &v4) == 1)
    family = AF_INET;
  else if (inet_pton(AF_INET6, name.c_str(), &v6) == 1)
    family = AF_INET6;
  else
    return "";
  char text[INET6_ADDRSTRLEN];
  inet_ntop(family, family == AF_INET ? static_cast<void*>(&v4) : &v6, text, sizeof text);
  if (family == AF_INET && v4.s_addr == htonl(INADDR_ANY)) return "127.0.0.1";
  if (family == AF_INET && (ntohl(v4.s_addr) >> 24) == 127) return text;
  if (family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&v6)) return "::1";
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) return "";
  bool mine = false;
  for (ifaddrs* i = all; i && !mine; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != family) continue;
    if (family == AF_INET)
      mine = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == v4.s_addr;
    else
      mine = IN6_ARE_ADDR_EQUAL(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, &v6);
  }
  freeifaddrs(all);
  return mine ? text : "";
}

}  // namespace nsbox
