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
#include "sandbox/netns.hpp"
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

// clone3 as vfork(2) is built: with CLONE_VM | CLONE_VFORK and no stack of
// its own, the child runs first on the caller's stack and overwrites the
// frames below the caller's, the return address of this very call among
// them; so the return address is kept in a register across the syscall
// (which clobbers only rcx and r11) and pushed back by each side. The
// caller must treat it as returning twice, as it would vfork.
#if defined(NSBOX_CLONE_SHARED_STACK)
extern "C" long nsbox_clone3_shared_stack(struct clone_args* args, size_t size)
    __attribute__((returns_twice));
asm(R"(
  .text
  .globl nsbox_clone3_shared_stack
  .type nsbox_clone3_shared_stack, @function
nsbox_clone3_shared_stack:
  popq %rdx
  movl $435, %eax
  syscall
  pushq %rdx
  ret
  .size nsbox_clone3_shared_stack, .-nsbox_clone3_shared_stack
)");
static_assert(SYS_clone3 == 435, "the stub above hard-codes clone3's number");
#endif

#if defined(__SANITIZE_ADDRESS__)
// The child's frames below ours left AddressSanitizer's stack poison behind
// (it never returned from them); this clears it below `sp`, as ASan's own
// vfork interceptor does, so that our next calls are not misreported.
extern "C" void __asan_handle_vfork(void* sp);
#endif

}  // namespace

void build_child_plan(const SandboxSpec& spec, const MountSources& sources, const IdMap& ids,
                      bool has_cgroup, const SeccompProgram& bpf, const ChildFds& fds,
                      std::vector<std::string>* argv, ChildPlan* plan) {
  ChildPlan& p = *plan;
  p.mounts = plan_mounts(spec, sources);
  p.rlimits = plan_rlimits(spec.limits, has_cgroup, ids.rootless);
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
  p.loopback_up = spec.layers >= kLayerNet && fds.netns < 0;
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
  // From kLayerNet the child gets a network namespace of its own: exactly one
  // of a new one (and step 9 brings its lo up) or one made ahead (lo is up).
  if (plan.layers >= kLayerNet && ((req.netns_fd >= 0) == ((req.flags & CLONE_NEWNET) != 0) ||
                                   plan.loopback_up != (req.netns_fd < 0)))
    return make_error("clone3", "the plan and the request disagree on the network namespace");
  if (req.netns_fd >= 0 && (req.flags & CLONE_NEWNET))
    return make_error("clone3", "a network namespace made ahead and CLONE_NEWNET");
  const bool share = req.shared_memory_pid != nullptr;
  if (share != plan.shares_memory || (share && !kCloneCanShareMemory))
    return make_error("clone3", "the plan and the request disagree on sharing memory");
  if (share) {
    args.flags |= CLONE_VM | CLONE_VFORK | CLONE_PARENT_SETTID;
    args.parent_tid = reinterpret_cast<uintptr_t>(req.shared_memory_pid);
  }
  long pid;
  int clone_errno;
  {
    // Entered as root, left after the clone (and after ~CloneAs).
    NetnsVisit visit;
    if (req.netns_fd >= 0) TRY(visit.enter(req.netns_fd));
    CloneAs as;
    if (!req.ids.rootless && (args.flags & CLONE_NEWUSER)) TRY(as.become(req.ids.host_base));
#if defined(NSBOX_CLONE_SHARED_STACK)
    // Called here, not from a helper: the child must never return from the
    // function it was cloned in, whose frame the parent goes on with.
    if (share) {
      pid = nsbox_clone3_shared_stack(&args, sizeof args);
#if defined(__SANITIZE_ADDRESS__)
      if (pid != 0) __asan_handle_vfork(__builtin_frame_address(0));
#endif
      if (pid < 0 && pid > -4096) {
        errno = static_cast<int>(-pid);
        pid = -1;
      }
    } else {
      pid = syscall(SYS_clone3, &args, sizeof args);
    }
#else
    pid = syscall(SYS_clone3, &args, sizeof args);
#endif
    if (pid == 0) child_main(plan);  // never returns
    clone_errno = errno;             // before ~CloneAs makes more syscalls
  }
  if (pid < 0)
    return sys_error_n(clone_errno, "clone3", "user, mount, pid, ipc, uts and net namespaces");
  return static_cast<pid_t>(pid);
}

}  // namespace nsbox
