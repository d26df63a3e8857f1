#include "rootfs/runner_reply.hpp"

namespace nsbox {

using json = nlohmann::json;

bool nesting_within(const std::string& text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return true;
}

std::optional<json> parse_envelope(const std::string& text) {
  if (!nesting_within(text, kMaxReplyNesting)) return std::nullopt;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

std::string reply_str(const json& j, const char* key, const std::string& def) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

int64_t reply_int(const json& j, const char* key, int64_t def) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  if (it == j.end()) return def;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_unsigned() && it->get<uint64_t>() <= uint64_t(INT64_MAX))
    return int64_t(it->get<uint64_t>());
  return def;
}

bool reply_bool(const json& j, const char* key, bool def) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : def;
}

}  // namespace nsbox
