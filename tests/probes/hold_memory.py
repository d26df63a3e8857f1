"""Allocates event["mb"] MiB (capped at 1 GiB), touches every page, holds it
for event["hold_s"] seconds (capped at 10), frees it and returns. Refuses to
run outside a sandbox."""
import socket
import time


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    mb = min(int(event.get("mb", 0)), 1024)
    hold = min(float(event.get("hold_s", 0)), 10.0)
    chunks = [bytearray(1 << 20) for _ in range(mb)]  # bytearray zero-fills: pages touched
    time.sleep(hold)
    del chunks
    return {"held_mb": mb}
