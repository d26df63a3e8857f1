"""A function template whose forks fail with an error message it chose: a newline,
then a line that looks like the daemon's own, and a terminal escape sequence.

The template's runner reports the failed fork to the spawner, which logs it: the
log must show the message as one escaped line, not the forged one.
Refuses to run outside a sandbox (the hostname must differ from the host's).
"""
import os
import socket


def _failing_fork():
    raise OSError(1, "x\nFORGED: nsbox: error: spawner 1 gave no answer\x1b[2J\xc2\x9b")


os.fork = _failing_fork


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        return {"refused": "not inside a sandbox"}
    return {"pid": os.getpid()}
