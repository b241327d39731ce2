package reconciler

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one reconcile, the values of hawser_reconcile_total's label.
const (
	resultUnchanged = "unchanged"
	resultDeployed  = "deployed"
	resultFailed    = "failed"
	resultSkipped   = "skipped"
)

// Metrics are the reconciler's series, registered on a registry the daemon
// owns (never the global default).
type Metrics struct {
	reconciles     *prometheus.CounterVec
	duration       prometheus.Histogram
	lastSuccess    prometheus.Gauge
	sourceCommit   *prometheus.GaugeVec
	recreations    *prometheus.CounterVec
	buildDuration  *prometheus.HistogramVec
	deployDuration prometheus.Histogram
	imageUpdates   *prometheus.CounterVec
	deployments    *prometheus.CounterVec
	rollbacks      prometheus.Counter
	previews       *prometheus.GaugeVec
	previewWake    prometheus.Histogram
}

// NewMetrics creates the series and registers them, with hawser_build_info.
func NewMetrics(reg prometheus.Registerer, version string) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hawser_reconcile_total",
			Help: "Reconciles by result: unchanged (cheap tick), deployed, failed, skipped (a known-failed commit).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hawser_reconcile_duration_seconds",
			Help:    "Wall time of one reconcile, cheap ticks included.",
			Buckets: []float64{.005, .01, .05, .1, .5, 1, 5, 15, 60, 300},
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hawser_last_success_timestamp_seconds",
			Help: "Unix time of the last reconcile that ended without error.",
		}),
		sourceCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hawser_source_commit_info",
			Help: "The commit the watched branch points at, as labels; the value is always 1.",
		}, []string{"branch", "commit"}),
		recreations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hawser_service_recreations_total",
			Help: "Containers (re)created, by service and reason.",
		}, []string{"service", "reason"}),
		buildDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hawser_build_duration_seconds",
			Help:    "Time to build one service's image for a commit.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 10),
		}, []string{"service"}),
		deployDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hawser_apply_duration_seconds",
			Help:    "Time to apply one plan to the engine: create, start and wait for health.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 10),
		}),
	}
	m.imageUpdates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hawser_image_updates_total",
		Help: "Updates of followed images (new digest of a tag, newer semver tag, or new base image) pulled or rebuilt, by service.",
	}, []string{"service"})
	m.deployments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hawser_deployments_total",
		Help: "Deployments that changed something or failed, by result: succeeded, failed, rolled_back.",
	}, []string{"result"})
	m.rollbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hawser_rollbacks_total",
		Help: "Deployments rolled back because a new container did not become healthy.",
	})
	m.previews = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hawser_previews",
		Help: "Branch previews by state: running, sleeping.",
	}, []string{"state"})
	m.previewWake = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hawser_preview_wake_seconds",
		Help:    "Time from the first request to a sleeping preview until it serves.",
		Buckets: prometheus.ExponentialBuckets(0.25, 2, 10),
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "hawser_build_info",
		Help:        "hawser's version and Go version, as labels; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(m.reconciles, m.duration, m.lastSuccess, m.sourceCommit, m.recreations, m.buildDuration, m.deployDuration, m.imageUpdates, m.deployments, m.rollbacks, m.previews, m.previewWake, info)
	return m
}

func (m *Metrics) observeCommit(branch, commit string) {
	m.sourceCommit.Reset()
	m.sourceCommit.WithLabelValues(branch, commit).Set(1)
}
