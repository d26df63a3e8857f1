"""A function whose import is slow, for function templates (deployed with template=1).

Its module body takes event-independent 200 ms and counts itself: each time it runs it
appends a line to /tmp/nsbox-imports, which instances of one template share (they live in
the template's sandbox), so "imports" says how often the body ran there.

event:
  "sleep_ms"  holds the request that long (to have several instances at once).
Returns this process's pid, the import count, a random draw, the hostname and uid, and
the cgroup this process is in (which only the host can tell apart).
Refuses to run outside a sandbox (the hostname must differ from the host's).
"""
import os
import random
import socket
import time

time.sleep(0.2)
with open("/tmp/nsbox-imports", "a") as f:
    f.write("%d\n" % os.getpid())


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        return {"refused": "not inside a sandbox"}
    time.sleep(min(int(event.get("sleep_ms", 0)), 5000) / 1000)
    with open("/tmp/nsbox-imports") as f:
        imports = len(f.read().split())
    with open("/proc/self/cgroup") as f:
        cgroup = f.read()
    return {"pid": os.getpid(), "imports": imports, "random": random.getrandbits(64),
            "hostname": socket.gethostname(), "uid": os.getuid(), "cgroup": cgroup}
