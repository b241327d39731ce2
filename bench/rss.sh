#!/usr/bin/env bash
# Resident memory of an idle `hawser serve`, with 50 services and, as the
# baseline of the same run, with 1 service. It builds ./cmd/hawser once;
# for each size N it makes a git repo with an N-service busybox project, runs
# `hawser serve` on a .env pointing at it, waits until the N containers run,
# lets it idle IDLE seconds (a tick every 2 s), reads VmRSS and VmHWM from
# /proc/<pid>/status and stops it.
#
# Usage: bench/rss.sh            (from the repository root; about 2 minutes)
# Env:   HAWSER_BIN=path runs that binary instead of building ./cmd/hawser;
#        IDLE=20 seconds of idling, COUNTS="1 50" project sizes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
IDLE=${IDLE:-20}
COUNTS=${COUNTS:-"1 50"}
DEADLINE=${DEADLINE:-240} # seconds allowed for one deploy
tmp=$(mktemp -d /tmp/hawser-rss.XXXXXX)
pid=""
project=""
imported=""

cleanup() {
	set +e
	stop_hawser
	[ -n "$project" ] && remove_project "$project"
	[ -n "$imported" ] && docker rmi -f busybox:1.36 >/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_hawser() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		timeout 20 tail --pid="$pid" -f /dev/null || kill -KILL "$pid"
	fi
	pid=""
}

remove_project() {
	local ids
	ids=$(docker ps -aq --filter "label=com.docker.compose.project=$1")
	[ -n "$ids" ] && docker rm -f $ids >/dev/null
	ids=$(docker network ls -q --filter "label=com.docker.compose.project=$1")
	[ -n "$ids" ] && docker network rm $ids >/dev/null
	return 0
}

git_() {
	git -C "$1" -c user.name=bench -c user.email=bench@example.invalid "${@:2}"
}

compose_file() {
	echo "services:"
	for i in $(seq -w 1 "$1"); do
		printf '  s%s:\n    image: busybox:1.36\n    init: true\n    command: ["sleep", "3600"]\n' "$i"
		# No registry is reachable and nothing may leave 127.0.0.1: no update checks.
		printf '    labels: {dev.hawser.update: none}\n'
	done
}

running() {
	docker ps -q --filter "label=com.docker.compose.project=$1" --filter status=running | wc -l
}

# measure N prints one result line for an N-service project.
measure() {
	local n=$1 dir=$tmp/n$n
	project=hawser-rss-$n-$$
	mkdir -p "$dir/repo" "$dir/state"
	git_ "$dir/repo" init -q -b main
	compose_file "$n" >"$dir/repo/compose.yaml"
	git_ "$dir/repo" add -A
	git_ "$dir/repo" commit -q -m "$n services"
	cat >"$dir/.env" <<-EOF
		HAWSER_REPO=$dir/repo
		HAWSER_PATH=.
		HAWSER_PROJECT=$project
		HAWSER_STATE_DIR=$dir/state
		HAWSER_ADMIN_ADDR=127.0.0.1:0
		HAWSER_HTTP_ADDR=127.0.0.1:0
		HAWSER_SCHEDULE=@every 2s
		HAWSER_SCHEDULE_JITTER=0s
	EOF
	"$tmp/hawser" -env "$dir/.env" serve 2>"$dir/log" &
	pid=$!
	local start=$SECONDS
	until [ "$(running "$project")" -ge "$n" ]; do
		kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; echo "hawser exited" >&2; exit 1; }
		[ $((SECONDS - start)) -lt "$DEADLINE" ] || { tail "$dir/log" >&2; echo "deploy of $n services took over ${DEADLINE}s" >&2; exit 1; }
		sleep 1
	done
	local deployed=$((SECONDS - start))
	sleep "$IDLE"
	local admin rss hwm anon file ticks heap
	admin=$(sed -n 's/.*admin=\(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$dir/log" | head -1)
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
	hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
	anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status")
	file=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status")
	ticks=$(curl -fsS --max-time 5 "$admin/metrics" | awk '/^hawser_reconcile_total\{result="unchanged"\}/ {print $2}')
	heap=$(curl -fsS --max-time 5 "$admin/metrics" | awk '/^go_memstats_heap_inuse_bytes / {printf "%d", $2/1024}')
	printf '%-9s %9s %9s %11s %11s %13s %11s %9s\n' "$n" "$rss" "$hwm" "$anon" "$file" "$heap" "${ticks:-0}" "$deployed"
	echo "$n $rss $hwm" >>"$tmp/results"
	stop_hawser
	remove_project "$project"
	project=""
}

if ! docker image inspect busybox:1.36 >/dev/null 2>&1; then
	make -C "$root" --no-print-directory base-image >&2
	imported=1
fi
if [ -n "${HAWSER_BIN:-}" ]; then
	cp "$HAWSER_BIN" "$tmp/hawser"
else
	(cd "$root" && go build -o "$tmp/hawser" ./cmd/hawser)
fi

echo "hawser serve, idle ${IDLE}s after all services run (ticks every 2 s)"
printf '%-9s %9s %9s %11s %11s %13s %11s %9s\n' services VmRSS_kB VmHWM_kB RssAnon_kB RssFile_kB heap_inuse_kB idle_ticks deploy_s
for n in $COUNTS; do
	measure "$n"
done
awk 'NR == 1 {r = $2; h = $3} END {if (NR > 1) printf "ratio %s/%s services: VmRSS x%.2f, VmHWM x%.2f; %s services: VmRSS %.1f MB (goal < 40 MB)\n", $1, first, $2 / r, $3 / h, $1, $2 / 1024} NR == 1 {first = $1}' "$tmp/results"
