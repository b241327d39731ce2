// Command loadgen sends GET requests at a fixed rate for a fixed time and
// reports every failure and the latency percentiles, for bench/frontend.sh.
//
// The load is open-loop: request i is due at start + i/rate whether or not
// earlier ones have answered, and its latency counts from when it was due,
// not from when it was sent. A stalled server therefore shows up as
// latency instead of as fewer requests (no coordinated omission).
//
// Output, on stdout: one summary line
//
//	requests ok failed p50_ms p90_ms p99_ms max_ms first_fail_ms last_fail_ms max_lag_ms slow
//
// (latencies of the successful requests; failure times from the start, -1
// when none failed; lag is how late the generator itself sent a request;
// slow counts successful requests that took over a second), then
// "failure <n> <kind>" and, with -bodies, "body <n> <text>" lines. With
// -trace, every request is also written to a file, one line each:
// "due_ms latency_ms result", result being "ok", the body or the failure.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// config is what one run sends.
type config struct {
	url      string
	host     string
	rate     float64
	duration time.Duration
	timeout  time.Duration
	bodies   bool
	trace    string
}

func run() error {
	var c config
	flag.StringVar(&c.url, "url", "", "URL to GET")
	flag.StringVar(&c.host, "host", "", "Host header (default: the URL's)")
	flag.Float64Var(&c.rate, "rate", 200, "requests per second")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.BoolVar(&c.bodies, "bodies", false, "count the distinct response bodies (short bodies only)")
	flag.StringVar(&c.trace, "trace", "", "file to write every request's due time, latency and result to")
	flag.Parse()
	if c.url == "" || c.rate <= 0 || c.duration <= 0 {
		return errors.New("need -url, a positive -rate and a positive -duration")
	}
	results, err := send(context.Background(), c)
	if err != nil {
		return err
	}
	report(os.Stdout, results)
	if c.trace != "" {
		return writeTrace(c.trace, results)
	}
	return nil
}

func writeTrace(path string, results []result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, r := range results {
		fmt.Fprintf(w, "%.3f %.3f %s\n", ms(r.due), ms(r.latency), cmp.Or(r.fail, r.body, "ok"))
	}
	return errors.Join(w.Flush(), f.Close())
}

// result is one request's outcome.
type result struct {
	due     time.Duration // from the start
	lag     time.Duration // sent this late
	latency time.Duration // from due to the end of the body
	fail    string        // kind of failure; empty when it succeeded
	body    string
}

func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// send runs the schedule and waits for every request to end.
func send(ctx context.Context, c config) ([]result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	if c.host != "" {
		req.Host = c.host
	}
	client := newClient(c.timeout)
	defer client.CloseIdleConnections()
	n := int(math.Round(c.rate * c.duration.Seconds()))
	interval := time.Duration(float64(time.Second) / c.rate)
	results := make([]result, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := time.Duration(i) * interval
		time.Sleep(time.Until(start.Add(due)))
		wg.Go(func() {
			results[i] = do(client, req, c.bodies)
			results[i].due = due
			results[i].lag = time.Since(start) - due - results[i].latency
			results[i].latency += results[i].lag
		})
	}
	wg.Wait()
	return results, nil
}

// do sends one request; latency is measured from the send here and made
// relative to the due time by the caller.
func do(client *http.Client, req *http.Request, keepBody bool) result {
	t0 := time.Now()
	resp, err := client.Do(req.Clone(req.Context()))
	if err != nil {
		return result{latency: time.Since(t0), fail: kind(err)}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := result{latency: time.Since(t0)}
	switch {
	case err != nil:
		r.fail = "body: " + kind(err)
	case resp.StatusCode < 200 || resp.StatusCode > 399:
		r.fail = fmt.Sprintf("status %d", resp.StatusCode)
	}
	if keepBody {
		r.body = strings.TrimSpace(string(body))
	}
	return r
}

// kind names a transport error briefly, so failures can be counted by kind.
func kind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}

func report(w io.Writer, results []result) {
	var lat []time.Duration
	var maxLag time.Duration
	slow := 0
	first, last := time.Duration(-1), time.Duration(-1)
	fails, bodies := map[string]int{}, map[string]int{}
	for _, r := range results {
		maxLag = max(maxLag, r.lag)
		if r.fail != "" {
			fails[r.fail]++
			if first < 0 {
				first = r.due
			}
			last = r.due
			continue
		}
		lat = append(lat, r.latency)
		if r.latency > time.Second {
			slow++
		}
		if r.body != "" {
			bodies[r.body]++
		}
	}
	slices.Sort(lat)
	failed := len(results) - len(lat)
	fmt.Fprintf(w, "%d %d %d %.3f %.3f %.3f %.3f %d %d %.3f %d\n", len(results), len(lat), failed,
		ms(percentile(lat, 0.50)), ms(percentile(lat, 0.90)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1)),
		wholeMS(first), wholeMS(last), ms(maxLag), slow)
	for _, k := range slices.SortedFunc(maps.Keys(fails), func(a, b string) int { return cmp.Compare(fails[b], fails[a]) }) {
		fmt.Fprintf(w, "failure %d %s\n", fails[k], k)
	}
	for _, k := range slices.Sorted(maps.Keys(bodies)) {
		fmt.Fprintf(w, "body %d %s\n", bodies[k], k)
	}
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func wholeMS(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}
