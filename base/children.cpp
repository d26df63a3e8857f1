#include "base/children.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "base/fd.hpp"

namespace nsbox {

std::vector<pid_t> child_pids(pid_t pid) {
  const std::string tasks = pid == 0 ? "/proc/self/task" : "/proc/" + std::to_string(pid) + "/task";
  std::vector<pid_t> kids;
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(tasks.c_str()), closedir);
  if (!d) return kids;
  while (dirent* e = readdir(d.get())) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(tasks + "/" + e->d_name + "/children");
    for (pid_t p; in >> p;) kids.push_back(p);
  }
  return kids;
}

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return std::nullopt;
  ProcStat st;
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  const std::string rest(text.substr(close + 1));
  // Fields 3 (state) and 4 (ppid), then 17 more to reach 22 (starttime).
  int ppid = 0, used = 0;
  if (std::sscanf(rest.c_str(), " %c %d%n", &st.state, &ppid, &used) != 2) return std::nullopt;
  st.ppid = ppid;
  const char* p = rest.c_str() + used;
  for (int field = 5; field < 22; field++) {
    if (std::sscanf(p, " %*s%n", &used) != 0 || used == 0) return std::nullopt;
    p += used;
    used = 0;
  }
  if (std::sscanf(p, " %llu", &st.start_time) != 1) return std::nullopt;
  return st;
}

std::string read_proc_stat_text(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  char buf[1024];  // comm is at most 64 bytes; 52 numeric fields fit
  const ssize_t n = read(fd.get(), buf, sizeof buf);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  const std::string text = read_proc_stat_text(pid);
  if (text.empty()) return std::nullopt;
  return parse_proc_stat(text);
}

void kill_and_reap_our_children() {
  // A listed child is ours until reaped here. Killing a whole generation
  // before reaping any keeps a fork bomb's siblings from forking on while
  // one exits.
  for (int round = 0; round < 256; round++) {
    const std::vector<pid_t> kids = child_pids();
    if (kids.empty()) return;
    for (pid_t k : kids) ::kill(k, SIGKILL);
    for (pid_t k : kids) waitpid(k, nullptr, 0);
  }
}

void kill_our_children_reaped_elsewhere() {
  for (int round = 0; round < 20; round++) {
    const std::vector<pid_t> kids = child_pids();
    if (kids.empty() && round > 0) return;
    for (pid_t k : kids) {
      UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, k, 0)));
      if (!pidfd.valid()) continue;
      // Read after the pidfd is held: if this is still our child now, the
      // pidfd names it and not a later holder of its pid.
      const auto st = read_proc_stat(k);
      if (!st || st->ppid != getpid()) continue;
      syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    }
    usleep(5000);
  }
}

}  // namespace nsbox
