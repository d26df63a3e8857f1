#include "gateway/proxy_response.hpp"

#include <strings.h>

#include <cctype>
#include <string_view>

namespace nsbox {

using json = nlohmann::json;

bool forbidden_header(const std::string& name) {
  // The last ones act on the whole origin (or host), which every function
  // shares (/fn/NAME): one tenant's answer could wipe the others' storage in
  // a visitor's browser, widen a worker's scope, have every later request to
  // any function reported to it for a year (NEL with Report-To), pin
  // HTTPS and alternative services for the host (the proxy in front sets
  // Strict-Transport-Security itself), set which client hints every page of
  // the origin is sent (Accept-CH, Critical-CH), its agent clustering, the
  // browser's login status for it (Set-Login), or write to storage or
  // attribution state that belongs to the origin.
  static const char* const kForbidden[] = {"content-length",
                                           "transfer-encoding",
                                           "connection",
                                           "keep-alive",
                                           "upgrade",
                                           "te",
                                           "trailer",
                                           "host",
                                           "clear-site-data",
                                           "service-worker-allowed",
                                           "nel",
                                           "report-to",
                                           "alt-svc",
                                           "reporting-endpoints",
                                           "strict-transport-security",
                                           "accept-ch",
                                           "critical-ch",
                                           "origin-agent-cluster",
                                           "set-login",
                                           "shared-storage-write",
                                           "observe-browsing-topics"};
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // x-nsbox-*: ours (the request id), which a function must not forge.
  // x-accel-*: nginx's orders to itself from the server behind it (an
  // internal redirect to any route, rate limits), which are not a tenant's.
  if (lower.rfind("proxy-", 0) == 0 || lower.rfind("x-nsbox-", 0) == 0 ||
      lower.rfind("x-accel-", 0) == 0 || lower.rfind("attribution-reporting-", 0) == 0)
    return true;
  for (const char* f : kForbidden)
    if (lower == f) return true;
  return false;
}

bool header_token(const std::string& name) {
  // Not strchr: it finds the terminating NUL too, and a name such as
  // "Content-Length\0x" would pass, which a reader of C strings in front of
  // us takes for Content-Length.
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  if (name.empty() || name.size() > 256) return false;
  for (unsigned char c : name)
    if (!(std::isalnum(c) || kSymbols.find(static_cast<char>(c)) != std::string_view::npos))
      return false;
  return true;
}

bool field_value_ok(std::string_view value) {
  for (unsigned char ch : value)
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
  return true;
}

std::optional<ProxyHead> proxy_head(const json& envelope) {
  auto sc = envelope.find("statusCode");
  int64_t status = sc != envelope.end() && sc->is_number_integer() ? sc->get<int64_t>() : 0;
  if (status < 200 || status > 599) return std::nullopt;
  ProxyHead head;
  head.status = static_cast<int>(status);
  auto headers = envelope.find("headers");
  if (headers == envelope.end() || !headers->is_object()) return head;
  for (const auto& [k, v] : headers->items()) {
    // A value that is not a string is sent as its JSON; invalid UTF-8 in it
    // is replaced, not thrown on.
    std::string value = v.is_string() ? v.get<std::string>()
                                      : v.dump(-1, ' ', false, json::error_handler_t::replace);
    // RFC 9110 5.5: a value is visible characters, spaces, tabs and
    // obs-text; CR, LF and NUL are dangerous, and other controls (VT, ESC,
    // DEL) are read differently by different clients and proxies.
    if (!header_token(k) || forbidden_header(k) || !field_value_ok(value))
      continue;  // no header injection, no framing of our own
    if (strcasecmp(k.c_str(), "Content-Type") == 0)
      head.content_type = value;
    else
      head.headers.emplace_back(k, value);
  }
  return head;
}

}  // namespace nsbox
