"""What sandboxes cloned from one template share, tried from inside.

event["op"]:
  "plant"   leaves a secret everywhere a sibling could look if memory, files or
            modules were shared: in a module the template imported (json), in
            a builtin, in os.environ, in /tmp and in /dev/shm; returns it with
            this sandbox's random state.
  "look"    reports whether any of those places holds event["secret"], and this
            sandbox's random state and ids.
  "corrupt" overwrites the memory of objects the template made (the json
            module's dict, the builtins dict) with zeros through
            /proc/self/mem, then touches them: this process dies; siblings
            and the template must not notice.
Refuses to run outside a sandbox (the hostname must differ from the host's).
"""
import os
import random
import socket
import sys


def _state():
    return {
        "random": random.getrandbits(64),
        "urandom": os.urandom(8).hex(),
        "hash": hash("nsbox-template-probe"),
        "pid": os.getpid(),
        "uid": os.getuid(),
    }


def _look(secret):
    import builtins
    import json

    found = []
    if getattr(json, "_nsbox_secret", None) == secret:
        found.append("json module")
    if getattr(builtins, "_nsbox_secret", None) == secret:
        found.append("builtins")
    if os.environ.get("NSBOX_SECRET") == secret:
        found.append("environ")
    for path in ("/tmp/nsbox-secret", "/dev/shm/nsbox-secret"):
        try:
            with open(path) as f:
                if secret in f.read():
                    found.append(path)
        except OSError:
            pass
    return found


def _plant():
    import builtins
    import json

    secret = os.urandom(16).hex()
    json._nsbox_secret = secret
    builtins._nsbox_secret = secret
    os.environ["NSBOX_SECRET"] = secret
    for path in ("/tmp/nsbox-secret", "/dev/shm/nsbox-secret"):
        try:
            with open(path, "w") as f:
                f.write(secret)
        except OSError:
            pass
    return secret


def _corrupt():
    import builtins
    import json

    # Objects the template created before it cloned us: their pages are the
    # template's, shared copy-on-write. Zero 4 KiB from each object's address.
    targets = [id(json.__dict__), id(builtins.__dict__), id(sys.modules)]
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        for addr in targets:
            mem.seek(addr)
            mem.write(b"\0" * 4096)
    # Use them: this crashes the interpreter (or raises); either way this
    # sandbox is done for.
    return json.dumps({"still": "alive"}) + str(len(sys.modules))


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    op = event.get("op")
    if op == "plant":
        return dict(_state(), secret=_plant())
    if op == "look":
        return dict(_state(), found=_look(event.get("secret", "")))
    if op == "corrupt":
        return {"result": _corrupt()}
    raise ValueError("op must be plant, look or corrupt")
