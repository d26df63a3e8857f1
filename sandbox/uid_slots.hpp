// Root mode: one range of host uids per sandbox ("slot"), so that the
// kernel's per-user counters (pipe buffer pages charged to the real uid;
// inotify instances and watches, mqueue bytes, user namespaces and
// RLIMIT_NPROC charged up to the user namespace's owner) are per sandbox and
// one function cannot exhaust them for every other.
//
// Slot s maps inside 0..4095 onto host kSlotUidBase + s * 4096. A slot is
// held by an flock on /run/nsbox/uid-slots/<s>, so slots are unique across every
// process that makes sandboxes (the daemon's spawner and any concurrent
// `nsbox run` as root). The file names the holder's PID 1 (pid and start
// time) while it lives; the holder empties it on release, after reaping PID
// 1 (PID 1 reaped means its PID namespace is empty). An owner killed first
// leaves the record behind: the next taker reuses the slot only once that
// PID 1 is gone or a zombie (the kernel makes PID 1 a zombie only after it
// killed and reaped the rest of its namespace).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/fd.hpp"
#include "base/result.hpp"

namespace nsbox {

constexpr uid_t kSlotUidBase = 0x70000000;
// 4096 ids per sandbox: its user (1000) and root, with room to spare; the
// rootfs's files are host root's and show as the overflow id whatever the
// range. A smaller range means more slots: 65,536 sandboxes at once.
constexpr uint32_t kSlotUids = 4096;
// 0x70000000 + 65536 * 4096 = 0x80000000: every sandbox uid stays in
// [0x70000000, 0x80000000), far from ordinary and from nobody's uids.
constexpr uint32_t kSlotCount = 65536;
constexpr const char* kSlotDir = "/run/nsbox/uid-slots";
// Where nsbox before 65,536 slots kept its 4,096 slots of 65,536 uids: its
// slot t overlaps today's 16t..16t+15, so none may be taken while one of
// those is held (an older nsbox still running across an upgrade).
constexpr const char* kLegacySlotDir = "/run/nsbox/slots";

class UidSlot {
 public:
  UidSlot() = default;
  UidSlot(UidSlot&&) noexcept = default;
  UidSlot& operator=(UidSlot&& o) noexcept;
  ~UidSlot() { release(); }

  // Takes a free slot. Each process tries from a random point on, and then
  // after the slot it took last, so that takers rarely collide. dir is
  // kSlotDir except in tests.
  static Result<UidSlot> acquire(const std::string& dir = kSlotDir, uint32_t count = kSlotCount);

  bool valid() const { return fd_.valid(); }
  uint32_t index() const { return index_; }
  uid_t host_base() const { return kSlotUidBase + index_ * kSlotUids; }
  // Records the sandbox's PID 1 (host pid), for takers after a crash.
  Status record_holder(pid_t pid1);
  // Empties the record and unlocks. Only after PID 1 was reaped.
  void release();

 private:
  UniqueFd fd_;
  uint32_t index_ = 0;
};

// An error naming a slot of the old layout in dir that is held (locked, or
// recorded by a PID 1 still alive); ok when none is or dir does not exist.
// With remove, a dir found clear is deleted, so later checks cost nothing.
// acquire() from kSlotDir asks it (removing) until it first says ok.
Status check_legacy_slots(const std::string& dir = kLegacySlotDir, bool remove = false);

// Pure, for tests: is the record left in a slot file ("<pid> <starttime>")
// still a live process? stat_text is that pid's /proc/<pid>/stat ("" when
// gone).
bool slot_record_alive(const std::string& record, const std::string& stat_text);

}  // namespace nsbox
