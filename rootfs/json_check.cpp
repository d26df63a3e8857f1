#include "rootfs/json_check.hpp"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace nsbox {

namespace {

bool is_ws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Scanner {
 public:
  explicit Scanner(std::string_view s)
      : p_(reinterpret_cast<const unsigned char*>(s.data())), end_(p_ + s.size()) {}

  void skip_ws() {
    while (p_ < end_ && is_ws(*p_)) p_++;
  }
  bool at_end() const { return p_ == end_; }
  int peek() const { return p_ < end_ ? *p_ : -1; }
  void advance() { p_++; }

  bool literal(const char* word) {
    for (; *word; word++, p_++)
      if (p_ == end_ || *p_ != static_cast<unsigned char>(*word)) return false;
    return true;
  }

  bool number() {
    if (p_ < end_ && *p_ == '-') p_++;
    if (p_ == end_) return false;
    if (*p_ == '0') {
      p_++;
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (p_ < end_ && is_digit(*p_)) p_++;
    } else {
      return false;
    }
    if (p_ < end_ && *p_ == '.') {
      p_++;
      if (p_ == end_ || !is_digit(*p_)) return false;
      while (p_ < end_ && is_digit(*p_)) p_++;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      p_++;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) p_++;
      if (p_ == end_ || !is_digit(*p_)) return false;
      while (p_ < end_ && is_digit(*p_)) p_++;
    }
    return true;
  }

  // At the opening quote.
  bool string() {
    p_++;
    for (;;) {
      // The common case first: printable ASCII.
      while (p_ < end_ && *p_ >= 0x20 && *p_ < 0x80 && *p_ != '"' && *p_ != '\\') p_++;
      if (p_ == end_) return false;
      unsigned char c = *p_;
      if (c == '"') {
        p_++;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (!escape()) return false;
        continue;
      }
      if (!utf8_sequence()) return false;
    }
  }

 private:
  bool hex4(uint32_t* out) {
    if (end_ - p_ < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
      int h = hex_value(p_[i]);
      if (h < 0) return false;
      v = v << 4 | static_cast<uint32_t>(h);
    }
    p_ += 4;
    *out = v;
    return true;
  }

  // At the backslash.
  bool escape() {
    p_++;
    if (p_ == end_) return false;
    unsigned char c = *p_++;
    switch (c) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        return true;
      case 'u': {
        uint32_t u;
        if (!hex4(&u)) return false;
        if (u >= 0xDC00 && u <= 0xDFFF) return false;  // a low surrogate alone
        if (u >= 0xD800 && u <= 0xDBFF) {
          // A high surrogate must be followed by an escaped low one.
          if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
          p_ += 2;
          uint32_t low;
          if (!hex4(&low) || low < 0xDC00 || low > 0xDFFF) return false;
        }
        return true;
      }
      default:
        return false;
    }
  }

  // A multi-byte UTF-8 sequence, well-formed as Unicode's table 3-7 says:
  // no overlong forms, no surrogates, nothing above U+10FFFF.
  bool utf8_sequence() {
    unsigned char c = *p_;
    int len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (end_ - p_ < len) return false;
    if (p_[1] < lo || p_[1] > hi) return false;
    for (int i = 2; i < len; i++)
      if (p_[i] < 0x80 || p_[i] > 0xBF) return false;
    p_ += len;
    return true;
  }

  const unsigned char* p_;
  const unsigned char* end_;
};

}  // namespace

char json_first_byte(std::string_view text) {
  for (char c : text)
    if (!is_ws(static_cast<unsigned char>(c))) return c;
  return 0;
}

bool json_valid(std::string_view text, int max_depth) {
  constexpr int kDepthCap = kMaxValidatorDepth;
  if (max_depth > kDepthCap) max_depth = kDepthCap;
  // What each open container is: true for an object (its members are
  // "key": value), false for an array.
  bool is_object[kDepthCap];
  int depth = 0;
  Scanner s(text);
  s.skip_ws();
  for (;;) {
    // Expecting a value.
    int c = s.peek();
    if (c == '{' || c == '[') {
      if (depth == max_depth) return false;
      s.advance();
      is_object[depth++] = c == '{';
      s.skip_ws();
      int close = c == '{' ? '}' : ']';
      if (s.peek() == close) {
        s.advance();
        depth--;
      } else {
        if (c == '{') {
          if (s.peek() != '"' || !s.string()) return false;
          s.skip_ws();
          if (s.peek() != ':') return false;
          s.advance();
          s.skip_ws();
        }
        continue;  // the first element's value
      }
    } else if (c == '"') {
      if (!s.string()) return false;
    } else if (c == 't') {
      if (!s.literal("true")) return false;
    } else if (c == 'f') {
      if (!s.literal("false")) return false;
    } else if (c == 'n') {
      if (!s.literal("null")) return false;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      if (!s.number()) return false;
    } else {
      return false;
    }
    // A value ended: close containers, or move to the next element.
    for (;;) {
      s.skip_ws();
      if (depth == 0) return s.at_end();
      int d = s.peek();
      if (d == ',') {
        s.advance();
        s.skip_ws();
        if (is_object[depth - 1]) {
          if (s.peek() != '"' || !s.string()) return false;
          s.skip_ws();
          if (s.peek() != ':') return false;
          s.advance();
          s.skip_ws();
        }
        break;  // the next element's value
      }
      if (d == (is_object[depth - 1] ? '}' : ']')) {
        s.advance();
        depth--;
        continue;
      }
      return false;
    }
  }
}

JsonShape json_shape(std::string_view text, int max_depth, size_t max_values) {
  JsonShape shape;
  shape.values = 1;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++;  // the escaped character, whatever it is
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      shape.values++;
      if (++depth > shape.depth) shape.depth = depth;
    } else if (c == ']' || c == '}') {
      if (depth > 0) depth--;
    } else if (c == ',' || c == ':') {
      shape.values++;
    }
    if (shape.depth > max_depth || shape.values > max_values) break;
  }
  return shape;
}

namespace {

// Takes every value and keeps the first error: a SAX parse builds nothing.
class ErrorCatcher : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& e) override {
    position_ = position;
    last_token_ = last_token;
    id_ = e.id;
    message_ = e.what();
    return false;
  }

  std::string describe() const {
    // The library's overflow (out_of_range.406) names the number's text, not
    // its place.
    if (id_ == 406)
      return "the number that ends at byte " + std::to_string(position_) +
             " is beyond a double's range (about 1.8e308), the largest nsbox takes";
    // "[json.exception.parse_error.101] parse error at line 1, column 9:
    // syntax error while parsing value - invalid literal; last read: '...'"
    std::string m = message_;
    if (size_t at = m.find("parse error "); at != std::string::npos) m.erase(0, at + 12);
    // The quote is the very token the library hands parse_error (its
    // get_token_string()), so it comes out exactly; a message of another
    // shape loses everything from the quote on.
    const std::string quoted = "; last read: '" + last_token_ + "'";
    if (size_t q = m.find(quoted); q != std::string::npos)
      m.erase(q, quoted.size());
    else if (size_t lr = m.find("; last read:"); lr != std::string::npos)
      m.erase(lr);
    if (size_t s = m.find("syntax error while parsing "); s != std::string::npos) {
      size_t dash = m.find(" - ", s);
      if (dash != std::string::npos) m.erase(s, dash + 3 - s);
    }
    for (char& c : m)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
    return m.empty() ? "at byte " + std::to_string(position_) : m;
  }

 private:
  size_t position_ = 0;
  std::string last_token_;
  int id_ = 0;
  std::string message_;
};

}  // namespace

std::string json_error(std::string_view text) {
  ErrorCatcher catcher;
  if (nlohmann::json::sax_parse(text.begin(), text.end(), &catcher)) return "";
  return catcher.describe();
}

}  // namespace nsbox
