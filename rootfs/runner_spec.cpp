#include "rootfs/runner_spec.hpp"

#include <unistd.h>

#include "rootfs/rootfs.hpp"

namespace nsbox {

std::vector<std::string> runner_argv(const std::string& runner, const std::string& function,
                                     const std::string& handler) {
  std::vector<std::string> argv = {kHostPython, "-I", "-S", runner, "--fd", "3", "--out-fd", "4"};
  if (!function.empty()) {
    argv.insert(argv.end(), {"--function", function, "--handler", handler});
  }
  return argv;
}

std::vector<std::string> runner_env() {
  return {"PATH=/usr/bin:/bin",        "HOME=/tmp",         "TMPDIR=/tmp", "LANG=C.UTF-8",
          "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"};
}

std::vector<std::string> default_template_modules() {
  return {"_json",       "json",   "select",   "time",        "traceback",
          "linecache",   "base64", "binascii", "datetime",    "re",
          "collections", "math",   "random",   "urllib.parse"};
}

IdMap caller_ids() {
  IdMap ids;
  ids.rootless = geteuid() != 0;
  ids.host_uid = geteuid();
  ids.host_gid = getegid();
  return ids;
}

SandboxSpec runner_spec(const Policy& policy, const std::string& rootfs,
                        const std::string& stage_dir, const IdMap& ids,
                        const std::string& function) {
  SandboxSpec spec;
  spec.rootfs = rootfs;
  spec.stage_dir = stage_dir;
  spec.limits = policy.limits;
  spec.network = policy.network;
  spec.ids = ids;
  spec.env = runner_env();
  spec.argv = runner_argv(kRunnerPath);
  spec.code_path = function;
  return spec;
}

std::string function_path_inside(const SandboxSpec& spec) {
  // A single file is mounted as code_mount/<its name> (plan_mounts).
  auto slash = spec.code_path.find_last_of('/');
  return spec.code_mount + "/" +
         (slash == std::string::npos ? spec.code_path : spec.code_path.substr(slash + 1));
}

}  // namespace nsbox
