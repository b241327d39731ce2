package registry

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRateLimitedRegistryIsLeftAloneUntilRetryAfter(t *testing.T) {
	limited, other := newTestRegistry(t), newTestRegistry(t)
	d := limited.push("app:stable", randomImage(t))
	od := other.push("app:stable", randomImage(t))
	clock := newFakeClock()
	metrics := prometheus.NewRegistry()
	c := newTestChecker(t, Options{Now: clock.Now, Registerer: metrics})
	chk := Check{Ref: limited.ref("app:stable"), LocalRepoDigests: []string{limited.repoDigest("app", d)}}
	otherChk := Check{Ref: other.ref("app:stable"), LocalRepoDigests: []string{other.repoDigest("app", od)}}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}

	limited.injectFault(http.StatusTooManyRequests, http.Header{"Retry-After": {"2"}})
	_, err := c.Check(context.Background(), chk)
	var rl *RateLimitedError
	if !errors.As(err, &rl) || !rl.Until.Equal(clock.Now().Add(2*time.Second)) || !IsTransient(err) {
		t.Fatalf("want a rate limit until now+2s, got %v", err)
	}

	clock.Advance(time.Second)
	n := limited.requestCount()
	_, err = c.Check(context.Background(), chk)
	if !errors.As(err, &rl) {
		t.Fatalf("within Retry-After: want the rate-limit error, got %v", err)
	}
	if got := limited.requestsSince(n); len(got) != 0 {
		t.Fatalf("within Retry-After: want no request, made %v", got)
	}
	if _, err := c.Check(context.Background(), otherChk); err != nil {
		t.Fatalf("another registry must not be held back: %v", err)
	}

	clock.Advance(time.Second)
	if res, err := c.Check(context.Background(), chk); err != nil || res.Update {
		t.Fatalf("after Retry-After: want a normal check, got %+v, %v", res, err)
	}
	host := limited.host()
	if got := counterValue(t, c.metrics.rateLimited.WithLabelValues(host)); got != 1 {
		t.Errorf("hawser_registry_rate_limited_total: want 1, got %v", got)
	}
	if got := counterValue(t, c.metrics.checks.WithLabelValues(host, resultRateLimited)); got != 2 {
		t.Errorf("rate-limited checks: want 2, got %v", got)
	}
	if got := counterValue(t, c.metrics.checks.WithLabelValues(host, resultUpToDate)); got != 2 {
		t.Errorf("up-to-date checks: want 2, got %v", got)
	}
	if n := seriesCount(t, metrics, "hawser_registry_check_duration_seconds"); n != 2 {
		t.Errorf("want a duration series per registry, got %d", n)
	}
}

func TestRateLimitWithoutRetryAfterBacksOffExponentially(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	clock := newFakeClock()
	c := newTestChecker(t, Options{Now: clock.Now})
	chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", d)}}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}

	for i, want := range []time.Duration{rateLimitBase, 2 * rateLimitBase, 4 * rateLimitBase} {
		reg.injectFault(http.StatusTooManyRequests, nil)
		_, err := c.Check(context.Background(), chk)
		var rl *RateLimitedError
		if !errors.As(err, &rl) {
			t.Fatalf("429 #%d: want a rate-limit error, got %v", i+1, err)
		}
		if got := rl.Until.Sub(clock.Now()); got != want {
			t.Fatalf("429 #%d: want a back-off of %v, got %v", i+1, want, got)
		}
		clock.Advance(want)
	}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}
	reg.injectFault(http.StatusTooManyRequests, nil)
	_, err := c.Check(context.Background(), chk)
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.Until.Sub(clock.Now()) != rateLimitBase {
		t.Fatalf("after a success the back-off should start over, got %v", err)
	}
}

func TestStoppedRegistryIsTransientForItsImagesOnly(t *testing.T) {
	down, up := newTestRegistry(t), newTestRegistry(t)
	d := down.push("app:stable", randomImage(t))
	u := up.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{Registerer: prometheus.NewRegistry()})
	downChk := Check{Ref: down.ref("app:stable"), LocalRepoDigests: []string{down.repoDigest("app", d)}}
	upChk := Check{Ref: up.ref("app:stable"), LocalRepoDigests: []string{up.repoDigest("app", u)}}
	for _, chk := range []Check{downChk, upChk} {
		if _, err := c.Check(context.Background(), chk); err != nil {
			t.Fatal(err)
		}
	}

	down.public.Close()
	_, err := c.Check(context.Background(), downChk)
	var te *TransientError
	if !errors.As(err, &te) || te.Registry != down.host() || !IsTransient(err) {
		t.Fatalf("want a transient error for the stopped registry, got %v", err)
	}
	if res, err := c.Check(context.Background(), upChk); err != nil || res.Update {
		t.Fatalf("the other registry should check as before, got %+v, %v", res, err)
	}
	if got := counterValue(t, c.metrics.checks.WithLabelValues(down.host(), resultUnavailable)); got != 1 {
		t.Errorf("unavailable checks: want 1, got %v", got)
	}
}

func TestServerErrorIsTransient(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{})
	chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", d)}}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}

	reg.injectFault(http.StatusServiceUnavailable, nil)
	if _, err := c.Check(context.Background(), chk); !IsTransient(err) {
		t.Fatalf("want a transient error for a 503, got %v", err)
	}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatalf("a 5xx must not hold the registry back: %v", err)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for header, want := range map[string]time.Duration{
		"2": 2 * time.Second,
		"0": 0,
		now.Add(time.Minute).Format(http.TimeFormat):  time.Minute,
		now.Add(-time.Minute).Format(http.TimeFormat): 0,
		"999999": retryAfterMax,
	} {
		got, ok := retryAfter(header, now)
		if !ok || got != want {
			t.Errorf("Retry-After %q: want %v, got %v (%v)", header, want, got, ok)
		}
	}
	for _, header := range []string{"", "soon", "-3"} {
		if _, ok := retryAfter(header, now); ok {
			t.Errorf("Retry-After %q: want it ignored", header)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func seriesCount(t *testing.T, g prometheus.Gatherer, name string) int {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}
