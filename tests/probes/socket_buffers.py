"""Queues unread data on loopback TCP connections inside the sandbox's own
network namespace (or, with {"family": "unix"}, on both ends of unix socket
pairs) until the kernel refuses more (at most CAP_MB in all, over at most
MAX_PAIRS connections), and says how much it queued: socket buffers are
memory the sandbox's limit must count. Refuses to run outside a sandbox."""
import socket

CAP_MB = 256
MAX_PAIRS = 100


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    unix = event.get("family") == "unix"
    if not unix:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(MAX_PAIRS)
    keep = []
    queued = 0
    chunk = b"\0" * (1 << 16)
    stalled = 0
    while queued < CAP_MB << 20 and len(keep) < MAX_PAIRS and stalled < 3:
        if unix:
            c, s = socket.socketpair()
        else:
            c = socket.socket()
            c.connect(listener.getsockname())
            s, _ = listener.accept()
        before = queued
        for end in ((c, s) if unix else (c,)):
            end.setblocking(False)
            try:
                while queued < CAP_MB << 20:
                    queued += end.send(chunk)
            except (BlockingIOError, OSError):
                pass
        keep.append((c, s))
        # A connection that takes almost nothing: the kernel has stopped
        # giving this sandbox socket memory.
        stalled = stalled + 1 if queued - before < 64 << 10 else 0
    return {"pairs": len(keep), "queued_mb": queued >> 20}
