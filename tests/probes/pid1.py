"""Hostile, but reads only: looks for a way into the sandbox's PID 1 (the
reaper nsbox leaves behind, nsbox-init from a file it may not read) and for a secret of the
daemon anywhere the function can read: every other process's cmdline,
environ and memory (where it can be opened), and the files of its tree.
Refuses to run unless it sees it is inside a sandbox. Bounded: at most 64
MiB of memory and 128 MiB of files are read."""
import os
import socket

_MEM_CAP = 64 << 20
_FILE_CAP = 128 << 20
_PER_FILE = 1 << 20


def _error(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return e.strerror


def _status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def _read(path, limit=_PER_FILE):
    with open(path, "rb") as f:
        return f.read(limit)


def _search_mem(pid, needle, budget):
    """Every readable mapping of pid, if its mem file opens at all."""
    found = False
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "r" not in perms:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            while lo < hi and budget[0] > 0:
                n = min(hi - lo, 1 << 20, budget[0])
                try:
                    mem.seek(lo)
                    chunk = mem.read(n)
                except OSError:
                    break
                budget[0] -= n
                if needle in chunk:
                    found = True
                lo += n
    return found


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    needle = event.get("needle", "").encode()
    me = os.getpid()
    st1 = _status(1)
    r = {
        "sid": os.getsid(0),
        "pid1_seccomp": st1.get("Seccomp"),
        "pid1_no_new_privs": st1.get("NoNewPrivs"),
        "pid1_mem_rw": _error(lambda: open("/proc/1/mem", "r+b", 0).close()),
        "pid1_mem_r": _error(lambda: open("/proc/1/mem", "rb", 0).close()),
        "pid1_environ": _error(lambda: _read("/proc/1/environ")),
        "pid1_program": _read("/proc/1/cmdline").split(b"\0")[0].decode(),
        "pid1_exe": _error(lambda: os.readlink("/proc/1/exe")),
        "found": [],
        "mem_readable": [],
    }
    if not needle:
        return r
    mem_budget = [_MEM_CAP]
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == me:
            continue  # our own memory holds the needle: the event brought it
        for f in ("cmdline", "environ"):
            try:
                if needle in _read(f"/proc/{p}/{f}"):
                    r["found"].append(f"/proc/{p}/{f}")
            except OSError:
                pass
        try:
            if _search_mem(p, needle, mem_budget):
                r["found"].append(f"/proc/{p}/mem")
            r["mem_readable"].append(int(p))
        except OSError:
            pass
    file_budget = _FILE_CAP
    files = 0
    for root, dirs, names in os.walk("/"):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for n in names:
            path = os.path.join(root, n)
            if file_budget <= 0 or os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                data = _read(path)
            except OSError:
                continue
            files += 1
            file_budget -= len(data)
            if needle in data:
                r["found"].append(path)
    r["files_searched"] = files
    return r
