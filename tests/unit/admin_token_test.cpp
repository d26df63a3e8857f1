// The admin token's file (gateway/admin_token): generated once, kept, and a
// file an operator wrote is never replaced, only refused with the fix.
#include "gateway/admin_token.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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
  auto again = load_admin_token("", dir.path);
  REQUIRE(again);
  CHECK(again.value() == made.value());
  // Nothing left beside it; a leftover of another start's is not touched.
  std::ofstream(dir.path + "/token.tmp") << "another start's\n";
  REQUIRE(unlink((dir.path + "/token").c_str()) == 0);
  auto third = load_admin_token("", dir.path);
  REQUIRE(third);
  CHECK(third.value() != made.value());
  CHECK(slurp(dir.path + "/token.tmp") == "another start's\n");
  REQUIRE(unlink((dir.path + "/token.tmp").c_str()) == 0);
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.path))
    left.push_back(e.path().filename());
  CHECK(left == std::vector<std::string>{"token"});
}

// A start that crashed between writing its temporary and unlinking it left
// a copy of a token: gone at the next start once no start holds it and it
// is older than a start takes.
TEST_CASE("admin token: a crashed start's temporary is deleted, a running one's kept") {
  nsbox::test::TempDir dir("token");
  const std::string crashed = dir.path + "/token.tmp-4194304-0a1b2c3d";
  const std::string fresh = dir.path + "/token.tmp-4194304-ffffffff";
  // Made by a start still running (in another PID namespace, say: its PID
  // means nothing here), which holds its lock.
  const std::string held_one = dir.path + "/token.tmp-4194305-12345678";
  const std::string other = dir.path + "/token.tmp-not-a-pid";
  for (const std::string& f : {crashed, fresh, held_one, other}) std::ofstream(f) << "secret\n";
  const timespec old[2] = {{time(nullptr) - 3600, 0}, {time(nullptr) - 3600, 0}};
  for (const std::string& f : {crashed, held_one, other})
    REQUIRE(utimensat(AT_FDCWD, f.c_str(), old, 0) == 0);
  const int held = open(held_one.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(held >= 0);
  REQUIRE(flock(held, LOCK_EX) == 0);
  // Also when the config names the token: the copy is no less a secret.
  REQUIRE(load_admin_token("config-token-0123456789", dir.path));
  CHECK_FALSE(std::filesystem::exists(crashed));
  CHECK(std::filesystem::exists(fresh));  // a start may be between its open and its flock
  CHECK(std::filesystem::exists(held_one));
  CHECK(std::filesystem::exists(other));
  close(held);
}

TEST_CASE("admin token: an operator's file is read as one line, or refused and left alone") {
  nsbox::test::TempDir dir("token");
  const std::string file = dir.path + "/token";
  auto write = [&](const std::string& text, mode_t mode = 0600) {
    unlink(file.c_str());
    std::ofstream(file) << text;
    REQUIRE(chmod(file.c_str(), mode) == 0);
  };
  write("  operator-chosen-token-42 \r\n\n");
  auto t = load_admin_token("", dir.path);
  REQUIRE_MESSAGE(t, t.error().message());
  CHECK(t.value() == "operator-chosen-token-42");

  auto refused = [&](const std::string& text, const std::string& why, mode_t mode = 0600) {
    CAPTURE(text);
    write(text, mode);
    auto r = load_admin_token("", dir.path);
    REQUIRE(!r);
    CHECK_MESSAGE(r.error().text().find(file + why) != std::string::npos, r.error().text());
    CHECK(slurp(file) == text);  // never replaced
  };
  for (const char* shortish : {"short-token\n", "", "\n"}) {
    refused(shortish, " holds a token of ");
    write(shortish);
    auto r = load_admin_token("", dir.path);
    REQUIRE(!r);
    CHECK(r.error().text().find("at least 16") != std::string::npos);
    CHECK(r.error().text().find("delete it to have one generated") != std::string::npos);
  }
  // One line, as the client reads it: a second line would reach the
  // client's header and not the daemon's comparison.
  refused("operator-chosen-token-42\nsecond line\n", " holds more than one line");
  refused("with a space in it, long enough\n", " holds more than one line, or a token with spaces");
  refused(std::string(5000, 'x'), " is larger than 4 KiB");
  // Readable or writable by others: the admin token is theirs too.
  refused("operator-chosen-token-42\n", " has mode 0644: other users could read", 0644);
  refused("operator-chosen-token-42\n", " has mode 0620", 0620);
  write("operator-chosen-token-42\n");
  if (geteuid() == 0) {
    REQUIRE(chown(file.c_str(), 65534, 65534) == 0);
    auto r = load_admin_token("", dir.path);
    REQUIRE(!r);
    CHECK(r.error().text().find(file + " belongs to uid 65534") != std::string::npos);
  }
  // Not a file to read: said, not waited on or replaced.
  REQUIRE(unlink(file.c_str()) == 0);
  REQUIRE(mkfifo(file.c_str(), 0600) == 0);
  auto fifo = load_admin_token("", dir.path);
  REQUIRE(!fifo);
  CHECK(fifo.error().text().find(file + " is not a regular file") != std::string::npos);
  REQUIRE(unlink(file.c_str()) == 0);
  REQUIRE(mkdir(file.c_str(), 0700) == 0);
  auto directory = load_admin_token("", dir.path);
  REQUIRE(!directory);
  CHECK(directory.error().text().find(file + " is not a regular file") != std::string::npos);
  REQUIRE(rmdir(file.c_str()) == 0);
  REQUIRE(symlink((dir.path + "/nowhere").c_str(), file.c_str()) == 0);
  auto dangling = load_admin_token("", dir.path);
  REQUIRE(!dangling);
  CHECK(dangling.error().text().find(file + " is a symlink to a missing file") !=
        std::string::npos);
}

TEST_CASE("admin token: token_text drops the blanks and line breaks around a token only") {
  CHECK(nsbox::token_text(" \tabc\r\n\n") == "abc");
  CHECK(nsbox::token_text("a b\nc\n") == "a b\nc");
  CHECK(nsbox::token_text("\n\n").empty());
}

TEST_CASE("check_read_token: a read token equal to the admin token is refused, naming the file") {
  CHECK(nsbox::check_read_token("", "admin-0123456789abcdef", "/etc/nsbox/nsbox.toml"));
  CHECK(nsbox::check_read_token("reader-0123456789abcdef", "admin-0123456789abcdef", "f"));
  auto s = nsbox::check_read_token("admin-0123456789abcdef", "admin-0123456789abcdef",
                                   "/etc/nsbox/nsbox.toml");
  REQUIRE_FALSE(s);
  CHECK(s.error().text().find("/etc/nsbox/nsbox.toml: [server] read_token is the admin token") ==
        0);
}
