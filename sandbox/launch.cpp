#include "sandbox/launch.hpp"

#include <linux/capability.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "sandbox/privileges.hpp"

namespace nsbox {

namespace {

// Root mode: clone3 runs with the slot's host uid as effective uid, because
// the kernel charges a user namespace's per-user counters (ucounts: inotify,
// mqueue, user namespaces, RLIMIT_NPROC, ...) to the uid that created it.
// Real and saved uid stay 0, so the permitted capabilities are kept; the
// effective set that the switch cleared is raised again, so clone3 keeps
// root's rights (CLONE_INTO_CGROUP into a root-owned leaf). On destruction
// euid 0 comes back (which restores the effective set), and what a credential
// change resets in the caller is put back: its parent-death signal, which the
// kernel clears (raised at once if the parent died meanwhile). The caller
// stays non-dumpable, which suits a process that clones sandboxes.
class CloneAs {
 public:
  CloneAs() = default;
  CloneAs(const CloneAs&) = delete;
  CloneAs& operator=(const CloneAs&) = delete;
  Status become(uid_t euid) {
    ppid_ = getppid();
    if (prctl(PR_GET_PDEATHSIG, &pdeathsig_) != 0) return sys_error("prctl", "PR_GET_PDEATHSIG");
    if (setresuid(-1, euid, -1) != 0)
      return sys_error("setresuid", "slot uid " + std::to_string(euid));
    active_ = true;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) return sys_error("capget");
    for (auto& d : data) d.effective = d.permitted;
    if (syscall(SYS_capset, &hdr, data) != 0) return sys_error("capset", "effective = permitted");
    return {};
  }
  ~CloneAs() {
    if (!active_) return;
    // Cannot fail: the saved uid is 0. If it did, this process would go on
    // without root's effective rights, and every later step fails loudly.
    if (setresuid(-1, 0, -1) != 0) LOG_ERROR("setresuid(-1, 0, -1): %s", strerror(errno));
    if (pdeathsig_ != 0) {
      prctl(PR_SET_PDEATHSIG, pdeathsig_);
      if (getppid() != ppid_) raise(pdeathsig_);
    }
  }

 private:
  bool active_ = false;
  int pdeathsig_ = 0;
  pid_t ppid_ = 0;
};

}  // namespace

void build_child_plan(const SandboxSpec& spec, const MountSources& sources, const IdMap& ids,
                      bool has_cgroup, const SeccompProgram& bpf, const ChildFds& fds,
                      std::vector<std::string>* argv, ChildPlan* plan) {
  ChildPlan& p = *plan;
  p.mounts = plan_mounts(spec, sources);
  p.rlimits = plan_rlimits(spec.limits, has_cgroup);
  // Without a mount namespace the runner sees the host's tree: argv's
  // absolute paths name files inside the rootfs.
  *argv = spec.argv;
  if (spec.layers < kLayerMount)
    for (auto& a : *argv)
      if (a.starts_with("/")) a = spec.rootfs + a;
  p.argv.clear();
  for (const auto& a : *argv) p.argv.push_back(const_cast<char*>(a.c_str()));
  p.argv.push_back(nullptr);
  p.envp.clear();
  for (const auto& e : spec.env) p.envp.push_back(const_cast<char*>(e.c_str()));
  p.envp.push_back(nullptr);
  p.bpf = bpf.fprog();
  p.hostname = spec.hostname.c_str();
  p.sync_fd = fds.sync;
  p.request_fd = fds.request;
  p.reply_fd = fds.reply;
  p.stderr_fd = fds.stderr_fd;
  p.fork_fd = fds.fork;
  p.init_program_fd = fds.init_program;
  p.parent_sync_fd = fds.parent_sync;
  p.parent_request_fd = fds.parent_request;
  p.parent_reply_fd = fds.parent_reply;
  p.cgroup_tasks_fds = fds.cgroup_tasks;
  p.root_mode = !ids.rootless;
  p.layers = spec.layers;
  p.uid = spec.ids.inside_uid;
  p.gid = spec.ids.inside_gid;
  if (spec.layers < kLayerUser && p.root_mode) {
    // No user namespace to map into: the sandbox user is the slot's host uid.
    p.uid = ids.host_base + spec.ids.inside_uid;
    p.gid = ids.host_base + spec.ids.inside_gid;
  }
}

uint64_t sandbox_clone_flags(int layers) {
  uint64_t f = 0;
  if (layers >= kLayerMount) f |= CLONE_NEWNS;
  if (layers >= kLayerPid) f |= CLONE_NEWPID;
  if (layers >= kLayerNet) f |= CLONE_NEWNET;
  if (layers >= kLayerIpcUts) f |= CLONE_NEWIPC | CLONE_NEWUTS;
  if (layers >= kLayerUser) f |= CLONE_NEWUSER;
  return f;
}

Result<pid_t> clone_sandbox_child(const ChildPlan& plan, const CloneRequest& req, int* pidfd) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = req.flags | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uintptr_t>(pidfd);
  // With CLONE_PARENT the kernel takes the exit signal from the caller.
  args.exit_signal = (req.flags & CLONE_PARENT) ? 0 : SIGCHLD;
  if (req.cgroup_dirfd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(req.cgroup_dirfd);
  }
  long pid;
  int clone_errno;
  {
    CloneAs as;
    if (!req.ids.rootless && (args.flags & CLONE_NEWUSER)) TRY(as.become(req.ids.host_base));
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) child_main(plan);  // never returns
    clone_errno = errno;             // before ~CloneAs makes more syscalls
  }
  if (pid < 0)
    return sys_error_n(clone_errno, "clone3", "user, mount, pid, ipc, uts and net namespaces");
  return static_cast<pid_t>(pid);
}

}  // namespace nsbox
