// clone_sandbox_child with a borrowed address space (CloneRequest::shared_memory_pid),
// below every namespace layer so that it runs unprivileged: what the template relies on.
#include "sandbox/launch.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "base/fd.hpp"

using namespace nsbox;

namespace {

pid_t g_pid_slot = 0;   // the kernel's copy of the child's pid
pid_t g_announced = 0;  // what the child read from it, in our memory if it is shared
int g_release_fd = -1;  // the parent's end of the sync socket

// Runs in the child before step 0: reports through our memory and releases itself (the
// parent sleeps until the child execs or exits, so it cannot).
void announce(const ChildPlan&) {
  g_announced = g_pid_slot;
  (void)!write(g_release_fd, "g", 1);
}

// The runner (PID 1's fork, going on in-process as a template's does), before anything
// else: is its rseq area registered (registering it again must say EBUSY), and is it
// dumpable again? Its answer goes out on fd 4, the reply pipe.
void runner_reports(const ChildPlan&) {
  const char* rseq = "off";
  if (__rseq_size > 0) {
    auto* area = reinterpret_cast<struct rseq*>(static_cast<char*>(__builtin_thread_pointer()) +
                                                __rseq_offset);
    long r = syscall(SYS_rseq, area, __rseq_size > 32 ? __rseq_size : 32, 0, RSEQ_SIG);
    rseq = r == 0 ? "unregistered" : errno == EBUSY ? "registered" : "error";
  }
  char out[64];
  int n = snprintf(out, sizeof out, "rseq=%s dumpable=%d", rseq, prctl(PR_GET_DUMPABLE));
  (void)!write(4, out, static_cast<size_t>(n));
  _exit(0);
}

// Step 13 seals the address space the child shares: ours. Put it back however the test ends.
struct RestoreDumpable {
  int was = prctl(PR_GET_DUMPABLE);
  ~RestoreDumpable() { prctl(PR_SET_DUMPABLE, was); }
};

}  // namespace

TEST_CASE("a PID 1 that borrows its cloner's memory reports through it and must exec or fail") {
  if constexpr (!kCloneCanShareMemory) {
    MESSAGE("no shared-memory clone on this architecture");
    return;
  }
  int sync[2], req[2], rep[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) == 0);
  REQUIRE(pipe2(req, O_CLOEXEC) == 0);
  REQUIRE(pipe2(rep, O_CLOEXEC) == 0);
  ChildPlan plan;
  plan.layers = kLayerNone;
  plan.root_mode = false;
  plan.uid = getuid();
  plan.gid = getgid();
  static char true_path[] = "/bin/true";
  plan.argv = {true_path, nullptr};
  plan.envp = {nullptr};
  plan.sync_fd = sync[1];
  plan.parent_sync_fd = sync[0];
  plan.request_fd = req[0];
  plan.reply_fd = rep[1];
  plan.init_program_fd = -1;  // no nsbox-init: PID 1 cannot exec, so it must fail
  plan.shares_memory = true;
  plan.announce = announce;
  g_pid_slot = g_announced = 0;
  g_release_fd = sync[0];

  CloneRequest cr;
  cr.ids.rootless = true;
  RestoreDumpable restore;
  SUBCASE("the request and the plan must agree") {
    int pidfd = -1;
    auto r = clone_sandbox_child(plan, cr, &pidfd);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("disagree") != std::string::npos);
  }
  SUBCASE("shared") {
    cr.shared_memory_pid = &g_pid_slot;
    int pidfd = -1;
    auto r = clone_sandbox_child(plan, cr, &pidfd);
    REQUIRE(r);
    close(pidfd);
    // By now the child has exited (we slept until then); its write is in our memory,
    // which a copy-on-write child could not do.
    CHECK(g_pid_slot == r.value());
    CHECK(g_announced == r.value());
    int status = 0;
    REQUIRE(waitpid(r.value(), &status, 0) == r.value());
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 127);
    // It said why, at step 14, rather than staying to reap in-process (which would have
    // kept us asleep).
    bool saw_error = false;
    ChildMsg msg;
    while (recv(sync[0], &msg, sizeof msg, MSG_DONTWAIT) == sizeof msg) {
      if (msg.type != ChildMsg::kError) continue;
      saw_error = true;
      CHECK(msg.step == kStepForkInit);
      CHECK(std::string(msg.context).find("exec nsbox-init") != std::string::npos);
    }
    CHECK(saw_error);
    CHECK(prctl(PR_GET_DUMPABLE) == 0);  // step 13 ran in our memory
  }
  SUBCASE("the runner forked from it has a registration and a dumpable memory of its own") {
    // A stand-in for nsbox-init that stays: sleep, given the runner's pid as its seconds.
    UniqueFd init(open("/bin/sleep", O_RDONLY | O_CLOEXEC));
    REQUIRE(init.valid());
    plan.init_program_fd = init.get();
    plan.run_in_process = runner_reports;
    cr.shared_memory_pid = &g_pid_slot;
    int pidfd = -1;
    auto r = clone_sandbox_child(plan, cr, &pidfd);
    REQUIRE(r);
    close(pidfd);
    CHECK(g_announced == r.value());
    struct pollfd pfd = {rep[0], POLLIN, 0};
    REQUIRE(poll(&pfd, 1, 10000) == 1);
    char got[64] = {};
    REQUIRE(read(rep[0], got, sizeof got - 1) > 0);
    CHECK(std::string(got) ==
          std::string(__rseq_size > 0 ? "rseq=registered" : "rseq=off") + " dumpable=1");
    kill(r.value(), SIGKILL);  // the runner dies with it (PR_SET_PDEATHSIG)
    int status = 0;
    CHECK(waitpid(r.value(), &status, 0) == r.value());
  }
  for (int fd : {sync[0], sync[1], req[0], req[1], rep[0], rep[1]}) close(fd);
}
