#!/usr/bin/env python3
"""Memory per function, the 2017 evaluation's headline figure (Docker-isolated
OpenLambda 14.56 MB per function against 2.76 MB for the unisolated Clofly).

In one run: deploys N trivial functions to a running `nsbox serve` (root
mode), invokes each once so each has a warm sandbox, and sums the PSS of
every sandbox process (runner and its PID 1; sandbox processes run as host
uids from 0x70000000); then starts N unisolated runners (the same runner and
interpreter as plain subprocesses, each loaded with the same function) and
sums their PSS. PSS charges shared pages fractionally, so the per-function
figures add up to what the machine really spends.

usage: sudo tools/bench_memory.py --server URL --token T [--functions 50]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

FN = "import time\ndef handler(event, context):\n    return {'time': time.time()}\n"
SANDBOX_UID_BASE = 0x70000000


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sandbox_pids():
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}").st_uid >= SANDBOX_UID_BASE:
                    out.append(int(p))
            except OSError:
                pass
    return out


def request(method, url, body=None, token=None):
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def frame(sock, obj, payload=b""):
    """One request and its reply in the runner protocol (docs/runner-protocol.md): two
    big-endian lengths, the JSON envelope, the payload. Returns the reply's envelope."""
    env = json.dumps(obj).encode()
    sock.sendall(len(env).to_bytes(4, "big") + len(payload).to_bytes(4, "big") + env + payload)

    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("runner closed the channel")
            buf += chunk
        return buf
    head = exact(8)
    reply = json.loads(exact(int.from_bytes(head[:4], "big")))
    exact(int.from_bytes(head[4:], "big"))
    return reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--token", default=os.environ.get("NSBOX_TOKEN"))
    ap.add_argument("--functions", type=int, default=50)
    ap.add_argument("--rootfs", default="/var/lib/nsbox/rootfs",
                    help="where the runner for the unisolated side is taken from")
    a = ap.parse_args()
    if not a.server.startswith(("http://127.", "http://localhost")):
        sys.exit("bench: only a local server")
    n = a.functions

    before = set(sandbox_pids())
    for i in range(n):
        request("PUT", f"{a.server}/functions/mem{i}", FN.encode(), a.token)
    for i in range(n):
        request("POST", f"{a.server}/fn/mem{i}", b"{}")
    time.sleep(0.5)
    pids = [p for p in sandbox_pids() if p not in before]
    isolated = sum(pss_kib(p) for p in pids)
    print(f"$ PUT + POST {a.server}/fn/mem0..mem{n - 1}; sum PSS of the {len(pids)} new sandbox "
          f"processes (uid >= {SANDBOX_UID_BASE:#x})")

    runner = os.path.join(a.rootfs, "opt/nsbox/runner.py")
    procs, socks = [], []
    # A directory of our own: a fixed name in /tmp could be another user's
    # file, which these root-run runners would then load.
    scratch = tempfile.mkdtemp(prefix="nsbox-bench-mem-")
    fn_path = os.path.join(scratch, "fn.py")
    with open(fn_path, "w") as f:
        f.write(FN)
    for i in range(n):
        mine, theirs = socket.socketpair()
        p = subprocess.Popen(["/usr/bin/python3", "-I", "-S", runner, "--fd", str(theirs.fileno())],
                             pass_fds=[theirs.fileno()], stdout=subprocess.DEVNULL)
        theirs.close()
        r = frame(mine, {"type": "load", "function": fn_path,
                         "handler": "handler"})
        assert r.get("type") == "ready", r
        frame(mine, {"type": "invoke", "id": "1", "context": {}}, b"{}")
        procs.append(p)
        socks.append(mine)
    time.sleep(0.5)
    plain = sum(pss_kib(p.pid) for p in procs)
    print(f"$ {n} x /usr/bin/python3 -I -S {runner} --fd N (load + invoke the same function); "
          f"sum PSS")
    for s in socks:
        s.close()
    for p in procs:
        p.wait(timeout=10)
    shutil.rmtree(scratch, ignore_errors=True)
    for i in range(n):
        request("DELETE", f"{a.server}/functions/mem{i}", None, a.token)

    iso_mb = isolated / n / 1024
    plain_mb = plain / n / 1024
    print(f"memory per function, {n} functions:")
    print(f"  nsbox sandbox (runner + PID 1)  {iso_mb:6.2f} MiB PSS")
    print(f"  unisolated runner               {plain_mb:6.2f} MiB PSS")
    print(f"  ratio                           {iso_mb / plain_mb:6.2f}x   "
          f"(2017 paper: Docker-isolated 14.56 MB vs unisolated 2.76 MB = 5.3x)")


if __name__ == "__main__":
    main()
