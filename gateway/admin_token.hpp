// The admin token: from the config, else STATE/token, generated there
// (mode 0600) the first time. A file that is there is never replaced: an
// operator who wrote a token into it expects that token to work, or to be
// told why not.
#pragma once

#include <string>

#include "base/result.hpp"

namespace nsbox {

// config_token: [server] token ("" when unset, the parser has checked it).
// Errors name the file, what is wrong with it and the fix.
Result<std::string> load_admin_token(const std::string& config_token, const std::string& state_dir);

}  // namespace nsbox
