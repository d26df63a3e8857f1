#include "tools/stop_signals.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace nsbox {

namespace {

std::atomic<int> g_signal{0};
std::mutex g_mu;  // guards g_action, held while it runs
std::function<void()> g_action;

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGQUIT);  // Ctrl-\ ends a run as cleanly as Ctrl-C
  return set;
}

}  // namespace

void block_stop_signals() {
  sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void watch_stop_signals() {
  std::thread([set = stop_set()] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      int none = 0;
      g_signal.compare_exchange_strong(none, sig);
      std::lock_guard<std::mutex> lock(g_mu);
      if (g_action) g_action();
    }
  }).detach();
}

void on_stop_signal(std::function<void()> action) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_action = std::move(action);
}

int stop_signal() {
  return g_signal.load();
}

int die_of(int sig) {
  // SIGQUIT's default action dumps core: the run ended as asked, it did not
  // crash, and a core of nsbox run (root's, under sudo in the user's
  // directory) is nobody's to keep. Non-dumpable, not RLIMIT_CORE 0: a
  // core_pattern that pipes (systemd-coredump, apport) ignores the limit.
  prctl(PR_SET_DUMPABLE, 0);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  raise(sig);
  return 128 + sig;
}

}  // namespace nsbox
