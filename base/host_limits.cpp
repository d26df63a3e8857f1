#include "base/host_limits.hpp"

#include <linux/capability.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

namespace nsbox {

namespace {

uint64_t read_number(const char* path) {
  std::ifstream f(path);
  uint64_t v = 0;
  return (f >> v) ? v : 0;
}

// A sysctl's text up to its first space; empty when this kernel lacks it.
std::string read_word(const std::string& path) {
  std::ifstream f(path);
  std::string w;
  f >> w;
  return w;
}

}  // namespace

rlim_t raise_open_files(rlim_t want) {
  struct rlimit now;
  if (getrlimit(RLIMIT_NOFILE, &now) != 0) return 0;
  if (want > now.rlim_max) {
    const uint64_t ceiling = read_number("/proc/sys/fs/nr_open");
    struct rlimit more = now;
    more.rlim_max = ceiling ? std::min<rlim_t>(want, ceiling) : want;
    more.rlim_cur = more.rlim_max;
    if (more.rlim_max > now.rlim_max && setrlimit(RLIMIT_NOFILE, &more) == 0) return more.rlim_cur;
  }
  if (now.rlim_cur < now.rlim_max) {
    now.rlim_cur = now.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &now) != 0) getrlimit(RLIMIT_NOFILE, &now);
  }
  return now.rlim_cur;
}

bool raise_core_limit_to_one() {
  struct rlimit now;
  if (getrlimit(RLIMIT_CORE, &now) != 0) return false;
  if (now.rlim_max >= 1) return true;
  now.rlim_max = 1;
  return setrlimit(RLIMIT_CORE, &now) == 0;
}

bool core_pattern_pipes() {
  std::ifstream f("/proc/sys/kernel/core_pattern");
  const int c = f.get();
  return c == '|' || c == '@';
}

bool have_cap_sys_resource() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("CapEff:", 0) == 0) {
      const unsigned long long eff = std::strtoull(line.c_str() + 7, nullptr, 16);
      return (eff >> CAP_SYS_RESOURCE) & 1;
    }
  return false;
}

uint64_t pid_max() {
  return read_number("/proc/sys/kernel/pid_max");
}

std::string userns_restriction(const std::string& sysctls, const std::string& self_attr) {
  // Debian's and Ubuntu's own switch (before 6.x kernels dropped the patch
  // upstream never took), the kernel's own count, and Ubuntu's AppArmor
  // rule since 23.10: there the namespace is made, but without
  // capabilities, so the sandbox fails at its first mount, not at clone.
  if (read_word(sysctls + "/kernel/unprivileged_userns_clone") == "0")
    return "kernel.unprivileged_userns_clone is 0, which turns user namespaces off for users "
           "without privileges (sysctl kernel.unprivileged_userns_clone=1 lifts it)";
  if (read_word(sysctls + "/user/max_user_namespaces") == "0")
    return "user.max_user_namespaces is 0, which allows no user namespace at all";
  // AppArmor's own view of us (5.8 and later), else the first LSM's: a
  // profile of nsbox's own (one with a rule `userns,`) lifts the rule.
  std::string label = read_word(self_attr + "/apparmor/current");
  if (label.empty()) label = read_word(self_attr + "/current");
  if (read_word(sysctls + "/kernel/apparmor_restrict_unprivileged_userns") == "1" &&
      label == "unconfined")
    return "kernel.apparmor_restrict_unprivileged_userns is 1: a user namespace made by a program "
           "without an AppArmor profile that allows it (a rule `userns,`) has no capabilities; "
           "give nsbox such a profile, as Ubuntu does for bwrap";
  return {};
}

}  // namespace nsbox
