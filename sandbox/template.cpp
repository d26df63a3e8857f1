#include "sandbox/template.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "sandbox/fd_passing.hpp"
#include "sandbox/init_program.hpp"
#include "sandbox/shared_root.hpp"
#include "sandbox/spec_codec.hpp"

namespace nsbox {

namespace {

constexpr int kReadyTimeoutMs = 30000;
constexpr int kCloneTimeoutMs = 10000;
constexpr size_t kMaxRequest = 256 << 10;  // a spec and a BPF program of <= 4096 insns

struct TemplateReply {
  int32_t ok = 0;
  int32_t err = 0;
  int32_t pid = 0;
  int32_t reserved = 0;
  // Not 0: the clone binds the template's shared root of this device, and
  // its plan (which an error's op index points into) has no upper layer.
  uint64_t shared_root_dev = 0;
  char message[504] = {};
};
// No padding: every byte sent is a field's, and a reply of another size (a
// template of another build) is refused rather than read at other offsets.
static_assert(sizeof(TemplateReply) == 528, "TemplateReply has padding");

// Presence bits for the optional fds, in this order after the three fixed
// ones; then as many cgroup v1 `tasks` files as the request says.
constexpr uint32_t kHasStderr = 1, kHasCodeTree = 2, kHasCgroup = 4, kHasNetns = 8;
// One per v1 hierarchy: memory, pids, cpu and the freezer.
constexpr uint8_t kMaxTasksFds = 4;
constexpr int kMaxCloneFds = 7 + kMaxTasksFds;
static_assert(kMaxCloneFds <= kMaxPassedFds, "a clone request's fds must fit one message");

Status wait_readable(int fd, int timeout_ms, const char* what) {
  const uint64_t deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    uint64_t now = monotonic_ms();
    int left = now >= deadline ? 0 : static_cast<int>(deadline - now);
    int rc = poll(&pfd, 1, left);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return sys_error("poll", what);
    if (rc == 0) return make_error(what, "no answer within " + std::to_string(timeout_ms) + " ms");
    return {};
  }
}

Result<TemplateReply> read_reply(int sock, int timeout_ms, const char* what) {
  TRY(wait_readable(sock, timeout_ms, what));
  TemplateReply r;
  ssize_t n;
  do {
    n = recv(sock, &r, sizeof r, MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("recv", what);
  if (n == 0) return make_error(what, "the template exited");
  if (n != sizeof r) return make_error(what, "a reply of another size from the template");
  r.message[sizeof r.message - 1] = '\0';
  if (!r.ok) return Error{r.err, r.message, {}, {}};
  return r;
}

void send_reply(int sock, const TemplateReply& r) {
  (void)send_with_fds(sock, &r, sizeof r, nullptr, 0);
}

TemplateReply error_reply(const Error& e) {
  TemplateReply r;
  r.ok = 0;
  r.err = e.err;
  snprintf(r.message, sizeof r.message, "%s", e.message().c_str());
  return r;
}

}  // namespace

TemplateProcess& TemplateProcess::operator=(TemplateProcess&& o) noexcept {
  if (this != &o) {
    stop();
    pid_ = std::exchange(o.pid_, -1);
    sock_ = std::move(o.sock_);
  }
  return *this;
}

Result<TemplateProcess> TemplateProcess::start(const TemplateOptions& o) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return sys_error("socketpair", "template");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  // The options travel on the socket, not the command line: a sandbox's
  // /proc/self/cmdline is the template's, and shows no host path this way.
  char arg0[] = "nsbox-template";
  char* argv[] = {arg0, nullptr};
  // Our nsbox-init memfd goes with them: one copy, read once, for both.
  const int init_program = init_program_fd();
  Encoder opts;
  opts.str(o.rootfs);
  opts.strs(o.modules);
  opts.pod(static_cast<uint8_t>(init_program >= 0));
  opts.pod(static_cast<uint8_t>(o.quiet));
  // Nothing of the asker's environment: the template's is the runner's
  // concern, and each sandbox gets the spec's.
  char path_env[] = "PATH=/usr/bin:/bin";
  char lang_env[] = "LANG=C.UTF-8";
  // Every library function bound once, here, rather than at its first call
  // in each clone: lazy binding would look the symbol up and write the GOT
  // entry in every sandbox, copying those pages each time.
  char bind_env[] = "LD_BIND_NOW=1";
  char* envp[] = {path_env, lang_env, bind_env, nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // The socket becomes fd 3 (dup2 clears close-on-exec); everything else but
  // 0-2 is closed.
  posix_spawn_file_actions_adddup2(&fa, theirs.get(), 3);
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int rc = posix_spawn(&pid, o.binary.c_str(), &fa, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return sys_error_n(rc, "posix_spawn", o.binary);
  TemplateProcess t;
  t.pid_ = pid;
  t.sock_ = std::move(mine);
  theirs.reset();
  const std::string& b = opts.bytes();
  if (send_with_fds(t.sock_.get(), b.data(), b.size(), &init_program, init_program >= 0 ? 1 : 0) !=
      static_cast<ssize_t>(b.size()))
    return sys_error("send", "template options");
  TRY_WITHIN(read_reply(t.sock_.get(), kReadyTimeoutMs, "template start"),
             "starting the template " + o.binary);
  return t;
}

Result<pid_t> TemplateProcess::clone(const SandboxSpec& spec, const MountSources& src,
                                     const IdMap& ids, bool has_cgroup, const SeccompProgram& bpf,
                                     uint64_t flags, const TemplateCloneFds& fds,
                                     dev_t* shared_root_dev) {
  *shared_root_dev = 0;
  if (!sock_.valid()) return make_error("template", "not running");
  Encoder e;
  uint32_t has = (fds.stderr_fd >= 0 ? kHasStderr : 0) | (fds.code_tree >= 0 ? kHasCodeTree : 0) |
                 (fds.cgroup_dirfd >= 0 ? kHasCgroup : 0) | (fds.netns >= 0 ? kHasNetns : 0);
  if (fds.cgroup_tasks.size() > kMaxTasksFds)
    return make_error("template clone", "more cgroup hierarchies than a request carries");
  e.pod(has);
  e.pod(static_cast<uint8_t>(fds.cgroup_tasks.size()));
  e.pod(flags);
  e.pod(ids);
  e.pod(has_cgroup);
  e.str(src.rootfs);
  e.str(src.code);
  e.str(src.code_name);
  e.pod(src.code_is_dir);
  encode_spec(e, spec);
  encode_bpf(e, bpf);
  int send_fds[kMaxCloneFds];
  int n = 0;
  for (int fd : {fds.sync, fds.request, fds.reply}) send_fds[n++] = fd;
  for (int fd : {fds.stderr_fd, fds.code_tree, fds.cgroup_dirfd, fds.netns})
    if (fd >= 0) send_fds[n++] = fd;
  for (int fd : fds.cgroup_tasks) send_fds[n++] = fd;
  const std::string& b = e.bytes();
  if (b.size() > kMaxRequest) return make_error("template clone", "request too large");
  if (send_with_fds(sock_.get(), b.data(), b.size(), send_fds, n) != static_cast<ssize_t>(b.size()))
    return sys_error("send", "template socket");
  auto r = read_reply(sock_.get(), kCloneTimeoutMs, "template clone");
  if (!r) {
    // A template that cannot answer in time is not trusted with the next
    // request: killed here, it is replaced before the next clone (and this
    // sandbox is exec'd by the caller, which sees it dead).
    if (r.error().step == "template clone") stop();
    return r.error();
  }
  *shared_root_dev = static_cast<dev_t>(r.value().shared_root_dev);
  return static_cast<pid_t>(r.value().pid);
}

bool TemplateProcess::alive() {
  if (pid_ <= 0) return false;
  int st;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    pid_ = -1;
    sock_.reset();
    return false;
  }
  return true;
}

void TemplateProcess::stop() {
  sock_.reset();
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int st;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

Result<TemplateOptions> template_receive_options(int sock) {
  std::string buf(64 << 10, '\0');
  int init_program = -1;
  ssize_t n = recv_with_fds(sock, buf.data(), buf.size(), &init_program, 1);
  if (n < 0) return sys_error("recv", "template options");
  UniqueFd init_fd(init_program);
  Decoder d(buf.data(), static_cast<size_t>(n));
  TemplateOptions o;
  uint8_t has_init_program = 0;
  d.str(&o.rootfs);
  d.strs(&o.modules);
  d.pod(&has_init_program);
  uint8_t quiet = 0;
  d.pod(&quiet);
  o.quiet = quiet != 0;
  if (!d.ok()) return make_error("template options", "malformed");
  if ((has_init_program != 0) != init_fd.valid())
    return make_error("template options", has_init_program ? "the nsbox-init fd did not arrive"
                                                           : "an fd came that was not sent");
  // Adopted, never made here: after enter_runtime_tree, nsbox-init "beside
  // this program" would be the runtime tree's /usr/bin/nsbox-init.
  if (!init_program_adopt(init_fd.get()))
    return make_error("template options", "nsbox-init's fd was taken before the options came");
  (void)init_fd.release();
  return o;
}

Status template_send_ready(int sock, const Status& init) {
  TemplateReply r;
  if (init) {
    r.ok = 1;
    r.pid = getpid();
  } else {
    r = error_reply(init.error());
  }
  if (send_with_fds(sock, &r, sizeof r, nullptr, 0) != sizeof r)
    return sys_error("send", "template ready");
  return {};
}

namespace {

// template_share_root's overlay: the tree's path and the overlay's device.
std::string g_shared_root;
dev_t g_shared_root_dev = 0;

// The clone being made, for its PID 1, which runs in this memory while this
// process sleeps (ChildPlan::shares_memory) and answers the asker itself.
int g_answer_sock = -1;
pid_t g_clone_pid = 0;    // the kernel writes PID 1's pid here (CLONE_PARENT_SETTID)
bool g_answered = false;  // PID 1 sent the answer

// PID 1, first thing (child_main): the same answer this process gives when
// a clone has its own memory. Then PID 1 drops its copy of the socket: no
// sandbox keeps a line to the spawner.
void announce_clone(const ChildPlan& plan) {
  TemplateReply r;
  r.ok = 1;
  r.pid = g_clone_pid;
  for (const MountOp& op : plan.mounts.ops)
    if (op.kind == MountOp::SharedRoot) r.shared_root_dev = op.dev;
  // Before the send: a PID 1 killed after its answer went out must not
  // leave the woken template to answer again (the asker would then read
  // that answer for its next request). Killed before the send, the asker
  // hears nothing and gives up on the template (kCloneTimeoutMs).
  g_answered = true;
  if (send_with_fds(g_answer_sock, &r, sizeof r, nullptr, 0) != sizeof r) _exit(127);
  close(g_answer_sock);
}

// Whether PID 1 may borrow this process's memory: the architecture allows
// it; PID 1 can exec nsbox-init (otherwise it would reap in-process, in this
// memory, and keep this process asleep); and this process has one thread,
// since CLONE_VFORK stops only the calling one (a thread a module started
// would run in the memory PID 1 is using).
bool may_share_memory(int init_program) {
  if (!kCloneCanShareMemory || init_program < 0) return false;
  // procfs counts a process's threads in its task directory's link count
  // (2 + threads): one stat, no parsing.
  struct stat st;
  return stat("/proc/self/task", &st) == 0 && st.st_nlink == 3;
}

// One request: decode, plan, clone, answer. The received fds are closed on
// return (the child has its copies); the plan and the spec it points into
// live on this stack frame, which the child reads in this memory while this
// process sleeps (or in its own copy, where PID 1 cannot share memory).
//
// The answer goes out before anything is freed: every page the template
// writes after a clone is shared with that clone, so each first write is a
// copy-on-write fault, and freeing the plan's few dozen allocations touches
// ~50 such pages (2-3 ms on this machine, where a fault costs tens of
// microseconds). The clone waits for its release, which waits for this
// answer; the frees can wait instead.
void serve_one(int sock, const char* buf, size_t len, int* fds, int nfds,
               void (*run)(const ChildPlan&)) {
  auto answer = [sock](const TemplateReply& r) { send_reply(sock, r); };
  UniqueFd owned[kMaxCloneFds];
  for (int i = 0; i < nfds && i < kMaxCloneFds; i++) owned[i].reset(fds[i]);
  Decoder d(buf, len);
  uint32_t has = 0;
  uint8_t ntasks = 0;
  uint64_t flags = 0;
  IdMap ids;
  bool has_cgroup = false;
  MountSources src;
  SandboxSpec spec;
  SeccompProgram bpf;
  d.pod(&has);
  d.pod(&ntasks);
  d.pod(&flags);
  d.pod(&ids);
  d.pod(&has_cgroup);
  d.str(&src.rootfs);
  d.str(&src.code);
  d.str(&src.code_name);
  d.pod(&src.code_is_dir);
  // Decided here, not asked for: only this process knows what its namespace
  // has mounted where.
  if (g_shared_root_dev != 0 && src.rootfs == g_shared_root &&
      shared_root_in_place(src.rootfs, g_shared_root_dev))
    src.shared_root_dev = g_shared_root_dev;
  decode_spec(d, &spec);
  decode_bpf(d, &bpf);
  if (!d.ok()) return answer(error_reply(make_error("template clone", "malformed request")));
  if (ntasks > kMaxTasksFds)
    return answer(error_reply(make_error("template clone", "too many cgroup tasks files")));
  int want = 3 + ((has & kHasStderr) ? 1 : 0) + ((has & kHasCodeTree) ? 1 : 0) +
             ((has & kHasCgroup) ? 1 : 0) + ((has & kHasNetns) ? 1 : 0) + ntasks;
  if (nfds != want) return answer(error_reply(make_error("template clone", "wrong number of fds")));
  // Only what a sandbox is made of: namespaces, nothing that would share
  // memory, files or a thread group with the template.
  const uint64_t allowed =
      CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET;
  if (flags & ~allowed)
    return answer(error_reply(make_error("template clone", "flags not allowed")));
  int i = 3;
  ChildFds cf;
  cf.sync = fds[0];
  cf.request = fds[1];
  cf.reply = fds[2];
  cf.init_program = init_program_fd();
  if (has & kHasStderr) cf.stderr_fd = fds[i++];
  if (has & kHasCodeTree) src.code_tree_fd = fds[i++];
  CloneRequest req;
  req.flags = flags | CLONE_PARENT;
  req.ids = ids;
  if (has & kHasCgroup) req.cgroup_dirfd = fds[i++];
  if (has & kHasNetns) cf.netns = req.netns_fd = fds[i++];
  for (int k = 0; k < ntasks; k++) cf.cgroup_tasks.push_back(fds[i++]);
  std::vector<std::string> argv;
  ChildPlan plan;
  build_child_plan(spec, src, ids, has_cgroup, bpf, cf, &argv, &plan);
  plan.run_in_process = run;
  // PID 1 borrows this process's memory rather than copying it (and then
  // dropping the copy when it execs nsbox-init): two copies of the page
  // tables per sandbox become one, the runner's.
  if (may_share_memory(cf.init_program)) {
    g_answer_sock = sock;
    g_clone_pid = 0;
    g_answered = false;
    plan.shares_memory = true;
    plan.announce = announce_clone;
    req.shared_memory_pid = &g_clone_pid;
  }
  int pidfd = -1;
  auto pid = clone_sandbox_child(plan, req, &pidfd);
  if (!pid) return answer(error_reply(pid.error()));
  // The asker, whose child it is, opens its own pidfd.
  close(pidfd);
  if (plan.shares_memory) {
    // PID 1 has exec'd or exited by now. It answered unless it died first
    // (killed from outside, or the socket failed); then the asker must hear.
    if (!g_answered)
      answer(error_reply(make_error("template clone",
                                    "the sandbox's PID 1 exited before it "
                                    "could report its pid")));
    return;
  }
  TemplateReply r;
  r.ok = 1;
  r.pid = pid.value();
  r.shared_root_dev = src.shared_root_dev;
  answer(r);
}

}  // namespace

Status template_share_root(const std::string& rootfs) {
  struct stat before {};
  if (stat(rootfs.c_str(), &before) != 0) return sys_error("stat", rootfs);
  auto dev = mount_shared_root(rootfs);
  if (!dev) {
    // Half made and not undone (an unmount that failed), the tree would
    // stay hidden under the empty tmpfs from every clone's overlay: then
    // this template is not used at all.
    struct stat now {};
    if (stat(rootfs.c_str(), &now) != 0 || now.st_dev != before.st_dev ||
        now.st_ino != before.st_ino)
      return make_error("shared root", dev.error().message() + "; " + rootfs +
                                           " stays covered in the template's namespace");
    fprintf(stderr,
            "nsbox-template: warning: each sandbox mounts an overlay of its own, "
            "as no shared one could be made: %s\n",
            dev.error().message().c_str());
    return {};
  }
  g_shared_root = rootfs;
  g_shared_root_dev = dev.value();
  return {};
}

void template_serve(int sock, void (*run)(const ChildPlan&)) {
  // Wiped in every clone (MADV_WIPEONFORK): a sandbox does not find an
  // earlier sandbox's request (ids, uids, paths) in this buffer (its own
  // request it keeps, decoded, in its plan), and the next request lands in
  // pages of the template's own instead of copying pages it shares with the
  // last clone.
  void* mem =
      mmap(nullptr, kMaxRequest, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED || madvise(mem, kMaxRequest, MADV_WIPEONFORK) != 0) {
    fprintf(stderr, "nsbox-template: request buffer: %s: %s\n",
            mem == MAP_FAILED ? "mmap" : "madvise(MADV_WIPEONFORK)", strerror(errno));
    _exit(1);
  }
  char* buf = static_cast<char*>(mem);
  for (;;) {
    int fds[kMaxPassedFds];
    std::fill(std::begin(fds), std::end(fds), -1);
    ssize_t n = recv_with_fds(sock, buf, kMaxRequest, fds, kMaxCloneFds);
    if (n <= 0) _exit(0);  // the asker is gone
    int nfds = 0;
    while (nfds < kMaxCloneFds && fds[nfds] >= 0) nfds++;
    serve_one(sock, buf, static_cast<size_t>(n), fds, nfds, run);
  }
}

}  // namespace nsbox
