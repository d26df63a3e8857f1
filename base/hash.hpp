// A fast, non-cryptographic hash for cache keys that only the daemon's own
// root-owned inputs choose (compiled seccomp filters, the runtime rootfs
// stamp). Content addressed by what strangers send uses SHA-256
// (base/digest.hpp).
#pragma once

#include <cstdint>
#include <string_view>

namespace nsbox {

constexpr uint64_t kFnv1aOffset = 14695981039346656037ull;  // FNV-1a 64-bit offset basis

// 64-bit FNV-1a of s, continuing from h (chain calls to hash several parts).
uint64_t fnv1a64(std::string_view s, uint64_t h = kFnv1aOffset);

}  // namespace nsbox
