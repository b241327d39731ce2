#!/usr/bin/env bash
# Time from a new commit that changes one service's image to the new
# container running: hawser (sync requested through the admin API, so the
# poll interval is not measured) against `docker-compose up -d` (v1.29) doing
# the same recreate of the same project under another project name, side by
# side in one run, ROUNDS times, alternating which goes first.
#
# The two images are prepared before timing (a LABEL on top of busybox:1.36,
# so they differ in ID and nothing is built or pulled while timed). The
# moment a container runs is the engine's own "start" event (docker events),
# so neither side is slowed by polling docker.
#
# Usage: bench/recreate.sh       (from the repository root; about 1 minute)
# Env:   HAWSER_BIN=path runs that binary instead of building ./cmd/hawser;
#        ROUNDS=5; LOG_LEVEL=debug and SAVE_LOG=file keep hawser's log, to see
#        where its time goes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
WAIT=${WAIT:-60} # seconds allowed for one recreate
tmp=$(mktemp -d /tmp/hawser-recreate.XXXXXX)
img=hawser-bench-img-$$
hproj=hawser-rc-$$
cproj=compose-rc-$$
pid=""
events=""
imported=""

cleanup() {
	set +e
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && timeout 20 tail --pid="$pid" -f /dev/null
	[ -n "$events" ] && kill "$events" 2>/dev/null
	[ -n "${SAVE_LOG:-}" ] && cp "$tmp/log" "$SAVE_LOG"
	for p in "$hproj" "$cproj"; do
		ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p")
		[ -n "$ids" ] && docker rm -f $ids >/dev/null
		ids=$(docker network ls -q --filter "label=com.docker.compose.project=$p")
		[ -n "$ids" ] && docker network rm $ids >/dev/null
	done
	docker rmi "$img:v1" "$img:v2" >/dev/null 2>&1
	[ -n "$imported" ] && docker rmi -f busybox:1.36 >/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
git_() { git -C "$tmp/repo" -c user.name=bench -c user.email=bench@example.invalid "$@"; }

# compose_file TAG: web runs the benchmark image at TAG, worker never changes.
# Neither asks hawser to check a registry for updates (a sync would, by
# default): no registry is reachable and nothing may leave 127.0.0.1.
compose_file() {
	cat <<-EOF
		services:
		  web:
		    image: $img:$1
		    init: true
		    command: ["sleep", "3600"]
		    labels: {dev.hawser.update: none}
		  worker:
		    image: busybox:1.36
		    init: true
		    command: ["sleep", "3600"]
		    labels: {dev.hawser.update: none}
	EOF
}

# started PROJECT SINCE: the engine time (ns) of the first start of the
# project's web container after SINCE, waiting for it at most WAIT seconds.
started() {
	local deadline=$((SECONDS + WAIT)) t
	while [ $SECONDS -lt $deadline ]; do
		t=$(awk -v p="$1" -v s="$2" '$2 == p && $3 == "web" && $1 > s {print $1; exit}' "$tmp/events")
		[ -n "$t" ] && { echo "$t"; return; }
		sleep 0.01
	done
	echo "no start of $1 web within ${WAIT}s" >&2
	return 1
}

metric() {
	curl -fsS --max-time 5 "$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

# deployed_after N: waits until hawser counts more than N deployments.
deployed_after() {
	local deadline=$((SECONDS + WAIT))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(metric 'hawser_reconcile_total{result="deployed"}')" -gt "$1" ] 2>/dev/null && return
		[ "$(metric 'hawser_reconcile_total{result="failed"}')" -gt 0 ] 2>/dev/null && break
		sleep 0.01
	done
	tail -20 "$tmp/log" >&2
	echo "hawser did not deploy" >&2
	return 1
}

web_image() {
	docker ps --filter "label=com.docker.compose.project=$1" --filter "label=com.docker.compose.service=web" \
		--filter status=running --format '{{.Image}}'
}

check_image() {
	local got
	got=$(web_image "$1")
	[ "$got" = "$img:$2" ] || { echo "$1: web runs '$got', want $img:$2" >&2; exit 1; }
}

round_hawser() {
	local tag=$1 before t0 run done
	before=$(metric 'hawser_reconcile_total{result="deployed"}')
	compose_file "$tag" >"$tmp/repo/compose.yaml"
	git_ commit -qam "web $tag"
	t0=$(now)
	curl -fsS --max-time 5 -X POST -H "Content-Type: application/json" -d "{}" "$admin/api/v1/sync" >/dev/null
	run=$(started "$hproj" "$t0")
	deployed_after "${before:-0}"
	done=$(now)
	check_image "$hproj" "$tag"
	echo "$(ms "$t0" "$run") $(ms "$t0" "$done")"
}

round_compose() {
	local tag=$1 t0 run done
	compose_file "$tag" >"$tmp/compose/compose.yaml"
	t0=$(now)
	docker-compose -p "$cproj" -f "$tmp/compose/compose.yaml" up -d --quiet-pull 2>>"$tmp/compose.log"
	done=$(now)
	run=$(started "$cproj" "$t0")
	check_image "$cproj" "$tag"
	echo "$(ms "$t0" "$run") $(ms "$t0" "$done")"
}

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

# --- setup (not timed) ---
if ! docker image inspect busybox:1.36 >/dev/null 2>&1; then
	make -C "$root" --no-print-directory base-image >&2
	imported=1
fi
for tag in v1 v2; do
	printf 'FROM busybox:1.36\nLABEL dev.hawser.bench=%s\n' "$tag" | docker build -q -t "$img:$tag" - >/dev/null 2>"$tmp/build.log" ||
		{ cat "$tmp/build.log" >&2; exit 1; }
done
if [ -n "${HAWSER_BIN:-}" ]; then
	cp "$HAWSER_BIN" "$tmp/hawser"
else
	(cd "$root" && go build -o "$tmp/hawser" ./cmd/hawser)
fi
mkdir -p "$tmp/repo" "$tmp/compose" "$tmp/state"
git_ init -q -b main
compose_file v1 >"$tmp/repo/compose.yaml"
git_ add -A
git_ commit -qm "web v1"
cat >"$tmp/.env" <<-EOF
	HAWSER_REPO=$tmp/repo
	HAWSER_PATH=.
	HAWSER_PROJECT=$hproj
	HAWSER_STATE_DIR=$tmp/state
	HAWSER_ADMIN_ADDR=127.0.0.1:0
	HAWSER_HTTP_ADDR=127.0.0.1:0
	HAWSER_SCHEDULE=@every 1h
	HAWSER_SCHEDULE_JITTER=0s
	HAWSER_LOG_LEVEL=${LOG_LEVEL:-info}
EOF
docker events --filter type=container --filter event=start \
	--format '{{.TimeNano}} {{index .Actor.Attributes "com.docker.compose.project"}} {{index .Actor.Attributes "com.docker.compose.service"}}' \
	>"$tmp/events" &
events=$!
sleep 0.5 # let the event stream connect before anything starts
"$tmp/hawser" -env "$tmp/.env" serve 2>"$tmp/log" &
pid=$!
admin=""
until [ -n "$admin" ]; do
	admin=$(sed -n 's/.*admin=\(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$tmp/log" | head -1)
	sleep 0.1
done
deployed_after 0
compose_file v1 >"$tmp/compose/compose.yaml"
docker-compose -p "$cproj" -f "$tmp/compose/compose.yaml" up -d 2>>"$tmp/compose.log"
check_image "$hproj" v1
check_image "$cproj" v1

echo "docker-compose 1.29 -p $hproj ps, on the containers hawser created:"
docker-compose -p "$hproj" -f "$tmp/repo/compose.yaml" ps

# --- timed rounds ---
printf '\n%-6s %-4s %-22s %-22s %-22s %-22s\n' round tag hawser_running_ms hawser_done_ms compose_running_ms compose_return_ms
for i in $(seq 1 "$ROUNDS"); do
	tag=v$((i % 2 + 1))
	if [ $((i % 2)) = 1 ]; then
		h=$(round_hawser "$tag")
		c=$(round_compose "$tag")
	else
		c=$(round_compose "$tag")
		h=$(round_hawser "$tag")
	fi
	read -r hr hd <<<"$h"
	read -r cr cd <<<"$c"
	printf '%-6s %-4s %-22s %-22s %-22s %-22s\n' "$i" "$tag" "$hr" "$hd" "$cr" "$cd"
	echo "$hr $hd $cr $cd" >>"$tmp/rounds"
done

hr=$(awk '{print $1}' "$tmp/rounds" | median)
hd=$(awk '{print $2}' "$tmp/rounds" | median)
cr=$(awk '{print $3}' "$tmp/rounds" | median)
cd=$(awk '{print $4}' "$tmp/rounds" | median)
echo
echo "medians over $ROUNDS rounds (ms): new container running: hawser $hr, docker-compose $cr;" \
	"done: hawser $hd (deployment recorded, after the 1 s settle), docker-compose $cd (command returned)"
awk -v hr="$hr" -v cr="$cr" -v hd="$hd" -v cd="$cd" 'BEGIN {
	printf "hawser overhead beyond docker-compose: to running %+d ms (x%.2f), to done %+d ms (x%.2f); goal: under +1000 ms\n", hr - cr, hr / cr, hd - cd, hd / cd
}'
