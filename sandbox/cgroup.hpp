// cgroup leaves for sandboxes, on v2 and on v1 (memory, pids and cpu
// hierarchies). The parent creates the leaf and writes its limits before
// clone; the leaf is killed, waited empty and removed when its owner dies.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

enum class CgroupVersion { None, V1, V2 };

struct CgroupLayout {
  CgroupVersion version = CgroupVersion::None;
  std::string v2_mount;                    // the cgroup2 mount point holding memory+pids
  std::string v1_memory, v1_pids, v1_cpu;  // v1 hierarchy mount points ("" = absent)
  std::string group = "nsbox";             // parent group under each root
  // A group below `group` to make leaves in ("" = none): a function
  // template's family (family.hpp), whose own limits bound all its leaves.
  std::string subgroup;
  // false: sandboxes get no cpu controller, so no CPU cap (cpu_millicores is
  // ignored) and no group scheduling, which is what costs tail latency with
  // many busy sandboxes (docs/benchmarks.md). The v1 cpu hierarchy is still
  // swept of stale leaves.
  bool cpu_limits = true;
  // Where an idle sandbox is frozen (the pool freezes warm sandboxes with no
  // request in flight). v2: the leaf itself. v1: a leaf in the cgroup2 mount
  // when there is one (the hybrid layout; cgroup.freeze needs no
  // controller), else one in the v1 freezer hierarchy: a v1 freezer.state
  // write is two orders of magnitude dearer while no other v1 cgroup is
  // frozen (the kernel flips a global static key each time); figures in
  // docs/benchmarks.md, "Freezing idle sandboxes".
  std::string v1_unified;     // the cgroup2 mount next to a v1 layout ("" = none)
  std::string v1_freezer;     // the v1 freezer hierarchy ("" = none)
  bool freeze = false;        // give leaves a freeze switch (serve; nsbox run needs none)
  bool create_files = false;  // tests against a fake cgroupfs tree
  std::string why_none;       // when None: what is missing
};

// Reads a mountinfo file (normally /proc/self/mountinfo). v2 is used when a
// cgroup2 mount offers memory and pids; else v1 when its memory and pids
// hierarchies are mounted; else None with the reason.
// Whether each sandbox's leaf gets a cpu controller of its own: cpu_limits,
// and a cpu hierarchy (v1) or cpu among the mount's controllers (v2).
bool cgroup_cpu_per_sandbox(const CgroupLayout& layout);
CgroupLayout cgroup_detect(const std::string& mountinfo = "/proc/self/mountinfo");

// Pure planners: (file, value) pairs relative to the leaf directory.
using FileWrites = std::vector<std::pair<std::string, std::string>>;
FileWrites cgroup_v2_limit_writes(const Limits& limits);
FileWrites cgroup_v1_limit_writes(const std::string& controller, const Limits& limits);

struct CgroupEvents {
  uint64_t oom_kills = 0;       // memory limit reached and a task was killed
  uint64_t memory_max = 0;      // times the memory limit was hit (v1 failcnt / v2 "max")
  uint64_t pids_max = 0;        // fork/clone refused by the pids limit
  uint64_t memory_peak = 0;     // bytes
  uint64_t memory_current = 0;  // bytes

  // The leaf hit its memory limit and came within a margin of it (peak, or
  // current where the kernel has no peak). A function that timed out so was
  // likely thrashing: with no swap the kernel reclaims and refaults a
  // process's file pages (its code) rather than declare OOM while any are
  // reclaimable, and one whose anonymous memory filled the limit can spin
  // there until the wall timeout instead of being killed.
  bool reached_memory_limit(uint64_t limit_bytes) const;
};

// v1: takes and lets go of the machine-wide lock that a move by pid takes,
// by moving the caller into the memory cgroup it is already in. The lock's
// first taker after a pause waits out an RCU grace period, and the kernel
// looks a written pid up only after taking it: a pid read from a leaf and
// then written would be looked up that long after it was read, time for
// its process to end and its pid to go to another. Taken just before, the
// lock is quick to take again for a while, so that lookup follows within
// microseconds. Best effort: false when it could not.
// v1_memory: the v1 memory hierarchy's mount (CgroupLayout::v1_memory).
bool cgroup_warm_move_lock(const std::string& v1_memory);

// Removes leaves left by an owner that was killed before it could clean up
// (kill -9 of `nsbox run`). Leaf names are "<kind>-<owner pid>[-...]"; a
// leaf is removed only when that pid is gone (or is a process whose name
// does not start with "nsbox": the pid went to another program) and the
// leaf holds no task.
// starting: the caller's pid, when it has made no leaf yet. Its leaves are
// then stale too: left by an earlier owner that had the same pid, they
// would otherwise never be swept, and block the names the caller makes.
// Returns how many were removed.
int cgroup_sweep_stale(const CgroupLayout& layout, pid_t starting = 0);

// Tries again to remove the leaves whose CgroupLeaf::destroy() failed in
// this process (a task that took longer than its wait to die): the sweep
// above leaves a live owner's leaves alone, so without this they would stay
// until the owner exits. Kills what is still in them; never waits. Returns
// how many are still left.
size_t cgroup_retry_left_behind();

// A leaf's freeze switch as an open file, for a process that does not own
// the leaf: the spawner hands it to the gateway, whose pool freezes idle
// sandboxes and thaws them when a request leases one.
struct FreezeSwitch {
  UniqueFd fd;
  bool v1 = false;  // freezer.state FROZEN/THAWED, else cgroup.freeze 1/0
  bool valid() const { return fd.valid(); }
  Status set(bool frozen) const;
};

// The (file, value) a freeze or thaw writes: pure, for the tests.
std::pair<std::string, std::string> cgroup_freeze_write(bool v1, bool frozen);

// How a new PID 1 gets into its leaf without attach(). Moving a process
// into a cgroup (a cgroup.procs write) takes a machine-wide lock whose first
// taker after a quiet spell waits out an RCU grace period: 10-20 ms here, on
// every cold start that follows a pause (docs/benchmarks.md, issue 11 part
// 11). Two ways in skip that lock: clone3(CLONE_INTO_CGROUP) into the leaf's
// cgroup2 directory, and, on v1, a single thread moving itself by writing
// "0" to a hierarchy's `tasks` file. The child does the latter at step 3
// through these fds, which the kernel checks against the credentials of the
// process that opened them (ours), not the child's.
struct CgroupEntry {
  int clone_into = -1;          // borrowed O_PATH fd for CLONE_INTO_CGROUP, or -1
  std::vector<UniqueFd> tasks;  // v1: one `tasks` file per hierarchy, for the child
  bool complete = false;        // the two cover every hierarchy: no attach() needed;
                                // when false, tasks is empty and attach() moves PID 1
};

class CgroupLeaf {
 public:
  CgroupLeaf() = default;
  CgroupLeaf(CgroupLeaf&& o) noexcept { *this = std::move(o); }
  CgroupLeaf& operator=(CgroupLeaf&& o) noexcept;
  CgroupLeaf(const CgroupLeaf&) = delete;
  ~CgroupLeaf();

  static Result<CgroupLeaf> create(const CgroupLayout& layout, const std::string& id,
                                   const Limits& limits);
  bool valid() const { return !dirs_.empty(); }
  // An O_PATH fd of the leaf's cgroup2 directory for CLONE_INTO_CGROUP: the
  // leaf itself on v2, the freeze leaf of the hybrid layout on v1; else -1.
  int v2_dirfd() const { return v2_dirfd_; }
  // The ways in for a new PID 1 (CgroupEntry); a fake tree offers none.
  Result<CgroupEntry> entry() const;
  // Once PID 1 is in the leaf: the spawner would otherwise hold one fd per
  // sandbox for nothing, and its open files bound how many it can hold.
  void close_dirfd();
  const std::vector<std::string>& dirs() const { return dirs_; }
  Status attach(pid_t pid) const;
  // The processes in it (host pids, from its first hierarchy); empty without one.
  std::vector<pid_t> procs() const;
  // v1 only. The threads in each v1 hierarchy's leaf (the hybrid layout's
  // cgroup2 freeze leaf left out): one list per hierarchy, in dirs() order.
  std::vector<std::vector<pid_t>> v1_tasks() const;
  // The files a process writes "0" to to join the leaf itself, opened for
  // writing: v1's `tasks` (a thread moving itself takes no machine-wide
  // lock), else cgroup.procs; the hybrid layout's cgroup2 leaf left out.
  Result<std::vector<UniqueFd>> self_join_files() const;
  CgroupEvents events() const;
  // swap_bytes: v1's memsw is set to bytes + swap_bytes; v2's swap limit
  // is left as it is.
  Status set_memory_limit(uint64_t bytes, uint64_t swap_bytes = 0) const;
  // v2's memory.swap.max (v1 sets memsw with set_memory_limit).
  Status set_swap_limit(uint64_t bytes) const;
  Status set_pids_limit(uint64_t pids) const;
  bool can_freeze() const { return !freeze_dir_.empty(); }
  // Whether the leaf's tasks are all frozen now (freezing takes a moment).
  bool frozen_now() const;
  Status set_frozen(bool frozen) const;
  // An fd of the leaf's freeze file (see FreezeSwitch); invalid without one.
  Result<FreezeSwitch> freeze_switch() const;
  // Kills what is left (thawing a frozen leaf first: a v1 frozen task
  // takes no SIGKILL until thawed), waits for the leaf to empty, removes it.
  Status destroy();
  // Removes the leaf if nothing is in it: no kill, no wait. EBUSY when a
  // process is there; what was not removed stays, for destroy().
  Status remove_if_empty();

 private:
  Status make_freezer_v1(const CgroupLayout& layout, const std::string& id);

  CgroupVersion version_ = CgroupVersion::None;
  std::vector<std::string> dirs_;  // one per hierarchy (v1) or one (v2)
  int v2_dirfd_ = -1;
  std::string v2_dir_;  // the directory v2_dirfd_ opens
  bool fake_ = false;
  std::string freeze_dir_;  // one of dirs_, or "" when nothing can freeze it
  bool freeze_v1_ = false;
  std::string unified_dir_;  // v1: the hybrid layout's cgroup2 leaf in dirs_, or ""
};

}  // namespace nsbox
