// parse_size / parse_duration_ms: the units people type on a command line.
#include "policies/units.hpp"

#include <doctest/doctest.h>

#include <string>

using nsbox::parse_duration_ms;
using nsbox::parse_size;

namespace {

constexpr uint64_t KiB = 1024, MiB = KiB * 1024, GiB = MiB * 1024;

uint64_t size_ok(const std::string& s) {
  auto r = parse_size(s);
  INFO("parse_size(\"", s, "\")");
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  return r.value();
}

uint64_t ms_ok(const std::string& s) {
  auto r = parse_duration_ms(s);
  INFO("parse_duration_ms(\"", s, "\")");
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  return r.value();
}

}  // namespace

TEST_CASE("parse_size: a bare number is MiB") {
  CHECK(size_ok("128") == 128 * MiB);
  CHECK(size_ok("1") == MiB);
  CHECK(size_ok("1.5") == MiB + MiB / 2);
}

TEST_CASE("parse_size: k/m/g suffixes with optional b/ib, any case") {
  CHECK(size_ok("512k") == 512 * KiB);
  CHECK(size_ok("512K") == 512 * KiB);
  CHECK(size_ok("512kb") == 512 * KiB);
  CHECK(size_ok("512KiB") == 512 * KiB);
  CHECK(size_ok("128M") == 128 * MiB);
  CHECK(size_ok("128m") == 128 * MiB);
  CHECK(size_ok("128MB") == 128 * MiB);
  CHECK(size_ok("128MiB") == 128 * MiB);
  CHECK(size_ok("128mib") == 128 * MiB);
  CHECK(size_ok("1g") == GiB);
  CHECK(size_ok("1G") == GiB);
  CHECK(size_ok("2GB") == 2 * GiB);
  CHECK(size_ok("1GiB") == GiB);
  CHECK(size_ok("1.5G") == GiB + GiB / 2);
  CHECK(size_ok("0.5M") == MiB / 2);
}

TEST_CASE("parse_size: a \"b\" suffix means bytes") {
  CHECK(size_ok("1048576b") == MiB);
  CHECK(size_ok("1B") == 1);
  CHECK(size_ok("4097b") == 4097);
}

TEST_CASE("parse_size: errors name the input") {
  for (const std::string bad : {"", "-1", "12x", "abc", "0", "0b", "0.1b", "M", ".", "1.2.3M",
                                "12 M", "1e3", "+5", "5GiBs", "2000000G", "1234567890123456789"}) {
    auto r = parse_size(bad);
    INFO("input: \"", bad, "\"");
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("\"" + std::string(bad) + "\"") != std::string::npos);
  }
  CHECK(parse_size("12x").error().detail.find("unknown unit") != std::string::npos);
  CHECK(parse_size("0").error().detail.find("out of range") != std::string::npos);
  // A number too long to read is out of range, not "not a size".
  CHECK(parse_size("18446744073709551615").error().detail.find("out of range") !=
        std::string::npos);
  CHECK(parse_duration_ms("18446744073709551615").error().detail.find("out of range") !=
        std::string::npos);
}

TEST_CASE("parse_size: the upper bound is 2^50 bytes (1 PiB)") {
  CHECK(size_ok("1048576G") == (uint64_t{1} << 50));
  CHECK_FALSE(parse_size("1048577G"));
}

TEST_CASE("parse_duration_ms: a bare number is seconds") {
  CHECK(ms_ok("3") == 3000);
  CHECK(ms_ok("1.5") == 1500);
}

TEST_CASE("parse_duration_ms: ms, s, m and min suffixes") {
  CHECK(ms_ok("500ms") == 500);
  CHECK(ms_ok("500MS") == 500);
  CHECK(ms_ok("3s") == 3000);
  CHECK(ms_ok("3S") == 3000);
  CHECK(ms_ok("1.5s") == 1500);
  CHECK(ms_ok("0.25s") == 250);
  CHECK(ms_ok("2m") == 120000);
  CHECK(ms_ok("2min") == 120000);
  CHECK(ms_ok("0.5m") == 30000);
  CHECK(ms_ok("1ms") == 1);
}

TEST_CASE("parse_duration_ms: range is 1ms to 24h") {
  CHECK(ms_ok("1440m") == 24ull * 3600 * 1000);
  CHECK(ms_ok("86400") == 24ull * 3600 * 1000);
  CHECK_FALSE(parse_duration_ms("86401s"));
  CHECK_FALSE(parse_duration_ms("0.5ms"));
  CHECK_FALSE(parse_duration_ms("0s"));
  // Hours, so that the range the errors name can be written as it is.
  CHECK(ms_ok("24h") == 24ull * 3600 * 1000);
  CHECK(ms_ok("1.5h") == 90ull * 60 * 1000);
  CHECK(parse_duration_ms("25h").error().detail.find("out of range (1ms to 24h)") !=
        std::string::npos);
}

TEST_CASE("parse_duration_ms: errors name the input") {
  for (const std::string bad :
       {"", "-1", "12x", "abc", "0", "3d", "s", "1.5.5s", "2 s", "3sec", "100000m"}) {
    auto r = parse_duration_ms(bad);
    INFO("input: \"", bad, "\"");
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("\"" + std::string(bad) + "\"") != std::string::npos);
  }
  CHECK(parse_duration_ms("3d").error().detail.find("unknown unit") != std::string::npos);
  CHECK(parse_duration_ms("100000m").error().detail.find("out of range") != std::string::npos);
}
