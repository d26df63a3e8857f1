#include "base/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>

#include <algorithm>
#include <cstring>

#include "base/fd.hpp"

namespace nsbox {

namespace {

std::vector<char*> cstrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<pid_t> spawn_program(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env, const std::vector<ChildFd>& fds,
                            bool own_group) {
  if (argv.empty()) return make_error("posix_spawn", "no program given");
  int highest = 2;
  for (const ChildFd& f : fds) {
    if (f.target < 0) return make_error("posix_spawn", argv[0] + ": a negative fd target");
    highest = std::max(highest, f.target);
  }
  // Each source copied above every target first: the actions run in order,
  // and a source that is also a target (a daemon started with fd 1 closed
  // gets 1 from its next socket) would be overwritten before it is copied.
  std::vector<UniqueFd> sources;
  for (const ChildFd& f : fds) {
    if (f.source < 0) {
      sources.emplace_back();
      continue;
    }
    sources.emplace_back(fcntl(f.source, F_DUPFD_CLOEXEC, highest + 1));
    if (!sources.back().valid()) return sys_error("fcntl F_DUPFD", argv[0]);
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  for (size_t i = 0; i < fds.size(); i++) {
    if (fds[i].source < 0)
      posix_spawn_file_actions_addopen(&fa, fds[i].target, "/dev/null", O_WRONLY, 0);
    else
      posix_spawn_file_actions_adddup2(&fa, sources[i].get(), fds[i].target);
  }
  posix_spawn_file_actions_addclosefrom_np(&fa, highest + 1);
  sigset_t none, def;
  sigemptyset(&none);
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &def);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (own_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&at, 0);
  }
  posix_spawnattr_setflags(&at, flags);
  std::vector<std::string> a = argv, e = env;
  auto args = cstrings(a);
  auto envp = cstrings(e);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, &at, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (rc != 0) return Error(rc, "posix_spawn", argv[0], std::strerror(rc));
  return pid;
}

}  // namespace nsbox
