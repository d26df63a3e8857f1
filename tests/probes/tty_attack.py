"""Tries to reach the terminal `nsbox run` was started from: TIOCSTI (push
bytes into the terminal's input, as if typed) on fds 0-2 and /dev/tty, then
prints escape sequences that would retitle the window, write the clipboard
and clear the screen. Refuses to act outside a sandbox. What it would type is
a shell comment with no newline, so even a working injection runs nothing."""
import errno
import fcntl
import os
import socket
import sys
import termios

INJECT = b"#nsbox-tiocsti"
# Printed escape sequences; the test looks for them, escaped, on the terminal.
SHOW = ("title:\x1b]0;nsbox-pwned\x07 clip:\x1b]52;c;bnNib3g=\x07 csi:\x1b[2J"
        " c1:\u009b31m del:\x7f lone-cr:a\rb crlf:x\r\n")


def _inject(fd):
    try:
        for b in INJECT:
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([b]))
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def handler(event, context):
    if socket.gethostname() == event.get("host_hostname"):
        raise RuntimeError("refusing: not inside a sandbox")
    r = {"isatty": [os.isatty(fd) for fd in (0, 1, 2)],
         "fds": [os.readlink("/proc/self/fd/%d" % fd) for fd in (0, 1, 2)],
         "tiocsti": {str(fd): _inject(fd) for fd in (0, 1, 2)}}
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        r["tiocsti"]["/dev/tty"] = _inject(fd)
        os.close(fd)
    except OSError as e:
        r["tiocsti"]["/dev/tty"] = "open: " + errno.errorcode.get(e.errno, str(e.errno))
    sys.stdout.write(SHOW)
    sys.stdout.flush()
    sys.stderr.write("printed on stderr: \x1b]0;nsbox-stderr\x07\n")
    return r
