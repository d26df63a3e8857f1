#!/usr/bin/python3
"""nsbox bench template: the template factory against the exec factory, in one run.

    nsbox bench template [--sandboxes 1000] [--docker 100] [--cold 50] [--burst 300]
                         [--density 200,2000] [--split N] [--spawners N]
                         [--phases creation,cold,burst,ftemplate,density] [--quick] [--out DIR]

Each factory gets its own daemon (`[pool] factory = "template"` or `"exec"`, nothing else
changed), measured phase by phase, the two interleaved so a noisy machine slows both alike:

  creation  blank sandboxes made per second: the pool is told (SIGHUP) to keep --sandboxes
            blanks and the time until /metrics counts them all is taken; memory in use with
            them, over none, gives MB per ready (blank) sandbox; the machine's CPU time
            and page faults meanwhile, over the count, what each costs; then the time the daemon
            takes to stop (SIGTERM until it exits) with them all. The same for --docker
            blanks of a third daemon in the Docker comparison mode (a container per sandbox,
            the same runner on the same rootfs; gateway/isolation.hpp): the baseline for
            ready-sandbox memory. dockerd is started (no bridge, no iptables rules) and
            stopped again when none runs; its own memory, there before, is not counted.
            With --split N, --sandboxes blanks are also made by N template-factory daemons
            of one spawner each at once, alternating with one such daemon, twice: whether
            the spawner, which makes one sandbox at a time, or the machine bounds the rate.
            --spawners N runs every daemon with `nsbox serve --spawners N` (default: the
            daemon's own, one per CPU, at most four).
  cold      first request of a never-invoked function with no blank sandbox (blank = 0):
            median and p99 of --cold functions called one after another, and of --cold
            more, each called after 200 ms of idle time (what a request after a pause
            meets: some kernel locks make their first taker after a quiet spell wait),
            each after a warm request after as long (the control: the wake-ups of the
            request's path alone).
  burst     --burst never-invoked functions called at once by as many clients (loadgen):
            errors, median and p99, and how many took over 1.5 s (the paper's client
            timeout; here the clients wait up to 60 s, so an error is a failed request).
  density   MB per warm function: memory in use with the high count of warm functions minus
            with the low count, over the difference; and the same for bare idle
            `python3 -I -S` processes (the unisolated baseline) in the same run. A function
            that fails past the low count ends the climb: the figure is over the ones reached,
            the failure (the host limit met) is reported, and every warm function is then
            asked once more (how many answered). --density 200,10000 --phases density tries
            10,000.
  function template
            a function whose import takes 200 ms, deployed with and without template=1 in a
            third daemon (template factory, idle sandboxes expire after 100 ms): --cold
            cold starts of each, interleaved, each after its last sandbox expired. With the
            template a cold start is a fork of the template (the first request, which makes
            it, is reported apart); without, a blank loads the function.

Before the phases, the cost of one copy-on-write page fault on this host is measured and
printed: a cloned sandbox's start-up is mostly page faults and kernel entries, which a
paravirtualized guest pays many times what bare metal does.

Memory in use is AnonPages + SUnreclaim + KernelStack + PageTables + Percpu + Shmem from
/proc/meminfo (bench_isolation.py). Results: DIR/template.json and a Markdown table on stdout.
Root only; the daemons listen on 127.0.0.1.
"""
import argparse
import datetime
import importlib.machinery
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The shared helpers (Daemon, http, loadgen, percentiles, memory in use) live in the main
# bench, installed beside this file as nsbox-bench (tools/bench_isolation.py in the tree).
_lib_path = next(p for p in (os.path.join(HERE, "nsbox-bench"),
                             os.path.join(HERE, "bench_isolation.py")) if os.path.exists(p))
lib = importlib.machinery.SourceFileLoader("nsbox_bench", _lib_path).load_module()

FACTORIES = ["template", "exec"]


class FactoryDaemon(lib.Daemon):
    """lib.Daemon with [pool] factory and room for thousands of sandboxes."""

    # `nsbox serve --spawners N` for every daemon of this run (main: --spawners); None: the
    # daemon's default, one per CPU (at most four).
    spawners = None

    def __init__(self, binary, work, factory, port, capacity, idle_ms=3600000, name=None,
                 spawners=None):
        # Starts with no blank sandbox (lib.Daemon asks for 4): the pool never trims blanks
        # it has, and the cold phase needs none.
        self.factory, self.capacity, self.start_blank = factory, capacity, 0
        self.idle_ms, self.name = idle_ms, name or factory
        # "docker": the comparison mode (gateway/isolation.hpp), the same runner and rootfs in
        # a container per sandbox; the factory setting is then unused.
        self.pool_extra = ('isolation = "docker"\nallow_comparison_isolation = true\n'
                           if factory == "docker" else 'factory = "%s"\n' % factory)
        n = spawners or FactoryDaemon.spawners
        super().__init__(binary, work, "nsbox", port, None,
                         serve_args=["--spawners", str(n)] if n else [])
        self.label = self.tag = self.name
        self.start_blank = None

    def write_config(self, blank):
        blank = blank if self.start_blank is None else self.start_blank
        self.config = os.path.join(self.work, "nsbox-%s.toml" % self.name)
        with open(self.config, "w") as f:
            f.write('[server]\nlisten = "127.0.0.1:%d"\nstate_dir = "%s"\ntoken = "%s"\n'
                    "max_connections = 1024\nmax_sending_per_address = 4096\n"
                    "[pool]\nblank = %d\nmax_sandboxes = %d\nmemory_budget_mb = %d\n"
                    "idle_timeout_ms = %d\nqueue_total = 100000\n%s"
                    % (self.port, os.path.join(self.work, "state-" + self.name), lib.TOKEN,
                       blank, self.capacity + 64, 1 << 22, self.idle_ms, self.pool_extra))

    def metric(self, key):
        st, body = lib.http("GET", self.url + "/metrics", token=lib.TOKEN)
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return -1


def mem_keys_now():
    """Memory in use by /proc/meminfo key (kB), each the median of three readings."""
    samples = []
    for _ in range(3):
        samples.append(lib.mem_by_key_kb(open("/proc/meminfo").read()))
        time.sleep(0.5)
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def mem_now():
    return sum(mem_keys_now().values())


def memcg_parent():
    """Where nsbox makes its cgroup leaves, with the memory controller: the v1 memory
    hierarchy's nsbox/, or a v2 mount's nsbox/ that enables memory for its children."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ")
            fstype, opts, mnt = right.split()[0], right.split()[2], left.split()[4]
            parent = os.path.join(mnt, "nsbox")
            if fstype == "cgroup" and "memory" in opts.split(",") and os.path.isdir(parent):
                return parent
            if fstype == "cgroup2":
                try:
                    with open(os.path.join(parent, "cgroup.subtree_control")) as sc:
                        if "memory" in sc.read().split():
                            return parent
                except OSError:
                    pass
    return None


def memcg_cost_kb(n=100):
    """Kernel memory one new memory cgroup costs on this host now (SUnreclaim + Percpu over n
    empty ones, made and removed). Every sandbox has one, and the kernel sizes each one's
    shrinker map by the most superblocks it has held at once since boot (architecture.md
    section 4), so this grows with the number of sandboxes and stays after them."""
    parent = memcg_parent()
    if not parent:
        return None
    keys = ("SUnreclaim", "Percpu")
    # Named <word>-<pid>-..., so a stale-leaf sweep removes them if this bench dies.
    dirs = [os.path.join(parent, "memcgprobe-%d-%d" % (os.getpid(), i)) for i in range(n)]
    before = mem_keys_now()
    try:
        for d in dirs:
            os.mkdir(d)
        after = mem_keys_now()
    except OSError as e:
        lib.say("memory cgroup cost: not measured: %s" % e)
        return None
    finally:
        for d in dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass
    return sum(after[k] - before[k] for k in keys) / n


def cpu_and_faults():
    """(user, system) CPU of the whole machine in ms, and its page faults so far."""
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    with open("/proc/vmstat") as f:
        faults = next(int(l.split()[1]) for l in f if l.startswith("pgfault "))
    # user + nice; system + irq + softirq
    return (v[0] + v[1]) * tick, (v[2] + v[5] + v[6]) * tick, faults


def cgroup_favordynmods(mountinfo="/proc/self/mountinfo"):
    """Whether every cgroup mount carries favordynmods (kernel >= 6.0): without it, a move
    into a cgroup by pid waits an RCU grace period when it follows a quiet spell. nsbox's
    sandboxes enter their leaves without such a move; a function template's instance is
    still moved so (docs/architecture.md, "Entering the leaf"). None: no cgroup mount."""
    opts = []
    for line in open(mountinfo):
        pre, _, post = line.partition(" - ")
        fields = post.split()
        if len(fields) >= 3 and fields[0] in ("cgroup", "cgroup2"):
            opts.append(set(pre.split()[5].split(",")) | set(fields[2].split(",")))
    return all("favordynmods" in o for o in opts) if opts else None


def idle_vcpus_halt(sysfs="/sys"):
    """Whether an idle CPU here halts at once under the guest haltpoll cpuidle driver
    (guest_halt_poll_ns 0): on a paravirtualized host every wake-up of a process on an idle
    vCPU then goes through the hypervisor, which a request after a pause meets at each hop
    between processes. None: another cpuidle driver, or none."""
    try:
        with open(os.path.join(sysfs, "devices/system/cpu/cpuidle/current_driver")) as f:
            if f.read().strip() != "haltpoll":
                return None
        with open(os.path.join(sysfs, "module/haltpoll/parameters/guest_halt_poll_ns")) as f:
            return int(f.read().strip()) == 0
    except (OSError, ValueError):
        return None


def cow_fault_us(pages=2000):
    """What one copy-on-write fault costs on this host (µs): a child writes one byte to each
    of `pages` pages it shares with its parent. Paravirtualized guests pay far more per fault
    than bare metal, and a clone's start-up is mostly faults, so the creation figures depend
    on it."""
    import mmap
    m = mmap.mmap(-1, pages * 4096)
    for i in range(pages):
        m[i * 4096] = 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            t = time.perf_counter()
            for i in range(pages):
                m[i * 4096] = 2
            os.write(w, str((time.perf_counter() - t) * 1e6 / pages).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    return float(got)


def make_blanks(ds, n):
    """Tells the daemons at once (SIGHUP) to keep n blanks between them and waits for them:
    (seconds, user ms, system ms, page faults) of the whole machine meanwhile, so this
    bench's own polling is in it too (small: a /metrics request every 50 ms)."""
    shares = [n // len(ds) + (1 if i < n % len(ds) else 0) for i in range(len(ds))]
    t = time.monotonic()
    cpu0 = cpu_and_faults()
    for d, k in zip(ds, shares):
        d.write_config(k)
        d.proc.send_signal(signal.SIGHUP)
    key = 'nsbox_pool_sandboxes{state="blank"}'
    while any(d.metric(key) < k for d, k in zip(ds, shares)):
        if time.monotonic() - t > 600:
            raise RuntimeError("%d blanks not made in 600 s (%s)"
                               % (n, [d.metric(key) for d in ds]))
        time.sleep(0.05)
    secs = time.monotonic() - t
    return (secs,) + tuple(b - a for a, b in zip(cpu0, cpu_and_faults()))


def creation(d, n):
    time.sleep(2)
    base = mem_now()
    secs, user, system, faults = make_blanks([d], n)
    time.sleep(2)
    full = mem_now()
    # Then the daemon stops with them all: each runner, told by EOF, must go without
    # freeing its interpreter, which would copy the template's heap (runner.py's run()).
    t = time.monotonic()
    d.stop()
    stop = time.monotonic() - t
    res = {"sandboxes": n, "seconds": secs, "per_second": n / secs,
           "blank_mb": (full - base) / 1024 / n, "stop_seconds": stop,
           "cpu_ms": (user + system) / n, "user_ms": user / n, "system_ms": system / n,
           "faults": faults / n}
    lib.say("%s: %d blanks in %.2f s: %.0f per second; %.2f MB per blank; stopped in %.2f s; "
            "per blank %.1f ms of CPU (user %.1f, system %.1f) and %.0f page faults"
            % (d.label, n, secs, res["per_second"], res["blank_mb"], stop, res["cpu_ms"],
               res["user_ms"], res["system_ms"], res["faults"]))
    return res


def creation_split(binary, work, port, n, k):
    """n blanks made by k template-factory daemons at once, k spawners and k templates: whether
    the spawner, which makes one sandbox at a time, or the machine bounds the rate."""
    ds = []
    try:
        for i in range(k):
            # One spawner each: the daemons stand for the spawners of one daemon.
            ds.append(FactoryDaemon(binary, work, "template", port + i, n, name="split%d" % i,
                                    spawners=1))
        time.sleep(2)
        secs, user, system, faults = make_blanks(ds, n)
    finally:
        for d in ds:
            d.stop()
    res = {"daemons": k, "sandboxes": n, "seconds": secs, "per_second": n / secs,
           "cpu_ms": (user + system) / n, "faults": faults / n}
    lib.say("%d template daemons at once: %d blanks in %.2f s: %.0f per second; per blank %.1f "
            "ms of CPU and %.0f page faults" % (k, n, secs, res["per_second"], res["cpu_ms"],
                                                res["faults"]))
    return res


def docker_creation(binary, work, port, n):
    """Ready-sandbox memory of Docker's containers: creation() in the Docker comparison mode."""
    docker = lib.Docker()
    why = docker.ensure(True, work)
    if why:
        lib.say("docker: not measured: " + why)
        return {"skipped": why}
    try:
        d = FactoryDaemon(binary, work, "docker", port, n)
        try:
            return creation(d, n)
        finally:
            d.stop()
    finally:
        docker.stop()


# A cold start that follows a quiet spell: what a request after idle time meets. The
# kernel serialises some of a sandbox's set-up on machine-wide locks whose first taker
# after a pause waits out an RCU grace period (moving a process into a cgroup by pid,
# docs/architecture.md "Entering the leaf"), which back-to-back cold starts never show.
# A warm request after the same pause, interleaved with them, is the control: what
# waking the client, the daemon and a sandbox costs on this host with no sandbox made
# (on a paravirtualized guest whose idle vCPUs halt, each cross-CPU wake-up pays).
PAUSE_S = 0.2


def cold(d, names, paused):
    lat = sorted(d.invoke_ms(n) for n in names)
    warm_b2b = [d.invoke_ms(names[0]) for _ in names]
    warm, after_pause = [], []
    for n in paused:
        time.sleep(PAUSE_S)
        warm.append(d.invoke_ms(names[0]))  # made by the first cold start above
        time.sleep(PAUSE_S)
        after_pause.append(d.invoke_ms(n))
    after_pause.sort()
    res = {"n": len(lat), "median_ms": statistics.median(lat), "p99_ms": lib.percentile(lat, 99),
           "max_ms": lat[-1], "paused_median_ms": statistics.median(after_pause),
           "paused_p99_ms": lib.percentile(after_pause, 99),
           "warm_median_ms": statistics.median(warm_b2b),
           "paused_warm_median_ms": statistics.median(warm)}
    lib.say("%s: cold start median %.1f ms, p99 %.1f ms (%d functions, no blank); each after "
            "%d ms idle: median %.1f ms, p99 %.1f ms; a warm request: median %.1f ms back to "
            "back, %.1f ms after as long"
            % (d.label, res["median_ms"], res["p99_ms"], len(lat), PAUSE_S * 1000,
               res["paused_median_ms"], res["paused_p99_ms"], res["warm_median_ms"],
               res["paused_warm_median_ms"]))
    return res


# The paper bench's client timeout: here a request slower than it is counted, not cut off,
# so that an error is a request the daemon failed and the p99 is every request's.
SLOW_MS = lib.CLIENT_TIMEOUT_MS


def burst(d, loadgen, n, work):
    reqs, dur = lib.loadgen(loadgen, d.port, n, 1, None, os.path.join(work, "burst.txt"),
                            ["--prefix", "burst", "--functions", str(n)], timeout_ms=60000)
    ok = [r[2] for r in reqs if r[3] == 200]
    res = {"clients": n, "requests": len(reqs), "errors": len(reqs) - len(ok),
           "p99_ms": lib.percentile(ok, 99) if ok else None,
           "median_ms": statistics.median(ok) if ok else None,
           "over_slow_ms": sum(1 for ms in ok if ms > SLOW_MS)}
    lib.say("%s: burst of %d new functions: %d errors, median %s ms, p99 %s ms, %d over %d ms"
            % (d.label, n, res["errors"], lib.fmt(res["median_ms"]), lib.fmt(res["p99_ms"]),
               res["over_slow_ms"], SLOW_MS))
    return res


def density(d, low, high):
    """Warm functions low, then up to high: the figure is over the ones reached. A failure
    past low ends the climb (the limit met is reported); then every warm one is asked again."""
    for i in range(low):
        d.invoke_ms("dens%d" % i)
    time.sleep(2)
    k_low = mem_keys_now()
    m_low = sum(k_low.values())
    reached, stopped_by = low, None
    # The daemon lowers max_sandboxes to what the host allows (open files, pid_max): past
    # that cap a new function evicts an old one, and the count of warm ones stops growing.
    cap = int(d.metric("nsbox_pool_max_sandboxes"))
    if 0 < cap < high:
        lib.say("%s: the daemon holds at most %d sandboxes on this host (its log says why)"
                % (d.label, cap))
    for i in range(low, high):
        if 0 < cap <= i:
            stopped_by = ("the daemon's max_sandboxes, lowered to %d to fit the host's limits "
                          "(its log names the one)" % cap)
            lib.say("%s: stopped at %d warm functions: %s" % (d.label, reached, stopped_by))
            break
        try:
            d.invoke_ms("dens%d" % i)
        except RuntimeError as e:
            stopped_by = str(e)[:300]
            lib.say("%s: stopped at %d warm functions: %s" % (d.label, reached, stopped_by))
            break
        reached = i + 1
        if reached % 1000 == 0:
            lib.say("%s: %d warm functions, %.0f MB in use"
                    % (d.label, reached, lib.mem_used_kb(open("/proc/meminfo").read()) / 1024))
    time.sleep(2)
    k_high = mem_keys_now()
    m_high = sum(k_high.values())
    failed = 0
    for i in range(reached):
        try:
            d.invoke_ms("dens%d" % i)
        except RuntimeError:
            failed += 1
    res = {"low": low, "high": high, "reached": reached, "stopped_by": stopped_by,
           "answered_after": reached - failed, "mem_in_use_mb": m_high / 1024,
           "mb": lib.marginal_mb(m_low, m_high, reached - low) if reached > low else None,
           # Where it goes: kB per warm function by /proc/meminfo key.
           "by_key_kb": ({k: (k_high[k] - k_low[k]) / (reached - low) for k in k_high}
                         if reached > low else None)}
    lib.say("%s: %s MB per warm function (%d -> %d warm; %d of them answered again); %.0f MB in "
            "use" % (d.label, lib.fmt(res["mb"]), low, reached, reached - failed,
                     res["mem_in_use_mb"]))
    if res["by_key_kb"]:
        lib.say("%s: per warm function, kB: %s" % (d.label, ", ".join(
            "%s %.0f" % (k, v) for k, v in res["by_key_kb"].items())))
    return res


SLOW_IMPORT = """\
import time
time.sleep(0.2)  # an import that takes 200 ms (numpy, pandas, a model...)


def handler(event, context):
    return 1
"""


def function_template(binary, work, port, n):
    d = FactoryDaemon(binary, work, "template", port, 64, idle_ms=100, name="ftemplate")
    try:
        d.reload(blank=4)
        for name, query in (("imp_t", "?template=1"), ("imp_p", "")):
            st, body = lib.http("PUT", d.url + "/functions/" + name + query,
                                SLOW_IMPORT.encode(), lib.TOKEN)
            if st != 201:
                raise RuntimeError("deploy %s: %d %s" % (name, st, body[:200]))
        first = d.invoke_ms("imp_t")  # makes the template: import + fork
        lat = {"imp_t": [], "imp_p": []}
        for _ in range(n):
            for name in lat:
                time.sleep(0.5)  # its sandbox expires (100 ms) and is destroyed
                lat[name].append(d.invoke_ms(name))
        templates = d.metric("nsbox_pool_function_templates")
    finally:
        d.stop()
    res = {"first_ms": first, "templates": templates}
    for name, key in (("imp_t", "template"), ("imp_p", "plain")):
        v = sorted(lat[name])
        res[key] = {"n": len(v), "median_ms": statistics.median(v),
                    "p99_ms": lib.percentile(v, 99)}
    lib.say("function template: 200 ms import, cold start median %.1f ms (p99 %.1f) with it, "
            "%.1f ms (p99 %.1f) without; the first request, which made it, %.1f ms"
            % (res["template"]["median_ms"], res["template"]["p99_ms"],
               res["plain"]["median_ms"], res["plain"]["p99_ms"], first))
    return res


def bare_python(low, high):
    """Idle `python3 -I -S` processes, each blocked reading its stdin: the same count sums."""
    procs = []

    def grow(to):
        while len(procs) < to:
            procs.append(subprocess.Popen(["/usr/bin/python3", "-I", "-S", "-c",
                                           "import sys; sys.stdin.read()"],
                                          stdin=subprocess.PIPE))
    try:
        grow(low)
        time.sleep(2)
        m_low = mem_now()
        grow(high)
        time.sleep(2)
        m_high = mem_now()
    finally:
        for p in procs:
            p.stdin.close()
        for p in procs:
            p.wait()
    res = {"low": low, "high": high, "mb": lib.marginal_mb(m_low, m_high, high - low)}
    lib.say("bare python3 -I -S: %.2f MB per idle process (%d -> %d)" % (res["mb"], low, high))
    return res


def main(argv):
    p = argparse.ArgumentParser(prog="nsbox bench template", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--sandboxes", type=int, default=1000)
    p.add_argument("--docker", type=int, default=100,
                   help="Docker blanks for the ready-sandbox baseline (0: none)")
    p.add_argument("--cold", type=int, default=50)
    p.add_argument("--burst", type=int, default=300)
    p.add_argument("--density", default="200,2000")
    p.add_argument("--quick", action="store_true", help="small counts (a minute or two)")
    p.add_argument("--out", help="results directory (default bench-results/DATE-template)")
    p.add_argument("--build", help="directory with nsbox and loadgen (default: this script's)")
    p.add_argument("--port", type=int, default=18580)
    p.add_argument("--phases", default="creation,cold,burst,ftemplate,density",
                   help="which phases to run (comma-separated)")
    p.add_argument("--factories", default="template,exec",
                   help="which factories to measure (comma-separated)")
    p.add_argument("--spawners", type=int, default=0,
                   help="nsbox serve --spawners for every daemon (0: its default, one per CPU)")
    p.add_argument("--split", type=int, default=0,
                   help="creation: also make --sandboxes blanks with this many template "
                        "daemons at once, alternating with one daemon (0: not)")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("runs daemons as root: sudo nsbox bench template")
    FactoryDaemon.spawners = a.spawners or None
    if a.quick:
        a.sandboxes, a.docker, a.cold, a.burst, a.density = 100, 10, 10, 30, "20,100"
    try:
        low, high = (int(x) for x in a.density.split(","))
    except ValueError:
        p.error("--density wants LOW,HIGH, e.g. 200,2000")
    if not 0 <= low < high:
        p.error("--density: LOW must be below HIGH")
    build = a.build or HERE
    nsbox, loadgen = os.path.join(build, "nsbox"), os.path.join(build, "loadgen")
    a.out = a.out or os.path.join("bench-results",
                                  datetime.datetime.now().strftime("%Y%m%d-%H%M%S-template"))
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="nsbox-bench-template-", dir="/var/tmp")
    os.chmod(work, 0o711)
    capacity = max(a.sandboxes, high, a.burst + 2 * a.cold) + 16
    started = time.monotonic()
    res = {"command": "nsbox bench template " + " ".join(argv),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "factories": {}, "cow_fault_us": cow_fault_us(), "favordynmods": cgroup_favordynmods(),
           "idle_vcpus_halt": idle_vcpus_halt()}
    lib.say("host: a copy-on-write page fault costs %.1f us here (a clone's start-up is "
            "mostly faults: the creation figures scale with it)" % res["cow_fault_us"])
    if res["favordynmods"] is False:
        lib.say("host: cgroup mounts without favordynmods: a move into a cgroup by pid after a "
                "pause waits an RCU grace period; sandboxes avoid it, a function template's "
                "instance does not (its cold start after idle pays it; back to back it does not)")
    if res["idle_vcpus_halt"]:
        lib.say("host: idle vCPUs halt at once (cpuidle haltpoll, guest_halt_poll_ns 0): a "
                "request after a pause pays a hypervisor wake-up at each hop between processes; "
                "the cold phase's warm request after the same pause measures that alone")
    daemons = {}
    phases = set(a.phases.split(","))
    factories = [f for f in FACTORIES if f in a.factories.split(",")]
    try:
        for i, f in enumerate(factories):
            res["factories"][f] = {}
        # Creation first, each factory in a daemon of its own that makes blanks and goes
        # (the pool keeps blanks it has: they must not serve the cold phase).
        for i, f in enumerate(factories if "creation" in phases else []):
            d = FactoryDaemon(nsbox, work, f, a.port + 10 + i, capacity)
            try:
                res["factories"][f]["creation"] = creation(d, a.sandboxes)
            finally:
                d.stop()
        if "creation" in phases and a.split > 1:
            # Alternating, so that a slow minute of the machine hits both.
            res["split"] = []
            for r in range(2):
                one = creation_split(nsbox, work, a.port + 30, a.sandboxes, 1)
                many = creation_split(nsbox, work, a.port + 30, a.sandboxes, a.split)
                res["split"].append({"one": one, "many": many})
        if "creation" in phases and a.docker > 0:
            res["docker"] = docker_creation(nsbox, work, a.port + 12, a.docker)
        if phases & {"cold", "burst", "density"}:
            for i, f in enumerate(factories):
                d = FactoryDaemon(nsbox, work, f, a.port + i, capacity)
                daemons[f] = d
                names = (["cold%d" % k for k in range(a.cold if "cold" in phases else 0)] +
                         ["coldp%d" % k for k in range(a.cold if "cold" in phases else 0)] +
                         ["burst%d" % k for k in range(a.burst if "burst" in phases else 0)] +
                         ["dens%d" % k for k in range(high if "density" in phases else 0)])
                lib.deploy_all(d, names)
        # Phase by phase, factory by factory: a slow minute of the machine hits both.
        for f, d in daemons.items():
            if "cold" in phases:
                res["factories"][f]["cold"] = cold(d, ["cold%d" % k for k in range(a.cold)],
                                                   ["coldp%d" % k for k in range(a.cold)])
        for f, d in daemons.items():
            if "burst" in phases:
                res["factories"][f]["burst"] = burst(d, loadgen, a.burst, work)
        if "ftemplate" in phases:
            res["function_template"] = function_template(nsbox, work, a.port + 20, a.cold)
        if "density" in phases:
            res["memcg_kb"] = memcg_cost_kb()
            lib.say("a new memory cgroup costs %s kB of kernel memory on this host now"
                    % lib.fmt(res["memcg_kb"], 0))
        for f, d in daemons.items():
            if "density" in phases:
                res["factories"][f]["density"] = density(d, low, high)
            d.stop()  # its warm sandboxes must not weigh on the next factory's figure
        if "density" in phases:
            # As many as the factories reached (a climb may stop early), and the machine's
            # memory cannot hold 10,000 Python processes.
            top = max(res["factories"][f]["density"]["reached"] for f in factories)
            res["bare_python"] = bare_python(low, min(top, 4000))
    finally:
        for d in daemons.values():
            if d.proc.poll() is None:
                d.stop()
    t, e = res["factories"].get("template", {}), res["factories"].get("exec", {})

    def row(label, phase, key):
        tv = t[phase][key] if phase in t else None
        ev = e[phase][key] if phase in e else None
        if tv is None and ev is None:
            return None
        return (label, tv, ev, lib.ratio(tv, ev))
    rows = [
        row("blank sandboxes per second (%d)" % a.sandboxes, "creation", "per_second"),
        row("CPU per ready sandbox, whole machine (ms)", "creation", "cpu_ms"),
        row("page faults per ready sandbox, whole machine", "creation", "faults"),
        row("MB per ready (blank) sandbox", "creation", "blank_mb"),
        row("daemon stop with them (s)", "creation", "stop_seconds"),
        row("cold start median, no blank (ms)", "cold", "median_ms"),
        row("cold start p99 (ms)", "cold", "p99_ms"),
        row("cold start after %d ms idle, median (ms)" % (PAUSE_S * 1000), "cold",
            "paused_median_ms"),
        row("cold start after %d ms idle, p99 (ms)" % (PAUSE_S * 1000), "cold", "paused_p99_ms"),
        row("warm request, back to back, median (ms)", "cold", "warm_median_ms"),
        row("warm request after %d ms idle, median (ms)" % (PAUSE_S * 1000), "cold",
            "paused_warm_median_ms"),
        row("burst of %d new functions: errors" % a.burst, "burst", "errors"),
        row("burst median (ms)", "burst", "median_ms"),
        row("burst p99 (ms)", "burst", "p99_ms"),
        row("burst: answered after over %d ms" % SLOW_MS, "burst", "over_slow_ms"),
        row("MB per warm function (%d -> %d)" % (low, high), "density", "mb"),
        row("warm functions reached (of %d)" % high, "density", "reached"),
        row("of them answering afterwards", "density", "answered_after"),
        row("memory in use at the top (MB)", "density", "mem_in_use_mb"),
    ]
    table = lib.table_md(["", "template", "exec", "template / exec"], [r for r in rows if r])
    table += ("\nHost: a copy-on-write page fault costs %.1f us; 500 ready sandboxes a second "
              "on its %d cores leave %.1f ms of CPU each.\n"
              % (res["cow_fault_us"], os.cpu_count(), os.cpu_count() * 1000 / 500))
    if res["favordynmods"] is not None:
        table += ("Host: cgroup mounts %s favordynmods (a move into a cgroup by pid after a "
                  "pause %s an RCU grace period).\n"
                  % (("with", "skips") if res["favordynmods"] else ("without", "waits")))
    if "docker" in res:
        dk = res["docker"]
        if "skipped" in dk:
            table += "\nDocker ready sandboxes: not measured: %s.\n" % dk["skipped"]
        else:
            tb = t.get("creation", {}).get("blank_mb")
            table += ("\nDocker, a container per sandbox running the same runner on the same "
                      "rootfs, same run: %.2f MB per ready sandbox (%d, %.1f per second); "
                      "template / docker %s.\n"
                      % (dk["blank_mb"], dk["sandboxes"], dk["per_second"],
                         lib.fmt(lib.ratio(tb, dk["blank_mb"]), 2)))
    if "split" in res:
        table += "\n" + lib.table_md(
            ["template blanks (%d), by round" % a.sandboxes, "1 daemon",
             "%d daemons at once" % a.split, "%d / 1" % a.split],
            [(label + " r%d" % (i + 1), r["one"][key], r["many"][key],
              lib.ratio(r["many"][key], r["one"][key]))
             for i, r in enumerate(res["split"])
             for label, key in (("per second", "per_second"), ("CPU per blank (ms)", "cpu_ms"))])
    if "bare_python" in res:
        table += ("\nBare idle `python3 -I -S`, same run: %.2f MB per process (%d -> %d).\n"
                  % (res["bare_python"]["mb"], low, res["bare_python"]["high"]))
        for f in factories:
            by = res["factories"][f]["density"]["by_key_kb"]
            if by:
                table += ("%s, kB per warm function by /proc/meminfo key: %s.\n"
                          % (f, ", ".join("%s %.0f" % (k, v) for k, v in by.items())))
        if res.get("memcg_kb") is not None:
            table += ("A new memory cgroup costs %.0f kB of kernel memory on this host now (one "
                      "per sandbox; it grows with the most superblocks the kernel has held at "
                      "once since boot: docs/architecture.md section 4).\n" % res["memcg_kb"])
        for f in factories:
            if res["factories"][f]["density"]["stopped_by"]:
                table += ("%s stopped at %d warm functions: %s\n"
                          % (f, res["factories"][f]["density"]["reached"],
                             res["factories"][f]["density"]["stopped_by"]))
    if "function_template" in res:
        ft = res["function_template"]
        table += "\n" + lib.table_md(
            ["function with a 200 ms import", "template=1", "without", "template / without"],
            [("cold start median (ms)", ft["template"]["median_ms"], ft["plain"]["median_ms"],
              lib.ratio(ft["template"]["median_ms"], ft["plain"]["median_ms"])),
             ("cold start p99 (ms)", ft["template"]["p99_ms"], ft["plain"]["p99_ms"],
              lib.ratio(ft["template"]["p99_ms"], ft["plain"]["p99_ms"]))])
        table += ("\nThe first request of the template=1 function, which made its template: "
                  "%.1f ms.\n" % ft["first_ms"])
    with open(os.path.join(a.out, "template.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(a.out, "template.md"), "w") as f:
        f.write(table)
    print(table)
    lib.say("done in %.0f s; results in %s" % (time.monotonic() - started, a.out))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
