#include "gateway/admin_token.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "gateway/config.hpp"

namespace nsbox {

namespace {

constexpr size_t kMinTokenChars = 16;  // as the config's token

// Blanks and a line break at its end are an editor's, not the token's.
Result<std::string> read_token_file(int fd, const std::string& path) {
  auto got = read_up_to(fd, 4096);
  if (!got) return sys_error_n(got.error().err, "read", path);
  const std::string& text = got.value();
  std::string t = text.substr(0, text.find('\n'));
  while (!t.empty() && (t.back() == '\r' || t.back() == ' ' || t.back() == '\t')) t.pop_back();
  if (!token_chars_ok(t))
    return make_error("token", path +
                                   " holds a token with spaces or control characters, which no "
                                   "Authorization header can carry; put one line of printable "
                                   "ASCII in it, or delete it to have one generated");
  if (t.size() < kMinTokenChars)
    return make_error("token", path + " holds a token of " + std::to_string(t.size()) +
                                   " characters; a token needs at least " +
                                   std::to_string(kMinTokenChars) +
                                   ": put a longer one in it (e.g. the output of `openssl rand "
                                   "-hex 24`), or delete it to have one generated");
  return t;
}

Result<std::string> generate_token(const std::string& path, const std::string& state_dir) {
  unsigned char r[24];
  if (getrandom(r, sizeof r, 0) != sizeof r) return sys_error("getrandom", "token");
  std::string t;
  char hex[3];
  for (unsigned char b : r) {
    snprintf(hex, sizeof hex, "%02x", b);
    t += hex;
  }
  std::string tmp = path + ".tmp";
  unlink(tmp.c_str());
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return sys_error("open", tmp);
  std::string line = t + "\n";
  if (write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      fsync(fd.get()) != 0)
    return sys_error("write", tmp);
  fd.reset();
  // link, not rename: a file someone wrote meanwhile is theirs, kept.
  if (link(tmp.c_str(), path.c_str()) != 0) {
    Error e = sys_error("link", path);
    unlink(tmp.c_str());
    return e;
  }
  unlink(tmp.c_str());
  // The new name is durable only once the directory is: a crash before that
  // could bring back no token after clients were given this one.
  TRY(fsync_dir(state_dir));
  LOG_WARN("generated an admin token into %s (mode 0600)", path.c_str());
  return t;
}

}  // namespace

Result<std::string> load_admin_token(const std::string& config_token,
                                     const std::string& state_dir) {
  if (!config_token.empty()) return config_token;
  const std::string path = state_dir + "/token";
  // O_NONBLOCK: a FIFO planted there would otherwise hold the start (or
  // the reload's signal thread) in open().
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.valid()) return read_token_file(fd.get(), path);
  if (errno != ENOENT) return sys_error("open", path);
  return generate_token(path, state_dir);
}

}  // namespace nsbox
