#!/usr/bin/env python3
"""The daemon's memory under concurrent large replies (issue 8, item 10).

Deploys a function whose result is a JSON string of --size bytes, sends
--clients concurrent requests (all released at once by a barrier), --rounds
times, and reads the daemon's peak RSS (VmHWM) and current RSS (VmRSS) from
/proc/PID/status: before, right after the bursts, and --settle seconds later
(does the memory go back?). --proxy returns the same bytes as the body of an
API-gateway proxy response instead.

usage: sudo tools/bench_replies.py --server URL --token T --pid DAEMON_PID
         [--clients 50] [--size 5000000] [--rounds 3] [--proxy]
"""
import argparse
import http.client
import os
import sys
import threading
import time
import urllib.parse
import urllib.request


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise SystemExit(f"bench: no {key} in /proc/{pid}/status")


def deploy(server, token, name, source):
    req = urllib.request.Request(f"{server}/functions/{name}?timeout=60s", data=source.encode(),
                                 method="PUT")
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "text/x-python")
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--server", required=True)
    ap.add_argument("--token", default=os.environ.get("NSBOX_TOKEN"), required=False)
    ap.add_argument("--pid", type=int, required=True, help="the daemon's pid")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--proxy", action="store_true")
    args = ap.parse_args()
    if not args.token:
        sys.exit("bench: --token (or $NSBOX_TOKEN) is needed to deploy")
    name = "bigproxy" if args.proxy else "bigreply"
    if args.proxy:
        src = ("BODY = 'x' * %d\ndef handler(event, context):\n"
               "    return {'statusCode': 200, 'headers': {'Content-Type': 'text/plain'}, "
               "'body': BODY}\n" % args.size)
    else:
        src = "R = 'x' * %d\ndef handler(event, context):\n    return R\n" % (args.size - 2)
    deploy(args.server, args.token, name, src)
    u = urllib.parse.urlparse(args.server)

    def one(barrier, out, i):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        barrier.wait()
        try:
            conn.request("GET", f"/fn/{name}")
            r = conn.getresponse()
            body = r.read()
            out[i] = (r.status, len(body))
        except Exception as e:  # noqa: BLE001 - reported below
            out[i] = (0, repr(e))
        finally:
            conn.close()

    one(threading.Barrier(1), [None], 0)  # warm: a sandbox exists, the code is loaded
    rss0, hwm0 = status_kib(args.pid, "VmRSS"), status_kib(args.pid, "VmHWM")
    print(f"before: VmRSS {rss0 / 1024:.1f} MiB, VmHWM {hwm0 / 1024:.1f} MiB")
    bad = 0
    t0 = time.monotonic()
    for rnd in range(args.rounds):
        out = [None] * args.clients
        barrier = threading.Barrier(args.clients)
        ts = [threading.Thread(target=one, args=(barrier, out, i)) for i in range(args.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        want = args.size if args.proxy else args.size + 1  # the JSON result and a newline
        ok = sum(1 for s, n in out if s == 200 and n in (want, args.size))
        bad += args.clients - ok
        print(f"round {rnd + 1}: {ok}/{args.clients} replies of {args.size} bytes; "
              f"VmRSS {status_kib(args.pid, 'VmRSS') / 1024:.1f} MiB, "
              f"VmHWM {status_kib(args.pid, 'VmHWM') / 1024:.1f} MiB"
              + ("" if ok == args.clients else f"; others: {[o for o in out if o[0] != 200][:3]}"))
    dt = time.monotonic() - t0
    time.sleep(args.settle)
    rss1, hwm1 = status_kib(args.pid, "VmRSS"), status_kib(args.pid, "VmHWM")
    print(f"after {args.rounds} x {args.clients} in {dt:.1f} s: peak VmHWM {hwm1 / 1024:.1f} MiB "
          f"(+{(hwm1 - rss0) / 1024:.1f} over the idle RSS), VmRSS {args.settle:.0f} s later "
          f"{rss1 / 1024:.1f} MiB")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
