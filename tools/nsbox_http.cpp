// nsbox-http: the HTTP half of the CLI (serve and the client commands),
// exec'd by `nsbox`; see tools/nsbox.cpp for why it is a separate binary.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/files.hpp"
#include "base/terminal_escape.hpp"
#include "tools/client_cmd.hpp"
#include "tools/serve_cmd.hpp"

int main(int argc, char** argv) {
  if (nsbox::refuse_setuid("nsbox")) return 2;
  // Not even an error message can be written without 1 and 2; 127 is what
  // a shell answers when it cannot start a program.
  if (!nsbox::fill_std_fds()) return 127;
  if (argc < 2) {
    std::fprintf(stderr, "usage: nsbox serve|deploy|invoke|ls|rm|logs ...\n");
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  std::string cmd = argv[1];
  try {
    if (cmd == "serve") return nsbox::cmd_serve(args);
    if (nsbox::is_client_command(cmd)) {
      const int rc = nsbox::cmd_client(cmd, args);
      return nsbox::stdout_failed("nsbox") && rc == 0 ? 3 : rc;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nsbox: internal error: %s\n", e.what());
    return 3;
  }
  nsbox::print_for_display(STDERR_FILENO, "nsbox: unknown command \"%s\"\n", cmd.c_str());
  return 2;
}
