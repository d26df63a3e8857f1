#include "sandbox/uid_slots.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

#include "base/children.hpp"

namespace nsbox {

namespace {

std::atomic<uint32_t> g_next{0};
std::atomic<bool> g_seeded{false};
std::atomic<bool> g_legacy_clear{false};

uint32_t start_hint(uint32_t count) {
  if (!g_seeded.exchange(true)) {
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) r = static_cast<uint32_t>(getpid());
    g_next = r;
  }
  return g_next.load() % count;
}

std::string read_small(int dirfd, const char* name) {
  char buf[512];
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? std::string(buf, n) : std::string();
}

// The directory must be root's and private: whoever could create or lock
// its files could hold every slot (a denial of service) or plant records.
Result<UniqueFd> open_slot_dir(const std::string& dir) {
  std::string parent = dir.substr(0, dir.find_last_of('/'));
  if (!parent.empty() && mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
    return sys_error("mkdir", parent);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir", dir);
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return sys_error("open", dir);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("fstat", dir);
  if (st.st_uid != geteuid() || (st.st_mode & 077) != 0)
    return make_error("uid slots", dir + " must be owned by us with mode 0700");
  return fd;
}

}  // namespace

bool slot_record_alive(const std::string& record, const std::string& stat_text) {
  long long pid = 0;
  unsigned long long start = 0;
  if (sscanf(record.c_str(), "%lld %llu", &pid, &start) != 2 || pid <= 0) return false;
  const auto st = parse_proc_stat(stat_text);
  if (!st) return false;
  // Another process that got the pid later is not the holder; a zombie PID 1
  // has an empty namespace.
  return st->start_time == start && st->state != 'Z' && st->state != 'X' && st->state != 'x';
}

UidSlot& UidSlot::operator=(UidSlot&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = std::move(o.fd_);
    index_ = o.index_;
  }
  return *this;
}

Status check_legacy_slots(const std::string& dir, bool remove) {
  UniqueFd dirfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dirfd.valid()) {
    if (errno == ENOENT) return {};
    return sys_error("open", dir);
  }
  // Every file, whatever its name: one pass finds a holder and lists what to delete.
  std::vector<std::string> names;
  UniqueFd copy(fcntl(dirfd.get(), F_DUPFD_CLOEXEC, 0));
  DIR* d = copy.valid() ? fdopendir(copy.get()) : nullptr;
  if (!d) return sys_error("opendir", dir);
  (void)copy.release();  // closedir closes it
  while (dirent* e = readdir(d))
    if (e->d_type == DT_REG) names.emplace_back(e->d_name);
  closedir(d);
  for (const std::string& name : names) {
    UniqueFd fd(openat(dirfd.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) continue;
    bool held = flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    if (!held) {
      std::string rec = read_small(dirfd.get(), name.c_str());
      long long pid = 0;
      held = sscanf(rec.c_str(), "%lld", &pid) == 1 && pid > 0 &&
             slot_record_alive(rec, read_proc_stat_text(static_cast<pid_t>(pid)));
    }
    if (held)
      return make_error("uid slots",
                        dir + "/" + name +
                            " is held by an older nsbox (a range of 65,536 uids that overlaps "
                            "this version's slots); stop every older nsbox serve or run, then "
                            "start again");
  }
  if (remove) {
    for (const std::string& name : names) (void)unlinkat(dirfd.get(), name.c_str(), 0);
    (void)rmdir(dir.c_str());
  }
  return {};
}

Result<UidSlot> UidSlot::acquire(const std::string& dir, uint32_t count) {
  if (dir == kSlotDir && !g_legacy_clear.load()) {
    TRY(check_legacy_slots(kLegacySlotDir, true));
    g_legacy_clear = true;
  }
  UniqueFd dirfd = TRY(open_slot_dir(dir));
  const uint32_t first = start_hint(count);
  uint32_t busy = 0, dying = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t s = (first + i) % count;
    char name[16];
    snprintf(name, sizeof name, "%u", s);
    UniqueFd fd(openat(dirfd.get(), name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return sys_error("open", dir + "/" + name);
    if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) return sys_error("flock", dir + "/" + name);
      busy++;
      continue;
    }
    char rec[128] = {};
    ssize_t n = pread(fd.get(), rec, sizeof rec - 1, 0);
    if (n > 0) {
      // A holder that died without releasing: its sandbox may still be
      // dying, and its uids must not be shared with a new tenant meanwhile.
      long long pid = 0;
      if (sscanf(rec, "%lld", &pid) == 1 && pid > 0 &&
          slot_record_alive(rec, read_proc_stat_text(static_cast<pid_t>(pid)))) {
        dying++;
        continue;
      }
      if (ftruncate(fd.get(), 0) != 0) return sys_error("ftruncate", dir + "/" + name);
    }
    g_next = s + 1;
    UidSlot slot;
    slot.fd_ = std::move(fd);
    slot.index_ = s;
    return slot;
  }
  return make_error("uid slots", "all " + std::to_string(count) + " slots in " + dir +
                                     " are taken (" + std::to_string(busy) + " held, " +
                                     std::to_string(dying) + " still dying)");
}

Status UidSlot::record_holder(pid_t pid1) {
  const auto st = read_proc_stat(pid1);
  if (!st) return make_error("uid slot", "no /proc/" + std::to_string(pid1) + "/stat");
  char rec[64];
  int n = snprintf(rec, sizeof rec, "%d %llu\n", static_cast<int>(pid1), st->start_time);
  if (pwrite(fd_.get(), rec, n, 0) != n) return sys_error("write", "uid slot record");
  return {};
}

void UidSlot::release() {
  if (!fd_.valid()) return;
  (void)!ftruncate(fd_.get(), 0);
  fd_.reset();  // closing the last fd of the open file drops the flock
}

}  // namespace nsbox
