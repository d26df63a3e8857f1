// A SandboxFactory over an external isolation mechanism (none, bwrap, crun,
// runc, docker: gateway/isolation.hpp), for `nsbox bench`'s side-by-side
// comparison. Each sandbox runs the same runner on the same rootfs as an
// nsbox sandbox, over the same two pipes (docker: FIFOs), with its stderr as
// the log, so the pool and the gateway cannot tell the difference.
//
// The gateway is multi-threaded and must not fork (CONTRIBUTING.md §3):
// every command here is started with posix_spawn, which glibc implements
// with CLONE_VM|CLONE_VFORK and an immediate exec, so no copy of the
// daemon's memory (nor its token) ever exists in a child.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/isolation.hpp"
#include "sandbox/spawner.hpp"

namespace nsbox {

struct ExternalProfile {
  uint32_t pids = 64;
  uint64_t tmpfs_bytes = 64ull << 20;
};

class ExternalFactory final : public SandboxFactory {
 public:
  // Finds the mechanism's tool (a clear error naming the Debian package when
  // it is missing); docker: imports the rootfs as an image once per rootfs
  // build. work_dir holds bundles, FIFOs and the runtimes' state; it is
  // removed with the factory.
  static Result<std::unique_ptr<ExternalFactory>> start(Isolation iso, const std::string& rootfs,
                                                        const std::string& work_dir,
                                                        std::vector<std::string> env,
                                                        std::vector<ExternalProfile> profiles);
  ~ExternalFactory() override;

  Result<SpawnedSandbox> spawn(uint32_t profile, uint64_t memory_bytes) override;
  Status set_memory(uint64_t id, uint64_t memory_bytes) override;
  Result<CgroupEvents> events(uint64_t id) override;
  Status destroy(uint64_t id) override;
  bool healthy() override { return true; }
  Isolation isolation() const { return iso_; }

 private:
  struct Box;
  ExternalFactory() = default;
  Status remove(Box& box);

  Isolation iso_ = Isolation::None;
  std::string rootfs_, work_dir_, tool_, image_;
  bool hide_cgroup2_ = false;
  std::vector<std::string> env_;
  std::vector<ExternalProfile> profiles_;
  std::mutex mu_;
  uint64_t next_ = 1;
  std::map<uint64_t, std::unique_ptr<Box>> boxes_;
};

// Where a mechanism's tool is, or empty: bwrap, crun, runc, docker.
std::string find_tool(Isolation iso);
// A hybrid cgroup host (v1 controllers, a v2 mount) whose v2 side holds a
// controller: crun refuses to make cgroups there.
bool hybrid_with_v2_controllers();

}  // namespace nsbox
