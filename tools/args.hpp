// One command-line parser for every subcommand: the options a command
// declares drive both parsing (getopt_long's conventions: --opt VALUE,
// --opt=VALUE, -v, "--" ends the options, a lone "-" is an argument, options
// and arguments in any order; long names whole, never a prefix) and the
// options block of its --help text. -h/--help is always there.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace nsbox {

struct Option {
  std::string name;     // long name, without "--"
  char short_name = 0;  // e.g. 'v'; 0: none
  std::string value;    // placeholder shown in --help ("SIZE"); empty: a flag
  std::string help;     // its line(s) in --help
  // Called with the value (empty for a flag), in command-line order.
  std::function<void(const std::string&)> set;
  bool allow_empty = true;  // false: --opt "" is an error
};

struct ParsedArgs {
  std::vector<std::string> positional;
  bool help = false;
};

// Errors, as "usage" errors whose detail is the message: "unknown option
// --x", "--x needs a value" (also when the next word starts with "--": a
// forgotten value rather than a value), "--x needs a non-empty value". An
// error anywhere wins over --help.
Result<ParsedArgs> parse_options(const std::vector<Option>& options,
                                 const std::vector<std::string>& args);

// The options, one per line, aligned, then -h, --help.
std::string options_help(const std::vector<Option>& options);

}  // namespace nsbox
