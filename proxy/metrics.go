package proxy

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// unknownHost is the host label of requests for hosts not in the route
// table, so that clients cannot mint series by sending random Host headers.
const unknownHost = "unknown"

// metrics are the proxy's series. Label values are bounded: host is a routed
// host or "unknown"; code is the status class ("1xx" … "5xx"), which is what
// alerts and error-rate panels use and keeps a host at five series.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	swaps    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hawser_proxy_requests_total",
			Help: "Requests through the front end by routed host (\"unknown\" for others) and status class (2xx, 4xx, ...).",
		}, []string{"host", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hawser_proxy_request_duration_seconds",
			Help:    "Time from request to the end of the response (of the connection for WebSockets), by routed host.",
			Buckets: prometheus.DefBuckets,
		}, []string{"host"}),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hawser_route_table_swaps_total",
			Help: "Route tables installed in the front end.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.swaps} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(host string, status int, elapsed time.Duration) {
	m.requests.WithLabelValues(host, statusClass(status)).Inc()
	m.duration.WithLabelValues(host).Observe(elapsed.Seconds())
}

func (m *metrics) forget(host string) {
	m.requests.DeletePartialMatch(prometheus.Labels{"host": host})
	m.duration.DeleteLabelValues(host)
}

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// ForgetHost deletes the series of host, for a route that is gone for good
// (a preview torn down). Requests still in flight for it may record once more.
func (p *Proxy) ForgetHost(host string) {
	p.metrics.forget(host)
}
