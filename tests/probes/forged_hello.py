# Writes, while its module is imported, a forged first frame on the runner's
# reply fd (4): an envelope whose fields have the wrong types. The host side
# must read it without throwing. Acts only where the runner's reply pipe is
# fd 4 (inside a sandbox or the runner's plain subprocess), nowhere else.
import json
import os
import stat

if not stat.S_ISFIFO(os.fstat(4).st_mode):
    raise SystemExit("forged_hello: fd 4 is not the runner's reply pipe; refusing")
envelope = json.dumps({"type": "load_error", "kind": "syntax", "line": "seven",
                       "errorType": 7, "errorMessage": ["not", "a", "string"]}).encode()
os.write(4, len(envelope).to_bytes(4, "big") + (0).to_bytes(4, "big") + envelope)


def handler(event, context):
    return "unreachable"
