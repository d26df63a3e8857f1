// The admin token: from the config, else STATE/token, generated there
// (mode 0600) the first time. A file that is there is never replaced: an
// operator who wrote a token into it expects that token to work, or to be
// told why not. It must be the daemon user's own regular file, closed to
// everyone else.
#pragma once

#include <string>
#include <string_view>

#include "base/result.hpp"

namespace nsbox {

// A token as the daemon and the client read it from a file or a variable:
// its text without the blanks and line breaks around it (a line break left
// inside is refused by token_chars_ok).
std::string token_text(std::string_view text);

// config_token: [server] token ("" when unset, the parser has checked it).
// Errors name the file, what is wrong with it and the fix.
Result<std::string> load_admin_token(const std::string& config_token, const std::string& state_dir);
// As load_admin_token, changing nothing: "" where a start would generate
// the token (serve --check).
Result<std::string> peek_admin_token(const std::string& config_token, const std::string& state_dir);

// A read_token equal to the admin token in force (the config's, or the one
// in STATE/token the parser never saw) would let every reader deploy and
// delete: an error naming config_source, else ok.
Status check_read_token(const std::string& read_token, const std::string& admin_token,
                        const std::string& config_source);

}  // namespace nsbox
