"""The bench's own arithmetic (tools/bench_isolation.py): what a wrong figure would come from.

Run: python3 tests/bench_isolation_test.py (meson suite "unit").
"""
import importlib.util
import os
import socket
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "bench_isolation", os.path.join(HERE, "..", "tools", "bench_isolation.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

MEMINFO = """MemTotal:       24000000 kB
MemFree:        20000000 kB
MemAvailable:   22000000 kB
Cached:          1000000 kB
AnonPages:        300000 kB
Shmem:              2000 kB
KernelStack:       10000 kB
PageTables:         5000 kB
SUnreclaim:        40000 kB
Percpu:             3000 kB
"""


class Percentiles(unittest.TestCase):
    def test_nearest_rank(self):
        v = list(range(1, 101))  # 1..100
        self.assertEqual(bench.percentile(v, 99), 99)
        self.assertEqual(bench.percentile(v, 50), 50)
        self.assertEqual(bench.percentile(v, 100), 100)
        self.assertEqual(bench.percentile(v, 0), 1)

    def test_small_and_unsorted(self):
        self.assertEqual(bench.percentile([30.0, 10.0, 20.0], 99), 30.0)
        self.assertEqual(bench.percentile([5.0], 99), 5.0)
        self.assertIsNone(bench.percentile([], 99))


class Steps(unittest.TestCase):
    TRACE = ("# start 12.5 s CLOCK_MONOTONIC\nclient start_ms latency_ms status\n"
             "0 0.000 10.000 200\n0 10.000 20.000 200\n1 0.000 1500.000 0\n"
             "1 1500.000 5.000 503\n")

    def test_trace_parsed(self):
        reqs = bench.parse_trace(self.TRACE)
        self.assertEqual(len(reqs), 4)
        self.assertEqual(reqs[2], (1, 0.0, 1500.0, 0))

    def test_drops_are_timeouts_and_error_statuses(self):
        st = bench.step_stats(bench.parse_trace(self.TRACE), 99.0, 100)
        self.assertEqual(st["requests"], 4)
        self.assertEqual(st["ok"], 2)
        self.assertEqual(st["drops"], 2)
        self.assertAlmostEqual(st["drop_rate"], 0.5)
        # Latency of served requests only: a timeout is not a 1500 ms answer.
        self.assertAlmostEqual(st["avg_ms"], 15.0)
        self.assertEqual(st["p99_ms"], 20.0)
        # Duration is the trace's span (0 .. 1505 ms), not the argument.
        self.assertAlmostEqual(st["rps"], 2 / 1.505)
        self.assertAlmostEqual(st["kbps"], 2 * 100 / 1024 / 1.505)

    def test_empty_step(self):
        st = bench.step_stats([], 1.0, 100)
        self.assertEqual((st["requests"], st["drops"], st["drop_rate"]), (0, 0, 0.0))
        self.assertIsNone(st["avg_ms"])


class Memory(unittest.TestCase):
    def test_memory_in_use_counts_kernel_memory(self):
        self.assertEqual(bench.mem_used_kb(MEMINFO), 300000 + 2000 + 10000 + 5000 + 40000 + 3000)

    def test_memory_by_key(self):
        by = bench.mem_by_key_kb(MEMINFO)
        self.assertEqual(sorted(by), sorted(bench.MEMINFO_KEYS))
        self.assertEqual(by["SUnreclaim"], 40000)
        self.assertEqual(by["AnonPages"], 300000)
        with self.assertRaises(ValueError):
            bench.mem_by_key_kb(MEMINFO.replace("SUnreclaim", "SReclaimable"))

    def test_a_missing_key_is_an_error_not_a_smaller_figure(self):
        with self.assertRaises(ValueError):
            bench.mem_used_kb(MEMINFO.replace("Percpu", "Xpercpu"))

    def test_marginal_memory(self):
        # The paper's Table 1: (heavy max - light max) / 4, in MB of 10^6 bytes.
        ol = bench.marginal_mb(784.886e6 / 1024, 843.121e6 / 1024, 4)
        self.assertAlmostEqual(ol, 14.558, places=2)
        # Density: 130 more warm functions costing 130 * 1024 kB.
        self.assertAlmostEqual(bench.marginal_mb(1000, 1000 + 130 * 1024, 130), 1.048576)


class Cpu(unittest.TestCase):
    STAT0 = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n"
    STAT1 = "cpu  200 0 200 1000 100 0 0 0 0 0\ncpu0 150 0 50 400 0 0 0 0 0 0\n"

    def test_idle_includes_iowait_per_cpu(self):
        a, b = bench.cpu_times(self.STAT0), bench.cpu_times(self.STAT1)
        self.assertEqual(a, (800, 1000))
        self.assertAlmostEqual(bench.idle_pct(a, b), 100 * 300 / 500)
        c0, c1 = bench.cpu_times(self.STAT0, "cpu0"), bench.cpu_times(self.STAT1, "cpu0")
        self.assertAlmostEqual(bench.idle_pct(c0, c1), 0.0)
        with self.assertRaises(ValueError):
            bench.cpu_times(self.STAT0, "cpu7")

    def test_recovery_waits_until_idle_stays_back(self):
        s = [(9, 10), (10, 20), (11, 96), (12, 50), (13, 97), (14, 99), (15, 98)]
        # Back at 11 but down again at 12: recovered only from 13, 3 s after the end.
        self.assertEqual(bench.recovery_s(s, 10, 100), 3)
        self.assertEqual(bench.recovery_s(s, 10, 100, within=60), 1)
        self.assertEqual(bench.recovery_s(s, 10, 100, within=85), 0)
        self.assertIsNone(bench.recovery_s([(11, 10), (12, 20)], 10, 100))


class Output(unittest.TestCase):
    def test_csv_quotes_what_needs_it(self):
        text = bench.csv_text(["a", "b"], [(1, 'x,"y"'), (2.5, None)])
        self.assertEqual(text, 'a,b\n1,"x,""y"""\n2.500,\n')

    def test_markdown_table(self):
        t = bench.table_md(["m", "v"], [("nsbox", 1.234), ("docker", None)])
        self.assertEqual(t, "| m | v |\n|---|---|\n| nsbox | 1.23 |\n| docker | — |\n")

    def test_tables_carry_the_papers_rows_and_the_skipped(self):
        step = {"clients": 1, "requests": 30, "ok": 30, "drops": 0, "drop_rate": 0.0,
                "rps": 100.0, "kbps": 10.0, "avg_ms": 1.0, "p99_ms": 2.0}
        run = {"max_mem_kb": 1000000, "baseline_idle": 99.0, "min_idle": 50.0,
               "avg_idle": 70.0, "recovery_s": 1.0, "t0": 0, "t_end": 1}
        r = {"mechanism": "nsbox", "steps": [step], "light": run, "heavy": run,
             "marginal_paper_mb": 0.5, "marginal_density_mb": 1.5, "density_functions": [20, 150],
             "cold_pool_empty_ms": 20.0, "cold_blank_ready_ms": 5.0, "response_bytes": 155}
        none = dict(r, mechanism="none", marginal_density_mb=1.0)
        t = bench.tables_md([r, none], {"docker": "dockerd is not running"})
        self.assertIn("| Clofly (subprocess, no isolation) (paper, 2017) | 572.40 | 583.45 | 2.76", t)
        self.assertIn("1.50 (150 vs 20 warm) / 1.50x", t)
        self.assertIn("| docker | dockerd is not running |", t)


class Reuse(unittest.TestCase):
    def test_an_earlier_paper_run_loads_back_as_written(self):
        import json
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            rows = [("nsbox", "light", 1.5, 97.25, 1000), ("docker", "heavy-tail", 2.0, 50.0, 2000)]
            with open(os.path.join(d, "samples.csv"), "w") as f:
                f.write(bench.csv_text(["mechanism", "phase", "t_s", "cpu_idle_pct",
                                        "mem_used_kb"], rows))
            with open(os.path.join(d, "summary.json"), "w") as f:
                json.dump({"results": [{"mechanism": "nsbox"}], "skipped": {"runc": "x"},
                           "command": "nsbox bench paper", "date": "D"}, f)
            results, skipped, loaded, cmd = bench.load_paper(d)
            self.assertEqual(results, [{"mechanism": "nsbox"}])
            self.assertEqual(skipped, {"runc": "x"})
            self.assertEqual(loaded, rows)
            self.assertEqual(cmd, "`nsbox bench paper` (D)")


class Ports(unittest.TestCase):
    def test_a_taken_port_is_said_before_a_daemon_starts(self):
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        try:
            with self.assertRaisesRegex(RuntimeError, "127.0.0.1:%d is taken" % port):
                bench.port_free_or_fail(port)
        finally:
            held.close()
        bench.port_free_or_fail(port)  # free again: no error


class HostSettings(unittest.TestCase):
    """bench template's one-line host notes, read from a sysfs tree made here."""

    def setUp(self):
        import importlib.machinery
        self.tmpl = importlib.machinery.SourceFileLoader(
            "bench_template", os.path.join(HERE, "..", "tools", "bench_template.py")).load_module()

    def sysfs(self, driver, poll_ns):
        import tempfile
        root = tempfile.mkdtemp()
        os.makedirs(os.path.join(root, "devices/system/cpu/cpuidle"))
        os.makedirs(os.path.join(root, "module/haltpoll/parameters"))
        with open(os.path.join(root, "devices/system/cpu/cpuidle/current_driver"), "w") as f:
            f.write(driver + "\n")
        with open(os.path.join(root, "module/haltpoll/parameters/guest_halt_poll_ns"), "w") as f:
            f.write(poll_ns + "\n")
        return root

    def test_idle_vcpus_halt(self):
        self.assertTrue(self.tmpl.idle_vcpus_halt(self.sysfs("haltpoll", "0")))
        self.assertFalse(self.tmpl.idle_vcpus_halt(self.sysfs("haltpoll", "200000")))
        self.assertIsNone(self.tmpl.idle_vcpus_halt(self.sysfs("intel_idle", "0")))
        self.assertIsNone(self.tmpl.idle_vcpus_halt("/nonexistent"))


if __name__ == "__main__":
    unittest.main()
