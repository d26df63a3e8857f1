// Escaping a function's output for a terminal: what is shown, what is
// escaped, and that a stream cut anywhere escapes exactly like the whole.
#include "base/terminal_escape.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

using nsbox::escape_for_terminal;
using nsbox::TerminalEscaper;

namespace {

// Bytes as C escapes, for failure messages (the text may be invalid UTF-8).
std::string visible(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  return out;
}

std::string in_pieces(const std::string& s, size_t cut, bool utf8 = true) {
  TerminalEscaper e(utf8);
  std::string out;
  e.feed(std::string_view(s).substr(0, cut), &out);
  e.feed(std::string_view(s).substr(cut), &out);
  e.finish(&out);
  return out;
}

// What the terminal would act on: C0 other than \t \n and CRLF, DEL, C1 as
// a byte or as UTF-8, bidi controls, invalid UTF-8.
bool terminal_safe(const std::string& s) {
  for (size_t i = 0; i < s.size(); i++) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return false;
    if (c >= 0x80) {
      int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      if (len == 0 || c > 0xf4 || i + len > s.size()) return false;
      uint32_t cp = c & (0x7f >> len);
      for (int k = 1; k < len; k++) {
        auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xc0) != 0x80) return false;
        cp = (cp << 6) | (b & 0x3f);
      }
      if (cp < 0xa0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;
      if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) return false;
      i += len - 1;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("plain text, newlines, tabs and UTF-8 are shown as they are") {
  CHECK(escape_for_terminal("hello, world\n\tindented\n") == "hello, world\n\tindented\n");
  CHECK(escape_for_terminal("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80");
  CHECK(escape_for_terminal("a\\x1b stays") == "a\\x1b stays");  // backslashes not doubled
  CHECK(escape_for_terminal("") == "");
}

TEST_CASE("escape sequences cannot reach the terminal") {
  CHECK(escape_for_terminal("\x1b[2J") == "\\x1b[2J");
  CHECK(escape_for_terminal("\x1b]0;title\x07") == "\\x1b]0;title\\x07");
  CHECK(escape_for_terminal("\x1b]52;c;aGk=\x1b\\") == "\\x1b]52;c;aGk=\\x1b\\");
  CHECK(escape_for_terminal(std::string("nul\0byte", 8)) == "nul\\x00byte");
  CHECK(escape_for_terminal("bs\b\b") == "bs\\x08\\x08");
  CHECK(escape_for_terminal("del\x7f") == "del\\u007f");
}

TEST_CASE("a lone CR is escaped, CRLF is a line end") {
  CHECK(escape_for_terminal("real\rfake\n") == "real\\rfake\n");
  CHECK(escape_for_terminal("dos line\r\n") == "dos line\r\n");
  CHECK(escape_for_terminal("\r\r\n") == "\\r\r\n");
  CHECK(escape_for_terminal("ends in\r") == "ends in\\r");
}

TEST_CASE("C1 controls are escaped as bytes and as UTF-8") {
  CHECK(escape_for_terminal("\xc2\x9b"
                            "31m") == "\\u009b31m");  // CSI
  CHECK(escape_for_terminal("\xc2\x9d"
                            "0;t\xc2\x9c") == "\\u009d0;t\\u009c");  // OSC ... ST
  CHECK(escape_for_terminal("\xc2\x80\xc2\x9f\xc2\xa0") == "\\u0080\\u009f\xc2\xa0");
  CHECK(escape_for_terminal("\x9b"
                            "31m") == "\\x9b31m");  // raw 8-bit CSI: invalid UTF-8
}

TEST_CASE("bidi overrides and isolates are escaped") {
  CHECK(escape_for_terminal("a\xe2\x80\xae"
                            "b") == "a\\u202eb");
  CHECK(escape_for_terminal("\xe2\x81\xa6x\xe2\x81\xa9") == "\\u2066x\\u2069");
  CHECK(escape_for_terminal("\xe2\x80\x94") == "\xe2\x80\x94");  // an em dash is fine
}

TEST_CASE("invalid UTF-8 is escaped byte by byte") {
  CHECK(escape_for_terminal("\xc0\x80") == "\\xc0\\x80");                    // overlong NUL
  CHECK(escape_for_terminal("\xe0\x80\xaf") == "\\xe0\\x80\\xaf");           // overlong '/'
  CHECK(escape_for_terminal("\xed\xa0\x80") == "\\xed\\xa0\\x80");           // surrogate
  CHECK(escape_for_terminal("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // > U+10FFFF
  CHECK(escape_for_terminal("\xf5\xff") == "\\xf5\\xff");
  CHECK(escape_for_terminal("\xe4\xb8") == "\\xe4\\xb8");  // cut short at the end
  CHECK(escape_for_terminal("\xe4\xb8x") == "\\xe4\\xb8x");
  CHECK(escape_for_terminal("\xc3\xa9\xa9") == "\xc3\xa9\\xa9");  // stray continuation
}

TEST_CASE("a terminal that is not UTF-8 gets every high byte escaped") {
  CHECK(escape_for_terminal("caf\xc3\xa9", false) == "caf\\xc3\\xa9");
  CHECK(escape_for_terminal("\xc3\x9b", false) == "\\xc3\\x9b");  // 0x9b alone would be CSI
}

TEST_CASE("a stream cut anywhere escapes exactly like the whole") {
  const std::string s =
      "ok \xe4\xb8\xad\xf0\x9f\x98\x80 \r\n\x1b[1m\xc2\x9b\r\xe2\x80\xae\xc3\xa9\xe4\xb8 end\r";
  const std::string whole = escape_for_terminal(s);
  for (size_t cut = 0; cut <= s.size(); cut++) CHECK(in_pieces(s, cut) == whole);
  for (size_t cut = 0; cut <= s.size(); cut++)
    CHECK(in_pieces(s, cut, false) == escape_for_terminal(s, false));
}

TEST_CASE("random bytes, fed in random pieces, come out terminal-safe and the same") {
  std::mt19937 rng(8);
  for (int round = 0; round < 2000; round++) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) {
      // Biased towards the interesting bytes.
      static const unsigned char pick[] = {'a',  '\n', '\r', 0x1b, 0x7f, 0x80, 0x9b, 0xc2, 0xc3,
                                           0xe2, 0x80, 0xae, 0xed, 0xf0, 0xf4, 0x9f, 0xbf, 0xff};
      c = static_cast<char>(rng() % 3 ? pick[rng() % sizeof pick] : rng() % 256);
    }
    const std::string whole = escape_for_terminal(s);
    REQUIRE_MESSAGE(terminal_safe(whole), visible(whole));
    TerminalEscaper e;
    std::string out;
    for (size_t i = 0; i < s.size();) {
      size_t k = std::min<size_t>(s.size() - i, rng() % 5);
      e.feed(std::string_view(s).substr(i, k), &out);
      i += k;
    }
    e.finish(&out);
    REQUIRE(out == whole);
  }
}

TEST_CASE("a JSON document shown on a terminal is still the same JSON") {
  nlohmann::json doc = {
      {"msg", "del\x7f c1\xc2\x9b bidi\xe2\x80\xae esc\x1b nl\n"}, {"n", 1}, {"path", "C:\\dir"}};
  std::string shown = escape_for_terminal(doc.dump());
  CHECK(terminal_safe(shown));
  nlohmann::json back = nlohmann::json::parse(shown, nullptr, false);
  REQUIRE_FALSE(back.is_discarded());
  CHECK(back == doc);
}

TEST_CASE("the locale decides whether high bytes are UTF-8") {
  auto with = [](const char* lc_all, const char* lang) {
    setenv("LC_ALL", lc_all, 1);
    setenv("LANG", lang, 1);
    unsetenv("LC_CTYPE");
    return nsbox::locale_is_utf8();
  };
  const char* saved_all = getenv("LC_ALL");
  const char* saved_lang = getenv("LANG");
  std::string keep_all = saved_all ? saved_all : "", keep_lang = saved_lang ? saved_lang : "";
  CHECK(with("", "en_GB.UTF-8"));
  CHECK(with("", "de_DE.utf8"));
  CHECK(with("C", "en_GB.ISO-8859-1"));  // LC_ALL wins
  CHECK(with("", ""));                   // unset: as systemd, UTF-8
  CHECK(with("", "POSIX"));
  CHECK_FALSE(with("", "en_GB.ISO-8859-1"));
  CHECK_FALSE(with("", "en_US"));  // glibc's en_US is Latin-1
  if (saved_all)
    setenv("LC_ALL", keep_all.c_str(), 1);
  else
    unsetenv("LC_ALL");
  if (saved_lang)
    setenv("LANG", keep_lang.c_str(), 1);
  else
    unsetenv("LANG");
}
