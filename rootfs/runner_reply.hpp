// Reading the runner's replies (docs/runner-protocol.md), for `nsbox run`
// and the daemon alike. A reply comes from a process that runs code nobody
// vetted, so nothing here throws: a field of the wrong type reads as its
// default, and an envelope that is not a JSON object is no envelope.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace nsbox {

// Nesting allowed in an envelope or a forwarded result: nlohmann parses
// iteratively but copies and serialises recursively, so a reply nested 100k
// deep would overflow a thread's stack.
constexpr int kMaxReplyNesting = 256;

// The envelope as a JSON object; nullopt when it is not valid JSON, not an
// object, or nested deeper than kMaxReplyNesting.
std::optional<nlohmann::json> parse_envelope(const std::string& text);

std::string reply_str(const nlohmann::json& j, const char* key, const std::string& def = "");
int64_t reply_int(const nlohmann::json& j, const char* key, int64_t def);
bool reply_bool(const nlohmann::json& j, const char* key, bool def);

}  // namespace nsbox
