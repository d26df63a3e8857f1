# Writes, from inside the handler, a reply frame of its own on the runner's
# reply fd (4) before the runner's answer, as event["forge"] says:
#   other_id   a successful result for another request id
#   not_json   a successful result for this request whose payload is not JSON
#   oversized  a header announcing a payload over the 6 MiB limit
# then sleeps, so the host can only have reacted to the forged frame. Acts
# only where the runner's reply pipe is fd 4 (inside a sandbox or the
# runner's plain subprocess), nowhere else.
import os
import stat
import time

MAX_PAYLOAD = 6 * 1024 * 1024


def frame(envelope, payload):
    return len(envelope).to_bytes(4, "big") + len(payload).to_bytes(4, "big") + envelope + payload


def handler(event, context):
    if not stat.S_ISFIFO(os.fstat(4).st_mode):
        raise SystemExit("forged_reply: fd 4 is not the runner's reply pipe; refusing")
    forge = event.get("forge")
    if forge == "other_id":
        data = frame(b'{"type":"result","id":"not-this-request","ok":true}', b'"forged"\n')
    elif forge == "not_json":
        envelope = b'{"type":"result","id":"' + context.aws_request_id.encode() + b'","ok":true}'
        data = frame(envelope, b'{"a": \xff}\n')
    elif forge == "oversized":
        data = (2).to_bytes(4, "big") + (MAX_PAYLOAD + 1).to_bytes(4, "big") + b"{}"
    else:
        raise ValueError("unknown forge %r" % (forge,))
    os.write(4, data)
    time.sleep(30)
    return "unreachable"
