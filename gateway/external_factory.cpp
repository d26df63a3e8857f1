#include "gateway/external_factory.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/clock.hpp"
#include "base/files.hpp"
#include "base/hash.hpp"
#include "base/log.hpp"
#include "base/spawn.hpp"
#include "rootfs/rootfs.hpp"
#include "sandbox/uid_slots.hpp"

namespace nsbox {

namespace {

constexpr int kToolTimeoutMs = 60000;   // docker run/rm, crun run/delete
constexpr int kReadyTimeoutMs = 30000;  // docker: the shim opening its FIFOs
constexpr size_t kMaxToolOutput = 16 << 10;

// The fds a command starts with: 0 is an empty pipe; 1 and 2 are `out`; 3
// and 4 the runner's channel ends when given. Everything else is closed.
// Not /dev/null on 0: crun (before 1.9) chowns the stdio it is given to the
// container's user, which would give the host's /dev/null to a sandbox uid.
Result<pid_t> start_process(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env, int out, int in3 = -1,
                            int out4 = -1, bool own_group = false) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return sys_error("pipe2", "stdin for " + argv[0]);
  UniqueFd empty(p[0]), closed(p[1]);
  closed.reset();  // reads see end of file at once
  std::vector<ChildFd> fds = {{0, empty.get()}, {1, out}, {2, out}};
  if (in3 >= 0) fds.push_back({3, in3});
  if (out4 >= 0) fds.push_back({4, out4});
  return spawn_program(argv, env, fds, own_group);
}

// Waits for pid until timeout_ms, reading whatever `out` delivers (bounded);
// kills it at the deadline. Returns the wait status.
int finish(pid_t pid, int out, int timeout_ms, std::string* output) {
  const int64_t deadline = int64_t(monotonic_ms()) + timeout_ms;
  char buf[4096];
  for (bool open = out >= 0; open;) {
    struct pollfd p = {out, POLLIN, 0};
    int left = int(std::max<int64_t>(0, deadline - int64_t(monotonic_ms())));
    int r = poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // the deadline
    ssize_t n = read(out, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    if (output && output->size() < kMaxToolOutput) output->append(buf, size_t(n));
  }
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) return status;
    if (w < 0 && errno != EINTR) return -1;
    if (int64_t(monotonic_ms()) >= deadline) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (output) *output += " (killed after " + std::to_string(timeout_ms) + " ms)";
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

bool exited_ok(int status) {
  return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs a short command to its end; its output becomes the error's detail.
Status run_tool(const std::vector<std::string>& argv, int timeout_ms = kToolTimeoutMs) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return make_error("pipe2", std::strerror(errno));
  UniqueFd r(p[0]), w(p[1]);
  auto pid = start_process(argv, {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, w.get());
  if (!pid) return pid.error();
  w.reset();
  std::string out;
  int status = finish(pid.value(), r.get(), timeout_ms, &out);
  if (!exited_ok(status))
    return make_error(argv[0] + " " + (argv.size() > 1 ? argv[1] : ""),
                      "failed (wait status " + std::to_string(status) + "): " + trimmed(out));
  return {};
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  f.close();
  if (!f) return make_error("write " + path, std::strerror(errno));
  return {};
}

UniqueFd open_fifo_reader(const std::string& path) {
  return UniqueFd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW));
}

}  // namespace

std::string find_tool(Isolation iso) {
  const char* name = iso == Isolation::Bwrap    ? "bwrap"
                     : iso == Isolation::Crun   ? "crun"
                     : iso == Isolation::Runc   ? "runc"
                     : iso == Isolation::Docker ? "docker"
                     : iso == Isolation::None   ? "setpriv"
                                                : nullptr;
  if (!name) return {};
  for (const char* dir : {"/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/bin/"}) {
    std::string p = std::string(dir) + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

bool hybrid_with_v2_controllers() {
  std::ifstream f("/sys/fs/cgroup/unified/cgroup.controllers");
  std::string word;
  return bool(f >> word);
}

struct ExternalFactory::Box {
  ExternalPlan plan;
  UidSlot slot;
  pid_t pid = -1;  // none, bwrap: the sandbox's process (and group)
};

Result<std::unique_ptr<ExternalFactory>> ExternalFactory::start(
    Isolation iso, const std::string& rootfs, const std::string& work_dir,
    std::vector<std::string> env, std::vector<ExternalProfile> profiles) {
  if (iso == Isolation::Nsbox) return make_error("isolation", "nsbox is the spawner's");
  std::unique_ptr<ExternalFactory> f(new ExternalFactory());
  f->iso_ = iso;
  f->rootfs_ = rootfs;
  f->work_dir_ = work_dir;
  f->env_ = std::move(env);
  f->profiles_ = std::move(profiles);
  f->tool_ = find_tool(iso);
  const char* package = iso == Isolation::Bwrap    ? "bubblewrap"
                        : iso == Isolation::Docker ? "docker.io"
                        : iso == Isolation::None   ? "util-linux"
                                                   : isolation_name(iso);
  if (f->tool_.empty())
    return make_error("isolation = \"" + std::string(isolation_name(iso)) + "\"",
                      std::string("its tool is not installed: apt-get install ") + package +
                          " (nsbox bench --install does)");
  if (auto made = mkdir_p(work_dir, 0711); !made) return made.error();
  if (iso == Isolation::Crun && hybrid_with_v2_controllers()) {
    f->hide_cgroup2_ = true;
    LOG_WARN(
        "crun: this host mixes cgroup v1 with v2 controllers (/sys/fs/cgroup/unified), which "
        "crun refuses; crun runs in a mount namespace of its own without that mount, on v1");
  }
  if (iso == Isolation::Docker) {
    // One image per rootfs build.
    char tag[64];
    std::snprintf(tag, sizeof tag, "nsbox-runtime:%016llx",
                  static_cast<unsigned long long>(fnv1a64(rootfs_identity(rootfs))));
    f->image_ = tag;
    if (!run_tool({f->tool_, "image", "inspect", f->image_})) {
      std::string tar = work_dir + "/rootfs.tar";
      if (Status s = run_tool({"/usr/bin/tar", "-C", rootfs, "-cf", tar, "."}, 300000); !s)
        return s.error();
      Status s = run_tool({f->tool_, "import", tar, f->image_}, 300000);
      unlink(tar.c_str());
      if (!s) return make_error("docker import", s.error().message() + " (is dockerd running?)");
    }
  }
  return f;
}

ExternalFactory::~ExternalFactory() {
  std::map<uint64_t, std::unique_ptr<Box>> all;
  {
    std::lock_guard<std::mutex> g(mu_);
    all.swap(boxes_);
  }
  for (auto& [id, box] : all) (void)remove(*box);
  // crun and runc leave the parent of their sandboxes' cgroups; it goes
  // once empty (another daemon's sandboxes keep it: EBUSY).
  if (iso_ == Isolation::Crun || iso_ == Isolation::Runc) {
    std::error_code ec;
    for (const auto& h : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
      std::string own = h.path().string() + "/" + kCompareCgroup;
      rmdir(own.c_str());
    }
    std::string v2 = std::string("/sys/fs/cgroup/") + kCompareCgroup;
    rmdir(v2.c_str());
  }
  std::error_code ec;
  std::filesystem::remove_all(work_dir_, ec);
}

Result<SpawnedSandbox> ExternalFactory::spawn(uint32_t profile, uint64_t memory_bytes) {
  if (profile >= profiles_.size()) return make_error("spawn", "no such profile");
  auto box = std::make_unique<Box>();
  uint64_t id;
  {
    std::lock_guard<std::mutex> g(mu_);
    id = next_++;
  }
  auto slot = UidSlot::acquire();
  if (!slot) return slot.error();
  box->slot = std::move(slot.value());
  ExternalPlan& p = box->plan;
  p.iso = iso_;
  p.id = "nsbox-" + std::string(isolation_name(iso_)) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(id);
  p.rootfs = rootfs_;
  p.tool = tool_;
  p.image = image_;
  p.env = env_;
  p.memory_bytes = memory_bytes;
  p.pids = profiles_[profile].pids;
  p.tmpfs_bytes = profiles_[profile].tmpfs_bytes;
  p.state_root = work_dir_ + "/state";
  p.hide_cgroup2 = hide_cgroup2_;
  p.bundle = work_dir_ + "/" + p.id;
  const bool oci = iso_ == Isolation::Crun || iso_ == Isolation::Runc;
  // crun, runc: the user namespace's first host uid; the others run as the
  // slot's sandbox user, as an nsbox sandbox's processes do.
  p.uid = oci ? box->slot.host_base() : box->slot.host_base() + 1000;

  const double t0 = double(monotonic_us()) / 1000.0;
  SpawnedSandbox out;
  out.id = id;

  if (iso_ == Isolation::Docker) {
    // The directory stays root's: the container's user may open the FIFOs
    // (its own) but not replace them, say with a symlink to a host file
    // that the host would then open for writing.
    if (mkdir(p.bundle.c_str(), 0711) != 0) return sys_error("mkdir", p.bundle);
    // Until the box is reserved below, a failure removes what it made here
    // itself: nothing else knows of this directory until the daemon stops.
    auto drop_bundle = [&p](Error e) -> Result<SpawnedSandbox> {
      std::error_code ec;
      std::filesystem::remove_all(p.bundle, ec);
      return e;
    };
    for (const char* n : {"/in", "/out", "/err"}) {
      std::string f = p.bundle + n;
      if (mkfifo(f.c_str(), 0600) != 0 || chown(f.c_str(), p.uid, p.uid) != 0)
        return drop_bundle(sys_error("mkfifo", f));
    }
    // Readers first, so that the shim's opens for writing do not block.
    UniqueFd err = open_fifo_reader(p.bundle + "/err"), from = open_fifo_reader(p.bundle + "/out");
    if (!err.valid() || !from.valid()) return drop_bundle(sys_error("open FIFO"));
    {
      std::lock_guard<std::mutex> g(mu_);
      boxes_[id] = nullptr;  // reserved: destroy() of a half-made box finds nothing
    }
    Box* b = box.get();
    auto cleanup = [&](Error e) -> Result<SpawnedSandbox> {
      (void)remove(*b);
      std::lock_guard<std::mutex> g(mu_);
      boxes_.erase(id);
      return e;
    };
    if (Status s = run_tool(start_argv(p)); !s) return cleanup(s.error());
    // The request FIFO opens for writing once the shim has opened it for
    // reading; until then the kernel answers ENXIO.
    UniqueFd to;
    const int64_t deadline = int64_t(monotonic_ms()) + kReadyTimeoutMs;
    while (!to.valid()) {
      to.reset(open((p.bundle + "/in").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW));
      if (to.valid()) break;
      if (errno != ENXIO || int64_t(monotonic_ms()) > deadline)
        return cleanup(sys_error("open", p.bundle + "/in"));
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    // The shim's one byte: the reply FIFO has its writer, so its end of
    // file now means the container is gone.
    struct pollfd pf = {from.get(), POLLIN, 0};
    char c = 0;
    if (poll(&pf, 1, int(std::max<int64_t>(0, deadline - int64_t(monotonic_ms())))) != 1 ||
        read(from.get(), &c, 1) != 1 || c != kShimReady)
      return cleanup(make_error("spawn", "the container did not open its FIFOs"));
    int fl = fcntl(from.get(), F_GETFL);
    fcntl(from.get(), F_SETFL, fl & ~O_NONBLOCK);
    out.channel.to_runner = std::move(to);
    out.channel.from_runner = std::move(from);
    out.log = std::move(err);
    out.setup_ms = double(monotonic_us()) / 1000.0 - t0;
    std::lock_guard<std::mutex> g(mu_);
    boxes_[id] = std::move(box);
    return out;
  }

  // The log: the sandbox's stdout and stderr (docker's is the err FIFO).
  int lp[2];
  if (pipe2(lp, O_CLOEXEC) != 0) return sys_error("pipe2");
  UniqueFd log_r(lp[0]), log_w(lp[1]);
  auto ch = make_channel();
  if (!ch) return ch.error();
  // Reserved before anything starts, so that the box's final store below
  // allocates nothing: a throw there would leave a started process or
  // container owned by no one, its uid slot handed out again. A failure
  // from here on removes the box (its bundle included) and the reservation.
  {
    std::lock_guard<std::mutex> g(mu_);
    boxes_[id] = nullptr;  // destroy() of a half-made box finds nothing
  }
  auto give_up = [&](Error e) -> Result<SpawnedSandbox> {
    (void)remove(*box);
    std::lock_guard<std::mutex> g(mu_);
    boxes_.erase(id);
    return e;
  };
  if (oci) {
    if (mkdir(p.bundle.c_str(), 0700) != 0) return give_up(sys_error("mkdir", p.bundle));
    if (Status s = write_text(p.bundle + "/config.json", oci_config(p)); !s)
      return give_up(s.error());
  }
  auto pid = start_process(start_argv(p), env_, log_w.get(), ch.value().runner_in.get(),
                           ch.value().runner_out.get(), !oci);
  if (!pid) return give_up(pid.error());
  if (oci) {
    // The runtime returns once the container runs detached.
    int status = finish(pid.value(), -1, kToolTimeoutMs, nullptr);
    if (!exited_ok(status)) {
      log_w.reset();
      char buf[2048];
      ssize_t n = read(log_r.get(), buf, sizeof buf - 1);
      std::string why = n > 0 ? trimmed(std::string(buf, size_t(n))) : "no output";
      return give_up(make_error(std::string(isolation_name(iso_)) + " run", why));
    }
  } else {
    box->pid = pid.value();
  }
  int fl = fcntl(log_r.get(), F_GETFL);
  fcntl(log_r.get(), F_SETFL, fl | O_NONBLOCK);
  out.channel = std::move(ch.value().host);
  out.log = std::move(log_r);
  out.setup_ms = double(monotonic_us()) / 1000.0 - t0;
  std::lock_guard<std::mutex> g(mu_);
  boxes_[id] = std::move(box);
  return out;
}

Status ExternalFactory::remove(Box& box) {
  Status result;
  if (box.pid > 0) {
    kill(-box.pid, SIGKILL);
    kill(box.pid, SIGKILL);
    int status;
    while (waitpid(box.pid, &status, 0) < 0 && errno == EINTR) {
    }
    box.pid = -1;
  }
  auto del = destroy_argv(box.plan);
  if (!del.empty()) result = run_tool(del);
  if (box.plan.iso == Isolation::Crun || box.plan.iso == Isolation::Runc) {
    // `delete --force` kills the container and removes its cgroups, but a
    // leaf whose last process had not yet exited is left behind (once in
    // some hundreds here): remove the now empty leaves ourselves.
    std::vector<std::string> leaves = {std::string("/sys/fs/cgroup/") + kCompareCgroup + "/" +
                                       box.plan.id};
    std::error_code ec;
    for (const auto& h : std::filesystem::directory_iterator("/sys/fs/cgroup", ec))
      leaves.push_back(h.path().string() + "/" + kCompareCgroup + "/" + box.plan.id);
    const int64_t deadline = int64_t(monotonic_ms()) + 2000;
    for (const auto& leaf : leaves) {
      while (rmdir(leaf.c_str()) != 0 && errno == EBUSY && int64_t(monotonic_ms()) < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  if (!box.plan.bundle.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(box.plan.bundle, ec);
  }
  box.slot.release();
  return result;
}

Status ExternalFactory::set_memory(uint64_t id, uint64_t memory_bytes) {
  ExternalPlan plan;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end() || !it->second) return make_error("set_memory", "no such sandbox");
    plan = it->second->plan;
  }
  auto argv = set_memory_argv(plan, memory_bytes);
  if (argv.empty()) return {};  // none, bwrap: no limit to change
  return run_tool(argv);
}

Result<CgroupEvents> ExternalFactory::events(uint64_t) {
  return make_error("events", std::string(isolation_name(iso_)) + " sandboxes report no counters");
}

Status ExternalFactory::destroy(uint64_t id) {
  std::unique_ptr<Box> box;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end() || !it->second) return make_error("destroy", "no such sandbox");
    box = std::move(it->second);
    boxes_.erase(it);
  }
  return remove(*box);
}

}  // namespace nsbox
