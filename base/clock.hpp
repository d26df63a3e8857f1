// The clocks, in one place. Deadlines and durations use CLOCK_MONOTONIC
// (never stepped by NTP or an admin); only timestamps shown to people or
// stored (created_unix_ms, a runner's deadline_ms) use the wall clock.
// Inline, allocation-free and async-signal-safe: the sandbox's child side
// calls them between clone and exec.
#pragma once

#include <sys/time.h>
#include <time.h>

#include <cstdint>

namespace nsbox {

inline uint64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}
inline uint64_t monotonic_us() {
  return monotonic_ns() / 1000;
}
inline uint64_t monotonic_ms() {
  return monotonic_ns() / 1000000;
}
// Milliseconds since the Unix epoch.
inline int64_t wall_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace nsbox
