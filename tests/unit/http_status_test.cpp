// The reason phrases: every one the table has may stand in a status line,
// and each code the daemon or the CLI uses has one.
#include "gateway/http_status.hpp"

#include <doctest/doctest.h>

#include <string>

using nsbox::http_reason;

TEST_CASE("http_reason: each phrase is a valid reason-phrase (RFC 9112 §4)") {
  for (int status = 100; status <= 599; status++) {
    CAPTURE(status);
    const std::string phrase(http_reason(status));
    if (phrase.empty()) continue;
    // 1*( HTAB / SP / VCHAR / obs-text ); nothing that could end the line.
    bool valid = true;
    for (unsigned char ch : phrase)
      valid = valid && (ch == '\t' || ch == ' ' || ch >= 0x21) && ch != 0x7f;
    CHECK_MESSAGE(valid, phrase);
    CHECK(phrase.front() != ' ');
    CHECK(phrase.back() != ' ');
  }
}

TEST_CASE("http_reason: the codes the front and the CLI use have their RFC 9110 phrase") {
  // The front's own refusals and the gateway's answers.
  for (int status : {100, 200, 201, 204, 400, 401, 403, 404, 405, 408, 409,
                     413, 415, 417, 429, 431, 500, 501, 502, 503, 504, 505}) {
    CAPTURE(status);
    CHECK_FALSE(http_reason(status).empty());
  }
  CHECK(http_reason(200) == "OK");
  CHECK(http_reason(404) == "Not Found");
  CHECK(http_reason(413) == "Content Too Large");  // RFC 7231's "Payload Too Large" is obsolete
  CHECK(http_reason(429) == "Too Many Requests");
  CHECK(http_reason(431) == "Request Header Fields Too Large");
  CHECK(http_reason(503) == "Service Unavailable");
}

TEST_CASE("http_reason: an unregistered code has none, for the caller's stand-in") {
  for (int status : {0, 99, 299, 418, 499, 599, 600, -1}) {
    CAPTURE(status);
    CHECK(http_reason(status).empty());
  }
}
