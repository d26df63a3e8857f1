#include "base/result.hpp"

#include <cstring>

namespace nsbox {

std::string Error::message() const {
  std::string m;
  for (const auto& l : layers) m += l + ": ";
  m += step;
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

Error&& Error::within(std::string what) && {
  layers.insert(layers.begin(), std::move(what));
  return std::move(*this);
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
