// The isolation mechanisms `nsbox bench` compares behind one gateway: how a
// sandbox is made is the only thing that changes between them. nsbox's own
// (the spawner) is the product; the others exist so that its cost can be
// measured side by side with the paper's designs and today's container
// stack, and the daemon refuses them unless its config says
// `allow_comparison_isolation = true`.
//
//   none    the runner as a plain subprocess (the paper's Clofly), dropped to
//           a sandbox's unprivileged uid by setpriv: no namespaces, no limits
//   bwrap   bubblewrap, unprivileged: every namespace, the rootfs read-only
//   crun    an OCI bundle over the rootfs, every namespace (user included),
//   runc    cgroup memory and pids limits; started detached (no relay)
//   docker  the rootfs imported as an image, one container per sandbox, the
//           channel over FIFOs bind-mounted into it (dockerd passes no fds)
//
// This file holds only pure functions (argv and config text), so that what
// each mechanism is asked to do is tested without running it;
// external_factory.cpp runs them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nsbox {

enum class Isolation { Nsbox, None, Bwrap, Crun, Runc, Docker };

std::optional<Isolation> parse_isolation(std::string_view name);
const char* isolation_name(Isolation iso);
// "nsbox, none, bwrap, crun, runc, docker": for error messages.
std::string isolation_names();

// One sandbox of a comparison mechanism.
struct ExternalPlan {
  Isolation iso = Isolation::None;
  std::string id;      // unique on the host: container and cgroup name
  std::string rootfs;  // host path of the shared runtime tree
  std::string tool;    // absolute path of bwrap, crun, runc or docker
  // none, bwrap, docker: the host uid (and gid) the runner runs as. crun,
  // runc: the first host uid of the user namespace's kSlotUids, the runner
  // being uid 1000 inside, as in an nsbox sandbox.
  uid_t uid = 0;
  uint64_t memory_bytes = 0;  // crun, runc, docker: the cgroup limit
  uint32_t pids = 0;
  uint64_t tmpfs_bytes = 64ull << 20;
  std::vector<std::string> env;  // the whole environment, KEY=VALUE
  std::string bundle;            // crun, runc: bundle dir; docker: the FIFOs' dir
  std::string state_root;        // crun, runc: --root
  std::string image;             // docker
  // crun: run every crun command in a private mount namespace without the
  // cgroup2 mount. crun refuses a hybrid host (v1 controllers beside a v2
  // mount) whose v2 side holds any controller; hiding the v2 mount from it,
  // and from nothing else, lets it use the v1 controllers as on a v1 host.
  bool hide_cgroup2 = false;
};

// Inside every mechanism the runner reads requests on fd 3 and writes
// replies on fd 4, its stderr being the log.
std::vector<std::string> runner_command(const ExternalPlan& p);
// The command that starts the sandbox. none and bwrap: it is the sandbox
// (the caller keeps its pid and process group); crun, runc, docker: it
// exits once the sandbox runs detached.
std::vector<std::string> start_argv(const ExternalPlan& p);
// The command that removes a detached sandbox; empty for none and bwrap
// (killing the process group does).
std::vector<std::string> destroy_argv(const ExternalPlan& p);
// crun, runc: the new memory limit of a running sandbox; docker likewise.
// Empty where the mechanism has no limit to change.
std::vector<std::string> set_memory_argv(const ExternalPlan& p, uint64_t memory_bytes);
// crun, runc: the bundle's config.json.
std::string oci_config(const ExternalPlan& p);
// docker: the container's first Python statements. They open the FIFOs
// (stderr, requests, replies) onto fds 2, 3 and 4, write one byte on the
// reply FIFO to say all three are open, and run the runner in the same
// interpreter (a second exec would double the interpreter's start-up).
std::string docker_shim();
// crun, runc: the cgroup (in every hierarchy) above their sandboxes' own.
constexpr const char* kCompareCgroup = "nsbox-compare";
// The byte docker_shim() writes once its FIFOs are open.
constexpr char kShimReady = 'R';

}  // namespace nsbox
