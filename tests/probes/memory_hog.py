"""Allocates memory until a limit stops it. Refuses to run outside a
sandbox and caps itself at 1 GiB."""
import socket


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    chunks = []
    for _ in range(1024):  # at most 1 GiB
        chunks.append(bytearray(1 << 20))
    return {"allocated_mb": len(chunks)}
