// The template factory's mechanism (docs/architecture.md §14). A template is
// a long-lived process that has the runtime already initialised (for Python:
// the interpreter started and common modules imported) and never runs user
// code. A new sandbox is cloned from it instead of exec'd: the same
// child_main, from the same plan, with the same namespaces, mounts, cgroup,
// uid slot, capabilities and seccomp filter, but at step 16 the runner goes
// on in its copy of the template rather than exec'ing a fresh interpreter.
//
// Who owns what: the process asking (the spawner, or `nsbox run`) prepares
// everything it would for an exec'd sandbox (cgroup leaf, uid slot, sync
// socket, channel, code tree), sends the spec and the child's fds, and the
// template clones with CLONE_PARENT: the sandbox's PID 1 is the asker's
// child, which reaps it, gets its exit status and is its death signal's
// parent, exactly as if it had cloned it itself. The template keeps nothing
// of a sandbox once it has answered.
//
// The template itself is an exec'd binary (tools/nsbox_template.cpp), so it
// holds nothing of the daemon's memory; it runs as root, as the spawner
// does, because it clones sandboxes as their slots' uids.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "sandbox/child.hpp"
#include "sandbox/launch.hpp"
#include "sandbox/mounts.hpp"
#include "sandbox/seccomp.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

struct TemplateOptions {
  std::string binary;                // the template program (nsbox-template)
  std::string rootfs;                // the runtime tree its interpreter loads from
  std::vector<std::string> modules;  // imported before the first clone
  // Notes on what works less well on this host (no CAP_SYS_RESOURCE for
  // /proc/self/exe) go unsaid: nsbox run without -v, where each run would
  // repeat them.
  bool quiet = false;
};

// What a clone request carries besides the spec: fds in the asker's numbering.
struct TemplateCloneFds {
  int sync = -1, request = -1, reply = -1, stderr_fd = -1;
  int code_tree = -1;             // root mode with code: the open_tree copy
  int cgroup_dirfd = -1;          // cgroup2: CLONE_INTO_CGROUP
  std::vector<int> cgroup_tasks;  // cgroup v1: the leaf's `tasks` files (ChildPlan)
  int netns = -1;                 // a network namespace made ahead (netns.hpp)
};

// The asker's handle on a running template. Move-only; the destructor kills
// and reaps it. Call from a single-threaded process, or before threads.
class TemplateProcess {
 public:
  TemplateProcess() = default;
  TemplateProcess(TemplateProcess&& o) noexcept { *this = std::move(o); }
  TemplateProcess& operator=(TemplateProcess&& o) noexcept;
  ~TemplateProcess() { stop(); }

  // Starts the program and waits (up to 30 s) until it says it is ready, or
  // why it is not.
  static Result<TemplateProcess> start(const TemplateOptions& options);

  // The template clones a sandbox child running child_main on the plan it
  // builds from these (build_child_plan, with the template's shared root
  // where it has one); returns its pid, a child of this process, and sets
  // *shared_root_dev to the device of the root it binds (0: an overlay of
  // its own), which the plan built here lacks.
  Result<pid_t> clone(const SandboxSpec& spec, const MountSources& sources, const IdMap& ids,
                      bool has_cgroup, const SeccompProgram& bpf, uint64_t flags,
                      const TemplateCloneFds& fds, dev_t* shared_root_dev);

  pid_t pid() const { return pid_; }
  // False once the process has exited (then reaped here).
  bool alive();
  // Kills and reaps it. Idempotent.
  void stop();

 private:
  pid_t pid_ = -1;
  UniqueFd sock_;
};

// The template's side: after the runtime is ready, says so (or why it is not)
// on sock; then serves clone requests until the socket closes. run is what
// the runner does in the clone instead of execve (ChildPlan::run_in_process).
Result<TemplateOptions> template_receive_options(int sock);  // binary is left empty
Status template_send_ready(int sock, const Status& init);
// In the template's own mount namespace: the shared read-only root
// (shared_root.hpp) that clones naming the same tree bind instead of
// mounting an overlay each. Without it (the reason said on stderr) every
// clone mounts its own, as an exec'd sandbox does.
// Fails only if a half-made mount could not be undone.
Status template_share_root(const std::string& rootfs);
[[noreturn]] void template_serve(int sock, void (*run)(const ChildPlan& plan));

}  // namespace nsbox
