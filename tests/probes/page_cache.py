"""Reads a file of the runtime tree, advises the kernel to drop it from the
page cache (POSIX_FADV_DONTNEED) and syncs it, as a function that wants the
host's disk to work for it would. Returns what each call returned. Refuses to
run outside a sandbox."""
import os
import socket


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    fd = os.open(event["path"], os.O_RDONLY)
    try:
        while os.read(fd, 1 << 16):
            pass
        out = {"fadvise": os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)}
        os.fsync(fd)
        os.fdatasync(fd)
        out["synced"] = True
    finally:
        os.close(fd)
    return out
