"""CI's smoke runs of `nsbox bench paper --quick` with every mechanism and of
`nsbox bench template --quick` (meson suite "bench").

dev.sh installs bubblewrap, crun, runc, docker.io and python3-matplotlib, so on CI every row
must run: the bench exits non-zero when one did not, and this test names it. Root only (the
bench runs daemons); NSBOX_MUST_WORK=1 (CI) turns "not root" into a failure.

Run: sudo python3 tests/bench_smoke_test.py (NSBOX_BIN: the nsbox binary, default build/tools).
"""
import json
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
NSBOX = os.environ.get("NSBOX_BIN") or os.path.join(HERE, "..", "build", "tools", "nsbox")
MECHANISMS = ["nsbox", "none", "bwrap", "crun", "runc", "docker"]


class BenchSmoke(unittest.TestCase):
    def test_quick_run_of_every_mechanism(self):
        if os.geteuid() != 0:
            if os.environ.get("NSBOX_MUST_WORK") == "1":
                self.fail("nsbox bench needs root")
            self.skipTest("nsbox bench needs root")
        with tempfile.TemporaryDirectory() as out:
            doc = os.path.join(out, "doc", "isolation-cost.md")
            r = subprocess.run([NSBOX, "bench", "paper", "--quick", "--install", "--out", out,
                                "--doc", doc, "--mechanisms", ",".join(MECHANISMS)],
                               capture_output=True, text=True, timeout=900)
            self.assertEqual(r.returncode, 0, "nsbox bench failed:\n" + r.stderr[-3000:])
            summary = json.load(open(os.path.join(out, "summary.json")))
            self.assertEqual(summary["skipped"], {})
            by = {x["mechanism"]: x for x in summary["results"]}
            self.assertEqual(sorted(by), sorted(MECHANISMS))
            for m, x in by.items():
                self.assertTrue(all(s["requests"] == 30 * s["clients"] for s in x["steps"]), m)
                self.assertGreater(sum(s["ok"] for s in x["steps"]), 0, m)
                self.assertGreater(x["cold_pool_empty_ms"], 0, m)
                self.assertGreater(x["light"]["max_mem_kb"], 0, m)
            # nsbox serves the paper's load without a drop.
            self.assertEqual(sum(s["drops"] for s in by["nsbox"]["steps"]), 0)
            tables = open(os.path.join(out, "tables.md")).read()
            for m in MECHANISMS:
                self.assertIn("| %s |" % m, tables)
            self.assertIn("OpenLambda (Docker, paused containers) (paper, 2017)", tables)
            for n in range(2, 10):
                with open(os.path.join(out, "fig%d.png" % n), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            report = open(doc).read()
            self.assertIn("## Reading", report)
            self.assertIn("isolation-cost/fig2.png", report)
            for name in ("samples.csv", "steps.csv"):
                with open(os.path.join(out, name)) as f:
                    self.assertGreater(len(f.readlines()), 2, name)
            # Nothing of a comparison sandbox is left behind.
            left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.assertNotIn("/opt/nsbox/runner.py --fd 3", left)
            self.assertFalse([d for d in os.listdir("/run/nsbox") if d.startswith("compare-")])

    def test_quick_run_of_the_template_bench(self):
        if os.geteuid() != 0:
            if os.environ.get("NSBOX_MUST_WORK") == "1":
                self.fail("nsbox bench needs root")
            self.skipTest("nsbox bench needs root")
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([NSBOX, "bench", "template", "--quick", "--out", out],
                               capture_output=True, text=True, timeout=900)
            self.assertEqual(r.returncode, 0, "nsbox bench template failed:\n" + r.stderr[-3000:])
            res = json.load(open(os.path.join(out, "template.json")))
            self.assertEqual(sorted(res["factories"]), ["exec", "template"])
            for f, x in res["factories"].items():
                self.assertEqual(x["creation"]["sandboxes"], 100, f)
                self.assertGreater(x["creation"]["per_second"], 0, f)
                self.assertGreater(x["creation"]["stop_seconds"], 0, f)
                # Making a sandbox costs CPU and page faults; the split adds up.
                c = x["creation"]
                self.assertGreater(c["cpu_ms"], 0, f)
                self.assertGreater(c["faults"], 0, f)
                self.assertAlmostEqual(c["user_ms"] + c["system_ms"], c["cpu_ms"], places=6,
                                       msg=f)
                self.assertGreater(x["cold"]["median_ms"], 0, f)
                self.assertGreater(x["cold"]["paused_median_ms"], 0, f)
                self.assertGreater(x["cold"]["paused_p99_ms"], 0, f)
                self.assertGreater(x["cold"]["paused_warm_median_ms"], 0, f)
                self.assertGreater(x["cold"]["warm_median_ms"], 0, f)
                self.assertEqual(x["burst"]["requests"], 30, f)
                self.assertEqual(x["burst"]["errors"], 0, f)
                # Every request answered: the p99 is over all of them.
                self.assertGreater(x["burst"]["p99_ms"], 0, f)
                self.assertIn("over_slow_ms", x["burst"], f)
                self.assertGreater(x["density"]["mb"], 0, f)
                # Where it goes, by /proc/meminfo key; they add up to the figure.
                by = x["density"]["by_key_kb"]
                self.assertIn("SUnreclaim", by, f)
                self.assertAlmostEqual(sum(by.values()) * 1024 / 1e6, x["density"]["mb"],
                                       places=3, msg=f)
            # What a memory cgroup costs here: found and measured (CI runs as root).
            self.assertIsInstance(res["memcg_kb"], float)
            self.assertGreater(res["bare_python"]["mb"], 0)
            self.assertGreater(res["cow_fault_us"], 0)
            self.assertIn(res["idle_vcpus_halt"], (True, False, None))
            # Docker's ready sandboxes, the baseline measured in the same run.
            self.assertEqual(res["docker"].get("skipped"), None)
            self.assertEqual(res["docker"]["sandboxes"], 10)
            self.assertGreater(res["docker"]["blank_mb"], 0)
            table = open(os.path.join(out, "template.md")).read()
            self.assertIn("| cold start median, no blank (ms) |", table)
            self.assertIn("| cold start after 200 ms idle, median (ms) |", table)
            self.assertIn("| warm request after 200 ms idle, median (ms) |", table)
            self.assertIn("Bare idle `python3 -I -S`", table)
            self.assertIn("Docker, a container per sandbox", table)
            self.assertIn("A new memory cgroup costs", table)
            self.assertIn("| CPU per ready sandbox, whole machine (ms) |", table)
            self.assertIn("Host: a copy-on-write page fault costs", table)
            # Whether the host's cgroup mounts make a move by pid wait (CI has cgroups).
            self.assertIn(res["favordynmods"], (True, False))
            self.assertIn("Host: cgroup mounts with", table)
            # Every sandbox and template went with its daemon.
            left = subprocess.run(["ps", "-eo", "comm"], capture_output=True, text=True).stdout
            self.assertNotIn("nsbox-template", left)
            left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.assertNotIn("/opt/nsbox/runner.py --fd 3", left)


if __name__ == "__main__":
    unittest.main()
