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
// Timeout). Returns milliseconds.
Result<uint64_t> parse_duration_ms(const std::string& text);

}  // namespace nsbox
