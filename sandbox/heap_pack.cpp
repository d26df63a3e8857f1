#include "sandbox/heap_pack.hpp"

#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace nsbox {

std::vector<PoolClass> parse_pymalloc_classes(std::string_view text) {
  std::vector<PoolClass> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string line(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    long cls, size, pools, used, avail;
    char extra;
    if (sscanf(line.c_str(), " %ld %ld %ld %ld %ld %c", &cls, &size, &pools, &used, &avail,
               &extra) != 5)
      continue;
    // pymalloc serves at most 512 bytes; anything else is not the table.
    if (cls < 0 || size <= 0 || size > 512 || pools < 0 || used < 0 || avail < 0) continue;
    out.push_back({size_t(size), avail});
  }
  return out;
}

size_t malloc_free_below_top() {
  struct mallinfo2 mi = mallinfo2();
  return mi.fordblks > mi.keepcost ? mi.fordblks - mi.keepcost : 0;
}

namespace {
// The fillers, each holding the previous one's address: never freed, and
// still reachable (a leak checker sees no leak), with no allocation of
// their own to keep the list.
void* g_fillers = nullptr;
}  // namespace

long fill_malloc_holes() {
  // 24 bytes: glibc's smallest chunk (32), which fits every hole.
  constexpr size_t kSmallest = 24, kChunk = 32;
  long total = 0;
  // Merges the fast bins' chunks into the ordinary bins (the smallest
  // request would not take a fast bin's chunk of another size) and
  // returns the free pages inside chunks to the kernel.
  malloc_trim(0);
  for (size_t free_now = malloc_free_below_top(); free_now >= kChunk;) {
    for (size_t i = free_now / kChunk; i > 0; i--) {
      void* p = malloc(kSmallest);
      if (!p) return total;
      *static_cast<void**>(p) = g_fillers;
      g_fillers = p;
      total++;
    }
    size_t after = malloc_free_below_top();
    if (after >= free_now) break;  // nothing taken: what is left is not ours to fill
    free_now = after;
  }
  return total;
}

}  // namespace nsbox
