// Validates JSON text without building a document: a function's result
// (up to 6 MiB) is forwarded as the bytes the runner sent, so checking it
// must not cost a copy of it. The rules are the JSON library's (RFC 8259,
// UTF-8 checked, surrogate escapes paired, any value at the top level), but
// for a leading byte order mark (refused) and numbers beyond a double's
// range (accepted: Python writes ints of up to 4300 digits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nsbox {

// First non-whitespace byte, or 0 if none: tells an object from a scalar.
char json_first_byte(std::string_view text);

// False also for nesting deeper than max_depth (at most kMaxValidatorDepth),
// which the daemon refuses anyway: documents it builds from such text would
// be serialised recursively.
inline constexpr int kMaxValidatorDepth = 1024;
bool json_valid(std::string_view text, int max_depth);

// What text's structure costs to read, strings aside (text need not be
// valid): how deep its arrays and objects nest, and an upper bound on its
// values (one, and one more for each '[', '{', ',' and ':'; exact for a
// valid document's scalars, more for its containers). Used to tell a result
// too deep to pass on from one that is not JSON, to refuse envelopes a
// recursive copy would overflow the stack on, and to bound the document a
// client builds. The scan stops early once depth passes max_depth or the
// values pass max_values (then both are just past their bound).
struct JsonShape {
  int depth = 0;
  size_t values = 0;
};
JsonShape json_shape(std::string_view text, int max_depth = INT32_MAX,
                     size_t max_values = SIZE_MAX);

// Why the JSON library refuses `text` (the rules json::accept applies, so
// also a number beyond a double's range, which it refuses as an overflow),
// or "" when it accepts it: the place (line and column, or byte) and the
// problem, in printable ASCII, without the text itself: the reason may go
// to a log or a terminal.
std::string json_error(std::string_view text);

}  // namespace nsbox
