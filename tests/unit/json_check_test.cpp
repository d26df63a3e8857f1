// json_valid must accept what the JSON library accepts: results the daemon
// once parsed are now forwarded as text after this check. Two differences,
// each tested on its own below: a leading byte order mark (refused here),
// and numbers beyond a double's range (accepted here: Python encodes an
// int of up to 4300 digits, and a function may return one).
#include "rootfs/json_check.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

using namespace nsbox;

namespace {

bool library_accepts(const std::string& s) {
  return nlohmann::json::accept(s);
}

}  // namespace

TEST_CASE("json_valid: agrees with the JSON library on hand-picked texts") {
  const std::vector<std::string> texts = {"",
                                          " ",
                                          "{}",
                                          "[]",
                                          "[",
                                          "]",
                                          "{",
                                          "}",
                                          "null",
                                          "true",
                                          "false",
                                          "nul",
                                          "truex",
                                          "0",
                                          "-0",
                                          "01",
                                          "-",
                                          "1.",
                                          "1.5",
                                          "1e",
                                          "1e+",
                                          "1e+5",
                                          "1E-5",
                                          ".5",
                                          "+1",
                                          "1.5e3",
                                          "123456789012345678901234567890",
                                          "\"\"",
                                          "\"a\"",
                                          "\"\\u00e9\"",
                                          "\"\\ud83d\\ude00\"",
                                          "\"\\ud83d\"",
                                          "\"\\ude00\"",
                                          "\"\\ud83d\\u0041\"",
                                          "\"\\x\"",
                                          "\"\\/\"",
                                          "\"\t\"",
                                          "\"\x01\"",
                                          "\"\x7f\"",
                                          "\"\xc3\xa9\"",
                                          "\"\xc3\"",
                                          "\"\xc0\xaf\"",
                                          "\"\xe0\x80\xaf\"",
                                          "\"\xed\xa0\x80\"",
                                          "\"\xf4\x90\x80\x80\"",
                                          "\"\xf0\x9f\x98\x80\"",
                                          "\"\xff\"",
                                          "{\"a\":1}",
                                          "{\"a\" : 1 , \"b\" : [ ] }",
                                          "{\"a\":}",
                                          "{\"a\" 1}",
                                          "{1:2}",
                                          "{\"a\":1,}",
                                          "[1,]",
                                          "[,1]",
                                          "[1 2]",
                                          "[[[]]]",
                                          "[[[]]",
                                          "{\"a\":[{\"b\":null}]}",
                                          "1 2",
                                          "[] []",
                                          " \n\t\r[] \n",
                                          "[1]x",
                                          "\"unterminated",
                                          "{\"a\":\"b\"",
                                          "[\"a\",\"b\"]",
                                          "-1.0e-10",
                                          "[true,false,null]",
                                          "[tru]",
                                          "\"\\u12\"",
                                          "\"\\uZZZZ\"",
                                          "\"\\"};
  for (const auto& t : texts) {
    INFO("text: ", t);
    CHECK(json_valid(t, 256) == library_accepts(t));
  }
}

TEST_CASE("json_valid: stricter than the library on one point, a leading byte order mark") {
  // RFC 8259 8.1: senders must not add one; the text is forwarded as it is,
  // so a BOM would reach clients (the library skipped it when it re-serialised).
  CHECK(library_accepts("\xef\xbb\xbf[]"));
  CHECK_FALSE(json_valid("\xef\xbb\xbf[]", 256));
}

TEST_CASE("json_valid: a number beyond a double's range is JSON, as Python writes it") {
  // The library reads it as a double and refuses the overflow; the result
  // is passed on as text, so a client with big integers gets it whole.
  for (const std::string& n : std::vector<std::string>{"1e400", "-1e400", std::string(400, '9'),
                                                       "[" + std::string(310, '1') + "]"}) {
    CAPTURE(n);
    CHECK(json_valid(n, 256));
    CHECK_FALSE(library_accepts(n));
  }
}

TEST_CASE("json_valid: agrees with the JSON library on random mutations") {
  const std::vector<std::string> seeds = {
      "{\"statusCode\":200,\"body\":\"h\\u00e9llo\",\"list\":[1,-2.5e3,true,null,{}]}",
      "[\"\xe2\x82\xac\",\"\\ud83d\\ude00\",[[[0]]],{\"k\":{\"k\":\"v\"}}]"};
  const std::string alphabet = "{}[]\",:\\u0123456789abcdefABCDEF.eE+-tnrf \t\n\x80\xc3\xed\xf4";
  std::mt19937 rng(8);
  int checked = 0;
  for (int i = 0; i < 20000; i++) {
    std::string t = seeds[i % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !t.empty(); e++) {
      size_t at = rng() % t.size();
      switch (rng() % 3) {
        case 0:
          t[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          t.erase(at, 1);
          break;
        default:
          t.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    bool mine = json_valid(t, 256), theirs = library_accepts(t);
    if (mine != theirs) {
      FAIL_CHECK("disagree on: " << t << " (json_valid " << mine << ")");
      break;
    }
    checked++;
  }
  CHECK(checked == 20000);
}

TEST_CASE("json_valid: nesting beyond the limit is refused, at the limit accepted") {
  std::string deep = std::string(256, '[') + std::string(256, ']');
  CHECK(json_valid(deep, 256));
  std::string deeper = "[" + deep + "]";
  CHECK_FALSE(json_valid(deeper, 256));
  CHECK_FALSE(json_valid(std::string(100000, '[') + std::string(100000, ']'), 256));
}

TEST_CASE("json_first_byte tells an object from the rest") {
  CHECK(json_first_byte(" \n{\"a\":1}") == '{');
  CHECK(json_first_byte("[1]") == '[');
  CHECK(json_first_byte("  ") == 0);
}

TEST_CASE("json_error: empty exactly when the library accepts, and names the place") {
  for (const char* t : {"{}", "[1, 2.5e3, \"x\"]", " null ", "123456789012345678901234567890"})
    CHECK(json_error(t).empty());
  CHECK(json_error("{\"a\":tru}") == "at line 1, column 9: invalid literal");
  CHECK(json_error("{\"a\":1") == "at line 1, column 7: unexpected end of input; expected '}'");
  CHECK(json_error("\n\n[1,]") ==
        "at line 3, column 4: unexpected ']'; expected '[', '{', or a "
        "literal");
  CHECK(json_error("-1e400") ==
        "the number that ends at byte 6 is beyond a double's range (about 1.8e308), the "
        "largest nsbox takes");
  CHECK(json_error("") ==
        "at line 1, column 1: unexpected end of input; expected '[', '{', or a "
        "literal");
}

TEST_CASE("json_error: never echoes the text, so a terminal or log line stays clean") {
  // The library quotes what it last read; a hostile event could carry escape
  // sequences or a line break into a log line through that quote.
  std::string hostile = "[\"\x1b[2J\n\", tru\x1b]0;owned\x07]";
  std::string why = json_error(hostile);
  REQUIRE_FALSE(why.empty());
  CHECK(why.find("owned") == std::string::npos);
  for (char c : why) CHECK((c >= 0x20 && c < 0x7f));
  // The quoted token may itself end like the library's "expected" clause.
  std::string forged = "\"abc'; expected INJECTED-TEXT\x01\"";
  why = json_error(forged);
  REQUIRE_FALSE(why.empty());
  CHECK_MESSAGE(why.find("INJECTED") == std::string::npos, why);
  CHECK(json_error("[1,]tail'; expected ']'").find("tail") == std::string::npos);
  // An unclosed string whose text looks like the clause: nothing added.
  CHECK(json_error("\"'; expected '[") ==
        "at line 1, column 16: invalid string: missing closing quote");
  std::string bad_utf8 = "\"\xff\xfe\"";
  for (char c : json_error(bad_utf8)) CHECK((c >= 0x20 && c < 0x7f));
}

TEST_CASE("json_shape: depth and values, brackets and separators outside strings") {
  auto depth = [](std::string_view t) { return json_shape(t).depth; };
  CHECK(depth("") == 0);
  CHECK(depth("1") == 0);
  CHECK(depth("[]") == 1);
  CHECK(depth("[{\"a\": [1]}, []]") == 3);
  CHECK(depth("\"[[[[\"") == 0);
  CHECK(depth("[\"\\\"[[\"]") == 1);  // an escaped quote does not end the string
  CHECK(depth(std::string(300, '[')) == 300);
  CHECK(depth("]]][") == 1);  // not JSON: closers never go below zero
  // Values: a scalar is one; each separator or opener one more.
  CHECK(json_shape("7").values == 1);
  CHECK(json_shape("[1,2,3]").values == 4);
  CHECK(json_shape("{\"a,b:c\": 1}").values == 3);  // the string's , and : are not counted
  // Stops past a bound, so a bound is cheap to check on a large text.
  CHECK(json_shape(std::string(1000, '['), 256).depth == 257);
  CHECK(json_shape("[" + std::string(1000, ','), INT32_MAX, 10).values == 11);
  // A backslash last in the text is not read past.
  CHECK(json_shape("\"\\").values == 1);
}
