#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/<target>/ from real inputs: the
built-in policies, the README's config, runner messages as runner.py
writes them. Run from the repo root after a protocol or format change;
the seeds are committed, CI only reads them."""
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz")
RID = "0f0f0f0f-000001"  # reply_fuzz.cpp's request id


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame(envelope, payload=b""):
    """The channel's frame: two big-endian lengths, the envelope, the payload."""
    if isinstance(envelope, str):
        envelope = envelope.encode()
    if isinstance(payload, str):
        payload = payload.encode()
    return struct.pack(">II", len(envelope), len(payload)) + envelope + payload


def reply_input(envelope, payload=b""):
    """reply_fuzz.cpp's input: a byte saying how much of the rest is the
    envelope (scaled to the input), then the envelope and the payload."""
    if isinstance(envelope, str):
        envelope = envelope.encode()
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(envelope) + len(payload)
    for b in range(256):
        if n == 0 or n * b // 255 == len(envelope):
            return bytes([b]) + envelope + payload
    raise ValueError("no cut byte for this split")


def ok(result):
    return ({"type": "result", "id": RID, "ok": True}, json.dumps(result) + "\n")


err = {"errorType": "ValueError", "errorMessage": "bad",
       "stackTrace": ["  File \"/var/task/f.py\", line 2, in handler"]}
replies = {
    "ok": ok({"hello": "you", "n": [1, 2.5, None]}),
    "proxy": ({"type": "result", "id": RID, "ok": True, "statusCode": 201,
               "headers": {"Content-Type": "text/plain", "X-A": "b"}}, "created"),
    "raised": ({"type": "result", "id": RID, "ok": False, "kind": "exception",
                "errorType": "ValueError", "errorMessage": "bad"}, json.dumps(err)),
    "bad_result": ({"type": "result", "id": RID, "ok": False, "kind": "bad_result",
                    "errorType": "Runtime.BadResult"},
                   json.dumps({"errorType": "Runtime.BadResult", "errorMessage": "not JSON"})),
    "bad_request": ({"type": "error", "kind": "bad_request", "errorMessage": "int too large"}, ""),
    "wrong_id": ({"type": "result", "id": "other", "ok": True}, "1\n"),
    "ready": ({"type": "ready"}, ""),
    "deep": ok(json.loads("[" * 200 + "1" + "]" * 200)),
    "unicode": ok("\U0001f600 caf\u00e9"),
    "not_json": ({"type": "result", "id": RID, "ok": True}, "{nope"),
}
for old in os.listdir(os.path.join(OUT, "reply")) if os.path.isdir(os.path.join(OUT, "reply")) else []:
    os.unlink(os.path.join(OUT, "reply", old))
for name, (env, payload) in replies.items():
    write("reply", name, reply_input(json.dumps(env), payload))

invoke = ('{"type":"invoke","id":"%s","context":{"function_name":"hello","function_version":"1",'
          '"memory_limit_mb":128,"request_id":"%s","deadline_ms":1764650000000}}'
          % (RID, RID))
# frame: first byte picks how the bytes are cut into reads.
write("frame", "invoke", b"\x07" + frame(invoke, '{"k":"v"}'))
write("frame", "replies", b"\x01" + b"".join(frame(json.dumps(e), p) for e, p in replies.values()))
write("frame", "empty_frames", b"\x00" + frame("") * 3)
write("frame", "partial", b"\x03" + frame(invoke, '{"k":"v"}')[:-5])
write("frame", "too_long", b"\x02" + struct.pack(">II", 2, (6 << 20) + 1) + b"{}")
write("frame", "envelope_too_long", b"\x02" + struct.pack(">II", (16 << 10) + 1, 0) + b"{}")
write("frame", "at_limit_header", b"\x05" + struct.pack(">II", 1, 6 << 20) + b"{")

for p in ("default", "strict"):
    with open(os.path.join(ROOT, "policies", p + ".toml"), "rb") as f:
        write("policy", p + ".toml", f.read())
write("policy", "minimal.toml",
      "[limits]\nmemory_mb = 128\nswap_mb = 0\npids = 64\ncpu_millicores = 1000\n"
      "tmpfs_mb = 64\nwall_ms = 3000\nnofile = 256\nfsize_mb = 64\n"
      "[seccomp]\ndefault_action = \"kill_process\"\n[seccomp.allow]\nio = [\"read\", \"write\"]\n")

with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
m = re.search(r"```toml\n(\[server\].*?)```", readme, re.S)
write("config", "readme.toml", m.group(1))
write("config", "empty.toml", "")
write("config", "listen_v6.toml", '[server]\nlisten = "[::1]:9000"\ntoken = "0123456789abcdef0123"\n'
      'rootless = true\n[pool]\nmemory_budget_mb = 1024\n')

for i, t in enumerate([
        "hello", "hello?name=you&n=1", "hello-world_2?memory=128M&timeout=3s",
        "fn?memory=1.5GiB&timeout=500ms&handler=main&policy=strict",
        "a%2Fb?x=%FF&y=%C3%A9&z=%00&k=1&k=2", "..?a+b=c+d&=&flag",
        "x?memory=1048576b&timeout=2m&q=%22%5C%7B%7D"]):
    write("names", "target%d" % i, t)

# http_fuzz.cpp: a first byte choosing the read size, then what a client sends.
for i, t in enumerate([
        "GET /fn/hello?name=you HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /fn/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
        "POST /fn/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2;a=b\r\n{}\r\n0\r\nX-T: v\r\n\r\n",
        "PROXY TCP4 192.0.2.7 127.0.0.1 5555 8080\r\nGET /healthz HTTP/1.1\r\nHost: h\r\n"
        "X-Forwarded-For: 198.51.100.1, 10.1.2.3\r\n\r\n",
        "PROXY TCP6 2001:db8::1 ::1 1 2\r\nPUT /functions/f?memory=64M HTTP/1.1\r\n"
        "Host: [::1]:8080\r\nAuthorization: Bearer abc\r\nExpect: 100-continue\r\n"
        "Content-Length: 5\r\n\r\nx = 1",
        "GET http://h/fn/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]):
    write("http", "request%d" % i, bytes([i * 3]) + t.encode())
