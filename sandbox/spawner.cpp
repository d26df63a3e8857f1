#include "sandbox/spawner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "base/children.hpp"
#include "base/clock.hpp"
#include "base/host_limits.hpp"
#include "base/log.hpp"
#include "sandbox/fd_passing.hpp"
#include "sandbox/init_program.hpp"
#include "sandbox/instance.hpp"
#include "sandbox/netns.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/spec_codec.hpp"
#include "sandbox/template_keeper.hpp"

namespace nsbox {

namespace {

enum Op : uint32_t {
  kSpawn = 1,
  kSetMemory,
  kEvents,
  kDestroy,
  kShutdown,
  kConfigure,
  kProcessMemory,
  kTemplateMemory,
  kSpawnTemplate,  // kSpawn, with a fork socket: a function template (instance.hpp)
  kFork,           // an instance of function template id
  kRestTemplate    // function template id is loaded: frozen until its first fork
};

struct Request {
  uint32_t op;
  uint32_t profile;
  uint64_t id;
  uint64_t value;
};

struct ReplyMsg {
  int32_t ok;
  int32_t err;
  uint64_t id;
  CgroupEvents events;
  ProcessMemory memory;  // kProcessMemory, kTemplateMemory
  double setup_ms;
  int32_t freeze;  // 0: no freeze switch; 1: cgroup.freeze; 2: v1 freezer.state
  char message[512];
};

constexpr size_t kPipeSize = 1 << 20;  // logs are drained after each request
constexpr int kMaxFds = 4;  // a spawn's reply: two channel pipes, the log, the freeze switch

// Function templates frozen between forks (kFork). Frozen, a template's
// PID 1 cannot see its runner die and end the sandbox; the fork socket's
// hang-up says so instead, and the template is thawed to end. The sockets
// are watched in one epoll set, so that the spawner's poll stays one entry
// however many templates there are.
class FrozenTemplates {
 public:
  FrozenTemplates() : ep_(epoll_create1(EPOLL_CLOEXEC)) {}
  int fd() const { return ep_.get(); }
  // Watches sock (the template's fork socket, ours: open while watched).
  // False when it cannot be watched: then the template must not be frozen.
  bool add(uint64_t id, int sock) {
    struct epoll_event ev = {};
    ev.events = 0;  // EPOLLHUP needs no asking
    ev.data.u64 = id;
    if (!ep_.valid() || epoll_ctl(ep_.get(), EPOLL_CTL_ADD, sock, &ev) != 0) return false;
    socks_[id] = sock;
    return true;
  }
  bool contains(uint64_t id) const { return socks_.count(id) != 0; }
  // Whether it was watched (and so frozen).
  bool remove(uint64_t id) {
    auto it = socks_.find(id);
    if (it == socks_.end()) return false;
    epoll_ctl(ep_.get(), EPOLL_CTL_DEL, it->second, nullptr);
    socks_.erase(it);
    return true;
  }
  // The templates whose runner is gone, no longer watched.
  std::vector<uint64_t> hung_up() {
    std::vector<uint64_t> out;
    struct epoll_event evs[64];
    const int n = epoll_wait(ep_.get(), evs, 64, 0);
    for (int i = 0; i < n; i++)
      if (remove(evs[i].data.u64)) out.push_back(evs[i].data.u64);
    return out;
  }
  void clear() {
    while (!socks_.empty()) remove(socks_.begin()->first);
  }

 private:
  UniqueFd ep_;
  std::map<uint64_t, int> socks_;
};

// Whether any child of pid is a zombie, waiting for pid to reap it.
bool has_zombie_children(pid_t pid) {
  for (pid_t k : child_pids(pid))
    if (const auto st = read_proc_stat(k); st && st->state == 'Z') return true;
  return false;
}

void fill_error(ReplyMsg* r, const Error& e) {
  r->ok = 0;
  r->err = e.err;
  snprintf(r->message, sizeof r->message, "%s", e.message().c_str());
}

// The profiles travel to the spawner as bytes (in a memfd, sandbox/spec_codec.hpp),
// because the spawner is forked before the daemon reads its configuration:
// nothing the daemon reads later (the admin token, the config text holding
// it) is ever in the memory of the spawner, nor of the sandboxes' PID 1,
// which are copies of the spawner that never exec.
static_assert(sizeof(CgroupLayout) == 312,
              "CgroupLayout changed: update encode_setup/decode_setup in spawner.cpp");

struct Setup {
  std::vector<SpawnProfile> profiles;
  CgroupLayout layout;
  bool use_cgroups = false;
  FactoryOptions factory;
  std::unique_ptr<TemplateKeeper> templates;  // with factory.use_template
};

std::string encode_setup(const std::vector<SpawnProfile>& profiles, const CgroupLayout& l,
                         bool use_cgroups, const FactoryOptions& f) {
  Encoder e;
  e.pod(f.use_template);
  e.str(f.template_binary);
  e.strs(f.template_modules);
  e.pod(f.template_rotate_after);
  e.pod(use_cgroups);
  e.pod(l.version);
  e.str(l.v2_mount);
  e.str(l.v1_memory);
  e.str(l.v1_pids);
  e.str(l.v1_cpu);
  e.str(l.group);
  e.str(l.subgroup);
  e.pod(l.cpu_limits);
  e.str(l.v1_unified);
  e.str(l.v1_freezer);
  e.pod(l.freeze);
  e.pod(l.create_files);
  e.str(l.why_none);
  for (const auto& p : profiles) {
    encode_spec(e, p.spec);
    encode_bpf(e, p.bpf);
  }
  return e.bytes();
}

bool decode_setup(const std::string& bytes, Setup* out) {
  Decoder d(bytes);
  CgroupLayout& l = out->layout;
  d.pod(&out->factory.use_template);
  d.str(&out->factory.template_binary);
  d.strs(&out->factory.template_modules);
  d.pod(&out->factory.template_rotate_after);
  d.pod(&out->use_cgroups);
  d.pod(&l.version);
  d.str(&l.v2_mount);
  d.str(&l.v1_memory);
  d.str(&l.v1_pids);
  d.str(&l.v1_cpu);
  d.str(&l.group);
  d.str(&l.subgroup);
  d.pod(&l.cpu_limits);
  d.str(&l.v1_unified);
  d.str(&l.v1_freezer);
  d.pod(&l.freeze);
  d.pod(&l.create_files);
  d.str(&l.why_none);
  while (d.more()) {
    SpawnProfile& p = out->profiles.emplace_back();
    decode_spec(d, &p.spec);
    decode_bpf(d, &p.bpf);
  }
  return d.ok();
}

Result<std::string> read_memfd(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return sys_error("fstat", "spawner setup");
  if (st.st_size > (64 << 20)) return make_error("spawner setup", "too large");
  std::string b(static_cast<size_t>(st.st_size), '\0');
  if (pread(fd, b.data(), b.size(), 0) != static_cast<ssize_t>(b.size()))
    return sys_error("pread", "spawner setup");
  return b;
}

// What a later fork would have inherited: the daemon's scheduling policy
// (SCHED_BATCH with batch_scheduling; priority 0 for both). Before the
// templates start, which inherit it, as the sandboxes they clone do.
void adopt_scheduling(int policy) {
  struct sched_param none {};
  if (sched_getscheduler(0) != policy && sched_setscheduler(0, policy, &none) != 0)
    LOG_WARN("spawner: sched_setscheduler(%d): %s", policy, strerror(errno));
}

// With the template factory: every profile's runtime tree gets its template
// now, so that a template that cannot start fails configure() with why.
Status start_templates(Setup& setup) {
  if (!setup.factory.use_template) return {};
  setup.templates = std::make_unique<TemplateKeeper>(
      TemplateOptions{setup.factory.template_binary, "", setup.factory.template_modules},
      setup.factory.template_rotate_after);
  std::vector<std::string> started;
  for (const auto& p : setup.profiles) {
    if (std::find(started.begin(), started.end(), p.spec.rootfs) != started.end()) continue;
    TRY(setup.templates->start(p.spec.rootfs));
    started.push_back(p.spec.rootfs);
  }
  return {};
}

// Children of ours that no Sandbox owns: a sandbox a template cloned (as our
// child) but could not tell us about, because it died before its reply.
// Such a child gets EOF on its sync socket and exits; it is reaped here.
void reap_strays(const std::map<uint64_t, Sandbox>& sandboxes, const TemplateKeeper* templates,
                 pid_t helper) {
  std::vector<pid_t> known = {helper};
  for (const auto& [id, sb] : sandboxes) known.push_back(sb.pid());
  if (templates)
    templates->each(
        [&](const std::string&, const TemplateProcess& t) { known.push_back(t.pid()); });
  for (pid_t pid : child_pids())
    if (std::find(known.begin(), known.end(), pid) == known.end()) {
      int st;
      waitpid(pid, &st, WNOHANG);
    }
}

// Before the profiles arrive: answers only kConfigure and kShutdown.
Setup wait_for_setup(int sock) {
  for (;;) {
    Request req;
    int fd = -1;
    ssize_t n = recv_with_fds(sock, &req, sizeof req, &fd, 1);
    UniqueFd memfd(fd);
    if (n <= 0) _exit(0);  // the daemon gave up before configuring us
    ReplyMsg reply = {};
    if (n == sizeof req && req.op == kShutdown) {
      send_with_fds(sock, &reply, sizeof reply, nullptr, 0);
      _exit(0);
    }
    Setup setup;
    if (n != sizeof req || req.op != kConfigure || !memfd.valid()) {
      fill_error(&reply, make_error("spawner", "not configured yet"));
    } else if (auto bytes = read_memfd(memfd.get()); !bytes) {
      fill_error(&reply, bytes.error());
    } else if (!decode_setup(bytes.value(), &setup) || setup.profiles.size() != req.profile) {
      fill_error(&reply, make_error("spawner setup", "malformed profiles"));
    } else if (Status t = (adopt_scheduling(static_cast<int>(req.value)), start_templates(setup));
               !t) {
      fill_error(&reply, t.error());
    } else {
      reply.ok = 1;
      send_with_fds(sock, &reply, sizeof reply, nullptr, 0);
      return setup;
    }
    send_with_fds(sock, &reply, sizeof reply, nullptr, 0);
  }
}

// The spawner's main loop: one request at a time, in order.
[[noreturn]] void spawner_main(int sock) {
  // Die with the gateway; let the gateway decide when we stop otherwise (a
  // terminal's ^C reaches the whole process group).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_NAME, "nsbox-spawner");
  // A slot lock per sandbox (root mode), and fds for a moment: the soft limit of
  // 1024 would cap the pool. As high as the kernel lets a root process go
  // (the gateway says so when the result caps max_sandboxes).
  raise_open_files(rlim_t(1) << 20);
  // Before the runtime template starts: it and every sandbox inherit it.
  if (!raise_core_limit_to_one() && geteuid() == 0 && core_pattern_pipes())
    LOG_WARN("%s", kCoreLimitWarning);
  // nsbox-init as installed now, beside the code that execs it, rather than
  // at the first sandbox, after an upgrade may have replaced it.
  (void)init_program_fd();
  Setup setup = wait_for_setup(sock);
  const std::vector<SpawnProfile>& profiles = setup.profiles;
  const CgroupLayout& layout = setup.layout;
  const bool use_cgroups = setup.use_cgroups;
  if (use_cgroups) cgroup_sweep_stale(layout, getpid());

  std::map<uint64_t, Sandbox> sandboxes;
  // Function templates' fork sockets (our ends), and their instances.
  std::map<uint64_t, UniqueFd> fork_socks;
  std::map<uint64_t, ForkedInstance> instances;
  std::map<uint64_t, uint64_t> template_of;  // instance -> its function template
  // Function templates' families (family.hpp), by template. An instance
  // holds its family too, so a family outlives its template while any of
  // its instances' leaves is left.
  std::map<uint64_t, std::shared_ptr<TemplateFamily>> families;
  FrozenTemplates frozen_templates;
  uint64_t next_id = 1;
  const std::string prefix = "srv-" + std::to_string(getpid()) + "-";
  // Function templates killed for hanging up, destroyed once their PID 1
  // has exited. Never waited for without a bound: on the v1 freezer a
  // PID 1 cannot finish dying while an instance of its namespace is
  // frozen, and only the instance's destroy (by this same thread, when the
  // gateway asks) thaws it.
  std::set<uint64_t> dead_templates;
  // What an instance started is its template's PID 1's once the instance
  // dies (the instance itself is its runner's child, and the runner
  // ignores SIGCHLD, so the kernel reaps it). A frozen PID 1 reaps nothing:
  // the zombies would be left after the instance's destroy, holding the
  // function group's pids until the next fork thaws it, and that fork
  // would fail on them. So the template is thawed for as long as its PID 1
  // takes to reap them (at most 20 ms), then frozen again.
  auto let_frozen_template_reap = [&](uint64_t tmpl_id) {
    auto sb = sandboxes.find(tmpl_id);
    if (sb == sandboxes.end() || !frozen_templates.contains(tmpl_id)) return;
    const pid_t pid1 = sb->second.pid();
    if (!has_zombie_children(pid1)) return;
    if (!sb->second.set_frozen(false)) return;
    for (int i = 0; i < 20 && has_zombie_children(pid1); i++) usleep(1000);
    if (!sb->second.set_frozen(true)) frozen_templates.remove(tmpl_id);
  };
  auto drop_dead_templates = [&](int wait_ms) {
    for (auto d = dead_templates.begin(); d != dead_templates.end();) {
      if (auto it = sandboxes.find(*d); it != sandboxes.end()) {
        if (!it->second.reap(wait_ms, nullptr)) {
          ++d;
          continue;
        }
        if (Status s = it->second.destroy(); !s)
          LOG_WARN("function template %s%llu: %s", prefix.c_str(), (unsigned long long)*d,
                   s.error().message().c_str());
        sandboxes.erase(it);
      }
      families.erase(*d);  // its instances hold the family until their leaves go
      d = dead_templates.erase(d);
    }
  };
  // A function template that can never fork again is killed, instances
  // and all, then thawed (a v1-frozen PID 1 dies once thawed). Thawed
  // alone, a runner that hung up on purpose would run its module body's
  // threads unfrozen for good. It is destroyed by us once its PID 1 is gone
  // (drop_dead_templates), not when the gateway next asks it to fork, which
  // may be never: its PID 1 would stay a zombie holding its uid slot, and
  // its leaves would stay. The gateway's fork then fails ("no such function
  // template") and drops it, destroying its idle instances before it, as
  // for any template it drops.
  auto kill_template = [&](uint64_t t) {
    frozen_templates.remove(t);  // before its socket closes
    fork_socks.erase(t);
    auto it = sandboxes.find(t);
    if (it == sandboxes.end()) return;
    it->second.kill();
    (void)it->second.set_frozen(false);
    dead_templates.insert(t);
    (void)it->second.reap(100, nullptr);  // this one only: dies at once unless v1-frozen
  };
  // Cgroup leaves made ahead while no request waits, a few per profile once
  // a sandbox of it has been asked for (most daemons use one policy): the
  // mkdirs and limit writes are ~0.3-0.6 ms of a cold start. A spare leaf is
  // empty and never used before a sandbox takes it, made with its profile's
  // limits (a sandbox with others makes its own), and goes with the spawner
  // (or, if the spawner is killed, with the next one's sweep: same names).
  constexpr size_t kSpareLeaves = 4;
  std::vector<std::vector<CgroupLeaf>> spare_leaves(profiles.size());
  std::vector<bool> profile_used(profiles.size(), false);
  uint64_t next_leaf = 1;
  bool spare_leaves_fail = false;  // once: no retry loop against a refusing tree
  auto profile_short_of_leaves = [&]() -> int {
    if (!use_cgroups || spare_leaves_fail) return -1;
    for (size_t i = 0; i < profiles.size(); i++)
      if (profile_used[i] && profiles[i].spec.layers >= kLayerCgroups &&
          spare_leaves[i].size() < kSpareLeaves)
        return static_cast<int>(i);
    return -1;
  };
  // Network namespaces likewise, but by a helper process on the other core
  // (netns.hpp: ~0.4 ms each with the loopback, the costliest namespace by
  // far), started when the first root-mode sandbox with one is asked for.
  // Each is an fd only: nothing names it, and it goes with its last holder.
  constexpr size_t kNetnsAhead = 4;
  NetnsMaker netns_maker;
  constexpr uint64_t kMaintainMs = 5000;
  uint64_t maintain_at = monotonic_ms() + kMaintainMs;
  size_t leaves_left = 0;  // of ended sandboxes, whose removal failed so far
  for (;;) {
    // Every few seconds, sweep leaves that an earlier, killed spawner
    // could not remove while its sandboxes were still dying.
    struct pollfd pfd[3] = {{sock, POLLIN, 0}, {frozen_templates.fd(), POLLIN, 0}, {-1, 0, 0}};
    nfds_t npfd = 2;
    if (netns_maker.running()) pfd[npfd++] = {netns_maker.socket_fd(), POLLIN, 0};
    const int short_of_leaves = profile_short_of_leaves();
    if (short_of_leaves >= 0 && poll(pfd, 1, 0) == 0) {
      auto leaf = CgroupLeaf::create(layout, prefix + "l" + std::to_string(next_leaf++),
                                     profiles[short_of_leaves].spec.limits);
      if (leaf) {
        spare_leaves[short_of_leaves].push_back(std::move(leaf.value()));
      } else {
        spare_leaves_fail = true;
        LOG_WARN("no cgroup leaves made ahead: %s", leaf.error().message().c_str());
      }
      continue;
    }
    // Maintenance (below, ready == 0) every five seconds, in the first
    // moment without a request once due. Requests do not put it off: a
    // steady trickle of them (one every few seconds) kept it from ever
    // running, and with it the removal of leaves left behind and the
    // reaping of strays. Overdue by as much again under a queue that never
    // empties, it goes first.
    const uint64_t now = monotonic_ms();
    const int ready =
        now >= maintain_at + kMaintainMs
            ? 0
            : poll(pfd, npfd, maintain_at > now ? static_cast<int>(maintain_at - now) : 0);
    if (ready > 0 && pfd[1].revents) {
      // Its runner closed or shut down its end of the socket, or is gone.
      for (uint64_t t : frozen_templates.hung_up()) {
        LOG_WARN("function template %s%llu hung up its fork socket (gone, or closed it): killed",
                 prefix.c_str(), (unsigned long long)t);
        kill_template(t);
      }
      drop_dead_templates(0);
    }
    if (ready > 0 && npfd == 3 && pfd[2].revents) netns_maker.collect();
    if (ready > 0 && !pfd[0].revents) continue;
    if (ready == 0) {
      maintain_at = monotonic_ms() + kMaintainMs;
      if (use_cgroups) {
        cgroup_sweep_stale(layout);
        // Said when the count changes, not every round.
        if (size_t left = cgroup_retry_left_behind(); left != leaves_left) {
          if (left) LOG_WARN("%zu cgroup leaves of ended sandboxes still cannot be removed", left);
          leaves_left = left;
        }
      }
      // A template that died is replaced now rather than at the next
      // sandbox, which would otherwise wait for it (or be exec'd).
      if (setup.templates)
        for (const auto& p : profiles) (void)setup.templates->get(p.spec.rootfs);
      reap_strays(sandboxes, setup.templates.get(), netns_maker.pid());
      drop_dead_templates(0);
      continue;
    }
    Request req;
    int none[2];
    ssize_t n = recv_with_fds(sock, &req, sizeof req, none, 0);
    if (n <= 0) break;  // the gateway is gone
    if (n != sizeof req) continue;
    ReplyMsg reply = {};
    reply.ok = 1;
    reply.id = req.id;
    int fds[kMaxFds] = {-1, -1, -1, -1};
    int nfds = 0;
    // What is left to do once the reply is sent (kFork: it would only delay it).
    std::function<void()> after_reply;
    UniqueFd log_read;
    FreezeSwitch freeze;
    ChannelFds channel;
    switch (req.op) {
      case kSpawnTemplate:
      case kSpawn: {
        if (req.profile >= profiles.size()) {
          fill_error(&reply, make_error("spawn", "no such profile"));
          break;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
          fill_error(&reply, sys_error("pipe2", "sandbox log"));
          break;
        }
        log_read.reset(p[0]);
        UniqueFd log_write(p[1]);
        // Not rootless: pipe pages are counted per host uid, and there the
        // sandbox's is the user's; 1 MiB logs for 64 sandboxes would
        // fill the user's allowance and shrink every pipe they make to a
        // page or two.
        if (!profiles[req.profile].spec.ids.rootless)
          fcntl(p[0], F_SETPIPE_SZ, static_cast<int>(kPipeSize));
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        SandboxSpec spec = profiles[req.profile].spec;
        uint64_t id = next_id++;
        spec.id = prefix + std::to_string(id);
        if (req.value) spec.limits.memory_bytes = req.value;
        spec.stderr_fd = log_write.get();
        spec.use_cgroups = use_cgroups;
        UniqueFd fork_mine, fork_theirs;
        if (req.op == kSpawnTemplate) {
          // Instances join cgroup leaves of their own, and live in the
          // template's PID namespace: nothing less will do.
          if (!use_cgroups || spec.layers != kLayerAll) {
            fill_error(&reply,
                       make_error("function template", "needs cgroups and every isolation layer"));
            break;
          }
          int sv[2];
          if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
            fill_error(&reply, sys_error("socketpair", "fork socket"));
            break;
          }
          fork_mine.reset(sv[0]);
          fork_theirs.reset(sv[1]);
          // One way: shut for reading before the template exists, so it
          // can never queue a message (or an fd) to us; answers come on a
          // pipe per fork (instance.hpp). Non-blocking: a template that
          // stops reading costs a failed fork, never a stalled spawner.
          if (shutdown(sv[0], SHUT_RD) != 0 || fcntl(sv[0], F_SETFL, O_NONBLOCK) != 0) {
            fill_error(&reply, sys_error("shutdown", "the fork socket's read side"));
            break;
          }
          spec.fork_fd = sv[1];
          spec.argv.push_back("--fork-fd");
          spec.argv.push_back("6");
        }
        // A function template lives long and is made rarely: exec'd, never
        // cloned from a runtime template (whose requests carry no fork fd).
        TemplateProcess* tmpl =
            setup.templates && req.op == kSpawn ? setup.templates->get(spec.rootfs) : nullptr;
        MadeAhead made;
        profile_used[req.profile] = true;
        auto& spare = spare_leaves[req.profile];
        if (!spare.empty() && req.op == kSpawn &&
            spec.limits == profiles[req.profile].spec.limits) {
          made.leaf = std::move(spare.back());
          spare.pop_back();
        }
        if (uses_made_netns(spec)) {
          netns_maker.ensure_running(kNetnsAhead);
          made.netns = netns_maker.take();
        }
        std::shared_ptr<TemplateFamily> family;
        if (req.op == kSpawnTemplate) {
          // Its leaf, and every instance's, below one group limited to
          // their sum: what an instance hands its template stays counted.
          auto f = TemplateFamily::create(layout, prefix + "f" + std::to_string(id), spec.limits,
                                          [&kill_template, id] { kill_template(id); });
          if (!f) {
            fill_error(&reply, f.error());
            break;
          }
          family = std::move(f.value());
        }
        auto sb = Sandbox::start(spec, profiles[req.profile].bpf,
                                 family ? family->layout() : layout, tmpl, std::move(made));
        if (!sb && tmpl && !tmpl->alive()) {
          // The template died under the request: this sandbox is exec'd,
          // the next request restarts the template.
          LOG_WARN("template died while cloning %s; exec'ing it", spec.id.c_str());
          reap_strays(sandboxes, setup.templates.get(), netns_maker.pid());
          sb = Sandbox::start(spec, profiles[req.profile].bpf, layout);
        }
        if (!sb) {
          fill_error(&reply, sb.error());
          break;
        }
        const SetupTimings& t = sb.value().timings();
        reply.setup_ms = (t.ready_ns - t.prepare_ns) / 1e6;
        if (log_level() >= LogLevel::Debug)  // serve -v: each step, as run -v shows them
          LOG_DEBUG("sandbox %s setup: %s", spec.id.c_str(), format_timings(t).c_str());
        channel = sb.value().take_channel();
        reply.id = id;
        sandboxes.emplace(id, std::move(sb.value()));
        if (fork_mine.valid()) fork_socks.emplace(id, std::move(fork_mine));
        if (family) families.emplace(id, std::move(family));
        fds[0] = channel.to_runner.get();
        fds[1] = channel.from_runner.get();
        fds[2] = log_read.get();
        nfds = 3;
        // The pool freezes the sandbox while idle; without the switch it
        // only stops at its idle timeout (logged, not fatal).
        auto fz = sandboxes.at(id).freeze_switch();
        if (!fz)
          LOG_WARN("sandbox %s: no freeze switch: %s", spec.id.c_str(),
                   fz.error().message().c_str());
        if (fz && fz.value().valid()) {
          freeze = std::move(fz.value());
          fds[3] = freeze.fd.get();
          nfds = 4;
          reply.freeze = freeze.v1 ? 2 : 1;
        }
        break;
      }
      case kFork: {
        auto t = fork_socks.find(req.id);
        auto sb = sandboxes.find(req.id);
        auto fam = families.find(req.id);
        if (t == fork_socks.end() || sb == sandboxes.end() || fam == families.end() ||
            req.profile >= profiles.size()) {
          fill_error(&reply, make_error("fork", "no such function template"));
          break;
        }
        InstanceRequest ir;
        ir.fork_sock = t->second.get();
        ir.family = fam->second;
        uint64_t id = next_id++;
        // An instance sees its leaf's name in /proc/self/cgroup (it is
        // outside its template's cgroup namespace root): random, so that
        // it does not count the daemon's sandboxes.
        uint64_t tag = 0;
        if (getrandom(&tag, sizeof tag, 0) != sizeof tag) tag = monotonic_ns();
        char tag_hex[17];
        snprintf(tag_hex, sizeof tag_hex, "%016llx", (unsigned long long)tag);
        ir.id = prefix + "i" + tag_hex;
        ir.limits = profiles[req.profile].spec.limits;
        if (req.value) ir.limits.memory_bytes = req.value;
        Sandbox& tmpl = sb->second;
        ir.kill_template = [&tmpl] { tmpl.kill(); };
        const uint64_t t0 = monotonic_ns();
        // A template runs only to fork: frozen in between, so that threads
        // its module body started cannot use the CPU while nobody asks.
        if (frozen_templates.remove(req.id)) {
          if (Status s = tmpl.set_frozen(false); !s) {
            fill_error(&reply, Error(s.error().err, "fork", "thawing the function template",
                                     s.error().message()));
            break;
          }
          // Zombies a destroy's check came too early to see (the leaf was
          // empty a moment before they were reparented) hold pids this
          // fork needs: PID 1 reaps them first, now that it runs.
          for (int i = 0; i < 20 && has_zombie_children(tmpl.pid()); i++) usleep(1000);
        }
        auto inst = ForkedInstance::fork(ir, &channel, &log_read);
        if (!inst) {
          fill_error(&reply, inst.error());
          break;  // the template is dropped (killed by then if it was asked)
        }
        reply.setup_ms = (monotonic_ns() - t0) / 1e6;
        reply.id = id;
        auto& placed = instances.emplace(id, std::move(inst.value())).first->second;
        template_of[id] = req.id;
        // Into its cgroup2 leaf (the hybrid layout), then the template
        // frozen again: the instance was in the template's cgroup2 leaf
        // until then, and must not freeze with it.
        after_reply = [&placed, &tmpl, &frozen_templates, tmpl_id = req.id, name = ir.id,
                       sock_fd = ir.fork_sock] {
          if (Status s = placed.settle(); !s) {
            // The template was killed: nothing to freeze (a v1-frozen
            // process would hold its SIGKILL pending).
            LOG_WARN("instance %s: %s", name.c_str(), s.error().message().c_str());
          } else if (tmpl.can_freeze() && frozen_templates.add(tmpl_id, sock_fd)) {
            // Watched first: frozen unwatched, its runner's death would go unseen.
            if (!tmpl.set_frozen(true)) frozen_templates.remove(tmpl_id);
          }
          if (log_level() >= LogLevel::Debug)
            LOG_DEBUG("instance %s setup: %s", name.c_str(),
                      format_instance_timings(placed.timings()).c_str());
        };
        fds[0] = channel.to_runner.get();
        fds[1] = channel.from_runner.get();
        fds[2] = log_read.get();
        nfds = 3;
        if (auto fz = placed.freeze_switch(); fz && fz.value().valid()) {
          freeze = std::move(fz.value());
          fds[3] = freeze.fd.get();
          nfds = 4;
          reply.freeze = freeze.v1 ? 2 : 1;
        }
        break;
      }
      case kRestTemplate: {
        // Frozen from the moment it is loaded, not from its first fork:
        // a template the pool never forks (a warm sandbox served first)
        // would otherwise run its module body's threads meanwhile.
        auto t = fork_socks.find(req.id);
        auto sb = sandboxes.find(req.id);
        if (t == fork_socks.end() || sb == sandboxes.end()) {
          fill_error(&reply, make_error("rest", "no such function template"));
          break;
        }
        // Watched first: frozen unwatched, its runner's death would go unseen.
        if (sb->second.can_freeze() && frozen_templates.add(req.id, t->second.get())) {
          if (Status s = sb->second.set_frozen(true); !s) {
            frozen_templates.remove(req.id);
            fill_error(&reply, s.error());
          }
        }
        break;
      }
      case kSetMemory: {
        auto it = sandboxes.find(req.id);
        auto in = instances.find(req.id);
        if (it == sandboxes.end() && in == instances.end()) {
          fill_error(&reply, make_error("set_memory", "no such sandbox"));
          break;
        }
        Status s = it != sandboxes.end() ? it->second.set_memory_limit(req.value)
                                         : in->second.set_memory_limit(req.value);
        if (!s) fill_error(&reply, s.error());
        break;
      }
      case kEvents: {
        auto it = sandboxes.find(req.id);
        auto in = instances.find(req.id);
        if (it == sandboxes.end() && in == instances.end()) {
          fill_error(&reply, make_error("events", "no such sandbox"));
          break;
        }
        reply.events = it != sandboxes.end() ? it->second.events() : in->second.events();
        break;
      }
      case kProcessMemory: {
        auto it = sandboxes.find(req.id);
        auto in = instances.find(req.id);
        if (it == sandboxes.end() && in == instances.end()) {
          fill_error(&reply, make_error("process memory", "no such sandbox"));
          break;
        }
        // An instance, and a function template (whose tree holds its
        // instances): the processes of its own leaf. Any other sandbox: PID 1's tree.
        if (in != instances.end()) {
          reply.memory = read_pids_memory(in->second.procs());
        } else if (fork_socks.count(req.id)) {
          reply.memory = read_pids_memory(it->second.cgroup_procs());
        } else if (auto m = read_tree_memory(it->second.pid()); !m) {
          fill_error(&reply, m.error());
        } else {
          reply.memory = m.value();
        }
        break;
      }
      case kTemplateMemory: {
        if (setup.templates)
          setup.templates->each([&](const std::string&, const TemplateProcess& t) {
            if (auto m = read_tree_memory(t.pid())) {
              reply.memory.rss += m.value().rss;
              reply.memory.pss += m.value().pss;
              reply.memory.uss += m.value().uss;
              reply.memory.processes++;
            }
          });
        break;
      }
      case kDestroy: {
        // A function template is killed and thawed, and destroyed once its
        // PID 1 is gone: at once, unless one of its instances is v1-frozen
        // (leased, not yet thawed, when the gateway dropped the template),
        // and then after that instance's destroy, not in a wait without a
        // bound here that would hold up the instance's own destroy.
        if (fork_socks.count(req.id) || dead_templates.count(req.id)) {
          kill_template(req.id);
          drop_dead_templates(0);
          break;
        }
        // A template's instances die with it (they live in its PID
        // namespace); their leaves go when the gateway destroys them.
        frozen_templates.remove(req.id);  // before its socket closes
        fork_socks.erase(req.id);
        auto it = sandboxes.find(req.id);
        if (it != sandboxes.end()) {
          Status s = it->second.destroy();
          if (!s) fill_error(&reply, s.error());
          sandboxes.erase(it);
        }
        // After the template's leaf, which is below it; its instances hold
        // it until their leaves go too.
        families.erase(req.id);
        if (auto in = instances.find(req.id); in != instances.end()) {
          Status s = in->second.destroy();
          if (!s) fill_error(&reply, s.error());
          instances.erase(in);
        }
        if (auto t = template_of.find(req.id); t != template_of.end()) {
          let_frozen_template_reap(t->second);
          template_of.erase(t);
        }
        break;
      }
      case kShutdown:
        instances.clear();
        template_of.clear();
        frozen_templates.clear();
        fork_socks.clear();
        sandboxes.clear();  // each destructor kills, reaps and removes its cgroup
        families.clear();   // the groups above the templates' leaves, now empty
        spare_leaves.clear();
        // Killed and reaped before the answer, not left to their death
        // signal: once the daemon has its answer, nothing of ours runs.
        setup.templates.reset();
        netns_maker.stop();
        // And what a lost sibling spawner left (the daemon stops when one
        // dies): its sandboxes died with it, their leaves did not. Our own
        // leaves are all stale now too (every sandbox is gone): one whose
        // removal failed must not outlive the daemon.
        if (use_cgroups) cgroup_sweep_stale(layout, getpid());
        send_with_fds(sock, &reply, sizeof reply, nullptr, 0);
        _exit(0);
      default:
        fill_error(&reply, make_error("spawner", "unknown request"));
    }
    send_with_fds(sock, &reply, sizeof reply, fds, nfds);
    if (after_reply) after_reply();
    netns_maker.top_up();  // replacing what this request took, now that it is answered
    // A template killed by the request (its family overdrawn, family.hpp).
    if (!dead_templates.empty()) drop_dead_templates(0);
  }
  instances.clear();
  sandboxes.clear();
  families.clear();
  spare_leaves.clear();
  setup.templates.reset();
  netns_maker.stop();
  _exit(0);
}

}  // namespace

struct SpawnerClient::Reply {
  ReplyMsg msg;
  UniqueFd fds[kMaxFds];
};

SpawnerClient::~SpawnerClient() {
  (void)shutdown();
}

Result<std::unique_ptr<SpawnerClient>> SpawnerClient::fork_early(
    const std::vector<int>& close_in_child) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return sys_error("socketpair", "spawner");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork", "spawner");
  if (pid == 0) {
    close(sv[0]);
    for (int fd : close_in_child) close(fd);
    spawner_main(sv[1]);
  }
  theirs.reset();
  std::unique_ptr<SpawnerClient> c(new SpawnerClient());
  c->sock_ = std::move(ours);
  c->pid_ = pid;
  return c;
}

Status SpawnerClient::configure(const std::vector<SpawnProfile>& profiles,
                                const CgroupLayout& cgroups, bool use_cgroups,
                                const FactoryOptions& factory) {
  std::string bytes = encode_setup(profiles, cgroups, use_cgroups, factory);
  UniqueFd mem(memfd_create("nsbox-spawner-setup", MFD_CLOEXEC));
  if (!mem.valid()) return sys_error("memfd_create", "spawner setup");
  if (write(mem.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
    return sys_error("write", "spawner setup");
  int fd = mem.get();
  int policy = sched_getscheduler(0);
  TRY(call(kConfigure, static_cast<uint32_t>(profiles.size()), 0,
           static_cast<uint64_t>(policy < 0 ? SCHED_OTHER : policy), &fd));
  return {};
}

Result<std::unique_ptr<SpawnerClient>> SpawnerClient::start(std::vector<SpawnProfile> profiles,
                                                            const CgroupLayout& cgroups,
                                                            bool use_cgroups,
                                                            const FactoryOptions& factory) {
  auto c = TRY(fork_early());
  TRY(c->configure(profiles, cgroups, use_cgroups, factory));
  return c;
}

Result<SpawnerClient::Reply> SpawnerClient::call(uint32_t op, uint32_t profile, uint64_t id,
                                                 uint64_t value, int* send_fd, int timeout_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sock_.valid()) {
    // Shut down, or killed as stuck: either way its sandboxes died with it.
    Error e = make_error("spawner", "not running");
    e.err = ESHUTDOWN;
    return e;
  }
  Request req = {op, profile, id, value};
  if (send_with_fds(sock_.get(), &req, sizeof req, send_fd, send_fd ? 1 : 0) != sizeof req)
    return sys_error("send", "spawner socket");
  // Without a deadline a stopped or stuck spawner would hold every caller
  // (the janitor, refills, the shutdown) behind mu_ for good.
  if (timeout_ms < 0) timeout_ms = call_timeout_ms_.load();
  const uint64_t deadline = monotonic_ms() + uint64_t(timeout_ms);
  for (;;) {
    const uint64_t now = monotonic_ms();
    struct pollfd p = {sock_.get(), POLLIN, 0};
    const int rc = poll(&p, 1, now >= deadline ? 0 : int(deadline - now));
    if (rc > 0) break;
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return sys_error("poll", "spawner socket");
    const pid_t pid = pid_.load();
    if (pid > 0) kill(pid, SIGKILL);
    sock_.reset();
    LOG_ERROR("spawner %d gave no answer within %d ms; killed it", pid, timeout_ms);
    return make_error("spawner", "gave no answer within " + std::to_string(timeout_ms) +
                                     " ms (stopped or stuck); killed it");
  }
  Reply r;
  int fds[kMaxFds] = {-1, -1, -1, -1};
  ssize_t n = recv_with_fds(sock_.get(), &r.msg, sizeof r.msg, fds, kMaxFds);
  for (int i = 0; i < kMaxFds; i++) r.fds[i].reset(fds[i]);
  if (n < 0) return sys_error("recv", "spawner socket");
  if (n != sizeof r.msg) return make_error("spawner", "exited or sent a short reply");
  if (!r.msg.ok) return Error{r.msg.err, r.msg.message, {}, {}};
  return r;
}

Result<SpawnedSandbox> SpawnerClient::spawn(uint32_t profile, uint64_t memory_bytes) {
  return received(TRY(call(kSpawn, profile, 0, memory_bytes, nullptr)));
}

Result<SpawnedSandbox> SpawnerClient::spawn_template(uint32_t profile, uint64_t memory_bytes) {
  return received(TRY(call(kSpawnTemplate, profile, 0, memory_bytes, nullptr)));
}

Result<SpawnedSandbox> SpawnerClient::fork_instance(uint64_t template_id, uint32_t profile,
                                                    uint64_t memory_bytes) {
  return received(TRY(call(kFork, profile, template_id, memory_bytes, nullptr)));
}

Status SpawnerClient::rest_template(uint64_t template_id) {
  TRY(call(kRestTemplate, 0, template_id, 0, nullptr));
  return {};
}

Result<SpawnedSandbox> SpawnerClient::received(Reply r) {
  if (!r.fds[0].valid() || !r.fds[1].valid() || !r.fds[2].valid()) {
    // The fds were lost on the way (e.g. EMFILE here): the sandbox exists
    // but nobody can reach it, so it must not live on in the spawner.
    (void)destroy(r.msg.id);
    return make_error("spawner", "reply carried no fds (out of file descriptors?)");
  }
  SpawnedSandbox s;
  s.id = r.msg.id;
  s.channel.to_runner = std::move(r.fds[0]);
  s.channel.from_runner = std::move(r.fds[1]);
  s.log = std::move(r.fds[2]);
  if (r.msg.freeze && r.fds[3].valid()) {
    s.freeze.fd = std::move(r.fds[3]);
    s.freeze.v1 = r.msg.freeze == 2;
  }
  s.setup_ms = r.msg.setup_ms;
  return s;
}

Status SpawnerClient::set_memory(uint64_t id, uint64_t bytes) {
  TRY(call(kSetMemory, 0, id, bytes, nullptr));
  return {};
}

Result<CgroupEvents> SpawnerClient::events(uint64_t id) {
  Reply r = TRY(call(kEvents, 0, id, 0, nullptr));
  return r.msg.events;
}

Result<ProcessMemory> SpawnerClient::process_memory(uint64_t id) {
  Reply r = TRY(call(kProcessMemory, 0, id, 0, nullptr));
  return r.msg.memory;
}

Result<ProcessMemory> SpawnerClient::template_memory() {
  Reply r = TRY(call(kTemplateMemory, 0, 0, 0, nullptr));
  return r.msg.memory;
}

Status SpawnerClient::destroy(uint64_t id) {
  TRY(call(kDestroy, 0, id, 0, nullptr));
  return {};
}

bool SpawnerClient::alive() {
  // Without mu_, which a call holds for its whole round trip. WNOWAIT looks
  // without reaping, so the pid cannot be reused while pid_ names it.
  const pid_t pid = pid_.load();
  if (pid <= 0) return false;
  siginfo_t si{};
  return !(waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid);
}

Status SpawnerClient::shutdown() {
  if (pid_ <= 0) return {};
  // One bound for the answer (it comes once every sandbox is destroyed) and
  // the exit after it; a spawner past it is killed, so that a stuck one
  // cannot hold the daemon's exit (its sandboxes die with it, of their
  // death signal, and the next start sweeps their leaves).
  constexpr int kShutdownTimeoutMs = 20000;
  const int bound = std::min(call_timeout_ms_.load(), kShutdownTimeoutMs);
  const uint64_t deadline = monotonic_ms() + uint64_t(bound);
  (void)call(kShutdown, 0, 0, 0, nullptr, bound);
  {
    std::lock_guard<std::mutex> lock(mu_);
    sock_.reset();
  }
  int st;
  pid_t w;
  while ((w = waitpid(pid_, &st, WNOHANG)) == 0 && monotonic_ms() < deadline) usleep(10 * 1000);
  if (w == 0) {
    LOG_ERROR("spawner %d did not exit within %d ms of its shutdown; killed it", pid_.load(),
              bound);
    kill(pid_, SIGKILL);
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
  return {};
}

}  // namespace nsbox
