#include "tools/invoker.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/files.hpp"
#include "sandbox/fd_passing.hpp"

namespace nsbox {

namespace {

Result<unsigned long> parse_id(const char* var) {
  const char* v = getenv(var);
  if (!v || !*v)
    return make_error(var, std::string(var) +
                               " is not set, though SUDO_UID is (sudo sets both; unset SUDO_UID "
                               "to act as root)");
  char* end = nullptr;
  errno = 0;
  unsigned long id = strtoul(v, &end, 10);
  if (errno || *end || *v == '-' || *v == '+' || id >= 0xffffffffUL)
    return make_error(var, std::string(var) + "=\"" + v +
                               "\" is not a uid or gid (sudo sets it; unset it to act as root)");
  return id;
}

}  // namespace

Result<std::optional<Invoker>> sudo_invoker() {
  if (geteuid() != 0 || !getenv("SUDO_UID")) return std::optional<Invoker>{};
  Invoker who;
  who.uid = static_cast<uid_t>(TRY(parse_id("SUDO_UID")));
  if (who.uid == 0) return std::optional<Invoker>{};
  who.gid = static_cast<gid_t>(TRY(parse_id("SUDO_GID")));
  const char* user = getenv("SUDO_USER");
  who.name = user && *user ? user : "uid " + std::to_string(who.uid);
  // Their supplementary groups, as a login gives them: a file they may read
  // through one must stay readable.
  if (user && *user) {
    int n = 64;
    for (int tries = 0; tries < 4; tries++) {
      who.groups.resize(static_cast<size_t>(n));
      int got = n;
      if (getgrouplist(user, who.gid, who.groups.data(), &got) >= 0) {
        who.groups.resize(static_cast<size_t>(got));
        break;
      }
      who.groups.clear();
      n = got > n ? got : n * 4;
    }
  }
  if (who.groups.empty()) who.groups = {who.gid};
  return std::optional<Invoker>{who};
}

Result<UniqueFd> open_as(const std::optional<Invoker>& who, const std::string& path, int flags) {
  if (!who) {
    UniqueFd fd(open(path.c_str(), flags | O_CLOEXEC));
    if (!fd.valid()) return sys_error("open", path);
    return fd;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return sys_error("socketpair", "open as " + who->name);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork", "open as " + who->name);
  if (pid == 0) {
    // Groups first, then gid, then uid: each later step drops the right to
    // make the earlier one. The result is one int: the errno, 0 with the fd.
    int err = 0;
    if (setgroups(who->groups.size(), who->groups.data()) != 0 ||
        setresgid(who->gid, who->gid, who->gid) != 0 ||
        setresuid(who->uid, who->uid, who->uid) != 0) {
      err = errno ? errno : EPERM;
      send_with_fds(theirs.get(), &err, sizeof err, nullptr, 0);
      _exit(1);
    }
    int fd = open(path.c_str(), flags | O_CLOEXEC);
    err = fd < 0 ? errno : 0;
    send_with_fds(theirs.get(), &err, sizeof err, fd < 0 ? nullptr : &fd, fd < 0 ? 0 : 1);
    _exit(0);
  }
  theirs.reset();
  int err = EIO, fd = -1;
  ssize_t n = recv_with_fds(ours.get(), &err, sizeof err, &fd, 1);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  UniqueFd got(fd);
  if (n != static_cast<ssize_t>(sizeof err)) err = EIO;
  if (err != 0 || !got.valid()) {
    if (!err) err = EIO;
    return Error(err, "open", path,
                 path + ": " + std::strerror(err) + " (opened as " + who->name +
                     ", who ran sudo: nsbox opens the files you name with your rights; in a "
                     "root shell that sudo started, unset SUDO_UID to open them as root)");
  }
  return got;
}

Result<std::string> read_file_as(const std::optional<Invoker>& who, const std::string& path,
                                 size_t limit, const std::string& limit_text) {
  UniqueFd fd = TRY(open_as(who, path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return sys_error("fstat", path);
  if (!S_ISREG(st.st_mode)) return make_error("read", path + ": not a regular file");
  auto too_big = [&](const std::string& size) {
    return make_error("read", path + ": " + size + "more than " + limit_text);
  };
  if (uint64_t(st.st_size) > limit) return too_big(std::to_string(st.st_size) + " bytes, ");
  auto text = read_up_to(fd.get(), limit);
  // It grew while it was read.
  if (!text && text.error().err == EFBIG) return too_big("");
  if (!text) {
    const int err = text.error().err;
    return Error(err, "read", path, path + ": " + std::strerror(err));
  }
  return text;
}

}  // namespace nsbox
