// Root mode's per-sandbox host uid ranges (uid_slots.hpp) and PID 1's own
// seccomp filter (init_reaper.hpp).
#include "sandbox/uid_slots.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "sandbox/init_reaper.hpp"
#include "sandbox/seccomp.hpp"
#include "sandbox/spec.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {

using nsbox::test::TempDir;

std::string self_stat() {
  std::ifstream f("/proc/self/stat");
  std::string s;
  std::getline(f, s);
  return s;
}

std::string start_time_of_self() {
  std::string s = self_stat();
  std::istringstream rest(s.substr(s.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22; i++) rest >> field;
  return field;
}

}  // namespace

TEST_CASE("uid slots: 65536 slots, each its own range of 4096 host uids below 0x80000000") {
  CHECK(kSlotUidBase == 0x70000000u);
  CHECK(uint64_t{kSlotUidBase} + uint64_t{kSlotCount} * kSlotUids == 0x80000000ull);
  // Room for 10,000 sandboxes and more; the sandbox user (1000) inside every range.
  CHECK(kSlotCount == 65536u);
  CHECK(kSlotUids == 4096u);
  CHECK(SandboxSpec{}.ids.inside_uid < kSlotUids);
  CHECK(SandboxSpec{}.ids.inside_gid < kSlotUids);
}

TEST_CASE("uid slots: held slots are never handed out twice; released ones are") {
  TempDir d("slots");
  std::string dir = d.path + "/slots";
  std::set<uint32_t> seen;
  std::vector<UidSlot> held;
  for (int i = 0; i < 3; i++) {
    auto s = UidSlot::acquire(dir, 3);
    REQUIRE_MESSAGE(s, s.error().message());
    CHECK(s.value().host_base() == kSlotUidBase + s.value().index() * kSlotUids);
    seen.insert(s.value().index());
    held.push_back(std::move(s.value()));
  }
  CHECK(seen.size() == 3);
  auto full = UidSlot::acquire(dir, 3);
  REQUIRE(!full);
  CHECK(full.error().message().find("3 held") != std::string::npos);
  uint32_t freed = held[1].index();
  held[1].release();
  auto again = UidSlot::acquire(dir, 3);
  REQUIRE(again);
  CHECK(again.value().index() == freed);
  // The directory is private to its owner.
  struct stat st;
  REQUIRE(stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
}

TEST_CASE("uid slots: a crashed holder's slot waits until its PID 1 is gone") {
  TempDir d("slots");
  std::string dir = d.path + "/slots";
  {
    auto s = UidSlot::acquire(dir, 1);
    REQUIRE(s);
  }
  // As if the holder was killed while PID 1 (here: this process) lives: the
  // record stays, the lock is gone.
  std::ofstream(dir + "/0") << getpid() << " " << start_time_of_self() << "\n";
  auto blocked = UidSlot::acquire(dir, 1);
  REQUIRE(!blocked);
  CHECK(blocked.error().message().find("1 still dying") != std::string::npos);
  // The same pid with another start time is another process: free.
  std::ofstream(dir + "/0") << getpid() << " 1\n";
  auto s = UidSlot::acquire(dir, 1);
  REQUIRE(s);
  // The record is emptied on release.
  CHECK(s.value().record_holder(getpid()));
  s.value().release();
  std::ifstream rec(dir + "/0");
  std::string text;
  std::getline(rec, text);
  CHECK(text.empty());
}

TEST_CASE("uid slots: a slot of the old layout still held blocks every new one") {
  TempDir d("slots");
  std::string legacy = d.path + "/legacy";
  // No old directory, or only free and dead entries: nothing blocks.
  CHECK(check_legacy_slots(legacy));
  REQUIRE(mkdir(legacy.c_str(), 0700) == 0);
  std::ofstream(legacy + "/5") << "";
  std::ofstream(legacy + "/6") << getpid() << " 1\n";  // another process's record: gone
  CHECK(check_legacy_slots(legacy));
  // A live holder's record (this process, as if it were an old PID 1).
  std::ofstream(legacy + "/7") << getpid() << " " << start_time_of_self() << "\n";
  Status s = check_legacy_slots(legacy);
  REQUIRE(!s);
  CHECK(s.error().message().find(legacy + "/7") != std::string::npos);
  CHECK(s.error().message().find("older nsbox") != std::string::npos);
  std::ofstream(legacy + "/7") << "";
  CHECK(check_legacy_slots(legacy));
  // Whatever the file's name.
  std::ofstream(legacy + "/40001") << getpid() << " " << start_time_of_self() << "\n";
  CHECK(!check_legacy_slots(legacy));
  std::ofstream(legacy + "/40001") << "";
  CHECK(check_legacy_slots(legacy));
  // An old process holding the lock, record or not.
  int fd = open((legacy + "/4095").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // flock is per open file: the child's own open of the file holds it.
    int cfd = open((legacy + "/4095").c_str(), O_RDWR | O_CLOEXEC);
    if (cfd < 0 || flock(cfd, LOCK_EX) != 0) _exit(1);
    pause();
    _exit(0);
  }
  bool blocked = false;
  for (int i = 0; i < 200 && !blocked; i++) {
    blocked = !check_legacy_slots(legacy);
    if (!blocked) usleep(10000);
  }
  CHECK(blocked);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  close(fd);
  CHECK(check_legacy_slots(legacy));
  // Found clear, it may go, whatever files it holds: later checks then cost nothing.
  std::ofstream(legacy + "/40000") << "";
  CHECK(check_legacy_slots(legacy, true));
  CHECK(access(legacy.c_str(), F_OK) != 0);
  CHECK(check_legacy_slots(legacy));
}

TEST_CASE("slot_record_alive: pid and start time must match a live, non-zombie process") {
  const std::string st = "123 (python3) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 4242 0";
  CHECK(slot_record_alive("123 4242\n", st));
  CHECK(!slot_record_alive("123 4243\n", st));
  CHECK(!slot_record_alive("123 4242\n", ""));
  std::string zombie = st;
  zombie[zombie.find(") S") + 2] = 'Z';
  CHECK(!slot_record_alive("123 4242\n", zombie));
  CHECK(!slot_record_alive("", st));
  // A command name with spaces and parentheses does not shift the fields.
  CHECK(slot_record_alive("9 77", "9 (a) b) c) R 1 9 9 0 -1 0 1 0 0 0 0 0 0 0 20 0 1 0 77 0"));
}

namespace {

// Runs fn in a child under PID 1's filter; its wait status.
template <class F>
int under_init_filter(F fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
    if (child_load_seccomp(init_seccomp_program()) != 0) _exit(101);
    fn();
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

}  // namespace

TEST_CASE("PID 1's filter: waiting and exiting only; anything else kills") {
  int st = under_init_filter([] {
    pid_t c = static_cast<pid_t>(syscall(SYS_getpid));  // any other syscall
    _exit(c > 0 ? 5 : 6);
  });
  CHECK(WIFSIGNALED(st));
  CHECK(WTERMSIG(st) == SIGSYS);
  st = under_init_filter([] {
    int s;
    // wait4 (no children: ECHILD) and exit_group are what init_loop calls;
    // raw syscalls, because a sanitizer's waitpid and _exit make others.
    long w = syscall(SYS_wait4, -1, &s, WNOHANG, nullptr);
    syscall(SYS_exit_group, w < 0 && errno == ECHILD ? 7 : 8);
  });
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 7);
  st = under_init_filter([] { syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, nullptr); });
  CHECK(WIFSIGNALED(st));
}
