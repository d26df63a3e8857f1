// Runs the real nsbox binary and captures what it printed and how it ended.
#pragma once

#include <sys/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nsbox::test {

// The unprivileged user root's tests run rootless things as: nobody, which
// every Debian machine has.
constexpr uid_t kNobody = 65534;

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
// `nsbox ARGS... --server SERVER` with NSBOX_TOKEN=token: a client
// subcommand (deploy, invoke, ls, ...) against a daemon, real or fake.
RunSpec client_spec(const std::vector<std::string>& args, const std::string& server,
                    const std::string& token);
// `nsbox run PROBE.py ARGS...` with the probe from tests/probes.
Outcome nsbox_run(const std::string& probe, const std::vector<std::string>& args = {});

std::string nsbox_bin();
// A copy of nsbox (and nsbox-http) that an unprivileged uid can reach.
std::string unprivileged_nsbox_bin();
std::string probe(const std::string& name);
// Copies of every probe that an unprivileged uid can reach: their directory.
std::string unprivileged_probes_dir();

// Makes spec a rootless run by uid (as_uid when uid is not who we are):
// HOME and the XDG dirs point into /tmp/nsbox-rootless-test-UID, which
// keeps uid's rootfs, seccomp cache and stage dir between runs, so the
// rootfs is built once. The dir is made for uid (given to it when we are
// root). False, with a message on stderr, when it is not a dir of uid's.
bool rootless_as(uid_t uid, RunSpec* spec);
std::string host_hostname();
// The event with "host_hostname" added: what the breakout and resource
// probes compare their own hostname with, refusing to act when they match.
nlohmann::json in_sandbox(nlohmann::json event = nlohmann::json::object());
// The text after "key:" on that line of /proc/PID/status ("" when absent).
std::string proc_status(pid_t pid, const std::string& key);
// A process's CPU time so far (utime + stime), in clock ticks; -1 if gone.
long cpu_ticks(pid_t pid);

// A directory for one test case, /tmp/nsbox-test-XXXXXX/TAG (one mkdtemp
// directory per test run, 0755), and the PATH.toml, PATH.log, PATH.lock
// and PATH.users that a daemon or a rootfs build writes beside it:
// removed when made (a run killed earlier may have left them) and when the
// test case ends, however it ends, so repeated runs do not fill /tmp.
// Created by whoever uses it first.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  void remove() const;
};

// Polls observable state (a process appearing, a gauge reaching a value,
// residue going away) every 20 ms until pred holds or timeout_ms passed;
// whether it held. Tests wait on state, never on a guessed sleep. On a
// timeout it prints "timed out after N ms waiting for WHAT" to stderr, so a
// failed REQUIRE(wait_until(...)) says what never happened.
bool wait_until(const std::function<bool()>& pred, int timeout_ms, const std::string& what);

// Host pids whose comm is `comm`: a probe that renames itself is seen from
// the host this way while it runs.
std::vector<pid_t> pids_named(const std::string& comm);

// Every process below pid (its children, theirs, ...) as /proc shows them
// now. Taken before pid is killed: its orphans are reparented, and then
// nothing finds them under it.
std::vector<pid_t> descendants(pid_t pid);
// Whether pid exists and is not a zombie (which holds no memory, mount or
// cgroup, and which this VM's init may be slow to reap).
bool running(pid_t pid);

// What a sandbox could leave behind on the host.
struct HostResidue {
  size_t mounts = 0;         // lines of /proc/self/mountinfo
  size_t cgroup_leaves = 0;  // dirs under <controller>/nsbox/
  size_t sandbox_procs = 0;  // processes owned by a sandbox host uid
  std::vector<std::string> describe_leaves;
  std::string describe_procs;  // "pid uid cmdline; ..." of the sandbox processes
  // The host's shared device nodes that are not root's 0666 (a container
  // runtime that chowns its stdio to the container's user would give
  // /dev/null to a sandbox uid): "" when none.
  std::string devices_changed;
};
HostResidue host_residue();

}  // namespace nsbox::test
