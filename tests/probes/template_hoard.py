"""A function whose instances hand memory back to their template (deploy with template=1).

The module body, which runs in the function template, binds a datagram socket in the
sandbox's abstract namespace and never reads it: an fd sent to it stays open in the
socket's queue for as long as the template lives. The handler makes a memfd of
event["hoard_mb"] MiB (at most 48), writes every page of it (so the pages are charged to
the instance's own cgroup), sends it to that socket, closes its own copy and answers
after event["sleep_ms"] (at most 2,000). Once the instance ends, that memory is the
template's, though charged to the instance's removed cgroup.

Refuses to act outside a sandbox: the import binds nothing unless the hostname is "nsbox"
(what nsbox names every sandbox), and the handler answers "refused" when the hostname is
the host's (event["host_hostname"]). It hoards at most 48 MiB per call, in a queue that
holds at most ten.
"""
import array
import os
import socket
import time

ADDR = None

if socket.gethostname() == "nsbox":
    _keep = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ADDR = b"\0nsbox-hoard-" + os.urandom(8).hex().encode()
    _keep.bind(ADDR)


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname") or ADDR is None:
        return {"refused": "not inside a sandbox"}
    mb = max(0, min(int(event.get("hoard_mb", 0)), 48))
    sent = "nothing"
    if mb:
        fd = os.memfd_create("hoard")
        chunk = b"h" * (1 << 20)
        for i in range(mb):
            os.pwrite(fd, chunk, i << 20)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                # Not socket.send_fds: it drops its address argument.
                rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))
                s.sendmsg([b"m"], [rights], 0, ADDR)
                sent = "sent"
            except OSError as e:
                sent = e.strerror
        os.close(fd)
    time.sleep(max(0, min(int(event.get("sleep_ms", 0)), 2000)) / 1000)
    return {"hoarded_mb": mb, "sent": sent, "pid": os.getpid()}
