#include "base/listeners.hpp"

#include <arpa/inet.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nsbox {

namespace {

constexpr const char* kListen = "0A";  // TCP_LISTEN in /proc/net/tcp's st column

// IPv4 address v4 (4 bytes, network order) as ::ffff:a.b.c.d, the form
// both tables' addresses and the destination are compared in.
in6_addr v4_mapped(const void* v4) {
  in6_addr a{};
  a.s6_addr[10] = a.s6_addr[11] = 0xff;
  std::memcpy(&a.s6_addr[12], v4, 4);
  return a;
}

// The address part of a /proc/net/tcp{,6} local_address, as an IPv6
// address (IPv4 as v4-mapped): 8 hex digits (IPv4) or 32 (IPv6), each
// 32-bit word in host byte order as the kernel prints it.
bool parse_proc_address(const std::string& hex, in6_addr* out, bool* v4) {
  *out = in6_addr{};
  if (hex.size() == 8) {
    uint32_t word = uint32_t(std::strtoul(hex.c_str(), nullptr, 16));
    *out = v4_mapped(&word);
    *v4 = true;
    return true;
  }
  if (hex.size() != 32) return false;
  for (int w = 0; w < 4; w++) {
    uint32_t word = uint32_t(std::strtoul(hex.substr(size_t(w) * 8, 8).c_str(), nullptr, 16));
    std::memcpy(&out->s6_addr[w * 4], &word, 4);
  }
  *v4 = false;
  return true;
}

}  // namespace

std::vector<uid_t> listener_uids(const std::string& address, int port) {
  in6_addr dest{};
  bool dest_v4 = false;
  if (in_addr a4; inet_pton(AF_INET, address.c_str(), &a4) == 1) {
    dest = v4_mapped(&a4);
    dest_v4 = true;
  } else if (inet_pton(AF_INET6, address.c_str(), &dest) != 1) {
    return {};
  }
  std::vector<uid_t> exact, wildcard;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retrans;
      unsigned long uid = 0;
      if (!(f >> slot >> local >> remote >> state >> queues >> timer >> retrans >> uid)) continue;
      const size_t colon = local.find(':');
      if (state != kListen || colon == std::string::npos) continue;
      if (std::strtol(local.c_str() + colon + 1, nullptr, 16) != port) continue;
      in6_addr bound;
      bool bound_v4 = false;
      if (!parse_proc_address(local.substr(0, colon), &bound, &bound_v4)) continue;
      // The wildcard: 0.0.0.0, ::, or ::ffff:0.0.0.0 (which takes IPv4).
      const bool mapped_any =
          IN6_IS_ADDR_V4MAPPED(&bound) && std::memcmp(&bound.s6_addr[12], "\0\0\0\0", 4) == 0;
      const bool any = mapped_any || IN6_IS_ADDR_UNSPECIFIED(&bound);
      if (mapped_any) bound_v4 = true;
      if (std::memcmp(&bound, &dest, sizeof dest) == 0) exact.push_back(uid_t(uid));
      // A v6 wildcard takes IPv4 too unless it is v6-only, which this
      // table does not say: counted, to err on the side of refusing.
      else if (any && (bound_v4 == dest_v4 || !bound_v4))
        wildcard.push_back(uid_t(uid));
    }
  }
  return exact.empty() ? wildcard : exact;
}

std::string foreign_listener(const std::string& host, int port, uid_t owner) {
  std::vector<std::string> addresses = {host};
  if (host == "localhost" || host.ends_with(".localhost")) addresses = {"127.0.0.1", "::1"};
  for (const std::string& address : addresses)
    for (uid_t uid : listener_uids(address, port))
      if (uid != owner)
        return "the socket listening on " + address + " port " + std::to_string(port) +
               " belongs to uid " + std::to_string(uid) + ", not to uid " + std::to_string(owner);
  return "";
}

}  // namespace nsbox
