// nsbox-init: a sandbox's PID 1 once setup is done (docs/architecture.md §3,
// step 14). PID 1 forks the runner and then execs this, from a sealed memfd
// the sandbox may execute but not read (sandbox/init_program.hpp), so that it
// stops holding a copy of its parent's address space: the spawner's, or the
// template's whole interpreter. It reaps orphans and exits with the runner's
// status; its exit kills the rest of the namespace.
//
// Static, so that the exec loads nothing from the sandbox's root. An
// unreadable program leaves the process non-dumpable where fs.suid_dumpable
// is 0 or 2 (0 or root-only); this says so again first, for hosts where it
// is 1, and only then closes every fd, the sync socket included: that EOF is
// what lets the daemon send the sandbox its first request.

#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>

#include "sandbox/init_reaper.hpp"

int main(int argc, char** argv) {
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // An exec from an fd names the process after the fd's number.
  prctl(PR_SET_NAME, "nsbox-init", 0, 0, 0);
  // argv: the runner's pid, and whether to load PID 1's filter.
  if (argc != 3) _exit(127);
  char* end = nullptr;
  long runner = strtol(argv[1], &end, 10);
  if (*end || runner <= 0) _exit(127);
  nsbox::init_reap(static_cast<pid_t>(runner), argv[2][0] == '1');
}
