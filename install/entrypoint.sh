#!/bin/bash
# The main container of the DaemonSet: the node daemon, and beside it the CNI installer's watch loop,
# which puts our entry back when the primary CNI rewrites its config (Calico, Flannel, Cilium... do
# on every restart). Two processes in one container, no extra container: whichever ends first ends
# the other, and the container exits with the daemon's status (non-zero if the watcher died), so the
# kubelet restarts both together.
#
# Daemon flags: this script's arguments; its other settings come from the environment (COLLECTOR,
# NODE_IP, NODE_NAME, DATA_INTERFACE, INT_HOST_REPORTER_*). Installer settings:
#   CNI_CONF_DIR, CNI_BIN_DIR   where the host's CNI dirs are mounted
#   CNI_PLUGIN_CONFIG           extra fields of our conflist entry (JSON)
set -u
dir=${INT_HOST_REPORTER_DIR:-/opt/int-host-reporter}

node "$dir/int-host-reporter-cni-install.cjs" --watch \
  --cni-conf-dir "${CNI_CONF_DIR:-/host/etc/cni/net.d}" \
  --cni-bin-dir "${CNI_BIN_DIR:-/host/opt/cni/bin}" \
  --plugin-source "$dir/cni" \
  --plugin-config "${CNI_PLUGIN_CONFIG:-{\}}" &
watcher=$!
node "$dir/int-host-reporter.cjs" "$@" &
daemon=$!

stopping=0
trap 'stopping=1; kill -TERM "$daemon" "$watcher" 2>/dev/null' TERM INT
# bash >= 5.1 (Debian 12 has 5.2): wait for the first of the two to end (its pid in $first), or a signal
first=
wait -n -p first "$daemon" "$watcher"
first_status=$?
kill -TERM "$daemon" "$watcher" 2>/dev/null
wait "$daemon"
status=$?
wait "$watcher"
if [ "$stopping" = 0 ]; then
  # nobody asked us to stop: fail with the status of the one that ended (1 if it claimed success)
  status=$first_status
  if [ -z "$first" ] || [ "$status" = 0 ]; then status=1; fi
fi
exit "$status"
