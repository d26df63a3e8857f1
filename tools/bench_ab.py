#!/usr/bin/env python3
"""Two builds side by side: alternated rounds of a gateway benchmark.

  bench_ab.py --a BUILD_A --b BUILD_B [--rounds 5] warm|paper

Starts `nsbox serve` from each build (as root, each with its own state
directory under /tmp and its own port on 127.0.0.1), then runs
`tools/bench_gateway.py warm` (one round each) or `paper` against A, B, A,
B, ... and prints every round's figure and each build's median and range.
The machine is shared and noisy: only figures from one such run compare.
Prints figures; it is not a timed test. Both daemons are stopped at the end,
and their state directories removed.
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "bench_gateway.py")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def say(*a):
    print(*a, flush=True)


class Daemon:
    def __init__(self, label, build, port):
        self.label, self.build, self.port = label, os.path.abspath(build), port
        self.url = f"http://127.0.0.1:{port}"
        self.state = tempfile.mkdtemp(prefix=f"nsbox-ab-{label}-")
        os.chmod(self.state, 0o755)  # the spawner's mounts below it need traversal
        nsbox = os.path.join(self.build, "tools", "nsbox")
        if not os.access(nsbox, os.X_OK):
            sys.exit(f"bench_ab: {nsbox} is not an executable: build {self.build} first (ninja -C {self.build})")
        cmd = [nsbox, "serve", "--listen", f"127.0.0.1:{port}", "--state-dir", self.state]
        say(f"$ {shlex.join(cmd)}   # build {label}")
        self.log = open(os.path.join(self.state, "serve.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"bench_ab: daemon {label} exited {self.proc.returncode}; log: {self.log.name}")
            try:
                with _OPENER.open(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200 and os.path.exists(os.path.join(self.state, "token")):
                        break
            except OSError:
                pass
            time.sleep(0.2)  # polling the daemon's readiness, bounded by the deadline
        else:
            sys.exit(f"bench_ab: daemon {label} not ready within 60 s; log: {self.log.name}")
        with open(os.path.join(self.state, "token")) as f:
            self.token = f.read().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.state, ignore_errors=True)


def run_bench(kind, d, extra):
    cmd = [sys.executable, BENCH, "--build", d.build, kind, "--server", d.url, "--token", d.token]
    if kind == "warm":
        cmd += ["--repeat", "1"]
    cmd += extra
    say(f"$ {shlex.join(cmd).replace(d.token, '$TOKEN_' + d.label)}")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout
    if kind == "warm":
        m = re.search(r"ratio gateway/baseline: ([0-9.]+)", out)
        figure = float(m.group(1)) if m else None
        summary = f"ratio {figure}"
    else:
        m = re.search(r"max p99: ([0-9.]+) ms", out)
        figure = float(m.group(1)) if m else None
        drops = re.search(r"max drop %: ([0-9.]+)", out)
        errs = re.search(r"max non-2xx %: ([0-9.]+)", out)
        summary = (f"worst-step p99 {figure} ms, max drop {drops.group(1) if drops else '?'} %, "
                   f"max non-2xx {errs.group(1) if errs else '?'} %")
    if figure is None:
        say(out[-3000:])
        sys.exit(f"bench_ab: no figure in the output of build {d.label} (exit {p.returncode})")
    return figure, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="meson build dir of build A (e.g. the baseline)")
    ap.add_argument("--b", required=True, help="meson build dir of build B")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ports", default="18310,18311")
    ap.add_argument("kind", choices=["warm", "paper"])
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="passed on to bench_gateway.py")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_ab: run as root (nsbox serve with cgroups, as the daemon runs)")
    if not 1 <= args.rounds <= 50:
        sys.exit("bench_ab: --rounds must be 1..50")
    pa, pb = (int(x) for x in args.ports.split(","))
    daemons = []
    try:
        daemons = [Daemon("A", args.a, pa), Daemon("B", args.b, pb)]
        figures = {"A": [], "B": []}
        for i in range(args.rounds):
            for d in daemons:
                f, summary = run_bench(args.kind, d, args.extra)
                figures[d.label].append(f)
                say(f"round {i + 1} build {d.label}: {summary}")
        unit = "gateway/baseline ratio (higher is better)" if args.kind == "warm" else \
            "worst-step p99 ms (lower is better)"
        say(f"# {args.kind}: {unit}, {args.rounds} alternated rounds")
        for d in daemons:
            v = figures[d.label]
            say(f"build {d.label} ({d.build}): {', '.join(f'{x:g}' for x in v)}; "
                f"median {statistics.median(v):g}, range {min(v):g}-{max(v):g}")
    finally:
        for d in daemons:
            d.stop()


if __name__ == "__main__":
    main()
