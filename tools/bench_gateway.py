#!/usr/bin/env python3
"""Gateway benchmarks. Prints figures; it is not a timed test.

  baseline                         the HTTP ceiling of this machine: http_baseline
                                   (a bare cpp-httplib server) under loadgen 8 x 5000
  warm      --server URL --token T gateway vs baseline throughput on one warm function,
                                   back-to-back in the same run (goal: ratio >= 0.5)
  paper     --server URL --token T the 2017 closed-loop evaluation: 1, 3, 5 ... 150
                                   clients, each bound to its own function, 30 requests
                                   each, 1500 ms timeouts (goals: 0 % drops, p99 < 100 ms)
  coldstart --server URL --token T first request to a freshly deployed function against
                                   `nsbox run --no-isolation` on the same source

Only the Python stdlib is used. Every command (and the equivalent curl for HTTP
calls made from here) is printed before it runs. Everything targets this
machine only: URLs whose host is not 127.x.x.x, localhost or ::1 are refused.

Tools come from <script dir>/../build/tools (override with --build DIR).
"""
import argparse
import ipaddress
import json
import os
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

TRIVIAL_FN = 'def handler(event, context):\n    return {"ok": True}\n'

# The gateway's deploy API, in one place: PUT /functions/<name> with the
# Python source as the body. Adjust here if the gateway settles on another shape.
DEPLOY_CONTENT_TYPE = "text/x-python; charset=utf-8"

# No proxies, ever: everything here is on 127.0.0.1 (urllib would otherwise
# honour http_proxy from the environment).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def say(*a):
    print(*a, flush=True)


def show_cmd(cmd):
    say("$ " + shlex.join(cmd))


# ---------------------------------------------------------------- safety checks

def check_local_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        sys.exit(f"bench: {url}: only http:// URLs are supported")
    host = u.hostname or ""
    ok = host == "localhost"
    if not ok:
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
    if not ok:
        sys.exit(f"bench: refusing {url}: only 127.x.x.x, localhost or ::1 may be targeted")
    return url.rstrip("/")


# ---------------------------------------------------------------- tools

class Tools:
    def __init__(self, build):
        d = os.path.join(os.path.abspath(build), "tools")
        self.loadgen = os.path.join(d, "loadgen")
        self.http_baseline = os.path.join(d, "http_baseline")
        self.nsbox = os.path.join(d, "nsbox")

    def need(self, *paths):
        for p in paths:
            if not os.access(p, os.X_OK):
                sys.exit(f"bench: {p} not found or not executable; "
                         "build it with: ninja -C build tools/loadgen tools/http_baseline tools/nsbox")


def loadgen(tools, url, clients, requests, extra=(), quiet=False):
    """Runs loadgen --json, prints the command and returns its parsed result."""
    cmd = [tools.loadgen, "--url", url, "--clients", str(clients), "--requests", str(requests),
           *extra, "--json"]
    shown = list(cmd)
    for i, a in enumerate(shown[:-1]):  # don't print bearer tokens
        if a == "--header" and shown[i + 1].lower().startswith("authorization:"):
            shown[i + 1] = "Authorization: Bearer <token>"
    if not quiet:
        show_cmd(shown)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: loadgen failed ({p.returncode}): {p.stderr.strip()[-1000:]}")
    return json.loads(p.stdout)


class Baseline:
    """http_baseline on a free port (it binds port 0 and prints the one it got)."""

    def __init__(self, tools):
        self.cmd = [tools.http_baseline, "--listen", "127.0.0.1:0"]
        self.proc = None
        self.url = None

    def __enter__(self):
        show_cmd(self.cmd)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        line = ""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if r:
                line = self.proc.stderr.readline()
                m = re.search(r"listening on (\S+):(\d+)", line)
                if m:
                    self.url = f"http://{m.group(1)}:{m.group(2)}"
                    say(f"  (http_baseline pid {self.proc.pid}: {line.strip()})")
                    return self
                if not line:
                    break
            if self.proc.poll() is not None:
                break
        self.stop()
        sys.exit(f"bench: http_baseline did not start: {line.strip()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def __exit__(self, *exc):
        self.stop()
        say(f"  (http_baseline stopped, exit {self.proc.returncode})")


# ---------------------------------------------------------------- gateway HTTP

def http(method, url, body=None, headers=None, timeout=30):
    """One HTTP request; returns (status, body bytes, seconds). No proxies."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    t0 = time.perf_counter()
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            data = r.read()
            return r.status, data, time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.perf_counter() - t0


def deploy(server, token, name, source, verbose=True):
    url = f"{server}/functions/{urllib.parse.quote(name)}"
    if verbose:
        say(f"$ curl -sS -X PUT -H 'Authorization: Bearer <token>' "
            f"-H 'Content-Type: {DEPLOY_CONTENT_TYPE}' --data-binary @fn.py {url}")
    try:
        status, data, _ = http("PUT", url, source.encode(), {
            "Authorization": f"Bearer {token}", "Content-Type": DEPLOY_CONTENT_TYPE})
    except (urllib.error.URLError, OSError) as e:
        sys.exit(f"bench: deploy {name}: {e}")
    if not 200 <= status < 300:
        sys.exit(f"bench: deploy {name}: HTTP {status}: {data[:500]!r}")


def invoke_headers(args):
    return {"Authorization": f"Bearer {args.token}"} if args.invoke_auth else {}


def loadgen_auth(args):
    return ["--header", f"Authorization: Bearer {args.token}"] if args.invoke_auth else []


def fmt_status(r):
    return ", ".join(f"{k}: {v}" for k, v in sorted(r["by_status"].items())) or "none"


def non2xx(r):
    return sum(v for k, v in r["by_status"].items() if not 200 <= int(k) < 300)


# ---------------------------------------------------------------- subcommands

# 5000 requests a client: a round of the baseline then lasts ~1 s rather than
# ~0.4 s, short enough to interleave and long enough that one burst of the
# shared machine's noise does not decide a round.
WARM_CLIENTS, WARM_REQUESTS = 8, 5000


def run_baseline_once(tools, name):
    with Baseline(tools) as b:
        return loadgen(tools, b.url, WARM_CLIENTS, WARM_REQUESTS, ["--name", name])


def print_run(label, r):
    say(f"  {label}: {r['throughput_rps']:.0f} req/s  ({r['requests']} requests in {r['duration_s']:.3f} s; "
        f"drops {r['drops']}; status {fmt_status(r)}; p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
        f"max {r['max_ms']:.3f} ms)")


def cmd_baseline(args, tools):
    tools.need(tools.loadgen, tools.http_baseline)
    say(f"# baseline: http_baseline under loadgen {WARM_CLIENTS} clients x {WARM_REQUESTS} requests, "
        f"{args.repeat} run(s)")
    rps = []
    for i in range(args.repeat):
        r = run_baseline_once(tools, "bench0")
        print_run(f"run {i + 1}", r)
        rps.append(r["throughput_rps"])
    say(f"baseline throughput: median {statistics.median(rps):.0f} req/s "
        f"(runs: {', '.join(f'{x:.0f}' for x in rps)})")


def cmd_warm(args, tools):
    tools.need(tools.loadgen, tools.http_baseline)
    server = check_local_url(args.server)
    if not args.no_deploy:
        deploy(server, args.token, "bench0", TRIVIAL_FN)
    # Warm-up (not measured): the first request may be a cold start, and a
    # gateway that keeps one instance per concurrent request needs 8 of them.
    say("# warm-up (not measured)")
    w = loadgen(tools, server, WARM_CLIENTS, 50, ["--name", "bench0", *loadgen_auth(args)])
    print_run("warm-up", w)
    if w["ok"] == 0:
        sys.exit("bench: the gateway answered no request of the warm-up with 2xx; giving up")
    say(f"# measured: baseline and gateway interleaved, {args.repeat} round(s), "
        f"{WARM_CLIENTS} clients x {WARM_REQUESTS} requests at /fn/bench0")
    gw, base, paired = [], [], []
    for i in range(args.repeat):
        b = run_baseline_once(tools, "bench0")
        print_run(f"round {i + 1} baseline", b)
        g = loadgen(tools, server, WARM_CLIENTS, WARM_REQUESTS, ["--name", "bench0", *loadgen_auth(args)])
        print_run(f"round {i + 1} gateway ", g)
        if g["drops"] or non2xx(g):
            say(f"  note: gateway had {g['drops']} drops and {non2xx(g)} non-2xx answers")
        base.append(b["throughput_rps"])
        gw.append(g["throughput_rps"] * g["ok"] / max(1, g["completed"]))  # count 2xx only
        paired.append(gw[-1] / base[-1] if base[-1] else 0.0)
    mg, mb = statistics.median(gw), statistics.median(base)
    ratio = mg / mb if mb else 0.0
    say(f"gateway throughput:  median {mg:.0f} req/s (2xx only)")
    say(f"baseline throughput: median {mb:.0f} req/s")
    say(f"ratio of each round: {', '.join(f'{x:.2f}' for x in paired)}")
    say(f"ratio gateway/baseline: {ratio:.2f}  goal >= 0.5: {'PASS' if ratio >= 0.5 else 'FAIL'}")


def cmd_paper(args, tools):
    tools.need(tools.loadgen)
    server = check_local_url(args.server)
    n = args.max_clients
    if not 1 <= n <= 1000 or args.step < 1 or not 1 <= args.requests <= 100000:
        sys.exit("bench: need 1 <= --max-clients <= 1000, --step >= 1, 1 <= --requests <= 100000")
    if not args.no_deploy:
        say(f"# deploying fn0..fn{n - 1}")
        deploy(server, args.token, "fn0", TRIVIAL_FN)
        for i in range(1, n):
            deploy(server, args.token, f"fn{i}", TRIVIAL_FN, verbose=False)
        say(f"  (the same PUT for fn1..fn{n - 1})")
    if not args.no_warmup:
        # One request to each function first, so the steps measure warm
        # functions (--no-warmup leaves the cold starts in step latencies).
        say(f"# warm-up: one POST /fn/fnK for each of fn0..fn{n - 1}, sequentially (not measured)")
        say(f"$ curl -sS -X POST -H 'Content-Type: application/json' -d '{{}}' {server}/fn/fn0   # ... fn{n - 1}")
        bad = 0
        for i in range(n):
            try:
                st, _, _ = http("POST", f"{server}/fn/fn{i}", b"{}",
                                {"Content-Type": "application/json", **invoke_headers(args)})
            except (urllib.error.URLError, OSError):
                st = 0
            bad += not 200 <= st < 300
        if bad:
            say(f"  note: {bad} of {n} warm-up requests failed")
    timeouts = ["--connect-timeout-ms", "1500", "--timeout-ms", "1500"]
    say(f"# steps: clients 1..{n} by {args.step}, {args.requests} requests each, client i -> fn<i>")
    say(f"{'clients':>7} {'req/s':>9} {'drop%':>7} {'non2xx%':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    rows = []
    first = True
    for c in range(1, n + 1, args.step):
        r = loadgen(tools, server, c, args.requests, ["--prefix", "fn", *timeouts, *loadgen_auth(args)],
                    quiet=not first)
        if first:
            say(f"  (each step runs the same command with --clients <step>)")
            first = False
        err_pct = 100.0 * non2xx(r) / r["requests"]
        rows.append((c, r, err_pct))
        say(f"{c:>7} {r['throughput_rps']:>9.0f} {r['drop_pct']:>7.2f} {err_pct:>8.2f} "
            f"{r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['max_ms']:>9.2f}"
            + (f"   drops: {r['drops_by_error']}" if r["drops"] else "")
            + (f"   status: {fmt_status(r)}" if non2xx(r) else ""))
    max_drop = max(r["drop_pct"] for _, r, _ in rows)
    max_err = max(e for _, _, e in rows)
    max_p99 = max(r["p99_ms"] for _, r, _ in rows)
    ok_drop, ok_err, ok_p99 = max_drop == 0, max_err == 0, max_p99 < 100
    say(f"max drop %: {max_drop:.2f} ({'PASS' if ok_drop else 'FAIL'}: goal 0 at every step)")
    say(f"max non-2xx %: {max_err:.2f} ({'PASS' if ok_err else 'FAIL'}: an error answer counts as a failure)")
    say(f"max p99: {max_p99:.2f} ms ({'PASS' if ok_p99 else 'FAIL'}: goal < 100 ms)")
    say(f"paper: {'PASS' if ok_drop and ok_err and ok_p99 else 'FAIL'}")


def cmd_coldstart(args, tools):
    tools.need(tools.nsbox)
    server = check_local_url(args.server)
    with tempfile.TemporaryDirectory() as d:
        fn = os.path.join(d, "fn.py")
        with open(fn, "w") as f:
            f.write(TRIVIAL_FN)
        run_cmd = [tools.nsbox, "run", fn, "--no-isolation"]

        def time_run():
            t0 = time.perf_counter()
            p = subprocess.run(run_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            dt = (time.perf_counter() - t0) * 1000
            if p.returncode != 0:
                sys.exit(f"bench: nsbox run failed ({p.returncode}): {p.stderr.strip()[-500:]}")
            return dt

        say("# warm-up (not measured): rootfs build, page cache")
        show_cmd(run_cmd)
        time_run()
        say(f"# {args.runs} runs, interleaved: deploy {args.prefix}<i> (not timed), time its first "
            "POST, then time nsbox run --no-isolation")
        say(f"$ curl -sS -X POST -H 'Content-Type: application/json' -d '{{}}' {server}/fn/{args.prefix}<i>")
        show_cmd(run_cmd)
        first, local = [], []
        for i in range(args.runs):
            name = f"{args.prefix}{i}"
            deploy(server, args.token, name, TRIVIAL_FN, verbose=(i == 0))
            try:
                st, body, dt = http("POST", f"{server}/fn/{name}", b"{}",
                                    {"Content-Type": "application/json", **invoke_headers(args)})
            except (urllib.error.URLError, OSError) as e:
                sys.exit(f"bench: POST /fn/{name}: {e}")
            if not 200 <= st < 300:
                sys.exit(f"bench: POST /fn/{name}: HTTP {st}: {body[:500]!r}")
            first.append(dt * 1000)
            local.append(time_run())
            say(f"  run {i + 1:>3}: first request {first[-1]:8.2f} ms   nsbox run --no-isolation {local[-1]:8.2f} ms")
    mf, ml = statistics.median(first), statistics.median(local)
    say(f"first request to a new function: median {mf:.2f} ms (min {min(first):.2f}, max {max(first):.2f})")
    say(f"nsbox run --no-isolation:        median {ml:.2f} ms (min {min(local):.2f}, max {max(local):.2f})")
    say(f"ratio first-request/no-isolation: {mf / ml:.2f}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--build", default=os.path.join(here, "..", "build"),
                    help="meson build dir holding tools/loadgen, tools/http_baseline, tools/nsbox")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def gateway_args(p):
        p.add_argument("--server", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
        p.add_argument("--token", default=os.environ.get("NSBOX_TOKEN"),
                       help="deploy token (default $NSBOX_TOKEN)")
        p.add_argument("--invoke-auth", action="store_true",
                       help="also send the bearer token on /fn/ invocations")

    p = sub.add_parser("baseline", help="HTTP ceiling: http_baseline under loadgen 8 x 5000")
    p.add_argument("--repeat", type=int, default=3, help="runs; the median is reported (default 3)")
    p = sub.add_parser("warm", help="gateway vs baseline on one warm function")
    gateway_args(p)
    p.add_argument("--repeat", type=int, default=5, help="interleaved rounds; medians are compared (default 5)")
    p.add_argument("--no-deploy", action="store_true", help="bench0 is already deployed")
    p = sub.add_parser("paper", help="1, 3, 5 ... N closed-loop clients, one function each")
    gateway_args(p)
    p.add_argument("--max-clients", type=int, default=150)
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--no-deploy", action="store_true", help="fn0..fnN-1 are already deployed")
    p.add_argument("--no-warmup", action="store_true", help="leave first-request cold starts in the steps")
    p = sub.add_parser("coldstart", help="first request to a new function vs nsbox run --no-isolation")
    gateway_args(p)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--prefix", default="cold", help="function names <prefix><i> (default cold)")
    args = ap.parse_args()

    if getattr(args, "repeat", 1) < 1 or getattr(args, "runs", 1) < 1:
        sys.exit("bench: --repeat/--runs must be >= 1")
    if args.cmd != "baseline" and not args.token and not getattr(args, "no_deploy", False):
        sys.exit("bench: --token (or $NSBOX_TOKEN) is needed to deploy")
    tools = Tools(args.build)
    {"baseline": cmd_baseline, "warm": cmd_warm, "paper": cmd_paper, "coldstart": cmd_coldstart}[args.cmd](args, tools)


if __name__ == "__main__":
    main()
