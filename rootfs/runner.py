"""nsbox in-sandbox runner: loads one function and serves invocations over a channel fd.

Run as: python3 -I -S /opt/nsbox/runner.py --fd 3 --out-fd 4 [--function PATH] [--handler NAME]

Requests arrive on --fd and replies leave on --out-fd: the two pipes of a sandbox's channel.
Without --out-fd, --fd is one bidirectional (socket) channel.

Protocol (both directions, docs/runner-protocol.md): an 8-byte header (two big-endian u32:
the envelope's length, the payload's length), the envelope (a small UTF-8 JSON object) and the
payload (raw bytes: the event, the source, the result, a response body). The host parses
only envelopes; payloads pass through it as bytes. See the message shapes next to each handler
below; the host's side, for nsbox run and the daemon alike, is rootfs/runner_client.cpp (frames:
sandbox/framing.cpp).

Cold start is benchmarked, so start-up imports only os and sys (already loaded by the
interpreter) and the C module _json: the json package itself costs ~8 ms because json.decoder
pulls in re, enum and collections, a third of the runner's start-up. traceback and time are
imported only on the paths that need them.

With the template factory this module's body runs once, in the template, as root and with the
host's view, before any sandbox exists (tools/nsbox_template.cpp); each sandbox then calls
run(). So the top level only defines: nothing there may read the environment, open files or
touch the host. The last statement must stay the `if __name__ == "__main__":` guard, which the
template drops.
"""

import os
import sys

HEADER = 8
MAX_ENVELOPE = 16 * 1024
MAX_PAYLOAD = 6 * 1024 * 1024
MAX_NESTING = 256  # the deepest envelope the daemon reads (runner_reply.hpp kMaxReplyNesting)
# Error summaries copied into envelopes (the full error is in the payload): the daemon logs
# them and decides on them without reading the payload.
MAX_ERROR_TYPE = 128
MAX_ERROR_SUMMARY = 1024
# What get_remaining_time_in_millis() returns when the caller set no deadline: large enough
# that "have I got time for X?" checks pass, small enough to fit a C int like Lambda's.
NO_DEADLINE_MS = 2**31 - 1
EXIT_BAD_REQUEST = 2
EXIT_USAGE = 2

# Frames whose code lives in this file are the runner's, not the function's; they are cut from
# reported stack traces so users see only their own code.
RUNNER_FILE = __file__


def _make_codec():
    """JSON loads/dumps on json's own C accelerator, without importing the json package.

    Same output as json.dumps(o, allow_nan=False, separators=(",", ":")) (compact, as the
    daemon's own JSON) and the same parsing as json.loads, except
    that NaN/Infinity are rejected on input (we could not echo them back) and the input must be
    UTF-8. Falls back to the json package if the accelerator is missing.
    """
    def no_constant(name):
        raise ValueError("invalid JSON constant %s" % name)

    def default(o):
        raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)

    try:
        import _json
    except ImportError:
        import json

        def loads(data):
            return json.loads(data.decode("utf-8"), parse_constant=no_constant)

        def dumps(o):
            return json.dumps(o, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        return loads, dumps

    class ScannerContext:  # the attributes _json.make_scanner reads from json.JSONDecoder
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = staticmethod(no_constant)

    scan = _json.make_scanner(ScannerContext())
    ws = " \t\n\r"

    def loads(data):
        text = data.decode("utf-8")
        n, i = len(text), 0
        while i < n and text[i] in ws:
            i += 1
        try:
            obj, end = scan(text, i)
        except StopIteration as e:
            raise ValueError("expecting value at char %d" % e.value) from None
        except SystemError:
            # _json raises its syntax errors as json.decoder.JSONDecodeError, looked up only in
            # sys.modules, and fails with SystemError when the json package was never imported.
            # Bad frames are rare, so only they pay for json, to get its precise message.
            import json
            json.loads(text, parse_constant=no_constant)
            raise ValueError("invalid JSON") from None
        while end < n and text[end] in ws:
            end += 1
        if end != n:
            raise ValueError("extra data at char %d" % end)
        return obj

    def dumps(o):
        # A fresh encoder per call: its circular-reference markers dict must start empty.
        # UTF-8 out, not \\u escapes: a lone surrogate (e.g. from surrogateescape) then fails
        # to encode here and becomes a bad_result, instead of a frame the gateway cannot parse.
        enc = _json.make_encoder({}, default, _json.encode_basestring, None,
                                 ":", ",", False, False, False)
        return "".join(enc(o, 0))
    return loads, dumps


json_loads, json_dumps = _make_codec()


class ProtocolError(Exception):
    """The peer broke framing; the stream cannot be resynchronised, so the runner must exit."""


class FrameTooLarge(ProtocolError):
    """Told apart because the peer gets a bad_request reply before we exit."""


class UsageError(Exception):
    pass


class Channel:
    def __init__(self, fd, out_fd=None):
        self.fd = fd
        self.out_fd = fd if out_fd is None else out_fd
        self.buf = bytearray()
        self.poller = None
        if self.out_fd == fd:
            # One socket both ways. A unix socket wakes every task asleep on it when the peer
            # *reads* what we sent (to say "writable"), and a task blocked in read() cannot
            # tell that from "readable": it would wake twice per request. poll() wakes only
            # for what it asked for. Pipes (the sandbox's channel) need none of this.
            import select  # built into Debian's python3
            self.poller = select.poll()
            self.poller.register(fd, select.POLLIN)
        # Fail now, not at the first request, if an fd is not open.
        for f in (fd, self.out_fd):
            try:
                os.fstat(f)
            except OSError as e:
                raise UsageError("channel fd %d: %s" % (f, e.strerror)) from None

    def _fill(self, n, at_boundary):
        # Reads whatever has arrived (up to 64 KiB at a time) until n bytes are buffered: a
        # frame usually arrives whole, so one read per request instead of two.
        buf = self.buf
        while len(buf) < n:
            if self.poller is not None:
                self.poller.poll()  # readable, or hung up: read then tells which
            chunk = os.read(self.fd, max(65536, n - len(buf)))
            if not chunk:
                if at_boundary and not buf:
                    return False
                raise ProtocolError("channel closed mid-frame (%d of %d bytes)" % (len(buf), n))
            buf += chunk
        return True

    def read(self):
        """Returns (envelope bytes, payload bytes), or None on a clean EOF between frames."""
        if not self._fill(HEADER, at_boundary=True):
            return None
        n_env = int.from_bytes(self.buf[:4], "big")
        n_pay = int.from_bytes(self.buf[4:8], "big")
        if n_env > MAX_ENVELOPE:
            raise FrameTooLarge("envelope of %d bytes exceeds the %d-byte limit"
                                % (n_env, MAX_ENVELOPE))
        if n_pay > MAX_PAYLOAD:
            raise FrameTooLarge("payload of %d bytes exceeds the %d-byte limit"
                                % (n_pay, MAX_PAYLOAD))
        end = HEADER + n_env + n_pay
        self._fill(end, at_boundary=False)
        envelope = bytes(self.buf[HEADER:HEADER + n_env])
        payload = bytes(self.buf[HEADER + n_env:end])
        del self.buf[:end]
        return envelope, payload

    def send_frame(self, envelope, payload=b""):
        if len(envelope) > MAX_ENVELOPE:
            # Only a bug of ours gets here (results check their own envelopes): say so in a
            # frame the daemon can read rather than send one it must refuse.
            envelope = encode_envelope({
                "type": "error", "kind": "internal",
                "errorMessage": "reply envelope of %d bytes exceeds the limit" % len(envelope)})
            payload = b""
        head = len(envelope).to_bytes(4, "big") + len(payload).to_bytes(4, "big") + envelope
        if len(payload) <= 65536:
            # One write, so that a small reply is one wake-up for the reader.
            data = memoryview(head + payload)
            while data:
                data = data[os.write(self.out_fd, data):]
            return
        # A large payload is written from where it is, not copied behind the header.
        done = os.writev(self.out_fd, [head, payload])
        for part in (head, payload):
            if done >= len(part):
                done -= len(part)
                continue
            data = memoryview(part)[done:]
            done = 0
            while data:
                data = data[os.write(self.out_fd, data):]

    def send(self, msg):
        """A reply as built by the handlers: a dict (see _split) or (envelope, payload)."""
        if isinstance(msg, tuple):
            envelope, payload = msg
            if isinstance(envelope, dict):
                envelope = encode_envelope(envelope)
            self.send_frame(envelope, payload)
        else:
            self.send_frame(*_split(msg))


def encode_envelope(msg):
    # surrogatepass-free: replace what cannot be UTF-8 (an exception message can hold
    # anything) rather than die on it.
    return json_dumps(msg).encode("utf-8", "replace")


def _clip(value, limit):
    return value if not isinstance(value, str) or len(value) <= limit else value[:limit] + "..."


def _split(msg):
    """Turns a handler's reply dict into (envelope bytes, payload bytes).

    Errors carry text of any size (a message, a stack trace): the full error object goes in
    the payload, which the daemon forwards as it is, and the envelope keeps a clipped summary
    (errorType, and errorMessage for load errors) that the daemon may read.
    """
    kind = msg.get("type")
    if kind == "load_error":
        error = {"errorType": msg["errorType"], "errorMessage": msg["errorMessage"],
                 "stackTrace": msg["stackTrace"]}
        envelope = {k: v for k, v in msg.items() if k not in error}
        envelope["errorType"] = _clip(msg["errorType"], MAX_ERROR_TYPE)
        envelope["errorMessage"] = _clip(msg["errorMessage"], MAX_ERROR_SUMMARY)
        return encode_envelope(envelope), _error_payload(error)
    if kind == "result" and msg.get("ok") is False:
        error = msg["error"]
        envelope = {k: v for k, v in msg.items() if k != "error"}
        envelope["errorType"] = _clip(error.get("errorType"), MAX_ERROR_TYPE)
        return encode_envelope(envelope), _error_payload(error)
    return encode_envelope(msg), b""


def _error_payload(error):
    data = encode_envelope(error) + b"\n"
    if len(data) > MAX_PAYLOAD:
        # An exception message of megabytes: keep its start, and the error still fits.
        error = dict(error, errorMessage=_clip(error["errorMessage"], 1 << 20), stackTrace=[])
        data = encode_envelope(error) + b"\n"
    return data


# Sources that came in load frames rather than from files: traceback reads
# lines through linecache, which would otherwise find no file.
_SOURCES = {}


def _user_frames(tb):
    import traceback
    if _SOURCES:
        import linecache
        for path, src in _SOURCES.items():
            text = src.decode("utf-8", "replace")
            linecache.cache[path] = (len(text), None, text.splitlines(True), path)
    frames = [f for f in traceback.extract_tb(tb) if f.filename != RUNNER_FILE]
    return traceback.format_list(frames)


def _json_depth(data):
    """How deep arrays and objects nest in encoded JSON (bytes), strings aside."""
    depth = most = 0
    in_string = escaped = False
    for b in data:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            most = max(most, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return most


def _wide_int(v, depth=0):
    """Whether v holds an int the daemon's JSON reading of an envelope cannot take: beyond
    64 bits and beyond a double's range (its fallback). Bounded like the envelope itself."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v.bit_length() > 1023  # past 2**1023: may round to infinity
    if depth > 300:  # deeper than the daemon reads an envelope (256): refused there anyway
        return False
    if isinstance(v, dict):
        return any(_wide_int(x, depth + 1) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_wide_int(x, depth + 1) for x in v)
    return False


def _safe_str(e):
    # A user exception's __str__ can itself raise; the report must still go out.
    try:
        return str(e)
    except BaseException:
        return "<unprintable %s>" % type(e).__name__


def _error_body(e):
    if isinstance(e, MemoryError):
        # The traceback's frames still hold what the function allocated: free them before
        # anything else allocates (formatting a trace imports modules and would fail again).
        tb, e.__traceback__ = e.__traceback__, None
        while tb is not None:
            try:
                tb.tb_frame.clear()
            except RuntimeError:  # a frame still executing (ours)
                pass
            tb = tb.tb_next
        return {"errorType": "MemoryError", "errorMessage": _safe_str(e), "stackTrace": []}
    return {
        "errorType": type(e).__name__,
        "errorMessage": _safe_str(e),
        "stackTrace": _user_frames(e.__traceback__),
    }


def _load_error(kind, error_type, message, stack=(), **extra):
    msg = {"type": "load_error", "kind": kind, "errorType": error_type,
           "errorMessage": message, "stackTrace": list(stack)}
    msg.update(extra)
    return msg


class Context:
    """The Lambda context object, with the attribute names Lambda handlers expect."""

    __slots__ = ("function_name", "function_version", "memory_limit_in_mb", "aws_request_id",
                 "invoked_function_arn", "log_group_name", "log_stream_name", "identity",
                 "client_context", "_deadline_ms")

    def __init__(self, raw, default_name):
        if not isinstance(raw, dict):
            raw = {}
        name = raw.get("function_name") or default_name
        self.function_name = name
        self.function_version = raw.get("function_version", "$LATEST")
        self.memory_limit_in_mb = raw.get("memory_limit_mb")
        self.aws_request_id = raw.get("request_id", "")
        self.invoked_function_arn = raw.get("invoked_function_arn", "")
        self.log_group_name = raw.get("log_group_name", "/aws/lambda/" + str(name))
        self.log_stream_name = raw.get("log_stream_name", "nsbox")
        self.identity = None
        self.client_context = None
        self._deadline_ms = raw.get("deadline_ms")

    def get_remaining_time_in_millis(self):
        if not isinstance(self._deadline_ms, (int, float)):
            return NO_DEADLINE_MS
        import time
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self):
        return "<Context function_name=%r aws_request_id=%r>" % (
            self.function_name, self.aws_request_id)


class Runner:
    def __init__(self, chan):
        self.chan = chan
        self.handler = None
        self.function_path = None
        self.function_name = None

    # -- load -----------------------------------------------------------------------------
    # reply: {"type":"ready"} or {"type":"load_error","kind":..,"errorType":..,
    #        "errorMessage":..,"stackTrace":[..]} (+ "line" for kind "syntax")

    def load(self, path, handler_name, source=None):
        if self.handler is not None:
            # Refused before reading the file: a second function's module body must never run
            # in a sandbox that already serves (and may have cached state for) another one.
            return _load_error("already_loaded", "RuntimeError",
                               "function %s is already loaded" % self.function_path)
        if not isinstance(path, str) or not path:
            return _load_error("not_found", "ValueError", "no function path given")
        if not isinstance(handler_name, str) or not handler_name:
            handler_name = "handler"
        base = os.path.basename(path)
        stem = base[:-3] if base.endswith(".py") else base
        if source:
            # The pool sends the code as the load frame's payload: a blank sandbox has no code
            # mounted, and the file name only labels tracebacks.
            _SOURCES[path] = source
        else:
            try:
                with open(path, "rb") as f:
                    source = f.read()
            except OSError as e:
                return _load_error("not_found", type(e).__name__,
                                   "cannot read %s: %s" % (path, e.strerror or e))
        try:
            # Bytes, not str, so that a PEP 263 coding cookie in the file is honoured.
            code = compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as e:
            # str(SyntaxError) already reads "invalid syntax (fn.py, line 3)".
            stack = []
            if e.lineno is not None:
                entry = '  File "%s", line %d\n' % (e.filename or path, e.lineno)
                if e.text:
                    entry += "    %s\n" % e.text.strip()
                stack.append(entry)
            return _load_error("syntax", type(e).__name__, _safe_str(e), stack, line=e.lineno)
        except ValueError as e:
            # e.g. NUL bytes in the source: no line to point at.
            return _load_error("syntax", type(e).__name__,
                               "%s (%s)" % (_safe_str(e), base), line=None)

        # The daemon names the file after the function, so a function called "socket",
        # "traceback" or "time" must not take that module's place: the runner's own later
        # imports (and the function's) would get the function. Such a module is registered
        # under a name of its own, and its directory goes last on the path, not first.
        key = stem
        if stem in sys.modules or stem in getattr(sys, "stdlib_module_names", ()):
            key = "__nsbox_function__"
        module = type(sys)(key)
        module.__file__ = path
        directory = os.path.dirname(os.path.abspath(path))
        if directory not in sys.path:
            if key == stem:
                sys.path.insert(0, directory)
            else:
                sys.path.append(directory)
        # Registered before the body runs, as the import system does, so that circular imports
        # of the function's own module see the half-built module rather than a second copy.
        previous = sys.modules.get(key)
        sys.modules[key] = module
        pid = os.getpid()
        try:
            exec(code, module.__dict__)
        except BaseException as e:
            _leave_if_forked(pid)
            # BaseException: a module body calling sys.exit() is a broken function, not a
            # request to stop the runner.
            if previous is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = previous
            body = _error_body(e)
            return _load_error("import", body["errorType"], body["errorMessage"],
                               body["stackTrace"])
        _leave_if_forked(pid)

        handler = getattr(module, handler_name, None)
        if handler is None:
            return _load_error("missing_handler", "AttributeError",
                               "handler %r not found in %s" % (handler_name, base))
        if not callable(handler):
            return _load_error("missing_handler", "TypeError",
                               "handler %r in %s is not callable" % (handler_name, base))
        self.handler = handler
        self.function_path = path
        self.function_name = stem
        return {"type": "ready"}

    # -- check ------------------------------------------------------------------------------
    # Compiles without running anything: the daemon's deploy-time syntax check, done inside a
    # sandbox because compiling hostile source can exhaust memory or time.
    # reply: {"type":"checked"} or a load_error of kind "syntax"

    def check(self, path, source):
        if not isinstance(path, str):
            return _bad_request("check needs a \"function\" string")
        try:
            compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as e:
            return _load_error("syntax", type(e).__name__, _safe_str(e), line=e.lineno)
        except ValueError as e:
            return _load_error("syntax", type(e).__name__, _safe_str(e), line=None)
        return {"type": "checked"}

    # -- invoke ---------------------------------------------------------------------------
    # request: {"type":"invoke","id":ID,"context":{..},"http":true?} + the event's JSON text
    # reply:   {"type":"result","id":ID,"ok":true} + the result's JSON text and "\n"
    #    or, with "http" and a result dict holding "statusCode" (the API-gateway proxy shape):
    #          {"type":"result","id":ID,"ok":true,"statusCode":N,"headers":{..}} + the body
    #    or    {"type":"result","id":ID,"ok":false,"kind":"exception"|"bad_result",
    #           "errorType":..} + {"errorType":..,"errorMessage":..,"stackTrace":[..]}
    #    or    {"type":"error","kind":"bad_request","id":ID,..} for an event we cannot decode

    def invoke(self, msg, payload):
        req_id = msg.get("id")
        event = None
        if payload:
            try:
                event = json_loads(payload)
            except (ValueError, RecursionError) as e:
                reply = _bad_request("the event is not JSON: %s" % _safe_str(e))
                reply["id"] = req_id
                return reply
        ctx = Context(msg.get("context"), self.function_name)
        pid = os.getpid()
        try:
            result = self.handler(event, ctx)
        except BaseException as e:
            _leave_if_forked(pid)
            # SystemExit and KeyboardInterrupt included: the sandbox stays alive for the next
            # request and the caller learns what the function did.
            return self._result_error(req_id, "exception", _error_body(e))
        finally:
            _flush_logs()
        _leave_if_forked(pid)

        head = {"type": "result", "id": req_id, "ok": True}
        try:
            if msg.get("http") is True and isinstance(result, dict) and "statusCode" in result:
                return self._proxy(req_id, head, result)
            data = json_dumps(result).encode("utf-8") + b"\n"  # strict: no lone surrogates
        except BaseException as e:  # noqa: BLE001 - a dict subclass's items() runs user code
            # As for the handler itself: whatever the function's code raises (SystemExit
            # included) is its answer, and the sandbox serves on.
            return self._not_serialisable(req_id, e)
        finally:
            # That code may fork too: only the runner answers, whichever way it ends.
            _leave_if_forked(pid)
        if len(data) > MAX_PAYLOAD:
            return self._too_large(req_id, "result", len(data) - 1)
        # Already encoded: the result travels as the payload, untouched by the daemon.
        return head, data

    def _proxy(self, req_id, head, result):
        """statusCode and headers go in the envelope, the body as the payload: the daemon
        checks the first two and copies the body into the HTTP response."""
        head["statusCode"] = result["statusCode"]
        headers = result.get("headers")
        if isinstance(headers, dict):
            # A header's int past 64 bits would reach the daemon as a double and be sent
            # rounded: its digits go instead, as the header would hold them. From 2**1023
            # it is refused below, as anywhere in the envelope.
            head["headers"] = {k: str(v) if type(v) is int and 63 < v.bit_length() <= 1023
                               else v for k, v in headers.items()}
        envelope = json_dumps(head).encode("utf-8")
        if len(envelope) > MAX_ENVELOPE:
            return self._result_error(req_id, "bad_result", {
                "errorType": "ValueError",
                "errorMessage": "statusCode and headers are too large: %d bytes of JSON, "
                                "limit %d" % (len(envelope), MAX_ENVELOPE),
                "stackTrace": []})
        # The daemon reads the envelope as JSON at most 256 levels deep, its numbers as
        # 64-bit ints or doubles: more is the function's mistake, not a frame the daemon
        # cannot parse. After the encoding, which refused cycles, and within the
        # envelope's size.
        if (envelope.count(b"[") + envelope.count(b"{") > MAX_NESTING
                and _json_depth(envelope) > MAX_NESTING):
            return self._result_error(req_id, "bad_result", {
                "errorType": "ValueError",
                "errorMessage": "statusCode and headers nest deeper than %d levels of arrays "
                                "and objects" % MAX_NESTING,
                "stackTrace": []})
        if _wide_int(head.get("statusCode")) or _wide_int(head.get("headers")):
            return self._result_error(req_id, "bad_result", {
                "errorType": "ValueError",
                "errorMessage": "statusCode and headers may hold no integer of 2**1023 (about "
                                "9e307) or more; send it as a string",
                "stackTrace": []})
        if "body" not in result:
            body = b""
        elif isinstance(result["body"], str):
            body = result["body"]
            if result.get("isBase64Encoded") is True:
                import binascii  # built in; only base64 bodies pay for it
                try:
                    body = binascii.a2b_base64(body.encode("ascii"), strict_mode=True)
                except (ValueError, binascii.Error) as e:
                    return self._result_error(req_id, "bad_result", {
                        "errorType": "ValueError",
                        "errorMessage": "isBase64Encoded is true but the body is not "
                                        "base64: %s" % _safe_str(e),
                        "stackTrace": []})
            else:
                body = body.encode("utf-8")
        else:
            body = json_dumps(result["body"]).encode("utf-8")
        if len(body) > MAX_PAYLOAD:
            return self._too_large(req_id, "body", len(body))
        return envelope, body

    def _not_serialisable(self, req_id, e):
        return self._result_error(req_id, "bad_result", {
            "errorType": type(e).__name__,
            "errorMessage": "result is not JSON serialisable: %s" % _safe_str(e),
            "stackTrace": [],
        })

    def _too_large(self, req_id, what, n):
        return self._result_error(req_id, "bad_result", {
            "errorType": "ValueError",
            "errorMessage": "%s is too large: %d bytes, limit %d" % (what, n, MAX_PAYLOAD),
            "stackTrace": [],
        })

    def _result_error(self, req_id, kind, body):
        return {"type": "result", "id": req_id, "ok": False, "kind": kind, "error": body}

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, envelope, payload):
        try:
            msg = json_loads(envelope)
        except (ValueError, RecursionError) as e:
            return _bad_request("envelope is not JSON: %s" % _safe_str(e))
        if not isinstance(msg, dict):
            return _bad_request("envelope must be a JSON object")
        kind = msg.get("type")
        if kind == "invoke":
            if self.handler is None:
                reply = {"type": "error", "kind": "not_loaded",
                         "errorMessage": "invoke before a function was loaded"}
                if "id" in msg:
                    reply["id"] = msg["id"]
                return reply
            return self.invoke(msg, payload)
        if kind == "check":
            return self.check(msg.get("function"), payload)
        if kind == "load":
            return self.load(msg.get("function"), msg.get("handler", "handler"), payload)
        return _bad_request("unknown frame type %r" % (_clip(kind, 64),))


def _leave_if_forked(pid):
    """Ends a child the function forked that came back into the runner (returned or raised
    out of the handler or the module body): only the runner answers on the channel it shares
    with its children, and a second answer would be taken for the next request's."""
    if os.getpid() != pid:
        _flush_logs()
        os._exit(0)


def _bad_request(message):
    return {"type": "error", "kind": "bad_request", "errorMessage": message}


def _flush_logs():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _serve_forks(fd):
    """A function template's life once its function is loaded (docs/architecture.md §15).

    Each request on the fork socket carries an instance's request pipe, reply pipe and log,
    an answer pipe, and the files through which a process joins the instance's join cgroup
    leaf (v1 tasks, v2 cgroup.procs). The template forks; the child joins the leaf (writes 0
    to each), puts the pipes at 3, 4 and 2 (and 1), answers "k" and returns, to serve
    requests with the function already imported. The
    template answers "e:<why>" when it cannot fork, and exits when the daemon closes the
    socket; it never returns.
    """
    import array
    import signal
    import socket
    # Before the first instance: each runs as our uid in our PID namespace and could open
    # /proc/<us>/mem and write into every later instance (a request outliving its sandbox).
    # Instances inherit it, so neither can they write each other's. Without it, no instance.
    try:
        _give_up_dumpable()
    except Exception as e:  # ctypes missing or replaced by the module body: no instance either
        sys.stderr.write("runner: function template: cannot make itself non-dumpable, so its "
                         "instances could write its memory; not forking any: %s\n" % e)
        _flush_logs()
        os._exit(1)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fd)
    # Nobody here waits for the instances: the kernel reaps them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    space = socket.CMSG_SPACE(16 * array.array("i").itemsize)
    while True:
        try:
            msg, ancdata, _flags, _addr = sock.recvmsg(16, space)
        except InterruptedError:
            continue
        fds = array.array("i")
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        fds = list(fds)
        if not msg and not fds:
            os._exit(0)  # the daemon is gone, or destroyed us
        if len(fds) < 5:
            for f in fds:
                os.close(f)
            continue  # nowhere to answer: the daemon's wait times out
        chan_in, chan_out, log, answer, procs = fds[0], fds[1], fds[2], fds[3], fds[4:]
        try:
            pid = os.fork()
        except OSError as e:
            _answer(answer, "e:fork: %s" % e.strerror)
            for f in fds:
                os.close(f)
            continue
        if pid:
            for f in fds:
                os.close(f)
            continue
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            for f in procs:
                os.write(f, b"0")
        except OSError as e:
            _answer(answer, "e:joining the cgroup leaf: %s" % e.strerror)
            os._exit(1)
        os.dup2(chan_in, 3)
        os.dup2(chan_out, 4)
        os.dup2(log, 2)
        os.dup2(2, 1)
        _answer(answer, "k")
        for f in fds:
            if f > 4:
                os.close(f)
        return


def _give_up_dumpable():
    """prctl(PR_SET_DUMPABLE, 0), which every nsbox seccomp filter allows (Python has no
    binding of its own). ctypes costs ~1 ms to import, once per function template."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_dumpable = 4
    zero = ctypes.c_ulong(0)
    if libc.prctl(ctypes.c_int(pr_set_dumpable), zero, zero, zero, zero) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_DUMPABLE, 0): " + os.strerror(err))
    # Whether it took. PR_GET_DUMPABLE where allowed (outside a sandbox); in one, where the
    # filter refuses it, by /proc/self/mem's owner: a non-dumpable process's entries belong
    # to its user namespace's root, not to its own uid (which there is never 0).
    pr_get_dumpable = 3
    got = libc.prctl(ctypes.c_int(pr_get_dumpable), zero, zero, zero, zero)
    if got > 0 or (got < 0 and os.getuid() != 0 and
                   os.stat("/proc/self/mem").st_uid == os.getuid()):
        raise OSError(0, "prctl(PR_SET_DUMPABLE, 0) returned 0, yet this process is dumpable")


def _answer(fd, text):
    try:
        os.write(fd, text.encode("utf-8", "replace")[:255])
    except OSError:
        pass


def _parse_args(argv):
    # Hand-rolled rather than argparse: argparse alone costs several ms of cold start.
    opts = {"--fd": "3", "--out-fd": None, "--function": None, "--handler": "handler",
            "--fork-fd": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if "=" in arg and arg.split("=", 1)[0] in opts:
            key, value = arg.split("=", 1)
        elif arg in opts and i + 1 < len(argv):
            key, value = arg, argv[i + 1]
            i += 1
        else:
            raise UsageError("bad argument %r (usage: --fd N [--out-fd M] [--function PATH] "
                             "[--handler NAME] [--fork-fd K])" % arg)
        opts[key] = value
        i += 1
    fds = []
    for key in ("--fd", "--out-fd", "--fork-fd"):
        if opts[key] is None:
            fds.append(None)
            continue
        try:
            fds.append(int(opts[key]))
        except ValueError:
            raise UsageError("%s wants a number, got %r" % (key, opts[key]))
    return fds[0], fds[1], opts["--function"], opts["--handler"], fds[2]


def main(argv):
    # Whatever the function prints — including C extensions writing to fd 1 — must land in the
    # logs, never in the result channel; so fd 1 becomes stderr before any user code runs.
    os.dup2(2, 1)
    try:
        # Line buffering keeps print() output interleaved with stderr output in order.
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass
    try:
        fd, out_fd, function, handler, fork_fd = _parse_args(argv)
    except UsageError as e:
        sys.stderr.write("runner: %s\n" % e)
        return EXIT_USAGE
    try:
        chan = Channel(fd, out_fd)
    except UsageError as e:
        sys.stderr.write("runner: %s\n" % e)
        return EXIT_USAGE

    runner = Runner(chan)
    try:
        if function is not None:
            chan.send(runner.load(function, handler))
            _flush_logs()
        while True:
            try:
                frame = chan.read()
            except FrameTooLarge as e:
                chan.send(_bad_request(str(e)))
                sys.stderr.write("runner: %s\n" % e)
                return EXIT_BAD_REQUEST
            except ProtocolError as e:
                sys.stderr.write("runner: %s\n" % e)
                return 1
            if frame is None:
                return 0
            chan.send(runner.handle(*frame))
            if fork_fd is not None and runner.handler is not None:
                # A function template: loaded, and no request has run. Returns only in an
                # instance, which serves its own channel from here on.
                _flush_logs()
                _serve_forks(fork_fd)
                fork_fd = None
    except OSError as e:
        # The peer vanished or the fd broke; there is nobody left to report to but the log.
        sys.stderr.write("runner: channel: %s\n" % e)
        return 1
    finally:
        _flush_logs()


def run(argv, leave=os._exit):
    """main(), then out at once with its status, through leave.

    os._exit, not sys.exit: the interpreter's finalization frees every object, which in a
    sandbox cloned from a template writes to (and so copies) most of the template's shared
    heap, page by page: tens of milliseconds of CPU and megabytes per sandbox, paid by every
    runner the daemon drops at once when it stops. Nothing is lost by skipping it: the
    sandbox, its files and its processes are destroyed next. A function's atexit hooks do
    not run, as in AWS Lambda, whose environments are frozen and then killed. A template
    passes its own leave, which flushes libc's buffers first (Python cannot reach them)."""
    code = main(argv)
    _flush_logs()
    leave(code)


if __name__ == "__main__":
    run(sys.argv[1:])
