#include "base/random.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace nsbox {

Status random_bytes(void* buf, size_t len, const std::string& context) {
  auto* p = static_cast<unsigned char*>(buf);
  for (size_t got = 0; got < len;) {
    const ssize_t n = getrandom(p + got, len - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("getrandom", context);
    if (n == 0) return sys_error_n(EIO, "getrandom", context);
    got += static_cast<size_t>(n);
  }
  return {};
}

std::string hex_of(const unsigned char* data, size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * len, '0');
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

Result<std::string> random_hex(size_t len, const std::string& context) {
  std::vector<unsigned char> raw(len);
  TRY(random_bytes(raw.data(), len, context));
  std::string hex = hex_of(raw.data(), len);
  // A token's raw bytes should not linger in freed heap.
  explicit_bzero(raw.data(), len);
  return hex;
}

}  // namespace nsbox
