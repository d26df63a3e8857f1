// base/: the helpers every component shares.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/children.hpp"
#include "base/clock.hpp"
#include "base/digest.hpp"
#include "base/files.hpp"
#include "base/hash.hpp"
#include "base/host_limits.hpp"
#include "base/listeners.hpp"
#include "base/log.hpp"
#include "base/python_name.hpp"
#include "base/random.hpp"
#include "base/spawn.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using nsbox::test::TempDir;

mode_t mode_of(const std::string& p) {
  struct stat st {};
  REQUIRE(stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE(
    "base: mkdir_p creates what is missing, with its mode, and says whether the last was new") {
  TempDir d("base-test");
  const mode_t old = umask(0);
  auto r = nsbox::mkdir_p(d.path + "/a/b//c/", 0711);
  REQUIRE(r);
  CHECK(r.value());
  CHECK(mode_of(d.path + "/a") == 0711);
  CHECK(mode_of(d.path + "/a/b/c") == 0711);
  auto again = nsbox::mkdir_p(d.path + "/a/b/c", 0700);
  REQUIRE(again);
  CHECK_FALSE(again.value());
  CHECK(mode_of(d.path + "/a/b/c") == 0711);  // an existing directory keeps its mode
  umask(old);

  std::ofstream(d.path + "/file") << "x";
  auto bad = nsbox::mkdir_p(d.path + "/file/sub", 0700);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().err == ENOTDIR);
  CHECK(bad.error().message().find(d.path + "/file") != std::string::npos);
  CHECK_FALSE(nsbox::mkdir_p("", 0700));
}

TEST_CASE("base: ensure_dir accepts a directory, refuses anything else") {
  TempDir d("base-test");
  CHECK(nsbox::ensure_dir(d.path + "/x", 0700));
  CHECK(nsbox::ensure_dir(d.path + "/x", 0700));
  std::ofstream(d.path + "/f") << "x";
  auto s = nsbox::ensure_dir(d.path + "/f", 0700);
  REQUIRE_FALSE(s);
  CHECK(s.error().err == ENOTDIR);
  auto missing = nsbox::ensure_dir(d.path + "/no/such", 0700);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().err == ENOENT);
}

TEST_CASE("base: fnv1a64 test vectors, chained") {
  CHECK(nsbox::fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(nsbox::fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(nsbox::fnv1a64("foobar") == 0x85944171f73967e8ull);
  CHECK(nsbox::fnv1a64("bar", nsbox::fnv1a64("foo")) == nsbox::fnv1a64("foobar"));
}

TEST_CASE("base: sha256 test vectors") {
  CHECK(nsbox::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(nsbox::sha256_hex("") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(nsbox::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(nsbox::sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("base/random: hex_of spells every byte; random_hex draws fresh bytes") {
  const unsigned char bytes[] = {0x00, 0x0f, 0x10, 0xa5, 0xff};
  CHECK(nsbox::hex_of(bytes, sizeof bytes) == "000f10a5ff");
  CHECK(nsbox::hex_of(bytes, 0).empty());
  auto a = nsbox::random_hex(24, "test");
  auto b = nsbox::random_hex(24, "test");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a.value().size() == 48);
  CHECK(a.value().find_first_not_of("0123456789abcdef") == std::string::npos);
  // 192 bits each: equal only if the draw is broken.
  CHECK(a.value() != b.value());
  unsigned char big[70000] = {};
  REQUIRE(nsbox::random_bytes(big, sizeof big, "test"));
  // A short read left unfilled would leave the tail zero.
  CHECK(std::count(big + sizeof big - 64, big + sizeof big, 0) < 16);
}

namespace {

nsbox::Status inner() {
  errno = EACCES;
  return nsbox::sys_error("mkdir", "/run/x");
}

nsbox::Status middle() {
  TRY_WITHIN(inner(), "preparing sandbox s1");
  return {};
}

nsbox::Result<int> outer() {
  TRY_WITHIN(middle(), "spawning for function f");
  return 1;
}

}  // namespace

TEST_CASE("base: an error gains what each layer was doing, outermost first") {
  auto r = outer();
  REQUIRE_FALSE(r);
  CHECK(r.error().err == EACCES);
  CHECK(r.error().message() ==
        "spawning for function f: preparing sandbox s1: mkdir(/run/x): Permission denied");
  CHECK(nsbox::Error(0, "frame", "", "too large").message() == "frame: too large");
  CHECK(nsbox::make_error("usage", "bad").message() == "usage: bad");
}

TEST_CASE("base/clock: the monotonic units agree and the wall clock is the epoch's") {
  const uint64_t ns = nsbox::monotonic_ns();
  const uint64_t us = nsbox::monotonic_us();
  const uint64_t ms = nsbox::monotonic_ms();
  CHECK(us >= ns / 1000);
  CHECK(us - ns / 1000 < 1000000);  // read within a second of each other
  CHECK(ms >= us / 1000);
  CHECK(ms - us / 1000 < 1000);
  const int64_t wall = nsbox::wall_ms();
  const int64_t epoch_s = static_cast<int64_t>(time(nullptr));
  CHECK(wall / 1000 >= epoch_s - 1);
  CHECK(wall / 1000 <= epoch_s + 1);
}

TEST_CASE("base/files: check_reachable_by_others names the first closed directory") {
  TempDir d("reach");
  const std::string& top = d.path;
  REQUIRE(chmod(top.c_str(), 0755) == 0);
  REQUIRE(mkdir((top + "/closed").c_str(), 0700) == 0);
  REQUIRE(mkdir((top + "/closed/inner").c_str(), 0755) == 0);
  REQUIRE(mkdir((top + "/open").c_str(), 0711) == 0);
  { std::ofstream(top + "/open/file") << "x"; }
  CHECK(bool(nsbox::check_reachable_by_others(top + "/open")));
  CHECK(bool(nsbox::check_reachable_by_others(top + "/open/file")));
  auto closed = nsbox::check_reachable_by_others(top + "/closed/inner");
  REQUIRE_FALSE(bool(closed));
  CHECK(closed.error().message().find(top + "/closed (mode 0700)") != std::string::npos);
  CHECK(closed.error().message().find("chmod o+x " + top + "/closed,") != std::string::npos);
  CHECK_FALSE(bool(nsbox::check_reachable_by_others(top + "/missing")));
  CHECK_FALSE(bool(nsbox::check_reachable_by_others("relative/path")));
  REQUIRE(chmod((top + "/closed").c_str(), 0755) == 0);
  CHECK(bool(nsbox::check_reachable_by_others(top + "/closed/inner")));
}

TEST_CASE("base/files: check_private_ancestors returns the path it checked, symlinks resolved") {
  TempDir d("ancestors-path");
  char real[PATH_MAX];
  REQUIRE(realpath(d.path.c_str(), real));
  const std::string top(real);
  REQUIRE(mkdir((top + "/real").c_str(), 0755) == 0);
  REQUIRE(symlink((top + "/real").c_str(), (top + "/link").c_str()) == 0);
  // Through a symlink: the string to use from then on names the real
  // directory, so re-pointing the link afterwards changes nothing.
  auto via = nsbox::check_private_ancestors(top + "/link/rootfs");
  REQUIRE_MESSAGE(via, via.error().message());
  CHECK(via.value() == top + "/real/rootfs");
  // Missing levels are kept as given, below the resolved ancestor.
  auto missing = nsbox::check_private_ancestors(top + "/link/a/b/rootfs");
  REQUIRE(missing);
  CHECK(missing.value() == top + "/real/a/b/rootfs");
  auto dotted = nsbox::check_private_ancestors(top + "/real/../real/rootfs");
  REQUIRE(dotted);
  CHECK(dotted.value() == top + "/real/rootfs");
  // Below the nearest existing ancestor nothing resolves them: refused.
  for (const char* bad : {"/x/../rootfs", "/x/./rootfs", "/real/..", "/real/.", "/x//rootfs"}) {
    CAPTURE(bad);
    auto r = nsbox::check_private_ancestors(top + bad);
    REQUIRE(!r);
    CHECK(r.error().message().find("without '.', '..'") != std::string::npos);
  }
  auto root_child = nsbox::check_private_ancestors("/nsbox-no-such-dir-39");
  REQUIRE(root_child);
  CHECK(root_child.value() == "/nsbox-no-such-dir-39");
}

TEST_CASE("base/files: resolve_trusted resolves as realpath does, links and '..' included") {
  TempDir d("resolve");
  char real[PATH_MAX];
  REQUIRE(realpath(d.path.c_str(), real));
  const std::string top(real);
  REQUIRE(mkdir((top + "/a").c_str(), 0755) == 0);
  REQUIRE(mkdir((top + "/a/b").c_str(), 0755) == 0);
  std::ofstream(top + "/a/file") << "x";
  REQUIRE(symlink("a/b", (top + "/rel").c_str()) == 0);                   // relative
  REQUIRE(symlink((top + "/rel").c_str(), (top + "/abs").c_str()) == 0);  // a chain
  REQUIRE(symlink("../..", (top + "/a/b/up").c_str()) == 0);
  REQUIRE(symlink("loop", (top + "/loop").c_str()) == 0);
  for (const std::string& p : {top + "/abs", top + "/rel/", top + "//a/./b/../b", top + "/a/b/up",
                               top + "/abs/up/a/file", std::string("/"), std::string("/..")}) {
    CAPTURE(p);
    auto r = nsbox::resolve_trusted(p);
    REQUIRE_MESSAGE(r, r.error().message());
    REQUIRE(realpath(p.c_str(), real));
    CHECK(r.value() == std::string(real));
  }
  auto missing = nsbox::resolve_trusted(top + "/abs/nope/x");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().err == ENOENT);
  auto loop = nsbox::resolve_trusted(top + "/loop/x");
  REQUIRE_FALSE(loop);
  CHECK(loop.error().err == ELOOP);
  auto through_file = nsbox::resolve_trusted(top + "/a/file/x");
  REQUIRE_FALSE(through_file);
  CHECK(through_file.error().err == ENOTDIR);
  CHECK_FALSE(nsbox::resolve_trusted("relative/path"));
}

// Needs root to give links to other users.
TEST_CASE("base/files: resolve_trusted and check_private_ancestors refuse another user's link" *
          doctest::skip(geteuid() != 0)) {
  TempDir d("resolve-theirs");
  const std::string& top = d.path;
  REQUIRE(mkdir((top + "/roots").c_str(), 0755) == 0);
  REQUIRE(symlink((top + "/roots").c_str(), (top + "/theirs").c_str()) == 0);
  REQUIRE(lchown((top + "/theirs").c_str(), 65534, 65534) == 0);
  // Root's own link to theirs: followed to theirs, which is still refused.
  REQUIRE(symlink((top + "/theirs").c_str(), (top + "/mine").c_str()) == 0);
  for (const std::string& p : {top + "/theirs", top + "/theirs/x", top + "/mine"}) {
    CAPTURE(p);
    auto r = nsbox::resolve_trusted(p);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find(top + "/theirs is a symbolic link owned by uid 65534") !=
          std::string::npos);
  }
  // The ancestors check resolves with it: root would otherwise build or
  // chmod where the link's owner points it (a link to /usr, say).
  for (const std::string& p : {top + "/theirs/rootfs", top + "/mine/missing/rootfs"}) {
    CAPTURE(p);
    auto r = nsbox::check_private_ancestors(p);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("owned by uid 65534") != std::string::npos);
  }
  // A link of root's whose target is missing is not a missing name: the
  // mkdir that makes it would follow the link to wherever the target comes
  // to exist.
  REQUIRE(symlink((top + "/nowhere").c_str(), (top + "/dangling").c_str()) == 0);
  for (const std::string& p : {top + "/dangling/rootfs", top + "/dangling/a/rootfs"}) {
    CAPTURE(p);
    auto r = nsbox::check_private_ancestors(p);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find(top + "/dangling is a symbolic link to something that does "
                                         "not exist") != std::string::npos);
  }
  // A link of root's is followed.
  REQUIRE(symlink((top + "/roots").c_str(), (top + "/ours").c_str()) == 0);
  auto ours = nsbox::check_private_ancestors(top + "/ours/rootfs");
  REQUIRE_MESSAGE(ours, ours.error().message());
  char real[PATH_MAX];
  REQUIRE(realpath((top + "/roots").c_str(), real));
  CHECK(ours.value() == std::string(real) + "/rootfs");
}

// Needs root to give directories to other users.
TEST_CASE("base/files: check_private_ancestors refuses a path another user could swap" *
          doctest::skip(geteuid() != 0)) {
  TempDir d("ancestors");  // mkdtemp: ours, 0700, under sticky /tmp
  const std::string& top = d.path;
  auto refusal = [](const std::string& path) {
    auto s = nsbox::check_private_ancestors(path);
    return s ? std::string() : s.error().message();
  };
  CHECK(refusal(top + "/rootfs").empty());
  // Missing levels: the nearest existing ancestor is the one that counts.
  CHECK(refusal(top + "/a/b/rootfs").empty());
  // Writable by others: sticky or not, it may not be the last.
  for (mode_t mode : {0777, 01777, 0775}) {
    INFO("mode ", nsbox::mode_octal(mode));
    REQUIRE(mkdir((top + "/w").c_str(), 0700) == 0);
    REQUIRE(chmod((top + "/w").c_str(), mode) == 0);
    // Group root writing is root writing; any other group is another user.
    if (mode == 0775) REQUIRE(chown((top + "/w").c_str(), 0, 100) == 0);
    const std::string e = refusal(top + "/w/rootfs");
    CHECK_MESSAGE(e.find(top + "/w (owner uid 0") != std::string::npos, e);
    CHECK_MESSAGE(e.find("mode " + nsbox::mode_octal(mode)) != std::string::npos, e);
    CHECK_MESSAGE(
        e.find("lets another user rename or replace " + top + "/w/rootfs") != std::string::npos, e);
    CHECK_MESSAGE(!refusal(top + "/w/not/yet/rootfs").empty(), "below a missing level too");
    // A last one that is sticky passes only when asked (the state dir), and
    // only as the parent: below a missing level, anyone could make it.
    CHECK(bool(nsbox::check_private_ancestors(top + "/w/state", true)) == (mode == 01777));
    CHECK_FALSE(nsbox::check_private_ancestors(top + "/w/gone/state", true));
    // A sticky one above the last passes (as /tmp does); a plain one does not.
    REQUIRE(mkdir((top + "/w/own").c_str(), 0755) == 0);
    CHECK((mode == 01777) == refusal(top + "/w/own/rootfs").empty());
    REQUIRE(rmdir((top + "/w/own").c_str()) == 0);
    REQUIRE(rmdir((top + "/w").c_str()) == 0);
  }
  REQUIRE(mkdir((top + "/g").c_str(), 0775) == 0);
  REQUIRE(chmod((top + "/g").c_str(), 0775) == 0);
  REQUIRE(chown((top + "/g").c_str(), 0, 0) == 0);
  CHECK(refusal(top + "/g/rootfs").empty());
  // Another user's directory, even closed to others.
  REQUIRE(mkdir((top + "/theirs").c_str(), 0755) == 0);
  REQUIRE(chown((top + "/theirs").c_str(), 65534, 65534) == 0);
  CHECK_FALSE(refusal(top + "/theirs/rootfs").empty());
  // A symlink is judged by where it leads.
  REQUIRE(symlink((top + "/theirs").c_str(), (top + "/link").c_str()) == 0);
  const std::string e = refusal(top + "/link/rootfs");
  CHECK_MESSAGE(e.find(top + "/theirs (owner uid 65534") != std::string::npos, e);
  CHECK_FALSE(refusal("relative/rootfs").empty());
}

namespace {

// A socket listening on addr (IPv4 or IPv6 text) and *port (0: chosen by
// the kernel, and stored there); its fd, or -1.
int listen_on(const char* addr, int* port) {
  const bool v6 = std::strchr(addr, ':') != nullptr;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(uint16_t(*port));
    inet_pton(AF_INET6, addr, &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(uint16_t(*port));
    inet_pton(AF_INET, addr, &a->sin_addr);
    len = sizeof *a;
  }
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 1) != 0)
    return -1;
  len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                   : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

// A listener on addr (IPv4 or IPv6 text, port: 0 for the kernel's choice)
// made by a child as uid; the child, which holds it until killed.
pid_t listen_as(uid_t uid, const char* addr, int* port) {
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int got = *port;
    if ((uid != geteuid() && setresuid(uid, uid, uid) != 0) || listen_on(addr, &got) < 0) got = -1;
    (void)!write(p[1], &got, sizeof got);
    pause();
    _exit(0);
  }
  close(p[1]);
  REQUIRE(read(p[0], port, sizeof *port) == sizeof *port);
  close(p[0]);
  REQUIRE(*port > 0);
  return child;
}

void stop(pid_t child) {
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

}  // namespace

// Needs root to give a directory to another user.
TEST_CASE("base/files: make_private_dir makes or checks a directory of ours, else changes nothing" *
          doctest::skip(geteuid() != 0)) {
  TempDir d("private-dir");
  const std::string& top = d.path;
  auto mode_of = [](const std::string& p) {
    struct stat st;
    REQUIRE(lstat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
  };
  auto refusal = [](const std::string& p) {
    auto r = nsbox::make_private_dir(p, 0711);
    return r ? std::string() : r.error().text();
  };
  char real[PATH_MAX];
  REQUIRE(realpath(top.c_str(), real));

  // Made, or set to the mode when it is ours; returned resolved.
  REQUIRE(symlink(top.c_str(), (top + "/link").c_str()) == 0);
  auto made = nsbox::make_private_dir(top + "/link/state//", 0711);
  REQUIRE_MESSAGE(made, made.error().message());
  CHECK(made.value() == std::string(real) + "/state");
  CHECK(mode_of(top + "/state") == 0711);
  REQUIRE(chmod((top + "/state").c_str(), 0700) == 0);
  CHECK(nsbox::make_private_dir(top + "/state", 0711));
  CHECK(mode_of(top + "/state") == 0711);
  // Of another mode and holding things: made 0711 only when one of them
  // is a mark of ours; else someone else's (state_dir = "/etc").
  std::ofstream(top + "/state/passwd") << "x";
  REQUIRE(chmod((top + "/state").c_str(), 0755) == 0);
  auto foreign = nsbox::make_private_dir(top + "/state", 0711, {"token", "functions"});
  REQUIRE_FALSE(foreign);
  CHECK_MESSAGE(
      foreign.error().text().find("holds files that are not ours (passwd, ...) and is "
                                  "mode 0755, which would be changed to 0711") != std::string::npos,
      foreign.error().text());
  CHECK(mode_of(top + "/state") == 0755);
  REQUIRE(mkdir((top + "/state/functions").c_str(), 0700) == 0);
  CHECK(nsbox::make_private_dir(top + "/state", 0711, {"token", "functions"}));
  CHECK(mode_of(top + "/state") == 0711);
  CHECK(nsbox::make_private_dir(top + "/state", 0711, {"token"}));  // its mode already
  // Marks are whole names: "cache.sqlite" or "token.txt" are no "cache"
  // or "token" (state_dir = "/var" must not pass for holding cache/).
  REQUIRE(rmdir((top + "/state/functions").c_str()) == 0);
  REQUIRE(unlink((top + "/state/passwd").c_str()) == 0);
  std::ofstream(top + "/state/token.txt") << "";
  REQUIRE(chmod((top + "/state").c_str(), 0755) == 0);
  CHECK_FALSE(nsbox::make_private_dir(top + "/state", 0711, {"token", "rootfs.lock"}));
  CHECK(mode_of(top + "/state") == 0755);
  std::ofstream(top + "/state/rootfs.lock") << "";
  CHECK(nsbox::make_private_dir(top + "/state", 0711, {"token", "rootfs.lock"}));
  CHECK(mode_of(top + "/state") == 0711);

  // Refused, and left as it was.
  REQUIRE(mkdir((top + "/open").c_str(), 0777) == 0);
  REQUIRE(chmod((top + "/open").c_str(), 0777) == 0);
  CHECK(refusal(top + "/open").find("writable by other users (mode 0777)") != std::string::npos);
  CHECK(mode_of(top + "/open") == 0777);
  REQUIRE(mkdir((top + "/theirs").c_str(), 0755) == 0);
  REQUIRE(chown((top + "/theirs").c_str(), 65534, 65534) == 0);
  CHECK(refusal(top + "/theirs").find("belongs to uid 65534") != std::string::npos);
  CHECK(mode_of(top + "/theirs") == 0755);
  const int file = open((top + "/file").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(file >= 0);
  close(file);
  CHECK(refusal(top + "/file").find("is not a directory") != std::string::npos);
  REQUIRE(symlink((top + "/nowhere").c_str(), (top + "/dangling").c_str()) == 0);
  CHECK(refusal(top + "/dangling").find("symbolic link to something that does not exist") !=
        std::string::npos);
  CHECK(access((top + "/nowhere").c_str(), F_OK) != 0);
  // Below a directory another user may write: nothing is made there.
  CHECK(refusal(top + "/open/state").find("lets another user rename or replace") !=
        std::string::npos);
  CHECK(access((top + "/open/state").c_str(), F_OK) != 0);
  // The root directory however it is spelt; /tmp (sticky, everyone's)
  // reached through "..": refused, not chmod'ed.
  for (const char* root : {"/", "//", "/."}) {
    CAPTURE(root);
    CHECK(refusal(root).find("is the root directory") != std::string::npos);
  }
  const mode_t tmp_mode = mode_of("/tmp");
  CHECK(refusal(top + "/..").find("writable by other users") != std::string::npos);
  CHECK(mode_of("/tmp") == tmp_mode);
}

// A tree another user could write into: links in it are unlinked, never
// followed, and what they name is left as it was.
TEST_CASE("base/files: remove_tree deletes a tree, following no link in it") {
  nsbox::test::TempDir tmp("rmtree");
  const std::string outside = tmp.path + "/outside";
  REQUIRE(mkdir(outside.c_str(), 0755) == 0);
  std::ofstream(outside + "/keep") << "kept";
  const std::string tree = tmp.path + "/tree";
  std::string deep = tree;
  for (int i = 0; i < 5; i++) {
    REQUIRE(mkdir(deep.c_str(), 0700) == 0);
    std::ofstream(deep + "/f") << i;
    REQUIRE(symlink(outside.c_str(), (deep + "/link").c_str()) == 0);
    deep += "/d";
  }
  REQUIRE(mkdir(deep.c_str(), 0700) == 0);
  nsbox::Status s = nsbox::remove_tree(tree);
  CHECK_MESSAGE(s, s.error().message());
  CHECK(access(tree.c_str(), F_OK) != 0);
  CHECK(access((outside + "/keep").c_str(), F_OK) == 0);
  // A path that is itself a link: the link goes, not what it names.
  const std::string link = tmp.path + "/top";
  REQUIRE(symlink(outside.c_str(), link.c_str()) == 0);
  CHECK(nsbox::remove_tree(link));
  CHECK(access(link.c_str(), F_OK) != 0);
  CHECK(access((outside + "/keep").c_str(), F_OK) == 0);
  CHECK(nsbox::remove_tree(tmp.path + "/missing"));  // nothing to delete is no error
  // Deeper than kMaxTreeDepth: said, and what is above it stays.
  std::string abyss = tmp.path + "/abyss";
  REQUIRE(mkdir(abyss.c_str(), 0700) == 0);
  for (int i = 0; i <= nsbox::kMaxTreeDepth; i++) {
    abyss += "/d";
    REQUIRE(mkdir(abyss.c_str(), 0700) == 0);
  }
  nsbox::Status too_deep = nsbox::remove_tree(tmp.path + "/abyss");
  REQUIRE_FALSE(too_deep);
  CHECK(too_deep.error().message().find("deeper than 128 directories") != std::string::npos);
  CHECK(access((tmp.path + "/abyss").c_str(), F_OK) == 0);
}

TEST_CASE("base/files: read_up_to reads to the end, and refuses one byte past its limit") {
  auto fill = [](size_t n) {
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    // Written by a child: more than a pipe holds, in pieces, so the reader
    // sees short reads.
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      std::string chunk(1000, 'x');
      for (size_t done = 0; done < n;) {
        size_t k = std::min(chunk.size(), n - done);
        if (write(p[1], chunk.data(), k) != ssize_t(k)) _exit(1);
        done += k;
      }
      _exit(0);
    }
    close(p[1]);
    return std::pair<int, pid_t>{p[0], pid};
  };
  auto read_all = [&](size_t n, size_t limit) {
    auto [fd, pid] = fill(n);
    auto r = nsbox::read_up_to(fd, limit);
    close(fd);  // the writer, if still writing, gets EPIPE and exits
    int st = 0;
    waitpid(pid, &st, 0);
    return r;
  };
  auto at = read_all(200000, 200000);
  REQUIRE(at);
  CHECK(at.value() == std::string(200000, 'x'));
  auto past = read_all(200001, 200000);
  REQUIRE(!past);
  CHECK(past.error().err == EFBIG);
  // A writer that never stops: the reader stops soon after the limit.
  auto endless = read_all(size_t(1) << 40, 100000);
  REQUIRE(!endless);
  CHECK(endless.error().err == EFBIG);
  auto empty = read_all(0, 10);
  REQUIRE(empty);
  CHECK(empty.value().empty());
  auto bad = nsbox::read_up_to(-1, 10);
  REQUIRE(!bad);
  CHECK(bad.error().err == EBADF);
}

TEST_CASE("base/listeners: the owner of the listener a connection reaches, IPv4 and IPv6") {
  const uid_t me = geteuid();
  // Bound to the address, or to the wildcard of its family (an IPv6
  // wildcard counts for IPv4 too: it may be dual-stack).
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"127.0.0.1", "127.0.0.1"},
      {"0.0.0.0", "127.0.0.1"},
      {"::1", "::1"},
      {"::", "::1"},
      {"::", "127.0.0.1"},
      {"::ffff:0.0.0.0", "127.0.0.1"},
      {"::ffff:127.0.0.1", "127.0.0.1"}};
  for (const auto& item : cases) {
    const auto& bound = std::get<0>(item);
    const auto& dest = std::get<1>(item);
    INFO(bound, " -> ", dest);
    int port = 0;
    pid_t l = listen_as(me, bound, &port);
    CHECK(nsbox::listener_uids(dest, port) == std::vector<uid_t>{me});
    stop(l);
    CHECK(nsbox::listener_uids(dest, port).empty());
  }
  // Bound elsewhere: not reached.
  int port = 0;
  pid_t l = listen_as(me, "127.0.0.2", &port);
  CHECK(nsbox::listener_uids("127.0.0.1", port).empty());
  CHECK(nsbox::listener_uids("::1", port).empty());
  CHECK(nsbox::listener_uids("not-an-address", port).empty());
  stop(l);
  if (me != 0) return;
  // Another user's: what a client must not send root's token to. Beside
  // root's on the same port but another address, it is not the one
  // reached (a squatter cannot make the client refuse that way).
  port = 0;
  pid_t theirs = listen_as(65534, "127.0.0.1", &port);
  CHECK(nsbox::listener_uids("127.0.0.1", port) == std::vector<uid_t>{65534});
  stop(theirs);
  pid_t ours = listen_as(0, "127.0.0.1", &port);
  theirs = listen_as(65534, "127.0.0.2", &port);
  CHECK(nsbox::listener_uids("127.0.0.1", port) == std::vector<uid_t>{0});
  stop(theirs);
  stop(ours);
}

TEST_CASE("base/listeners: a secret's owner is told whose socket a connection would reach") {
  const uid_t me = geteuid();
  int port = 0;
  pid_t l = listen_as(me, "127.0.0.1", &port);
  CHECK(nsbox::foreign_listener("127.0.0.1", port, me).empty());
  CHECK(nsbox::foreign_listener("localhost", port, me).empty());
  const std::string other = nsbox::foreign_listener("localhost", port, me + 1);
  CHECK(other.find("127.0.0.1 port " + std::to_string(port)) != std::string::npos);
  CHECK(other.find("belongs to uid " + std::to_string(me)) != std::string::npos);
  stop(l);
  CHECK(nsbox::foreign_listener("localhost", port, me + 1).empty());  // nothing listens
  if (me != 0) return;
  // localhost may reach ::1 instead: a squatter there is found too, and
  // *.localhost is localhost.
  port = 0;
  pid_t ours = listen_as(0, "127.0.0.1", &port);
  pid_t theirs = listen_as(65534, "::1", &port);
  CHECK(nsbox::foreign_listener("127.0.0.1", port, 0).empty());
  CHECK(nsbox::foreign_listener("localhost", port, 0).find("::1") != std::string::npos);
  CHECK(nsbox::foreign_listener("a.localhost", port, 0).find("uid 65534") != std::string::npos);
  stop(theirs);
  stop(ours);
}

TEST_CASE("base/spawn: each target gets its own source, even one that is another's target") {
  // Two pipes whose write ends sit at fds x and x+1; the child gets them
  // swapped. Copied in order without care, the first dup2 would overwrite
  // the second's source and both targets would be the same pipe.
  int a[2], b[2];
  REQUIRE(pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(pipe2(b, O_CLOEXEC) == 0);
  int x = 0;
  for (x = 60; x < 1000; x++)
    if (fcntl(x, F_GETFD) < 0 && fcntl(x + 1, F_GETFD) < 0) break;
  REQUIRE(dup3(a[1], x, O_CLOEXEC) == x);
  REQUIRE(dup3(b[1], x + 1, O_CLOEXEC) == x + 1);
  close(a[1]);
  close(b[1]);
  const std::string xs = std::to_string(x), ys = std::to_string(x + 1);
  // (python3: dash redirects single-digit fds only.)
  auto pid =
      nsbox::spawn_program({"/usr/bin/python3", "-c",
                            "import os; os.write(" + xs + ", b'a'); os.write(" + ys + ", b'b')"},
                           {}, {{2, -1}, {x + 1, x}, {x, x + 1}});
  REQUIRE(pid);
  close(x);
  close(x + 1);
  int status = 0;
  REQUIRE(waitpid(pid.value(), &status, 0) == pid.value());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto all = [](int fd) {
    std::string s;
    char buf[64];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    close(fd);
    return s;
  };
  CHECK(all(b[0]) == "a");  // the child's x is our x+1
  CHECK(all(a[0]) == "b");
}

TEST_CASE("base/spawn: a missing program is an error that names it") {
  auto pid = nsbox::spawn_program({"/nonexistent/nsbox-helper"}, {}, {});
  REQUIRE(!pid);
  CHECK(pid.error().message().find("/nonexistent/nsbox-helper") != std::string::npos);
}

TEST_CASE("log_escape: one line, no terminal controls, UTF-8 and tabs kept") {
  CHECK(nsbox::log_escape("plain text") == "plain text");
  CHECK(nsbox::log_escape("a\nb\rc\r\n") == "a\\nb\\rc\\r\\n");
  CHECK(nsbox::log_escape("\x1b[2J\x7f") == "\\x1b[2J\\u007f");
  CHECK(nsbox::log_escape(std::string("nul\0x", 5)) == "nul\\x00x");
  CHECK(nsbox::log_escape("tab\there") == "tab\there");
  CHECK(nsbox::log_escape("caf\xc3\xa9 \xe2\x82\xac") == "caf\xc3\xa9 \xe2\x82\xac");
  // C1 controls, as UTF-8 and as a raw byte (CSI to a terminal in 8-bit
  // mode), bidi overrides, and invalid UTF-8 byte by byte.
  CHECK(nsbox::log_escape("\xc2\x9b"
                          "2J") == "\\u009b2J");
  CHECK(nsbox::log_escape("\x9b"
                          "2J") == "\\x9b2J");
  CHECK(nsbox::log_escape("a\xe2\x80\xae"
                          "b") == "a\\u202eb");
  CHECK(nsbox::log_escape("\xc2\xa0 \xc2") == "\xc2\xa0 \\xc2");
  // Escaping can quadruple a message; the result stays under PIPE_BUF.
  const std::string escaped = nsbox::log_escape(std::string(2000, '\x01'));
  CHECK(escaped.size() < 4000);
  CHECK(escaped.ends_with("..."));
  CHECK(escaped.starts_with("\\x01\\x01"));
  // Not cut inside a UTF-8 sequence.
  const std::string wide = nsbox::log_escape(std::string(3799, 'a') + "\xe2\x82\xac");
  CHECK(wide == std::string(3799, 'a') + "...");
}

TEST_CASE("base/children: child_pids lists children of every thread, and of another process") {
  auto has = [](const std::vector<pid_t>& v, pid_t p) {
    return std::find(v.begin(), v.end(), p) != v.end();
  };
  pid_t mine = fork();
  REQUIRE(mine >= 0);
  if (mine == 0) {
    pause();
    _exit(0);
  }
  // One forked by another thread is listed under that thread's task only.
  pid_t theirs = -1;
  std::thread([&] {
    theirs = fork();
    if (theirs == 0) {
      pause();
      _exit(0);
    }
  }).join();
  REQUIRE(theirs > 0);
  std::vector<pid_t> kids = nsbox::child_pids();
  CHECK(has(kids, mine));
  CHECK(has(kids, theirs));
  // Another process's, by pid: the first child's own child.
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  pid_t parent = fork();
  REQUIRE(parent >= 0);
  if (parent == 0) {
    pid_t grandchild = fork();
    if (grandchild == 0) {
      pause();
      _exit(0);
    }
    (void)!write(pipefd[1], &grandchild, sizeof grandchild);
    pause();
    _exit(0);
  }
  pid_t grandchild = -1;
  REQUIRE(read(pipefd[0], &grandchild, sizeof grandchild) == sizeof grandchild);
  close(pipefd[0]);
  close(pipefd[1]);
  CHECK(nsbox::child_pids(parent) == std::vector<pid_t>{grandchild});
  CHECK_FALSE(has(nsbox::child_pids(), grandchild));
  kill(grandchild, SIGKILL);
  for (pid_t p : {mine, theirs, parent}) {
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
  }
  // Gone: nothing, not an error.
  CHECK(nsbox::child_pids(parent).empty());
}

TEST_CASE("base/children: /proc/PID/stat fields count from comm's last parenthesis") {
  auto st = nsbox::parse_proc_stat("9 (a) b) c) R 41 9 9 0 -1 0 1 0 0 0 0 0 0 0 20 0 1 0 77 0 0 0");
  REQUIRE(st);
  CHECK(st->comm == "a) b) c");
  CHECK(st->state == 'R');
  CHECK(st->ppid == 41);
  CHECK(st->start_time == 77);
  CHECK_FALSE(nsbox::parse_proc_stat(""));
  CHECK_FALSE(nsbox::parse_proc_stat("9 (x) S 1 9 9"));  // cut before field 22
  // Our own, read live: our parent, and a start time that matches ours.
  auto self = nsbox::read_proc_stat(getpid());
  REQUIRE(self);
  CHECK(self->ppid == getppid());
  CHECK(self->start_time > 0);
  CHECK_FALSE(nsbox::read_proc_stat(-1));
}

// The unisolated run's stop: a child's own children come to a subreaper
// as it dies, and each round kills those; nothing of ours is left.
TEST_CASE("base/children: kill_and_reap_our_children kills children, and theirs as a subreaper") {
  pid_t sub = fork();
  REQUIRE(sub >= 0);
  if (sub == 0) {
    // A subreaper of its own, so the test runner's other children are not
    // touched; its child forks a grandchild and both wait to be killed.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) _exit(10);
    int ready[2];
    if (pipe(ready) != 0) _exit(13);
    pid_t c = fork();
    if (c == 0) {
      if (fork() == 0) {
        setsid();
        (void)!write(ready[1], "g", 1);  // the grandchild exists
        for (;;) pause();
      }
      for (;;) pause();
    }
    char g = 0;
    if (read(ready[0], &g, 1) != 1) _exit(14);
    if (nsbox::child_pids().size() != 1) _exit(11);
    nsbox::kill_and_reap_our_children();
    // The grandchild came to us when c died, and was killed in turn.
    _exit(nsbox::child_pids().empty() && waitpid(-1, nullptr, WNOHANG) < 0 ? 0 : 12);
  }
  int status = 0;
  REQUIRE(waitpid(sub, &status, 0) == sub);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

// Rootless sandboxes need a user namespace; each host setting that takes it
// away is named, and a kernel without the setting says nothing.
TEST_CASE("base/host_limits: userns_restriction names the setting that forbids user namespaces") {
  TempDir d("base-test");
  const std::string k = d.path + "/kernel", u = d.path + "/user", a = d.path + "/attr";
  for (const std::string& dir : {k, u, a, a + "/apparmor"}) REQUIRE(mkdir(dir.c_str(), 0755) == 0);
  auto put = [](const std::string& path, const char* text) { std::ofstream(path) << text; };
  auto restriction = [&] { return nsbox::userns_restriction(d.path, a); };
  CHECK(restriction().empty());  // none of the files
  put(k + "/unprivileged_userns_clone", "1\n");
  put(u + "/max_user_namespaces", "96367\n");
  put(k + "/apparmor_restrict_unprivileged_userns", "0\n");
  put(a + "/apparmor/current", "unconfined\n");
  CHECK(restriction().empty());  // all allow
  put(k + "/apparmor_restrict_unprivileged_userns", "1\n");
  CHECK(restriction().starts_with("kernel.apparmor_restrict_unprivileged_userns is 1"));
  // Under a profile of its own (Ubuntu's default sysctl, and nsbox's
  // profile with `userns,`), the profile decides: nothing is said.
  put(a + "/apparmor/current", "nsbox (enforce)\n");
  CHECK(restriction().empty());
  // A kernel before 5.8 has only the first LSM's attribute.
  REQUIRE(unlink((a + "/apparmor/current").c_str()) == 0);
  put(a + "/current", "unconfined\n");
  CHECK(restriction().starts_with("kernel.apparmor_restrict_unprivileged_userns is 1"));
  put(u + "/max_user_namespaces", "0\n");
  CHECK(restriction().starts_with("user.max_user_namespaces is 0"));
  put(k + "/unprivileged_userns_clone", "0\n");
  CHECK(restriction().starts_with("kernel.unprivileged_userns_clone is 0"));
}

TEST_CASE("base/python_name: valid_python_identifier, keywords refused") {
  CHECK(nsbox::valid_python_identifier("handler"));
  CHECK(nsbox::valid_python_identifier("_private"));
  CHECK(nsbox::valid_python_identifier("Handle2"));
  CHECK(nsbox::valid_python_identifier(std::string(128, 'h')));
  CHECK_FALSE(nsbox::valid_python_identifier(""));
  CHECK_FALSE(nsbox::valid_python_identifier(std::string(129, 'h')));
  CHECK_FALSE(nsbox::valid_python_identifier("2fast"));
  CHECK_FALSE(nsbox::valid_python_identifier("a.b"));
  CHECK_FALSE(nsbox::valid_python_identifier("a-b"));
  CHECK_FALSE(nsbox::valid_python_identifier("os.system"));
  CHECK_FALSE(
      nsbox::valid_python_identifier("h\xc3\xa9"));  // Python allows it; the daemon keeps ASCII
  CHECK_FALSE(nsbox::valid_python_identifier(std::string("a\0b", 3)));
  // No `def` can make a keyword a name: refused where it is typed.
  for (const char* k : {"class", "None", "True", "False", "lambda", "yield", "await", "def"})
    CHECK_FALSE(nsbox::valid_python_identifier(k));
  // Soft keywords, and keywords in another case, are names.
  for (const char* k : {"match", "case", "_", "none", "Class", "classy"})
    CHECK(nsbox::valid_python_identifier(k));
}
