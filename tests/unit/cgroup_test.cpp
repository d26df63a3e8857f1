// cgroups: the pure limit planners, detection from (fake) mountinfo files,
// and both backends against fake cgroupfs trees (create_files = true).
#include "sandbox/cgroup.hpp"

#include <doctest/doctest.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "sandbox/family.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {

using nsbox::test::TempDir;

// A stand-in for a cgroup mount point or controller hierarchy.
std::string subdir(const TempDir& t, const std::string& name) {
  std::string p = t.path + "/" + name;
  REQUIRE(::mkdir(p.c_str(), 0755) == 0);
  return p;
}

// A fake v1 layout with files (create_files): memory and pids hierarchies,
// and the optional ones named ("cpu" or "cpu,cpuacct", "unified",
// "freezer"); freezing is on where a freezer, cgroup2 or v1, is there.
CgroupLayout fake_v1(const TempDir& t, std::initializer_list<std::string> optional = {}) {
  CgroupLayout l;
  l.version = CgroupVersion::V1;
  l.v1_memory = subdir(t, "memory");
  l.v1_pids = subdir(t, "pids");
  for (const std::string& h : optional) {
    if (h.starts_with("cpu")) {
      l.v1_cpu = subdir(t, h);
    } else if (h == "unified") {
      l.v1_unified = subdir(t, h);
    } else if (h == "freezer") {
      l.v1_freezer = subdir(t, h);
    } else {
      FAIL("no fake hierarchy " << h);
    }
  }
  l.freeze = !l.v1_unified.empty() || !l.v1_freezer.empty();
  l.create_files = true;
  return l;
}

// A fake cgroup2 mount with files (create_files), its root offering
// controllers (a space-separated list, as cgroup.controllers has it).
CgroupLayout fake_v2(const std::string& mount, const std::string& controllers) {
  CgroupLayout l;
  l.version = CgroupVersion::V2;
  l.v2_mount = mount;
  l.create_files = true;
  std::ofstream(mount + "/cgroup.controllers") << controllers << "\n";
  return l;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  REQUIRE(f);
  f << text;
}

std::string read(const std::string& path) {
  std::ifstream f(path);
  REQUIRE_MESSAGE(bool(f), path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) {
  return access(path.c_str(), F_OK) == 0;
}

std::string value_of(const FileWrites& w, const std::string& file) {
  for (const auto& [f, v] : w)
    if (f == file) return v;
  FAIL("no write to " << file);
  return {};
}

Limits test_limits() {
  Limits l;
  l.memory_bytes = 96ull << 20;
  l.swap_bytes = 32ull << 20;
  l.pids = 40;
  l.cpu_millicores = 250;
  return l;
}

const char* kSystemLines =
    "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw\n"
    "28 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n";

}  // namespace

TEST_CASE("cgroup_v2_limit_writes: exact files and values") {
  FileWrites w = cgroup_v2_limit_writes(test_limits());
  CHECK(w.size() == 4);
  CHECK(value_of(w, "memory.max") == std::to_string(96ull << 20));
  CHECK(value_of(w, "memory.swap.max") == std::to_string(32ull << 20));
  CHECK(value_of(w, "pids.max") == "40");
  CHECK(value_of(w, "cpu.max") == "25000 100000");

  Limits l;
  l.cpu_millicores = 2000;  // two cores
  l.swap_bytes = 0;
  FileWrites d = cgroup_v2_limit_writes(l);
  CHECK(value_of(d, "cpu.max") == "200000 100000");
  CHECK(value_of(d, "memory.swap.max") == "0");
  CHECK(value_of(d, "memory.max") == std::to_string(128ull << 20));
}

TEST_CASE("cgroup_v1_limit_writes: exact files and values per controller") {
  Limits l = test_limits();
  FileWrites mem = cgroup_v1_limit_writes("memory", l);
  CHECK(mem.size() == 3);
  CHECK(value_of(mem, "memory.limit_in_bytes") == std::to_string(96ull << 20));
  // TCP buffers, charged on v1 only with a limit of their own.
  CHECK(value_of(mem, "memory.kmem.tcp.limit_in_bytes") == std::to_string(96ull << 20));
  // memsw counts memory + swap.
  CHECK(value_of(mem, "memory.memsw.limit_in_bytes") == std::to_string(128ull << 20));
  // The kernel refuses memsw < limit_in_bytes: memory must come first.
  CHECK(mem[0].first == "memory.limit_in_bytes");

  FileWrites pids = cgroup_v1_limit_writes("pids", l);
  REQUIRE(pids.size() == 1);
  CHECK(value_of(pids, "pids.max") == "40");

  FileWrites cpu = cgroup_v1_limit_writes("cpu", l);
  CHECK(cpu.size() == 2);
  CHECK(value_of(cpu, "cpu.cfs_period_us") == "100000");
  CHECK(value_of(cpu, "cpu.cfs_quota_us") == "25000");

  CHECK(cgroup_v1_limit_writes("blkio", l).empty());
}

TEST_CASE("cgroup_detect: v1 only, with cpu,cpuacct co-mounted") {
  TempDir t("cgroup-test");
  std::string mi = t.path + "/mountinfo";
  write(mi,
        std::string(kSystemLines) +
            "30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - "
            "cgroup cgroup rw,memory\n"
            "31 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:11 - "
            "cgroup cgroup rw,pids\n"
            "32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - "
            "cgroup cgroup rw,cpu,cpuacct\n"
            "33 25 0:29 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
            "34 25 0:30 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
            "rw,xattr,name=systemd\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::V1);
  CHECK(l.v1_memory == "/sys/fs/cgroup/memory");
  CHECK(l.v1_pids == "/sys/fs/cgroup/pids");
  // cpuset must not be taken for cpu.
  CHECK(l.v1_cpu == "/sys/fs/cgroup/cpu,cpuacct");
  CHECK(l.v2_mount.empty());
  CHECK(l.why_none.empty());
}

TEST_CASE("cgroup_detect: v1 without the cpu hierarchy is still V1") {
  TempDir t("cgroup-test");
  std::string mi = t.path + "/mountinfo";
  write(mi,
        "30 25 0:26 / /cg/memory rw,relatime - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /cg/pids rw,relatime - cgroup cgroup rw,pids\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::V1);
  CHECK(l.v1_cpu.empty());
}

TEST_CASE("cgroup_detect: v1 with memory but no pids is None") {
  TempDir t("cgroup-test");
  std::string mi = t.path + "/mountinfo";
  write(mi, "30 25 0:26 / /cg/memory rw,relatime - cgroup cgroup rw,memory\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::None);
  CHECK_FALSE(l.why_none.empty());
}

TEST_CASE("cgroup_detect: cgroup2 offering memory and pids is V2") {
  TempDir t("cgroup-test");
  std::string mnt = subdir(t, "unified");
  write(mnt + "/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  std::string mi = t.path + "/mountinfo";
  write(mi, std::string(kSystemLines) + "29 22 0:26 / " + mnt +
                " rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
                "rw,nsdelegate,memory_recursiveprot\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::V2);
  CHECK(l.v2_mount == mnt);
  CHECK(l.why_none.empty());
}

TEST_CASE("cgroup_detect: v2 wins over v1 when both are usable") {
  TempDir t("cgroup-test");
  std::string mnt = subdir(t, "unified");
  write(mnt + "/cgroup.controllers", "memory pids\n");
  std::string mi = t.path + "/mountinfo";
  write(mi,
        "30 25 0:26 / /cg/memory rw,relatime - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /cg/pids rw,relatime - cgroup cgroup rw,pids\n"
        "29 22 0:25 / " +
            mnt + " rw,relatime - cgroup2 cgroup2 rw\n");
  CHECK(cgroup_detect(mi).version == CgroupVersion::V2);
}

TEST_CASE("cgroup_detect: hybrid (v2 without controllers) falls back to v1") {
  TempDir t("cgroup-test");
  std::string mnt = subdir(t, "unified");
  write(mnt + "/cgroup.controllers", "\n");
  std::string mi = t.path + "/mountinfo";
  write(mi, "29 22 0:25 / " + mnt +
                " rw,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
                "30 25 0:26 / /cg/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n"
                "31 25 0:27 / /cg/pids rw,relatime shared:11 - cgroup cgroup rw,pids\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::V1);
  CHECK(l.v1_memory == "/cg/memory");
  CHECK(l.v1_pids == "/cg/pids");
}

TEST_CASE("cgroup_detect: v2 with memory but not pids and no v1 is None, naming the mount") {
  TempDir t("cgroup-test");
  std::string mnt = subdir(t, "unified");
  write(mnt + "/cgroup.controllers", "cpu memory io\n");
  std::string mi = t.path + "/mountinfo";
  write(mi, "29 22 0:25 / " + mnt + " rw,relatime - cgroup2 cgroup2 rw\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::None);
  CHECK(l.why_none.find(mnt) != std::string::npos);
}

// proc(5): spaces in mountinfo paths are escaped as \040 (also \011, \012,
// \134). cgroup_detect uses the escaped text as the path.
TEST_CASE("cgroup_detect: an escaped mount point is unescaped") {
  TempDir t("cgroup-test");
  std::string mnt = subdir(t, "cgroup v2");
  write(mnt + "/cgroup.controllers", "memory pids\n");
  std::string escaped = t.path + "/cgroup\\040v2";
  std::string mi = t.path + "/mountinfo";
  write(mi, "29 22 0:25 / " + escaped + " rw,relatime - cgroup2 cgroup2 rw\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::V2);
  CHECK(l.v2_mount == mnt);
}

TEST_CASE("cgroup_detect: no cgroup mounts, or no mountinfo, is None with a reason") {
  TempDir t("cgroup-test");
  std::string mi = t.path + "/mountinfo";
  write(mi, kSystemLines);
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::None);
  CHECK_FALSE(l.why_none.empty());

  CgroupLayout missing = cgroup_detect(t.path + "/no-such-file");
  CHECK(missing.version == CgroupVersion::None);
  CHECK_FALSE(missing.why_none.empty());
}

TEST_CASE("CgroupLeaf (v2, fake tree): create, attach, events") {
  TempDir t("cgroup-test");
  // A real cgroup2 root lists its controllers; cpu is among them here.
  CgroupLayout layout = fake_v2(t.path, "cpuset cpu io memory pids");
  Limits lim = test_limits();
  auto r = CgroupLeaf::create(layout, "t1", lim);
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().message()));
  CgroupLeaf leaf = std::move(r.value());
  std::string dir = t.path + "/nsbox/t1";
  CHECK(leaf.valid());
  REQUIRE(leaf.dirs().size() == 1);
  CHECK(leaf.dirs()[0] == dir);
  CHECK(leaf.v2_dirfd() >= 0);

  CHECK(read(dir + "/memory.max") == std::to_string(96ull << 20));
  CHECK(read(dir + "/memory.swap.max") == std::to_string(32ull << 20));
  CHECK(read(dir + "/pids.max") == "40");
  CHECK(read(dir + "/cpu.max") == "25000 100000");
  CHECK(read(t.path + "/cgroup.subtree_control") == "+memory +pids +cpu");
  CHECK(read(t.path + "/nsbox/cgroup.subtree_control") == "+memory +pids +cpu");

  REQUIRE(leaf.attach(1234));
  CHECK(read(dir + "/cgroup.procs") == "1234");

  // Nothing has happened yet.
  CgroupEvents none = leaf.events();
  CHECK(none.oom_kills == 0);
  CHECK(none.pids_max == 0);

  write(dir + "/memory.events", "low 0\nhigh 0\nmax 7\noom 3\noom_kill 3\noom_group_kill 0\n");
  write(dir + "/pids.events", "max 2\n");
  write(dir + "/memory.peak", "104857600\n");
  CgroupEvents e = leaf.events();
  CHECK(e.oom_kills == 3);
  CHECK(e.memory_max == 7);
  CHECK(e.pids_max == 2);
  CHECK(e.memory_peak == 104857600);

  // A second leaf under the same parent, then a duplicate id.
  auto r2 = CgroupLeaf::create(layout, "t2", lim);
  REQUIRE(r2);
  CHECK(exists(t.path + "/nsbox/t2/pids.max"));
  auto dup = CgroupLeaf::create(layout, "t1", lim);
  REQUIRE_FALSE(dup);
  CHECK(dup.error().err == EEXIST);

  // destroy() of a fake leaf forgets it but leaves the files for inspection.
  REQUIRE(leaf.destroy());
  CHECK_FALSE(leaf.valid());
  CHECK(leaf.v2_dirfd() == -1);
  CHECK(exists(dir + "/memory.max"));
}

TEST_CASE("CgroupLeaf (v1, fake tree): one leaf per hierarchy") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v1(t, {"cpu,cpuacct"});
  auto r = CgroupLeaf::create(layout, "t1", test_limits());
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().message()));
  CgroupLeaf leaf = std::move(r.value());
  std::string mem = layout.v1_memory + "/nsbox/t1";
  std::string pids = layout.v1_pids + "/nsbox/t1";
  std::string cpu = layout.v1_cpu + "/nsbox/t1";
  REQUIRE(leaf.dirs().size() == 3);
  CHECK(leaf.dirs()[0] == mem);
  CHECK(leaf.dirs()[1] == pids);
  CHECK(leaf.dirs()[2] == cpu);
  CHECK(leaf.v2_dirfd() == -1);

  CHECK(read(mem + "/memory.limit_in_bytes") == std::to_string(96ull << 20));
  CHECK(read(mem + "/memory.memsw.limit_in_bytes") == std::to_string(128ull << 20));
  CHECK(read(pids + "/pids.max") == "40");
  CHECK(read(cpu + "/cpu.cfs_quota_us") == "25000");
  CHECK(read(cpu + "/cpu.cfs_period_us") == "100000");
  // v1 has no subtree_control.
  CHECK_FALSE(exists(layout.v1_memory + "/cgroup.subtree_control"));
  CHECK_FALSE(exists(mem + "/pids.max"));

  // A fake tree offers no way in but attach(): the kernel's moves need cgroupfs.
  auto entry = leaf.entry();
  REQUIRE(entry);
  CHECK_FALSE(entry.value().complete);
  CHECK(entry.value().clone_into == -1);
  CHECK(entry.value().tasks.empty());
  REQUIRE(leaf.attach(1234));
  for (const auto& d : {mem, pids, cpu}) CHECK(read(d + "/cgroup.procs") == "1234");

  write(mem + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
  write(mem + "/memory.failcnt", "5\n");
  write(mem + "/memory.max_usage_in_bytes", "1048576\n");
  write(pids + "/pids.events", "max 2\n");
  CgroupEvents e = leaf.events();
  CHECK(e.oom_kills == 3);
  CHECK(e.memory_max == 5);
  CHECK(e.memory_peak == 1048576);
  CHECK(e.pids_max == 2);
}

TEST_CASE("CgroupLeaf (v1, fake tree): the cpu hierarchy is optional") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v1(t);
  auto r = CgroupLeaf::create(layout, "t1", test_limits());
  REQUIRE(r);
  CHECK(r.value().dirs().size() == 2);
}

TEST_CASE("CgroupLeaf::create on None fails with the reason") {
  CgroupLayout layout;
  layout.why_none = "no cgroups here";
  auto r = CgroupLeaf::create(layout, "t1", Limits{});
  REQUIRE_FALSE(r);
  CHECK(r.error().detail == "no cgroups here");
}

TEST_CASE("CgroupLeaf::create fails on a missing mount point") {
  TempDir t("cgroup-test");
  CgroupLayout layout;
  layout.version = CgroupVersion::V2;
  layout.v2_mount = t.path + "/absent";
  layout.create_files = true;
  auto r = CgroupLeaf::create(layout, "t1", Limits{});
  REQUIRE_FALSE(r);
  CHECK(r.error().err == ENOENT);
  CHECK(r.error().context.find(t.path + "/absent") == 0);
}

TEST_CASE("CgroupLeaf: a default leaf is empty and has no events") {
  CgroupLeaf leaf;
  CHECK_FALSE(leaf.valid());
  CHECK(leaf.attach(1));  // nothing to write to
  CgroupEvents e = leaf.events();
  CHECK(e.oom_kills == 0);
  CHECK(e.pids_max == 0);
  CHECK(leaf.destroy());
}

TEST_CASE("CgroupLeaf (v2, fake tree): without the cpu controller, no cpu limit") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v2(t.path, "memory pids");
  auto r = CgroupLeaf::create(layout, "t2", test_limits());
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().message()));
  CHECK(read(t.path + "/cgroup.subtree_control") == "+memory +pids");
  CHECK(access((t.path + "/nsbox/t2/cpu.max").c_str(), F_OK) != 0);
  CHECK(read(t.path + "/nsbox/t2/memory.max") == std::to_string(96ull << 20));
}

TEST_CASE("CgroupLeaf (fake trees): cpu_limits = false gives sandboxes no cpu controller") {
  SUBCASE("v1: no leaf in the cpu hierarchy") {
    TempDir t("cgroup-test");
    CgroupLayout layout = fake_v1(t, {"cpu,cpuacct"});
    layout.cpu_limits = false;
    auto r = CgroupLeaf::create(layout, "t1", test_limits());
    REQUIRE(r);
    CHECK(r.value().dirs().size() == 2);
    CHECK(access((layout.v1_cpu + "/nsbox/t1").c_str(), F_OK) != 0);
    CHECK(read(layout.v1_memory + "/nsbox/t1/memory.limit_in_bytes") ==
          std::to_string(96ull << 20));
  }
  SUBCASE("v2: a parent of their own that never enables cpu; nsbox/ is left alone") {
    TempDir t("cgroup-test");
    CgroupLayout layout = fake_v2(t.path, "cpuset cpu io memory pids");
    layout.cpu_limits = false;
    auto r = CgroupLeaf::create(layout, "t1", test_limits());
    REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().message()));
    CHECK(read(t.path + "/cgroup.subtree_control") == "+memory +pids");
    CHECK(read(t.path + "/nsbox-nocpu/cgroup.subtree_control") == "+memory +pids");
    CHECK(access((t.path + "/nsbox-nocpu/t1/cpu.max").c_str(), F_OK) != 0);
    CHECK(read(t.path + "/nsbox-nocpu/t1/pids.max") == "40");
    CHECK(access((t.path + "/nsbox").c_str(), F_OK) != 0);  // capped sandboxes' parent untouched
  }
}

TEST_CASE("cgroup_detect: hybrid keeps the cgroup2 mount and the v1 freezer for freezing") {
  TempDir t("cgroup-test");
  std::string mnt = subdir(t, "unified");
  write(mnt + "/cgroup.controllers", "\n");
  std::string mi = t.path + "/mountinfo";
  write(mi, "29 22 0:25 / " + mnt +
                " rw,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
                "30 25 0:26 / /cg/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n"
                "31 25 0:27 / /cg/pids rw,relatime shared:11 - cgroup cgroup rw,pids\n"
                "32 25 0:28 / /cg/freezer rw,relatime shared:12 - cgroup cgroup rw,freezer\n");
  CgroupLayout l = cgroup_detect(mi);
  CHECK(l.version == CgroupVersion::V1);
  CHECK(l.v1_unified == mnt);
  CHECK(l.v1_freezer == "/cg/freezer");
  CHECK_FALSE(l.freeze);  // only serve asks for freeze switches
}

TEST_CASE("cgroup_freeze_write: cgroup.freeze 1/0, v1 freezer.state FROZEN/THAWED") {
  CHECK(cgroup_freeze_write(false, true) ==
        std::make_pair(std::string("cgroup.freeze"), std::string("1")));
  CHECK(cgroup_freeze_write(false, false).second == "0");
  CHECK(cgroup_freeze_write(true, true) ==
        std::make_pair(std::string("freezer.state"), std::string("FROZEN")));
  CHECK(cgroup_freeze_write(true, false).second == "THAWED");
}

TEST_CASE("CgroupLeaf (fake trees): the files a process joins through, and v1's threads") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v1(t, {"unified"});
  auto r = CgroupLeaf::create(layout, "j1", test_limits());
  REQUIRE(r);
  const CgroupLeaf& leaf = r.value();
  // v1: `tasks` (a thread moving itself takes no global lock), in every v1
  // hierarchy; the hybrid layout's cgroup2 leaf is not joined this way.
  auto files = leaf.self_join_files();
  REQUIRE(files);
  CHECK(files.value().size() == 2);
  CHECK(exists(layout.v1_memory + "/nsbox/j1/tasks"));
  CHECK(exists(layout.v1_pids + "/nsbox/j1/tasks"));
  CHECK_FALSE(exists(layout.v1_unified + "/nsbox/j1/tasks"));
  write(layout.v1_memory + "/nsbox/j1/tasks", "41\n");
  write(layout.v1_pids + "/nsbox/j1/tasks", "41\n42\n");
  auto tasks = leaf.v1_tasks();
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0] == std::vector<pid_t>{41});
  CHECK(tasks[1] == std::vector<pid_t>{41, 42});

  CgroupLayout v2;
  v2.version = CgroupVersion::V2;
  v2.v2_mount = subdir(t, "cg2");
  v2.create_files = true;
  auto r2 = CgroupLeaf::create(v2, "j2", test_limits());
  REQUIRE(r2);
  auto files2 = r2.value().self_join_files();
  REQUIRE(files2);
  CHECK(files2.value().size() == 1);  // cgroup.procs: v2 has no tasks
  CHECK(r2.value().v1_tasks().empty());
}

TEST_CASE("CgroupLeaf (v1 hybrid, fake tree): frozen through a cgroup2 leaf, not the v1 freezer") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v1(t, {"unified", "freezer"});
  auto r = CgroupLeaf::create(layout, "t1", test_limits());
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().message()));
  CgroupLeaf leaf = std::move(r.value());
  std::string uni = layout.v1_unified + "/nsbox/t1";
  REQUIRE(leaf.dirs().size() == 3);
  CHECK(leaf.dirs()[2] == uni);
  CHECK_FALSE(exists(layout.v1_freezer + "/nsbox/t1"));
  // No controller is enabled on the cgroup2 side: it only freezes.
  CHECK_FALSE(exists(layout.v1_unified + "/cgroup.subtree_control"));
  REQUIRE(leaf.attach(1234));
  CHECK(read(uni + "/cgroup.procs") == "1234");  // every process of the sandbox is in it
  REQUIRE(leaf.can_freeze());
  REQUIRE(leaf.set_frozen(true));
  CHECK(read(uni + "/cgroup.freeze") == "1");
  auto sw = leaf.freeze_switch();
  REQUIRE(sw);
  REQUIRE(sw.value().valid());
  CHECK_FALSE(sw.value().v1);
  REQUIRE(sw.value().set(false));
  CHECK(read(uni + "/cgroup.freeze") == "0");
}

TEST_CASE("CgroupLeaf (v1, fake tree): without cgroup2, the v1 freezer") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v1(t, {"freezer"});
  auto r = CgroupLeaf::create(layout, "t1", test_limits());
  REQUIRE(r);
  CgroupLeaf leaf = std::move(r.value());
  std::string fz = layout.v1_freezer + "/nsbox/t1";
  REQUIRE(leaf.dirs().size() == 3);
  CHECK(leaf.dirs()[2] == fz);
  auto sw = leaf.freeze_switch();
  REQUIRE(sw);
  CHECK(sw.value().v1);
  REQUIRE(sw.value().set(true));
  CHECK(read(fz + "/freezer.state") == "FROZEN");
  REQUIRE(sw.value().set(false));
  CHECK(read(fz + "/freezer.state") == "THAWED");
}

TEST_CASE("CgroupLeaf (v2, fake tree): the leaf freezes itself; none without freeze") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v2(t.path, "memory pids");
  {
    auto r = CgroupLeaf::create(layout, "plain", test_limits());
    REQUIRE(r);
    CHECK_FALSE(r.value().can_freeze());
    auto sw = r.value().freeze_switch();
    REQUIRE(sw);
    CHECK_FALSE(sw.value().valid());
  }
  layout.freeze = true;
  auto r = CgroupLeaf::create(layout, "t1", test_limits());
  REQUIRE(r);
  CgroupLeaf leaf = std::move(r.value());
  REQUIRE(leaf.dirs().size() == 1);
  REQUIRE(leaf.set_frozen(true));
  CHECK(read(leaf.dirs()[0] + "/cgroup.freeze") == "1");
}

TEST_CASE("CgroupEvents::reached_memory_limit: hit and still near the limit") {
  const uint64_t limit = 64ull << 20;
  CgroupEvents e;
  e.memory_peak = limit - 4096;
  CHECK_FALSE(e.reached_memory_limit(limit));  // never hit: no reclaim at the limit
  e.memory_max = 20000;
  CHECK(e.reached_memory_limit(limit));
  CHECK_FALSE(e.reached_memory_limit(0));  // no limit
  // The margin is limit / 32 (2 MiB here): just inside, just outside.
  e.memory_peak = limit - (2ull << 20);
  CHECK(e.reached_memory_limit(limit));
  e.memory_peak = limit - (2ull << 20) - 4096;
  CHECK_FALSE(e.reached_memory_limit(limit));
  // Kernels without memory.peak: the current charge stands in for it.
  e.memory_peak = 0;
  e.memory_current = limit - 8192;
  CHECK(e.reached_memory_limit(limit));
  // Small limits keep a 256 KiB margin rather than limit / 32.
  CgroupEvents s;
  s.memory_max = 1;
  s.memory_current = (4ull << 20) - (200 << 10);
  CHECK(s.reached_memory_limit(4ull << 20));
}

namespace {

Limits family_limits(uint64_t memory_mb, uint32_t pids) {
  Limits l;
  l.memory_bytes = memory_mb << 20;
  l.swap_bytes = 0;
  l.pids = pids;
  l.cpu_millicores = 250;
  return l;
}

std::string mb(uint64_t n) {
  return std::to_string(n << 20);
}

}  // namespace

// A function template's family (sandbox/family.hpp): where it and its
// members' leaves go, and how its limits follow its members. The kernel's
// side (a removed leaf's charge still counted in the family) is tested by
// the integration suite.

TEST_CASE("cgroup limit planners: no cpu cap for cpu_millicores = 0") {
  Limits l = family_limits(64, 10);
  l.cpu_millicores = 0;
  for (const auto& [file, value] : cgroup_v2_limit_writes(l)) CHECK(file != "cpu.max");
  CHECK(cgroup_v2_limit_writes(l).size() == 3);
  CHECK(cgroup_v1_limit_writes("cpu", l).empty());
  CHECK(cgroup_v1_limit_writes("memory", l).size() == 3);
}

TEST_CASE("TemplateFamily (v1 hybrid, fake tree): one group above its members' leaves") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v1(t, {"cpu", "unified"});
  int overdrawn = 0;
  auto f = TemplateFamily::create(layout, "srv-1-f1", family_limits(64, 32), [&] { overdrawn++; });
  REQUIRE_MESSAGE(bool(f), (f ? std::string() : f.error().message()));
  TemplateFamily& fam = *f.value();
  const std::string mem = layout.v1_memory + "/nsbox/srv-1-f1",
                    pids = layout.v1_pids + "/nsbox/srv-1-f1",
                    cpu = layout.v1_cpu + "/nsbox/srv-1-f1",
                    uni = layout.v1_unified + "/nsbox/srv-1-f1";
  CHECK(read(mem + "/memory.limit_in_bytes") == mb(64));
  CHECK(read(pids + "/pids.max") == "32");
  // Each member keeps its own CPU cap; the family adds none.
  CHECK(exists(cpu));
  CHECK_FALSE(exists(cpu + "/cpu.cfs_quota_us"));
  CHECK(exists(uni));  // the parent of its members' freeze leaves

  // The template's leaf and each instance's are made below it.
  CHECK(fam.layout().subgroup == "srv-1-f1");
  auto leaf = CgroupLeaf::create(fam.layout(), "srv-1-2", family_limits(64, 32));
  REQUIRE(leaf);
  CHECK(leaf.value().dirs()[0] == mem + "/srv-1-2");
  CHECK(leaf.value().dirs()[1] == pids + "/srv-1-2");
  CHECK(leaf.value().dirs()[2] == cpu + "/srv-1-2");
  CHECK(read(cpu + "/srv-1-2/cpu.cfs_quota_us") == "25000");
  CHECK(leaf.value().dirs()[3] == uni + "/srv-1-2");
  CHECK(leaf.value().can_freeze());

  // An instance's room: the family grows by its limits while it lives.
  REQUIRE(fam.grow(family_limits(48, 16)));
  CHECK(read(mem + "/memory.limit_in_bytes") == mb(112));
  CHECK(read(mem + "/memory.memsw.limit_in_bytes") == mb(112));
  CHECK(read(pids + "/pids.max") == "48");
  REQUIRE(fam.grow(family_limits(48, 16)));
  CHECK(read(mem + "/memory.limit_in_bytes") == mb(160));
  // Its limit raised from 48 to 80 MiB.
  REQUIRE(fam.resize(48ull << 20, 80ull << 20));
  CHECK(read(mem + "/memory.limit_in_bytes") == mb(192));
  CHECK(fam.shrink(family_limits(80, 16)));
  CHECK(read(mem + "/memory.limit_in_bytes") == mb(112));
  CHECK(read(pids + "/pids.max") == "48");
  CHECK(overdrawn == 0);

  // A write refused (here: the file is a directory; in the kernel, v1's
  // EBUSY for a group holding more than the new limit): the family is
  // overdrawn, and the callback kills it.
  REQUIRE(::unlink((mem + "/memory.limit_in_bytes").c_str()) == 0);
  REQUIRE(::mkdir((mem + "/memory.limit_in_bytes").c_str(), 0755) == 0);
  CHECK_FALSE(fam.shrink(family_limits(48, 16)));
  CHECK(overdrawn == 1);
  // What it may hold from then on is still the template's alone.
  CHECK(fam.memory_bytes() == 64ull << 20);
  CHECK(fam.pids() == 32);
}

// Said once, at the daemon's start (serve_cmd), rather than at every
// function's first request.
TEST_CASE("TemplateFamily::unsupported: v1 with swap needs swap accounting") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v1(t);
  layout.create_files = false;  // read as a real hierarchy would be
  const std::string swaps = t.path + "/swaps", header = "Filename\tType\tSize\tUsed\tPriority\n";
  auto write_swaps = [&](const std::string& text) { std::ofstream(swaps) << text; };
  write_swaps(header + "/swapfile\tfile\t1048572\t0\t-2\n");
  const std::string why = TemplateFamily::unsupported(layout, swaps);
  CHECK(why.find("swapaccount=1") != std::string::npos);
  // No swap in use, or swap accounted: families bound what they hold.
  write_swaps(header);
  CHECK(TemplateFamily::unsupported(layout, swaps).empty());
  write_swaps(header + "/swapfile\tfile\t1048572\t0\t-2\n");
  std::ofstream(layout.v1_memory + "/memory.memsw.limit_in_bytes") << "9223372036854771712\n";
  CHECK(TemplateFamily::unsupported(layout, swaps).empty());
  // v2 keeps swap in memory.swap.max, always there with swap.
  CgroupLayout v2 = fake_v2(subdir(t, "cg2"), "memory pids");
  v2.create_files = false;
  CHECK(TemplateFamily::unsupported(v2, swaps).empty());
}

TEST_CASE("TemplateFamily (v2, fake tree): controllers enabled for its members") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v2(subdir(t, "cg2"), "cpu memory pids");
  auto f = TemplateFamily::create(layout, "srv-1-f1", family_limits(64, 32), [] {});
  REQUIRE(f);
  const std::string dir = layout.v2_mount + "/nsbox/srv-1-f1";
  CHECK(read(dir + "/memory.max") == mb(64));
  CHECK(read(dir + "/pids.max") == "32");
  CHECK_FALSE(exists(dir + "/cpu.max"));
  auto leaf = CgroupLeaf::create(f.value()->layout(), "srv-1-i0", family_limits(48, 16));
  REQUIRE(leaf);
  CHECK(leaf.value().dirs()[0] == dir + "/srv-1-i0");
  CHECK(read(dir + "/cgroup.subtree_control") == "+memory +pids +cpu");
  CHECK(read(dir + "/srv-1-i0/cpu.max") == "25000 100000");
  Limits with_swap = family_limits(48, 16);
  with_swap.swap_bytes = 8ull << 20;
  REQUIRE(f.value()->grow(with_swap));
  CHECK(read(dir + "/memory.max") == mb(112));
  CHECK(read(dir + "/memory.swap.max") == mb(8));  // v2 keeps swap apart from memory
  CHECK(read(dir + "/pids.max") == "48");
  // Past the kernel's PID_MAX_LIMIT pids.max takes only "max".
  Limits many = family_limits(16, 4194304);
  REQUIRE(f.value()->grow(many));
  CHECK(read(dir + "/pids.max") == "max");
  CHECK(f.value()->shrink(many));
  CHECK(read(dir + "/pids.max") == "48");
}

TEST_CASE(
    "cgroup_sweep_stale: a dead owner's leaves, a pid gone to another program, a starting owner's "
    "own") {
  TempDir t("cgroup-test");
  CgroupLayout layout = fake_v2(t.path, "memory pids");
  const std::string group = subdir(t, layout.group);
  pid_t dead = fork();
  REQUIRE(dead >= 0);
  if (dead == 0) _exit(0);
  int st;
  REQUIRE(waitpid(dead, &st, 0) == dead);
  // A live owner: a process named as every owner names itself.
  int hold[2];
  REQUIRE(pipe(hold) == 0);
  pid_t owner = fork();
  REQUIRE(owner >= 0);
  if (owner == 0) {
    prctl(PR_SET_NAME, "nsbox-spawner");
    close(hold[1]);
    char c;
    (void)!read(hold[0], &c, 1);  // until the test ends
    _exit(0);
  }
  close(hold[0]);
  auto named = [&] {
    const std::string stat = read("/proc/" + std::to_string(owner) + "/stat");
    return stat.find("(nsbox-spawner)") != std::string::npos;
  };
  for (int i = 0; i < 1000 && !named(); i++) usleep(1000);
  REQUIRE(named());
  const std::string gone = group + "/srv-" + std::to_string(dead) + "-1";
  const std::string live = group + "/srv-" + std::to_string(owner) + "-1";
  // This test's own pid (unit_tests) and PID 1 (init) are alive but are not
  // nsbox: their pids went to other programs after the owners died.
  const std::string reused = group + "/run-" + std::to_string(getpid());
  const std::string init = group + "/run-1";
  for (const auto& d : {gone, live, reused, init}) REQUIRE(::mkdir(d.c_str(), 0755) == 0);

  CHECK(cgroup_sweep_stale(layout) == 3);
  CHECK_FALSE(exists(gone));
  CHECK_FALSE(exists(reused));
  CHECK_FALSE(exists(init));
  CHECK(exists(live));
  // A leaf named by the caller's pid, from before it started, is an earlier
  // owner's with the same pid: swept at start, or its names would collide.
  CHECK(cgroup_sweep_stale(layout, owner) == 1);
  CHECK_FALSE(exists(live));
  close(hold[1]);
  REQUIRE(waitpid(owner, &st, 0) == owner);
}

// The real hierarchy (root only; CI runs the unit suite as root): a leaf
// that destroy() cannot remove (here a cgroup made below it, as a function
// template's member leaf would be) is not forgotten but tried again.
// The host's cgroups, for a test that makes real leaves, under a group of
// its own. Root without usable cgroups (a container): said, and nullopt;
// failed instead where the test must run (CI sets NSBOX_MUST_WORK).
static std::optional<CgroupLayout> host_layout() {
  CgroupLayout layout = cgroup_detect();
  if (layout.version == CgroupVersion::None && !std::getenv("NSBOX_MUST_WORK")) {
    MESSAGE("no usable cgroups here, not tried: " << layout.why_none);
    return std::nullopt;
  }
  REQUIRE_MESSAGE(layout.version != CgroupVersion::None, layout.why_none);
  layout.group = "nsbox-unit-" + std::to_string(getpid());
  return layout;
}

TEST_CASE("CgroupLeaf::destroy: a leaf it could not remove is tried again later" *
          doctest::skip(geteuid() != 0)) {
  const bool must_work = std::getenv("NSBOX_MUST_WORK") != nullptr;
  auto host = host_layout();
  if (!host) return;
  CgroupLayout layout = *host;
  layout.freeze = false;
  const std::string id = "t-" + std::to_string(getpid()) + "-1";
  std::vector<std::string> groups;
  if (layout.version == CgroupVersion::V2) {
    groups = {layout.v2_mount + "/" + layout.group};
  } else {
    groups = {layout.v1_memory + "/" + layout.group, layout.v1_pids + "/" + layout.group};
    if (!layout.v1_cpu.empty() && layout.cpu_limits)
      groups.push_back(layout.v1_cpu + "/" + layout.group);
  }
  const std::string leaf_dir = groups[0] + "/" + id, below = leaf_dir + "/below";
  {
    auto leaf = CgroupLeaf::create(layout, id, Limits{});
    if (!leaf && !must_work) {
      MESSAGE("cannot make a cgroup here, not tried: " << leaf.error().message());
      for (const auto& g : groups) ::rmdir(g.c_str());
      return;
    }
    REQUIRE_MESSAGE(leaf, (leaf ? "" : leaf.error().message()));
    REQUIRE(::mkdir(below.c_str(), 0755) == 0);
    Status s = leaf.value().destroy();
    REQUIRE_FALSE(s);
    CHECK(s.error().message().find("a leaf is left below it") != std::string::npos);
    CHECK(::access(leaf_dir.c_str(), F_OK) == 0);
    CHECK(cgroup_retry_left_behind() == 1);  // still blocked: kept on the list
    CHECK(::access(leaf_dir.c_str(), F_OK) == 0);
  }
  REQUIRE(::rmdir(below.c_str()) == 0);
  CHECK(cgroup_retry_left_behind() == 0);
  CHECK(::access(leaf_dir.c_str(), F_OK) != 0);
  CHECK(cgroup_retry_left_behind() == 0);  // and gone from the list
  for (const auto& g : groups) CHECK(::rmdir(g.c_str()) == 0);
}

// A leaf destroyed while a fork loop runs in it: each round of kills by pid
// would miss the child forked since the list was read. Where there is no
// cgroup.kill (the v1 freezer), destroy freezes the leaf first. Here the
// host's layout is forced to the v1 freezer where it has one.
TEST_CASE("CgroupLeaf::destroy: a running fork loop does not outlive its leaf" *
          doctest::skip(geteuid() != 0)) {
  auto host = host_layout();
  if (!host) return;
  CgroupLayout layout = *host;
  if (layout.version == CgroupVersion::V1 && !layout.v1_freezer.empty()) {
    layout.v1_unified.clear();  // the pure-v1 path: freezer.state, no cgroup.kill
    MESSAGE("v1 freezer: " << layout.v1_freezer);
  }
  layout.freeze = true;
  const std::string id = "fl-" + std::to_string(getpid());
  Limits limits;
  limits.pids = 16;
  auto leaf = CgroupLeaf::create(layout, id, limits);
  REQUIRE_MESSAGE(leaf, (leaf ? "" : leaf.error().message()));
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t walker = fork();
  REQUIRE(walker >= 0);
  if (walker == 0) {
    close(ready[0]);
    if (!leaf.value().attach(getpid())) _exit(2);
    (void)!write(ready[1], "x", 1);
    close(ready[1]);
    // One process at a time, each a new pid: its parent exits once it has
    // forked. At most 20,000 forks, whatever happens to the test.
    for (int i = 0; i < 20000; i++) {
      pid_t p = fork();
      if (p != 0) _exit(0);
    }
    _exit(0);
  }
  close(ready[1]);
  char c;
  REQUIRE(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  usleep(50 * 1000);  // the loop is well under way
  std::vector<std::string> dirs = leaf.value().dirs();
  Status s = leaf.value().destroy();
  CHECK_MESSAGE(s, (s ? "" : s.error().message()));
  for (const auto& d : dirs) CHECK_MESSAGE(::access(d.c_str(), F_OK) != 0, d);
  waitpid(walker, nullptr, 0);
  cgroup_retry_left_behind();
  std::vector<std::string> groups;
  for (const auto& d : dirs) groups.push_back(d.substr(0, d.rfind('/')));
  for (const auto& g : groups) ::rmdir(g.c_str());
}

TEST_CASE("cgroup_cpu_per_sandbox: cpu_limits and a cpu controller, both") {
  TempDir t("cg-cpu");
  CgroupLayout v1 = fake_v1(t, {"cpu,cpuacct"});
  CHECK(cgroup_cpu_per_sandbox(v1));
  v1.cpu_limits = false;
  CHECK_FALSE(cgroup_cpu_per_sandbox(v1));
  TempDir u("cg-cpu1");
  CHECK_FALSE(cgroup_cpu_per_sandbox(fake_v1(u)));  // no cpu hierarchy
  TempDir a("cg-cpu2"), b("cg-cpu3");
  CHECK(cgroup_cpu_per_sandbox(fake_v2(subdir(a, "root"), "cpuset cpu io memory pids")));
  CHECK_FALSE(cgroup_cpu_per_sandbox(fake_v2(subdir(b, "root"), "cpuset io memory pids")));
  CgroupLayout none;
  CHECK_FALSE(cgroup_cpu_per_sandbox(none));
}
