"""Build the shared, read-only runtime rootfs that every nsbox sandbox mounts as its lower layer.

    python3 build_rootfs.py --out DIR --runner runner.py --stamp STRING [--python /usr/bin/python3]

The C++ binary embeds this text and runs it with `python3 -I -c`, so nothing here may depend on
__file__ or on modules outside the standard library.

The tree is built next to DIR and swapped in with renames, so a sandbox starting during a rebuild
sees either the old rootfs or the new one, never half of one. DIR/.nsbox-stamp is written last,
which lets the caller treat "stamp matches" as "build finished and passed its self-check".
"""

import argparse
import os
import shutil
import stat
import subprocess
import sys
import time

# Left out of the sandbox: test suites and GUI/teaching modules are dead weight in a function
# runtime, ensurepip/site-packages would let functions pick up host-installed packages, and
# config-3.11-* holds a static libpython meant for embedding builds.
EXCLUDED_DIR_NAMES = {"test", "tests", "__pycache__", "idlelib", "tkinter", "turtledemo",
                      "ensurepip", "site-packages", "dist-packages"}
EXCLUDED_DIR_PREFIXES = ("config-",)
# sitecustomize.py is Debian's hook into the host's /etc/python3.11 (apport); turtle.py needs
# tkinter, which is gone.
EXCLUDED_FILES = {"turtle.py", "sitecustomize.py"}
# C test/demo modules that ship in lib-dynload alongside the real ones.
EXCLUDED_DYNLOAD_PREFIXES = ("_test", "_ctypes_test", "_xxtestfuzz", "xxlimited",
                             "_xxsubinterpreters")

# Loaded with dlopen() by glibc rather than linked, so ldd never lists it; without it a thread
# that ends via pthread_exit (Python does this for daemon threads at shutdown) aborts.
DLOPENED_LIBS = ("libgcc_s.so.1",)
# Beside the stamp: the host files the tree copied that the stamp does not cover.
SOURCES = ".nsbox-sources"

MERGED_USR_LINKS = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
MOUNT_POINTS = ("proc", "dev", "tmp", "var/task", "opt/nsbox", "root", "home", "usr/sbin")

ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
              "sandbox:x:1000:1000:nsbox sandbox:/tmp:/usr/sbin/nologin\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n",
    "hostname": "nsbox\n",
    "hosts": "127.0.0.1\tlocalhost nsbox\n::1\tlocalhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    "resolv.conf": "",
}

# Asked of the target interpreter, not of whichever python runs this script: the two may differ.
PROBE = r"""
import sys, sysconfig, os
dyn = [p for p in sys.path if p.endswith("lib-dynload")]
print(sysconfig.get_paths()["stdlib"])
print(dyn[0] if dyn else sysconfig.get_config_var("DESTSHARED"))
print("%d.%d" % sys.version_info[:2])
"""

SELF_CHECK = r"""
import sys, json, traceback, encodings, math, zlib, _socket, select, _json, _hashlib, _ssl
root = sys.argv[1]
bad = [m for m in (json, traceback, encodings) if not m.__file__.startswith(root)]
if bad:
    sys.exit("modules loaded from outside the rootfs: %r" % [m.__file__ for m in bad])
if sys.prefix != root + "/usr":
    sys.exit("sys.prefix is %r, expected %r" % (sys.prefix, root + "/usr"))
outside = set()
with open("/proc/self/maps") as f:
    for line in f:
        path = line.split(None, 5)[5].strip() if len(line.split(None, 5)) == 6 else ""
        if path.startswith("/") and ".so" in path and not path.startswith(root + "/"):
            outside.add(path)
if outside:
    sys.exit("shared libraries mapped from outside the rootfs: %s" % sorted(outside))
"""


class BuildError(Exception):
    pass


class Step:
    """Names the step that failed, so errors read `rootfs: <what failed>: <why>`."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None or isinstance(exc, BuildError):
            return False
        if isinstance(exc, subprocess.CalledProcessError):
            why = "%s exited with %s: %s" % (exc.cmd[0], exc.returncode,
                                            (exc.stderr or "").strip()[-2000:])
        elif isinstance(exc, OSError):
            why = "%s%s" % (exc.strerror or exc, " (%s)" % exc.filename if exc.filename else "")
        else:
            why = "%s: %s" % (type(exc).__name__, exc)
        raise BuildError("rootfs: %s: %s" % (self.what, why)) from exc


def under(root, abs_path):
    """Where host path abs_path lives inside the tree being built."""
    return os.path.join(root, abs_path.lstrip("/"))


def canonical(path):
    """Host path with its directories resolved but its last component kept.

    Resolving the directories folds /lib/x86_64-linux-gnu into /usr/lib/x86_64-linux-gnu, so we
    always write into real directories of the tree and never through its bin/lib symlinks.
    """
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def copy_file(src, dst, executable):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755 if executable else 0o644)


def copy_with_links(root, host_path, seen):
    """Copy a host file to the same path in root, recreating any symlink chain as the host has it
    (libz.so.1 -> libz.so.1.2.13) so sonames resolve the same way inside the sandbox."""
    path = canonical(host_path)
    for _ in range(40):  # the kernel's own symlink limit
        if path in seen:
            return
        seen.add(path)
        dst = under(root, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(path):
            target = os.readlink(path)
            if not os.path.lexists(dst):
                os.symlink(target, dst)
            path = canonical(os.path.join(os.path.dirname(path), target))
            continue
        copy_file(path, dst, executable=True)
        return
    raise BuildError("rootfs: copying %s: too many levels of symbolic links" % host_path)


def probe_python(python):
    out = subprocess.run([python, "-I", "-S", "-c", PROBE], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    stdlib, dynload, version = out[0], out[1], out[2]
    if not os.path.isdir(stdlib):
        raise BuildError("rootfs: probing %s: stdlib %r is not a directory" % (python, stdlib))
    return os.path.realpath(stdlib), os.path.realpath(dynload), version


def copy_tree(src_root, dst_root, dynload):
    """Copy the stdlib minus the exclusions; returns the lib-dynload modules copied."""
    modules = []
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in EXCLUDED_DIR_NAMES
                             and not d.startswith(EXCLUDED_DIR_PREFIXES))
        rel = os.path.relpath(dirpath, src_root)
        out_dir = os.path.normpath(os.path.join(dst_root, rel))
        os.makedirs(out_dir, exist_ok=True)
        in_dynload = os.path.realpath(dirpath) == dynload
        for name in filenames:
            if name in EXCLUDED_FILES:
                continue
            if in_dynload and name.startswith(EXCLUDED_DYNLOAD_PREFIXES):
                continue
            src = os.path.join(dirpath, name)
            dst = os.path.join(out_dir, name)
            if os.path.islink(src):
                real = os.path.realpath(src)
                if real.startswith(src_root + os.sep):
                    # Links inside the stdlib (the _sysconfigdata alias) stay links.
                    os.symlink(os.path.relpath(real, dirpath), dst)
                    continue
                if not os.path.isfile(real):
                    continue  # dangling or pointing at something that is not a file
                src = real
            elif not stat.S_ISREG(os.lstat(src).st_mode):
                continue
            is_so = ".so" in name
            copy_file(src, dst, executable=is_so)
            if is_so and in_dynload:
                modules.append(dst)
    return modules


def ldd_libraries(files):
    """Absolute paths of every shared library the given ELF files need, loader included."""
    out = subprocess.run(["ldd"] + files, capture_output=True, text=True)
    libs, missing = set(), []
    current = None
    for line in out.stdout.splitlines():
        if not line.startswith("\t"):
            current = line.rstrip(":")
            continue
        line = line.strip()
        if "=>" in line:
            name, rest = (s.strip() for s in line.split("=>", 1))
            if rest.startswith("not found"):
                missing.append("%s needs %s" % (current, name))
                continue
            path = rest.split(" (", 1)[0].strip()
        else:
            path = line.split(" (", 1)[0].strip()
        if path.startswith("/"):
            libs.add(path)
    if missing:
        # The host cannot load these modules either; the sandbox is no worse off.
        sys.stderr.write("rootfs: warning: missing libraries, some modules will not import: "
                         "%s\n" % "; ".join(missing))
    if not libs:
        raise BuildError("rootfs: ldd found no libraries: %s" % out.stderr.strip())
    return libs


def normalise_modes(root):
    """dirs 0755, files 0644 or 0755 — also fixes files made under a tight umask (compileall's
    .pyc) and drops any setuid/setgid bit a copied file might have carried."""
    files, total = 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                continue
            os.chmod(p, 0o755 if st.st_mode & 0o111 else 0o644)
            files += 1
            total += st.st_size
    return files, total


def self_check(root, python_rel, loader_rel, libdirs):
    # Runs the built interpreter through the built loader with the built libraries first, then
    # checks /proc/self/maps so a library silently picked up from the host fails the build.
    # PYTHONHOME stands in for the chroot we cannot do unprivileged; hence no -I (it implies -E).
    env = {"PYTHONHOME": under(root, "/usr"), "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    cmd = [under(root, loader_rel), "--library-path", ":".join(under(root, d) for d in libdirs),
           under(root, python_rel), "-s", "-S", "-B", "-c", SELF_CHECK, root]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError("rootfs: self-check: built interpreter failed: %s"
                         % (res.stderr.strip() or "exit %d" % res.returncode))


def build(args, tmp):
    python = os.path.realpath(args.python)

    with Step("probing %s" % args.python):
        stdlib, dynload, version = probe_python(args.python)

    with Step("creating layout"):
        os.makedirs(tmp)
        for d in ("usr/bin", "usr/lib", "usr/lib64", "etc") + MOUNT_POINTS:
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        for link, target in MERGED_USR_LINKS.items():
            os.symlink(target, os.path.join(tmp, link))

    with Step("copying interpreter %s" % python):
        py_path = canonical(python)
        copy_file(python, under(tmp, py_path), executable=True)
        short = os.path.join(os.path.dirname(py_path), "python3")
        if short != py_path:
            os.symlink(os.path.basename(py_path), under(tmp, short))

    with Step("copying standard library %s" % stdlib):
        modules = copy_tree(stdlib, under(tmp, stdlib), dynload)
        if not dynload.startswith(stdlib + os.sep):
            modules += copy_tree(dynload, under(tmp, dynload), dynload)

    with Step("copying shared libraries"):
        libs = ldd_libraries([python] + modules)
        seen = set()
        for lib in sorted(libs):
            copy_with_links(tmp, lib, seen)
        lib_dirs = sorted({os.path.dirname(os.path.realpath(l)) for l in libs})
        for name in DLOPENED_LIBS:
            for d in lib_dirs:
                if os.path.exists(os.path.join(d, name)):
                    copy_with_links(tmp, os.path.join(d, name), seen)
                    break
        loaders = [l for l in libs if os.path.basename(l).startswith("ld-linux")]
        if not loaders:
            raise BuildError("rootfs: copying shared libraries: ldd reported no dynamic loader")

    with Step("byte-compiling the standard library"):
        # -d makes tracebacks name /usr/lib/python3.X/..., the in-sandbox path, not the tmp
        # dir; compiling now means the sandbox (whose / is read-only) never wants to write .pyc.
        subprocess.run([args.python, "-I", "-m", "compileall", "-q", "-j0", "-d", stdlib,
                        under(tmp, stdlib)], check=True, capture_output=True, text=True)

    with Step("writing /etc"):
        for name, text in ETC_FILES.items():
            with open(os.path.join(tmp, "etc", name), "w") as f:
                f.write(text)
        # No host ld.so.cache: it is a host index and Debian's loader already searches the
        # multiarch dirs we copied into.
        utc = "/usr/share/zoneinfo/UTC"
        if os.path.exists(utc):
            copy_file(os.path.realpath(utc), os.path.join(tmp, "etc/localtime"), False)
        else:
            sys.stderr.write("rootfs: warning: %s missing, sandbox has no /etc/localtime\n" % utc)

    with Step("installing runner %s" % args.runner):
        copy_file(args.runner, os.path.join(tmp, "opt/nsbox/runner.py"), executable=False)

    with Step("normalising permissions"):
        normalise_modes(tmp)

    if not args.no_self_check:
        with Step("self-check"):
            loader = canonical(sorted(loaders)[0])
            libdirs = sorted({os.path.dirname(canonical(os.path.realpath(l))) for l in libs})
            self_check(tmp, py_path, os.path.realpath(loader), libdirs)

    with Step("writing the sources list"):
        # Every shared library copied, with its size and mtime: nsbox rebuilds the tree when
        # one changes (a security update of libssl or libexpat), which the stamp alone, made
        # from the interpreter, would not notice.
        with open(os.path.join(tmp, SOURCES), "w") as f:
            for path in sorted(seen):
                if not os.path.islink(path):
                    st = os.stat(path)
                    f.write("%d %d %s\n" % (st.st_size, st.st_mtime_ns, path))
        os.chmod(os.path.join(tmp, SOURCES), 0o644)

    with Step("writing stamp"):
        with open(os.path.join(tmp, ".nsbox-stamp"), "w") as f:
            f.write(args.stamp)
        os.chmod(os.path.join(tmp, ".nsbox-stamp"), 0o644)
    return normalise_modes(tmp)


def swap(tmp, out):
    # The previous tree stays as OUT.old-PID: running sandboxes' overlays may
    # still read it. nsbox removes it once nothing uses the rootfs.
    old = "%s.old-%d" % (out, os.getpid())
    moved = False
    with Step("replacing %s" % out):
        if os.path.lexists(out):
            os.rename(out, old)
            moved = True
        try:
            os.rename(tmp, out)
        except OSError:
            if moved:
                os.rename(old, out)  # put the previous, working rootfs back
            raise


def main(argv):
    ap = argparse.ArgumentParser(prog="build_rootfs.py",
                                 description="Build the nsbox runtime rootfs.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runner", required=True)
    ap.add_argument("--stamp", required=True)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--no-self-check", action="store_true",
                    help="skip running the built interpreter before the swap")
    args = ap.parse_args(argv)

    out = os.path.abspath(args.out.rstrip("/") or "/")
    if out == "/":
        sys.stderr.write("rootfs: --out must not be /\n")
        return 1
    tmp = "%s.tmp-%d" % (out, os.getpid())
    started = time.monotonic()
    try:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp)
        files, total = build(args, tmp)
        swap(tmp, out)
    except BuildError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        sys.stderr.write("%s\n" % e)
        return 1
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sys.stdout.write("rootfs: built %s: %d files, %.1f MiB\n" % (out, files, total / 1048576))
    sys.stderr.write("rootfs: took %.2f s\n" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
