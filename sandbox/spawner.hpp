// The spawner: a single-threaded process that owns clone and every pool
// sandbox (CONTRIBUTING.md §3). The multi-threaded gateway never forks; it
// asks the spawner over a SOCK_SEQPACKET socket and receives each new
// sandbox's request channel (two pipes) and log pipe as fds (SCM_RIGHTS). The spawner
// keeps the Sandbox objects (pidfd, cgroup leaf) and destroys them on
// request, on shutdown, or when the gateway's end of the socket closes.
//
// With the template factory (template.hpp) the spawner asks a template to
// clone each sandbox instead of cloning it itself; it owns the sandbox all
// the same, and the gateway only ever sees SandboxFactory.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/framing.hpp"
#include "sandbox/proc_memory.hpp"
#include "sandbox/seccomp.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

// What a kind of sandbox looks like, prepared before the spawner forks.
struct SpawnProfile {
  SandboxSpec spec;  // id, stderr_fd and limits.memory_bytes are set per spawn
  SeccompProgram bpf;
};

// How the spawner makes sandboxes: by clone + exec of a fresh interpreter,
// or cloned from a template that has it already started (template.hpp).
struct FactoryOptions {
  bool use_template = false;
  std::string template_binary;                // nsbox-template
  std::vector<std::string> template_modules;  // imported by the template
  uint64_t template_rotate_after = 0;         // clones per template; 0 = never replaced
};

struct SpawnedSandbox {
  uint64_t id = 0;
  ChannelFds channel;   // framed request channel to the runner
  UniqueFd log;         // read end of the sandbox's stderr, non-blocking
  FreezeSwitch freeze;  // invalid when the sandbox cannot be frozen
  double setup_ms = 0;
};

// What the gateway needs from whatever makes sandboxes: the spawner process
// below today, a template (fork-server) factory later; fakes in the unit
// tests. The pool and the gateway hold only this, so a second factory
// replaces the first without touching them. Thread-safe.
class SandboxFactory {
 public:
  virtual ~SandboxFactory() = default;
  virtual Result<SpawnedSandbox> spawn(uint32_t profile, uint64_t memory_bytes) = 0;
  virtual Status set_memory(uint64_t id, uint64_t memory_bytes) = 0;
  // The sandbox's cgroup counters: why a sandbox died (an OOM kill, the pids
  // limit) and /metrics' memory per sandbox. An error when it has none.
  virtual Result<CgroupEvents> events(uint64_t id) = 0;
  virtual Status destroy(uint64_t id) = 0;
  // False once the factory can make no more sandboxes (its process exited):
  // /healthz answers 503 then.
  virtual bool healthy() = 0;
  // The sandbox's processes' own memory (proc_memory.hpp: USS, PSS, RSS),
  // for /metrics beside the cgroup's charge. An error where unknown.
  virtual Result<ProcessMemory> process_memory(uint64_t /*id*/) {
    return make_error("process memory", "not known to this factory");
  }
  // A function template (sandbox/instance.hpp): made as spawn() makes a
  // sandbox, but its runner, once a function is loaded, forks instances
  // instead of serving requests. Unsupported by default.
  virtual Result<SpawnedSandbox> spawn_template(uint32_t /*profile*/, uint64_t /*memory_bytes*/) {
    return make_error("function template", "not supported by this factory");
  }
  // An instance of that template, the function already loaded, with its own
  // channel and cgroup leaf; destroy() it as any sandbox.
  virtual Result<SpawnedSandbox> fork_instance(uint64_t /*template_id*/, uint32_t /*profile*/,
                                               uint64_t /*memory_bytes*/) {
    return make_error("function template", "not supported by this factory");
  }
  // That template is loaded: frozen until its next fork_instance(), so that
  // threads its module body started use no CPU while nobody asks for it.
  virtual Status rest_template(uint64_t /*template_id*/) { return {}; }
  // The templates' own memory, summed (processes = how many run); what
  // their clones share. Zero without templates.
  virtual Result<ProcessMemory> template_memory() { return ProcessMemory{}; }
  // How many spawns it makes at once (callers in more threads wait).
  virtual int parallelism() const { return 1; }
};

class SpawnerClient final : public SandboxFactory {
 public:
  ~SpawnerClient() override;
  // Forks the spawner, which waits for configure(). Call before the process
  // starts any thread and before it reads any secret (the admin token, a
  // config file that may hold it): the spawner's memory, and that of every
  // sandbox's PID 1 (a copy of it), is what the process held at this point.
  // close_in_child: fds the new spawner must not keep (an earlier
  // spawner's socket: held there, that spawner would not see the daemon
  // go).
  static Result<std::unique_ptr<SpawnerClient>> fork_early(
      const std::vector<int>& close_in_child = {});
  // The daemon's end of its socket, for close_in_child.
  int socket_fd() const { return sock_.get(); }
  // Hands the spawner its profiles (serialised: no memory is shared); it
  // adopts the caller's scheduling policy, as a fork would have.
  // With a template, the spawner starts it here, and an error says why it
  // could not (a module that does not import, say).
  Status configure(const std::vector<SpawnProfile>& profiles, const CgroupLayout& cgroups,
                   bool use_cgroups, const FactoryOptions& factory = {});
  // fork_early() + configure().
  static Result<std::unique_ptr<SpawnerClient>> start(std::vector<SpawnProfile> profiles,
                                                      const CgroupLayout& cgroups, bool use_cgroups,
                                                      const FactoryOptions& factory = {});
  Result<SpawnedSandbox> spawn(uint32_t profile, uint64_t memory_bytes) override;
  Result<SpawnedSandbox> spawn_template(uint32_t profile, uint64_t memory_bytes) override;
  Result<SpawnedSandbox> fork_instance(uint64_t template_id, uint32_t profile,
                                       uint64_t memory_bytes) override;
  Status rest_template(uint64_t template_id) override;
  Status set_memory(uint64_t id, uint64_t memory_bytes) override;
  Result<CgroupEvents> events(uint64_t id) override;
  Status destroy(uint64_t id) override;
  Result<ProcessMemory> process_memory(uint64_t id) override;
  Result<ProcessMemory> template_memory() override;
  // Destroys every sandbox and waits for the spawner to exit. Idempotent.
  Status shutdown();
  pid_t pid() const { return pid_.load(); }
  // False once the spawner process has exited. Never waits for a call in
  // flight: /healthz and the watchdog ask while spawns may take long, or
  // hang. The exited spawner is reaped by shutdown().
  bool alive();
  bool healthy() override { return alive(); }
  // How long a call waits for the spawner's answer before it takes the
  // spawner for hung and kills it (the daemon then fail-stops, as when a
  // spawner dies). The spawner's own steps have deadlines (a template's
  // start 30 s, a clone 10 s, a sandbox's setup 10 s), so the default
  // leaves room for all of them in one request.
  // At shutdown the bound is shorter (20 s at most), for the answer and then
  // for the exit: a service manager's stop timeout is not much longer.
  void set_call_timeout_ms(int ms) { call_timeout_ms_ = ms; }

 private:
  SpawnerClient() = default;
  struct Reply;
  Result<SpawnedSandbox> received(Reply r);
  // timeout_ms < 0: call_timeout_ms_.
  Result<Reply> call(uint32_t op, uint32_t profile, uint64_t id, uint64_t value, int* fds,
                     int timeout_ms = -1);

  std::mutex mu_;
  UniqueFd sock_;
  std::atomic<pid_t> pid_{-1};
  std::atomic<int> call_timeout_ms_{120000};
};

}  // namespace nsbox
