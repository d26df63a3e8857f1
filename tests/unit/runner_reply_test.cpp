// Reading the runner's replies: fields of the wrong type read as their
// defaults, and nothing throws.
#include "rootfs/runner_reply.hpp"

#include <doctest/doctest.h>

#include <string>

using nlohmann::json;

TEST_CASE("runner replies: an envelope is a JSON object within the nesting bound") {
  CHECK(nsbox::parse_envelope("{\"type\":\"ready\"}").has_value());
  CHECK_FALSE(nsbox::parse_envelope("[1]").has_value());
  CHECK_FALSE(nsbox::parse_envelope("\"ready\"").has_value());
  CHECK_FALSE(nsbox::parse_envelope("{").has_value());
  CHECK_FALSE(nsbox::parse_envelope("").has_value());
  std::string deep = "{\"a\":" + std::string(300, '[') + std::string(300, ']') + "}";
  CHECK_FALSE(nsbox::parse_envelope(deep).has_value());
  // Brackets inside strings do not count.
  CHECK(nsbox::parse_envelope("{\"a\":\"" + std::string(300, '[') + "\\\"\"}").has_value());
}

TEST_CASE("runner replies: fields of the wrong type read as their defaults") {
  json j = {{"s", "x"},  {"i", 7},       {"u", 18446744073709551615ull},
            {"b", true}, {"n", nullptr}, {"a", json::array({1})}};
  CHECK(nsbox::reply_str(j, "s") == "x");
  CHECK(nsbox::reply_str(j, "i", "d") == "d");
  CHECK(nsbox::reply_str(j, "missing", "d") == "d");
  CHECK(nsbox::reply_int(j, "i", -1) == 7);
  CHECK(nsbox::reply_int(j, "s", -1) == -1);
  CHECK(nsbox::reply_int(j, "u", -1) == -1);  // beyond int64
  CHECK(nsbox::reply_int(j, "b", -1) == -1);
  CHECK(nsbox::reply_bool(j, "b", false));
  CHECK_FALSE(nsbox::reply_bool(j, "s", false));
  CHECK_FALSE(nsbox::reply_bool(j, "a", false));
  CHECK(nsbox::reply_str(json::array(), "s", "d") == "d");  // not an object at all
}
