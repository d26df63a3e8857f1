// What a function printed, made safe to show on a terminal. A terminal obeys
// control bytes: ESC sequences move the cursor, clear the screen, set the
// window title, write the clipboard (OSC 52), and some terminals answer
// queries by typing into the shell. So when nsbox's output is a terminal,
// every such byte is shown as text instead; output to a pipe or a file is
// never touched (it must stay byte-exact).
//
// Shown as is: printable ASCII, \n, \t, \r directly before \n (CRLF line
// ends are harmless), and valid UTF-8 outside the ranges below.
// Shown escaped:
//   C0 controls, a lone \r        \x1b, \r, \x07 ...  (a lone \r would let a
//                                 line overwrite what came before it)
//   DEL, C1 (U+0080..U+009F),     \u007f, \u009b, \u202e ...
//   bidi overrides and isolates   (Trojan Source: text shown reordered)
//   invalid UTF-8, one byte each  \xc3 ...  (a stray 0x9b is CSI to a
//                                 terminal in 8-bit mode)
// Backslashes are not doubled, and a code point is written as \uXXXX where
// JSON allows it, so a JSON document shown on a terminal is still the same
// JSON (JSON never holds a raw C0 byte or invalid UTF-8). The price: a
// function printing the text "\x1b" looks the same as one printing ESC;
// redirect the output to see the exact bytes.
#pragma once

#include <string>
#include <string_view>

namespace nsbox {

// For a byte stream cut anywhere (a pipe read at a time): a UTF-8 sequence
// or a \r split across feeds is held back until the next feed or finish().
class TerminalEscaper {
 public:
  // utf8 = false: the terminal decodes some other charset, where any byte
  // from 0x80 may be a C1 control; every such byte is escaped.
  explicit TerminalEscaper(bool utf8 = true) : utf8_(utf8) {}
  // Appends the escaped form of in to *out.
  void feed(std::string_view in, std::string* out);
  // Flushes what is held back (an incomplete sequence is escaped).
  void finish(std::string* out);

 private:
  size_t escape(std::string_view in, bool final, std::string* out);
  bool utf8_;
  std::string held_;  // at most 3 bytes
};

std::string escape_for_terminal(std::string_view s, bool utf8 = true);

// Whether the user's locale (LC_ALL, LC_CTYPE, LANG) decodes UTF-8. An unset
// or C/POSIX locale counts as UTF-8, as systemd does: terminals decode UTF-8
// today, and escaping every non-ASCII byte would garble most logs.
bool locale_is_utf8();

// The one decision point: true when fd is a terminal, so that what goes to it
// must pass through TerminalEscaper.
bool needs_terminal_escaping(int fd);

// Writes s to fd (escaped when fd is a terminal), retrying short writes.
// A failed write to stdout is remembered for stdout_failed().
void write_for_display(int fd, std::string_view s);
// printf to fd through write_for_display: for a command's messages, which
// quote what the user typed or a server sent (a file name, an option).
void print_for_display(int fd, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Flushes stdout; when it or a write_for_display to it failed (a full disk,
// /dev/full), says so on stderr as "PROGRAM: writing to stdout: ERROR" and
// returns true: the caller must not exit 0, as a script would take the
// empty or cut output for the answer. A closed pipe (EPIPE) is not said.
bool stdout_failed(const char* program);

}  // namespace nsbox
