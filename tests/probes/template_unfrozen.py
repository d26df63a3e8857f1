"""A function template's module body that tries to keep the template running unfrozen.

Deployed with template=1. Only in a function template (a runner given --fork-fd, in a
PID namespace of its own whose hostname is "nsbox": it refuses to act on the host), the
module body:
- takes 1 s to import, so that a request sent meanwhile is served the ordinary way and
  its sandbox, idle by then, also serves the request that made the template, which is
  then loaded and never forked;
- starts a thread that spins (it stops by itself after 20 s): CPU the template takes
  for as long as it is not frozen;
- after the template's first fork, shuts the read side of the fork socket (fd 6), which
  its spawner sees as a hang-up, and keeps the template's main thread asleep, so that
  the template lives on, never to fork again.
Elsewhere (an ordinary sandbox) the module body does nothing. Returns this process's pid.
"""
import os
import socket
import sys
import threading
import time


def _spin():
    end = time.monotonic() + 20
    while time.monotonic() < end:
        pass


def _hang_up():
    socket.socket(fileno=os.dup(6)).shutdown(socket.SHUT_RD)
    while True:
        time.sleep(60)


# The runner is pid 2 in a sandbox's own PID namespace, far higher on the host.
if "--fork-fd" in sys.argv and socket.gethostname() == "nsbox" and os.getpid() < 100:
    time.sleep(1)
    threading.Thread(target=_spin, daemon=True).start()
    os.register_at_fork(after_in_parent=_hang_up)


def handler(event, context):
    return {"pid": os.getpid()}
