#include "sandbox/userns.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "base/fd.hpp"
#include "sandbox/uid_slots.hpp"

namespace nsbox {

IdMapText plan_id_maps(const IdMap& ids) {
  IdMapText t;
  if (ids.rootless) {
    t.uid_map = std::to_string(ids.inside_uid) + " " + std::to_string(ids.host_uid) + " 1\n";
    t.gid_map = std::to_string(ids.inside_gid) + " " + std::to_string(ids.host_gid) + " 1\n";
    t.setgroups = "deny";
  } else {
    t.uid_map = "0 " + std::to_string(ids.host_base) + " " + std::to_string(kSlotUids) + "\n";
    t.gid_map = "0 " + std::to_string(ids.host_base) + " " + std::to_string(kSlotUids) + "\n";
    t.setgroups = "allow";
  }
  return t;
}

namespace {
Status write_proc(pid_t pid, const char* file, const std::string& text) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return sys_error("open", path);
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return sys_error("write", path);
  return {};
}
}  // namespace

Status parent_write_id_maps(pid_t pid, const IdMap& ids) {
  IdMapText t = plan_id_maps(ids);
  TRY(write_proc(pid, "setgroups", t.setgroups));
  TRY(write_proc(pid, "gid_map", t.gid_map));
  TRY(write_proc(pid, "uid_map", t.uid_map));
  return {};
}

}  // namespace nsbox
