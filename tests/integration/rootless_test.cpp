// `nsbox run` as an ordinary user: rootless through a user namespace, limits
// on rlimits with one warning (no delegated cgroups for this user).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "tests/integration/harness.hpp"

using nsbox::test::Outcome;

namespace {

constexpr uid_t kUser = 65534;  // nobody: exists on every Debian machine

struct RootlessEnv {
  std::string dir;
  RootlessEnv() {
    // A per-user rootfs and cache dir the unprivileged user owns; built once
    // by the first test and reused.
    dir = "/tmp/nsbox-rootless-test";
    mkdir(dir.c_str(), 0755);
    if (chown(dir.c_str(), kUser, kUser) != 0) FAIL("chown " << dir);
  }
  Outcome run(const std::string& probe, std::vector<std::string> args = {}) const {
    nsbox::test::RunSpec s;
    s.argv = {nsbox::test::nsbox_bin(), "run", nsbox::test::probe(probe)};
    s.argv.insert(s.argv.end(), args.begin(), args.end());
    s.env = {"HOME=/nonexistent", "XDG_DATA_HOME=" + dir + "/data",
             "XDG_CACHE_HOME=" + dir + "/cache", "XDG_RUNTIME_DIR=" + dir + "/run"};
    s.as_uid = kUser;
    s.timeout_s = 120;
    return nsbox::test::run(s);
  }
};

size_t count_lines_with(const std::string& text, const std::string& needle) {
  size_t n = 0, pos = 0;
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    n++;
    pos += needle.size();
  }
  return n;
}

}  // namespace

TEST_CASE("rootless: isolated through a user namespace, limits on rlimits") {
  RootlessEnv env;
  Outcome o = env.run("isolation.py");
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  auto r = o.json();
  CHECK(r["hostname"] == "nsbox");
  CHECK(r["uid"] == 1000);
  CHECK(r["host_uid"] == kUser);
  CHECK(r["ppid"] == 1);
  CHECK(r["ifaces"] == nlohmann::json::array({"lo"}));
  CHECK(r["write_root"] == "Read-only file system");
  CHECK(r["CapEff"] == "0000000000000000");
  CHECK(r["CapBnd"] == "0000000000000000");
  CHECK(r["Seccomp"] == "2");
  CHECK(r["NoNewPrivs"] == "1");
  // Exactly one warning line says the limits fell back to rlimits.
  CHECK(count_lines_with(o.err, "warning:") == 1);
  CHECK(o.err.find("rlimits") != std::string::npos);
}

TEST_CASE("rootless: denied syscalls, memory limit and timeout") {
  RootlessEnv env;
  std::string ev = R"({"host_hostname": ")" + nsbox::test::host_hostname() + R"("})";
  Outcome s = env.run("syscalls.py", {"--event", ev});
  REQUIRE_MESSAGE(s.exit_code == 0, s.err);
  CHECK(s.json()["mount"] == "EPERM");
  CHECK(s.json()["unshare"] == "EPERM");

  Outcome m = env.run("memory_hog.py", {"--event", ev, "--memory", "64M"});
  CHECK_MESSAGE(m.exit_code == 137, m.err);
  CHECK(m.err.find("memory limit") != std::string::npos);

  Outcome t = env.run("spin.py", {"--timeout", "300ms"});
  CHECK(t.exit_code == 124);
}
