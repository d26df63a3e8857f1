// Runs the real nsbox binary and captures what it printed and how it ended.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nsbox::test {

struct Outcome {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
  nlohmann::json json() const;  // stdout parsed (discarded value on failure)
};

struct RunSpec {
  std::vector<std::string> argv;
  std::string stdin_text;
  std::vector<std::string> env;  // extra KEY=VALUE
  uid_t as_uid = 0;              // non-zero: drop to this uid/gid before exec
  int timeout_s = 60;
};

Outcome run(const RunSpec& spec);

// Runs spec on a fresh pseudo-terminal as an interactive shell would: a
// session leader owning the pty as its controlling terminal runs the command
// in its foreground process group with the pty as fds 0, 1 and 2, waits for
// it and then reads its terminal, as the shell's next prompt would.
struct PtyOutcome {
  int exit_code = -1;
  std::string screen;  // everything written to the terminal (the master's side)
  std::string typed;   // input waiting on the terminal afterwards: what the shell would read
};
PtyOutcome run_on_pty(const RunSpec& spec);
// `nsbox run PROBE.py ARGS...` with the probe from tests/probes.
Outcome nsbox_run(const std::string& probe, const std::vector<std::string>& args = {});

std::string nsbox_bin();
// A copy of nsbox (and nsbox-http) that an unprivileged uid can reach.
std::string unprivileged_nsbox_bin();
std::string probe(const std::string& name);
std::string host_hostname();

// What a sandbox could leave behind on the host.
struct HostResidue {
  size_t mounts = 0;         // lines of /proc/self/mountinfo
  size_t cgroup_leaves = 0;  // dirs under <controller>/nsbox/
  size_t sandbox_procs = 0;  // processes owned by a sandbox host uid
  std::vector<std::string> describe_leaves;
  std::string describe_procs;  // "pid uid cmdline; ..." of the sandbox processes
};
HostResidue host_residue();

}  // namespace nsbox::test
