// printf-style logging to stderr. Never used in the child between clone and
// exec (not async-signal-safe).
#pragma once

#include <string>
#include <string_view>

namespace nsbox {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Every line is one line: what a message quotes (an error a function chose,
// a path, a name) gets its newlines and CRs escaped, and whatever else a
// terminal obeys escaped as escape_for_terminal does (base/terminal_escape.hpp),
// so it can neither forge a line of its own nor drive the terminal or journal
// viewer that shows it. Backslashes are not doubled: a message's literal
// "\n" reads like an escaped newline (which is still one line).
void log_msg(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
std::string log_escape(std::string_view s);

}  // namespace nsbox

#define LOG_ERROR(...) ::nsbox::log_msg(::nsbox::LogLevel::Error, __VA_ARGS__)
#define LOG_WARN(...) ::nsbox::log_msg(::nsbox::LogLevel::Warn, __VA_ARGS__)
#define LOG_INFO(...) ::nsbox::log_msg(::nsbox::LogLevel::Info, __VA_ARGS__)
#define LOG_DEBUG(...) ::nsbox::log_msg(::nsbox::LogLevel::Debug, __VA_ARGS__)
