// The deploy sequence number (FunctionMeta::deploy) of each name's latest
// delete: what tells the output or the counts of a request that was still
// running a deleted function from those of a function later deployed under
// the same name. Not locked: each user holds its own mutex around it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>

namespace nsbox {

class Deletions {
 public:
  // name was deleted by the deploy sequence's number removed_at.
  void note(const std::string& name, uint64_t removed_at);
  // Whether deploy (0: unknown, never) was made before name's latest delete.
  bool deleted(const std::string& name, uint64_t deploy) const;

  // Only the most recent are kept: a request outliving thousands of later
  // deletes is not worth unbounded memory.
  static constexpr size_t kMaxKept = 4096;

 private:
  std::map<std::string, uint64_t> at_;
  std::set<std::pair<uint64_t, std::string>> order_;
};

}  // namespace nsbox
