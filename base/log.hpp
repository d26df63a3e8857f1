// printf-style logging to stderr. Never used in the child between clone and
// exec (not async-signal-safe).
#pragma once

namespace nsbox {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_msg(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace nsbox

#define LOG_ERROR(...) ::nsbox::log_msg(::nsbox::LogLevel::Error, __VA_ARGS__)
#define LOG_WARN(...) ::nsbox::log_msg(::nsbox::LogLevel::Warn, __VA_ARGS__)
#define LOG_INFO(...) ::nsbox::log_msg(::nsbox::LogLevel::Info, __VA_ARGS__)
#define LOG_DEBUG(...) ::nsbox::log_msg(::nsbox::LogLevel::Debug, __VA_ARGS__)
