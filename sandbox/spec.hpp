// Plain, immutable description of one sandbox. Policy files and CLI flags
// are turned into these structs once (policies/policy.cpp); nothing under
// sandbox/ knows about TOML or HTTP.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nsbox {

struct Limits {
  uint64_t memory_bytes = 128ull << 20;
  uint64_t swap_bytes = 0;
  uint32_t pids = 64;
  uint32_t cpu_millicores = 1000;  // 1000 = one full core; 0 = no cap (policies allow 10 up)
  uint64_t tmpfs_bytes = 64ull << 20;
  uint32_t wall_ms = 3000;
  uint32_t nofile = 256;
  uint64_t fsize_bytes = 64ull << 20;
  bool operator==(const Limits&) const = default;
};

enum class NetworkMode { None };

enum class SeccompDefault { Errno, KillProcess, Trap, Log };

struct SeccompPolicy {
  SeccompDefault default_action = SeccompDefault::Errno;
  int errno_value = 1;  // EPERM
  // false: clone must carry CLONE_THREAD, so threads work but fork does not
  // (glibc's fork is clone(SIGCHLD)); an argument filter, not a list entry.
  bool allow_fork = true;
  std::vector<std::string> allow;  // syscall names, sorted, unique
};

struct Policy {
  std::string name;    // "default", or the file's path
  std::string source;  // file the policy came from ("<built-in>/default.toml")
  std::string description;
  Limits limits;
  NetworkMode network = NetworkMode::None;
  SeccompPolicy seccomp;
};

// How the sandbox's uid/gid inside map to the host.
struct IdMap {
  uid_t inside_uid = 1000;  // the sandbox user, as in the rootfs's /etc/passwd
  gid_t inside_gid = 1000;
  // Root mode maps inside 0..4095 onto host_base.., so the sandbox user is
  // host_base+1000 and never host uid 0; Sandbox::start sets host_base to
  // the sandbox's own uid slot (uid_slots.hpp), so no two live sandboxes
  // share a host uid. Rootless maps only inside_uid onto the caller's own
  // uid (all an unprivileged writer may map): all of a caller's sandboxes
  // share it, and its per-user kernel counters.
  bool rootless = false;
  uid_t host_base = 0x70000000;
  uid_t host_uid = 0;  // rootless: the caller's uid/gid
  gid_t host_gid = 0;
};

// How much of a sandbox is built, one layer on top of the other in this
// order: nsbox bench layers measures what each costs. Every sandbox the
// product makes has all of them; fewer only when a config asks for them
// beside allow_comparison_isolation (gateway/config.cpp). Below kLayerUser
// setup runs as host root (no user namespace to be root in) and the runner
// is switched to the slot's host uid before exec; below kLayerMount the
// runner sees the host's tree, so argv's absolute paths are taken to be
// inside the rootfs and prefixed with it.
enum SandboxLayer : int {
  kLayerNone = 0,        // a child of the spawner as the slot's uid, nothing else
  kLayerMount = 1,       // + mount namespace, overlay root, pivot_root, /proc, /dev, /tmp
  kLayerPid = 2,         // + PID namespace
  kLayerNet = 3,         // + network namespace (loopback only)
  kLayerIpcUts = 4,      // + IPC and UTS namespaces (own hostname)
  kLayerUser = 5,        // + user namespace (setup as the namespace's root)
  kLayerCgroups = 6,     // + cgroup leaf with limits, cgroup namespace
  kLayerPrivileges = 7,  // + capability bounding set dropped, caps cleared, no_new_privs
  kLayerSeccomp = 8,     // + seccomp filters (the runner's and PID 1's)
  kLayerAll = kLayerSeccomp,
};
const char* layer_name(int layer);

struct SandboxSpec {
  std::string id;                        // short, unique on the host, used in cgroup names
  std::string rootfs;                    // host path of the shared read-only lower layer
  std::string code_path;                 // host file or directory, mounted read-only
  std::string code_mount = "/var/task";  // fixed path inside
  std::string stage_dir;                 // host dir the child mounts its private staging tmpfs on
  std::string hostname = "nsbox";
  Limits limits;
  NetworkMode network = NetworkMode::None;
  IdMap ids;
  bool use_cgroups = true;        // false: limits fall back to rlimits
  int layers = kLayerAll;         // SandboxLayer: always kLayerAll but in nsbox bench
  std::vector<std::string> argv;  // argv[0] is a path inside the sandbox
  std::vector<std::string> env;   // KEY=VALUE, the whole environment
  // Non-zero: code_path must be this file (st_dev, st_ino) when it is
  // mounted, checked on the very tree attached (root mode): `sudo nsbox run`
  // opened it with the invoking user's rights, and a path swapped since
  // must not bring root's reach back.
  uint64_t code_dev = 0, code_ino = 0;
  int stderr_fd = -1;  // >= 0: the sandbox's stderr (and stdout); else ours
  // >= 0: a function template's fork socket (docs/architecture.md §15), fd 6
  // in the runner. Exec'd sandboxes only: never sent to a template.
  int fork_fd = -1;
};

}  // namespace nsbox
