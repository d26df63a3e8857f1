#include "sandbox/proc_memory.hpp"

#include <fstream>
#include <sstream>
#include <vector>

#include "base/children.hpp"

namespace nsbox {

ProcessMemory parse_smaps_rollup(const std::string& text) {
  ProcessMemory m;
  m.processes = 1;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    uint64_t kb = 0;
    try {
      kb = std::stoull(line.substr(colon + 1));
    } catch (...) {
      continue;  // the header line (an address range) and anything unexpected
    }
    if (key == "Rss") m.rss = kb << 10;
    if (key == "Pss") m.pss = kb << 10;
    if (key == "Private_Clean" || key == "Private_Dirty") m.uss += kb << 10;
  }
  return m;
}

namespace {

std::string slurp(const std::string& path, bool* ok) {
  std::ifstream f(path);
  *ok = f.is_open();
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

Result<ProcessMemory> read_tree_memory(pid_t root) {
  ProcessMemory sum;
  std::vector<pid_t> todo = {root};
  // A sandbox's processes are bounded by its pids limit; the cap keeps a
  // children list that changes under us from looping.
  for (size_t i = 0; i < todo.size() && i < 4096; i++) {
    const std::string dir = "/proc/" + std::to_string(todo[i]);
    bool ok = false;
    std::string text = slurp(dir + "/smaps_rollup", &ok);
    if (!ok || text.empty()) {
      if (i == 0) return make_error("smaps_rollup", dir + ": gone or unreadable");
      continue;  // a child that exited meanwhile
    }
    ProcessMemory m = parse_smaps_rollup(text);
    sum.rss += m.rss;
    sum.pss += m.pss;
    sum.uss += m.uss;
    sum.processes++;
    // Children of every thread: a function may fork from any of them.
    for (pid_t child : child_pids(todo[i])) todo.push_back(child);
  }
  return sum;
}

ProcessMemory read_pids_memory(const std::vector<pid_t>& pids) {
  ProcessMemory sum;
  for (pid_t pid : pids) {
    bool ok = false;
    std::string text = slurp("/proc/" + std::to_string(pid) + "/smaps_rollup", &ok);
    if (!ok || text.empty()) continue;
    ProcessMemory m = parse_smaps_rollup(text);
    sum.rss += m.rss;
    sum.pss += m.pss;
    sum.uss += m.uss;
    sum.processes++;
  }
  return sum;
}

}  // namespace nsbox
