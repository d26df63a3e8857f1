#include "base/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>

#include <algorithm>
#include <cstring>

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
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  int highest = 2;
  for (const ChildFd& f : fds) {
    if (f.source < 0)
      posix_spawn_file_actions_addopen(&fa, f.target, "/dev/null", O_WRONLY, 0);
    else
      posix_spawn_file_actions_adddup2(&fa, f.source, f.target);
    highest = std::max(highest, f.target);
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
