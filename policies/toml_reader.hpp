// Strict reading of TOML tables for policies and the daemon's config: every
// unknown key, missing key, wrong type or out-of-range value throws a
// TomlError whose text starts with "file:line:col:". Parsers catch it at
// their boundary and turn it into an Error.
#pragma once

#include <toml++/toml.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/terminal_escape.hpp"

namespace nsbox {

struct TomlError {
  std::string msg;
};

// Policies and the config are small; a larger file is refused, not parsed.
constexpr size_t kMaxTomlBytes = 1 << 20;  // errors say "1 MiB"
// Levels of tables, arrays and inline tables; policies and configs use 4.
constexpr int kMaxTomlDepth = 32;

// toml::parse after the bounds toml++ lacks (size, and the depth of tables,
// which it builds and frees recursively). Throws TomlError or
// toml::parse_error, as the readers below.
toml::table parse_toml(std::string_view text, const std::string& source);

// "file:line:col: what toml++ says (line N: the line's text)": the line is
// shown, escaped and cut at 80 bytes, as the message alone may not name the
// key (an integer too large for 64 bits, say).
std::string toml_parse_message(const toml::parse_error& e, const std::string& source,
                               std::string_view text);

// text with each control character (below 0x20, and 0x7f) and backslash
// as \xNN, so that what is shown is unambiguous.
std::string escape_controls(std::string_view text);

// The whole file, reading no more than kMaxTomlBytes + 1 bytes; errors
// name `what` (e.g. "policy") and the path.
Result<std::string> read_toml_file(const std::string& path, const char* what);
// The same from an fd opened already (path names it in errors).
Result<std::string> read_toml_fd(int fd, const std::string& path, const char* what);

class TomlReader {
 public:
  explicit TomlReader(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }

  // msg may quote the file's keys and values: its control characters are
  // shown escaped, so that a hostile file cannot forge log lines or drive
  // the terminal that shows the error.
  [[noreturn]] void fail(const toml::source_region& where, const std::string& msg) const {
    std::string pos = source_;
    if (where.begin.line)
      pos += ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
    throw TomlError{escape_controls(pos + ": " + msg)};
  }

  // A typo must not silently fall back to a default.
  void check_keys(const toml::table& t, const std::string& where,
                  const std::vector<std::string>& known) const {
    for (auto&& [k, v] : t) {
      if (std::find(known.begin(), known.end(), std::string(k.str())) != known.end()) continue;
      std::string list;
      for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
      fail(k.source(), "unknown key \"" + std::string(k.str()) + "\" in " + where +
                           " (expected one of: " + list + ")");
    }
  }

  const toml::table& table(const toml::table& parent, const char* key, const std::string& name,
                           bool required) const {
    static const toml::table empty;
    const toml::node* n = parent.get(key);
    if (!n) {
      if (required) fail(parent.source(), "missing table [" + name + "]");
      return empty;
    }
    if (!n->is_table()) fail(n->source(), "\"" + name + "\" must be a table");
    return *n->as_table();
  }

  // Required when def is null.
  int64_t integer(const toml::table& t, const char* key, const std::string& where, int64_t lo,
                  int64_t hi, const int64_t* def = nullptr) const {
    const toml::node* n = t.get(key);
    if (!n) {
      if (def) return *def;
      fail(t.source(), "missing key \"" + std::string(key) + "\" in " + where + ": add " + key +
                           " = N (" + std::to_string(lo) + ".." + std::to_string(hi) + ")");
    }
    auto v = n->value<int64_t>();
    if (!n->is_integer() || !v)
      fail(n->source(), "\"" + std::string(key) + "\" in " + where + " must be an integer");
    if (*v < lo || *v > hi)
      fail(n->source(), "\"" + std::string(key) + "\" in " + where + " is " + std::to_string(*v) +
                            "; allowed range is " + std::to_string(lo) + ".." + std::to_string(hi));
    return *v;
  }

  std::string string(const toml::table& t, const char* key, const std::string& where,
                     const std::string& def) const {
    const toml::node* n = t.get(key);
    if (!n) return def;
    if (!n->is_string())
      fail(n->source(), "\"" + std::string(key) + "\" in " + where + " must be a string");
    std::string v = *n->value<std::string>();
    no_controls(*n, "\"" + std::string(key) + "\" in " + where, v);
    return v;
  }

  // An array of strings, at most max_items of them.
  std::vector<std::string> strings(const toml::table& t, const char* key, const std::string& where,
                                   const std::vector<std::string>& def, size_t max_items) const {
    const toml::node* n = t.get(key);
    if (!n) return def;
    const std::string what = "\"" + std::string(key) + "\" in " + where;
    if (!n->is_array()) fail(n->source(), what + " must be an array of strings");
    const toml::array& a = *n->as_array();
    if (a.size() > max_items)
      fail(n->source(), what + " has " + std::to_string(a.size()) + " entries; at most " +
                            std::to_string(max_items) + " are allowed");
    std::vector<std::string> out;
    for (const toml::node& e : a) {
      if (!e.is_string()) fail(e.source(), what + " must hold only strings");
      out.push_back(*e.value<std::string>());
      no_controls(e, what, out.back());
    }
    return out;
  }

  bool boolean(const toml::table& t, const char* key, const std::string& where, bool def) const {
    const toml::node* n = t.get(key);
    if (!n) return def;
    if (!n->is_boolean())
      fail(n->source(), "\"" + std::string(key) + "\" in " + where + " must be true or false");
    return *n->value<bool>();
  }

  // No path, address, name or token a config or policy holds needs a
  // control character, and a NUL would cut the value short in every C call
  // it reaches (state_dir = "/var/lib/nsbox\u0000x" was /var/lib/nsbox).
  // Nor a character a terminal obeys or shows reordered (C1 controls, bidi
  // overrides: the value is echoed in errors and logs), nor invalid UTF-8.
  void no_controls(const toml::node& n, const std::string& what, const std::string& v) const {
    for (unsigned char c : v)
      if (c < 0x20 || c == 0x7f) {
        char code[8];
        snprintf(code, sizeof code, "0x%02x", c);
        fail(n.source(), what + " holds a control character (" + code + "): remove it");
      }
    if (escape_for_terminal(v) != v)
      fail(n.source(), what +
                           " holds a C1 control, a bidi override or invalid UTF-8 (shown "
                           "escaped: \"" +
                           escape_for_terminal(v) + "\"): remove it");
  }

 private:
  std::string source_;
};

}  // namespace nsbox
