"""A function template whose every fork keeps the daemon's spawner waiting 90 ms.

Its module body, which runs in the template, slows os.fork, which the template's runner
calls for each instance: a hostile function can do as much. Each fork stays under 100 ms,
so only their sum can tell the template apart from an honest one.

Returns this process's pid in its PID namespace: 2 in a sandbox of its own (PID 1 is
nsbox-init), higher in an instance (a fork of its template's runner, which is 2).
Refuses to run outside a sandbox (the hostname must differ from the host's).
"""
import os
import socket
import time

_fork = os.fork


def _slow_fork():
    time.sleep(0.09)
    return _fork()


os.fork = _slow_fork


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        return {"refused": "not inside a sandbox"}
    return {"pid": os.getpid()}
