#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs what is missing,
# builds, and then either runs the main job or passes all tests.
#   tools/dev.sh run [ARGS...]   set up, then run the example function (ARGS go to
#                                `nsbox serve`; --listen, --state-dir and --config are followed)
#   tools/dev.sh test            set up, then run every test suite
# Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail

cd "$(dirname "$0")/.."
# Whatever this script runs as root is its own work (the test suites' files,
# the example it deploys): under `sudo tools/dev.sh`, nsbox must not open
# them with the invoking user's rights, as it does for a user's own `sudo
# nsbox run` (tools/invoker.hpp).
unset SUDO_UID SUDO_GID SUDO_USER
BUILD=${NSBOX_BUILD_DIR:-build}
USAGE="usage: tools/dev.sh run [nsbox serve ARGS...] | tools/dev.sh test"
# What building and serving need; `run` installs only these.
PACKAGES=(meson ninja-build g++ pkg-config python3 curl libseccomp-dev libssl-dev
          python3-dev                 # nsbox-template embeds the interpreter the rootfs is built from
          libcpp-httplib-dev libtomlplusplus-dev nlohmann-json3-dev doctest-dev)
# What the test suites add: `test` only, since some are services a host that
# only serves functions does not want (nginx, dockerd).
TEST_PACKAGES=(clang libclang-rt-14-dev    # libFuzzer (fuzz_tests)
          nginx-light openssl         # the reverse-proxy test runs tools/nginx/nsbox.conf
          user-mode-linux kmod        # the cgroup v2 stage boots Debian's kernel (tools/uml/)
          bubblewrap crun runc docker.io python3-matplotlib)  # nsbox bench's comparison rows

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Runs a command with its output held back, shown only when it fails: a
# quiet success, and a build error that is never hidden.
quiet() {
  local log status=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || status=$?
  [ $status -eq 0 ] || { cat "$log" >&2; echo "dev.sh: failed ($status): $*" >&2; }
  rm -f "$log"
  return $status
}

# Development builds treat warnings as errors; the project's defaults do not,
# so a packager's release or plain build is not broken by a new compiler's
# false positive.
setup() {
  local dir=$1
  shift
  [ -f "$dir/build.ninja" ] || quiet meson setup "$dir" -Dwerror=true "$@"
}

build() {
  setup "$BUILD"
  quiet ninja -C "$BUILD"
}

# Prints the plain closing line CI reads, counting test cases rather than
# suites: doctest's and unittest's own summaries from meson's test logs; a
# test that prints neither (a fuzz target) counts as one case. A suite that
# failed without a summary (crashed, timed out, never built) counts as failed.
summarize() {
  /usr/bin/python3 - "$@" <<'PY'
import json, os, re, sys
ok = failed = skipped = 0
for log in sys.argv[1:]:
    if not os.path.exists(log):
        print(f"dev.sh: no test log {log}: that stage did not run", file=sys.stderr)
        failed += 1
        continue
    for line in open(log):
        r = json.loads(line)
        out = (r.get("stdout") or "") + (r.get("stderr") or "")
        passed = r["result"] in ("OK", "EXPECTEDFAIL")
        d = re.search(r"test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed \|\s*(\d+) skipped", out)
        u = re.search(r"^Ran (\d+) tests? in", out, re.M)
        if d:
            ok += int(d[2]); failed += int(d[3]); skipped += int(d[4])
            if not passed and int(d[3]) == 0:
                failed += 1
        elif u:
            m = re.search(r"^FAILED \((.*)\)", out, re.M)
            bad = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", m[1])) if m else 0
            skip = re.search(r"skipped=(\d+)", out)
            skip = int(skip[1]) if skip else 0
            ok += int(u[1]) - bad - skip; failed += bad; skipped += skip
            if not passed and bad == 0:
                failed += 1
        elif passed:
            ok += 1
        elif r["result"] == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{ok} passed, {failed} failed, {skipped} skipped")
PY
}

# The unit suite again under AddressSanitizer and UBSan, in its own build
# dir (incremental, like the main one).
sanitized_unit_tests() {
  local dir="$BUILD-sanitize"
  setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false || return
  # The unit suite starts real fd keepers (tests/unit/fd_parking_test.cpp).
  quiet ninja -C "$dir" tests/unit/unit_tests tools/nsbox-fdkeeper || return
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C "$dir" --suite unit --no-rebuild --print-errorlogs
}

# A packager's build: --buildtype=release (NDEBUG, -O3) without -Dwerror,
# built whole as a distribution would, and the unit suite run in it since
# assertions compiled out must not change behaviour.
release_unit_tests() {
  local dir="$BUILD-release"
  [ -f "$dir/build.ninja" ] || quiet meson setup "$dir" --buildtype=release || return
  quiet ninja -C "$dir" || return
  meson test -C "$dir" --suite unit --no-rebuild --print-errorlogs
}

# The libFuzzer targets of tests/fuzz, each fuzzed for a bounded time from
# its committed corpus (read-only), as the meson suite "fuzz": clang, ASan
# and UBSan, in its own build dir (incremental, like the others).
fuzz_tests() {
  local dir="$BUILD-fuzz" targets=() f
  CC=clang CXX=clang++ setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined \
    -Db_lundef=false || return
  for f in tests/fuzz/*_fuzz.cpp; do targets+=("tests/fuzz/$(basename "$f" .cpp)"); done
  # The unit tests are built here too, not run (the sanitize stage runs
  # them): clang before 16 rejects what g++ takes in doctest's macros
  # (a structured binding captured by a lambda), CONTRIBUTING.md says so.
  targets+=(tests/unit/unit_tests)
  quiet ninja -C "$dir" "${targets[@]}" || return
  local status=0
  meson test -C "$dir" --suite fuzz --no-rebuild --print-errorlogs || status=$?
  # Executions, coverage and speed per target, from the runs' own output.
  /usr/bin/python3 -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["name"] + ": " + " ".join((r.get("stdout") or "").splitlines()[:1]))' \
    "$dir/meson-logs/testlog.json" || true
  return $status
}

# The cgroup v2 smoke suite (meson suite "uml", tools/uml/run.sh): Debian
# 12's own kernel booted as a process by user-mode-linux, a pure cgroup v2
# hierarchy whatever this host has, within a budget of 10 minutes. Its own
# test log, so that the main run's stays.
uml_tests() {
  rm -f "$BUILD/meson-logs/testlog-uml.json"
  meson test -C "$BUILD" --suite uml --no-rebuild --print-errorlogs --logbase testlog-uml
}

# Where `nsbox serve ARGS` will listen and keep its state: the embedded
# defaults, then its --config's [server] table, then --listen and --state-dir.
# Prints "URL STATE_DIR".
serve_address() {
  local listen=127.0.0.1:8080 state=/var/lib/nsbox config="" i
  local args=("$@")
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
      --config) config=${args[i + 1]:-} ;;
      --config=*) config=${args[i]#--config=} ;;
    esac
  done
  if [ -n "$config" ] && [ -r "$config" ]; then
    read -r l s < <(/usr/bin/python3 -c 'import sys, tomllib
try:
    c = tomllib.load(open(sys.argv[1], "rb")).get("server", {})
except Exception:
    c = {}
print(c.get("listen") or "-", c.get("state_dir") or "-")' "$config")
    [ "$l" = - ] || listen=$l
    [ "$s" = - ] || state=$s
  fi
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
      --listen) listen=${args[i + 1]:-$listen} ;;
      --listen=*) listen=${args[i]#--listen=} ;;
      --state-dir) state=${args[i + 1]:-$state} ;;
      --state-dir=*) state=${args[i]#--state-dir=} ;;
    esac
  done
  # A wildcard address is reached on loopback.
  listen=${listen/#0.0.0.0:/127.0.0.1:}
  listen=${listen/#\[::\]:/[::1]:}
  echo "http://$listen $state"
}

cmd=${1:-test}
shift || true
case "$cmd" in
  run) install_packages "${PACKAGES[@]}" ;;
  test) install_packages "${PACKAGES[@]}" "${TEST_PACKAGES[@]}" ;;
  -h | --help | help) echo "$USAGE"; exit 0 ;;
  *) echo "dev.sh: unknown command \"$cmd\"" >&2; echo "$USAGE" >&2; exit 2 ;;
esac
build
case "$cmd" in
  run)
    # The main job: the daemon on its embedded defaults (127.0.0.1:8080,
    # state in /var/lib/nsbox) with the example function deployed. ^C or
    # SIGTERM drains and stops it, as does any failure on the way.
    read -r url state < <(serve_address "$@")
    if curl -sf "$url/healthz" >/dev/null 2>&1; then
      echo "dev.sh: something already answers at $url (an nsbox serve from an earlier run?):" \
        "stop it, or pass --listen ADDR" >&2
      exit 1
    fi
    # Started directly (or by sudo, which passes signals on), not in a
    # subshell: $! is then the process to stop.
    if [ "$(id -u)" -eq 0 ]; then
      "$BUILD/tools/nsbox" serve "$@" &
    else
      sudo "$BUILD/tools/nsbox" serve "$@" &
    fi
    daemon=$!
    # Not kill -0: as a user, signalling the root daemon is refused while it lives.
    alive() { local s; s=$(ps -o stat= -p "$daemon" 2>/dev/null) && [ "${s:0:1}" != Z ]; }
    stop_daemon() { as_root kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null; }
    trap 'stop_daemon; exit 130' INT
    trap 'stop_daemon; exit 143' TERM
    trap 'stop_daemon' EXIT
    up=0
    for _ in $(seq 1 300); do
      alive || { trap - EXIT; wait "$daemon"; exit $?; }
      curl -sf "$url/healthz" >/dev/null 2>&1 && { up=1; break; }
      sleep 0.1
    done
    [ $up = 1 ] || { echo "dev.sh: nsbox serve did not answer at $url in 30 s" >&2; exit 1; }
    NSBOX_TOKEN=$(as_root cat "$state/token") "$BUILD/tools/nsbox" deploy --server "$url" \
      hello tools/examples/hello.py
    echo "try: curl -s -d '{\"name\": \"you\"}' $url/fn/hello" >&2
    status=0
    wait "$daemon" || status=$?
    trap - EXIT
    exit $status
    ;;
  test)
    status=0
    # A stage that fails before testing must not be summarized from an
    # earlier run's log.
    rm -f "$BUILD"{,-sanitize,-release,-fuzz}/meson-logs/testlog.json
    meson test -C "$BUILD" --print-errorlogs || status=$?
    sanitized_unit_tests || status=$?
    release_unit_tests || status=$?
    fuzz_tests || status=$?
    uml_tests || status=$?
    summarize "$BUILD/meson-logs/testlog.json" "$BUILD-sanitize/meson-logs/testlog.json" \
      "$BUILD-release/meson-logs/testlog.json" "$BUILD-fuzz/meson-logs/testlog.json" \
      "$BUILD/meson-logs/testlog-uml.json"
    exit $status
    ;;
esac
