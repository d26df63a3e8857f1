#!/bin/bash
# PID 1 of the user-mode-linux guest that tools/uml/run.sh boots: Debian 12's
# own kernel (6.1) with the host's tree as a read-only hostfs root. Sets up
# what a pure cgroup v2 host has (systemd's layout: cgroup2 alone at
# /sys/fs/cgroup, cpu/io/memory/pids enabled at the root, the suite in a
# service's cgroup), runs the smoke suite and powers off. The kernel passes its unknown key=value arguments to
# us as the environment: NSBOX_SRC, NSBOX_BUILD, NSBOX_UML_SCALE (for
# smoke.sh), NSBOX_UML_ROOTFS (the runtime rootfs run.sh built) and
# NSBOX_UML_OUT (a host directory the result is written to; the only host
# path we write).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

halt() {
  sync
  echo o >/proc/sysrq-trigger
  sleep 60  # PID 1 must not exit: that panics instead of powering off
}

status=1
(
  set -e
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  # As systemd leaves it: controllers enabled from the root down, and the
  # suite in a service's cgroup rather than the root (children follow us).
  cd /sys/fs/cgroup
  echo "+cpu +io +memory +pids" >cgroup.subtree_control
  mkdir -p system.slice/nsbox-smoke.service
  echo "+memory +pids" >system.slice/cgroup.subtree_control
  echo $$ >system.slice/nsbox-smoke.service/cgroup.procs
  cd /
  # The host directories we use, at fixed places under /run, so that the
  # tmpfs below cannot hide them (a checkout in /root or /tmp). Only the
  # result directory is writable.
  mount -t tmpfs -o mode=755 tmpfs /run
  mkdir -p /run/uml/src /run/uml/build /run/uml/out
  mount -t hostfs -o ro,"$NSBOX_SRC" hostfs /run/uml/src
  mount -t hostfs -o ro,"$NSBOX_BUILD" hostfs /run/uml/build
  mount -t hostfs -o "$NSBOX_UML_OUT" hostfs /run/uml/out
  # Writable places, in memory: nsbox's state, stage and caches; the
  # runtime rootfs where nsbox looks for it, read-only.
  mount -t tmpfs -o mode=1777 tmpfs /tmp
  mount -t tmpfs -o mode=1777 tmpfs /var/tmp
  mount -t tmpfs -o mode=755 tmpfs /var/lib
  mount -t tmpfs -o mode=755 tmpfs /var/cache
  mount -t tmpfs -o mode=700 tmpfs /root
  mkdir -p /dev/shm /var/lib/nsbox/rootfs
  mount -t tmpfs -o mode=1777 tmpfs /dev/shm
  mount -t hostfs -o ro,"$NSBOX_UML_ROOTFS" hostfs /var/lib/nsbox/rootfs
  insmod "/usr/lib/uml/modules/$(uname -r)/kernel/fs/overlayfs/overlay.ko"
  hostname nsbox-uml
  ip link set lo up
) 2>&1
if [ $? -eq 0 ]; then
  cd /run/uml/src && NSBOX_UML_GUEST=1 NSBOX_BUILD=/run/uml/build bash tools/uml/smoke.sh 2>&1 |
    tee /run/uml/out/smoke.log
  status=${PIPESTATUS[0]}
else
  echo "init: guest setup failed"
fi
echo "$status" >/run/uml/out/status
halt
