// clone_sandbox_child with a borrowed address space (CloneRequest::shared_memory_pid),
// below every namespace layer so that it runs unprivileged: what the template relies on.
#include "sandbox/launch.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

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
    // Step 13 sealed the address space it shared: ours. Put it back.
    CHECK(prctl(PR_GET_DUMPABLE) == 0);
    prctl(PR_SET_DUMPABLE, 1);
  }
  for (int fd : {sync[0], sync[1], req[0], req[1], rep[0], rep[1]}) close(fd);
}
