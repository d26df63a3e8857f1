// Random bytes from the kernel, and bytes as hex: what tokens, request ids
// and temporary names are made of.
#pragma once

#include <cstddef>
#include <string>

#include "base/result.hpp"

namespace nsbox {

// Fills buf with len bytes from getrandom (blocking until the pool is
// initialised, retrying EINTR and short reads). Errors name `context`.
Status random_bytes(void* buf, size_t len, const std::string& context);

// Lower-case hex, two digits per byte.
std::string hex_of(const unsigned char* data, size_t len);

// len random bytes as 2*len hex digits.
Result<std::string> random_hex(size_t len, const std::string& context);

}  // namespace nsbox
