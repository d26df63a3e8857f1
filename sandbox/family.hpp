// A function template's family: one cgroup above the leaves of the
// template and of each of its instances (docs/architecture.md §15), limited
// to the sum of their limits, so that the function as a whole never holds
// more than the sandboxes the pool counts for it.
//
// Why a leaf per sandbox is not enough: an instance's allocations are
// charged to its leaf, and a charge stays where it was made. Instances share
// their template's namespaces, /tmp and abstract sockets, so an instance can
// hand what it allocated (a memfd over a socket, a file in /tmp) to its
// template and end. Its leaf is removed, but the charge stays with the
// removed cgroup for as long as the template holds the memory. Below a
// family that removed cgroup is still counted in the family's usage, and
// when an instance goes the family's limit goes down by the instance's
// share. Memory that was handed back so no longer fits: on v2 the kernel
// reclaims and then OOM-kills inside the family; on v1 the write is refused,
// and the caller kills the template and so the whole family.
//
// The family also bounds a template that substitutes another of its
// processes for an instance in the join leaf (instance.hpp): that process
// escapes the instance's own limits, but not the family's.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/result.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

class TemplateFamily {
 public:
  // Why families cannot be made in this layout ("" when they can), so
  // that a daemon says so once, at start, instead of failing at each
  // function's first request. swaps: /proc/swaps, or a test's copy.
  static std::string unsupported(const CgroupLayout& layout,
                                 const std::string& swaps = "/proc/swaps");
  // Makes the family's group in every hierarchy of layout, limited to the
  // template's limits (memory, swap and pids; no CPU cap of its own: each
  // leaf keeps its own). on_overdrawn is called when a member goes and
  // the family holds more than its remaining members may.
  static Result<std::shared_ptr<TemplateFamily>> create(const CgroupLayout& layout,
                                                        const std::string& id,
                                                        const Limits& template_limits,
                                                        std::function<void()> on_overdrawn);
  ~TemplateFamily();
  TemplateFamily(const TemplateFamily&) = delete;
  TemplateFamily& operator=(const TemplateFamily&) = delete;

  // The layout whose leaves are made below the family.
  const CgroupLayout& layout() const { return inner_; }
  // Room for one more member, before its leaf is made.
  Status grow(const Limits& member);
  // A member's leaf is gone: its room goes with it. Returns false, after
  // calling on_overdrawn, when what is left does not fit.
  bool shrink(const Limits& member);
  // A member's memory limit changed from `from` to `to` bytes.
  Status resize(uint64_t from, uint64_t to);
  // The family's own limits, for tests and `serve -v`.
  uint64_t memory_bytes() const { return memory_; }
  uint64_t pids() const { return pids_; }

 private:
  TemplateFamily() = default;
  Status write_limits(uint64_t memory, uint64_t swap, uint64_t pids);

  CgroupLeaf group_;
  CgroupLayout inner_;
  uint64_t memory_ = 0, swap_ = 0, pids_ = 0;
  std::function<void()> on_overdrawn_;
};

}  // namespace nsbox
