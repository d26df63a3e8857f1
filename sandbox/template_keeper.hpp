// The spawner's templates (template.hpp), one per runtime tree. A template
// that died, whose tree was rebuilt since it started (the tree's stamp file
// changed) or that made rotate_after clones is replaced before the next one; while one cannot be
// started, sandboxes are exec'd, so the pool keeps serving.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <string>

#include "base/result.hpp"
#include "sandbox/template.hpp"

namespace nsbox {

class TemplateKeeper {
 public:
  // rotate_after: clones a template makes before it is replaced by a fresh
  // one (a new address-space layout and hash seed); 0 = never.
  TemplateKeeper(TemplateOptions base, uint64_t rotate_after)
      : base_(std::move(base)), rotate_after_(rotate_after) {}
  // Starts rootfs's template now: configure() reports this error.
  Status start(const std::string& rootfs);
  // rootfs's template, restarted first if it died or the tree changed; null
  // when it cannot be started now (said once per attempt, at most once per
  // kRetryMs), and then the caller execs.
  TemplateProcess* get(const std::string& rootfs);
  // Each live template, for /metrics.
  template <class F>
  void each(F f) const {
    for (const auto& [rootfs, e] : by_rootfs_)
      if (e.proc.pid() > 0) f(rootfs, e.proc);
  }

 private:
  static constexpr uint64_t kRetryMs = 1000;
  struct Entry {
    TemplateProcess proc;
    struct timespec stamp_mtime {};
    ino_t stamp_ino = 0;
    uint64_t last_try_ms = 0;
    uint64_t clones = 0;
  };
  Status launch(const std::string& rootfs, Entry& e);
  TemplateOptions base_;
  uint64_t rotate_after_ = 0;
  std::map<std::string, Entry> by_rootfs_;
};

}  // namespace nsbox
