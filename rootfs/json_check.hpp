// Validates JSON text without building a document: a function's result
// (up to 6 MiB) is forwarded as the bytes the runner sent, so checking it
// must not cost a copy of it. The rules are the JSON library's (RFC 8259,
// UTF-8 checked, surrogate escapes paired, any value at the top level), but
// for a leading byte order mark (refused) and numbers beyond a double's
// range (accepted: Python writes ints of up to 4300 digits).
#pragma once

#include <string>
#include <string_view>

namespace nsbox {

// First non-whitespace byte, or 0 if none: tells an object from a scalar.
char json_first_byte(std::string_view text);

// False also for nesting deeper than max_depth (<= 1024), which the daemon
// refuses anyway: documents it builds from such text would be serialised
// recursively.
bool json_valid(std::string_view text, int max_depth);

// How deep text's arrays and objects nest, brackets inside strings aside
// (text need not be valid): tells a result too deep to pass on from one
// that is not JSON at all.
int json_depth(std::string_view text);

// Why the JSON library refuses `text` (the rules json::accept applies, so
// also a number beyond a double's range, which it refuses as an overflow),
// or "" when it accepts it: the place (line and column, or byte) and the
// problem, in printable ASCII, without the text itself: the reason may go
// to a log or a terminal.
std::string json_error(std::string_view text);

}  // namespace nsbox
