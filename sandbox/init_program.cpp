#include "sandbox/init_program.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "base/result.hpp"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U  // Linux 6.3: executable, whatever vm.memfd_noexec says
#endif

namespace nsbox {

namespace {

Result<int> make_init_program() {
  const std::string path = TRY(sibling_program("nsbox-init"));
  UniqueFd in(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return sys_error("open", path);
  // MFD_EXEC is refused by kernels before 6.3, whose memfds are executable.
  int fd = memfd_create("nsbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) fd = memfd_create("nsbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return sys_error("memfd_create", "nsbox-init");
  UniqueFd out(fd);
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(in.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read", path);
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = write(out.get(), buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return sys_error("write", "nsbox-init memfd");
      done += w;
    }
  }
  if (fchmod(out.get(), 0111) != 0) return sys_error("fchmod", "nsbox-init memfd");
  if (fcntl(out.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return sys_error("fcntl(F_ADD_SEALS)", "nsbox-init memfd");
  return out.release();
}

std::once_flag g_once;
int g_fd = -1;

}  // namespace

int init_program_fd() {
  std::call_once(g_once, [] {
    Result<int> r = make_init_program();
    if (r) {
      g_fd = r.value();
    } else {
      LOG_WARN("sandboxes' PID 1 stays a copy of its creator (%s)", r.error().message().c_str());
    }
  });
  return g_fd;
}

bool init_program_adopt(int fd) {
  bool adopted = false;
  std::call_once(g_once, [&] {
    g_fd = fd;
    adopted = true;
  });
  return adopted;
}

}  // namespace nsbox
