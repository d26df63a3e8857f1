// `nsbox run` argument parsing: pure, every error a usage error.
#include "tools/args.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tools/run_cmd.hpp"

using nsbox::parse_run_args;
using nsbox::RunOptions;

namespace {

RunOptions ok(const std::vector<std::string>& args) {
  auto r = parse_run_args(args);
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  return r.value();
}

std::string usage_error(const std::vector<std::string>& args) {
  auto r = parse_run_args(args);
  REQUIRE_FALSE(r);
  CHECK(r.error().step == "usage");
  return r.error().detail;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("parse_run_args: defaults with only a function file") {
  RunOptions o = ok({"fn.py"});
  CHECK(o.function == "fn.py");
  CHECK(o.event == "{}");
  CHECK(o.handler == "handler");
  CHECK(o.policy == "default");
  CHECK_FALSE(o.memory.has_value());
  CHECK_FALSE(o.timeout.has_value());
  CHECK_FALSE(o.rootfs.has_value());
  CHECK_FALSE(o.no_isolation);
  CHECK_FALSE(o.verbose);
  CHECK_FALSE(o.help);
}

TEST_CASE("parse_run_args: every flag, before and after the function") {
  RunOptions o =
      ok({"--event", "{\"a\": 1}", "--handler", "f", "fn.py", "--policy", "strict", "--memory",
          "64M", "--timeout", "500ms", "--rootfs", "/tmp/rfs", "--no-isolation", "--verbose"});
  CHECK(o.function == "fn.py");
  CHECK(o.event == "{\"a\": 1}");
  CHECK(o.handler == "f");
  CHECK(o.policy == "strict");
  REQUIRE(o.memory.has_value());
  CHECK(*o.memory == "64M");
  REQUIRE(o.timeout.has_value());
  CHECK(*o.timeout == "500ms");
  REQUIRE(o.rootfs.has_value());
  CHECK(*o.rootfs == "/tmp/rfs");
  CHECK(o.no_isolation);
  CHECK(o.verbose);
  CHECK_FALSE(o.help);

  CHECK(ok({"-v", "fn.py"}).verbose);
  CHECK(ok({"fn.py", "--event", "-"}).event == "-");
  // A value that looks like a long option is a forgotten value (as for
  // every subcommand); --opt=VALUE says it is meant.
  CHECK(usage_error({"fn.py", "--policy", "--verbose"}) == "--policy needs a value");
  CHECK(ok({"fn.py", "--policy=--verbose"}).policy == "--verbose");
  CHECK_FALSE(ok({"fn.py", "--policy=--verbose"}).verbose);
  CHECK(ok({"fn.py", "--memory=64M"}).memory == "64M");
  // "--" ends the options: what follows is an argument even if it looks like one.
  CHECK(ok({"--verbose", "--", "-weird.py"}).function == "-weird.py");
  CHECK(usage_error({"fn.py", "-vx"}) == "unknown option -x");
  // The last occurrence wins.
  CHECK(ok({"fn.py", "--handler", "a", "--handler", "b"}).handler == "b");
}

TEST_CASE("parse_run_args: a lone \"-\" is a positional argument") {
  CHECK(ok({"-"}).function == "-");
}

TEST_CASE("parse_run_args: unknown option") {
  std::string e = usage_error({"fn.py", "--memroy", "64M"});
  CHECK(e == "unknown option --memroy");
  CHECK(usage_error({"-x", "fn.py"}) == "unknown option -x");
}

TEST_CASE("parse_run_args: a flag without its value") {
  for (const std::string flag :
       {"--event", "--handler", "--policy", "--memory", "--timeout", "--rootfs"}) {
    INFO(flag);
    CHECK(usage_error({"fn.py", flag}) == std::string(flag) + " needs a value");
  }
}

TEST_CASE("parse_run_args: one function file per run") {
  std::string e = usage_error({"a.py", "b.py"});
  CHECK(contains(e, "unexpected argument b.py"));
  CHECK(contains(usage_error({"a.py", "{}", "c.py"}), "unexpected argument c.py"));
  CHECK(contains(usage_error({"a.py", "b.py", "{}"}), "unexpected argument b.py"));
}

TEST_CASE("parse_run_args: an event shaped like JSON but broken is called that") {
  CHECK(usage_error({"a.py", "{bad"}) ==
        "the event is not valid JSON (at line 1, column 2: invalid literal; expected string "
        "literal): {bad");
  CHECK(usage_error({"a.py", " [1,"}) ==
        "the event is not valid JSON (at line 1, column 5: unexpected end of input; expected '[', "
        "'{', or a literal):  [1,");
  CHECK(contains(usage_error({"a.py", "b.py"}), "unexpected argument b.py"));
}

TEST_CASE("parse_run_args: the event may follow the function file, as for nsbox invoke") {
  CHECK(ok({"fn.py", R"({"a": 1})"}).event == R"({"a": 1})");
  CHECK(ok({"fn.py", "-"}).event == "-");
  CHECK(ok({"fn.py", "3"}).event == "3");
  CHECK(ok({"fn.py"}).event == "{}");
  CHECK(contains(usage_error({"fn.py", "{}", "--event", "{}"}), "the event is given twice"));
  CHECK(contains(usage_error({"fn.py", "{bad"}), "the event is not valid JSON (at line 1"));
}

TEST_CASE("parse_run_args: the function file is required") {
  CHECK(contains(usage_error({}), "missing the function file"));
  CHECK(contains(usage_error({"--verbose", "--policy", "strict"}), "missing the function file"));
}

TEST_CASE("parse_run_args: the handler must be a Python identifier") {
  for (const std::string bad : {"1abc", "a-b", "", "a.b", "a b", "handler()", "class", "None"}) {
    INFO("handler \"", bad, "\"");
    std::string e = usage_error({"fn.py", "--handler", bad});
    CHECK(e == "--handler \"" + std::string(bad) +
                   "\" is not a Python identifier (ASCII, at most 128, not a keyword)");
  }
  for (const std::string good : {"f", "_private", "handler2", "Main_Handler", "_"}) {
    INFO("handler \"", good, "\"");
    CHECK(ok({"fn.py", "--handler", good}).handler == good);
  }
}

TEST_CASE("parse_run_args: --help needs no function and skips validation") {
  CHECK(ok({"--help"}).help);
  CHECK(ok({"-h"}).help);
  RunOptions o = ok({"fn.py", "--handler", "1abc", "-h"});
  CHECK(o.help);
  // Errors met while scanning still win over --help.
  CHECK(contains(usage_error({"--help", "--bogus"}), "unknown option --bogus"));
}

TEST_CASE("run_usage documents every flag and exit code") {
  std::string u = nsbox::run_usage();
  for (const std::string s : {"--event", "--handler", "--policy", "--memory", "--timeout",
                              "--rootfs", "--no-isolation", "--verbose", "--help", "124", "137"})
    CHECK_MESSAGE(contains(u, s), s);
}

TEST_CASE("parse_options: one table drives parsing and --help for every command") {
  std::string name, seen;
  bool flag = false;
  std::vector<nsbox::Option> table = {
      {"name", 'n', "NAME", "a name\nsecond line", [&](const std::string& v) { name = v; }, false},
      {"flag", 0, "", "a flag", [&](const std::string&) { flag = true; }},
  };
  auto r = nsbox::parse_options(table, {"a", "-n", "x", "b", "--flag", "-", "c"});
  REQUIRE(r);
  CHECK(name == "x");
  CHECK(flag);
  CHECK(r.value().positional == std::vector<std::string>{"a", "b", "-", "c"});
  auto empty = nsbox::parse_options(table, {"--name", ""});
  REQUIRE_FALSE(empty);
  CHECK(empty.error().detail == "--name needs a non-empty value");
  auto missing = nsbox::parse_options(table, {"-n"});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().detail == "-n needs a value");
  auto bad_flag = nsbox::parse_options(table, {"--flag=1"});
  REQUIRE_FALSE(bad_flag);
  // A prefix of a long name is not that option (getopt_long would take
  // it): "--no" must not mean --no-isolation.
  name.clear();
  auto prefix = nsbox::parse_options(table, {"--na", "y"});
  REQUIRE_FALSE(prefix);
  CHECK(prefix.error().detail == "unknown option --na (did you mean --name?)");
  CHECK(name.empty());
  auto prefix_eq = nsbox::parse_options(table, {"a", "--fl"});
  REQUIRE_FALSE(prefix_eq);
  CHECK(prefix_eq.error().detail == "unknown option --fl (did you mean --flag?)");
  auto help_prefix = nsbox::parse_options(table, {"--he"});
  REQUIRE_FALSE(help_prefix);
  // The whole name, with its value joined or not, still works.
  REQUIRE(nsbox::parse_options(table, {"--name=y", "--flag"}));
  CHECK(name == "y");
  // Parsing twice starts afresh (getopt's state is global).
  REQUIRE(nsbox::parse_options(table, {"--name", "z"}));
  CHECK(name == "z");

  std::string help = nsbox::options_help(table);
  CHECK(contains(help, "  -n, --name NAME  "));
  CHECK(contains(help, "a name\n"));
  CHECK(contains(help, "second line\n"));
  CHECK(contains(help, "  --flag "));
  CHECK(contains(help, "  -h, --help "));
}
