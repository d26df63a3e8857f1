"""Allocates event["mb"] MiB (capped at 1 GiB), touches every page and holds
it until SIGUSR1 comes or event["hold_s"] seconds pass (capped at 10), then
frees it and returns whether the signal let it go. While it holds the
memory its process is named "nsbox-memhog", so the host can find it (and
send the signal). Refuses to run outside a sandbox."""
import signal
import socket


def _rename(name):
    with open("/proc/self/comm", "w") as f:
        f.write(name)


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    mb = min(int(event.get("mb", 0)), 1024)
    hold = min(float(event.get("hold_s", 0)), 10.0)
    # Blocked first: a signal sent as soon as the name shows is kept, not
    # fatal (SIGUSR1's default action ends the process).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    with open("/proc/self/comm") as f:
        was = f.read().strip()
    chunks = [bytearray(1 << 20) for _ in range(mb)]  # bytearray zero-fills: pages touched
    _rename("nsbox-memhog")
    released = signal.sigtimedwait({signal.SIGUSR1}, hold) is not None
    _rename(was)
    del chunks
    return {"held_mb": mb, "released": released}
