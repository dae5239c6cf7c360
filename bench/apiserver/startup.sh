#!/bin/sh
# Measures `skiff server` start to /readyz ok (fresh and existing data dirs)
# and its idle resident memory, and prints min/median/max and VmRSS.
#   bench/apiserver/startup.sh            # 5 starts per series, 10 s idle
#   N=1 IDLE=1s bench/apiserver/startup.sh   # quick CI run
#   AGENT=1 bench/apiserver/startup.sh    # also the default server with its agent, in its own netns
set -eu
cd "$(dirname "$0")/../.."
out=${SKIFF_BIN_DIR:-$(mktemp -d)}
if [ -z "${SKIFF_BIN:-}" ]; then
	go build -o "$out/skiff" ./cmd/skiff
	SKIFF_BIN=$out/skiff
fi
go build -o "$out/serverbench" ./bench/apiserver/serverbench
agent=false
[ -n "${AGENT:-}" ] && agent=true
exec "$out/serverbench" -bin "$SKIFF_BIN" -n "${N:-5}" -idle "${IDLE:-10s}" -agent="$agent" -mode "${MODE:-all}"
