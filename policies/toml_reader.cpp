#include "policies/toml_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/terminal_escape.hpp"

namespace nsbox {

namespace {

[[noreturn]] void fail_at(const std::string& source, int line, int col, const std::string& msg) {
  throw TomlError{source + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + msg};
}

// toml++ builds and destroys its tree recursively, and bounds only the
// nesting of values (256 arrays and inline tables), not of tables: a 1 MiB
// file of "a.a.a...a = 1" or "[a.a...a]" is ~500k tables deep and overflows
// the stack (of the daemon's main thread at startup, of its SIGHUP reload).
// So the depth is bounded before toml++ sees the text: a single pass that
// tells keys from values and strings, and over-counts rather than under:
// every dot of a key, every [header] part, every array and inline table
// opened adds a level.
class DepthScan {
 public:
  DepthScan(std::string_view text, const std::string& source) : t_(text), source_(source) {}

  void run() {
    if (t_.substr(0, 3) == "\xef\xbb\xbf") i_ = 3;  // a byte order mark, which toml++ skips
    while (i_ < t_.size()) {
      char c = t_[i_];
      if (c == '\n') {
        newline();
        continue;
      }
      if (c == '#') {
        while (i_ < t_.size() && t_[i_] != '\n') i_++;
        continue;
      }
      if ((c == '"' || c == '\'') && string_may_start()) {
        skip_string();
        continue;
      }
      if (static_cast<unsigned char>(c) >= 0x80) non_ascii();
      if (open_.empty() && in_key_ && key_dots_ == 0 && c == '[') {
        header();
        continue;
      }
      if (in_key_) {
        if (c == '.') {
          key_dots_++;
          check(depth() + key_dots_ + 1);
        } else if (c == '=') {
          in_key_ = false;
          pending_ = key_dots_ + 1;  // the key's dotted tables and the value
          key_dots_ = 0;
          check(depth() + pending_);
        }
      } else if (c == '{' || c == '[') {
        open_.push_back({c, pending_});
        sum_ += pending_;
        check(sum_ + header_);
        in_key_ = c == '{';
        key_dots_ = 0;
        pending_ = 1;  // an array's elements
      } else if (c == '}' && !open_.empty() && open_.back().kind == '[') {
        // toml++ 3.3 assumes a value never starts with '}' (an assertion,
        // so undefined behaviour in a release build; found by tests/fuzz).
        fail_at(source_, line_, col_, "'}' inside an array (expected a value or ']')");
      } else if ((c == 'T' || c == 't') && date_before() &&
                 (i_ + 1 >= t_.size() || t_[i_ + 1] < '0' || t_[i_ + 1] > '9')) {
        // Likewise a date and 'T' not followed by a time's first digit.
        fail_at(source_, line_, col_, "a date-time needs HH:MM:SS after its 'T'");
      } else if ((c == '}' || c == ']') && !open_.empty()) {
        close();
      } else if (c == ',' && !open_.empty()) {
        in_key_ = open_.back().kind == '{';
        key_dots_ = 0;
        pending_ = 1;
      }
      if (in_key_ && (c == '}') && !open_.empty()) close();
      advance();
    }
  }

 private:
  struct Open {
    char kind;
    int levels;
  };

  static bool bare_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  }

  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

  // toml++ 3.3 asks whether such a character is Unicode whitespace, and
  // its table has holes it marks unreachable (U+00A1..U+0499 among them):
  // undefined behaviour, found by tests/fuzz. TOML allows them only in
  // strings and comments anyway.
  [[noreturn]] void non_ascii() const {
    fail_at(source_, line_, col_,
            "non-ASCII character outside a string or comment (TOML allows them only there)");
  }

  // A quote opens a string only where TOML lets one start: a value after
  // '=', '[', ',' or '{', or a key part at a line's start or after '.'.
  // A quote in the middle of a bare value is no string to toml++, and
  // must not hide what follows it from the checks here.
  bool string_may_start() const {
    for (size_t k = i_; k > 0; k--) {
      char p = t_[k - 1];
      if (p == ' ' || p == '\t') continue;
      return p == '=' || p == '[' || p == ',' || p == '{' || p == '.' || p == '\n';
    }
    return true;
  }

  int depth() const { return header_ + sum_; }

  // YYYY-MM-DD just before the current character.
  bool date_before() const {
    if (i_ < 10) return false;
    for (size_t k = 0; k < 10; k++) {
      char d = t_[i_ - 10 + k];
      bool ok = (k == 4 || k == 7) ? d == '-' : (d >= '0' && d <= '9');
      if (!ok) return false;
    }
    return true;
  }

  void check(int d) const {
    if (d > kMaxTomlDepth)
      fail_at(source_, line_, col_,
              "nested deeper than " + std::to_string(kMaxTomlDepth) +
                  " levels (tables, dotted keys, arrays and inline tables all count)");
  }

  void advance() {
    i_++;
    col_++;
  }

  void newline() {
    i_++;
    line_++;
    col_ = 1;
    if (open_.empty()) {  // a new key/value pair, header or comment
      in_key_ = true;
      key_dots_ = 0;
    }
  }

  void close() {
    sum_ -= open_.back().levels;
    open_.pop_back();
    in_key_ = false;
    pending_ = 1;
  }

  // [a.b.c] or [[a.b.c]]: tables from the root, so the level every key
  // below it starts from.
  void header() {
    int levels = 1;
    advance();
    if (i_ < t_.size() && t_[i_] == '[') {
      levels++;  // an array of tables: the array, then the table
      advance();
    }
    // toml++ 3.3 only asserts that a key follows (and, built with NDEBUG,
    // assumes it: undefined behaviour when it does not), so refuse it here.
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t')) advance();
    if (i_ < t_.size() && !bare_key_char(t_[i_]) && t_[i_] != '"' && t_[i_] != '\'' &&
        t_[i_] != ']')
      fail_at(source_, line_, col_, "expected a table name after '['");
    while (i_ < t_.size() && t_[i_] != ']' && t_[i_] != '\n') {
      if (t_[i_] == '"' || t_[i_] == '\'') {
        skip_string();
        continue;
      }
      if (t_[i_] == '.') check(++levels);
      if (static_cast<unsigned char>(t_[i_]) >= 0x80) non_ascii();
      advance();
    }
    check(levels);
    header_ = levels;
  }

  // Basic strings honour backslash escapes; literal ones do not. Triple
  // quotes open multi-line strings, whose closing quotes may be followed by
  // up to two more quotes that belong to the content.
  void skip_string() {
    char q = t_[i_];
    bool multi = t_.substr(i_, 3) == std::string_view(q == '"' ? "\"\"\"" : "'''");
    for (int k = 0; k < (multi ? 3 : 1); k++) advance();
    while (i_ < t_.size()) {
      char c = t_[i_];
      if (c == '\n') {
        if (!multi) return;  // toml++ refuses it here; the pass goes on as at a newline
        i_++;
        line_++;
        col_ = 1;
        continue;
      }
      if (c == '\\' && q == '"') {
        advance();
        if (multi && i_ < t_.size() && is_space(t_[i_])) {
          // A line-ending backslash: toml++ skips the whitespace after it
          // with the same check as above.
          while (i_ < t_.size() && is_space(t_[i_])) {
            if (t_[i_] == '\n') line_++, col_ = 0;
            advance();
          }
          if (i_ < t_.size() && static_cast<unsigned char>(t_[i_]) >= 0x80) non_ascii();
          continue;
        }
        if (i_ < t_.size() && t_[i_] != '\n') advance();
        continue;
      }
      if (c == q) {
        if (!multi) {
          advance();
          return;
        }
        if (t_.substr(i_, 3) == std::string_view(q == '"' ? "\"\"\"" : "'''")) {
          for (int k = 0; k < 3; k++) advance();
          for (int k = 0; k < 2 && i_ < t_.size() && t_[i_] == q; k++) advance();
          return;
        }
      }
      advance();
    }
  }

  std::string_view t_;
  const std::string& source_;
  size_t i_ = 0;
  int line_ = 1, col_ = 1;
  std::vector<Open> open_;
  int sum_ = 0;      // levels the open arrays and inline tables add
  int header_ = 0;   // levels of the last [header]
  int pending_ = 1;  // levels the next value adds (its key's dots and itself)
  int key_dots_ = 0;
  bool in_key_ = true;
};

}  // namespace

toml::table parse_toml(std::string_view text, const std::string& source) {
  if (text.size() > kMaxTomlBytes)
    throw TomlError{source + ": " + std::to_string(text.size()) +
                    " bytes, larger than 1 MiB (the most a policy or config may have)"};
  DepthScan(text, source).run();
  return toml::parse(text, source);
}

std::string toml_parse_message(const toml::parse_error& e, const std::string& source,
                               std::string_view text) {
  const auto& b = e.source().begin;
  std::string msg = source + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": " +
                    std::string(e.description());
  size_t start = 0;
  for (uint32_t n = 1; n < b.line && start != std::string_view::npos; n++) {
    start = text.find('\n', start);
    if (start != std::string_view::npos) start++;
  }
  if (b.line == 0 || start == std::string_view::npos || start >= text.size()) return msg;
  std::string_view line = text.substr(start, text.find('\n', start) - start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  constexpr size_t kShown = 80;
  std::string shown;
  char hex[8];
  for (unsigned char c : line.substr(0, kShown)) {
    if (c < 0x20 || c >= 0x7f || c == '\\') {
      snprintf(hex, sizeof hex, "\\x%02x", c);  // a hostile file may hold terminal escapes
      shown += hex;
    } else {
      shown += char(c);
    }
  }
  if (line.size() > kShown) shown += "...";
  return msg + " (line " + std::to_string(b.line) + ": " + shown + ")";
}

std::string escape_controls(std::string_view text) {
  std::string out;
  char hex[8];
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f || c == '\\') {  // '\\' too: "\\x0a" in a file is not LF
      snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += char(c);
    }
  }
  // Then what a terminal obeys above ASCII: C1 controls, bidi overrides,
  // invalid UTF-8 (a key named "\u009b2J" cleared the screen showing its
  // error).
  return escape_for_terminal(out);
}

Result<std::string> read_toml_file(const std::string& path, const char* what) {
  // O_NONBLOCK: a FIFO would wait in open() for a writer, a terminal or
  // /dev/kmsg in read(), and on SIGHUP that would be the daemon's only
  // signal thread waiting.
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return sys_error(what, path);
  return read_toml_fd(fd.get(), path, what);
}

Result<std::string> read_toml_fd(int fd, const std::string& path, const char* what) {
  // Only a regular file is read (see above).
  struct stat st;
  if (fstat(fd, &st) != 0) return sys_error(what, "fstat " + path);
  if (!S_ISREG(st.st_mode))
    return make_error(what, path + ": not a regular file; give the path of a TOML file");
  auto text = read_up_to(fd, kMaxTomlBytes);
  if (text) return text;
  if (text.error().err == EFBIG)
    return make_error(what, path + ": larger than 1 MiB (the most a policy or config may have)");
  return sys_error_n(text.error().err, what, "read " + path);
}

}  // namespace nsbox
