// What the daemon reads out of a request line before anything else: names,
// identifiers and the query string of GET /fn/NAME?k=v. Pure functions, so
// they are unit-tested and fuzzed (tests/fuzz/names_fuzz.cpp) on their own.
// Function names themselves are the registry's rule (valid_function_name in
// gateway/registry.hpp): the store and the CLI share it.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace nsbox {

// JSON strings (the registry's format, the runner's frames) must be valid
// UTF-8; asking the JSON library itself keeps the two rules identical.
bool valid_utf8(const std::string& s);

// The event of GET /fn/NAME?k=v: a JSON object of the decoded query
// parameters, each value a string; for a repeated key the last one wins (as
// Lambda's queryStringParameters). nullopt, with *why naming the parameter,
// when a key or value is not valid UTF-8: dropped, the function would get
// another event than the one sent.
std::optional<std::string> query_event(const std::multimap<std::string, std::string>& params,
                                       std::string* why);

}  // namespace nsbox
