#include "sandbox/seccomp.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fsmap.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "base/fd.hpp"
#include "base/hash.hpp"
#include "base/log.hpp"

namespace nsbox {

namespace {

constexpr uint64_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                                     CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWTIME;

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(static_cast<scmp_filter_ctx>(ctx)); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

// The ioctl commands refused whatever fd they target: TIOCSTI pushes bytes
// into a terminal's input queue and TIOCLINUX (selection paste) does the same
// on a virtual console (CVE-2017-5226, CVE-2023-28100); TIOCSETD loads a line
// discipline, a history of kernel bugs; TIOCCONS redirects the console.
// FS_IOC_GETFSMAP maps a whole file system's physical extents, with their
// owners, through any fd on it (nsbox run's code is a mount of the host's
// file): the host's disk layout, and by polling, when files are written.
constexpr uint32_t kRefusedIoctls[] = {TIOCSTI, TIOCLINUX, TIOCSETD, TIOCCONS, FS_IOC_GETFSMAP};

// The fcntl commands refused whatever fd they target. F_NOTIFY (dnotify)
// reports every access to files in a watched directory, and a template's
// clones share their root's inodes (shared_root.hpp): it would show a
// sandbox what its siblings read from the runtime tree, and when.
// F_SETLEASE likewise reports other openers of a file.
constexpr uint32_t kRefusedFcntls[] = {F_NOTIFY, F_SETLEASE};

// Huge pages: hugetlb pages are not charged to the memory cgroup, so a
// sandbox could drain a host's preallocated pool (nr_hugepages), or take
// memory beyond its limit where the pool may overcommit. The flag of each
// call that asks for them without a hugetlbfs mount (a sandbox has none):
// mmap's MAP_HUGETLB, memfd_create's MFD_HUGETLB, shmget's SHM_HUGETLB.
// Transparent huge pages (madvise) are ordinary memory, charged as such.
struct FlagRule {
  int nr;
  int arg;
  uint32_t flag;
};
constexpr FlagRule kRefusedFlags[] = {{__NR_mmap, 3, MAP_HUGETLB},
                                      {__NR_memfd_create, 1, MFD_HUGETLB},
                                      {__NR_shmget, 2, SHM_HUGETLB}};

// The only socket families a function may create (socket, socketpair).
constexpr uint32_t kAllowedFamilies[] = {AF_UNIX, AF_INET, AF_INET6};
// And the only types and protocols for AF_INET and AF_INET6 (protocol 0 is
// the type's own): asking for another makes a kernel that has it as a
// module load it (SCTP, L2TP by protocol; DCCP also by its type with
// protocol 0; SOCK_PACKET becomes an AF_PACKET socket), and such rarely
// used protocol code is where local privilege escalations are often found.
// ICMP is the unprivileged ping socket. The type is compared without its
// SOCK_NONBLOCK and SOCK_CLOEXEC flags (the kernel's SOCK_TYPE_MASK).
constexpr uint32_t kAllowedInetTypes[] = {SOCK_STREAM, SOCK_DGRAM};
constexpr uint32_t kSockTypeMask = 0xf;
constexpr uint32_t kAllowedInetProtocols[] = {0, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP,
                                              IPPROTO_ICMPV6};

// Calls answered 0 without running them, whatever the policy says. Nothing
// a function writes outlives its sandbox (its /tmp and overlay upper are
// tmpfs), so syncing has nothing to keep; but what it can open read-only
// is the host's own disk (the runtime tree below the overlay, a function
// file bound in by nsbox run), and a sync of a clean file there still
// makes ext4 send the disk a cache flush: hundreds a second, slowing every
// writer on the host. sync and syncfs (listed by no built-in policy) reach
// a whole file system; msync with MS_SYNC reaches the same through a
// shared mapping (its own block: MS_ASYNC, a no-op in the kernel, still
// says ENOMEM for an unmapped range, which libunwind uses to probe).
constexpr uint32_t kNoOpCalls[] = {__NR_fsync, __NR_fdatasync, __NR_sync_file_range, __NR_sync,
                                   __NR_syncfs};

// Offset of the low 32 bits of syscall argument i in seccomp_data. The
// kernel declares ioctl's cmd `unsigned int` and socket's family `int`, so
// only these bits count: comparing the whole 64-bit register would let a
// caller pass TIOCSTI | 1 << 32 (flatpak's CVE-2019-10063).
constexpr uint32_t arg_low(int i) {
  return static_cast<uint32_t>(offsetof(seccomp_data, args) + 8 * i +
                               (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0 : 4));
}

// The high 32 bits, for a pointer argument, whose every bit counts.
constexpr uint32_t arg_high(int i) {
  return static_cast<uint32_t>(offsetof(seccomp_data, args) + 8 * i +
                               (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 4 : 0));
}

sock_filter stmt(uint16_t code, uint32_t k) {
  return sock_filter{code, 0, 0, k};
}
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return sock_filter{code, jt, jf, k};
}

// Argument rules in hand-written BPF, run before libseccomp's program. They
// are added whatever the policy says (like clone's), and they only ever
// refuse, or answer 0 without running the call (kNoOpCalls, msync with
// MS_SYNC, and fadvise's POSIX_FADV_DONTNEED, which would drop the host's cached pages of the
// runtime tree that every sandbox shares: others' cold starts would read
// it from disk again, and each page re-read would be charged to the
// sandbox's memory cgroup and keep it alive in the kernel once removed). A
// syscall they let through still needs the policy's allowlist.
// libseccomp 2.5 cannot express them itself: a rule without arguments for
// the same syscall absorbs every rule with arguments, its 64-bit compares
// see the high half the kernel ignores, and "family not in a set" has no
// masked form. Jumps are relative and forward, so the libseccomp program
// after this prefix runs unchanged; an architecture other than the native
// one goes straight to it (and is killed there).
std::vector<sock_filter> argument_prefix() {
  std::vector<sock_filter> f;
  const auto nioctl = static_cast<uint8_t>(std::size(kRefusedIoctls));
  const auto nfcntl = static_cast<uint8_t>(std::size(kRefusedFcntls));
  const auto nfam = static_cast<uint8_t>(std::size(kAllowedFamilies));
  const auto ntype = static_cast<uint8_t>(std::size(kAllowedInetTypes));
  const auto nproto = static_cast<uint8_t>(std::size(kAllowedInetProtocols));
  const auto nflag = static_cast<uint8_t>(std::size(kRefusedFlags));
  const auto nnoop = static_cast<uint8_t>(std::size(kNoOpCalls));
  // Layout: [0] ld arch  [1] jeq native  [2] ld nr  [3..] dispatch (10 +
  // nnoop + nflag)  [..] ja end  [..] ioctl block  [..] fcntl block  [..]
  // family block  [..] inet type block  [..] inet protocol block  [..]
  // setrlimit block  [..] prlimit64 block  [..] setpriority block  [..]
  // ioprio_set block  [..] fadvise64 block  [..] msync block  [..] a block
  // of two per flag rule  [..] refusal  [..] no-op  end:
  const uint8_t ioctl_at = 3 + 10 + nnoop + nflag + 1;
  const uint8_t fcntl_at = ioctl_at + 1 + nioctl + 1;
  const uint8_t family_at = fcntl_at + 1 + nfcntl + 1;
  const uint8_t type_at = family_at + 1 + nfam + 1;
  const uint8_t protocol_at = type_at + 2 + ntype + 1;
  const uint8_t setrlimit_at = protocol_at + 1 + nproto + 1;
  const uint8_t prlimit_at = setrlimit_at + 3;
  const uint8_t setpriority_at = prlimit_at + 8;
  const uint8_t ioprio_at = setpriority_at + 4;
  const uint8_t fadvise_at = ioprio_at + 4;
  const uint8_t msync_at = fadvise_at + 2;
  const uint8_t flags_at = msync_at + 2;
  const uint8_t eperm_at = flags_at + 2 * nflag;
  const uint8_t noop_at = eperm_at + 1;
  const uint8_t end = noop_at + 1;
  auto to = [&](uint8_t target) { return static_cast<uint8_t>(target - f.size() - 1); };
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, seccomp_arch_native(), 0, to(end)));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, to(ioctl_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_fcntl, to(fcntl_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, to(family_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_socketpair, to(family_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_setrlimit, to(setrlimit_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_prlimit64, to(prlimit_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_setpriority, to(setpriority_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioprio_set, to(ioprio_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_fadvise64, to(fadvise_at), 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_msync, to(msync_at), 0));
  for (uint32_t nr : kNoOpCalls) f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, to(noop_at), 0));
  for (uint8_t i = 0; i < nflag; i++)
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(kRefusedFlags[i].nr),
                     to(uint8_t(flags_at + 2 * i)), 0));
  f.push_back(stmt(BPF_JMP | BPF_JA, to(end)));
  // ioctl: a refused command gets EPERM, anything else goes on.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(1)));
  for (uint32_t cmd : kRefusedIoctls)
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, cmd, to(eperm_at), 0));
  f.push_back(stmt(BPF_JMP | BPF_JA, to(end)));
  // fcntl: the same, its cmd an `unsigned int` too.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(1)));
  for (uint32_t cmd : kRefusedFcntls)
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, cmd, to(eperm_at), 0));
  f.push_back(stmt(BPF_JMP | BPF_JA, to(end)));
  // socket, socketpair: an allowed family goes on (IPv4 and IPv6 to their
  // type and protocol), any other gets what the kernel says for a family
  // it does not have.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(0)));
  for (uint32_t family : kAllowedFamilies)
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, family,
                     to(family == AF_INET || family == AF_INET6 ? type_at : end), 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EAFNOSUPPORT & SECCOMP_RET_DATA)));
  // An allowed type goes on to the protocol, any other gets what the kernel
  // says for a type the family does not have.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(1)));
  f.push_back(stmt(BPF_ALU | BPF_AND | BPF_K, kSockTypeMask));
  for (uint32_t type : kAllowedInetTypes)
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, type, to(protocol_at), 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ESOCKTNOSUPPORT & SECCOMP_RET_DATA)));
  // An allowed protocol goes on, any other gets what the kernel says for a
  // protocol it does not have.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(2)));
  for (uint32_t protocol : kAllowedInetProtocols)
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, protocol, to(end), 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPROTONOSUPPORT & SECCOMP_RET_DATA)));
  // RLIMIT_CORE stays at 1 (plan_rlimits): with a core_pattern that pipes
  // (systemd-coredump, apport) the kernel ignores the limit, except that 1
  // aborts the dump, and 0 would let every crash start the host's handler
  // as root. Lowering a hard limit needs no privilege, so setting it is
  // refused; reading it (prlimit64 without a new limit) goes on.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(0)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, RLIMIT_CORE, to(eperm_at), 0));
  f.push_back(stmt(BPF_JMP | BPF_JA, to(end)));
  // prlimit64 sets only the caller's own limits (pid 0, as glibc's
  // setrlimit passes). The processes of one uid may set each other's
  // limits, and a function template's instances share its uid: one
  // request could otherwise lower the template's limits (a CPU second,
  // no file size) for every later instance of the function. Reading any
  // pid's goes on.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(2)));  // new_limit, a pointer
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_high(2)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0, to(end), 0));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(0)));  // pid
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, to(eperm_at)));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(1)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, RLIMIT_CORE, to(eperm_at), to(end)));
  // setpriority only on the caller itself (PRIO_PROCESS, who 0: os.nice),
  // for the same reason: not a sibling's, the template's nor its uid's.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(0)));  // which
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, PRIO_PROCESS, 0, to(eperm_at)));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(1)));  // who
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0, to(end), to(eperm_at)));
  // ioprio_set only IOPRIO_WHO_PROCESS of 0 (the idle class needs no
  // privilege), which no built-in policy lists. Not the scheduler calls
  // (sched_setaffinity, sched_setattr, ...): glibc's pthread_setaffinity_np
  // passes a thread's id, so a custom policy that lists them takes their
  // reach too (docs/security.md).
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(0)));  // which
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 1 /* IOPRIO_WHO_PROCESS */, 0, to(eperm_at)));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(1)));  // who
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0, to(end), to(eperm_at)));
  // fadvise64: POSIX_FADV_DONTNEED (its advice an int) is answered 0;
  // other advice goes on.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(3)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, POSIX_FADV_DONTNEED, to(noop_at), to(end)));
  // msync: MS_SYNC set (its flags an int) is answered 0; without it the
  // call goes on.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(2)));
  f.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, MS_SYNC, to(noop_at), to(end)));
  // A flag rule: the flag set in the argument's low 32 bits (each is an int
  // or unsigned int) is refused; any other value goes on.
  for (const FlagRule& r : kRefusedFlags) {
    f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(r.arg)));
    f.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, r.flag, to(eperm_at), to(end)));
  }
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0));  // no-op: returns 0
  // A miscounted layout would jump into libseccomp's program, which the
  // kernel would not refuse.
  if (f.size() != end) abort();
  return f;
}

uint32_t default_action(const SeccompPolicy& p) {
  switch (p.default_action) {
    case SeccompDefault::Errno:
      return SCMP_ACT_ERRNO(static_cast<uint32_t>(p.errno_value));
    case SeccompDefault::KillProcess:
      return SCMP_ACT_KILL_PROCESS;
    case SeccompDefault::Trap:
      return SCMP_ACT_TRAP;
    case SeccompDefault::Log:
      return SCMP_ACT_LOG;
  }
  return SCMP_ACT_KILL_PROCESS;
}

// The cache must be writable by nobody but us: whoever can write it chooses
// the filter of every sandbox.
bool cache_dir_private(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return false;
  return S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 022) == 0;
}

// A cache file is the canonical text it was compiled from, a NUL, then the
// program. The name is a 64-bit FNV-1a of that text, which anyone who may
// write a policy can collide on purpose (FNV is not a cryptographic hash): a
// policy crafted to share the default's name would otherwise have its
// filter loaded for every sandbox of the default. A file whose text is not
// exactly the policy's is not used.
Result<SeccompProgram> read_cache(const std::string& path, const std::string& canonical) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return sys_error("open", path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("fstat", path);
  const off_t head = off_t(canonical.size() + 1);
  if (st.st_size <= head || (st.st_size - head) % sizeof(sock_filter) != 0 ||
      st.st_size - head > (1 << 20))
    return make_error("seccomp cache", path + " is corrupt or from another policy");
  std::string text(canonical.size() + 1, '\0');
  if (pread(fd.get(), text.data(), text.size(), 0) != ssize_t(text.size()) ||
      text.compare(0, canonical.size(), canonical) != 0 || text.back() != '\0')
    return make_error("seccomp cache", path + " was compiled from another policy");
  SeccompProgram prog;
  prog.insns.resize((st.st_size - head) / sizeof(sock_filter));
  const ssize_t bytes = st.st_size - head;
  if (pread(fd.get(), prog.insns.data(), bytes, head) != bytes) return sys_error("read", path);
  return prog;
}

// Every distinct policy adds a file (each `nsbox run --policy` edit is one),
// so the oldest go once there are more than kSeccompCacheFiles; a hit
// refreshes its file's mtime, which makes this least recently used. Also
// goes: a temporary file an hour old, left by a writer that died.
void prune_cache(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
  if (!d) return;
  std::vector<std::pair<struct timespec, std::string>> kept;
  const time_t now = time(nullptr);
  while (dirent* e = readdir(d.get())) {
    std::string_view name = e->d_name;
    if (!name.starts_with("seccomp-")) continue;
    struct stat st;
    if (fstatat(dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (name.find(".tmp.") != std::string_view::npos) {
      if (now - st.st_mtim.tv_sec > 3600) unlinkat(dirfd(d.get()), e->d_name, 0);
    } else if (name.ends_with(".bpf")) {
      kept.emplace_back(st.st_mtim, std::string(name));
    }
  }
  if (kept.size() <= kSeccompCacheFiles) return;
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first.tv_sec, a.first.tv_nsec) > std::tie(b.first.tv_sec, b.first.tv_nsec);
  });
  for (size_t i = kSeccompCacheFiles; i < kept.size(); i++)
    unlinkat(dirfd(d.get()), kept[i].second.c_str(), 0);
}

void write_cache(const std::string& path, const std::string& canonical,
                 const SeccompProgram& prog) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return;
  std::string out = canonical;
  out.push_back('\0');
  out.append(reinterpret_cast<const char*>(prog.insns.data()),
             prog.insns.size() * sizeof(sock_filter));
  if (write(fd.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size()) ||
      rename(tmp.c_str(), path.c_str()) != 0)
    unlink(tmp.c_str());
}

}  // namespace

// libseccomp resolves names of other architectures' calls (socketcall,
// umount, ...) to negative pseudo-numbers, which a filter for x86_64 drops
// without a word: a policy listing one would read as allowing what is not.
bool seccomp_name_spelt(const std::string& name) {
  return !name.empty() &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos;
}

bool seccomp_syscall_known(const std::string& name) {
  return seccomp_name_spelt(name) && seccomp_syscall_resolve_name(name.c_str()) >= 0;
}

namespace {
// The sandbox drops its capabilities, but unshare(CLONE_NEWUSER) would give
// it a full set again in a nested namespace, and with it everything below
// that asks for one; the rest need none, or reach past the sandbox.
struct Never {
  const char* why;
  std::initializer_list<const char*> names;
};
const Never kNever[] = {
    {"it makes or enters namespaces (a nested user namespace has every capability)",
     {"unshare", "setns"}},
    {"it changes mounts or the root",
     {"mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
      "fsopen", "fsconfig", "fsmount", "fspick"}},
    {"it reads or writes other processes",
     {"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise", "kcmp"}},
    {"it opens a large kernel attack surface (bpf, perf, userfaultfd, io_uring, keyrings)",
     {"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
      "io_uring_register", "keyctl", "add_key", "request_key", "fanotify_init"}},
    {"it changes the host kernel, its clock, devices or logs",
     {"init_module", "finit_module", "delete_module", "kexec_load",    "kexec_file_load",
      "reboot",      "swapon",       "swapoff",       "acct",          "quotactl",
      "quotactl_fd", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
      "iopl",        "ioperm",       "syslog",        "vhangup",       "lookup_dcookie"}},
    {"it opens files by handle, past the sandbox's root", {"open_by_handle_at"}},
    {"it changes the process's execution domain (turns off ASLR)", {"personality"}},
    {"it edits the x86 segment tables, a long record of kernel bugs that no runtime needs",
     {"modify_ldt"}},
    {"it renames the host, where a sandbox has no UTS namespace", {"sethostname", "setdomainname"}},
};
}  // namespace

const char* seccomp_never_allowed(const std::string& name) {
  for (const Never& n : kNever)
    for (const char* s : n.names)
      if (name == s) return n.why;
  return nullptr;
}

std::string seccomp_canonical(const SeccompPolicy& p) {
  const scmp_version* v = seccomp_version();
  // v3: the argument prefix (ioctl commands, socket families); v4: the
  // denials a "log" default needs; v5: RLIMIT_CORE fixed; v6: fcntl commands;
  // v7: huge page flags; v8: prctl(PR_SET_DUMPABLE, 0); v9: inet protocols;
  // v10: inet types; v11: the file holds this text; v12: modify_ldt never
  // allowed (a "log" default denies it). The prefix's own
  // instructions are hashed in too, so a change to them needs no bump.
  const std::vector<sock_filter> prefix = argument_prefix();
  const uint64_t prefix_hash = fnv1a64(std::string_view(
      reinterpret_cast<const char*>(prefix.data()), prefix.size() * sizeof(sock_filter)));
  std::string s =
      "v12 prefix " + std::to_string(prefix_hash) + " libseccomp " + std::to_string(v->major) +
      "." + std::to_string(v->minor) + "." + std::to_string(v->micro) + " action " +
      std::to_string(static_cast<int>(p.default_action)) + " errno " +
      std::to_string(p.errno_value) + " fork " + std::to_string(p.allow_fork) + " allow";
  for (const auto& n : p.allow) s += " " + n;
  return s;
}

// Checked by seccomp_compile and by seccomp_get before its cache.
static Status refuse_never_allowed(const SeccompPolicy& policy) {
  for (const auto& name : policy.allow) {
    // Before the lists below compare it whole; a name that resolves to a
    // pseudo-syscall (another architecture's socketcall) would be skipped
    // by a rule without a word. Here, so that a filter cached for such a
    // struct is not used either.
    if (!seccomp_name_spelt(name)) {
      std::string shown = name;  // what no name holds, as '?'
      for (char& ch : shown)
        if (!seccomp_name_spelt(std::string(1, ch))) ch = '?';
      return make_error("seccomp", "\"" + shown + "\" is not a syscall name");
    }
    if (!seccomp_syscall_known(name))
      return make_error("seccomp", "unknown syscall \"" + name + "\"");
    if (const char* why = seccomp_never_allowed(name))
      return make_error("seccomp", "\"" + name + "\" may never be allowed: " + why);
    if (!policy.allow_fork && (name == "fork" || name == "vfork"))
      return make_error("seccomp",
                        "\"" + name + "\" makes child processes, which allow_fork = false forbids");
  }
  return {};
}

// "log" lets through every call the list does not name: what no policy may
// allow (the never-allowed calls, clone's namespace flags, and fork where
// the policy forbids it) is then denied by rules of its own, not left to
// the default action.
static Status deny_beyond_any_policy(scmp_filter_ctx c, const SeccompPolicy& policy) {
  const uint32_t deny = SCMP_ACT_ERRNO(static_cast<uint32_t>(policy.errno_value));
  int rc;
  for (const Never& n : kNever)
    for (const char* name : n.names) {
      int nr = seccomp_syscall_resolve_name(name);
      if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
      if ((rc = seccomp_rule_add(c, deny, nr, 0)) < 0)
        return sys_error_n(-rc, "seccomp_rule_add", name);
    }
  // One rule per flag: the allow rule takes clone only with none of them.
  for (uint64_t flag = 1; flag; flag <<= 1) {
    if (!(kNamespaceFlags & flag)) continue;
    rc = seccomp_rule_add(c, deny, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
    if (rc < 0) return sys_error_n(-rc, "seccomp_rule_add", "clone");
  }
  if (!policy.allow_fork) {
    rc =
        seccomp_rule_add(c, deny, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
    if (rc < 0) return sys_error_n(-rc, "seccomp_rule_add", "clone");
    for (const char* name : {"fork", "vfork"}) {  // never listed then (refuse_never_allowed)
      int nr = seccomp_syscall_resolve_name(name);
      if (nr == __NR_SCMP_ERROR) continue;
      if ((rc = seccomp_rule_add(c, deny, nr, 0)) < 0)
        return sys_error_n(-rc, "seccomp_rule_add", name);
    }
  }
  return {};
}

Result<SeccompProgram> seccomp_compile(const SeccompPolicy& policy) {
  TRY(refuse_never_allowed(policy));
  Ctx ctx(seccomp_init(default_action(policy)));
  if (!ctx) return make_error("seccomp_init", "out of memory");
  scmp_filter_ctx c = ctx.get();
  int rc;
  for (const auto& name : policy.allow) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr < 0) return make_error("seccomp", "unknown syscall \"" + name + "\"");  // refused above
    if (name == "clone") {
      // Threads yes, namespaces never; children only when the policy allows.
      uint64_t mask = kNamespaceFlags | (policy.allow_fork ? 0 : CLONE_THREAD);
      uint64_t want = policy.allow_fork ? 0 : CLONE_THREAD;
      rc = seccomp_rule_add(c, SCMP_ACT_ALLOW, nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, mask, want));
    } else if (name == "clone3") {
      continue;  // always ENOSYS, below
    } else {
      rc = seccomp_rule_add(c, SCMP_ACT_ALLOW, nr, 0);
    }
    if (rc < 0) return sys_error_n(-rc, "seccomp_rule_add", name);
  }
  rc = seccomp_rule_add(c, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc < 0) return sys_error_n(-rc, "seccomp_rule_add", "clone3");
  // Whatever the policy: a process may give up being dumpable, which only
  // takes from it. A function template does before it forks its first
  // instance (rootfs/runner.py): its instances run as its uid in its PID
  // namespace and could otherwise write its memory through /proc/PID/mem,
  // and so into every later instance. Any other prctl is as the policy says.
  // Both arguments whole (64 bits): a high half set is refused.
  const scmp_arg_cmp option{0, SCMP_CMP_EQ, PR_SET_DUMPABLE, 0}, value{1, SCMP_CMP_EQ, 0, 0};
  rc = seccomp_rule_add(c, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 2, option, value);
  if (rc < 0) return sys_error_n(-rc, "seccomp_rule_add", "prctl(PR_SET_DUMPABLE, 0)");
  if (policy.default_action == SeccompDefault::Log) TRY(deny_beyond_any_policy(c, policy));
  // no_new_privs is set by our own privilege drop, in a known order.
  rc = seccomp_attr_set(c, SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) return sys_error_n(-rc, "seccomp_attr_set", "CTL_NNP");
  // A binary tree over syscall numbers instead of a linear scan of ~200
  // comparisons on every syscall the kernel's action cache does not cover.
  rc = seccomp_attr_set(c, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0) return sys_error_n(-rc, "seccomp_attr_set", "CTL_OPTIMIZE");

  UniqueFd mem(memfd_create("nsbox-bpf", MFD_CLOEXEC));
  if (!mem.valid()) return sys_error("memfd_create", "nsbox-bpf");
  rc = seccomp_export_bpf(c, mem.get());
  if (rc < 0) return sys_error_n(-rc, "seccomp_export_bpf");
  off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0)
    return make_error("seccomp_export_bpf", "unexpected program size");
  SeccompProgram prog;
  prog.insns = argument_prefix();
  size_t prefix = prog.insns.size();
  prog.insns.resize(prefix + size / sizeof(sock_filter));
  if (pread(mem.get(), prog.insns.data() + prefix, size, 0) != size)
    return sys_error("pread", "nsbox-bpf");
  if (prog.insns.size() > BPF_MAXINSNS)
    return make_error("seccomp", "program longer than BPF_MAXINSNS");
  return prog;
}

Result<SeccompProgram> seccomp_get(const SeccompPolicy& policy, const std::string& cache_dir) {
  bool use_cache = !cache_dir.empty() && cache_dir_private(cache_dir);
  const std::string canonical = seccomp_canonical(policy);
  char name[64];
  snprintf(name, sizeof name, "/seccomp-%016llx.bpf",
           static_cast<unsigned long long>(fnv1a64(canonical)));
  std::string path = cache_dir + name;
  // Before the cache: a filter cached by an older nsbox must not let
  // through what this one refuses to compile.
  TRY(refuse_never_allowed(policy));
  if (use_cache) {
    auto cached = read_cache(path, canonical);
    if (cached) {
      utimensat(AT_FDCWD, path.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
      return cached;
    }
  }
  auto prog = seccomp_compile(policy);
  if (prog && use_cache) {
    write_cache(path, canonical, prog.value());
    prune_cache(cache_dir);
  }
  return prog;
}

int child_load_seccomp(const sock_fprog* prog) {
  return static_cast<int>(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog));
}

}  // namespace nsbox
