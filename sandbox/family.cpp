#include "sandbox/family.hpp"

#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>

#include "base/log.hpp"

namespace nsbox {

namespace {
// /proc/swaps lists a header line, then one per active swap area.
bool host_has_swap(const std::string& swaps) {
  std::ifstream in(swaps);
  std::string line;
  int lines = 0;
  while (std::getline(in, line) && lines < 2) lines++;
  return lines > 1;
}
}  // namespace

std::string TemplateFamily::unsupported(const CgroupLayout& layout, const std::string& swaps) {
  // v1 bounds what its members hand back by refusing a lower limit; with
  // swap and no swap accounting (no memsw) the kernel would swap it out
  // instead, uncounted.
  if (layout.version == CgroupVersion::V1 && !layout.create_files && host_has_swap(swaps) &&
      access((layout.v1_memory + "/memory.memsw.limit_in_bytes").c_str(), F_OK) != 0)
    return "needs swap accounting on this host, which has swap and v1 memory cgroups without "
           "memory.memsw.* (what an instance hands its template could be swapped out "
           "unbounded): boot with swapaccount=1, or deploy without template=1";
  return {};
}

Result<std::shared_ptr<TemplateFamily>> TemplateFamily::create(const CgroupLayout& layout,
                                                               const std::string& id,
                                                               const Limits& template_limits,
                                                               std::function<void()> on_overdrawn) {
  if (std::string why = unsupported(layout); !why.empty())
    return make_error("function template", why);
  std::shared_ptr<TemplateFamily> f(new TemplateFamily());
  Limits own = template_limits;
  own.cpu_millicores = 0;  // each member's leaf keeps its own CPU cap
  // With the layout's freeze leaves too: the hybrid layout's are in the
  // cgroup2 mount, and they need a parent there as well.
  f->group_ = TRY(CgroupLeaf::create(layout, id, own));
  f->group_.close_dirfd();  // nothing is cloned into the family itself
  f->inner_ = layout;
  f->inner_.subgroup = layout.subgroup.empty() ? id : layout.subgroup + "/" + id;
  f->memory_ = template_limits.memory_bytes;
  f->swap_ = template_limits.swap_bytes;
  f->pids_ = template_limits.pids;
  f->on_overdrawn_ = std::move(on_overdrawn);
  return f;
}

TemplateFamily::~TemplateFamily() {
  // Its members' leaves went first (each holds the family until its own
  // leaf is removed); ~CgroupLeaf removes the group and warns if it cannot.
}

Status TemplateFamily::write_limits(uint64_t memory, uint64_t swap, uint64_t pids) {
  // Pids first when growing and last when shrinking, like memory: a
  // failure halfway leaves the family no larger than its members allow.
  if (pids > pids_) TRY(group_.set_pids_limit(pids));
  if (swap > swap_) TRY(group_.set_swap_limit(swap));
  TRY(group_.set_memory_limit(memory, swap));
  if (swap < swap_) TRY(group_.set_swap_limit(swap));
  if (pids < pids_) TRY(group_.set_pids_limit(pids));
  memory_ = memory;
  swap_ = swap;
  pids_ = pids;
  return {};
}

Status TemplateFamily::grow(const Limits& m) {
  return write_limits(memory_ + m.memory_bytes, swap_ + m.swap_bytes, pids_ + m.pids);
}

bool TemplateFamily::shrink(const Limits& m) {
  const uint64_t memory = memory_ > m.memory_bytes ? memory_ - m.memory_bytes : 0;
  const uint64_t swap = swap_ > m.swap_bytes ? swap_ - m.swap_bytes : 0;
  const uint64_t pids = pids_ > m.pids ? pids_ - m.pids : 0;
  Status s = write_limits(memory, swap, pids);
  if (s) return true;
  // What the family may hold from now on, whatever the kernel kept: the
  // kill below empties it, and the next member to go writes these.
  memory_ = memory;
  swap_ = swap;
  pids_ = pids;
  // v1 refuses a memory limit below what the group holds and cannot
  // reclaim: memory a member handed to another before it went.
  LOG_WARN("function template family %s holds more than its sandboxes may (%s); killing it",
           inner_.subgroup.c_str(), s.error().message().c_str());
  if (on_overdrawn_) on_overdrawn_();
  return false;
}

Status TemplateFamily::resize(uint64_t from, uint64_t to) {
  const uint64_t memory = memory_ - std::min(memory_, from) + to;
  return write_limits(memory, swap_, pids_);
}

}  // namespace nsbox
