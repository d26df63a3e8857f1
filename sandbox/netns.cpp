#include "sandbox/netns.hpp"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "sandbox/privileges.hpp"

namespace nsbox {

namespace {

constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";

[[noreturn]] void cannot_go_home(int err) {
  fprintf(stderr, "nsbox: setns back into this process's network namespace: %s\n", strerror(err));
  abort();
}

// Whether this thread may come back to `home` once it has left: setns into
// the namespace it is in makes the same check (CAP_SYS_ADMIN over the
// namespace's owner) and changes nothing. It fails where a process is root
// of a user namespace that does not own its network namespace (a container
// sharing the host's network): there, nothing is made ahead.
Status check_can_return(int home) {
  if (setns(home, CLONE_NEWNET) != 0)
    return sys_error("setns", "this thread's own network namespace (to come back to it)");
  return {};
}

}  // namespace

Result<UniqueFd> make_network_namespace() {
  UniqueFd home(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  if (!home.valid()) return sys_error("open", kThreadNetns);
  TRY(check_can_return(home.get()));
  if (unshare(CLONE_NEWNET) != 0) return sys_error("unshare", "CLONE_NEWNET");
  UniqueFd made(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  const int open_err = errno;
  const int lo_err = made.valid() ? child_loopback_up() : 0;
  if (setns(home.get(), CLONE_NEWNET) != 0) cannot_go_home(errno);
  if (!made.valid()) return sys_error_n(open_err, "open", "the new network namespace");
  if (lo_err) return sys_error_n(lo_err, "loopback up", "a network namespace made ahead");
  return made;
}

Status NetnsVisit::enter(int fd) {
  home_.reset(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  if (!home_.valid()) return sys_error("open", kThreadNetns);
  if (Status s = check_can_return(home_.get()); !s) {
    home_.reset();
    return s;
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    const int err = errno;
    home_.reset();
    return sys_error_n(err, "setns", "a network namespace made ahead");
  }
  return {};
}

NetnsVisit::~NetnsVisit() {
  if (home_.valid() && setns(home_.get(), CLONE_NEWNET) != 0) cannot_go_home(errno);
}

}  // namespace nsbox
