// A function's API-gateway proxy response (a result with statusCode) becomes
// the HTTP response itself; this decides what of it the daemon may send. The
// function is hostile: it may name any status and any header.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nsbox {

struct ProxyHead {
  int status = 200;
  std::string content_type = "application/json";
  // In the envelope's order; only those that may be sent.
  std::vector<std::pair<std::string, std::string>> headers;
};

// From the reply's envelope (statusCode, headers as the function returned
// them). nullopt when statusCode is not a JSON integer in 200-599. Headers
// that would let the function frame the response itself or inject another
// header are dropped: see forbidden_header and header_token; so is a value
// field_value_ok refuses.
std::optional<ProxyHead> proxy_head(const nlohmann::json& envelope);

// Framing and hop-by-hop headers (Content-Length, Transfer-Encoding,
// Connection, Keep-Alive, Upgrade, TE, Trailer, Host, Proxy-*), any case:
// set by a function they would desynchronise keep-alive clients and shared
// proxies.
bool forbidden_header(const std::string& name);

// An RFC 9110 token of at most 256 bytes.
bool header_token(const std::string& name);

// An RFC 9110 field value: no control character but HTAB (so no CR, LF,
// NUL, VT, ESC or DEL); bytes 0x80-0xff (obs-text) pass.
bool field_value_ok(std::string_view value);

}  // namespace nsbox
