// Network namespaces made ahead of the sandboxes that get them. A new one
// is ~0.3 ms of kernel work (every per-namespace network subsystem's init,
// ten times any other namespace here), then bringing its loopback up; a
// spawner makes a few while no request waits and a clone enters one instead
// of passing CLONE_NEWNET (docs/architecture.md §2, "Made ahead").
#pragma once

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

}  // namespace nsbox
