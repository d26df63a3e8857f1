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


def frame(payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return struct.pack(">I", len(payload)) + payload


replies = {
    "ok": {"type": "result", "id": RID, "ok": True, "result": {"hello": "you", "n": [1, 2.5, None]}},
    "proxy": {"type": "result", "id": RID, "ok": True,
              "result": {"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-A": "b"},
                         "body": "created"}},
    "raised": {"type": "result", "id": RID, "ok": False, "kind": "exception",
               "error": {"errorType": "ValueError", "errorMessage": "bad",
                         "stackTrace": ["  File \"/var/task/f.py\", line 2, in handler"]}},
    "bad_result": {"type": "result", "id": RID, "ok": False, "kind": "bad_result",
                   "error": {"errorType": "Runtime.BadResult", "errorMessage": "not JSON"}},
    "bad_request": {"type": "error", "kind": "bad_request", "errorMessage": "int too large"},
    "not_loaded": {"type": "error", "kind": "not_loaded", "errorMessage": "no function"},
    "wrong_id": {"type": "result", "id": "other", "ok": True, "result": 1},
    "ready": {"type": "ready"},
    "load_error": {"type": "load_error", "kind": "syntax", "errorType": "SyntaxError",
                   "errorMessage": "invalid syntax", "line": 3, "stackTrace": []},
}
for name, r in replies.items():
    write("reply", name + ".json", json.dumps(r))
write("reply", "deep.json", '{"type":"result","id":"%s","ok":true,"result":%s1%s}'
      % (RID, "[" * 255, "]" * 255))
write("reply", "unicode.json", '{"type":"result","id":"%s","ok":true,"result":"\\ud83d\\ude00 caf\u00e9"}' % RID)

invoke = ('{"type":"invoke","id":"%s","context":{"function_name":"hello","function_version":"1",'
          '"memory_limit_mb":128,"request_id":"%s","deadline_ms":1764650000000},"event":{"k":"v"}}'
          % (RID, RID))
# frame: first byte picks how the bytes are cut into reads.
write("frame", "invoke", b"\x07" + frame(invoke))
write("frame", "replies", b"\x01" + b"".join(frame(json.dumps(r)) for r in replies.values()))
write("frame", "empty_frames", b"\x00" + frame("") * 3)
write("frame", "partial", b"\x03" + frame(invoke)[:-5])
write("frame", "too_long", b"\x02" + struct.pack(">I", (6 << 20) + 1) + b"{}")
write("frame", "at_limit_header", b"\x05" + struct.pack(">I", 6 << 20) + b"{")

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
