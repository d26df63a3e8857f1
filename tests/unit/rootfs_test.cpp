// ensure_rootfs's bookkeeping beside the tree, on a tree that is already
// fresh (its stamp written by hand), so that nothing is built.
#include "rootfs/rootfs.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {

void make_tree(const std::string& dir, const std::string& stamp) {
  REQUIRE(mkdir(dir.c_str(), 0755) == 0);
  if (!stamp.empty()) std::ofstream(dir + "/.nsbox-stamp") << stamp;
}

bool exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("rootfs: leftovers go when no one uses the tree; nothing else beside it does") {
  test::TempDir tmp("rootfs-left");
  const std::string dir = tmp.path + "/rootfs";
  make_tree(dir, rootfs_stamp());
  {
    auto user = ensure_rootfs(dir, false);  // a daemon, say
    REQUIRE(user);
    CHECK_FALSE(user.value().built);
    CHECK(user.value().in_use.valid());
    make_tree(dir + ".old-123", "an older stamp");  // a tree a rebuild replaced
    make_tree(dir + ".tmp-77", "");                 // a killed build's half
    make_tree(dir + ".old-backup", "kept");         // an operator's, by name
    make_tree(dir + ".tmp-keep", "");
    make_tree(dir + ".old-9", "");  // no stamp: not a tree a rebuild replaced
    // A second user is not held up, and removes nothing while the first
    // may still read the replaced tree.
    auto second = ensure_rootfs(dir, false);
    REQUIRE(second);
    CHECK(exists(dir + ".old-123"));
    CHECK(exists(dir + ".tmp-77"));
  }
  auto last = ensure_rootfs(dir, false);
  REQUIRE(last);
  CHECK_FALSE(last.value().built);
  CHECK_FALSE(exists(dir + ".old-123"));
  CHECK_FALSE(exists(dir + ".tmp-77"));
  CHECK(exists(dir + ".old-backup"));
  CHECK(exists(dir + ".tmp-keep"));
  CHECK(exists(dir + ".old-9"));
  CHECK(exists(dir + "/.nsbox-stamp"));
}

TEST_CASE("rootfs: a trailing slash names the same tree and its locks") {
  test::TempDir tmp("rootfs-slash");
  const std::string dir = tmp.path + "/rootfs";
  make_tree(dir, rootfs_stamp());
  auto r = ensure_rootfs(dir + "//", false);
  REQUIRE(r);
  CHECK_FALSE(r.value().built);
  CHECK(exists(dir + ".users"));
  CHECK_FALSE(exists(dir + "/.users"));
}
