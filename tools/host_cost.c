// What the kernel operations a sandbox is made of cost on this host
// (docs/benchmarks.md, "A floor under the creation rate"). Not built by
// meson; static, so that its own exec maps no shared library:
//   cc -O2 -static -o /tmp/host_cost tools/host_cost.c && /tmp/host_cost
// Prints the wall time of each, and for the first two the share the kernel
// accounted as user time: on a paravirtualized guest the cost of entering
// and leaving the kernel can land there, so a process's "user" time is not
// all its own code.
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static double user_share(const struct rusage* a, const struct rusage* b) {
  double u =
      (b->ru_utime.tv_sec - a->ru_utime.tv_sec) * 1e6 + (b->ru_utime.tv_usec - a->ru_utime.tv_usec);
  double s =
      (b->ru_stime.tv_sec - a->ru_stime.tv_sec) * 1e6 + (b->ru_stime.tv_usec - a->ru_stime.tv_usec);
  return u + s > 0 ? 100 * u / (u + s) : 0;
}

// A template's clone, reduced to its address spaces: PID 1 forks the runner
// (which exits at once) and execs a small static program (this one).
static int pid1(void* arg) {
  (void)arg;
  pid_t runner = fork();
  if (runner == 0) _exit(0);
  execl("/proc/self/exe", "host_cost", "exit", (char*)NULL);
  _exit(127);
}

static char* touched(long pages) {
  char* m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  for (long i = 0; i < pages; i++) m[i * 4096] = 1;
  return m;
}

int main(int argc, char** argv) {
  (void)argv;
  if (argc > 1) return 0;  // the exec'd copy of the last measurement
  struct rusage a, b;
  const int calls = 200000;
  getrusage(RUSAGE_SELF, &a);
  double t = now_us();
  for (int i = 0; i < calls; i++) syscall(SYS_getppid);
  double us = (now_us() - t) / calls;
  getrusage(RUSAGE_SELF, &b);
  printf("syscall (getppid)                  %8.2f us  (%.0f%% counted as user time)\n", us,
         user_share(&a, &b));

  const long pages = 20000;
  char* m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return perror("mmap"), 1;
  getrusage(RUSAGE_SELF, &a);
  t = now_us();
  for (long i = 0; i < pages; i++) m[i * 4096] = 1;
  us = (now_us() - t) / pages;
  getrusage(RUSAGE_SELF, &b);
  printf("page fault, zero-fill                %8.2f us  (%.0f%% counted as user time)\n", us,
         user_share(&a, &b));
  munmap(m, pages * 4096);

  // A child writes to pages it shares with its parent: one copy each.
  const long shared = 2000;
  m = touched(shared);
  int fds[2];
  if (pipe(fds) != 0) return perror("pipe"), 1;
  pid_t pid = fork();
  if (pid == 0) {
    t = now_us();
    for (long i = 0; i < shared; i++) m[i * 4096] = 2;
    us = (now_us() - t) / shared;
    (void)!write(fds[1], &us, sizeof us);
    _exit(0);
  }
  if (pid < 0 || read(fds[0], &us, sizeof us) != sizeof us) return perror("fork"), 1;
  waitpid(pid, NULL, 0);
  printf("page fault, copy-on-write            %8.2f us\n", us);
  munmap(m, shared * 4096);

  // volatile: the vfork child runs on this stack frame until it leaves.
  const int rounds = 200;
  t = now_us();
  for (volatile int i = 0; i < rounds; i++) {
    if ((pid = vfork()) == 0) _exit(0);
    waitpid(pid, NULL, 0);
  }
  printf("vfork + exit + wait (no new mm)      %8.0f us\n", (now_us() - t) / rounds);
  t = now_us();
  for (int i = 0; i < rounds; i++) {
    if ((pid = fork()) == 0) _exit(0);
    waitpid(pid, NULL, 0);
  }
  printf("fork + exit + wait, small process    %8.0f us\n", (now_us() - t) / rounds);
  m = touched(shared);
  t = now_us();
  for (int i = 0; i < rounds; i++) {
    if ((pid = fork()) == 0) _exit(0);
    waitpid(pid, NULL, 0);
  }
  printf("fork + exit + wait, 8 MB written     %8.0f us\n", (now_us() - t) / rounds);
  munmap(m, shared * 4096);
  t = now_us();
  for (volatile int i = 0; i < rounds; i++) {
    if ((pid = vfork()) == 0) {
      execl("/proc/self/exe", "host_cost", "exit", (char*)NULL);
      _exit(127);
    }
    waitpid(pid, NULL, 0);
  }
  printf("vfork + exec (static) + exit + wait  %8.0f us\n", (now_us() - t) / rounds);

  // PID 1 from an 8 MB process, as a template makes it: its own copy of the
  // address space (dropped at its exec), or the cloner's, borrowed until then
  // (CLONE_VM | CLONE_VFORK; the cloner sleeps meanwhile). The runner's fork
  // copies it once either way.
  m = touched(shared);
  static char stack[1 << 16] __attribute__((aligned(16)));
  for (int borrow = 0; borrow < 2; borrow++) {
    int flags = SIGCHLD | (borrow ? CLONE_VM | CLONE_VFORK : 0);
    t = now_us();
    for (int i = 0; i < rounds; i++) {
      if ((pid = clone(pid1, stack + sizeof stack, flags, NULL)) < 0) return perror("clone"), 1;
      waitpid(pid, NULL, 0);
      while (waitpid(-1, NULL, WNOHANG) > 0) {
      }
    }
    printf("PID 1 + runner + exec, 8 MB, %s %8.0f us\n", borrow ? "borrowed" : "copied  ",
           (now_us() - t) / rounds);
  }
  munmap(m, shared * 4096);

  // Each namespace on its own: unshare() in a fresh child, median of 200
  // (root only; the network namespace is what nsbox makes ahead, netns.hpp).
  if (geteuid() != 0) return 0;
  static const struct {
    int flag;
    const char* name;
  } kinds[] = {{CLONE_NEWNET, "net"},   {CLONE_NEWNS, "mount"}, {CLONE_NEWIPC, "ipc"},
               {CLONE_NEWUTS, "uts"},   {CLONE_NEWPID, "pid"},  {CLONE_NEWCGROUP, "cgroup"},
               {CLONE_NEWUSER, "user"}};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    enum { kRuns = 200 };
    double us[kRuns];
    for (int i = 0; i < kRuns; i++) {
      int p[2];
      if (pipe(p) != 0) return perror("pipe"), 1;
      if ((pid = fork()) == 0) {
        double t0 = now_us();
        double d = unshare(kinds[k].flag) == 0 ? now_us() - t0 : -1;
        _exit(write(p[1], &d, sizeof d) == sizeof d ? 0 : 1);
      }
      close(p[1]);  // a child that dies before writing gives EOF, not a hang
      if (read(p[0], &us[i], sizeof us[i]) != sizeof us[i]) us[i] = -1;
      waitpid(pid, NULL, 0);
      close(p[0]);
    }
    for (int i = 1; i < kRuns; i++)  // insertion sort: 200 values
      for (int j = i; j > 0 && us[j] < us[j - 1]; j--) {
        double x = us[j];
        us[j] = us[j - 1];
        us[j - 1] = x;
      }
    printf("unshare %-6s namespace (median)  %8.1f us%s\n", kinds[k].name, us[kRuns / 2],
           us[0] < 0 ? "  (some failed)" : "");
  }
  return 0;
}
