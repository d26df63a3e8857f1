#!/usr/bin/env python3
"""Cold-start benchmark: `nsbox run` against `nsbox run --no-isolation` and a
bare python3, on the same trivial function (returns the current time, like
the 2017 evaluation's). Runs the variants interleaved in one run, so a noisy
shared machine slows all of them alike, and reports medians and ratios.

usage: sudo tools/bench_coldstart.py [--runs N] [--nsbox PATH] [--policy NAME]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

FN = '''import time
def handler(event, context):
    return {"time": time.time()}
'''


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return dt, p.stderr.decode()


def host_notes():
    notes = []
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if fields[2] == "cgroup2":
                    notes.append(f"cgroup2 at {fields[1]} options {fields[3]}")
    except OSError:
        pass
    return notes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--nsbox", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                    "tools", "nsbox"))
    ap.add_argument("--policy", default="default")
    args = ap.parse_args()
    nsbox = os.path.abspath(args.nsbox)

    with tempfile.TemporaryDirectory() as d:
        fn = os.path.join(d, "fn.py")
        with open(fn, "w") as f:
            f.write(FN)
        variants = {
            "bare python3": ["/usr/bin/python3", "-I", "-S", "-c",
                             f"import sys; sys.path.insert(0, {d!r}); import fn; "
                             "import json; print(json.dumps(fn.handler({}, None)))"],
            "nsbox --no-isolation": [nsbox, "run", fn, "--no-isolation"],
            "nsbox (isolated)": [nsbox, "run", fn, "--policy", args.policy],
        }
        for cmd in variants.values():  # warm caches: rootfs build, seccomp cache, page cache
            timed(cmd)
        samples = {k: [] for k in variants}
        for _ in range(args.runs):
            for name, cmd in variants.items():
                samples[name].append(timed(cmd)[0])
        # Where isolated setup time goes: the child's per-step timings (-v).
        steps = {}
        for _ in range(min(args.runs, 15)):
            _, err = timed(variants["nsbox (isolated)"] + ["-v"])
            m = re.search(r"setup: (.*)ready after ([0-9.]+) ms", err)
            if not m:
                continue
            for part in m.group(1).split("; "):
                mm = re.match(r"(.*) ([0-9.]+) ms", part.strip())
                if mm:
                    steps.setdefault(mm.group(1), []).append(float(mm.group(2)))
            steps.setdefault("clone to exec (total)", []).append(float(m.group(2)))

    print(f"cold start, {args.runs} runs each, interleaved, uid {os.geteuid()}, "
          f"policy {args.policy}")
    for n in host_notes():
        print(f"  host: {n}")
    base = statistics.median(samples["nsbox --no-isolation"])
    for name, s in samples.items():
        s.sort()
        med = statistics.median(s)
        p90 = s[int(len(s) * 0.9) - 1]
        print(f"  {name:24s} median {med:7.2f} ms  p90 {p90:7.2f} ms  "
              f"ratio to --no-isolation {med / base:5.2f}x")
    if steps:
        print("  isolated setup steps (median ms):")
        for name, v in steps.items():
            print(f"    {name:28s} {statistics.median(v):7.3f}")


if __name__ == "__main__":
    main()
