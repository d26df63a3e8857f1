// Sizes and durations as people write them on a command line or in a query
// string. Pure, unit-tested.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.hpp"

namespace nsbox {

// "128M", "128MiB", "1g", "512k", "1048576b"; a bare number means MiB (as
// AWS Lambda's MemorySize).
Result<uint64_t> parse_size(const std::string& text);
// "500ms", "3s", "1.5s", "2m"; a bare number means seconds (as Lambda's
// Timeout). Returns milliseconds, from 1 to max_ms; the error names the
// range with max_text ("24h": max_ms written as a duration).
Result<uint64_t> parse_duration_ms(const std::string& text, uint64_t max_ms = 24ull * 3600 * 1000,
                                   const char* max_text = "24h");
// A function's timeout: at most 15 minutes, as Lambda's.
constexpr uint64_t kMaxFunctionTimeoutMs = 15 * 60 * 1000;
// The largest [functions] max_memory_mb, so the most a function's ?memory=
// can be: 16 TiB, far from where MiB << 20 overflows.
constexpr uint64_t kMaxMemoryMb = 1ull << 24;

}  // namespace nsbox
