// Who owns the TCP sockets listening on a port of this host, from
// /proc/net/tcp and /proc/net/tcp6: what a client checks before it sends a
// secret it found on this host to "the daemon" on a loopback port, which
// any local user may have bound while the daemon was down.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace nsbox {

// The owners (uids) of the listening sockets a connection to a loopback
// address on port could reach: those bound to a loopback address or to
// the wildcard, in this network namespace. Empty when there are none (or
// the tables cannot be read).
std::vector<uid_t> loopback_listener_uids(int port);

}  // namespace nsbox
