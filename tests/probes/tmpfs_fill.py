"""Fills /tmp until the tmpfs says ENOSPC (at most 256 MiB, written 1 MiB at a
time into files of 4 MiB, below any RLIMIT_FSIZE), then tries /dev/shm, then frees /tmp and tries /dev/shm again: both
directories share the sandbox's one tmpfs of tmpfs_mb. Then fills it with empty
files (at most 100,000), which take inodes and no pages. Refuses to run outside
a sandbox."""
import errno
import os
import socket

CAP_MB = 256
FILE_CAP = 100000


def _fill(prefix, cap_mb):
    """MiB written to prefix.N files before an error, and the error's name ("" when none)."""
    chunk = b"x" * (1 << 20)
    written = 0
    try:
        while written < cap_mb:
            with open("%s.%d" % (prefix, written // 4), "ab") as f:
                f.write(chunk)
                f.flush()
            written += 1
    except OSError as e:
        return written, errno.errorcode.get(e.errno, str(e.errno))
    return written, ""


def _remove(prefix):
    d, base = os.path.split(prefix)
    for name in os.listdir(d):
        if name.startswith(base + "."):
            os.unlink(os.path.join(d, name))


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    tmp_mb, tmp_err = _fill("/tmp/fill", CAP_MB)
    shm_full_mb, shm_full_err = _fill("/dev/shm/fill", 1)
    _remove("/dev/shm/fill")
    _remove("/tmp/fill")
    shm_mb, shm_err = _fill("/dev/shm/fill", 1)
    _remove("/dev/shm/fill")
    files, files_err = 0, ""
    try:
        while files < FILE_CAP:
            os.close(os.open("/tmp/e.%d" % files, os.O_CREAT | os.O_WRONLY, 0o600))
            files += 1
    except OSError as e:
        files_err = errno.errorcode.get(e.errno, str(e.errno))
    _remove("/tmp/e")
    return {"files": files, "files_error": files_err,
            "tmp_mb": tmp_mb, "tmp_error": tmp_err,
            "shm_while_tmp_full": shm_full_err or "ok",
            "shm_after": shm_err or "ok", "shm_after_mb": shm_mb}
