"""Crashes a child process of its own with SIGSEGV: no core handler of the host may run.

Refuses to act unless it can see it is inside a sandbox (event "host_hostname" differs
from this hostname); forks once. Returns the child's signal and whether the kernel says
it dumped core.
"""
import os
import signal
import socket


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGSEGV)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    return {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "core_dumped": os.WCOREDUMP(status)}
