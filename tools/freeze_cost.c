// The cost of one cgroup freeze and thaw (docs/benchmarks.md, "Freezing idle
// sandboxes"). Not built by meson:
//   cc -O2 -o /tmp/freeze_cost tools/freeze_cost.c
//   sudo /tmp/freeze_cost /sys/fs/cgroup/unified 1 1000   # cgroup2 cgroup.freeze
//   sudo /tmp/freeze_cost /sys/fs/cgroup/freezer 0 200    # v1 freezer.state
// Makes <root>/freeze-cost-<pid> holding one sleeping child, times N
// freeze/thaw pairs (thread CPU time and wall time), removes it.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}
static void wr(const char* p, const char* v) {
  int fd = open(p, O_WRONLY);
  if (fd < 0) {
    perror(p);
    exit(1);
  }
  if (write(fd, v, strlen(v)) < 0) perror(p);
  close(fd);
}
int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s CGROUP_ROOT 1|0 ROUNDS\n", argv[0]);
    return 2;
  }
  const char* root = argv[1];
  int v2 = atoi(argv[2]);
  int n = atoi(argv[3]);
  char dir[256], procs[300], ff[300];
  snprintf(dir, sizeof dir, "%s/freeze-cost-%d", root, getpid());
  mkdir(dir, 0755);
  pid_t c = fork();
  if (c == 0) {
    for (;;) pause();
  }
  snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
  char b[32];
  snprintf(b, 32, "%d", c);
  wr(procs, b);
  snprintf(ff, sizeof ff, "%s/%s", dir, v2 ? "cgroup.freeze" : "freezer.state");
  int fd = open(ff, O_WRONLY);
  double fc = 0, fw = 0, tc = 0, tw = 0;
  for (int i = 0; i < n; i++) {
    double c0 = ns(CLOCK_THREAD_CPUTIME_ID), w0 = ns(CLOCK_MONOTONIC);
    if (write(fd, v2 ? "1" : "FROZEN", v2 ? 1 : 6) < 0) perror("freeze");
    double c1 = ns(CLOCK_THREAD_CPUTIME_ID), w1 = ns(CLOCK_MONOTONIC);
    usleep(2000);
    double c2 = ns(CLOCK_THREAD_CPUTIME_ID), w2 = ns(CLOCK_MONOTONIC);
    if (write(fd, v2 ? "0" : "THAWED", v2 ? 1 : 6) < 0) perror("thaw");
    double c3 = ns(CLOCK_THREAD_CPUTIME_ID), w3 = ns(CLOCK_MONOTONIC);
    fc += c1 - c0;
    fw += w1 - w0;
    tc += c3 - c2;
    tw += w3 - w2;
    usleep(1000);
  }
  printf("%s: freeze cpu %.1f us wall %.1f us; thaw cpu %.1f us wall %.1f us (n=%d)\n",
         v2 ? "v2 cgroup.freeze" : "v1 freezer.state", fc / n / 1e3, fw / n / 1e3, tc / n / 1e3,
         tw / n / 1e3, n);
  kill(c, SIGKILL);
  waitpid(c, 0, 0);
  close(fd);
  rmdir(dir);
  return 0;
}
