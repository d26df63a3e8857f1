// How many sandboxes the host lets one daemon hold at once. max_sandboxes
// is the operator's wish; open files, kernel.pid_max and the uid slots can
// cap it lower. Past such a limit a spawn fails, and once the gateway's fds
// are gone it cannot even accept a connection: so the daemon lowers
// max_sandboxes to what fits instead, says so in one line, and at that cap
// the pool makes room as at any other (the least recently used idle
// sandbox goes). Pure: serve_cmd.cpp reads the host.
#pragma once

#include <cstdint>
#include <string>

namespace nsbox {

// The gateway's fds per sandbox: the channel's two pipes, the log pipe and
// the freeze switch (the spawner holds one: the uid slot's lock).
constexpr uint64_t kGatewayFdsPerSandbox = 4;
// The spawner's per sandbox: its uid slot's lock (root mode).
constexpr uint64_t kSpawnerFdsPerSandbox = 1;
// With parking, the sandboxes whose fds the gateway still holds: those in
// use (at most one per connection), the blanks and, beside them, function
// templates and those released too recently to be frozen yet. The pool
// enforces it (Pool::set_parking's fd budget); this only decides whether
// parking leaves the gateway enough room to be worth it.
constexpr uint64_t kUnparkedReserve = 256;
// The daemon's own: listener, epoll, the spawner's socket, the access
// log (~15), and files opened for a moment (the registry, /proc).
constexpr uint64_t kSpareFds = 256;
// At least PID 1 and the runner; besides them, one thread per connection
// and the host's own processes.
constexpr uint64_t kProcessesPerSandbox = 2;
constexpr uint64_t kSpareProcesses = 1024;

struct HostLimits {
  uint64_t open_files = 0;  // RLIMIT_NOFILE, after raising it where we may; 0: unknown
  uint64_t pid_max = 0;     // 0: unknown
  uint64_t uid_slots = 0;   // root mode's uid slots; 0: none needed (rootless)
  // Frozen idle sandboxes' fds wait in fd keepers (gateway/fd_parking.hpp):
  // the gateway's table then bounds only the sandboxes it has not parked.
  bool park_idle = false;
  // Rootless: the user's RLIMIT_NPROC, which its sandboxes' processes count
  // against (they run as its uid); 0: not limiting (root mode, unlimited).
  uint64_t user_processes = 0;
};

// What open_files must be for max_sandboxes and max_connections.
uint64_t open_files_wanted(int max_sandboxes, int max_connections);

// max_connections as the open-files limit allows: at most half of what the
// spare fds leave, the other half being the sandboxes'. A connection the
// limit cannot hold fails in accept(), before the front's own defence (it
// closes the idle or slowest connection to make room at max_connections)
// can act, so a few hundred silent sockets would lock every client out.
// why: set when lowered. At least 1.
int fit_max_connections(int max_connections, const HostLimits& host, std::string* why);

struct Capacity {
  int max_sandboxes = 0;  // what fits, at most the wish, at least 1
  std::string why;        // the limit that lowered it; empty when the wish fits
};
// blank: the pool's blank sandboxes, which are never frozen (so never parked).
Capacity fit_max_sandboxes(int max_sandboxes, int max_connections, const HostLimits& host,
                           int blank = 0);

}  // namespace nsbox
