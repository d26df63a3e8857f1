// plan_mounts: the pure mount planner (the executor is tested under userns).
#include "sandbox/mounts.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "sandbox/shared_root.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {

using nsbox::test::TempDir;

SandboxSpec spec_for(const std::string& code_path) {
  SandboxSpec s;
  s.id = "t1";
  s.rootfs = "/var/lib/nsbox/rootfs";
  s.code_path = code_path;
  s.stage_dir = "/run/nsbox/stage";
  s.limits.tmpfs_bytes = 16ull << 20;
  return s;
}

// Index of the first op of `kind` on `dst`, or -1.
int find_op(const MountPlan& p, MountOp::Kind kind, const std::string& dst) {
  for (size_t i = 0; i < p.ops.size(); i++)
    if (p.ops[i].kind == kind && p.ops[i].dst == dst) return static_cast<int>(i);
  return -1;
}

int count_kind(const MountPlan& p, MountOp::Kind kind) {
  return static_cast<int>(
      std::count_if(p.ops.begin(), p.ops.end(), [&](const MountOp& o) { return o.kind == kind; }));
}

const std::string kRoot = "/run/nsbox/stage/root";

}  // namespace

TEST_CASE("plan_mounts: stage, new root and the staging tmpfs first") {
  TempDir dir("mounts-test");
  MountPlan p = plan_mounts(spec_for(dir.path));
  CHECK(p.stage == "/run/nsbox/stage");
  CHECK(p.new_root == kRoot);
  REQUIRE_FALSE(p.ops.empty());
  const MountOp& first = p.ops.front();
  CHECK(first.kind == MountOp::Tmpfs);
  CHECK(first.dst == "/run/nsbox/stage");
  CHECK(first.data.find("size=" + std::to_string(16ull << 20)) == 0);
  // Its inodes bounded too: one per page, at least 4096.
  CHECK(first.data.find(",nr_inodes=4096,") != std::string::npos);
  SandboxSpec big = spec_for(dir.path);
  big.limits.tmpfs_bytes = 1ull << 30;
  CHECK(plan_mounts(big, sources_from_spec(big)).ops[0].data.find(",nr_inodes=262144,") !=
        std::string::npos);
  CHECK((first.flags & MS_NOSUID) != 0);
  CHECK((first.flags & MS_NODEV) != 0);
}

TEST_CASE("plan_mounts: overlay of the rootfs with upper and work on the stage") {
  TempDir dir("mounts-test");
  MountPlan p = plan_mounts(spec_for(dir.path));
  int ov = find_op(p, MountOp::Overlay, kRoot);
  REQUIRE(ov >= 0);
  CHECK(count_kind(p, MountOp::Overlay) == 1);
  CHECK(p.ops[ov].data ==
        "lowerdir=/var/lib/nsbox/rootfs,upperdir=/run/nsbox/stage/upper,workdir=/run/nsbox/stage/"
        "work");
  CHECK((p.ops[ov].flags & MS_NOSUID) != 0);
  CHECK((p.ops[ov].flags & MS_NODEV) != 0);
  // Its directories exist before it is mounted, and after the staging tmpfs.
  int upper = find_op(p, MountOp::Mkdir, "/run/nsbox/stage/upper");
  int work = find_op(p, MountOp::Mkdir, "/run/nsbox/stage/work");
  int root = find_op(p, MountOp::Mkdir, kRoot);
  REQUIRE(upper > 0);
  REQUIRE(work > 0);
  REQUIRE(root > 0);
  CHECK(upper < ov);
  CHECK(work < ov);
  CHECK(root < ov);
}

// The op binding src onto dst, or -1.
int find_bind(const MountPlan& p, const std::string& src, const std::string& dst) {
  for (size_t i = 0; i < p.ops.size(); i++)
    if (p.ops[i].kind == MountOp::Bind && p.ops[i].src == src && p.ops[i].dst == dst)
      return static_cast<int>(i);
  return -1;
}

TEST_CASE("plan_mounts: the stage is the only tmpfs: /tmp and /dev/shm are sticky dirs on it") {
  TempDir dir("mounts-test");
  std::string file = dir.path + "/fn.py";
  std::ofstream(file) << "";
  for (const std::string& code : {dir.path, file, std::string()}) {
    INFO("code: ", code);
    MountPlan p = plan_mounts(spec_for(code));
    // Every superblock costs each memory cgroup a shrinker slot (mounts.cpp):
    // one tmpfs, one overlay, one proc, nothing else.
    CHECK(count_kind(p, MountOp::Tmpfs) == 1);
    CHECK(count_kind(p, MountOp::Overlay) == 1);
    CHECK(count_kind(p, MountOp::Proc) == 1);
    int ov = find_op(p, MountOp::Overlay, kRoot);
    for (const auto& names :
         {std::pair<std::string, std::string>{"tmp", "/tmp"}, {"shm", "/dev/shm"}}) {
      // Named copies: INFO captures by reference, which clang 14 refuses
      // for structured bindings.
      const std::string& dir_name = names.first;
      const std::string& dst = names.second;
      INFO(dst);
      int mk = find_op(p, MountOp::Mkdir, "/run/nsbox/stage/" + dir_name);
      REQUIRE(mk > 0);
      CHECK(p.ops[mk].mode == 01777);
      int b = find_bind(p, "/run/nsbox/stage/" + dir_name, kRoot + dst);
      REQUIRE(b > ov);
      CHECK(b > mk);
    }
    // /dev/shm is also noexec; the binds inherit the stage's nosuid,nodev.
    int shm = find_bind(p, "/run/nsbox/stage/shm", kRoot + "/dev/shm");
    int noexec = find_op(p, MountOp::Remount, kRoot + "/dev/shm");
    REQUIRE(noexec > shm);
    CHECK((p.ops[noexec].flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) ==
          (MS_NOSUID | MS_NODEV | MS_NOEXEC));
    CHECK((p.ops[0].flags & (MS_NOSUID | MS_NODEV)) == (MS_NOSUID | MS_NODEV));
  }
}

TEST_CASE("plan_mounts: /dev holds only harmless device binds and is read-only") {
  TempDir dir("mounts-test");
  MountPlan p = plan_mounts(spec_for(dir.path));
  const std::string sdev = "/run/nsbox/stage/dev";
  int mk = find_op(p, MountOp::Mkdir, sdev);
  REQUIRE(mk >= 0);
  for (const std::string name : {"null", "zero", "full", "random", "urandom"}) {
    INFO("/dev/", name);
    std::string dst = sdev + "/" + name;
    int touch = find_op(p, MountOp::Touch, dst);
    int bind = find_op(p, MountOp::Bind, dst);
    REQUIRE(touch > mk);
    REQUIRE(bind > touch);
    CHECK(p.ops[bind].src == std::string("/dev/") + name);
    // The host's inode: read-only, so that no function changes its times.
    int ro = find_op(p, MountOp::RemountRo, dst);
    REQUIRE(ro > bind);
    CHECK(p.ops[ro].flags == (MS_NOSUID | MS_NOEXEC));
  }
  // No other host device is bound in (the /proc masks bind the sandbox's
  // own read-only /dev/null).
  for (const MountOp& op : p.ops)
    if (op.kind == MountOp::Bind && op.src.rfind("/dev/", 0) == 0)
      CHECK(op.dst.rfind(sdev + "/", 0) == 0);
  // The whole directory goes into place at once (a bind carries the device
  // binds under it), then becomes read-only and noexec.
  int dev = find_bind(p, sdev, kRoot + "/dev");
  REQUIRE(dev > find_op(p, MountOp::Bind, sdev + "/urandom"));
  int shm = find_bind(p, "/run/nsbox/stage/shm", kRoot + "/dev/shm");
  CHECK(shm > dev);
  int ro = find_op(p, MountOp::RemountRo, kRoot + "/dev");
  REQUIRE(ro >= 0);
  CHECK(ro > shm);
  CHECK((p.ops[ro].flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) ==
        (MS_NOSUID | MS_NODEV | MS_NOEXEC));
  for (const std::string link : {"fd", "stdin", "stdout", "stderr"}) {
    int s = find_op(p, MountOp::Symlink, sdev + "/" + link);
    CHECK_MESSAGE(s > mk, link);
    CHECK_MESSAGE(s < dev, link);
  }
  CHECK(p.ops[find_op(p, MountOp::Symlink, sdev + "/stdout")].src == "/proc/self/fd/1");
}

TEST_CASE("plan_mounts: a code directory is bound read-only at /var/task") {
  TempDir dir("mounts-test");
  MountPlan p = plan_mounts(spec_for(dir.path));
  std::string task = kRoot + "/var/task";
  int bind = find_op(p, MountOp::Bind, task);
  REQUIRE(bind >= 0);
  CHECK(p.ops[bind].src == dir.path);
  int ro = find_op(p, MountOp::RemountRo, task);
  CHECK(ro > bind);
  // No tmpfs is needed to hold a directory's mount point.
  CHECK(find_op(p, MountOp::Tmpfs, task) == -1);
  CHECK(count_kind(p, MountOp::Touch) == 5);  // only the /dev nodes
}

TEST_CASE("plan_mounts: a code file gets a directory of its own, so its siblings stay invisible") {
  TempDir dir("mounts-test");
  std::string file = dir.path + "/fn.py";
  std::ofstream(file) << "def handler(e, c): return 1\n";
  std::ofstream(dir.path + "/secret.txt") << "x";
  MountPlan p = plan_mounts(spec_for(file));
  std::string task = kRoot + "/var/task";
  const std::string scode = "/run/nsbox/stage/code";
  int mk = find_op(p, MountOp::Mkdir, scode);
  int touch = find_op(p, MountOp::Touch, scode + "/fn.py");
  int bind = find_op(p, MountOp::Bind, scode + "/fn.py");
  int ro_file = find_op(p, MountOp::RemountRo, scode + "/fn.py");
  int place = find_bind(p, scode, task);
  int ro_dir = find_op(p, MountOp::RemountRo, task);
  REQUIRE(mk >= 0);
  CHECK(touch > mk);
  CHECK(bind > touch);
  CHECK(ro_file > bind);
  CHECK(place > ro_file);
  CHECK(ro_dir > place);
  CHECK(p.ops[bind].src == file);
  for (int ro : {ro_file, ro_dir}) CHECK(p.ops[ro].flags == (MS_NOSUID | MS_NODEV));
  CHECK(find_op(p, MountOp::Tmpfs, task) == -1);
  // The directory holding the file is never bound.
  for (const MountOp& op : p.ops) CHECK(op.src != dir.path);
}

TEST_CASE("plan_mounts: a code path that does not exist is planned as a file") {
  // The planner only distinguishes directories; the executor's bind fails later.
  MountPlan p = plan_mounts(spec_for("/no/such/handler.py"));
  CHECK(find_op(p, MountOp::Bind, "/run/nsbox/stage/code/handler.py") >= 0);
}

TEST_CASE("plan_mounts: a fresh proc, nosuid/nodev/noexec, comes last") {
  TempDir dir("mounts-test");
  MountPlan p = plan_mounts(spec_for(dir.path));
  int proc = find_op(p, MountOp::Proc, kRoot + "/proc");
  REQUIRE(proc >= 0);
  const MountOp& op = p.ops[proc];
  CHECK((op.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) == (MS_NOSUID | MS_NODEV | MS_NOEXEC));
  // No hidepid: PID 1 stays listed (mounts.cpp says why).
  CHECK(op.data.empty());
  CHECK_FALSE(op.optional);
  CHECK(count_kind(p, MountOp::Proc) == 1);
  // Only the masks on the new proc follow it.
  for (size_t i = proc + 1; i < p.ops.size(); i++) {
    INFO(p.ops[i].describe());
    CHECK(p.ops[i].dst.rfind(kRoot + "/proc/", 0) == 0);
    CHECK(p.ops[i].optional);
  }
}

TEST_CASE("plan_mounts: /proc is masked as Docker masks it, wherever the kernel has an entry") {
  TempDir dir("mounts-test");
  MountPlan p = plan_mounts(spec_for(dir.path));
  int proc = find_op(p, MountOp::Proc, kRoot + "/proc");
  REQUIRE(proc >= 0);
  const std::string pr = kRoot + "/proc/";
  for (const std::string f : {"kcore", "keys", "latency_stats", "timer_list", "timer_stats",
                              "sched_debug", "interrupts", "locks"}) {
    INFO("/proc/", f);
    int b = find_op(p, MountOp::Bind, pr + f);
    REQUIRE(b > proc);
    CHECK(p.ops[b].src == kRoot + "/dev/null");  // a read-only mount: the bind is too
    CHECK(p.ops[b].optional);
  }
  int empty = find_op(p, MountOp::Mkdir, "/run/nsbox/stage/empty");
  REQUIRE(empty >= 0);
  CHECK(p.ops[empty].mode == 0555);
  for (const std::string d : {"acpi", "asound", "scsi"}) {
    INFO("/proc/", d);
    int b = find_bind(p, "/run/nsbox/stage/empty", pr + d);
    int ro = find_op(p, MountOp::RemountRo, pr + d);
    REQUIRE(b > proc);
    CHECK(ro > b);
    CHECK((p.ops[ro].flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) ==
          (MS_NOSUID | MS_NODEV | MS_NOEXEC));
    CHECK(p.ops[b].optional);
    CHECK(p.ops[ro].optional);
  }
  for (const std::string e : {"bus", "fs", "irq", "pressure", "sys", "sysrq-trigger"}) {
    INFO("/proc/", e);
    int b = find_op(p, MountOp::Bind, pr + e);
    int ro = find_op(p, MountOp::RemountRo, pr + e);
    REQUIRE(b > proc);
    CHECK(p.ops[b].src == pr + e);  // onto itself: its own mount, remountable
    CHECK(ro > b);
    CHECK(p.ops[b].optional);
    CHECK(p.ops[ro].optional);
  }
  // Nothing before /proc is optional: a missing /dev or /tmp is an error.
  for (int i = 0; i < proc; i++) CHECK_FALSE_MESSAGE(p.ops[i].optional, p.ops[i].describe());
}

TEST_CASE(
    "plan_mounts: every destination is under the stage, and below the root after the overlay") {
  TempDir dir("mounts-test");
  std::string file = dir.path + "/fn.py";
  std::ofstream(file) << "";
  for (const std::string& code : {dir.path, file}) {
    SandboxSpec s = spec_for(code);
    s.stage_dir = "/tmp/st";
    MountPlan p = plan_mounts(s);
    int ov = find_op(p, MountOp::Overlay, "/tmp/st/root");
    REQUIRE(ov >= 0);
    for (size_t i = 0; i < p.ops.size(); i++) {
      const std::string& dst = p.ops[i].dst;
      INFO("op ", i, ": ", p.ops[i].describe());
      CHECK((dst == "/tmp/st" || dst.rfind("/tmp/st/", 0) == 0));
      CHECK(dst.find("..") == std::string::npos);
      if (int(i) > ov) CHECK(dst.rfind("/tmp/st/root/", 0) == 0);
    }
  }
}

TEST_CASE("plan_mounts: code_mount is honoured") {
  TempDir dir("mounts-test");
  SandboxSpec s = spec_for(dir.path);
  s.code_mount = "/opt/code";
  MountPlan p = plan_mounts(s);
  CHECK(find_op(p, MountOp::Bind, kRoot + "/opt/code") >= 0);
  CHECK(find_op(p, MountOp::Bind, kRoot + "/var/task") == -1);
}

TEST_CASE("MountOp::describe names the kind, source and destination") {
  CHECK(MountOp{MountOp::Tmpfs, "", "/r/tmp", "size=1", 0}.describe() == "tmpfs on /r/tmp");
  CHECK(MountOp{MountOp::Overlay, "", "/r", "", 0}.describe() == "overlay on /r");
  CHECK(MountOp{MountOp::Proc, "", "/r/proc", "", 0}.describe() == "proc on /r/proc");
  CHECK(MountOp{MountOp::Bind, "/dev/null", "/r/dev/null", "", 0}.describe() ==
        "bind /dev/null on /r/dev/null");
  CHECK(MountOp{MountOp::RemountRo, "", "/r/dev", "", 0}.describe() ==
        "read-only remount of /r/dev");
  CHECK(MountOp{MountOp::Remount, "", "/r/dev/shm", "", 0}.describe() == "remount of /r/dev/shm");
  CHECK(MountOp{MountOp::Mkdir, "", "/s/upper", "", 0}.describe() == "mkdir /s/upper");
  CHECK(MountOp{MountOp::Touch, "", "/r/dev/zero", "", 0}.describe() == "create /r/dev/zero");
  CHECK(MountOp{MountOp::Symlink, "/proc/self/fd", "/r/dev/fd", "", 0}.describe() ==
        "symlink /r/dev/fd -> /proc/self/fd");
  // Every planned op's description mentions its destination.
  TempDir dir("mounts-test");
  for (const MountOp& op : plan_mounts(spec_for(dir.path)).ops)
    CHECK_MESSAGE(op.describe().find(op.dst) != std::string::npos, op.describe());
}

TEST_CASE("child_run_mounts: an optional op on a missing entry is skipped, other errors stop") {
  TempDir dir("mounts-test");
  MountPlan p;
  auto add = [&](MountOp::Kind k, std::string src, std::string dst, bool optional) {
    p.ops.push_back(MountOp{k, std::move(src), std::move(dst), {}, 0});
    p.ops.back().optional = optional;
  };
  // None of these reach a mount: each fails on the missing path first.
  add(MountOp::Bind, "/dev/null", dir.path + "/absent/kcore", true);
  add(MountOp::Tmpfs, "", dir.path + "/absent/acpi", true);
  add(MountOp::RemountRo, "", dir.path + "/absent/sys", true);
  add(MountOp::Mkdir, "", dir.path + "/made", false);
  const MountOp* failed = &p.ops[0];
  CHECK(child_run_mounts(p, &failed) == 0);
  CHECK(failed == nullptr);
  CHECK(access((dir.path + "/made").c_str(), F_OK) == 0);

  // A Mkdir gets its mode exactly, whatever the umask.
  p.ops.clear();
  add(MountOp::Mkdir, "", dir.path + "/sticky", false);
  p.ops.back().mode = 01777;
  add(MountOp::Mkdir, "", dir.path + "/plain", false);
  mode_t old = umask(077);
  CHECK(child_run_mounts(p, &failed) == 0);
  umask(old);
  struct stat st;
  REQUIRE(stat((dir.path + "/sticky").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 01777);
  REQUIRE(stat((dir.path + "/plain").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);

  // Optional forgives only absence: EEXIST still fails, and names the op.
  p.ops.clear();
  add(MountOp::Mkdir, "", dir.path + "/made", true);
  CHECK(child_run_mounts(p, &failed) == EEXIST);
  CHECK(failed == &p.ops[0]);
  // A required op on a missing path fails.
  p.ops.clear();
  add(MountOp::Bind, "/dev/null", dir.path + "/absent/kcore", false);
  CHECK(child_run_mounts(p, &failed) == ENOENT);
}

TEST_CASE("plan_mounts: a template's clone binds the shared root instead of an overlay") {
  TempDir dir("mounts-test");
  MountSources src = sources_from_spec(spec_for(dir.path));
  src.shared_root_dev = 42;
  MountPlan p = plan_mounts(spec_for(dir.path), src);
  CHECK(count_kind(p, MountOp::Overlay) == 0);
  CHECK(count_kind(p, MountOp::SharedRoot) == 1);
  int root = find_op(p, MountOp::SharedRoot, kRoot);
  REQUIRE(root >= 0);
  CHECK(p.ops[root].src == "/var/lib/nsbox/rootfs");
  CHECK(p.ops[root].dev == 42);
  // Nothing for an upper layer: the stage holds only what the sandbox writes.
  CHECK(find_op(p, MountOp::Mkdir, "/run/nsbox/stage/upper") == -1);
  CHECK(find_op(p, MountOp::Mkdir, "/run/nsbox/stage/work") == -1);
  // Everything else lands on it, as on an overlay of its own.
  CHECK(find_bind(p, "/run/nsbox/stage/tmp", kRoot + "/tmp") > root);
  CHECK(find_op(p, MountOp::Proc, kRoot + "/proc") > root);
}

namespace {

// In a child of its own mount namespace (root only): what mount_shared_root
// makes of `tree`, one word per check. Then, if `rebuild`, this process (in
// the host's namespace, where the tree is no mount point) renames the tree
// away and makes another at its path, as a rootfs rebuild does, and the
// child looks again.
std::string shared_root_outcome(const std::string& tree, bool rebuild) {
  int out[2], go[2];
  REQUIRE(pipe(out) == 0);
  REQUIRE(pipe(go) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(out[0]);
    close(go[1]);
    std::string r;
    auto say = [&](const std::string& w) {
      r = w + " ";
      (void)!write(out[1], r.data(), r.size());
    };
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr))
      say("unshare-failed");
    else if (auto dev = mount_shared_root(tree); !dev) {
      say("error:" + dev.error().message());
    } else {
      say(is_overlay(tree.c_str()) ? "overlay" : "not-overlay");
      say(shared_root_in_place(tree, dev.value()) ? "in-place" : "not-in-place");
      std::ifstream f(tree + "/marker");
      std::string marker;
      f >> marker;
      say("marker=" + marker);
      int fd = open((tree + "/new").c_str(), O_WRONLY | O_CREAT, 0644);
      say(fd < 0 && errno == EROFS ? "read-only" : "writable");
      // What a clone's plan does with it: bind it, and only if it is the
      // overlay of that device.
      const std::string target = tree + ".target";
      for (dev_t want : {dev.value(), dev.value() + 1}) {
        MountPlan plan;
        plan.ops.push_back(MountOp{MountOp::SharedRoot, tree, target, {}, 0});
        plan.ops.back().dev = want;
        const MountOp* failed = nullptr;
        int err = child_run_mounts(plan, &failed);
        say(err == 0 ? "bound" : err == ESTALE ? "stale" : "error:" + std::to_string(err));
        umount2(target.c_str(), MNT_DETACH);
      }
      say("ready");
      char c;
      if (rebuild && read(go[0], &c, 1) == 1)
        say(shared_root_in_place(tree, dev.value()) ? "moved-in-place" : "moved-not-in-place");
    }
    _exit(0);
  }
  close(out[1]);
  close(go[0]);
  std::string r;
  char buf[512];
  ssize_t n;
  while (r.find("ready ") == std::string::npos && r.find("error:") == std::string::npos &&
         (n = read(out[0], buf, sizeof buf)) > 0)
    r.append(buf, static_cast<size_t>(n));
  if (rebuild && rename(tree.c_str(), (tree + ".old").c_str()) == 0 &&
      mkdir(tree.c_str(), 0755) == 0)
    (void)!write(go[1], "g", 1);
  close(go[1]);
  while ((n = read(out[0], buf, sizeof buf)) > 0) r.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return r;
}

}  // namespace

TEST_CASE("mount_shared_root: a read-only overlay of the tree over the tree's own path" *
          doctest::skip(geteuid() != 0)) {
  TempDir dir("shared-root-test");
  const std::string tree = dir.path + "/rootfs";
  REQUIRE(mkdir(tree.c_str(), 0755) == 0);
  REQUIRE(mkdir((tree + ".target").c_str(), 0755) == 0);
  std::ofstream(tree + "/marker") << "here";
  CHECK(shared_root_outcome(tree, true) ==
        "overlay in-place marker=here read-only bound stale ready moved-not-in-place ");
  // The host's namespace saw none of it: the tree is a plain directory here.
  CHECK_FALSE(is_overlay(tree.c_str()));
  CHECK(std::filesystem::exists(tree + ".old/marker"));
  // Paths overlay's option syntax would read otherwise are refused.
  CHECK(shared_root_outcome(dir.path + "/a,b", false).find("error:") == 0);
}
