#include "rootfs/runner_reply.hpp"

#include "rootfs/json_check.hpp"

namespace nsbox {

using json = nlohmann::json;

std::optional<json> parse_envelope(const std::string& text) {
  if (json_shape(text, kMaxReplyNesting).depth > kMaxReplyNesting) return std::nullopt;
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
