#!/usr/bin/env bash
# One time-boxed libFuzzer run, as a meson test:
#   run.sh FUZZER CORPUS_DIR SECONDS ARTIFACT_DIR [DICT]
# The repo's corpus is read, never written: libFuzzer adds new inputs to
# the first corpus directory, here a temporary one. A crashing input is
# kept in ARTIFACT_DIR (in the build tree) to reproduce with
#   FUZZER ARTIFACT_DIR/crash-...
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3 artifacts=$4 dict=${5:-}
work=$(mktemp -d /tmp/nsbox-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/new" "$artifacts"
# -error_exitcode: libFuzzer's default, 77, is what meson reads as "skipped".
# A fixed seed and a bounded number of runs (time is only a cap): the same
# binary and corpus explore the same inputs here and in CI, so a green run
# is reproducible; NSBOX_FUZZ_SEED=0 (random) and NSBOX_FUZZ_RUNS explore further.
args=(-seed="${NSBOX_FUZZ_SEED:-1}" -runs="${NSBOX_FUZZ_RUNS:-30000}"
      -max_total_time="$seconds" -timeout=10 -error_exitcode=1 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$artifacts/$(basename "$fuzzer")-")
[ -n "$dict" ] && args+=(-dict="$dict")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
"$fuzzer" "${args[@]}" "$work/new" "$corpus" >"$work/log" 2>&1 || status=$?
# The last status line (coverage, features, exec/s) and the final stats.
grep -E '^#[0-9]+.*(INITED|DONE|pulse|NEW|REDUCE)' "$work/log" | tail -n 1 || true
grep -E '^stat::' "$work/log" || true
if [ "$status" -ne 0 ]; then
  cat "$work/log" >&2
  echo "run.sh: $(basename "$fuzzer") failed ($status); input kept in $artifacts" >&2
fi
exit "$status"
