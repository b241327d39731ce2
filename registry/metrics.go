package registry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one check, the values of hawser_registry_checks_total's label.
const (
	resultUpToDate    = "up_to_date"
	resultUpdate      = "update"
	resultRateLimited = "rate_limited"
	resultUnavailable = "unavailable"
	resultError       = "error"
)

// metrics are the registry series, on a registry the daemon owns.
type metrics struct {
	checks      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	rateLimited *prometheus.CounterVec
}

// newMetrics creates the series and registers them on reg, when not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hawser_registry_checks_total",
			Help: "Image checks by registry and result: up_to_date, update, rate_limited, unavailable, error.",
		}, []string{"registry", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hawser_registry_check_duration_seconds",
			Help:    "Time to check one image against its registry.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"registry"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hawser_registry_rate_limited_total",
			Help: "HTTP 429 answers received, by registry host.",
		}, []string{"registry"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.checks, m.duration, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register registry metrics: %w", err)
		}
	}
	return m, nil
}
