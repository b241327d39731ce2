#!/usr/bin/env bash
# The front-end benchmarks of issue 4, each with its baseline in the same run:
#
# 1. update: failed requests and latency under a constant load (RATE req/s,
#    open loop) while a routed busybox httpd service is updated: hawser's
#    blue-green through its front end, against `docker-compose up -d`
#    (1.29) recreating the same service (stop, then start) with the load sent
#    straight to its fixed published port. ROUNDS rounds, alternating which
#    goes first.
# 2. overhead: wrk through hawser's front end, straight to the upstream
#    container's published port, and through nginx and Caddy (Debian
#    packages, run here on 127.0.0.1 with minimal configs) to the same
#    published port; then a fixed-rate latency run with bench/cmd/loadgen.
#    ROUNDS rounds, rotating the order. If a goal is missed (or PROFILE=1),
#    hawser's proxy is profiled with bench/cmd/frontprof, next to a bare
#    httputil.ReverseProxy.
#
# Usage: bench/frontend.sh      (from the repository root; about 6 minutes)
# Needs: docker, docker-compose, wrk, nginx, caddy, go, git, curl, python3,
#        GNU time (apt-get install -y wrk nginx-light caddy docker-compose time).
# Env:   HAWSER_BIN=path runs that binary instead of building ./cmd/hawser;
#        PARTS="update overhead"; ROUNDS=3; RATE=200; WINDOW=12 (seconds of
#        load per update); WRK="-t2 -c32 -d10s"; WARM=2s; FIXED_RATE=1000;
#        FIXED_DURATION=5s; PROFILE=auto|1|0; MAX_SECONDS=900 (watchdog);
#        KEEP=dir copies the raw outputs (wrk, loadgen, profiles) there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PARTS=${PARTS:-"update overhead"}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-200}
WINDOW=${WINDOW:-12}
LEAD=${LEAD:-1.5} # seconds of load before the update is triggered
WRK=${WRK:-"-t2 -c32 -d10s"}
WARM=${WARM:-2s}
FIXED_RATE=${FIXED_RATE:-1000}
FIXED_DURATION=${FIXED_DURATION:-5s}
PROFILE=${PROFILE:-auto}
MAX_SECONDS=${MAX_SECONDS:-900}
WAIT=${WAIT:-60} # seconds allowed for one deployment

tmp=$(mktemp -d /tmp/hawser-frontend.XXXXXX)
bin=$tmp/bin
img=hawser-bench-echo-$$
hproj=hawser-fe-$$
cproj=compose-fe-$$
hawser_pid="" nginx_pid="" caddy_pid="" bg_pid="" watchdog="" imported=""

cleanup() {
	set +e
	for p in "$bg_pid" "$nginx_pid" "$caddy_pid"; do
		[ -n "$p" ] && kill -TERM "$p" 2>/dev/null && timeout 10 tail --pid="$p" -f /dev/null
	done
	[ -n "$hawser_pid" ] && kill -TERM "$hawser_pid" 2>/dev/null && timeout 20 tail --pid="$hawser_pid" -f /dev/null
	[ -n "$watchdog" ] && pkill -P "$watchdog" && kill "$watchdog" 2>/dev/null
	[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp -r "$tmp/out/." "$tmp/hawser.log" "$tmp/nginx" "$tmp/caddy" "$KEEP/" 2>/dev/null
	for p in "$hproj" "$cproj"; do
		ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p")
		[ -n "$ids" ] && docker rm -f $ids >/dev/null
		ids=$(docker network ls -q --filter "label=com.docker.compose.project=$p")
		[ -n "$ids" ] && docker network rm $ids >/dev/null
	done
	docker rmi "$img:1" >/dev/null 2>&1
	[ -n "$imported" ] && docker rmi -f busybox:1.36 >/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The whole run is bounded: past MAX_SECONDS the watchdog ends it, and the
# EXIT trap cleans up.
exec 3>&2
(sleep "$MAX_SECONDS" && echo "frontend.sh: over ${MAX_SECONDS}s, stopping" >&3 && kill -TERM $$) 2>/dev/null &
watchdog=$!

say() { printf '%s\n' "$*" >&2; }
now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
git_() { git -C "$tmp/repo" -c user.name=bench -c user.email=bench@example.invalid "$@"; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- the projects --------------------------------------------------------

# web_service VERSION [PORTS]: the busybox httpd service of part 1, serving
# its version. The compose baseline publishes a fixed port, which hawser's
# copy must not (a fixed host port forces the recreate strategy).
web_service() {
	cat <<-EOF
		  web:
		    image: busybox:1.36
		    init: true
		    command: ["sh", "-c", "echo \$\$VERSION > /www/index.html; exec httpd -f -p 8080 -h /www"]
		    environment: {VERSION: $1}
		    tmpfs: [/www]
		    labels: {dev.hawser.http.port: "8080", dev.hawser.update: none}
	EOF
	[ -z "${2:-}" ] || printf '    ports: ["%s"]\n' "$2"
}

# hawser_file VERSION: web, plus the static upstream of part 2. No service
# asks hawser for registry checks: none is reachable, nothing leaves 127.0.0.1.
hawser_file() {
	echo "services:"
	web_service "$1"
	cat <<-EOF
		  echo:
		    image: $img:1
		    init: true
		    labels: {dev.hawser.http.port: "8080", dev.hawser.update: none}
	EOF
}

compose_file() {
	echo "services:"
	web_service "$1" "127.0.0.1:$cport:8080"
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
		sleep 0.02
	done
	tail -20 "$tmp/hawser.log" >&2
	say "hawser did not deploy"
	return 1
}

# serves URL HOST WANT: waits until URL answers WANT (a body, or "200").
serves() {
	local deadline=$((SECONDS + WAIT)) got
	while [ $SECONDS -lt $deadline ]; do
		if [ "$3" = 200 ]; then
			got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $2" "$1" || true)
		else
			got=$(curl -s --max-time 2 -H "Host: $2" "$1" || true)
		fi
		[ "$got" = "$3" ] && return
		sleep 0.1
	done
	say "$1 (Host: $2) does not answer '$3' (last: '$got')"
	return 1
}

# --- setup (not measured) ---------------------------------------------

setup() {
	for cmd in docker docker-compose wrk nginx caddy go git curl python3 /usr/bin/time; do
		command -v "$cmd" >/dev/null || { say "missing $cmd (apt-get install -y wrk nginx-light caddy docker-compose time)"; exit 1; }
	done
	mkdir -p "$bin" "$tmp/repo" "$tmp/compose" "$tmp/state" "$tmp/out" "$tmp/echo"
	if ! docker image inspect busybox:1.36 >/dev/null 2>&1; then
		make -C "$root" --no-print-directory base-image >&2
		imported=1
	fi
	if [ -n "${HAWSER_BIN:-}" ]; then
		cp "$HAWSER_BIN" "$bin/hawser"
	else
		(cd "$root" && go build -o "$bin/hawser" ./cmd/hawser)
	fi
	(cd "$root" && go build -o "$bin/" ./bench/cmd/loadgen ./bench/cmd/frontprof)
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$tmp/echo/upstream" ./bench/cmd/upstream)
	printf 'FROM scratch\nCOPY upstream /upstream\nEXPOSE 8080\nENTRYPOINT ["/upstream"]\n' >"$tmp/echo/Dockerfile"
	docker build -q --label dev.hawser.bench=frontend -t "$img:1" "$tmp/echo" >/dev/null 2>"$tmp/build.log" ||
		{ cat "$tmp/build.log" >&2; exit 1; }

	cport=$(free_port)
	git_ init -q -b main
	hawser_file v1 >"$tmp/repo/compose.yaml"
	git_ add -A
	git_ commit -qm v1
	cat >"$tmp/.env" <<-EOF
		HAWSER_REPO=$tmp/repo
		HAWSER_PATH=.
		HAWSER_PROJECT=$hproj
		HAWSER_STATE_DIR=$tmp/state
		HAWSER_ADMIN_ADDR=127.0.0.1:0
		HAWSER_HTTP_ADDR=127.0.0.1:0
		HAWSER_PRIMARY_SERVICE=web
		HAWSER_SCHEDULE=@every 1h
		HAWSER_SCHEDULE_JITTER=0s
		HAWSER_LOG_LEVEL=${LOG_LEVEL:-info}
	EOF
	"$bin/hawser" -env "$tmp/.env" serve 2>"$tmp/hawser.log" &
	hawser_pid=$!
	admin="" front=""
	until [ -n "$admin" ] && [ -n "$front" ]; do
		kill -0 "$hawser_pid" 2>/dev/null || { cat "$tmp/hawser.log" >&2; exit 1; }
		admin=$(sed -n 's/.*admin=\(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$tmp/hawser.log" | head -1)
		front=$(sed -n 's/.*front end listening.* addr=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$tmp/hawser.log" | head -1)
		sleep 0.1
	done
	deployed_after 0
	serves "http://$front/" localhost v1
	serves "http://$front/" echo.localhost 200

	compose_file v1 >"$tmp/compose/compose.yaml"
	docker-compose -p "$cproj" -f "$tmp/compose/compose.yaml" up -d 2>>"$tmp/compose.log"
	serves "http://127.0.0.1:$cport/" localhost v1
}

# --- part 1: updates under load ----------------------------------------

# load URL HOST OUT: the constant load of one update window, in the background.
load() {
	"$bin/loadgen" -url "$1" -host "$2" -rate "$RATE" -duration "${WINDOW}s" -timeout 10s -bodies -trace "${3%.txt}.trace" >"$3" &
	bg_pid=$!
	load_start=$(now)
}

# finish_load NAME ROUND VERSION UPDATE_START UPDATE_END: waits for the load,
# checks the new version was served by the end and that the update ended
# inside the window, and prints the round's line.
finish_load() {
	local out=$tmp/out/update-$1-$2.txt
	wait "$bg_pid"
	bg_pid=""
	local requests ok failed p50 p90 p99 max first last lag slow
	read -r requests ok failed p50 p90 p99 max first last lag slow <"$out"
	local update_ms start_ms end_ms outage=0 disrupted during note=""
	update_ms=$(ms "$4" "$5")
	start_ms=$(ms "$load_start" "$4")
	end_ms=$(ms "$load_start" "$5")
	[ "$first" -ge 0 ] && outage=$((last - first + 1000 / RATE))
	# From the first request that failed or took over 1 s to the end of the
	# last such request.
	disrupted=$(awk '$2 > 1000 || $3 !~ /^(ok|v[0-9]+)$/ {if (!n++) s = $1; e = $1 + $2 > e ? $1 + $2 : e} END {printf "%.0f", n ? e - s : 0}' "${out%.txt}.trace")
	# p99 of the successful requests due while the update ran.
	during=$(awk -v a="$start_ms" -v b="$end_ms" '$1 >= a && $1 <= b && $3 ~ /^(ok|v[0-9]+)$/ {print $2}' "${out%.txt}.trace" |
		sort -g | awk '{v[NR] = $1} END {i = int(0.99 * NR); if (i < 0.99 * NR) i++; if (NR) print v[i]; else print "-"}')
	[ "$end_ms" -lt $((WINDOW * 1000 - 1000)) ] || note="update ended less than 1 s before the end of the load"
	grep -q "^body [0-9]* $3\$" "$out" || note="$note; $3 never served"
	printf '%-5s %-8s %8s %7s %6s %8s %9s %9s %9s %10s %11s %10s %s\n' "$2" "$1" "$requests" "$failed" "$slow" "$p50" "$p99" "$during" "$max" "$outage" "$disrupted" "$update_ms" "$note"
	echo "$1 $failed $p50 $p99 $max $outage $update_ms $slow $disrupted $during" >>"$tmp/update.results"
	grep '^failure' "$out" | sed "s/^/      $1 round $2: /" >&2 || true
}

update_hawser() {
	local version=$1 round=$2 before t0 t1
	before=$(metric 'hawser_reconcile_total{result="deployed"}')
	load "http://$front/" localhost "$tmp/out/update-hawser-$round.txt"
	sleep "$LEAD"
	hawser_file "$version" >"$tmp/repo/compose.yaml"
	git_ commit -qam "$version"
	t0=$(now)
	curl -fsS --max-time 5 -X POST -H "Content-Type: application/json" -d "{}" "$admin/api/v1/sync" >/dev/null
	deployed_after "${before:-0}"
	t1=$(now)
	finish_load hawser "$round" "$version" "$t0" "$t1"
}

update_compose() {
	local version=$1 round=$2 t0 t1
	load "http://127.0.0.1:$cport/" localhost "$tmp/out/update-compose-$round.txt"
	sleep "$LEAD"
	compose_file "$version" >"$tmp/compose/compose.yaml"
	t0=$(now)
	docker-compose -p "$cproj" -f "$tmp/compose/compose.yaml" up -d 2>>"$tmp/compose.log"
	t1=$(now)
	finish_load compose "$round" "$version" "$t0" "$t1"
}

part_update() {
	say ""
	say "== 1. updates under a constant load of $RATE req/s for ${WINDOW}s, update triggered after ${LEAD}s"
	printf '%-5s %-8s %8s %7s %6s %8s %9s %9s %9s %10s %11s %10s\n' round tool requests failed slow p50_ms p99_ms upd_p99 max_ms outage_ms disrupted_ms update_ms
	for i in $(seq 1 "$ROUNDS"); do
		local v=v$((i + 1))
		if [ $((i % 2)) = 1 ]; then
			update_hawser "$v" "$i"
			update_compose "$v" "$i"
		else
			update_compose "$v" "$i"
			update_hawser "$v" "$i"
		fi
	done
	echo
	echo "totals over $ROUNDS updates each (latency: medians of the rounds, successful requests):"
	for tool in hawser compose; do
		awk -v t="$tool" '$1 == t {f += $2; s += $8; n++} END {printf "%-8s failed %d and over 1 s %d, of %d requests", t, f, s, n * '"$((RATE * WINDOW))"'}' "$tmp/update.results"
		printf ', p50 %s ms, p99 %s ms (during the update %s ms), max %s ms, disrupted %s ms, update %s ms\n' \
			"$(awk -v t="$tool" '$1 == t {print $3}' "$tmp/update.results" | median)" \
			"$(awk -v t="$tool" '$1 == t {print $4}' "$tmp/update.results" | median)" \
			"$(awk -v t="$tool" '$1 == t {print $10}' "$tmp/update.results" | median)" \
			"$(awk -v t="$tool" '$1 == t {print $5}' "$tmp/update.results" | median)" \
			"$(awk -v t="$tool" '$1 == t {print $9}' "$tmp/update.results" | median)" \
			"$(awk -v t="$tool" '$1 == t {print $7}' "$tmp/update.results" | median)"
	done
	awk '$1 == "hawser" {f += $2} END {printf "goal: 0 failed requests for hawser: %s\n", f == 0 ? "met" : "NOT met"}' "$tmp/update.results"
}

# --- part 2: proxy overhead --------------------------------------------

start_nginx() {
	local port=$1 dir=$tmp/nginx
	mkdir -p "$dir"
	chmod 0755 "$tmp" # nginx's workers run as nobody
	cat >"$dir/nginx.conf" <<-EOF
		worker_processes auto;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections 1024; }
		http {
		    access_log off;
		    client_body_temp_path $dir/body;
		    proxy_temp_path $dir/proxy;
		    fastcgi_temp_path $dir/fastcgi;
		    uwsgi_temp_path $dir/uwsgi;
		    scgi_temp_path $dir/scgi;
		    upstream echo {
		        server 127.0.0.1:$upstream;
		        keepalive 64;
		    }
		    server {
		        listen 127.0.0.1:$port;
		        location / {
		            proxy_pass http://echo;
		            proxy_http_version 1.1;
		            proxy_set_header Connection "";
		            proxy_set_header Host \$host;
		            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		            proxy_set_header X-Forwarded-Host \$host;
		            proxy_set_header X-Forwarded-Proto \$scheme;
		        }
		    }
		}
	EOF
	nginx -e "$dir/error.log" -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' 2>>"$dir/error.log" &
	nginx_pid=$!
}

start_caddy() {
	local port=$1 dir=$tmp/caddy
	mkdir -p "$dir"
	cat >"$dir/Caddyfile" <<-EOF
		{
		    admin off
		    auto_https off
		    storage file_system $dir/data
		}
		http://:$port {
		    bind 127.0.0.1
		    reverse_proxy 127.0.0.1:$upstream
		}
	EOF
	HOME=$dir XDG_DATA_HOME=$dir/data XDG_CONFIG_HOME=$dir/config \
		caddy run --config "$dir/Caddyfile" --adapter caddyfile 2>"$dir/log" &
	caddy_pid=$!
}

# cpu_ticks PID...: user+system CPU of the processes (all their threads) in
# clock ticks.
cpu_ticks() {
	local t=0 p
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] && t=$((t + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
	done
	echo "$t"
}

# pids_of TARGET: the proxy's processes (nginx: master and workers).
pids_of() {
	case $1 in
	hawser) echo "$hawser_pid" ;;
	nginx) echo "$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')" ;;
	caddy) echo "$caddy_pid" ;;
	direct) ;;
	esac
}

# parse_wrk FILE: "rps p50_ms p99_ms requests errors".
parse_wrk() {
	awk '
		function toms(v,   n) { n = v + 0; if (v ~ /us$/) return n / 1000; if (v ~ /ms$/) return n; if (v ~ /m$/) return n * 60000; if (v ~ /s$/) return n * 1000; return n }
		/^ +50%/ { p50 = toms($2) }
		/^ +99%/ { p99 = toms($2) }
		/requests in/ { reqs = $1 }
		/^Requests\/sec:/ { rps = $2 }
		/Non-2xx/ { errs += $NF }
		/Socket errors/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
		END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, reqs, errs }' "$1"
}

# per_req TICKS REQUESTS: CPU microseconds per request.
per_req() { awk -v t="$1" -v hz="$hz" -v n="$2" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}'; }

# cpu_wait: the share of the last 10 s in which some task waited for a CPU
# (pressure stall information): how contended the machine was.
cpu_wait() { sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null || echo -; }

# measure TARGET ROUND: a warm-up, the wrk run, then the fixed-rate run. The
# CPU each process spent during the wrk run is read from /proc (wrk's from
# /usr/bin/time), per request.
measure() {
	local name=$1 round=$2 url=${targets[$1]} out=$tmp/out/overhead-$1-$2
	local pids p0 p1 d0 d1 u0 u1 wait
	pids=$(pids_of "$name")
	wrk $(sed -E 's/-d *[^ ]+//' <<<"$WRK") -d"$WARM" -H "Host: echo.localhost" "$url" >/dev/null
	p0=$(cpu_ticks $pids) d0=$(cpu_ticks "$dproxy") u0=$(cpu_ticks $uppids)
	# shellcheck disable=SC2086 # WRK is a list of flags
	/usr/bin/time -f '%U %S' -o "$out.time" wrk $WRK --latency -H "Host: echo.localhost" "$url" >"$out.wrk"
	p1=$(cpu_ticks $pids) d1=$(cpu_ticks "$dproxy") u1=$(cpu_ticks $uppids)
	wait=$(cpu_wait)
	"$bin/loadgen" -url "$url" -host echo.localhost -rate "$FIXED_RATE" -duration "$FIXED_DURATION" -timeout 10s >"$out.fixed"
	local rps p50 p99 reqs errs frq fok ffail fp50 fp90 fp99 fmax ffirst flast flag rest
	read -r rps p50 p99 reqs errs <<<"$(parse_wrk "$out.wrk")"
	read -r frq fok ffail fp50 fp90 fp99 fmax ffirst flast flag rest <"$out.fixed"
	local cpu dcpu ucpu wcpu total cores
	cpu=$(per_req $((p1 - p0)) "$reqs")
	dcpu=$(per_req $((d1 - d0)) "$reqs")
	ucpu=$(per_req $((u1 - u0)) "$reqs")
	wcpu=$(awk -v hz="$hz" '{print int(($1 + $2) * hz + 0.5)}' "$out.time")
	wcpu=$(per_req "$wcpu" "$reqs")
	total=$(awk -v a="$cpu" -v b="$dcpu" -v c="$ucpu" -v d="$wcpu" 'BEGIN {printf "%.1f", a + b + c + d}')
	cores=$(awk -v t="$total" -v r="$rps" 'BEGIN {printf "%.2f", t * r / 1e6}')
	printf '%-5s %-7s %7s %7s %7s %4s | %6s %6s %6s %6s %6s %5s | %7s %7s %4s %6s | %5s\n' "$round" "$name" "$rps" "$p50" "$p99" "$errs" \
		"$cpu" "$dcpu" "$ucpu" "$wcpu" "$total" "$cores" "$fp50" "$fp99" "$ffail" "$flag" "$wait"
	echo "$name $rps $p50 $p99 $errs $cpu $fp50 $fp99 $ffail $dcpu $ucpu $wcpu $total $wait" >>"$tmp/overhead.results"
	upstream_alive
}

# upstream_alive stops the run when the upstream container is gone (the
# engine is shared: a run once lost it midway), rather than report errors as
# figures.
upstream_alive() {
	local state
	state=$(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}' "$upstream_id" 2>&1 || true)
	case $state in
	running*) ;;
	*) say "the upstream container is not running ($state): stopping"; exit 1 ;;
	esac
}

# med TARGET COLUMN: the median over the rounds.
med() { awk -v t="$1" -v c="$2" '$1 == t {print $c}' "$tmp/overhead.results" | median; }

part_overhead() {
	local id nport caddyport rps p50 p99 reqs errs
	id=$(docker ps -q --filter "label=com.docker.compose.project=$hproj" --filter "label=com.docker.compose.service=echo" --filter status=running)
	upstream=$(docker port "$id" 8080/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -1)
	# The engine's userland proxy forwards the published port: every path
	# below goes through it, the direct one included.
	dproxy=$(ss -ltnpH "sport = :$upstream" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
	local init
	upstream_id=$id
	init=$(docker inspect -f '{{.State.Pid}}' "$id")
	uppids="$init $(pgrep -P "$init" | tr '\n' ' ')"
	hz=$(getconf CLK_TCK)
	nport=$(free_port)
	caddyport=$(free_port)
	start_nginx "$nport"
	start_caddy "$caddyport"
	declare -gA targets=(
		[direct]="http://127.0.0.1:$upstream/"
		[hawser]="http://$front/"
		[nginx]="http://127.0.0.1:$nport/"
		[caddy]="http://127.0.0.1:$caddyport/"
	)
	for t in direct hawser nginx caddy; do
		serves "${targets[$t]}" echo.localhost 200 || { tail -5 "$tmp/nginx/error.log" "$tmp/caddy/log" >&2; exit 1; }
	done

	say ""
	say "== 2. proxy overhead: why not busybox httpd as the upstream: wrk straight to the compose baseline's busybox httpd"
	# shellcheck disable=SC2086
	wrk $WRK --latency "http://127.0.0.1:$cport/" >"$tmp/out/overhead-busybox.wrk"
	read -r rps p50 p99 reqs errs <<<"$(parse_wrk "$tmp/out/overhead-busybox.wrk")"
	printf 'busybox httpd direct: rps %s, p50 %s ms, p99 %s ms, errors %s\n' "$rps" "$p50" "$p99" "$errs"
	say ""
	say "== 2. proxy overhead: wrk $WRK --latency, after a ${WARM} warm-up; then loadgen at $FIXED_RATE req/s for $FIXED_DURATION"
	say "   upstream: bench/cmd/upstream in a FROM scratch container, published on 127.0.0.1:$upstream (docker-proxy pid ${dproxy:-none})"
	say "   columns: wrk requests/s and latency (ms); CPU microseconds per request of the proxy, docker-proxy,"
	say "   the upstream, wrk, their total, and the cores that makes at that rate; the fixed-rate run's latency (ms), failures and the generator's"
	say "   own worst send lag (ms); cpu_wait: % of the wrk run some task waited for a CPU (/proc/pressure/cpu)"
	printf '%-5s %-7s %7s %7s %7s %4s | %6s %6s %6s %6s %6s %5s | %7s %7s %4s %6s | %5s\n' round target rps p50 p99 err \
		proxy dproxy upstr wrk total cores fix_p50 fix_p99 fail lag cpu_wait
	local order=(direct hawser nginx caddy)
	for i in $(seq 1 "$ROUNDS"); do
		for k in 0 1 2 3; do
			measure "${order[$(((k + i - 1) % 4))]}" "$i"
		done
	done
	kill -TERM "$nginx_pid" "$caddy_pid"
	wait "$nginx_pid" "$caddy_pid" 2>/dev/null || true
	nginx_pid="" caddy_pid=""

	echo
	echo "medians over $ROUNDS rounds; ratios against direct:"
	printf '%-7s %8s %9s %8s %10s %8s %10s %11s %9s %10s %11s %10s %11s\n' target rps rps/direct p50_ms p50-direct p99_ms p99-direct proxy_us/req total_us/req fixed_p50 fixed-direct fixed_p99 fixed-direct
	local drps dp50 dp99 dfp50 dfp99
	drps=$(med direct 2) dp50=$(med direct 3) dp99=$(med direct 4) dfp50=$(med direct 7) dfp99=$(med direct 8)
	for t in direct hawser nginx caddy; do
		awk -v t="$t" -v rps="$(med "$t" 2)" -v p50="$(med "$t" 3)" -v p99="$(med "$t" 4)" -v cpu="$(med "$t" 6)" -v total="$(med "$t" 13)" \
			-v fp50="$(med "$t" 7)" -v fp99="$(med "$t" 8)" -v drps="$drps" -v dp50="$dp50" -v dp99="$dp99" -v dfp50="$dfp50" -v dfp99="$dfp99" 'BEGIN {
			printf "%-7s %8.0f %9.2f %8.3f %+10.3f %8.3f %+10.3f %11.1f %9.1f %10.3f %+11.3f %10.3f %+11.3f\n", t, rps, rps / drps, p50, p50 - dp50, p99, p99 - dp99, cpu, total, fp50, fp50 - dfp50, fp99, fp99 - dfp99
		}'
	done
	local verdict
	verdict=$(awk -v h="$(med hawser 2)" -v d="$drps" -v hp="$(med hawser 4)" -v dp="$dp99" -v c="$(med caddy 2)" 'BEGIN {
		a = h >= 0.9 * d; b = hp - dp <= 1; e = h > c
		printf "goals: throughput >= 90%% of direct: %s (%.0f%%); p99 within 1 ms of direct: %s (%+.3f ms); ahead of Caddy: %s (x%.2f)\n", a ? "met" : "NOT met", 100 * h / d, b ? "met" : "NOT met", hp - dp, e ? "met" : "NOT met", h / c
		exit !(a && b && e)
	}') && met=1 || met=0
	echo "$verdict"
	if [ "$PROFILE" = 1 ] || { [ "$PROFILE" = auto ] && [ "$met" = 0 ]; }; then
		profile
	fi
}

# profile: hawser's proxy package alone (bench/cmd/frontprof, as serve sets
# it up) under the same wrk load with CPU and allocation profiles, next to a
# bare httputil.ReverseProxy with the same transport, without and with a
# BufferPool.
profile() {
	say ""
	say "== profile: bench/cmd/frontprof in front of the same upstream, wrk $WRK after a $WARM warm-up"
	local mode addr out rps p50 p99 reqs errs
	for mode in hawser bare bare-pool; do
		out=$tmp/out/profile-$mode
		local flags=(-cpuprofile "$out.pprof")
		case $mode in
		hawser) flags+=(-memprofile "$out.allocs") ;;
		bare) flags+=(-bare) ;;
		bare-pool) flags+=(-bare -pool) ;;
		esac
		"$bin/frontprof" -upstream "http://127.0.0.1:$upstream" "${flags[@]}" >"$out.addr" 2>"$out.log" &
		bg_pid=$!
		until addr=$(head -1 "$out.addr" 2>/dev/null) && [ -n "$addr" ]; do sleep 0.05; done
		serves "http://$addr/" echo.localhost 200
		wrk $(sed -E 's/-d *[^ ]+//' <<<"$WRK") -d"$WARM" -H "Host: echo.localhost" "http://$addr/" >/dev/null
		local c0 c1
		c0=$(cpu_ticks "$bg_pid")
		# shellcheck disable=SC2086
		wrk $WRK --latency -H "Host: echo.localhost" "http://$addr/" >"$out.wrk"
		c1=$(cpu_ticks "$bg_pid")
		kill -TERM "$bg_pid"
		wait "$bg_pid" || true
		bg_pid=""
		read -r rps p50 p99 reqs errs <<<"$(parse_wrk "$out.wrk")"
		printf '%-20s rps %6s, p50 %7s ms, p99 %7s ms, errors %s, proxy CPU %s us/req, cpu_wait %s%%\n' "frontprof $mode" "$rps" "$p50" "$p99" "$errs" "$(per_req $((c1 - c0)) "$reqs")" "$(cpu_wait)"
	done
	local top="go tool pprof -top -cum -nodecount=500 $bin/frontprof"
	echo
	echo "hawser's proxy (frontprof): share of the process's CPU samples, cumulative:"
	$top "$tmp/out/profile-hawser.pprof" 2>/dev/null >"$tmp/out/profile-hawser.top"
	grep -E '^Duration|  (net/http\.\(\*conn\)\.serve|internal/runtime/syscall/linux\.Syscall6|runtime\.mallocgc|runtime\.gcBgMarkWorker|runtime\.gcAssistAlloc|net/http/httputil\.\(\*ReverseProxy\)\.ServeHTTP|net/http/httputil\.\(\*ReverseProxy\)\.copyResponse|net/http\.\(\*Request\)\.Clone|net/http\.\(\*persistConn\)\.(readLoop|writeLoop)|hawser\.dev/hawser/proxy\..*|github\.com/prometheus/.*)$' \
		"$tmp/out/profile-hawser.top" | head -40
	echo
	echo "hawser's proxy (frontprof): allocated bytes by function (sampled, whole run):"
	go tool pprof -top -sample_index=alloc_space -nodecount=12 "$bin/frontprof" "$tmp/out/profile-hawser.allocs" 2>/dev/null | sed -n '/flat%/,$p'
	for mode in bare bare-pool; do
		echo
		echo "frontprof $mode: GC and allocation share of CPU samples:"
		$top "$tmp/out/profile-$mode.pprof" 2>/dev/null | grep -E '^Duration|  (runtime\.mallocgc|runtime\.gcBgMarkWorker|runtime\.gcAssistAlloc)$'
	done
}

say "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); docker $(docker version --format '{{.Server.Version}}'); $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'); $(nginx -v 2>&1 | sed 's/.*: //'); caddy $(caddy version | cut -d' ' -f1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(go version | cut -d' ' -f3)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
setup
for part in $PARTS; do
	case $part in
	update) part_update ;;
	overhead) part_overhead ;;
	*) say "unknown part $part"; exit 2 ;;
	esac
done
say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); whole run ${SECONDS}s, setup included"
