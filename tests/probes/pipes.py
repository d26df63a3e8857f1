"""Pipe buffer pages are a per-user kernel counter (fs.pipe-user-pages-soft):
beyond it a user's new pipes shrink to one page and cannot grow.
mode "hog": grows pipes until the kernel refuses (at most 200 pipes, which
cost no memory: pages are counted when reserved, allocated when written),
holds them until SIGUSR1 comes or hold_ms passes, named "nsbox-pipehog"
meanwhile so the test can see it from the host (and send the signal), and
reports, with whether the signal let them go. mode "check": the size of a
fresh pipe and whether it may grow. Refuses to run unless it sees it is inside a sandbox."""
import fcntl
import os
import signal
import socket

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
_MAX_PIPES = 100


def _check():
    r, w = os.pipe()
    try:
        size = fcntl.fcntl(w, F_GETPIPE_SZ)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
            grow = "ok"
        except OSError as e:
            grow = e.strerror
        return {"size": size, "grow": grow}
    finally:
        os.close(r)
        os.close(w)


def _rename(name):
    with open("/proc/self/comm", "w") as f:
        f.write(name)


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    if event.get("mode") != "hog":
        return _check()
    # Blocked first: a signal sent as soon as the name shows is kept, not
    # fatal (SIGUSR1's default action ends the process).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    held = []
    refused = None
    for _ in range(_MAX_PIPES):
        r, w = os.pipe()
        held.append((r, w))
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
        except OSError as e:
            refused = e.strerror
            break
    after = _check()
    with open("/proc/self/comm") as f:
        was = f.read().strip()
    _rename("nsbox-pipehog")
    released = signal.sigtimedwait({signal.SIGUSR1}, event.get("hold_ms", 3000) / 1000)
    _rename(was)
    for r, w in held:
        os.close(r)
        os.close(w)
    return {"pipes": len(held), "refused": refused, "after": after,
            "released": released is not None}
