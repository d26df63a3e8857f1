// Where the fds of frozen idle sandboxes wait. Every process has its own
// open-files limit (20,000 hard on the machines nsbox is measured on, and
// unraisable there without CAP_SYS_RESOURCE), and the gateway holds four fds
// per sandbox: on its own it stops near 4,700 sandboxes. A frozen sandbox
// reads and writes nothing, so its fds can wait in a keeper process
// (tools/nsbox_fdkeeper.cpp) until it is thawed: the gateway's own table
// then holds only the sandboxes in use or just released, and as many
// keepers as it takes hold the rest (each with a table of its own).
//
// The keepers are exec'd with posix_spawn (the gateway must not fork), hold
// the fds and nothing else, and go when the gateway closes their socket.
// Thread-safe: parks come from the freezer under the pool's lock, so park()
// and drop() never wait for a keeper; take() waits for its answer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"

namespace nsbox {

class FdParking {
 public:
  // keeper_program: the path of nsbox-fdkeeper. Starts no keeper yet.
  explicit FdParking(std::string keeper_program);
  ~FdParking();
  FdParking(const FdParking&) = delete;
  FdParking& operator=(const FdParking&) = delete;

  struct Ticket {
    size_t keeper = SIZE_MAX;
    uint64_t tag = 0;
    uint32_t nfds = 0;
    bool valid() const { return keeper != SIZE_MAX; }
  };
  // Starts a keeper now, unless a live one has room for `room` more fds (at
  // most half a keeper's), and sends the drops that waited: an error when
  // none can be started (at start-up: then nothing should be parked). The
  // keeper starts outside every lock, since drop() runs under the pool's.
  Status prepare(uint32_t room = 0);
  // Hands the fds to a keeper, under tag (unique among parked ones), and
  // closes ours. On an error nothing moved and the fds are still ours.
  Result<Ticket> park(uint64_t tag, const std::vector<UniqueFd*>& fds);
  // Gives back what park() took, in its order. An error when the keeper
  // lost them (it died) or did not answer in time: the sandbox is lost.
  Result<std::vector<UniqueFd>> take(const Ticket& t);
  // The keeper closes what it holds under the ticket. Never waits.
  void drop(const Ticket& t);

  // True while parking pauses after a keeper's queue was full: park()
  // would fail with EAGAIN now, and may work again shortly.
  bool paused() const;
  size_t parked() const;   // sandboxes whose fds a keeper holds
  size_t keepers() const;  // keeper processes started and alive

 private:
  struct Keeper;
  bool start_failed_ = false;                      // under mu_: prepare()'s last start failed
  Result<size_t> keeper_with_room(uint32_t nfds);  // under mu_
  // Under mu_: a live keeper with room for nfds (reaping dead ones on the
  // way), or SIZE_MAX; and whether another may be started.
  size_t find_room(uint64_t nfds);
  Status may_start() const;
  size_t add_keeper(std::unique_ptr<Keeper> k);  // under mu_; its index
  void mark_dead(Keeper& k);                     // under mu_
  // Under mu_: a send to k found its queue full. Parking pauses; a keeper
  // that has taken nothing for kTakeTimeoutMs is taken for hung.
  void note_full(Keeper& k);
  // Under mu_: tells the keepers to close what a drop could not reach them
  // about (their queues were full). Never waits.
  void send_drops();
  bool send_drop(const Ticket& t, int wait_ms);  // under mu_; false: EAGAIN
  Result<std::unique_ptr<Keeper>> start_keeper();

  const std::string program_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Keeper>> keepers_;
  size_t parked_ = 0;
  std::vector<Ticket> unsent_drops_;  // still counted in their keepers' held
  uint64_t congested_until_ms_ = 0;   // no park tried before (monotonic_ms)
};

// A worker's parked fds: dropped at the keeper when it goes unthawed.
class ParkedFds {
 public:
  ParkedFds() = default;
  ParkedFds(FdParking* parking, FdParking::Ticket t) : parking_(parking), ticket_(t) {}
  ParkedFds(ParkedFds&& o) noexcept { *this = std::move(o); }
  ParkedFds& operator=(ParkedFds&& o) noexcept {
    if (this != &o) {
      reset();
      parking_ = std::exchange(o.parking_, nullptr);
      ticket_ = o.ticket_;
    }
    return *this;
  }
  ~ParkedFds() { reset(); }
  bool valid() const { return parking_ != nullptr; }
  // The fds back, in park() order; invalid afterwards either way.
  Result<std::vector<UniqueFd>> take();
  void reset();

 private:
  FdParking* parking_ = nullptr;
  FdParking::Ticket ticket_;
};

}  // namespace nsbox
