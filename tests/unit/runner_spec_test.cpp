// The one spec builder behind `nsbox run` and the daemon's profiles: the
// policy lands in the spec, and the runner is started the same way by both.
#include "rootfs/runner_spec.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "rootfs/rootfs.hpp"

using namespace nsbox;

namespace {

// The value after flag in argv, or "" when flag is absent.
std::string after(const std::vector<std::string>& argv, const std::string& flag) {
  auto it = std::find(argv.begin(), argv.end(), flag);
  return it != argv.end() && it + 1 != argv.end() ? *(it + 1) : "";
}

Policy unusual_policy() {
  // Every limit off its default, so that a field the builder forgot shows.
  Policy p;
  p.limits.memory_bytes = 96ull << 20;
  p.limits.swap_bytes = 3ull << 20;
  p.limits.pids = 7;
  p.limits.cpu_millicores = 250;
  p.limits.tmpfs_bytes = 5ull << 20;
  p.limits.wall_ms = 1234;
  p.limits.nofile = 33;
  p.limits.fsize_bytes = 9ull << 20;
  return p;
}

}  // namespace

TEST_CASE("runner_spec: the policy's limits and network, the rootfs and the stage dir") {
  Policy p = unusual_policy();
  IdMap ids;
  ids.rootless = true;
  ids.host_uid = 4321;
  ids.host_gid = 8765;
  SandboxSpec s = runner_spec(p, "/srv/rootfs", "/run/x/stage", ids, "/home/u/code/fn.py");
  CHECK(s.rootfs == "/srv/rootfs");
  CHECK(s.stage_dir == "/run/x/stage");
  CHECK(s.limits.memory_bytes == 96ull << 20);
  CHECK(s.limits.swap_bytes == 3ull << 20);
  CHECK(s.limits.pids == 7);
  CHECK(s.limits.cpu_millicores == 250);
  CHECK(s.limits.tmpfs_bytes == 5ull << 20);
  CHECK(s.limits.wall_ms == 1234);
  CHECK(s.limits.nofile == 33);
  CHECK(s.limits.fsize_bytes == 9ull << 20);
  CHECK(s.network == p.network);
  CHECK(s.ids.rootless);
  CHECK(s.ids.host_uid == 4321);
  CHECK(s.ids.host_gid == 8765);
  // What only the caller knows is left at the spec's defaults.
  CHECK(s.id.empty());
  CHECK(s.stderr_fd == -1);
  CHECK(s.use_cgroups);
}

TEST_CASE("runner_spec: a function file is mounted, named inside by its base name, not loaded") {
  SandboxSpec s = runner_spec(unusual_policy(), "/r", "/s", IdMap{}, "/home/u/code/my_fn.py");
  CHECK(s.code_path == "/home/u/code/my_fn.py");
  CHECK(function_path_inside(s) == s.code_mount + "/my_fn.py");
  CHECK(function_path_inside(s) == "/var/task/my_fn.py");
  REQUIRE(s.argv.size() >= 4);
  CHECK(s.argv[0] == kHostPython);
  CHECK(std::find(s.argv.begin(), s.argv.end(), std::string(kRunnerPath)) != s.argv.end());
  // Loaded by a frame once the sandbox is set up, never at the runner's start.
  CHECK(std::find(s.argv.begin(), s.argv.end(), "--function") == s.argv.end());
  CHECK(std::find(s.argv.begin(), s.argv.end(), "--handler") == s.argv.end());
  // The channel: requests on 3, replies on 4, as make_channel's ends are placed.
  CHECK(after(s.argv, "--fd") == "3");
  CHECK(after(s.argv, "--out-fd") == "4");
  CHECK(s.env == runner_env());
}

TEST_CASE("runner_spec: without a function the sandbox is blank") {
  SandboxSpec s = runner_spec(unusual_policy(), "/r", "/s", IdMap{});
  CHECK(s.code_path.empty());
  CHECK(std::find(s.argv.begin(), s.argv.end(), "--function") == s.argv.end());
  CHECK(std::find(s.argv.begin(), s.argv.end(), "--handler") == s.argv.end());
  CHECK(s.argv == runner_argv(kRunnerPath));
  CHECK(s.env == runner_env());
}

TEST_CASE("runner_env: a fixed environment of the sandbox's own") {
  std::vector<std::string> env = runner_env();
  CHECK(std::find(env.begin(), env.end(), "HOME=/tmp") != env.end());
  CHECK(std::find(env.begin(), env.end(), "PATH=/usr/bin:/bin") != env.end());
}

TEST_CASE("caller_ids: rootless exactly when not root, mapping the caller's own ids") {
  IdMap ids = caller_ids();
  CHECK(ids.rootless == (geteuid() != 0));
  CHECK(ids.host_uid == geteuid());
  CHECK(ids.host_gid == getegid());
}
