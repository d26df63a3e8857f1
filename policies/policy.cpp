#include "policies/policy.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <map>
#include <set>

#include "policies/embedded.hpp"
#include "policies/toml_reader.hpp"
#include "policies/units.hpp"
#include "sandbox/seccomp.hpp"

namespace nsbox {

namespace {

class Parser : public TomlReader {
 public:
  using TomlReader::TomlReader;

  Policy parse(const toml::table& root) const {
    Policy p;
    p.source = source();
    check_keys(root, "the top level", {"description", "limits", "network", "seccomp"});
    p.description = string(root, "description", "the top level", "");

    const toml::table& lim = table(root, "limits", "limits", true);
    const std::string L = "[limits]";
    check_keys(lim, L,
               {"memory_mb", "swap_mb", "pids", "cpu_millicores", "tmpfs_mb", "wall_ms", "nofile",
                "fsize_mb"});
    p.limits.memory_bytes = uint64_t(integer(lim, "memory_mb", L, 16, 65536)) << 20;
    p.limits.swap_bytes = uint64_t(integer(lim, "swap_mb", L, 0, 65536)) << 20;
    // At least PID 1 and the runner: with 1 no sandbox ever starts, and the
    // error would come from fork, not from here.
    p.limits.pids = uint32_t(integer(lim, "pids", L, 2, 32768));
    p.limits.cpu_millicores = uint32_t(integer(lim, "cpu_millicores", L, 10, 256000));
    p.limits.tmpfs_bytes = uint64_t(integer(lim, "tmpfs_mb", L, 1, 65536)) << 20;
    p.limits.wall_ms = uint32_t(integer(lim, "wall_ms", L, 1, kMaxFunctionTimeoutMs));
    p.limits.nofile = uint32_t(integer(lim, "nofile", L, 16, 1048576));
    p.limits.fsize_bytes = uint64_t(integer(lim, "fsize_mb", L, 1, 1048576)) << 20;

    const toml::table& net = table(root, "network", "network", false);
    check_keys(net, "[network]", {"mode"});
    std::string mode = string(net, "mode", "[network]", "none");
    if (mode != "none")
      fail(net.get("mode")->source(),
           "network mode \"" + mode + "\" is not supported (supported: \"none\")");

    const toml::table& sc = table(root, "seccomp", "seccomp", true);
    check_keys(sc, "[seccomp]", {"default_action", "errno", "allow_fork", "allow"});
    // Child processes only when asked for: every other key left out means
    // the stricter choice too.
    p.seccomp.allow_fork = boolean(sc, "allow_fork", "[seccomp]", false);
    std::string action = string(sc, "default_action", "[seccomp]", "errno");
    static const std::map<std::string, SeccompDefault> actions = {
        {"errno", SeccompDefault::Errno},
        {"kill_process", SeccompDefault::KillProcess},
        {"trap", SeccompDefault::Trap},
        {"log", SeccompDefault::Log}};
    auto it = actions.find(action);
    if (it == actions.end())
      fail(sc.get("default_action")->source(),
           "unknown default_action \"" + action + "\" (expected errno, kill_process, trap or log)");
    p.seccomp.default_action = it->second;
    std::string err = string(sc, "errno", "[seccomp]", "EPERM");
    static const std::map<std::string, int> errnos = {
        {"EPERM", EPERM}, {"EACCES", EACCES}, {"ENOSYS", ENOSYS}, {"EINVAL", EINVAL}};
    auto e = errnos.find(err);
    if (e == errnos.end())
      fail(sc.get("errno")->source(),
           "unknown errno \"" + err + "\" (expected EPERM, EACCES, ENOSYS or EINVAL)");
    p.seccomp.errno_value = e->second;

    const toml::table& allow = table(sc, "allow", "seccomp.allow", true);
    std::map<std::string, std::string> names;  // syscall -> group it is in
    for (auto&& [group, list] : allow) {
      const toml::array* arr = list.as_array();
      if (!arr)
        fail(list.source(), "[seccomp.allow] group \"" + std::string(group.str()) +
                                "\" must be an array of syscall names");
      for (const toml::node& item : *arr) {
        auto s = item.value<std::string>();
        if (!item.is_string() || !s)
          fail(item.source(),
               "syscall names in group \"" + std::string(group.str()) + "\" must be strings");
        if (!seccomp_name_spelt(*s))  // "unshare\u0000" resolves to unshare
          fail(item.source(), "\"" + *s + "\" in group \"" + std::string(group.str()) +
                                  "\" of [seccomp.allow] is not a syscall name (lowercase "
                                  "letters, digits and _ only)");
        if (!seccomp_syscall_known(*s))
          fail(item.source(), "unknown syscall \"" + *s + "\" in group \"" +
                                  std::string(group.str()) +
                                  "\" of [seccomp.allow] (not an x86_64 system call's name; "
                                  "remove it)");
        if (const char* why = seccomp_never_allowed(*s))
          fail(item.source(), "syscall \"" + *s + "\" in group \"" + std::string(group.str()) +
                                  "\" may never be allowed: " + why + "; remove it");
        // Listed, it would be skipped without a word: every policy answers
        // it ENOSYS, so that glibc falls back to clone, whose flags the
        // filter can check (clone3 passes them in memory).
        if (*s == "clone3")
          fail(item.source(), "syscall \"clone3\" in group \"" + std::string(group.str()) +
                                  "\" is never allowed: every policy answers it ENOSYS so that "
                                  "glibc uses clone, whose namespace flags the filter checks; "
                                  "remove it (list clone)");
        if (!p.seccomp.allow_fork && (*s == "fork" || *s == "vfork"))
          fail(item.source(), "syscall \"" + *s + "\" in group \"" + std::string(group.str()) +
                                  "\" makes child processes, which allow_fork = false forbids; "
                                  "remove it or set allow_fork = true");
        auto [it, fresh] = names.emplace(*s, std::string(group.str()));
        if (!fresh)
          fail(item.source(), "syscall \"" + *s + "\" is listed twice (also in group \"" +
                                  it->second + "\"); list each syscall once");
      }
    }
    if (names.empty()) fail(allow.source(), "[seccomp.allow] allows no syscall at all");
    for (const auto& [name, group] : names) p.seccomp.allow.push_back(name);
    return p;
  }
};

}  // namespace

Result<Policy> parse_policy(std::string_view text, const std::string& source) {
  Parser parser(source);
  try {
    toml::table root = parse_toml(text, source);
    Policy p = parser.parse(root);
    return p;
  } catch (const toml::parse_error& e) {
    return make_error("policy", toml_parse_message(e, source, text));
  } catch (const TomlError& e) {
    return make_error("policy", e.msg);
  }
}

std::vector<std::string> policy_warnings(const Policy& p) {
  std::vector<std::string> w;
  if (p.seccomp.default_action == SeccompDefault::Log)
    w.push_back(p.source +
                ": [seccomp] default_action = \"log\" lets every system call the policy does not "
                "list run (the kernel only logs it): a policy to find what a function needs, not "
                "one to run code you do not trust under");
  return w;
}

std::vector<std::string> builtin_policy_names() {
  std::vector<std::string> names;
  for (const auto& f : embedded_files()) {
    std::string n = f.name;
    if (n.rfind("policies/", 0) == 0 && n.size() > 14 && n.substr(n.size() - 5) == ".toml")
      names.push_back(n.substr(9, n.size() - 14));
  }
  return names;
}

bool policy_is_path(const std::string& name_or_path) {
  return name_or_path.find('/') != std::string::npos ||
         (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".toml");
}

Result<Policy> load_policy_fd(int fd, const std::string& path) {
  std::string text = TRY(read_toml_fd(fd, path, "policy"));
  auto p = TRY(parse_policy(text, path));
  p.name = path;
  return p;
}

Result<Policy> load_policy(const std::string& name_or_path) {
  if (!policy_is_path(name_or_path)) {
    const EmbeddedFile* f = find_embedded("policies/" + name_or_path + ".toml");
    if (!f) {
      std::string list;
      for (const auto& n : builtin_policy_names()) list += (list.empty() ? "" : ", ") + n;
      return make_error("policy", "no built-in policy \"" + name_or_path + "\" (built-in: " + list +
                                      "; or give a path to a .toml file)");
    }
    auto p = TRY(parse_policy(f->content, "<built-in>/" + name_or_path + ".toml"));
    p.name = name_or_path;
    return p;
  }
  std::string text = TRY(read_toml_file(name_or_path, "policy"));
  auto p = TRY(parse_policy(text, name_or_path));
  p.name = name_or_path;
  return p;
}

}  // namespace nsbox
