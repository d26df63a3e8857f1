#!/usr/bin/env python3
"""Pool churn: many functions on a small pool, invoked while they are redeployed and deleted.

Prints figures; it is not a timed test. Start the daemon with a pool smaller than the working
set, e.g. a config with

    [pool]
    max_sandboxes = 6
    blank = 2
    per_function = 2
    queue_timeout_ms = 2000

then run
    tools/bench_churn.py --server http://127.0.0.1:18305 --token $T

Clients invoke random functions; one deployer redeploys a random function every 50 ms and
deletes-then-redeploys one in ten. Reports answers by status (503 and 404 are expected: a full
pool, a function between delete and redeploy), wrong answers (must be 0), latency, and the most
runner processes seen at once on this machine (sampled every 20 ms; must not exceed
max_sandboxes).
"""

import argparse
import collections
import http.client
import os
import random
import threading
import time
import urllib.parse


def request(url, method, path, body=None, headers=None, timeout=15):
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def count_runners():
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == b"/usr/bin/python3" and b"/opt/nsbox/runner.py" in argv:
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--token", default=os.environ.get("NSBOX_TOKEN"), required=False)
    ap.add_argument("--functions", type=int, default=10)
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    if not args.token:
        ap.error("--token (or NSBOX_TOKEN) is required")
    url = urllib.parse.urlsplit(args.server)
    admin = {"Authorization": "Bearer " + args.token, "Content-Type": "text/x-python"}

    def source(i, tag=""):
        return "def handler(e, c):\n    return %d\n%s" % (i, tag)

    for i in range(args.functions):
        status, body = request(url, "PUT", "/functions/churn%d" % i, source(i), admin)
        if status != 201:
            raise SystemExit("bench: deploying churn%d: %d %s" % (i, status, body[:200]))

    stats = collections.Counter()
    latencies, wrong, lock = [], [], threading.Lock()
    stop = time.time() + args.seconds

    def client():
        while time.time() < stop:
            i = random.randrange(args.functions)
            t = time.time()
            try:
                status, body = request(url, "POST", "/fn/churn%d" % i, b"{}",
                                       {"Content-Type": "application/json"})
            except OSError as e:
                with lock:
                    stats["no answer"] += 1
                    wrong.append(repr(e))
                continue
            with lock:
                latencies.append(time.time() - t)
                stats[status] += 1
                if status == 200 and body.strip() != str(i).encode():
                    wrong.append((i, body[:100]))
                if status not in (200, 404, 503):
                    wrong.append((status, body[:200]))

    def deployer():
        v = 0
        while time.time() < stop:
            i = random.randrange(args.functions)
            v += 1
            status, _ = request(url, "PUT", "/functions/churn%d" % i, source(i, "# %d\n" % v), admin)
            with lock:
                stats["deploy %d" % status] += 1
            if random.random() < 0.1:
                request(url, "DELETE", "/functions/churn%d" % i, None, admin)
                request(url, "PUT", "/functions/churn%d" % i, source(i), admin)
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    threads.append(threading.Thread(target=deployer))
    for t in threads:
        t.start()
    most = 0
    while any(t.is_alive() for t in threads):
        most = max(most, count_runners())
        time.sleep(0.02)
    latencies.sort()
    answered = len(latencies)
    print("answers by status: %s" % dict(sorted(stats.items(), key=str)))
    print("invocations answered: %d in %.0f s (%.0f/s)" % (answered, args.seconds,
                                                           answered / args.seconds))
    if latencies:
        print("latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            latencies[answered // 2] * 1e3, latencies[int(answered * 0.99)] * 1e3,
            latencies[-1] * 1e3))
    print("most runner processes at once: %d" % most)
    print("wrong, failed or unexpected answers: %d %s" % (len(wrong), wrong[:5]))


if __name__ == "__main__":
    main()
