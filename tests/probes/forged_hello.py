# Writes, while its module is imported, a forged first frame on the runner's
# reply fd (4): a load error whose envelope fields have the wrong types. The
# host side must read it without throwing, the fields as their defaults. Its
# payload is an error object, as the protocol requires: without one the
# frame would be a broken protocol, not a load error. Acts only where the
# runner's reply pipe is fd 4 (inside a sandbox or the runner's plain
# subprocess), nowhere else.
import json
import os
import stat

if not stat.S_ISFIFO(os.fstat(4).st_mode):
    raise SystemExit("forged_hello: fd 4 is not the runner's reply pipe; refusing")
envelope = json.dumps({"type": "load_error", "kind": "syntax", "line": "seven",
                       "errorType": 7, "errorMessage": ["not", "a", "string"]}).encode()
payload = json.dumps({"errorType": "SyntaxError", "errorMessage": "forged",
                      "stackTrace": []}).encode()
os.write(4, len(envelope).to_bytes(4, "big") + len(payload).to_bytes(4, "big") + envelope +
         payload)


def handler(event, context):
    return "unreachable"
