// Where the tests find nsbox-fdkeeper: meson test says (NSBOX_FDKEEPER);
// else it is built in tools/ beside tests/ (build/tests/unit/unit_tests).
#pragma once

#include <doctest/doctest.h>
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace nsbox::test {

inline std::string keeper_path() {
  if (const char* p = getenv("NSBOX_FDKEEPER")) return p;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  REQUIRE(n > 0);
  std::string s(self, static_cast<size_t>(n));
  for (int up = 0; up < 3; up++) s = s.substr(0, s.find_last_of('/'));
  return s + "/tools/nsbox-fdkeeper";
}

}  // namespace nsbox::test
