#include "gateway/deletions.hpp"

namespace nsbox {

void Deletions::note(const std::string& name, uint64_t removed_at) {
  auto [at, made] = at_.try_emplace(name, removed_at);
  if (!made && at->second < removed_at) {
    order_.erase({at->second, name});
    at->second = removed_at;
  }
  order_.insert({at->second, name});
  if (order_.size() > kMaxKept) {
    at_.erase(order_.begin()->second);
    order_.erase(order_.begin());
  }
}

bool Deletions::deleted(const std::string& name, uint64_t deploy) const {
  auto at = at_.find(name);
  return deploy != 0 && at != at_.end() && deploy < at->second;
}

}  // namespace nsbox
