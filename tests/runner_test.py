"""Tests of rootfs/runner.py, driven over real pipes exactly as the sandbox drives it.

The protocol (docs/runner-protocol.md): each frame is two big-endian u32 lengths, a JSON
envelope and a raw payload.

    /usr/bin/python3 tests/runner_test.py
"""

import fcntl
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rootfs", "runner.py")
RUNNER = os.path.normpath(RUNNER)
MAX_ENVELOPE = 16 * 1024
MAX_PAYLOAD = 6 * 1024 * 1024
TIMEOUT = 10


class Runner:
    """One runner process wired as in a sandbox: requests on its fd 3 and replies on its fd 4,
    two pipes. With socket_mode, one socketpair on fd 3 instead (the runner's --fd-only mode)."""

    def __init__(self, *args, socket_mode=False, extra=None):
        if socket_mode:
            self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.wfd = self.rfd = self.sock.fileno()
            wiring = {3: child.fileno()}
            mine = [child]
        else:
            self.sock = None
            req_r, self.wfd = os.pipe()
            self.rfd, rep_w = os.pipe()
            wiring = {3: req_r, 4: rep_w}
            args = ("--out-fd", "4") + args
            mine = []
        wiring.update(extra or {})

        def wire():
            # Runs in the child before exec. Copied high first, since a source may already sit
            # on 3 or 4; dup2 leaves the targets inheritable.
            high = {target: fcntl.fcntl(src, fcntl.F_DUPFD, 10) for target, src in wiring.items()}
            for target, fd in high.items():
                os.dup2(fd, target)

        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", RUNNER] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=tuple(wiring), preexec_fn=wire)
        for f in mine:
            f.close()
        if not socket_mode:
            os.close(req_r)
            os.close(rep_w)

    def send_raw(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view):]

    def send_frame(self, envelope, payload=b""):
        self.send_raw(len(envelope).to_bytes(4, "big") + len(payload).to_bytes(4, "big")
                      + envelope + payload)

    def send(self, msg, payload=b""):
        self.send_frame(json.dumps(msg).encode(), payload)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            if not select.select([self.rfd], [], [], TIMEOUT)[0]:
                raise TimeoutError("no reply from the runner within %d s" % TIMEOUT)
            chunk = os.read(self.rfd, n - len(buf))
            if not chunk:
                raise EOFError("runner closed the channel after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def recv_frame(self):
        """(envelope dict, payload bytes), checking the limits the daemon enforces."""
        head = self._exact(8)
        n_env, n_pay = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
        assert n_env <= MAX_ENVELOPE, n_env
        assert n_pay <= MAX_PAYLOAD, n_pay
        envelope = json.loads(self._exact(n_env))
        assert isinstance(envelope, dict), envelope
        return envelope, self._exact(n_pay)

    def recv(self):
        """The envelope, with the payload decoded into it the way the daemon reads it:
        "result" (the JSON result), "body" (a proxy response's bytes), "error" (an invoke's
        error object) or a load error's full fields."""
        msg, payload = self.recv_frame()
        kind = msg["type"]
        if kind == "result" and msg.get("ok") is True:
            if "statusCode" in msg:
                msg["body"] = payload
            else:
                assert payload.endswith(b"\n"), payload[-20:]
                msg["result"] = json.loads(payload)
        elif kind == "result":
            msg["summary"] = {"errorType": msg.get("errorType")}
            msg["error"] = json.loads(payload)
        elif kind == "load_error":
            msg["summary"] = {"errorType": msg["errorType"], "errorMessage": msg["errorMessage"]}
            msg.update(json.loads(payload))
        else:
            assert payload == b"", payload[:100]
        return msg

    def call(self, msg, payload=b""):
        self.send(msg, payload)
        return self.recv()

    def invoke(self, event=None, req_id=1, context=None, http=False):
        msg = {"type": "invoke", "id": req_id}
        if context is not None:
            msg["context"] = context
        if http:
            msg["http"] = True
        return self.call(msg, b"" if event is None else json.dumps(event).encode())

    def close(self):
        if self.sock is not None:
            self.sock.close()
        else:
            for fd in (self.wfd, self.rfd):
                try:
                    os.close(fd)
                except OSError:
                    pass  # closed already
        self.wfd = self.rfd = -1

    def finish(self):
        """Close our ends and return (exit code, stdout, stderr)."""
        self.close()
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        self.close()


class RunnerCase(unittest.TestCase):
    """Starts runners and removes them (and their files) after each test."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="nsbox-runner-test-")
        self.addCleanup(self.tmp.cleanup)
        self.runners = []

    def tearDown(self):
        for r in self.runners:
            r.kill()

    def fn(self, source, name="fn.py"):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(source))
        return path

    def start(self, *args, socket_mode=False, extra=None):
        r = Runner(*args, socket_mode=socket_mode, extra=extra)
        self.runners.append(r)
        return r

    def loaded(self, source, handler=None, name="fn.py"):
        args = ["--function", self.fn(source, name)]
        if handler:
            args += ["--handler", handler]
        r = self.start(*args)
        self.assertEqual(r.recv(), {"type": "ready"})
        return r


class RunnerTest(RunnerCase):
    # -- loading ----------------------------------------------------------------------------

    def test_ready_on_good_function(self):
        self.loaded("def handler(event, context):\n    return 1\n")

    def test_syntax_error_reports_line(self):
        r = self.start("--function", self.fn("import os\n\nx = = 1\n"))
        msg = r.recv()
        self.assertEqual(msg["type"], "load_error")
        self.assertEqual(msg["kind"], "syntax")
        self.assertEqual(msg["errorType"], "SyntaxError")
        self.assertEqual(msg["line"], 3)
        self.assertEqual(msg["errorMessage"], "invalid syntax (fn.py, line 3)")

    def test_indentation_error_is_syntax(self):
        r = self.start("--function", self.fn("def handler(e, c):\nreturn 1\n"))
        msg = r.recv()
        self.assertEqual((msg["kind"], msg["errorType"], msg["line"]),
                         ("syntax", "IndentationError", 2))

    def test_missing_file(self):
        r = self.start("--function", os.path.join(self.tmp.name, "nope.py"))
        msg = r.recv()
        self.assertEqual((msg["type"], msg["kind"]), ("load_error", "not_found"))
        self.assertIn("nope.py", msg["errorMessage"])

    def test_missing_handler(self):
        r = self.start("--function", self.fn("def other(e, c):\n    pass\n"))
        msg = r.recv()
        self.assertEqual(msg["kind"], "missing_handler")
        self.assertEqual(msg["errorMessage"], "handler 'handler' not found in fn.py")

    def test_handler_not_callable(self):
        r = self.start("--function", self.fn("handler = 42\n"))
        self.assertEqual(r.recv()["kind"], "missing_handler")

    def test_import_error_in_module_body(self):
        r = self.start("--function", self.fn("x = 1\nraise RuntimeError('bad init')\n"))
        msg = r.recv()
        self.assertEqual((msg["kind"], msg["errorType"], msg["errorMessage"]),
                         ("import", "RuntimeError", "bad init"))
        self.assertEqual(len(msg["stackTrace"]), 1)
        self.assertIn("fn.py\", line 2", msg["stackTrace"][0])

    def test_sys_exit_in_module_body_is_import_error(self):
        r = self.start("--function", self.fn("import sys\nsys.exit(3)\n"))
        msg = r.recv()
        self.assertEqual((msg["kind"], msg["errorType"]), ("import", "SystemExit"))
        self.assertEqual(r.call({"type": "invoke", "id": 1})["kind"], "not_loaded")

    def test_handler_flag_picks_another(self):
        r = self.loaded("def handler(e, c):\n    return 'h'\ndef f(e, c):\n    return 'f'\n",
                        handler="f")
        self.assertEqual(r.invoke()["result"], "f")

    def test_module_can_import_sibling_and_itself(self):
        self.fn("VALUE = 7\n", name="helper.py")
        r = self.loaded("import helper, fn\n"
                        "def handler(e, c):\n    return [helper.VALUE, fn.handler is handler]\n")
        self.assertEqual(r.invoke()["result"], [7, True])

    def test_function_named_like_a_module_does_not_replace_it(self):
        # The daemon names the file after the function: "traceback" must not become the
        # runner's traceback module (an exception would kill the runner), nor "time" the
        # context's clock, nor "socket" anybody's socket.
        for name in ("traceback", "time", "socket", "colorsys"):
            with self.subTest(name=name):
                self.fn("VALUE = 5\n", name="helper.py")
                r = self.loaded("import %s as mod, helper\n"
                                "def handler(e, c):\n"
                                "    if (e or {}).get('raise'):\n"
                                "        raise ValueError('boom')\n"
                                "    return [mod.__name__, __name__ != mod.__name__,\n"
                                "            c.get_remaining_time_in_millis() > 0, helper.VALUE]\n"
                                % name, name=name + ".py")
                first = r.invoke()
                self.assertEqual(first.get("result"), [name, True, True, 5], first)
                msg = r.invoke({"raise": True})
                self.assertEqual((msg["ok"], msg["kind"]), (False, "exception"), msg)
                self.assertEqual(msg["error"]["errorMessage"], "boom")
                self.assertEqual(r.invoke()["result"], [name, True, True, 5])

    def test_load_via_frame(self):
        r = self.start()
        msg = r.call({"type": "load", "function": self.fn("def handler(e, c):\n    return e\n"),
                      "handler": "handler"})
        self.assertEqual(msg, {"type": "ready"})
        self.assertEqual(r.invoke({"a": 1})["result"], {"a": 1})

    def test_failed_load_then_good_load(self):
        r = self.start()
        bad = r.call({"type": "load", "function": self.fn("def handler(:\n", name="bad.py")})
        self.assertEqual(bad["kind"], "syntax")
        good = r.call({"type": "load", "function": self.fn("def handler(e, c):\n    return 2\n")})
        self.assertEqual(good, {"type": "ready"})
        self.assertEqual(r.invoke()["result"], 2)

    def test_second_load_refused_without_running_it(self):
        marker = os.path.join(self.tmp.name, "second-ran")
        r = self.loaded("def handler(e, c):\n    return 'first'\n")
        second = self.fn("open(%r, 'w').close()\ndef handler(e, c):\n    return 'second'\n"
                         % marker, name="other.py")
        msg = r.call({"type": "load", "function": second})
        self.assertEqual((msg["type"], msg["kind"]), ("load_error", "already_loaded"))
        self.assertFalse(os.path.exists(marker), "second function's module body ran")
        self.assertEqual(r.invoke()["result"], "first")

    # -- invoking ---------------------------------------------------------------------------

    def test_result_json_and_context(self):
        r = self.loaded("""
            def handler(event, context):
                return {"event": event, "name": context.function_name,
                        "version": context.function_version,
                        "mem": context.memory_limit_in_mb, "req": context.aws_request_id,
                        "arn": context.invoked_function_arn,
                        "group": context.log_group_name,
                        "left": context.get_remaining_time_in_millis()}
        """)
        deadline = int(time.time() * 1000) + 5000
        event = {"k": [1, 2.5, None, True, "é"], "n": {"x": {}}}
        msg = r.invoke(event, req_id="req-1", context={
            "function_name": "hello", "function_version": "3", "memory_limit_mb": 256,
            "request_id": "req-1", "deadline_ms": deadline})
        self.assertEqual((msg["type"], msg["id"], msg["ok"]), ("result", "req-1", True))
        res = msg["result"]
        self.assertEqual(res["event"], event)
        self.assertEqual((res["name"], res["version"], res["mem"], res["req"], res["arn"]),
                         ("hello", "3", 256, "req-1", ""))
        self.assertEqual(res["group"], "/aws/lambda/hello")
        self.assertTrue(0 < res["left"] <= 5000, res["left"])

    def test_remaining_time_without_deadline_is_large(self):
        r = self.loaded("def handler(e, c):\n    return c.get_remaining_time_in_millis()\n")
        self.assertGreater(r.invoke()["result"], 10**6)

    def test_print_goes_to_stderr_not_channel(self):
        r = self.loaded("""
            import os, sys
            print("at import")
            def handler(event, context):
                print("hello from print")
                os.write(1, b"raw fd 1 write\\n")
                sys.stdout.write("partial line no newline")
                return "done"
        """)
        self.assertEqual(r.invoke()["result"], "done")
        code, out, err = r.finish()
        self.assertEqual(code, 0)
        self.assertEqual(out, "")
        for text in ("at import", "hello from print", "raw fd 1 write", "partial line"):
            self.assertIn(text, err)

    def test_exception_reported_with_function_frames(self):
        r = self.loaded("""
            def inner():
                raise ValueError("boom")

            def handler(event, context):
                inner()
        """)
        msg = r.invoke(req_id=9)
        self.assertEqual((msg["id"], msg["ok"], msg["kind"]), (9, False, "exception"))
        err = msg["error"]
        self.assertEqual((err["errorType"], err["errorMessage"]), ("ValueError", "boom"))
        trace = err["stackTrace"]
        self.assertEqual(len(trace), 2, trace)
        self.assertIn('fn.py", line 6, in handler', trace[0])
        self.assertIn('fn.py", line 3, in inner', trace[1])
        self.assertIn('raise ValueError("boom")', trace[1])
        self.assertFalse(any("runner.py" in line for line in trace))

    def test_sys_exit_and_keyboard_interrupt_keep_runner_alive(self):
        r = self.loaded("""
            import sys
            def handler(event, context):
                if event == "exit":
                    sys.exit(4)
                if event == "int":
                    raise KeyboardInterrupt
                return "alive"
        """)
        msg = r.invoke("exit")
        self.assertEqual((msg["kind"], msg["error"]["errorType"]), ("exception", "SystemExit"))
        msg = r.invoke("int")
        self.assertEqual(msg["error"]["errorType"], "KeyboardInterrupt")
        self.assertEqual(r.invoke("x")["result"], "alive")

    def test_a_forked_child_that_comes_back_never_answers(self):
        # Children the function forks share the runner's channel: one that returns or raises
        # out of the handler (or the module body) must end, not answer for the runner.
        r = self.loaded("""
            import os
            pid = os.fork()
            if pid == 0:
                raise RuntimeError("child of the module body")
            os.waitpid(pid, 0)

            def handler(event, context):
                pid = os.fork()
                if pid == 0:
                    if event == "raise":
                        raise RuntimeError("child")
                    return "child"
                os.waitpid(pid, 0)
                return "parent"
            """)
        for i, event in enumerate(["return", "raise", "return"], start=1):
            msg = r.invoke(event, req_id=i)
            self.assertEqual((msg["id"], msg["result"]), (i, "parent"))
        # Nothing else was written: the next frame is this request's answer.
        self.assertEqual(r.invoke(None, req_id=9)["id"], 9)

    def test_non_serialisable_result(self):
        r = self.loaded("def handler(e, c):\n    return {1, 2} if e == 's' else float('nan')\n")
        msg = r.invoke("s")
        self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"))
        self.assertEqual(msg["error"]["errorType"], "TypeError")
        self.assertEqual(msg["error"]["errorMessage"],
                         "result is not JSON serialisable: Object of type set is not JSON "
                         "serializable")
        msg = r.invoke("nan")
        self.assertEqual((msg["kind"], msg["error"]["errorType"]), ("bad_result", "ValueError"))

    def test_lone_surrogate_is_bad_result_and_unicode_passes(self):
        r = self.loaded("def handler(e, c):\n    return '\\udcff' if e == 's' else 'h\u00e9\u20ac'\n")
        msg = r.invoke("s")
        self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"))
        self.assertEqual(r.invoke("u")["result"], "h\u00e9\u20ac")

    def test_oversized_result(self):
        r = self.loaded("def handler(e, c):\n    return 'x' * (7 * 1024 * 1024)\n")
        msg = r.invoke()
        self.assertEqual(msg["kind"], "bad_result")
        self.assertIn("too large", msg["error"]["errorMessage"])

    def test_keep_alive_many_invokes(self):
        r = self.loaded("""
            count = 0
            def handler(event, context):
                global count
                count += 1
                if event % 7 == 0:
                    raise KeyError(event)
                return count
        """)
        for i in range(1, 301):
            msg = r.invoke(i, req_id=i)
            self.assertEqual(msg["id"], i)
            if i % 7 == 0:
                self.assertEqual(msg["error"]["errorType"], "KeyError")
            else:
                self.assertEqual(msg["result"], i)
        self.assertEqual(r.finish()[0], 0)

    def test_startup_stays_lean(self):
        # Cold start is benchmarked: the runner must not pull in the json package (re, enum),
        # traceback or argparse before the function's first request.
        r = self.loaded("import sys\n"
                        "def handler(e, c):\n"
                        "    return [m for m in e if m in sys.modules]\n")
        self.assertEqual(r.invoke(["json", "re", "enum", "traceback", "argparse", "socket"])
                         ["result"], [])

    def test_invoke_before_load(self):
        r = self.start()
        msg = r.call({"type": "invoke", "id": 5, "event": {}})
        self.assertEqual((msg["type"], msg["kind"], msg["id"]), ("error", "not_loaded", 5))

    # -- the reply envelope (issue 8, item 10) ---------------------------------------------

    def test_result_travels_as_payload_text_not_in_the_envelope(self):
        r = self.loaded("def handler(e, c):\n    return {'b': [1, 'h\u00e9'], 'a': None}\n")
        r.send({"type": "invoke", "id": "r1"}, b"{}")
        env, payload = r.recv_frame()
        self.assertEqual(env, {"type": "result", "id": "r1", "ok": True})
        # Compact, in the function's key order, UTF-8 not \\u escapes, one newline.
        self.assertEqual(payload, '{"b":[1,"h\u00e9"],"a":null}\n'.encode())

    def test_large_result_is_one_payload(self):
        r = self.loaded("def handler(e, c):\n    return 'x' * 5000000\n")
        r.send({"type": "invoke", "id": 1})
        env, payload = r.recv_frame()
        self.assertEqual(env["ok"], True)
        self.assertEqual(len(payload), 5000003)
        self.assertEqual(payload[:3], b'"xx')

    def test_proxy_result_splits_only_when_asked(self):
        r = self.loaded("""
            def handler(e, c):
                return {"statusCode": 201, "headers": {"X-A": "1", "Content-Type": "text/plain"},
                        "body": "h\u00e9llo", "cookies": ["ignored"]}
        """)
        msg = r.invoke(http=True)
        self.assertEqual((msg["ok"], msg["statusCode"], msg["headers"]),
                         (True, 201, {"X-A": "1", "Content-Type": "text/plain"}))
        self.assertEqual(msg["body"], "h\u00e9llo".encode())
        self.assertNotIn("cookies", msg)
        # nsbox run does not ask: it prints the result whole.
        self.assertEqual(r.invoke()["result"]["body"], "h\u00e9llo")

    def test_proxy_bodies(self):
        r = self.loaded("""
            def handler(e, c):
                out = {"statusCode": 200}
                out.update(e)
                return out
        """)
        self.assertEqual(r.invoke({}, http=True)["body"], b"")
        self.assertEqual(r.invoke({"body": {"k": [1]}}, http=True)["body"], b'{"k":[1]}')
        self.assertEqual(r.invoke({"body": None}, http=True)["body"], b"null")
        msg = r.invoke({"body": "AAEC/w==", "isBase64Encoded": True}, http=True)
        self.assertEqual(msg["body"], b"\x00\x01\x02\xff")
        msg = r.invoke({"body": "not base64!", "isBase64Encoded": True}, http=True)
        self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"))
        self.assertIn("base64", msg["error"]["errorMessage"])
        msg = r.invoke({"headers": {"X-Big": "v" * MAX_ENVELOPE}}, http=True)
        self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"))
        self.assertIn("headers are too large", msg["error"]["errorMessage"])
        self.assertEqual(r.invoke({"body": "x"}, http=True)["body"], b"x")  # still serving

    def test_proxy_wide_int_in_status_or_headers_is_bad_result(self):
        # The daemon reads the envelope's numbers as 64-bit ints or doubles: 2**1100 there
        # was a frame it could not parse (a 502, the sandbox destroyed).
        r = self.loaded("""
            def handler(e, c):
                if e.get("where") == "status":
                    return {"statusCode": 2 ** 1100}
                return {"statusCode": 200, "headers": {"X-N": [1, 2 ** 1100]}}
        """)
        for where in ("status", "headers"):
            msg = r.invoke({"where": where}, http=True)
            self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"), where)
            self.assertIn("2**1023", msg["error"]["errorMessage"])
        # A big int within a double's range: its exact digits, which the daemon would
        # have read as a double and sent rounded; 64-bit ones and nested ones as they are.
        r2 = self.loaded("""
            def handler(e, c):
                return {"statusCode": 200, "headers": {"X-N": 2 ** 70, "X-M": -(2 ** 70),
                                                       "X-S": 2 ** 63 - 1, "X-B": True,
                                                       "X-L": [2 ** 70]}}
        """)
        self.assertEqual(r2.invoke(http=True)["headers"],
                         {"X-N": str(2 ** 70), "X-M": str(-(2 ** 70)), "X-S": 2 ** 63 - 1,
                          "X-B": True, "X-L": [2 ** 70]})
        # A cycle is refused by the encoder first, at once (the walk would not end).
        r3 = self.loaded("""
            def handler(e, c):
                d = {}
                d["a"] = d
                d["b"] = d
                return {"statusCode": 200, "headers": {"X": d}}
        """)
        msg = r3.invoke(http=True)
        self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"))
        # Deeper than the daemon reads an envelope (256, counting it and headers): a
        # bad result, not a frame the daemon refuses as broken.
        r4 = self.loaded("""
            def handler(e, c):
                x = "v"
                for _ in range(e["n"]):
                    x = [x]
                return {"statusCode": 200, "headers": {"X": x}}
        """)
        self.assertEqual(r4.invoke({"n": 254}, http=True)["ok"], True)
        msg = r4.invoke({"n": 255}, http=True)
        self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"))
        self.assertIn("deeper than 256", msg["error"]["errorMessage"])

    def test_result_whose_encoding_raises_anything_is_bad_result(self):
        # A dict subclass's items() runs the function's code during encoding: SystemExit
        # there was not caught, and the runner exited without an answer.
        r = self.loaded("""
            import sys
            class D(dict):
                def items(self):
                    sys.exit(3)
                def keys(self):
                    sys.exit(3)
                def __iter__(self):
                    sys.exit(3)
            def handler(e, c):
                return D(a=1)
        """)
        msg = r.invoke()
        self.assertEqual((msg["ok"], msg["kind"]), (False, "bad_result"))
        self.assertEqual(r.invoke()["kind"], "bad_result")  # and it serves on

    def test_a_fork_during_encoding_does_not_answer(self):
        # The child of a fork in a dict subclass's items() returned normally and sent a
        # second answer on the shared channel; only the runner answers.
        r = self.loaded("""
            import os
            class D(dict):
                def items(self):
                    os.fork()
                    return dict.items(self)
                def keys(self):
                    return dict.keys(self)
            def handler(e, c):
                if e and e.get("http"):
                    return D(statusCode=200, body="x")
                return D(a=1)
        """)
        first = r.invoke()
        self.assertEqual(first.get("result"), {"a": 1}, first)
        self.assertEqual(r.invoke({"http": 1}, http=True)["body"], b"x")
        self.assertEqual(r.invoke()["result"], {"a": 1})  # the next answer is this request's

    def test_proxy_body_over_the_payload_limit_is_bad_result(self):
        r = self.loaded("def handler(e, c):\n    return {'statusCode': 200, "
                        "'body': 'x' * (%d + 1)}\n" % MAX_PAYLOAD)
        msg = r.invoke(http=True)
        self.assertEqual(msg["kind"], "bad_result")
        self.assertIn("body is too large", msg["error"]["errorMessage"])

    def test_error_in_payload_whole_summary_in_envelope(self):
        r = self.loaded("def handler(e, c):\n    raise ValueError('m' * 100000)\n")
        r.send({"type": "invoke", "id": 3})
        env, payload = r.recv_frame()
        self.assertEqual(env, {"type": "result", "id": 3, "ok": False, "kind": "exception",
                               "errorType": "ValueError"})
        err = json.loads(payload)
        self.assertEqual(err["errorMessage"], "m" * 100000)
        self.assertEqual(err["errorType"], "ValueError")

    def test_huge_error_message_is_clipped_to_fit(self):
        r = self.loaded("def handler(e, c):\n    raise ValueError('m' * (7 << 20))\n")
        msg = r.invoke()
        self.assertEqual(msg["error"]["errorType"], "ValueError")
        self.assertTrue(msg["error"]["errorMessage"].startswith("mmm"))

    def test_load_error_summary_clipped_full_error_in_payload(self):
        r = self.start("--function", self.fn("raise RuntimeError('e' * 5000)\n"))
        msg = r.recv()
        self.assertEqual(msg["kind"], "import")
        self.assertEqual(msg["errorMessage"], "e" * 5000)
        self.assertLess(len(msg["summary"]["errorMessage"]), 1100)

    def test_load_and_check_take_the_source_as_payload(self):
        r = self.start()
        src = "# coding: latin-1\ndef handler(e, c):\n    return '\xe9'\n".encode("latin-1")
        self.assertEqual(r.call({"type": "check", "function": "/var/task/f.py"}, src),
                         {"type": "checked"})
        bad = r.call({"type": "check", "function": "/var/task/f.py"}, b"def (:\n")
        self.assertEqual((bad["type"], bad["kind"], bad["line"]), ("load_error", "syntax", 1))
        self.assertEqual(r.call({"type": "load", "function": "/var/task/f.py",
                                 "handler": "handler"}, src), {"type": "ready"})
        self.assertEqual(r.invoke()["result"], "\u00e9")

    # -- framing ----------------------------------------------------------------------------

    def test_bad_json_and_unknown_type_keep_going(self):
        r = self.loaded("def handler(e, c):\n    return 'ok'\n")
        r.send_frame(b"{not json")
        self.assertEqual(r.recv()["kind"], "bad_request")
        r.send_frame(b"\xff\xfe")
        self.assertEqual(r.recv()["kind"], "bad_request")
        r.send_frame(b"[1, 2]")
        self.assertEqual(r.recv()["kind"], "bad_request")
        # An event that is not JSON: the envelope was fine, so the reply names the request.
        msg = r.call({"type": "invoke", "id": "e1"}, b"{not json")
        self.assertEqual((msg["type"], msg["kind"], msg["id"]), ("error", "bad_request", "e1"))
        msg = r.call({"type": "dance"})
        self.assertEqual((msg["type"], msg["kind"]), ("error", "bad_request"))
        self.assertEqual(r.invoke()["result"], "ok")

    def test_oversized_frame_header(self):
        for env_len, pay_len, what in ((MAX_ENVELOPE + 1, 0, "envelope"),
                                       (2, MAX_PAYLOAD + 1, "payload")):
            r = self.loaded("def handler(e, c):\n    return 1\n")
            r.send_raw(env_len.to_bytes(4, "big") + pay_len.to_bytes(4, "big"))
            msg = r.recv()
            self.assertEqual((msg["type"], msg["kind"]), ("error", "bad_request"))
            self.assertIn(what, msg["errorMessage"])
            self.assertIn(str(MAX_PAYLOAD if what == "payload" else MAX_ENVELOPE),
                          msg["errorMessage"])
            self.assertEqual(r.proc.wait(TIMEOUT), 2)

    def test_max_size_event_accepted(self):
        # The whole payload limit is the event's: the envelope has its own allowance.
        r = self.loaded("def handler(e, c):\n    return len(e)\n")
        msg = {"type": "invoke", "id": "x" * 100, "context": {"function_name": "f" * 63}}
        self.assertEqual(r.call(msg, b'"' + b"a" * (MAX_PAYLOAD - 2) + b'"')["result"],
                         MAX_PAYLOAD - 2)

    def test_eof_exits_zero_quietly(self):
        r = self.loaded("def handler(e, c):\n    return 1\n")
        code, out, err = r.finish()
        self.assertEqual((code, out, err), (0, "", ""))

    def test_eof_exits_without_finalizing_the_interpreter(self):
        # Finalization would free every object, copying a template's shared heap in each
        # clone; the runner leaves with os._exit instead, after flushing what was printed.
        r = self.loaded("import atexit, sys\n"
                        "atexit.register(lambda: sys.stderr.write('finalized\\n'))\n"
                        "def handler(e, c):\n    print('printed'); return 1\n")
        self.assertEqual(r.invoke({})["result"], 1)
        code, out, err = r.finish()
        self.assertEqual(code, 0)
        self.assertIn("printed", err)
        self.assertNotIn("finalized", err)

    def test_eof_before_load_exits_zero(self):
        r = self.start()
        self.assertEqual(r.finish()[0], 0)

    def test_one_socket_both_ways_without_out_fd(self):
        r = self.start("--function", self.fn("def handler(e, c):\n    return e['n'] * 2\n"),
                       socket_mode=True)
        self.assertEqual(r.recv()["type"], "ready")
        for n in range(3):
            self.assertEqual(r.invoke({"n": n}, req_id=n)["result"], n * 2)
        self.assertEqual(r.finish()[0], 0)

    def test_out_fd_not_open_is_a_usage_error(self):
        r = self.start("--out-fd", "9")  # the pipes are wired to 3 and 4 only
        code, _, err = r.finish()
        self.assertEqual(code, 2)
        self.assertIn("channel fd 9", err)

    def test_eof_mid_frame_is_an_error(self):
        r = self.start()
        r.send_raw((100).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"{")
        code, _, err = r.finish()
        self.assertEqual(code, 1)
        self.assertIn("mid-frame", err)


class Channel(Runner):
    """The daemon's ends of an instance's channel: frames as with a Runner, no process."""

    def __init__(self, wfd, rfd):
        self.sock = None
        self.wfd, self.rfd = wfd, rfd


class ForkServerTest(RunnerCase):
    """--fork-fd: a function template. Once loaded it only forks instances, each answering on
    the fds its request carried; the module body runs once."""

    SOURCE = """\
        import os
        with open(%r, "a") as f:
            f.write("x")
        def handler(event, context):
            with open(%r) as f:
                return {"pid": os.getpid(), "imports": len(f.read())}
        """

    def template(self, source=None):
        self.mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(self.mine.close)
        count = os.path.join(self.tmp.name, "imports")
        r = self.start("--fork-fd", "6", extra={6: theirs.fileno()})
        theirs.close()
        loaded = r.call({"type": "load",
                         "function": self.fn(source or self.SOURCE % (count, count))})
        return r, loaded

    def answer(self, fd):
        self.assertTrue(select.select([fd], [], [], TIMEOUT)[0], "no answer")
        return os.read(fd, 256)

    def fork(self, procs_files=1):
        """Asks for an instance; returns (channel, answer, [what each procs file got])."""
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        log_r, log_w = os.pipe()
        ans_r, ans_w = os.pipe()
        # Files standing in for the leaf's cgroup.procs: the instance writes 0 to each.
        paths = [os.path.join(self.tmp.name, "procs%d-%d" % (i, req_w)) for i in range(procs_files)]
        procs = [os.open(p, os.O_WRONLY | os.O_CREAT, 0o600) for p in paths]
        socket.send_fds(self.mine, [b"f"], [req_r, rep_w, log_w, ans_w] + procs)
        for fd in [req_r, rep_w, log_w, ans_w] + procs:
            os.close(fd)
        answer = self.answer(ans_r)
        os.close(ans_r)
        inst = Channel(req_w, rep_r)
        self.addCleanup(inst.close)
        self.addCleanup(os.close, log_r)
        joined = []
        for p in paths:
            with open(p, "rb") as f:
                joined.append(f.read())
        return inst, answer, joined

    def test_instances_skip_the_import_and_are_separate_processes(self):
        r, loaded = self.template()
        self.assertEqual(loaded, {"type": "ready"})
        a, answer, joined = self.fork(procs_files=2)
        self.assertEqual(answer, b"k")
        self.assertEqual(joined, [b"0", b"0"])  # joined its leaf in every hierarchy
        b, _, _ = self.fork()
        ra, rb = a.invoke({})["result"], b.invoke({})["result"]
        self.assertEqual((ra["imports"], rb["imports"]), (1, 1))
        self.assertNotEqual(ra["pid"], rb["pid"])
        self.assertNotIn(r.proc.pid, (ra["pid"], rb["pid"]))
        # An instance whose channel closes exits; the template goes on forking.
        a.close()
        c, answer, _ = self.fork()
        self.assertEqual(answer, b"k")
        self.assertEqual(c.invoke({})["result"]["imports"], 1)
        # Once the daemon's end closes, the template exits cleanly.
        self.mine.close()
        self.assertEqual(r.finish()[0], 0)

    def test_a_request_short_of_fds_gets_no_instance_and_the_template_goes_on(self):
        self.template()
        ans_r, ans_w = os.pipe()
        socket.send_fds(self.mine, [b"f"], [ans_w])
        os.close(ans_w)
        # No instance, no answer: the only writer closed the pipe.
        self.assertTrue(select.select([ans_r], [], [], TIMEOUT)[0])
        self.assertEqual(os.read(ans_r, 16), b"")
        os.close(ans_r)
        inst, answer, _ = self.fork()
        self.assertEqual(answer, b"k")
        self.assertEqual(inst.invoke({})["result"]["imports"], 1)

    def test_a_template_that_failed_to_load_does_not_fork(self):
        r, loaded = self.template("def handler(:\n")
        self.assertEqual(loaded["type"], "load_error")
        # Still an ordinary runner on its channel, not a fork server.
        self.assertEqual(r.invoke({})["kind"], "not_loaded")


if __name__ == "__main__":
    unittest.main()
