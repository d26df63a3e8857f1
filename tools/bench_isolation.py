#!/usr/bin/python3
"""nsbox bench: what isolation costs, side by side, behind one gateway.

    nsbox bench paper|layers|all [--mechanisms nsbox,none,bwrap,crun,runc,docker] [--quick]
                      [--cpus 1] [--install] [--out DIR] [--doc docs/isolation-cost.md]
    nsbox bench template [--quick] ...   the template factory against exec (bench_template.py)

The 2017 evaluation's protocol (150 functions returning the time; closed-loop clients 1 to 149
in steps of 2, each bound to one function, 30 requests each, 1500 ms connect and response
timeouts; CPU idle and memory sampled every second as dstat did; one-minute light (3 clients)
and heavy (7 clients) runs for Tables 1 and 2), run once per isolation mechanism. Each
mechanism is the same daemon, the same runner and the same rootfs with only `[pool] isolation`
changed (gateway/isolation.hpp), so the figures differ by how a sandbox is made and nothing else.

Also per mechanism: cold start (first request of a never-invoked function) with a blank
sandbox ready and with the pool empty, and marginal memory per warm function by density
(memory in use with 150 warm functions minus with 20, over 130).

`layers`: nsbox's own sandbox built one layer at a time (`[pool] layers`, sandbox/spec.hpp:
none; + mount namespace, overlay and pivot_root; + PID; + network; + IPC and UTS; + user
namespace; + cgroups; + capability drop and no_new_privs; + seccomp = all) by the exec
factory, then all layers once more from the template factory (the daemon's default): cold
start, warm latency and memory per warm sandbox for each, as ratios to the first row.

Memory in use is AnonPages + SUnreclaim + KernelStack + PageTables + Percpu + Shmem from
/proc/meminfo: MemAvailable moves with the page cache. --cpus 1 pins the daemon, its
sandboxes (and dockerd, containerd and their shims) to CPU 0 and the load to CPU 1, as the
paper's 1-vCPU server with a separate client VM; CPU idle is then CPU 0's.

A mechanism that cannot run here is a row that says why, never a missing row. --install
apt-installs bubblewrap, crun, runc, docker.io and python3-matplotlib and starts dockerd
(without its bridge, iptables rules or ip_forward: the host's network settings stay as they
were) when no dockerd runs; the bench stops the dockerd it started.

Output: a progress line per phase on stderr; DIR (default bench-results/DATE) holds
samples.csv, steps.csv, summary.json, tables.md and fig2..fig9 PNGs (python3-matplotlib).
--doc also writes the Markdown report (with the figures beside it).

Root only, and only this machine: the daemon listens on 127.0.0.1.
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

MECHANISMS = ["nsbox", "none", "bwrap", "crun", "runc", "docker"]
TOOLS = {"none": "setpriv", "bwrap": "bwrap", "crun": "crun", "runc": "runc", "docker": "docker"}
PACKAGES = {"bwrap": "bubblewrap", "crun": "crun", "runc": "runc", "docker": "docker.io"}
TOKEN = "nsbox-bench-token-0123456789"
FUNCTIONS = 150
TIME_FN = ("import datetime\n"
           "def handler(event, context):\n"
           "    return datetime.datetime.now(datetime.timezone.utc)"
           ".isoformat(timespec='milliseconds').replace('+00:00', 'Z')\n")
MEMINFO_KEYS = ("AnonPages", "SUnreclaim", "KernelStack", "PageTables", "Percpu", "Shmem")
RECOVERY_POINTS = 5.0  # CPU idle "recovered": back within this many points of the baseline

# The paper's own figures (shared text: Tables 1 and 2 and what section 3 states in words).
PAPER_TABLE1 = [("OpenLambda (Docker, paused containers)", 784.886, 843.121, 14.558),
                ("IronFunctions (Docker, container per request)", 732.914, 953.367, 55.113),
                ("Clofly (subprocess, no isolation)", 572.402, 583.449, 2.7617)]
PAPER_TABLE2 = [("OpenLambda", 4, 0, 24), ("IronFunctions", 26, 0, 12), ("Clofly", 30, 22, 29)]
# Figure 2 as the text states it: OpenLambda >20 req/s at 1 client, ~50 at most, falling
# past 9 clients; IronFunctions and Clofly ~3 req/s at most, failing past 7 clients.
PAPER_FIG2 = {"OpenLambda (paper)": [(1, 20), (9, 50)],
              "IronFunctions (paper)": [(1, 3), (7, 3)],
              "Clofly (paper)": [(1, 3), (7, 3)]}


def say(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---- pure logic (tests/bench_isolation_test.py) ----

def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of values; None when there are none."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, -(-len(s) * q // 100))  # ceil(len * q / 100), at least 1
    return s[int(rank) - 1]


def parse_trace(text):
    """loadgen --trace lines: (client, start_ms, latency_ms, status); status 0 = dropped."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("client"):
            continue
        c, start, lat, status = line.split()
        out.append((int(c), float(start), float(lat), int(status)))
    return out


def step_stats(requests, duration_s, response_bytes):
    """One step's client-side figures (duration: of the trace itself when it has
    requests). A request counts as served only with a 2xx status:
    timeouts, connection errors and error statuses (503 overloaded) are drops, as a JMeter
    assertion on the response code would count them."""
    n = len(requests)
    if requests:  # the trace's own span: loadgen rounds its duration to 1 ms
        span = (max(r[1] + r[2] for r in requests) - min(r[1] for r in requests)) / 1000
        duration_s = span if span > 0 else duration_s
    ok = [r for r in requests if 200 <= r[3] < 300]
    lat = [r[2] for r in ok]
    return {
        "requests": n,
        "ok": len(ok),
        "drops": n - len(ok),
        "drop_rate": (n - len(ok)) / n if n else 0.0,
        "rps": len(ok) / duration_s if duration_s > 0 else 0.0,
        "kbps": len(ok) * response_bytes / 1024 / duration_s if duration_s > 0 else 0.0,
        "avg_ms": statistics.fmean(lat) if lat else None,
        "p99_ms": percentile(lat, 99),
    }


def mem_by_key_kb(meminfo_text):
    """The MEMINFO_KEYS lines of /proc/meminfo, in kB, by key."""
    found = {}
    for line in meminfo_text.splitlines():
        key, _, rest = line.partition(":")
        if key in MEMINFO_KEYS:
            found[key] = int(rest.split()[0])
    missing = set(MEMINFO_KEYS) - set(found)
    if missing:
        raise ValueError("/proc/meminfo lacks " + ", ".join(sorted(missing)))
    return found


def mem_used_kb(meminfo_text):
    """Memory in use, kernel included: the MEMINFO_KEYS lines of /proc/meminfo, in kB."""
    return sum(mem_by_key_kb(meminfo_text).values())


def cpu_times(stat_text, cpu="cpu"):
    """(idle, total) jiffies of one /proc/stat line ("cpu" = all CPUs, "cpu0" = CPU 0)."""
    for line in stat_text.splitlines():
        f = line.split()
        if f and f[0] == cpu:
            v = [int(x) for x in f[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait, as dstat's "idl"+"wai"
            return idle, sum(v[:8])  # guest time is already in user
    raise ValueError("no %s line in /proc/stat" % cpu)


def idle_pct(prev, cur):
    d_idle, d_total = cur[0] - prev[0], cur[1] - prev[1]
    return 100.0 * d_idle / d_total if d_total > 0 else 100.0


def marginal_mb(low_kb, high_kb, functions):
    """Memory per additional function, in MB (10^6 bytes, as the paper's MB)."""
    return (high_kb - low_kb) * 1024 / 1e6 / functions


def recovery_s(samples, load_end, baseline, within=RECOVERY_POINTS):
    """Seconds after load_end until CPU idle is back within `within` points of baseline and
    stays there; samples are (t, idle%). None when it never recovered in the samples."""
    after = [(t, v) for t, v in samples if t >= load_end]
    for i, (t, _) in enumerate(after):
        if all(v >= baseline - within for _, v in after[i:]):
            return max(0.0, t - load_end)
    return None


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float):
        return "%.*f" % (digits, v)
    return str(v)


def table_md(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c, 2) if isinstance(c, float) else fmt(c) for c in r)
                     + " |")
    return "\n".join(lines) + "\n"


def csv_text(headers, rows):
    def cell(v):
        s = "" if v is None else ("%.3f" % v if isinstance(v, float) else str(v))
        return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n') else s
    return "".join(",".join(cell(c) for c in r) + "\n" for r in [headers] + list(rows))


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


# ---- the machine ----

class Sampler:
    """/proc/stat and /proc/meminfo every second, labelled with the current phase."""

    def __init__(self, cpu):
        self.cpu, self.rows, self.phase, self.mech = cpu, [], "idle", ""
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def now(self):
        return time.monotonic() - self.t0

    def _run(self):
        prev = cpu_times(open("/proc/stat").read(), self.cpu)
        while not self._stop.wait(1.0):
            cur = cpu_times(open("/proc/stat").read(), self.cpu)
            mem = mem_used_kb(open("/proc/meminfo").read())
            self.rows.append((self.mech, self.phase, round(self.now(), 3),
                              round(idle_pct(prev, cur), 2), mem))
            prev = cur

    def between(self, mech, t_from, t_to):
        return [r for r in self.rows if r[0] == mech and t_from <= r[2] <= t_to]


def http(method, url, body=None, token=None, timeout=60):
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def response_bytes(port, name):
    """Bytes of one whole HTTP response (status line, headers, body) to POST /fn/NAME."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("POST /fn/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
                   "Connection: close\r\n\r\n{}" % name).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return len(data)
            data += chunk


def pin(pid, cpus):
    """Every thread of pid onto cpus (children made later inherit it)."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


class Docker:
    """dockerd for the docker row: the running one, or one started here (and stopped)."""

    def __init__(self):
        self.proc = None

    def running(self):
        return subprocess.run(["docker", "info"], capture_output=True).returncode == 0

    def ensure(self, may_start, log_dir):
        if self.running():
            return None
        if not may_start:
            return "dockerd is not running (--install starts it)"
        if not shutil.which("dockerd"):
            return "dockerd is not installed (apt-get install docker.io)"
        say("starting dockerd (no bridge, no iptables rules, no ip_forward)")
        self.proc = subprocess.Popen(
            ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false",
             "--ip-forward=false", "--ip-masq=false"],
            stdout=open(os.path.join(log_dir, "dockerd.log"), "w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.running():
                return None
            if self.proc.poll() is not None:
                return "dockerd exited at start (see dockerd.log)"
            time.sleep(0.1)
        return "dockerd did not answer within 30 s"

    def daemon_pids(self):
        out = subprocess.run(["pgrep", "-x", "dockerd|containerd"], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self):
        if self.proc:
            # Only the containerd our dockerd started (its child): the host
            # may run one of its own, which is not ours to stop.
            ours = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-x", "containerd"],
                                  capture_output=True, text=True).stdout.split()
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            for pid in ours:
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except ProcessLookupError:
                    pass


def port_free_or_fail(port):
    """Another daemon on the port would answer /healthz for ours, which then fails to bind:
    every figure would be that daemon's. Said before starting instead."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    except OSError as e:
        raise RuntimeError("127.0.0.1:%d is taken (%s): stop what listens there or pass --port "
                           "(this bench uses a few ports from there up)" % (port, e.strerror))
    finally:
        s.close()


class Daemon:
    def __init__(self, binary, work, mech, port, cpus, layers=8, factory=None, serve_args=()):
        # factory None: the daemon's default ([pool] factory, "template").
        self.mech, self.port, self.work, self.layers = mech, port, work, layers
        self.factory = factory
        self.label = mech if layers == 8 else "layers %d" % layers
        self.tag = mech if layers == 8 else "layers%d" % layers
        if factory:
            self.label, self.tag = self.label + " " + factory, self.tag + "-" + factory
        self.url = "http://127.0.0.1:%d" % port
        self.config = os.path.join(work, "nsbox-%s.toml" % self.tag)
        self.write_config(blank=4)
        port_free_or_fail(port)
        log = open(os.path.join(work, "daemon-%s.log" % self.tag), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", self.config] + list(serve_args), stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the daemon exited at start: " + self.log_tail())
            try:
                if http("GET", self.url + "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the daemon did not answer /healthz in 120 s")

    def write_config(self, blank):
        iso = "" if self.mech == "nsbox" else (
            'isolation = "%s"\nallow_comparison_isolation = true\n' % self.mech)
        if self.layers != 8:
            iso = "layers = %d\nallow_comparison_isolation = true\n" % self.layers
        if self.factory:
            iso += 'factory = "%s"\n' % self.factory
        with open(self.config, "w") as f:
            f.write('[server]\nlisten = "127.0.0.1:%d"\nstate_dir = "%s"\ntoken = "%s"\n'
                    "max_connections = 4096\nmax_sending_per_address = 1024\n"
                    "[pool]\nblank = %d\nmax_sandboxes = 512\nidle_timeout_ms = 3600000\n%s"
                    % (self.port, os.path.join(self.work, "state"), TOKEN, blank, iso))

    def reload(self, blank):
        self.write_config(blank)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)

    def log_tail(self):
        with open(os.path.join(self.work, "daemon-%s.log" % self.tag)) as f:
            return " / ".join(f.read().strip().splitlines()[-3:])

    def deploy(self, name, source):
        st, body = http("PUT", self.url + "/functions/" + name, source.encode(), TOKEN)
        if st not in (200, 201):
            raise RuntimeError("deploy %s: %d %s" % (name, st, body[:200]))

    def invoke_ms(self, name):
        t = time.monotonic()
        st, body = http("POST", self.url + "/fn/" + name, b"{}", timeout=120)
        ms = (time.monotonic() - t) * 1000
        if st != 200:
            raise RuntimeError("invoke %s: %d %s" % (name, st, body[:200]))
        return ms

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# The 2017 evaluation's client timeout (connect and response): its clients gave up here.
CLIENT_TIMEOUT_MS = 1500


def loadgen(tool, port, clients, requests, cpus, trace, target=None,
            timeout_ms=CLIENT_TIMEOUT_MS):
    target = target or ["--prefix", "fn", "--functions", str(clients)]
    argv = [tool, "--url", "http://127.0.0.1:%d" % port, "--clients", str(clients),
            "--requests", str(requests)] + target + [
            "--connect-timeout-ms", str(timeout_ms), "--timeout-ms", str(timeout_ms),
            "--trace", trace, "--json"]
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True,
                       preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    duration = time.monotonic() - t
    if r.returncode not in (0, 1):
        raise RuntimeError("loadgen: " + r.stderr.strip()[-300:])
    js = json.loads(r.stdout)
    with open(trace) as f:
        return parse_trace(f.read()), js.get("duration_s") or duration


def deploy_all(d, names):
    say("%s: deploying %d functions" % (d.label, len(names)))
    # A deploy checks the source's syntax in a sandbox: in parallel, so that a slow
    # mechanism's sandboxes are made side by side.
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda n: d.deploy(n, TIME_FN), names))


def cold_names(a):
    return ["cold%d" % i for i in range(4 + 2 * (3 if a.quick else 10))]


def cold_starts(d, a, pause):
    """Median first-request latency of never-invoked functions: with blank sandboxes ready
    (pause: time for them to refill), then with the pool empty (no blank kept; the ones
    left are used up first)."""
    n = 3 if a.quick else 10
    ready = []
    for i in range(n):
        time.sleep(pause)
        ready.append(d.invoke_ms("cold%d" % i))
    d.reload(blank=0)
    for i in range(n, n + 4):
        d.invoke_ms("cold%d" % i)
    empty = [d.invoke_ms("cold%d" % i) for i in range(n + 4, 2 * n + 4)]
    d.reload(blank=4)
    res = {"cold_blank_ready_ms": statistics.median(ready),
           "cold_pool_empty_ms": statistics.median(empty)}
    say("%s: cold start %.1f ms with a blank ready, %.1f ms with the pool empty (medians)"
        % (d.label, res["cold_blank_ready_ms"], res["cold_pool_empty_ms"]))
    return res


def density(d, a, low_n, high_n, prefix="fn"):
    """Memory per warm function: memory in use with high_n warm minus with low_n, over the
    difference (each settled, the median of three samples)."""
    def settle_and_measure():
        time.sleep(0.5 if a.quick else 3)
        vals = []
        for _ in range(3):
            vals.append(mem_used_kb(open("/proc/meminfo").read()))
            time.sleep(1)
        return statistics.median(vals)
    for i in range(low_n):
        d.invoke_ms("%s%d" % (prefix, i))
    low = settle_and_measure()
    for i in range(low_n, high_n):
        d.invoke_ms("%s%d" % (prefix, i))
    high = settle_and_measure()
    res = {"density_low_kb": low, "density_high_kb": high,
           "marginal_density_mb": marginal_mb(low, high, high_n - low_n),
           "density_functions": [low_n, high_n]}
    say("%s: %.2f MB per warm function by density (%d -> %d warm)"
        % (d.label, res["marginal_density_mb"], low_n, high_n))
    return res


def run_mechanism(mech, a, tools, sampler, docker, port):
    """Every phase for one mechanism; returns its summary (or raises with why not)."""
    cpus_server = {0} if a.cpus == 1 else None
    cpus_load = {1} if a.cpus == 1 else None
    d = Daemon(tools["nsbox"], a.work, mech, port, cpus_server)
    res = {"mechanism": mech, "steps": []}
    try:
        if mech == "docker" and cpus_server:
            for pid in docker.daemon_pids():
                pin(pid, cpus_server)
        # --quick: as many functions as its steps and density use.
        functions = 24 if a.quick else FUNCTIONS
        deploy_all(d, ["fn%d" % i for i in range(functions)] + cold_names(a))
        sampler.mech, sampler.phase = mech, "cold"
        pause = (2.0 if mech == "docker" else 1.0) / (2 if a.quick else 1)
        res.update(cold_starts(d, a, pause))
        sampler.phase = "density"
        res.update(density(d, a, *((4, 24) if a.quick else (20, FUNCTIONS))))

        # The paper's sweep.
        nbytes = response_bytes(port, "fn0")
        res["response_bytes"] = nbytes
        steps = [1, 3, 7, 15, 23] if a.quick else list(range(1, functions, 2))
        sampler.phase = "sweep"
        trace = os.path.join(a.work, "trace.txt")
        for c in steps:
            reqs, dur = loadgen(tools["loadgen"], port, c, 30, cpus_load, trace)
            st = step_stats(reqs, dur, nbytes)
            st["clients"] = c
            res["steps"].append(st)
            print("\rbench: %s: %3d clients  %7.1f req/s  drops %5.1f %%  p99 %s ms   "
                  % (mech, c, st["rps"], 100 * st["drop_rate"], fmt(st["p99_ms"])),
                  end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

        # Light and heavy one-minute runs, each followed by an idle tail for recovery.
        run_s, tail_s = (3, 2) if a.quick else (60, 15)
        for name, clients in (("light", 3), ("heavy", 7)):
            sampler.phase = "baseline-" + name
            t_base = sampler.now()
            time.sleep(5 if not a.quick else 1)
            base = [r[3] for r in sampler.between(mech, t_base, sampler.now())]
            # Fresh functions, as the paper's runs started from a server that had not yet
            # served them: the first request of each is a cold start.
            for i in range(clients):
                d.deploy("fn%d" % i, TIME_FN + "# %s run\n" % name)
            sampler.phase = name
            t0 = sampler.now()
            while sampler.now() - t0 < run_s:
                loadgen(tools["loadgen"], port, clients, 30, cpus_load, trace)
            t_end = sampler.now()
            sampler.phase = name + "-tail"
            time.sleep(tail_s)
            rows = sampler.between(mech, t0, sampler.now())
            during = [r for r in rows if r[2] <= t_end]
            baseline = statistics.median(base) if base else 100.0
            res[name] = {
                "max_mem_kb": max(r[4] for r in during),
                "baseline_idle": baseline,
                "min_idle": min(r[3] for r in during),
                "avg_idle": statistics.fmean(r[3] for r in during),
                "recovery_s": recovery_s([(r[2], r[3]) for r in rows], t_end, baseline),
                "t0": t0, "t_end": t_end,
            }
            say("%s: %s run: max memory %.1f MB, CPU idle min %.0f %% avg %.0f %%" % (
                mech, name, res[name]["max_mem_kb"] * 1024 / 1e6, res[name]["min_idle"],
                res[name]["avg_idle"]))
        res["marginal_paper_mb"] = marginal_mb(res["light"]["max_mem_kb"],
                                               res["heavy"]["max_mem_kb"], 4)
    finally:
        sampler.phase = "stop"
        d.stop()
        # dockerd and containerd go back to every CPU: whatever they do after the
        # docker row must not land on the server's CPU during the next rows.
        if mech == "docker" and cpus_server:
            for pid in docker.daemon_pids():
                pin(pid, set(range(os.cpu_count())))
    return res


LAYER_NAMES = ["none (a spawner child as the slot's uid)", "+ mount ns, overlay, pivot_root",
               "+ PID ns", "+ network ns", "+ IPC and UTS ns", "+ user ns", "+ cgroups",
               "+ caps dropped, no_new_privs", "+ seccomp (all: nsbox)"]


def run_layer(layer, a, tools, port, factory="exec"):
    """One row of the layers table: nsbox's own sandboxes built up to `layer` by `factory`."""
    cpus_server = {0} if a.cpus == 1 else None
    cpus_load = {1} if a.cpus == 1 else None
    d = Daemon(tools["nsbox"], a.work, "nsbox", port, cpus_server, layers=layer, factory=factory)
    d.label = "layers %d (%s)" % (layer, factory)
    low_n, high_n = (4, 16) if a.quick else (20, 80)
    res = {"layer": layer, "factory": factory,
           "name": LAYER_NAMES[layer] + (", template factory" if factory == "template" else "")}
    try:
        deploy_all(d, ["warm0"] + cold_names(a) + ["dens%d" % i for i in range(high_n)])
        res.update(cold_starts(d, a, pause=0.5))
        d.invoke_ms("warm0")
        reqs, _ = loadgen(tools["loadgen"], port, 1, 300 if a.quick else 2000, cpus_load,
                          os.path.join(a.work, "trace.txt"), ["--name", "warm0"])
        lat = [r[2] for r in reqs if r[3] == 200]
        if len(lat) != len(reqs):
            raise RuntimeError("warm requests failed: %d of %d" % (len(reqs) - len(lat),
                                                                    len(reqs)))
        res["warm_p50_ms"], res["warm_p99_ms"] = percentile(lat, 50), percentile(lat, 99)
        res.update(density(d, a, low_n, high_n, prefix="dens"))
    finally:
        d.stop()
    return res


def layers_md(rows):
    base = rows[0] if rows and rows[0]["layer"] == 0 else None

    def x(r, k):
        return ratio(r[k], base[k]) if base else None
    return ("### Layers: nsbox's sandbox built one layer at a time (ratios to the first row)\n" +
            table_md(["layer", "cold, pool empty (ms)", "x", "cold, blank ready (ms)", "x",
                      "warm p50 (ms)", "x", "warm p99 (ms)", "MB per warm sandbox", "x"],
                     [(r["name"], r["cold_pool_empty_ms"], x(r, "cold_pool_empty_ms"),
                       r["cold_blank_ready_ms"], x(r, "cold_blank_ready_ms"), r["warm_p50_ms"],
                       x(r, "warm_p50_ms"), r["warm_p99_ms"], r["marginal_density_mb"],
                       x(r, "marginal_density_mb")) for r in rows]) +
            "\nEvery row but the last is made by the exec factory (clone and exec of a fresh "
            "interpreter); the last is the same sandbox cloned from the template factory, the "
            "daemon's default.\n")


def preflight(mech, a, docker):
    """Why mech cannot run here, or None."""
    if mech == "nsbox":
        return None
    tool = TOOLS[mech]
    if not shutil.which(tool) and not os.path.exists("/usr/bin/" + tool):
        return "%s is not installed (apt-get install %s, or --install)" % (
            tool, PACKAGES.get(mech, "util-linux"))
    if mech == "docker":
        return docker.ensure(a.install, a.work)
    return None


def install(mechs):
    want = [PACKAGES[m] for m in mechs if m in PACKAGES] + ["python3-matplotlib"]
    missing = [p for p in want if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
    ).stdout.find("install ok installed") < 0]
    if missing:
        say("installing " + " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env, check=False,
                       stdout=subprocess.DEVNULL)


# ---- output ----

def write_outputs(a, results, skipped, sampler):
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "samples.csv"), "w") as f:
        f.write(csv_text(["mechanism", "phase", "t_s", "cpu_idle_pct", "mem_used_kb"],
                         sampler.rows))
    step_rows = [(r["mechanism"], s["clients"], s["requests"], s["ok"], s["drops"],
                  s["drop_rate"], s["rps"], s["kbps"], s["avg_ms"], s["p99_ms"])
                 for r in results for s in r["steps"]]
    with open(os.path.join(a.out, "steps.csv"), "w") as f:
        f.write(csv_text(["mechanism", "clients", "requests", "ok", "drops", "drop_rate",
                          "rps", "kbps", "avg_ms", "p99_ms"], step_rows))
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump({"results": results, "skipped": skipped, "command": " ".join(a.argv),
                   "date": a.date}, f, indent=1)
    tables = tables_md(results, skipped)
    with open(os.path.join(a.out, "tables.md"), "w") as f:
        f.write(tables)
    figures = plot(a.out, results, sampler)
    return tables, figures


def tables_md(results, skipped):
    by = {r["mechanism"]: r for r in results}
    none = by.get("none")
    out = ["### Table 1: memory (MB) under the light (3 clients) and heavy (7 clients) runs\n",
           table_md(["platform", "light max", "heavy max", "marginal per function "
                     "((heavy - light) / 4)", "by density / x none's"],
                    [(r["mechanism"], r["light"]["max_mem_kb"] * 1024 / 1e6,
                      r["heavy"]["max_mem_kb"] * 1024 / 1e6, r["marginal_paper_mb"],
                      "%.2f (%d vs %d warm) / %sx" % (
                          r["marginal_density_mb"], r["density_functions"][1],
                          r["density_functions"][0], fmt(ratio(
                              r["marginal_density_mb"], none and none["marginal_density_mb"]),
                              2))) for r in results]
                    + [(n + " (paper, 2017)", l, h, m, "—") for n, l, h, m in PAPER_TABLE1]),
           "\n### Table 2: CPU idle under the light run (recovered = within %d points of the "
           "idle baseline)\n" % RECOVERY_POINTS,
           table_md(["platform", "duration to recover (s)", "minimum idle (%)",
                     "average idle (%)", "idle baseline (%)"],
                    [(r["mechanism"], r["light"]["recovery_s"], r["light"]["min_idle"],
                      r["light"]["avg_idle"], r["light"]["baseline_idle"]) for r in results]
                    + [(n + " (paper)", d, m, v, "—") for n, d, m, v in PAPER_TABLE2]),
           "\n### Cold start (median ms of a never-invoked function's first request)\n",
           table_md(["mechanism", "pool empty (makes a sandbox)", "x nsbox",
                     "a blank sandbox ready", "x nsbox"],
                    [(r["mechanism"], r["cold_pool_empty_ms"],
                      ratio(r["cold_pool_empty_ms"], by["nsbox"]["cold_pool_empty_ms"])
                      if "nsbox" in by else None,
                      r["cold_blank_ready_ms"],
                      ratio(r["cold_blank_ready_ms"], by["nsbox"]["cold_blank_ready_ms"])
                      if "nsbox" in by else None) for r in results]),
           "\n### The paper's load, per mechanism\n",
           table_md(["mechanism", "steps", "steps with drops", "max drop rate (%)",
                     "max p99 (ms)", "peak req/s", "response bytes"],
                    [(r["mechanism"], len(r["steps"]),
                      sum(1 for s in r["steps"] if s["drops"]),
                      100 * max(s["drop_rate"] for s in r["steps"]),
                      max((s["p99_ms"] or 0) for s in r["steps"]),
                      max(s["rps"] for s in r["steps"]), r["response_bytes"])
                     for r in results])]
    if skipped:
        out.append("\n### Mechanisms that did not run\n")
        out.append(table_md(["mechanism", "why"], sorted(skipped.items())))
    return "".join(out)


def plot(out_dir, results, sampler):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("no figures: python3-matplotlib is not installed (apt-get install "
            "python3-matplotlib, or --install)")
        return []
    made = []

    def figure(num, title, ylabel, series, xlabel="concurrent clients", paper=None, log=False):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        if log:  # the paper's platforms served tens of requests per second, ours thousands
            ax.set_yscale("log")
        for label, xs, ys in series:
            ax.plot(xs, ys, marker="." if len(xs) < 40 else None, label=label)
        for label, pts in (paper or {}).items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="--", marker="x",
                    label=label)
        ax.set_title("Figure %d: %s" % (num, title))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = "fig%d.png" % num
        fig.savefig(os.path.join(out_dir, name), dpi=90)
        plt.close(fig)
        made.append((name, title))

    def steps(key, scale=1.0):
        return [(r["mechanism"], [s["clients"] for s in r["steps"]],
                 [(s[key] or 0) * scale for s in r["steps"]]) for r in results]
    figure(2, "Throughput (requests/second)", "req/s", steps("rps"), paper=PAPER_FIG2,
           log=True)
    figure(3, "Throughput (KB/second)", "KB/s", steps("kbps"))
    figure(4, "Drop rate", "dropped (%)", steps("drop_rate", 100))
    figure(5, "Average latency", "ms", steps("avg_ms"))

    def over_time(run, col):
        series = []
        for r in results:
            t0 = r[run]["t0"]
            rows = [x for x in sampler.rows if x[0] == r["mechanism"]
                    and x[1] in (run, run + "-tail")]
            series.append((r["mechanism"], [x[2] - t0 for x in rows],
                           [x[col] if col == 3 else x[col] * 1024 / 1e6 for x in rows]))
        return series
    figure(6, "Server CPU idle %, light load", "idle (%)", over_time("light", 3),
           xlabel="seconds since the run started")
    figure(7, "Server memory in use, light load", "MB", over_time("light", 4),
           xlabel="seconds since the run started")
    figure(8, "Server CPU idle %, heavy load", "idle (%)", over_time("heavy", 3),
           xlabel="seconds since the run started")
    figure(9, "Server memory in use, heavy load", "MB", over_time("heavy", 4),
           xlabel="seconds since the run started")
    return made


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024
    cg = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else (
        "v1 with a v2 unified mount" if os.path.exists("/sys/fs/cgroup/unified") else "v1")
    return "%s, %d CPUs (%s), %d MiB RAM, kernel %s, cgroup %s" % (
        platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
        if hasattr(platform, "freedesktop_os_release") else "Linux",
        os.cpu_count(), cpu, mem, platform.release(), cg)


def load_paper(out_dir):
    """An earlier paper run's results, skipped rows and samples, from its results directory."""
    with open(os.path.join(out_dir, "summary.json")) as f:
        summary = json.load(f)
    rows = []
    with open(os.path.join(out_dir, "samples.csv")) as f:
        for line in f.read().splitlines()[1:]:
            m, phase, t, idle, mem = line.split(",")
            rows.append((m, phase, float(t), float(idle), int(mem)))
    return summary["results"], summary["skipped"], rows, "`%s` (%s)" % (
        summary.get("command", "?"), summary.get("date", "?"))


def write_doc(a, results, skipped, tables, figures, layer_rows):
    by = {r["mechanism"]: r for r in results}
    fig_dir = os.path.splitext(a.doc)[0]
    os.makedirs(fig_dir, exist_ok=True)
    for name, _ in figures:
        shutil.copy(os.path.join(a.out, name), os.path.join(fig_dir, name))
    rel = os.path.basename(fig_dir)
    lines = ["# What isolation costs: nsbox against none, bubblewrap, crun, runc and Docker\n",
             "Generated by `nsbox bench` (tools/bench_isolation.py); do not edit by hand.\n",
             "- machine: " + machine(),
             "- command: `" + " ".join(a.argv) + "`, " + a.date,
             ] + (["- the paper protocol's tables and figures: " + a.paper_command]
                  if getattr(a, "paper_command", None) else []) + [
             "- %s run%s" % ("a --quick" if a.quick else "the full", " (daemon pinned to CPU 0, "
                                                                     "load on CPU 1)" if a.cpus == 1 else ""),
             "",
             "Every mechanism is the same `nsbox serve` with only `[pool] isolation` changed: the "
             "same runner on the same rootfs over the same pipes (docker: FIFOs). Memory in use "
             "is AnonPages + SUnreclaim + KernelStack + PageTables + Percpu + Shmem. The paper's "
             "rows are its published Tables 1 and 2 (1 vCPU, 3.75 GB, 2017); ours share only the "
             "protocol.\n",
             tables, "\n## Reading\n"]
    none = by.get("none")
    for m in ("nsbox", "bwrap", "crun", "runc", "docker"):
        r = by.get(m)
        if not r or not none:
            continue
        lines.append("- **%s**: %.2f MB per warm function by density (%s x none's %.2f MB); "
                     "cold start with the pool empty %.1f ms (%s x none's); CPU idle in the "
                     "light run %.0f %% on average against none's %.0f %%; worst p99 over the "
                     "sweep %s ms." % (
                         m, r["marginal_density_mb"],
                         fmt(ratio(r["marginal_density_mb"], none["marginal_density_mb"]), 2),
                         none["marginal_density_mb"], r["cold_pool_empty_ms"],
                         fmt(ratio(r["cold_pool_empty_ms"], none["cold_pool_empty_ms"]), 1),
                         r["light"]["avg_idle"], none["light"]["avg_idle"],
                         fmt(max((s["p99_ms"] or 0) for s in r["steps"]))))
    built = [r for r in layer_rows if r.get("factory", "exec") == "exec"]
    if built and built[0]["layer"] == 0:
        base, top = built[0], built[-1]
        steps = sorted(((r["cold_pool_empty_ms"] - p["cold_pool_empty_ms"], r["name"])
                        for p, r in zip(built, built[1:])), reverse=True)
        lines.append("- **Layers**: all of nsbox's isolation costs %s x the bare spawner child's "
                     "cold start and %s x its memory per warm sandbox; the dearest layers for "
                     "cold start: %s." % (
                         fmt(ratio(top["cold_pool_empty_ms"], base["cold_pool_empty_ms"]), 2),
                         fmt(ratio(top["marginal_density_mb"], base["marginal_density_mb"]), 2),
                         ", ".join("%s (%+.1f ms)" % (n, d) for d, n in steps[:3])))
    tmpl = [r for r in layer_rows if r.get("factory") == "template"]
    whole = [r for r in built if r["layer"] == 8]
    if tmpl and whole:
        t, e = tmpl[0], whole[0]
        lines.append("- **Template factory**: the whole sandbox cloned from a template costs %s x "
                     "the exec factory's cold start with the pool empty (%s against %s ms) and "
                     "%s x its memory per warm sandbox (%s against %s MB)." % (
                         fmt(ratio(t["cold_pool_empty_ms"], e["cold_pool_empty_ms"]), 2),
                         fmt(t["cold_pool_empty_ms"]), fmt(e["cold_pool_empty_ms"]),
                         fmt(ratio(t["marginal_density_mb"], e["marginal_density_mb"]), 2),
                         fmt(t["marginal_density_mb"], 2), fmt(e["marginal_density_mb"], 2)))
    lines.append("- The paper measured Docker-isolated OpenLambda at 14.56 MB per function against "
                 "Clofly's 2.76 MB unisolated: 5.3x.")
    if figures:
        lines.append("\n## Figures\n")
        for name, title in figures:
            lines.append("![%s](%s/%s)\n" % (title, rel, name))
    with open(a.doc, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    if argv and argv[0] == "template":
        # The template factory against the exec factory (tools/bench_template.py, installed
        # beside this file as nsbox-bench-template).
        here = os.path.dirname(os.path.abspath(__file__))
        script = next(p for p in (os.path.join(here, "nsbox-bench-template"),
                                  os.path.join(here, "bench_template.py")) if os.path.exists(p))
        os.execv(sys.executable, [sys.executable, script] + argv[1:])
    p = argparse.ArgumentParser(prog="nsbox bench", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("what", choices=["paper", "layers", "all"],
                   help="paper: the 2017 protocol per mechanism; layers: nsbox's sandbox one "
                   "layer at a time; all: both")
    p.add_argument("--mechanisms", default=",".join(MECHANISMS))
    p.add_argument("--quick", action="store_true", help="a few steps, short runs (<= 3 min)")
    p.add_argument("--cpus", type=int, choices=[1], help="pin the server to CPU 0, load to CPU 1")
    p.add_argument("--install", action="store_true", help="apt-get install what is missing, "
                   "start dockerd")
    p.add_argument("--out", help="results directory (default bench-results/DATE)")
    p.add_argument("--doc", help="also write this Markdown report, figures beside it")
    p.add_argument("--build", help="directory with nsbox and loadgen (default: this script's)")
    p.add_argument("--layers", default="0-8", help="layers to measure: 0-8, or a list (0,7,8)")
    p.add_argument("--paper-results", help="layers: report beside this earlier paper run's "
                   "results directory (its summary.json and samples.csv)")
    p.add_argument("--port", type=int, default=18480)
    a = p.parse_args(argv)
    a.argv = ["nsbox", "bench"] + argv
    a.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if os.geteuid() != 0:
        p.error("runs daemons as root: sudo nsbox bench ...")
    mechs = [m for m in a.mechanisms.split(",") if m]
    bad = [m for m in mechs if m not in MECHANISMS]
    if bad or not mechs:
        p.error("unknown mechanism %s (known: %s)" % (",".join(bad), ", ".join(MECHANISMS)))
    try:
        layer_list = (list(range(9)) if a.layers == "0-8"
                      else sorted({int(x) for x in a.layers.split(",")}))
    except ValueError:
        p.error("--layers wants 0-8 or a list of numbers, e.g. 0,7,8")
    if not layer_list or not all(0 <= x <= 8 for x in layer_list):
        p.error("--layers: each layer is 0..8")
    if a.cpus == 1 and os.cpu_count() < 2:
        p.error("--cpus 1 needs two CPUs: one for the server, one for the load")
    build = a.build or os.path.dirname(os.path.abspath(__file__))
    tools = {"nsbox": os.path.join(build, "nsbox"), "loadgen": os.path.join(build, "loadgen")}
    for k, v in tools.items():
        if not os.access(v, os.X_OK):
            p.error("%s not found at %s (build first, or --build DIR)" % (k, v))
    a.out = a.out or os.path.join("bench-results",
                                  datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(a.out, exist_ok=True)
    a.work = tempfile.mkdtemp(prefix="nsbox-bench-", dir="/var/tmp")
    os.chmod(a.work, 0o711)
    if a.install:
        install(mechs)
    docker = Docker()
    sampler = Sampler("cpu0" if a.cpus == 1 else "cpu")
    sampler.start()
    results, skipped, layer_rows = [], {}, []
    t_start = time.monotonic()
    try:
        for i, m in enumerate(mechs if a.what in ("paper", "all") else []):
            why = preflight(m, a, docker)
            if why:
                say("%s: NOT RUN: %s" % (m, why))
                skipped[m] = why
                continue
            try:
                results.append(run_mechanism(m, a, tools, sampler, docker, a.port + i))
            except (RuntimeError, OSError, ValueError) as e:
                say("%s: FAILED: %s" % (m, e))
                skipped[m] = "failed: %s" % e
        # The exec factory builds every layer; the template factory makes only whole
        # sandboxes, its row last.
        runs = [(x, "exec") for x in layer_list] + [(8, "template")] * (8 in layer_list)
        for i, (layer, factory) in enumerate(runs if a.what in ("layers", "all") else []):
            try:
                layer_rows.append(run_layer(layer, a, tools, a.port + 10 + i, factory))
            except (RuntimeError, OSError, ValueError) as e:
                say("layers %d (%s): FAILED: %s" % (layer, factory, e))
                skipped["layers %d %s" % (layer, factory)] = "failed: %s" % e
    finally:
        sampler.stop()
        docker.stop()
    if a.paper_results and not results:
        # The report of a layers run next to an earlier paper run (its summary and samples).
        results, skipped_before, rows, a.paper_command = load_paper(a.paper_results)
        skipped.update(skipped_before)
        sampler.rows = rows
    tables, figures = write_outputs(a, results, skipped, sampler) if results else ("", [])
    if layer_rows:
        with open(os.path.join(a.out, "layers.json"), "w") as f:
            json.dump(layer_rows, f, indent=1)
        lt = layers_md(layer_rows)
        with open(os.path.join(a.out, "layers.csv"), "w") as f:
            keys = ["layer", "factory", "name", "cold_pool_empty_ms", "cold_blank_ready_ms", "warm_p50_ms",
                    "warm_p99_ms", "marginal_density_mb"]
            f.write(csv_text(keys, [[r[k] for k in keys] for r in layer_rows]))
        tables = (tables + "\n" if tables else "") + lt
        if not results and skipped:
            tables += "\n" + table_md(["row", "why"], sorted(skipped.items()))
        with open(os.path.join(a.out, "tables.md"), "w") as f:
            f.write(tables)
    if a.doc:
        write_doc(a, results, skipped, tables, figures, layer_rows)
    shutil.rmtree(a.work, ignore_errors=True)
    print(tables)
    say("done in %.0f s; results in %s%s" % (time.monotonic() - t_start, a.out,
                                              ", report " + a.doc if a.doc else ""))
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
