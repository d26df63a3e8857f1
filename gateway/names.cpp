#include "gateway/names.hpp"

#include <cctype>
#include <nlohmann/json.hpp>

namespace nsbox {

using json = nlohmann::json;

bool valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

std::optional<std::string> query_event(const std::multimap<std::string, std::string>& params,
                                       std::string* why) {
  json q = json::object();
  for (const auto& [k, v] : params) {
    if (!valid_utf8(k)) {
      *why = "a query parameter's name is not valid UTF-8 (percent-encode UTF-8 text)";
      return std::nullopt;
    }
    if (!valid_utf8(v)) {
      *why = "query parameter \"" + k + "\" is not valid UTF-8 (percent-encode UTF-8 text)";
      return std::nullopt;
    }
    q[k] = v;
  }
  return q.dump();
}

}  // namespace nsbox
