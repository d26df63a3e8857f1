// Errors as values: every failure carries the step that failed, what it
// acted on and the errno, captured where it happened (CONTRIBUTING.md §4).
// g++ 12 has no std::expected, so Result<T> is a small look-alike.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace nsbox {

struct Error {
  Error() = default;
  // The one constructor; sys_error() and make_error() below are shorthands.
  Error(int err_, std::string step_, std::string context_ = {}, std::string detail_ = {})
      : err(err_),
        step(std::move(step_)),
        context(std::move(context_)),
        detail(std::move(detail_)) {}

  int err = 0;          // errno; 0 when the failure is not a syscall's
  std::string step;     // e.g. "pivot_root"
  std::string context;  // what the step acted on, e.g. a path
  std::string detail;   // human text when err == 0
  // What the layers above were doing, outermost first (crun's habit of
  // wrapping an error at each layer): "starting sandbox 17".
  std::vector<std::string> layers;

  // "starting sandbox 17: pivot_root(/run/nsbox/root): Operation not permitted"
  std::string message() const;
  // For a user: detail alone where there is one (it says what and where
  // already), else message().
  std::string text() const { return detail.empty() ? message() : detail; }
  // Adds what the caller was doing; returns *this to be returned on.
  Error&& within(std::string what) &&;
};

// Captures errno now: call it right after the failing syscall.
Error sys_error(std::string step, std::string context = {});
Error sys_error_n(int err, std::string step, std::string context = {});
Error make_error(std::string step, std::string detail);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}
  Result(Error e) : v_(std::move(e)) {}
  explicit operator bool() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : e_(std::move(e)), ok_(false) {}
  explicit operator bool() const { return ok_; }
  void value() const {}
  const Error& error() const& { return e_; }
  Error&& error() && { return std::move(e_); }

 private:
  Error e_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace nsbox

// Propagates the error of a Result, else yields its value (GNU statement
// expression, as in crun's and systemd's C).
#define TRY(expr)                                  \
  ({                                               \
    auto _try_r = (expr);                          \
    if (!_try_r) return std::move(_try_r).error(); \
    std::move(_try_r).value();                     \
  })

// TRY, adding what this layer was doing to the error it propagates.
#define TRY_WITHIN(expr, what)                                    \
  ({                                                              \
    auto _try_r = (expr);                                         \
    if (!_try_r) return std::move(_try_r).error().within((what)); \
    std::move(_try_r).value();                                    \
  })
