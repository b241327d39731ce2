package reconciler_test

// Benchmarks of branch previews (issue 5): how soon a sleeping preview
// answers a request, against starting its containers by hand, and what
// sleeping previews cost the idle tick. bench/README.md has the figures:
//
//	go test -run '^$' -bench Preview -benchtime 5x -count 3 ./reconciler/

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
)

// benchIdle is the Idle of the benchmarks' sleeping previews: short, so a
// tick a little later puts them to sleep.
const benchIdle = 100 * time.Millisecond

// BenchmarkPreviewWake measures a request to a sleeping preview through the
// front end, from sending it to the first byte of the answer (the preview's
// page), and, in the same loop on the same containers, the baseline: the
// containers stopped by hand, then started with ContainerStart and the
// published port polled every 10 ms until it answers 200, timed from the
// start call to that answer's first byte. Each iteration does both, in
// alternating order; the preview is put to sleep before its measure by a
// tick after its Idle.
//
// settle=1s is the converger `hawser serve` runs; settle=0s shows what the
// wait for a container to stay up costs a wake.
func BenchmarkPreviewWake(b *testing.B) {
	for _, settle := range []time.Duration{time.Second, 0} {
		b.Run("settle="+settle.String(), func(b *testing.B) {
			const branch = "feat/wake"
			p := newBenchPreviews(b, settle, branch)
			p.start(reconciler.Previews{Branches: []string{"feat/*"}, Idle: benchIdle, WakeTimeout: time.Minute})
			p.push(branch, previewed("awake"))
			p.mustTick()
			target := p.previewTarget(branch)
			var wake, internal, byHand []time.Duration
			for i := 0; b.Loop(); i++ {
				// The first iteration logs the Docker requests of both, by
				// when they were sent.
				logTrace := func(what string) {
					if trace := p.calls.StopTrace(); i == 0 {
						b.Logf("%s, Docker requests: %s", what, strings.Join(trace, "; "))
					}
				}
				measures := []func(){
					func() {
						p.sleep(target.project)
						w, in := p.wakeThroughFrontEnd(target)
						logTrace(fmt.Sprintf("wake, first byte at %s", w.Round(time.Millisecond)))
						wake, internal = append(wake, w), append(internal, in)
					},
					func() {
						h := p.startByHand(target.project)
						logTrace(fmt.Sprintf("by hand, first 200 at %s", h.Round(time.Millisecond)))
						byHand = append(byHand, h)
					},
				}
				if i%2 == 1 {
					slices.Reverse(measures)
				}
				for _, m := range measures {
					m()
				}
			}
			reportMedians(b, wake, internal, byHand)
		})
	}
}

// reportMedians reports the wake against the baseline, and logs every
// sample for the record.
func reportMedians(b *testing.B, wake, internal, byHand []time.Duration) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	w, h := median(wake), median(byHand)
	b.ReportMetric(ms(w), "wake-p50-ms")
	b.ReportMetric(ms(median(internal)), "wake-internal-p50-ms")
	b.ReportMetric(ms(h), "byhand-p50-ms")
	b.ReportMetric(ms(w-h), "diff-p50-ms")
	b.ReportMetric(ms(slices.Max(wake)), "wake-max-ms")
	b.ReportMetric(ms(slices.Max(byHand)), "byhand-max-ms")
	b.Logf("wake through the front end: %v", roundAll(wake))
	b.Logf("of which waking (hawser_preview_wake_seconds): %v", roundAll(internal))
	b.Logf("start by hand + first 200: %v", roundAll(byHand))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// BenchmarkPreviewIdleTick measures the idle tick of one project as its
// previews change, in one run on the same production containers: previews
// off (the baseline), on with no matching branch, 20 previews awake, and
// the same 20 asleep. A tick with previews off, none, or all asleep must be
// the cheap one (one ls-remote, one container list, nothing else); a
// sleeping preview costs no Docker call.
func BenchmarkPreviewIdleTick(b *testing.B) {
	const n = 20
	branches := make([]string, n)
	for i := range branches {
		branches[i] = fmt.Sprintf("feat/p%02d", i+1)
	}
	// A short settle only shortens creating the previews: idle ticks never
	// start a container.
	p := newBenchPreviews(b, 100*time.Millisecond, branches...)
	for _, br := range branches {
		p.repo.Git("branch", br) // previews of production's own files
	}
	on := reconciler.Previews{Branches: []string{"feat/*"}, WakeTimeout: time.Minute}

	p.start(reconciler.Previews{})
	p.mustTick()
	b.Run("previews=off", func(b *testing.B) { p.measureTicks(b, true) })

	p.start(reconciler.Previews{Branches: []string{"none/*"}})
	p.mustTick()
	b.Run("previews=0", func(b *testing.B) { p.measureTicks(b, true) })

	p.start(on) // Idle zero: previews stay awake
	p.mustTick()
	p.mustTick() // the tick after a preview's start reinstalls its routes once
	if running := p.runningPreviews(branches); running != n {
		b.Fatalf("%d of %d previews run", running, n)
	}
	b.Run(fmt.Sprintf("previews=%d,awake", n), func(b *testing.B) { p.measureTicks(b, false) })

	on.Idle = benchIdle
	p.start(on) // a restart adopts the running previews
	p.mustTick()
	p.sleepAll(branches)
	b.Run(fmt.Sprintf("previews=%d,asleep", n), func(b *testing.B) { p.measureTicks(b, true) })
	if running := p.runningPreviews(branches); running != 0 {
		b.Fatalf("%d sleeping previews were woken by ticks", running)
	}
}

// measureTicks runs the idle tick in a benchmark loop and reports its
// Docker and git calls and CPU time. With cheap set, a tick that makes any
// call beyond one ls-remote and one container list fails the benchmark.
func (p *benchPreviews) measureTicks(b *testing.B, cheap bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	first := p.calls.Snapshot()
	var offPath error
	b.ReportAllocs()
	self, children := cpuOf(b, syscall.RUSAGE_SELF), cpuOf(b, syscall.RUSAGE_CHILDREN)
	for b.Loop() {
		before := p.calls.Snapshot()
		if err := p.rec.Reconcile(ctx, reconciler.TriggerSchedule); err != nil {
			b.Fatalf("idle tick: %v", err)
		}
		if err := p.calls.Snapshot().Since(before).Cheap(); cheap && err != nil && offPath == nil {
			offPath = err
		}
	}
	selfCPU, childCPU := cpuOf(b, syscall.RUSAGE_SELF)-self, cpuOf(b, syscall.RUSAGE_CHILDREN)-children
	total := p.calls.Snapshot().Since(first)
	perOp := func(v float64) float64 { return v / float64(b.N) }
	b.ReportMetric(perOp(float64(total.DockerTotal())), "docker-calls/op")
	b.ReportMetric(perOp(float64(total.Docker[dockertest.ContainerList])), "container-lists/op")
	b.ReportMetric(perOp(float64(total.LsRemotes+total.Checkouts)), "git-calls/op")
	b.ReportMetric(perOp(float64(selfCPU.Microseconds())/1000), "cpu-ms/op")
	b.ReportMetric(perOp(float64(childCPU.Microseconds())/1000), "child-cpu-ms/op")
	b.Logf("%d ticks: %d ls-remotes, %d checkouts; docker requests by path: %s",
		b.N, total.LsRemotes, total.Checkouts, total.Breakdown())
	if offPath != nil {
		b.Errorf("a tick left the cheap path: %v", offPath)
	}
}

// cpuOf is the user plus system CPU time of the process (RUSAGE_SELF) or of
// its waited-for children (RUSAGE_CHILDREN): the git processes go-git runs
// for a file:// remote.
func cpuOf(b *testing.B, who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPreviews is a project with branch previews behind a real front end,
// wired as `hawser serve` wires it, with every Docker request and git call
// counted. The e2e harness takes a *testing.T, which a benchmark has not.
type benchPreviews struct {
	tb       testing.TB
	repo     *gittest.Repo
	docker   *client.Client // counts its requests into calls
	calls    *dockertest.Calls
	project  string
	stateDir string
	settle   time.Duration
	front    *proxy.Routes
	addr     string
	metrics  *prometheus.Registry
	store    *store.Store
	rec      *reconciler.Reconciler
}

// newBenchPreviews makes the project's repository and front end; the
// production project and the previews of branches are removed at the end.
func newBenchPreviews(tb testing.TB, settle time.Duration, branches ...string) *benchPreviews {
	tb.Helper()
	dockertest.Busybox(tb, dockertest.Client(tb))
	calls := &dockertest.Calls{}
	p := &benchPreviews{
		tb: tb, repo: gittest.New(tb), calls: calls, docker: dockertest.CountingClient(tb, calls.Docker),
		project: fmt.Sprintf("hawser-pbench-%d", time.Now().UnixNano()%1e9), stateDir: tb.TempDir(), settle: settle,
	}
	p.front, p.addr = frontEnd(tb)
	p.repo.Commit("production", previewed("production"))
	tb.Cleanup(func() { dockertest.RemoveLabelled(tb, p.docker, converge.LabelProject+"="+p.project) })
	for _, br := range branches {
		name := preview.ProjectName(p.project, preview.Slug(br))
		tb.Cleanup(func() { dockertest.RemoveLabelled(tb, p.docker, converge.LabelProject+"="+name) })
	}
	return p
}

// start builds the reconciler on the project's state dir, as a (re)started
// hawser with these preview settings would.
func (p *benchPreviews) start(pv reconciler.Previews) {
	tb := p.tb
	tb.Helper()
	if p.store != nil {
		p.store.Close()
	}
	st, err := store.Open(filepath.Join(p.stateDir, "hawser.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	p.store = st
	// serve's default level; idle ticks log nothing at info.
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	src, err := source.New(p.repo.Dir, source.Auth{}, filepath.Join(p.stateDir, "git"), filepath.Join(p.stateDir, "checkouts"), log)
	if err != nil {
		tb.Fatal(err)
	}
	pv.Domain = p.project + ".preview.localhost"
	pv.NewSource = func(project string) (reconciler.Source, func() error, error) {
		git, checkouts := filepath.Join(p.stateDir, "git", project), filepath.Join(p.stateDir, "checkouts", project)
		src, err := source.New(p.repo.Dir, source.Auth{}, git, checkouts, log)
		if err != nil {
			return nil, nil, err
		}
		return &benchSource{Source: src, calls: p.calls}, func() error { return errors.Join(os.RemoveAll(git), os.RemoveAll(checkouts)) }, nil
	}
	p.metrics = prometheus.NewRegistry()
	p.rec = reconciler.New(reconciler.Project{
		Name: p.project, Path: ".", KeepCheckouts: 3, PruneImages: true,
		Env:      func() (map[string]string, error) { return map[string]string{}, nil },
		Hosts:    reconciler.Hosts{Domain: p.project + ".localhost"},
		Previews: pv,
	}, reconciler.Deps{
		Source:    &benchSource{Source: src, calls: p.calls},
		Images:    images.New(p.docker, filepath.Join(p.stateDir, "builds"), log),
		Router:    p.front,
		Converger: &converge.Converger{Docker: p.docker, Log: log, HealthTimeout: 30 * time.Second, Settle: p.settle, DrainTimeout: 5 * time.Second},
		Store:     st,
		Metrics:   reconciler.NewMetrics(p.metrics, "bench"),
		Log:       log,
	})
}

func (p *benchPreviews) mustTick() {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := p.rec.Reconcile(ctx, reconciler.TriggerSchedule); err != nil {
		p.tb.Fatalf("reconcile: %v", err)
	}
}

// push commits files to a branch and goes back to main.
func (p *benchPreviews) push(branch string, files map[string]string) {
	p.tb.Helper()
	p.repo.Git("checkout", "-q", "-B", branch)
	p.repo.Commit("on "+branch, files)
	p.repo.Git("checkout", "-q", "main")
}

// previewTarget is where a branch's preview is served and what runs it.
type previewTarget struct {
	url, host, project string
}

func (p *benchPreviews) previewTarget(branch string) previewTarget {
	slug := preview.Slug(branch)
	return previewTarget{
		url: "http://" + p.addr + "/", host: preview.Host(slug, p.project+".preview.localhost"),
		project: preview.ProjectName(p.project, slug),
	}
}

// sleep puts an awake preview to sleep the way hawser does: a tick after
// it has been idle for longer than its Idle.
func (p *benchPreviews) sleep(project string) {
	p.tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		time.Sleep(benchIdle + 50*time.Millisecond)
		p.mustTick()
		if p.running(project) == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("preview %s does not go to sleep", project)
		}
	}
}

func (p *benchPreviews) sleepAll(branches []string) {
	p.tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for p.runningPreviews(branches) > 0 {
		if time.Now().After(deadline) {
			p.tb.Fatalf("%d previews still run", p.runningPreviews(branches))
		}
		time.Sleep(benchIdle + 50*time.Millisecond)
		p.mustTick()
	}
}

// wakeThroughFrontEnd requests the sleeping preview as a client that is not
// a browser, which the front end holds until the preview serves. It returns
// the time to the answer's first byte, and the wake as hawser measured it.
func (p *benchPreviews) wakeThroughFrontEnd(target previewTarget) (firstByte, wake time.Duration) {
	p.tb.Helper()
	count, sum := p.wakeHistogram()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p.calls.StartTrace()
	start := time.Now()
	first, code, body, err := getFirstByte(ctx, target.url, target.host)
	if err != nil || code != http.StatusOK || body != "awake" {
		p.tb.Fatalf("the woken preview answers %d %q, %v", code, body, err)
	}
	// The wake is observed after the held request is released.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, s := p.wakeHistogram()
		if n > count {
			return first.Sub(start), time.Duration((s - sum) * float64(time.Second))
		}
		if time.Now().After(deadline) {
			p.tb.Fatal("the wake was not observed in hawser_preview_wake_seconds")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wakeHistogram is hawser_preview_wake_seconds' count and sum.
func (p *benchPreviews) wakeHistogram() (uint64, float64) {
	p.tb.Helper()
	families, err := p.metrics.Gather()
	if err != nil {
		p.tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "hawser_preview_wake_seconds" && len(f.GetMetric()) > 0 {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	return 0, 0
}

// startByHand is the baseline of a wake: what someone would do with the
// docker CLI and curl. It stops the preview's containers, then starts them,
// looks up the routed container's published port (docker port) and polls
// it every 10 ms until it answers 200. It returns the time from the first
// start call to that answer's first byte.
func (p *benchPreviews) startByHand(project string) time.Duration {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	list, err := converge.List(ctx, p.docker, project)
	if err != nil || len(list) != 1 {
		p.tb.Fatalf("the preview's containers: %d, %v", len(list), err)
	}
	id := list[0].ID // one service, web: the order of starts is trivial
	if _, err := p.docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		p.tb.Fatal(err)
	}
	p.calls.StartTrace()
	start := time.Now()
	if _, err := p.docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		p.tb.Fatal(err)
	}
	url := "http://" + p.publishedPort(ctx, id, 8080) + "/"
	for {
		first, code, body, err := getFirstByte(ctx, url, "")
		if err == nil && code == http.StatusOK {
			if body != "awake" {
				p.tb.Fatalf("the container answers %q", body)
			}
			return first.Sub(start)
		}
		if ctx.Err() != nil {
			p.tb.Fatalf("%s never answered 200: %d %v", url, code, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publishedPort is the 127.0.0.1 address a container's port is published
// at, as `docker port` says.
func (p *benchPreviews) publishedPort(ctx context.Context, id string, port uint16) string {
	p.tb.Helper()
	res, err := p.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		p.tb.Fatal(err)
	}
	key, _ := network.PortFrom(port, network.TCP)
	if ns := res.Container.NetworkSettings; ns != nil {
		for _, b := range ns.Ports[key] {
			if b.HostPort != "" {
				return net.JoinHostPort("127.0.0.1", b.HostPort)
			}
		}
	}
	p.tb.Fatalf("container %s does not publish %d", id, port)
	return ""
}

// benchHTTP opens a new connection for every request, as a first visit or
// a curl loop does.
var benchHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// getFirstByte GETs url (with Host host, when set) and returns when the
// first byte of the answer arrived, with its status and body.
func getFirstByte(ctx context.Context, url, host string) (time.Time, int, string, error) {
	var first time.Time
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }})
	ctx, cancel := context.WithTimeout(ctx, 80*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return first, 0, "", err
	}
	req.Host = host
	req.Header.Set("Accept", "*/*")
	resp, err := benchHTTP.Do(req)
	if err != nil {
		return first, 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return first, resp.StatusCode, strings.TrimSpace(string(body)), err
}

// running counts a project's running containers.
func (p *benchPreviews) running(project string) int {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := converge.List(ctx, p.docker, project)
	if err != nil {
		p.tb.Fatal(err)
	}
	n := 0
	for _, c := range list {
		if c.State == container.StateRunning {
			n++
		}
	}
	return n
}

func (p *benchPreviews) runningPreviews(branches []string) int {
	n := 0
	for _, br := range branches {
		n += p.running(preview.ProjectName(p.project, preview.Slug(br)))
	}
	return n
}

// benchSource counts the git operations of a source into the shared tally.
type benchSource struct {
	reconciler.Source
	calls *dockertest.Calls
}

func (s *benchSource) LsRemote(ctx context.Context) (source.Refs, error) {
	s.calls.LsRemote()
	return s.Source.LsRemote(ctx)
}

func (s *benchSource) Checkout(ctx context.Context, branch, commit string) (source.Checkout, error) {
	s.calls.Checkout()
	return s.Source.Checkout(ctx, branch, commit)
}
