#include "sandbox/instance.hpp"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "base/clock.hpp"
#include "sandbox/fd_passing.hpp"

namespace nsbox {

namespace {

constexpr int kLogPipeSize = 1 << 20;  // as a sandbox's: drained after each request

// The template's answer on the pipe: "k" once the instance is in its leaf,
// "e:<why>" when the template could not fork. Bytes only, read without
// blocking within timeout_ms.
Result<std::string> read_answer(int fd, int timeout_ms) {
  const uint64_t deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    uint64_t now = monotonic_ms();
    int rc = poll(&pfd, 1, now >= deadline ? 0 : static_cast<int>(deadline - now));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return sys_error("poll", "the fork answer");
    if (rc == 0)
      return Error(ETIMEDOUT, "fork", "the function template",
                   "no answer within " + std::to_string(timeout_ms) + " ms");
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return sys_error("read", "the fork answer");
    if (n == 0) return make_error("fork", "the function template exited or did not answer");
    return std::string(buf, static_cast<size_t>(n));
  }
}

}  // namespace

std::string format_instance_timings(const InstanceTimings& t) {
  char buf[256];
  if (t.v1) {
    // The move and the join leaf's removal come after the reply (settle()).
    snprintf(buf, sizeof buf,
             "leaves %.3f ms; send %.3f ms; fork and join %.3f ms; check join leaf %.3f ms; "
             "ready after %.3f ms",
             (t.leaves_ns - t.start_ns) / 1e6, (t.sent_ns - t.leaves_ns) / 1e6,
             (t.answered_ns - t.sent_ns) / 1e6, (t.moved_ns - t.answered_ns) / 1e6,
             (t.done_ns - t.start_ns) / 1e6);
  } else {
    snprintf(buf, sizeof buf,
             "leaves %.3f ms; send %.3f ms; fork and join %.3f ms; move %.3f ms; remove join "
             "leaf %.3f ms; ready after %.3f ms",
             (t.leaves_ns - t.start_ns) / 1e6, (t.sent_ns - t.leaves_ns) / 1e6,
             (t.answered_ns - t.sent_ns) / 1e6, (t.moved_ns - t.answered_ns) / 1e6,
             (t.done_ns - t.moved_ns) / 1e6, (t.done_ns - t.start_ns) / 1e6);
  }
  std::string line = buf;
  if (t.settled_ns) {
    snprintf(buf, sizeof buf, "; after the reply: moved to its own leaf %.3f ms later",
             (t.settled_ns - t.done_ns) / 1e6);
    line += buf;
  }
  return line;
}

ForkedInstance& ForkedInstance::operator=(ForkedInstance&& o) noexcept {
  if (this != &o) {
    (void)destroy();
    family_ = std::move(o.family_);
    limits_ = o.limits_;
    leaf_ = std::move(o.leaf_);
    timings_ = o.timings_;
    join_ = std::move(o.join_);
    kill_template_ = std::move(o.kill_template_);
    v1_memory_ = std::move(o.v1_memory_);
  }
  return *this;
}

Status ForkedInstance::destroy() {
  kill_template_ = nullptr;
  (void)join_.destroy();  // never settled: what is in it goes with the instance
  Status s = leaf_.valid() ? leaf_.destroy() : Status{};
  // Its room goes only with its leaf: a leaf left behind may still hold
  // a process, so the family keeps that room for good. Dropped either way:
  // the leaf no longer counts as ours (valid() is false once destroy has
  // run), and a second destroy (the destructor's) must not shrink it then.
  if (family_) {
    if (s) family_->shrink(limits_);
    family_.reset();
  }
  return s;
}

Status ForkedInstance::set_memory_limit(uint64_t bytes) {
  const uint64_t from = limits_.memory_bytes;
  // The family first when growing and last when shrinking, so that the
  // leaf never has room the family does not.
  if (bytes > from) TRY(family_->resize(from, bytes));
  TRY(leaf_.set_memory_limit(bytes, limits_.swap_bytes));
  if (bytes < from) (void)family_->resize(from, bytes);
  limits_.memory_bytes = bytes;
  return {};
}

Result<ForkedInstance> ForkedInstance::fork(const InstanceRequest& req, ChannelFds* channel,
                                            UniqueFd* log) {
  ForkedInstance inst;
  inst.timings_.start_ns = monotonic_ns();
  if (!req.family) return make_error("fork", "the function template has no family cgroup");
  TRY(req.family->grow(req.limits));
  inst.family_ = req.family;
  inst.limits_ = req.limits;
  const CgroupLayout& layout = req.family->layout();
  inst.leaf_ = TRY(CgroupLeaf::create(layout, req.id, req.limits));
  // Limited as the instance is: whatever is in it for the moment it
  // lives. No freeze leaf of its own: the hybrid layout's cgroup2 leaf is
  // joined after the reply (settle()).
  CgroupLayout join_layout = layout;
  join_layout.freeze = false;
  CgroupLeaf join = TRY(CgroupLeaf::create(join_layout, req.id + "-join", req.limits));
  std::vector<UniqueFd> procs = TRY(join.self_join_files());
  inst.timings_.leaves_ns = monotonic_ns();
  ChannelEnds ch = TRY(make_channel());
  int lp[2], ap[2];
  if (pipe2(lp, O_CLOEXEC) != 0) return sys_error("pipe2", "instance log");
  UniqueFd log_read(lp[0]), log_write(lp[1]);
  fcntl(lp[0], F_SETPIPE_SZ, kLogPipeSize);
  fcntl(lp[0], F_SETFL, O_NONBLOCK);
  if (pipe2(ap, O_CLOEXEC) != 0) return sys_error("pipe2", "fork answer");
  UniqueFd answer_read(ap[0]), answer_write(ap[1]);
  fcntl(ap[0], F_SETFL, O_NONBLOCK);

  std::vector<int> fds = {ch.runner_in.get(), ch.runner_out.get(), log_write.get(),
                          answer_write.get()};
  for (const UniqueFd& p : procs) fds.push_back(p.get());
  if (fds.size() > static_cast<size_t>(kMaxPassedFds))
    return make_error("fork", "too many cgroup hierarchies to pass");
  if (send_with_fds(req.fork_sock, "f", 1, fds.data(), static_cast<int>(fds.size())) != 1)
    return sys_error("send", "the function template's fork socket");
  // Only the template and its instance hold these from now on: EOF on the
  // answer pipe means both let go without a word.
  ch.runner_in.reset();
  ch.runner_out.reset();
  log_write.reset();
  answer_write.reset();
  procs.clear();
  inst.timings_.sent_ns = monotonic_ns();

  // From here on, a failure kills the template before the join leaf (and
  // the instance's leaf) are destroyed on the way out.
  auto failed = [&](Error e) -> Error {
    if (req.kill_template) req.kill_template();
    return e;
  };
  auto answer = read_answer(answer_read.get(), req.timeout_ms);
  if (!answer) return failed(std::move(answer).error());
  if (answer.value().rfind("e:", 0) == 0)
    return failed(
        make_error("fork", "the function template could not fork: " + answer.value().substr(2)));
  if (answer.value() != "k")
    return failed(make_error("fork", "malformed answer from the function template"));
  inst.timings_.answered_ns = monotonic_ns();
  if (layout.version == CgroupVersion::V1) {
    // It joined through `tasks`, which takes no machine-wide lock: one
    // thread, the same in every hierarchy. Moving it on to its own leaf
    // does take that lock (only a thread moving itself skips it), so that
    // is settle()'s, after the reply: until then it serves in the join
    // leaf, limited as in its own.
    const std::vector<std::vector<pid_t>> joined = join.v1_tasks();
    if (joined.empty()) return failed(make_error("fork", "no cgroup hierarchy to join"));
    for (const auto& tids : joined)
      if (tids.size() != 1 || tids[0] != joined[0][0])
        return failed(make_error(
            "fork", std::to_string(tids.size()) + " threads joined the instance's leaf, not one"));
    inst.join_ = std::move(join);
    inst.kill_template_ = req.kill_template;
    inst.v1_memory_ = layout.v1_memory;
    inst.timings_.v1 = true;
    inst.timings_.moved_ns = inst.timings_.done_ns = monotonic_ns();
  } else {
    const std::vector<pid_t> joined = join.procs();
    if (joined.size() != 1)
      return failed(make_error("fork", std::to_string(joined.size()) +
                                           " processes joined the instance's leaf, not one"));
    if (Status s = inst.leaf_.attach(joined[0]); !s)
      return failed(
          Error(s.error().err, "fork", "moving the instance to its leaf", s.error().message()));
    inst.timings_.moved_ns = monotonic_ns();
    if (Status s = join.remove_if_empty(); !s)
      return failed(Error(s.error().err, "fork", "removing the join leaf", s.error().message()));
    if (inst.leaf_.procs().empty())
      return failed(make_error("fork", "the instance left its cgroup leaf"));
    inst.timings_.done_ns = monotonic_ns();
  }
  *channel = std::move(ch.host);
  *log = std::move(log_read);
  inst.leaf_.close_dirfd();  // moved by its path, not cloned into
  return inst;
}

Status ForkedInstance::settle() {
  if (!join_.valid()) return {};
  auto kill = std::exchange(kill_template_, nullptr);
  // As in fork(): the template dies before the join leaf goes.
  auto failed = [&](Error e) -> Status {
    if (kill) kill();
    (void)join_.destroy();
    return e;
  };
  // Everything in the join leaf: the instance, and whatever it started
  // since it answered. Whole processes (cgroup.procs), in every hierarchy;
  // one that ended meanwhile is passed over. A join leaf that keeps
  // refilling, or holds more processes than the instance may have, is the
  // template's doing (and the spawner's time).
  // So that each pid is looked up as soon as it is read.
  (void)cgroup_warm_move_lock(std::exchange(v1_memory_, std::string()));
  uint64_t moved = 0;
  for (int round = 0; round < 8; round++) {
    const std::vector<pid_t> in = join_.procs();
    if (in.empty()) break;
    moved += in.size();
    if (moved > limits_.pids)
      return failed(make_error("fork", "the join leaf holds more processes than the instance may"));
    for (pid_t pid : in)
      if (Status s = leaf_.attach(pid); !s && s.error().err != ESRCH)
        return failed(
            Error(s.error().err, "fork", "moving the instance to its leaf", s.error().message()));
  }
  if (Status s = join_.remove_if_empty(); !s)
    return failed(Error(s.error().err, "fork", "removing the join leaf", s.error().message()));
  timings_.settled_ns = monotonic_ns();
  return {};
}

}  // namespace nsbox
