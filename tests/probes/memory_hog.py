"""Allocates memory until a limit stops it. Refuses to run outside a
sandbox and caps itself at 1 GiB."""
import socket


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    # One allocation, whose zero-fill runs in libc alone. A loop of small
    # ones runs the interpreter between page faults, and under a memory limit
    # with no swap the kernel may reclaim and refault that code's pages for
    # ever instead of declaring OOM (seen on 6.1): a thrash, which ends at the
    # wall timeout, not the kill this probe is for.
    block = bytearray(1 << 30)
    return {"allocated_mb": len(block) >> 20}
