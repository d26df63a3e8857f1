// No terminal reaches the function: `nsbox run` started from a terminal (a
// real pty, owned by a shell-like session leader) hands the function pipes,
// not the terminal, so TIOCSTI cannot type into the shell; and what the
// function prints is shown escaped, so it cannot drive the terminal either.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/integration/daemon.hpp"
#include "tests/integration/harness.hpp"

using nsbox::test::PtyOutcome;

namespace {

// Bytes as C escapes, for failure messages (the text may be invalid UTF-8).
std::string visible(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  return out;
}

std::string sandbox_event() {
  return R"({"host_hostname": ")" + nsbox::test::host_hostname() + R"("})";
}

nsbox::test::RunSpec tty_attack(bool rootless, const std::string& policy) {
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(),
            "run",
            nsbox::test::probe("tty_attack.py"),
            "--policy",
            policy,
            "--event",
            sandbox_event()};
  if (rootless && !nsbox::test::rootless_as(nsbox::test::kNobody, &s)) FAIL("no rootless dir");
  return s;
}

// The result line among the function's (escaped) prints on the terminal:
// the last line that is a JSON object (its keys come in the function's
// order, as the runner wrote them).
nlohmann::json result_on(const std::string& screen) {
  size_t end = screen.size();
  while (end > 0) {
    size_t start = screen.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    std::string line = screen.substr(start, end - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) return j;
    if (start == 0) break;
    end = start - 1;
  }
  return nlohmann::json::value_t::discarded;
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

void check_terminal_is_safe(const PtyOutcome& o) {
  INFO("screen: " << visible(o.screen));
  REQUIRE(o.exit_code == 0);
  // Nothing was pushed into the terminal's input.
  CHECK_MESSAGE(o.typed.empty(), "typed into the shell: " << o.typed);
  auto r = result_on(o.screen);
  REQUIRE(r.is_object());
  CHECK(r["isatty"] == nlohmann::json::array({false, false, false}));
  for (auto& e : r["tiocsti"].items()) CHECK_MESSAGE(e.value() != "ok", e.key());
  // The function's escape sequences arrived as text, not as sequences.
  CHECK_FALSE(has(o.screen, "\x1b"));
  CHECK_FALSE(has(o.screen, "\xc2\x9b"));
  CHECK(has(o.screen, "title:\\x1b]0;nsbox-pwned\\x07"));
  CHECK(has(o.screen, "clip:\\x1b]52;c;bnNib3g=\\x07"));
  CHECK(has(o.screen, "csi:\\x1b[2J"));
  CHECK(has(o.screen, "c1:\\u009b31m"));
  CHECK(has(o.screen, "del:\\u007f"));
  CHECK(has(o.screen, "lone-cr:a\\rb"));
  CHECK(has(o.screen, "printed on stderr: \\x1b]0;nsbox-stderr\\x07"));
}

}  // namespace

TEST_CASE("terminal: a function run from a terminal cannot type into it or drive it (root)") {
  for (std::string policy : {"default", "strict"}) {
    CAPTURE(policy);
    check_terminal_is_safe(nsbox::test::run_on_pty(tty_attack(false, policy)));
  }
}

TEST_CASE("terminal: a function run from a terminal cannot type into it or drive it (rootless)") {
  for (std::string policy : {"default", "strict"}) {
    CAPTURE(policy);
    check_terminal_is_safe(nsbox::test::run_on_pty(tty_attack(true, policy)));
  }
}

TEST_CASE("terminal: output to pipes stays byte-exact") {
  auto o = nsbox::test::run(tty_attack(false, "default"));
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.json()["isatty"] == nlohmann::json::array({false, false, false}));
  CHECK(has(o.err,
            "title:\x1b]0;nsbox-pwned\x07 clip:\x1b]52;c;bnNib3g=\x07 csi:\x1b[2J"
            " c1:\xc2\x9b"
            "31m del:\x7f lone-cr:a\rb crlf:x\r\n"));
}

TEST_CASE("terminal: nsbox logs and nsbox invoke show a function's bytes escaped on a terminal") {
  nsbox::test::StateDir sd("terminal");
  nsbox::test::TempDir src("terminal-src");
  REQUIRE(mkdir(src.path.c_str(), 0755) == 0);
  std::string fn = src.path + "/fn.py";
  std::ofstream(fn) << "def handler(event, context):\n"
                       "    print('log:\\x1b]0;nsbox-pwned\\x07 c1:\\u009b31m')\n"
                       "    return 'ret:\\x1b[2J c1:\\u009b31m'\n";
  nsbox::test::Daemon d(sd.path, "[pool]\nblank = 1\n");
  REQUIRE(d.start());
  auto cli = [&](std::vector<std::string> args) {
    return nsbox::test::client_spec(args, "http://127.0.0.1:" + std::to_string(d.port()),
                                    d.token());
  };
  REQUIRE(nsbox::test::run(cli({"deploy", "esc", fn})).exit_code == 0);
  PtyOutcome inv = nsbox::test::run_on_pty(cli({"invoke", "esc"}));
  CHECK(inv.exit_code == 0);
  PtyOutcome logs = nsbox::test::run_on_pty(cli({"logs", "esc"}));
  CHECK(logs.exit_code == 0);
  // Piped, both are byte-exact.
  auto piped = nsbox::test::run(cli({"logs", "esc"}));
  d.stop();

  INFO("invoke: " << visible(inv.screen));
  INFO("logs: " << visible(logs.screen));
  for (const auto* o : {&inv, &logs}) {
    CHECK_FALSE(has(o->screen, "\x1b"));
    CHECK_FALSE(has(o->screen, "\xc2\x9b"));
  }
  CHECK(has(inv.screen, "c1:\\u009b31m"));  // a JSON string: \u001b stays JSON's own escape
  CHECK(has(logs.screen, "log:\\x1b]0;nsbox-pwned\\x07 c1:\\u009b31m"));
  CHECK(has(piped.out,
            "log:\x1b]0;nsbox-pwned\x07 c1:\xc2\x9b"
            "31m"));
}

TEST_CASE("terminal: the relay loses nothing at exit and stops with the deadline") {
  nsbox::test::TempDir tmp("terminal-chatty");
  REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
  const std::string fn = tmp.path + "/chatty.py";
  std::ofstream(fn) << "import os, sys\n"
                       "def handler(event, context):\n"
                       "    line = b'x' * 1023 + b'\\n'\n"
                       "    n = event['lines']\n"
                       "    i = 0\n"
                       "    while n < 0 or i < n:\n"
                       "        sys.stdout.buffer.write(line)\n"
                       "        i += 1\n"
                       "    sys.stdout.buffer.write(b'END')\n"
                       "    sys.stdout.flush()\n"
                       "    os._exit(0)\n";
  // 3 MiB, then the process ends without returning: all of it arrives.
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "run", fn, "--event", R"({"lines": 3072})"};
  auto o = nsbox::test::run(s);
  CHECK(o.exit_code == 1);  // Runtime.ExitError: it never answered
  CHECK(o.err.size() >= 3072 * 1024 + 3);
  CHECK(o.err.find("END") == 3072 * 1024);
  // Printing without end: the deadline ends it, as before.
  s.argv = {nsbox::test::nsbox_bin(), "run", fn, "--event", R"({"lines": -1})", "--timeout", "1s"};
  auto started = std::chrono::steady_clock::now();
  o = nsbox::test::run(s);
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(o.exit_code == 124);
  CHECK(o.err.find("timed out after 1000 ms") != std::string::npos);
  CHECK(took < std::chrono::seconds(15));
}

// Whatever answers on the server's port writes what deploy and ls print
// (a squatter on 127.0.0.1:8080 while the daemon restarts, say): on a
// terminal it is escaped like a function's output.
TEST_CASE("terminal: what a server answers to deploy and ls is escaped on a terminal") {
  httplib::Server fake;
  fake.Put("/functions/x", [](const httplib::Request&, httplib::Response& res) {
    res.status = 201;
    res.set_content(R"({"name":"x","version":1,"url":"http://h/\u001b]0;pwned\u0007"})",
                    "application/json");
  });
  fake.Get("/functions", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"functions":[{"name":"a\u001b[2J","version":1,"handler":"h\u009b31m"}]})",
                    "application/json");
  });
  const int port = fake.bind_to_any_port("127.0.0.1");
  REQUIRE(port > 0);
  std::thread server([&] { fake.listen_after_bind(); });
  nsbox::test::TempDir src("terminal-fake");
  REQUIRE(mkdir(src.path.c_str(), 0755) == 0);
  const std::string fn = src.path + "/fn.py";
  std::ofstream(fn) << "def handler(event, context):\n    return 1\n";
  auto cli = [&](std::vector<std::string> args) {
    return nsbox::test::client_spec(args, "http://127.0.0.1:" + std::to_string(port),
                                    "some-token-0123456789");
  };
  PtyOutcome deployed = nsbox::test::run_on_pty(cli({"deploy", "x", fn}));
  PtyOutcome listed = nsbox::test::run_on_pty(cli({"ls"}));
  fake.stop();
  server.join();
  INFO("deploy: " << visible(deployed.screen));
  INFO("ls: " << visible(listed.screen));
  CHECK(deployed.exit_code == 0);
  CHECK(listed.exit_code == 0);
  for (const auto* o : {&deployed, &listed}) {
    CHECK_FALSE(has(o->screen, "\x1b"));
    CHECK_FALSE(has(o->screen, "\x07"));
    CHECK_FALSE(has(o->screen, "\xc2\x9b"));
  }
  CHECK(has(deployed.screen, "Deployed at http://h/\\x1b]0;pwned\\x07"));
  CHECK(has(listed.screen, "a\\x1b[2J"));
}

TEST_CASE("terminal: words a command echoes back in its errors are escaped on a terminal") {
  const std::string esc = "\x1b]0;owned\x07\x1b[2J";
  std::vector<std::vector<std::string>> commands = {
      {"serve", "--x" + esc},
      {"serve", "--check", "--config", "/nonexistent/" + esc},
      {"rootfs", "build", "--x" + esc},
      {"rootfs", "build", "--out", "rel" + esc},
      {"run", "/nonexistent/" + esc + ".py"},
      {esc},
  };
  for (const auto& args : commands) {
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin()};
    s.argv.insert(s.argv.end(), args.begin(), args.end());
    auto o = nsbox::test::run_on_pty(s);
    CAPTURE(args[0]);
    CHECK(o.exit_code != 0);
    CHECK(o.screen.find('\x1b') == std::string::npos);
    CHECK(o.screen.find('\x07') == std::string::npos);
    CHECK(o.screen.find("\\x1b]0;owned") != std::string::npos);
  }
  // What a command prints on success quotes it too: serve --check's
  // verdict names the config file.
  {
    nsbox::test::TempDir tmp("escaped-check");
    REQUIRE(mkdir(tmp.path.c_str(), 0755) == 0);
    const std::string conf = tmp.path + "/" + esc + ".toml";
    std::ofstream(conf) << "[pool]\nblank = 1\n";
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "serve", "--check", "--config", conf};
    auto o = nsbox::test::run_on_pty(s);
    CHECK(o.exit_code == 0);
    CHECK(o.screen.find("is valid") != std::string::npos);
    CHECK(o.screen.find('\x1b') == std::string::npos);
  }
  // The client commands: a name, an unknown option, a token file's path.
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"invoke", "a" + esc},
                                             {"ls", "--x" + esc},
                                             {"ls", "--token-file", "/nonexistent/" + esc}}) {
    auto o = nsbox::test::run_on_pty(nsbox::test::client_spec(args, "http://127.0.0.1:9", "t"));
    CAPTURE(args[0]);
    CHECK(o.exit_code != 0);
    CHECK(o.screen.find('\x1b') == std::string::npos);
    CHECK(o.screen.find("\\x1b]0;owned") != std::string::npos);
  }
}
