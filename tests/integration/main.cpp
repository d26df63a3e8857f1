// Integration tests of the real binary. They need root (CI runs as root);
// without it they skip (exit 77) unless NSBOX_MUST_WORK is set, so CI can
// never go green by skipping (bubblewrap's BWRAP_MUST_WORK).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    if (!getenv("NSBOX_MUST_WORK")) {
      std::fprintf(stderr, "skipping: integration tests need root\n");
      return 77;
    }
    std::fprintf(stderr, "NSBOX_MUST_WORK is set but we are not root\n");
    return 1;
  }
  // Tests write to servers that close on them (a refused upload, a body
  // cut short): that must be an EPIPE to check, not the end of the suite.
  signal(SIGPIPE, SIG_IGN);
  // Started through sudo, nsbox would open the files the tests name as the
  // user who ran it (tools/invoker.hpp); tests of that set these themselves.
  for (const char* var : {"SUDO_UID", "SUDO_GID", "SUDO_USER"}) unsetenv(var);
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
