#include "sandbox/child.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/clock.hpp"
#include "sandbox/init_reaper.hpp"
#include "sandbox/seccomp.hpp"

namespace nsbox {

namespace {

// child_step_name(): indexed by ChildStep, so in the enum's order (0..16).
const char* const kStepNames[kStepCount] = {
    "wait for parent",
    "setsid",
    "become namespace root",
    "join cgroup, unshare(CLONE_NEWCGROUP)",
    "make / private",
    "mount",
    "pivot_root",
    "remount / read-only",
    "sethostname",
    "loopback up",
    "set up fds",
    "setrlimit",
    "drop privileges",
    "seal init",
    "fork init",
    "seccomp",
    "execve",
};

// Global so that fail() can reach them without arguments. The child is a
// single-threaded copy of the parent, or (ChildPlan::shares_memory) runs in
// the parent's memory while the parent sleeps: either way no one else
// touches them meanwhile, but in the second case they hold the last child's
// values, so child_main resets them first.
ChildMsg g_msg;
int g_sync = -1;
int g_init_program = -1;  // its fixed fd once step 10 has run
bool g_shares_memory = false;

void send_msg() {
  // write(), not send(): after seccomp only write is sure to be allowed (the
  // strict policy denies every socket call, sendto included), and an exec
  // failure must still be reported. A parent that is gone means SIGPIPE or
  // EPIPE; either way this process is about to exit.
  if (g_sync >= 0) (void)!write(g_sync, &g_msg, sizeof g_msg);
}

[[noreturn]] void fail(int32_t step, int err, const char* context = nullptr, int index = -1) {
  g_msg.type = ChildMsg::kError;
  g_msg.step = step;
  g_msg.err = err;
  g_msg.index = index;
  if (context) strncpy(g_msg.context, context, sizeof g_msg.context - 1);
  send_msg();
  _exit(127);
}

void done(int32_t step) {
  g_msg.step_end_ns[step] = monotonic_ns();
}

// PID 1 of the sandbox: reaps orphans (the kernel reparents them here) and
// exits with the runner's status; its exit kills the rest of the namespace.
// It execs nsbox-init, which does the same (init_program.hpp), so as to stop
// holding a copy of its creator's memory; only if that exec fails does it
// go on here, as it did before nsbox-init existed.
// It holds no fd and runs under its own filter (init_reaper.hpp), loaded
// here rather than before vfork: filters are inherited, and the runner's
// would be cut down to PID 1's. The runner has exec'd by the time vfork
// returns, but PID 1 is already non-dumpable (step 13, "seal init") and, as
// the namespace's init, ignores every signal from inside: the function
// cannot reach it in the window before the filter is in place.
[[noreturn]] void init_loop(pid_t runner, bool load_filter) {
  // The sync socket stays open across the exec, and nsbox-init closes it
  // once it has made itself non-dumpable: the parent's EOF, and so the
  // first request, must not come while a host whose fs.suid_dumpable is 1
  // leaves the new program dumpable. If the socket cannot be kept, or the
  // exec fails, PID 1 reaps here instead.
  if (g_init_program >= 0 && fcntl(g_sync, F_SETFD, 0) == 0) {
    char pid[24];
    snprintf(pid, sizeof pid, "%d", static_cast<int>(runner));
    char arg0[] = "nsbox-init";
    char load[] = "0";
    load[0] = load_filter ? '1' : '0';
    char* argv[] = {arg0, pid, load, nullptr};
    char* envp[] = {nullptr};
    syscall(SYS_execveat, g_init_program, "", argv, envp, AT_EMPTY_PATH);
  }
  // Reaping here would keep the cloner asleep for the sandbox's lifetime.
  if (g_shares_memory) {
    int err = g_init_program < 0 ? ENOENT : errno;
    kill(runner, SIGKILL);
    fail(kStepForkInit, err, "exec nsbox-init (PID 1 shares its cloner's memory)");
  }
  init_reap(runner, load_filter);
}

// The kernel gives a CLONE_VM child no rseq registration, and PID 1's fork
// copies that into the runner, whose copy of glibc's area still holds the
// template's last CPU: sched_getcpu() would read it, and rseq users would run
// unprotected. Registered again here as glibc does at a thread's start (its
// registration length: at least the original 32 bytes); if that fails, the
// area says so and glibc asks the kernel instead.
void register_rseq_again() {
  if (__rseq_size == 0) return;  // glibc does not use rseq here
  auto* area = reinterpret_cast<struct rseq*>(static_cast<char*>(__builtin_thread_pointer()) +
                                              __rseq_offset);
  if (static_cast<int32_t>(area->cpu_id) == RSEQ_CPU_ID_REGISTRATION_FAILED) return;
  const uint32_t len = __rseq_size > 32 ? __rseq_size : 32;
  area->cpu_id = static_cast<uint32_t>(RSEQ_CPU_ID_UNINITIALIZED);
  if (syscall(SYS_rseq, area, len, 0, RSEQ_SIG) != 0)
    area->cpu_id = static_cast<uint32_t>(RSEQ_CPU_ID_REGISTRATION_FAILED);
}

}  // namespace

const char* child_step_name(int32_t step) {
  return step >= 0 && step < kStepCount ? kStepNames[step] : "unknown step";
}

void child_main(const ChildPlan& p) {
  g_msg = ChildMsg{};
  g_sync = p.sync_fd;
  g_init_program = -1;
  g_shares_memory = p.shares_memory;
  if (p.announce) p.announce(p);
  // Before step 0 (not a step): nothing of the parent's signal setup may
  // reach the function: ignored dispositions survive exec, and so does the
  // blocked mask.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // The parent's ends of the sync socket and the channel pipes: with them
  // closed here, EOF on the sync socket really means the parent is gone.
  for (int fd : {p.parent_sync_fd, p.parent_request_fd, p.parent_reply_fd})
    if (fd >= 0) close(fd);
  // 0. Die with the parent, then wait for it to write the id maps. EOF here means the parent died
  // (or gave up) before releasing us.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(kStepWaitRelease, errno, "PR_SET_PDEATHSIG");
  char go;
  if (read(p.sync_fd, &go, 1) != 1) _exit(127);
  done(kStepWaitRelease);

  // 1. A new session: no controlling terminal reaches the function, and it
  // cannot signal the caller's process group (the TIOCSTI class of
  // CVE-2017-5226).
  if (setsid() < 0) fail(kStepNewSession, errno);
  done(kStepNewSession);

  // 2. Root mode maps inside uid 0 to an unprivileged host uid; setup runs as
  // that mapped root so that files it creates have a valid owner.
  if (p.root_mode && p.layers >= kLayerUser) {
    if (setresgid(0, 0, 0) != 0) fail(kStepBecomeNsRoot, errno, "setresgid(0)");
    if (setresuid(0, 0, 0) != 0) fail(kStepBecomeNsRoot, errno, "setresuid(0)");
  }
  done(kStepBecomeNsRoot);

  // 3. Into the leaf, so that it becomes this namespace's root. On v2 we were
  // cloned into it; on v1 (no CLONE_INTO_CGROUP) this process moves itself,
  // one hierarchy at a time, before it runs anything of the function's.
  for (int fd : p.cgroup_tasks_fds) {
    if (write(fd, "0", 1) != 1) fail(kStepCgroupNs, errno, "write 0 to the leaf's tasks file");
    close(fd);
  }
  if (p.layers >= kLayerCgroups && unshare(CLONE_NEWCGROUP) != 0) fail(kStepCgroupNs, errno);
  done(kStepCgroupNs);

  const char* sub = nullptr;
  if (p.layers >= kLayerMount) {
    // 4. Nothing we mount may propagate back to the host.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      fail(kStepMakePrivate, errno, "/");
    done(kStepMakePrivate);

    // 5. New root, /tmp, /dev, code, /proc (before the old root goes).
    const MountOp* op = nullptr;
    if (int err = child_run_mounts(p.mounts, &op))
      fail(kStepMounts, err, nullptr, static_cast<int>(op - p.mounts.ops.data()));
    done(kStepMounts);

    // 6. Pivot and detach the old root.
    if (int err = child_pivot_root(p.mounts.new_root.c_str(), &sub)) fail(kStepPivot, err, sub);
    done(kStepPivot);

    // 7. The overlay was writable only so that setup could add mount points
    // (a template's clone binds one that never was: shared_root.hpp).
    if (int err = child_remount_ro("/")) fail(kStepRemountRoot, err, "/");
    done(kStepRemountRoot);
  }

  // 8. Identity: the hostname.
  if (p.layers >= kLayerIpcUts)
    if (int err = child_set_hostname(p.hostname)) fail(kStepHostname, err, p.hostname);
  done(kStepHostname);

  // 9. Network: loopback up (no other interface exists).
  if (p.layers >= kLayerNet && p.loopback_up)
    if (int err = child_loopback_up()) fail(kStepLoopback, err, "lo");
  done(kStepLoopback);

  // 10. fds, before the rlimits: the spawner may hold hundreds of fds, and
  // with RLIMIT_NOFILE lowered no new fd could be allocated above the limit.
  // Layout: 0 /dev/null, 1 and 2 the log (a function's prints are logs), 3
  // requests in, 4 replies out, 5 the sync socket (close-on-exec), and in a
  // function template 6 its fork socket; nothing else.
  int sync = fcntl(p.sync_fd, F_DUPFD_CLOEXEC, 10);
  int fork_sock = p.fork_fd >= 0 ? fcntl(p.fork_fd, F_DUPFD_CLOEXEC, 10) : -1;
  if (p.fork_fd >= 0 && fork_sock < 0) fail(kStepFds, errno, "F_DUPFD_CLOEXEC");
  int init_prog = p.init_program_fd >= 0 ? fcntl(p.init_program_fd, F_DUPFD_CLOEXEC, 10) : -1;
  if (p.init_program_fd >= 0 && init_prog < 0) fail(kStepFds, errno, "F_DUPFD_CLOEXEC");
  int in = fcntl(p.request_fd, F_DUPFD_CLOEXEC, 10);
  int out = fcntl(p.reply_fd, F_DUPFD_CLOEXEC, 10);
  int err = fcntl(p.stderr_fd >= 0 ? p.stderr_fd : 2, F_DUPFD_CLOEXEC, 10);
  if (sync < 0 || in < 0 || out < 0 || err < 0) fail(kStepFds, errno, "F_DUPFD_CLOEXEC");
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) fail(kStepFds, errno, "/dev/null");
  if (dup2(devnull, 0) < 0 || dup2(err, 2) < 0 || dup2(2, 1) < 0 || dup2(in, 3) < 0 ||
      dup2(out, 4) < 0 || dup3(sync, 5, O_CLOEXEC) < 0)
    fail(kStepFds, errno, "dup2");
  if (fork_sock >= 0 && dup2(fork_sock, 6) < 0) fail(kStepFds, errno, "dup2");
  g_sync = 5;
  int next_fd = fork_sock >= 0 ? 7 : 6;
  // PID 1's program, close-on-exec: the exec'd runner never has it, and the
  // runner that goes on in-process closes it first thing (step 14).
  if (init_prog >= 0) {
    if (dup3(init_prog, next_fd, O_CLOEXEC) < 0) fail(kStepFds, errno, "dup3");
    g_init_program = next_fd++;
  }
  if (syscall(SYS_close_range, next_fd, ~0U, 0) != 0) fail(kStepFds, errno, "close_range");
  done(kStepFds);

  // 11. Lower rlimits.
  const RlimitSetting* rl = nullptr;
  if (int err = child_set_rlimits(p.rlimits.data(), p.rlimits.size(), &rl))
    fail(kStepRlimits, err, nullptr, static_cast<int>(rl - p.rlimits.data()));
  done(kStepRlimits);

  // 12. Drop privileges. Below that layer, only the uid and gid change
  // (from host root without a user namespace, which clears the
  // capabilities; from the namespace's root with one).
  if (p.layers >= kLayerPrivileges) {
    if (int err = child_drop_privileges(p.uid, p.gid, p.root_mode, &sub))
      fail(kStepDropPrivileges, err, sub);
  } else if (int err = child_change_ids(p.uid, p.gid, p.root_mode, &sub)) {
    fail(kStepDropPrivileges, err, sub);
  }
  done(kStepDropPrivileges);

  // 13. After the last credential change, which reset both: PID 1 (the
  // process that stays behind as init and never execs) becomes
  // non-dumpable, so that nobody inside can open its /proc/1/mem or environ
  // or ptrace it; and it dies with its parent again. dumpable lives in the
  // mm: the vfork child shares it until exec gives the runner a fresh,
  // dumpable one.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(kStepSealInit, errno, "PR_SET_DUMPABLE");
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(kStepSealInit, errno, "PR_SET_PDEATHSIG");
  {
    // The parent may have died while the signal was disarmed: then no
    // signal comes. Its end of the sync socket is open until we exec, so a
    // hangup here means it is gone (getppid() says 0 in a PID namespace).
    struct pollfd pfd = {g_sync, POLLIN, 0};
    if (poll(&pfd, 1, 0) < 0) fail(kStepSealInit, errno, "poll");
    if (pfd.revents & (POLLHUP | POLLERR)) _exit(127);
  }
  done(kStepSealInit);

  // 14. PID 1 stays behind as the reaper; the runner is its child. vfork: the
  // child shares our memory until it execs, which spares copying the page
  // tables (a measurable part of a cold start); it only issues syscalls. A
  // runner that goes on in-process never execs, so it needs memory of its
  // own: fork, copy-on-write.
  pid_t runner = p.run_in_process ? fork() : vfork();
  if (runner < 0) fail(kStepForkInit, errno);
  if (runner > 0) init_loop(runner, p.layers >= kLayerSeccomp);
  if (g_init_program >= 0) close(g_init_program);
  if (p.shares_memory) register_rseq_again();
  // An exec'd runner gets a fresh, dumpable mm; one that goes on in-process
  // has its own copy of PID 1's, sealed at step 13: unsealed here, so that
  // the function sees its own /proc entries exactly as after exec.
  if (p.run_in_process && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
    fail(kStepForkInit, errno, "PR_SET_DUMPABLE");
  // Without a PID namespace, PID 1's death does not take the runner with
  // it: the runner dies with it by signal instead.
  if (p.layers < kLayerPid && prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    fail(kStepForkInit, errno, "PR_SET_PDEATHSIG");
  done(kStepForkInit);

  // 15. Seccomp last, so the filter only has to allow the runtime. The
  // timings go out first, since the filter may forbid the send.
  g_msg.type = ChildMsg::kTimings;
  send_msg();
  g_msg.type = 0;
  if (p.layers >= kLayerSeccomp && child_load_seccomp(&p.bpf) != 0) fail(kStepSeccomp, errno);

  // 16. Exec; on success the sync socket closes and the parent reads EOF.
  // From a template the runner is already loaded: close the socket by hand
  // for the same EOF and go on in this process.
  if (p.run_in_process) {
    close(g_sync);
    g_sync = -1;
    p.run_in_process(p);
    _exit(127);
  }
  execve(p.argv[0], p.argv.data(), p.envp.data());
  fail(kStepExec, errno, p.argv[0]);
}

}  // namespace nsbox
