// What the gateway and nsbox-fdkeeper say to each other over their
// SOCK_SEQPACKET socketpair (gateway/fd_parking.hpp says why there is a
// keeper). One fixed-size message per packet, fds beside it (SCM_RIGHTS).
#pragma once

#include <cstdint>

namespace nsbox {

// The keeper's end of the socketpair, at exec.
constexpr int kKeeperSockFd = 3;
// The fds one sandbox parks: its channel's two pipes, its log and its
// freeze switch.
constexpr int kKeeperMaxFds = 4;

struct KeeperMsg {
  enum Op : uint32_t {
    kHello = 1,  // keeper -> gateway, once: how many fds it may hold (value)
    kPark = 2,   // gateway -> keeper, with fds: hold them as tag
    kTake = 3,   // gateway -> keeper: give tag's fds back (a kTake reply)
    kDrop = 4,   // gateway -> keeper: close tag's fds
  };
  uint32_t op = 0;
  uint32_t nfds = 0;  // kPark: how many come; a kTake reply: how many come back
  uint64_t tag = 0;
  uint64_t value = 0;
};

}  // namespace nsbox
