#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs what is missing,
# builds, and then either runs the main job or passes all tests.
#   tools/dev.sh run [ARGS...]   set up, then run the example function
#   tools/dev.sh test            set up, then run every test suite
# Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${NSBOX_BUILD_DIR:-build}
PACKAGES=(meson ninja-build g++ pkg-config python3 curl libseccomp-dev libcap-dev
          libcpp-httplib-dev libtomlplusplus-dev nlohmann-json3-dev doctest-dev
          clang libclang-rt-14-dev    # libFuzzer (fuzz_tests)
          nginx-light openssl)        # the reverse-proxy test runs tools/nginx/nsbox.conf

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" >/dev/null
  fi
  ninja -C "$BUILD" >/dev/null
}

# Prints the plain closing line CI reads, from meson's own test logs.
summarize() {
  /usr/bin/python3 - "$@" <<'PY'
import json, os, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0}
for log in sys.argv[1:]:
    if not os.path.exists(log):
        counts["FAIL"] += 1
        continue
    for line in open(log):
        r = json.loads(line)["result"]
        counts["OK" if r in ("OK", "EXPECTEDFAIL") else "SKIP" if r == "SKIP" else "FAIL"] += 1
print(f"{counts['OK']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
PY
}

# The unit suite again under AddressSanitizer and UBSan, in its own build
# dir (incremental, like the main one).
sanitized_unit_tests() {
  local dir="$BUILD-sanitize"
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
  fi
  ninja -C "$dir" tests/unit/unit_tests >/dev/null
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C "$dir" --suite unit --no-rebuild --print-errorlogs
}

# The libFuzzer targets of tests/fuzz, each fuzzed for a bounded time from
# its committed corpus (read-only), as the meson suite "fuzz": clang, ASan
# and UBSan, in its own build dir (incremental, like the others).
fuzz_tests() {
  local dir="$BUILD-fuzz" targets=() f
  if [ ! -f "$dir/build.ninja" ]; then
    CC=clang CXX=clang++ meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined \
      -Db_lundef=false >/dev/null
  fi
  for f in tests/fuzz/*_fuzz.cpp; do targets+=("tests/fuzz/$(basename "$f" .cpp)"); done
  ninja -C "$dir" "${targets[@]}" >/dev/null
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

cmd=${1:-test}
shift || true
install_packages
build
case "$cmd" in
  run)
    # The main job: the daemon on its embedded defaults (127.0.0.1:8080,
    # state in /var/lib/nsbox) with the example function deployed. ^C or
    # SIGTERM drains and stops it.
    as_root "$BUILD/tools/nsbox" serve "$@" &
    daemon=$!
    trap 'as_root kill -TERM $daemon 2>/dev/null; wait $daemon' INT TERM
    for _ in $(seq 1 300); do
      curl -sf http://127.0.0.1:8080/healthz >/dev/null 2>&1 && break
      kill -0 $daemon 2>/dev/null || { wait $daemon; exit $?; }
      sleep 0.1
    done
    NSBOX_TOKEN=$(as_root cat /var/lib/nsbox/token) "$BUILD/tools/nsbox" deploy hello tools/examples/hello.py
    echo "try: curl -s -d '{\"name\": \"you\"}' http://127.0.0.1:8080/fn/hello" >&2
    wait $daemon
    ;;
  test)
    status=0
    meson test -C "$BUILD" --print-errorlogs || status=$?
    sanitized_unit_tests || status=$?
    fuzz_tests || status=$?
    summarize "$BUILD/meson-logs/testlog.json" "$BUILD-sanitize/meson-logs/testlog.json" \
      "$BUILD-fuzz/meson-logs/testlog.json"
    exit $status
    ;;
  *)
    echo "usage: tools/dev.sh run|test" >&2
    exit 2
    ;;
esac
