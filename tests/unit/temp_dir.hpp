// The unit tests' scratch directory, shaped like the integration harness's
// TempDir (tests/integration/harness.hpp) so a test reads the same in both.
// Unlike that one it is named by mkdtemp, not by the pid: a test case may
// hold several at once, and mkdtemp never reuses a name that a killed run
// left behind.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

namespace nsbox::test {

// /tmp/nsbox-TAG-XXXXXX, made when constructed and removed with everything
// in it when the test case ends, however it ends.
struct TempDir {
  std::string path;

  explicit TempDir(const std::string& tag) {
    std::string tmpl = "/tmp/nsbox-" + tag + "-XXXXXX";
    const bool made = ::mkdtemp(tmpl.data()) != nullptr;
    const int err = errno;
    REQUIRE_MESSAGE(made, "mkdtemp(" << tmpl << "): " << std::strerror(err));
    path = tmpl;
  }
  ~TempDir() {
    // A destructor cannot fail the test case (it may run while a failed
    // REQUIRE unwinds): say what is left behind instead.
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) std::fprintf(stderr, "remove_all(%s): %s\n", path.c_str(), ec.message().c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace nsbox::test
