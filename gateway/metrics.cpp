#include "gateway/metrics.hpp"

#include <cstdio>

namespace nsbox {

void Metrics::request(const std::string& function, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_[{function, status}]++;
  Histogram& h = latency_[function];
  for (size_t i = 0; i < kBuckets.size(); i++)
    if (seconds <= kBuckets[i]) h.counts[i]++;
  h.count++;
  h.sum += seconds;
}

void Metrics::start(const std::string& function, bool cold) {
  std::lock_guard<std::mutex> lock(mu_);
  starts_[{function, cold}]++;
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

}  // namespace nsbox
