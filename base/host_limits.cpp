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

}  // namespace nsbox
