#include "policies/units.hpp"

#include <cctype>
#include <cmath>

namespace nsbox {

namespace {

// Splits "1.5s" into 1.5 and "s"; rejects empty, negative and junk, and
// (with *too_long) more than 18 digits.
bool split_number(const std::string& t, double* value, std::string* unit, bool* too_long) {
  size_t i = 0;
  bool digits = false, dot = false;
  while (i < t.size() &&
         (std::isdigit(static_cast<unsigned char>(t[i])) || (t[i] == '.' && !dot))) {
    if (t[i] == '.')
      dot = true;
    else
      digits = true;
    i++;
  }
  *too_long = digits && i > 18;
  if (!digits || i > 18) return false;
  *value = std::stod(t.substr(0, i));
  *unit = t.substr(i);
  for (auto& c : *unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return true;
}

}  // namespace

Result<uint64_t> parse_size(const std::string& text) {
  double v;
  std::string unit;
  auto bad = [&](const std::string& why) {
    return make_error("size", "\"" + text + "\": " + why + " (examples: 128M, 1G, 512MiB)");
  };
  bool too_long = false;
  if (!split_number(text, &v, &unit, &too_long))
    return bad(too_long ? "out of range" : "not a size");
  double mult;
  if (unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    mult = 1024.0;
  else if (unit.empty() || unit == "m" || unit == "mb" || unit == "mib")
    mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    mult = 1024.0 * 1024 * 1024;
  else
    return bad("unknown unit \"" + unit + "\"");
  double bytes = std::floor(v * mult);
  if (bytes < 1 || bytes > double(uint64_t{1} << 50)) return bad("out of range");
  return static_cast<uint64_t>(bytes);
}

Result<uint64_t> parse_duration_ms(const std::string& text, uint64_t max_ms, const char* max_text) {
  double v;
  std::string unit;
  auto bad = [&](const std::string& why) {
    return make_error("duration", "\"" + text + "\": " + why + " (examples: 500ms, 3s, 1.5s, 2m)");
  };
  bool too_long = false;
  if (!split_number(text, &v, &unit, &too_long))
    return bad(too_long ? "out of range" : "not a duration");
  double mult;
  if (unit == "ms")
    mult = 1;
  else if (unit.empty() || unit == "s")
    mult = 1000;
  else if (unit == "m" || unit == "min")
    mult = 60000;
  else if (unit == "h")
    mult = 3600000;
  else
    return bad("unknown unit \"" + unit + "\"");
  double ms = std::floor(v * mult);
  if (ms < 1 || ms > double(max_ms))
    return bad("out of range (1ms to " + std::string(max_text) + ")");
  return static_cast<uint64_t>(ms);
}

}  // namespace nsbox
