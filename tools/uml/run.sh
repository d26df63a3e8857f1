#!/usr/bin/env bash
# Runs the cgroup v2 smoke suite (tools/uml/smoke.sh) on Debian 12's own
# kernel, booted as a process by Debian's user-mode-linux package: a pure
# cgroup v2 hierarchy (what Debian 12, Ubuntu 22.04+ and Fedora run) whatever
# this host has. The guest's root is the host's tree through hostfs,
# read-only; tools/uml/init.sh sets up the rest in memory and writes the
# outcome into a temporary host directory, the guest's only writable window
# onto the host. Uses the already-built $NSBOX_BUILD (default: build/).
#   tools/uml/run.sh      exit status: the suite's; 77 = skipped (see below)
# The guest has one CPU, so the whole boot and suite has a fixed budget
# ($NSBOX_UML_BUDGET seconds, default 600) after which it fails.
set -euo pipefail

cd "$(dirname "$0")/../.."
SRC=$PWD
BUILD=$(realpath "${NSBOX_BUILD:-build}")
BUDGET=${NSBOX_UML_BUDGET:-600}
KERNEL=/usr/bin/linux.uml
INSMOD=/usr/sbin/insmod

skip() {
  # CONTRIBUTING.md §8: with NSBOX_MUST_WORK set, a missing prerequisite fails.
  echo "uml: $*" >&2
  if [ -n "${NSBOX_MUST_WORK:-}" ]; then exit 1; fi
  exit 77
}

if [ ! -x $KERNEL ] || [ ! -x $INSMOD ]; then
  [ "$(id -u)" -eq 0 ] || skip "user-mode-linux and kmod are not installed, and installing them needs root"
  echo "uml: installing user-mode-linux kmod" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq user-mode-linux kmod >/dev/null
fi
# The guest reads the host's files as the user running the kernel; as
# root, it sees them all as a host's root would.
[ "$(id -u)" -eq 0 ] || skip "needs root (the guest's view of the host's files is the caller's)"
[ -x "$BUILD/tools/nsbox" ] || { echo "uml: no $BUILD/tools/nsbox: build first" >&2; exit 1; }
case "$SRC$BUILD" in
  *[[:space:],]*)
    echo "uml: the kernel command line and hostfs options cannot carry paths with spaces or commas" >&2
    exit 1
    ;;
esac

start=$SECONDS
WORK=$(mktemp -d /tmp/nsbox-uml.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/out"
# The runtime rootfs, built here from the host's python3 tree: the same
# build in the guest works but costs 30 s to 3 minutes of the budget (it
# starts a process per shared library, at UML's cost per process start).
# The guest mounts it read-only where nsbox looks for it.
"$BUILD/tools/nsbox" rootfs build --out "$WORK/rootfs" >&2

# Debian 12's UML kernel writes its processes' extended registers with an
# XSAVE area of the size it was built for; hosts with a larger one (AMX)
# refuse that, and the guest's first process dies. The shim lets it write the
# host's whole area (tools/uml/xstate_shim.c); elsewhere it changes nothing.
command -v cc >/dev/null || { echo "uml: no C compiler (cc) for tools/uml/xstate_shim.c: apt-get install gcc" >&2; exit 1; }
cc -O2 -shared -fPIC -o "$WORK/xstate_shim.so" tools/uml/xstate_shim.c -ldl

# The guest's memory is a file UML maps (on /dev/shm when TMPDIR is not
# set), its console our stdout. Arguments the kernel does not know reach
# init.sh as its environment.
# timeout runs the kernel in a process group of its own, which a ^C or
# meson's timeout does not reach: it is passed on.
timeout -k 10 $((BUDGET - (SECONDS - start))) env LD_PRELOAD="$WORK/xstate_shim.so" "$KERNEL" \
  mem=1536M umid="$(basename "$WORK")" uml_dir="$WORK" \
  rootfstype=hostfs rootflags=/ ro init="$SRC/tools/uml/init.sh" \
  con0=null,fd:1 con=null ssl=null quiet \
  NSBOX_SRC="$SRC" NSBOX_BUILD="$BUILD" NSBOX_UML_OUT="$WORK/out" NSBOX_UML_ROOTFS="$WORK/rootfs" \
  NSBOX_UML_SCALE="${NSBOX_UML_SCALE:-20}" </dev/null >"$WORK/console" &
uml=$!
trap 'kill -TERM $uml 2>/dev/null; wait $uml || true; exit 130' INT TERM
status=0
wait $uml || status=$?
trap - INT TERM
elapsed=$((SECONDS - start))
cat "$WORK/console"

if [ $status -eq 124 ] || [ $status -eq 137 ]; then
  echo "uml: over the budget of ${BUDGET}s: the guest was killed" >&2
  exit 1
fi
if [ ! -s "$WORK/out/status" ]; then
  echo "uml: the guest ended after ${elapsed}s without a result (kernel exit status $status)" >&2
  if grep -q "ptrace set fp regs failed" "$WORK/console"; then
    echo "uml: the UML kernel could not set its processes' registers on this host, even" \
      "through tools/uml/xstate_shim.c (see the console above)" >&2
  fi
  exit 1
fi
result=$(cat "$WORK/out/status")
echo "uml: rootfs, boot, suite and power-off took ${elapsed}s; suite status $result" >&2
exit "$result"
