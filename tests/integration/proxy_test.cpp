// The shipped reverse-proxy config (tools/nginx/nsbox.conf) in a real nginx
// on loopback, with a throwaway self-signed certificate: HTTPS reaches the
// daemon, the daemon sees the client's address (from nginx's
// X-Forwarded-For, believed because nginx is a trusted proxy), a forged
// X-Forwarded-For from the client is not what it sees, and the token still
// guards what it guards.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/integration/daemon.hpp"
#include "tests/integration/harness.hpp"

using nsbox::test::auth;
using nsbox::test::Daemon;

namespace {

nsbox::test::Outcome run(std::vector<std::string> argv) {
  nsbox::test::RunSpec s;
  s.argv = std::move(argv);
  return nsbox::test::run(s);
}

std::string nginx_bin() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"})
    if (access(p, X_OK) == 0) return p;
  return "";
}

void replace_all(std::string* s, const std::string& from, const std::string& to) {
  for (size_t p = s->find(from); p != std::string::npos; p = s->find(from, p + to.size()))
    s->replace(p, from.size(), to);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ipv6_loopback() {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string header(const std::string& head, const std::string& name) {
  auto p = head.find(name + ": ");
  if (p == std::string::npos) return "";
  p += name.size() + 2;
  return head.substr(p, head.find_first_of("\r\n", p) - p);
}

}  // namespace

TEST_CASE("proxy: the shipped nginx TLS config in front of the daemon") {
  std::string nginx = nginx_bin();
  if (nginx.empty()) {
    if (std::getenv("NSBOX_MUST_WORK"))
      FAIL("nginx is not installed (tools/dev.sh installs nginx-light)");
    MESSAGE("skipped: no nginx");
    return;
  }
  nsbox::test::TempDir tmp("proxy");
  const std::string dir = tmp.path;
  REQUIRE(system(("mkdir -p " + dir + "/tmp").c_str()) == 0);
  // nginx's workers run as nobody and must read the certificate.
  REQUIRE(system(("chmod 755 " + dir).c_str()) == 0);
  auto gen = run({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                  "-addext", "subjectAltName=DNS:localhost,IP:::1", "-keyout", dir + "/key.pem",
                  "-out", dir + "/cert.pem"});
  REQUIRE_MESSAGE(gen.exit_code == 0, gen.err);

  Daemon d(dir + "/state", "trusted_proxies = [\"127.0.0.1\"]\n[pool]\nblank = 1\n");
  REQUIRE(d.start());
  REQUIRE(d.client()
              ->Put("/functions/who", auth(d), "def handler(event, context):\n    return 1\n",
                    "text/x-python")
              ->status == 201);

  // The shipped file, with only the addresses and paths of this test.
  std::string site = slurp("tools/nginx/nsbox.conf");
  REQUIRE(!site.empty());
  const int port = d.port() + 1000;
  // Only the ports and addresses change: the listen lines keep their
  // options (ssl, http2) as shipped.
  const std::string ps = std::to_string(port);
  const bool v6 = ipv6_loopback();
  REQUIRE(site.find("listen 443 ") != std::string::npos);
  REQUIRE(site.find("listen [::]:443 ") != std::string::npos);
  replace_all(&site, "listen 443 ", "listen 127.0.0.1:" + ps + " ");
  replace_all(&site, "listen [::]:443 ", v6 ? "listen [::1]:" + ps + " " : "# no IPv6 here: ");
  replace_all(&site, "server 127.0.0.1:8080;",
              "server 127.0.0.1:" + std::to_string(d.port()) + ";");
  replace_all(&site, "/etc/ssl/nsbox/fullchain.pem", dir + "/cert.pem");
  replace_all(&site, "/etc/ssl/nsbox/privkey.pem", dir + "/key.pem");
  std::ofstream(dir + "/nsbox.conf") << site;
  std::ofstream(dir + "/nginx.conf")
      << "daemon off;\nworker_processes 1;\npid " << dir << "/nginx.pid;\nerror_log " << dir
      << "/error.log;\nevents { worker_connections 256; }\nhttp {\n  access_log off;\n"
      << "  client_body_temp_path " << dir << "/tmp/body;\n  proxy_temp_path " << dir
      << "/tmp/proxy;\n  fastcgi_temp_path " << dir << "/tmp/fcgi;\n  uwsgi_temp_path " << dir
      << "/tmp/uwsgi;\n  scgi_temp_path " << dir << "/tmp/scgi;\n  include " << dir
      << "/nsbox.conf;\n}\n";

  pid_t pid = fork();
  if (pid == 0) {
    execl(nginx.c_str(), nginx.c_str(), "-p", dir.c_str(), "-c", (dir + "/nginx.conf").c_str(),
          nullptr);
    _exit(127);
  }
  bool up = nsbox::test::wait_until([&] { return port_open(port); }, 5000,
                                    "nginx to listen on port " + std::to_string(port));
  REQUIRE_MESSAGE(up, slurp(dir + "/error.log"));

  // curl as the client, from 127.0.0.3, over TLS checked against the cert;
  // HTTP/1.1 unless the call asks for --http2 (the last flag wins).
  auto curl = [&](const std::vector<std::string>& extra, const std::string& path) {
    std::vector<std::string> argv = {"/usr/bin/curl",
                                     "-sS",
                                     "--http1.1",
                                     "-D",
                                     "-",
                                     "-o",
                                     "/dev/null",
                                     "--cacert",
                                     dir + "/cert.pem",
                                     "--interface",
                                     "127.0.0.3",
                                     "--resolve",
                                     "localhost:" + std::to_string(port) + ":127.0.0.1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("https://localhost:" + std::to_string(port) + path);
    return run(argv);
  };
  auto r = curl({}, "/fn/who");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.rfind("HTTP/1.1 200", 0) == 0);
  std::string line = d.access_line(header(r.out, "X-Nsbox-Request-Id"));
  CHECK(line.substr(line.rfind(' ') + 1) == "127.0.0.3");

  // A client's own X-Forwarded-For does not make it someone else.
  r = curl({"-H", "X-Forwarded-For: 203.0.113.66"}, "/fn/who");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  line = d.access_line(header(r.out, "X-Nsbox-Request-Id"));
  CHECK(line.substr(line.rfind(' ') + 1) == "127.0.0.3");

  // The token still guards metadata through the proxy.
  r = curl({}, "/functions");
  CHECK(r.out.rfind("HTTP/1.1 401", 0) == 0);
  r = curl({"-H", "Authorization: Bearer " + d.token()}, "/functions");
  CHECK(r.out.rfind("HTTP/1.1 200", 0) == 0);
  // HTTP/2, as shipped, reaches the daemon too.
  r = curl({"--http2"}, "/fn/who");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.rfind("HTTP/2 200", 0) == 0);
  line = d.access_line(header(r.out, "x-nsbox-request-id"));
  CHECK(line.substr(line.rfind(' ') + 1) == "127.0.0.3");
  if (v6) {
    // And an IPv6 client is seen by its own address.
    auto r6 = run({"/usr/bin/curl", "-sS", "-D", "-", "-o", "/dev/null", "--cacert",
                   dir + "/cert.pem", "-g", "https://[::1]:" + ps + "/fn/who"});
    REQUIRE_MESSAGE(r6.exit_code == 0, r6.err);
    line = d.access_line(header(r6.out, "x-nsbox-request-id"));
    CHECK(line.substr(line.rfind(' ') + 1) == "::1");
  } else {
    MESSAGE("no IPv6 loopback: the [::] listener is not tried");
  }
  // Plain HTTP to the TLS port is refused by nginx.
  auto plain = run({"/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                    "http://127.0.0.1:" + std::to_string(port) + "/healthz"});
  CHECK(plain.out == "400");

  kill(pid, SIGQUIT);
  waitpid(pid, nullptr, 0);
  CHECK(d.stop() == 0);
}
