// Names and query strings as the daemon reads them from a request line
// (gateway/names.hpp). tests/fuzz/names_fuzz.cpp checks the same properties
// on generated input; the cases here pin the rules and the inputs it found.
#include "gateway/names.hpp"

#include <doctest/doctest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

using nsbox::query_event;
using nsbox::valid_identifier;
using nsbox::valid_utf8;
using json = nlohmann::json;

namespace {

// The query as httplib hands it to the handler: split on & and =,
// percent-decoded, '+' as space.
std::multimap<std::string, std::string> parse_query(const std::string& q) {
  httplib::Params params;
  httplib::detail::parse_query_text(q, params);
  return {params.begin(), params.end()};
}

}  // namespace

TEST_CASE("names: valid_identifier") {
  CHECK(valid_identifier("handler"));
  CHECK(valid_identifier("_private"));
  CHECK(valid_identifier("Handle2"));
  CHECK(valid_identifier(std::string(128, 'h')));
  CHECK_FALSE(valid_identifier(""));
  CHECK_FALSE(valid_identifier(std::string(129, 'h')));
  CHECK_FALSE(valid_identifier("2fast"));
  CHECK_FALSE(valid_identifier("a.b"));
  CHECK_FALSE(valid_identifier("a-b"));
  CHECK_FALSE(valid_identifier("os.system"));
  CHECK_FALSE(valid_identifier("h\xc3\xa9"));  // Python allows it; the daemon keeps ASCII
  CHECK_FALSE(valid_identifier(std::string("a\0b", 3)));
}

TEST_CASE("names: valid_utf8") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("plain"));
  CHECK(valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  CHECK(valid_utf8(std::string("nul\0inside", 10)));
  CHECK_FALSE(valid_utf8("\xff"));
  CHECK_FALSE(valid_utf8("\xc3"));              // truncated sequence
  CHECK_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  CHECK_FALSE(valid_utf8("\xed\xa0\x80"));      // a UTF-16 surrogate
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
}

TEST_CASE("names: the query of GET /fn/NAME becomes a JSON object of strings") {
  CHECK(query_event({}) == "{}");
  json e = json::parse(query_event(parse_query("name=you&n=1")));
  CHECK(e == json{{"name", "you"}, {"n", "1"}});
  // Decoded as httplib decodes it: %XX and '+'.
  e = json::parse(query_event(parse_query("a%20b=c+d&q=%22%5C%7B")));
  CHECK(e == json{{"a b", "c d"}, {"q", "\"\\{"}});
  // A repeated key: the last one wins, no array appears.
  e = json::parse(query_event(parse_query("k=1&k=2")));
  CHECK(e == json{{"k", "2"}});
  // Keys with no value, empty keys.
  e = json::parse(query_event(parse_query("flag&=x")));
  CHECK(e.is_object());
  CHECK(e["flag"] == "");
}

TEST_CASE("names: query pairs that are not UTF-8 are dropped, the event stays valid") {
  std::string ev = query_event(parse_query("bad=%FF&ok=1&%C3=v&nul=%00"));
  REQUIRE(json::accept(ev));
  json e = json::parse(ev);
  CHECK(e.size() == 2);
  CHECK(e["ok"] == "1");
  CHECK(e["nul"] == std::string("\0", 1));
  // Control characters and quotes are escaped, never spliced raw.
  ev = query_event({{"k\"}", "v\n\"],{"}});
  REQUIRE(json::accept(ev));
  CHECK(json::parse(ev)["k\"}"] == "v\n\"],{");
}
