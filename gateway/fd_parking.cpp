#include "gateway/fd_parking.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "base/spawn.hpp"
#include "gateway/fd_keeper_wire.hpp"
#include "sandbox/fd_passing.hpp"

namespace nsbox {

namespace {

// A keeper's own fds (stdio, its socket) and some slack.
constexpr uint64_t kKeeperOwnFds = 16;
// 64 keepers of 20,000 fds: 320,000 parked sandboxes, beyond any pid_max.
constexpr size_t kMaxKeepers = 64;
// Dead keepers stay listed (a take may still be using one) until the
// parking goes: a keeper killed again and again stops being replaced here.
constexpr size_t kMaxKeepersEver = 1024;
// park() and drop() run under the pool's lock: a keeper that does not take
// a message at once is given this long, and then parking pauses for
// kCongestedMs rather than make every due sandbox wait as long again.
constexpr int kSendWaitMs = 5;
constexpr uint64_t kCongestedMs = 100;
// A keeper that has not answered a take, or taken any message, in this long
// is taken for hung: killed, with what it held (those sandboxes are lost,
// and cold-start).
constexpr int kTakeTimeoutMs = 2000;
constexpr int kHelloTimeoutMs = 5000;

// Sends one message (and fds), waiting up to wait_ms for room. 0 or errno.
int send_msg(int sock, const KeeperMsg& m, const int* fds, int nfds, int wait_ms) {
  const uint64_t deadline = monotonic_ms() + static_cast<uint64_t>(wait_ms);
  for (;;) {
    ssize_t n = send_with_fds(sock, &m, sizeof m, fds, nfds);
    if (n == static_cast<ssize_t>(sizeof m)) return 0;
    if (n >= 0) return EIO;
    if (errno != EAGAIN) return errno;
    const uint64_t now = monotonic_ms();
    if (now >= deadline) return EAGAIN;
    struct pollfd pfd = {sock, POLLOUT, 0};
    poll(&pfd, 1, static_cast<int>(deadline - now));
  }
}

// One message (and up to kKeeperMaxFds fds) within deadline_ms. 0, or
// ETIMEDOUT, or EPIPE for EOF, or errno.
int recv_msg(int sock, KeeperMsg* m, std::vector<UniqueFd>* fds, uint64_t deadline_ms) {
  for (;;) {
    const uint64_t now = monotonic_ms();
    if (now >= deadline_ms) return ETIMEDOUT;
    struct pollfd pfd = {sock, POLLIN, 0};
    int rc = poll(&pfd, 1, static_cast<int>(deadline_ms - now));
    if (rc < 0 && errno != EINTR) return errno;
    if (rc <= 0) continue;
    int got[kKeeperMaxFds] = {-1, -1, -1, -1};
    ssize_t n = recv_with_fds(sock, m, sizeof *m, got, kKeeperMaxFds);
    fds->clear();
    for (int fd : got)
      if (fd >= 0) fds->emplace_back(fd);
    if (n < 0 && errno == EAGAIN) continue;
    if (n < 0) return errno;
    if (n == 0) return EPIPE;
    if (n == static_cast<ssize_t>(sizeof *m)) return 0;
  }
}

}  // namespace

struct FdParking::Keeper {
  UniqueFd sock;               // non-blocking
  pid_t pid = -1;              // -1 once reaped
  uint64_t capacity = 0;       // fds it may hold
  uint64_t held = 0;           // fds it holds, or may still hold
  bool alive = true;           // under mu_; once false, never used again
  uint64_t full_since_ms = 0;  // under mu_: sends have found its queue full since (0: no)
  std::mutex take_mu;          // one kTake answer awaited at a time
};

// Under mu_. Killed so that what it holds is closed, not kept by a hung
// keeper; reaped later (find_room, ~FdParking).
void FdParking::mark_dead(Keeper& k) {
  if (!k.alive) return;
  k.alive = false;
  if (k.pid > 0) ::kill(k.pid, SIGKILL);
  LOG_WARN("pool: fd keeper %d is gone; the sandboxes whose fds it held will be made again",
           static_cast<int>(k.pid));
}

FdParking::FdParking(std::string keeper_program) : program_(std::move(keeper_program)) {}

Result<std::unique_ptr<FdParking::Keeper>> FdParking::start_keeper() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return sys_error("socketpair", "fd keeper");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  // Before the keeper exists: a bad_alloc after it would leave it running,
  // and a zombie once it saw its socket close.
  auto k = std::make_unique<Keeper>();
  // stdout to /dev/null, stderr the daemon's (a keeper says why it ends).
  auto spawned = spawn_program({program_}, {}, {{1, -1}, {kKeeperSockFd, theirs.get()}});
  if (!spawned) return spawned.error();
  const pid_t pid = spawned.value();
  theirs.reset();
  k->pid = pid;
  k->sock = std::move(ours);
  fcntl(k->sock.get(), F_SETFL, O_NONBLOCK);
  KeeperMsg hello;
  std::vector<UniqueFd> none_fds;
  int err = recv_msg(k->sock.get(), &hello, &none_fds, monotonic_ms() + kHelloTimeoutMs);
  if (err != 0 || hello.op != KeeperMsg::kHello || hello.value <= kKeeperOwnFds + kKeeperMaxFds) {
    k->sock.reset();
    kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return make_error("fd keeper", program_ + " did not start (" +
                                       (err ? std::string(std::strerror(err)) : "bad hello") + ")");
  }
  k->capacity = hello.value - kKeeperOwnFds;
  return k;
}

size_t FdParking::find_room(uint64_t nfds) {
  for (auto& k : keepers_) {
    if (k->alive) continue;
    if (k->pid > 0 && waitpid(k->pid, nullptr, WNOHANG) == k->pid) k->pid = -1;
    // Its socket too, unless a take still waits on it (a take looks at
    // alive, under mu_, before it touches the socket).
    if (k->sock.valid() && k->take_mu.try_lock()) {
      k->sock.reset();
      k->take_mu.unlock();
    }
  }
  for (size_t i = 0; i < keepers_.size(); i++) {
    if (keepers_[i]->alive && keepers_[i]->held + nfds <= keepers_[i]->capacity) return i;
  }
  return SIZE_MAX;
}

Status FdParking::may_start() const {
  size_t alive = 0;
  for (const auto& k : keepers_) alive += k->alive;
  if (alive >= kMaxKeepers || keepers_.size() >= kMaxKeepersEver)
    return make_error("fd keeper", "every keeper is full");
  return {};
}

Result<size_t> FdParking::keeper_with_room(uint32_t nfds) {
  if (size_t i = find_room(nfds); i != SIZE_MAX) return i;
  TRY(may_start());
  // Not started here: this runs under the pool's lock, and a start may take
  // up to kHelloTimeoutMs, during which every acquire and release in the
  // daemon would wait. The freezer's next prepare() starts one unlocked;
  // until then the sandbox is frozen on a later pass (EAGAIN). Unless the
  // last start failed: then it stays frozen with its fds here (not EAGAIN,
  // which would thaw and freeze it again every pass while starts fail).
  if (start_failed_)
    return Error(ECHILD, "park", "no fd keeper has room, and the last one could not start");
  return Error(EAGAIN, "park", "no fd keeper has room; one is started before the next pass");
}

size_t FdParking::add_keeper(std::unique_ptr<Keeper> k) {
  keepers_.push_back(std::move(k));
  LOG_INFO("pool: started fd keeper %zu (pid %d) for frozen sandboxes' fds", keepers_.size(),
           static_cast<int>(keepers_.back()->pid));
  return keepers_.size() - 1;
}

Status FdParking::prepare(uint32_t room) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    send_drops();
    // Never more than half a keeper's room, so that a small open-files limit
    // does not start a keeper on every call.
    uint64_t want = room;
    for (auto& k : keepers_) want = std::min<uint64_t>(want, k->capacity / 2);
    if (find_room(want) != SIZE_MAX) {
      start_failed_ = false;  // room again: parks may wait for a start again
      return {};
    }
    TRY(may_start());
  }
  // Unlocked: a start takes milliseconds (up to kHelloTimeoutMs), and a drop
  // under the pool's lock must not wait for it. Once the pool runs only its
  // freezer thread prepares, so two starts do not race.
  auto k = start_keeper();
  std::lock_guard<std::mutex> lock(mu_);
  start_failed_ = !k;
  if (!k) return k.error();
  add_keeper(std::move(k.value()));
  return {};
}

void FdParking::note_full(Keeper& k) {
  const uint64_t now = monotonic_ms();
  congested_until_ms_ = now + kCongestedMs;
  if (k.full_since_ms == 0) {
    k.full_since_ms = now;
    return;
  }
  if (now - k.full_since_ms < static_cast<uint64_t>(kTakeTimeoutMs)) return;
  LOG_WARN("pool: fd keeper %d has taken no message for %llu ms", static_cast<int>(k.pid),
           static_cast<unsigned long long>(now - k.full_since_ms));
  mark_dead(k);  // hung: what it held goes with it, and parking goes on with a new one
}

Result<FdParking::Ticket> FdParking::park(uint64_t tag, const std::vector<UniqueFd*>& fds) {
  if (fds.empty() || fds.size() > static_cast<size_t>(kKeeperMaxFds))
    return make_error("park", "bad fd count");
  std::vector<int> raw;
  for (UniqueFd* f : fds) {
    if (!f->valid()) return make_error("park", "an fd is not open");
    raw.push_back(f->get());
  }
  std::lock_guard<std::mutex> lock(mu_);
  send_drops();
  if (monotonic_ms() < congested_until_ms_)
    return Error(EAGAIN, "park", "the fd keepers are busy; trying again shortly");
  const uint32_t n = static_cast<uint32_t>(raw.size());
  KeeperMsg m;
  m.op = KeeperMsg::kPark;
  m.nfds = n;
  m.tag = tag;
  // A keeper found dead on the way is passed over once for a new one.
  size_t i = 0;
  for (int attempt = 1;; attempt++) {
    i = TRY(keeper_with_room(n));
    Keeper& k = *keepers_[i];
    int err = send_msg(k.sock.get(), m, raw.data(), static_cast<int>(n), kSendWaitMs);
    if (err == 0) {
      k.full_since_ms = 0;
      break;
    }
    if (err == EAGAIN)
      note_full(k);
    else
      mark_dead(k);
    if (err == EAGAIN || attempt == 2)
      return Error(err, "park", "sending to fd keeper " + std::to_string(k.pid),
                   std::strerror(err));
  }
  Keeper& k = *keepers_[i];
  for (UniqueFd* f : fds) f->reset();
  k.held += n;
  parked_++;
  return Ticket{i, tag, n};
}

Result<std::vector<UniqueFd>> FdParking::take(const Ticket& t) {
  Keeper* k = nullptr;
  std::string who;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (t.keeper >= keepers_.size()) return make_error("unpark", "no such keeper");
    k = keepers_[t.keeper].get();  // keepers are never removed before ~FdParking
    parked_--;
    if (!k->alive) return make_error("unpark", "the fd keeper that held them is gone");
    who = "fd keeper " + std::to_string(k->pid);
  }
  // The keeper's count goes down only once it has let go of the fds (it
  // answered, was told to drop them, or died): until then a park must not
  // overfill it, since the kernel would drop the fds past its limit.
  bool let_go = false;
  struct Unheld {
    FdParking* p;
    Keeper* k;
    uint32_t n;
    const bool* let_go;
    ~Unheld() {
      std::lock_guard<std::mutex> lock(p->mu_);
      if (*let_go || !k->alive) k->held -= std::min<uint64_t>(k->held, n);
    }
  } unheld{this, k, t.nfds, &let_go};
  std::lock_guard<std::mutex> one(k->take_mu);
  {
    std::lock_guard<std::mutex> lock(mu_);  // it may have died while we waited our turn
    if (!k->alive) return make_error("unpark", "the fd keeper that held them is gone");
  }
  KeeperMsg m;
  m.op = KeeperMsg::kTake;
  m.tag = t.tag;
  const uint64_t deadline = monotonic_ms() + kTakeTimeoutMs;
  int err = send_msg(k->sock.get(), m, nullptr, 0, kTakeTimeoutMs);
  for (;;) {
    KeeperMsg reply;
    std::vector<UniqueFd> fds;
    if (err == 0) err = recv_msg(k->sock.get(), &reply, &fds, deadline);
    if (err) {
      // Dead, or hung (no room for our question, or no answer in time).
      std::lock_guard<std::mutex> lock(mu_);
      mark_dead(*k);
      return Error(err, "unpark", who, std::strerror(err));
    }
    // An answer to an earlier take whose sandbox was given up: its fds go.
    if (reply.op != KeeperMsg::kTake || reply.tag != t.tag) continue;
    let_go = true;
    if (fds.size() != t.nfds || reply.nfds != t.nfds)
      return make_error("unpark", who + " gave back " + std::to_string(fds.size()) + " of " +
                                      std::to_string(t.nfds) + " fds");
    return fds;
  }
}

bool FdParking::send_drop(const Ticket& t, int wait_ms) {
  Keeper& k = *keepers_[t.keeper];
  if (!k.alive) return true;  // what it held went with it
  KeeperMsg m;
  m.op = KeeperMsg::kDrop;
  m.tag = t.tag;
  int err = send_msg(k.sock.get(), m, nullptr, 0, wait_ms);
  if (err == 0) {
    k.held -= std::min<uint64_t>(k.held, t.nfds);
    k.full_since_ms = 0;
    return true;
  }
  if (err == EAGAIN) {
    note_full(k);
    return !k.alive;  // a hung keeper killed: what it held is closed
  }
  LOG_WARN("pool: fd keeper %d cannot be told to close a gone sandbox's fds: %s",
           static_cast<int>(k.pid), std::strerror(err));
  mark_dead(k);  // a keeper that cannot take a message is as good as hung
  return true;
}

void FdParking::send_drops() {
  if (unsent_drops_.empty() || monotonic_ms() < congested_until_ms_) return;
  // Each keeper's own: one whose queue is still full keeps its drops, and
  // the others' go.
  std::vector<Ticket> left;
  for (const Ticket& t : unsent_drops_)
    if (!send_drop(t, 0)) left.push_back(t);
  unsent_drops_.swap(left);
}

void FdParking::drop(const Ticket& t) {
  std::lock_guard<std::mutex> lock(mu_);
  if (t.keeper >= keepers_.size()) return;
  parked_--;
  send_drops();
  // While the keepers' queues are full, not even the short wait: drops
  // come in bulk (an eviction, a revoke) and under the pool's lock. One
  // that finds a queue full is sent later (the fds stay counted as held
  // until then, so the keeper is never overfilled).
  const bool congested = monotonic_ms() < congested_until_ms_;
  if (congested || !send_drop(t, kSendWaitMs)) unsent_drops_.push_back(t);
}

bool FdParking::paused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return monotonic_ms() < congested_until_ms_;
}

size_t FdParking::parked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parked_;
}

size_t FdParking::keepers() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& k : keepers_) n += k->alive;
  return n;
}

FdParking::~FdParking() {
  // EOF on its socket ends each keeper; whatever it held closes with it.
  for (auto& k : keepers_) k->sock.reset();
  for (auto& k : keepers_)
    if (k->pid > 0)
      while (waitpid(k->pid, nullptr, 0) < 0 && errno == EINTR) {
      }
}

Result<std::vector<UniqueFd>> ParkedFds::take() {
  FdParking* p = std::exchange(parking_, nullptr);
  if (!p) return make_error("unpark", "nothing parked");
  return p->take(ticket_);
}

void ParkedFds::reset() {
  if (FdParking* p = std::exchange(parking_, nullptr)) p->drop(ticket_);
}

}  // namespace nsbox
