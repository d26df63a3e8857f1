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

// Why a connection to host:port might reach a listening socket that is not
// owner's: which address, and whose socket it is. Empty when every one it
// might reach is owner's, or there is none. host is a literal, or
// localhost (and *.localhost), which may be either 127.0.0.1 or ::1; as
// host_name_of spells it (lower case, IPv6 without brackets).
std::string foreign_listener(const std::string& host, int port, uid_t owner);

}  // namespace nsbox
