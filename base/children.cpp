#include "base/children.hpp"

#include <dirent.h>

#include <fstream>
#include <memory>
#include <string>

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

}  // namespace nsbox
