// `nsbox run` as an ordinary user: rootless through a user namespace, limits
// on rlimits with one warning (no delegated cgroups for this user). Run by
// rootless_main.cpp as the user who started it, or as nobody when that was
// root: the nsbox under test runs as whoever we are.
#include <doctest/doctest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

using nsbox::test::Outcome;

namespace {

Outcome run_rootless(const std::string& probe, std::vector<std::string> args = {}) {
  REQUIRE(geteuid() != 0);
  nsbox::test::RunSpec s;
  s.argv = {nsbox::test::nsbox_bin(), "run", nsbox::test::probe(probe)};
  s.argv.insert(s.argv.end(), args.begin(), args.end());
  REQUIRE(nsbox::test::rootless_as(geteuid(), &s));
  return nsbox::test::run(s);
}

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
  Outcome o = run_rootless("isolation.py");
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  auto r = o.json();
  CHECK(r["hostname"] == "nsbox");
  CHECK(r["uid"] == 1000);
  CHECK(r["host_uid"] == geteuid());
  CHECK(r["ppid"] == 1);
  CHECK(r["ifaces"] == nlohmann::json::array({"lo"}));
  CHECK(r["write_root"] == "Read-only file system");
  CHECK(r["write_shm"] == "ok");
  CHECK(r["write_dev"] == "Read-only file system");
  CHECK(r["dev_null_utime"] == "Read-only file system");
  CHECK(r["dev_null_write"] == "ok");
  CHECK(r["proc_mask_utime"] == "Read-only file system");
  CHECK(r["tmpfs_superblocks"] == 1);
  CHECK(r["CapEff"] == "0000000000000000");
  CHECK(r["CapBnd"] == "0000000000000000");
  CHECK(r["Seccomp"] == "2");
  CHECK(r["NoNewPrivs"] == "1");
  // Exactly one warning line says the limits fell back to rlimits.
  CHECK(count_lines_with(o.err, "warning:") == 1);
  CHECK(o.err.find("rlimits") != std::string::npos);
}

TEST_CASE("rootless: denied syscalls, memory limit and timeout") {
  std::string ev = R"({"host_hostname": ")" + nsbox::test::host_hostname() + R"("})";
  Outcome s = run_rootless("syscalls.py", {"--event", ev});
  REQUIRE_MESSAGE(s.exit_code == 0, s.err);
  CHECK(s.json()["mount"] == "EPERM");
  CHECK(s.json()["unshare"] == "EPERM");

  Outcome m = run_rootless("memory_hog.py", {"--event", ev, "--memory", "64M"});
  CHECK_MESSAGE(m.exit_code == 137, m.err);
  CHECK(m.err.find("memory limit") != std::string::npos);

  Outcome t = run_rootless("spin.py", {"--timeout", "300ms"});
  CHECK(t.exit_code == 124);

  // No memory cgroup charges the tmpfs's inodes here: their number is
  // bounded by the mount (one per page of tmpfs_mb, 4096 at 16 MiB).
  Outcome f = run_rootless("tmpfs_fill.py", {"--event", ev, "--policy", "strict"});
  REQUIRE_MESSAGE(f.exit_code == 0, f.err);
  CHECK(f.json()["files_error"] == "ENOSPC");
  CHECK(f.json()["files"].get<int>() < 4096);
  CHECK(f.json()["tmp_error"] == "ENOSPC");
}

TEST_CASE("rootless: --factory template is refused with why and what to use") {
  Outcome o = run_rootless("echo.py", {"--factory", "template"});
  CHECK(o.exit_code == 2);  // a usage error: the user can choose otherwise
  CHECK_MESSAGE(o.err.find("needs root") != std::string::npos, o.err);
  CHECK_MESSAGE(o.err.find("--factory exec") != std::string::npos, o.err);
  CHECK(o.out.empty());
}
