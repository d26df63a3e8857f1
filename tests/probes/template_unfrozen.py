"""A function template's module body that tries to keep the template running unfrozen.

Deployed with template=1. Only in a function template (a runner given --fork-fd, in a
PID namespace of its own whose hostname is "nsbox": it refuses to act on the host), the
module body:
- takes 3 s to import, so that a request sent meanwhile is served the ordinary way and
  its sandbox, idle by then (a cold start takes a fraction of that even on a loaded
  host), also serves the request that made the template, which is then loaded and never
  forked;
- starts a thread that spins (it stops by itself after 20 s): CPU the template takes
  for as long as it is not frozen;
- at the template's first fork, shuts the read side of the fork socket (fd 6) just
  before it forks (so that the hang-up is there before the spawner can freeze it again),
  which its spawner sees as a hang-up, and after it keeps the template's main thread
  asleep, so that the template lives on, never to fork again.
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


def _sleep_forever():
    while True:
        time.sleep(60)


# The runner is pid 2 in a sandbox's own PID namespace, far higher on the host.
if "--fork-fd" in sys.argv and socket.gethostname() == "nsbox" and os.getpid() < 100:
    time.sleep(3)
    threading.Thread(target=_spin, daemon=True).start()
    os.register_at_fork(before=_hang_up, after_in_parent=_sleep_forever)


def handler(event, context):
    return {"pid": os.getpid()}
