package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
	"hawser.dev/hawser/registry"
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
	// wrapSource, when set, wraps the git source, to observe it.
	wrapSource func(reconciler.Source) reconciler.Source
	// registry configures the registry checker; the zero value works for
	// loopback registries without credentials.
	registry registry.Options
	metrics  *prometheus.Registry
	// front, when set, is the front end the project's routed services are
	// served through.
	front *proxy.Routes
	// onDemand, when set, is the front end's proxy, asked by the
	// reconciler for per-commit preview hosts.
	onDemand      *proxy.Proxy
	healthTimeout time.Duration
	previews      reconciler.Previews
}

func newHarness(t *testing.T, files map[string]string) *harness {
	t.Helper()
	return newHarnessWith(t, files, func(*harness) {})
}

// newHarnessWith lets configure set the harness up before it starts.
func newHarnessWith(t *testing.T, files map[string]string, configure func(*harness)) *harness {
	t.Helper()
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	h := &harness{
		t: t, repo: gittest.New(t), docker: docker, stateDir: t.TempDir(), env: map[string]string{},
		healthTimeout: 20 * time.Second,
		project:       fmt.Sprintf("hawser-e2e-%d", time.Now().UnixNano()%1e9),
	}
	// Registered first, so it runs last: the images registrytest pushes
	// carry the test's name, and images built from them inherit it.
	dockertest.Cleanup(t, docker, t.Name())
	t.Cleanup(func() { dockertest.RemoveLabelled(t, docker, converge.LabelProject+"="+h.project) })
	if files != nil {
		h.repo.Commit("first", files)
	}
	configure(h)
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
	var wrapped reconciler.Source = src
	if h.wrapSource != nil {
		wrapped = h.wrapSource(src)
	}
	seen, err := registry.OpenSeenFile(h.stateDir)
	if err != nil {
		h.t.Fatal(err)
	}
	h.metrics = prometheus.NewRegistry()
	opts := h.registry
	opts.Seen, opts.Registerer, opts.Log = seen, h.metrics, log
	checker, err := registry.New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	var router reconciler.Router
	if h.front != nil {
		router = h.front
	}
	h.rec = reconciler.New(reconciler.Project{
		Name: h.project, Path: ".", KeepCheckouts: 3, PruneImages: true,
		Env:      func() (map[string]string, error) { return h.env, nil },
		Hosts:    reconciler.Hosts{Domain: h.project + ".localhost"},
		Previews: h.previewsWithSources(log, src),
	}, reconciler.Deps{
		Source:    wrapped,
		Images:    images.New(h.docker, filepath.Join(h.stateDir, "builds"), log, images.WithRegistryAuth(checker.PullAuth)),
		Registry:  checker,
		Router:    router,
		Converger: &converge.Converger{Docker: h.docker, Log: log, HealthTimeout: h.healthTimeout, Settle: time.Second, DrainTimeout: 5 * time.Second},
		Store:     st,
		Metrics:   reconciler.NewMetrics(h.metrics, "test"),
		Log:       log,
		Disk:      h.docker,
	})
	if h.onDemand != nil {
		h.onDemand.SetOnDemand(h.rec.CommitPreview)
	}
}

// previewsWithSources gives the harness's preview settings git sources of
// their own under the state dir, and resolves per-commit previews through
// production's.
func (h *harness) previewsWithSources(log *slog.Logger, production *source.Repo) reconciler.Previews {
	pv := h.previews
	pv.Resolve = production.Resolve
	pv.NewSource = func(project string) (reconciler.Source, func() error, error) {
		git, checkouts := filepath.Join(h.stateDir, "git", project), filepath.Join(h.stateDir, "checkouts", project)
		src, err := source.New(h.repo.Dir, source.Auth{}, git, checkouts, log)
		return src, func() error { return errors.Join(os.RemoveAll(git), os.RemoveAll(checkouts)) }, err
	}
	return pv
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
    image: hawser-test/busybox:1.36
    init: true
    command: ["sh", "-c", "[ -f /www/id ] || echo $$RANDOM$$RANDOM > /www/id; [ -f /anon/id ] || echo $$RANDOM$$RANDOM > /anon/id; cp /anon/id /www/anon; echo \"$$GREETING\" > /www/greeting; exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1::8080"]
    volumes: [data:/www, /anon]
    environment:
      GREETING: ${GREETING:-hello}
  worker:
    image: hawser-test/busybox:1.36
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

func TestVolumesSurviveRecreateAndRemovedServiceKeepsItsVolume(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	id, anon := h.get(h.containers()["web"], "/id"), h.get(h.containers()["web"], "/anon")
	h.env["GREETING"] = "again"
	h.mustReconcile()
	if got := h.get(h.containers()["web"], "/id"); got != id {
		t.Fatalf("named volume data lost on recreate: %q then %q", id, got)
	}
	if got := h.get(h.containers()["web"], "/anon"); got != anon {
		t.Fatalf("anonymous volume data lost on recreate: %q then %q", anon, got)
	}

	// A removed service's anonymous volumes stay, as with docker compose:
	// the test removes them itself.
	for _, m := range h.containers()["web"].Mounts {
		if m.Type == "volume" && len(m.Name) == 64 {
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				h.docker.VolumeRemove(ctx, m.Name, client.VolumeRemoveOptions{Force: true})
			})
		}
	}
	h.repo.Commit("drop web", map[string]string{"compose.yaml": `
services:
  worker:
    image: hawser-test/busybox:1.36
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

func TestDependsOnConditionsOrderTheStart(t *testing.T) {
	h := newHarness(t, map[string]string{"compose.yaml": `
services:
  migrate:
    image: hawser-test/busybox:1.36
    command: ["sleep", "2"]
  db:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 500ms
      retries: 30
  app:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
    depends_on:
      migrate: {condition: service_completed_successfully}
      db: {condition: service_healthy}
  worker:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
    depends_on: [migrate]
`})
	h.mustReconcile()
	cs := h.containers()
	assertRunning(t, cs, "db", "app", "worker")
	if cs["migrate"].State != container.StateExited {
		t.Fatalf("migrate is %s", cs["migrate"].State)
	}
	app := h.inspect(cs["app"].ID)
	migrated := h.inspect(cs["migrate"].ID).State.FinishedAt
	if started := app.State.StartedAt; started < migrated {
		t.Errorf("app started at %s, before migrate finished at %s", started, migrated)
	}
	dbStarted, err := time.Parse(time.RFC3339Nano, h.inspect(cs["db"].ID).State.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	appStarted, err := time.Parse(time.RFC3339Nano, app.State.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	if appStarted.Sub(dbStarted) < 2*time.Second {
		t.Errorf("app started %s after db, before db could be healthy", appStarted.Sub(dbStarted))
	}
	// A second tick leaves the finished job alone.
	before := h.ids()
	h.mustReconcile()
	if after := h.ids(); after["migrate"] != before["migrate"] {
		t.Error("a finished one-shot job was run again on an idle tick")
	}
}

func (h *harness) inspect(id string) container.InspectResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return res.Container
}

// current is the commit the stable checkout path points at.
func (h *harness) current() string {
	h.t.Helper()
	target, err := os.Readlink(filepath.Join(h.stateDir, "checkouts", "current"))
	if err != nil {
		h.t.Fatal(err)
	}
	return filepath.Base(target)
}

func TestBadCommitKeepsTheRunningVersion(t *testing.T) {
	cases := map[string]map[string]string{
		"compose syntax error": {"compose.yaml": "services:\n  web: [not a mapping\n"},
		"failing build": {"compose.yaml": `
services:
  web:
    build: .
  worker:
    image: hawser-test/busybox:1.36
    command: ["sleep", "3600"]
`, "Dockerfile": "FROM hawser-test/busybox:1.36\nRUN echo building && false\n"},
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
			want := store.ResultFailed
			if name == "container exits at once" {
				want = store.ResultRolledBack
			}
			if d.Result != want || d.Commit != bad || d.Reason == "" {
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
			if got := h.current(); got != good.Commit {
				t.Errorf("the stable checkout path points at %s, want the running %s", got, good.Commit)
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
			// A new commit is tried at the next tick.
			fixed := h.repo.Commit("fix it", webAndWorker(`["sleep", "7200"]`, ""))
			h.mustReconcile()
			if d := h.lastDeployment(); d.Result != store.ResultSucceeded || d.Commit != fixed {
				t.Errorf("fixed commit: %+v", d)
			}
		})
	}
}

func TestRestartConvergesWithoutRecreatingAnything(t *testing.T) {
	h := newHarness(t, builtAndWorker("FROM hawser-test/busybox:1.36\nCOPY compose.yaml /\n"))
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

func TestCommitThatLeavesABuildContextAloneKeepsItsService(t *testing.T) {
	files := builtAndWorker("FROM hawser-test/busybox:1.36\nCOPY app.txt /\n")
	files["app.txt"] = "v1"
	h := newHarness(t, files)
	h.mustReconcile()
	before := h.ids()
	files["README.md"] = "docs only"
	second := h.repo.Commit("docs", files)
	h.mustReconcile()
	if after := h.ids(); after["web"] != before["web"] {
		t.Fatalf("a commit outside web's sources recreated it: %v -> %v", before, after)
	}
	if got := h.containers()["web"].Labels[converge.LabelCommit]; got == second {
		t.Fatalf("the kept container claims the new commit")
	}
	files["app.txt"] = "v2"
	h.repo.Commit("app", files)
	h.mustReconcile()
	if after := h.ids(); after["web"] == before["web"] {
		t.Fatal("a change to web's sources did not recreate it")
	}
}

func TestRollbackRestoresServicesSharingANetworkNamespace(t *testing.T) {
	files := func(level, appCmd string) map[string]string {
		return map[string]string{"compose.yaml": `
services:
  db:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
    environment: {LEVEL: "` + level + `"}
  app:
    image: hawser-test/busybox:1.36
    init: true
    network_mode: "service:db"
    command: ` + appCmd + `
`}
	}
	h := newHarness(t, files("1", `["sleep", "3600"]`))
	h.mustReconcile()
	before := h.ids()
	h.repo.Commit("db changes, app breaks", files("2", `["sh", "-c", "exit 4"]`))
	if err := h.reconcile(); err == nil {
		t.Fatal("a commit whose app exits deployed")
	}
	cs := h.containers()
	assertRunning(t, cs, "db", "app")
	for svc, id := range before {
		if cs[svc].ID != id {
			t.Errorf("%s was not restored", svc)
		}
	}
}

func TestPruneKeepsCheckoutsThatRunningContainersMount(t *testing.T) {
	files := func(page, readme string) map[string]string {
		return map[string]string{
			"compose.yaml": `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["127.0.0.1::8080"]
    volumes: ["./html:/www:ro"]
`,
			"html/index.html": page,
			"README":          readme,
		}
	}
	h := newHarness(t, files("v1", "0"))
	h.mustReconcile()
	id := h.ids()["web"]
	for i := range 5 { // more commits than KeepCheckouts, none touching web
		h.repo.Commit("docs", files("v1", fmt.Sprint(i+1)))
		h.mustReconcile()
	}
	if h.ids()["web"] != id {
		t.Fatal("web recreated by commits that do not change it")
	}
	if got := h.get(h.containers()["web"], "/index.html"); got != "v1" {
		t.Fatalf("web serves %q after its checkout could have been pruned", got)
	}
	h.repo.Commit("new page", files("v2", "5"))
	h.mustReconcile()
	if got := h.get(h.containers()["web"], "/index.html"); got != "v2" {
		t.Fatalf("a change to a mounted file did not reach the container: %q", got)
	}
	if got := h.lastDeployment().Services["web"]; len(got) != 1 || got[0] != "config changed: mounted files" {
		t.Errorf("reason = %v", got)
	}
}

func TestDriftIsRepairedWhileTheHeadIsAFailedCommit(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	good := h.lastDeployment().Commit
	h.repo.Commit("break it", map[string]string{"compose.yaml": "services: [\n"})
	if err := h.reconcile(); err == nil {
		t.Fatal("bad commit deployed")
	}
	removeService := func(svc string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := h.docker.ContainerRemove(ctx, h.ids()[svc], client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	removeService("worker")
	h.mustReconcile()
	if c := h.containers()["worker"]; c.State != container.StateRunning || c.Labels[converge.LabelCommit] != good {
		t.Fatalf("worker not repaired at the running commit: %+v", c.Labels)
	}
	// The same after a restart of hawser, which has to adopt the running version.
	h.start()
	removeService("worker")
	h.mustReconcile()
	if c := h.containers()["worker"]; c.State != container.StateRunning || c.Labels[converge.LabelCommit] != good {
		t.Fatalf("worker not repaired after a restart: %+v", c.Labels)
	}
}

func TestScaleUpAndDown(t *testing.T) {
	files := func(n int) map[string]string {
		return map[string]string{"compose.yaml": fmt.Sprintf(`
services:
  worker:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
    deploy: {replicas: %d}
`, n)}
	}
	h := newHarness(t, files(1))
	h.mustReconcile()
	first := h.ids()["worker"]
	count := func() (int, []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := converge.List(ctx, h.docker, h.project)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range list {
			names = append(names, converge.ContainerName(c))
		}
		return len(list), names
	}
	h.repo.Commit("scale up", files(3))
	h.mustReconcile()
	if n, names := count(); n != 3 {
		t.Fatalf("%d containers after scaling to 3: %v", n, names)
	}
	h.repo.Commit("scale down", files(1))
	h.mustReconcile()
	if n, names := count(); n != 1 || names[0] != h.project+"-worker-1" {
		t.Fatalf("after scaling to 1: %v", names)
	}
	if h.ids()["worker"] != first {
		t.Error("scaling recreated the first replica")
	}
}

// countingSource counts ls-remotes and checkouts.
type countingSource struct {
	reconciler.Source
	lsRemotes, checkouts atomic.Int32
}

func (s *countingSource) LsRemote(ctx context.Context) (source.Refs, error) {
	s.lsRemotes.Add(1)
	return s.Source.LsRemote(ctx)
}

func (s *countingSource) Checkout(ctx context.Context, branch, commit string) (source.Checkout, error) {
	s.checkouts.Add(1)
	return s.Source.Checkout(ctx, branch, commit)
}

func TestIdleTickIsOneLsRemoteAndOneContainerList(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	var mu sync.Mutex
	var requests []string
	counting := dockertest.CountingClient(t, func(method, path string) {
		mu.Lock()
		defer mu.Unlock()
		requests = append(requests, method+" "+path)
	})
	h.docker = counting
	src := &countingSource{}
	h.wrapSource = func(s reconciler.Source) reconciler.Source { src.Source = s; return src }
	h.start()
	h.mustReconcile() // a restart's first tick loads the project: not idle
	mu.Lock()
	requests = nil
	mu.Unlock()
	src.lsRemotes.Store(0)
	src.checkouts.Store(0)
	for range 5 {
		h.mustReconcile()
	}
	mu.Lock()
	defer mu.Unlock()
	lists := 0
	for _, r := range requests {
		if strings.HasSuffix(r, "/containers/json") {
			lists++
		} else if !strings.HasSuffix(r, "/_ping") {
			t.Errorf("idle tick made %s", r)
		}
	}
	if lists != 5 || src.lsRemotes.Load() != 5 || src.checkouts.Load() != 0 {
		t.Fatalf("5 idle ticks: %d container lists, %d ls-remotes, %d checkouts; want 5, 5, 0",
			lists, src.lsRemotes.Load(), src.checkouts.Load())
	}
}

func TestRollbackPinsAnEarlierCommitAcrossRestartsUntilResume(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	first := h.lastDeployment()
	h.repo.Commit("second", webAndWorker(`["sleep", "7200"]`, ""))
	h.mustReconcile()
	commitOf := func() string { return h.containers()["worker"].Labels[converge.LabelCommit] }

	commit, err := h.rec.Rollback(first.ID)
	if err != nil || commit != first.Commit {
		t.Fatalf("rollback to #%s: %s, %v", first.ID, commit, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.rec.Reconcile(ctx, reconciler.TriggerSync); err != nil {
		t.Fatal(err)
	}
	if commitOf() != first.Commit {
		t.Fatalf("worker runs %s after the rollback, want %s", commitOf(), first.Commit)
	}
	third := h.repo.Commit("third", webAndWorker(`["sleep", "1800"]`, ""))
	h.mustReconcile()
	if commitOf() != first.Commit {
		t.Fatal("a new commit was deployed while pinned")
	}
	h.start() // a restart keeps the pin
	h.mustReconcile()
	st, err := h.rec.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if commitOf() != first.Commit || !st.Paused || st.PinnedCommit != first.Commit {
		t.Fatalf("after a restart: worker at %s, status paused=%v pinned=%s", commitOf(), st.Paused, st.PinnedCommit)
	}
	if _, err := h.rec.Rollback("ffff"); !errors.Is(err, reconciler.ErrUnknownTarget) {
		t.Errorf("rollback to an unknown commit: %v", err)
	}
	if err := h.rec.Resume(); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile()
	if commitOf() != third {
		t.Fatalf("after resume worker runs %s, want the head %s", commitOf(), third)
	}
}

// builtAndWorker is a project of a service built from dockerfile and one
// that runs an image.
func builtAndWorker(dockerfile string) map[string]string {
	return map[string]string{
		"compose.yaml": `
services:
  web:
    build: .
    init: true
    command: ["sleep", "3600"]
  worker:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
`,
		"Dockerfile": dockerfile,
	}
}
