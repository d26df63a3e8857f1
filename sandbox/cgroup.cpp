#include "sandbox/cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "base/children.hpp"
#include "base/fd.hpp"
#include "base/log.hpp"

namespace nsbox {

namespace {

bool has_token(const std::string& list, const std::string& token, char sep) {
  std::stringstream ss(list);
  std::string t;
  while (std::getline(ss, t, sep))
    if (t == token) return true;
  return false;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "key value" lines, as in memory.events, pids.events, memory.oom_control.
uint64_t read_key(const std::string& path, const std::string& key) {
  std::istringstream in(read_file(path));
  std::string k;
  uint64_t v;
  while (in >> k >> v)
    if (k == key) return v;
  return 0;
}

uint64_t read_number(const std::string& path) {
  std::istringstream in(read_file(path));
  uint64_t v = 0;
  in >> v;
  return v;
}

Status write_file(const std::string& path, const std::string& value, bool create) {
  // create: a fake tree for tests, where each write replaces the file as a
  // cgroupfs write replaces the setting.
  int flags = O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0);
  UniqueFd fd(open(path.c_str(), flags, 0644));
  if (!fd.valid()) return sys_error("open", path);
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return sys_error("write", path + " <- " + value);
  return {};
}

Status ensure_dir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir", path);
  return {};
}

bool has_subdir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  bool found = false;
  while (dirent* e = readdir(d))
    if (e->d_type == DT_DIR && e->d_name[0] != '.') {
      found = true;
      break;
    }
  closedir(d);
  return found;
}

// Leaves this process failed to remove, for cgroup_retry_left_behind().
// Only the spawner's thread and a one-shot `nsbox run` destroy leaves; the
// mutex keeps a second thread (a test's) from corrupting it.
std::mutex g_left_mutex;
std::vector<std::string> g_left_behind;

void leave_behind(const std::string& dir) {
  std::lock_guard<std::mutex> lock(g_left_mutex);
  if (std::find(g_left_behind.begin(), g_left_behind.end(), dir) == g_left_behind.end())
    g_left_behind.push_back(dir);
}

// rmdir fails with EBUSY until the last task has been reaped; a dying
// sandbox empties within milliseconds.
Status remove_leaf(const std::string& dir) {
  for (int i = 0; i < 400; i++) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY) return sys_error("rmdir", dir);
    // A group with a leaf left below it (a function template's, whose
    // member could not be removed) will not empty by waiting.
    if (has_subdir(dir)) return sys_error_n(EBUSY, "rmdir", dir + " (a leaf is left below it)");
    std::istringstream procs(read_file(dir + "/cgroup.procs"));
    pid_t pid;
    while (procs >> pid) kill(pid, SIGKILL);
    usleep(i < 20 ? 500 : 5000);
  }
  return sys_error_n(EBUSY, "rmdir", dir);
}

// proc(5): mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i++) {
    if (in[i] == '\\' && i + 3 < in.size() && std::isdigit(static_cast<unsigned char>(in[i + 1]))) {
      out.push_back(static_cast<char>(std::stoi(in.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

CgroupLayout cgroup_detect(const std::string& mountinfo) {
  CgroupLayout layout;
  std::ifstream in(mountinfo);
  std::string line;
  std::string v2;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    std::istringstream ls(line);
    std::string id, parent, dev, root, mnt;
    ls >> id >> parent >> dev >> root >> mnt;
    mnt = unescape_mountinfo(mnt);
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype, source, superopts;
    tail >> fstype >> source >> superopts;
    if (fstype == "cgroup2") {
      v2 = mnt;
    } else if (fstype == "cgroup") {
      if (has_token(superopts, "memory", ',')) layout.v1_memory = mnt;
      if (has_token(superopts, "pids", ',')) layout.v1_pids = mnt;
      if (has_token(superopts, "cpu", ',')) layout.v1_cpu = mnt;
      if (has_token(superopts, "freezer", ',')) layout.v1_freezer = mnt;
    }
  }
  if (!v2.empty()) {
    std::istringstream cs(read_file(v2 + "/cgroup.controllers"));
    std::string c;
    bool mem = false, pids = false;
    while (cs >> c) {
      mem |= c == "memory";
      pids |= c == "pids";
    }
    if (mem && pids) {
      layout.version = CgroupVersion::V2;
      layout.v2_mount = v2;
      return layout;
    }
  }
  if (!layout.v1_memory.empty() && !layout.v1_pids.empty()) {
    layout.version = CgroupVersion::V1;
    layout.v1_unified = v2;
    return layout;
  }
  layout.why_none = v2.empty() ? "no cgroup2 mount and no v1 memory+pids hierarchies"
                               : "cgroup2 at " + v2 +
                                     " has no memory/pids controllers and v1 has no memory+pids "
                                     "hierarchies";
  return layout;
}

FileWrites cgroup_v2_limit_writes(const Limits& l) {
  FileWrites w;
  w.emplace_back("memory.max", std::to_string(l.memory_bytes));
  w.emplace_back("memory.swap.max", std::to_string(l.swap_bytes));
  w.emplace_back("pids.max", std::to_string(l.pids));
  if (l.cpu_millicores == 0) return w;
  // cpu.max "quota period": millicores/1000 of one CPU per 100 ms period.
  w.emplace_back("cpu.max", std::to_string(uint64_t{l.cpu_millicores} * 100) + " 100000");
  return w;
}

static const char kV1TcpLimit[] = "memory.kmem.tcp.limit_in_bytes";

FileWrites cgroup_v1_limit_writes(const std::string& controller, const Limits& l) {
  FileWrites w;
  if (controller == "memory") {
    w.emplace_back("memory.limit_in_bytes", std::to_string(l.memory_bytes));
    // memsw counts memory+swap; absent when swap accounting is off.
    w.emplace_back("memory.memsw.limit_in_bytes", std::to_string(l.memory_bytes + l.swap_bytes));
    // v1 charges TCP buffers to a leaf only once its own limit is written
    // (and apart from limit_in_bytes): without it a function could hold
    // unread loopback data far past its memory, up to the host's tcp_mem.
    w.emplace_back(kV1TcpLimit, std::to_string(l.memory_bytes));
  } else if (controller == "pids") {
    w.emplace_back("pids.max", std::to_string(l.pids));
  } else if (controller == "cpu" && l.cpu_millicores > 0) {
    w.emplace_back("cpu.cfs_period_us", "100000");
    w.emplace_back("cpu.cfs_quota_us", std::to_string(uint64_t{l.cpu_millicores} * 100));
  }
  return w;
}

std::pair<std::string, std::string> cgroup_freeze_write(bool v1, bool frozen) {
  if (v1) return {"freezer.state", frozen ? "FROZEN" : "THAWED"};
  return {"cgroup.freeze", frozen ? "1" : "0"};
}

Status FreezeSwitch::set(bool frozen) const {
  auto [file, value] = cgroup_freeze_write(v1, frozen);
  if (pwrite(fd.get(), value.data(), value.size(), 0) != static_cast<ssize_t>(value.size()))
    return sys_error("write", file + " <- " + value);
  return {};
}

static std::string nocpu_group(const CgroupLayout& layout) {
  return layout.group + "-nocpu";
}

static std::string group_for(const CgroupLayout& layout, bool v2) {
  // v2 enables controllers per parent for all its children, and nsbox/ has
  // cpu enabled once any capped sandbox (nsbox run) has lived there;
  // turning it off again would strip the caps of the ones still running.
  // Uncapped sandboxes get a parent of their own that never enables cpu.
  return v2 && !layout.cpu_limits ? nocpu_group(layout) : layout.group;
}

bool cgroup_cpu_per_sandbox(const CgroupLayout& layout) {
  if (!layout.cpu_limits) return false;
  if (layout.version == CgroupVersion::V1) return !layout.v1_cpu.empty();
  if (layout.version != CgroupVersion::V2) return false;
  std::istringstream cs(read_file(layout.v2_mount + "/cgroup.controllers"));
  for (std::string c; cs >> c;)
    if (c == "cpu") return true;
  return false;
}

// Where a layout's leaves go under one hierarchy's mount.
static std::string parent_of(const CgroupLayout& layout, const std::string& mount, bool v2) {
  std::string p = mount + "/" + group_for(layout, v2);
  return layout.subgroup.empty() ? p : p + "/" + layout.subgroup;
}

namespace {
// A killed owner stays a zombie until whoever inherited it reaps it, and
// kill(pid, 0) succeeds on a zombie: an owner killed a moment ago would
// keep its leaves until the next sweep. And a dead owner's pid may have
// gone to another program, which would keep them for as long as it runs:
// every owner names itself nsbox... (`nsbox run` and the spawner set their
// names, so a renamed binary does not matter), so a live process named
// otherwise is not the owner.
bool owner_alive(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  const std::string text = read_proc_stat_text(pid);
  if (text.empty()) return false;  // gone since the kill(0), or hidden from us
  const auto st = parse_proc_stat(text);
  if (!st) return true;  // unparsable: kept, as a live owner's
  if (!st->comm.starts_with("nsbox")) return false;
  return st->state != 'Z' && st->state != 'X';
}
}  // namespace

namespace {
// Removes a stale leaf, and first whatever leaves are below it (a function
// template's family holds its template's and instances' leaves). Returns
// how many were removed.
int remove_stale(const std::string& leaf, int depth) {
  int removed = 0;
  if (depth < 2) {
    if (DIR* d = opendir(leaf.c_str())) {
      std::vector<std::string> below;
      while (dirent* e = readdir(d))
        if (e->d_type == DT_DIR && e->d_name[0] != '.') below.push_back(leaf + "/" + e->d_name);
      closedir(d);
      for (const auto& b : below) removed += remove_stale(b, depth + 1);
    }
  }
  if (access((leaf + "/freezer.state").c_str(), F_OK) == 0) {
    // A v1 frozen task takes no SIGKILL until thawed: a sandbox frozen
    // when its owner was killed (its PDEATHSIG pending) dies only now.
    std::istringstream procs(read_file(leaf + "/cgroup.procs"));
    pid_t pid;
    while (procs >> pid) kill(pid, SIGKILL);
    (void)write_file(leaf + "/freezer.state", "THAWED", false);
  }
  if (!read_file(leaf + "/cgroup.procs").empty()) return removed;
  if (rmdir(leaf.c_str()) == 0) removed++;
  return removed;
}
}  // namespace

size_t cgroup_retry_left_behind() {
  std::lock_guard<std::mutex> lock(g_left_mutex);
  std::vector<std::string> still;
  for (const auto& dir : g_left_behind) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
    // A v1 leaf's tasks may be frozen through another hierarchy; whatever
    // is still in it was the sandbox's and is killed again.
    std::istringstream procs(read_file(dir + "/cgroup.procs"));
    pid_t pid;
    while (procs >> pid) kill(pid, SIGKILL);
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
    still.push_back(dir);
  }
  g_left_behind = std::move(still);
  return g_left_behind.size();
}

int cgroup_sweep_stale(const CgroupLayout& layout, pid_t starting) {
  std::vector<std::string> roots;
  if (layout.version == CgroupVersion::V2) roots = {layout.v2_mount};
  if (layout.version == CgroupVersion::V1)
    roots = {layout.v1_memory, layout.v1_pids, layout.v1_cpu, layout.v1_unified, layout.v1_freezer};
  int removed = 0;
  std::vector<std::string> parents;
  for (const auto& root : roots) {
    if (root.empty()) continue;
    parents.push_back(root + "/" + layout.group);
    if (layout.version == CgroupVersion::V2) parents.push_back(root + "/" + nocpu_group(layout));
  }
  for (const auto& parent : parents) {
    DIR* d = opendir(parent.c_str());
    if (!d) continue;
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
      const char* dash = strchr(e->d_name, '-');
      if (!dash) continue;
      pid_t owner = static_cast<pid_t>(strtol(dash + 1, nullptr, 10));
      if (owner <= 0 || (owner != starting && owner_alive(owner))) continue;
      stale.push_back(parent + "/" + e->d_name);
    }
    closedir(d);
    for (const auto& leaf : stale) removed += remove_stale(leaf, 0);
  }
  return removed;
}

bool cgroup_warm_move_lock(const std::string& v1_memory) {
  if (v1_memory.empty()) return false;
  std::istringstream in(read_file("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    // hierarchy-id:controllers:path
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    if (!has_token(line.substr(a + 1, b - a - 1), "memory", ',')) continue;
    return bool(write_file(v1_memory + line.substr(b + 1) + "/cgroup.procs", "0", false));
  }
  return false;
}

CgroupLeaf& CgroupLeaf::operator=(CgroupLeaf&& o) noexcept {
  if (this != &o) {
    (void)destroy();
    version_ = o.version_;
    dirs_ = std::move(o.dirs_);
    o.dirs_.clear();
    v2_dirfd_ = std::exchange(o.v2_dirfd_, -1);
    v2_dir_ = std::move(o.v2_dir_);
    fake_ = o.fake_;
    freeze_dir_ = std::move(o.freeze_dir_);
    o.freeze_dir_.clear();
    freeze_v1_ = o.freeze_v1_;
    unified_dir_ = std::move(o.unified_dir_);
    o.unified_dir_.clear();
  }
  return *this;
}

CgroupLeaf::~CgroupLeaf() {
  // A destructor cannot return the error; it must not vanish either.
  if (Status s = destroy(); !s)
    LOG_WARN("cgroup leaf left behind: %s", s.error().message().c_str());
}

Result<CgroupLeaf> CgroupLeaf::create(const CgroupLayout& layout, const std::string& id,
                                      const Limits& limits) {
  CgroupLeaf leaf;
  leaf.version_ = layout.version;
  leaf.fake_ = layout.create_files;
  auto make = [&](const std::string& mount, const FileWrites& writes,
                  bool v2) -> Result<std::string> {
    std::string parent = parent_of(layout, mount, v2);
    bool have_cpu = true;
    std::string enable;
    if (v2) {
      // Controllers must be enabled top-down before a leaf can use them;
      // cpu is optional (detection requires only memory and pids).
      have_cpu = cgroup_cpu_per_sandbox(layout);
      enable = have_cpu ? "+memory +pids +cpu" : "+memory +pids";
      // Before our directory exists, so a refusal leaves nothing behind.
      if (Status s = write_file(mount + "/cgroup.subtree_control", enable, leaf.fake_); !s) {
        if (s.error().err != EBUSY) return std::move(s).error();
        // cgroup v2's "no internal processes" rule: the mount's root is not
        // the machine's (a container or a cgroup namespace) and holds
        // processes, so it cannot hand controllers to children.
        return make_error("cgroup", mount +
                                        " holds processes and cannot enable memory and pids "
                                        "for sub-groups (cgroup v2 allows controllers only "
                                        "below a group without processes); start nsbox in a "
                                        "cgroup of its own, e.g. systemd-run --scope");
      }
    }
    TRY(ensure_dir(parent));
    if (v2) TRY(write_file(parent + "/cgroup.subtree_control", enable, leaf.fake_));
    std::string dir = parent + "/" + id;
    if (mkdir(dir.c_str(), 0755) != 0) return sys_error("mkdir", dir);
    leaf.dirs_.push_back(dir);  // from here on destroy() removes it
    for (const auto& [file, value] : writes) {
      if (file == "cpu.max" && !have_cpu) continue;
      std::string path = dir + "/" + file;
      // memory.swap.max / memsw exist only with swap accounting; the memory
      // limit alone still holds, so a missing swap knob is not fatal.
      // Nor is the TCP knob, absent on kernels without kernel memory accounting.
      if (file.find("swap") != std::string::npos || file.find("memsw") != std::string::npos ||
          file == kV1TcpLimit) {
        if (!leaf.fake_ && access(path.c_str(), F_OK) != 0) continue;
      }
      TRY(write_file(path, value, leaf.fake_));
    }
    return dir;
  };
  switch (layout.version) {
    case CgroupVersion::None:
      return make_error("cgroup", layout.why_none);
    case CgroupVersion::V2: {
      std::string dir = TRY(make(layout.v2_mount, cgroup_v2_limit_writes(limits), true));
      leaf.v2_dirfd_ = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (leaf.v2_dirfd_ < 0) return sys_error("open", dir);
      leaf.v2_dir_ = dir;
      // cgroup.freeze is core (no controller), absent only before Linux 5.2.
      if (layout.freeze && (leaf.fake_ || access((dir + "/cgroup.freeze").c_str(), F_OK) == 0))
        leaf.freeze_dir_ = dir;
      break;
    }
    case CgroupVersion::V1:
      TRY(make(layout.v1_memory, cgroup_v1_limit_writes("memory", limits), false));
      TRY(make(layout.v1_pids, cgroup_v1_limit_writes("pids", limits), false));
      if (cgroup_cpu_per_sandbox(layout))
        TRY(make(layout.v1_cpu, cgroup_v1_limit_writes("cpu", limits), false));
      if (layout.freeze) TRY(leaf.make_freezer_v1(layout, id));
      break;
  }
  return leaf;
}

Status CgroupLeaf::make_freezer_v1(const CgroupLayout& layout, const std::string& id) {
  // Hybrid first: a cgroup2 leaf freezes far more cheaply than the v1
  // freezer (cgroup.hpp). A cgroup2 mount that refuses
  // us (read-only in a container) or predates cgroup.freeze is passed over.
  if (!layout.v1_unified.empty()) {
    std::string parent = parent_of(layout, layout.v1_unified, false), dir = parent + "/" + id;
    if (ensure_dir(parent) && mkdir(dir.c_str(), 0755) == 0) {
      dirs_.push_back(dir);
      unified_dir_ = dir;
      // PID 1 is cloned into it (CgroupEntry); without the fd, attach() moves it.
      if (!fake_) {
        v2_dirfd_ = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (v2_dirfd_ >= 0) v2_dir_ = dir;
      }
      if (fake_ || access((dir + "/cgroup.freeze").c_str(), F_OK) == 0) {
        freeze_dir_ = dir;
        return {};
      }
    }
  }
  if (layout.v1_freezer.empty()) return {};
  std::string parent = parent_of(layout, layout.v1_freezer, false), dir = parent + "/" + id;
  TRY(ensure_dir(parent));
  if (mkdir(dir.c_str(), 0755) != 0) return sys_error("mkdir", dir);
  dirs_.push_back(dir);
  freeze_dir_ = dir;
  freeze_v1_ = true;
  return {};
}

bool CgroupLeaf::frozen_now() const {
  if (freeze_v1_) return read_file(freeze_dir_ + "/freezer.state").rfind("FROZEN", 0) == 0;
  std::istringstream events(read_file(freeze_dir_ + "/cgroup.events"));
  std::string key, value;
  while (events >> key >> value)
    if (key == "frozen") return value == "1";
  return false;
}

Status CgroupLeaf::set_frozen(bool frozen) const {
  if (freeze_dir_.empty()) return make_error("freeze", "the sandbox has no freezer cgroup");
  auto [file, value] = cgroup_freeze_write(freeze_v1_, frozen);
  return write_file(freeze_dir_ + "/" + file, value, fake_);
}

Result<FreezeSwitch> CgroupLeaf::freeze_switch() const {
  FreezeSwitch s;
  if (freeze_dir_.empty()) return s;
  std::string path = freeze_dir_ + "/" + cgroup_freeze_write(freeze_v1_, true).first;
  s.fd.reset(open(path.c_str(), O_WRONLY | O_CLOEXEC | (fake_ ? O_CREAT : 0), 0644));
  if (!s.fd.valid()) return sys_error("open", path);
  s.v1 = freeze_v1_;
  return s;
}

Status CgroupLeaf::attach(pid_t pid) const {
  for (const auto& dir : dirs_) TRY(write_file(dir + "/cgroup.procs", std::to_string(pid), fake_));
  return {};
}

Result<CgroupEntry> CgroupLeaf::entry() const {
  CgroupEntry e;
  if (fake_ || dirs_.empty()) return e;
  e.clone_into = v2_dirfd_;
  e.complete = true;
  for (const auto& dir : dirs_) {
    if (v2_dirfd_ >= 0 && dir == v2_dir_) continue;  // cloned into
    if (version_ != CgroupVersion::V1) {
      e.complete = false;
      continue;
    }
    std::string path = dir + "/tasks";
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.valid()) {
      e.tasks.push_back(std::move(fd));
    } else if (errno == ENOENT) {
      e.complete = false;  // a cgroup2 leaf we hold no fd of: attach() moves the pid
    } else {
      return sys_error("open", path);
    }
  }
  // Where attach() must move PID 1 anyway, the child moves nothing itself.
  if (!e.complete) e.tasks.clear();
  return e;
}

namespace {
std::vector<pid_t> read_pids(const std::string& path) {
  std::vector<pid_t> out;
  std::istringstream in(read_file(path));
  pid_t pid;
  while (in >> pid) out.push_back(pid);
  return out;
}
}  // namespace

std::vector<std::vector<pid_t>> CgroupLeaf::v1_tasks() const {
  std::vector<std::vector<pid_t>> out;
  if (version_ != CgroupVersion::V1) return out;
  for (const auto& d : dirs_)
    if (d != unified_dir_) out.push_back(read_pids(d + "/tasks"));
  return out;
}

Result<std::vector<UniqueFd>> CgroupLeaf::self_join_files() const {
  std::vector<UniqueFd> out;
  for (const auto& d : dirs_) {
    if (d == unified_dir_) continue;
    const std::string path = d + (version_ == CgroupVersion::V1 ? "/tasks" : "/cgroup.procs");
    out.emplace_back(open(path.c_str(), O_WRONLY | O_CLOEXEC | (fake_ ? O_CREAT : 0), 0644));
    if (!out.back().valid()) return sys_error("open", path);
  }
  return out;
}

std::vector<pid_t> CgroupLeaf::procs() const {
  std::vector<pid_t> out;
  if (dirs_.empty() || fake_) return out;
  std::istringstream in(read_file(dirs_[0] + "/cgroup.procs"));
  pid_t pid;
  while (in >> pid) out.push_back(pid);
  return out;
}

Status CgroupLeaf::set_memory_limit(uint64_t bytes, uint64_t swap_bytes) const {
  if (dirs_.empty()) return make_error("cgroup", "no cgroup to limit");
  std::string value = std::to_string(bytes);
  if (version_ == CgroupVersion::V2) return write_file(dirs_[0] + "/memory.max", value, fake_);
  // v1 requires memsw >= memory at every moment: raise memsw first when
  // growing, lower memory first when shrinking.
  const std::string& d = dirs_[0];
  std::string mem = d + "/memory.limit_in_bytes", memsw = d + "/memory.memsw.limit_in_bytes";
  const std::string tcp = d + "/" + kV1TcpLimit;
  if (fake_ || access(tcp.c_str(), F_OK) == 0) TRY(write_file(tcp, value, fake_));
  bool have_memsw = fake_ || access(memsw.c_str(), F_OK) == 0;
  if (!have_memsw) return write_file(mem, value, fake_);
  const std::string sw = std::to_string(bytes + swap_bytes);
  uint64_t current = read_number(mem);
  if (bytes > current) {
    TRY(write_file(memsw, sw, fake_));
    return write_file(mem, value, fake_);
  }
  TRY(write_file(mem, value, fake_));
  return write_file(memsw, sw, fake_);
}

Status CgroupLeaf::set_swap_limit(uint64_t bytes) const {
  if (version_ != CgroupVersion::V2 || dirs_.empty()) return {};  // v1: memsw, with memory
  const std::string path = dirs_[0] + "/memory.swap.max";
  if (!fake_ && access(path.c_str(), F_OK) != 0) return {};  // no swap accounting
  return write_file(path, std::to_string(bytes), fake_);
}

Status CgroupLeaf::set_pids_limit(uint64_t pids) const {
  // create() makes v1 leaves memory first, pids second.
  const size_t at = version_ == CgroupVersion::V2 ? 0 : 1;
  if (dirs_.size() <= at) return make_error("cgroup", "no pids controller to limit");
  // Above the kernel's PID_MAX_LIMIT pids.max takes only "max" (a family
  // of many instances with large limits sums past it).
  constexpr uint64_t kPidMaxLimit = 4194304;
  return write_file(dirs_[at] + "/pids.max", pids >= kPidMaxLimit ? "max" : std::to_string(pids),
                    fake_);
}

bool CgroupEvents::reached_memory_limit(uint64_t limit_bytes) const {
  if (limit_bytes == 0 || memory_max == 0) return false;
  const uint64_t margin = std::max<uint64_t>(256 << 10, limit_bytes / 32);
  return std::max(memory_peak, memory_current) + margin >= limit_bytes;
}

CgroupEvents CgroupLeaf::events() const {
  CgroupEvents e;
  if (dirs_.empty()) return e;
  if (version_ == CgroupVersion::V2) {
    const std::string& d = dirs_[0];
    e.oom_kills = read_key(d + "/memory.events", "oom_kill");
    e.memory_max = read_key(d + "/memory.events", "max");
    e.pids_max = read_key(d + "/pids.events", "max");
    e.memory_peak = read_number(d + "/memory.peak");
    e.memory_current = read_number(d + "/memory.current");
  } else {
    for (const auto& d : dirs_) {
      if (access((d + "/memory.oom_control").c_str(), F_OK) == 0) {
        e.oom_kills = read_key(d + "/memory.oom_control", "oom_kill");
        e.memory_max = read_number(d + "/memory.failcnt");
        e.memory_peak = read_number(d + "/memory.max_usage_in_bytes");
        e.memory_current = read_number(d + "/memory.usage_in_bytes");
      }
      if (access((d + "/pids.events").c_str(), F_OK) == 0)
        e.pids_max = read_key(d + "/pids.events", "max");
    }
  }
  return e;
}

Status CgroupLeaf::remove_if_empty() {
  Status first;
  std::vector<std::string> left;
  for (const auto& d : dirs_) {
    if (fake_ || rmdir(d.c_str()) == 0 || errno == ENOENT) continue;
    if (first) first = sys_error("rmdir", d);
    left.push_back(d);
  }
  dirs_ = std::move(left);
  if (std::find(dirs_.begin(), dirs_.end(), unified_dir_) == dirs_.end()) unified_dir_.clear();
  if (dirs_.empty()) {
    close_dirfd();
    freeze_dir_.clear();
  }
  return first;
}

void CgroupLeaf::close_dirfd() {
  if (v2_dirfd_ >= 0) close(std::exchange(v2_dirfd_, -1));
  v2_dir_.clear();
}

Status CgroupLeaf::destroy() {
  close_dirfd();
  Status first;
  if (!fake_) {
    if (version_ == CgroupVersion::V2 && !dirs_.empty() && dirs_[0] != freeze_dir_) {
      // cgroup.kill (5.14+) kills the whole leaf at once; older kernels fall
      // through to the per-pid loop in remove_leaf. A leaf that is also the
      // freezer gets its cgroup.kill below.
      (void)write_file(dirs_[0] + "/cgroup.kill", "1", false);
    }
    if (!freeze_dir_.empty()) {
      // SIGKILL first (pending in a v1 frozen task, fatal at once in a
      // cgroup2 one), then thaw so that it is delivered. Without
      // cgroup.kill (the v1 freezer, cgroup2 before 5.14), freeze a running
      // leaf first: a fork loop would otherwise put a new pid in it between
      // each read of its list and the kills, for every round of
      // remove_leaf. Once frozen nothing in it forks: one list is all of it.
      const bool killed = !freeze_v1_ && write_file(freeze_dir_ + "/cgroup.kill", "1", false);
      if (!killed && set_frozen(true))
        for (int i = 0; i < 200 && !frozen_now(); i++) usleep(1000);
      std::istringstream procs(read_file(freeze_dir_ + "/cgroup.procs"));
      pid_t pid;
      while (procs >> pid) kill(pid, SIGKILL);
      (void)set_frozen(false);
    }
    for (const auto& d : dirs_) {
      Status s = remove_leaf(d);
      if (s) continue;
      if (first) first = s;
      leave_behind(d);
    }
  }
  dirs_.clear();
  freeze_dir_.clear();
  unified_dir_.clear();
  return first;
}

}  // namespace nsbox
