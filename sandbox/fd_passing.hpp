// One message and up to kMaxPassedFds fds over a unix socket (SCM_RIGHTS):
// the spawner's replies to the gateway and a template's clone requests.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace nsbox {

// The most any message carries: a fork request (three channel fds, an answer
// pipe and a cgroup.procs per cgroup v1 hierarchy) or a template's clone
// request (sandbox/template.cpp).
constexpr int kMaxPassedFds = 16;

// MSG_NOSIGNAL, retried on EINTR. Returns what sendmsg returns.
ssize_t send_with_fds(int sock, const void* data, size_t len, const int* fds, int nfds);
// Received fds are close-on-exec; those beyond max_fds are closed. Returns
// what recvmsg returns; fds[0..got) are set, the rest left as they were.
ssize_t recv_with_fds(int sock, void* data, size_t len, int* fds, int max_fds);

}  // namespace nsbox
