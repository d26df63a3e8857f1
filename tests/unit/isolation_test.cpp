// What each comparison mechanism is asked to do (gateway/isolation.cpp):
// nothing here runs it; the integration suite and nsbox bench do. These
// pin the properties the comparison's fairness and the host's safety rest
// on: no mechanism runs the function as host root, each gets the rootfs
// read-only, and the limits reach the ones that have them.
#include "gateway/isolation.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

using namespace nsbox;

namespace {

ExternalPlan plan(Isolation iso) {
  ExternalPlan p;
  p.iso = iso;
  p.id = "nsbox-test-1";
  p.rootfs = "/var/lib/nsbox/rootfs";
  p.tool = "/usr/bin/tool";
  p.uid = 0x70010000 + 1000;
  p.memory_bytes = 96ull << 20;
  p.pids = 32;
  p.env = {"PATH=/usr/bin:/bin", "HOME=/tmp"};
  p.bundle = "/run/nsbox/compare-1/nsbox-test-1";
  p.state_root = "/run/nsbox/compare-1/state";
  p.image = "nsbox-runtime:0123";
  return p;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The element after s, or "".
std::string after(const std::vector<std::string>& v, const std::string& s) {
  auto it = std::find(v.begin(), v.end(), s);
  return it == v.end() || it + 1 == v.end() ? "" : *(it + 1);
}

}  // namespace

TEST_CASE("isolation: names parse back to what they name, and nothing else parses") {
  for (Isolation i : {Isolation::Nsbox, Isolation::None, Isolation::Bwrap, Isolation::Crun,
                      Isolation::Runc, Isolation::Docker})
    CHECK(parse_isolation(isolation_name(i)) == i);
  CHECK_FALSE(parse_isolation("Docker"));
  CHECK_FALSE(parse_isolation(""));
  CHECK_FALSE(parse_isolation("none "));
  CHECK(isolation_names() == "nsbox, none, bwrap, crun, runc, docker");
}

TEST_CASE("isolation: none and bwrap start under setpriv as the unprivileged uid") {
  for (Isolation i : {Isolation::None, Isolation::Bwrap}) {
    auto argv = start_argv(plan(i));
    REQUIRE(argv.size() > 8);
    CHECK(argv[0] == "/usr/bin/setpriv");
    CHECK(has(argv, "--reuid=" + std::to_string(0x70010000 + 1000)));
    CHECK(has(argv, "--regid=" + std::to_string(0x70010000 + 1000)));
    CHECK(has(argv, "--clear-groups"));
    CHECK(has(argv, "--no-new-privs"));
    CHECK(has(argv, "--inh-caps=-all"));
    // The runner's own command is last, reading fd 3 and writing fd 4.
    CHECK(argv[argv.size() - 4] == "--fd");
    CHECK(argv[argv.size() - 3] == "3");
    CHECK(argv.back() == "4");
  }
  // none runs the rootfs's interpreter and runner in place.
  auto none = start_argv(plan(Isolation::None));
  CHECK(has(none, "/var/lib/nsbox/rootfs/usr/bin/python3"));
  CHECK(has(none, "/var/lib/nsbox/rootfs/opt/nsbox/runner.py"));
  // bwrap: every namespace, the rootfs read-only at /, nothing bound writable.
  auto bw = start_argv(plan(Isolation::Bwrap));
  CHECK(has(bw, "/usr/bin/tool"));
  CHECK(has(bw, "--unshare-all"));
  CHECK(has(bw, "--unshare-user"));
  CHECK(has(bw, "--die-with-parent"));
  CHECK(after(bw, "--ro-bind") == "/var/lib/nsbox/rootfs");
  CHECK_FALSE(has(bw, "--bind"));
  CHECK_FALSE(has(bw, "--share-net"));
  CHECK(after(bw, "--cap-drop") == "ALL");
  CHECK(has(bw, "/usr/bin/python3"));
  CHECK(destroy_argv(plan(Isolation::None)).empty());
  CHECK(set_memory_argv(plan(Isolation::Bwrap), 1 << 30).empty());
}

TEST_CASE("isolation: the OCI config maps the runner to uid 1000 of a user namespace, no caps") {
  auto cfg = nlohmann::json::parse(oci_config(plan(Isolation::Crun)));
  CHECK(cfg["process"]["user"]["uid"] == 1000);
  CHECK(cfg["process"]["noNewPrivileges"] == true);
  for (const char* set : {"bounding", "effective", "permitted", "inheritable", "ambient"})
    CHECK(cfg["process"]["capabilities"][set].empty());
  CHECK(cfg["process"]["args"][0] == "/usr/bin/python3");
  CHECK(cfg["process"]["env"] == nlohmann::json({"PATH=/usr/bin:/bin", "HOME=/tmp"}));
  CHECK(cfg["root"]["path"] == "/var/lib/nsbox/rootfs");
  CHECK(cfg["root"]["readonly"] == true);
  std::vector<std::string> ns;
  for (const auto& n : cfg["linux"]["namespaces"]) ns.push_back(n["type"]);
  for (const char* want : {"pid", "network", "ipc", "uts", "mount", "user", "cgroup"})
    CHECK_MESSAGE(has(ns, want), want);
  CHECK(cfg["linux"]["uidMappings"][0]["hostID"] == 0x70010000 + 1000);
  CHECK(cfg["linux"]["uidMappings"][0]["containerID"] == 0);
  CHECK(cfg["linux"]["gidMappings"][0]["hostID"] == 0x70010000 + 1000);
  CHECK(cfg["linux"]["resources"]["memory"]["limit"] == 96ull << 20);
  CHECK(cfg["linux"]["resources"]["pids"]["limit"] == 32);
  CHECK(cfg["linux"]["cgroupsPath"] == "/nsbox-compare/nsbox-test-1");
}

TEST_CASE("isolation: crun and runc start detached with the channel's fds, and are deleted") {
  for (Isolation i : {Isolation::Crun, Isolation::Runc}) {
    auto p = plan(i);
    auto argv = start_argv(p);
    CHECK(argv[0] == "/usr/bin/tool");
    CHECK(after(argv, "--root") == p.state_root);
    CHECK(has(argv, "--detach"));
    CHECK(after(argv, "--preserve-fds") == "2");
    CHECK(after(argv, "--bundle") == p.bundle);
    CHECK(argv.back() == p.id);
    auto del = destroy_argv(p);
    CHECK(has(del, "delete"));
    CHECK(has(del, "--force"));
    CHECK(del.back() == p.id);
    auto mem = set_memory_argv(p, 64ull << 20);
    CHECK(after(mem, "--memory") == std::to_string(64ull << 20));
    // On a hybrid host every runtime command runs in a mount namespace of
    // its own without the cgroup2 mount.
    p.hide_cgroup2 = true;
    for (const auto& cmd : {start_argv(p), destroy_argv(p), set_memory_argv(p, 1 << 26)}) {
      CHECK(cmd[0] == "/usr/bin/unshare");
      CHECK(has(cmd, "--mount"));
      CHECK(has(cmd, "/usr/bin/tool"));
    }
  }
}

TEST_CASE("isolation: a docker container gets no network, no caps, the limits and the FIFOs") {
  auto p = plan(Isolation::Docker);
  auto argv = start_argv(p);
  CHECK(argv[0] == "/usr/bin/tool");
  CHECK(argv[1] == "run");
  CHECK(has(argv, "--detach"));
  CHECK(after(argv, "--name") == p.id);
  CHECK(after(argv, "--network") == "none");
  std::string u = std::to_string(0x70010000 + 1000);
  CHECK(after(argv, "--user") == u + ":" + u);
  CHECK(after(argv, "--memory") == "96m");
  CHECK(after(argv, "--pids-limit") == "32");
  CHECK(after(argv, "--cap-drop") == "ALL");
  CHECK(after(argv, "--security-opt") == "no-new-privileges");
  CHECK(has(argv, "--read-only"));
  CHECK(after(argv, "--volume") == p.bundle + ":/chan");
  CHECK(after(argv, "--env") == "PATH=/usr/bin:/bin");
  CHECK(has(argv, "nsbox-runtime:0123"));
  CHECK(argv.back() == docker_shim());
  CHECK(destroy_argv(p) == std::vector<std::string>{"/usr/bin/tool", "rm", "--force", p.id});
  // The shim opens all three FIFOs before it says so, and only then runs
  // the runner.
  std::string shim = docker_shim();
  size_t ready = shim.find("os.write(4, b'R')");
  REQUIRE(ready != std::string::npos);
  for (const char* f : {"/chan/err", "/chan/in", "/chan/out"}) CHECK(shim.find(f) < ready);
  CHECK(shim.find("exec(compile(") > ready);
}
