#include "base/result.hpp"

#include <cstring>

namespace nsbox {

std::string Error::message() const {
  std::string m = step;
  if (!context.empty()) m += "(" + context + ")";
  if (err != 0) {
    m += ": ";
    m += std::strerror(err);
  }
  if (!detail.empty()) {
    m += ": ";
    m += detail;
  }
  return m;
}

Error sys_error(std::string step, std::string context) {
  return Error{errno, std::move(step), std::move(context), {}};
}

Error sys_error_n(int err, std::string step, std::string context) {
  return Error{err, std::move(step), std::move(context), {}};
}

Error make_error(std::string step, std::string detail) {
  return Error{0, std::move(step), {}, std::move(detail)};
}

}  // namespace nsbox
