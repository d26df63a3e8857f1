#include "base/log.hpp"

#include <cstdarg>
#include <cstdio>
#include <string>

namespace nsbox {

namespace {
LogLevel g_level = LogLevel::Warn;
const char* const kNames[] = {"error", "warning", "info", "debug"};
}  // namespace

void set_log_level(LogLevel level) {
  g_level = level;
}
LogLevel log_level() {
  return g_level;
}

void log_msg(LogLevel level, const char* fmt, ...) {
  if (level > g_level) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  // One fprintf per line keeps concurrent writers' lines whole.
  std::fprintf(stderr, "nsbox: %s: %s\n", kNames[static_cast<int>(level)], log_escape(buf).c_str());
}

std::string log_escape(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  auto hex = [&](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  for (size_t i = 0; i < s.size(); i++) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      hex(c);
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      // U+0080..U+009F, the C1 controls (CSI among them) in UTF-8.
      hex(c);
      hex(static_cast<unsigned char>(s[++i]));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace nsbox
