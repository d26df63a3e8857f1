// Directories and whole files, with errors as values.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.hpp"

namespace nsbox {

// mkdir -p: creates each missing component of path with mode (existing ones
// keep theirs). A component that exists but is not a directory is ENOTDIR.
// Returns whether the last component was created here (its parent's entry
// then needs an fsync to be durable).
Result<bool> mkdir_p(const std::string& path, mode_t mode);

// One directory: created with mode, or already there as a directory.
Status ensure_dir(const std::string& path, mode_t mode);

}  // namespace nsbox
