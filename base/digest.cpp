#include "base/digest.hpp"

#include <openssl/evp.h>

#include <stdexcept>

#include "base/random.hpp"

namespace nsbox {

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_Digest fails only when libcrypto cannot allocate or has no SHA-256:
  // nothing a caller could recover from.
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1 || len != 32)
    throw std::runtime_error("libcrypto: SHA-256 failed");
  return hex_of(md, len);
}

}  // namespace nsbox
