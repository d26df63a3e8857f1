"""Asks for a new session in a child, as subprocess's start_new_session
does: where sandboxes share one cpu group, each session is a scheduling
group of its own (the kernel's autogroups), so the daemon refuses it.
Refuses to run unless it sees it is inside a sandbox; forks one child."""
import os
import socket


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        return {"refused": "not inside a sandbox"}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.write(w, b"ok")
        except OSError as e:
            os.write(w, (e.strerror or str(e)).encode())
        os._exit(0)
    os.close(w)
    got = os.read(r, 256).decode()
    os.waitpid(pid, 0)
    return {"setsid": got}
