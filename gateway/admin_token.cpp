#include "gateway/admin_token.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <ctime>
#include <string_view>

#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "base/random.hpp"
#include "gateway/config.hpp"

namespace nsbox {

namespace {

constexpr size_t kMinTokenChars = 16;  // as the config's token

constexpr size_t kMaxTokenFile = 4096;

// A file whose contents another user could read is a token they have;
// one they could write is a token they chose. The config file gets the
// same rule as a warning (config_file_warning); the token file is only
// ever the token, so it is refused.
Status check_token_file(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) return sys_error("fstat", path);
  if (!S_ISREG(st.st_mode))
    return make_error("token", path +
                                   " is not a regular file; put the token in a file there, or "
                                   "delete it to have one generated");
  if (st.st_uid != geteuid())
    return make_error("token", path + " belongs to uid " + std::to_string(st.st_uid) +
                                   ", not to the user nsbox serve runs as (uid " +
                                   std::to_string(geteuid()) + "): chown it, or delete it");
  if ((st.st_mode & 077) != 0)
    return make_error("token", path + " has mode " + mode_octal(st.st_mode) +
                                   ": other users could read (or write) the admin token; chmod "
                                   "600 " +
                                   path + ", and change the token if it was ever exposed");
  return {};
}

Result<std::string> read_token_file(int fd, const std::string& path) {
  TRY(check_token_file(fd, path));
  auto got = read_up_to(fd, kMaxTokenFile);
  if (!got && got.error().err == EFBIG)
    return make_error("token", path + " is larger than 4 KiB; a token file holds one line");
  if (!got) return sys_error_n(got.error().err, "read", path);
  const std::string t = token_text(got.value());
  if (!token_chars_ok(t))
    return make_error("token", path +
                                   " holds more than one line, or a token with spaces or control "
                                   "characters, which no Authorization header can carry; put one "
                                   "line of printable ASCII in it, or delete it to have one "
                                   "generated");
  if (t.size() < kMinTokenChars)
    return make_error("token", path + " holds a token of " + std::to_string(t.size()) +
                                   " characters; a token needs at least " +
                                   std::to_string(kMinTokenChars) +
                                   ": put a longer one in it (e.g. `(umask 077; openssl rand "
                                   "-hex 24 > " +
                                   path + ")`), or delete it to have one generated");
  return t;
}

// A start holds an exclusive flock on its temporary token from just after
// it made it until it unlinks it.
constexpr int kStaleAfterSeconds = 60;

// A start that crashed between its open and its unlink left its temporary
// token behind (0600, but a copy of a secret all the same): deleted once no
// start holds it and it is older than any start takes. Not by its name's
// PID (PID-HEX): a start in another PID namespace looks gone from here, and
// a start flocks its file only just after making it.
void remove_stale_temporaries(const std::string& state_dir) {
  DIR* d = opendir(state_dir.c_str());
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    constexpr std::string_view kPrefix = "token.tmp-";
    if (name.substr(0, kPrefix.size()) != kPrefix) continue;
    const std::string_view rest = name.substr(kPrefix.size());
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (ec != std::errc() || pid <= 0 || end == rest.data() + rest.size() || *end != '-') continue;
    UniqueFd fd(openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st;
    if (!fd.valid() || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != geteuid() || flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
      continue;
    if (time(nullptr) - st.st_mtime < kStaleAfterSeconds) continue;
    const std::string path = state_dir + "/" + std::string(name);
    if (unlinkat(dirfd(d), e->d_name, 0) == 0)
      LOG_INFO("deleted %s, left by a start that crashed", path.c_str());
  }
  closedir(d);
}

Result<std::string> generate_token(const std::string& path, const std::string& state_dir) {
  const std::string t = TRY(random_hex(24, "token"));
  // A name of this start's own: two starts on one state dir (one refused
  // later by the store's lock) must not unlink each other's file and
  // publish the other's token. Not from the token: the name may appear in
  // an error or a log.
  const std::string suffix = TRY(random_hex(4, "token"));
  std::string tmp = path + ".tmp-" + std::to_string(getpid()) + "-" + suffix;
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return sys_error("open", tmp);
  // Held until the unlink below (remove_stale_temporaries): the lock stays
  // with the open file description, so a second fd keeps it past the
  // close that checks the write.
  UniqueFd held(dup(fd.get()));
  if (!held.valid() || flock(held.get(), LOCK_EX) != 0) {
    const Error e = sys_error("flock", tmp);
    unlink(tmp.c_str());
    return e;
  }
  std::string line = t + "\n";
  Status written;
  const ssize_t n = write(fd.get(), line.data(), line.size());
  if (n < 0)
    written = sys_error("write", tmp);
  else if (n != static_cast<ssize_t>(line.size()))
    written = make_error("write", tmp + ": short write (" + std::to_string(n) + " bytes)");
  else if (fsync(fd.get()) != 0)
    written = sys_error("fsync", tmp);
  fd.reset();
  // link, not rename: a file someone wrote meanwhile is theirs, kept.
  if (written && link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    // Another start made one first: that one is the token.
    if (err == EEXIST) {
      UniqueFd theirs(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
      if (theirs.valid()) return read_token_file(theirs.get(), path);
    }
    return sys_error_n(err, "link", path);
  }
  unlink(tmp.c_str());
  if (!written) return written.error();
  // The new name is durable only once the directory is: a crash before that
  // could bring back no token after clients were given this one.
  TRY(fsync_dir(state_dir));
  LOG_WARN("generated an admin token into %s (mode 0600)", path.c_str());
  return t;
}

}  // namespace

std::string token_text(std::string_view text) {
  const size_t b = text.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(b, e - b + 1));
}

Result<std::string> peek_admin_token(const std::string& config_token,
                                     const std::string& state_dir) {
  if (!config_token.empty()) return config_token;
  const std::string path = state_dir + "/token";
  // O_NONBLOCK: a FIFO planted there would otherwise hold the start (or
  // the reload's signal thread) in open().
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.valid()) return read_token_file(fd.get(), path);
  if (errno != ENOENT) return sys_error("open", path);
  // A symlink to nothing: generating a token would fail at the link; say
  // what is there instead.
  struct stat st;
  if (lstat(path.c_str(), &st) == 0)
    return make_error("token", path +
                                   " is a symlink to a missing file; point it at the token "
                                   "file, or delete it to have a token generated");
  return std::string();
}

Result<std::string> load_admin_token(const std::string& config_token,
                                     const std::string& state_dir) {
  remove_stale_temporaries(state_dir);
  std::string token = TRY(peek_admin_token(config_token, state_dir));
  if (!token.empty()) return token;
  return generate_token(state_dir + "/token", state_dir);
}

Status check_read_token(const std::string& read_token, const std::string& admin_token,
                        const std::string& config_source) {
  if (read_token.empty() || read_token != admin_token) return {};
  return make_error("read_token", config_source +
                                      ": [server] read_token is the admin token (the one in "
                                      "state_dir's token file): it would let every reader deploy "
                                      "and delete; choose a different read_token");
}

}  // namespace nsbox
