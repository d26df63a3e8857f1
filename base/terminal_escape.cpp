#include "base/terminal_escape.hpp"

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace nsbox {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void put_byte(unsigned char c, std::string* out) {
  const char e[4] = {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
  out->append(e, 4);
}

void put_code_point(uint32_t cp, std::string* out) {
  const char e[6] = {
      '\\', 'u', kHex[(cp >> 12) & 15], kHex[(cp >> 8) & 15], kHex[(cp >> 4) & 15], kHex[cp & 15]};
  out->append(e, 6);
}

bool plain(unsigned char c) {
  return (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t';
}

// Code points a terminal (or a bidi-aware one) acts on rather than draws.
bool hostile_code_point(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

// Length of the UTF-8 sequence a lead byte starts (0: not a lead byte), and
// the range its second byte must be in (excluding overlongs, surrogates and
// code points past U+10FFFF, as the Unicode standard's table 3-7 does).
int sequence_length(unsigned char lead, unsigned char* lo, unsigned char* hi) {
  *lo = 0x80;
  *hi = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) {
    if (lead == 0xe0) *lo = 0xa0;
    if (lead == 0xed) *hi = 0x9f;
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    if (lead == 0xf0) *lo = 0x90;
    if (lead == 0xf4) *hi = 0x8f;
    return 4;
  }
  return 0;
}

}  // namespace

// Returns how many bytes of in were consumed; fewer than in.size() only when
// !final and the tail may be the start of something (a sequence, a CRLF).
size_t TerminalEscaper::escape(std::string_view in, bool final, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && plain(p[run])) run++;
    out->append(in.data() + i, run - i);
    i = run;
    if (i == n) break;
    unsigned char c = p[i];
    if (c == '\r') {
      if (i + 1 == n && !final) return i;
      if (i + 1 < n && p[i + 1] == '\n') {
        out->append("\r\n", 2);
        i += 2;
      } else {
        out->append("\\r", 2);
        i++;
      }
      continue;
    }
    if (c < 0x80) {
      if (c == 0x7f)
        put_code_point(c, out);
      else
        put_byte(c, out);
      i++;
      continue;
    }
    unsigned char lo, hi;
    int len = utf8_ ? sequence_length(c, &lo, &hi) : 0;
    if (len == 0) {
      put_byte(c, out);
      i++;
      continue;
    }
    // Check the continuation bytes that are here; all present and valid is a
    // code point, a valid prefix at the end of a feed waits for more.
    int have = 1;
    bool valid = true;
    for (; have < len && i + have < n; have++) {
      unsigned char b = p[i + have];
      if (have == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) {
        valid = false;
        break;
      }
    }
    if (valid && have < len) {
      if (!final) return i;
      valid = false;
    }
    if (!valid) {
      put_byte(c, out);  // the bytes after it are judged on their own
      i++;
      continue;
    }
    uint32_t cp = c & (0x7f >> len);
    for (int k = 1; k < len; k++) cp = (cp << 6) | (p[i + k] & 0x3f);
    if (hostile_code_point(cp))
      put_code_point(cp, out);
    else
      out->append(in.data() + i, len);
    i += len;
  }
  return n;
}

void TerminalEscaper::feed(std::string_view in, std::string* out) {
  if (held_.empty()) {
    size_t used = escape(in, false, out);
    held_.assign(in.substr(used));
    return;
  }
  // Rare: a sequence was cut by the previous read. Copying this feed once is
  // simpler than stitching, and held_ stays at most 3 bytes either way.
  std::string joined = held_;
  joined.append(in);
  held_.clear();
  size_t used = escape(joined, false, out);
  held_.assign(joined, used);
}

void TerminalEscaper::finish(std::string* out) {
  std::string rest;
  rest.swap(held_);
  escape(rest, true, out);
}

std::string escape_for_terminal(std::string_view s, bool utf8) {
  TerminalEscaper e(utf8);
  std::string out;
  out.reserve(s.size());
  e.feed(s, &out);
  e.finish(&out);
  return out;
}

bool locale_is_utf8() {
  // The first of these that is set and non-empty decides, as setlocale does.
  const char* v = nullptr;
  for (const char* name : {"LC_ALL", "LC_CTYPE", "LANG"}) {
    v = getenv(name);
    if (v && *v) break;
    v = nullptr;
  }
  if (!v || !std::strcmp(v, "C") || !std::strcmp(v, "POSIX")) return true;
  std::string s(v);
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s.find("utf-8") != std::string::npos || s.find("utf8") != std::string::npos;
}

bool needs_terminal_escaping(int fd) {
  return isatty(fd) == 1;
}

namespace {
std::atomic<int> stdout_errno{0};  // the first failed write_for_display to stdout
}  // namespace

void write_for_display(int fd, std::string_view s) {
  std::string escaped;
  if (needs_terminal_escaping(fd)) {
    escaped = escape_for_terminal(s, locale_is_utf8());
    s = escaped;
  }
  while (!s.empty()) {
    ssize_t w = write(fd, s.data(), s.size());
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A stdout another program left non-blocking (a shared terminal or
      // pipe): wait until it takes more.
      struct pollfd p = {fd, POLLOUT, 0};
      if (poll(&p, 1, -1) >= 0 || errno == EINTR) continue;
    }
    if (w <= 0) {
      int expected = 0;
      if (fd == STDOUT_FILENO) stdout_errno.compare_exchange_strong(expected, w < 0 ? errno : EIO);
      return;
    }
    s.remove_prefix(static_cast<size_t>(w));
  }
}

void print_for_display(int fd, const char* fmt, ...) {
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  const int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    std::string text(size_t(n) + 1, '\0');
    std::vsnprintf(text.data(), text.size(), fmt, again);
    text.resize(size_t(n));
    write_for_display(fd, text);
  }
  va_end(again);
}

bool stdout_failed(const char* program) {
  int err = stdout_errno.load();
  // fflush's own errno; a write stdio failed earlier left none worth
  // trusting (EIO says only that one failed).
  const bool was_error = std::ferror(stdout);
  errno = 0;
  if (std::fflush(stdout) != 0 && err == 0) err = errno ? errno : EIO;
  if (was_error && err == 0) err = EIO;
  if (err == 0) return false;
  if (err != EPIPE)
    std::fprintf(stderr, "%s: writing to stdout: %s\n", program, std::strerror(err));
  return true;
}

}  // namespace nsbox
