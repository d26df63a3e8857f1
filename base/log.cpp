#include "base/log.hpp"

#include <cstdarg>
#include <cstdio>
#include <string>

#include "base/terminal_escape.hpp"

namespace nsbox {

namespace {
LogLevel g_level = LogLevel::Warn;
const char* const kNames[] = {"error", "warning", "info", "debug"};
constexpr size_t kMaxLogLine = 3800;  // escaped message; the prefix and newline fit in PIPE_BUF
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
  // Newlines and CRs as text first, so that every message is one line; the
  // terminal escaper then takes what else a terminal or journal viewer
  // would obey (C0 and C1 controls, bidi overrides, invalid UTF-8).
  std::string flat;
  flat.reserve(s.size());
  for (char c : s) {
    if (c == '\n')
      flat += "\\n";
    else if (c == '\r')
      flat += "\\r";
    else
      flat += c;
  }
  std::string out = escape_for_terminal(flat);
  // Escaping can quadruple a message: kept under PIPE_BUF, so that one write
  // still carries a whole line among concurrent writers.
  if (out.size() > kMaxLogLine) {
    size_t cut = kMaxLogLine;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) cut--;
    out.resize(cut);
    out += "...";
  }
  return out;
}

}  // namespace nsbox
