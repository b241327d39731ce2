# The worker: every WORKER_INTERVAL seconds it writes the page the web
# service serves into the volume both mount at /data. Its count is kept in
# the volume too, so a recreated worker carries on where the old one stopped.
set -eu

case "$WORKER_INTERVAL" in
'' | *[!0-9]* | 0)
	echo "WORKER_INTERVAL=$WORKER_INTERVAL: want a whole number of seconds, at least 1" >&2
	exit 2
	;;
esac

# replace writes stdin to a file in one rename, so the web service never
# serves a half-written one.
replace() {
	cat >"$1.new"
	mv "$1.new" "$1"
}

count=$(cat /data/count 2>/dev/null || echo 0)
while :; do
	count=$((count + 1))
	replace /data/index.html <<PAGE
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta http-equiv="refresh" content="$WORKER_INTERVAL"><title>web-and-worker</title></head>
<body>
<h1>$GREETING</h1>
<p>Update $count, written by the worker at $(date -u '+%H:%M:%S') UTC.</p>
<p>The worker writes this page into the named volume every $WORKER_INTERVAL s; the web service serves it.</p>
</body>
</html>
PAGE
	echo "$count" | replace /data/count
	sleep "$WORKER_INTERVAL"
done
