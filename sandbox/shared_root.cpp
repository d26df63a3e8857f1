#include "sandbox/shared_root.hpp"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "base/fd.hpp"

namespace nsbox {

Result<dev_t> mount_shared_root(const std::string& rootfs) {
  // Overlay's option syntax gives these meaning; the tree's path is ours
  // (the daemon's state directory or --rootfs) and never needs them.
  if (rootfs.empty() || rootfs[0] != '/' || rootfs.find_first_of(",:\\") != std::string::npos)
    return make_error("shared root", rootfs + ": not an absolute path free of ',', ':' and '\\'");
  UniqueFd tree(open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!tree.valid()) return sys_error("open", rootfs);
  const unsigned long ro = MS_RDONLY | MS_NOSUID | MS_NODEV;
  if (mount("nsbox-empty", rootfs.c_str(), "tmpfs", ro, "size=4k,nr_inodes=2,mode=0555") != 0)
    return sys_error("mount", "empty tmpfs on " + rootfs);
  const std::string layers = "lowerdir=/proc/self/fd/" + std::to_string(tree.get()) + ":" + rootfs;
  if (mount("overlay", rootfs.c_str(), "overlay", ro, layers.c_str()) != 0) {
    Error e = sys_error("mount", "read-only overlay on " + rootfs);
    umount2(rootfs.c_str(), MNT_DETACH);
    return e;
  }
  struct stat st;
  if (stat(rootfs.c_str(), &st) != 0) {
    Error e = sys_error("stat", rootfs);
    umount2(rootfs.c_str(), MNT_DETACH);
    umount2(rootfs.c_str(), MNT_DETACH);
    return e;
  }
  return st.st_dev;
}

bool shared_root_in_place(const std::string& path, dev_t dev) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && st.st_dev == dev && is_overlay(path.c_str());
}

bool is_overlay(const char* path) {
  struct statfs sf;
  return statfs(path, &sf) == 0 && sf.f_type == OVERLAYFS_SUPER_MAGIC;
}

}  // namespace nsbox
