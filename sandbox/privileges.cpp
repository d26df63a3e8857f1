#include "sandbox/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nsbox {

std::vector<RlimitSetting> plan_rlimits(const Limits& l, bool have_cgroups, bool rootless) {
  std::vector<RlimitSetting> r = {
      // 1, not 0: a core_pattern that pipes ignores the limit, except
      // that 1 aborts the dump (seccomp.cpp keeps it from being changed).
      {RLIMIT_CORE, 1},
      {RLIMIT_NOFILE, l.nofile},
      {RLIMIT_FSIZE, l.fsize_bytes},
      // 0, whatever the daemon's unit raised them to (LimitNICE=,
      // LimitRTPRIO=): a function may lower its priority, never raise it
      // above the other tenants' and the daemon's.
      {RLIMIT_NICE, 0},
      {RLIMIT_RTPRIO, 0},
      // Queued signals are counted per host uid, and a rootless sandbox's
      // is the user's: one that blocked a real-time signal and queued it to
      // itself took the user's whole allowance (timer_create and sigqueue
      // then failed for the daemon and every program of the user). The
      // kernel checks a task's own limit first.
      {RLIMIT_SIGPENDING, rootless ? kRootlessSigpending : kSandboxSigpending},
  };
  if (!have_cgroups) {
    // Address space, not resident memory: generous headroom for the
    // interpreter's mappings, which are mostly shared and never touched.
    r.push_back({RLIMIT_AS, l.memory_bytes + (256ull << 20)});
    r.push_back({RLIMIT_NPROC, l.pids});
    r.push_back({RLIMIT_CPU, (l.wall_ms + 999) / 1000 + 1});
  }
  return r;
}

int child_set_hostname(const char* name) {
  return sethostname(name, strlen(name)) == 0 ? 0 : errno;
}

int child_loopback_up() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  int err = rc == 0 ? 0 : errno;
  close(fd);
  return err;
}

int child_set_rlimits(const RlimitSetting* s, size_t n, const RlimitSetting** failed) {
  for (size_t i = 0; i < n; i++) {
    *failed = &s[i];
    struct rlimit cur;
    if (getrlimit(s[i].resource, &cur) != 0) return errno;
    rlim_t v = s[i].value;
    if (cur.rlim_max != RLIM_INFINITY && v > cur.rlim_max) v = cur.rlim_max;
    struct rlimit lim = {v, v};
    if (setrlimit(s[i].resource, &lim) != 0) return errno;
  }
  *failed = nullptr;
  return 0;
}

int child_change_ids(uid_t uid, gid_t gid, bool clear_groups, const char** step) {
  if (clear_groups) {
    *step = "setgroups";
    if (setgroups(0, nullptr) != 0) return errno;
  }
  *step = "setresgid";
  if (setresgid(gid, gid, gid) != 0) return errno;
  *step = "setresuid";
  if (setresuid(uid, uid, uid) != 0) return errno;
  return 0;
}

int child_drop_privileges(uid_t uid, gid_t gid, bool clear_groups, const char** step) {
  *step = "prctl(PR_CAPBSET_DROP)";
  for (int cap = 0; cap <= CAP_LAST_CAP + 8; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  }
  if (int err = child_change_ids(uid, gid, clear_groups, step)) return err;
  // setresuid away from uid 0 clears the capability sets, but in rootless
  // mode we already are uid `uid` and still hold the userns's full set.
  *step = "capset";
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) != 0) return errno;
  *step = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)";
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return errno;
  *step = "prctl(PR_SET_NO_NEW_PRIVS)";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  return 0;
}

}  // namespace nsbox
