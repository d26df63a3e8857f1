// `nsbox run`: one function, one event, one sandbox; the function author's
// local test loop and the cold-start benchmark's subject.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace nsbox {

// Exit codes, as documented in `nsbox run --help` and the README.
enum RunExit {
  kExitOk = 0,
  kExitFunctionError = 1,
  kExitUsage = 2,
  kExitSetup = 3,
  kExitTimeout = 124,
  kExitKilled = 137,
};

struct RunOptions {
  std::string function;
  std::string event = "{}";  // JSON text, or "-" for stdin
  std::string handler = "handler";
  std::string policy = "default";
  std::optional<std::string> memory;   // SIZE
  std::optional<std::string> timeout;  // DURATION
  std::optional<std::string> rootfs;
  bool no_isolation = false;
  std::string factory = "exec";  // exec | template
  bool verbose = false;
  bool help = false;
};

// Pure; errors are usage errors (exit 2).
Result<RunOptions> parse_run_args(const std::vector<std::string>& args);
std::string run_usage();

int cmd_run(const std::vector<std::string>& args);

}  // namespace nsbox
