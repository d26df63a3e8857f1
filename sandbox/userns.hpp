// User-namespace id maps: pure text planners plus the parent's writes.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

struct IdMapText {
  std::string uid_map;
  std::string gid_map;
  // "deny" is required before an unprivileged gid_map write; root mode keeps
  // "allow" so the child can clear the supplementary groups it inherited
  // from root (otherwise it would keep host gid 0 as a supplementary group).
  std::string setgroups;
};

IdMapText plan_id_maps(const IdMap& ids);

// Parent side, after clone and before releasing the child: setgroups, then
// gid_map, then uid_map (user_namespaces(7) requires this order for gid_map).
Status parent_write_id_maps(pid_t pid, const IdMap& ids);

}  // namespace nsbox
