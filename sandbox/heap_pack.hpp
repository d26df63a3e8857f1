// What a template does to its heap before it is forked. A sandbox forked
// from it shares its pages copy-on-write, and its first write to each page
// is a fault (~16-28 us on this class of machine) and a private copy. The
// allocators would hand a sandbox's first allocations out of the free
// holes left all over the template's heap (pymalloc's partly used pools,
// glibc's free chunks), one or two blocks per page: a tiny function's
// compile alone then wrote to ~200 shared pages. Filled here, those holes
// stay the template's for good, and a sandbox allocates from fresh pools
// and the heap's top, page after page.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace nsbox {

struct PoolClass {
  size_t block_size = 0;
  long avail = 0;  // free blocks in the class's partly used pools
};

// Pure: the size-class table of CPython's _PyObject_DebugMallocStats() (the
// lines "class size num-pools blocks-in-use avail-blocks"); any other line
// is skipped.
std::vector<PoolClass> parse_pymalloc_classes(std::string_view text);

// glibc's free space below the heap's top (bytes), as mallinfo2 reports it:
// all of it is a hole a later malloc may take.
size_t malloc_free_below_top();

// Allocates (and never frees) the smallest chunks until no free space below
// the top is left, and returns how many; it stops when a round takes
// nothing. Every page of that space becomes resident, including those
// malloc_trim(0) here has just returned. Chunks in glibc's per-thread cache
// (at most 7 of each small size) are not free space to mallinfo2, and are
// left. For a single-threaded process (the template): other threads'
// arenas are not filled from this one, and their free space would cost one
// round of chunks taken from this arena's top before the loop stops.
long fill_malloc_holes();

}  // namespace nsbox
