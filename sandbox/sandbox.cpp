#include "sandbox/sandbox.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "base/clock.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "sandbox/init_filter.hpp"
#include "sandbox/userns.hpp"

namespace nsbox {

const char* layer_name(int layer) {
  static const char* const kNames[] = {"none",           "+ mount, overlay, pivot_root",
                                       "+ PID",          "+ network",
                                       "+ IPC, UTS",     "+ user namespace",
                                       "+ cgroups",      "+ caps dropped, no_new_privs",
                                       "+ seccomp (all)"};
  return layer >= 0 && layer <= kLayerAll ? kNames[layer] : "?";
}

namespace {

constexpr int kSetupTimeoutMs = 10000;

std::string rlimit_name(int resource) {
  switch (resource) {
    case RLIMIT_CORE:
      return "RLIMIT_CORE";
    case RLIMIT_NOFILE:
      return "RLIMIT_NOFILE";
    case RLIMIT_FSIZE:
      return "RLIMIT_FSIZE";
    case RLIMIT_AS:
      return "RLIMIT_AS";
    case RLIMIT_NPROC:
      return "RLIMIT_NPROC";
    case RLIMIT_CPU:
      return "RLIMIT_CPU";
  }
  return "rlimit " + std::to_string(resource);
}

Error child_error(const ChildMsg& m, const ChildPlan& plan) {
  Error e{m.err, child_step_name(m.step), m.context, {}};
  if (m.step == kStepMounts && m.index >= 0 && size_t(m.index) < plan.mounts.ops.size()) {
    const MountOp& op = plan.mounts.ops[m.index];
    e.step = op.kind == MountOp::Bind || op.kind == MountOp::Tmpfs || op.kind == MountOp::Overlay ||
                     op.kind == MountOp::Proc
                 ? "mount"
                 : "mount plan";
    e.context = op.describe();
  } else if (m.step == kStepRlimits && m.index >= 0 && size_t(m.index) < plan.rlimits.size()) {
    e.context = rlimit_name(plan.rlimits[m.index].resource);
  } else if (m.step == kStepPivot || m.step == kStepDropPrivileges) {
    e.step = m.context;  // the sub-step, e.g. "pivot_root" or "setresuid"
    e.context = m.step == kStepPivot ? plan.mounts.new_root : std::string();
  }
  return e;
}

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

// Written by the parent before release, so PID 1 and everything it forks
// start with it. Written by root (CAP_SYS_RESOURCE), it also becomes the
// floor the sandbox cannot lower (oom_score_adj_min): a function cannot
// make the daemon's protection its own. Rootless, the parent may only
// raise it and sets no floor (the function may lower it back to the
// runner's own value).
constexpr const char* kSandboxOomScoreAdj = "1000";

Status prefer_for_oom_killer(pid_t pid, bool rootless) {
  std::string path = "/proc/" + std::to_string(pid) + "/oom_score_adj";
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  ssize_t len = static_cast<ssize_t>(strlen(kSandboxOomScoreAdj));
  if (fd.valid() && write(fd.get(), kSandboxOomScoreAdj, len) == len) return {};
  if (rootless) return {};  // best effort: the OOM killer's default choice stands
  return sys_error("write", path + " <- " + kSandboxOomScoreAdj);
}

}  // namespace

Sandbox::~Sandbox() {
  // destroy() names what it could not remove; a destructor can only log it.
  if (Status s = destroy(); !s) LOG_WARN("sandbox teardown: %s", s.error().message().c_str());
}

Sandbox& Sandbox::operator=(Sandbox&& o) noexcept {
  if (this != &o) {
    (void)destroy();
    pid_ = std::exchange(o.pid_, -1);
    reaped_ = o.reaped_;
    status_ = o.status_;
    pidfd_ = std::move(o.pidfd_);
    channel_ = std::move(o.channel_);
    cgroup_ = std::move(o.cgroup_);
    slot_ = std::move(o.slot_);
    timings_ = o.timings_;
  }
  return *this;
}

// What the parent builds before clone and keeps until the child has
// exec'd. Built in place and never moved: the child plan points into it.
struct Sandbox::Launch {
  IdMap ids;
  std::vector<std::string> argv;  // the spec's, rootfs-prefixed below kLayerMount
  UniqueFd sync_parent, sync_child;
  ChannelEnds chan;
  UniqueFd code_tree;
  ChildPlan plan;
  struct clone_args args;
  int pidfd = -1;
};

// Parent, before clone: everything the child needs is built here, so that
// the child only issues syscalls.
Status Sandbox::parent_prepare(const SandboxSpec& spec, const SeccompProgram& bpf,
                               const CgroupLayout& cgroups, Launch& l) {
  // 0755: the namespace root that mounts onto it is an unprivileged host uid
  // and must be able to traverse the path.
  TRY(mkdir_p(spec.stage_dir, 0755));
  // Root mode: that uid also mounts the runtime tree as the overlay's lower
  // layer. A closed directory on the way is said here, by name, rather than
  // as an EACCES from a mount in the child.
  if (!spec.ids.rootless) {
    TRY(check_reachable_by_others(spec.stage_dir));
    TRY(check_reachable_by_others(spec.rootfs));
  }
  if (spec.layers < kLayerNone || spec.layers > kLayerAll)
    return make_error("sandbox layers",
                      std::to_string(spec.layers) + " is not 0.." + std::to_string(int(kLayerAll)));
  if (spec.use_cgroups && spec.layers >= kLayerCgroups)
    cgroup_ = TRY(CgroupLeaf::create(cgroups, spec.id, spec.limits));
  // Root mode: a host uid range of our own (uid_slots.hpp). Rootless mode
  // has only the caller's uid to map, shared by all its sandboxes.
  l.ids = spec.ids;
  if (!l.ids.rootless) {
    slot_ = TRY(UidSlot::acquire());
    l.ids.host_base = slot_.host_base();
  }

  int sync[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) != 0)
    return sys_error("socketpair", "sync");
  l.sync_parent.reset(sync[0]);
  l.sync_child.reset(sync[1]);
  l.chan = TRY(make_channel());

  MountSources sources = sources_from_spec(spec);
  if (!spec.ids.rootless && !spec.code_path.empty()) {
    l.code_tree.reset(static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, spec.code_path.c_str(),
                                               OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
    if (!l.code_tree.valid()) return sys_error("open_tree", spec.code_path);
    sources.code_tree_fd = l.code_tree.get();
  }

  ChildPlan& plan = l.plan;
  plan.mounts = plan_mounts(spec, sources);
  plan.rlimits = plan_rlimits(spec.limits, cgroup_.valid());
  // Without a mount namespace the runner sees the host's tree: argv's
  // absolute paths name files inside the rootfs.
  l.argv = spec.argv;
  if (spec.layers < kLayerMount)
    for (auto& a : l.argv)
      if (a.starts_with("/")) a = spec.rootfs + a;
  for (const auto& a : l.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
  plan.argv.push_back(nullptr);
  for (const auto& e : spec.env) plan.envp.push_back(const_cast<char*>(e.c_str()));
  plan.envp.push_back(nullptr);
  plan.bpf = bpf.fprog();
  plan.init_bpf = init_seccomp_program();
  plan.hostname = spec.hostname.c_str();
  plan.sync_fd = l.sync_child.get();
  plan.request_fd = l.chan.runner_in.get();
  plan.reply_fd = l.chan.runner_out.get();
  plan.stderr_fd = spec.stderr_fd;
  plan.parent_sync_fd = l.sync_parent.get();
  plan.parent_request_fd = l.chan.host.to_runner.get();
  plan.parent_reply_fd = l.chan.host.from_runner.get();
  plan.root_mode = !spec.ids.rootless;
  plan.layers = spec.layers;
  plan.uid = spec.ids.inside_uid;
  plan.gid = spec.ids.inside_gid;
  if (spec.layers < kLayerUser && plan.root_mode) {
    // No user namespace to map into: the sandbox user is the slot's host uid.
    plan.uid = l.ids.host_base + spec.ids.inside_uid;
    plan.gid = l.ids.host_base + spec.ids.inside_gid;
  }

  memset(&l.args, 0, sizeof l.args);
  l.args.flags = CLONE_PIDFD;
  if (spec.layers >= kLayerMount) l.args.flags |= CLONE_NEWNS;
  if (spec.layers >= kLayerPid) l.args.flags |= CLONE_NEWPID;
  if (spec.layers >= kLayerNet) l.args.flags |= CLONE_NEWNET;
  if (spec.layers >= kLayerIpcUts) l.args.flags |= CLONE_NEWIPC | CLONE_NEWUTS;
  if (spec.layers >= kLayerUser) l.args.flags |= CLONE_NEWUSER;
  l.args.pidfd = reinterpret_cast<uintptr_t>(&l.pidfd);
  l.args.exit_signal = SIGCHLD;
  if (cgroup_.v2_dirfd() >= 0) {
    l.args.flags |= CLONE_INTO_CGROUP;
    l.args.cgroup = static_cast<uint64_t>(cgroup_.v2_dirfd());
  }
  return {};
}

// clone3 into the namespaces (and, on cgroup v2, into the leaf); the child
// runs child_main and never comes back here.
Status Sandbox::parent_clone(Launch& l) {
  timings_.clone_ns = monotonic_ns();
  long pid;
  int clone_errno;
  {
    CloneAs as;
    if (!l.ids.rootless && (l.args.flags & CLONE_NEWUSER)) TRY(as.become(l.ids.host_base));
    pid = syscall(SYS_clone3, &l.args, sizeof l.args);
    if (pid == 0) child_main(l.plan);  // never returns
    clone_errno = errno;               // before ~CloneAs makes more syscalls
  }
  if (pid < 0)
    return sys_error_n(clone_errno, "clone3", "user, mount, pid, ipc, uts and net namespaces");
  timings_.cloned_ns = monotonic_ns();
  pid_ = static_cast<pid_t>(pid);
  pidfd_.reset(l.pidfd);
  // The child's ends are the child's now.
  l.sync_child.reset();
  l.chan.runner_in.reset();
  l.chan.runner_out.reset();
  channel_ = std::move(l.chan.host);
  return {};
}

// Parent, after clone: cgroup (v1), the slot's holder, id maps and the OOM
// preference, then release the child.
Status Sandbox::parent_after_clone(const SandboxSpec& spec, Launch& l) {
  if (cgroup_.valid() && cgroup_.v2_dirfd() < 0) TRY(cgroup_.attach(pid_));
  if (slot_.valid()) TRY(slot_.record_holder(pid_));
  if (l.args.flags & CLONE_NEWUSER) TRY(parent_write_id_maps(pid_, l.ids));
  TRY(prefer_for_oom_killer(pid_, spec.ids.rootless));
  if (write(l.sync_parent.get(), "g", 1) != 1) return sys_error("write", "sync socket");
  timings_.released_ns = monotonic_ns();
  return {};
}

// Until EOF on the sync socket: an error message, or timings then EOF when
// exec succeeded. One deadline for the whole setup, not per message.
Status Sandbox::parent_await_exec(Launch& l) {
  const uint64_t setup_deadline = monotonic_ms() + kSetupTimeoutMs;
  for (;;) {
    struct pollfd pfd = {l.sync_parent.get(), POLLIN, 0};
    uint64_t now_ms = monotonic_ms();
    int left = now_ms >= setup_deadline ? 0 : static_cast<int>(setup_deadline - now_ms);
    int rc = poll(&pfd, 1, left);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return make_error("sandbox setup", "child did not finish setup within 10 s");
    ChildMsg msg;
    ssize_t n = recv(l.sync_parent.get(), &msg, sizeof msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // EOF: exec succeeded, unless the child died before its timings
      // message without managing to say why.
      if (timings_.step_end_ns[kStepForkInit] == 0)
        return make_error("sandbox setup", "the child died during setup without reporting why");
      break;
    }
    if (n != sizeof msg) return make_error("sandbox setup", "short message from child");
    if (msg.type == ChildMsg::kError) return child_error(msg, l.plan);
    if (msg.type == ChildMsg::kTimings)
      std::copy(std::begin(msg.step_end_ns), std::end(msg.step_end_ns),
                timings_.step_end_ns.begin());
  }
  timings_.ready_ns = monotonic_ns();
  return {};
}

// The parent's side in four steps, as child_main is the child's; whatever a
// step made is owned by sb and undone by its destructor if a later one fails.
Result<Sandbox> Sandbox::start(const SandboxSpec& spec, const SeccompProgram& bpf,
                               const CgroupLayout& cgroups) {
  Sandbox sb;
  sb.timings_.prepare_ns = monotonic_ns();
  Launch l;
  const std::string what = "sandbox " + spec.id;
  TRY_WITHIN(sb.parent_prepare(spec, bpf, cgroups, l), "preparing " + what);
  TRY_WITHIN(sb.parent_clone(l), "creating " + what);
  TRY_WITHIN(sb.parent_after_clone(spec, l), "releasing " + what);
  TRY_WITHIN(sb.parent_await_exec(l), "setting up " + what);
  return sb;
}

void Sandbox::kill() {
  if (pid_ > 0 && !reaped_ && pidfd_.valid())
    syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

bool Sandbox::reap(int wait_ms, int* status) {
  if (pid_ <= 0) return false;
  if (!reaped_) {
    if (wait_ms > 0) {
      struct pollfd pfd = {pidfd_.get(), POLLIN, 0};
      poll(&pfd, 1, wait_ms);
    }
    int st;
    pid_t w = waitpid(pid_, &st, wait_ms < 0 ? 0 : WNOHANG);
    if (w == pid_) {
      reaped_ = true;
      status_ = st;
    } else if (w < 0 && errno == ECHILD) {
      reaped_ = true;  // reaped elsewhere; nothing left to own
    }
  }
  if (reaped_ && status) *status = status_;
  return reaped_;
}

Status Sandbox::destroy() {
  if (pid_ > 0 && !reaped_) {
    kill();
    // A frozen sandbox (the pool's idle ones) takes SIGKILL only once
    // thawed on cgroup v1.
    if (cgroup_.can_freeze()) (void)cgroup_.set_frozen(false);
    // PID 1's death makes the kernel kill and reap the whole namespace
    // before our waitpid returns.
    reap(-1, nullptr);
  }
  // PID 1 reaped: its namespace is empty, no process of this tenant is left
  // to share the uids with the next one.
  if (reaped_ || pid_ <= 0) slot_.release();
  channel_ = {};
  pidfd_.reset();
  return cgroup_.destroy();
}

}  // namespace nsbox
