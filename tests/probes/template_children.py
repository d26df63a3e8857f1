"""A function whose handler starts processes at once (deploy with template=1).

On cgroup v1 the daemon moves a function template's instance into its own cgroup leaf just
after handing it its first request; whatever the instance started by then must follow it.
The handler forks three children that sleep 0.5 s and one that ends at once (reaped only
later), waits 0.1 s, and reports whether each sleeping child's /proc/PID/cgroup equals its
own, then reaps them all.

Refuses to act outside a sandbox (the hostname must differ from event["host_hostname"]);
it forks four processes a call, no more.
"""
import os
import socket
import time


def _cgroup(pid):
    with open("/proc/%s/cgroup" % pid) as f:
        return f.read()


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        return {"refused": "not inside a sandbox"}
    children = []
    for delay in (0.5, 0.5, 0.5, 0):
        pid = os.fork()
        if pid == 0:
            time.sleep(delay)
            os._exit(0)
        children.append(pid)
    time.sleep(0.1)
    mine = _cgroup("self")
    same = [_cgroup(pid) == mine for pid in children[:3]]
    for pid in children:
        os.waitpid(pid, 0)
    return {"same": same, "pid": os.getpid()}
