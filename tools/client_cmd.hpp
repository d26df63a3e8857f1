// The HTTP client subcommands: deploy, invoke, ls, rm, logs against a
// running `nsbox serve` (--server URL, token from NSBOX_TOKEN or the state
// dir's token file when readable).
#pragma once

#include <string>
#include <vector>

namespace nsbox {

// True for the subcommands this file handles.
bool is_client_command(const std::string& cmd);
// Returns the process exit code.
int cmd_client(const std::string& cmd, const std::vector<std::string>& args);

}  // namespace nsbox
