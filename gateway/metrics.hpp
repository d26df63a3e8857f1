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

#include "gateway/pool.hpp"
#include "sandbox/spawner.hpp"

namespace nsbox {

class Metrics {
 public:
  static constexpr std::array<double, 11> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10};
  void request(const std::string& function, int status, double seconds);
  void start(const std::string& function, bool cold);
  // Lines for everything recorded so far; the pool's gauges are
  // render_pool_stats'.
  std::string render();

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};
    uint64_t count = 0;
    double sum = 0;
  };
  std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::pair<std::string, bool>, uint64_t> starts_;
};

std::string render_pool_stats(const PoolStats& s);

// nsbox_sandbox_memory_bytes, a line per sandbox. Each line costs a factory
// call (a round trip to the spawner), so the lines are refreshed at most
// once a second however often /metrics is scraped: scrapes cannot keep the
// spawner from making sandboxes.
class SandboxMemory {
 public:
  explicit SandboxMemory(SandboxFactory& factory) : factory_(factory) {}
  // ids: the sandboxes to report (PoolStats::ids); used only on a refresh.
  std::string render(const std::vector<uint64_t>& ids);

 private:
  SandboxFactory& factory_;
  std::mutex mu_;  // held across a refresh: concurrent scrapes wait and share it
  std::chrono::steady_clock::time_point at_{};
  std::string lines_;
};

}  // namespace nsbox
