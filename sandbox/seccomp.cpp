#include "sandbox/seccomp.hpp"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "sandbox/fd.hpp"
#include "sandbox/log.hpp"

namespace nsbox {

namespace {

constexpr uint64_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                                     CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWTIME;

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(static_cast<scmp_filter_ctx>(ctx)); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

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

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// The cache must be writable by nobody but us: whoever can write it chooses
// the filter of every sandbox.
bool cache_dir_private(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return false;
  return S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 022) == 0;
}

Result<SeccompProgram> read_cache(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return sys_error("open", path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("fstat", path);
  if (st.st_size <= 0 || st.st_size % sizeof(sock_filter) != 0 || st.st_size > (1 << 20))
    return make_error("seccomp cache", path + " is corrupt");
  SeccompProgram prog;
  prog.insns.resize(st.st_size / sizeof(sock_filter));
  ssize_t n = pread(fd.get(), prog.insns.data(), st.st_size, 0);
  if (n != st.st_size) return sys_error("read", path);
  return prog;
}

void write_cache(const std::string& path, const SeccompProgram& prog) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return;
  size_t bytes = prog.insns.size() * sizeof(sock_filter);
  if (write(fd.get(), prog.insns.data(), bytes) != static_cast<ssize_t>(bytes) ||
      rename(tmp.c_str(), path.c_str()) != 0)
    unlink(tmp.c_str());
}

}  // namespace

bool seccomp_syscall_known(const std::string& name) {
  return seccomp_syscall_resolve_name(name.c_str()) != __NR_SCMP_ERROR;
}

std::string seccomp_canonical(const SeccompPolicy& p) {
  const scmp_version* v = seccomp_version();
  std::string s = "v2 libseccomp " + std::to_string(v->major) + "." + std::to_string(v->minor) +
                  "." + std::to_string(v->micro) + " action " +
                  std::to_string(static_cast<int>(p.default_action)) + " errno " +
                  std::to_string(p.errno_value) + " fork " + std::to_string(p.allow_fork) +
                  " allow";
  for (const auto& n : p.allow) s += " " + n;
  return s;
}

Result<SeccompProgram> seccomp_compile(const SeccompPolicy& policy) {
  Ctx ctx(seccomp_init(default_action(policy)));
  if (!ctx) return make_error("seccomp_init", "out of memory");
  scmp_filter_ctx c = ctx.get();
  int rc;
  for (const auto& name : policy.allow) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) return make_error("seccomp", "unknown syscall \"" + name + "\"");
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
  prog.insns.resize(size / sizeof(sock_filter));
  if (pread(mem.get(), prog.insns.data(), size, 0) != size) return sys_error("pread", "nsbox-bpf");
  return prog;
}

Result<SeccompProgram> seccomp_get(const SeccompPolicy& policy, const std::string& cache_dir) {
  bool use_cache = !cache_dir.empty() && cache_dir_private(cache_dir);
  char name[64];
  snprintf(name, sizeof name, "/seccomp-%016llx.bpf",
           static_cast<unsigned long long>(fnv1a(seccomp_canonical(policy))));
  std::string path = cache_dir + name;
  if (use_cache) {
    auto cached = read_cache(path);
    if (cached) return cached;
  }
  auto prog = seccomp_compile(policy);
  if (prog && use_cache) write_cache(path, prog.value());
  return prog;
}

int child_load_seccomp(const sock_fprog* prog) {
  return static_cast<int>(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog));
}

}  // namespace nsbox
