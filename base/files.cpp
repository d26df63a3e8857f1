#include "base/files.hpp"

#include <sys/stat.h>

#include <cerrno>

namespace nsbox {

Status ensure_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) return {};
  if (errno != EEXIST) return sys_error("mkdir", path);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return sys_error("stat", path);
  if (!S_ISDIR(st.st_mode)) return sys_error_n(ENOTDIR, "mkdir", path);
  return {};
}

Result<bool> mkdir_p(const std::string& path, mode_t mode) {
  if (path.empty()) return make_error("mkdir", "empty path");
  bool created = false;
  for (size_t i = 1; i <= path.size(); i++) {
    if (i < path.size() && path[i] != '/') continue;
    if (path[i - 1] == '/') continue;  // "a//b" or a trailing slash
    std::string part = path.substr(0, i);
    created = ::mkdir(part.c_str(), mode) == 0;
    if (!created) TRY(ensure_dir(part, mode));
  }
  return created;
}

}  // namespace nsbox
