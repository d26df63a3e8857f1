#include "base/listeners.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nsbox {

namespace {

constexpr const char* kListen = "0A";  // TCP_LISTEN in /proc/net/tcp's st column

// The address part of a /proc/net/tcp{,6} local_address: 8 hex digits
// (IPv4) or 32 (IPv6), each 32-bit word in host byte order as the kernel
// prints it.
bool loopback_or_any(const std::string& hex) {
  if (hex.size() == 8) {
    uint32_t a = uint32_t(std::strtoul(hex.c_str(), nullptr, 16));
    in_addr in{a};
    uint32_t host = ntohl(in.s_addr);
    return host == 0 || (host >> 24) == 127;
  }
  if (hex.size() != 32) return false;
  in6_addr in6{};
  for (int w = 0; w < 4; w++) {
    uint32_t word = uint32_t(std::strtoul(hex.substr(size_t(w) * 8, 8).c_str(), nullptr, 16));
    std::memcpy(&in6.s6_addr[w * 4], &word, 4);
  }
  if (IN6_IS_ADDR_UNSPECIFIED(&in6) || IN6_IS_ADDR_LOOPBACK(&in6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&in6) &&
         (in6.s6_addr[12] == 127 ||
          (in6.s6_addr[12] | in6.s6_addr[13] | in6.s6_addr[14] | in6.s6_addr[15]) == 0);
}

}  // namespace

std::vector<uid_t> loopback_listener_uids(int port) {
  std::vector<uid_t> out;
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
      if (loopback_or_any(local.substr(0, colon))) out.push_back(uid_t(uid));
    }
  }
  return out;
}

}  // namespace nsbox
