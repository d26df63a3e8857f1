"""Reports what the sandbox looks like from inside. Passive: reads only."""
import os
import socket


def _status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def _host_uid(uid):
    # The kernel's own answer: which host uid our uid maps to.
    with open("/proc/self/uid_map") as f:
        for line in f:
            inside, outside, count = (int(x) for x in line.split())
            if inside <= uid < inside + count:
                return outside + (uid - inside)
    return None


def _error(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return e.strerror


def _root_mount():
    # The last mount on "/" in mountinfo is the one the sandbox sees.
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ")
            if left.split()[4] == "/":
                found = {"options": left.split()[5].split(","), "fs": right.split()[0]}
    return found


def handler(event, context):
    st = _status()
    r = {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "uid": os.getuid(),
        "host_uid": _host_uid(os.getuid()),
        "CapEff": st["CapEff"],
        "CapBnd": st["CapBnd"],
        "CapPrm": st["CapPrm"],
        "CapAmb": st["CapAmb"],
        "Seccomp": st["Seccomp"],
        "NoNewPrivs": st["NoNewPrivs"],
        "Groups": st["Groups"],
    }
    with open("/proc/net/dev") as f:
        r["ifaces"] = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    r["write_root"] = _error(lambda: open("/nsbox-probe", "w"))
    r["write_code"] = _error(lambda: open(__file__, "a"))
    r["code_dir"] = sorted(os.listdir(os.path.dirname(__file__)))
    r["write_tmp"] = _error(lambda: open("/tmp/probe", "w").write("x"))
    r["write_shm"] = _error(lambda: open("/dev/shm/probe", "w").write("x"))
    r["write_dev"] = _error(lambda: open("/dev/probe", "w"))
    # The host's device inodes: writable as devices, not as files.
    r["dev_null_utime"] = _error(lambda: os.utime("/dev/null"))
    r["dev_null_write"] = _error(lambda: open("/dev/null", "w").write("x"))
    r["proc_mask_utime"] = _error(lambda: os.utime("/proc/interrupts"))  # /dev/null's bind
    r["sticky"] = {d: oct(os.stat(d).st_mode & 0o7777) for d in ("/tmp", "/dev/shm")}
    # Every writable byte is on one tmpfs (sandbox/mounts.cpp says why): these are its
    # directories, not mounts of their own (the device binds under /dev are the host's).
    on = [p for p in ("/tmp", "/dev/shm", "/dev", "/proc/acpi") if os.path.exists(p)]
    r["tmpfs_superblocks"] = len({os.stat(p).st_dev for p in on})
    root = _root_mount()
    r["root_fs"] = root and root["fs"]
    r["root_options"] = root and sorted(root["options"])
    r["root_dev"] = os.stat("/").st_dev
    secret = event.get("host_secret", "")
    r["host_secret_visible"] = bool(secret) and os.path.exists(secret)
    r["host_etc_shadow"] = os.path.exists("/etc/shadow")
    return r
