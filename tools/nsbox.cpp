// nsbox: the command-line front end. Subcommands dispatch to their own files.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "rootfs/rootfs.hpp"
#include "tools/client_cmd.hpp"
#include "tools/serve_cmd.hpp"
#include "tools/run_cmd.hpp"

namespace {

const char* kUsage = R"(usage: nsbox COMMAND [args]

commands:
  run FN.py [options]        run one function in a fresh sandbox (nsbox run --help)
  rootfs build [--out DIR]   build the shared runtime rootfs (rebuilt when stale)
  serve [options]            the HTTP daemon (nsbox serve --help)
  deploy NAME FILE.py        deploy a function to a running daemon
  invoke NAME [JSON]         invoke a deployed function
  ls                         list deployed functions
  rm NAME                    delete a function
  logs NAME                  what a function printed recently
)";

int cmd_rootfs(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "build") {
    std::fprintf(stderr, "usage: nsbox rootfs build [--out DIR] [--python PATH]\n");
    return 2;
  }
  std::string out = nsbox::default_rootfs_dir();
  std::string python = nsbox::kHostPython;
  for (size_t i = 1; i < args.size(); i++) {
    if ((args[i] == "--out" || args[i] == "--python") && i + 1 < args.size()) {
      (args[i] == "--out" ? out : python) = args[i + 1];
      i++;
    } else {
      std::fprintf(stderr, "nsbox: rootfs build: unknown argument %s\n", args[i].c_str());
      return 2;
    }
  }
  auto r = nsbox::ensure_rootfs(out, true, python);
  if (!r) {
    std::fprintf(stderr, "nsbox: %s\n", r.error().message().c_str());
    return 3;
  }
  std::printf("%s\n", r.value().summary.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  std::string cmd = argv[1];
  try {
    if (cmd == "run") return nsbox::cmd_run(args);
    if (cmd == "rootfs") return cmd_rootfs(args);
    if (cmd == "serve") return nsbox::cmd_serve(args);
    if (nsbox::is_client_command(cmd)) return nsbox::cmd_client(cmd, args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nsbox: internal error: %s\n", e.what());
    return 3;
  }
  std::fprintf(stderr, "nsbox: unknown command \"%s\"\n%s", cmd.c_str(), kUsage);
  return 2;
}
