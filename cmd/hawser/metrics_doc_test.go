package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v4"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/store"
)

// Files checked against the code, relative to this package.
const (
	metricsDoc       = "../../docs/metrics.md"
	alertRules       = "../../deployment/alerts.yml"
	prometheusConfig = "../../deployment/prometheus.yml"
)

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// family is one metric family the daemon registers.
type family struct {
	typ    string   // counter, gauge, histogram, summary
	labels []string // const and variable label names, sorted
	// values are the label values of the series that exist already.
	values map[string][]string
}

// daemonMetrics is the daemon's admin handler and what its metric registry holds.
type daemonMetrics struct {
	admin   http.Handler
	metrics map[string]family
}

// newDaemonMetrics registers the daemon's metrics as serve does, through the same
// functions, without Docker: the reconciler is built but never run. The
// webhook secret is set, as webhooks register their counter only then.
func newDaemonMetrics(t *testing.T) daemonMetrics {
	t.Helper()
	env := writeEnv(t, "HAWSER_REPO="+t.TempDir(), "HAWSER_STATE_DIR="+t.TempDir(), "HAWSER_HTTP_ADDR=127.0.0.1:0",
		"HAWSER_WEBHOOK_SECRET=metrics-doc-test-secret")
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	rec := &describingRegisterer{Registerer: reg}
	// serve registers these two inline, before anything else.
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	front, err := newFrontEnd(cfg, rec, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(front.close)
	docker, err := client.New(client.FromEnv) // never dialled
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.Close() })
	st, err := store.Open(filepath.Join(cfg.StateDir, "hawser.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := newReconciler(cfg, docker, st, rec, proxy.NewRoutes(front.proxy), log)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := newWebhooks(cfg, r, rec, log)
	if err != nil {
		t.Fatal(err)
	}
	admin := adminHandler(r, reg, cfg.APIToken, log, adminParts{webhooks: hooks})
	return daemonMetrics{admin: admin, metrics: rec.metrics(t, reg)}
}

// describingRegisterer keeps what is registered through it: a Registry
// lists only the series that have a value, not the label vectors still
// empty.
type describingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (d *describingRegisterer) Register(c prometheus.Collector) error {
	if err := d.Registerer.Register(c); err != nil {
		return err
	}
	d.collectors = append(d.collectors, c)
	return nil
}

func (d *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

// metrics names every family registered through d, with its type and label
// names, and every family gathered from reg, which may have been registered
// on reg directly. Gathered families tell their type; label vectors still
// empty are not gathered and tell it by their Go type.
func (d *describingRegisterer) metrics(t *testing.T, reg prometheus.Gatherer) map[string]family {
	t.Helper()
	out := gatheredFamilies(t, reg)
	for _, c := range d.collectors {
		for _, desc := range describeAll(c) {
			name, labels, err := parseDesc(desc)
			if err != nil {
				t.Fatal(err)
			}
			typ := cmp.Or(out[name].typ, vectorType(c))
			if typ == "" {
				t.Fatalf("%s: cannot tell its type from %T", name, c)
			}
			out[name] = family{typ: typ, labels: labels, values: out[name].values}
		}
	}
	return out
}

// gatheredFamilies reads the families that have at least one series.
func gatheredFamilies(t *testing.T, reg prometheus.Gatherer) map[string]family {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]family{}
	for _, mf := range families {
		m := family{typ: strings.ToLower(mf.GetType().String()), values: map[string][]string{}}
		for _, series := range mf.GetMetric() {
			for _, l := range series.GetLabel() {
				m.values[l.GetName()] = append(m.values[l.GetName()], l.GetValue())
			}
		}
		for l, v := range m.values {
			slices.Sort(v)
			m.values[l] = slices.Compact(v)
		}
		m.labels = slices.Sorted(maps.Keys(m.values))
		out[mf.GetName()] = m
	}
	return out
}

func describeAll(c prometheus.Collector) []*prometheus.Desc {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var descs []*prometheus.Desc
	for d := range ch {
		descs = append(descs, d)
	}
	return descs
}

func vectorType(c prometheus.Collector) string {
	switch c.(type) {
	case *prometheus.CounterVec:
		return "counter"
	case *prometheus.GaugeVec:
		return "gauge"
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	}
	return ""
}

// descPattern reads Desc.String, the only place client_golang shows a
// descriptor's name and labels.
var (
	descPattern  = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", help: ".*", unit: "[^"]*", constLabels: \{(.*)\}, variableLabels: \{([^}]*)\}\}$`)
	constPattern = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
	constrained  = regexp.MustCompile(`^c\((.*)\)$`)
)

func parseDesc(d *prometheus.Desc) (string, []string, error) {
	m := descPattern.FindStringSubmatch(d.String())
	if m == nil {
		return "", nil, fmt.Errorf("cannot read the descriptor %s (did client_golang change Desc.String?)", d)
	}
	var labels []string
	for _, c := range constPattern.FindAllStringSubmatch(m[2], -1) {
		labels = append(labels, c[1])
	}
	for v := range strings.SplitSeq(m[3], ",") {
		if v != "" {
			labels = append(labels, constrained.ReplaceAllString(v, "$1"))
		}
	}
	slices.Sort(labels)
	return m[1], labels, nil
}

// documented is one row of a table in docs/metrics.md.
type documented struct {
	line  int
	types []string
	// labels maps each label to the values it may take; nil for a label
	// whose values the page describes instead of listing.
	labels map[string][]string
}

var (
	codeSpan = regexp.MustCompile("`([^`]*)`")
	// A row's first cell names a metric, or several with a trailing *.
	docRow = regexp.MustCompile("^\\| `([a-z0-9_:*]+)` \\|")
)

// readMetricsDoc parses the tables of docs/metrics.md: Metric | Type |
// Labels | Meaning, labels as "`name`: `v1`, `v2`" (a closed set of values)
// or "`name` (description)", separated by semicolons.
func readMetricsDoc(t *testing.T) map[string]documented {
	t.Helper()
	data, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]documented{}
	for i, line := range strings.Split(string(data), "\n") {
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 4 {
			t.Fatalf("%s:%d: %d cells, want 4 (metric, type, labels, meaning)", metricsDoc, i+1, len(cells))
		}
		if _, dup := out[m[1]]; dup {
			t.Errorf("%s:%d: %s is documented twice", metricsDoc, i+1, m[1])
		}
		doc := documented{line: i + 1, labels: map[string][]string{}}
		for typ := range strings.SplitSeq(cells[1], ",") {
			doc.types = append(doc.types, strings.TrimSpace(typ))
		}
		if cells[2] != "—" {
			for part := range strings.SplitSeq(cells[2], ";") {
				name, values, err := parseLabelCell(strings.TrimSpace(part))
				if err != nil {
					t.Fatalf("%s:%d: %v", metricsDoc, i+1, err)
				}
				doc.labels[name] = values
			}
		}
		out[m[1]] = doc
	}
	if len(out) == 0 {
		t.Fatalf("%s: no metric table found", metricsDoc)
	}
	return out
}

func parseLabelCell(part string) (string, []string, error) {
	loc := codeSpan.FindStringSubmatchIndex(part)
	if loc == nil || loc[0] != 0 {
		return "", nil, fmt.Errorf("label %q does not start with the label's name in backquotes", part)
	}
	name, rest := part[loc[2]:loc[3]], part[loc[1]:]
	if !strings.HasPrefix(rest, ":") {
		return name, nil, nil
	}
	var values []string
	for _, v := range codeSpan.FindAllStringSubmatch(rest, -1) {
		values = append(values, v[1])
	}
	if len(values) == 0 {
		return "", nil, fmt.Errorf("label %s: a colon but no values in backquotes", name)
	}
	return name, values, nil
}

// docFor finds the row documenting name: its own, or a row ending in *
// whose prefix it has. Only runtime metrics may share a row.
func docFor(docs map[string]documented, name string) (documented, string, bool) {
	if d, ok := docs[name]; ok {
		return d, name, true
	}
	for pattern, d := range docs {
		prefix, glob := strings.CutSuffix(pattern, "*")
		if glob && !strings.HasPrefix(name, "hawser_") && strings.HasPrefix(name, prefix) {
			return d, pattern, true
		}
	}
	return documented{}, "", false
}

func TestMetricsDocMatchesTheMetricsTheDaemonRegisters(t *testing.T) {
	have := newDaemonMetrics(t).metrics
	docs := readMetricsDoc(t)
	used := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(have)) {
		m := have[name]
		doc, row, ok := docFor(docs, name)
		if !ok {
			t.Errorf("%s: %s (%s, labels %v) is registered but not documented", metricsDoc, name, m.typ, m.labels)
			continue
		}
		used[row] = true
		if !slices.Contains(doc.types, m.typ) {
			t.Errorf("%s:%d: %s is documented as %v, the daemon registers a %s", metricsDoc, doc.line, name, doc.types, m.typ)
		}
		if labels := slices.Sorted(maps.Keys(doc.labels)); !slices.Equal(labels, m.labels) {
			t.Errorf("%s:%d: %s is documented with labels %v, the daemon's has %v", metricsDoc, doc.line, name, labels, m.labels)
		}
		for label, values := range m.values {
			for _, v := range values {
				if allowed := doc.labels[label]; allowed != nil && !slices.Contains(allowed, v) {
					t.Errorf("%s:%d: %s{%s=%q} exists, but the page lists only %v", metricsDoc, doc.line, name, label, v, allowed)
				}
			}
		}
	}
	for _, row := range slices.Sorted(maps.Keys(docs)) {
		if !used[row] {
			t.Errorf("%s:%d: %s is documented but the daemon registers no such metric", metricsDoc, docs[row].line, row)
		}
	}
}

// unboundedLabels would make a series per commit, request or branch.
var unboundedLabels = []string{"commit", "revision", "sha", "digest", "ref", "branch", "path", "url", "uri", "query"}

func TestOnlyInfoSeriesCarryCommitsBranchesOrPaths(t *testing.T) {
	for name, m := range newDaemonMetrics(t).metrics {
		if strings.HasSuffix(name, "_info") {
			continue
		}
		for _, l := range m.labels {
			if slices.Contains(unboundedLabels, l) {
				t.Errorf("%s has the label %q, whose values are unbounded: only an *_info series may", name, l)
			}
		}
	}
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string      `yaml:"name"`
		Rules []alertRule `yaml:"rules"`
	} `yaml:"groups"`
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// scrapeConfig is the part of a Prometheus configuration the tests read.
type scrapeConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

var (
	// promSelector is a metric name, with its matchers when it has any.
	promSelector  = regexp.MustCompile(`\b((?:hawser|go|process)_[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?`)
	promMatcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promDurations = regexp.MustCompile(`\[([^\]]+)\]|\boffset\s+(\w+)`)
	labelRef      = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// familyOf resolves a name in an expression to the family it reads, with
// the labels a selector may use: a histogram's _bucket (and le), _sum and
// _count, a summary's _sum and _count.
func familyOf(have map[string]family, name string) (family, bool) {
	if m, ok := have[name]; ok {
		return m, true
	}
	for _, s := range []struct {
		suffix, label string
		types         []string
	}{
		{"_bucket", "le", []string{"histogram"}},
		{"_sum", "", []string{"histogram", "summary"}},
		{"_count", "", []string{"histogram", "summary"}},
	} {
		base, cut := strings.CutSuffix(name, s.suffix)
		m, ok := have[base]
		if cut && ok && slices.Contains(s.types, m.typ) {
			if s.label != "" {
				m.labels = append(slices.Clone(m.labels), s.label)
			}
			return m, true
		}
	}
	return family{}, false
}

func TestAlertRulesUseTheDaemonsMetricsAndLabels(t *testing.T) {
	have := newDaemonMetrics(t).metrics
	have["up"] = family{typ: "gauge"}
	docs := readMetricsDoc(t)
	var rules ruleFile
	readYAML(t, alertRules, &rules)
	var cfg scrapeConfig
	readYAML(t, prometheusConfig, &cfg)
	var jobs []string
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			checkRule(t, r, have, docs, jobs)
		}
	}
	if n == 0 {
		t.Fatalf("%s: no rules", alertRules)
	}
}

// checkRuleShape checks what Prometheus and the operator need of a rule.
func checkRuleShape(t *testing.T, where string, r alertRule) {
	t.Helper()
	if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["severity"] == "" {
		t.Errorf("%s: a rule needs alert, expr, a severity label and summary and description annotations: %+v", where, r)
	}
	if r.For != "" {
		if _, err := time.ParseDuration(r.For); err != nil {
			t.Errorf("%s: for: %v", where, err)
		}
	}
	for _, d := range promDurations.FindAllStringSubmatch(r.Expr, -1) {
		if _, err := time.ParseDuration(d[1] + d[2]); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
}

// checkRule checks that a rule reads metrics the daemon has, by labels
// they have, for values the page lists.
func checkRule(t *testing.T, r alertRule, have map[string]family, docs map[string]documented, jobs []string) {
	t.Helper()
	where := alertRules + ": " + r.Alert
	checkRuleShape(t, where, r)
	available := slices.Clone(targetLabels)
	for _, sel := range promSelector.FindAllStringSubmatch(r.Expr, -1) {
		m, ok := familyOf(have, sel[1])
		if !ok {
			t.Errorf("%s: %s is not a metric the daemon registers", where, sel[1])
			continue
		}
		labels := append(slices.Clone(targetLabels), m.labels...)
		available = append(available, m.labels...)
		for _, mt := range promMatcher.FindAllStringSubmatch(sel[2], -1) {
			checkMatcher(t, where, sel[1], labels, mt[1], mt[2], mt[3], docs, jobs)
		}
	}
	for _, g := range promGrouping.FindAllStringSubmatch(r.Expr, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(available, l) {
				t.Errorf("%s: groups by %q, a label none of its metrics has", where, l)
			}
		}
	}
	for _, text := range r.Annotations {
		for _, l := range labelRef.FindAllStringSubmatch(text, -1) {
			if !slices.Contains(available, l[1]) {
				t.Errorf("%s: an annotation shows $labels.%s, a label none of its metrics has", where, l[1])
			}
		}
	}
}

// checkMatcher checks one label matcher of a selector: the label exists,
// and a value it names is one the page lists for it, or the scrape job.
func checkMatcher(t *testing.T, where, name string, labels []string, label, op, value string, docs map[string]documented, jobs []string) {
	t.Helper()
	if !slices.Contains(labels, label) {
		t.Errorf("%s: %s has no label %q (it has %v)", where, name, label, labels)
		return
	}
	var allowed []string
	switch doc, _, _ := docFor(docs, name); {
	case label == "job":
		allowed = jobs
	case doc.labels[label] != nil:
		allowed = doc.labels[label]
	default:
		return
	}
	values := []string{value}
	if strings.HasSuffix(op, "~") {
		values = strings.Split(value, "|")
	}
	for _, v := range values {
		if !slices.Contains(allowed, v) {
			t.Errorf("%s: %s{%s%s%q}: %q is not one of %v", where, name, label, op, value, v, allowed)
		}
	}
}

func TestPrometheusConfigScrapesTheAdminListenerAndLoadsTheAlerts(t *testing.T) {
	var cfg scrapeConfig
	readYAML(t, prometheusConfig, &cfg)
	rulesPath, err := filepath.Abs(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var loads bool
	for _, f := range cfg.RuleFiles {
		// Prometheus resolves rule files relative to its configuration.
		p, err := filepath.Abs(filepath.Join(filepath.Dir(prometheusConfig), f))
		if err != nil {
			t.Fatal(err)
		}
		loads = loads || p == rulesPath
	}
	if !loads {
		t.Errorf("%s: rule_files %v does not load %s", prometheusConfig, cfg.RuleFiles, alertRules)
	}
	admin := httptest.NewServer(newDaemonMetrics(t).admin)
	t.Cleanup(admin.Close)
	addr := defaultOf(t, "HAWSER_ADMIN_ADDR")
	var scraped bool
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			if slices.Contains(s.Targets, addr) {
				scraped = true
				checkMetricsPath(t, admin.URL, cmp.Or(sc.MetricsPath, "/metrics"))
			}
		}
	}
	if !scraped {
		t.Errorf("%s: no job scrapes %s, the default HAWSER_ADMIN_ADDR", prometheusConfig, addr)
	}
}

func defaultOf(t *testing.T, key string) string {
	t.Helper()
	for _, k := range config.Keys() {
		if k.Name == key {
			return k.Default
		}
	}
	t.Fatalf("no key %s", key)
	return ""
}

// checkMetricsPath asks the admin handler for path as Prometheus would.
func checkMetricsPath(t *testing.T, base, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("%s: metrics_path %s answers %s, %q", prometheusConfig, path, resp.Status, resp.Header.Get("Content-Type"))
	}
}
