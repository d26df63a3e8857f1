// Network namespaces made ahead of the sandboxes that get them. A new one
// is ~0.3 ms of kernel work (every per-namespace network subsystem's init,
// ten times any other namespace here), then bringing its loopback up; a
// helper process of the spawner's makes them on the other core, and a clone
// enters one instead of passing CLONE_NEWNET (docs/architecture.md §2).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"

namespace nsbox {

// A new network namespace with its loopback up, as an nsfs fd (close-on-
// exec). Needs CAP_SYS_ADMIN and CAP_NET_ADMIN in the caller's user
// namespace, which owns the new one, and over the caller's own network
// namespace, checked first. The calling thread is back in its own network
// namespace when this returns; a thread that still cannot go back is not
// let go on (abort): it would make sockets in the wrong place.
Result<UniqueFd> make_network_namespace();

// The calling thread in network namespace `fd` for this object's lifetime
// (the namespaces a clone3 without CLONE_NEWNET hands its child). enter()
// checks first that the thread may come back; if it then cannot, the
// process aborts, as above.
class NetnsVisit {
 public:
  NetnsVisit() = default;
  NetnsVisit(const NetnsVisit&) = delete;
  NetnsVisit& operator=(const NetnsVisit&) = delete;
  ~NetnsVisit();
  Status enter(int fd);

 private:
  UniqueFd home_;
};

// A helper process ("nsbox-netns", forked from the caller) that keeps `keep`
// namespaces made ahead: top_up() asks it for as many as were taken, and it
// makes them while the caller goes on, so the ~0.4 ms leaves the caller's
// path even when requests come back to back. Ask after the sandbox that took
// one is made, not before: made meanwhile, the next one competes with that
// sandbox's own setup for the CPU. It reads only one-byte asks from its
// socket and dies with its parent. Fork it from a single-threaded process
// that holds nothing the helper may not have: it closes every fd but its
// socket and 0-2, and only ever _exits.
class NetnsMaker {
 public:
  NetnsMaker() = default;
  NetnsMaker(NetnsMaker&& o) noexcept { *this = std::move(o); }
  NetnsMaker& operator=(NetnsMaker&& o) noexcept;
  ~NetnsMaker() { stop(); }

  // Starts the helper; it makes nothing before the first top_up().
  static Result<NetnsMaker> start(size_t keep);
  // start()s the helper unless it runs or may not be started yet: one that
  // delivered a namespace and then died is started again `retry_ms` after
  // its start; one that never delivered (a host that refuses) is not started
  // again, and the sandboxes make their own. Says each failure in one line.
  void ensure_running(size_t keep, uint64_t retry_ms = 60000);
  // A namespace made ahead, or an invalid fd when none is ready (the clone
  // then makes its own). Never blocks.
  UniqueFd take();
  // Asks for enough to bring made and asked-for ones back to `keep`.
  void top_up();
  // Takes in what the helper sent meanwhile (the socket polls readable).
  void collect();
  int socket_fd() const { return sock_.get(); }
  size_t ready() const { return ready_.size(); }
  bool running() const { return sock_.valid(); }
  pid_t pid() const { return pid_; }
  // Kills and reaps the helper; the namespaces it held go with it.
  void stop();

 private:
  pid_t pid_ = -1;
  UniqueFd sock_;
  std::vector<UniqueFd> ready_;
  size_t keep_ = 0;
  size_t asked_ = 0;      // asked for and not yet received
  size_t delivered_ = 0;  // by this helper, kept after stop(): whether it worked
  // ensure_running()'s restart policy, kept across the helpers it starts.
  uint64_t retry_at_ms_ = 0;
  bool refused_ = false;
};

}  // namespace nsbox
