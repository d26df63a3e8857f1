// Limits that more than one component must agree on.
#pragma once

#include <cstddef>

namespace nsbox {

// A function's source: the deploy API refuses more, the CLI checks before
// sending, and a load frame carries it whole as its payload.
constexpr size_t kMaxSourceBytes = size_t(1) << 20;

}  // namespace nsbox
