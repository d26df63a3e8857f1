// The admin token's file (gateway/admin_token): generated once, kept, and a
// file an operator wrote is never replaced, only refused with the fix.
#include "gateway/admin_token.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/unit/temp_dir.hpp"

using nsbox::load_admin_token;

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("admin token: the config's wins; else generated once into STATE/token, 0600") {
  nsbox::test::TempDir dir("token");
  auto from_config = load_admin_token("config-token-0123456789", dir.path);
  REQUIRE(from_config);
  CHECK(from_config.value() == "config-token-0123456789");
  CHECK(access((dir.path + "/token").c_str(), F_OK) != 0);  // nothing written

  auto made = load_admin_token("", dir.path);
  REQUIRE_MESSAGE(made, made.error().message());
  CHECK(made.value().size() == 48);
  CHECK(made.value().find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(slurp(dir.path + "/token") == made.value() + "\n");
  struct stat st;
  REQUIRE(stat((dir.path + "/token").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(access((dir.path + "/token.tmp").c_str(), F_OK) != 0);
  auto again = load_admin_token("", dir.path);
  REQUIRE(again);
  CHECK(again.value() == made.value());
}

TEST_CASE("admin token: an operator's file is read as one line, or refused and left alone") {
  nsbox::test::TempDir dir("token");
  const std::string file = dir.path + "/token";
  std::ofstream(file) << "operator-chosen-token-42  \r\nsecond line\n";
  auto t = load_admin_token("", dir.path);
  REQUIRE(t);
  CHECK(t.value() == "operator-chosen-token-42");

  for (const char* bad : {"short-token\n", "", "\n"}) {
    std::ofstream(file) << bad;
    auto r = load_admin_token("", dir.path);
    REQUIRE_MESSAGE(!r, bad);
    CHECK_MESSAGE(r.error().text().find(file + " holds a token of ") != std::string::npos,
                  r.error().text());
    CHECK(r.error().text().find("at least 16") != std::string::npos);
    CHECK(r.error().text().find("delete it to have one generated") != std::string::npos);
    CHECK(slurp(file) == bad);  // never replaced
  }
  std::ofstream(file) << "with a space in it, long enough\n";
  auto spaced = load_admin_token("", dir.path);
  REQUIRE(!spaced);
  CHECK(spaced.error().text().find("spaces or control characters") != std::string::npos);
  // Not a file to read: said, not waited on or replaced.
  REQUIRE(unlink(file.c_str()) == 0);
  REQUIRE(mkfifo(file.c_str(), 0600) == 0);
  auto fifo = load_admin_token("", dir.path);
  CHECK(!fifo);
  REQUIRE(unlink(file.c_str()) == 0);
  REQUIRE(mkdir(file.c_str(), 0700) == 0);
  auto directory = load_admin_token("", dir.path);
  REQUIRE(!directory);
  CHECK(directory.error().message().find(file) != std::string::npos);
}
