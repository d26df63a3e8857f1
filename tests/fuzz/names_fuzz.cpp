// What the daemon reads from a request line before anything else
// (gateway/names.cpp, valid_function_name, policies/units.cpp). Input: a
// request target "NAME?QUERY" after /fn/ or /functions/, split and decoded
// as httplib does. Checked: an accepted name is only what the registry may
// use as a directory name; the query event is always a JSON object whose
// keys all came from the query; ?memory= and ?timeout= values parse into
// their documented ranges or are refused.
#include <httplib.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/python_name.hpp"
#include "gateway/http_parse.hpp"
#include "gateway/names.hpp"
#include "gateway/registry.hpp"
#include "policies/units.hpp"

#define FUZZ_CHECK(cond) \
  if (!(cond)) __builtin_trap()

using json = nlohmann::json;

namespace {

void check_name(const std::string& name) {
  if (nsbox::valid_function_name(name)) {
    FUZZ_CHECK(!name.empty() && name.size() <= 63);
    FUZZ_CHECK(name != "." && name != ".." && name[0] != '-' && name[0] != '_');
    for (char c : name)
      FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  }
  if (nsbox::valid_python_identifier(name)) {
    FUZZ_CHECK(!name.empty() && name.size() <= 128 && !(name[0] >= '0' && name[0] <= '9'));
    for (char c : name)
      FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_');
  }
}

void check_units(const std::string& v) {
  if (auto m = nsbox::parse_size(v)) FUZZ_CHECK(m.value() >= 1 && m.value() <= (1ull << 50));
  if (auto t = nsbox::parse_duration_ms(v))
    FUZZ_CHECK(t.value() >= 1 && t.value() <= 24ull * 3600 * 1000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string target(reinterpret_cast<const char*>(data), size);
  auto q = target.find('?');
  std::string path = target.substr(0, q);
  std::string query = q == std::string::npos ? "" : target.substr(q + 1);

  check_name(path);
  check_name(httplib::detail::decode_url(path, false));

  httplib::Params params;
  nsbox::parse_query(query, &params);
  std::multimap<std::string, std::string> m(params.begin(), params.end());
  std::string why;
  std::optional<std::string> event = nsbox::query_event(m, &why);
  // Refused exactly when some key or value is not UTF-8, and then says why.
  bool all_utf8 = true;
  for (const auto& [k, v] : m) all_utf8 = all_utf8 && nsbox::valid_utf8(k) && nsbox::valid_utf8(v);
  FUZZ_CHECK(event.has_value() == all_utf8);
  FUZZ_CHECK(event || why.find("not valid UTF-8") != std::string::npos);
  if (event) {
    FUZZ_CHECK(json::accept(*event));
    json e = json::parse(*event);
    FUZZ_CHECK(e.is_object() && e.size() <= m.size());
    for (const auto& [k, v] : e.items()) {
      FUZZ_CHECK(v.is_string());
      // The last value given for k.
      auto range = m.equal_range(k);
      const std::string* last = nullptr;
      for (auto it = range.first; it != range.second; ++it) last = &it->second;
      FUZZ_CHECK(last && *last == v.get<std::string>());
    }
  }
  for (const auto& [k, v] : m) {
    check_units(v);
    if (k == "handler") check_name(v);
  }
  check_units(target);
  return 0;
}
