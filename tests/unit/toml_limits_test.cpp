// Hostile TOML for the policy and config readers (policies/toml_reader.cpp):
// what tests/fuzz/{policy,config}_fuzz found or could not reach with small
// inputs. toml++ bounds the nesting of values but not of tables, which it
// builds and frees recursively; files have a size limit, read no further.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gateway/config.hpp"
#include "policies/policy.hpp"
#include "policies/toml_reader.hpp"

using namespace nsbox;

namespace {

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; i++) out += s;
  return out;
}

// The error text of parse_toml, "" when it parsed.
std::string toml_error(const std::string& text) {
  try {
    (void)parse_toml(text, "t.toml");
    return "";
  } catch (const TomlError& e) {
    return e.msg;
  } catch (const toml::parse_error& e) {
    return std::string(e.description());
  }
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& content) {
    char tmpl[] = "/tmp/nsbox-toml-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    path = tmpl;
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() { unlink(path.c_str()); }
};

}  // namespace

TEST_CASE("toml: tables nested 200k deep are refused, not a stack overflow") {
  // Each of these crashed the reader (SIGSEGV in toml++) at ~50k levels on
  // an 8 MiB stack: the daemon at startup or on SIGHUP, `nsbox run --policy`.
  const std::string deep[] = {
      repeat("a.", 200000) + "a = 1\n",            // a dotted key
      "[" + repeat("a.", 200000) + "a]\n",         // a table header
      "[[" + repeat("a.", 200000) + "a]]\n",       // an array of tables
      "x = {" + repeat("a.", 200000) + "a = 1}\n"  // inside an inline table
  };
  for (const auto& text : deep) {
    auto p = parse_policy(text, "deep.toml");
    REQUIRE_FALSE(p);
    CHECK(p.error().message().find("deep.toml:1:") != std::string::npos);
    CHECK(p.error().message().find("nested deeper than 32 levels") != std::string::npos);
    auto c = parse_serve_config(text, "deep.toml");
    REQUIRE_FALSE(c);
    CHECK(c.error().message().find("nested deeper than 32 levels") != std::string::npos);
  }
  // Levels add up across a header and the keys below it, and across lines
  // of arrays of inline tables.
  CHECK(toml_error("[" + repeat("a.", 20) + "a]\n" + repeat("b.", 20) + "b = 1\n")
            .find("t.toml:2:") == 0);
  CHECK(toml_error("x = [\n" + repeat("{a.a.a = [\n", 20)).find("nested deeper") !=
        std::string::npos);
}

TEST_CASE("toml: the depth limit counts only structure") {
  CHECK(toml_error(repeat("a.", 31) + "a = 1\n") == "");  // 32 levels: the limit
  CHECK(toml_error(repeat("a.", 32) + "a = 1\n").find("nested deeper") != std::string::npos);
  // Dots in strings, quoted keys, comments and floats are no levels.
  CHECK(toml_error("s = \"" + repeat("a.", 100) + "\"\n") == "");
  CHECK(toml_error("'" + repeat("a.", 100) + "' = 1\n") == "");
  CHECK(toml_error("\"" + repeat("a.", 100) + "\".b = 1\n") == "");
  CHECK(toml_error("# " + repeat("a.", 100) + "\nx = 1\n") == "");
  CHECK(toml_error("x = [" + repeat("1.5, ", 100) + "2.5]\n") == "");
  CHECK(toml_error("t = 1979-05-27T07:32:00.999Z\n") == "");
  CHECK(toml_error("s = \"\"\"\n" + repeat("a.b = [{\n", 100) + "\"\"\"\nx = 1\n") == "");
  CHECK(toml_error("s = '''" + repeat("[{", 100) + "'''''\ny = 1\n") == "");
  CHECK(toml_error("s = \"\\\"" + repeat("[{", 100) + "\"\nz = {}\n") == "");
}

TEST_CASE("toml: files larger than 1 MiB are refused with a clear error") {
  std::string big = "# " + std::string(kMaxTomlBytes, 'x') + "\n";
  auto c = parse_serve_config(big, "big.toml");
  REQUIRE_FALSE(c);
  CHECK(c.error().message().find("bytes, larger than 1 MiB") != std::string::npos);

  TempFile f(big);
  auto lc = load_serve_config(f.path);
  REQUIRE_FALSE(lc);
  CHECK(lc.error().message().find(f.path + ": larger than 1 MiB") != std::string::npos);
  auto lp = load_policy(f.path);
  REQUIRE_FALSE(lp);
  CHECK(lp.error().message().find("larger than 1 MiB") != std::string::npos);
  // Reading stops at the limit: an endless file is refused, not buffered.
  CHECK_FALSE(load_serve_config("/dev/zero"));
  CHECK_FALSE(load_policy("/dev/zero"));
}

TEST_CASE("toml: invalid UTF-8, NULs and a BOM give errors, not crashes") {
  const std::string bad[] = {"description = \"\xff\"\n",
                             std::string("x = 1\0\n", 7),
                             "description = \"\xed\xa0\x80\"\n",
                             "\xc3",
                             "[\xff]\n",
                             "a\xc0\xae = 1\n"};
  for (const auto& text : bad) {
    CHECK_FALSE(parse_policy(text, "bad.toml"));
    CHECK_FALSE(parse_serve_config(text, "bad.toml"));
  }
  CHECK(parse_serve_config("\xef\xbb\xbf[server]\nlisten = \":9000\"\n", "bom.toml"));
}

TEST_CASE("toml: a table header without a name is an error before toml++ sees it") {
  // Found by tests/fuzz/config_fuzz: toml++ 3.3 asserts a key follows '['
  // (abort in a debug build, an assumption the optimiser may use in
  // Debian's NDEBUG build), where an error is due.
  for (const std::string text : {"[!s:8999\"\ntoken = \"0l]\n", "[[ #\n", "[\t.a]\n", "[=]\n"}) {
    auto c = parse_serve_config(text, "h.toml");
    REQUIRE_FALSE(c);
    CHECK(c.error().message().find("h.toml:1:") != std::string::npos);
    CHECK(c.error().message().find("expected a table name after '['") != std::string::npos);
    CHECK_FALSE(parse_policy(text, "h.toml"));
  }
  CHECK(toml_error("[ a ]\n[[ \"b\" ]]\n[ 'c'.d ]\n") == "");
  CHECK(toml_error("[]\n").find("blank") != std::string::npos);  // toml++'s own error
}

TEST_CASE("toml: non-ASCII outside strings and comments is refused before toml++ sees it") {
  // Found by tests/fuzz/{policy,config}_fuzz: toml++ 3.3's Unicode
  // whitespace test reaches TOML_UNREACHABLE (undefined behaviour) for
  // e.g. U+03A3 and U+FEF8 where a value or key ends.
  const std::string bad[] = {"x = 1\xce\xa3\n", "\xef\xbb\xb8 = 1\n", "[a\xce\xa3]\n",
                             "s = \"\"\"a\\\n  \xce\xa3\"\"\"\n", "memory_budget_mb = 0\xce\xa3\n"};
  for (const auto& text : bad) {
    CHECK(toml_error(text).find("non-ASCII character outside a string") != std::string::npos);
    CHECK_FALSE(parse_serve_config(text, "u.toml"));
    CHECK_FALSE(parse_policy(text, "u.toml"));
  }
  CHECK(toml_error("s = \"\xce\xa3\" # \xce\xa3\n'\xce\xa3' = '\xce\xa3'\n") == "");
  CHECK(toml_error("s = \"\"\"a\\\n  b\xce\xa3\"\"\"\n") == "");
}

TEST_CASE("toml: '}' in an array and a 'T' without a time are refused before toml++ sees them") {
  // Found by tests/fuzz/{policy,config}_fuzz: toml++ 3.3 asserts that a
  // value never starts with '}' and that a date-time's 'T' is followed by
  // a digit (aborts in a debug build, assumptions in a release one).
  CHECK(toml_error("io = [\"read\",}}]\n").find("'}' inside an array") != std::string::npos);
  CHECK(toml_error("a = [ } ]\n").find("'}' inside an array") != std::string::npos);
  CHECK(toml_error("enj = [1979-05-27Tcpu07:32:00Z]\n").find("HH:MM:SS") != std::string::npos);
  CHECK(toml_error("d = 1979-05-27t\n").find("HH:MM:SS") != std::string::npos);
  CHECK_FALSE(parse_policy("[limits]\nio = [\"read\",}}]\n", "a.toml"));
  // What TOML allows still parses.
  CHECK(toml_error("a = [{ b = 1 }, { c = [1, 2] }]\n") == "");
  CHECK(toml_error("d = 1979-05-27T07:32:00Z\ne = [1979-05-27t07:32:00]\nf = 1979-05-27\n") == "");
  CHECK(toml_error("k = \"1979-05-27T\"\n") == "");
}

TEST_CASE("toml: a quote inside a bare value hides nothing from the pre-scan") {
  // Found by tests/fuzz/config_fuzz: after `= 1979-05-27T07:32;00Z"` the
  // pre-scan took the quote for a string and let a non-ASCII character
  // through to toml++ 3.3's whitespace table (undefined behaviour).
  CHECK(toml_error("d = 1979-05-27T07:32;00Z\"/var\xd1\x95  # x\n").find("non-ASCII") !=
        std::string::npos);
  CHECK(
      toml_error("a = \"\xd1\x95\"\nb = [\"\xd1\x95\", '\xd1\x95']\nc = { \"k\" = \"\xd1\x95\" }\n"
                 "\"q\".\"r\" = 1\n") == "");
}

TEST_CASE("toml: a FIFO, a terminal or a device as the config or policy is refused at once") {
  TempFile dir_anchor("");  // a unique name to derive the FIFO's from
  const std::string fifo = dir_anchor.path + ".fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  // Opening it for reading would wait for a writer that never comes.
  auto c = load_serve_config(fifo);
  REQUIRE_FALSE(c);
  CHECK(c.error().message().find(fifo + ": not a regular file") != std::string::npos);
  auto p = load_policy(fifo);
  REQUIRE_FALSE(p);
  CHECK(p.error().message().find(fifo) != std::string::npos);
  unlink(fifo.c_str());
  // A terminal would wait in read() instead; a directory fails there.
  for (const char* other : {"/dev/ptmx", "/dev/null", "/"}) {
    CAPTURE(other);
    auto r = load_serve_config(other);
    REQUIRE_FALSE(r);
    CHECK_MESSAGE(r.error().message().find("not a regular file") != std::string::npos,
                  r.error().message());
  }
}

TEST_CASE("toml: a syntax error shows its line, escaped, so the key is named") {
  auto c = parse_serve_config("[pool]\nblank = 99999999999999999999999\n", "c.toml");
  REQUIRE_FALSE(c);
  const std::string m = c.error().message();
  CHECK(m.find("c.toml:2:") != std::string::npos);
  CHECK(m.find("(line 2: blank = 99999999999999999999999)") != std::string::npos);
  // What a hostile file holds is shown escaped, and cut.
  auto p = parse_policy("x = \x1b[31m" + std::string(200, 'a') + "\n", "p.toml");
  REQUIRE_FALSE(p);
  const std::string pm = p.error().message();
  CHECK(pm.find("(line 1: x = \\x1b[31m") != std::string::npos);
  CHECK(pm.find('\x1b') == std::string::npos);
  CHECK(pm.find("...)") != std::string::npos);
}
