#!/bin/bash
# The cgroup v2 smoke suite, run by tools/uml/init.sh inside the
# user-mode-linux guest (Debian 12's kernel, pure cgroup v2): nsbox run, its
# memory and pids limits, the isolation probe, a daemon serving a few
# functions, and the v2 code paths seen from outside the sandbox (the leaves
# under /sys/fs/cgroup, their limit files, CLONE_INTO_CGROUP, a re-limit,
# memory.events and pids.events, cgroup.freeze, removal and the sweep of a
# killed run's leaf), and that a crash in a sandbox starts no core handler.
# Prints one line per check and a closing count in doctest's words, which
# tools/dev.sh's summarize() reads. Exits 1 when a check failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
if [ "${NSBOX_UML_GUEST:-}" != 1 ]; then
  # It creates cgroups and starts a daemon as root: only in the guest.
  echo "smoke.sh runs inside the UML guest; use tools/uml/run.sh" >&2
  exit 2
fi
NSBOX=${NSBOX_BUILD:-build}/tools/nsbox
PROBES=$PWD/tests/probes
CG=/sys/fs/cgroup
# The guest has one CPU and starts processes many times slower than the
# host, more so when the host is loaded: every timeout is the host's value
# times SCALE.
SCALE=${NSBOX_UML_SCALE:-20}
WALL=$((3 * SCALE))s  # the default policy's wall_ms is 3 s
EVENT="{\"host_hostname\": \"$(hostname)\"}"
T=$(mktemp -d)

passed=0 failed=0
ok() { echo "ok - $1 [${SECONDS}s]"; passed=$((passed + 1)); }
not_ok() {
  echo "not ok - $1 [${SECONDS}s]"
  shift
  for f in "$@"; do [ -s "$f" ] && sed 's/^/    /' "$f"; done
  failed=$((failed + 1))
}
# check NAME CONDITION... [-- FILES to show on failure]
check() {
  local name=$1 files=()
  shift
  local cond=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do cond+=("$1"); shift; done
  [ $# -gt 0 ] && shift && files=("$@")
  if "${cond[@]}"; then ok "$name"; else not_ok "$name" "${files[@]}"; fi
}
has() { grep -q -- "$2" "$1"; }
lacks() { ! grep -q -- "$2" "$1"; }
not_empty() {
  local v=
  read -r v <"$1" 2>/dev/null
  [ -n "$v" ]
}
# A cgroup file's first line equals the value. read is a builtin: a check
# forks nothing, so the snapshot of a live leaf is taken quickly even when
# a loaded host makes every process start in the guest take a second.
cg_is() {
  local v=
  read -r v <"$1" 2>/dev/null
  [ "$v" = "$2" ]
}
# Polls a condition every 0.2 s for up to N seconds.
wait_for() {
  local n=$(($1 * 5))
  shift
  while [ $n -gt 0 ]; do
    "$@" && return 0
    sleep 0.2
    n=$((n - 1))
  done
  return 1
}
no_leaves() { [ -z "$(find $CG/nsbox $CG/nsbox-nocpu -mindepth 1 -type d 2>/dev/null)" ]; }
run() {  # run OUT_PREFIX ARGS...: nsbox run with its exit code in PREFIX.rc
  local p=$1
  shift
  timeout $((10 * SCALE)) "$NSBOX" run "$@" >"$p.out" 2>"$p.err"
  echo $? >"$p.rc"
}
rc() { cat "$1.rc"; }

echo "# kernel $(uname -r), $(nproc) CPU, up $(cut -d" " -f1 /proc/uptime) s; cgroup2 root controllers: $(cat $CG/cgroup.controllers)"
echo "# $(grep -c cgroup /proc/mounts) cgroup mount(s): $(awk '$3 ~ /cgroup/ {print $3 " " $2}' /proc/mounts)"
read -r ours </proc/$$/cgroup
echo "# the suite runs in $ours"

# 1. nsbox run of the example function; -v names the cgroup version chosen.
start=$SECONDS
run $T/hello -v tools/examples/hello.py --event '{"name": "uml"}' --timeout $WALL
echo "# the first nsbox run took $((SECONDS - start)) s"
check "nsbox run prints the example's greeting" \
  grep -q '"message":"hello, uml"' $T/hello.out -- $T/hello.out $T/hello.err
check "nsbox run chose cgroup v2" has $T/hello.err "cgroups: v2" -- $T/hello.err
check "nsbox run reported no cgroup fallback" \
  lacks $T/hello.err "fall back" -- $T/hello.err

# 2. The leaf of a live sandbox, from outside: created under nsbox/ (cpu
# enabled there, nsbox run caps CPU), the limits written, the sandbox's
# processes in it while nsbox itself stays where it was started
# (CLONE_INTO_CGROUP: nothing is attached after clone on v2), its memory
# charged there, and the leaf removed when the run ends.
"$NSBOX" run "$PROBES/hold_memory.py" --memory 96M --timeout $WALL \
  --event "{\"host_hostname\": \"$(hostname)\", \"mb\": 24, \"hold_s\": 10}" \
  >$T/hold.out 2>$T/hold.err &
runner=$!
leaf=$CG/nsbox/run-$runner
charged() {
  local v=0
  read -r v <$leaf/memory.current 2>/dev/null
  [ "$v" -ge $((24 << 20)) ]
}
if wait_for $((5 * SCALE)) charged; then
  ok "a live nsbox run's leaf is $leaf with 24 MiB charged to it"
  check "nsbox/ has memory, pids and cpu enabled" \
    cg_is $CG/nsbox/cgroup.subtree_control "cpu memory pids" -- $CG/nsbox/cgroup.subtree_control
  check "memory.max is --memory (96 MiB)" cg_is $leaf/memory.max $((96 << 20))
  check "memory.swap.max is the policy's swap_mb (0)" cg_is $leaf/memory.swap.max 0
  check "pids.max is the policy's pids (64)" cg_is $leaf/pids.max 64
  check "cpu.max is the policy's cpu_millicores (1000: one CPU per 100 ms)" \
    cg_is $leaf/cpu.max "100000 100000"
  check "the sandbox's processes are in the leaf" not_empty $leaf/cgroup.procs
  check "nsbox run itself stays in $ours (the sandbox was cloned into the leaf)" \
    cg_is /proc/$runner/cgroup "$ours"
else
  not_ok "a live nsbox run's leaf $leaf with 24 MiB charged to it" $T/hold.err
  ls -R $CG/nsbox 2>&1 | sed 's/^/    /'
fi
wait $runner
echo $? >$T/hold.rc
check "the held-memory function returned" grep -q '"held_mb":24' $T/hold.out -- $T/hold.out $T/hold.err
check "the leaf is removed when nsbox run ends" test ! -e $leaf

# A killed nsbox run (kill -9: no destructor) takes its sandbox with it but
# leaves the empty leaf, which the next run sweeps.
"$NSBOX" run "$PROBES/hold_memory.py" --timeout $WALL \
  --event "{\"host_hostname\": \"$(hostname)\", \"mb\": 1, \"hold_s\": 10}" \
  >$T/victim.out 2>&1 &
victim=$!
stale=$CG/nsbox/run-$victim
wait_for $((5 * SCALE)) not_empty $stale/cgroup.procs
kill -KILL $victim
wait $victim
check "a killed nsbox run's sandbox dies with it, its leaf left empty" \
  wait_for $((5 * SCALE)) eval "test -d $stale && ! not_empty $stale/cgroup.procs"

# 3. Limits: the memory hog and the fork bomb, ended by the cgroup and
# named from memory.events / pids.events.
run $T/hog "$PROBES/memory_hog.py" --event "$EVENT" --memory 64M --timeout $WALL
check "the next nsbox run removed that stale leaf" test ! -e $stale
check "the memory hog ends with 137 at the 64 MiB memory.max" \
  test "$(rc $T/hog)" = 137 -a -n "$(grep 'memory limit of 64 MiB' $T/hog.err)" -- $T/hog.out $T/hog.err
run $T/bomb "$PROBES/fork_bomb.py" --event "$EVENT" --timeout $WALL
check "the fork bomb ends with 137 at pids.max" \
  test "$(rc $T/bomb)" = 137 -a -n "$(grep 'pids limit of 64' $T/bomb.err)" -- $T/bomb.out $T/bomb.err

# 4. The isolation probe: what the function sees from inside.
echo "host only" >/tmp/nsbox-host-secret
run $T/iso "$PROBES/isolation.py" --event '{"host_secret": "/tmp/nsbox-host-secret"}' --timeout $WALL
check "the isolation probe finds the sandbox sealed" /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
want = {"hostname": "nsbox", "ppid": 1, "ifaces": ["lo"], "write_root": "Read-only file system",
        "write_tmp": "ok", "code_dir": ["isolation.py"], "host_secret_visible": False,
        "host_etc_shadow": False, "CapEff": "0" * 16, "CapBnd": "0" * 16, "CapPrm": "0" * 16,
        "CapAmb": "0" * 16, "Seccomp": "2", "NoNewPrivs": "1", "Groups": "", "uid": 1000}
bad = {k: r.get(k) for k, v in want.items() if r.get(k) != v}
if r.get("write_code") == "ok": bad["write_code"] = "ok"
if any(p > 2 for p in r.get("pids", [99])): bad["pids"] = r.get("pids")
if not r.get("host_uid"): bad["host_uid"] = r.get("host_uid")
print(bad or "", end="")
sys.exit(1 if bad else 0)' $T/iso.out -- $T/iso.out $T/iso.err
check "no leaf is left by the runs" no_leaves

# 5. The daemon: four functions deployed and served over HTTP, its leaves
# under nsbox-nocpu/ (cpu_limits = false), idle ones frozen with
# cgroup.freeze, all removed on SIGTERM.
PORT=18080
URL=http://127.0.0.1:$PORT
cat >$T/nsbox.toml <<EOF
[server]
listen = "127.0.0.1:$PORT"
[pool]
blank = 1
queue_timeout_ms = $((1000 * SCALE))
EOF
"$NSBOX" serve --config $T/nsbox.toml >$T/serve.log 2>&1 &
daemon=$!
if wait_for $((10 * SCALE)) curl -sf -o /dev/null $URL/healthz; then
  ok "nsbox serve answers /healthz"
else
  not_ok "nsbox serve answers /healthz" $T/serve.log
fi
AUTH="Authorization: Bearer $(cat /var/lib/nsbox/token 2>/dev/null)"
CURL=(curl -s --max-time $((10 * SCALE)) -o "$T/body" -w "%{http_code}")
deploy() {  # deploy NAME FILE [QUERY]
  local code
  code=$("${CURL[@]}" -X PUT -H "$AUTH" --data-binary @"$2" "$URL/functions/$1?timeout=$WALL${3:-}")
  [ "$code" = 201 ] || { echo "    PUT $1: $code $(cat $T/body)"; return 1; }
}
check "three functions deploy (201)" eval 'deploy hello tools/examples/hello.py &&
  deploy echo "$PROBES/echo.py" && deploy hog "$PROBES/memory_hog.py" "&memory=64M"'
invoke() {  # invoke NAME EVENT OUT: OUT gets the HTTP status, then the body
  "${CURL[@]}" -d "$2" "$URL/fn/$1" >$3
  echo >>$3
  cat $T/body >>$3
}
invoke hello '{"name": "uml"}' $T/r1
check "POST /fn/hello answers the greeting" has $T/r1 '"message":"hello, uml"' -- $T/r1
invoke echo '{"k": [1, 2]}' $T/r2
check "POST /fn/echo answers its event" has $T/r2 '"k":\[1,2\]' -- $T/r2
invoke hog "$EVENT" $T/r3
check "POST /fn/hog answers 502 naming the memory limit" \
  eval 'head -1 $T/r3 | grep -qx 502 && grep -q "memory limit of 64 MiB" $T/r3' -- $T/r3
invoke hello '{}' $T/r4
check "POST /fn/hello again (warm) answers" has $T/r4 '"message":"hello, world"' -- $T/r4
# A blank sandbox (the default policy's 128 MiB) leased by a function with
# a smaller limit is re-limited in place (CgroupLeaf::set_memory_limit).
deploy small tools/examples/hello.py "&memory=48M"
invoke small '{"name": "small"}' $T/r6
check "POST /fn/small (memory=48M) answers" has $T/r6 '"message":"hello, small"' -- $T/r6
check "a re-limited sandbox's memory.max is 48 MiB" \
  grep -sqx $((48 << 20)) $CG/nsbox-nocpu/*/memory.max
# A function template (docs/architecture.md §15): its leaf and its
# instance's below one group of their own, limited to their sum.
deploy tmpl "$PROBES/slow_import.py" "&template=1&memory=48M"
invoke tmpl '{}' $T/r7
check "POST /fn/tmpl (template=1) answers" has $T/r7 '"imports"' -- $T/r7 $T/serve.log
fam=$(ls -d $CG/nsbox-nocpu/srv-*-f*/ 2>/dev/null | head -1)
check "a function template's family holds its template's and instance's leaves" \
  eval '[ -n "$fam" ] && [ "$(find "$fam" -mindepth 1 -maxdepth 1 -type d | wc -l)" -ge 2 ]'
check "the family's memory.max is their sum (48 + 48 MiB)" cg_is "${fam}memory.max" $((96 << 20))
check "the family enables memory and pids for its leaves" \
  cg_is "${fam}cgroup.subtree_control" "memory pids" -- "${fam}cgroup.subtree_control"
"${CURL[@]}" -H "$AUTH" $URL/metrics >/dev/null
check "GET /metrics reports a sandbox's memory.current" \
  grep -Eq '^nsbox_sandbox_memory_bytes\{.*\} [1-9]' $T/body -- $T/body
leaves=$(find $CG/nsbox-nocpu -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
check "the daemon's sandboxes have leaves under nsbox-nocpu/" test -n "$leaves"
check "nsbox-nocpu/ enables memory and pids, not cpu" \
  cg_is $CG/nsbox-nocpu/cgroup.subtree_control "memory pids" -- $CG/nsbox-nocpu/cgroup.subtree_control
check "a warm sandbox's memory.max is the default policy's 128 MiB" \
  grep -sqx $((128 << 20)) $CG/nsbox-nocpu/*/memory.max
frozen() { grep -lx "frozen 1" $CG/nsbox-nocpu/*/cgroup.events >/dev/null 2>&1; }
check "an idle warm sandbox is frozen (cgroup.events: frozen 1)" wait_for $((2 * SCALE)) frozen
invoke hello '{"name": "again"}' $T/r5
check "a frozen sandbox answers (thawed when leased)" has $T/r5 '"message":"hello, again"' -- $T/r5
kill -TERM $daemon
# Gone, or a zombie (kill -0 succeeds on one) until bash reaps it.
daemon_gone() { ! kill -0 $daemon 2>/dev/null || grep -q '^[0-9]* ([^)]*) Z' /proc/$daemon/stat; }
wait_for $((10 * SCALE)) daemon_gone || kill -KILL $daemon
wait $daemon
daemon_status=$?
check "SIGTERM stops the daemon with 0 (it ended with $daemon_status)" test $daemon_status = 0 -- $T/serve.log
check "no leaf is left by the daemon" no_leaves

# 6. Memory an instance hands its function template counts in the
# function's group (docs/architecture.md §15): once the instance is gone
# the group's memory.max comes down to the template's 48 MiB, and on v2 the
# kernel OOM-kills inside the group rather than let the template keep the
# 44 MiB the instance handed it.
cat >$T/hoard.toml <<EOF
[server]
listen = "127.0.0.1:$PORT"
[pool]
blank = 0
idle_timeout_ms = 1000
queue_timeout_ms = $((1000 * SCALE))
EOF
"$NSBOX" serve --config $T/hoard.toml >$T/hoard.log 2>&1 &
daemon=$!
wait_for $((10 * SCALE)) curl -sf -o /dev/null $URL/healthz
deploy hoard "$PROBES/template_hoard.py" "&template=1&memory=48M"
invoke hoard "{\"host_hostname\": \"$(hostname)\", \"hoard_mb\": 44}" $T/r8
check "POST /fn/hoard hands 44 MiB to its template" has $T/r8 '"sent":"sent"' -- $T/r8 $T/hoard.log
fam=$(ls -d $CG/nsbox-nocpu/srv-*-f*/ 2>/dev/null | head -1)
# The kill ends the template, which the spawner then destroys with its
# group at once: the kernel's log names the group when memory.events is
# already gone.
oom_killed() {
  grep -sqE "^oom_kill [1-9]" "${fam}memory.events" ||
    dmesg | grep -q "oom_memcg=/nsbox-nocpu/$(basename "$fam")[,/ ]"
}
check "the group OOM-kills once the instance is gone" \
  wait_for $((5 * SCALE)) oom_killed -- "${fam}memory.events" $T/hoard.log
invoke hoard "$EVENT" $T/r9
check "the function still answers" has $T/r9 '"hoarded_mb":0' -- $T/r9 $T/hoard.log
kill -TERM $daemon
wait_for $((10 * SCALE)) daemon_gone || kill -KILL $daemon
wait $daemon
check "no leaf is left by the second daemon" no_leaves
grep -i "warn\|error" $T/serve.log | sed 's/^/# serve: /'

# 7. A crash in a sandbox never starts the host's core handler as root: with
# a core_pattern that pipes (systemd-coredump's, apport's) the kernel ignores
# RLIMIT_CORE, except that 1 aborts the dump (sandbox/privileges.cpp). nsbox
# run is started with a core limit of 0, soft and hard, which nothing in the
# sandbox's user namespace could raise: root raises it to 1 first. The
# pattern is this guest's kernel's own, set here and put back.
MARK=/tmp/nsbox-core-marker
read -r pattern </proc/sys/kernel/core_pattern
echo "|/usr/bin/touch $MARK" >/proc/sys/kernel/core_pattern
(ulimit -c 0; sh -c 'kill -SEGV $$') 2>/dev/null
check "a crash outside a sandbox starts the piped core handler (control)" \
  wait_for $((1 * SCALE)) test -e $MARK
rm -f $MARK
(ulimit -c 0; run $T/crash "$PROBES/crash.py" --event "$EVENT" --timeout $WALL)
check "a function's child dies by SIGSEGV" has $T/crash.out '"signal":11' -- $T/crash.out $T/crash.err
sleep 2
check "and no core handler ran for it" test ! -e $MARK
echo "$pattern" >/proc/sys/kernel/core_pattern

# 8. A unit's LimitNICE= and LimitRTPRIO= reach the daemon, never a
# sandbox: with them a function could run at nice -20, above every other
# tenant and the daemon. The host's root here may lack CAP_SYS_RESOURCE to
# raise them; this guest's root has it.
check "prlimit raises the nice limit for what it starts (control)" \
  test "$(prlimit --nice=40:40 prlimit --nice --noheadings -o SOFT | tr -d ' ')" = 40
prlimit --nice=40:40 --rtprio=99:99 timeout $((10 * SCALE)) "$NSBOX" run "$PROBES/hardening.py" \
  --event "$EVENT" >$T/prio.out 2>$T/prio.err
check "started with nice and rtprio limits raised, a sandbox gets 0 and 0" \
  has $T/prio.out '"nice_limit":\[0,0\],"rtprio_limit":\[0,0\]' -- $T/prio.out $T/prio.err
check "and cannot raise its priority" lacks $T/prio.out '"raise":"ok"' -- $T/prio.out

total=$((passed + failed))
echo "[doctest] test cases: $total | $passed passed | $failed failed | 0 skipped"
rm -rf "$T"
[ $failed -eq 0 ]
