"""A function whose module body starts a thread that spins, for function templates.

Deployed with template=1, the module body runs in the template, which then only forks:
the thread keeps running there after the request that made it is answered, unless the
template is frozen between forks. The thread stops by itself after 20 s and runs only in
a PID namespace of its own whose hostname is "nsbox" (refuses to act on the host).

event: "sleep_ms" holds the request that long (to need two instances at once).
Returns this process's pid.
"""
import os
import socket
import threading
import time


def _spin():
    # Half a CPU, in 5 ms slices: as plain to see as a whole one (100 ticks in 2 s
    # against the test's 20), but with the CPU idle in between, so that the kernel's
    # grace periods (which an instance's cgroup join waits for) are not held up
    # (a full spin made the first fork take up to 270 ms on a 2-CPU host, and the
    # template was retired for it).
    end = time.monotonic() + 20
    while time.monotonic() < end:
        busy = time.monotonic() + 0.005
        while time.monotonic() < busy:
            pass
        time.sleep(0.005)


# The runner is pid 2 in a sandbox's own PID namespace, far higher on the host.
if socket.gethostname() == "nsbox" and os.getpid() < 100:
    threading.Thread(target=_spin, daemon=True).start()


def handler(event, context):
    time.sleep(min(int(event.get("sleep_ms", 0)), 5000) / 1000)
    return {"pid": os.getpid()}
