// `nsbox serve`: the daemon. Wires config, registry, spawner, pool and the
// HTTP gateway together, and owns signals (SIGTERM drains, SIGHUP reloads).
#pragma once

#include <string>
#include <vector>

namespace nsbox {

int cmd_serve(const std::vector<std::string>& args);

}  // namespace nsbox
