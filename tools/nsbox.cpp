// nsbox: the command-line front end. Subcommands dispatch to their own files.
//
// The HTTP commands (serve and the client) live in a sibling binary,
// nsbox-http, that this one execs: cpp-httplib drags in OpenSSL, zlib and
// brotli, whose loading `nsbox run` would pay on every cold start
// (docs/benchmarks.md, "Cold start of nsbox run").
#include <limits.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/files.hpp"
#include "base/terminal_escape.hpp"
#include "rootfs/rootfs.hpp"
#include "tools/args.hpp"
#include "tools/run_cmd.hpp"

namespace {

const char* kUsage = R"(usage: nsbox COMMAND [args]

commands:
  run FN.py [EVENT] [opts]   run one function in a fresh sandbox (nsbox run --help)
  rootfs build [options]     build the shared runtime rootfs (nsbox rootfs --help)
  serve [options]            the HTTP daemon (nsbox serve --help)
  deploy NAME FILE.py        deploy a function to a running daemon
  invoke NAME [JSON]         invoke a deployed function
  ls                         list deployed functions
  rm NAME                    delete a function
  logs NAME                  what a function printed recently
  bench paper [options]      nsbox against none, bwrap, crun, runc and docker (nsbox bench -h)
  bench template [options]   template factory against exec: creation rate, cold start, memory
)";

int cmd_rootfs(const std::vector<std::string>& args) {
  std::string out;
  std::string python = nsbox::kHostPython;
  const std::vector<nsbox::Option> options = {
      {"out", 0, "DIR", "where to build (default: the daemon's, /var/lib/nsbox/rootfs as root)",
       [&out](const std::string& v) { out = v; }, false},
      {"python", 0, "PATH", "the host interpreter to copy (default " + python + ")",
       [&python](const std::string& v) { python = v; }, false},
  };
  const std::string usage =
      "usage: nsbox rootfs build [options]\n\noptions:\n" + nsbox::options_help(options);
  if (args.empty() || (args[0] != "build" && args[0] != "--help" && args[0] != "-h")) {
    std::fprintf(stderr, "%s", usage.c_str());
    return 2;
  }
  if (args[0] != "build") {
    std::fputs(usage.c_str(), stdout);
    return 0;
  }
  auto parsed = nsbox::parse_options(options, {args.begin() + 1, args.end()});
  if (!parsed || !parsed.value().positional.empty()) {
    const std::string why =
        parsed ? "unexpected argument " + parsed.value().positional[0] : parsed.error().detail;
    std::fprintf(stderr, "nsbox rootfs build: %s\n%s", nsbox::escape_for_terminal(why).c_str(),
                 usage.c_str());
    return 2;
  }
  if (parsed.value().help) {
    std::fputs(usage.c_str(), stdout);
    return 0;
  }
  if (out.empty()) {
    auto dir = nsbox::default_rootfs_dir();
    if (!dir) {
      nsbox::print_for_display(STDERR_FILENO, "nsbox: rootfs build: %s\n",
                               dir.error().message().c_str());
      return 1;
    }
    out = dir.value();
  }
  auto r = nsbox::ensure_rootfs(out, true, python);
  if (!r) {
    nsbox::print_for_display(STDERR_FILENO, "nsbox: %s\n", r.error().message().c_str());
    return 3;
  }
  nsbox::print_for_display(STDOUT_FILENO, "%s\n", r.value().summary.c_str());
  return 0;
}

bool is_http_command(const std::string& cmd) {
  for (const char* c : {"serve", "deploy", "invoke", "ls", "rm", "logs"})
    if (cmd == c) return true;
  return false;
}

// The directory this binary is in, or "" (an error printed).
std::string self_dir() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::perror("nsbox: readlink(/proc/self/exe)");
    return {};
  }
  self[n] = 0;
  std::string dir(self);
  return dir.substr(0, dir.find_last_of('/'));
}

// The bench is a Python script (it drives daemons and plots); Debian's own
// python3, which python3-matplotlib installs into.
int exec_bench(int argc, char** argv) {
  std::string dir = self_dir();
  if (dir.empty()) return 3;
  // The bench is an operator's command (it installs packages and runs
  // daemons) that hands nsbox run files of its own making: under sudo they
  // are root's, not the invoking user's to open (tools/invoker.hpp).
  for (const char* var : {"SUDO_UID", "SUDO_GID", "SUDO_USER"}) unsetenv(var);
  std::string script = dir + "/nsbox-bench";
  std::vector<char*> args = {const_cast<char*>("/usr/bin/python3"), script.data()};
  for (int i = 2; i < argc; i++) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv(args[0], args.data());
  std::fprintf(stderr, "nsbox: cannot run /usr/bin/python3 %s: %s\n", script.c_str(),
               std::strerror(errno));
  return 3;
}

// Replaces this process (same pid: signals to `nsbox serve` still arrive).
int exec_http(char** argv) {
  std::string dir = self_dir();
  if (dir.empty()) return 3;
  std::string http = dir + "/nsbox-http";
  argv[0] = const_cast<char*>(http.c_str());
  execv(http.c_str(), argv);
  std::fprintf(stderr, "nsbox: cannot run %s: %s (install it next to nsbox)\n", http.c_str(),
               std::strerror(errno));
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (nsbox::refuse_setuid("nsbox")) return 2;
  // Not even an error message can be written without 1 and 2; 127 is what
  // a shell answers when it cannot start a program.
  if (!nsbox::fill_std_fds()) return 127;
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  std::string cmd = argv[1];
  try {
    // The name the cgroup sweep looks for in a leaf's owner (sandbox/
    // cgroup.hpp), whatever this binary is called.
    if (cmd == "run") {
      prctl(PR_SET_NAME, "nsbox");
      const int rc = nsbox::cmd_run(args);
      return nsbox::stdout_failed("nsbox") && rc == 0 ? 3 : rc;
    }
    if (cmd == "rootfs") return cmd_rootfs(args);
    if (is_http_command(cmd)) return exec_http(argv);
    if (cmd == "bench") return exec_bench(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nsbox: internal error: %s\n", e.what());
    return 3;
  }
  nsbox::print_for_display(STDERR_FILENO, "nsbox: unknown command \"%s\"\n%s", cmd.c_str(), kUsage);
  return 2;
}
