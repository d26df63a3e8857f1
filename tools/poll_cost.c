// The cost of the pool janitor's once-a-second look at every waiting
// sandbox (gateway/pool.cpp, drop_dead_locked): one poll(2) with a zero
// timeout over N pipe read ends, as many as sandboxes wait blank or idle
// (docs/benchmarks.md, part 24). Not built by meson:
//   cc -O2 -o /tmp/poll_cost tools/poll_cost.c
//   /tmp/poll_cost 256 2000 8000
// Prints, per N, the fastest and the mean of 21 calls.
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  for (int a = 1; a < argc; a++) {
    const int n = atoi(argv[a]);
    if (n <= 0) {
      fprintf(stderr, "usage: %s N...\n", argv[0]);
      return 2;
    }
    // Two fds a pipe; the hard limit bounds what a user may raise it to.
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur < (rlim_t)(2 * n + 64)) {
      r.rlim_cur = (rlim_t)(2 * n + 64) < r.rlim_max ? (rlim_t)(2 * n + 64) : r.rlim_max;
      setrlimit(RLIMIT_NOFILE, &r);
    }
    struct pollfd* p = calloc((size_t)n, sizeof *p);
    int* writers = calloc((size_t)n, sizeof *writers);
    for (int i = 0; i < n; i++) {
      int fd[2];
      if (pipe(fd) != 0) {
        perror("pipe (raise the open-files limit)");
        return 1;
      }
      p[i].fd = fd[0];
      writers[i] = fd[1];
    }
    double best = 1e9, sum = 0;
    for (int k = 0; k < 21; k++) {
      const double t0 = now_ms();
      poll(p, (nfds_t)n, 0);
      const double ms = now_ms() - t0;
      if (ms < best) best = ms;
      sum += ms;
    }
    printf("%d pipes: one poll() fastest %.3f ms, mean %.3f ms\n", n, best, sum / 21);
    for (int i = 0; i < n; i++) {
      close(p[i].fd);
      close(writers[i]);
    }
    free(p);
    free(writers);
  }
  return 0;
}
