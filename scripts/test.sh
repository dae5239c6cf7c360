#!/usr/bin/env bash
# scripts/test.sh — everything CI runs, in the order CI runs it:
#   deps   install what the tests need from Debian (as root, only what is missing)
#   fmt    gofmt -l must print nothing
#   vet    go vet ./...
#   build  go build -o bin/ ./cmd/...
#   bench  every benchmark once (-benchtime=1x) so they keep compiling and running
#   race   go test -race on the concurrent packages (RACE_PKGS below)
#   unit   go test ./... — last, so go test's own summary closes the output
#
#   scripts/test.sh              all steps
#   scripts/test.sh fmt vet      only those steps
#   SKIFF_SOAK=1 scripts/test.sh long scale runs too (tests read SKIFF_SOAK), longer timeouts
#   SKIFF_PKGS="./pkg/pki/..." scripts/test.sh vet unit   only some packages (default ./...)
#
# Exits non-zero when any step fails; later steps still run so one run shows
# every failure.
set -uo pipefail
cd "$(dirname "$0")/.."

# CI may run with a thin environment: go needs HOME for its caches, and may
# live outside PATH.
if [[ -z "${HOME:-}" ]]; then
	HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
	export HOME
fi
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
for d in /usr/local/sbin /usr/sbin /sbin; do # iptables, nft, ip, conntrack
	[[ ":$PATH:" == *":$d:"* ]] || export PATH="$PATH:$d"
done

# Packages with goroutines, locks and watches: these also run under -race.
RACE_PKGS=(
	./pkg/apiserver/...
	./pkg/storage/...
	./pkg/watchcache/...
	./pkg/scheduler/...
	./pkg/controller/...
)

# The default suite must finish well inside 20 minutes on 2 cores; a soak run
# may take longer.
if [[ "${SKIFF_SOAK:-}" == 1 ]]; then
	TIMEOUT=${SKIFF_TEST_TIMEOUT:-60m}
	export SKIFF_SOAK
else
	TIMEOUT=${SKIFF_TEST_TIMEOUT:-12m}
fi

# Word-split on purpose: SKIFF_PKGS may name several patterns.
read -r -a PKGS <<<"${SKIFF_PKGS:-./...}"

failed=()
step() { printf '\n==> %s\n' "$*"; }
fail() { failed+=("$1"); }

# command:debian-package pairs the tests need.
DEPS=(iptables:iptables nft:nftables ip:iproute2 conntrack:conntrack python3:python3 busybox:busybox curl:curl)

do_deps() {
	step "deps"
	local missing=() pair
	for pair in "${DEPS[@]}"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
	done
	if ((${#missing[@]} == 0)); then
		echo "all present: ${DEPS[*]%%:*}"
	elif [[ $(id -u) != 0 ]]; then
		echo "skip install: not root; missing ${missing[*]} — tests that need them skip themselves and say why"
	elif ! command -v apt-get >/dev/null 2>&1; then
		echo "skip install: no apt-get; missing ${missing[*]} — tests that need them skip themselves and say why"
	else
		echo "installing ${missing[*]}"
		local log
		log=$(mktemp)
		if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
			tail -n 20 "$log"
			echo "warning: apt-get install ${missing[*]} failed — tests that need them skip themselves and say why"
		fi
		rm -f "$log"
	fi
	if [[ $(id -u) != 0 ]]; then
		echo "note: not root — tests that need network namespaces, iptables or cgroups skip themselves"
	fi
	command -v kubectl >/dev/null 2>&1 || echo "note: no kubectl on PATH — kubectl compatibility tests skip themselves"
	command -v containerd >/dev/null 2>&1 || echo "note: no containerd on this host — only the built-in process runtime is exercised"
	return 0
}

do_fmt() {
	step "gofmt -l"
	local out
	out=$(find . -name '*.go' -not -path './.git/*' -not -path './vendor/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l 2>&1)
	if [[ -n "$out" ]]; then
		echo "these files need gofmt -w:"
		echo "$out"
		return 1
	fi
	echo "ok"
}

do_vet() {
	step "go vet ${PKGS[*]}"
	go vet "${PKGS[@]}"
}

do_build() {
	step "go build -o bin/ ./cmd/..."
	go build -o bin/ ./cmd/...
}

do_bench() {
	step "benchmarks once (-benchtime=1x)"
	go test -run '^$' -bench . -benchtime=1x -timeout "$TIMEOUT" "${PKGS[@]}"
}

do_race() {
	local pkgs=() p
	for p in "${RACE_PKGS[@]}"; do
		[[ -d "${p%/...}" ]] && pkgs+=("$p")
	done
	step "go test -race ${pkgs[*]}"
	if ((${#pkgs[@]} == 0)); then
		echo "skip: none of the race packages exist yet"
		return 0
	fi
	go test -race -timeout "$TIMEOUT" "${pkgs[@]}"
}

do_unit() {
	step "go test ${PKGS[*]}"
	go test -timeout "$TIMEOUT" "${PKGS[@]}"
}

steps=("$@")
((${#steps[@]})) || steps=(deps fmt vet build bench race unit)
for s in "${steps[@]}"; do
	case "$s" in
	deps | fmt | vet | build | bench | race | unit) "do_$s" || fail "$s" ;;
	*)
		echo "scripts/test.sh: unknown step $s (want deps fmt vet build bench race unit)" >&2
		exit 2
		;;
	esac
done

if ((${#failed[@]})); then
	echo "FAIL: ${failed[*]}"
	exit 1
fi
