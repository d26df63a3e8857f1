// Reason phrases of HTTP status codes: one table for the front's status
// lines (gateway/http_front.cpp) and the CLI's error messages
// (tools/client_cmd.cpp). Not cpp-httplib's: Debian 12's 0.11 is the split
// build, whose header declares no status_message (it stays internal to the
// shared library), and later versions call every unknown code "Internal
// Server Error".
#pragma once

#include <string_view>

namespace nsbox {

// The phrase RFC 9110 §15 gives status (and RFC 6585 and 7725 for 428,
// 429, 431, 451 and 511); empty for a code not registered there, for which
// each caller picks its own stand-in.
std::string_view http_reason(int status);

}  // namespace nsbox
