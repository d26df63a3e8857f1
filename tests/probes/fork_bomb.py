"""Forks sleeping children until the pids limit refuses. Refuses to run
outside a sandbox and caps itself at 300 children, each gone in 20 s."""
import os
import socket
import time


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    n = 0
    for _ in range(300):
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        n += 1
    return {"forked": n}
