// The rootless tests (rootless_test.cpp) run `nsbox run` as an ordinary
// user, as a developer without root does. Started by one, they run as that
// user. Started as root (CI), the whole suite first becomes nobody, with
// copies of nsbox and the probes nobody can reach, so both take the same
// unprivileged path and no test can lean on root's privileges.
//
// They need unprivileged user namespaces; without them the suite skips
// (exit 77) unless NSBOX_MUST_WORK is set, when it fails (CONTRIBUTING.md
// §8), so CI cannot go green by skipping.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/integration/harness.hpp"

namespace {

bool write_file(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// Whether this user may do what rootless nsbox does first: make a user
// namespace, map itself to root in it and act as root there (a mount
// namespace's propagation, which nothing outside sees). "" when it may,
// else what failed. Kernels and distributions restrict this in different
// ways (a sysctl, max_user_namespaces = 0, an LSM): trying is the one
// check that covers them all.
std::string userns_unavailable() {
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return std::string("pipe2: ") + strerror(errno);
  const uid_t uid = geteuid();
  const gid_t gid = getegid();
  pid_t pid = fork();
  if (pid == 0) {
    close(report[0]);
    const char* step = nullptr;
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
      step = "unshare(CLONE_NEWUSER | CLONE_NEWNS)";
    else if (!write_file("/proc/self/setgroups", "deny"))
      step = "write /proc/self/setgroups";
    else if (!write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1"))
      step = "write /proc/self/uid_map";
    else if (!write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1"))
      step = "write /proc/self/gid_map";
    else if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      step = "mount(/, MS_PRIVATE) in the new namespaces";
    if (step) {
      std::string msg = std::string(step) + ": " + strerror(errno);
      (void)!write(report[1], msg.data(), msg.size());
      _exit(1);
    }
    _exit(0);
  }
  close(report[1]);
  if (pid < 0) {
    close(report[0]);
    return std::string("fork: ") + strerror(errno);
  }
  std::string msg;
  char buf[256];
  ssize_t n;
  while ((n = read(report[0], buf, sizeof buf)) > 0) msg.append(buf, size_t(n));
  close(report[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return "";
  return msg.empty() ? "the check ended without a word" : msg;
}

int run_tests(int argc, char** argv) {
  std::string why = userns_unavailable();
  if (!why.empty()) {
    if (!getenv("NSBOX_MUST_WORK")) {
      std::fprintf(stderr, "skipping: no unprivileged user namespaces for uid %u (%s)\n",
                   unsigned(geteuid()), why.c_str());
      return 77;
    }
    std::fprintf(stderr,
                 "NSBOX_MUST_WORK is set but uid %u cannot use unprivileged user namespaces "
                 "(%s)\n",
                 unsigned(geteuid()), why.c_str());
    return 1;
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}

// As root: the tests run in a child that has become nobody (groups, gid,
// uid: root's capabilities go with the uid). We stay root only to wait for
// it and to remove the copies afterwards.
int run_tests_as_nobody(int argc, char** argv) {
  const std::string bin = nsbox::test::unprivileged_nsbox_bin();
  const std::string probes = nsbox::test::unprivileged_probes_dir();
  if (probes.empty()) {
    std::fprintf(stderr, "no probes in %s\n", nsbox::test::probe("").c_str());
    return 1;
  }
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    const uid_t u = nsbox::test::kNobody;
    if (setgroups(0, nullptr) != 0 || setresgid(u, u, u) != 0 || setresuid(u, u, u) != 0) {
      std::perror("becoming nobody");
      _exit(1);
    }
    // A uid change leaves us non-dumpable, so /proc/self would stay root's
    // and the user-namespace check could not write its own maps; an
    // execve, as a developer's shell does, would have reset it.
    if (prctl(PR_SET_DUMPABLE, 1) != 0) _exit(1);
    // The source tree may be out of nobody's reach: nothing is read from it.
    if (chdir("/") != 0) _exit(1);
    setenv("NSBOX_BIN", bin.c_str(), 1);
    setenv("NSBOX_PROBES", probes.c_str(), 1);
    setenv("HOME", "/nonexistent", 1);
    int code = run_tests(argc, argv);
    std::fflush(nullptr);
    _exit(code);  // not exit(): the atexit handler removing the copies is root's
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (geteuid() == 0) return run_tests_as_nobody(argc, argv);
  return run_tests(argc, argv);
}
