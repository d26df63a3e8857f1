#include "sandbox/template_keeper.hpp"

#include <sys/stat.h>

#include "base/clock.hpp"
#include "base/log.hpp"

namespace nsbox {

namespace {

// The runtime tree's build stamp, written last by every rebuild (which
// swaps the whole tree in with renames): a different inode or mtime means
// the template's interpreter is not the tree's any more.
bool read_stamp(const std::string& rootfs, ino_t* ino, struct timespec* mtime) {
  struct stat st;
  if (stat((rootfs + "/.nsbox-stamp").c_str(), &st) != 0) return false;
  *ino = st.st_ino;
  *mtime = st.st_mtim;
  return true;
}

}  // namespace

Status TemplateKeeper::launch(const std::string& rootfs, Entry& e) {
  e.last_try_ms = monotonic_ms();
  e.clones = 0;
  e.proc.stop();
  read_stamp(rootfs, &e.stamp_ino, &e.stamp_mtime);
  TemplateOptions o = base_;
  o.rootfs = rootfs;
  const uint64_t t0 = monotonic_us();
  e.proc = TRY(TemplateProcess::start(o));
  LOG_INFO("template for %s started in %.1f ms (pid %d)", rootfs.c_str(),
           (monotonic_us() - t0) / 1e3, e.proc.pid());
  return {};
}

Status TemplateKeeper::start(const std::string& rootfs) {
  return launch(rootfs, by_rootfs_[rootfs]);
}

TemplateProcess* TemplateKeeper::get(const std::string& rootfs) {
  Entry& e = by_rootfs_[rootfs];
  const char* why = nullptr;
  ino_t ino = 0;
  struct timespec mtime {};
  if (!e.proc.alive()) {
    why = "it exited";
  } else if (read_stamp(rootfs, &ino, &mtime) &&
             (ino != e.stamp_ino || mtime.tv_sec != e.stamp_mtime.tv_sec ||
              mtime.tv_nsec != e.stamp_mtime.tv_nsec)) {
    why = "the runtime tree was rebuilt";
  } else if (rotate_after_ > 0 && e.clones >= rotate_after_) {
    why = "it made template_rotate_after sandboxes";
  }
  if (!why) {
    e.clones++;
    return &e.proc;
  }
  if (e.proc.alive() || monotonic_ms() - e.last_try_ms >= kRetryMs || e.last_try_ms == 0) {
    LOG_WARN("template for %s: %s; starting a new one", rootfs.c_str(), why);
    if (Status s = launch(rootfs, e); !s) {
      LOG_WARN("template for %s: %s; sandboxes are exec'd until it starts", rootfs.c_str(),
               s.error().message().c_str());
      return nullptr;
    }
    e.clones++;
    return &e.proc;
  }
  return nullptr;
}

}  // namespace nsbox
