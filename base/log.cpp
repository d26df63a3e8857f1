#include "base/log.hpp"

#include <cstdarg>
#include <cstdio>

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
  std::fprintf(stderr, "nsbox: %s: %s\n", kNames[static_cast<int>(level)], buf);
}

}  // namespace nsbox
