// The HTTP client subcommands (deploy, invoke, ls, rm, logs): thin wrappers
// over the daemon's API. Exit codes: 0 ok, 1 the server answered with an
// error, 2 bad usage or input, 3 the server could not be reached or answered
// something unexpected; invoke maps function outcomes like `nsbox run`
// (1 raised, 124 timed out, 137 killed by a limit).
#include "tools/client_cmd.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

#include "base/files.hpp"
#include "base/limits.hpp"
#include "base/listeners.hpp"
#include "base/terminal_escape.hpp"
#include "gateway/admin_token.hpp"
#include "gateway/config.hpp"
#include "gateway/host_check.hpp"
#include "gateway/http_status.hpp"
#include "gateway/registry.hpp"
#include "rootfs/json_check.hpp"
#include "sandbox/framing.hpp"
#include "tools/args.hpp"
#include "tools/invoker.hpp"

namespace nsbox {

namespace {

using json = nlohmann::json;

constexpr const char* kDefaultServer = "http://127.0.0.1:8080";
constexpr const char* kDefaultTokenFile = "/var/lib/nsbox/token";
constexpr int kConnectTimeoutSec = 3;
constexpr int kReadTimeoutSec = 60;
// invoke waits for the longest function timeout a deploy may ask (15 min),
// and a minute more.
constexpr int kInvokeTimeoutSec = 16 * 60;
// A whole command, whatever the server sends and however slowly: the read
// timeout restarts at every byte, so a server trickling one byte at a time
// would hold the command forever.
constexpr int kCommandDeadlineSec = 2 * 60;
// The largest answer read, and the most memory the command may reach while
// it reads one (a head can be sent forever too): the daemon's answers are at
// most a 6 MiB result or the logs ring, and JSON around them.
constexpr size_t kMaxAnswerBytes = 64u << 20;
constexpr long kMaxResidentKb = 512 << 10;
// As deep as the daemon's own JSON goes (a deeper answer is not one of its).
constexpr int kMaxJsonDepth = 256;
// The most values an answer read as JSON may hold (a list of 100,000
// functions has about 1.2 million): a document takes many times its text,
// and 64 MiB of "{}," would take gigabytes. Above, it is shown as text.
constexpr size_t kMaxJsonValues = 2'000'000;

enum Exit { kOk = 0, kServerError = 1, kUsage = 2, kUnreachable = 3 };

// ---- usage ------------------------------------------------------------------

const char* kDeployUsage = R"U(usage: nsbox deploy NAME FILE.py [options]

Uploads FILE.py (at most 1 MiB) as function NAME to a running `nsbox serve`;
deploying an existing NAME makes a new version. Prints
"Deployed at URL (version: N)". Needs the API token.
NAME: 1-63 characters of a-z 0-9 _ -, starting with a letter or digit.
)U";

const char* kInvokeUsage = R"U(usage: nsbox invoke NAME [JSON|-] [options]

Calls function NAME with the event JSON (default {}; - reads it from stdin;
at most 6 MiB) and prints what it returned on stdout. Waits up to 16 minutes
for the answer (a deploy may give a function 15).

exit codes:
  0    the function returned; its result is on stdout (a proxy response's body,
       whatever statusCode it gave)
  1    the function raised (the error JSON is on stdout), or returned an invalid
       statusCode
  2    bad usage, or the event is not JSON
  3    the daemon could not be reached or refused the request
       (no such function, overloaded, ...; the reason is on stderr), or the
       result could not be written to stdout
  124  the function timed out
  137  the function was killed by a limit (memory, pids) or its sandbox died
)U";

const char* kLsUsage = R"U(usage: nsbox ls [--json] [options]

Lists the deployed functions: NAME VERSION HANDLER POLICY CREATED (UTC).
Needs the API token or the server's read-only token ([server] read_token).
)U";

const char* kRmUsage = R"U(usage: nsbox rm NAME [options]

Deletes function NAME (all its versions). Needs the API token.
)U";

const char* kLogsUsage = R"U(usage: nsbox logs NAME [options]

Prints what function NAME printed recently (the server keeps the last lines).
Needs the API token or the server's read-only token ([server] read_token).
)U";

const char* usage_for(const std::string& cmd) {
  if (cmd == "deploy") return kDeployUsage;
  if (cmd == "invoke") return kInvokeUsage;
  if (cmd == "ls") return kLsUsage;
  if (cmd == "rm") return kRmUsage;
  return kLogsUsage;
}

int usage_error(const std::string& cmd, const std::string& msg) {
  print_for_display(STDERR_FILENO, "nsbox %s: %s\n", cmd.c_str(), msg.c_str());
  print_for_display(STDERR_FILENO, "(nsbox %s --help for usage)\n", cmd.c_str());
  return kUsage;
}

// ---- small helpers ----------------------------------------------------------

std::string bad_name_message(const std::string& name) {
  return "invalid function name \"" + name +
         "\" (1-63 characters of a-z 0-9 _ -, starting with a letter or digit)";
}

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Blanks and line breaks around a body or an event, as around a token.
std::string trim(const std::string& s) {
  return token_text(s);
}

// A body may hold what a function printed or returned: escaped when stdout
// is a terminal (tools/terminal_escape.hpp), byte-exact otherwise.
void print_body(const std::string& body) {
  std::fflush(stdout);
  write_for_display(STDOUT_FILENO, body);
  if (!body.empty() && body.back() != '\n') write_for_display(STDOUT_FILENO, "\n");
}

// ---- server URL ---------------------------------------------------------------

struct ServerUrl {
  std::string host;  // without brackets for IPv6 literals
  int port = 8080;
  std::string display;  // normalised, for messages: http://host:port
  // host resolved once (resolve_server), in the order tried: the token
  // check looks at each, and each connection is pinned to one of them.
  std::vector<std::string> addresses;
};

// http://HOST[:PORT][/]; HOST may be a name, an IPv4 address or [IPv6].
std::optional<ServerUrl> parse_server_url(const std::string& url, std::string* err) {
  std::string rest = url;
  size_t sep = url.find("://");
  if (sep != std::string::npos) {
    std::string scheme = url.substr(0, sep);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (scheme == "https") {
      *err =
          "https is not supported (the daemon speaks plain http; put a TLS proxy in front "
          "of it if needed): " +
          url;
      return std::nullopt;
    }
    if (scheme != "http") {
      *err = "unsupported scheme \"" + scheme + "\" in " + url + " (use http://HOST:PORT)";
      return std::nullopt;
    }
    rest = url.substr(sep + 3);
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find_first_of("/?#") != std::string::npos) {
    *err = "the server URL takes no path, query or fragment: " + url + " (use http://HOST:PORT)";
    return std::nullopt;
  }
  if (rest.find('@') != std::string::npos) {
    *err = "the server URL takes no user info: " + url;
    return std::nullopt;
  }
  ServerUrl u;
  std::string port_text;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) {
      *err = "unterminated [IPv6] address in " + url;
      return std::nullopt;
    }
    u.host = rest.substr(1, close - 1);
    std::string after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        *err = "unexpected \"" + after + "\" after the address in " + url;
        return std::nullopt;
      }
      port_text = after.substr(1);
      if (port_text.empty()) {
        *err = "empty port in " + url;
        return std::nullopt;
      }
    }
  } else {
    size_t colon = rest.find(':');
    if (colon != std::string::npos && rest.find(':', colon + 1) != std::string::npos) {
      *err = "write IPv6 addresses in brackets: http://[::1]:8080 (got " + url + ")";
      return std::nullopt;
    }
    u.host = rest.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.empty()) {
        *err = "empty port in " + url;
        return std::nullopt;
      }
    }
  }
  if (u.host.empty()) {
    *err = "no host in server URL " + url;
    return std::nullopt;
  }
  for (char c : u.host) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '[' || c == ']') {
      *err = "bad host in server URL " + url;
      return std::nullopt;
    }
  }
  if (!port_text.empty()) {
    if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(),
                                             [](unsigned char c) { return std::isdigit(c); })) {
      *err = "bad port \"" + port_text + "\" in " + url;
      return std::nullopt;
    }
    u.port = std::atoi(port_text.c_str());
    if (u.port < 1 || u.port > 65535) {
      *err = "port out of range in " + url;
      return std::nullopt;
    }
  }
  bool v6 = u.host.find(':') != std::string::npos;
  u.display = "http://" + (v6 ? "[" + u.host + "]" : u.host) + ":" + std::to_string(u.port);
  return u;
}

// ---- arguments ----------------------------------------------------------------

// NSBOX_SERVER, as NSBOX_TOKEN: set once for a daemon that is not on 8080.
std::string default_server() {
  const char* env = std::getenv("NSBOX_SERVER");
  return env && *env ? env : kDefaultServer;
}

struct Args {
  std::string server = default_server();
  std::optional<std::string> token;                             // --token
  std::optional<std::string> token_file;                        // --token-file
  std::optional<std::string> handler, policy, memory, timeout;  // deploy
  std::optional<std::string> use_template;                      // deploy --template
  std::optional<std::string> event;                             // invoke --event
  bool json = false;                                            // ls
  bool help = false;
  std::vector<std::string> positional;
};

// The options of cmd, writing into a: one table for parsing and --help.
std::vector<Option> client_options(const std::string& cmd, Args& a) {
  auto to = [](std::optional<std::string>& field) {
    return [&field](const std::string& v) { field = v; };
  };
  std::vector<Option> o;
  if (cmd == "deploy") {
    o.push_back(
        {"handler", 0, "NAME", "function to call (default: handler)", to(a.handler), false});
    o.push_back({"policy", 0, "NAME", "sandbox policy profile (default: the server's)",
                 to(a.policy), false});
    o.push_back({"memory", 0, "SIZE", "memory limit, e.g. 64M, 1G", to(a.memory), false});
    o.push_back({"timeout", 0, "DUR", "wall-clock limit per invocation, e.g. 500ms, 3s",
                 to(a.timeout), false});
    o.push_back({"template", 0, "",
                 "import once into a function template and fork its sandboxes\n"
                 "from it (for slow imports; its sandboxes share one sandbox's\n"
                 "namespaces)",
                 [&a](const std::string&) { a.use_template = "1"; }});
  }
  if (cmd == "invoke")
    o.push_back({"event", 0, "JSON|-",
                 "the event (default {}); - reads it from stdin; or JSON after NAME", to(a.event),
                 false});
  if (cmd == "ls")
    o.push_back({"json", 0, "", "print the server's JSON answer as is",
                 [&a](const std::string&) { a.json = true; }});
  o.push_back({"server", 0, "URL",
               "the daemon (default $NSBOX_SERVER, else http://127.0.0.1:8080; http only)",
               [&a](const std::string& v) { a.server = v; }, false});
  o.push_back({"token", 0, "TOKEN",
               "API token, or the read-only token for ls and logs (default:\n"
               "$NSBOX_TOKEN, else /var/lib/nsbox/token when readable, sent\n"
               "only to a daemon on loopback run by that file's owner:\n"
               "sudo cat /var/lib/nsbox/token)",
               to(a.token), false});
  o.push_back({"token-file", 0, "PATH", "read the API token from PATH", to(a.token_file), false});
  return o;
}

void print_usage(const std::string& cmd, FILE* to) {
  Args unused;
  std::fputs(usage_for(cmd), to);
  std::fputs(("\noptions:\n" + options_help(client_options(cmd, unused))).c_str(), to);
}

// Returns an error message, or empty on success.
std::string parse_args(const std::string& cmd, const std::vector<std::string>& in, Args* a) {
  auto parsed = parse_options(client_options(cmd, *a), in);
  if (!parsed) return parsed.error().text();
  a->help = parsed.value().help;
  a->positional = std::move(parsed.value().positional);
  return "";
}

// ---- token --------------------------------------------------------------------

struct Token {
  std::string value;                     // empty: none
  std::string source;                    // where it came from, for messages
  bool default_file_unreadable = false;  // /var/lib/nsbox/token exists but is not readable
};

// A token file holds one line: more than this is not one.
constexpr size_t kMaxTokenFileBytes = 4096;

// Returns false (message printed) when an explicitly named token file cannot
// be read, or the token found is not one a header can carry.
bool find_token_value(const Args& a, Token* t) {
  // --token-file under sudo is read with the invoker's rights, as FILE.py
  // is: a sudo rule for nsbox must not read a root-only file (the daemon's
  // own token among them) and send it wherever --server points. Only the
  // default token file is read as root, and that goes to its daemon alone
  // (token_may_go). A regular file only, and a bounded read: /dev/zero or a
  // FIFO must not hang or fill the command.
  auto read_file = [](const std::optional<Invoker>& as, const std::string& path) {
    return read_file_as(as, path, kMaxTokenFileBytes,
                        "a token (" + std::to_string(kMaxTokenFileBytes) + " bytes)");
  };
  if (a.token) {
    t->value = token_text(*a.token);
    t->source = "--token";
    return true;
  }
  if (a.token_file) {
    auto invoker = sudo_invoker();
    if (!invoker) {
      print_for_display(STDERR_FILENO, "nsbox: %s\n", invoker.error().text().c_str());
      return false;
    }
    auto text = read_file(invoker.value(), *a.token_file);
    if (!text) {
      print_for_display(STDERR_FILENO, "nsbox: cannot read token file: %s\n",
                        text.error().text().c_str());
      return false;
    }
    t->value = token_text(text.value());
    t->source = "--token-file " + *a.token_file;
    if (t->value.empty()) {
      print_for_display(STDERR_FILENO, "nsbox: token file %s is empty\n", a.token_file->c_str());
      return false;
    }
    return true;
  }
  if (const char* env = std::getenv("NSBOX_TOKEN"); env && *env) {
    t->value = token_text(env);
    t->source = "NSBOX_TOKEN";
    return true;
  }
  auto text = read_file(std::nullopt, kDefaultTokenFile);
  if (text) {
    t->value = token_text(text.value());
    t->source = kDefaultTokenFile;
  } else if (text.error().err != ENOENT) {
    t->default_file_unreadable = true;
  }
  return true;
}

bool find_token(const Args& a, Token* t) {
  if (!find_token_value(a, t)) return false;
  // One rule with the daemon's (gateway/admin_token): a header cannot carry
  // a line break, and the daemon refuses such a token anyway.
  if (!token_chars_ok(t->value)) {
    print_for_display(STDERR_FILENO,
                      "nsbox: the token from %s holds more than one line, spaces or control "
                      "characters; a token is one line of printable ASCII\n",
                      t->source.c_str());
    return false;
  }
  return true;
}

// The addresses a server name has, resolved once: the token check and the
// connections use the same ones (a name resolved again at connect could
// reach what the check never saw). An IPv4-mapped IPv6 address is read as
// IPv4, a link-local one keeps its scope ("fe80::1%eth0"). This host's
// addresses with a socket listening on port come first (localhost may be
// ::1 and 127.0.0.1, the daemon on one of them); the rest in the
// resolver's order, tried in turn (a round-robin name with a dead node).
// False and *err when the name has none.
bool resolve_server(ServerUrl* url, std::string* err) {
  addrinfo hints{}, *ai = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = getaddrinfo(url->host.c_str(), nullptr, &hints, &ai); rc != 0 || !ai) {
    *err = std::string("cannot resolve ") + url->host + ": " + gai_strerror(rc);
    return false;
  }
  std::vector<std::string> listening, rest;
  for (addrinfo* i = ai; i; i = i->ai_next) {
    char text[INET6_ADDRSTRLEN] = "";
    std::string scope;
    if (i->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ai_addr)->sin_addr, text, sizeof text);
    } else if (i->ai_family == AF_INET6) {
      const auto* s6 = reinterpret_cast<sockaddr_in6*>(i->ai_addr);
      if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], text, sizeof text);
      } else {
        inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof text);
        if (s6->sin6_scope_id != 0) scope = "%" + std::to_string(s6->sin6_scope_id);
      }
    }
    if (!*text) continue;
    const std::string address = text + scope;
    auto& list = !on_this_host(address).empty() && !listener_uids(text, url->port).empty()
                     ? listening
                     : rest;
    if (std::find(list.begin(), list.end(), address) == list.end()) list.push_back(address);
  }
  freeaddrinfo(ai);
  url->addresses = listening;
  url->addresses.insert(url->addresses.end(), rest.begin(), rest.end());
  if (url->addresses.empty()) {
    *err = "no IPv4 or IPv6 address for " + url->host;
    return false;
  }
  return true;
}

// The token found in the daemon's default state dir goes only to the
// daemon that wrote it: one on a loopback address whose listening socket
// belongs to the token file's owner. Any local user may bind 127.0.0.1:8080
// while the daemon restarts, and --server may name any host; the admin
// token must not go to either just because it could be read. NSBOX_TOKEN,
// which the README has admins export (and so is sent by every later
// command), goes to a port of this host (loopback, 0.0.0.0, an interface's
// address) only when its socket is root's or the caller's: a squatter there
// would otherwise collect it. Named on the
// command line (--token, --token-file, the latter read with sudo's
// invoker's rights), it goes where told.
// Returns false (message printed) to refuse.
bool token_may_go(const Token& t, const ServerUrl& url, const std::string& name);

// Each address the connections may use, not the name (resolve_server).
bool token_may_go(const Token& t, const ServerUrl& url) {
  for (const std::string& a : url.addresses)
    if (!token_may_go(t, url, a)) return false;
  return true;
}

bool token_may_go(const Token& t, const ServerUrl& url, const std::string& name) {
  if (t.value.empty()) return true;
  if (t.source == "NSBOX_TOKEN") {
    const std::string here = on_this_host(name);
    if (here.empty()) return true;
    std::string why = foreign_listener(here, url.port, 0);
    if (why.empty() || foreign_listener(here, url.port, getuid()).empty()) return true;
    print_for_display(STDERR_FILENO,
                      "nsbox: not sending NSBOX_TOKEN to %s: %s (root) or to you. Another user may "
                      "have taken the daemon's port while it was down; pass the token with "
                      "--token-file to send it there anyway\n",
                      url.display.c_str(), why.c_str());
    return false;
  }
  if (t.source != kDefaultTokenFile) return true;
  auto refuse = [&](const std::string& why) {
    print_for_display(STDERR_FILENO,
                      "nsbox: not sending the token in %s to %s: %s. Pass --token-file %s to send "
                      "it there anyway\n",
                      kDefaultTokenFile, url.display.c_str(), why.c_str(), kDefaultTokenFile);
    return false;
  };
  if (!is_loopback_name(name))
    return refuse("it is sent without being asked for only to a daemon on this host's loopback");
  struct stat st;
  if (::stat(kDefaultTokenFile, &st) != 0) return true;
  if (std::string why = foreign_listener(name, url.port, st.st_uid); !why.empty())
    return refuse(why + ", the owner of the token file");
  return true;
}

void print_token_hint(const Token& t) {
  if (t.default_file_unreadable) {
    print_for_display(STDERR_FILENO,
                      "nsbox: %s is not readable by you; run\n"
                      "  export NSBOX_TOKEN=$(sudo cat %s)\n"
                      "or pass --token-file PATH\n",
                      kDefaultTokenFile, kDefaultTokenFile);
  } else {
    print_for_display(STDERR_FILENO,
                      "nsbox: the daemon writes its token to %s; run\n"
                      "  export NSBOX_TOKEN=$(sudo cat %s)\n"
                      "or pass --token-file PATH (with --server, use that daemon's token)\n",
                      kDefaultTokenFile, kDefaultTokenFile);
  }
}

// ---- HTTP ---------------------------------------------------------------------

struct Ctx {
  std::string cmd;
  ServerUrl url;
  Token token;
};

int read_timeout_sec(const Ctx& c) {
  return c.cmd == "invoke" ? kInvokeTimeoutSec : kReadTimeoutSec;
}

// A client for one of the server's addresses (an address the token check
// saw); Host stays the name the user gave.
std::unique_ptr<httplib::Client> make_client(const Ctx& c, const std::string& address) {
  auto cli = std::make_unique<httplib::Client>(c.url.host, c.url.port);
  cli->set_hostname_addr_map({{c.url.host, address}});
  cli->set_connection_timeout(kConnectTimeoutSec, 0);
  cli->set_read_timeout(read_timeout_sec(c), 0);
  cli->set_write_timeout(kReadTimeoutSec, 0);
  cli->set_url_encode(false);  // paths and queries are encoded here
  cli->set_keep_alive(false);
  return cli;
}

// JSON from the server, or a discarded value: nothing deeper than the
// daemon's own limit is parsed (printing a value nested 100,000 deep
// recursed until the stack ran out).
json parse_reply(const std::string& text) {
  if (json_shape(text, kMaxJsonDepth, kMaxJsonValues).values > kMaxJsonValues ||
      !json_valid(text, kMaxJsonDepth))
    return json(json::value_t::discarded);
  return json::parse(text, nullptr, false);
}

// While a request waits for its answer: ends the command (exit 3, saying
// why) once the request has taken kCommandDeadlineSec (invoke: its read
// timeout and that again), or once the command's memory passes
// kMaxResidentKb. Disarmed when the answer is in: printing it may take as
// long as the reader of stdout likes (nsbox logs | less).
class Watchdog {
 public:
  explicit Watchdog(const Ctx& c) {
    const int limit_sec =
        c.cmd == "invoke" ? kInvokeTimeoutSec + kCommandDeadlineSec : kCommandDeadlineSec;
    try {
      std::thread([done = done_, limit_sec, server = c.url.display] {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(limit_sec);
        while (!*done) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          if (*done) return;
          long pages = 0, resident = 0;
          if (FILE* f = std::fopen("/proc/self/statm", "re")) {
            if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
            std::fclose(f);
          }
          if (resident * (sysconf(_SC_PAGESIZE) / 1024) > kMaxResidentKb) {
            print_for_display(
                STDERR_FILENO,
                "nsbox: the answer from %s takes more than %ld MiB, more than an nsbox "
                "daemon sends: is --server (or NSBOX_SERVER) the daemon?\n",
                server.c_str(), kMaxResidentKb >> 10);
            std::_Exit(kUnreachable);
          }
          if (std::chrono::steady_clock::now() >= deadline && !*done) {
            print_for_display(STDERR_FILENO, "nsbox: no complete answer from %s within %d s\n",
                              server.c_str(), limit_sec);
            std::_Exit(kUnreachable);
          }
        }
      }).detach();
    } catch (const std::system_error&) {
      // No thread to spare (RLIMIT_NPROC): the request goes unwatched.
    }
  }
  ~Watchdog() { *done_ = true; }

 private:
  std::shared_ptr<std::atomic<bool>> done_ = std::make_shared<std::atomic<bool>>(false);
};

// One request; the body is read into the answer up to kMaxAnswerBytes (an
// error past it: the answer is not one of the daemon's).
httplib::Result fetch(const Ctx& c, const std::string& method, const std::string& path,
                      httplib::Headers headers, const std::string& body = {},
                      const std::string& content_type = {}) {
  httplib::Request req;
  req.method = method;
  req.path = path;
  req.headers = std::move(headers);
  if (!content_type.empty()) {
    req.body = body;
    req.set_header("Content-Type", content_type);
  }
  std::string got;
  bool too_large = false;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (got.size() + n > kMaxAnswerBytes) {
      too_large = true;
      return false;
    }
    got.append(data, n);
    return true;
  };
  httplib::Result res = [&] {
    Watchdog watch(c);
    // A server that closes while the request is sent is an error to
    // report, not a signal to die of (this httplib sends without
    // MSG_NOSIGNAL). Only while the request is under way: a reader of
    // stdout that goes away ends the command as it ends any other.
    struct sigaction ignore = {}, before = {};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &before);
    struct Restore {
      struct sigaction& before;
      ~Restore() { sigaction(SIGPIPE, &before, nullptr); }
    } restore{before};
    for (size_t i = 0;; i++) {
      httplib::Result r = make_client(c, c.url.addresses[i])->send(req);
      // Nothing was sent to an address that took no connection: the next.
      const bool no_connection = !r && (r.error() == httplib::Error::Connection ||
                                        r.error() == httplib::Error::ConnectionTimeout);
      if (!no_connection || i + 1 == c.url.addresses.size()) return r;
    }
  }();
  if (too_large) {
    print_for_display(STDERR_FILENO,
                      "nsbox: the answer from %s is larger than %zu MiB, more than an nsbox daemon "
                      "sends: is --server (or NSBOX_SERVER) the daemon?\n",
                      c.url.display.c_str(), kMaxAnswerBytes >> 20);
    std::exit(kUnreachable);
  }
  if (res) res->body = std::move(got);
  return res;
}

httplib::Headers headers_for(const Ctx& c, bool with_token = true) {
  httplib::Headers h{{"User-Agent", "nsbox-cli"}, {"Accept", "application/json, text/plain"}};
  if (with_token && !c.token.value.empty()) h.emplace("Authorization", "Bearer " + c.token.value);
  return h;
}

// Prints why the request got no answer; returns the exit code.
int report_transport_error(const Ctx& c, httplib::Error err) {
  // cpp-httplib names its error kinds ("Connection"), not what went wrong.
  if (err == httplib::Error::Connection) {
    print_for_display(STDERR_FILENO,
                      "nsbox: cannot reach %s: the connection was refused or failed (is `nsbox "
                      "serve` running, on that address and port?)\n",
                      c.url.display.c_str());
  } else if (err == httplib::Error::ConnectionTimeout) {
    print_for_display(STDERR_FILENO,
                      "nsbox: cannot reach %s: no answer to the connection (a firewall, or a "
                      "host that is down?)\n",
                      c.url.display.c_str());
  } else if (err == httplib::Error::Read) {
    print_for_display(STDERR_FILENO,
                      "nsbox: no answer from %s: the connection closed, what came was not HTTP, "
                      "or nothing came within %d s\n",
                      c.url.display.c_str(), read_timeout_sec(c));
  } else {
    print_for_display(STDERR_FILENO, "nsbox: request to %s failed: %s\n", c.url.display.c_str(),
                      httplib::to_string(err).c_str());
  }
  return kUnreachable;
}

std::string status_text(int status) {
  const std::string_view phrase = http_reason(status);
  return phrase.empty() ? "HTTP " + std::to_string(status) : std::string(phrase);
}

// The server's message: "error" of a JSON object body (plus any other keys,
// e.g. "line"), else the body's text, else the status text.
std::string server_message(int status, const std::string& body) {
  json j = parse_reply(body);
  if (!j.is_discarded() && j.is_object() && j.contains("error")) {
    std::string msg = j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump();
    std::string extra;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "error") continue;
      if (!extra.empty()) extra += ", ";
      extra += it.key() + ": " + (it->is_string() ? it->get<std::string>() : it->dump());
    }
    if (!extra.empty()) msg += " (" + extra + ")";
    return msg;
  }
  std::string text = trim(body);
  if (text.empty()) return status_text(status);
  if (text.size() > 300) text = text.substr(0, 300) + "...";
  return text;
}

// Prints "nsbox: STATUS: message" (and the token hint for 401).
// sent_token: whether the request carried the token (invoke sends none).
void report_server_error(const Ctx& c, int status, const std::string& body,
                         bool sent_token = true) {
  // The message may quote a function (a crash, its error): escaped too.
  std::fflush(stderr);
  write_for_display(STDERR_FILENO, "nsbox: " + std::to_string(status) + ": " +
                                       server_message(status, body) + "\n");
  if (status == 401 && !sent_token) {
    print_for_display(STDERR_FILENO,
                      "nsbox: invoking needs no token here; something in front of the daemon "
                      "asked for one\n");
  } else if (status == 401) {
    if (c.token.value.empty()) {
      print_for_display(STDERR_FILENO, "nsbox: no API token was sent\n");
    } else {
      print_for_display(STDERR_FILENO, "nsbox: the server rejected the token from %s\n",
                        c.token.source.c_str());
    }
    print_token_hint(c.token);
  }
}

int unexpected_reply(const Ctx& c, int status, const std::string& why) {
  // why quotes the answer: whatever answers on that port wrote it.
  std::fflush(stderr);
  write_for_display(STDERR_FILENO, "nsbox: unexpected answer from " + c.url.display + " (status " +
                                       std::to_string(status) + "): " + why + "\n");
  return kUnreachable;
}

bool need_token(const Ctx& c) {
  if (!c.token.value.empty()) return true;
  print_for_display(STDERR_FILENO, "nsbox: %s needs the API token\n", c.cmd.c_str());
  print_token_hint(c.token);
  return false;
}

// ---- commands -----------------------------------------------------------------

int do_deploy(Ctx& c, const Args& a) {
  if (a.positional.size() != 2) {
    return usage_error(c.cmd,
                       a.positional.size() < 2 ? "needs NAME and FILE.py" : "too many arguments");
  }
  const std::string& name = a.positional[0];
  const std::string& file = a.positional[1];
  if (!valid_function_name(name)) return usage_error(c.cmd, bad_name_message(name));
  // Under sudo, FILE is opened with the invoking user's rights
  // (tools/invoker.hpp): the daemon's syntax check quotes what it is sent.
  auto invoker = sudo_invoker();
  if (!invoker) {
    print_for_display(STDERR_FILENO, "nsbox: %s\n", invoker.error().text().c_str());
    return kUsage;
  }
  auto got = read_file_as(invoker.value(), file, kMaxSourceBytes,
                          "the 1 MiB a function's source may have");
  if (!got) {
    print_for_display(STDERR_FILENO, "nsbox: %s\n", got.error().text().c_str());
    return kUsage;
  }
  std::string source = std::move(got).value();
  if (!need_token(c)) return kUsage;

  std::string query;
  auto add = [&](const char* key, const std::optional<std::string>& v) {
    if (!v) return;
    query += query.empty() ? '?' : '&';
    query += key;
    query += '=';
    query += percent_encode(*v);
  };
  add("handler", a.handler);
  add("policy", a.policy);
  add("memory", a.memory);
  add("timeout", a.timeout);
  add("template", a.use_template);

  auto res = fetch(c, "PUT", "/functions/" + name + query, headers_for(c), source, "text/x-python");
  if (!res) return report_transport_error(c, res.error());
  if (res->status < 200 || res->status > 299) {
    report_server_error(c, res->status, res->body);
    return kServerError;
  }
  json j = parse_reply(res->body);
  if (j.is_discarded() || !j.is_object() || !j.contains("url") || !j["url"].is_string() ||
      !j.contains("version")) {
    return unexpected_reply(
        c, res->status,
        "expected {\"name\", \"version\", \"url\"}, got " + trim(res->body).substr(0, 200));
  }
  const json& v = j["version"];
  std::string version = v.is_string() ? v.get<std::string>() : v.dump();
  std::fflush(stdout);
  write_for_display(STDOUT_FILENO,
                    "Deployed at " + j["url"].get<std::string>() + " (version: " + version + ")\n");
  return kOk;
}

int do_invoke(Ctx& c, const Args& a) {
  if (a.positional.empty()) return usage_error(c.cmd, "needs NAME");
  if (a.positional.size() > 2) return usage_error(c.cmd, "too many arguments (NAME [JSON|-])");
  if (a.positional.size() == 2 && a.event)
    return usage_error(c.cmd, "the event is given twice: as JSON after NAME and as --event");
  const std::string& name = a.positional[0];
  if (!valid_function_name(name)) return usage_error(c.cmd, bad_name_message(name));
  std::string event = a.event ? *a.event : a.positional.size() == 2 ? a.positional[1] : "{}";
  if (event == "-") {
    auto in = read_up_to(STDIN_FILENO, kMaxPayload);
    if (!in && in.error().err != EFBIG) {
      print_for_display(STDERR_FILENO, "nsbox: reading the event from stdin: %s\n",
                        std::strerror(in.error().err));
      return kUsage;
    }
    event = in ? std::move(in).value() : std::string(kMaxPayload + 1, ' ');
  }
  if (event.size() > kMaxPayload) {
    print_for_display(STDERR_FILENO,
                      "nsbox: the event is larger than 6 MiB, the most a function is given; pass "
                      "large data by reference (a URL, a key)\n");
    return kUsage;
  }
  // Checked as the daemon checks it (json_error: the JSON library's rules,
  // no document built), not as an answer is read.
  if (const std::string why = json_error(event); !why.empty()) {
    std::string shown = trim(event);
    if (shown.size() > 80) shown = shown.substr(0, 80) + "...";
    std::fflush(stderr);
    write_for_display(STDERR_FILENO,
                      "nsbox: the event is not valid JSON (" + why + "): " + shown + "\n");
    return kUsage;
  }

  // Invoking needs no token, so the admin's is not sent: whatever is in
  // front of the daemon, and any redirect, would carry it to a route of the
  // function's choosing.
  auto res = fetch(c, "POST", "/fn/" + name, headers_for(c, false), event, "application/json");
  if (!res) return report_transport_error(c, res.error());
  int s = res->status;
  const std::string outcome = res->get_header_value("X-Nsbox-Outcome");
  if ((s >= 200 && s <= 299) || outcome == "proxy") {
    // A proxy response is what the function returned, whatever its status.
    print_body(res->body);
    return kOk;
  }
  if (outcome == "bad_proxy") {  // the function's own mistake, as a raise is
    report_server_error(c, s, res->body, false);
    return 1;
  }
  // The function's own failures (an older daemon sends no outcome): its
  // error JSON (errorType, errorMessage, stackTrace) goes to stdout like a
  // result, as `nsbox run` does. The daemon's own 500s (unfit, no_policy,
  // store_error) are refusals: stderr and exit 3.
  const bool functions_fault =
      outcome.empty() || outcome == "raised" || outcome == "load_failed" || outcome == "bad_result";
  if (s == 500 && functions_fault) {
    print_body(res->body);
    json j = parse_reply(res->body);
    if (!j.is_discarded() && j.is_object() && j.contains("error") && !j.contains("errorType")) {
      report_server_error(c, s, res->body, false);  // a daemon-side failure, say so too
    }
    return 1;
  }
  report_server_error(c, s, res->body, false);
  if (s == 504) return 124;
  if (s == 502) return 137;
  return kUnreachable;
}

// A table cell: the server's text on one line (a line break in a name
// from something that is not the daemon would print rows of its own).
std::string cell(const json& f, const char* key) {
  if (!f.contains(key) || f[key].is_null()) return "-";
  const json& v = f[key];
  const std::string text = v.is_string() ? v.get<std::string>() : v.dump();
  std::string out;
  for (char ch : text) {
    if (ch == '\n')
      out += "\\n";
    else if (ch == '\r')
      out += "\\r";
    else if (ch == '\t')
      out += "\\t";
    else
      out += ch;
  }
  return out;
}

std::string iso_utc_from_ms(const json& f) {
  if (!f.contains("created_unix_ms") || !f["created_unix_ms"].is_number()) return "-";
  auto ms = f["created_unix_ms"].get<double>();
  time_t secs = static_cast<time_t>(ms / 1000.0);
  struct tm tm {};
  if (!gmtime_r(&secs, &tm)) return "-";
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "-";
  return buf;
}

int do_ls(Ctx& c, const Args& a) {
  if (!a.positional.empty()) return usage_error(c.cmd, "takes no arguments");
  if (!need_token(c)) return kUsage;  // the list is not public
  auto res = fetch(c, "GET", "/functions", headers_for(c));
  if (!res) return report_transport_error(c, res.error());
  if (res->status < 200 || res->status > 299) {
    report_server_error(c, res->status, res->body);
    return kServerError;
  }
  json j = parse_reply(res->body);
  if (j.is_discarded() || !j.is_object() || !j.contains("functions") ||
      !j["functions"].is_array()) {
    return unexpected_reply(
        c, res->status, "expected {\"functions\": [...]}, got " + trim(res->body).substr(0, 200));
  }
  if (a.json) {
    print_body(res->body);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NAME", "VERSION", "HANDLER", "POLICY", "CREATED"});
  std::vector<json> fns;
  for (const auto& f : j["functions"]) {
    if (f.is_object()) fns.push_back(f);
  }
  std::sort(fns.begin(), fns.end(),
            [](const json& x, const json& y) { return cell(x, "name") < cell(y, "name"); });
  for (const auto& f : fns) {
    // A version the daemon cannot read from its store: not served until
    // redeployed or removed (the daemon's log says which file and why).
    if (f.contains("damaged"))
      rows.push_back({cell(f, "name"), cell(f, "version"), "-", "-",
                      "DAMAGED: deploy it again, or nsbox rm it"});
    else
      rows.push_back({cell(f, "name"), cell(f, "version"), cell(f, "handler"), cell(f, "policy"),
                      iso_utc_from_ms(f)});
  }
  std::vector<size_t> width(5, 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); i++) width[i] = std::max(width[i], r[i].size());
  std::string table;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); i++) {
      table += r[i];
      if (i + 1 < r.size()) table += std::string(width[i] - r[i].size() + 2, ' ');
    }
    table += "\n";
  }
  std::fflush(stdout);
  write_for_display(STDOUT_FILENO, table);  // the cells are the server's text
  return kOk;
}

int do_rm_or_logs(Ctx& c, const Args& a) {
  bool rm = c.cmd == "rm";
  if (a.positional.size() != 1) {
    return usage_error(c.cmd, a.positional.empty() ? "needs NAME" : "too many arguments");
  }
  const std::string& name = a.positional[0];
  if (!valid_function_name(name)) return usage_error(c.cmd, bad_name_message(name));
  if (!need_token(c)) return kUsage;
  auto res = rm ? fetch(c, "DELETE", "/functions/" + name, headers_for(c))
                : fetch(c, "GET", "/functions/" + name + "/logs", headers_for(c));
  if (!res) return report_transport_error(c, res.error());
  if (res->status == 404) {
    print_for_display(STDERR_FILENO, "nsbox: no function %s\n", name.c_str());
    return kServerError;
  }
  if (res->status < 200 || res->status > 299) {
    report_server_error(c, res->status, res->body);
    return kServerError;
  }
  if (rm)
    print_for_display(STDOUT_FILENO, "Deleted %s\n", name.c_str());
  else
    print_body(res->body);
  return kOk;
}

}  // namespace

bool is_client_command(const std::string& cmd) {
  return cmd == "deploy" || cmd == "invoke" || cmd == "ls" || cmd == "rm" || cmd == "logs";
}

int cmd_client(const std::string& cmd, const std::vector<std::string>& args) {
  Args a;
  std::string err = parse_args(cmd, args, &a);
  if (a.help) {
    print_usage(cmd, stdout);
    return kOk;
  }
  if (!err.empty()) return usage_error(cmd, err);
  Ctx c;
  c.cmd = cmd;
  std::string url_err;
  auto url = parse_server_url(a.server, &url_err);
  if (!url) return usage_error(cmd, "--server: " + url_err);
  c.url = *url;
  std::string resolve_err;
  if (!resolve_server(&c.url, &resolve_err)) {
    print_for_display(STDERR_FILENO, "nsbox: cannot reach %s: %s\n", c.url.display.c_str(),
                      resolve_err.c_str());
    return kUnreachable;
  }
  if (!find_token(a, &c.token)) return kUsage;
  if (!token_may_go(c.token, c.url)) return kUsage;
  if (cmd == "deploy") return do_deploy(c, a);
  if (cmd == "invoke") return do_invoke(c, a);
  if (cmd == "ls") return do_ls(c, a);
  return do_rm_or_logs(c, a);
}

}  // namespace nsbox
