// Who ran `sudo nsbox ...`, and opening the files they name with their
// rights, not root's. nsbox refuses to be set-uid because its errors quote
// the files it reads (a policy file's parse error shows its lines, Python's
// shows the source), and `sudo nsbox run` reaches as far: granted alone in
// sudoers, it would show any root-only file to the user. So the files a
// user names on the command line are opened by a child that has become
// that user (groups included) and handed back as an fd: what root then
// reads, mounts or sends is exactly what the user could open.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"

namespace nsbox {

struct Invoker {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;  // SUDO_USER, or "uid N"
  std::vector<gid_t> groups;
};

// The user behind sudo: set when this process runs as root and sudo's
// SUDO_UID names someone else (a SUDO_UID that does not parse is refused:
// root that meant to be someone else must not silently stay root).
Result<std::optional<Invoker>> sudo_invoker();

// open(path, flags) as `who` (O_CLOEXEC added), or as ourselves when
// `who` is empty. The error names the path, the errno and, when it was the
// invoker's rights that failed, whose they were (its text is written for
// sudo's invoker; `nsbox run --no-isolation` also asks as nobody, and says
// why itself).
Result<UniqueFd> open_as(const std::optional<Invoker>& who, const std::string& path, int flags);

// The whole of a regular file opened as `who` (open_as), up to limit
// bytes: a FIFO, a terminal or /dev/zero must not hang or fill the
// command. Errors name the path: "not a regular file", "N bytes, more than
// LIMIT_TEXT" (limit_text says what the limit is for, e.g. "the 1 MiB a
// function's source may have"), or the read's errno.
Result<std::string> read_file_as(const std::optional<Invoker>& who, const std::string& path,
                                 size_t limit, const std::string& limit_text);

}  // namespace nsbox
