// /metrics in the Prometheus text format: the requests' counters and
// latency histograms, the pool's gauges and counters, the memory of each
// sandbox.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/deletions.hpp"
#include "gateway/pool.hpp"
#include "sandbox/spawner.hpp"

namespace nsbox {

class Metrics {
 public:
  static constexpr std::array<double, 11> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10};
  // deploy: the deploy the request was planned for (FunctionMeta::deploy),
  // 0 for none. One older than the function's last forget() is not
  // counted: it ran a deleted function, not what now has its name.
  void request(const std::string& function, int status, double seconds, uint64_t deploy = 0);
  void start(const std::string& function, bool cold, uint64_t deploy = 0);
  // Drops a function's series, deleted by the deploy sequence's number
  // removed_at: the statuses are the function's to choose (up to 400 of
  // them), and names come and go with deploys.
  void forget(const std::string& function, uint64_t removed_at);
  // Drops a function's series whatever counted them: it exists no more.
  void forget_all(const std::string& function);
  // Lines for everything recorded so far; the pool's gauges are
  // render_pool_stats'.
  std::string render();

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};
    uint64_t count = 0;
    double sum = 0;
  };
  void note_deploy(const std::string& function, uint64_t deploy);  // under mu_
  void erase(const std::string& function);                         // under mu_

  std::mutex mu_;
  Deletions deleted_;                       // each function's latest forget()
  std::map<std::string, uint64_t> newest_;  // the newest deploy each function's series counted
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::pair<std::string, bool>, uint64_t> starts_;
};

std::string render_pool_stats(const PoolStats& s);

// nsbox_sandbox_memory_bytes, a line per sandbox. Each line costs factory
// calls (round trips to the spawner, which reads the cgroup and walks the
// sandbox's page tables), so scrapes must not keep the spawner from making
// sandboxes: the lines are refreshed at most once a second however often
// /metrics is scraped, and with thousands of sandboxes, whose refresh takes
// seconds, only after 19 times as long as the last refresh took (but at
// most 60 s), so that refreshes take at most a twentieth of the spawner's
// time.
class SandboxMemory {
 public:
  using Clock = std::chrono::steady_clock;
  explicit SandboxMemory(SandboxFactory& factory, Clock::time_point (*now)() = Clock::now)
      : factory_(factory), now_(now) {}
  // ids: the sandboxes to report (PoolStats::ids); used only on a refresh.
  std::string render(const std::vector<uint64_t>& ids);

 private:
  SandboxFactory& factory_;
  Clock::time_point (*now_)();
  std::mutex mu_;             // held across a refresh: concurrent scrapes wait and share it
  Clock::time_point next_{};  // no refresh before (the clock's zero: the first is due)
  std::string lines_;
};

}  // namespace nsbox
