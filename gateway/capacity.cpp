#include "gateway/capacity.hpp"

#include <algorithm>
#include <cstdint>

namespace nsbox {

uint64_t open_files_wanted(int max_sandboxes, int max_connections) {
  const uint64_t connections = static_cast<uint64_t>(std::max(max_connections, 0));
  // And at least what fit_max_connections needs to keep max_connections.
  return std::max(kGatewayFdsPerSandbox * static_cast<uint64_t>(std::max(max_sandboxes, 0)) +
                      connections + kSpareFds,
                  2 * connections + kSpareFds);
}

int fit_max_connections(int max_connections, const HostLimits& host, std::string* why) {
  if (host.open_files == 0 || max_connections <= 0) return max_connections;
  const uint64_t half = host.open_files > kSpareFds ? (host.open_files - kSpareFds) / 2 : 0;
  const int fit = static_cast<int>(std::max<uint64_t>(1, std::min<uint64_t>(half, INT32_MAX)));
  if (fit >= max_connections) return max_connections;
  *why = "open files: the limit is " + std::to_string(host.open_files) + ", " +
         std::to_string(kSpareFds) +
         " to spare and half the rest for sandboxes; raising it needs CAP_SYS_RESOURCE "
         "(tools/nsbox.service sets LimitNOFILE=)";
  return fit;
}

Capacity fit_max_sandboxes(int max_sandboxes, int max_connections, const HostLimits& host,
                           int blank) {
  Capacity c;
  uint64_t fit = static_cast<uint64_t>(std::max(max_sandboxes, 1));
  auto lower = [&](uint64_t n, std::string why) {
    if (n < fit) {
      fit = n;
      c.why = std::move(why);
    }
  };
  const uint64_t connections = static_cast<uint64_t>(std::max(max_connections, 0));
  const uint64_t unparked_need =
      kGatewayFdsPerSandbox *
          (connections + static_cast<uint64_t>(std::max(blank, 0)) + kUnparkedReserve) +
      connections + kSpareFds;
  if (host.open_files && host.park_idle && host.open_files >= unparked_need)
    lower((host.open_files - kSpareFds) / kSpawnerFdsPerSandbox,
          "open files: the limit is " + std::to_string(host.open_files) +
              ", one per sandbox in the spawner (the gateway parks frozen sandboxes' fds in fd "
              "keepers) and " +
              std::to_string(kSpareFds) +
              " to spare; raising it needs CAP_SYS_RESOURCE (tools/nsbox.service sets "
              "LimitNOFILE=)");
  else if (host.open_files)
    lower(host.open_files > connections + kSpareFds
              ? (host.open_files - connections - kSpareFds) / kGatewayFdsPerSandbox
              : 0,
          "open files: the limit is " + std::to_string(host.open_files) + ", " +
              std::to_string(kGatewayFdsPerSandbox) + " per sandbox plus max_connections = " +
              std::to_string(max_connections) + " and " + std::to_string(kSpareFds) +
              " to spare; raising it needs CAP_SYS_RESOURCE (tools/nsbox.service sets "
              "LimitNOFILE=)");
  if (host.pid_max)
    lower(host.pid_max > connections + kSpareProcesses
              ? (host.pid_max - connections - kSpareProcesses) / kProcessesPerSandbox
              : 0,
          "kernel.pid_max is " + std::to_string(host.pid_max) + ", " +
              std::to_string(kProcessesPerSandbox) +
              " processes per sandbox plus a thread per connection; nsbox never changes it "
              "(sysctl kernel.pid_max)");
  if (host.user_processes)
    lower(host.user_processes > connections + kSpareProcesses
              ? (host.user_processes - connections - kSpareProcesses) / kProcessesPerSandbox
              : 0,
          "rootless, the sandboxes' processes are the user's: RLIMIT_NPROC is " +
              std::to_string(host.user_processes) + ", " + std::to_string(kProcessesPerSandbox) +
              " processes per sandbox plus a thread per connection (raise it with ulimit -u, "
              "or LimitNPROC= in a unit)");
  if (host.uid_slots)
    lower(host.uid_slots,
          "root mode has " + std::to_string(host.uid_slots) + " uid slots, one per sandbox");
  c.max_sandboxes = static_cast<int>(std::max<uint64_t>(fit, 1));
  return c;
}

}  // namespace nsbox
