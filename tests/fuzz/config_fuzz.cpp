// The daemon's config reader (gateway/config.cpp on toml++). Checked: no
// crash, no exception escapes, every error names the file, and an accepted
// config has a usable listen address, an absolute state_dir and a token that
// is empty (generated) or long enough.
#include <cstdint>
#include <string>

#include "gateway/config.hpp"

#define FUZZ_CHECK(cond) \
  if (!(cond)) __builtin_trap()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);

  std::string host;
  int port = 0;
  if (nsbox::parse_listen(text, &host, &port)) FUZZ_CHECK(port >= 1 && port <= 65535);

  auto c = nsbox::parse_serve_config(text, "fuzz.toml");
  if (!c) {
    FUZZ_CHECK(c.error().message().find("fuzz.toml") != std::string::npos);
    return 0;
  }
  const nsbox::ServeConfig& cfg = c.value();
  FUZZ_CHECK(cfg.listen_port >= 1 && cfg.listen_port <= 65535 && !cfg.listen_host.empty());
  FUZZ_CHECK(!cfg.state_dir.empty() && cfg.state_dir[0] == '/');
  FUZZ_CHECK(cfg.token.empty() || cfg.token.size() >= 16);
  FUZZ_CHECK(cfg.max_body_bytes >= 1024 && cfg.memory_budget_bytes >= (64ull << 20));
  return 0;
}
