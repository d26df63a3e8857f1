// Which Host a request may name. A daemon that listens on loopback is
// reachable from every web page the host's user opens: a page whose own name
// the attacker re-points at 127.0.0.1 (DNS rebinding) talks to the daemon as
// a same-origin site, and reads what /fn/ answers. The browser still sends
// the page's name as Host, so a daemon on loopback answers only to loopback
// names, public_url's host and the names the operator lists.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nsbox {

struct HostPolicy {
  bool any = true;                 // no check: nothing listed and not on loopback
  bool loopback = false;           // localhost, *.localhost, 127.0.0.0/8, ::1
  std::vector<std::string> names;  // lowercase, without port or brackets
};

// allowed: [server] allowed_hosts ("*" alone = any). Empty: loopback names
// and public_url's host when listen_host is a loopback address, else any.
HostPolicy make_host_policy(const std::string& listen_host, const std::string& public_url,
                            const std::vector<std::string>& allowed);

// The name a Host header (or a URL's authority) gives: lowercase, without
// port, brackets or a trailing dot. "" when it is malformed.
std::string host_name_of(std::string_view authority);

bool is_loopback_name(const std::string& name);

// Whether a listen address ([server] listen's host, without brackets) is a
// loopback one.
bool listens_on_loopback(const std::string& listen_host);

// Where on this host a connection to name (as host_name_of spells it) lands,
// as an address literal listeners.hpp's foreign_listener takes: a loopback
// name as it is; the unspecified addresses, which Linux connects to
// loopback; an address of one of this host's interfaces. "" for another
// host, and for a name that is not a literal (resolving it here could wait
// on DNS). IPv4 as the resolver reads it: 127.1, 0 and 0x7f000001 too.
std::string on_this_host(const std::string& name);

// The host of SCHEME://[USER@]HOST[:PORT][/...], as host_name_of gives it;
// "" when there is none.
std::string url_host(const std::string& url);

// A request without Host (HTTP/1.0) passes: browsers always send one.
bool host_allowed(const HostPolicy& p, const std::string* host_header);

// "what, where, how to fix" for a refused Host.
std::string host_refusal(const HostPolicy& p, const std::string& host_header);

// A valid allowed_hosts entry: a DNS name, an address, or "*".
bool valid_allowed_host(const std::string& entry);

}  // namespace nsbox
