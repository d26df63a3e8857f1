"""A function template's module body that tries to talk back to the daemon and to keep
what the daemon lends it (deploy with template=1):

- at import it sends a message and then an fd over the fork socket (fd 6), which must both
  fail (the daemon's side is shut for reading); it also reports what fd 6 is;
- it replaces os.close so that the template and its instances keep every regular file the
  fork requests hand them (the cgroup.procs files an instance joins its leaf through); the
  handler then writes "0" to each kept file, which would move the instance into that leaf
  were the file still live, and reports each errno and whether /proc/self/cgroup changed.

- the handler also opens its template's memory (/proc/<ppid>/mem, the template being the
  instance's parent) for writing, which must fail: were it open, a request could write into
  the template and so into every later instance (it writes nothing there even then).

The handler writes after event["sleep_ms"] (at most 2,000): on cgroup v1 the daemon moves an
instance on from its join leaf only after handing it its first request (the move waits out an
RCU grace period, which would otherwise delay that request), and the join leaf's files are
live until then. The handler returns what the import saw and what the writes did. Refuses to act outside a
sandbox: the import does nothing unless the hostname is "nsbox" (what nsbox names every
sandbox), and the handler answers "refused" when the hostname is the host's
(event["host_hostname"]). It writes only "0" (itself), to at most 64 files.
"""
import os
import socket
import stat
import time

SEEN = {}
KEPT = []
_real_close = os.close


def _keep_regular_files(fd, _close=os.close):
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode) and len(KEPT) < 64:
            KEPT.append(fd)
            return
    except OSError:
        pass
    _close(fd)


if socket.gethostname() == "nsbox":
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, 6)
        SEEN["fork_fd"] = "socket"
        for what, send in (("message", lambda: s.send(b"k")),
                           ("fd", lambda: socket.send_fds(s, [b"k"], [0]))):
            try:
                send()
                SEEN[what] = "sent"
            except OSError as e:
                SEEN[what] = e.strerror
        s.detach()  # the runner's fork server needs fd 6
    except OSError as e:
        SEEN["fork_fd"] = e.strerror
    os.close = _keep_regular_files


def _cgroup():
    with open("/proc/self/cgroup") as f:
        return f.read()


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        return {"refused": "not inside a sandbox"}
    time.sleep(max(0, min(int(event.get("sleep_ms", 0)), 2000)) / 1000)
    before = _cgroup()
    writes = []
    for fd in KEPT:
        try:
            os.write(fd, b"0")
            writes.append("moved")
        except OSError as e:
            writes.append(e.strerror)
    try:
        _real_close(os.open("/proc/%d/mem" % os.getppid(), os.O_RDWR))
        template_mem = "opened"
    except OSError as e:
        template_mem = e.strerror
    return dict(SEEN, pid=os.getpid(), kept_writes=writes, cgroup_changed=_cgroup() != before,
                template_mem=template_mem)
