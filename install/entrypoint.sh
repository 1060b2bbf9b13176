#!/bin/sh
# Starts one of our bundles with node, its V8 heap capped below the container's memory limit, so
# V8 collects garbage harder before the kernel's OOM killer ends the container:
#   entrypoint.sh BUNDLE [ARGS...]     e.g. entrypoint.sh /opt/int-host-reporter/int-host-reporter.cjs --log-level debug
# MEMORY_LIMIT_BYTES: the limit, from the DaemonSet (resourceFieldRef limits.memory). The old space
# gets 3/4 of it; the rest is for the young generation, code, the addon and node itself. Unset, 0,
# or not a number: no cap (node's default). exec: node becomes the process the runtime signals.
set -eu
limit=${MEMORY_LIMIT_BYTES:-}
case "$limit" in
  ''|*[!0-9]*) exec "${NODE:-node}" "$@" ;;
esac
# whole MiB; at least 32 so a tiny limit still starts (the OOM killer then has the last word)
heap=$((limit / 1048576 * 3 / 4))
if [ "$heap" -lt 32 ]; then heap=32; fi
exec "${NODE:-node}" "--max-old-space-size=$heap" "$@"
