// Policy files (TOML) parsed once into the plain nsbox::Policy struct. Every
// error names file:line:col and the key; see policies/README.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

Result<Policy> parse_policy(std::string_view text, const std::string& source);

// NAME of a built-in policy (embedded in the binary), or a path to a file
// (anything with a '/' or ending in ".toml").
Result<Policy> load_policy(const std::string& name_or_path);
// Whether load_policy takes name_or_path as a file's path.
bool policy_is_path(const std::string& name_or_path);
// A policy file opened already, named path in errors and as its name.
Result<Policy> load_policy_fd(int fd, const std::string& path);

// What a valid policy does that its writer may not have meant, one line
// each (empty: nothing): shown before a run, not refused.
std::vector<std::string> policy_warnings(const Policy& p);

std::vector<std::string> builtin_policy_names();

}  // namespace nsbox
