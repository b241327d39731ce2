package registry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Back-off after HTTP 429. Without Retry-After the wait doubles with every
// 429 in a row, from rateLimitBase up to rateLimitMax; a Retry-After is
// honoured up to retryAfterMax, so a bogus header cannot park a registry for
// days.
const (
	rateLimitBase = 30 * time.Second
	rateLimitMax  = 30 * time.Minute
	retryAfterMax = 6 * time.Hour
)

// RateLimitedError is the answer for a registry that replied 429 Too Many
// Requests: until Until, checks against it fail with this error at once,
// without sending a request.
type RateLimitedError struct {
	// Registry is the host[:port] that asked for the break.
	Registry string
	// Until is when the registry may be asked again.
	Until time.Time
}

// Error implements error.
func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("registry %s rate limited, retry after %s", e.Registry, e.Until.UTC().Format(time.RFC3339))
}

// limiter keeps the back-off state of each registry host.
type limiter struct {
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics

	mu    sync.Mutex
	hosts map[string]backoff
}

type backoff struct {
	until   time.Time
	strikes int
}

func newLimiter(now func() time.Time, log *slog.Logger, m *metrics) *limiter {
	return &limiter{now: now, log: log, metrics: m, hosts: map[string]backoff{}}
}

// blocked returns a *RateLimitedError while host is backing off.
func (l *limiter) blocked(host string) error {
	host = strings.ToLower(host)
	l.mu.Lock()
	b := l.hosts[host]
	l.mu.Unlock()
	if l.now().Before(b.until) {
		return &RateLimitedError{Registry: host, Until: b.until}
	}
	return nil
}

// limited records a 429 from host and returns when it may be asked again.
func (l *limiter) limited(host, retryAfterHeader string) time.Time {
	host = strings.ToLower(host)
	now := l.now()
	l.mu.Lock()
	b := l.hosts[host]
	b.strikes++
	wait, ok := retryAfter(retryAfterHeader, now)
	if !ok {
		wait = exponential(b.strikes)
	}
	b.until = now.Add(wait)
	l.hosts[host] = b
	l.mu.Unlock()
	l.metrics.rateLimited.WithLabelValues(host).Inc()
	l.log.Warn("registry rate limit, backing off", "registry", host, "until", b.until, "retry_after", retryAfterHeader)
	return b.until
}

// succeeded ends host's run of 429s, unless a request that was under way
// when the 429 came is what succeeded.
func (l *limiter) succeeded(host string) {
	host = strings.ToLower(host)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.hosts[host]; ok && !now.Before(b.until) {
		delete(l.hosts, host)
	}
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func retryAfter(header string, now time.Time) (time.Duration, bool) {
	header = strings.TrimSpace(header)
	if header == "" {
		return 0, false
	}
	var wait time.Duration
	if secs, err := strconv.Atoi(header); err == nil && secs >= 0 {
		wait = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(header); err == nil {
		wait = max(at.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(wait, retryAfterMax), true
}

func exponential(strikes int) time.Duration {
	wait := rateLimitBase
	for i := 1; i < strikes && wait < rateLimitMax; i++ {
		wait *= 2
	}
	return min(wait, rateLimitMax)
}

// rateGate keeps requests away from a registry while it backs off and turns
// a 429 into a *RateLimitedError. It sits under go-containerregistry's
// transports so that every request counts: ping, token exchange, HEAD, list.
type rateGate struct {
	limits *limiter
	inner  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (g rateGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.limits.blocked(req.URL.Host); err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := g.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		until := g.limits.limited(req.URL.Host, resp.Header.Get("Retry-After"))
		discard(resp)
		return nil, &RateLimitedError{Registry: strings.ToLower(req.URL.Host), Until: until}
	}
	if resp.StatusCode < http.StatusBadRequest {
		g.limits.succeeded(req.URL.Host)
	}
	return resp, nil
}

// discard drains a little of a response so its connection can be reused.
func discard(resp *http.Response) {
	// A failed drain only costs the keep-alive connection.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
