// Names and query strings as the daemon reads them from a request line
// (gateway/names.hpp). tests/fuzz/names_fuzz.cpp checks the same properties
// on generated input; the cases here pin the rules and the inputs it found.
#include "gateway/names.hpp"

#include <doctest/doctest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "gateway/http_parse.hpp"

using nsbox::query_event;
using nsbox::valid_utf8;
using json = nlohmann::json;

namespace {

// The query as the front hands it to the handler (gateway/http_parse).
std::multimap<std::string, std::string> parse_query(const std::string& q) {
  httplib::Params params;
  nsbox::parse_query(q, &params);
  return {params.begin(), params.end()};
}

}  // namespace

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

namespace {
std::string event_of(const std::multimap<std::string, std::string>& params) {
  std::string why;
  std::optional<std::string> e = query_event(params, &why);
  REQUIRE_MESSAGE(e, why);
  return *e;
}
}  // namespace

TEST_CASE("names: the query of GET /fn/NAME becomes a JSON object of strings") {
  CHECK(event_of({}) == "{}");
  json e = json::parse(event_of(parse_query("name=you&n=1")));
  CHECK(e == json{{"name", "you"}, {"n", "1"}});
  // Decoded as httplib decodes it: %XX and '+'.
  e = json::parse(event_of(parse_query("a%20b=c+d&q=%22%5C%7B")));
  CHECK(e == json{{"a b", "c d"}, {"q", "\"\\{"}});
  // A repeated key: the last one wins, no array appears.
  e = json::parse(event_of(parse_query("k=1&k=2")));
  CHECK(e == json{{"k", "2"}});
  // Keys with no value, empty keys.
  e = json::parse(event_of(parse_query("flag&=x")));
  CHECK(e == json{{"flag", ""}});
}

TEST_CASE("names: a query pair that is not UTF-8 is refused, naming it; the event stays valid") {
  std::string why;
  CHECK_FALSE(query_event(parse_query("ok=1&bad=%FF"), &why));
  CHECK(why == "query parameter \"bad\" is not valid UTF-8 (percent-encode UTF-8 text)");
  CHECK_FALSE(query_event(parse_query("a=%ed%a0%80"), &why));  // a UTF-16 surrogate
  CHECK(why.find("\"a\"") != std::string::npos);
  why.clear();
  CHECK_FALSE(query_event(parse_query("%C3=v"), &why));
  CHECK(why == "a query parameter's name is not valid UTF-8 (percent-encode UTF-8 text)");
  std::string ev = event_of(parse_query("ok=1&nul=%00"));
  REQUIRE(json::accept(ev));
  json e = json::parse(ev);
  CHECK(e.size() == 2);
  CHECK(e["ok"] == "1");
  CHECK(e["nul"] == std::string("\0", 1));
  // Control characters and quotes are escaped, never spliced raw.
  ev = event_of({{"k\"}", "v\n\"],{"}});
  REQUIRE(json::accept(ev));
  CHECK(json::parse(ev)["k\"}"] == "v\n\"],{");
}
