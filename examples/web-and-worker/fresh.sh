# The worker's healthcheck: healthy while its page is fresh, written within
# the last two intervals (and two seconds for a slow disk): a stale page
# an earlier worker left in the volume does not make it healthy.
page=/data/index.html
[ -s "$page" ] || exit 1
age=$(($(date +%s) - $(stat -c %Y "$page")))
[ "$age" -le $((2 * WORKER_INTERVAL + 2)) ]
