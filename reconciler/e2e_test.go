package reconciler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
)

// harness runs one project's reconciler against the real engine and a real
// git repository, as `hawser serve` wires it.
type harness struct {
	t        *testing.T
	repo     *gittest.Repo
	docker   *client.Client
	project  string
	stateDir string
	env      map[string]string
	store    *store.Store
	rec      *reconciler.Reconciler
}

func newHarness(t *testing.T, files map[string]string) *harness {
	t.Helper()
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	h := &harness{
		t: t, repo: gittest.New(t), docker: docker, stateDir: t.TempDir(), env: map[string]string{},
		project: fmt.Sprintf("hawser-e2e-%d", time.Now().UnixNano()%1e9),
	}
	t.Cleanup(func() { dockertest.RemoveLabelled(t, docker, converge.LabelProject+"="+h.project) })
	h.repo.Commit("first", files)
	h.start()
	return h
}

// start builds a reconciler on the harness's state dir, as a (re)started
// hawser would.
func (h *harness) start() {
	h.t.Helper()
	if h.store != nil {
		h.store.Close()
	}
	st, err := store.Open(filepath.Join(h.stateDir, "hawser.db"))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { st.Close() })
	h.store = st
	log := slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := source.New(h.repo.Dir, source.Auth{}, filepath.Join(h.stateDir, "git"), filepath.Join(h.stateDir, "checkouts"), log)
	if err != nil {
		h.t.Fatal(err)
	}
	h.rec = reconciler.New(reconciler.Project{
		Name: h.project, Path: ".", KeepCheckouts: 3,
		Env: func() (map[string]string, error) { return h.env, nil },
	}, reconciler.Deps{
		Source:    src,
		Images:    images.New(h.docker, filepath.Join(h.stateDir, "builds"), log),
		Docker:    h.docker,
		Converger: &converge.Converger{Docker: h.docker, Log: log, HealthTimeout: 20 * time.Second, Settle: time.Second},
		Store:     st,
		Metrics:   reconciler.NewMetrics(prometheus.NewRegistry(), "test"),
		Log:       log,
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (h *harness) reconcile() error {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return h.rec.Reconcile(ctx, reconciler.TriggerSchedule)
}

func (h *harness) mustReconcile() {
	h.t.Helper()
	if err := h.reconcile(); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
}

// containers returns the project's containers by service.
func (h *harness) containers() map[string]container.Summary {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := converge.List(ctx, h.docker, h.project)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]container.Summary{}
	for _, c := range list {
		out[c.Labels[converge.LabelService]] = c
	}
	return out
}

func (h *harness) ids() map[string]string {
	out := map[string]string{}
	for name, c := range h.containers() {
		out[name] = c.ID
	}
	return out
}

func (h *harness) lastDeployment() store.Deployment {
	h.t.Helper()
	d, err := h.store.Last(h.project)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) deployments() []store.Deployment {
	h.t.Helper()
	list, err := h.store.List(h.project, 100)
	if err != nil {
		h.t.Fatal(err)
	}
	return list
}

// get fetches a path from a container's port published on 127.0.0.1.
func (h *harness) get(c container.Summary, path string) string {
	h.t.Helper()
	var port uint16
	for _, p := range c.Ports {
		if p.PublicPort != 0 {
			port = p.PublicPort
		}
	}
	if port == 0 {
		h.t.Fatalf("container %s publishes no port", c.Names)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return strings.TrimSpace(string(body))
		}
		if ctx.Err() != nil {
			h.t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func assertRunning(t *testing.T, cs map[string]container.Summary, services ...string) {
	t.Helper()
	for _, s := range services {
		c, ok := cs[s]
		if !ok || c.State != container.StateRunning {
			t.Fatalf("service %s not running: %+v", s, c.State)
		}
	}
}

// webAndWorker is a two-service project: web serves its named volume over
// HTTP and writes a random ID there once; worker only sleeps.
func webAndWorker(workerCmd, extra string) map[string]string {
	return map[string]string{"compose.yaml": `
services:
  web:
    image: busybox:1.36
    init: true
    command: ["sh", "-c", "[ -f /www/id ] || echo $$RANDOM$$RANDOM > /www/id; echo \"$$GREETING\" > /www/greeting; exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1::8080"]
    volumes: [data:/www]
    environment:
      GREETING: ${GREETING:-hello}
  worker:
    image: busybox:1.36
    init: true
    command: ` + workerCmd + `
    environment:
      MODE: ${MODE:-one}
` + extra + `
volumes:
  data:
`}
}

func TestFirstDeployRunsEveryServiceWithComposeLabels(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	cs := h.containers()
	assertRunning(t, cs, "web", "worker")
	commit := h.repo.Git("rev-parse", "HEAD")
	for _, c := range cs {
		for k, want := range map[string]string{converge.LabelProject: h.project, converge.LabelOneoff: "False", converge.LabelNumber: "1", converge.LabelCommit: commit} {
			if c.Labels[k] != want {
				t.Errorf("%s label %s = %q, want %q", c.Names, k, c.Labels[k], want)
			}
		}
	}
	if name := cs["web"].Names[0]; name != "/"+h.project+"-web-1" {
		t.Errorf("web container name %s", name)
	}
	if got := h.get(cs["web"], "/greeting"); got != "hello" {
		t.Errorf("greeting = %q", got)
	}
	d := h.lastDeployment()
	if d.Result != store.ResultSucceeded || d.Commit != commit || len(d.Services) != 2 {
		t.Errorf("deployment = %+v", d)
	}
}

func TestCommitChangingOneServiceRecreatesOnlyThatOne(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	before := h.ids()
	h.repo.Commit("worker sleeps longer", webAndWorker(`["sleep", "7200"]`, ""))
	h.mustReconcile()
	after := h.ids()
	if after["web"] != before["web"] {
		t.Error("web was recreated by a change to worker only")
	}
	if after["worker"] == before["worker"] {
		t.Error("worker was not recreated")
	}
	assertRunning(t, h.containers(), "web", "worker")
	d := h.lastDeployment()
	if got := strings.Join(d.Services["worker"], ";"); got != "config changed: command" {
		t.Errorf("worker reason = %q, want config changed: command", got)
	}
	if _, ok := d.Services["web"]; ok {
		t.Errorf("web listed as recreated: %v", d.Services)
	}
}

func TestEnvChangeRecreatesExactlyTheServicesUsingTheKey(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	before := h.ids()
	h.env["GREETING"] = "bonjour"
	h.mustReconcile()
	after := h.ids()
	if after["worker"] != before["worker"] {
		t.Error("worker recreated though it does not use GREETING")
	}
	if after["web"] == before["web"] {
		t.Fatal("web not recreated after GREETING changed")
	}
	if got := h.get(h.containers()["web"], "/greeting"); got != "bonjour" {
		t.Errorf("greeting = %q", got)
	}
	if got := h.lastDeployment().Services["web"]; len(got) != 1 || got[0] != "config changed: environment" {
		t.Errorf("web reason = %v", got)
	}
}

func TestVolumeDataSurvivesRecreateAndRemovedServiceKeepsItsVolume(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	id := h.get(h.containers()["web"], "/id")
	h.env["GREETING"] = "again"
	h.mustReconcile()
	if got := h.get(h.containers()["web"], "/id"); got != id {
		t.Fatalf("volume data lost on recreate: %q then %q", id, got)
	}

	h.repo.Commit("drop web", map[string]string{"compose.yaml": `
services:
  worker:
    image: busybox:1.36
    init: true
    command: ["sleep", "3600"]
    environment:
      MODE: ${MODE:-one}
volumes:
  data:
`})
	h.mustReconcile()
	cs := h.containers()
	if _, ok := cs["web"]; ok {
		t.Fatal("removed service web still has a container")
	}
	assertRunning(t, cs, "worker")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.docker.VolumeInspect(ctx, h.project+"_data", client.VolumeInspectOptions{}); err != nil {
		t.Fatalf("volume of the removed service is gone: %v", err)
	}
}

func TestDependsOnServiceHealthyStartsDependantAfterHealth(t *testing.T) {
	h := newHarness(t, map[string]string{"compose.yaml": `
services:
  db:
    image: busybox:1.36
    init: true
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 500ms
      retries: 30
  app:
    image: busybox:1.36
    init: true
    command: ["sleep", "3600"]
    depends_on:
      db:
        condition: service_healthy
`})
	h.mustReconcile()
	cs := h.containers()
	assertRunning(t, cs, "db", "app")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := h.docker.ContainerInspect(ctx, cs["db"].ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app, err := h.docker.ContainerInspect(ctx, cs["app"].ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var healthy time.Time
	for _, probe := range db.Container.State.Health.Log {
		if probe.ExitCode == 0 {
			healthy = probe.End
			break
		}
	}
	started, err := time.Parse(time.RFC3339Nano, app.Container.State.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	if healthy.IsZero() || started.Before(healthy) {
		t.Fatalf("app started at %s, db first healthy at %s", started, healthy)
	}
}

func TestBadCommitKeepsTheRunningVersion(t *testing.T) {
	cases := map[string]map[string]string{
		"compose syntax error": {"compose.yaml": "services:\n  web: [not a mapping\n"},
		"failing build": {"compose.yaml": `
services:
  web:
    build: .
  worker:
    image: busybox:1.36
    command: ["sleep", "3600"]
`, "Dockerfile": "FROM busybox:1.36\nRUN echo building && false\n"},
		"container exits at once": webAndWorker(`["sh", "-c", "echo worker cannot start; exit 3"]`, ""),
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
			h.mustReconcile()
			good := h.lastDeployment()
			before := h.ids()
			id := h.get(h.containers()["web"], "/id")
			bad := h.repo.Commit("break it", files)
			if err := h.reconcile(); err == nil {
				t.Fatal("reconcile of a bad commit succeeded")
			}
			d := h.lastDeployment()
			if d.Result != store.ResultFailed || d.Commit != bad || d.Reason == "" {
				t.Fatalf("deployment = %+v", d)
			}
			t.Logf("reason: %s", d.Reason)
			cs := h.containers()
			assertRunning(t, cs, "web", "worker")
			for svc, cid := range before {
				if cs[svc].ID != cid || cs[svc].Labels[converge.LabelCommit] != good.Commit {
					t.Errorf("service %s no longer runs the previous version", svc)
				}
			}
			if got := h.get(cs["web"], "/id"); got != id {
				t.Errorf("web serves %q, want %q", got, id)
			}
			// Not retried on every tick: no new deployment is recorded.
			for range 3 {
				h.mustReconcile()
			}
			if n := len(h.deployments()); n != 2 {
				t.Errorf("%d deployments after idle ticks, want 2", n)
			}
			// A manual sync retries it.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := h.rec.Reconcile(ctx, reconciler.TriggerSync); err == nil {
				t.Error("sync of the bad commit succeeded")
			}
			if n := len(h.deployments()); n != 3 {
				t.Errorf("%d deployments after sync, want 3", n)
			}
		})
	}
}

func TestRestartConvergesWithoutRecreatingAnything(t *testing.T) {
	h := newHarness(t, map[string]string{
		"compose.yaml": `
services:
  web:
    build: .
    init: true
    command: ["sleep", "3600"]
  worker:
    image: busybox:1.36
    init: true
    command: ["sleep", "3600"]
`,
		"Dockerfile": "FROM busybox:1.36\nCOPY compose.yaml /\n",
	})
	h.mustReconcile()
	before := h.ids()
	n := len(h.deployments())
	h.start()
	h.mustReconcile()
	h.mustReconcile()
	if after := h.ids(); after["web"] != before["web"] || after["worker"] != before["worker"] {
		t.Fatalf("restart recreated containers: %v -> %v", before, after)
	}
	if got := len(h.deployments()); got != n {
		t.Fatalf("restart recorded %d new deployments", got-n)
	}
	if _, err := os.Stat(filepath.Join(h.stateDir, "checkouts", "current")); err != nil {
		t.Fatalf("no stable checkout path: %v", err)
	}
}
