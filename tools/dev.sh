#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs what is missing,
# builds, and then either runs the main job or passes all tests.
#   tools/dev.sh run [ARGS...]   set up, then run the example function
#   tools/dev.sh test            set up, then run every test suite
# Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${NSBOX_BUILD_DIR:-build}
PACKAGES=(meson ninja-build g++ pkg-config python3 libseccomp-dev libcap-dev
          libcpp-httplib-dev libtomlplusplus-dev nlohmann-json3-dev doctest-dev)

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

# Prints the plain closing line CI reads, from meson's own test log.
summarize() {
  /usr/bin/python3 - "$BUILD/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0}
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    counts["OK" if r in ("OK", "EXPECTEDFAIL") else "SKIP" if r == "SKIP" else "FAIL"] += 1
print(f"{counts['OK']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
PY
}

cmd=${1:-test}
shift || true
install_packages
build
case "$cmd" in
  run)
    # The main job. Until the HTTP daemon lands this is one isolated run of
    # the example function on the built-in default policy.
    as_root "$BUILD/tools/nsbox" run tools/examples/hello.py --event '{"name": "nsbox"}' "$@"
    ;;
  test)
    status=0
    meson test -C "$BUILD" --print-errorlogs || status=$?
    summarize
    exit $status
    ;;
  *)
    echo "usage: tools/dev.sh run|test" >&2
    exit 2
    ;;
esac
