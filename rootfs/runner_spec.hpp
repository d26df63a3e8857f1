// How a sandbox that runs the runner is described: its command line, its
// environment, and the SandboxSpec a policy makes of them. `nsbox run` and
// the daemon's spawner profiles both start from runner_spec(), so the
// policy reaches a sandbox the same way whoever starts it.
#pragma once

#include <string>
#include <vector>

#include "sandbox/spec.hpp"

namespace nsbox {

// The runner's command line: isolated python (-I: no user site, no env vars;
// -S: no site.py), reading request frames on fd 3 and writing replies on
// fd 4 (the channel's two pipes). With an empty function, the
// sandbox starts blank and is told its function by the first frame.
std::vector<std::string> runner_argv(const std::string& runner, const std::string& function = "",
                                     const std::string& handler = "");
// The whole environment a function sees: nothing inherited from the host.
std::vector<std::string> runner_env();

// What a Python template (the template factory, sandbox/template.hpp)
// imports before its first clone, so that no sandbox pays for them: what
// the runner itself imports on its paths, and the standard library modules
// handlers most often start with. Each costs the template memory once,
// shared by every sandbox.
std::vector<std::string> default_template_modules();

// The id mapping this process can have: as root, a uid slot's range (the
// slot is picked at start); otherwise only the caller's own uid and gid.
IdMap caller_ids();

// A sandbox running the runner under policy: the policy's limits and
// network, the shared rootfs, the stage dir, the runner's argv and env.
// function: the host path of a function file, mounted read-only at
// code_mount (`nsbox run`); empty: nothing mounted (the daemon). Either way
// the runner starts blank and is told its function by a load frame
// (runner_load), never by its command line: no code of the function may
// run before the sandbox is set up, and that ends after the runner has
// started, when PID 1 has exec'd nsbox-init and made it non-dumpable
// (Sandbox::start returns then). The caller still sets what only it knows:
// id, use_cgroups, stderr_fd.
SandboxSpec runner_spec(const Policy& policy, const std::string& rootfs,
                        const std::string& stage_dir, const IdMap& ids,
                        const std::string& function = "");
// Where runner_spec's function file is inside the sandbox: code_mount/<its
// base name>.
std::string function_path_inside(const SandboxSpec& spec);

}  // namespace nsbox
