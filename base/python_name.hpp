// What a handler may be called: the daemon checks it at deploy and
// `nsbox run` at its --handler, before any sandbox exists, so that a name
// the runner cannot look up is refused where it was typed.
#pragma once

#include <string_view>

namespace nsbox {

// An ASCII Python identifier of 1-128 characters ([A-Za-z_][A-Za-z0-9_]*)
// that is not one of Python's keywords (`class` or `None` would be looked
// up as a name and fail at the first request). Python allows non-ASCII
// identifiers; nsbox does not, so that names print the same everywhere.
bool valid_python_identifier(std::string_view s);

}  // namespace nsbox
