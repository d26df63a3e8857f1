#include "gateway/metrics.hpp"

#include <algorithm>
#include <cstdio>

namespace nsbox {

namespace {
constexpr auto kSandboxMemoryRefresh = std::chrono::seconds(1);
constexpr int kRefreshIdleFactor = 19;  // idle time per unit of refresh time
// However slow the last refresh (it also counts the time queued behind
// spawns), the lines are never older than this plus one refresh.
constexpr auto kSandboxMemoryMaxWait = std::chrono::seconds(60);
}  // namespace

void Metrics::request(const std::string& function, int status, double seconds, uint64_t deploy) {
  std::lock_guard<std::mutex> lock(mu_);
  if (deleted_.deleted(function, deploy)) return;
  note_deploy(function, deploy);
  requests_[{function, status}]++;
  Histogram& h = latency_[function];
  for (size_t i = 0; i < kBuckets.size(); i++)
    if (seconds <= kBuckets[i]) h.counts[i]++;
  h.count++;
  h.sum += seconds;
}

void Metrics::start(const std::string& function, bool cold, uint64_t deploy) {
  std::lock_guard<std::mutex> lock(mu_);
  if (deleted_.deleted(function, deploy)) return;
  note_deploy(function, deploy);
  starts_[{function, cold}]++;
}

void Metrics::note_deploy(const std::string& function, uint64_t deploy) {
  if (deploy == 0) return;
  uint64_t& newest = newest_[function];
  newest = std::max(newest, deploy);
}

void Metrics::erase(const std::string& function) {
  std::erase_if(requests_, [&](const auto& kv) { return kv.first.first == function; });
  std::erase_if(starts_, [&](const auto& kv) { return kv.first.first == function; });
  latency_.erase(function);
  newest_.erase(function);
}

void Metrics::forget(const std::string& function, uint64_t removed_at) {
  std::lock_guard<std::mutex> lock(mu_);
  deleted_.note(function, removed_at);
  // A deploy made since (a delete of many versions takes a while) has
  // counted requests already: its series stay, with what the deleted one
  // counted before in them.
  if (auto newest = newest_.find(function); newest != newest_.end() && newest->second >= removed_at)
    return;
  erase(function);
}

void Metrics::forget_all(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  erase(function);
}

std::string Metrics::render() {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  char buf[512];
  out += "# HELP nsbox_requests_total Function invocations by HTTP status.\n";
  out += "# TYPE nsbox_requests_total counter\n";
  for (const auto& [k, v] : requests_) {
    snprintf(buf, sizeof buf, "nsbox_requests_total{function=\"%s\",status=\"%d\"} %llu\n",
             k.first.c_str(), k.second, (unsigned long long)v);
    out += buf;
  }
  out += "# HELP nsbox_request_duration_seconds Invocation latency, queueing included.\n";
  out += "# TYPE nsbox_request_duration_seconds histogram\n";
  for (const auto& [fn, h] : latency_) {
    for (size_t i = 0; i < kBuckets.size(); i++) {
      snprintf(buf, sizeof buf,
               "nsbox_request_duration_seconds_bucket{function=\"%s\",le=\"%g\"} %llu\n",
               fn.c_str(), kBuckets[i], (unsigned long long)h.counts[i]);
      out += buf;
    }
    snprintf(buf, sizeof buf,
             "nsbox_request_duration_seconds_bucket{function=\"%s\",le=\"+Inf\"} %llu\n"
             "nsbox_request_duration_seconds_sum{function=\"%s\"} %.6f\n"
             "nsbox_request_duration_seconds_count{function=\"%s\"} %llu\n",
             fn.c_str(), (unsigned long long)h.count, fn.c_str(), h.sum, fn.c_str(),
             (unsigned long long)h.count);
    out += buf;
  }
  out +=
      "# HELP nsbox_starts_total Invocations by start kind: cold (function loaded into a "
      "blank sandbox) or warm (sandbox reused).\n";
  out += "# TYPE nsbox_starts_total counter\n";
  for (const auto& [k, v] : starts_) {
    snprintf(buf, sizeof buf, "nsbox_starts_total{function=\"%s\",kind=\"%s\"} %llu\n",
             k.first.c_str(), k.second ? "cold" : "warm", (unsigned long long)v);
    out += buf;
  }
  return out;
}

std::string render_pool_stats(const PoolStats& s) {
  std::string out;
  char buf[2048];
  snprintf(buf, sizeof buf,
           "# HELP nsbox_pool_sandboxes Sandboxes by state.\n"
           "# TYPE nsbox_pool_sandboxes gauge\n"
           "nsbox_pool_sandboxes{state=\"blank\"} %d\n"
           "nsbox_pool_sandboxes{state=\"idle\"} %d\n"
           "nsbox_pool_sandboxes{state=\"busy\"} %d\n"
           "# TYPE nsbox_pool_waiting_requests gauge\nnsbox_pool_waiting_requests %d\n"
           "# HELP nsbox_pool_max_sandboxes The cap on sandboxes in force: max_sandboxes, or "
           "lower where the host's open files, pid_max or uid slots allow fewer.\n"
           "# TYPE nsbox_pool_max_sandboxes gauge\nnsbox_pool_max_sandboxes %d\n"
           "# TYPE nsbox_pool_memory_limit_bytes gauge\nnsbox_pool_memory_limit_bytes %llu\n"
           "# TYPE nsbox_pool_evictions_total counter\nnsbox_pool_evictions_total %llu\n"
           "# TYPE nsbox_pool_idle_expired_total counter\nnsbox_pool_idle_expired_total %llu\n"
           "# TYPE nsbox_pool_spawned_total counter\nnsbox_pool_spawned_total %llu\n"
           "# TYPE nsbox_pool_spawn_failures_total counter\nnsbox_pool_spawn_failures_total %llu\n"
           "# HELP nsbox_pool_found_dead_total Blank and idle sandboxes found exited (killed) "
           "while they waited, and replaced.\n"
           "# TYPE nsbox_pool_found_dead_total counter\nnsbox_pool_found_dead_total %llu\n",
           s.blank, s.idle, s.busy, s.waiting, s.max_sandboxes, (unsigned long long)s.memory_bytes,
           (unsigned long long)s.evictions, (unsigned long long)s.idle_expired,
           (unsigned long long)s.spawned, (unsigned long long)s.spawn_failures,
           (unsigned long long)s.found_dead);
  out += buf;
  snprintf(buf, sizeof buf,
           "# HELP nsbox_pool_frozen_sandboxes Idle sandboxes frozen (no CPU) until leased.\n"
           "# TYPE nsbox_pool_frozen_sandboxes gauge\nnsbox_pool_frozen_sandboxes %d\n"
           "# HELP nsbox_pool_parked_sandboxes Frozen sandboxes whose fds wait in an fd keeper "
           "process, outside the gateway's open files.\n"
           "# TYPE nsbox_pool_parked_sandboxes gauge\nnsbox_pool_parked_sandboxes %llu\n"
           "# TYPE nsbox_fd_keepers gauge\nnsbox_fd_keepers %llu\n"
           "# TYPE nsbox_pool_freezes_total counter\nnsbox_pool_freezes_total %llu\n"
           "# TYPE nsbox_pool_thaws_total counter\nnsbox_pool_thaws_total %llu\n"
           "# HELP nsbox_pool_pressure_evictions_total Idle sandboxes evicted under memory "
           "pressure (also in nsbox_pool_evictions_total).\n"
           "# TYPE nsbox_pool_pressure_evictions_total counter\n"
           "nsbox_pool_pressure_evictions_total %llu\n"
           "# TYPE nsbox_memory_pressure gauge\nnsbox_memory_pressure %d\n"
           "# HELP nsbox_pool_function_templates Function templates kept or being made "
           "(deployed with template=1; counted in the budget, not in nsbox_pool_sandboxes).\n"
           "# TYPE nsbox_pool_function_templates gauge\nnsbox_pool_function_templates %d\n"
           "# TYPE nsbox_pool_template_evictions_total counter\n"
           "nsbox_pool_template_evictions_total %llu\n",
           s.frozen, (unsigned long long)s.parked, (unsigned long long)s.keepers,
           (unsigned long long)s.freezes, (unsigned long long)s.thaws,
           (unsigned long long)s.pressure_evictions, s.memory_pressure ? 1 : 0, s.templates,
           (unsigned long long)s.template_evictions);
  out += buf;
  return out;
}

std::string SandboxMemory::render(const std::vector<uint64_t>& ids) {
  std::lock_guard<std::mutex> lock(mu_);
  const Clock::time_point start = now_();
  if (start >= next_) {
    // Three families per sandbox, each line group under its own HELP/TYPE:
    // the cgroup's charge, and what its processes map of their own (USS)
    // and as their share of what they map with others (PSS), which for a
    // clone of a template is mostly the template's heap.
    std::string charge, uss, pss;
    char buf[160];
    for (uint64_t id : ids) {
      auto ev = factory_.events(id);
      if (!ev) continue;  // destroyed since the pool listed it
      snprintf(buf, sizeof buf, "nsbox_sandbox_memory_bytes{sandbox=\"%llu\"} %llu\n",
               (unsigned long long)id, (unsigned long long)ev.value().memory_current);
      charge += buf;
      auto m = factory_.process_memory(id);
      if (!m) continue;
      snprintf(buf, sizeof buf, "nsbox_sandbox_uss_bytes{sandbox=\"%llu\"} %llu\n",
               (unsigned long long)id, (unsigned long long)m.value().uss);
      uss += buf;
      snprintf(buf, sizeof buf, "nsbox_sandbox_pss_bytes{sandbox=\"%llu\"} %llu\n",
               (unsigned long long)id, (unsigned long long)m.value().pss);
      pss += buf;
    }
    std::string templates;
    if (auto t = factory_.template_memory(); t && t.value().processes > 0) {
      const ProcessMemory& m = t.value();
      snprintf(buf, sizeof buf,
               "# HELP nsbox_templates Template processes running (the template factory).\n"
               "# TYPE nsbox_templates gauge\nnsbox_templates %u\n",
               m.processes);
      templates += buf;
      // Built by appending: the three lines do not fit buf.
      for (auto [name, v] :
           {std::pair<std::string, uint64_t>{"rss", m.rss}, {"pss", m.pss}, {"uss", m.uss}}) {
        const std::string metric = "nsbox_template_" + name + "_bytes";
        templates += "# HELP " + metric + " The templates' own memory (" + name +
                     "), shared by their clones.\n# TYPE " + metric + " gauge\n" + metric + " " +
                     std::to_string(v) + "\n";
      }
    }
    lines_ =
        "# HELP nsbox_sandbox_memory_bytes Memory charged to each idle or blank sandbox's "
        "cgroup, refreshed at most once a second, and with many sandboxes after 19 times as "
        "long as a refresh takes (at most 60 s).\n"
        "# TYPE nsbox_sandbox_memory_bytes gauge\n" +
        charge +
        "# HELP nsbox_sandbox_uss_bytes Memory only each idle or blank sandbox's processes map "
        "(USS).\n"
        "# TYPE nsbox_sandbox_uss_bytes gauge\n" +
        uss +
        "# HELP nsbox_sandbox_pss_bytes Each idle or blank sandbox's proportional share of the "
        "memory its processes map (PSS).\n"
        "# TYPE nsbox_sandbox_pss_bytes gauge\n" +
        pss + templates;
    const Clock::time_point end = now_();
    next_ = end + std::clamp<Clock::duration>((end - start) * kRefreshIdleFactor,
                                              kSandboxMemoryRefresh, kSandboxMemoryMaxWait);
  }
  return lines_;
}

}  // namespace nsbox
