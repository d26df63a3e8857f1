"""Reports this sandbox's oom_score_adj and whether it can lower it.
Passive apart from a write to its own /proc/self/oom_score_adj."""


def handler(event, context):
    with open("/proc/self/oom_score_adj") as f:
        adj = int(f.read())
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0")
        lower = "ok"
    except OSError as e:
        lower = e.strerror
    with open("/proc/self/oom_score_adj") as f:
        after = int(f.read())
    return {"adj": adj, "lower": lower, "after": after}
