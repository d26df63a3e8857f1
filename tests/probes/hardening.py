"""Tries what a policy must refuse whatever its allowlist says: terminal
ioctls, dnotify and leases (fcntl F_NOTIFY, F_SETLEASE), huge pages (which
no memory cgroup is charged for), socket families off
the allowlist, lowering RLIMIT_CORE, reading the /proc entries Docker masks,
writing the ones it makes read-only. Reports the outcome of each.

Every attempt is aimed at nothing real: ioctls go to a pipe of our own,
sockets are closed unused, /proc is only read. Even so it refuses to run
unless it can see it is inside a sandbox."""
import ctypes
import errno
import os
import socket

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_NR_IOCTL, _NR_SOCKET, _NR_SOCKETPAIR, _NR_SETRLIMIT, _NR_PRLIMIT64 = 16, 41, 53, 160, 302
_NR_FCNTL, _NR_MMAP, _NR_MUNMAP, _NR_MEMFD_CREATE = 72, 9, 11, 319
MAP_PRIVATE, MAP_ANONYMOUS, MAP_HUGETLB, MFD_HUGETLB = 0x02, 0x20, 0x40000, 4
F_GETFL, F_SETLEASE, F_NOTIFY, DN_ACCESS, F_RDLCK = 3, 1024, 1026, 1, 0
RLIMIT_CORE, RLIMIT_NOFILE, RLIMIT_SIGPENDING, RLIMIT_NICE, RLIMIT_RTPRIO = 4, 7, 11, 13, 14
_HIGH = 1 << 32  # the kernel reads ioctl's cmd and socket's family as 32 bits

TIOCSTI, TIOCLINUX, TIOCCONS, TIOCSETD, FIONREAD = 0x5412, 0x541C, 0x541D, 0x5423, 0x541B

# name: (family, type, protocol); families the sandbox must refuse.
REFUSED = {
    "AF_UNSPEC": (0, socket.SOCK_DGRAM, 0),
    "AF_AX25": (3, socket.SOCK_SEQPACKET, 0),
    "AF_IPX": (4, socket.SOCK_DGRAM, 0),
    "AF_APPLETALK": (5, socket.SOCK_DGRAM, 0),
    "AF_X25": (9, socket.SOCK_SEQPACKET, 0),
    "AF_KEY": (15, socket.SOCK_RAW, 2),
    "AF_NETLINK/ROUTE": (16, socket.SOCK_RAW, 0),
    "AF_NETLINK/SOCK_DIAG": (16, socket.SOCK_RAW, 4),
    "AF_NETLINK/XFRM": (16, socket.SOCK_RAW, 6),
    "AF_NETLINK/AUDIT": (16, socket.SOCK_RAW, 9),
    "AF_NETLINK/NETFILTER": (16, socket.SOCK_RAW, 12),
    "AF_NETLINK/KOBJECT_UEVENT": (16, socket.SOCK_DGRAM, 15),
    "AF_NETLINK/GENERIC": (16, socket.SOCK_RAW, 16),
    "AF_PACKET": (17, socket.SOCK_RAW, 0x0300),
    "AF_RDS": (21, socket.SOCK_SEQPACKET, 0),
    "AF_PPPOX": (24, socket.SOCK_STREAM, 0),
    "AF_LLC": (26, socket.SOCK_DGRAM, 0),
    "AF_CAN": (29, socket.SOCK_RAW, 1),
    "AF_TIPC": (30, socket.SOCK_RDM, 0),
    "AF_BLUETOOTH": (31, socket.SOCK_RAW, 0),
    "AF_ALG": (38, socket.SOCK_SEQPACKET, 0),
    "AF_NFC": (39, socket.SOCK_DGRAM, 0),
    "AF_VSOCK": (40, socket.SOCK_STREAM, 0),
    "AF_VSOCK/DGRAM": (40, socket.SOCK_DGRAM, 0),
    "AF_KCM": (41, socket.SOCK_DGRAM, 0),
    "AF_QIPCRTR": (42, socket.SOCK_DGRAM, 0),
    "AF_SMC": (43, socket.SOCK_STREAM, 0),
    "AF_XDP": (44, socket.SOCK_RAW, 0),
    "AF_MCTP": (45, socket.SOCK_DGRAM, 0),
    "family 46": (46, socket.SOCK_STREAM, 0),
    "family 0xffffffff": (0xFFFFFFFF, socket.SOCK_STREAM, 0),
    # A 64-bit compare would see these as other values than the kernel does.
    "AF_VSOCK|1<<32": (_HIGH | 40, socket.SOCK_STREAM, 0),
    "AF_NETLINK|1<<32": (_HIGH | 16, socket.SOCK_RAW, 0),
}
# IPv4 and IPv6 protocols the sandbox must refuse: a kernel with them as modules would
# load one on the first ask; MPTCP and UDP-Lite are built in, so the refusal is seen.
REFUSED_PROTOCOLS = {
    "AF_INET/SCTP": (2, socket.SOCK_STREAM, 132),
    "AF_INET6/SCTP": (10, socket.SOCK_STREAM, 132),
    "AF_INET/L2TP": (2, socket.SOCK_DGRAM, 115),
    "AF_INET/MPTCP": (2, socket.SOCK_STREAM, 262),
    "AF_INET/UDPLITE": (2, socket.SOCK_DGRAM, 136),
    "AF_INET6/DCCP": (10, socket.SOCK_DGRAM, 33),
}
# Types likewise: DCCP's module also answers to its type with protocol 0, and SOCK_PACKET
# makes an AF_PACKET socket.
REFUSED_TYPES = {
    "AF_INET/SOCK_DCCP": (2, 6, 0),
    "AF_INET6/SOCK_SEQPACKET": (10, socket.SOCK_SEQPACKET, 0),
    "AF_INET/SOCK_PACKET": (2, 10, 0),
    "AF_INET/SOCK_RAW": (2, socket.SOCK_RAW, 1),
}
# The allowlist (the kernel sees AF_INET below too).
ALLOWED = {
    "AF_UNIX": (1, socket.SOCK_STREAM, 0),
    "AF_INET": (2, socket.SOCK_STREAM, 0),
    "AF_INET/DGRAM": (2, socket.SOCK_DGRAM, 0),
    "AF_INET6": (10, socket.SOCK_STREAM, 0),
    "AF_INET|1<<32": (_HIGH | 2, socket.SOCK_STREAM, 0),
    "AF_INET/TCP": (2, socket.SOCK_STREAM, 6),
    "AF_INET6/UDP": (10, socket.SOCK_DGRAM, 17),
}

MASKED = ["kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug",
          "interrupts", "locks", "acpi", "asound", "scsi"]
READ_ONLY = ["bus", "fs", "irq", "pressure", "sys", "sysrq-trigger"]


def _errname(e):
    return errno.errorcode.get(e, str(e))


def _syscall(nr, *args):
    ctypes.set_errno(0)
    rc = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) if isinstance(a, int) else a
                                            for a in args))
    return rc, ctypes.get_errno()


def _socket(family, type_, proto):
    rc, err = _syscall(_NR_SOCKET, family, type_, proto)
    if rc >= 0:
        os.close(rc)
        return "ok"
    return _errname(err)


def _socketpair(family):
    fds = (ctypes.c_int * 2)()
    rc, err = _syscall(_NR_SOCKETPAIR, family, socket.SOCK_STREAM, 0, fds)
    if rc == 0:
        os.close(fds[0])
        os.close(fds[1])
        return "ok"
    return _errname(err)


def _ioctls():
    r, w = os.pipe()
    c = ctypes.c_char(b"x")
    n = ctypes.c_int(0)
    out = {}
    for name, cmd, arg in [("TIOCSTI", TIOCSTI, ctypes.byref(c)),
                           ("TIOCSTI|1<<32", _HIGH | TIOCSTI, ctypes.byref(c)),
                           ("TIOCLINUX", TIOCLINUX, ctypes.byref(c)),
                           ("TIOCLINUX|high", 0xDEAD00000000 | TIOCLINUX, ctypes.byref(c)),
                           ("TIOCSETD", TIOCSETD, ctypes.byref(n)),
                           ("TIOCCONS", TIOCCONS, None),
                           ("FS_IOC_GETFSMAP", 0xC0C0583B, None),
                           ("FIONREAD", FIONREAD, ctypes.byref(n))]:
        rc, err = _syscall(_NR_IOCTL, r, cmd, arg)
        out[name] = "ok" if rc >= 0 else _errname(err)
    os.close(r)
    os.close(w)
    return out


def _fcntls():
    """dnotify would show a template's clone what its siblings read from the
    root they share; a lease, who else opens a file."""
    fd = os.open("/usr/lib", os.O_RDONLY | os.O_DIRECTORY)
    out = {}
    for name, cmd, arg in [("F_NOTIFY", F_NOTIFY, DN_ACCESS),
                           ("F_NOTIFY|1<<32", _HIGH | F_NOTIFY, DN_ACCESS),
                           ("F_SETLEASE", F_SETLEASE, F_RDLCK),
                           ("F_GETFL", F_GETFL, 0)]:
        rc, err = _syscall(_NR_FCNTL, fd, cmd, arg)
        out[name] = "ok" if rc >= 0 else _errname(err)
    os.close(fd)
    return out


def _huge_pages():
    """At most 2 MiB, unmapped or closed at once: without a pool the kernel
    has no page to give (ENOMEM); the filter refuses before (EPERM)."""
    out = {}
    size, anon = 2 << 20, MAP_PRIVATE | MAP_ANONYMOUS
    for name, flags in [("mmap(MAP_HUGETLB)", anon | MAP_HUGETLB),
                        ("mmap(MAP_HUGETLB|1<<32)", _HIGH | anon | MAP_HUGETLB),
                        ("mmap", anon)]:
        rc, err = _syscall(_NR_MMAP, 0, size, 3, flags, (1 << 64) - 1, 0)
        if rc not in (-1, None):
            _syscall(_NR_MUNMAP, rc, size)
        out[name] = "ok" if rc not in (-1, None) else _errname(err)
    rc, err = _syscall(_NR_MEMFD_CREATE, ctypes.c_char_p(b"probe"), MFD_HUGETLB)
    if rc >= 0:
        os.close(rc)
    out["memfd_create(MFD_HUGETLB)"] = "ok" if rc >= 0 else _errname(err)
    return out


def _core_limit():
    """RLIMIT_CORE as [soft, hard], and what lowering it to 0 each way gets."""
    lim = (ctypes.c_ulong * 2)()
    rc, err = _syscall(_NR_PRLIMIT64, 0, RLIMIT_CORE, None, lim)
    if rc != 0:
        return {"get": _errname(err)}
    zero = (ctypes.c_ulong * 2)(0, 0)
    out = {"get": [lim[0], lim[1]]}
    for name, nr, args in [("setrlimit", _NR_SETRLIMIT, (RLIMIT_CORE, zero)),
                           ("prlimit64", _NR_PRLIMIT64, (0, RLIMIT_CORE, zero, None))]:
        rc, err = _syscall(nr, *args)
        out[name] = "ok" if rc == 0 else _errname(err)
    return out


def _priority():
    """RLIMIT_NICE and RLIMIT_RTPRIO as [soft, hard], and whether this
    process may raise its own priority (a lower nice value) or go realtime."""
    out = {}
    for name, res in [("nice_limit", RLIMIT_NICE), ("rtprio_limit", RLIMIT_RTPRIO),
                      ("sigpending_limit", RLIMIT_SIGPENDING)]:
        lim = (ctypes.c_ulong * 2)()
        rc, err = _syscall(_NR_PRLIMIT64, 0, res, None, lim)
        out[name] = [lim[0], lim[1]] if rc == 0 else _errname(err)
    now = os.getpriority(os.PRIO_PROCESS, 0)
    out["raise"] = _works(lambda: os.setpriority(os.PRIO_PROCESS, 0, now - 1))
    out["lower"] = _works(lambda: os.setpriority(os.PRIO_PROCESS, 0, min(now + 1, 19)))
    # The parent (PID 1, or a function template) shares this process's uid,
    # which the kernel lets set its limits and priority: each set to what it
    # is, so that nothing changes if the filter let it through.
    parent = os.getppid()
    lim = (ctypes.c_ulong * 2)()
    rc, err = _syscall(_NR_PRLIMIT64, parent, RLIMIT_NOFILE, None, lim)
    out["parent_limit_get"] = "ok" if rc == 0 else _errname(err)
    if rc == 0:
        rc, err = _syscall(_NR_PRLIMIT64, parent, RLIMIT_NOFILE, lim, None)
        out["parent_limit_set"] = "ok" if rc == 0 else _errname(err)
    out["parent_nice"] = _works(
        lambda: os.setpriority(os.PRIO_PROCESS, parent, os.getpriority(os.PRIO_PROCESS, parent)))
    return out


def _read_entry(path):
    """absent | denied:ERR | empty | readable:N (bytes, or entries of a dir)."""
    try:
        if os.path.isdir(path):
            n = len(os.listdir(path))
        else:
            with open(path, "rb") as f:
                n = len(f.read(65536))
    except FileNotFoundError:
        return "absent"
    except OSError as e:
        return "denied:" + _errname(e.errno)
    return "empty" if n == 0 else "readable:%d" % n


def _read_only(path):
    try:
        return "ro" if os.statvfs(path).f_flag & os.ST_RDONLY else "rw"
    except FileNotFoundError:
        return "absent"


def _proc_options():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ")
            if left.split()[4] == "/proc" and right.split()[0] == "proc":
                # The mount's own flags (nosuid, noexec, ...), then procfs's.
                return left.split()[5] + "," + right.split()[2]
    return None


def _works(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return _errname(e.errno)


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    refused = {name: _socket(*args) for name, args in REFUSED.items()}
    refused["socketpair(AF_VSOCK)"] = _socketpair(40)
    refused["socketpair(AF_NETLINK)"] = _socketpair(16)
    refused_protocols = {name: _socket(*args) for name, args in REFUSED_PROTOCOLS.items()}
    refused_types = {name: _socket(*args) for name, args in REFUSED_TYPES.items()}
    allowed = {name: _socket(*args) for name, args in ALLOWED.items()}
    allowed["socketpair(AF_UNIX)"] = _socketpair(1)
    return {
        "ioctl": _ioctls(),
        "fcntl": _fcntls(),
        "huge_pages": _huge_pages(),
        "core": _core_limit(),
        "priority": _priority(),
        "refused_families": refused,
        "refused_protocols": refused_protocols,
        "refused_types": refused_types,
        "allowed_families": allowed,
        # glibc asks NETLINK_ROUTE which address families are configured for
        # AI_ADDRCONFIG, and assumes both when it cannot.
        "getaddrinfo_addrconfig": _works(lambda: socket.getaddrinfo(
            "127.0.0.1", 80, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)),
        "masked": {p: _read_entry("/proc/" + p) for p in MASKED},
        "read_only": {p: _read_only("/proc/" + p) for p in READ_ONLY},
        "proc_options": _proc_options(),
        # What ordinary code reads from /proc still works.
        "self_status": _works(lambda: open("/proc/self/status").read()),
        "meminfo": _works(lambda: open("/proc/meminfo").read()),
        "loadavg": _works(os.getloadavg),
        "cpu_count": os.cpu_count(),
    }
