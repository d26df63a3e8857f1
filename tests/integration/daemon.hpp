// A real `nsbox serve` for tests: started on a free loopback port with its
// own state dir and config, stopped with SIGTERM or killed with -9.
#pragma once

#include <httplib.h>
#include <sys/types.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

namespace nsbox::test {

class Daemon {
 public:
  // config: TOML for [pool] etc.; [server] listen/state_dir are added.
  explicit Daemon(std::string state_dir, std::string extra_config = "");
  ~Daemon();
  bool start();  // waits until /healthz answers (false after 30 s)
  int stop();    // SIGTERM, wait; returns the exit status (0 = clean)
  // SIGKILL, then waits until the processes the daemon had started (the
  // spawner, the sandboxes), which die with it, are gone: whether they went
  // within 10 s.
  [[nodiscard]] bool kill9();
  // Waits for the daemon to exit by itself; its exit status, or -1 on timeout.
  int wait_exit(int timeout_ms);
  std::unique_ptr<httplib::Client> client(int timeout_s = 30) const;
  std::string token() const;
  int port() const { return port_; }
  std::string log() const;  // what the daemon wrote to stderr
  // The access-log line of request rid, once the log has it (it is flushed
  // every 100 ms), or "" when none came within 3 s.
  std::string access_line(const std::string& rid) const;
  // A value of /metrics: the first line that starts with key (labels
  // included) and a space; -1 when there is none or no answer.
  double metric(const std::string& key) const;
  pid_t pid() const { return pid_; }
  // Before start(): run `nsbox serve` as this uid/gid (with a copy of the
  // binary it can reach); the state dir is created for it.
  void run_as(uid_t uid) { as_uid_ = uid; }
  // Before start(): `nsbox serve` with RLIMIT_NOFILE n (soft and hard) and
  // without CAP_SYS_RESOURCE, so that it cannot raise it: a host whose
  // limit it must live with.
  void limit_open_files(uint64_t n) { open_files_ = n; }
  // Starts it with RLIMIT_CORE 0, soft and hard.
  void zero_core_limit() { zero_core_ = true; }
  // Before start(): `nsbox serve -v` (debug logging).
  void verbose() { verbose_ = true; }
  // Before start(): `nsbox serve --spawners n`, for a test of what one
  // spawner holds (spawner_of finds the first).
  void spawners(int n) { spawners_ = std::to_string(n); }

 private:
  std::string state_dir_, config_path_, log_path_, extra_;
  int port_ = 0;
  pid_t pid_ = -1;
  uid_t as_uid_ = 0;
  uint64_t open_files_ = 0;
  bool zero_core_ = false;
  bool verbose_ = false;
  std::string spawners_;
};

httplib::Headers auth(const Daemon& d);

// PUT /functions/NAME with a probe of tests/probes as its code; query is
// appended ("?policy=strict").
httplib::Result deploy_probe(const Daemon& d, const std::string& name, const std::string& probe,
                             const std::string& query = "");
// POST /fn/NAME with event; the body parsed (discarded on a parse error),
// the status in *status (0 without an answer).
nlohmann::json invoke(const Daemon& d, const std::string& name, const nlohmann::json& event,
                      int* status = nullptr);
// The daemon's first spawner (its first child), 0 when there is none.
pid_t spawner_of(const Daemon& d);
// All its spawners (children named nsbox-spawner), in the order forked.
std::vector<pid_t> spawners_of(const Daemon& d);

// A daemon's state dir (with its 45 MiB rootfs): the config and log Daemon
// writes beside it go with it.
using StateDir = TempDir;

}  // namespace nsbox::test
