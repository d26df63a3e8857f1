// Policy parsing: the two shipped policies, and every error reported with the
// exact FILE:LINE:COL of the offending key or value.
#include "policies/policy.hpp"

#include <doctest/doctest.h>
#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "policies/embedded.hpp"
#include "sandbox/seccomp.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace nsbox;

namespace {

// A complete, valid policy. Line numbers matter: the error tests below
// replace or insert lines and expect positions relative to this text.
const std::vector<std::string> kBase = {
    "[limits]",                                       // 1
    "memory_mb = 64",                                 // 2
    "swap_mb = 0",                                    // 3
    "pids = 16",                                      // 4
    "cpu_millicores = 500",                           // 5
    "tmpfs_mb = 16",                                  // 6
    "wall_ms = 1000",                                 // 7
    "nofile = 64",                                    // 8
    "fsize_mb = 16",                                  // 9
    "[seccomp]",                                      // 10
    "default_action = \"errno\"",                     // 11
    "errno = \"EPERM\"",                              // 12
    "[seccomp.allow]",                                // 13
    "basic = [\"write\", \"read\", \"exit_group\"]",  // 14
};

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// kBase with line `n` (1-based) replaced.
std::string replace_line(int n, const std::string& text) {
  auto lines = kBase;
  lines.at(n - 1) = text;
  return join(lines);
}

// kBase with `text` inserted so that its first line becomes line `n`.
std::string insert_at(int n, const std::vector<std::string>& text) {
  auto lines = kBase;
  lines.insert(lines.begin() + (n - 1), text.begin(), text.end());
  return join(lines);
}

// kBase without lines first..last (1-based, inclusive).
std::string drop_lines(int first, int last) {
  auto lines = kBase;
  lines.erase(lines.begin() + (first - 1), lines.begin() + last);
  return join(lines);
}

std::string parse_error(const std::string& text) {
  auto r = parse_policy(text, "t.toml");
  INFO("policy text:\n", text);
  REQUIRE_FALSE(r);
  CHECK(r.error().step == "policy");
  return r.error().detail;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

bool allowed(const Policy& p, const std::string& name) {
  return std::binary_search(p.seccomp.allow.begin(), p.seccomp.allow.end(), name);
}

Policy builtin(const std::string& name) {
  auto r = load_policy(name);
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  return r.value();
}

using nsbox::test::TempDir;

// A policy file in dir: its path.
std::string write_file(const TempDir& dir, const std::string& name, const std::string& content) {
  std::string p = dir.path + "/" + name;
  std::ofstream(p) << content;
  return p;
}

}  // namespace

TEST_CASE("parse_policy: a valid document fills every field") {
  auto r = parse_policy("description = \"mine\"\n" + join(kBase), "t.toml");
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  const Policy& p = r.value();
  CHECK(p.source == "t.toml");
  CHECK(p.description == "mine");
  CHECK(p.limits.memory_bytes == 64ull << 20);
  CHECK(p.limits.swap_bytes == 0);
  CHECK(p.limits.pids == 16);
  CHECK(p.limits.cpu_millicores == 500);
  CHECK(p.limits.tmpfs_bytes == 16ull << 20);
  CHECK(p.limits.wall_ms == 1000);
  CHECK(p.limits.nofile == 64);
  CHECK(p.limits.fsize_bytes == 16ull << 20);
  CHECK(p.network == NetworkMode::None);
  CHECK(p.seccomp.default_action == SeccompDefault::Errno);
  CHECK(p.seccomp.errno_value == EPERM);
  // Sorted, whatever the order in the file.
  CHECK(p.seccomp.allow == std::vector<std::string>{"exit_group", "read", "write"});
}

TEST_CASE("parse_policy: allow groups are merged, default_action and errno are mapped") {
  std::string text = join({"[limits]", "memory_mb = 32", "swap_mb = 8", "pids = 2",
                           "cpu_millicores = 10", "tmpfs_mb = 1", "wall_ms = 900000", "nofile = 16",
                           "fsize_mb = 1", "[network]", "mode = \"none\"", "[seccomp]",
                           "default_action = \"kill_process\"", "errno = \"EACCES\"",
                           "[seccomp.allow]", "b = [\"read\"]", "a = [\"getpid\", \"brk\"]"});
  auto r = parse_policy(text, "t.toml");
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  const Policy& p = r.value();
  CHECK(p.limits.memory_bytes == 32ull << 20);
  CHECK(p.limits.swap_bytes == 8ull << 20);
  CHECK(p.limits.pids == 2);
  CHECK(p.limits.cpu_millicores == 10);
  CHECK(p.limits.wall_ms == 900000);
  CHECK(p.seccomp.default_action == SeccompDefault::KillProcess);
  CHECK(p.seccomp.errno_value == EACCES);
  CHECK(p.seccomp.allow == std::vector<std::string>{"brk", "getpid", "read"});

  for (auto [name, action] :
       {std::pair{"trap", SeccompDefault::Trap}, std::pair{"log", SeccompDefault::Log},
        std::pair{"errno", SeccompDefault::Errno}}) {
    auto q = parse_policy(replace_line(11, std::string("default_action = \"") + name + "\""), "t");
    REQUIRE(q);
    CHECK(q.value().seccomp.default_action == action);
  }
  for (auto [name, value] : {std::pair{"ENOSYS", ENOSYS}, std::pair{"EINVAL", EINVAL}}) {
    auto q = parse_policy(replace_line(12, std::string("errno = \"") + name + "\""), "t");
    REQUIRE(q);
    CHECK(q.value().seccomp.errno_value == value);
  }
}

TEST_CASE("parse_policy: unknown top-level key") {
  CHECK(parse_error(insert_at(1, {"colour = \"blue\""})) ==
        "t.toml:1:1: unknown key \"colour\" in the top level (expected one of: description, "
        "limits, network, seccomp)");
}

TEST_CASE("parse_policy: unknown key in [limits] names it and the expected ones") {
  CHECK(parse_error(replace_line(3, "swapp_mb = 0")) ==
        "t.toml:3:1: unknown key \"swapp_mb\" in [limits] (expected one of: memory_mb, swap_mb, "
        "pids, cpu_millicores, tmpfs_mb, wall_ms, nofile, fsize_mb)");
  // Indented: the column is the key's.
  CHECK(
      contains(parse_error(replace_line(6, "   tmpfs = 16")), "t.toml:6:4: unknown key \"tmpfs\""));
}

TEST_CASE("parse_policy: unknown keys in [network] and [seccomp]") {
  CHECK(contains(parse_error(insert_at(10, {"[network]", "mode = \"none\"", "ipv6 = true"})),
                 "t.toml:12:1: unknown key \"ipv6\" in [network]"));
  CHECK(contains(parse_error(insert_at(13, {"errno_value = 1"})),
                 "t.toml:13:1: unknown key \"errno_value\" in [seccomp]"));
}

TEST_CASE("parse_policy: value out of range names the key and the range") {
  CHECK(parse_error(replace_line(4, "pids = 0")) ==
        "t.toml:4:8: \"pids\" in [limits] is 0; allowed range is 2..32768");
  // PID 1 and the runner: with one, no sandbox could start.
  CHECK(parse_error(replace_line(4, "pids = 1")) ==
        "t.toml:4:8: \"pids\" in [limits] is 1; allowed range is 2..32768");
  CHECK(parse_error(replace_line(2, "memory_mb = 8")) ==
        "t.toml:2:13: \"memory_mb\" in [limits] is 8; allowed range is 16..65536");
  CHECK(parse_error(replace_line(2, "memory_mb = 65537")) ==
        "t.toml:2:13: \"memory_mb\" in [limits] is 65537; allowed range is 16..65536");
  CHECK(parse_error(replace_line(3, "swap_mb = -1")) ==
        "t.toml:3:11: \"swap_mb\" in [limits] is -1; allowed range is 0..65536");
  CHECK(parse_error(replace_line(7, "wall_ms = 900001")) ==
        "t.toml:7:11: \"wall_ms\" in [limits] is 900001; allowed range is 1..900000");
  CHECK(parse_error(replace_line(5, "cpu_millicores = 9")) ==
        "t.toml:5:18: \"cpu_millicores\" in [limits] is 9; allowed range is 10..256000");
  CHECK(parse_error(replace_line(8, "nofile = 15")) ==
        "t.toml:8:10: \"nofile\" in [limits] is 15; allowed range is 16..1048576");
  // Large enough to overflow the MiB -> bytes shift if it were accepted.
  CHECK(contains(parse_error(replace_line(9, "fsize_mb = 9223372036854775807")),
                 "t.toml:9:12: \"fsize_mb\" in [limits] is 9223372036854775807"));
}

TEST_CASE("parse_policy: wrong value types") {
  CHECK(parse_error(replace_line(2, "memory_mb = \"64\"")) ==
        "t.toml:2:13: \"memory_mb\" in [limits] must be an integer");
  CHECK(parse_error(replace_line(4, "pids = 16.0")) ==
        "t.toml:4:8: \"pids\" in [limits] must be an integer");
  CHECK(parse_error(replace_line(12, "errno = 1")) ==
        "t.toml:12:9: \"errno\" in [seccomp] must be a string");
  CHECK(parse_error(insert_at(1, {"description = 5"})) ==
        "t.toml:1:15: \"description\" in the top level must be a string");
  {
    auto lines = kBase;
    lines.erase(lines.begin(), lines.begin() + 9);
    lines.insert(lines.begin(), "limits = 5");
    CHECK(parse_error(join(lines)) == "t.toml:1:10: \"limits\" must be a table");
  }
  CHECK(parse_error(replace_line(14, "basic = \"read\"")) ==
        "t.toml:14:9: [seccomp.allow] group \"basic\" must be an array of syscall names");
  CHECK(parse_error(replace_line(14, "basic = [\"read\", 5]")) ==
        "t.toml:14:18: syscall names in group \"basic\" must be strings");
}

TEST_CASE("parse_policy: unknown syscall names it, its group and its array element") {
  CHECK(parse_error(replace_line(14, "basic = [\"read\", \"wrte\", \"exit_group\"]")) ==
        "t.toml:14:18: unknown syscall \"wrte\" in group \"basic\" of [seccomp.allow] (not an "
        "x86_64 system call's name; remove it)");
  // Multi-line array: the element's own line and column.
  std::string text = join(kBase) + "net = [\n  \"socket\",\n    \"connectt\",\n]\n";
  CHECK(parse_error(text) ==
        "t.toml:17:5: unknown syscall \"connectt\" in group \"net\" of [seccomp.allow] (not an "
        "x86_64 system call's name; remove it)");
  // Another architecture's call, which libseccomp knows by a pseudo-number
  // and a filter for this one would drop without a word.
  for (const char* other : {"socketcall", "umount", "ipc"}) {
    CAPTURE(other);
    CHECK(parse_error(replace_line(14, std::string("basic = [\"read\", \"") + other + "\"]")) ==
          std::string("t.toml:14:18: unknown syscall \"") + other +
              "\" in group \"basic\" of [seccomp.allow] (not an x86_64 system call's name; "
              "remove it)");
  }
}

// A policy file is operator input, but a wrong one must not turn the sandbox
// off: a group that allows unshare would hand a function a nested user
// namespace with every capability. Refused where it is listed, with why.
TEST_CASE("parse_policy: a syscall no policy may allow is refused where it is listed") {
  CHECK(parse_error(replace_line(14, "basic = [\"read\", \"unshare\", \"exit_group\"]")) ==
        "t.toml:14:18: syscall \"unshare\" in group \"basic\" may never be allowed: it makes "
        "or enters namespaces (a nested user namespace has every capability); remove it");
  std::string text = join(kBase) + "danger = [\n  \"getpid\",\n    \"io_uring_setup\",\n]\n";
  CHECK(contains(parse_error(text),
                 "t.toml:17:5: syscall \"io_uring_setup\" in group \"danger\" "
                 "may never be allowed: it opens a large kernel attack surface"));
  for (const char* name :
       {"mount", "setns", "ptrace", "bpf", "keyctl", "userfaultfd", "perf_event_open",
        "init_module", "personality", "process_vm_readv", "modify_ldt"})
    CHECK_MESSAGE(contains(parse_error(replace_line(14, std::string("basic = [\"") + name + "\"]")),
                           std::string("syscall \"") + name +
                               "\" in group \"basic\" may never "
                               "be allowed: "),
                  name);
}

// A NUL in a name passed the never-allowed check (compared whole) and was
// then resolved by libseccomp up to the NUL: "unshare\u0000" allowed
// unshare. Refused where it is listed.
TEST_CASE("parse_policy: a syscall name holds lowercase letters, digits and _ only") {
  for (const char* bad : {"unshare\\u0000", "clone\\u0000x", "fork\\u0000", "Read", "re ad", ""}) {
    CAPTURE(bad);
    const std::string e =
        parse_error(replace_line(14, std::string("basic = [\"read\", \"") + bad + "\"]"));
    CHECK_MESSAGE(contains(e, "t.toml:14:18: \""), e);
    CHECK_MESSAGE(contains(e,
                           "of [seccomp.allow] is not a syscall name (lowercase letters, "
                           "digits and _ only)"),
                  e);
  }
}

// Listed, clone3 was skipped without a word (every policy answers it
// ENOSYS): said where it is listed.
TEST_CASE("parse_policy: clone3 is refused where it is listed, with what to list instead") {
  CHECK(parse_error(replace_line(14, "basic = [\"read\", \"clone3\"]")) ==
        "t.toml:14:18: syscall \"clone3\" in group \"basic\" is never allowed: every policy "
        "answers it ENOSYS so that glibc uses clone, whose namespace flags the filter checks; "
        "remove it (list clone)");
}

TEST_CASE("parse_policy: unknown default_action and errno names") {
  CHECK(
      parse_error(replace_line(11, "default_action = \"allow\"")) ==
      "t.toml:11:18: unknown default_action \"allow\" (expected errno, kill_process, trap or log)");
  CHECK(parse_error(replace_line(12, "errno = \"EFOO\"")) ==
        "t.toml:12:9: unknown errno \"EFOO\" (expected EPERM, EACCES, ENOSYS or EINVAL)");
  // Names are case-sensitive.
  CHECK(contains(parse_error(replace_line(12, "errno = \"eperm\"")), "t.toml:12:9: unknown errno"));
}

TEST_CASE("parse_policy: only network mode \"none\" is supported") {
  CHECK(parse_error(insert_at(10, {"[network]", "mode = \"host\""})) ==
        "t.toml:11:8: network mode \"host\" is not supported (supported: \"none\")");
  CHECK(contains(parse_error(insert_at(10, {"[network]", "mode = \"\""})),
                 "t.toml:11:8: network mode \"\""));
  // An absent [network] means "none".
  auto r = parse_policy(join(kBase), "t.toml");
  REQUIRE(r);
  CHECK(r.value().network == NetworkMode::None);
}

TEST_CASE("parse_policy: [limits] and [seccomp] are required") {
  // The whole document is the position of a missing top-level table.
  CHECK(parse_error(drop_lines(1, 9)) == "t.toml:1:1: missing table [limits]");
  CHECK(parse_error(drop_lines(10, 14)) == "t.toml:1:1: missing table [seccomp]");
  // A missing sub-table is reported at its parent table's header.
  CHECK(parse_error(drop_lines(13, 14)) == "t.toml:10:1: missing table [seccomp.allow]");
}

TEST_CASE("parse_policy: a TOML syntax error reports its own position") {
  std::string e = parse_error(replace_line(5, "cpu_millicores = = 500"));
  CHECK(e.rfind("t.toml:5:18: ", 0) == 0);
  std::string unterminated = parse_error(replace_line(14, "basic = [\"read\""));
  CHECK(unterminated.rfind("t.toml:", 0) == 0);
  CHECK_FALSE(contains(unterminated, "t.toml:0:"));
  std::string dup_key = parse_error(insert_at(3, {"memory_mb = 32"}));
  CHECK(dup_key.rfind("t.toml:3:", 0) == 0);
}

TEST_CASE("parse_policy: an empty allow list is an error at [seccomp.allow]") {
  CHECK(parse_error(replace_line(14, "basic = []")) ==
        "t.toml:13:1: [seccomp.allow] allows no syscall at all");
  CHECK(parse_error(drop_lines(14, 14)) == "t.toml:13:1: [seccomp.allow] allows no syscall at all");
}

// policies/README.md: "list each syscall once per file (duplicates are
// rejected)". parse_policy merges the groups into a std::set, so a duplicate
// is silently accepted.
TEST_CASE("parse_policy: a syscall listed twice is rejected (README)") {
  auto same_group =
      parse_policy(replace_line(14, "basic = [\"read\", \"read\", \"write\"]"), "t.toml");
  CHECK_FALSE(same_group);
  auto two_groups = parse_policy(join(kBase) + "more = [\"read\"]\n", "t.toml");
  CHECK_FALSE(two_groups);
  if (!two_groups) CHECK(contains(two_groups.error().detail, "t.toml:15:"));
}

// policies/README.md, "Writing your own policy": "all eight keys are
// required". parse_policy falls back to the Limits defaults instead.
TEST_CASE("parse_policy: every [limits] key is required (README)") {
  auto r = parse_policy(drop_lines(4, 4), "t.toml");  // no pids
  CHECK_FALSE(r);
  if (!r) CHECK(contains(r.error().detail, "pids"));
}

TEST_CASE("load_policy: the built-in default policy") {
  Policy p = builtin("default");
  CHECK(p.name == "default");
  CHECK(contains(p.source, "default.toml"));
  CHECK(p.limits.memory_bytes == 128ull << 20);
  CHECK(p.limits.swap_bytes == 0);
  CHECK(p.limits.pids == 64);
  CHECK(p.limits.cpu_millicores == 1000);
  CHECK(p.limits.tmpfs_bytes == 64ull << 20);
  CHECK(p.limits.wall_ms == 3000);
  CHECK(p.limits.nofile == 256);
  CHECK(p.limits.fsize_bytes == 64ull << 20);
  CHECK(p.seccomp.default_action == SeccompDefault::Errno);
  CHECK(p.seccomp.errno_value == EPERM);
  for (const std::string s : {"socket", "connect", "bind", "vfork", "wait4", "kill", "clone",
                              "execve", "exit_group", "read", "write", "futex"})
    CHECK_MESSAGE(allowed(p, s), s);
  CHECK_FALSE(allowed(p, "clone3"));
}

TEST_CASE("load_policy: the built-in strict policy") {
  Policy p = builtin("strict");
  CHECK(p.name == "strict");
  CHECK(contains(p.source, "strict.toml"));
  CHECK(p.limits.memory_bytes == 64ull << 20);
  CHECK(p.limits.swap_bytes == 0);
  CHECK(p.limits.pids == 16);
  CHECK(p.limits.cpu_millicores == 500);
  CHECK(p.limits.tmpfs_bytes == 16ull << 20);
  CHECK(p.limits.wall_ms == 1000);
  CHECK(p.limits.nofile == 64);
  CHECK(p.limits.fsize_bytes == 16ull << 20);
  CHECK(p.seccomp.default_action == SeccompDefault::Errno);
  CHECK(p.seccomp.errno_value == EPERM);
  // What strict.toml says it drops.
  for (const std::string s :
       {"socket",       "connect",        "bind",      "listen",      "accept",  "accept4",
        "socketpair",   "recvfrom",       "sendto",    "recvmsg",     "sendmsg", "getsockopt",
        "vfork",        "wait4",          "kill",      "chown",       "mknod",   "setxattr",
        "memfd_create", "timerfd_create", "signalfd4", "setpriority", "execveat"})
    CHECK_MESSAGE(!allowed(p, s), s);
  // What it keeps: threads and the runner's channel (read/write on its pipes).
  for (const std::string s : {"clone", "futex", "execve", "read", "write", "poll"})
    CHECK_MESSAGE(allowed(p, s), s);
}

TEST_CASE("load_policy: built-in allow lists are non-empty, sorted and unique") {
  for (const std::string name : {"default", "strict"}) {
    Policy p = builtin(name);
    INFO("policy ", name);
    const auto& a = p.seccomp.allow;
    CHECK(a.size() > 50);
    CHECK(std::is_sorted(a.begin(), a.end()));
    CHECK(std::adjacent_find(a.begin(), a.end()) == a.end());
  }
}

TEST_CASE("load_policy: strict allows a subset of default") {
  Policy d = builtin("default"), s = builtin("strict");
  for (const auto& name : s.seccomp.allow) CHECK_MESSAGE(allowed(d, name), name);
  CHECK(s.seccomp.allow.size() < d.seccomp.allow.size());
  CHECK(s.limits.memory_bytes <= d.limits.memory_bytes);
  CHECK(s.limits.pids <= d.limits.pids);
  CHECK(s.limits.wall_ms <= d.limits.wall_ms);
}

TEST_CASE("load_policy: no built-in policy allows an escape syscall") {
  for (const auto& name : builtin_policy_names()) {
    Policy p = builtin(name);
    for (const std::string s : {"mount",
                                "umount2",
                                "unshare",
                                "setns",
                                "ptrace",
                                "bpf",
                                "keyctl",
                                "pivot_root",
                                "chroot",
                                "init_module",
                                "finit_module",
                                "delete_module",
                                "add_key",
                                "request_key",
                                "kexec_load",
                                "reboot",
                                "swapon",
                                "perf_event_open",
                                "userfaultfd",
                                "io_uring_setup",
                                "personality",
                                "modify_ldt",
                                "open_by_handle_at",
                                "process_vm_writev",
                                "clone3",
                                "sethostname",
                                "settimeofday",
                                "clock_settime",
                                "fsopen",
                                "move_mount",
                                "open_tree"})
      CHECK_MESSAGE(!allowed(p, s), name << " allows " << s);
  }
}

TEST_CASE("built-in policy files list each syscall once (their own rule)") {
  for (const auto& name : builtin_policy_names()) {
    const EmbeddedFile* f = find_embedded("policies/" + name + ".toml");
    REQUIRE(f);
    Policy p = builtin(name);
    std::string text(f->content);
    for (const auto& s : p.seccomp.allow) {
      std::string quoted = "\"" + s + "\"";
      size_t first = text.find(quoted);
      REQUIRE(first != std::string::npos);
      CHECK_MESSAGE(text.find(quoted, first + 1) == std::string::npos,
                    name << ".toml lists " << s << " twice");
    }
  }
}

TEST_CASE("builtin_policy_names lists default and strict") {
  auto names = builtin_policy_names();
  CHECK(std::find(names.begin(), names.end(), "default") != names.end());
  CHECK(std::find(names.begin(), names.end(), "strict") != names.end());
}

TEST_CASE("load_policy: an unknown built-in name lists the built-in ones") {
  auto r = load_policy("nonexistent");
  REQUIRE_FALSE(r);
  const std::string& d = r.error().detail;
  CHECK(contains(d, "\"nonexistent\""));
  CHECK(contains(d, "default"));
  CHECK(contains(d, "strict"));
}

TEST_CASE("load_policy: a missing file fails with its errno and path") {
  auto r = load_policy("/no/such/file.toml");
  REQUIRE_FALSE(r);
  CHECK(r.error().err == ENOENT);
  CHECK(r.error().context == "/no/such/file.toml");
  // A bare name ending in .toml is a path too, not a built-in name.
  auto rel = load_policy("no-such-policy.toml");
  REQUIRE_FALSE(rel);
  CHECK(rel.error().err == ENOENT);
}

TEST_CASE("load_policy: a policy file sets name and source to its path") {
  TempDir dir("policy-test");
  std::string path = write_file(dir, "mine.toml", join(kBase));
  auto r = load_policy(path);
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().detail));
  CHECK(r.value().name == path);
  CHECK(r.value().source == path);
  CHECK(r.value().limits.pids == 16);
  CHECK(r.value().seccomp.allow == std::vector<std::string>{"exit_group", "read", "write"});

  // Errors in a file are positioned in that file.
  std::string bad = write_file(dir, "bad.toml", replace_line(4, "pids = 0"));
  auto e = load_policy(bad);
  REQUIRE_FALSE(e);
  CHECK(e.error().detail.rfind(bad + ":4:8: ", 0) == 0);
}

TEST_CASE("load_policy: a file larger than 1 MiB is refused") {
  TempDir dir("policy-test");
  std::string path =
      write_file(dir, "big.toml", join(kBase) + "# " + std::string(1 << 20, 'x') + "\n");
  auto r = load_policy(path);
  REQUIRE_FALSE(r);
  CHECK(contains(r.error().detail, "larger than 1 MiB"));
}

// allow_fork = false promises threads and no child processes: a listed
// fork or vfork would break it under any default action.
TEST_CASE("parse_policy: fork and vfork are refused where allow_fork = false") {
  auto lines = kBase;
  lines.insert(lines.begin() + 11, "allow_fork = false");
  lines.back() = "basic = [\"read\", \"vfork\", \"exit_group\"]";
  CHECK(parse_error(join(lines)) ==
        "t.toml:15:18: syscall \"vfork\" in group \"basic\" makes child processes, which "
        "allow_fork = false forbids; remove it or set allow_fork = true");
  lines.back() = "basic = [\"read\", \"fork\", \"exit_group\"]";
  CHECK(contains(parse_error(join(lines)), "t.toml:15:18: syscall \"fork\""));
  // The compiler refuses such a policy built in code, too.
  SeccompPolicy p;
  p.allow_fork = false;
  p.allow = {"read", "vfork"};
  auto r = seccomp_compile(p);
  REQUIRE_FALSE(r);
  CHECK(contains(r.error().message(), "\"vfork\" makes child processes"));
}

TEST_CASE("parse_policy: a policy that leaves out allow_fork gets no child processes") {
  auto r = parse_policy(join(kBase), "t.toml");
  REQUIRE(r);
  CHECK_FALSE(r.value().seccomp.allow_fork);
  auto lines = kBase;
  lines.insert(lines.begin() + 11, "allow_fork = true");
  r = parse_policy(join(lines), "t.toml");
  REQUIRE(r);
  CHECK(r.value().seccomp.allow_fork);
  // The built-in policies say so themselves.
  CHECK(load_policy("default").value().seccomp.allow_fork);
  CHECK_FALSE(load_policy("strict").value().seccomp.allow_fork);
  // fork listed without the key: refused, saying how to allow it.
  lines = kBase;
  lines.back() = "basic = [\"read\", \"fork\", \"exit_group\"]";
  CHECK(contains(parse_error(join(lines)), "remove it or set allow_fork = true"));
}

TEST_CASE("policy_warnings: default_action = \"log\" is said to let unlisted calls run") {
  auto quiet = parse_policy(join(kBase), "t.toml");
  REQUIRE(quiet);
  CHECK(policy_warnings(quiet.value()).empty());
  CHECK(policy_warnings(load_policy("default").value()).empty());
  CHECK(policy_warnings(load_policy("strict").value()).empty());
  auto log = parse_policy(replace_line(11, "default_action = \"log\""), "t.toml");
  REQUIRE(log);
  auto w = policy_warnings(log.value());
  REQUIRE(w.size() == 1);
  CHECK(w[0].rfind("t.toml: [seccomp] default_action = \"log\" lets every system call", 0) == 0);
}

TEST_CASE("parse_policy: a missing [limits] key says what to add and its range") {
  const std::string e = parse_error(drop_lines(4, 4));
  CHECK_MESSAGE(contains(e, "missing key \"pids\" in [limits]: add pids = N (2..32768)"), e);
}
