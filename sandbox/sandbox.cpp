#include "sandbox/sandbox.hpp"

#include <fcntl.h>
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

#include <cstdio>
#include <cstring>

#include "base/children.hpp"
#include "base/clock.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "sandbox/init_program.hpp"
#include "sandbox/launch.hpp"
#include "sandbox/userns.hpp"

namespace nsbox {

std::string format_timings(const SetupTimings& t) {
  char buf[160];
  snprintf(buf, sizeof buf, "parent: prepare %.3f ms; clone3 %.3f ms; id maps %.3f ms; ",
           (t.clone_ns - t.prepare_ns) / 1e6, (t.cloned_ns - t.clone_ns) / 1e6,
           (t.released_ns - t.cloned_ns) / 1e6);
  std::string line = buf;
  uint64_t prev = t.clone_ns;
  for (int s = 0; s < kStepCount; s++) {
    if (!t.step_end_ns[s]) continue;  // a step this sandbox's layers skip
    snprintf(buf, sizeof buf, "%s %.3f ms; ", child_step_name(s), (t.step_end_ns[s] - prev) / 1e6);
    line += buf;
    prev = t.step_end_ns[s];
  }
  snprintf(buf, sizeof buf, "ready after %.3f ms", (t.ready_ns - t.clone_ns) / 1e6);
  return line + buf;
}

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
    case RLIMIT_NICE:
      return "RLIMIT_NICE";
    case RLIMIT_RTPRIO:
      return "RLIMIT_RTPRIO";
    case RLIMIT_SIGPENDING:
      return "RLIMIT_SIGPENDING";
  }
  return "rlimit " + std::to_string(resource);
}

Error child_error(const ChildMsg& m, const ChildPlan& plan) {
  Error e{m.err, child_step_name(m.step), m.context, {}};
  if (m.step == kStepMounts && m.index >= 0 && size_t(m.index) < plan.mounts.ops.size()) {
    const MountOp& op = plan.mounts.ops[m.index];
    e.step = op.kind == MountOp::Bind || op.kind == MountOp::Tmpfs || op.kind == MountOp::Overlay ||
                     op.kind == MountOp::SharedRoot || op.kind == MountOp::Proc
                 ? "mount"
                 : "mount plan";
    e.context = op.describe();
  } else if (m.step == kStepRlimits && m.index >= 0 && size_t(m.index) < plan.rlimits.size()) {
    e.context = rlimit_name(plan.rlimits[m.index].resource);
  } else if (m.step == kStepPivot || m.step == kStepDropPrivileges) {
    e.step = m.context;  // the sub-step, e.g. "pivot_root" or "setresuid"
    e.context = m.step == kStepPivot ? plan.mounts.new_root : std::string();
  } else if (m.step == kStepExec && m.err == EPERM && plan.layers >= kLayerSeccomp &&
             plan.bpf.len > 0) {
    // After the filter, whose refusals are EPERM unless the policy says
    // otherwise: a policy that leaves out execve fails here, and the errno
    // alone does not say so.
    e.detail =
        "the seccomp filter applies from the step before: a policy's [seccomp.allow] "
        "must list execve";
  }
  return e;
}

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

// A template's PID 1 borrows the template's memory until it execs nsbox-init
// (launch.hpp), and the OOM killer would count that memory as PID 1's and
// kill every process sharing it, the template too. So for a clone the
// preference is written once PID 1 runs nsbox-init (after EOF): to PID 1 and
// to the runner it forked, which would have inherited it. Nothing of the
// function's has run before then.
Status prefer_clone_for_oom_killer(pid_t pid, bool rootless) {
  TRY(prefer_for_oom_killer(pid, rootless));
  // A runner that is gone already fails the first request, not this.
  for (pid_t child : child_pids(pid)) (void)prefer_for_oom_killer(child, rootless);
  return {};
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
  UniqueFd netns;  // made ahead: the cloner enters it for the clone
  MountSources sources;
  ChildPlan plan;
  CloneRequest clone;
  TemplateProcess* from_template = nullptr;
  CgroupEntry cgroup_entry;  // the child enters its leaf by these (cgroup.hpp)
  bool cloned_into_leaf = false;
  const SandboxSpec* spec = nullptr;
  const SeccompProgram* bpf = nullptr;
};

// Parent, before clone: everything the child needs is built here, so that
// the child only issues syscalls.
Status Sandbox::parent_prepare(const SandboxSpec& spec, const SeccompProgram& bpf, MadeAhead made,
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
  if (spec.use_cgroups && spec.layers >= kLayerCgroups) {
    cgroup_ = made.leaf.valid() ? std::move(made.leaf)
                                : TRY(CgroupLeaf::create(cgroups, spec.id, spec.limits));
    l.cgroup_entry = TRY(cgroup_.entry());
  }
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

  l.sources = sources_from_spec(spec);
  if (!spec.ids.rootless && !spec.code_path.empty()) {
    l.code_tree.reset(static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, spec.code_path.c_str(),
                                               OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
    if (!l.code_tree.valid()) return sys_error("open_tree", spec.code_path);
    if (spec.code_ino != 0) {
      struct stat st;
      if (fstat(l.code_tree.get(), &st) != 0) return sys_error("fstat", spec.code_path);
      if (st.st_dev != spec.code_dev || st.st_ino != spec.code_ino)
        return make_error("code", spec.code_path +
                                      " is not the file that was opened for it (was it "
                                      "replaced meanwhile?)");
    }
    l.sources.code_tree_fd = l.code_tree.get();
  }
  // Root mode: a network namespace made ahead (its loopback up) instead of
  // CLONE_NEWNET, when the spawner has one (netns.hpp).
  if (uses_made_netns(spec)) l.netns = std::move(made.netns);

  ChildFds fds;
  fds.sync = l.sync_child.get();
  fds.request = l.chan.runner_in.get();
  fds.reply = l.chan.runner_out.get();
  fds.stderr_fd = spec.stderr_fd;
  fds.fork = spec.fork_fd;
  fds.init_program = init_program_fd();
  fds.netns = l.netns.get();
  fds.parent_sync = l.sync_parent.get();
  fds.parent_request = l.chan.host.to_runner.get();
  fds.parent_reply = l.chan.host.from_runner.get();
  for (const UniqueFd& fd : l.cgroup_entry.tasks) fds.cgroup_tasks.push_back(fd.get());
  build_child_plan(spec, l.sources, l.ids, cgroup_.valid(), bpf, fds, &l.argv, &l.plan);
  l.clone.flags = sandbox_clone_flags(spec.layers);
  if (l.netns.valid()) {
    l.clone.flags &= ~static_cast<uint64_t>(CLONE_NEWNET);
    l.clone.netns_fd = l.netns.get();
  }
  l.clone.ids = l.ids;
  l.clone.cgroup_dirfd = l.cgroup_entry.clone_into;
  l.spec = &spec;
  l.bpf = &bpf;
  return {};
}

// clone3 into the namespaces (and into the leaf's cgroup2 directory); the child
// runs child_main and never comes back here. From a template, the template
// clones (the same plan, built there from the same spec, but binding the
// template's shared root where it has one) and the child is ours all the
// same (CLONE_PARENT).
Status Sandbox::parent_clone(Launch& l) {
  timings_.clone_ns = monotonic_ns();
  if (l.from_template) {
    TemplateCloneFds fds;
    fds.sync = l.sync_child.get();
    fds.request = l.chan.runner_in.get();
    fds.reply = l.chan.runner_out.get();
    fds.stderr_fd = l.plan.stderr_fd;
    fds.code_tree = l.code_tree.get();
    fds.cgroup_dirfd = l.clone.cgroup_dirfd;
    fds.cgroup_tasks = l.plan.cgroup_tasks_fds;
    fds.netns = l.netns.get();
    dev_t shared_root = 0;
    pid_ = TRY(l.from_template->clone(*l.spec, l.sources, l.ids, cgroup_.valid(), *l.bpf,
                                      l.clone.flags, fds, &shared_root));
    l.sources.shared_root_dev = shared_root;
  } else {
    int pidfd = -1;
    pid_ = TRY(clone_sandbox_child(l.plan, l.clone, &pidfd));
    close(pidfd);  // open_pidfd() makes one when it is needed
  }
  timings_.cloned_ns = monotonic_ns();
  // PID 1 was cloned into its leaf, or will move itself in at step 3: the
  // fds are the child's now.
  l.cloned_into_leaf = l.cgroup_entry.complete;
  l.cgroup_entry.tasks.clear();
  cgroup_.close_dirfd();
  l.netns.reset();  // the child's alone now
  // The child's ends are the child's now.
  l.sync_child.reset();
  l.chan.runner_in.reset();
  l.chan.runner_out.reset();
  channel_ = std::move(l.chan.host);
  return {};
}

// Parent, after clone: the cgroup (only where the child cannot enter its
// leaf itself: a fake tree), the slot's holder, id maps and the OOM
// preference, then release the child.
Status Sandbox::parent_after_clone(const SandboxSpec& spec, Launch& l) {
  if (cgroup_.valid() && !l.cloned_into_leaf) TRY(cgroup_.attach(pid_));
  if (slot_.valid()) TRY(slot_.record_holder(pid_));
  if (l.clone.flags & CLONE_NEWUSER) TRY(parent_write_id_maps(pid_, l.ids));
  if (!l.from_template) TRY(prefer_for_oom_killer(pid_, spec.ids.rootless));
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
    if (msg.type == ChildMsg::kError) {
      // The plan the clone ran binds its template's shared root: the op an
      // error names is counted in that plan, not in the one made here.
      if (l.sources.shared_root_dev != 0) l.plan.mounts = plan_mounts(*l.spec, l.sources);
      return child_error(msg, l.plan);
    }
    if (msg.type == ChildMsg::kTimings)
      std::copy(std::begin(msg.step_end_ns), std::end(msg.step_end_ns),
                timings_.step_end_ns.begin());
  }
  if (l.from_template) TRY(prefer_clone_for_oom_killer(pid_, l.spec->ids.rootless));
  timings_.ready_ns = monotonic_ns();
  return {};
}

// The parent's side in four steps, as child_main is the child's; whatever a
// step made is owned by sb and undone by its destructor if a later one fails.
Result<Sandbox> Sandbox::start(const SandboxSpec& spec, const SeccompProgram& bpf,
                               const CgroupLayout& cgroups, TemplateProcess* from_template,
                               MadeAhead made) {
  Sandbox sb;
  sb.timings_.prepare_ns = monotonic_ns();
  Launch l;
  l.from_template = from_template;
  const std::string what = "sandbox " + spec.id;
  // A template's clone request carries a fixed set of fds, without this one.
  if (from_template && spec.fork_fd >= 0)
    return make_error("preparing " + what, "a function template is exec'd, not cloned");
  TRY_WITHIN(sb.parent_prepare(spec, bpf, std::move(made), cgroups, l), "preparing " + what);
  TRY_WITHIN(sb.parent_clone(l), "creating " + what);
  TRY_WITHIN(sb.parent_after_clone(spec, l), "releasing " + what);
  TRY_WITHIN(sb.parent_await_exec(l), "setting up " + what);
  return sb;
}

// PID 1 is our child until we reap it (a template clones it with
// CLONE_PARENT), so its pid cannot name another process before then. The
// waitid check makes that hold even if something else reaped it: a pid
// that is no child of ours is never signalled. *gone: it is not (ECHILD).
UniqueFd Sandbox::open_pidfd(bool* gone) const {
  *gone = false;
  if (pid_ <= 0 || reaped_) {
    *gone = true;
    return UniqueFd();
  }
  UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  if (!fd.valid()) {
    *gone = errno == ESRCH;
    return fd;
  }
  siginfo_t si = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd.get()), &si,
             WEXITED | WNOHANG | WNOWAIT) != 0) {
    *gone = errno == ECHILD;
    if (*gone) return UniqueFd();
  }
  return fd;
}

void Sandbox::kill() {
  bool gone = false;
  if (UniqueFd fd = open_pidfd(&gone); fd.valid())
    syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
  else if (siginfo_t si = {}; !gone && (waitid(P_PID, static_cast<id_t>(pid_), &si,
                                               WEXITED | WNOHANG | WNOWAIT) == 0 ||
                                        errno != ECHILD))
    // No pidfd to be had (EMFILE, ENOMEM): PID 1 is still our unreaped
    // child (waitid says so), so its pid is still its own.
    ::kill(pid_, SIGKILL);
}

bool Sandbox::reap(int wait_ms, int* status) {
  if (pid_ <= 0) return false;
  if (!reaped_) {
    bool gone = false;
    if (UniqueFd fd = wait_ms > 0 ? open_pidfd(&gone) : UniqueFd(); fd.valid()) {
      struct pollfd pfd = {fd.get(), POLLIN, 0};
      poll(&pfd, 1, wait_ms);
    } else if (wait_ms > 0 && !gone) {
      // Without a pidfd: look every millisecond.
      for (int waited = 0; waited < wait_ms; waited++) {
        siginfo_t si = {};
        if (waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
            si.si_pid == pid_)
          break;
        usleep(1000);
      }
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
  return cgroup_.destroy();
}

}  // namespace nsbox
