"""A function whose handler leaves a process behind (deploy with template=1).

Each call forks one child that starts its own session and sleeps for at most 60 s, and
returns without waiting for it: when the instance is destroyed the child is killed with it,
and, the instance gone, it is its function template's PID 1's to reap.

Refuses to act outside a sandbox (the hostname must differ from event["host_hostname"]);
it forks one process a call, no more.
"""
import os
import socket
import time


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        return {"refused": "not inside a sandbox"}
    pid = os.fork()
    if pid == 0:
        os.setsid()
        time.sleep(60)
        os._exit(0)
    return {"left": pid}
