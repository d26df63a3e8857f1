// Who owns the TCP socket listening on an address and port of this host,
// from /proc/net/tcp and /proc/net/tcp6: what a client checks before it
// sends a secret it found on this host to "the daemon" on a loopback port,
// which any local user may have bound while the daemon was down.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace nsbox {

// The owners (uids) of the listening sockets that a connection to
// address:port (an IPv4 or IPv6 literal) reaches, in this network
// namespace: those bound to exactly that address if there are any (the
// kernel prefers them), else those bound to the wildcard (0.0.0.0 or ::).
// Empty when there are none, or the address is not a literal.
std::vector<uid_t> listener_uids(const std::string& address, int port);

}  // namespace nsbox
