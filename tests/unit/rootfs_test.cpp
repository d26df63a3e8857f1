// ensure_rootfs's bookkeeping beside the tree, on a tree that is already
// fresh (its stamp written by hand), so that nothing is built.
#include "rootfs/rootfs.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {

bool exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

void make_tree(const std::string& dir, const std::string& stamp) {
  REQUIRE(mkdir(dir.c_str(), 0755) == 0);
  REQUIRE(chmod(dir.c_str(), 0755) == 0);  // whatever the umask: as the builder leaves it
  if (!stamp.empty()) std::ofstream(dir + "/.nsbox-stamp") << stamp;
  std::ofstream(dir + "/.nsbox-sources");  // no library to check
  for (const char* f : {"/.nsbox-stamp", "/.nsbox-sources"})
    if (exists(dir + f)) REQUIRE(chmod((dir + f).c_str(), 0644) == 0);
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

TEST_CASE("rootfs: a reader of DIR.users cannot stall its users; DIR.lock is its owner's only") {
  test::TempDir tmp("rootfs-locks");
  const std::string dir = tmp.path + "/rootfs";
  make_tree(dir, rootfs_stamp());
  // As an older nsbox left it: readable by everyone, and opened by someone
  // while it was.
  close(open((dir + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  chmod((dir + ".lock").c_str(), 0644);
  const int early = open((dir + ".lock").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(early >= 0);
  REQUIRE(ensure_rootfs(dir, false));
  struct stat st;
  REQUIRE(stat((dir + ".lock").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // Made anew: the early fd locks a file no one else opens any more.
  REQUIRE(fstat(early, &st) == 0);
  CHECK(st.st_nlink == 0);
  close(early);

  // Another user may read DIR.users (to share the tree), and flock gives a
  // reader an exclusive lock; the users' locks are not flocks, and a
  // reader's exclusive OFD lock is refused.
  const int reader = open((dir + ".users").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(reader >= 0);
  REQUIRE(flock(reader, LOCK_EX | LOCK_NB) == 0);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  CHECK(fcntl(reader, F_OFD_SETLK, &fl) != 0);
  fl.l_type = F_RDLCK;
  CHECK(fcntl(reader, F_OFD_SETLK, &fl) == 0);  // sharing is allowed
  // A user arriving now gets the tree at once (the old code waited forever).
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    alarm(10);
    auto r = ensure_rootfs(dir, false);
    _exit(r && r.value().in_use.valid() ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK_MESSAGE(WIFEXITED(status), "killed by signal " << WTERMSIG(status));
  CHECK(WIFEXITED(status));
  if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0);
  close(reader);
}

TEST_CASE("rootfs: a path that is a file or a symlink is refused, and left as it was") {
  test::TempDir tmp("rootfs-notdir");
  const std::string file = tmp.path + "/passwd";
  std::ofstream(file) << "root:x:0:0::/root:/bin/sh\n";
  auto r = ensure_rootfs(file, false);
  REQUIRE_FALSE(r);
  CHECK(r.error().detail.find("is not a directory") != std::string::npos);
  struct stat st;
  REQUIRE(lstat(file.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  const std::string link = tmp.path + "/link";
  REQUIRE(symlink(tmp.path.c_str(), link.c_str()) == 0);
  r = ensure_rootfs(link, false);
  REQUIRE_FALSE(r);
  CHECK(r.error().detail.find("is not a directory") != std::string::npos);
  REQUIRE(lstat(link.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
}

TEST_CASE("rootfs: a changed or removed shared library makes the tree stale") {
  test::TempDir tmp("rootfs-sources");
  const std::string dir = tmp.path + "/rootfs", lib = tmp.path + "/libexpat.so.1";
  make_tree(dir, rootfs_stamp());
  std::ofstream(lib) << "old code";
  struct stat st;
  REQUIRE(stat(lib.c_str(), &st) == 0);
  auto list = [&](const struct stat& s) {
    std::ofstream(dir + "/.nsbox-sources")
        << s.st_size << " " << s.st_mtim.tv_sec * 1000000000ll + s.st_mtim.tv_nsec << " " << lib
        << "\n";
  };
  list(st);
  CHECK(rootfs_fresh(dir));
  // An update of the same size: only the mtime tells.
  struct timespec later[2] = {st.st_atim, st.st_mtim};
  later[1].tv_sec += 10;
  REQUIRE(utimensat(AT_FDCWD, lib.c_str(), later, 0) == 0);
  CHECK_FALSE(rootfs_fresh(dir));
  REQUIRE(stat(lib.c_str(), &st) == 0);
  list(st);
  CHECK(rootfs_fresh(dir));
  REQUIRE(unlink(lib.c_str()) == 0);
  CHECK_FALSE(rootfs_fresh(dir));
  // A tree an older nsbox built has no list: stale, so it is rebuilt once.
  REQUIRE(unlink((dir + "/.nsbox-sources").c_str()) == 0);
  CHECK_FALSE(rootfs_fresh(dir));
}

TEST_CASE("rootfs: a user holding only an flock, as an older nsbox does, keeps the old tree") {
  test::TempDir tmp("rootfs-oldlock");
  const std::string dir = tmp.path + "/rootfs";
  make_tree(dir, rootfs_stamp());
  make_tree(dir + ".old-123", "an older stamp");
  const int older = open((dir + ".users").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(older >= 0);
  REQUIRE(flock(older, LOCK_SH) == 0);  // what an nsbox before the OFD locks holds
  REQUIRE(ensure_rootfs(dir, false));
  CHECK(exists(dir + ".old-123"));  // its sandboxes may still read it
  close(older);
  REQUIRE(ensure_rootfs(dir, false));
  CHECK_FALSE(exists(dir + ".old-123"));
}

TEST_CASE("rootfs: another user's tree with updated libraries is used as it is, not refused") {
  if (geteuid() != 0) return;  // needs a tree the caller cannot rebuild
  test::TempDir tmp("rootfs-theirs");
  REQUIRE(chmod(tmp.path.c_str(), 0755) == 0);
  const std::string dir = tmp.path + "/rootfs";
  make_tree(dir, rootfs_stamp());
  std::ofstream(dir + "/.nsbox-sources") << "1 0 /nonexistent/libssl.so.3\n";
  CHECK_FALSE(rootfs_fresh(dir));
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    alarm(10);
    if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) _exit(3);
    auto r = ensure_rootfs(dir, false);
    _exit(!r ? 1 : r.value().built ? 2 : 0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("rootfs: a build's identity is its stamp and its library list, not its path") {
  test::TempDir tmp("rootfs-id");
  const std::string a = tmp.path + "/a", b = tmp.path + "/b", none = tmp.path + "/none";
  make_tree(a, "stamp-1");
  make_tree(b, "stamp-1");
  REQUIRE(mkdir(none.c_str(), 0755) == 0);
  CHECK(rootfs_identity(none).empty());
  CHECK_FALSE(rootfs_identity(a).empty());
  CHECK(rootfs_identity(a) == rootfs_identity(b));
  // A rebuild for a library update keeps the stamp and changes the list.
  std::ofstream(b + "/.nsbox-sources") << "1 0 /usr/lib/libssl.so.3\n";
  CHECK(rootfs_identity(a) != rootfs_identity(b));
  std::ofstream(b + "/.nsbox-sources");
  std::ofstream(b + "/.nsbox-stamp") << "stamp-2";
  CHECK(rootfs_identity(a) != rootfs_identity(b));
}

TEST_CASE("rootfs: a tree someone else could change is refused, and left where it is") {
  test::TempDir tmp("rootfs-owned");
  const std::string dir = tmp.path + "/rootfs";
  make_tree(dir, rootfs_stamp());
  REQUIRE(mkdir((dir + "/usr").c_str(), 0755) == 0);
  const std::string file = dir + "/usr/os.py";
  std::ofstream(file) << "# the standard library, say\n";
  REQUIRE(chmod(file.c_str(), 0644) == 0);
  REQUIRE(ensure_rootfs(dir, false));
  // Writable by its group: whoever is in it could put code in the tree.
  REQUIRE(chmod(file.c_str(), 0664) == 0);
  auto r = ensure_rootfs(dir, false);
  REQUIRE(!r);
  CHECK_MESSAGE(r.error().text().find(file + " is writable by its group or others (mode 0664)") !=
                    std::string::npos,
                r.error().text());
  CHECK(r.error().text().find("nsbox rootfs build --out NEWDIR") != std::string::npos);
  REQUIRE(chmod(file.c_str(), 0644) == 0);
  REQUIRE(chmod((dir + "/usr").c_str(), 0757) == 0);
  CHECK_FALSE(ensure_rootfs(dir, false));
  REQUIRE(chmod((dir + "/usr").c_str(), 0755) == 0);
  if (geteuid() == 0) {
    // Another user's, and stale: root neither runs it nor rebuilds it
    // (a rebuild renames the tree aside and deletes it).
    REQUIRE(chown(file.c_str(), 65534, 65534) == 0);
    std::ofstream(dir + "/.nsbox-stamp") << "stale";
    unlink((dir + ".lock").c_str());
    unlink((dir + ".users").c_str());
    auto theirs = ensure_rootfs(dir, false);
    REQUIRE(!theirs);
    CHECK(theirs.error().text().find(file + " belongs to uid 65534") != std::string::npos);
    CHECK(exists(file));
    CHECK_FALSE(exists(dir + ".lock"));  // refused before anything is made beside it
    CHECK_FALSE(exists(dir + ".users"));
  }
}

TEST_CASE("rootfs: the tree is used by the path that was checked, symlinks above it resolved") {
  // Checked through a symlink and then used by the same string, a link
  // whose owner re-points it in between would swap the tree for theirs.
  test::TempDir tmp("rootfs-link");
  REQUIRE(mkdir((tmp.path + "/real").c_str(), 0755) == 0);
  const std::string dir = tmp.path + "/real/rootfs";
  make_tree(dir, rootfs_stamp());
  REQUIRE(symlink((tmp.path + "/real").c_str(), (tmp.path + "/link").c_str()) == 0);
  char real_tmp[PATH_MAX];
  REQUIRE(realpath(tmp.path.c_str(), real_tmp));
  auto r = ensure_rootfs(tmp.path + "/link/rootfs", false);
  REQUIRE_MESSAGE(r, r.error().message());
  CHECK(r.value().path == std::string(real_tmp) + "/real/rootfs");
  CHECK(exists(dir + ".users"));  // its bookkeeping beside the real tree
  // The tree itself a symlink: refused, as before.
  REQUIRE(symlink(dir.c_str(), (tmp.path + "/alias").c_str()) == 0);
  CHECK_FALSE(ensure_rootfs(tmp.path + "/alias", false));
}

TEST_CASE("rootfs: use_only (sudo's --rootfs) uses a fresh tree and builds nothing") {
  test::TempDir tmp("rootfs-use-only");
  const std::string dir = tmp.path + "/rootfs";
  make_tree(dir, rootfs_stamp());
  auto fresh = ensure_rootfs(dir, false, kHostPython, true);
  REQUIRE_MESSAGE(fresh, fresh.error().message());
  CHECK_FALSE(fresh.value().built);
  // Stale, or missing: refused, with nothing made beside it or in it.
  std::ofstream(dir + "/.nsbox-stamp") << "stale";
  unlink((dir + ".lock").c_str());
  auto stale = ensure_rootfs(dir, false, kHostPython, true);
  REQUIRE(!stale);
  CHECK(stale.error().text().find("no fresh nsbox rootfs at " + dir) != std::string::npos);
  CHECK_FALSE(exists(dir + ".lock"));
  auto missing = ensure_rootfs(tmp.path + "/none/rootfs", false, kHostPython, true);
  REQUIRE(!missing);
  CHECK_FALSE(exists(tmp.path + "/none"));
}
