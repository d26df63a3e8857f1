"""Starts a thread that keeps spinning after the handler has returned (the
"function stops when its answer is sent" attack). Refuses to run outside a
sandbox; one thread per sandbox, which stops by itself after 60 s. With
event["comm"] the process takes that name when it starts the thread, so the
host can find the spinning sandbox."""
import socket
import threading
import time

_spins = [0]
_thread = []


def _spin():
    end = time.monotonic() + 60
    while time.monotonic() < end:
        _spins[0] += 1


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    if not _thread:
        if event.get("comm"):
            with open("/proc/self/comm", "w") as f:
                f.write(event["comm"])
        t = threading.Thread(target=_spin, daemon=True)
        t.start()
        _thread.append(t)
    return {"spins": _spins[0], "invocations": len(_thread)}
