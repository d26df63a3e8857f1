// loadgen: a closed-loop HTTP load generator, the method of the 2017
// serverless evaluation (OpenLambda's): N client threads, each bound to one
// function and holding one keep-alive connection, send R requests
// back-to-back (the next one leaves when the previous answer arrives). It
// reports throughput, drops (timeouts and connection errors), counts by HTTP
// status and latency percentiles.
//
// It only ever targets this machine: URLs whose host is not 127.x.x.x,
// localhost or ::1 are refused, and N and R are bounded.

#include <arpa/inet.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr long kMaxClients = 1000;
constexpr long kMaxRequests = 100000;
constexpr int kExitUsage = 2;

const char* kUsage =
    R"(usage: loadgen --url http://127.0.0.1:PORT --clients N --requests R [options]

Closed-loop load: N client threads, each with its own keep-alive connection,
each sending R requests back-to-back to its own function.

options:
  --url URL                 base URL; the host must be 127.x.x.x, localhost or ::1
  --clients N               client threads (1..1000)
  --requests R              requests per client (1..100000)
  --functions F             client i calls function PREFIX(i % F) (default F = N)
  --prefix P                function name prefix (default fn: fn0, fn1, ...)
  --name X                  every client calls function X (overrides --prefix/--functions)
  --path-template T         request path; {name} is replaced (default /fn/{name})
  --method POST|GET         (default POST)
  --body JSON               POST body (default {})
  --connect-timeout-ms MS   connect timeout (default 1500)
  --timeout-ms MS           read/write timeout per request (default 1500)
  --trace FILE              one line per request: client, start and latency in ms
                            from the common start, HTTP status (0 = dropped)
  --header "Name: value"    extra request header (repeatable), e.g. Authorization
  --json                    print one JSON object instead of the human report
  -h, --help                this text

A drop is a request that got no HTTP response (timeout or connection error).
Latency percentiles are over every request that got a response (any status).
exit codes: 0 it ran (even with drops or errors), 2 bad usage.
)";

struct Options {
  std::string url;
  long clients = 0;
  long requests = 0;
  long functions = 0;  // 0: same as clients
  std::string prefix = "fn";
  std::optional<std::string> name;
  std::string path_template = "/fn/{name}";
  std::string method = "POST";
  std::string body = "{}";
  long connect_timeout_ms = 1500;
  long timeout_ms = 1500;
  bool json = false;
  std::string trace;
  httplib::Headers headers;
};

struct Target {
  std::string host;  // as given to httplib (no brackets for IPv6)
  int port = 80;
  std::string base_path;  // without trailing slash
};

struct Traced {
  double start_ms, latency_ms;
  int status;
};

struct ClientResult {
  std::vector<double> latencies_ms;  // of requests that got a response
  std::vector<Traced> trace;         // every request, with --trace
  long ok = 0;
  std::map<int, long> by_status;
  std::map<std::string, long> drops_by_error;
  long drops = 0;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "loadgen: %s\n%s", msg.c_str(), kUsage);
  std::exit(kExitUsage);
}

long parse_long(const std::string& flag, const std::string& v, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0)
    usage_error(flag + " needs an integer, got \"" + v + "\"");
  if (x < lo || x > hi)
    usage_error(flag + " must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                v);
  return x;
}

bool is_local_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

Target parse_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) usage_error("--url must start with http:// (got \"" + url + "\")");
  std::string rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  Target t;
  if (slash != std::string::npos) t.base_path = rest.substr(slash);
  while (!t.base_path.empty() && t.base_path.back() == '/') t.base_path.pop_back();
  if (authority.find('@') != std::string::npos) usage_error("--url must not contain credentials");
  std::string port_str;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos) usage_error("bad IPv6 host in --url \"" + url + "\"");
    t.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') usage_error("bad --url \"" + url + "\"");
      port_str = after.substr(1);
    }
  } else {
    auto colon = authority.find(':');
    t.host = authority.substr(0, colon);
    if (colon != std::string::npos) port_str = authority.substr(colon + 1);
  }
  if (t.host.empty()) usage_error("--url has no host: \"" + url + "\"");
  if (!is_local_host(t.host))
    usage_error("refusing host \"" + t.host +
                "\": loadgen only targets 127.x.x.x, localhost or ::1");
  if (!port_str.empty()) t.port = static_cast<int>(parse_long("--url port", port_str, 1, 65535));
  return t;
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool have_clients = false, have_requests = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a == "--json") {
      o.json = true;
      continue;
    }
    static const char* const kValued[] = {
        "--url",    "--clients", "--requests",           "--functions",
        "--prefix", "--name",    "--path-template",      "--method",
        "--body",   "--header",  "--connect-timeout-ms", "--timeout-ms",
        "--trace"};
    std::string v;
    auto eq = a.find('=');
    std::string flag = a.substr(0, eq);
    if (std::find(std::begin(kValued), std::end(kValued), flag) == std::end(kValued))
      usage_error("unknown option \"" + flag + "\"");
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      if (i + 1 >= argc)
        usage_error(a + (a.rfind("--", 0) == 0 ? " needs a value" : ": unexpected argument"));
      v = argv[++i];
    }
    if (a == "--url")
      o.url = v;
    else if (a == "--clients")
      o.clients = parse_long(a, v, 1, kMaxClients), have_clients = true;
    else if (a == "--requests")
      o.requests = parse_long(a, v, 1, kMaxRequests), have_requests = true;
    else if (a == "--functions")
      o.functions = parse_long(a, v, 1, kMaxClients);
    else if (a == "--prefix")
      o.prefix = v;
    else if (a == "--name")
      o.name = v;
    else if (a == "--path-template")
      o.path_template = v;
    else if (a == "--method") {
      std::string m = v;
      std::transform(m.begin(), m.end(), m.begin(),
                     [](unsigned char c) { return std::toupper(c); });
      if (m != "POST" && m != "GET") usage_error("--method must be POST or GET");
      o.method = m;
    } else if (a == "--body")
      o.body = v;
    else if (a == "--connect-timeout-ms")
      o.connect_timeout_ms = parse_long(a, v, 1, 600000);
    else if (a == "--timeout-ms")
      o.timeout_ms = parse_long(a, v, 1, 600000);
    else if (a == "--trace") {
      if (v.empty()) usage_error("--trace needs a file name");
      o.trace = v;
    } else
      usage_error("unknown option \"" + a + "\"");
  }
  if (o.url.empty()) usage_error("--url is required");
  if (!have_clients) usage_error("--clients is required");
  if (!have_requests) usage_error("--requests is required");
  if (o.functions == 0) o.functions = o.clients;
  if (o.path_template.empty() || o.path_template.front() != '/')
    usage_error("--path-template must start with /");
  if (o.name && o.name->empty()) usage_error("--name must not be empty");
  return o;
}

std::string function_name(const Options& o, long i) {
  if (o.name) return *o.name;
  return o.prefix + std::to_string(i % o.functions);
}

std::string path_for(const Options& o, const Target& t, const std::string& name) {
  std::string p = o.path_template;
  const std::string key = "{name}";
  for (auto pos = p.find(key); pos != std::string::npos; pos = p.find(key, pos + name.size()))
    p.replace(pos, key.size(), name);
  return t.base_path + p;
}

std::string error_kind(httplib::Error e) {
  switch (e) {
    case httplib::Error::ConnectionTimeout:
      return "connect_timeout";
    case httplib::Error::Read:
      return "read";  // includes read timeouts and closed connections
    case httplib::Error::Write:
      return "write";
    case httplib::Error::Connection:
      return "connection";
    default:
      return httplib::to_string(e);
  }
}

void run_client(const Options& o, const Target& t, long index, std::latch& start,
                const std::chrono::steady_clock::time_point& epoch, ClientResult& r) {
  httplib::Client cli(t.host, t.port);
  cli.set_keep_alive(true);
  cli.set_tcp_nodelay(true);
  cli.set_connection_timeout(std::chrono::milliseconds(o.connect_timeout_ms));
  cli.set_read_timeout(std::chrono::milliseconds(o.timeout_ms));
  cli.set_write_timeout(std::chrono::milliseconds(o.timeout_ms));
  const std::string path = path_for(o, t, function_name(o, index));
  const bool post = o.method == "POST";
  r.latencies_ms.reserve(static_cast<size_t>(o.requests));
  if (!o.trace.empty()) r.trace.reserve(static_cast<size_t>(o.requests));

  start.arrive_and_wait();
  for (long k = 0; k < o.requests; ++k) {
    auto t0 = std::chrono::steady_clock::now();
    httplib::Result res = post ? cli.Post(path.c_str(), o.headers, o.body, "application/json")
                               : cli.Get(path.c_str(), o.headers);
    auto t1 = std::chrono::steady_clock::now();
    if (!o.trace.empty())
      r.trace.push_back({std::chrono::duration<double, std::milli>(t0 - epoch).count(),
                         std::chrono::duration<double, std::milli>(t1 - t0).count(),
                         res ? res->status : 0});
    if (!res) {
      ++r.drops;
      ++r.drops_by_error[error_kind(res.error())];
      continue;
    }
    r.latencies_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    ++r.by_status[res->status];
    if (res->status >= 200 && res->status < 300) ++r.ok;
  }
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  // nearest rank
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  if (rank < 1) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

double round3(double x) {
  return std::round(x * 1000.0) / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  Target t = parse_url(o.url);

  std::vector<ClientResult> results(static_cast<size_t>(o.clients));
  std::vector<std::thread> threads;
  threads.reserve(results.size());
  // Opened now: a bad path is an error before the run, not after it.
  FILE* trace = nullptr;
  if (!o.trace.empty() && !(trace = std::fopen(o.trace.c_str(), "w"))) {
    std::fprintf(stderr, "loadgen: --trace %s: %s\n", o.trace.c_str(), std::strerror(errno));
    return 1;
  }
  std::latch start(o.clients + 1);
  // The trace's zero. Written before this thread arrives at the latch, which
  // no client passes before then: they read it after.
  std::chrono::steady_clock::time_point epoch;
  for (long i = 0; i < o.clients; ++i)
    threads.emplace_back(run_client, std::cref(o), std::cref(t), i, std::ref(start),
                         std::cref(epoch), std::ref(results[static_cast<size_t>(i)]));
  epoch = std::chrono::steady_clock::now();
  start.arrive_and_wait();
  auto t0 = std::chrono::steady_clock::now();
  for (auto& th : threads) th.join();
  auto t1 = std::chrono::steady_clock::now();
  double duration_s = std::chrono::duration<double>(t1 - t0).count();

  ClientResult all;
  for (auto& r : results) {
    all.ok += r.ok;
    all.drops += r.drops;
    for (auto& [k, v] : r.by_status) all.by_status[k] += v;
    for (auto& [k, v] : r.drops_by_error) all.drops_by_error[k] += v;
    all.latencies_ms.insert(all.latencies_ms.end(), r.latencies_ms.begin(), r.latencies_ms.end());
  }
  std::sort(all.latencies_ms.begin(), all.latencies_ms.end());
  if (trace) {
    // The common start on CLOCK_MONOTONIC, to line the trace up with other
    // tools' timestamps (e.g. perf record -k CLOCK_MONOTONIC).
    std::fprintf(trace, "# start %.6f s CLOCK_MONOTONIC\nclient start_ms latency_ms status\n",
                 std::chrono::duration<double>(epoch.time_since_epoch()).count());
    for (size_t i = 0; i < results.size(); i++)
      for (const Traced& x : results[i].trace)
        std::fprintf(trace, "%zu %.3f %.3f %d\n", i, x.start_ms, x.latency_ms, x.status);
    if (std::fclose(trace) != 0) {
      std::fprintf(stderr, "loadgen: --trace %s: %s\n", o.trace.c_str(), std::strerror(errno));
      return 1;
    }
  }
  const long total = o.clients * o.requests;
  const long completed = static_cast<long>(all.latencies_ms.size());
  const double throughput = duration_s > 0 ? static_cast<double>(completed) / duration_s : 0.0;
  const double drop_pct = 100.0 * static_cast<double>(all.drops) / static_cast<double>(total);
  const double p50 = percentile(all.latencies_ms, 50), p90 = percentile(all.latencies_ms, 90),
               p99 = percentile(all.latencies_ms, 99),
               mx = all.latencies_ms.empty() ? 0.0 : all.latencies_ms.back();

  if (o.json) {
    nlohmann::json j;
    j["url"] = o.url;
    j["method"] = o.method;
    j["clients"] = o.clients;
    j["requests_per_client"] = o.requests;
    j["requests"] = total;
    j["completed"] = completed;
    j["ok"] = all.ok;
    j["drops"] = all.drops;
    j["drop_pct"] = round3(drop_pct);
    j["drops_by_error"] = nlohmann::json::object();
    for (auto& [k, v] : all.drops_by_error) j["drops_by_error"][k] = v;
    j["by_status"] = nlohmann::json::object();
    for (auto& [k, v] : all.by_status) j["by_status"][std::to_string(k)] = v;
    j["duration_s"] = round3(duration_s);
    j["throughput_rps"] = round3(throughput);
    j["p50_ms"] = round3(p50);
    j["p90_ms"] = round3(p90);
    j["p99_ms"] = round3(p99);
    j["max_ms"] = round3(mx);
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }

  std::string target =
      o.name ? *o.name
             : (o.functions == 1 ? o.prefix + "0"
                                 : o.prefix + "0.." + o.prefix + std::to_string(o.functions - 1));
  std::printf("target:      %s %s%s (%s)\n", o.method.c_str(), o.url.c_str(),
              o.path_template.c_str(), target.c_str());
  std::printf("clients:     %ld x %ld requests = %ld requests\n", o.clients, o.requests, total);
  std::printf("duration:    %.3f s\n", duration_s);
  std::printf("throughput:  %.1f req/s (responses of any status)\n", throughput);
  std::printf("ok (2xx):    %ld\n", all.ok);
  std::printf("drops:       %ld (%.3f %%)", all.drops, drop_pct);
  if (!all.drops_by_error.empty()) {
    std::printf(" ;");
    for (auto& [k, v] : all.drops_by_error) std::printf(" %s: %ld", k.c_str(), v);
  }
  std::printf("\nby status:  ");
  if (all.by_status.empty()) std::printf(" (none)");
  for (auto& [k, v] : all.by_status) std::printf(" %d: %ld", k, v);
  std::printf("\nlatency ms:  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (%ld responses)\n", p50, p90,
              p99, mx, completed);
  return 0;
}
