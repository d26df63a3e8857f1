#include "gateway/isolation.hpp"

#include <nlohmann/json.hpp>

#include "rootfs/rootfs.hpp"
#include "sandbox/uid_slots.hpp"

namespace nsbox {

namespace {

using json = nlohmann::json;

constexpr struct {
  Isolation iso;
  const char* name;
} kNames[] = {{Isolation::Nsbox, "nsbox"}, {Isolation::None, "none"},
              {Isolation::Bwrap, "bwrap"}, {Isolation::Crun, "crun"},
              {Isolation::Runc, "runc"},   {Isolation::Docker, "docker"}};

constexpr const char* kSetpriv = "/usr/bin/setpriv";
constexpr uid_t kInsideUid = 1000;  // the rootfs's "sandbox" user

// setpriv as the unprivileged uid, with no supplementary groups, no
// capabilities to inherit and no_new_privs: what none and bwrap start under.
std::vector<std::string> drop_to(uid_t uid) {
  std::string u = std::to_string(uid);
  return {kSetpriv,
          "--reuid=" + u,
          "--regid=" + u,
          "--clear-groups",
          "--inh-caps=-all",
          "--no-new-privs",
          "--"};
}

std::string mib(uint64_t bytes) {
  return std::to_string(bytes >> 20) + "m";
}

// crun, runc: the runtime's command, in a private mount namespace without
// the cgroup2 mount when asked (ExternalPlan::hide_cgroup2).
std::vector<std::string> runtime(const ExternalPlan& p, std::vector<std::string> args) {
  std::vector<std::string> argv;
  if (p.hide_cgroup2)
    argv = {"/usr/bin/unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            "umount -l /sys/fs/cgroup/unified && exec \"$0\" \"$@\""};
  argv.insert(argv.end(), {p.tool, "--root", p.state_root});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace

std::optional<Isolation> parse_isolation(std::string_view name) {
  for (const auto& n : kNames)
    if (name == n.name) return n.iso;
  return std::nullopt;
}

const char* isolation_name(Isolation iso) {
  for (const auto& n : kNames)
    if (n.iso == iso) return n.name;
  return "?";
}

std::string isolation_names() {
  std::string out;
  for (const auto& n : kNames) out += (out.empty() ? "" : ", ") + std::string(n.name);
  return out;
}

std::vector<std::string> runner_command(const ExternalPlan& p) {
  // none runs the rootfs's interpreter in place: the same files, seen from
  // the host.
  std::string root = p.iso == Isolation::None ? p.rootfs : "";
  return {root + kHostPython, "-I", "-S", root + kRunnerPath, "--fd", "3", "--out-fd", "4"};
}

std::vector<std::string> start_argv(const ExternalPlan& p) {
  std::vector<std::string> argv;
  switch (p.iso) {
    case Isolation::Nsbox:
      return {};
    case Isolation::None:
      argv = drop_to(p.uid);
      break;
    case Isolation::Bwrap: {
      // Unprivileged, as bubblewrap is meant to run: its user namespace maps
      // the caller's uid to the sandbox user.
      argv = drop_to(p.uid);
      std::vector<std::string> b = {p.tool,
                                    "--unshare-all",
                                    "--unshare-user",
                                    "--uid",
                                    std::to_string(kInsideUid),
                                    "--gid",
                                    std::to_string(kInsideUid),
                                    "--die-with-parent",
                                    "--new-session",
                                    "--cap-drop",
                                    "ALL",
                                    "--ro-bind",
                                    p.rootfs,
                                    "/",
                                    "--proc",
                                    "/proc",
                                    "--dev",
                                    "/dev",
                                    "--size",
                                    std::to_string(p.tmpfs_bytes),
                                    "--tmpfs",
                                    "/tmp",
                                    "--hostname",
                                    "nsbox",
                                    "--chdir",
                                    "/tmp",
                                    "--"};
      argv.insert(argv.end(), b.begin(), b.end());
      break;
    }
    case Isolation::Crun:
    case Isolation::Runc:
      // Detached: the runtime exits once the container runs, so no runtime
      // process stays per sandbox; fds 3 and 4 (the channel) are passed on.
      argv = runtime(p, {"run", "--detach", "--bundle", p.bundle, "--preserve-fds", "2", p.id});
      return argv;
    case Isolation::Docker: {
      std::string u = std::to_string(p.uid);
      argv = {p.tool,
              "run",
              "--detach",
              "--name",
              p.id,
              "--network",
              "none",
              "--user",
              u + ":" + u,
              "--memory",
              mib(p.memory_bytes),
              "--memory-swap",
              mib(p.memory_bytes),
              "--pids-limit",
              std::to_string(p.pids),
              "--read-only",
              "--tmpfs",
              "/tmp:size=" + mib(p.tmpfs_bytes),
              "--cap-drop",
              "ALL",
              "--security-opt",
              "no-new-privileges",
              "--hostname",
              "nsbox",
              "--log-driver",
              "none",
              "--volume",
              p.bundle + ":/chan",
              "--workdir",
              "/tmp"};
      for (const auto& e : p.env) argv.insert(argv.end(), {"--env", e});
      argv.insert(argv.end(), {p.image, kHostPython, "-I", "-S", "-c", docker_shim()});
      return argv;
    }
  }
  auto cmd = runner_command(p);
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

std::vector<std::string> destroy_argv(const ExternalPlan& p) {
  switch (p.iso) {
    case Isolation::Crun:
    case Isolation::Runc:
      return runtime(p, {"delete", "--force", p.id});
    case Isolation::Docker:
      return {p.tool, "rm", "--force", p.id};
    default:
      return {};
  }
}

std::vector<std::string> set_memory_argv(const ExternalPlan& p, uint64_t memory_bytes) {
  std::string bytes = std::to_string(memory_bytes);
  switch (p.iso) {
    case Isolation::Crun:
    case Isolation::Runc:
      return runtime(p, {"update", "--memory", bytes, p.id});
    case Isolation::Docker:
      return {p.tool, "update", "--memory", bytes, "--memory-swap", bytes, p.id};
    default:
      return {};
  }
}

std::string oci_config(const ExternalPlan& p) {
  json caps = json::array();
  std::string tmpfs = "size=" + std::to_string(p.tmpfs_bytes);
  json cfg = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", kInsideUid}, {"gid", kInsideUid}}},
        {"args", runner_command(p)},
        {"env", p.env},
        {"cwd", "/tmp"},
        {"capabilities",
         {{"bounding", caps},
          {"effective", caps},
          {"permitted", caps},
          {"inheritable", caps},
          {"ambient", caps}}},
        {"rlimits", json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 256}, {"soft", 256}}})},
        {"noNewPrivileges", true}}},
      {"root", {{"path", p.rootfs}, {"readonly", true}}},
      {"hostname", "nsbox"},
      {"mounts", json::array({{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
                              {{"destination", "/dev"},
                               {"type", "tmpfs"},
                               {"source", "tmpfs"},
                               {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
                              {{"destination", "/tmp"},
                               {"type", "tmpfs"},
                               {"source", "tmpfs"},
                               {"options", {"nosuid", "nodev", "mode=1777", tmpfs}}}})},
      {"linux",
       {{"namespaces", json::array({{{"type", "pid"}},
                                    {{"type", "network"}},
                                    {{"type", "ipc"}},
                                    {{"type", "uts"}},
                                    {{"type", "mount"}},
                                    {{"type", "user"}},
                                    {{"type", "cgroup"}}})},
        {"uidMappings",
         json::array({{{"containerID", 0}, {"hostID", p.uid}, {"size", kSlotUids}}})},
        {"gidMappings",
         json::array({{{"containerID", 0}, {"hostID", p.uid}, {"size", kSlotUids}}})},
        {"resources", {{"memory", {{"limit", p.memory_bytes}}}, {"pids", {{"limit", p.pids}}}}},
        {"cgroupsPath", std::string("/") + kCompareCgroup + "/" + p.id},
        {"maskedPaths",
         {"/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/sched_debug", "/sys/firmware"}},
        {"readonlyPaths",
         {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
  return cfg.dump(2) + "\n";
}

std::string docker_shim() {
  // Each FIFO is opened, moved onto its fd and the original closed, in an
  // order that never closes an fd already placed. stderr first: the host
  // holds its read end open before the container starts.
  return "import os, sys\n"
         "def place(path, flags, fd):\n"
         "    f = os.open(path, flags)\n"
         "    if f != fd:\n"
         "        os.dup2(f, fd)\n"
         "        os.close(f)\n"
         "place('/chan/err', os.O_WRONLY, 2)\n"
         "place('/chan/in', os.O_RDONLY, 3)\n"
         "place('/chan/out', os.O_WRONLY, 4)\n"
         "os.write(4, b'" +
         std::string(1, kShimReady) +
         "')\n"
         "p = '" +
         std::string(kRunnerPath) +
         "'\n"
         "sys.argv = [p, '--fd', '3', '--out-fd', '4']\n"
         "exec(compile(open(p).read(), p, 'exec'), {'__name__': '__main__', '__file__': p})\n";
}

}  // namespace nsbox
