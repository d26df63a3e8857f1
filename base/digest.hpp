// SHA-256 from libcrypto. In its own library so that only what needs it
// (the function store) links libcrypto: `nsbox run` loads no TLS library.
#pragma once

#include <string>
#include <string_view>

namespace nsbox {

// Lower-case hex digest of data.
std::string sha256_hex(std::string_view data);

}  // namespace nsbox
